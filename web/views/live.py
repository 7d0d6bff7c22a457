"""Live view: the recorder's latest masked frame, as MJPEG, while the session stays unlocked.

The viewer never touches the camera: it re-sends the JPEG the recorder keeps in the runtime
directory (a tmpfs). Watching is audited once per live session (`live.view`, with the number of
streams open), not per frame or reconnection: web/coalesced_audit.py.
"""

import time

from flask import Blueprint, Response, abort, current_app, g, render_template, request
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from doorbell.storage.exchange import RecorderStatus

from .. import access
from ..stream_budget import BUSY_RETRY_S, BUSY_SENTENCE, client_gone, held, stream_budget
from .common import record_access, viewer

blueprint = Blueprint("live", __name__, url_prefix="/live")

MAX_STREAMS = 4  # MJPEG is heavy on the network; all streams: web/stream_budget.py
MAX_STREAM_S = 600  # the page reconnects; a forgotten tab does not hold a thread for ever
BOUNDARY = "doorbell-frame"
LIVE = "live"  # the audit subject: the stream and single frames are one live session


@blueprint.get("")
@access.page
def page():
    recorder = RecorderStatus.load_or_none(viewer().home.recorder_status_file)
    privacy = recorder is not None and recorder.in_privacy_mode(time.time())
    return render_template("live.html", privacy_mode=privacy)


@blueprint.get("/frame.jpg")
@access.background
def frame():
    try:
        data = viewer().home.live_frame_file.read_bytes()
    except FileNotFoundError:
        abort(404, "No live frame: the recorder is not running.")
    record_access(LIVE, "live.view", via="frame")
    return Response(data, mimetype="image/jpeg")


def _busy(sentence: str) -> Response:
    """503 with Retry-After: the page's script waits and reconnects."""
    body = render_template("error.html", error=ServiceUnavailable(sentence))
    return Response(body, 503, {"Retry-After": str(BUSY_RETRY_S)}, mimetype="text/html")


@blueprint.get("/stream")
@access.background
def stream():
    v = viewer()
    budget = stream_budget(current_app)
    release_slot = budget.try_open()
    if release_slot is None:
        return _busy(BUSY_SENTENCE)
    with v.live_lock:
        if v.live_viewers >= MAX_STREAMS:
            release_slot()
            return _busy(f"Too many live viewers at once (at most {MAX_STREAMS}); this page "
                         "tries again by itself in a while.")
        v.live_viewers += 1
        count = v.live_viewers

    def release() -> None:
        with v.live_lock:
            v.live_viewers -= 1
        release_slot()

    session_id = g.session_id
    try:
        record_access(LIVE, "live.view", via="stream", viewers=count)
    except HTTPException:
        release()
        raise
    path = v.home.live_frame_file
    interval_s = 1.0 / max(v.settings.live.fps, 0.5)
    gone = client_gone(request.environ)

    def frames():
        last_mtime = None
        started = time.monotonic()
        try:
            while (v.sessions.is_alive(session_id) and time.monotonic() - started < MAX_STREAM_S
                   and not gone()):
                try:
                    mtime = path.stat().st_mtime_ns
                    if mtime != last_mtime:
                        data = path.read_bytes()
                        last_mtime = mtime
                        yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                               f"Content-Length: {len(data)}\r\n\r\n").encode() + data + b"\r\n"
                except FileNotFoundError:
                    pass
                if budget.wait_stopping(interval_s / 2):
                    return  # the viewer is stopping
        finally:
            # The page reconnects a stream that ended: still the same live session.
            v.access_audit.seen(session_id, LIVE)

    # held(): the slot comes back however the stream ends, even if it was never read.
    return Response(held(frames(), release),
                    mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                    direct_passthrough=True)
