"""Open streams cannot starve the viewer, and they end when it stops: the real `doorbell serve`
(gunicorn, one worker) and `doorbell demo`, driven over loopback sockets.

The viewer has WORKER_THREADS threads and each open stream (SSE /events, MJPEG /live/stream)
holds one; web/stream_budget.py caps streams at MAX_STREAMS so that pages always have threads.
"""

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

from doorbell.storage.home import Home
from doorbell.web.server import gunicorn_options
from doorbell.web.stream_budget import BUSY_RETRY_S, HEADROOM_THREADS, MAX_STREAMS, WORKER_THREADS
from tests.helpers import clean_env, free_port

from .conftest import MEMBER, PASSPHRASE, SESSION_COOKIE, make_jpeg
from .live_server import Server, request

PAGE_BUDGET_S = 1.0
GRACEFUL_TIMEOUT_S = gunicorn_options("127.0.0.1", 8080, None)["graceful_timeout"]


def test_streams_leave_threads_for_pages():
    options = gunicorn_options("127.0.0.1", 8080, None)
    assert options["threads"] == WORKER_THREADS
    assert options["workers"] == 1
    assert MAX_STREAMS == WORKER_THREADS - HEADROOM_THREADS and HEADROOM_THREADS >= 3
    assert MAX_STREAMS >= 12  # a household's tabs: the 12-stream test below opens that many


def test_stopping_ends_open_streams_at_once_and_opens_no_new_one(app, unlocked, runtime_dir):
    from doorbell.web.stream_budget import stream_budget

    (runtime_dir / "live.jpg").write_bytes(make_jpeg(120))
    events = unlocked.get("/events", buffered=False)
    live = unlocked.get("/live/stream", buffered=False)
    event_chunks, live_chunks = iter(events.response), iter(live.response)
    assert next(event_chunks) == b"retry: 3000\n\n"
    assert next(live_chunks).startswith(b"--doorbell-frame\r\n")
    budget = stream_budget(app)
    assert budget.open_streams == 2
    stream_budget(app).stop()  # what the gunicorn worker does on SIGTERM, SIGINT, SIGQUIT
    started = time.monotonic()
    assert list(event_chunks) == [] and list(live_chunks) == []
    assert time.monotonic() - started < 1
    events.close(), live.close()
    assert budget.open_streams == 0 and app.extensions["doorbell"].live_viewers == 0
    refused = unlocked.get("/live/stream")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == str(BUSY_RETRY_S)
    assert unlocked.get("/events").get_data() == b"retry: 60000\n\n"


def test_the_budget_is_shared_by_both_kinds_of_stream(app, unlocked, runtime_dir):
    from doorbell.web.stream_budget import stream_budget

    (runtime_dir / "live.jpg").write_bytes(make_jpeg(120))
    budget = stream_budget(app)
    budget.limit = 3
    held = [unlocked.get("/events", buffered=False), unlocked.get("/events", buffered=False)]
    try:
        for response in held:
            next(iter(response.response))
        live = unlocked.get("/live/stream", buffered=False)
        held.append(live)
        assert live.status_code == 200
        refused = unlocked.get("/live/stream")
        assert refused.status_code == 503  # the fourth stream, though only one live view
        assert "Too many live streams are open on this doorbell at once" in refused.get_data(
            as_text=True)
        assert unlocked.get("/events").get_data() == b"retry: 60000\n\n"
    finally:
        for response in held:
            response.close()
    assert budget.open_streams == 0
    again = unlocked.get("/live/stream", buffered=False)  # closed before it was ever read
    assert again.status_code == 200 and budget.open_streams == 1
    again.close()
    assert budget.open_streams == 0 and app.extensions["doorbell"].live_viewers == 0


# -- helpers


def connect(port: int, timeout_s: float, tls: ssl.SSLContext | None = None):
    if tls is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    return http.client.HTTPSConnection("localhost", port, context=tls, timeout=timeout_s)


def log_in(port: int, member: str = MEMBER, passphrase: str = PASSPHRASE,
           tls: ssl.SSLContext | None = None) -> str:
    connection = connect(port, 30, tls)
    origin = f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    response, _ = request(connection, "POST", "/login", {
        "Content-Type": "application/x-www-form-urlencoded", "Origin": origin},
        f"member={member}&passphrase={passphrase}".encode())
    connection.close()
    assert response.status == 303, response.status
    return response.getheader("Set-Cookie").split(";")[0]


class OpenStream:
    """A stream request whose response headers (and first chunk) arrived; the body stays open."""

    def __init__(self, port: int, path: str, cookie: str, timeout_s: float = 10,
                 tls: ssl.SSLContext | None = None):
        self.connection = connect(port, timeout_s, tls)
        self.connection.request("GET", path, headers={"Cookie": cookie})
        self.response = self.connection.getresponse()
        self.status = self.response.status

    def first_bytes(self) -> bytes:
        return self.response.read1(65536)

    def read_to_end(self) -> bytes:
        return self.response.read()

    def close(self) -> None:
        self.connection.close()


