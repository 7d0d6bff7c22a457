"""Motion detection on a small grayscale copy of the frame.

    detector = MotionDetector(settings.motion)      # None: the shipped defaults
    motion = detector.update(frame)                 # a Frame (or a bare BGR image)
    if motion.triggered: ...                        # a few consecutive frames of real motion

Per frame (everything after step 1 runs on ~320 x 180 pixels: the full frame is touched once):

1. Downscale: grayscale, cv2.resize INTER_AREA to `detect_width`, a small blur. Averaging pixels
   this way also averages away most sensor noise.
2. Global light: the median brightness ratio of frame to background, over pixels that were not
   moving, is the light change (a cloud, an auto-exposure step). The background is rescaled by it
   at once, so the change is absorbed instead of being seen as motion. If more than
   `light_change_fraction` of the frame differs even so, the light changed in a way one factor
   cannot explain (a lamp, the camera's night mode): the background restarts from this frame.
3. Foreground: pixels that differ from the background by more than their own threshold, a base
   level (from `sensitivity`) plus a multiple of the pixel's usual deviation. Comparing with the
   background, not just the previous frame, is what catches a person walking straight at the
   camera: they grow in place, and a frame difference sees only their outline.
4. Clean-up: morphological open (drops rain streaks and noise specks) and close (joins a person
   into one blob); zones remove motion where it does not count.
5. Blobs that count are at least `min_area` of the frame and
   - changed texture: a person replaces the background's edges with their own, while soft light
     (headlights sweeping the lawn) brightens a region but leaves its edges where they were;
   - are mostly steady: a pixel that flipped between foreground and background twice in the last
     couple of seconds is going back and forth (a branch in a gust, leaves). A visitor's body
     flips once when they arrive; only their outline and swinging legs go back and forth;
   - do not lie largely on restless pixels, those whose usual deviation is high (the edge of a
     swaying branch): a blob there is that branch swinging further than usual, in the first
     swing of a gust, before its pixels have flipped often enough to count as oscillating.
6. Trigger: `triggered` once `trigger_frames` consecutive frames had a blob that counts.

The background follows still pixels within seconds and pixels under motion only slowly (a parcel
left at the door is learnt in about half a minute). Where a visitor lingered they were partly
learnt; when they leave, the pixels look like the long-term background again and are reset at once,
so no "ghost" of them keeps the detector triggered.

Each mechanism is there because a scripted nuisance in camera.synthetic triggers without it:
without the texture test the headlights do, without the gain the exposure steps and clouds, without
the steadiness and restlessness tests a branch gust, without ghost forgetting the place a visitor
stood. Known limits: the detector sees grey levels only, so a visitor whose clothes match the
background in brightness (a yellow coat before a beige wall) shows only in parts and may trigger
late; a person standing in front of a swaying bush counts only with the part of them outside it;
a camera that moves (or a frame below ~640 px wide in heavy rain) makes most pixels restless.
"""

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from doorbell.camera.frames import Frame
from doorbell.camera.masks import ZoneMask
from doorbell.config import MotionSettings

NOMINAL_FRAME_INTERVAL_S = 1 / 15  # assumed when update() gets a bare image without a timestamp

# Time constants (seconds) of the background model; per-frame rates follow from the frame interval.
WARMUP_S = 1.5  # the first moments only learn the scene
WARMUP_TAU_S = 0.3
BACKGROUND_TAU_S = 2.0  # still pixels
FOREGROUND_TAU_S = 30.0  # pixels under motion: someone who stops is learnt slowly
REFERENCE_TAU_S = 20.0  # the long-term background used to forget ghosts
DEVIATION_TAU_S = 4.0  # the per-pixel noise level
OSCILLATION_TAU_S = 2.0  # memory of recent flips between foreground and background

# A pixel that flipped between foreground and background this many times within about
# OSCILLATION_TAU_S is going back and forth (a branch in a gust, leaves) and does not count.
OSCILLATION_FLIPS = 2.0
# A blob counts only if at least this fraction of its moving pixels is steady. Measured on the
# synthetic scene: visitors 0.65 or more in 95% of frames (outline and legs are the rest); a branch
# in a gust about 0.01 (median), except in its first swings, which the restless test catches.
STEADY_FRACTION = 0.5
# A pixel whose usual deviation (learnt while nothing moved there) is this high, in grey levels,
# is restless: the edge of a swaying branch, leaves (sensor noise is ~1-2 after the downscale).
# A blob with this fraction on restless pixels is not a visitor. Measured on the synthetic scene:
# visitors 0.12 or less in 95% of frames (rain raises some to 0.35: those frames are lost), the
# first swings of a gust 0.28 to 0.52.
RESTLESS_DEVIATION = 5.0
RESTLESS_FRACTION = 0.2

