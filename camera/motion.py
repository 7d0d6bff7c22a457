"""Motion detection on a small grayscale copy of the frame.

    detector = MotionDetector(settings.motion)      # None: the shipped defaults
    motion = detector.update(frame)                 # a Frame (or a bare BGR or grey image)
    if motion.triggered: ...                        # a few consecutive frames of real motion

Per frame, everything after step 1 runs on the detection size (`detect_width` wide: 320 x 180
for a 720p camera) in buffers allocated once per frame size; the full frame is touched once.
Each mechanism is there because real footage or a scripted nuisance of camera.synthetic fails
without it (CDnet = ../shared/testdata/cdnet, video = ../shared/testdata/video):

1. Downscale (motion_background.Downscaler): grey, one cv2.resize (INTER_AREA when reducing 2x
   or more, INTER_LINEAR below that), a small blur. Averaging pixels averages away sensor noise.
2. Global light (Background.gain, LightMeter): the median ratio of frame to background over
   pixels that were still is the light change; the background is rescaled by it at once.
   Synthetic: the exposure steps and the cloud. If more than `light_change_fraction` of the frame
   differs even so, one factor cannot explain it (a lamp, night mode; bikes.mp4's cuts): the
   background restarts from this frame.
3. Foreground: pixels that differ from the background by more than a base level (from
   `sensitivity`) plus a multiple of the pixel's usual deviation. Against the background, not
   the previous frame: the synthetic visitor walking straight at the camera grows in place, and
   a frame difference sees only their outline.
   Camera motion (motion_shake): when much of the frame changed, phase correlation of frame and
   background on a quarter-size copy proposes a displacement; it is the camera's only if moving
   the background by it removes most of the change (moving cars bias the estimate, and without
   this check CDnet highway lost half its cars to bogus shifts). A shake, back and forth around
   one place (CDnet highway: the overpass camera moves 1-9 px at 320 wide), moves the background
   with the picture and detection goes on; a pan or a jump (bikes.mp4, a carried camera)
   restarts the background, and nothing triggers on that frame.
   Ghosts: pixels back to their long-term look are background again at once (the synthetic
   visitor who lingered at the door and left).
4. Clean-up: a 3x3 open drops rain streaks and noise specks (synthetic rain); a square close,
   9 px at 320 wide, joins a person into one blob (the 11 px ellipse used before scored lower
   on CDnet highway, and costs several times as much); zones cut what does not count.
5. Blobs (motion_blobs) that count are at least `min_area` of the frame and
   - changed texture: a person or a car replaces the background's edges with their own; soft
     light (the synthetic headlights sweeping the lawn) brightens a region but keeps its edges;
   - then either travel: followed from frame to frame, the blob's centre has moved in a mostly
     straight line by 0.75 of its own size or more. It crosses the picture (CDnet highway's cars,
     pedestrians' walkers) and counts even where pixels flip all the time (a busy lane), unless
     half of it lies on restless pixels (bikes.mp4: residue of a moving camera wanders too);
   - or, in place, are mostly steady and not on restless pixels. A pixel that flipped between
     foreground and background twice within about 2 s is going back and forth (the synthetic
     branch in a gust, tree.avi's leaves); a restless pixel has a high usual deviation (the edge
     of a swaying branch: catches a gust's first swing). A visitor walking straight at the camera
     or standing still passes here: their body flips once when they arrive.
6. Trigger: `triggered` once `trigger_frames` consecutive frames had a blob that counts.

The background follows still pixels within seconds and pixels under motion only slowly (a parcel
left at the door is learnt in about half a minute; a person who stops stays foreground as long).

Known limits: the detector sees grey levels only, so a visitor whose clothes match the background
in brightness shows only in parts, and hard shadows count as motion (CDnet scores them as
background); a person standing in front of a swaying bush counts only with the part of them
outside it; a slow, smooth pan (about 0.5 px a frame at 320 wide) is not recognised as one before
its edges trigger; a shake wider than 8% of the picture is taken for a jump and restarts the
background.
"""

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from doorbell.camera.frames import Frame
from doorbell.camera.masks import ZoneMask
from doorbell.config import MotionSettings

from .motion_background import Background, Downscaler, LightMeter
from .motion_blobs import BlobTests, Tracks, qualifying_blobs
from .motion_shake import EXPLAINED_FRACTION, CameraMotion, CameraMove

NOMINAL_FRAME_INTERVAL_S = 1 / 15  # assumed when update() gets a bare image without a timestamp
WARMUP_S = 1.5  # the first moments only learn the scene
# Only when this much of the frame changed is the camera-motion test run (it costs ~0.1 ms).
CAMERA_CHECK_FRACTION = 0.1
# The close that joins a person's parts into one blob: 9 px at 320 px wide. A square: separable,
# several times cheaper than the 11 px ellipse it replaced, and it scored higher on CDnet highway.
CLOSE_WIDTH_FRACTION = 9 / 320
STEPS = ("downscale", "light", "foreground", "learn", "blobs")