def timed(port: int, path: str, cookie: str, headers: dict | None = None):
    """(seconds, status, body) of one request on a new connection, as a new browser tab."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {**({"Cookie": cookie} if cookie else {}), **(headers or {})}
        response, body = request(connection, "GET", path, headers)
    finally:
        connection.close()
    return time.monotonic() - started, response.status, body


@pytest.fixture
def viewer(home, tmp_path, runtime_dir):
    """`doorbell serve` on a free loopback port, with a live frame in the runtime directory."""
    (runtime_dir / "live.jpg").write_bytes(make_jpeg(120))
    port = free_port()
    server = Server(["-m", "doorbell", "serve", "--home", str(home.root), "--bind",
                     f"127.0.0.1:{port}"], tmp_path / "serve.log",
                    clean_env(DOORBELL_RUNTIME_DIR=str(runtime_dir)))
    try:
        server.wait_ready("127.0.0.1", port)
        yield server, port
    finally:
        server.stop()


# -- 12 streams open, every page still answers


@pytest.mark.slow
def test_twelve_open_streams_leave_every_page_answering_within_a_second(viewer, home):
    server, port = viewer
    cookie = log_in(port)
    clip = home.clips["motion"]
    streams = []
    try:
        # A household's tabs: ten timelines (live events) and two live views, all held open.
        for path in ["/events"] * 10 + ["/live/stream"] * 2:
            stream = OpenStream(port, path, cookie)
            streams.append(stream)
            assert stream.status == 200, (path, stream.status)
        assert streams[0].first_bytes() == b"retry: 3000\n\n"
        assert streams[-1].first_bytes().startswith(b"--doorbell-frame\r\n")
        assert len(streams) == 12 == MAX_STREAMS

        pages = [  # (path, signed in, headers, status, in the body)
            ("/", True, {}, 200, clip.id.encode()),
            ("/status", True, {}, 200, b"Days of footage that fit"),
            ("/status.json", True, {}, 200, b"disk_free_bytes"),
            ("/login", False, {}, 200, b'id="login-form"'),  # another member's phone
            ("/live", True, {}, 200, b'id="live"'),
            (f"/clips/{clip.id}/video", True, {"Range": "bytes=70000-70099"}, 206,
             clip.video[70000:70100]),
        ]
        for _round in range(3):
            for path, signed_in, headers, status, expected in pages:
                seconds, got_status, body = timed(port, path, cookie if signed_in else "", headers)
                assert got_status == status, (path, got_status, body[:300])
                assert expected in body, (path, body[:300])
                assert seconds < PAGE_BUDGET_S, f"{path} took {seconds:.2f} s with 12 streams open"

        # One stream more is refused at once, with a reason and when to come back.
        seconds, status, body = timed(port, "/live/stream", cookie)
        assert status == 503 and seconds < PAGE_BUDGET_S
        assert b"Too many live streams are open on this doorbell at once" in body
        more = OpenStream(port, "/live/stream", cookie)
        assert more.response.getheader("Retry-After") == str(BUSY_RETRY_S)
        more.read_to_end()
        more.close()
        started = time.monotonic()
        busy = OpenStream(port, "/events", cookie)
        assert busy.status == 200  # an error status would make the browser stop for good
        assert busy.read_to_end() == b"retry: 60000\n\n"  # the stream ends; retry in a minute
        assert time.monotonic() - started < PAGE_BUDGET_S
        busy.close()
        # ... and the pages still answer.
        seconds, status, _ = timed(port, "/", cookie)
        assert status == 200 and seconds < PAGE_BUDGET_S
    finally:
        for stream in streams:
            stream.close()

    # Closed tabs give their threads back at once, although nothing is being sent on them (no
    # new event, the same live frame): a new set of 12 opens.
    time.sleep(0.6)
    streams = []
    try:
        for path in ["/events"] * 10 + ["/live/stream"] * 2:
            stream = OpenStream(port, path, cookie)
            streams.append(stream)
            first = stream.first_bytes()
            assert stream.status == 200 and first != b"retry: 60000\n\n", (path, first)
    finally:
        for stream in streams:
            stream.close()
    assert "Traceback" not in server.log_path.read_text()


SERVE_TLS = """
import sys
from doorbell.config import load_settings
from doorbell.storage.home import Home
from doorbell.web import create_app
from doorbell.web.server import serve
from doorbell.web.tls import certificate_paths

home = Home.resolve(sys.argv[1])
serve(create_app(load_settings(home.root), home), "127.0.0.1", int(sys.argv[2]),
      certificate_paths(home.tls_dir))