MIN_DEVIATION = 1.0  # grey levels: never trust a pixel to be quieter than this
LIGHT_STEP = 0.04  # a brightness change of 4% between two frames is reported as light change
LIGHT_DRIFT = 0.08  # ... and so is 8% against the last second's average (a cloud, over ~1 s)
LIGHT_AVERAGE_TAU_S = 1.0
GAIN_SAMPLE_STEP = 3  # estimate the gain from every 3rd pixel in each direction (speed)
TEXTURE_CHANGED_FRACTION = 0.04  # a blob is an object if this much of it changed texture


@dataclass(slots=True)
class Motion:
    mask: np.ndarray  # uint8 at detection resolution: 255 where qualifying motion is
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h full frame
    score: float = 0.0  # fraction of the zone area that moved, 0..1
    triggered: bool = False  # trigger_frames consecutive frames had qualifying motion
    light_change: bool = False  # a global light change was seen (and absorbed) in this frame


def _rate(dt_s: float, tau_s: float) -> float:
    """Per-frame learning rate of an exponential moving average with time constant tau_s."""
    return 1.0 - math.exp(-dt_s / tau_s)


class _Thresholds:
    """Sensitivity 0..1 -> grey-level thresholds (more sensitive = lower)."""

    def __init__(self, sensitivity: float) -> None:
        s = min(1.0, max(0.0, sensitivity))
        self.base = 22.0 - 20.0 * s  # 22 .. 2 grey levels; 12 at the default 0.5
        self.deviations = 4.0 - 1.5 * s  # how many learnt deviations a pixel must exceed
        self.texture = 0.5 * self.base  # a texture (high-pass) difference that counts


class _LightMeter:
    """Follows the global brightness (the product of per-frame gains) to flag light changes."""

    def __init__(self) -> None:
        self.level = 1.0  # brightness relative to the first frame
        self.average = 1.0  # its moving average over about LIGHT_AVERAGE_TAU_S

    def update(self, gain: float, dt_s: float) -> bool:
        self.level *= gain
        self.average += _rate(dt_s, LIGHT_AVERAGE_TAU_S) * (self.level - self.average)
        return abs(gain - 1.0) > LIGHT_STEP or abs(self.level / self.average - 1.0) > LIGHT_DRIFT


class _Downscaler:
    """Full BGR frame -> small blurred grayscale float32, the only full-frame work per frame."""

    def __init__(self, width: int, height: int, detect_width: int) -> None:
        self.full_size = (width, height)
        detect_width = min(detect_width, width)
        self.size = (detect_width, max(8, round(height * detect_width / width)))
        # INTER_AREA averages factor^2 pixels, which already smooths noise, rain and aliasing;
        # a frame that is hardly reduced (a small camera) gets a stronger blur instead.
        self.blur = (3, 3) if width / detect_width >= 2.5 else (5, 5)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        # Grey first: INTER_AREA then averages one channel instead of three.
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(gray, self.size, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, self.blur, 0).astype(np.float32)


