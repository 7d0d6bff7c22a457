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
SMALL_FRAME_BLUR = (3, 3)
GAIN_SAMPLES = 1500  # the gain is the median over about this many pixels on a grid (speed)
GAIN_MIN_LEVEL = 12.0  # grey levels: darker background pixels give no usable ratio
GAIN_MIN_SAMPLES = 50
# Texture (motion_blobs): the high-pass x - blur(x) over this window, and how often the
# background's own is recomputed (its edges change over seconds, and a blob's test then needs
# only the frame's side: half the cost).
TEXTURE_WINDOW = (7, 7)
EDGES_REFRESH_S = 0.5
# A gain this close to 1 is not applied: 0.5% is ~0.6 grey levels, below the noise, and the
# background's learning absorbs it within seconds.
GAIN_TOLERANCE = 0.0


def rate(dt_s: float, tau_s: float) -> float:
    """Per-frame learning rate of an exponential moving average with time constant tau_s."""
    return 1.0 - math.exp(-dt_s / tau_s)


class Downscaler:
    """Full frame -> small blurred grayscale uint8, the only full-frame work."""

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
        self.image = np.empty((h, w), np.uint8)  # the result of the last call

    def __call__(self, image: np.ndarray) -> np.ndarray:
        # Grey first: INTER_AREA then averages one channel instead of three.
        gray = image
        if image.ndim == 3:
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=self._gray)
        small = gray
        if gray.shape[::-1] != self.size:
            small = cv2.resize(gray, self.size, dst=self._small, interpolation=self.interpolation)
        return cv2.GaussianBlur(small, self.blur, 0, dst=self.image)


