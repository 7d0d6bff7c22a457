"""Live frames for the viewer: the latest masked frame as a JPEG in the runtime directory.

The recorder opens no socket. It replaces `live.jpg` atomically a few times a second in a
tmpfs (/dev/shm or systemd's RuntimeDirectory), and the viewer reads it. The frame has already
been through the privacy mask, so masked areas never reach the live view either.
"""

import os
import stat
from pathlib import Path

import cv2
import numpy as np

from doorbell.storage.exchange import RecorderStatus, replace_file


def prepare_runtime_dir(path: Path) -> None:
    """Create the runtime directory, or accept an existing one only if it is really ours."""
    path.mkdir(mode=0o750, parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o002:
        raise PermissionError(
            f"{path} is not a private directory of this user: refusing to put live frames there"
        )


class LiveFramePublisher:
    def __init__(self, path: Path, fps: float, width: int, jpeg_quality: int):
        self.path = path
        self._interval_s = 1.0 / fps
        self._width = width
        self._quality = jpeg_quality
        self._last_s: float | None = None

    def due(self, now_s: float) -> bool:
        """Is a frame wanted now (the live rate)? Ask before making the picture."""
        return self._last_s is None or now_s - self._last_s >= self._interval_s

    def maybe_publish(self, image: np.ndarray, now_s: float) -> bool:
        if not self.due(now_s):
            return False
        return self.publish(image, now_s)

    def publish(self, image: np.ndarray, now_s: float) -> bool:
        self._last_s = now_s
        height = round(image.shape[0] * self._width / image.shape[1]) // 2 * 2
        small = cv2.resize(image, (self._width, height), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if ok:
            replace_file(self.path, jpeg.tobytes())
        return bool(ok)

    def publish_next(self) -> None:
        """Publish the next frame whatever the rate (it is the first with new settings)."""
        self._last_s = None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class StatusPublisher:
    """`recorder.json` (a storage.exchange.RecorderStatus): alive, state, last frame time, frame
    rate. Nothing footage-derived."""

    def __init__(self, path: Path):
        self.path = path

    def publish(self, status: RecorderStatus) -> None:
        status.write(self.path)
