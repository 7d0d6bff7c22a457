"""Live events for the open timeline page: server-sent events while the session stays unlocked.

The viewer never talks to the recorder: the recorder keeps its last 200 events in
`events.jsonl` in the runtime directory (camera.events, replaced atomically), and this stream
polls that file and sends each new `clip_saved` and `doorbell_pressed` as an SSE message:

    id: <event id>
    event: clip_saved
    data: {"id": ..., "type": "clip_saved", "time": ..., "clip_id": ..., "trigger": ...}

A stream starts at the end of the file (nothing old is replayed), or after the browser's
`Last-Event-ID` if that event is still in the file. It ends when the session locks (it does not
count as activity, so an open tab does not keep the session unlocked) or after MAX_STREAM_S; the
browser then reconnects by itself (after `retry`). With MAX_STREAMS already open, a new one gets
only `retry: 60000` and ends. Locked: 401 (access.data), and the page reloads to the
login page.
"""

import json
import time

from flask import Blueprint, Response, current_app, g, request

from .. import access
from .common import viewer

blueprint = Blueprint("events", __name__)

EVENTS_FILE = "events.jsonl"  # camera.events.EVENTS_FILE: the viewer does not import camera
STREAMED = ("clip_saved", "doorbell_pressed")
POLL_S = 0.25
KEEPALIVE_S = 15.0
MAX_STREAM_S = 600
MAX_STREAMS = 8
RETRY_MS = 3000
BUSY_RETRY_MS = 60_000


def read_events(path) -> list[dict]:
    """The events in the file, oldest first (a missing or half-read file is no events)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("id"), str):
            events.append(event)
    return events


def message(event: dict) -> str:
    data = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n"


def _streams() -> dict:
    """Per-app count of open streams (the app holds the state, not this module)."""
    return current_app.extensions.setdefault("doorbell.events", {"open": 0})


@blueprint.get("/events")
@access.data
def stream():
    v = viewer()
    counter = _streams()
    session_id = g.session_id
    path = v.home.run_dir / EVENTS_FILE
    last_id = request.headers.get("Last-Event-ID", "")

    def generate():
        with v.live_lock:
            busy = counter["open"] >= MAX_STREAMS
            if not busy:
                counter["open"] += 1  # here, not in the view: a stream never read holds none
        if busy:  # come back in a while (an error status would make the browser give up)
            yield f"retry: {BUSY_RETRY_MS}\n\n".encode()
            return
        try:
            seen = [e["id"] for e in read_events(path)]
            if last_id in seen:  # a reconnect: send what came after the last one it got
                seen = seen[: seen.index(last_id) + 1]
            seen_ids = set(seen)
            yield f"retry: {RETRY_MS}\n\n".encode()
            started = last_sent = time.monotonic()
            signature = None
            while v.sessions.is_alive(session_id) and time.monotonic() - started < MAX_STREAM_S:
                try:
                    info = path.stat()
                    now_signature = (info.st_mtime_ns, info.st_size, info.st_ino)
                except FileNotFoundError:
                    now_signature = None
                if now_signature != signature:
                    signature = now_signature
                    events = read_events(path)
                    for event in events:
                        if event["id"] not in seen_ids and event.get("type") in STREAMED:
                            yield message(event).encode()
                            last_sent = time.monotonic()
                    seen_ids = {e["id"] for e in events}
                if time.monotonic() - last_sent >= KEEPALIVE_S:
                    yield b": keep-alive\n\n"
                    last_sent = time.monotonic()
                time.sleep(POLL_S)
        finally:
            with v.live_lock:
                counter["open"] -= 1

    # direct_passthrough: the WSGI server writes (and flushes) each chunk as it comes; the
    # chunks must be bytes for that (gunicorn refuses str).
    return Response(generate(), mimetype="text/event-stream", direct_passthrough=True,
                    headers={"X-Accel-Buffering": "no"})