class _Background:
    """What the scene looks like without motion, per pixel, and how each pixel behaves."""

    def __init__(self, first: np.ndarray) -> None:
        self.mean = first.copy()  # the background
        self.reference = first.copy()  # slower, updated only where nothing moves
        self.deviation = np.full_like(first, 2.0)  # mean absolute difference, grey levels
        self.recent_flips = np.zeros_like(first)  # flips, fading with OSCILLATION_TAU_S
        self.previous_fg = np.zeros(first.shape, np.uint8)  # raw foreground of the last frame
        self.previous_blobs = np.zeros(first.shape, np.uint8)  # ... after the open, for flips
        h, w = first.shape
        self._samples = (slice(1, h, GAIN_SAMPLE_STEP), slice(1, w, GAIN_SAMPLE_STEP))

    def gain(self, small: np.ndarray) -> float:
        """Median brightness ratio frame/background over pixels that were not moving."""
        frame = small[self._samples]
        background = self.mean[self._samples]
        still = (self.previous_fg[self._samples] == 0) & (background > 12.0)
        if np.count_nonzero(still) < 50:
            return 1.0
        return float(np.median(frame[still] / background[still]))

    def rescale(self, gain: float) -> None:
        self.mean *= gain
        self.reference *= gain

    def reset(self, small: np.ndarray) -> None:
        self.mean[:] = small
        self.reference[:] = small

    def learn(self, small: np.ndarray, diff: np.ndarray, fg: np.ndarray, opened: np.ndarray,
              dt_s: float, warming_up: bool) -> None:
        """Update the model with this frame; fg is the raw foreground, opened the same without
        specks (rain, noise), which must not count as pixels going back and forth."""
        moving = fg > 0
        if warming_up:
            rate = np.float32(_rate(dt_s, WARMUP_TAU_S))
            cv2.accumulateWeighted(small, self.mean, float(rate))
            self.reference[:] = self.mean
            cv2.accumulateWeighted(diff, self.deviation, float(rate))
            np.maximum(self.deviation, MIN_DEVIATION, out=self.deviation)
            self.previous_fg[:] = 0
            self.previous_blobs[:] = 0
            return
        # Background: fast where still, slow under motion (so a visitor is not learnt in passing).
        rates = np.where(moving, _rate(dt_s, FOREGROUND_TAU_S),
                         _rate(dt_s, BACKGROUND_TAU_S)).astype(np.float32)
        self.mean += rates * (small - self.mean)
        still = (~moving).astype(np.uint8)
        cv2.accumulateWeighted(small, self.reference, _rate(dt_s, REFERENCE_TAU_S), mask=still)

        # Deviation: the usual difference of still pixels (noise, shimmer). Only still pixels
        # teach it, or a visitor would raise the threshold over themselves.
        cv2.accumulateWeighted(diff, self.deviation, _rate(dt_s, DEVIATION_TAU_S), mask=still)
        np.maximum(self.deviation, MIN_DEVIATION, out=self.deviation)

        # Recent flips between foreground and background: a fading count per pixel.
        self.recent_flips *= np.float32(math.exp(-dt_s / OSCILLATION_TAU_S))
        flipped = cv2.bitwise_xor(opened, self.previous_blobs)
        self.recent_flips[flipped > 0] += 1.0
        self.previous_fg = fg
        self.previous_blobs = opened

    def forget_ghosts(self, small: np.ndarray, fg: np.ndarray, threshold: np.ndarray) -> None:
        """Pixels back to their long-term look are background again: clear them from fg."""
        ghost = (fg > 0) & (np.abs(small - self.reference) < threshold)
        if ghost.any():
            self.mean[ghost] = small[ghost]
            fg[ghost] = 0

    def oscillating(self) -> np.ndarray:
        """bool mask of pixels going back and forth between foreground and background."""
        return self.recent_flips >= OSCILLATION_FLIPS


def _high_pass(image: np.ndarray) -> np.ndarray:
    """Edges and texture: the image minus a local mean (removes soft light gradients)."""
    return image - cv2.blur(image, (7, 7))


