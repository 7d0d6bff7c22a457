"""GET /events: server-sent events from the recorder's events.jsonl, for unlocked sessions only."""

import json
import queue
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

import doorbell.web.views.events as events_view
from doorbell.camera.events import EVENTS_FILE, EventBus, EventLogFile

from .conftest import MEMBER, new_client, unlock_directly


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(events_view, "POLL_S", 0.02)


class Stream:
    """Reads a streaming response on a thread; `next_event()` waits for the next SSE message."""

    def __init__(self, response, app):
        self.response = response
        self.app = app
        self.chunks: queue.Queue = queue.Queue()
        self.buffer = ""
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for chunk in self.response.response:
                # bytes: a WSGI server (gunicorn) is handed these chunks as they are
                assert isinstance(chunk, bytes), f"a str chunk reached the server: {chunk!r}"
                self.chunks.put(chunk.decode())
        finally:
            self.ended.set()
            self.chunks.put(None)

    def next_event(self, timeout_s: float = 5.0) -> dict | None:
        """The next message's fields (id, event, data), skipping comments and `retry:`."""
        deadline = time.monotonic() + timeout_s
        while True:
            while "\n\n" in self.buffer:
                block, self.buffer = self.buffer.split("\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.splitlines()
                              if not line.startswith(":") and ": " in line)
                if "data" in fields:
                    return fields
            try:
                chunk = self.chunks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if chunk is None:
                return None
            self.buffer += chunk

    def close(self):
        """Lock the member's sessions (the stream ends by itself), then close the response."""
        self.app.extensions["doorbell"].sessions.drop_member(MEMBER)
        assert self.ended.wait(5), "the stream did not end when the session locked"
        self.response.close()


def write_events(runtime_dir, emit):
    """Write events the way the recorder does (camera.events.EventLogFile)."""
    with EventBus([EventLogFile(runtime_dir / EVENTS_FILE)]) as bus:
        emit(bus)
    return bus


def test_locked_clients_get_401_and_nothing_else(client, runtime_dir):
    write_events(runtime_dir, lambda bus: bus.emit("doorbell_pressed"))
    response = client.get("/events")
    assert response.status_code == 401
    assert b"doorbell_pressed" not in response.get_data()
    client.set_cookie("__Host-doorbell-session", "forged", domain="localhost")
    assert client.get("/events").status_code == 401


@pytest.fixture
def berlin(monkeypatch):
    """The device's zone is Europe/Berlin for this test (TZ, as systemd passes it)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_saved_clip_and_a_press_are_streamed_as_they_happen(app, unlocked, runtime_dir, berlin):
    write_events(runtime_dir, lambda bus: bus.emit("doorbell_pressed"))  # before: not replayed
    response = unlocked.get("/events", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    stream = Stream(response, app)
    try:
        time.sleep(0.1)  # the stream has taken note of what was there
        bus = write_events(runtime_dir, lambda bus: (
            bus.emit("motion_started", trigger="motion"),  # not for the viewer
            bus.clip_saved("20240501T120000Z-abcdef", {"trigger": "doorbell", "duration_s": 12.5,
                                                       "start_us": 1_714_564_800_000_000}, None),
            bus.emit("doorbell_pressed"),
        ))
        first = stream.next_event()
        assert first is not None, "no event arrived"
        assert first["event"] == "clip_saved" and first["id"] == f"{bus.run}-2"
        data = json.loads(first["data"])
        assert data["clip_id"] == "20240501T120000Z-abcdef" and data["trigger"] == "doorbell"
        assert data["duration_s"] == 12.5
        # the device's clock and zone label ("14:03:05 CET"), which the page shows, not the
        # browser's
        shown = datetime.fromtimestamp(data["time"], ZoneInfo("Europe/Berlin"))
        assert data["time_text"] == shown.strftime("%H:%M:%S %Z")
        assert shown.strftime("%Z") in ("CET", "CEST")
        second = stream.next_event()
        assert second["event"] == "doorbell_pressed" and second["id"] == f"{bus.run}-3"
        assert stream.next_event(timeout_s=0.3) is None  # nothing else, nothing old
    finally:
        stream.close()


def test_the_stream_ends_when_the_session_locks(app, client, identity, runtime_dir):
    session_id = unlock_directly(app, client, identity)
    stream = Stream(client.get("/events", buffered=False), app)
    try:
        time.sleep(0.1)
        assert not stream.ended.is_set()
        app.extensions["doorbell"].sessions.drop(session_id)  # "Lock now", or the idle timeout
        assert stream.ended.wait(5), "the stream went on after the session locked"
        assert client.get("/events").status_code == 401
    finally:
        stream.close()


def test_a_reconnect_resumes_after_the_last_event_it_got(app, unlocked, runtime_dir):
    bus = write_events(runtime_dir, lambda bus: [
        bus.clip_saved(f"clip-{n}", {"trigger": "motion", "duration_s": 3.0}, None)
        for n in range(3)])
    response = unlocked.get("/events", headers={"Last-Event-ID": f"{bus.run}-1"},
                            buffered=False)
    stream = Stream(response, app)
    try:
        ids = [stream.next_event()["id"], stream.next_event()["id"]]
        assert ids == [f"{bus.run}-2", f"{bus.run}-3"]
        assert stream.next_event(timeout_s=0.2) is None
    finally:
        stream.close()


def test_streams_are_bounded_in_number_and_duration(app, identity, runtime_dir, monkeypatch):
    monkeypatch.setattr(events_view, "MAX_STREAMS", 2)
    monkeypatch.setattr(events_view, "MAX_STREAM_S", 0.3)
    clients = [new_client(app) for _ in range(3)]
    for c in clients:
        unlock_directly(app, c, identity)
    streams = [Stream(c.get("/events", buffered=False), app) for c in clients[:2]]
    try:
        busy = clients[2].get("/events")  # one too many: come back in a minute
        assert busy.status_code == 200 and busy.get_data(as_text=True) == "retry: 60000\n\n"
        assert all(s.ended.wait(5) for s in streams)  # they end by themselves
        again = Stream(clients[2].get("/events", buffered=False), app)  # room again
        assert again.response.status_code == 200
        again.close()
    finally:
        for s in streams:
            s.close()
