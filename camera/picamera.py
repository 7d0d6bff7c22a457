"""The Raspberry Pi camera through picamera2: `PiCameraPipeline`, the camera's own encoder.

    libcamera ─┬─ main  (camera.width x height, YUV420) ─┐ pre_callback: the privacy mask burnt
               └─ lores (~320 px wide, YUV420)          ─┘ into both mapped buffers, in place
    main  ─> picamera2 H264Encoder ─> CircularOutput2 (pre_roll + one keyframe interval)
                                          └─ open_output(ClipOutput) when a clip opens; the
                                             recorder's cutter takes the packets it releases
    lores ─> Y plane ─> frames() ─> the recorder (motion detector, state machine, cutter)

`picamera2.encoders.H264Encoder` is the V4L2 hardware encoder on a Pi 4 or Zero 2 W and libx264
(picamera2's LibavH264Encoder) on a Pi 5, which has no H.264 hardware. Either way the recorder
never touches a full frame except to make a thumbnail or a live frame (a few times a second at
most), so a Zero 2 W only analyses the 320 px lores stream.

The mask goes into the camera's own buffers in `pre_callback`, which picamera2 runs before any
encoder, capture or copy sees the frame: the encoder never gets the masked pixels. New masks
(config.toml changed, camera.reload) are swapped in there from the next frame; the callback
notes that frame's timestamp (`fresh_from_us`), and nothing older (frames in flight, packets in
the ring) is shown live or starts a clip: the next clip begins at the first keyframe under the
new masks.

`CircularOutput2` holds the encoded stream `pre_roll_s + keyframe_interval_s` behind: opening an
output starts it at the ring's oldest keyframe (at least `pre_roll_s` before the trigger), and
its `close_output()` drops whatever is still in the ring (it does not flush). So the cutter only
closes a clip once the packet of the state machine's stop frame has come out of the ring, and
`drain()` (shutdown, camera lost) stops and restarts the ring, which writes it out first.

picamera2 is imported only inside these functions: everything else runs without it.
"""

import contextlib
import dataclasses
import functools
import io
import logging
import math
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from doorbell.config import RecordingSettings, Settings

from .encoder import EncodedPacket
from .frames import Frame, PixelFormat, SourceLost
from .masks import Polygon, PrivacyMask
from .pipeline import ring_duration_us

log = logging.getLogger("doorbell.recorder")

CAPTURE_TIMEOUT_S = 5.0  # no frame for this long: the camera is gone (the recorder retries)


def require_picamera2():
    """The picamera2 module, or a one-sentence ValueError saying why it cannot be used.

    Any failure while importing it counts, not only ImportError: picamera2's apt modules
    (simplejpeg, libcamera's binding) built for numpy 1.x fail with ImportError, RuntimeError or
    ValueError under a numpy 2.x from pip, after numpy prints a page to stderr. That page is
    held back (and written out after all if the import works); the sentence says what to do.
    """
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            import picamera2
    except Exception as exc:  # whatever the import raised: one sentence
        raise ValueError(picamera2_import_problem(exc, held.getvalue())) from None
    sys.stderr.write(held.getvalue())
    return picamera2


def picamera2_import_problem(exc: Exception, stderr_text: str) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    if "numpy" in f"{exc} {stderr_text}".lower():
        return (f"the picamera2 source cannot start: the camera modules from apt are built for "
                f"the system's numpy, but this Python loads numpy {np.__version__} from "
                f"{Path(np.__file__).parent.parent} ({reason}); reinstall with "
                f"deploy/install.sh, which keeps apt's numpy")
    return (f"the picamera2 source needs picamera2 and libcamera (on Raspberry Pi OS: sudo apt "
            f"install python3-picamera2), which this Python cannot import ({reason})")


