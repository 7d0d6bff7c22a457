"""The motion detector's picture of the scene without motion (see camera/motion.py's docstring).

Everything here works on the small grayscale copy (detection size) into buffers allocated once,
when the first frame of a size arrives: no full-size array is made per frame.
"""

import math

import cv2
import numpy as np

# Time constants (seconds) of the background model; per-frame rates follow from the frame interval.
WARMUP_TAU_S = 0.3  # the first moments only learn the scene
BACKGROUND_TAU_S = 2.0  # still pixels
FOREGROUND_TAU_S = 30.0  # pixels under motion: someone who stops is learnt slowly
REFERENCE_TAU_S = 20.0  # the long-term background used to forget ghosts
DEVIATION_TAU_S = 4.0  # the per-pixel noise level
OSCILLATION_TAU_S = 2.0  # memory of recent flips between foreground and background

FLIP = 255.0  # recent_flips counts a flip as this much

MIN_DEVIATION = 1.0  # grey levels: never trust a pixel to be quieter than this
SMALL_FRAME_BLUR = (5, 5)
GAIN_SAMPLES = 1500  # the gain is the median over about this many pixels on a grid (speed)
GAIN_MIN_LEVEL = 12.0  # grey levels: darker background pixels give no usable ratio
GAIN_MIN_SAMPLES = 50


def rate(dt_s: float, tau_s: float) -> float:
    """Per-frame learning rate of an exponential moving average with time constant tau_s."""
    return 1.0 - math.exp(-dt_s / tau_s)


class Downscaler:
    """Full frame -> small blurred grayscale (uint8 and float32), the only full-frame work."""

    def __init__(self, width: int, height: int, detect_width: int) -> None:
        self.full_size = (width, height)
        detect_width = min(detect_width, width)
        self.size = (detect_width, max(8, round(height * detect_width / width)))
        # INTER_AREA averages factor^2 pixels, which already smooths noise, rain and aliasing;
        # a frame that is hardly reduced (a small camera) gets a stronger blur instead.
        self.blur = (3, 3) if width / detect_width >= 2.5 else SMALL_FRAME_BLUR
        # Reducing by less than 2x, INTER_AREA costs ~10x INTER_LINEAR (0.3 ms for 360 -> 320)
        # for no gain: the blur that follows does the averaging.
        self.interpolation = cv2.INTER_AREA if width >= 2 * detect_width else cv2.INTER_LINEAR
        w, h = self.size
        self._gray = np.empty((height, width), np.uint8)
        self._small = np.empty((h, w), np.uint8)
        self._blurred = np.empty((h, w), np.uint8)
        self.image = np.empty((h, w), np.float32)  # the result of the last call

    def __call__(self, image: np.ndarray) -> np.ndarray:
        # Grey first: INTER_AREA then averages one channel instead of three.
        gray = image
        if image.ndim == 3:
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=self._gray)
        small = gray
        if gray.shape[::-1] != self.size:
            small = cv2.resize(gray, self.size, dst=self._small, interpolation=self.interpolation)
        cv2.GaussianBlur(small, self.blur, 0, dst=self._blurred)
        np.copyto(self.image, self._blurred)
        return self.image


