"""How many streams may be open at once, so that they can never starve the pages, and ending
them when the viewer stops.

The viewer is one gunicorn worker with WORKER_THREADS threads (web/server.py), and every open
stream (the timeline's live events, GET /events; the live view, GET /live/stream) holds one of
them for as long as it stays open, up to ten minutes before the page reconnects. So streams
together get at most MAX_STREAMS threads: HEADROOM_THREADS always stay free for pages, logins and
clip Range requests, however many tabs are open. A stream beyond the budget is refused at once
(a 503 with Retry-After for the live view; for live events, which a browser would never retry
after an error status, a `retry:` of BUSY_RETRY_S), and the page tries again later.

A stream also ends as soon as its client goes away (`client_gone`): a closed tab gives its
thread back within a poll, not at the next write, which for a live view whose recorder stopped
or a quiet timeline could be minutes away.

When gunicorn is told to stop (SIGTERM, SIGINT, SIGQUIT), `stop()` wakes every stream, which
then ends at once instead of holding the worker past its graceful timeout (gunicorn would then
SIGKILL it). Streams wait with `wait_stopping()` instead of time.sleep() for that.

The budget belongs to the app (`stream_budget(app)`), not to this module.
"""

import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator

WORKER_THREADS = 16
HEADROOM_THREADS = 4
MAX_STREAMS = WORKER_THREADS - HEADROOM_THREADS
BUSY_RETRY_S = 30
BUSY_SENTENCE = ("Too many live streams are open on this doorbell at once (at most "
                 f"{MAX_STREAMS}); this page tries again by itself in a while.")


class StreamBudget:
    def __init__(self, limit: int = MAX_STREAMS):
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def open_streams(self) -> int:
        return self._open

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def try_open(self) -> Callable[[], None] | None:
        """A slot for one stream (call the returned release() once it ends), or None when the
        budget is spent or the viewer is stopping."""
        with self._lock:
            if self._open >= self.limit or self._stopping.is_set():
                return None
            self._open += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if not released.is_set():
                    released.set()
                    self._open -= 1

        return release

    def wait_stopping(self, seconds: float) -> bool:
        """Sleep for `seconds`, or less if the viewer starts stopping; True if it is."""
        return self._stopping.wait(seconds)

    def stop(self) -> None:
        """The viewer is stopping: every stream ends, and no new one opens."""
        self._stopping.set()


class HeldStream:
    """A response body that gives its stream slot back when it ends, when the server closes it
    (the client went away), or when it is closed before it was ever read; once only."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]):
        self._chunks = chunks
        self._release = release
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._release()


def held(chunks: Iterable[bytes], release: Callable[[], None]) -> HeldStream:
    return HeldStream(iter(chunks), release)


def client_gone(environ: dict) -> Callable[[], bool]:
    """A check that the stream's client closed its connection. A browser sends nothing on a
    connection whose response is still streaming, so readable means closed (an end of file,
    or TLS's close_notify). Without gunicorn's socket (the Flask test client): never."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return lambda: False

    def gone() -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            if isinstance(sock, ssl.SSLSocket):
                return True
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):  # reset, or already closed
            return True

    return gone


def stream_budget(app) -> StreamBudget:
    """The app's stream budget (made on first use; dict.setdefault is atomic)."""
    return app.extensions.setdefault("doorbell.streams", StreamBudget())
