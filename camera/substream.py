"""Motion on a camera's second, low-resolution stream (`camera.detect_source`), read in a thread.

    detect = DetectStream(H264Demuxer(substream_url), "RTSP substream rtsp://***@host/sub")
    detect.start()
    main_clock.observe(packet.dts_us, monotonic_us())         # the recorded stream, per packet
    for picture, pts_us in detect.ready(main_dts_us, main_clock): ...
    detect.close()

An IP camera sends its main stream (recorded) and its substream (a few hundred pixels wide,
cheap to decode) on two RTSP sessions, each with its own clock starting at its first keyframe.
They are matched by time: packets are sent in decode order as the camera makes them, so a
packet's arrival time minus its decode timestamp is the stream's clock offset plus its delay on
the way; the delay is never negative, so the smallest arrival - dts seen recently (`ClockOffset`,
over the last 10 to 20 s, which also follows a camera clock that drifts against ours) is the
offset. A substream picture at `pts_us` is then at `pts_us + substream offset - main offset` on
the main stream's timeline, which is the one the recorder, the pre-roll ring and the clips run
on. (A main stream with B-frames shifts by its reordering delay, a frame or two, at most.)

The thread decodes the substream as it comes (its own demuxer and decoder, so the two streams use
both cores of a Pi) and keeps up to `MAX_QUEUED_S` of pictures; `ready()` hands over those
whose time the main stream has reached. A substream that fails, ends or sends no picture for
`stale_after_s` raises SourceLost from `ready()`: the recorder seals the clip and reconnects
both streams with back-off, exactly as when the main stream goes.
"""

import threading
import time
from collections import deque

import av

from .demux import H264Demuxer
from .frames import SourceLost

OFFSET_WINDOW_US = 10_000_000  # the minimum is kept over the current and the previous window
# Opening a stream reads its first second or so before the first packet is handed over, which
# then come in a burst: until a stream has flowed this long its offset is not known yet.
SETTLE_US = 2_000_000
MAX_QUEUED_S = 10.0


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class ClockOffset:
    """A stream's clock offset (arrival - dts, microseconds): the least seen lately."""

    def __init__(self, window_us: int = OFFSET_WINDOW_US):
        self._window_us = window_us
        self._first_us: int | None = None
        self._last_us: int | None = None
        self._window_start_us: int | None = None
        self._current: int | None = None  # least in the window now filling
        self._previous: int | None = None  # least in the window before

    def observe(self, dts_us: int, arrival_us: int) -> None:
        offset = arrival_us - dts_us
        self._last_us = arrival_us
        if self._window_start_us is None:
            self._window_start_us = self._first_us = arrival_us
        elif arrival_us - self._window_start_us >= self._window_us:
            self._previous, self._current = self._current, None
            self._window_start_us = arrival_us
        self._current = offset if self._current is None else min(self._current, offset)

    @property
    def settled(self) -> bool:
        """The stream has flowed for SETTLE_US: its first burst is behind it."""
        return self._first_us is not None and self._last_us - self._first_us >= SETTLE_US

    @property
    def offset_us(self) -> int:
        if self._current is None:
            raise RuntimeError("no packet has been observed yet")
        return self._current if self._previous is None else min(self._current, self._previous)


class DetectStream:
    """The substream's decoded pictures, timed on its own clock, from a reading thread."""

    def __init__(self, demuxer: H264Demuxer, description: str, stale_after_s: float = 5.0):
        self.demuxer = demuxer
        self.description = description
        self.fps = demuxer.fps or 15.0
        self._stale_after_us = round(stale_after_s * 1_000_000)
        self._clock = ClockOffset()
        self._pictures: deque[tuple[av.VideoFrame, int]] = deque(
            maxlen=max(2, round(MAX_QUEUED_S * self.fps)))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._failure: str | None = None
        self._started_us = 0
        self._last_picture_us: int | None = None
        self._thread = threading.Thread(target=self._read, name="detect-stream", daemon=True)

    def start(self) -> None:
        self._started_us = monotonic_us()
        self._thread.start()

    def _read(self) -> None:
        demuxer = self.demuxer
        try:
            for packet, raw in demuxer.packets():
                if self._stopping.is_set():
                    return
                arrival_us = monotonic_us()
                pictures = [(picture, demuxer.to_us(picture.pts))
                            for picture in demuxer.decode(raw) if picture.pts is not None]
                with self._lock:
                    self._clock.observe(packet.dts_us, arrival_us)
                    if pictures:
                        if self._clock.settled:  # earlier ones cannot be placed in time
                            self._pictures.extend(pictures)
                        self._last_picture_us = arrival_us
        except SourceLost as exc:
            self._failure = str(exc)
        finally:
            demuxer.close()

    def ready(self, main_dts_us: int, main_clock: ClockOffset) -> list[tuple[av.VideoFrame, int]]:
        """The pictures at or before `main_dts_us` on the main timeline (every main packet up
        to that moment has arrived), with their main-timeline times, oldest first; none
        until `main_clock` has settled."""
        if self._failure is not None:
            raise SourceLost(f"the motion substream: {self._failure}")
        now_us = monotonic_us()
        with self._lock:
            last_us = self._last_picture_us if self._last_picture_us is not None else \
                self._started_us
            if now_us - last_us > self._stale_after_us:
                raise SourceLost(f"{self.description} sent no picture for "
                                 f"{self._stale_after_us / 1e6:.0f} s")
            if not self._clock.settled or not main_clock.settled:
                return []
            shift_us = self._clock.offset_us - main_clock.offset_us
            ready = []
            while self._pictures and self._pictures[0][1] + shift_us <= main_dts_us:
                picture, pts_us = self._pictures.popleft()
                ready.append((picture, pts_us + shift_us))
        return ready

    def close(self) -> None:
        """Stop reading; the thread closes its demuxer (within one packet, or its read
        timeout if the substream has stopped)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        elif self._thread.ident is None:
            self.demuxer.close()
