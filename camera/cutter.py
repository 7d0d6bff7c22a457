"""Cutting the encoded stream into clips, on packet timestamps alone.

The state machine decides on analysis frames (START, STOP, SPLIT at a frame's pts); the pipeline
releases packets, at once (software) or seconds later (picamera2's ring). The cutter joins the
two, so every camera gets the same clips:

 * START at t: the pipeline releases from a keyframe at least `pre_roll_s` before t; the clip's
   file begins at the first fresh keyframe released (fresh: encoded under the masks in force).
 * STOP at t: the clip holds the packets before t; it is sealed when the packet at t comes out
   (late, for picamera2: its ring's close_output() drops what it holds, so the cutter waits).
 * SPLIT at t: the clip is sealed at the first keyframe at or after t, and a "continued" clip
   begins with that keyframe: no gap, no overlap, each plays on its own.
 * A START while a stopped clip is still draining simply keeps that clip going.
 * A packet marked `new_stream` (the passthrough pipeline starts re-encoding when a privacy mask
   is drawn) seals the clip; a "continued" clip begins with it, as at a split.

Notes and presses go to the session of the clip being decided (the newest), which may be ahead
of the clip being written.
"""

import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import IndexedClip

from .clip import ActiveClip, ClipSession
from .pipeline import VideoPipeline
from .statemachine import Action, Decision

log = logging.getLogger("doorbell.recorder")


class ClipCutter:
    def __init__(self, pipeline: VideoPipeline, store: ClipStore, camera_name: str,
                 fsync_interval_s: float, to_wall_us: Callable[[int], int],
                 anchor_start: Callable[[int], None]):
        self.pipeline = pipeline
        self.store = store
        self.camera_name = camera_name
        self.fsync_interval_s = fsync_interval_s
        self._to_wall_us = to_wall_us
        self._anchor_start = anchor_start  # the state machine counts max_clip_s from here
        self._open = False  # the pipeline is releasing packets to us
        self._file: ActiveClip | None = None
        self._writing: ClipSession | None = None  # the session of the clip being written
        self._deciding: ClipSession | None = None  # the session notes and presses go to
        self._stop_at_us: int | None = None
        self._splits: deque[tuple[int, ClipSession]] = deque()
        self.saved: list[IndexedClip] = []  # sealed since the last take_saved()

    @property
    def recording_id(self) -> str | None:
        return self._file.clip_id if self._file is not None else None

    @property
    def busy(self) -> bool:
        """A clip is open or draining (the encoder must not be replaced now)."""
        return self._open

    # -- decisions --------------------------------------------------------------------------------

    def follow(self, decision: Decision, pts_us: int, pre_roll_s: float) -> None:
        """Do what the state machine decided at the frame at `pts_us`."""
        if decision.action is Action.START:
            self.start(pts_us, decision.trigger, pre_roll_s)
        elif decision.action is Action.STOP:
            self.stop(pts_us)
        elif decision.action is Action.SPLIT:
            self.split(pts_us)

    def start(self, pts_us: int, trigger: str, pre_roll_s: float) -> None:
        if self._open:
            self._stop_at_us = None  # still draining: the clip it drains simply goes on
            self._deciding = self._splits[-1][1] if self._splits else self._writing
            return
        self._open = True
        self._writing = self._deciding = ClipSession(trigger)
        self._stop_at_us = None
        self._splits.clear()
        self.pipeline.open_clip(pts_us - round(pre_roll_s * 1_000_000))

    def stop(self, pts_us: int) -> None:
        if self._open:
            self._stop_at_us = pts_us
            self._deciding = None

    def split(self, pts_us: int) -> None:
        if self._open:
            self._deciding = ClipSession("continued")
            self._splits.append((pts_us, self._deciding))

    def note(self, analysis_size: tuple[int, int], score: float, moving: bool, boxes,
             full_image: Callable[[], np.ndarray]) -> None:
        if self._deciding is not None:
            self._deciding.note_frame(analysis_size, score, moving, boxes, full_image)

    def press(self, wall_us: int) -> None:
        if self._deciding is not None:
            self._deciding.press(wall_us)

    # -- packets ----------------------------------------------------------------------------------

    def pump(self) -> None:
        """Write what the pipeline released; seal and begin clips at their boundaries."""
        if not self._open:
            return
        for packet in self.pipeline.released():
            if self._splits and packet.keyframe and packet.pts_us >= self._splits[0][0] and \
                    (self._stop_at_us is None or packet.pts_us < self._stop_at_us):
                _, session = self._splits.popleft()
                self._seal()
                self._writing = session
            if self._stop_at_us is not None and packet.pts_us >= self._stop_at_us:
                self._finish()
                return
            if self._file is not None and packet.new_stream:
                self._continue_in_new_file()  # another encoder's stream (a mask was drawn)
            if self._file is None:
                if not packet.keyframe or packet.pts_us < self.pipeline.fresh_from_us:
                    continue  # under old masks, or mid-group: begin at the next fresh keyframe
                self._begin(packet.pts_us)
            self._file.write(packet)
        if self._file is not None:
            self._file.writer.sync_if_due()

    def _continue_in_new_file(self) -> None:
        """Seal the clip and go on in a "continued" one from this packet (a keyframe)."""
        session = ClipSession("continued")
        if self._deciding is self._writing:
            self._deciding = session
        self._seal()
        self._writing = session

    def close(self) -> None:
        """Shutdown or camera lost: everything still held back goes into the clip, then seal."""
        if not self._open:
            return
        self._stop_at_us = None
        self.pipeline.drain()
        self.pump()
        self._finish()

    def abandon(self) -> None:
        """A write failed: keep what reached the disk (reconcile finds it), forget the rest."""
        file, self._file = self._file, None
        try:
            if file is not None:
                file.abandon()
        except OSError:
            pass  # its last buffered bytes do not fit either (a full disk): the prefix stays
        finally:
            self._reset()

    def _begin(self, first_pts_us: int) -> None:
        wall_start_us = self._to_wall_us(first_pts_us)
        writer = self.store.begin_clip(wall_start_us, self.fsync_interval_s)
        self._file = ActiveClip(writer, *self.pipeline.size, self.pipeline.fps, wall_start_us,
                                self.camera_name)
        if self._writing.trigger != "continued":
            self._anchor_start(first_pts_us)
        log.info("clip %s started (%s)", writer.clip_id, self._writing.trigger)

    def _seal(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            indexed = file.finish(self._writing)
        except OSError:
            file.abandon()
            raise
        self.saved.append(indexed)
        log.info("clip %s saved (%s, %d bytes)", indexed.id, self._writing.trigger,
                 indexed.size_bytes)

    def _finish(self) -> None:
        """The clip has everything up to its end: stop the release, and seal it."""
        try:
            self._seal()
        finally:
            self._reset()

    def _reset(self) -> None:
        self._open = False
        self._writing = self._deciding = None
        self._stop_at_us = None
        self._splits.clear()
        self.pipeline.close_clip()

    def take_saved(self) -> list[IndexedClip]:
        saved, self.saved = self.saved, []
        return saved
