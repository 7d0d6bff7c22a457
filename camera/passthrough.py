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

With a `DetectStream` (camera.detect_source, camera/substream.py), motion is detected on the
camera's low-resolution substream and the main stream is not decoded at all while nothing is
masked: a substream picture at time t (on the main timeline) releases the main packets up to t,
and full_image() is the substream's picture (masked: thumbnails and the live view). A mask drawn
after t drops the main packets after t and re-encodes from the main stream's next keyframe (the
decoder can only begin there), so up to one keyframe interval is not recorded at that moment;
nothing unmasked ever is.
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
from .substream import ClockOffset, DetectStream, monotonic_us


def analysis_size(width: int, height: int, detect_width: int) -> tuple[int, int]:
    """The motion picture: `detect_width` wide (never wider than the camera), same aspect."""
    small_w = min(width, max(64, detect_width)) // 2 * 2
    return small_w, max(2, round(height * small_w / width) // 2 * 2)


class PassthroughPipeline:
    def __init__(self, demuxer: H264Demuxer, settings: Settings, description: str = "camera",
                 detect: DetectStream | None = None):
        self.demuxer = demuxer
        self.detect = detect  # motion on the substream; the main stream only recorded
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
        # with a DetectStream:
        self._main_clock = ClockOffset()
        self._main_dts_us = -1  # every main packet up to this time has arrived
        self._awaiting_key = False  # re-encoding starts at the main stream's next keyframe
        self._encoded_us = -1  # the last main picture re-encoded
        self._last_frame_us = -1  # the last substream picture yielded
        self._small_masks: dict[tuple[int, int], PrivacyMask] = {}
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
        if self.detect is not None:
            yield from self._frames_from_substream()
            return
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

    def _frames_from_substream(self) -> Iterator[Frame]:
        demuxer, detect = self.demuxer, self.detect
        if not demuxer.width or not demuxer.height:
            raise SourceLost(f"{self.description} did not say its picture size")
        self._size = (demuxer.width - demuxer.width % 2, demuxer.height - demuxer.height % 2)
        if self._polygons or not self._can_pass:
            self._start_encoding()
        detect.start()
        for packet, raw in demuxer.packets():
            self._main_clock.observe(packet.dts_us, monotonic_us())
            self._main_dts_us = max(self._main_dts_us, packet.dts_us)
            if self._switch_due and packet.keyframe:
                self._switch_due, self._switch_at_us = False, packet.pts_us
            if self.passthrough:
                self._pending.append(packet)
            else:
                self._re_encode(packet, raw)
            for picture, pts_us in detect.ready(self._main_dts_us, self._main_clock):
                yield self._analyse_substream(picture, pts_us)

    def _re_encode(self, packet: EncodedPacket, raw: av.Packet) -> None:
        """A main packet while a mask is in force: decoded, masked, encoded."""
        if self._awaiting_key:
            if not packet.keyframe:
                return  # the decoder cannot begin here: not recorded
            self._awaiting_key = False
        if self._switch_at_us is not None:
            self._pending.append(packet)
        for picture in self.demuxer.decode(raw):
            if picture.pts is None:
                continue
            pts_us = self.demuxer.to_us(picture.pts)
            if pts_us <= self._encoded_us:
                continue  # left in the decoder from before the keyframe it began again at
            if self._switch_at_us is not None and pts_us >= self._switch_at_us:
                self._stop_encoding()  # the camera's own packets from this keyframe
                return
            self._encoded_us = pts_us
            image = np.ascontiguousarray(_bgr(picture)[:self._size[1], :self._size[0]])
            for encoded in self._encoder.encode(Frame(self._mask.apply(image), pts_us)):
                self._keep(encoded)

    def _analyse_substream(self, picture: av.VideoFrame, pts_us: int) -> Frame:
        pts_us = max(pts_us, self._last_frame_us + 1)  # the offsets move a little
        self._last_frame_us = pts_us
        if self._fresh_from_us == float("inf"):
            self._fresh_from_us = pts_us
        self._picture, self._image = picture, None
        if self.passthrough:
            self._confirm(pts_us)
        luma = _luma(picture)
        size = analysis_size(luma.shape[1], luma.shape[0], self._detect_width)
        small = cv2.resize(luma, size, interpolation=cv2.INTER_AREA)
        return Frame(self._small_mask(size).apply(small), pts_us, PixelFormat.LUMA)

    def _small_mask(self, size: tuple[int, int]) -> PrivacyMask:
        """The privacy masks at a substream picture's size (analysis frame, full_image)."""
        if size not in self._small_masks:
            self._small_masks[size] = PrivacyMask(self._polygons, *size)
        return self._small_masks[size]

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
            luma = _luma(picture)
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
            if self.detect is not None:  # the substream's picture, at its own size
                even = (picture.width - picture.width % 2, picture.height - picture.height % 2)
                image = np.ascontiguousarray(_bgr(picture)[:even[1], :even[0]])
                self._image = self._small_mask(even).apply(image)
            else:
                self._image = _bgr(picture)[:self._size[1], :self._size[0]]
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
        self._small_masks = {}
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
        self._awaiting_key = self.detect is not None  # its decoder was not fed meanwhile

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

    def set_detect_width(self, detect_width: int) -> None:
        """Analysis frames `detect_width` wide from the next one (no reconnection)."""
        self._detect_width = detect_width

    def close(self) -> None:
        if self.detect is not None:
            self.detect.close()
        self.demuxer.close()


def _luma(picture: av.VideoFrame) -> np.ndarray:
    if picture.format.name in ("yuv420p", "yuvj420p"):
        return _y_plane(picture)
    return picture.to_ndarray(format="gray")


def _bgr(picture: av.VideoFrame) -> np.ndarray:
    if picture.format.name in ("yuv420p", "yuvj420p"):
        planes = picture.to_ndarray()  # I420 as one (h * 3/2) x w array
        return cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
    return picture.to_ndarray(format="bgr24")


def _y_plane(picture: av.VideoFrame) -> np.ndarray:
    """The luma plane of a planar YUV picture, without the line padding."""
    plane = picture.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return rows[:picture.height, :picture.width]


def _first_of_stream(packet: EncodedPacket) -> EncodedPacket:
    return EncodedPacket(packet.data, packet.pts_us, packet.keyframe, packet.dts_us,
                         new_stream=True)
