"""Fixtures for the real-browser tests: the real device as subprocesses, and Debian's Chromium.

`device` (one per test module) initialises a home, sets the camera to 640x360, and starts
`doorbell record --source synthetic` (real time) and `doorbell serve` (gunicorn) on a free
loopback port, both with DOORBELL_RUNTIME_DIR pointing at a private temporary directory. It
waits until the recorder has saved its first clip (the synthetic scene's first visitor arrives
at ~8 s; the clip closes ~5 s after they leave). Everything is stopped by the fixture's
finaliser; the processes' output goes to log files next to the home, shown when a wait fails.

`chromium` is Debian's Chromium driven by Playwright (`executable_path`; Playwright's own
browser download is never used). `watched_page` gives a fresh context and page whose console
messages, Content-Security-Policy violations and requests are recorded (`PageWatch`);
`watch_page` does the same for a device of a test's own (`running_device`, `make_empty_home`).
"""

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import clean_env, free_port

PROJECT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
MEMBER = "alice"
PASSPHRASE = "amber-kettle-under-snow-31"
CAMERA_CONFIG = "[camera]\nwidth = 640\nheight = 360\n"
FIRST_CLIP_TIMEOUT_S = 75.0
# `doorbell serve` prints the set-up code on a line of its own: "    XXXX-XXXX-XXXX".
SETUP_CODE = re.compile(r"^ {4}([2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4})$",
                        re.MULTILINE)

# Runs in every document before its own scripts: a CSP violation is reported on the console,
# where the page's console listener (which survives navigations) records it.
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
    console.error('securitypolicyviolation: Content Security Policy violation: ' +
                  e.violatedDirective + ' blocked ' + e.blockedURI + ' in ' + e.sourceFile);
});
"""


def wait_until(condition: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.5, describe: Callable[[], str] = lambda: ""):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n"
                                 f"{describe()}")
        time.sleep(interval_s)


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM,
                 timeout_s: float = 15) -> None:
    """Stop one process we started (and, failing that, its own process group)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # started with its own session
        process.wait(timeout=10)


