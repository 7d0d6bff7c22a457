"""The passthrough pipeline: an H.264 camera recorded as it comes, decoded only to be watched.

    camera (RTSP) -> H264Demuxer -> packet ring -> clip (the camera's own H.264, remuxed)
                           \\-> decoder (reference frames only) -> small Y plane -> frames()

With no privacy mask, nothing is encoded: the camera's packets go to the pre-roll ring and the
clip as they are, and the decoder skips the frames no other frame refers to. With a privacy
mask, every frame is decoded, masked and encoded again with libx264, exactly like the software
pipeline: a mask is burnt in, never skipped.

A packet enters the ring (and a clip) only once its picture has been yielded to the recorder,
so a mask drawn after frame t governs every frame after t: at that moment the packets not yet
released are dropped, the ring is cleared and the encoder's first packet is marked
`new_stream` (the cutter seals the clip there and goes on in a "continued" one). Removing the
last mask re-encodes unmasked frames until the camera's next keyframe, then records the
camera's own packets again from that keyframe (marked `new_stream` too).

frames() yields the Y plane at `motion.detect_width` (PixelFormat.LUMA), like picamera2's lores
stream; full_image() converts the full picture to BGR only when asked (thumbnail, live view).
"""

from collections import deque
from collections.abc import Iterator

import av
import cv2
import numpy as np

from doorbell.config import RecordingSettings, Settings

from .demux import H264Demuxer
from .encoder import EncodedPacket, H264Encoder
from .frames import Frame, PixelFormat, SourceLost
from .masks import Polygon, PrivacyMask
from .pipeline import ring_duration_us
from .preroll import PacketRing


