"""The one small interface every camera speaks: an iterator of timestamped frames.

A source (the synthetic scene, a video file, a V4L2 device, an RTSP stream, picamera2) yields
`Frame`s; the recorder pulls from `frames()` and calls `close()` when it is done. Timestamps are
monotonic microseconds since the source started, so clips, pre-roll and post-roll never depend on
the wall clock (which can jump on a Pi without a real-time clock).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np


class PixelFormat(Enum):
    BGR = "bgr"  # uint8, H x W x 3: what OpenCV captures and the software encoder takes
    LUMA = "luma"  # uint8, H x W: a Y plane (picamera2's small analysis stream)


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray  # uint8 in `format`'s layout, owned by the consumer once yielded
    pts_us: int  # monotonic microseconds since the source started
    format: PixelFormat = PixelFormat.BGR

    def __post_init__(self):
        expected_ndim = 3 if self.format is PixelFormat.BGR else 2
        if self.image.ndim != expected_ndim:
            raise ValueError(f"a {self.format.value} frame must have {expected_ndim} "
                             f"dimensions, got an image of shape {self.image.shape}")

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@runtime_checkable
class FrameSource(Protocol):
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends (or forever); raise SourceLost if it vanishes."""
        ...

    def close(self) -> None:
        """Release the device or file; `frames()` stops soon after. Safe to call twice."""
        ...


class SourceLost(Exception):  # noqa: N818 - the name says what happened, not that it is an error
    """The camera vanished mid-stream (unplugged, stream dropped). The recorder retries."""