class Background:
    """What the scene looks like without motion, per pixel, and how each pixel behaves.

    The models learn in float32 (a rate of 0.001 a frame needs it); the per-frame tests compare
    uint8 copies (mean_u8, threshold), which OpenCV does several times faster on small images.
    """

    def __init__(self, first: np.ndarray, base: float, deviations: float) -> None:
        """first: the uint8 small frame. base, deviations: a pixel is foreground where it
        differs by more than base grey levels plus deviations times its usual deviation
        (self.threshold)."""
        h, w = first.shape
        self.mean = first.astype(np.float32)  # the background
        self.mean_u8 = first.copy()  # the same, rounded: refreshed by prepare()
        self.reference = self.mean.copy()  # slower, updated only where nothing moves
        self.deviation = np.full((h, w), 2.0, np.float32)  # mean absolute difference, grey levels
        self.threshold = np.empty((h, w), np.uint8)  # follows deviation (see _update_threshold)
        self._base, self._deviations = base, deviations
        self._update_threshold()
        self.recent_flips = np.zeros((h, w), np.float32)  # flips x FLIP, fading (OSCILLATION_TAU_S)
        self.previous_fg = np.zeros((h, w), np.uint8)  # raw foreground of the last frame
        self.previous_opened = np.zeros((h, w), np.uint8)  # ... without specks, for flips
        self._still = np.empty((h, w), np.uint8)
        self._flipped = np.empty((h, w), np.uint8)
        self._ghost = np.empty((h, w), np.uint8)
        self._reference_u8 = np.empty((h, w), np.uint8)
        self._reference_diff = np.empty((h, w), np.uint8)
        self._warped = np.empty((h, w), np.float32)
        self._small_f = np.empty((h, w), np.float32)
        self._float_diff = np.empty((h, w), np.float32)
        self._warped_u8 = np.empty((h, w), np.uint8)
        self._warp_size = (w, h)
        self._slow_turn = False
        self._edges = np.empty((h, w), np.float32)
        self._edge_limit = np.empty((h, w), np.float32)
        self._edges_age_s = math.inf  # stale: computed when first asked for
        self._slow_dt_s = 0.0
        step = max(1, int(math.sqrt(h * w / GAIN_SAMPLES)))
        rows, cols = np.mgrid[step // 2:h:step, step // 2:w:step]
        self._samples = (rows * w + cols).ravel()  # the gain's pixels, as flat indices

    def gain(self, small: np.ndarray) -> float:
        """Median brightness ratio frame/background over pixels that were not moving."""
        background = self.mean.reshape(-1).take(self._samples)
        still = (self.previous_fg.reshape(-1).take(self._samples) == 0)
        still &= background > GAIN_MIN_LEVEL
        if np.count_nonzero(still) < GAIN_MIN_SAMPLES:
            return 1.0
        ratio = small.reshape(-1).take(self._samples)[still] / background[still]
        middle = ratio.size // 2
        return float(np.partition(ratio, middle)[middle])

    def edge_limit(self, texture_level: float) -> np.ndarray:
        """Per pixel, how far the frame's high-pass may be from the background's before its
        texture counts as changed: half the background's own edge strength plus
        texture_level (a buffer, refreshed every EDGES_REFRESH_S)."""
        if self._edges_age_s >= EDGES_REFRESH_S:
            cv2.blur(self.mean, TEXTURE_WINDOW, dst=self._edges)
            cv2.absdiff(self.mean, self._edges, dst=self._edges)
            cv2.addWeighted(self._edges, 0.5, self._edges, 0.0, texture_level,
                            dst=self._edge_limit)
            self._edges_age_s = 0.0
        return self._edge_limit

    def prepare(self, gain: float) -> float:
        """Before this frame's tests: rescale the background by gain, unless it is too close to
        1 to matter (the learning absorbs that); the gain applied."""
        if abs(gain - 1.0) < GAIN_TOLERANCE:
            gain = 1.0
        else:
            np.multiply(self.mean, gain, out=self.mean)
            np.multiply(self.reference, gain, out=self.reference)
        cv2.convertScaleAbs(self.mean, dst=self.mean_u8)
        return gain

    def shifted_mean(self, dx: float, dy: float) -> np.ndarray:
        """mean_u8 as it would look moved by (dx, dy) (a buffer, valid until the next call)."""
        move = np.float32([[1, 0, dx], [0, 1, dy]])
        return cv2.warpAffine(self.mean_u8, move, self._warp_size, dst=self._warped_u8,
                              borderMode=cv2.BORDER_REPLICATE)

    def follow_camera(self, dx: float, dy: float) -> None:
        """The camera moved by (dx, dy) detection pixels: move the model with the picture."""
        move = np.float32([[1, 0, dx], [0, 1, dy]])
        for model in (self.mean, self.reference, self.deviation, self.recent_flips):
            cv2.warpAffine(model, move, self._warp_size, dst=self._warped,
                           borderMode=cv2.BORDER_REPLICATE)
            np.copyto(model, self._warped)
        self._update_threshold()
        cv2.convertScaleAbs(self.mean, dst=self.mean_u8)
        self._edges_age_s = math.inf

    def _update_threshold(self) -> None:
        # Rounded down: a whole-grey-level difference exceeds the float threshold t exactly
        # when it exceeds floor(t).
        cv2.convertScaleAbs(self.deviation, dst=self.threshold, alpha=self._deviations,
                            beta=self._base - 0.5)

    def reset(self, small: np.ndarray) -> None:
        self.mean[:] = small
        self.mean_u8[:] = small
        self.reference[:] = small
        self._edges_age_s = math.inf
        self.previous_fg[:] = 0
        self.previous_opened[:] = 0

    def forget_ghosts(self, small: np.ndarray, fg: np.ndarray, threshold: np.ndarray) -> None:
        """Pixels back to their long-term look are background again: clear them from fg."""
        cv2.convertScaleAbs(self.reference, dst=self._reference_u8)
        cv2.absdiff(small, self._reference_u8, dst=self._reference_diff)
        cv2.compare(self._reference_diff, threshold, cv2.CMP_LT, dst=self._ghost)
        cv2.bitwise_and(self._ghost, fg, dst=self._ghost)
        if cv2.countNonZero(self._ghost):
            cv2.accumulateWeighted(small, self.mean, 1.0, mask=self._ghost)  # mean = small
            cv2.copyTo(small, self._ghost, self.mean_u8)
            cv2.subtract(fg, self._ghost, dst=fg)

    def _learn_slowly(self, small: np.ndarray, still: np.ndarray, dt_s: float) -> None:
        cv2.accumulateWeighted(small, self.reference, rate(dt_s, REFERENCE_TAU_S), mask=still)
        # Deviation: the usual difference of still pixels (noise, shimmer). Only still pixels
        # teach it, or a visitor would raise the threshold over themselves.
        self._learn_deviation(small, rate(dt_s, DEVIATION_TAU_S), still)

    def _learn_deviation(self, small: np.ndarray, learning_rate: float,
                         mask: np.ndarray | None) -> None:
        # From the float difference: the rounded one (against mean_u8) is biased by the
        # rounding, which cost CDnet highway 0.01 of F1.
        np.copyto(self._small_f, small)
        float_diff = cv2.absdiff(self._small_f, self.mean, dst=self._float_diff)
        cv2.accumulateWeighted(float_diff, self.deviation, learning_rate, mask=mask)
        cv2.max(self.deviation, MIN_DEVIATION, dst=self.deviation)
        self._update_threshold()

    def learn(self, small: np.ndarray, fg: np.ndarray, opened: np.ndarray, dt_s: float,
              warming_up: bool) -> None:
        """Update the model with this uint8 frame; fg is the raw foreground, opened the same
        without specks (rain, noise), which must not count as pixels going back and forth."""
        self._edges_age_s += dt_s
        if warming_up:
            warm = rate(dt_s, WARMUP_TAU_S)
            cv2.accumulateWeighted(small, self.mean, warm)
            self.reference[:] = self.mean
            self._learn_deviation(small, warm, None)
            self.previous_fg[:] = 0
            self.previous_opened[:] = 0
            return
        still = cv2.bitwise_not(fg, dst=self._still)
        # Background: fast where still, slow under motion (so a visitor is not learnt in passing).
        cv2.accumulateWeighted(small, self.mean, rate(dt_s, BACKGROUND_TAU_S), mask=still)
        if cv2.countNonZero(fg):
            cv2.accumulateWeighted(small, self.mean, rate(dt_s, FOREGROUND_TAU_S), mask=fg)
        # The slow models (time constants of 4 s and more) learn every other frame, for the
        # time of both: a third of this step's work.
        self._slow_dt_s += dt_s
        self._slow_turn = not self._slow_turn
        if self._slow_turn:
            self._learn_slowly(small, still, self._slow_dt_s)
            self._slow_dt_s = 0.0
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