def analysis_size(width: int, height: int, detect_width: int) -> tuple[int, int]:
    """The motion picture: `detect_width` wide (never wider than the camera), same aspect."""
    small_w = min(width, max(64, detect_width)) // 2 * 2
    return small_w, max(2, round(height * small_w / width) // 2 * 2)


class PassthroughPipeline:
    def __init__(self, demuxer: H264Demuxer, settings: Settings, description: str = "camera"):
        self.demuxer = demuxer
        self.description = description
        self.fps = demuxer.fps or float(settings.camera.fps)
        self._recording = settings.recording
        self._detect_width = settings.motion.detect_width
        self._polygons = settings.privacy.masks
        self._ring = PacketRing(ring_duration_us(settings.recording))
        self._pending: deque[EncodedPacket] = deque()  # camera packets not yet yielded
        self._encoder: H264Encoder | None = None  # only while a mask is in force
        self._mask: PrivacyMask | None = None
        self._new_stream = False  # the next packet released begins another encoder's stream
        self._switch_due = False  # the masks are gone: back to passthrough at a keyframe
        self._switch_at_us: int | None = None  # ... at this camera keyframe
        self._size: tuple[int, int] | None = None
        self._picture: av.VideoFrame | None = None
        self._image: np.ndarray | None = None
        self._releasing = False
        self._released: list[EncodedPacket] = []
        self._fresh_from_us = -float("inf")
        # Another codec (H.265, MJPEG) is decoded and encoded again, as if always masked.
        self._can_pass = demuxer.codec == "h264"
        demuxer.skip_nonreference(self._can_pass and not self._polygons)

    @property
    def passthrough(self) -> bool:
        """The camera's own packets are recorded (no mask in force, nothing re-encoded)."""
        return self._encoder is None

    @property
    def size(self) -> tuple[int, int]:
        if self._size is None:
            raise RuntimeError("no frame has been captured yet")
        return self._size

    @property
    def fresh_from_us(self) -> float:
        return self._fresh_from_us

    def frames(self) -> Iterator[Frame]:
        demuxer = self.demuxer
        for packet, raw in demuxer.packets():
            if self._switch_due and packet.keyframe:
                self._switch_due, self._switch_at_us = False, packet.pts_us
            if self.passthrough or self._switch_at_us is not None:
                self._pending.append(packet)
            for picture in demuxer.decode(raw):
                if picture.pts is None:
                    continue
                frame = self._analyse(picture, demuxer.to_us(picture.pts))
                if frame is not None:
                    yield frame

    def _analyse(self, picture: av.VideoFrame, pts_us: int) -> Frame | None:
        if self._size is None:
            self._size = (picture.width - picture.width % 2, picture.height - picture.height % 2)
            if self._polygons or not self._can_pass:
                self._start_encoding()
        elif (picture.width - picture.width % 2, picture.height - picture.height % 2) \
                != self._size:
            raise SourceLost(f"{self.description} changed its picture size")
        if self._fresh_from_us == float("inf"):
            self._fresh_from_us = pts_us  # the first frame under the masks in force
        self._picture, self._image = picture, None
        if self._switch_at_us is not None and pts_us >= self._switch_at_us:
            self._stop_encoding()
        if self.passthrough:
            luma = picture.to_ndarray(format="gray") if picture.format.name not in (
                "yuv420p", "yuvj420p") else _y_plane(picture)
            self._confirm(pts_us)
        else:
            image = self.full_image()
            self._mask.apply(image)
            for packet in self._encoder.encode(Frame(image, pts_us)):
                self._keep(packet)
            luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(luma, analysis_size(*self._size, self._detect_width),
                           interpolation=cv2.INTER_AREA)
        return Frame(small, pts_us, PixelFormat.LUMA)

    def _confirm(self, pts_us: int) -> None:
        """The picture at `pts_us` was seen: release the camera packets up to it."""
        pending = self._pending
        while pending and pending[0].pts_us <= pts_us:
            self._keep(pending.popleft())

    def _keep(self, packet: EncodedPacket) -> None:
        if self._new_stream and packet.keyframe:
            packet, self._new_stream = _first_of_stream(packet), False
        self._ring.append(packet)
        if self._releasing:
            self._released.append(packet)

    def full_image(self) -> np.ndarray:
        if self._picture is None:
            raise RuntimeError("no frame is being processed")
        if self._image is None:
            picture = self._picture
            if picture.format.name in ("yuv420p", "yuvj420p"):
                planes = picture.to_ndarray()  # I420 as one (h * 3/2) x w array
                self._image = cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
            else:
                self._image = picture.to_ndarray(format="bgr24")
            self._image = self._image[:self._size[1], :self._size[0]]
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
        """Release the camera packets whose pictures were not analysed yet (shutdown, lost)."""
        if self.passthrough and self._pending:
            self._confirm(self._pending[-1].pts_us)

    def set_masks(self, polygons: tuple[Polygon, ...]) -> None:
        """Burn `polygons` in from the next frame; with a first mask, re-encode from it."""
        self._polygons = polygons
        self._fresh_from_us = float("inf")
        if self._size is None:
            self.demuxer.skip_nonreference(self._can_pass and not polygons)
            return  # no frame yet: the first one decides
        if polygons:
            self._switch_due, self._switch_at_us = False, None
            if self.passthrough:
                self._start_encoding()
            else:
                self._mask = PrivacyMask(polygons, *self._size)
                self._ring.clear()
                self._encoder.force_keyframe()
        elif not self.passthrough:
            self._mask = PrivacyMask((), *self._size)  # unmasked frames from the next one
            self._ring.clear()
            self._encoder.force_keyframe()
            self._switch_due = self._can_pass

    def _start_encoding(self) -> None:
        """From the next frame: decode all, mask, encode. Nothing decoded before is kept."""
        self._switch_due, self._switch_at_us = False, None
        self._pending.clear()
        self._ring.clear()
        self._mask = PrivacyMask(self._polygons, *self._size)
        self._rebuild_encoder()
        self.demuxer.skip_nonreference(False)

    def _stop_encoding(self) -> None:
        """Back to the camera's own stream, from the keyframe at `_switch_at_us`."""
        self._switch_at_us = None
        self._encoder = self._mask = None
        self._ring.clear()
        self._new_stream = True
        self.demuxer.skip_nonreference(True)

    def _rebuild_encoder(self) -> None:
        recording = self._recording
        self._encoder = H264Encoder(*self._size, self.fps, recording.preset, recording.crf,
                                    recording.keyframe_interval_s)
        self._ring.clear()
        self._new_stream = True

    def set_recording(self, recording: RecordingSettings, rebuild_encoder: bool) -> None:
        self._recording = recording
        self._ring.duration_us = ring_duration_us(recording)
        if rebuild_encoder and not self.passthrough:
            self._rebuild_encoder()

    def close(self) -> None:
        self.demuxer.close()


def _y_plane(picture: av.VideoFrame) -> np.ndarray:
    """The luma plane of a planar YUV picture, without the line padding."""
    plane = picture.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return rows[:picture.height, :picture.width]


def _first_of_stream(packet: EncodedPacket) -> EncodedPacket:
    return EncodedPacket(packet.data, packet.pts_us, packet.keyframe, packet.dts_us,
                         new_stream=True)
