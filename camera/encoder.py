"""H.264 encoding with PyAV's libx264 (OpenCV's pip wheel cannot write H.264).

Frames are converted BGR -> I420 by OpenCV (about 8x faster than PyAV's own conversion) and
encoded with `tune=zerolatency`: one packet out per frame in, no B-frames, no lookahead buffer,
so the pre-roll ring holds exactly what was seen. SPS/PPS are repeated in-band at every
keyframe, so a clip can start at any keyframe in the ring.
"""

from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
from av.video.frame import PictureType

from .frames import Frame

MICROSECONDS = Fraction(1, 1_000_000)


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    data: bytes  # H.264 Annex B; a keyframe carries its SPS/PPS
    pts_us: int  # the source frame's monotonic timestamp
    keyframe: bool
    dts_us: int | None = None  # decode time, when it differs (a camera's stream with B-frames)
    new_stream: bool = False  # the first packet of another encoder: a clip cannot go on over it


class H264Encoder:
    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        preset: str = "veryfast",
        crf: int = 26,
        keyframe_interval_s: float = 1.0,
        threads: int = 2,
    ):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 needs an even frame size, got {width}x{height}")
        keyint = max(1, round(fps * keyframe_interval_s))
        context = av.CodecContext.create("libx264", "w")
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        context.time_base = MICROSECONDS
        context.framerate = Fraction(fps).limit_denominator(1000)
        context.thread_count = threads
        context.options = {
            "preset": preset,
            "crf": str(crf),
            "tune": "zerolatency",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0",
        }
        context.open()
        self._context = context
        self.width = width
        self.height = height
        self.fps = fps
        self._keyframe_due = False

    def force_keyframe(self) -> None:
        """Make the next frame a keyframe (an IDR: x264 keeps GOPs closed), so a clip can
        start right there, e.g. at the first frame with a new privacy mask."""
        self._keyframe_due = True

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        image = frame.image
        if image.shape[1] != self.width or image.shape[0] != self.height:
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        planes = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        video_frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        video_frame.pts = frame.pts_us
        video_frame.time_base = MICROSECONDS
        if self._keyframe_due:
            self._keyframe_due = False
            video_frame.pict_type = PictureType.I
        return self._packets(self._context.encode(video_frame))

    def flush(self) -> list[EncodedPacket]:
        return self._packets(self._context.encode(None))

    @staticmethod
    def _packets(packets) -> list[EncodedPacket]:
        return [EncodedPacket(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in packets]
