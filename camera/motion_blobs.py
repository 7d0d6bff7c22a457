"""Which blobs of the motion mask count (step 5 of camera/motion.py's docstring).

Blobs are found with cv2.findContours on the cleaned mask (OpenCV 5's connectedComponentsWithStats
costs ~2 ms even on an empty 320x240 mask: more than the rest of the detector); every test then
works on the blob's bounding box only.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .motion_background import FLIP, TEXTURE_WINDOW

# A pixel that flipped between foreground and background this many times within about
# motion_background.OSCILLATION_TAU_S is going back and forth (a branch in a gust, leaves).
OSCILLATION_FLIPS = 2.0
# A blob that does not travel counts only if at least this fraction of its moving pixels is
# steady. Measured on the synthetic scene: visitors 0.65 or more in 95% of frames (outline and
# legs are the rest); a branch in a gust about 0.01 (median).
STEADY_FRACTION = 0.5
# A pixel whose usual deviation (learnt while nothing moved there) is this high, in grey levels,
# is restless: the edge of a swaying branch, leaves (sensor noise is ~1-2 after the downscale).
# A blob that does not travel, with this fraction on restless pixels, is not a visitor. Synthetic
# scene: visitors 0.12 or less in 95% of frames, the first swings of a gust 0.28 to 0.52.
RESTLESS_DEVIATION = 5.0
RESTLESS_FRACTION = 0.2
RESTLESS_FRACTION_TRAVELLING = 0.5
TEXTURE_CHANGED_FRACTION = 0.04  # a blob is an object if this much of it changed texture

# Travelling: a blob followed from frame to frame whose centre has moved, in a mostly straight
# line, by more than its own size has crossed the picture. Swinging foliage goes back and forth
# around where it started.
TRAVEL_SIZES = 0.75  # net displacement, in blob sizes (square root of its area)
TRAVEL_STRAIGHTNESS = 0.7  # net displacement / path length
TRAVEL_MAX_STEP_SIZES = 0.6  # a centre that jumps further (blobs merging, splitting) starts over
MERGED_FRACTION = 0.8  # of the old box inside the new one: it merged (and keeps travelling)


@dataclass(slots=True)
class _Track:
    start: tuple[float, float]
    centre: tuple[float, float]
    box: tuple[int, int, int, int]
    path_px: float = 0.0
    travelling: bool = False  # once it has travelled, until it is lost

    def travelled(self, size_px: float) -> bool:
        net = math.dist(self.start, self.centre)
        if net >= TRAVEL_SIZES * size_px and net >= TRAVEL_STRAIGHTNESS * self.path_px:
            self.travelling = True
        return self.travelling


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


class Tracks:
    """Blobs matched frame to frame by overlapping boxes, to tell travel from swinging."""

    def __init__(self) -> None:
        self._tracks: list[_Track] = []
        self._next: list[_Track] = []

    def follow(self, box: tuple[int, int, int, int], centre: tuple[float, float],
               size_px: float) -> _Track:
        best, best_overlap = None, 0
        for candidate in self._tracks:  # the first of the most overlapping
            overlap = _overlap(candidate.box, box)
            if overlap > best_overlap:
                best, best_overlap = candidate, overlap
        if best is None:
            track = _Track(centre, centre, box)
        else:
            step = math.dist(best.centre, centre)
            if step > TRAVEL_MAX_STEP_SIZES * size_px:  # merged or split: measure afresh
                # ... but a travelling blob that merged into this one is still in it
                merged = best_overlap >= MERGED_FRACTION * best.box[2] * best.box[3]
                track = _Track(centre, centre, box, travelling=best.travelling and merged)
            else:
                track = _Track(best.start, centre, box, best.path_px + step, best.travelling)
        self._next.append(track)
        return track

    def follow_camera(self, dx: float, dy: float) -> None:
        """The picture moved by (dx, dy): so did every starting point, relative to the scene
        (a blob the camera's own motion drags along does not travel)."""
        for track in self._tracks:
            track.start = (track.start[0] + dx, track.start[1] + dy)

    def end_frame(self) -> None:
        self._tracks, self._next = self._next, []

    def clear(self) -> None:
        self._tracks, self._next = [], []


@dataclass(slots=True)
class BlobTests:
    """Per-frame inputs of the tests, all at detection size."""

    small: np.ndarray  # the frame, uint8
    background: np.ndarray  # uint8
    edge_limit: np.ndarray  # float32, Background.edge_limit(): changed texture beyond it
    opened: np.ndarray  # uint8 foreground before the close: the pixels that really differ
    recent_flips: np.ndarray  # float32, flips x FLIP
    deviation: np.ndarray  # float32


def qualifying_blobs(mask: np.ndarray, tests: BlobTests, tracks: Tracks, min_area_px: float
                     ) -> list[tuple[int, int, int, int]]:
    """Erase from mask (in place) the blobs that do not count; the boxes of those that do."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    rejected, kept = [], []
    for contour in contours:
        x, y, w, h = box = cv2.boundingRect(contour)
        if w * h < min_area_px:
            rejected.append(contour)
            continue
        blob = np.zeros((h, w), np.uint8)
        cv2.drawContours(blob, [contour], -1, 255, cv2.FILLED, offset=(-x, -y))
        cv2.bitwise_and(blob, mask[y:y + h, x:x + w], dst=blob)
        area_px = cv2.countNonZero(blob)
        if area_px < min_area_px or not _counts(blob, area_px, box, contour, tests, tracks):
            rejected.append(contour)
        else:
            kept.append(box)
    tracks.end_frame()
    if rejected:
        cv2.drawContours(mask, rejected, -1, 0, cv2.FILLED)
    return kept


def _inside(blob: np.ndarray, pixels: np.ndarray) -> int:
    """How many of the blob's pixels are set in the uint8 mask pixels (clobbers it)."""
    return cv2.countNonZero(cv2.bitwise_and(pixels, blob, dst=pixels))


def _counts(blob: np.ndarray, area_px: int, box: tuple[int, int, int, int],
            contour: np.ndarray, tests: BlobTests, tracks: Tracks) -> bool:
    """The tests of step 5 in camera/motion.py's docstring, on the blob's box only (cv2 calls:
    each numpy temporary on these small arrays costs as much as the work)."""
    x, y, w, h = box
    window = (slice(y, y + h), slice(x, x + w))
    moments = cv2.moments(contour)
    if moments["m00"] > 0:
        centre = (moments["m10"] / moments["m00"], moments["m01"] / moments["m00"])
    else:  # a blob one pixel thin: its outline encloses no area
        centre = (x + w / 2, y + h / 2)
    size_px = math.sqrt(area_px)
    track = tracks.follow(box, centre, size_px)

    # Changed texture: soft light (headlights) brightens a region but leaves its edges.
    # The high-pass (x - blur(x)) is linear: the frame's minus the background's is the
    # high-pass of their difference, which takes one blur instead of two.
    frame, background = tests.small[window], tests.background[window]
    difference = cv2.subtract(frame, background, dtype=cv2.CV_32F)  # float: the fastest blur
    change = cv2.absdiff(difference, cv2.blur(difference, TEXTURE_WINDOW))
    changed = cv2.compare(change, tests.edge_limit[window], cv2.CMP_GT)
    if _inside(blob, changed) < TEXTURE_CHANGED_FRACTION * area_px:
        return False
    restless_px = _inside(blob, cv2.compare(tests.deviation[window], RESTLESS_DEVIATION,
                                            cv2.CMP_GE))
    if track.travelled(size_px):
        return restless_px < RESTLESS_FRACTION_TRAVELLING * area_px
    if restless_px >= RESTLESS_FRACTION * area_px:
        return False
    # In place: steady (foliage swinging goes back and forth).
    moving = cv2.bitwise_and(tests.opened[window], blob)
    oscillating_px = _inside(moving, cv2.compare(tests.recent_flips[window],
                                                 OSCILLATION_FLIPS * FLIP, cv2.CMP_GE))
    moving_px = cv2.countNonZero(moving)
    return moving_px - oscillating_px >= STEADY_FRACTION * moving_px