class Background:
    """What the scene looks like without motion, per pixel, and how each pixel behaves."""

    def __init__(self, first: np.ndarray, base: float, deviations: float) -> None:
        """base, deviations: a pixel is foreground where it differs by more than base grey
        levels plus deviations times its usual deviation (self.threshold)."""
        h, w = first.shape
        self.mean = first.copy()  # the background
        self.reference = first.copy()  # slower, updated only where nothing moves
        self.deviation = np.full_like(first, 2.0)  # mean absolute difference, grey levels
        self.threshold = np.empty_like(first)  # follows deviation (see _update_threshold)
        self._base, self._deviations = base, deviations
        self._update_threshold()
        self.recent_flips = np.zeros_like(first)  # flips x FLIP, fading with OSCILLATION_TAU_S
        self.previous_fg = np.zeros((h, w), np.uint8)  # raw foreground of the last frame
        self.previous_opened = np.zeros((h, w), np.uint8)  # ... without specks, for flips
        self._still = np.empty((h, w), np.uint8)
        self._flipped = np.empty((h, w), np.uint8)
        self._ghost = np.empty((h, w), np.uint8)
        self._reference_diff = np.empty((h, w), np.float32)
        self._warped = np.empty((h, w), np.float32)
        self._warp_size = (w, h)
        step = max(1, int(math.sqrt(h * w / GAIN_SAMPLES)))
        self._grid = (slice(step // 2, h, step), slice(step // 2, w, step))  # the gain's pixels

    def gain(self, small: np.ndarray) -> float:
        """Median brightness ratio frame/background over pixels that were not moving."""
        background = self.mean[self._grid]
        still = (self.previous_fg[self._grid] == 0) & (background > GAIN_MIN_LEVEL)
        if np.count_nonzero(still) < GAIN_MIN_SAMPLES:
            return 1.0
        ratio = small[self._grid][still] / background[still]
        middle = ratio.size // 2
        return float(np.partition(ratio, middle)[middle])

    def rescale(self, gain: float) -> None:
        if gain != 1.0:
            np.multiply(self.mean, gain, out=self.mean)
            np.multiply(self.reference, gain, out=self.reference)

    def shifted_mean(self, dx: float, dy: float) -> np.ndarray:
        """The background as it would look moved by (dx, dy) (a buffer, valid until the next
        call)."""
        move = np.float32([[1, 0, dx], [0, 1, dy]])
        return cv2.warpAffine(self.mean, move, self._warp_size, dst=self._warped,
                              borderMode=cv2.BORDER_REPLICATE)

    def follow_camera(self, dx: float, dy: float) -> None:
        """The camera moved by (dx, dy) detection pixels: move the model with the picture."""
        move = np.float32([[1, 0, dx], [0, 1, dy]])
        for model in (self.mean, self.reference, self.deviation, self.recent_flips):
            cv2.warpAffine(model, move, self._warp_size, dst=self._warped,
                           borderMode=cv2.BORDER_REPLICATE)
            np.copyto(model, self._warped)
        self._update_threshold()

    def _update_threshold(self) -> None:
        cv2.addWeighted(self.deviation, self._deviations, self.deviation, 0.0, self._base,
                        dst=self.threshold)

    def reset(self, small: np.ndarray) -> None:
        self.mean[:] = small
        self.reference[:] = small
        self.previous_fg[:] = 0
        self.previous_opened[:] = 0

    def forget_ghosts(self, small: np.ndarray, fg: np.ndarray, threshold: np.ndarray) -> None:
        """Pixels back to their long-term look are background again: clear them from fg."""
        cv2.absdiff(small, self.reference, dst=self._reference_diff)
        cv2.compare(self._reference_diff, threshold, cv2.CMP_LT, dst=self._ghost)
        cv2.bitwise_and(self._ghost, fg, dst=self._ghost)
        if cv2.countNonZero(self._ghost):
            cv2.copyTo(small, self._ghost, self.mean)
            cv2.subtract(fg, self._ghost, dst=fg)

    def learn(self, small: np.ndarray, diff: np.ndarray, fg: np.ndarray, opened: np.ndarray,
              dt_s: float, warming_up: bool) -> None:
        """Update the model with this frame; fg is the raw foreground, opened the same without
        specks (rain, noise), which must not count as pixels going back and forth."""
        if warming_up:
            warm = rate(dt_s, WARMUP_TAU_S)
            cv2.accumulateWeighted(small, self.mean, warm)
            self.reference[:] = self.mean
            cv2.accumulateWeighted(diff, self.deviation, warm)
            cv2.max(self.deviation, MIN_DEVIATION, dst=self.deviation)
            self._update_threshold()
            self.previous_fg[:] = 0
            self.previous_opened[:] = 0
            return
        still = cv2.bitwise_not(fg, dst=self._still)
        # Background: fast where still, slow under motion (so a visitor is not learnt in passing).
        cv2.accumulateWeighted(small, self.mean, rate(dt_s, BACKGROUND_TAU_S), mask=still)
        if cv2.countNonZero(fg):
            cv2.accumulateWeighted(small, self.mean, rate(dt_s, FOREGROUND_TAU_S), mask=fg)
        cv2.accumulateWeighted(small, self.reference, rate(dt_s, REFERENCE_TAU_S), mask=still)
        # Deviation: the usual difference of still pixels (noise, shimmer). Only still pixels
        # teach it, or a visitor would raise the threshold over themselves.
        cv2.accumulateWeighted(diff, self.deviation, rate(dt_s, DEVIATION_TAU_S), mask=still)
        cv2.max(self.deviation, MIN_DEVIATION, dst=self.deviation)
        self._update_threshold()
        # Recent flips between foreground and background: a fading count per pixel (in units
        # of FLIP: the 0/255 flip mask is added as it is), faded and added in one pass.
        cv2.bitwise_xor(opened, self.previous_opened, dst=self._flipped)
        cv2.addWeighted(self.recent_flips, math.exp(-dt_s / OSCILLATION_TAU_S), self._flipped,
                        1.0, 0.0, dst=self.recent_flips, dtype=cv2.CV_32F)
        np.copyto(self.previous_fg, fg)
        np.copyto(self.previous_opened, opened)


class LightMeter:
    """Follows the global brightness (the product of per-frame gains) to flag light changes."""

    STEP = 0.04  # a brightness change of 4% between two frames is reported as light change
    DRIFT = 0.08  # ... and so is 8% against the last second's average (a cloud, over ~1 s)
    AVERAGE_TAU_S = 1.0

    def __init__(self) -> None:
        self.level = 1.0  # brightness relative to the first frame
        self.average = 1.0  # its moving average over about AVERAGE_TAU_S

    def update(self, gain: float, dt_s: float) -> bool:
        self.level *= gain
        self.average += rate(dt_s, self.AVERAGE_TAU_S) * (self.level - self.average)
        return abs(gain - 1.0) > self.STEP or abs(self.level / self.average - 1.0) > self.DRIFT
