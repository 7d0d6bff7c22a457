"""Has the camera itself moved? (step 3 of camera/motion.py's docstring)

When much of the picture changed at once, or the camera moved a moment ago, the frame is compared
with the background on a quarter-size copy by phase correlation. A displaced picture is the
camera's doing, not the scene's:
- shake (a pole in the wind, an overpass trembling: CDnet highway moves 1-4 px at 320 px wide):
  the picture goes back and forth around one place, so the background is moved with it and
  detection goes on;
- a pan, a cut or a camera carried around (bikes.mp4): the picture keeps going one way, or jumps
  further than a shake could; the background is invalid and restarts every such frame, and
  nothing triggers while it lasts.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .motion_background import rate

# The comparison runs at about 1/4 of detection size, each side rounded to a power of two
# (64 x 32 for 320 x 180): cv2.phaseCorrelate's DFTs cost half as much there (50 us at 64 x 64,
# 116 at 80 x 60).
THUMB_SCALE = 4
MIN_THUMB_SIDE = 16
MIN_SHIFT_PX = 1.0  # at detection size: a displacement this large makes every edge "move"
MIN_RESPONSE = 0.1  # phase correlation peak height below which no single shift explains it
# A shift is the camera's only if moving the background by it leaves at most this fraction of
# the changed pixels changed (a shake leaves a few; a shift that moving cars suggested, most).
EXPLAINED_FRACTION = 0.6
# The camera's displacement summed over about DRIFT_TAU_S: a shake stays near where it was,
# a pan adds up. Beyond PAN_DRIFT (of the width) it is a pan; one jump beyond JUMP, a cut.
DRIFT_TAU_S = 1.0
PAN_DRIFT = 0.03
JUMP = 0.08


def _thumb_side(side_px: int) -> int:
    """About side_px / THUMB_SCALE, as a power of two (at most side_px)."""
    side = 1 << round(math.log2(max(1.0, side_px / THUMB_SCALE)))
    return min(side_px, max(MIN_THUMB_SIDE, side))


@dataclass(frozen=True, slots=True)
class CameraMove:
    dx: float  # detection pixels by which the picture moved against the background
    dy: float
    panning: bool  # True: restart the background; False: move it with the picture (shake)


class CameraMotion:
    def __init__(self, width: int, height: int) -> None:
        self._width = width
        self._size = (_thumb_side(width), _thumb_side(height))
        self._scale = (width / self._size[0], height / self._size[1])
        w, h = self._size
        self._thumb = np.empty((h, w), np.uint8)
        self._frame = np.empty((h, w), np.float32)  # phaseCorrelate takes floats only
        self._background = np.empty((h, w), np.float32)
        self._window = cv2.createHanningWindow(self._size, cv2.CV_32F)
        self.drift = (0.0, 0.0)  # summed displacement, fading over DRIFT_TAU_S
        self.last_shift_px = 0.0  # at detection size, for the bench and the tests
        self.last_response = 0.0

    @property
    def recently_moved(self) -> bool:
        return math.hypot(*self.drift) >= MIN_SHIFT_PX

    def propose(self, small: np.ndarray, background: np.ndarray, dt_s: float, check: bool
                ) -> tuple[float, float] | None:
        """(dx, dy) detection pixels by which the frame looks like the background displaced,
        if by at least MIN_SHIFT_PX (check=False: not looked at, unless the camera moved a
        moment ago). Moving objects bias the estimate: the caller checks that moving the
        background by it explains the change before accept()ing it."""
        fade = 1.0 - rate(dt_s, DRIFT_TAU_S)
        self.drift = (self.drift[0] * fade, self.drift[1] * fade)
        if not (check or self.recently_moved):
            return None
        for image, thumb in ((small, self._frame), (background, self._background)):
            cv2.resize(image, self._size, dst=self._thumb, interpolation=cv2.INTER_AREA)
            np.copyto(thumb, self._thumb)
        (dx, dy), response = cv2.phaseCorrelate(self._background, self._frame, self._window)
        dx, dy = dx * self._scale[0], dy * self._scale[1]
        self.last_shift_px = math.hypot(dx, dy)
        self.last_response = response
        if response < MIN_RESPONSE or self.last_shift_px < MIN_SHIFT_PX:
            return None
        return dx, dy

    def accept(self, dx: float, dy: float) -> CameraMove:
        """The camera did move by (dx, dy): a shake, or a pan if it keeps going one way."""
        self.drift = (self.drift[0] + dx, self.drift[1] + dy)
        panning = (math.hypot(dx, dy) >= JUMP * self._width
                   or math.hypot(*self.drift) >= PAN_DRIFT * self._width)
        return CameraMove(dx, dy, panning)

    def clear(self) -> None:
        self.drift = (0.0, 0.0)