def lores_size(width: int, height: int, detect_width: int) -> tuple[int, int]:
    """The motion stream: `detect_width` wide (even, never wider than main), same aspect."""
    lores_w = min(width, max(64, detect_width)) // 2 * 2
    lores_h = max(2, round(height * lores_w / width) // 2 * 2)
    return lores_w, lores_h


# -- masks in YUV420 buffers ----------------------------------------------------------------------


class YuvPrivacyMask:
    """A privacy mask for a YUV420 (I420) buffer as picamera2 maps it: (height * 3/2, stride).

    The luma plane gets exactly the pixels `PrivacyMask` blacks out in a BGR frame; the chroma
    planes are set neutral (128) on every 2x2 block that touches a masked pixel, so no colour
    leaks at the edges.
    """

    def __init__(self, polygons: tuple[Polygon, ...], width: int, height: int,
                 stride: int | None = None):
        if width % 2 or height % 2:
            raise ValueError(f"YUV420 needs an even size, got {width}x{height}")
        self.width, self.height = width, height
        self.stride = stride or width
        self._luma = PrivacyMask(polygons, width, height)
        self._chroma: np.ndarray | None = None
        if not self._luma.empty:
            covered = self._luma.apply(np.full((height, width), 255, np.uint8)) == 0
            self._chroma = covered.reshape(height // 2, 2, width // 2, 2).any(axis=(1, 3))

    @property
    def empty(self) -> bool:
        return self._luma.empty

    def planes(self, buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views (no copies) of the Y, U and V planes of `buffer`, padding cut off."""
        h, w, s = self.height, self.width, self.stride
        if not buffer.flags.c_contiguous or buffer.size < s * h * 3 // 2:
            raise ValueError("a YUV420 buffer must be contiguous and hold height * 3/2 rows")
        flat = buffer.reshape(-1)
        chroma_rows, chroma_stride = h // 2, s // 2
        chroma_bytes = chroma_rows * chroma_stride
        y = flat[:h * s].reshape(h, s)[:, :w]
        u = flat[h * s:h * s + chroma_bytes].reshape(chroma_rows, chroma_stride)[:, :w // 2]
        v = flat[h * s + chroma_bytes:h * s + 2 * chroma_bytes].reshape(
            chroma_rows, chroma_stride)[:, :w // 2]
        return y, u, v

    def apply(self, buffer: np.ndarray) -> np.ndarray:
        """Burn the mask into `buffer` in place (and return it)."""
        if self._chroma is None:
            return buffer
        y, u, v = self.planes(buffer)
        self._luma.apply(y)
        np.copyto(u, 128, where=self._chroma)
        np.copyto(v, 128, where=self._chroma)
        return buffer


def yuv420_to_bgr(buffer: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (height * 3/2, stride) I420 buffer as a BGR image of width x height."""
    bgr = cv2.cvtColor(buffer[:height * 3 // 2], cv2.COLOR_YUV2BGR_I420)
    return np.ascontiguousarray(bgr[:, :width]) if bgr.shape[1] != width else bgr


# -- the source -----------------------------------------------------------------------------------


class PiCameraSource:
    """The camera: masked lores frames (Y plane) to analyse, the main stream to its encoder.

    While a frame is being processed, `main_image()` returns its full masked main image as BGR.
    """

    def __init__(self, settings: Settings, camera_num: int = 0,
                 capture_timeout_s: float = CAPTURE_TIMEOUT_S):
        picamera2 = require_picamera2()
        camera = settings.camera
        self._mapped_array = picamera2.MappedArray
        self._timeout_s = capture_timeout_s
        self._lock = threading.Lock()
        self._request = None
        self._sensor0_us: int | None = None
        self._encoder = None
        self._started = False
        self._closed = False
        try:
            self._picam2 = picamera2.Picamera2(camera_num)
        except (RuntimeError, IndexError) as exc:
            self._closed = True
            raise SourceLost(f"no Raspberry Pi camera {camera_num}: {exc}") from exc
        try:
            main = (camera.width // 2 * 2, camera.height // 2 * 2)
            config = self._picam2.create_video_configuration(
                main={"size": main, "format": "YUV420"},
                lores={"size": lores_size(*main, settings.motion.detect_width),
                       "format": "YUV420"},
                controls={"FrameRate": camera.fps},
                display=None,
                encode="main",
            )
            self._picam2.configure(config)
            streams = self._picam2.camera_configuration()
            self.main_size = tuple(streams["main"]["size"])
            self.lores_size = tuple(streams["lores"]["size"])
            self._strides = (streams["main"]["stride"], streams["lores"]["stride"])
            self._burnt_masks = None  # the masks the last frame got (picamera2's thread)
            self._masks_from_sensor_us: int | None = None  # the first frame that got them
            self.set_masks(settings.privacy.masks)
            self._picam2.pre_callback = self._burn_masks
        except Exception as exc:
            self.close()
            raise SourceLost(f"cannot configure the Raspberry Pi camera: {exc}") from exc

    def set_masks(self, polygons: tuple[Polygon, ...]) -> None:
        """Burn these privacy masks into every frame from the next one the camera delivers."""
        self.mask_polygons = polygons
        self._masks_from_sensor_us = None
        # One assignment, so picamera2's thread sees the old pair or the new, never a mix.
        self._masks = (YuvPrivacyMask(polygons, *self.main_size, self._strides[0]),
                       YuvPrivacyMask(polygons, *self.lores_size, self._strides[1]))

    @property
    def masks_applied_from_us(self) -> int | None:
        """The timestamp (the frames' timeline) of the first frame masked with the masks last
        set; None while no such frame has come. Earlier frames, and packets, show older masks."""
        since, sensor0 = self._masks_from_sensor_us, self._sensor0_us
        if since is None or sensor0 is None or self._burnt_masks is not self._masks:
            return None
        return since - sensor0

    def _burn_masks(self, request) -> None:
        """picamera2's pre_callback: runs on its event loop before encoders and captures."""
        masks = self._masks
        if masks is not self._burnt_masks:
            # The first frame under new masks: clips may start again at the first keyframe from
            # here on. (No forced keyframe: picamera2's LibavH264Encoder.force_key_frame sets
            # pict_type = "I", which PyAV 13+ refuses, and that would stop the camera's loop.)
            self._masks_from_sensor_us = int(request.get_metadata()["SensorTimestamp"] / 1000)
            self._burnt_masks = masks
        main_mask, lores_mask = masks
        if main_mask.empty:
            return
        with self._mapped_array(request, "main") as mapped:
            main_mask.apply(mapped.array)
        with self._mapped_array(request, "lores") as mapped:
            lores_mask.apply(mapped.array)

    def start_encoder(self, encoder, output) -> None:
        """Feed the (masked) main stream to `encoder`, whose packets go to `output`."""
        self._picam2.start_encoder(encoder, output, name="main")
        self._encoder = encoder

    def restart_encoder(self, encoder, output) -> None:
        """Replace the running encoder (recording settings changed); only between clips."""
        self._encoder = None
        self._picam2.stop_encoder()
        self.start_encoder(encoder, output)

    def packet_pts_us(self, encoder_timestamp_us: int) -> int:
        """An encoder timestamp (µs since its first frame) on the frames' timeline."""
        first = self._encoder.firsttimestamp if self._encoder is not None else None
        if first is None or self._sensor0_us is None:
            raise RuntimeError("no frame has been both encoded and captured yet")
        return encoder_timestamp_us + first - self._sensor0_us

    def frames(self) -> Iterator[Frame]:
        if self._closed:
            return
        if not self._started:
            try:
                self._picam2.start()
            except RuntimeError as exc:
                raise SourceLost(f"the Raspberry Pi camera did not start: {exc}") from exc
            self._started = True
        while not self._closed:
            request = self._capture()
            with self._lock:
                self._request = request
            try:
                sensor_us = int(request.get_metadata()["SensorTimestamp"] / 1000)
                if self._sensor0_us is None:
                    self._sensor0_us = sensor_us
                width, height = self.lores_size
                luma = np.ascontiguousarray(request.make_array("lores")[:height, :width])
                yield Frame(luma, sensor_us - self._sensor0_us, PixelFormat.LUMA)
            finally:
                self._release_request(request)

    def main_image(self) -> np.ndarray:
        """The current frame's main stream (masked) as BGR; only while a frame is processed."""
        with self._lock:
            if self._request is None:
                raise RuntimeError("no frame is being processed")
            return yuv420_to_bgr(self._request.make_array("main"), *self.main_size)

    def _capture(self):
        try:
            return self._picam2.capture_request(wait=self._timeout_s)
        except TimeoutError:
            self._picam2.cancel_all_and_flush()  # or a late frame would be held forever
            raise SourceLost(f"no frame from the camera for {self._timeout_s:.0f} s") from None
        except RuntimeError as exc:
            raise SourceLost(f"the camera failed: {exc}") from exc

    def _release_request(self, request) -> None:
        with self._lock:
            if self._request is not request:
                return  # close() released it already
            self._request = None
        request.release()

    def close(self) -> None:
        """Stop the encoder (flushing it into its outputs), then the camera. Safe to call twice."""
        if self._closed and getattr(self, "_picam2", None) is None:
            return
        self._closed = True
        picam2, self._picam2 = getattr(self, "_picam2", None), None
        if picam2 is None:
            return
        with self._lock:
            request, self._request = self._request, None
        try:
            if request is not None:
                request.release()
            if self._encoder is not None:
                picam2.stop_encoder()
            picam2.stop()
        except Exception as exc:  # a camera that vanished may fail to stop: close it anyway
            log.warning("stopping the camera failed: %s", exc)
        finally:
            picam2.close()


# -- picamera2 outputs ----------------------------------------------------------------------------


@functools.cache
def _output_classes() -> tuple[type, type]:
    """(PreRollRing, ClipOutput), built on picamera2's classes when first needed."""
    from picamera2.outputs import CircularOutput2, Output

    class PreRollRing(CircularOutput2):
        """CircularOutput2 whose frames carry their encoder timestamp through the ring.

        The ring rebases timestamps to the first frame it hands to an output; a clip needs the
        absolute time of that frame for its start, so each frame travels as (data, timestamp).
        """

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            if audio:
                return
            super().outputframe((frame, timestamp), keyframe, timestamp, packet, audio)

    class ClipOutput(Output):
        """Where the ring writes a clip: a queue the recorder's thread drains into the clip.

        picamera2 calls `outputframe` on its encoder thread; every storage write stays on the
        recorder's thread.
        """

        def __init__(self):
            super().__init__()
            self._queue: deque[tuple[bytes, int, bool]] = deque()

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            if audio or not self.recording:
                return
            data, encoder_timestamp_us = frame
            self._queue.append((bytes(data), int(encoder_timestamp_us), bool(keyframe)))

        def take(self) -> list[tuple[bytes, int, bool]]:
            taken = []
            while True:
                try:
                    taken.append(self._queue.popleft())
                except IndexError:
                    return taken

    return PreRollRing, ClipOutput


def make_h264_encoder(settings: Settings):
    """picamera2's H264Encoder: SPS/PPS repeated at every keyframe, keyframe period as set.

    `crf` becomes a fixed quantiser (`qp`), the closest thing both of picamera2's H.264 encoders
    offer; `preset` is left to picamera2 (it picks ultrafast for libx264 on a Pi 5).
    """
    from picamera2.encoders import H264Encoder

    fps = settings.camera.fps
    recording = settings.recording
    return H264Encoder(repeat=True, iperiod=max(1, round(fps * recording.keyframe_interval_s)),
                       framerate=fps, qp=recording.crf)


def make_preroll_ring(recording: RecordingSettings):
    ring_class, _ = _output_classes()
    return ring_class(buffer_duration_ms=round(ring_duration_us(recording) / 1000))


# -- the pipeline ---------------------------------------------------------------------------------


class PiCameraPipeline:
    """A VideoPipeline (camera/pipeline.py) over the camera and its own H.264 encoder."""

    description = "the Raspberry Pi camera (picamera2)"

    def __init__(self, settings: Settings, camera_num: int = 0,
                 capture_timeout_s: float = CAPTURE_TIMEOUT_S):
        self.fps = float(settings.camera.fps)
        self._settings = settings
        self.source = PiCameraSource(settings, camera_num, capture_timeout_s)
        self._ring = make_preroll_ring(settings.recording)
        self._output = None  # the ClipOutput open in the ring while a clip is released
        # inf: new masks, no frame with them yet; -inf: the camera starts with the masks.
        self._fresh_from_us = -math.inf
        try:
            self.source.start_encoder(make_h264_encoder(settings), self._ring)
        except RuntimeError as exc:
            self.source.close()
            raise SourceLost(f"the camera's H.264 encoder did not start: {exc}") from exc

    @property
    def size(self) -> tuple[int, int]:
        return self.source.main_size

    @property
    def fresh_from_us(self) -> float:
        if self._fresh_from_us == math.inf:
            since_us = self.source.masks_applied_from_us
            if since_us is not None:
                self._fresh_from_us = since_us
        return self._fresh_from_us

    def frames(self) -> Iterator[Frame]:
        return self.source.frames()

    def full_image(self) -> np.ndarray:
        return self.source.main_image()

    def open_clip(self, from_us: int) -> None:
        """The ring releases from its oldest keyframe: pre_roll_s to pre_roll_s plus one
        keyframe interval before now (it cannot be asked for a time)."""
        _, clip_output_class = _output_classes()
        self._output = clip_output_class()
        self._ring.open_output(self._output)

    def released(self) -> list[EncodedPacket]:
        if self._output is None:
            return []
        return [EncodedPacket(data, self.source.packet_pts_us(encoder_us), keyframe)
                for data, encoder_us, keyframe in self._output.take()]

    def close_clip(self) -> None:
        output, self._output = self._output, None
        if output is not None:
            # RuntimeError: the ring was stopped with the encoder, so nothing is open any more.
            with contextlib.suppress(RuntimeError):
                self._ring.close_output()

    def drain(self) -> None:
        """CircularOutput2.stop() writes the whole ring into the open output; start it again
        so the camera can go on (a reconnect or the next clip)."""
        if self._output is None or not self._ring.recording:
            return  # the encoder stopped, and stopping the ring flushed it already
        try:
            self._ring.stop()
            self._ring.start()
        except RuntimeError as exc:  # a camera that vanished: keep what came out
            log.warning("flushing the camera's ring failed: %s", exc)

    def set_masks(self, polygons: tuple[Polygon, ...]) -> None:
        """The camera burns the new masks in from its next frame; frames already masked (and
        maybe encoded) under the old ones are told apart by their timestamp."""
        self.source.set_masks(polygons)
        self._fresh_from_us = math.inf

    def set_detect_width(self, detect_width: int) -> None:
        """Nothing now: the lores stream's size is fixed when the camera is configured (the
        detector caps its width at it); a new width takes the next start."""

    def set_recording(self, recording: RecordingSettings, rebuild_encoder: bool) -> None:
        self._settings = dataclasses.replace(self._settings, recording=recording)
        self._ring.buffer_duration_ms = round(ring_duration_us(recording) / 1000)
        if not rebuild_encoder:
            return
        self._ring = make_preroll_ring(recording)
        try:
            self.source.restart_encoder(make_h264_encoder(self._settings), self._ring)
        except RuntimeError as exc:
            raise SourceLost(f"the camera's H.264 encoder did not restart: {exc}") from exc

    def close(self) -> None:
        self.source.close()
