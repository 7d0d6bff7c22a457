"""Live events for the open timeline page: server-sent events while the session stays unlocked.

The viewer never talks to the recorder: the recorder keeps its last 200 events in
`events.jsonl` in the runtime directory (camera.events, replaced atomically), and this stream
polls that file and sends each new `clip_saved`, `doorbell_pressed` and `privacy_mode` (switched
over MQTT) as an SSE message:

    id: <event id>
    event: clip_saved
    data: {"id": ..., "type": "clip_saved", "time": ..., "clip_id": ..., "trigger": ...}

A stream starts at the end of the file (nothing old is replayed), or after the browser's
`Last-Event-ID` if that event is still in the file. It ends when the session locks (it does not
count as activity, so an open tab does not keep the session unlocked), after MAX_STREAM_S, or at
once when the viewer stops; the browser then reconnects by itself (after `retry`). With
MAX_STREAMS event streams, or the viewer's whole stream budget (web/stream_budget.py), already
open, a new one gets only `retry: 60000` and ends: a browser gives up for good on an error
status, so "busy" is a 200 that says when to come back. Locked: 401 (access.data), and the page
reloads to the login page.
"""

import json
import time

from flask import Blueprint, Response, current_app, g, request

from doorbell.storage.exchange import EventLine, load_events

from .. import access
from ..display import local_time
from ..stream_budget import MAX_STREAMS as STREAM_BUDGET
from ..stream_budget import client_gone, stream_budget
from .common import viewer

blueprint = Blueprint("events", __name__)

STREAMED = ("clip_saved", "doorbell_pressed", "privacy_mode")
POLL_S = 0.25
KEEPALIVE_S = 15.0
MAX_STREAM_S = 600
MAX_STREAMS = STREAM_BUDGET  # event streams may use all of it
RETRY_MS = 3000
BUSY_RETRY_MS = 60_000


def message(event: EventLine) -> str:
    # EventLine.from_json let through only ids and types that cannot break out of their line;
    # json.dumps writes no newline. time_text: the device's clock and zone label, as every page.
    data = {**event.to_dict(), "time_text": local_time(event.time, seconds=True)}
    return (f"id: {event.id}\nevent: {event.type}\n"
            f"data: {json.dumps(data, sort_keys=True, separators=(',', ':'))}\n\n")


def _streams() -> dict:
    """Per-app count of open streams (the app holds the state, not this module)."""
    return current_app.extensions.setdefault("doorbell.events", {"open": 0})


@blueprint.get("/events")
@access.background
def stream():
    v = viewer()
    counter = _streams()
    session_id = g.session_id
    path = v.home.events_file
    last_id = request.headers.get("Last-Event-ID", "")
    budget = stream_budget(current_app)
    gone = client_gone(request.environ)

    def generate():
        # Here, not in the view: a stream never read holds nothing.
        release_slot = budget.try_open()
        with v.live_lock:
            busy = release_slot is None or counter["open"] >= MAX_STREAMS
            if not busy:
                counter["open"] += 1
        if busy:  # come back in a while (an error status would make the browser give up)
            if release_slot is not None:
                release_slot()
            yield f"retry: {BUSY_RETRY_MS}\n\n".encode()
            return
        try:
            seen = [e.id for e in load_events(path)]
            if last_id in seen:  # a reconnect: send what came after the last one it got
                seen = seen[: seen.index(last_id) + 1]
            seen_ids = set(seen)
            yield f"retry: {RETRY_MS}\n\n".encode()
            started = last_sent = time.monotonic()
            signature = None
            while (v.sessions.is_alive(session_id) and time.monotonic() - started < MAX_STREAM_S
                   and not gone()):
                try:
                    info = path.stat()
                    now_signature = (info.st_mtime_ns, info.st_size, info.st_ino)
                except FileNotFoundError:
                    now_signature = None
                if now_signature != signature:
                    signature = now_signature
                    events = load_events(path)
                    for event in events:
                        if event.id not in seen_ids and event.type in STREAMED:
                            yield message(event).encode()
                            last_sent = time.monotonic()
                    seen_ids = {e.id for e in events}
                if time.monotonic() - last_sent >= KEEPALIVE_S:
                    yield b": keep-alive\n\n"
                    last_sent = time.monotonic()
                if budget.wait_stopping(POLL_S):
                    return  # the viewer is stopping
        finally:
            with v.live_lock:
                counter["open"] -= 1
            release_slot()

    # direct_passthrough: the WSGI server writes (and flushes) each chunk as it comes; the
    # chunks must be bytes for that (gunicorn refuses str).
    return Response(generate(), mimetype="text/event-stream", direct_passthrough=True,
                    headers={"X-Accel-Buffering": "no"})
