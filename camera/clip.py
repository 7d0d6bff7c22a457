"""One clip being recorded: encoded packets -> fragmented MP4 -> the store's encrypting writer.

It also keeps what the clip's metadata and thumbnail need: the frame with the most motion
(downscaled, in RAM only) and a summary of the motion seen. Both are encrypted at `finish`.
"""

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


class ActiveClip:
    def __init__(
        self,
        writer: ClipWriter,
        width: int,
        height: int,
        fps: float,
        wall_start_us: int,
        camera_name: str,
    ):
        self.writer = writer
        self.clip_id = writer.clip_id
        self._mp4 = FragmentedMp4Writer(writer.video, width, height, fps)
        self._wall_start_us = wall_start_us
        self._camera_name = camera_name
        self._fps = fps
        self._size = (width, height)
        self._thumbnail: np.ndarray | None = None
        self._thumbnail_score = -1.0
        self._motion_frames = 0
        self._frames = 0
        self._max_score = 0.0
        self._score_sum = 0.0
        self._largest_box_fraction = 0.0

    @property
    def first_pts_us(self) -> int | None:
        return self._mp4.first_pts_us

    def write(self, packet: EncodedPacket) -> None:
        self._mp4.write(packet)

    def note_frame(self, image: np.ndarray, score: float, moving: bool, boxes) -> None:
        """Account for one analysed frame (already masked)."""
        self._frames += 1
        if moving:
            self._motion_frames += 1
            self._score_sum += score
            self._max_score = max(self._max_score, score)
            area = image.shape[0] * image.shape[1]
            for _x, _y, w, h in boxes:
                self._largest_box_fraction = max(self._largest_box_fraction, w * h / area)
        if score > self._thumbnail_score or self._thumbnail is None:
            self._thumbnail_score = score
            height = round(image.shape[0] * THUMBNAIL_WIDTH / image.shape[1]) // 2 * 2
            self._thumbnail = cv2.resize(
                image, (THUMBNAIL_WIDTH, height), interpolation=cv2.INTER_AREA
            )

    def finish(self, trigger: str, presses_wall_us: list[int]) -> IndexedClip:
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
            "trigger": trigger,
            "doorbell_presses": [iso_utc(t) for t in presses_wall_us],
            "camera": self._camera_name,
            "width": self._size[0],
            "height": self._size[1],
            "fps": self._fps,
            "motion": {
                "frames_analysed": self._frames,
                "frames_with_motion": self._motion_frames,
                "max_score": round(self._max_score, 4),
                "mean_score": round(self._score_sum / self._motion_frames, 4)
                if self._motion_frames
                else 0.0,
                "largest_box_fraction": round(self._largest_box_fraction, 4),
            },
        }
        thumbnail = None
        if self._thumbnail is not None:
            ok, jpeg = cv2.imencode(".jpg", self._thumbnail, [cv2.IMWRITE_JPEG_QUALITY, 80])
            thumbnail = jpeg.tobytes() if ok else None
        self._thumbnail = None
        return self.writer.finish(thumbnail, metadata)

    def abandon(self) -> None:
        self.writer.abandon()
