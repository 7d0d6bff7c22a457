"""ntfy delivery against a local HTTP server that implements ntfy's documented publish API.

    POST /<topic>   body: the message; headers Title, Priority (1..5 or min/low/default/high/
                    max/urgent), Tags (comma-separated), Click; Authorization: Bearer <token>
                    -> 200 {"id", "time", "event": "message", "topic", "message", "title",
                        "priority", "tags", "click"}

The stand-in parses requests the way ntfy does (RFC 2047 headers decoded, priority names and
numbers) and answers 200 with the message as JSON, 403 for a wrong token, or 503 while it is
"rebooting", so retries and refusals are seen as ntfy would cause them.
"""

import email.header
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import doorbell.camera.events as events_module
from doorbell.camera.events import EventBus
from doorbell.camera.notify import build_event_bus
from doorbell.camera.notify.ntfy import NtfySink
from doorbell.config import Settings

PRIORITIES = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}
TOKEN = "tk_local_test_token_0123456789"


class FakeNtfy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), NtfyHandler)
        self.messages: list[dict] = []
        self.requests: list[dict] = []
        self.cond = threading.Condition()
        self.unavailable = 0  # answer 503 to this many requests
        self.token: str | None = None
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, count: int, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while len(self.messages) < count and time.monotonic() < deadline:
                self.cond.wait(0.05)
            return len(self.messages) >= count


def decoded(value: str | None) -> str | None:
    if value is None:
        return None
    return "".join(part.decode(charset or "ascii") if isinstance(part, bytes) else part
                   for part, charset in email.header.decode_header(value))


class NtfyHandler(BaseHTTPRequestHandler):
    server: FakeNtfy

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server.requests.append({"path": self.path, "headers": dict(self.headers)})
        if server.unavailable:
            server.unavailable -= 1
            self._answer(503, {"code": 50301, "http": 503, "error": "rebooting"})
            return
        if server.token and self.headers.get("Authorization") != f"Bearer {server.token}":
            self._answer(403, {"code": 40301, "http": 403, "error": "forbidden"})
            return
        topic = self.path.strip("/").split("/")[-1]
        priority = self.headers.get("Priority", "3")
        message = {
            "id": f"m{len(server.messages)}", "time": int(time.time()), "event": "message",
            "topic": topic, "message": body.decode("utf-8"),
            "title": decoded(self.headers.get("Title")),
            "priority": PRIORITIES.get(priority) or int(priority),
            "tags": (self.headers.get("Tags") or "").split(","),
            "click": self.headers.get("Click"),
            "path": self.path,
        }
        with server.cond:
            server.messages.append(message)
            server.cond.notify_all()
        self._answer(200, message)

    def _answer(self, status: int, document: dict) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def ntfy():
    server = FakeNtfy()
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


def ntfy_settings(url: str, **keys) -> Settings:
    lines = [f"{k} = {json.dumps(v)}" for k, v in
             {"enabled": True, "url": url, "topic": "front-door-7f3k", **keys}.items()]
    return Settings.from_toml_text('[camera]\nname = "Haustür"\n[ntfy]\n' + "\n".join(lines))


def test_each_event_becomes_a_short_text_with_priority_by_type(ntfy, tmp_path):
    settings = ntfy_settings(ntfy.url, click_url="https://doorbell.local:8443/",
                             events=["doorbell_pressed", "motion_started", "clip_saved",
                                     "camera_lost", "disk_low"])
    bus = build_event_bus(settings, tmp_path)
    with bus:
        bus.emit("doorbell_pressed")
        bus.emit("motion_started", trigger="doorbell")
        bus.emit("motion_ended")  # not in ntfy.events: not sent
        bus.clip_saved("20240501T120000Z-abcdef", {"trigger": "doorbell", "duration_s": 15.4,
                                                   "start_us": 1_714_564_800_000_000}, b"JPEG")
        bus.emit("camera_lost", message="camera lost: the camera was unplugged")
        bus.emit("disk_low", reason="disk full", free_bytes=800_000_000)
        assert ntfy.wait_for(5)
    press, motion, clip, lost, disk = ntfy.messages
    assert len(ntfy.messages) == 5
    assert all(m["topic"] == "front-door-7f3k" and m["path"] == "/front-door-7f3k"
               for m in ntfy.messages)
    assert press["title"] == "Haustür: Someone rang the doorbell"  # RFC 2047 for the ü
    assert press["priority"] == 4 and "bell" in press["tags"]  # doorbell: high
    assert press["message"].startswith("The doorbell rang at ")
    assert press["click"] == "https://doorbell.local:8443/"
    assert motion["priority"] == 3 and "doorbell press" in motion["message"]
    assert clip["priority"] == 2 and clip["message"].startswith("Doorbell clip saved at ")
    assert "15 s" in clip["message"]
    assert clip["click"] == "https://doorbell.local:8443/clips/20240501T120000Z-abcdef"
    assert lost["priority"] == 4 and "unplugged" in lost["message"]
    assert disk["priority"] == 4 and "0.8 GB free" in disk["message"]
    # Short texts, and never a picture.
    assert all(len(m["message"]) < 120 for m in ntfy.messages)
    assert all(r["headers"].get("Content-Type", "").startswith("text/plain")
               for r in ntfy.requests)
    assert not any("Attach" in h or "Filename" in h for r in ntfy.requests for h in r["headers"])