class MotionDetector:
    """Decides, frame by frame, whether something is moving (see the module docstring)."""

    def __init__(self, settings: MotionSettings | None = None) -> None:
        self.settings = settings if settings is not None else MotionSettings()
        self.thresholds = _Thresholds(self.settings.sensitivity)
        self._downscale: _Downscaler | None = None
        self._background: _Background | None = None
        self._zone: np.ndarray | None = None
        self._zone_area_px = 1
        self._min_area_px = 0.0
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
        self._elapsed_s = 0.0
        self._last_pts_us: int | None = None
        self._consecutive = 0
        self._light = _LightMeter()

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
        self._light = _LightMeter()

    def update(self, frame: Frame | np.ndarray) -> Motion:
        image, dt_s = self._unpack(frame)
        if self._downscale is None or self._downscale.full_size != (image.shape[1],
                                                                     image.shape[0]):
            self._start(image)
        assert self._downscale is not None and self._background is not None
        small = self._downscale(image)
        self._elapsed_s += dt_s
        background = self._background
        warming_up = self._elapsed_s < WARMUP_S

        gain = background.gain(small)
        background.rescale(gain)
        light_change = self._light.update(gain, dt_s)

        diff = cv2.absdiff(small, background.mean)
        threshold = self.thresholds.base + self.thresholds.deviations * background.deviation
        fg = (diff > threshold).astype(np.uint8) * 255
        changed_fraction = cv2.countNonZero(fg) / fg.size
        if changed_fraction > self.settings.light_change_fraction:
            # Too much changed at once for anything but light: start from this frame.
            background.reset(small)
            self._consecutive = 0
            return self._quiet(light_change=True)
        background.forget_ghosts(small, fg, threshold)
        opened = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._open)
        background.learn(small, diff, fg, opened, dt_s, warming_up)
        if warming_up:
            return self._quiet(light_change=light_change)

        mask = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, self._close)
        cv2.bitwise_and(mask, self._zone, dst=mask)
        mask, boxes = self._qualifying_blobs(mask, opened, small, background)

        moved_px = cv2.countNonZero(mask)
        self._consecutive = self._consecutive + 1 if boxes else 0
        return Motion(
            mask=mask,
            boxes=boxes,
            score=moved_px / self._zone_area_px,
            triggered=self._consecutive >= self.settings.trigger_frames,
            light_change=light_change,
        )

    # -- steps -------------------------------------------------------------------------------

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
        self._downscale = _Downscaler(width, height, self.settings.detect_width)
        det_w, det_h = self._downscale.size
        self._background = _Background(self._downscale(image))
        self._zone = ZoneMask(self.settings.zones, det_w, det_h)
        self._zone_area_px = max(1, cv2.countNonZero(self._zone))
        self._min_area_px = self.settings.min_area * det_w * det_h
        self._elapsed_s = 0.0
        self._consecutive = 0

    def _quiet(self, light_change: bool) -> Motion:
        w, h = self._downscale.size if self._downscale else (1, 1)
        self._consecutive = 0
        return Motion(mask=np.zeros((h, w), np.uint8), light_change=light_change)

    def _qualifying_blobs(self, mask: np.ndarray, opened: np.ndarray, small: np.ndarray,
                          background: _Background
                          ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
        """The mask and full-frame boxes of the blobs that count (step 5 of the module doc).

        mask is the cleaned foreground (holes closed, zones applied), opened the foreground
        before the close: the pixels that really differ.
        """
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count <= 1:
            return mask, []
        big = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= self._min_area_px]
        if not big:
            return np.zeros_like(mask), []

        hp_frame, hp_background = _high_pass(small), _high_pass(background.mean)
        texture_changed = np.abs(hp_frame - hp_background) > (
            self.thresholds.texture + 0.5 * np.abs(hp_background))
        texture_px = np.bincount(labels[texture_changed], minlength=count)
        # Steadiness is judged on the pixels that really differ (not the holes the close filled,
        # where rain on a low-resolution picture flickers).
        moving = opened > 0
        moving_px = np.bincount(labels[moving], minlength=count)
        steady_px = np.bincount(labels[moving & ~background.oscillating()], minlength=count)
        restless_px = np.bincount(labels[background.deviation >= RESTLESS_DEVIATION],
                                  minlength=count)

        keep = np.zeros(count, bool)
        for i in big:
            area = stats[i, cv2.CC_STAT_AREA]
            keep[i] = (texture_px[i] >= TEXTURE_CHANGED_FRACTION * area
                       and steady_px[i] >= STEADY_FRACTION * moving_px[i]
                       and restless_px[i] < RESTLESS_FRACTION * area)
        kept = np.flatnonzero(keep)
        if kept.size == 0:
            return np.zeros_like(mask), []
        out = np.where(keep[labels], np.uint8(255), np.uint8(0))
        return out, [self._full_frame_box(stats[i]) for i in kept]

    def _full_frame_box(self, stat: np.ndarray) -> tuple[int, int, int, int]:
        assert self._downscale is not None
        (full_w, full_h), (det_w, det_h) = self._downscale.full_size, self._downscale.size
        sx, sy = full_w / det_w, full_h / det_h
        x, y = int(stat[cv2.CC_STAT_LEFT]), int(stat[cv2.CC_STAT_TOP])
        w, h = int(stat[cv2.CC_STAT_WIDTH]), int(stat[cv2.CC_STAT_HEIGHT])
        x0, y0 = math.floor(x * sx), math.floor(y * sy)
        x1, y1 = min(full_w, math.ceil((x + w) * sx)), min(full_h, math.ceil((y + h) * sy))
        return x0, y0, x1 - x0, y1 - y0
