"""The Raspberry Pi camera through picamera2: H.264 from picamera2's encoder, pre-roll in its ring.

    libcamera ─┬─ main  (camera.width x height, YUV420) ─┐ pre_callback: the privacy mask burnt
               └─ lores (~320 px wide, YUV420)          ─┘ into both mapped buffers, in place
    main  ─> picamera2 H264Encoder ─> CircularOutput2 (pre_roll + one keyframe interval)
                                          └─ open_output(ClipOutput) at a trigger, close_output
                                             once the post-roll has come out of the ring
    lores ─> Y plane ─> MotionDetector ─> RecorderStateMachine ─> clips (ActiveClip: fragmented
             MP4 -> the store's age writer; thumbnail and metadata as for every other source)

`picamera2.encoders.H264Encoder` is the V4L2 hardware encoder on a Pi 4 or Zero 2 W and libx264
(picamera2's LibavH264Encoder) on a Pi 5, which has no H.264 hardware. Either way the recorder
never touches a full frame except to make a thumbnail or a live frame (a few times a second at
most), so a Zero 2 W only analyses the 320 px lores stream.

The mask goes into the camera's own buffers in `pre_callback`, which picamera2 runs before any
encoder, capture or copy sees the frame: the encoder never gets the masked pixels. New masks
(config.toml changed, camera.reload) are swapped in there from the next frame; the callback
notes that frame's timestamp, and nothing older (frames in flight, packets in the ring) is shown
live or starts a clip: the next clip begins at the first keyframe under the new masks.

`CircularOutput2` holds the encoded stream `pre_roll_s + keyframe_interval_s` behind: opening an
output starts it at the ring's oldest keyframe (at least `pre_roll_s` before the trigger), and
its `close_output()` drops whatever is still in the ring (it does not flush). So a clip is only
closed once the packet of the state machine's stop frame has come out of the ring: the clip ends
where the post-roll says, and nothing the post-roll covered is lost.

picamera2 is imported only inside these functions: everything else runs without it.
"""

import contextlib
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from doorbell.config import Settings

from .clip import THUMBNAIL_WIDTH, ActiveClip
from .encoder import EncodedPacket
from .frames import Frame, SourceLost
from .masks import Polygon, PrivacyMask
from .recorder import Recorder
from .sources import SourcePlan
from .statemachine import Action, Decision

log = logging.getLogger("doorbell.recorder")

CAPTURE_TIMEOUT_S = 5.0  # no frame for this long: the camera is gone (the recorder retries)


def require_picamera2():
    """The picamera2 module, or a one-sentence ValueError saying how to get it."""
    try:
        import picamera2
    except ImportError as exc:  # not installed, or installed without libcamera's binding
        raise ValueError(
            f"the picamera2 source needs picamera2 and libcamera (on Raspberry Pi OS: sudo apt "
            f"install python3-picamera2), which this Python cannot import ({exc})"
        ) from None
    return picamera2


@dataclass
class PiCameraPlan(SourcePlan):
    """A SourcePlan that also names the recorder able to use the camera's own encoder."""

    recorder_class: type = Recorder


def plan_picamera2(settings: Settings) -> PiCameraPlan:
    from .presses import NoButton

    require_picamera2()
    return PiCameraPlan(lambda: PiCameraSource(settings), NoButton(),
                        "the Raspberry Pi camera (picamera2)", PiCameraRecorder)


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
    """The camera as a FrameSource, and the encoder's input.

    `frames()` yields masked frames: the full main stream as BGR (what the generic Recorder needs,
    encoding in software), or with `lores_frames` set the lores stream's Y plane (what
    PiCameraRecorder analyses while the camera's encoder does the video). While a frame is being
    processed, `main_image()` returns its full masked main image as BGR.
    """

    def __init__(self, settings: Settings, camera_num: int = 0,
                 capture_timeout_s: float = CAPTURE_TIMEOUT_S):
        picamera2 = require_picamera2()
        camera = settings.camera
        self.lores_frames = False
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
                if self.lores_frames:
                    width, height = self.lores_size
                    image = np.ascontiguousarray(request.make_array("lores")[:height, :width])
                else:
                    image = yuv420_to_bgr(request.make_array("main"), *self.main_size)
                yield Frame(image, sensor_us - self._sensor0_us)
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


