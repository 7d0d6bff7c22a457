"""One clip: what it is about (`ClipSession`) and the file it is written to (`ActiveClip`).

A `ClipSession` starts when the state machine starts a clip and owns everything the clip's
metadata and thumbnail need: why it started, the doorbell presses during it, the motion summary
and the frame with the most motion (downscaled, in RAM only). It may begin before the clip's
first packet has been written (picamera2's ring releases packets seconds late).

An `ActiveClip` is the file: encoded packets -> fragmented MP4 -> the store's encrypting writer.
At `finish` the session's thumbnail and metadata are encrypted beside it.
"""

from collections.abc import Callable
from datetime import UTC, datetime

import cv2
import numpy as np

from doorbell.storage.clipwriter import ClipWriter
from doorbell.storage.index import IndexedClip

from .encoder import EncodedPacket
from .mp4 import FragmentedMp4Writer

THUMBNAIL_WIDTH = 480


def iso_utc(wall_us: int) -> str:
    return datetime.fromtimestamp(wall_us / 1e6, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def thumbnail_of(image: np.ndarray) -> np.ndarray:
    """`image` (already masked) at THUMBNAIL_WIDTH, same aspect."""
    height = round(image.shape[0] * THUMBNAIL_WIDTH / image.shape[1]) // 2 * 2
    return cv2.resize(image, (THUMBNAIL_WIDTH, height), interpolation=cv2.INTER_AREA)


def thumbnail_jpeg(image: np.ndarray) -> bytes | None:
    """`image` (already masked) as a THUMBNAIL_WIDTH JPEG: clip thumbnails, MQTT snapshots."""
    ok, jpeg = cv2.imencode(".jpg", image if image.shape[1] == THUMBNAIL_WIDTH
                            else thumbnail_of(image), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return jpeg.tobytes() if ok else None


class ClipSession:
    """The story of one clip: trigger, presses, motion summary and thumbnail."""

    def __init__(self, trigger: str):
        self.trigger = trigger  # "motion", "doorbell" or "continued"
        self.presses_wall_us: list[int] = []
        self._thumbnail: np.ndarray | None = None
        self._thumbnail_score = -1.0
        self._frames = 0
        self._motion_frames = 0
        self._max_score = 0.0
        self._score_sum = 0.0
        self._largest_box_fraction = 0.0

    def press(self, wall_us: int) -> None:
        """A doorbell press during this clip: it becomes a doorbell clip."""
        self.presses_wall_us.append(wall_us)
        self.trigger = "doorbell"

    def note_frame(self, analysis_size: tuple[int, int], score: float, moving: bool, boxes,
                   full_image: Callable[[], np.ndarray]) -> None:
        """Account for one analysed frame. `boxes` are in `analysis_size` pixels;
        `full_image()` gives the masked full frame, asked for only for a better thumbnail."""
        self._frames += 1
        if moving:
            self._motion_frames += 1
            self._score_sum += score
            self._max_score = max(self._max_score, score)
            area = analysis_size[0] * analysis_size[1]
            for _x, _y, w, h in boxes:
                self._largest_box_fraction = max(self._largest_box_fraction, w * h / area)
        if score > self._thumbnail_score or self._thumbnail is None:
            self._thumbnail_score = score
            self._thumbnail = thumbnail_of(full_image())

    def thumbnail_jpeg(self) -> bytes | None:
        return None if self._thumbnail is None else thumbnail_jpeg(self._thumbnail)

    def motion_summary(self) -> dict:
        return {
            "frames_analysed": self._frames,
            "frames_with_motion": self._motion_frames,
            "max_score": round(self._max_score, 4),
            "mean_score": round(self._score_sum / self._motion_frames, 4)
            if self._motion_frames else 0.0,
            "largest_box_fraction": round(self._largest_box_fraction, 4),
        }


class ActiveClip:
    """The clip file being written: packets in, an indexed clip out at `finish`."""

    def __init__(self, writer: ClipWriter, width: int, height: int, fps: float,
                 wall_start_us: int, camera_name: str):
        self.writer = writer
        self.clip_id = writer.clip_id
        self._mp4 = FragmentedMp4Writer(writer.video, width, height, fps)
        self._wall_start_us = wall_start_us
        self._camera_name = camera_name
        self._fps = fps
        self._size = (width, height)

    @property
    def first_pts_us(self) -> int | None:
        return self._mp4.first_pts_us

    def write(self, packet: EncodedPacket) -> None:
        self._mp4.write(packet)

    def finish(self, session: ClipSession) -> IndexedClip:
        self._mp4.close()
        first = self._mp4.first_pts_us or 0
        last = self._mp4.last_pts_us or first
        duration_s = (last - first) / 1e6 + 1.0 / self._fps
        start_wall = self._wall_start_us
        metadata = {
            "start": iso_utc(start_wall),
            "end": iso_utc(start_wall + round(duration_s * 1e6)),
            "start_us": start_wall,
            "duration_s": round(duration_s, 3),
            "trigger": session.trigger,
            "doorbell_presses": [iso_utc(t) for t in session.presses_wall_us],
            "camera": self._camera_name,
            "width": self._size[0],
            "height": self._size[1],
            "fps": self._fps,
            "motion": session.motion_summary(),
        }
        return self.writer.finish(session.thumbnail_jpeg(), metadata)

    def abandon(self) -> None:
        self.writer.abandon()