@dataclass(slots=True)
class Motion:
    mask: np.ndarray  # uint8 at detection resolution: 255 where qualifying motion is
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h full frame
    score: float = 0.0  # fraction of the zone area that moved, 0..1
    triggered: bool = False  # trigger_frames consecutive frames had qualifying motion
    light_change: bool = False  # a global light change was seen (and absorbed) in this frame
    camera_moved: bool = False  # the picture was displaced: a shake (the background follows it)
    # or a pan or jump (the background restarted and nothing counts in this frame)


class _Thresholds:
    """Sensitivity 0..1 -> grey-level thresholds (more sensitive = lower)."""

    def __init__(self, sensitivity: float) -> None:
        s = min(1.0, max(0.0, sensitivity))
        self.base = 22.0 - 20.0 * s  # 22 .. 2 grey levels; 12 at the default 0.5
        self.deviations = 4.0 - 1.5 * s  # how many learnt deviations a pixel must exceed
        self.texture = 0.5 * self.base  # a texture (high-pass) difference that counts


class StepTimes:
    """CPU seconds spent in each step of update(), summed (for bench/)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STEPS, 0.0)
        self._last = 0.0

    def start(self) -> None:
        self._last = time.process_time()

    def lap(self, step: str) -> None:
        now = time.process_time()
        self.seconds[step] += now - self._last
        self._last = now


class _Buffers:
    """Per-frame arrays at detection size, allocated once per frame size."""

    def __init__(self, width: int, height: int) -> None:
        self.diff = np.empty((height, width), np.uint8)
        self.fg = np.empty((height, width), np.uint8)
        self.opened = np.empty((height, width), np.uint8)


class MotionDetector:
    """Decides, frame by frame, whether something is moving (see the module docstring)."""

    def __init__(self, settings: MotionSettings | None = None,
                 step_times: StepTimes | None = None) -> None:
        self.settings = settings if settings is not None else MotionSettings()
        self.thresholds = _Thresholds(self.settings.sensitivity)
        self.step_times = step_times
        self._downscale: Downscaler | None = None
        self._background: Background | None = None
        self._buffers: _Buffers | None = None
        self._camera: CameraMotion | None = None
        self._tracks = Tracks()
        self._zone: np.ndarray | None = None
        self._whole_frame = True
        self._zone_area_px = 1
        self._min_area_px = 0.0
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close = np.ones((1, 1), np.uint8)  # sized to the frame in _start()
        self._elapsed_s = 0.0
        self._last_pts_us: int | None = None
        self._consecutive = 0
        self._light = LightMeter()

    @property
    def detection_size(self) -> tuple[int, int] | None:
        """(width, height) of the detection mask, known after the first frame."""
        return None if self._downscale is None else self._downscale.size

    def reset(self) -> None:
        """Forget the scene (after the camera reconnected, say): the next frame starts afresh."""
        self._downscale = None
        self._background = None
        self._elapsed_s = 0.0
        self._last_pts_us = None
        self._consecutive = 0
        self._light = LightMeter()
        self._tracks.clear()

    def update(self, frame: Frame | np.ndarray) -> Motion:
        image, dt_s = self._unpack(frame)
        timer = self.step_times
        if timer:
            timer.start()
        if self._downscale is None or self._downscale.full_size != (image.shape[1],
                                                                     image.shape[0]):
            self._start(image)
        assert self._downscale and self._background and self._buffers and self._camera
        small = self._downscale(image)
        if timer:
            timer.lap("downscale")
        self._elapsed_s += dt_s
        background, buffers = self._background, self._buffers
        warming_up = self._elapsed_s < WARMUP_S

        gain = background.prepare(background.gain(small))
        light_change = self._light.update(gain, dt_s)
        if timer:
            timer.lap("light")

        diff, threshold, fg, changed_fraction = self._foreground(small)
        move = self._camera_move(small, dt_s, changed_fraction, warming_up)
        if move is not None and move.panning:
            return self._restart(small, light_change=light_change, camera_moved=True)
        if move is not None:  # shake: move the background with the picture
            background.follow_camera(move.dx, move.dy)
            self._tracks.follow_camera(move.dx, move.dy)
            diff, threshold, fg, changed_fraction = self._foreground(small)
        if changed_fraction > self.settings.light_change_fraction:
            # Too much changed at once for anything but light: start from this frame.
            return self._restart(small, light_change=True, camera_moved=move is not None)
        if changed_fraction:
            background.forget_ghosts(small, fg, threshold)
            opened = cv2.medianBlur(fg, 3, dst=buffers.opened)
        else:  # no foreground, so no ghost in it and nothing to open (a still scene)
            opened = buffers.opened
            opened.fill(0)
        if timer:
            timer.lap("foreground")
        background.learn(small, fg, opened, dt_s, warming_up)
        if timer:
            timer.lap("learn")
        if warming_up:
            return self._quiet(light_change=light_change)

        boxes: list[tuple[int, int, int, int]] = []
        if cv2.countNonZero(opened):
            mask = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, self._close)
            if not self._whole_frame:
                cv2.bitwise_and(mask, self._zone, dst=mask)
            tests = BlobTests(small, background.mean_u8,
                              background.edge_limit(self.thresholds.texture), opened,
                              background.recent_flips, background.deviation)
            boxes = [self._full_frame_box(box) for box in
                     qualifying_blobs(mask, tests, self._tracks, self._min_area_px)]
        else:
            self._tracks.clear()
            mask = np.zeros_like(opened)
        moved_px = cv2.countNonZero(mask) if boxes else 0
        if timer:
            timer.lap("blobs")
        self._consecutive = self._consecutive + 1 if boxes else 0
        return Motion(
            mask=mask,
            boxes=boxes,
            score=moved_px / self._zone_area_px,
            triggered=self._consecutive >= self.settings.trigger_frames,
            light_change=light_change,
            camera_moved=move is not None,
        )

    # -- steps -------------------------------------------------------------------------------

    def _camera_move(self, small: np.ndarray, dt_s: float, changed_fraction: float,
                     warming_up: bool) -> CameraMove | None:
        """Did the camera move (step 3)? Only a shift that explains the change counts."""
        assert self._camera and self._background and self._buffers
        shift = self._camera.propose(small, self._background.mean_u8, dt_s,
                                     check=changed_fraction > CAMERA_CHECK_FRACTION
                                     and not warming_up)
        if shift is None:
            return None
        buffers = self._buffers
        cv2.absdiff(small, self._background.shifted_mean(*shift), dst=buffers.diff)
        cv2.compare(buffers.diff, self._background.threshold, cv2.CMP_GT, dst=buffers.opened)
        still_changed = cv2.countNonZero(buffers.opened) / buffers.opened.size
        if still_changed > EXPLAINED_FRACTION * changed_fraction:
            return None
        return self._camera.accept(*shift)

    def _foreground(self, small: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """diff, threshold and foreground against the background; the changed fraction."""
        assert self._background and self._buffers
        background, buffers = self._background, self._buffers
        diff = cv2.absdiff(small, background.mean_u8, dst=buffers.diff)
        threshold = background.threshold
        fg = cv2.compare(diff, threshold, cv2.CMP_GT, dst=buffers.fg)
        return diff, threshold, fg, cv2.countNonZero(fg) / fg.size

    def _unpack(self, frame: Frame | np.ndarray) -> tuple[np.ndarray, float]:
        if isinstance(frame, Frame):
            image, pts_us = frame.image, frame.pts_us
        else:
            image, pts_us = frame, None
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError("MotionDetector.update needs a uint8 BGR or grayscale image")
        dt_s = NOMINAL_FRAME_INTERVAL_S
        if pts_us is not None:
            if self._last_pts_us is not None and pts_us > self._last_pts_us:
                # Clamp: a stalled stream must not make one frame count as minutes of learning.
                dt_s = min(1.0, max(0.001, (pts_us - self._last_pts_us) / 1e6))
            self._last_pts_us = pts_us
        return image, dt_s

    def _start(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        self._downscale = Downscaler(width, height, self.settings.detect_width)
        det_w, det_h = self._downscale.size
        self._background = Background(self._downscale(image).copy(), self.thresholds.base,
                                      self.thresholds.deviations)
        self._buffers = _Buffers(det_w, det_h)
        self._camera = CameraMotion(det_w, det_h)
        self._tracks.clear()
        self._zone = ZoneMask(self.settings.zones, det_w, det_h)
        self._whole_frame = not self.settings.zones
        self._zone_area_px = max(1, cv2.countNonZero(self._zone))
        self._min_area_px = self.settings.min_area * det_w * det_h
        close_px = max(3, round(CLOSE_WIDTH_FRACTION * det_w) | 1)
        self._close = cv2.getStructuringElement(cv2.MORPH_RECT, (close_px, close_px))
        self._elapsed_s = 0.0
        self._consecutive = 0

    def _restart(self, small: np.ndarray, light_change: bool, camera_moved: bool) -> Motion:
        assert self._background is not None
        self._background.reset(small)
        self._tracks.clear()
        motion = self._quiet(light_change=light_change)
        motion.camera_moved = camera_moved
        return motion

    def _quiet(self, light_change: bool) -> Motion:
        w, h = self._downscale.size if self._downscale else (1, 1)
        self._consecutive = 0
        return Motion(mask=np.zeros((h, w), np.uint8), light_change=light_change)

    def _full_frame_box(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        assert self._downscale is not None
        (full_w, full_h), (det_w, det_h) = self._downscale.full_size, self._downscale.size
        sx, sy = full_w / det_w, full_h / det_h
        x, y, w, h = box
        x0, y0 = math.floor(x * sx), math.floor(y * sy)
        x1, y1 = min(full_w, math.ceil((x + w) * sx)), min(full_h, math.ceil((y + h) * sy))
        return x0, y0, x1 - x0, y1 - y0