"""


@pytest.mark.slow
def test_over_tls_a_closed_tab_gives_its_stream_back(home, tmp_path, runtime_dir):
    """As on the LAN (HTTPS): streams stay open while the tab is, and end when it closes."""
    from doorbell.web.tls import certificate_paths

    (runtime_dir / "live.jpg").write_bytes(make_jpeg(120))
    port = free_port()
    server = Server(["-c", SERVE_TLS, str(home.root), str(port)], tmp_path / "tls.log",
                    clean_env(DOORBELL_RUNTIME_DIR=str(runtime_dir)))
    try:
        server.wait_ready("127.0.0.1", port)
        tls = ssl.create_default_context(cafile=str(certificate_paths(home.home.tls_dir)[0]))
        cookie = log_in(port, tls=tls)
        for _round in range(2):  # the second finds the first's threads free again
            streams = [OpenStream(port, path, cookie, tls=tls)
                       for path in ["/events"] * 10 + ["/live/stream"] * 2]
            firsts = [stream.first_bytes() for stream in streams]
            assert all(first and first != b"retry: 60000\n\n" for first in firsts), firsts
            streams[0].connection.sock.settimeout(1.5)
            with pytest.raises(socket.timeout):  # still open: nothing new, and no end
                streams[0].response.read1(65536)
            for stream in streams:
                stream.close()
            time.sleep(0.6)  # a poll or two
    finally:
        server.stop()
    assert "Traceback" not in server.log_path.read_text()


# -- streams end at shutdown


def wait_exit(process: subprocess.Popen, timeout_s: float) -> float:
    started = time.monotonic()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout_s} s after the signal")
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_serve_with_open_streams_stops_promptly(viewer, how):
    server, port = viewer
    cookie = log_in(port)
    events = OpenStream(port, "/events", cookie)
    live = OpenStream(port, "/live/stream", cookie)
    assert (events.status, live.status) == (200, 200)
    events.first_bytes(), live.first_bytes()
    if how == "SIGTERM":  # systemd's stop
        server.process.send_signal(signal.SIGTERM)
    else:  # Ctrl-C in a terminal: SIGINT to the whole foreground group (arbiter and worker)
        os.killpg(server.process.pid, signal.SIGINT)
    seconds = wait_exit(server.process, GRACEFUL_TIMEOUT_S + 5)
    # Both streams were ended by the server (not cut off by a killed process).
    events.read_to_end(), live.read_to_end()
    events.close(), live.close()
    log = server.log_path.read_text()
    assert seconds < GRACEFUL_TIMEOUT_S, f"took {seconds:.1f} s\n{log}"
    assert "SIGKILL" not in log and "Traceback" not in log, log
    assert server.process.returncode == 0, log


PASSPHRASE_LINE = re.compile(r"unlock as '(?P<member>[^']+)' with passphrase: (?P<secret>\S+)")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["Ctrl-C", "SIGTERM"])
def test_demo_with_open_streams_stops_without_sigkill(tmp_path, how):
    port = free_port()
    stderr_path = tmp_path / "demo-stderr.log"
    with stderr_path.open("wb") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "doorbell", "demo", "--dir", str(tmp_path / "demo"), "--bind",
             f"127.0.0.1:{port}"], cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
    streams = []
    try:
        secret = None
        for line in demo.stdout:
            if found := PASSPHRASE_LINE.search(line):
                secret = found["secret"]
                break
        assert secret, stderr_path.read_text()
        deadline = time.monotonic() + 60
        while True:  # the viewer starts a moment after the passphrase is printed
            try:
                timed(port, "/login", "")
                break
            except OSError:
                assert time.monotonic() < deadline, stderr_path.read_text()
                time.sleep(0.5)
        cookie = log_in(port, "demo", secret)
        assert cookie.startswith(SESSION_COOKIE)
        # Two timelines and a live view (which answers with the recorder's first live frame).
        streams = [OpenStream(port, "/events", cookie), OpenStream(port, "/events", cookie),
                   OpenStream(port, "/live/stream", cookie, timeout_s=60)]
        assert [s.status for s in streams] == [200, 200, 200]
        if how == "Ctrl-C":  # SIGINT to the terminal's foreground group: every process
            os.killpg(demo.pid, signal.SIGINT)
        else:  # `kill PID`: the demo stops its recorder and viewer itself
            demo.send_signal(signal.SIGTERM)
        seconds = wait_exit(demo, 30)
    finally:
        for stream in streams:
            stream.close()
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
        demo.stdout.close()
        run_dir = Home((tmp_path / "demo").absolute()).run_dir
        if run_dir.name.startswith("doorbell-"):
            shutil.rmtree(run_dir, ignore_errors=True)  # the default runtime dir, in /dev/shm
    log = stderr_path.read_text()
    assert "SIGKILL" not in log, log
    assert demo.returncode == 0, log
    assert seconds < GRACEFUL_TIMEOUT_S, f"took {seconds:.1f} s\n{log}"