def make_preroll_ring(settings: Settings):
    recording = settings.recording
    ring_class, _ = _output_classes()
    return ring_class(buffer_duration_ms=round(
        (recording.pre_roll_s + recording.keyframe_interval_s) * 1000))


# -- the recorder ---------------------------------------------------------------------------------


class PiCameraRecorder(Recorder):
    """The Recorder for a PiCameraSource: the camera encodes, the recorder decides and stores.

    Everything but the video is the generic Recorder's (state machine, motion detector, clip
    store, ActiveClip's MP4 muxing, thumbnail and metadata, retention, status, live frames,
    reconnecting): per frame it analyses the lores image, and the encoded packets come from
    picamera2's ring instead of an encoder of its own. Clips are where the state machine says:
    they start at a keyframe at least `pre_roll_s` before the trigger and end at the frame the
    post-roll ran out; a split continues at the next keyframe, with no gap and no overlap. A new
    trigger while the last clip is still draining out of the ring extends that clip instead.
    """

    def __init__(self, settings: Settings, store, *args, **kwargs):
        super().__init__(settings, store, *args, **kwargs)
        self._source: PiCameraSource | None = None
        self._preroll = None  # the PreRollRing
        self._output = None  # the ClipOutput open in the ring, while a clip is being written
        self._stop_at_us: int | None = None  # the state machine stopped here: drain to it
        self._splits_us: deque[int] = deque()  # split at the first keyframe at or after these
        self._pending_notes: list[tuple[np.ndarray, float, bool, list]] = []
        self._best_score: float | None = None
        self._presses_us: list[int] = []
        self._clip_trigger: str | None = None
        self._last_live_s = -1e9
        # Frames and packets before this timestamp show privacy masks no longer in force: they
        # are never noted, shown live or let start a clip. inf: new masks, no frame with them yet.
        self._fresh_from_us: float = -math.inf

    def run(self, open_source: Callable[[], PiCameraSource], stop: threading.Event,
            until_eof: bool = False) -> None:
        def open_with_encoder() -> PiCameraSource:
            source = open_source()
            try:
                self._attach(source)
            except BaseException:
                source.close()
                raise
            return source

        super().run(open_with_encoder, stop, until_eof)

    def _attach(self, source: PiCameraSource) -> None:
        source.lores_frames = True
        if source.mask_polygons != self.settings.privacy.masks:
            source.set_masks(self.settings.privacy.masks)  # changed since the source was planned
        self._fresh_from_us = -math.inf  # the camera has not started: every frame is fresh
        self._encoder_stale = False  # the encoder is made from the settings in force
        self._drop_output()
        self._preroll = make_preroll_ring(self.settings)
        try:
            source.start_encoder(make_h264_encoder(self.settings), self._preroll)
        except RuntimeError as exc:
            raise SourceLost(f"the camera's H.264 encoder did not start: {exc}") from exc
        self._source = source

    # -- per frame --------------------------------------------------------------------------------

    def process(self, frame: Frame) -> None:
        self._ensure_pipeline(frame)
        if self._fresh_from_us == math.inf and self._source is not None:
            since_us = self._source.masks_applied_from_us
            self._fresh_from_us = math.inf if since_us is None else since_us
        if self._encoder_stale and self._output is None:
            self._rebuild_encoder()
        motion = self._detector.update(frame)
        if self.tuner is not None:
            self.tuner.update(frame, self._source.main_size)
        pressed = self.presses.pressed(frame.pts_us)
        decision = self._machine.step(frame.pts_us, motion.triggered, pressed)
        if pressed:
            log.info("doorbell pressed")
        try:
            self._follow(decision, frame.pts_us)
            if self._output is not None and self._stop_at_us is None and \
                    self._settings_visible(frame.pts_us):
                self._note(frame.image, motion.score, motion.triggered, motion.boxes)
                if pressed:
                    self._presses_us.append(frame.pts_us)
            self._pump()
            if self._clip is not None:
                self._clip.writer.sync_if_due()  # the fsync interval holds between packets too
        except OSError as exc:
            self._handle_write_error(exc)
        self._publish_live(frame.pts_us)
        self._account(frame)
        self._run_retention()

    def _ensure_pipeline(self, frame: Frame) -> None:
        size = (frame.width, frame.height)
        if self._pipeline_size == size:
            return
        self._pipeline_size = size
        self._detector.reset()
        if self._origin is None:
            self._origin = (frame.pts_us, self._wall_clock_us())

    def _follow(self, decision: Decision, pts_us: int) -> None:
        if decision.action is Action.START:
            if self._output is not None:
                # The last clip is still draining out of the ring: it simply goes on.
                self._stop_at_us = None
                if decision.trigger == "doorbell":
                    self._clip_trigger = "doorbell"
                return
            _, clip_output_class = _output_classes()
            self._output = clip_output_class()
            self._preroll.open_output(self._output)
            self._stop_at_us = None
            self._splits_us.clear()
            self._clip_trigger = decision.trigger
            self._presses_us = []
            self._pending_notes = []
            self._best_score = None
        elif self._output is None:
            return  # a write error dropped the clip: nothing to stop or split
        elif decision.action is Action.STOP:
            self._stop_at_us = pts_us
        elif decision.action is Action.SPLIT:
            self._splits_us.append(pts_us)

    def _note(self, image: np.ndarray, score: float, moving: bool, boxes) -> None:
        """Motion summary and thumbnail candidate for the clip (ActiveClip keeps the best)."""
        if self._best_score is None or score > self._best_score:
            # A new thumbnail: from the full masked frame, thumbnail-sized right away.
            self._best_score = score
            main = self._source.main_image()
            height = round(main.shape[0] * THUMBNAIL_WIDTH / main.shape[1]) // 2 * 2
            scale = THUMBNAIL_WIDTH / image.shape[1]
            image = cv2.resize(main, (THUMBNAIL_WIDTH, height), interpolation=cv2.INTER_AREA)
            boxes = [tuple(round(v * scale) for v in box) for box in boxes]
        note = (image, score, moving, boxes)
        if self._clip is None:
            self._pending_notes.append(note)  # until the first packet leaves the ring
        else:
            self._clip.note_frame(*note)

    def _pump(self) -> None:
        """Move the packets the ring has released into the clip; seal it at its end."""
        if self._output is None:
            return
        for data, encoder_us, keyframe in self._output.take():
            pts_us = self._source.packet_pts_us(encoder_us)
            if self._splits_us and keyframe and pts_us >= self._splits_us[0] and \
                    (self._stop_at_us is None or pts_us < self._stop_at_us):
                self._splits_us.popleft()
                self._finish_clip(end_us=pts_us)
                self._clip_trigger = "continued"
                self._best_score = None
            if self._stop_at_us is not None and pts_us >= self._stop_at_us:
                self._close_output()
                return
            if self._clip is None:
                if not keyframe or pts_us < self._fresh_from_us:
                    continue  # under the old masks: the clip starts at the next fresh keyframe
                self._begin_clip(pts_us)
            self._clip.write(EncodedPacket(data, pts_us, keyframe))

    def _begin_clip(self, first_pts_us: int) -> None:
        wall_start_us = self._to_wall(first_pts_us)
        writer = self.store.begin_clip(wall_start_us, self.settings.recording.fsync_interval_s)
        width, height = self._source.main_size
        self._clip = ActiveClip(writer, width, height, self.settings.camera.fps, wall_start_us,
                                self.settings.camera.name)
        notes, self._pending_notes = self._pending_notes, []
        for note in notes:
            self._clip.note_frame(*note)
        log.info("clip %s started (%s)", writer.clip_id, self._clip_trigger)

    def _finish_clip(self, end_us: int | None = None) -> None:
        """Seal the clip being written; presses up to `end_us` are its own."""
        clip, self._clip = self._clip, None
        mine = [p for p in self._presses_us if end_us is None or p < end_us]
        self._presses_us = [p for p in self._presses_us if end_us is not None and p >= end_us]
        if clip is None:
            return
        trigger = "doorbell" if mine else self._clip_trigger
        try:
            indexed = clip.finish(trigger, [self._to_wall(p) for p in mine])
        except OSError:
            clip.abandon()
            raise
        self.stats.clips += 1
        log.info("clip %s saved (%s, %d bytes)", indexed.id, trigger, indexed.size_bytes)

    def _close_output(self) -> None:
        """The clip has everything up to its end: stop the ring writing it, and seal it."""
        self._drop_output()
        self._finish_clip()

    def _drop_output(self) -> None:
        output, self._output = self._output, None
        self._stop_at_us = None
        self._splits_us.clear()
        self._pending_notes = []
        if output is not None and self._preroll is not None:
            # RuntimeError: the ring was stopped with the encoder, so nothing is open any more.
            with contextlib.suppress(RuntimeError):
                self._preroll.close_output()

    # -- overrides of the generic Recorder's clip handling ---------------------------------------

    def _seal_clip(self) -> None:
        """Shutdown or camera lost: everything still in the ring goes into the clip first."""
        if self._output is None:
            return
        try:
            self._flush_ring()
            self._pump()
            self._close_output()
        except OSError as exc:
            self._handle_write_error(exc)

    def _flush_ring(self) -> None:
        ring = self._preroll
        if ring is None or not ring.recording:
            return  # the encoder stopped, and stopping the ring flushed it already
        ring.stop()  # CircularOutput2.stop() writes the whole ring into the open output
        ring.start()

    def _handle_write_error(self, exc: OSError) -> None:
        if self._output is not None:
            self._drop_output()
            self._machine.stop()  # idle, as the generic Recorder goes after a failed write
        super()._handle_write_error(exc)

    def _publish_live(self, pts_us: int) -> None:
        if self.live is None or self._source is None or not self._settings_visible(pts_us):
            return
        now = time.monotonic()
        if now - self._last_live_s < 1.0 / self.settings.live.fps:
            return
        self._last_live_s = now
        self.live.maybe_publish(self._source.main_image(), now)

    def _reset_pipeline(self) -> None:
        super()._reset_pipeline()
        self._drop_output()
        self._source = None

    # -- settings that change while recording ----------------------------------------------------

    ENCODER_SETTINGS = ("crf", "keyframe_interval_s")  # picamera2 picks its own preset

    def _masks_changed(self) -> None:
        """The camera burns the new masks in from its next frame; frames already masked (and
        maybe encoded) under the old ones are told apart by their timestamp."""
        self._detector.reset()  # the newly blacked-out area would look like motion
        if self.tuner is not None:
            self.tuner.reset()
        if self._source is not None:
            self._source.set_masks(self.settings.privacy.masks)
            self._fresh_from_us = math.inf
        self._last_live_s = -1e9  # publish the first frame with the new masks at once

    def _recording_changed(self, old: Settings) -> None:
        super()._recording_changed(old)
        if self._preroll is not None:
            self._preroll.buffer_duration_ms = round(self._ring_duration_us() / 1000)

    def _rebuild_encoder(self) -> None:
        """A new encoder and ring for new recording settings, while no clip is being written."""
        self._encoder_stale = False
        if self._source is None:
            return  # _attach makes them from the settings in force
        self._preroll = make_preroll_ring(self.settings)
        try:
            self._source.restart_encoder(make_h264_encoder(self.settings), self._preroll)
        except RuntimeError as exc:
            raise SourceLost(f"the camera's H.264 encoder did not restart: {exc}") from exc

    def _settings_visible(self, pts_us: int) -> bool:
        return pts_us >= self._fresh_from_us