def test_a_token_from_a_file_and_a_refusal_that_is_dropped(ntfy, tmp_path, caplog):
    ntfy.token = TOKEN
    token_file = tmp_path / "ntfy-token"
    token_file.write_text(TOKEN + "\n")
    with build_event_bus(ntfy_settings(ntfy.url, token_file=str(token_file)), tmp_path) as bus:
        bus.emit("doorbell_pressed")
        assert ntfy.wait_for(1)
    assert ntfy.requests[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"

    wrong = tmp_path / "wrong-token"
    wrong.write_text("tk_wrong\n")
    with build_event_bus(ntfy_settings(ntfy.url, token_file=str(wrong)), tmp_path) as bus:
        bus.emit("doorbell_pressed")
        deadline = time.monotonic() + 5
        while not bus.stats()["ntfy"]["failed"] and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = bus.stats()["ntfy"]
    assert stats["failed"] == 1 and stats["queued"] == 0  # refused for good: not retried
    assert "ntfy refused doorbell_pressed (ntfy answered HTTP 403 Forbidden): dropped" in \
        caplog.text


def test_a_server_that_is_away_gets_the_events_when_it_is_back(ntfy, tmp_path, monkeypatch,
                                                               caplog):
    monkeypatch.setattr(events_module, "RETRY_MIN_S", 0.05)
    caplog.set_level(logging.INFO, logger="doorbell.events")
    ntfy.unavailable = 3  # 503, 503, 503, then fine
    with build_event_bus(ntfy_settings(ntfy.url), tmp_path) as bus:
        started = time.perf_counter()
        bus.emit("doorbell_pressed")
        bus.emit("camera_lost", message="camera lost")
        assert time.perf_counter() - started < 0.1  # emit() did not wait for the server
        assert ntfy.wait_for(2)
    assert [m["title"].split(": ")[1] for m in ntfy.messages] == \
        ["Someone rang the doorbell", "Camera lost"]  # in order
    assert "ntfy cannot deliver (ntfy answered HTTP 503" in caplog.text
    assert "ntfy is delivering again" in caplog.text


def test_nothing_listening_never_stalls_the_caller(tmp_path, monkeypatch):
    monkeypatch.setattr(events_module, "RETRY_MIN_S", 0.05)
    with FakeNtfy() as closed:
        url = closed.url  # bound, then closed: nothing answers there
    sink = NtfySink(ntfy_settings(url), "127.0.0.1", timeout_s=1.0)
    bus = EventBus([sink], queue_size=4).start()
    try:
        started = time.perf_counter()
        for _ in range(20):
            bus.emit("doorbell_pressed")
        assert time.perf_counter() - started < 0.2
        time.sleep(0.3)
        stats = bus.stats()["ntfy"]
        assert stats["delivered"] == 0 and stats["failed"] >= 1
        assert stats["dropped"] + stats["queued"] + 1 >= 20 - 1
    finally:
        bus.close(timeout_s=0.5)


def test_the_plain_http_connection_goes_to_the_address_checked_at_start(ntfy, tmp_path):
    # The URL names a host; the address resolved and checked at start is where it connects,
    # with the name in the Host header (a later DNS answer cannot redirect it).
    port = ntfy.server_address[1]
    settings = ntfy_settings(f"http://ntfy.home.arpa:{port}/base/")

    def fake_getaddrinfo(host, port_, type=0):  # noqa: A002 - socket's own name
        assert host == "ntfy.home.arpa"
        return [(2, 1, 6, "", ("127.0.0.1", port_))]

    with build_event_bus(settings, tmp_path, getaddrinfo=fake_getaddrinfo) as bus:
        bus.emit("doorbell_pressed")
        assert ntfy.wait_for(1)
    request = ntfy.requests[-1]
    assert request["path"] == "/base/front-door-7f3k"
    assert request["headers"]["Host"] == f"ntfy.home.arpa:{port}"


def test_privacy_mode_turned_on_and_off_is_sent_by_default(ntfy, tmp_path):
    # The default events include privacy_mode: a change nobody in the house made is noticed.
    from doorbell.camera.notify.switches import Switches

    switches = Switches.in_home(tmp_path, None)
    with build_event_bus(ntfy_settings(ntfy.url), tmp_path, switches=switches):
        assert switches.set("privacy_mode", True, "mqtt:192.168.1.10")
        assert switches.set("privacy_mode", False, "mqtt:192.168.1.10")
        assert switches.set("mute_chime", True, "mqtt:192.168.1.10")  # not announced
        assert ntfy.wait_for(2)
        time.sleep(0.3)  # nothing more comes
    on, off = ntfy.messages
    assert on["title"] == "Haustür: Privacy mode on" and on["priority"] == 4
    assert on["message"].startswith("Privacy mode was turned on at ")
    assert on["message"].endswith(": no recording, no live view.")
    assert off["title"] == "Haustür: Privacy mode off"
    assert off["message"].endswith(": recording again.")
