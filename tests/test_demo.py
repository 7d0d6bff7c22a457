"""The README's Quick start: `doorbell demo` gives a working viewer with real clips, and Ctrl-C
stops everything it started.

The demo runs as a user would run it (a subprocess in a fresh working directory, the default
runtime directory), except that it binds a free loopback port instead of 8080. The viewer is
driven with urllib: log in with the printed passphrase, keep the session cookie by hand (it is
`__Host-` and Secure, so urllib's cookie jar would never send it over http://127.0.0.1).
"""

import contextlib
import http.cookies
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import clean_env, free_port

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
SESSION_COOKIE = "__Host-doorbell-session"
PASSPHRASE_LINE = re.compile(r"unlock as '(?P<member>[^']+)' with passphrase: (?P<secret>\S+)")
FIRST_CLIP_TIMEOUT_S = 120.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 303 after login carries the cookie: look at it, do not follow it


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def request(url: str, data: dict | None = None, headers: dict | None = None,
            timeout: float = 10):
    """(status, headers, body) for one request; HTTP errors are answers, not exceptions."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310 - loopback
    try:
        with OPENER.open(req, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def demo_processes(demo_dir: Path) -> list[int]:
    """Pids of processes whose command line mentions the demo directory (recorder, viewer)."""
    found = subprocess.run(["pgrep", "-f", str(demo_dir)], capture_output=True, text=True,
                           check=False)
    return [int(pid) for pid in found.stdout.split()]


class Demo:
    """`doorbell demo --dir DIR --bind 127.0.0.1:PORT` in a fresh working directory."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.dir = workdir / "doorbell-demo"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = workdir / "demo-stderr.log"
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "doorbell", "demo", "--dir", str(self.dir), "--bind",
                 f"127.0.0.1:{self.port}"],
                cwd=workdir, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=stderr, text=True, start_new_session=True,
            )
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def describe(self) -> str:
        return (f"exit code {self.process.poll()}\nstdout:\n{''.join(self.stdout)}\n"
                f"stderr:\n{self.stderr_path.read_text(errors='replace')[-4000:]}")

    def wait_for_line(self, pattern: re.Pattern, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, f"the demo exited\n{self.describe()}"
                continue
            if match := pattern.search(line):
                return match
        raise AssertionError(f"the demo never printed {pattern.pattern!r}\n{self.describe()}")

    def wait_until(self, condition, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, f"the demo exited\n{self.describe()}"
            if result := condition():
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.describe()}")
            time.sleep(1.0)

    def login_page_answers(self) -> bool:
        try:
            return request(f"{self.base_url}/login", timeout=2)[0] == 200
        except OSError:
            return False

    def clips(self) -> list[dict]:
        result = subprocess.run(
            [sys.executable, "-m", "doorbell", "clips", "list", "--home", str(self.dir),
             "--json"], capture_output=True, text=True, env=clean_env(), cwd=self.workdir,
            timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def cleanup(self) -> None:
        """Whatever happened in the test: nothing it started keeps running or stays in /dev/shm."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for pid in demo_processes(self.dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        from doorbell.storage.home import Home

        run_dir = Home(self.dir.absolute()).run_dir
        if run_dir.is_dir() and run_dir.name.startswith("doorbell-"):
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def demo(tmp_path):
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    demo = Demo(workdir)
    try:
        yield demo
    finally:
        demo.cleanup()


def login(demo: Demo, member: str, passphrase: str) -> str:
    status, headers, body = request(
        f"{demo.base_url}/login", data={"member": member, "passphrase": passphrase},
        headers={"Origin": demo.base_url})
    assert status == 303, (status, body[:500])
    assert headers["Location"].endswith("/"), headers["Location"]
    cookie = http.cookies.SimpleCookie()
    for value in headers.get_all("Set-Cookie") or []:
        cookie.load(value)
    assert SESSION_COOKIE in cookie, headers.get_all("Set-Cookie")
    morsel = cookie[SESSION_COOKIE]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict", morsel
    return f"{SESSION_COOKIE}={morsel.value}"


def stop_with_sigint(demo: Demo, to_group: bool) -> None:
    running = demo_processes(demo.dir)
    # the demo itself, `doorbell record`, `doorbell serve` (and its gunicorn worker)
    assert len(running) >= 3, f"the recorder and the viewer should be running: {running}"
    if to_group:  # Ctrl-C in a terminal: every process of the foreground group gets SIGINT
        os.killpg(demo.process.pid, signal.SIGINT)
    else:
        demo.process.send_signal(signal.SIGINT)
    try:
        code = demo.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"SIGINT did not stop the demo within 30 s\n{demo.describe()}")
    assert code == 0, demo.describe()
    deadline = time.monotonic() + 5
    while (left := demo_processes(demo.dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left running after the demo stopped: {left}"


def test_demo_quick_start_works_and_sigint_stops_everything(demo):
    found = demo.wait_for_line(PASSPHRASE_LINE, 120)
    member, passphrase = found["member"], found["secret"]
    assert member == "demo"
    assert demo.dir.is_dir() and (demo.dir / "recipients.txt").is_file()
    demo.wait_until(demo.login_page_answers, 60, "GET /login to answer 200")

    cookie = login(demo, member, passphrase)
    status, headers, body = request(f"{demo.base_url}/", headers={"Cookie": cookie})
    assert status == 200, body[:500]
    assert "Timeline" in body.decode()
    assert headers["Cache-Control"] == "no-store"

    clip = demo.wait_until(lambda: next(iter(demo.clips()), None), FIRST_CLIP_TIMEOUT_S,
                           "the demo's first clip")
    status, _, body = request(f"{demo.base_url}/", headers={"Cookie": cookie})
    assert status == 200
    assert f'href="/clips/{clip["id"]}"' in body.decode(), "the timeline does not list the clip"

    status, headers, body = request(f"{demo.base_url}/clips/{clip['id']}/thumbnail.jpg",
                                    headers={"Cookie": cookie})
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert body[:2] == b"\xff\xd8"
    status, headers, body = request(f"{demo.base_url}/clips/{clip['id']}/video",
                                    headers={"Cookie": cookie, "Range": "bytes=0-1023"})
    assert status == 206, body[:200]
    assert len(body) == 1024 and body[4:8] == b"ftyp", body[:16]

    # Without the cookie nothing is shown.
    status, headers, _ = request(f"{demo.base_url}/")
    assert status in (302, 303) and headers["Location"].endswith("/login")

    stop_with_sigint(demo, to_group=False)


def test_demo_stops_on_ctrl_c_in_a_terminal(demo):
    demo.wait_for_line(PASSPHRASE_LINE, 120)
    demo.wait_until(demo.login_page_answers, 60, "GET /login to answer 200")
    time.sleep(1)  # let the recorder get going too
    stop_with_sigint(demo, to_group=True)
