"""Privacy masks (burned black into every frame) and motion zones (where motion counts).

Both are polygons in normalised 0..1 coordinates from the config, so they survive a change of
resolution. They are converted to pixel polygons once, at construction: applying them to a frame
is then a single `cv2.fillPoly` (mask) or a precomputed array (zone).
"""

from collections.abc import Sequence

import cv2
import numpy as np

Polygon = Sequence[tuple[float, float]]


def to_pixel_polygons(polygons: Sequence[Polygon], width: int, height: int) -> list[np.ndarray]:
    """Normalised polygons -> int32 pixel polygons (N x 1 x 2) for cv2.fillPoly.

    A coordinate of 1.0 maps to the last pixel (width - 1), so a polygon spanning 0..1 covers the
    whole frame and nothing is off by one at the right or bottom edge.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    scale = np.array([width - 1, height - 1], dtype=np.float64)
    pixel_polygons = []
    for polygon in polygons:
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(points) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
        pixels = np.rint(np.clip(points, 0.0, 1.0) * scale).astype(np.int32)
        pixel_polygons.append(pixels.reshape(-1, 1, 2))
    return pixel_polygons


class PrivacyMask:
    """Fills the configured polygons black, in place, before a frame reaches anything else.

    The recorder applies it right after capture, so masked areas never reach the encoder, the
    thumbnail, the live view or the motion detector.
    """

    def __init__(self, polygons: Sequence[Polygon], width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._pixel_polygons = to_pixel_polygons(polygons, width, height)

    @property
    def empty(self) -> bool:
        return not self._pixel_polygons

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Black out the polygons in `image` (modified in place) and return it."""
        if not self._pixel_polygons:
            return image
        if image.shape[1] != self.width or image.shape[0] != self.height:
            raise ValueError(
                f"privacy mask was built for {self.width}x{self.height} frames, "
                f"got {image.shape[1]}x{image.shape[0]}"
            )
        # lineType LINE_8 (not anti-aliased): every pixel touched by the polygon goes fully black.
        cv2.fillPoly(image, self._pixel_polygons, (0,) * image.shape[2] if image.ndim == 3 else 0)
        return image


def ZoneMask(polygons: Sequence[Polygon], width: int, height: int) -> np.ndarray:  # noqa: N802
    """A uint8 mask at width x height: 255 where motion counts, 0 elsewhere.

    No zones means the whole frame counts (all 255). Named like a class because callers read it
    as "the zone mask of this size"; it returns a plain array so it combines with cv2 ops.
    """
    if not polygons:
        return np.full((height, width), 255, dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, to_pixel_polygons(polygons, width, height), 255)
    return mask
