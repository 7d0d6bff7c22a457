"""The seam between a camera and the recorder: `VideoPipeline`.

Every camera reaches the recorder as a pipeline with the same few duties, whoever encodes:

    frames()        masked frames to analyse, in order (the privacy mask is already burnt in)
    full_image()    the masked full-size picture of the frame being analysed (thumbnail, live)
    open_clip(t)    start releasing the encoded stream from a keyframe at or before t (pre-roll)
    released()      the encoded packets released since the last call, in order
    close_clip()    stop releasing
    drain()         release everything still held back (shutdown, camera lost)
    set_masks(...)  new privacy masks from the next frame; `fresh_from_us` says from which
    set_detect_width(w) analysis frames this wide from the next frame (no reconnection)
    set_recording(...)  new pre-roll length at once, a new encoder between clips

Two implementations:

    SoftwarePipeline  (camera/software.py)  any FrameSource -> PrivacyMask -> H264Encoder
                                            (PyAV libx264) -> PacketRing; released at once
    PiCameraPipeline  (camera/picamera.py)  picamera2: main stream -> the camera's H.264
                                            encoder -> CircularOutput2 (released seconds late);
                                            the small lores stream is what frames() yields

The recorder (camera/recorder.py) and the clip cutter (camera/cutter.py) read the same for both:
clip boundaries are decided on packet timestamps, so a pipeline that releases late (picamera2's
ring) and one that releases at once (software) cut identical clips.
"""

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from doorbell.config import RecordingSettings

from .encoder import EncodedPacket
from .frames import Frame
from .masks import Polygon


class VideoPipeline(Protocol):
    description: str
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        """The recorded frame size (width, height); valid once a frame has been yielded."""
        ...

    @property
    def fresh_from_us(self) -> float:
        """The first timestamp whose frame shows the privacy masks in force (-inf: all do;
        inf: the new masks have not reached a frame yet). Older packets never start a clip
        and older frames are never shown live or noted."""
        ...

    def frames(self) -> Iterator[Frame]:
        """Masked analysis frames until the camera ends; raise SourceLost if it vanishes."""
        ...

    def full_image(self) -> np.ndarray:
        """The full-size masked BGR picture of the frame last yielded by frames()."""
        ...

    def open_clip(self, from_us: int) -> None:
        """Release the stream from the last keyframe at or before `from_us` (or the oldest
        one held)."""
        ...

    def released(self) -> list[EncodedPacket]:
        ...

    def close_clip(self) -> None:
        ...

    def drain(self) -> None:
        ...

    def set_masks(self, polygons: tuple[Polygon, ...]) -> None:
        ...

    def set_detect_width(self, detect_width: int) -> None:
        """Analysis frames about `detect_width` wide from the next frame, where the pipeline
        makes them small itself (the detector downscales the others)."""
        ...

    def set_recording(self, recording: RecordingSettings, rebuild_encoder: bool) -> None:
        """Apply the pre-roll length now; with `rebuild_encoder` (only while no clip is open)
        a new encoder with the recording settings: the ring starts again at its keyframe."""
        ...

    def close(self) -> None:
        """Release the camera. Safe to call twice."""
        ...


def ring_duration_us(recording: RecordingSettings) -> int:
    """How much encoded stream a pipeline holds back: the pre-roll plus one keyframe interval,
    so a keyframe at least `pre_roll_s` before any moment is still there."""
    return round((recording.pre_roll_s + recording.keyframe_interval_s) * 1_000_000)