@dataclass
class Device:
    """A doorbell home with its recorder and viewer running as subprocesses."""

    root: Path
    runtime_dir: Path
    logs_dir: Path
    port: int
    recorder: subprocess.Popen | None = None
    viewer: subprocess.Popen | None = None
    recorder_starts: int = 0
    _identity: object = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    def _env(self) -> dict[str, str]:
        return clean_env(DOORBELL_RUNTIME_DIR=str(self.runtime_dir))

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logs_dir / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "doorbell", *args], cwd=PROJECT, env=self._env(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def doorbell(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "doorbell", *args], cwd=PROJECT, env=self._env(),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False,
        )

    def start_recorder(self) -> None:
        self.recorder_starts += 1
        self.recorder = self._spawn(f"record-{self.recorder_starts}", "record", "--home",
                                    str(self.root), "--source", "synthetic")

    def start_viewer(self) -> None:
        self.viewer = self._spawn("serve", "serve", "--home", str(self.root), "--bind",
                                  f"127.0.0.1:{self.port}")

    def log(self, name: str) -> str:
        """One process's output so far ("serve", "record-1", ...)."""
        path = self.logs_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def setup_code(self) -> str | None:
        """The set-up code `doorbell serve` printed for a home without household keys."""
        found = SETUP_CODE.search(self.log("serve"))
        return found.group(1) if found else None

    def recorder_status(self) -> dict:
        """The recorder's recorder.json in the runtime directory ({} while there is none)."""
        try:
            return json.loads((self.runtime_dir / "recorder.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def recorder_applied(self, name: str) -> bool:
        """Whether the running recorder publishes the SHA-256 of the home's `name` as in force
        ("config.toml" or "recipients.txt")."""
        key = {"config.toml": "config_sha256", "recipients.txt": "recipients_sha256"}[name]
        try:
            data = (self.root / name).read_bytes()
        except FileNotFoundError:
            data = b""
        status = self.recorder_status()
        fresh = time.time() - (status.get("updated") or 0) < 5
        return fresh and status.get(key) == hashlib.sha256(data).hexdigest()

    def logs(self) -> str:
        parts = []
        for path in sorted(self.logs_dir.glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name} (last 3000 characters)\n{text[-3000:]}")
        return "\n".join(parts)

    def check_running(self) -> None:
        for name, process in (("recorder", self.recorder), ("viewer", self.viewer)):
            if process is not None and process.poll() is not None:
                raise AssertionError(f"the {name} exited with {process.returncode}\n{self.logs()}")

    def clips(self) -> list[dict]:
        """`doorbell clips list --json`: what the index holds (no key needed)."""
        result = self.doorbell("clips", "list", "--home", str(self.root), "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def partials(self) -> list[Path]:
        return sorted(self.clips_dir.rglob("*.mp4.age.partial"))

    def wait_for_clip(self, condition: Callable[[dict], bool], timeout_s: float,
                      what: str) -> dict:
        def found():
            self.check_running()
            return next((clip for clip in self.clips() if condition(clip)), None)

        return wait_until(found, timeout_s, what, interval_s=1.0, describe=self.logs)

    def viewer_answers(self) -> bool:
        self.check_running()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.base_url}/login", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def identity(self):
        """alice's identity, unlocked here to read clip metadata independently of the viewer."""
        if self._identity is None:
            from doorbell.storage.keyring import Keyring

            self._identity = Keyring(self.root / "identities").unlock(MEMBER, PASSPHRASE)
        return self._identity

    def metadata(self, clip_id: str) -> dict | None:
        from doorbell.storage.clipreader import read_metadata

        return read_metadata(self.clips_dir, clip_id, [self.identity()])

    def kill_recorder_hard(self) -> None:
        """SIGKILL: no clean-up of any kind, like a crash or a power cut of the recorder."""
        assert self.recorder is not None
        self.recorder.send_signal(signal.SIGKILL)
        self.recorder.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.recorder)
        stop_process(self.viewer)


def make_device(base: Path, config: str = CAMERA_CONFIG) -> Device:
    root = base / "home"
    runtime_dir = base / "run"
    runtime_dir.mkdir(mode=0o700)
    logs_dir = base / "logs"
    logs_dir.mkdir()
    secret = base / "passphrase.txt"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    device = Device(root, runtime_dir, logs_dir, free_port())
    result = device.doorbell("init", "--home", str(root), "--user", MEMBER,
                             "--passphrase-file", str(secret), "--work-factor", "15")
    assert result.returncode == 0, result.stdout + result.stderr
    (root / "config.toml").write_text(config)
    return device


def make_empty_home(base: Path, config: str = CAMERA_CONFIG) -> Device:
    """A home directory holding only config.toml: no household keys, no identities, no clips
    (set-up happens in the browser). Nothing is started."""
    root = base / "home"
    root.mkdir(mode=0o750, parents=True)
    (root / "config.toml").write_text(config)
    runtime_dir = base / "run"
    runtime_dir.mkdir(mode=0o700)
    logs_dir = base / "logs"
    logs_dir.mkdir()
    return Device(root, runtime_dir, logs_dir, free_port())


@contextlib.contextmanager
def running_device(base: Path, config: str = CAMERA_CONFIG,
                   first_clip_timeout_s: float = FIRST_CLIP_TIMEOUT_S) -> Iterator[Device]:
    """An initialised home (alice) with `config`, recorder and viewer running, once the first
    clip is saved; both are stopped on the way out."""
    device = make_device(base, config)
    try:
        device.start_recorder()
        device.start_viewer()
        wait_until(device.viewer_answers, 30, "the viewer to answer GET /login",
                   describe=device.logs)
        device.wait_for_clip(lambda clip: clip["state"] == "complete", first_clip_timeout_s,
                             "the recorder's first clip")
        yield device
    finally:
        device.stop()


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """The running device, once its first clip is saved."""
    with running_device(tmp_path_factory.mktemp("device")) as device:
        yield device


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} "
                    "(apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageWatch:
    """What a page did: console messages, CSP violations, page errors, and every request."""

    base_url: str
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_console(self, message) -> None:
        text = f"{message.type}: {message.text}"
        self.console.append(text)
        if "Content Security Policy" in message.text or "securitypolicyviolation" in message.text:
            self.csp_violations.append(text)

    def foreign_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(self.base_url + "/")]

    def assert_clean(self, page) -> None:
        # The sync API delivers events while it waits: give late ones a moment to arrive.
        page.wait_for_timeout(300)
        assert not self.csp_violations, f"CSP violations reported: {self.csp_violations}"
        assert not self.page_errors, f"script errors: {self.page_errors}"
        assert self.requests, "no request was recorded at all"
        assert not self.foreign_requests(), (
            f"requests to somewhere other than the device: {self.foreign_requests()}")


@contextlib.contextmanager
def watch_page(browser, base_url: str, **context_options):
    """(page, watch): a fresh browser context (no cookies) on `base_url`, watched."""
    options = {"viewport": {"width": 1000, "height": 900}, **context_options}
    context = browser.new_context(base_url=base_url, **options)
    watch = PageWatch(base_url)
    context.on("request", lambda request: watch.requests.append(request.url))
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.on("console", watch.on_console)
    page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    page.set_default_timeout(20_000)
    try:
        yield page, watch
    finally:
        context.close()


@pytest.fixture
def watched_page(chromium, device):
    """(page, watch): a fresh browser context (no cookies) on the device."""
    with watch_page(chromium, device.base_url) as (page, watch):
        yield page, watch


def unlock(page, member: str = MEMBER, passphrase: str = PASSPHRASE) -> None:
    """Fill in the login form and submit it as a person would; lands on the timeline."""
    page.goto("/login")
    page.fill("input[name=member]", member)
    page.fill("input[name=passphrase]", passphrase)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")
    assert page.locator("#lock-now").is_visible(), page.content()[:2000]
