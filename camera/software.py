"""The software pipeline: any FrameSource -> privacy mask -> PyAV H.264 -> pre-roll ring.

For the synthetic scene, video files, V4L2 webcams and RTSP cameras. Each frame is masked in
place, encoded (full size) and its packets appended to the ring before the frame is yielded
for analysis, so a clip opened at this frame includes it. Released packets come out at once.
"""

from collections.abc import Iterator

import numpy as np

from doorbell.config import RecordingSettings, Settings

from .encoder import EncodedPacket, H264Encoder
from .frames import Frame, FrameSource, PixelFormat
from .masks import Polygon, PrivacyMask
from .pipeline import ring_duration_us
from .preroll import PacketRing


class SoftwarePipeline:
    def __init__(self, source: FrameSource, settings: Settings, description: str = "camera"):
        self.source = source
        self.description = description
        # A video file knows its own frame rate; a camera runs at the configured one.
        self.fps = float(getattr(source, "fps", 0) or settings.camera.fps)
        self._recording = settings.recording
        self._polygons = settings.privacy.masks
        self._ring = PacketRing(ring_duration_us(settings.recording))
        self._encoder: H264Encoder | None = None
        self._mask: PrivacyMask | None = None
        self._size: tuple[int, int] | None = None
        self._image: np.ndarray | None = None
        self._releasing = False
        self._released: list[EncodedPacket] = []
        self._fresh_from_us = -float("inf")

    @property
    def size(self) -> tuple[int, int]:
        if self._size is None:
            raise RuntimeError("no frame has been captured yet")
        return self._size

    @property
    def fresh_from_us(self) -> float:
        return self._fresh_from_us

    def frames(self) -> Iterator[Frame]:
        for frame in self.source.frames():
            if frame.format is not PixelFormat.BGR:
                raise ValueError("the software pipeline encodes BGR frames only")
            self._prepare(frame)
            self._mask.apply(frame.image)
            if self._fresh_from_us == float("inf"):
                self._fresh_from_us = frame.pts_us  # the first frame under the new masks
            self._image = frame.image
            for packet in self._encoder.encode(frame):
                self._ring.append(packet)
                if self._releasing:
                    self._released.append(packet)
            yield frame

    def _prepare(self, frame: Frame) -> None:
        """The encoder and mask for this frame size (the first frame, or a size change)."""
        size = (frame.width - frame.width % 2, frame.height - frame.height % 2)
        if size == self._size:
            return
        self._size = size
        self._mask = PrivacyMask(self._polygons, frame.width, frame.height)
        self._rebuild_encoder()

    def _rebuild_encoder(self) -> None:
        recording = self._recording
        self._encoder = H264Encoder(*self._size, self.fps, recording.preset, recording.crf,
                                    recording.keyframe_interval_s)
        self._ring.clear()  # a clip never mixes packets of two encoders

    def full_image(self) -> np.ndarray:
        if self._image is None:
            raise RuntimeError("no frame is being processed")
        return self._image

    def open_clip(self, from_us: int) -> None:
        self._releasing = True
        self._released = self._ring.since(from_us)

    def released(self) -> list[EncodedPacket]:
        packets, self._released = self._released, []
        return packets

    def close_clip(self) -> None:
        self._releasing = False
        self._released = []

    def drain(self) -> None:
        """Nothing is held back: every packet was released as it was encoded."""

    def set_masks(self, polygons: tuple[Polygon, ...]) -> None:
        """Burn `polygons` in from the next frame. No packet encoded under the old masks may
        start a later clip: the ring starts again at a forced keyframe."""
        self._polygons = polygons
        self._fresh_from_us = float("inf")
        if self._size is None:
            return  # no frame yet: the mask is made with the first one
        self._mask = PrivacyMask(polygons, self._mask.width, self._mask.height)
        self._ring.clear()
        self._encoder.force_keyframe()

    def set_detect_width(self, detect_width: int) -> None:
        """Nothing to do: frames() yields the full picture and the detector downscales it."""

    def set_recording(self, recording: RecordingSettings, rebuild_encoder: bool) -> None:
        self._recording = recording
        self._ring.duration_us = ring_duration_us(recording)
        if rebuild_encoder and self._size is not None:
            self._rebuild_encoder()

    def close(self) -> None:
        self.source.close()
