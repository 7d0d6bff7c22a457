"""A video file as a camera: anything OpenCV's FFmpeg backend reads.

    source = VideoFileSource("door.mp4", loop=False, realtime=False)
    for frame in source.frames(): ...

Timestamps come from the frame index and the file's frame rate, and keep counting up across loops
so they stay monotonic. `realtime=True` paces frames at the file's rate (a stand-in camera for the
demo); False yields them as fast as they decode (`doorbell record --until-eof`, tests).

A file that becomes unreadable while it is read (cut short so that it no longer opens, replaced
by a video of another size, a decoder error) raises SourceLost, like an unplugged camera: the
recorder seals the open clip and opens the file again with back-off.
"""

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from doorbell.camera.frames import Frame, SourceLost

log = logging.getLogger(__name__)

FALLBACK_FPS = 25.0  # for files whose header has no usable frame rate


class SourceError(ValueError):
    """A source that cannot be opened; the message is one sentence for the user."""


class VideoFileSource:
    def __init__(self, path: str | Path, loop: bool = False, realtime: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        self.realtime = realtime
        self._capture = self._open()
        # Read the first frame now: a file OpenCV "opens" may still hold no decodable video, and
        # that should fail here, with the path in the message, not later inside the recorder.
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise SourceError(f"cannot open video file {self.path}: it has no readable frames")
        self._first: np.ndarray | None = first
        self.width, self.height = int(first.shape[1]), int(first.shape[0])
        self.fps = self._frame_rate()
        self.header_frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._closed = False
        self._warned_short = False

    def _open(self) -> cv2.VideoCapture:
        if not self.path.exists():
            raise SourceError(f"cannot open video file {self.path}: no such file")
        if not self.path.is_file():
            raise SourceError(f"cannot open video file {self.path}: it is not a regular file")
        # One decoding thread: a real-time 720p file needs less than a tenth of a core, and
        # each of FFmpeg's frame threads holds its own pictures (5 MB of RSS at 720p).
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open video file {self.path}: not a video OpenCV can decode")
        return capture

    def _frame_rate(self) -> float:
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or not 0.5 <= fps <= 1000:
            log.warning("%s has no usable frame rate (%s); assuming %s fps", self.path, fps,
                        FALLBACK_FPS)
            return FALLBACK_FPS
        return fps

    def _read(self) -> np.ndarray | None:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        try:
            ok, image = self._capture.read()
        except cv2.error:
            raise SourceLost(f"{self.path} can no longer be read") from None
        if not ok:
            return None
        if image.shape[:2] != (self.height, self.width):
            raise SourceLost(f"{self.path} was replaced while being read: its frames are "
                             f"{image.shape[1]}x{image.shape[0]} now, not "
                             f"{self.width}x{self.height}")
        return image

    def _rewind(self) -> bool:
        """Back to the first frame; reopens the file if seeking is not supported.

        A file that cannot be opened again (cut short, replaced by something else, removed)
        is a camera lost, not a bad argument: the recorder seals the clip and retries."""
        if self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            ok, image = self._capture.read()
            if ok:
                self._first = image
                return True
        self._capture.release()
        try:
            self._capture = self._open()
        except SourceError as exc:
            raise SourceLost(f"{exc} any more") from None
        self._first = self._read()
        return self._first is not None

    def frames(self) -> Iterator[Frame]:
        started = time.monotonic()
        index = 0  # frames yielded so far, across loops: pts stay monotonic
        in_this_pass = 0
        while not self._closed:
            image = self._read()
            if image is None:
                if 0 < in_this_pass < self.header_frame_count and not self._warned_short:
                    self._warned_short = True  # once, not on every loop
                    log.warning("%s ended after %d of the %d frames its header announces",
                                self.path, in_this_pass, self.header_frame_count)
                if not self.loop or in_this_pass == 0 or not self._rewind():
                    return
                in_this_pass = 0
                continue
            if self.realtime:
                delay = started + index / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield Frame(image, round(index * 1_000_000 / self.fps))
            index += 1
            in_this_pass += 1

    def close(self) -> None:
        self._closed = True
        self._capture.release()
