"""Privacy masks burn polygons black; zones say where motion counts."""

import cv2
import numpy as np
import pytest

from doorbell.camera.masks import PrivacyMask, ZoneMask

W, H = 640, 360


@pytest.fixture
def picture() -> np.ndarray:
    return np.random.default_rng(1).integers(1, 256, (H, W, 3), dtype=np.uint8)  # no black


def test_a_rectangle_mask_blacks_out_exactly_its_pixels(picture):
    original = picture.copy()
    # x 0.25..0.75, y 0.25..0.5 -> columns 160..479 and rows 90..180 (1.0 is the last pixel)
    mask = PrivacyMask([((0.25, 0.25), (0.75, 0.25), (0.75, 0.5), (0.25, 0.5))], W, H)

    out = mask.apply(picture)

    assert out is picture  # in place: no copy of the frame
    expected = original.copy()
    expected[90:181, 160:480] = 0
    assert np.array_equal(picture, expected)


def test_a_triangle_mask_covers_its_inside_and_spares_its_outside(picture):
    original = picture.copy()
    triangle = ((0.1, 0.9), (0.5, 0.1), (0.9, 0.9))
    PrivacyMask([triangle], W, H).apply(picture)

    pixel_triangle = (np.array(triangle) * [W - 1, H - 1]).astype(np.float32)
    ys, xs = np.mgrid[0:H:7, 0:W:7]
    for x, y in zip(xs.ravel(), ys.ravel(), strict=True):
        distance = cv2.pointPolygonTest(pixel_triangle, (float(x), float(y)), True)
        if distance > 1.5:
            assert not picture[y, x].any(), f"({x}, {y}) is inside but not black"
        elif distance < -1.5:
            assert np.array_equal(picture[y, x], original[y, x]), f"({x}, {y}) was touched"


def test_a_full_frame_mask_leaves_nothing_at_the_edges():
    picture = np.full((H, W, 3), 200, np.uint8)
    PrivacyMask([((0, 0), (1, 0), (1, 1), (0, 1))], W, H).apply(picture)
    assert not picture.any()


def test_several_masks_and_no_masks(picture):
    original = picture.copy()
    assert PrivacyMask([], W, H).apply(picture) is picture
    assert np.array_equal(picture, original)  # no masks: untouched

    two = [((0, 0), (0.1, 0), (0.1, 0.1)), ((0.9, 0.9), (1, 0.9), (1, 1))]
    PrivacyMask(two, W, H).apply(picture)
    assert not picture[0, 0].any() and not picture[H - 1, W - 1].any()
    assert np.array_equal(picture[H // 2], original[H // 2])


def test_the_same_mask_covers_the_same_part_of_any_resolution():
    polygon = [((0.2, 0.1), (0.6, 0.3), (0.4, 0.8))]
    fractions = []
    for w, h in ((1920, 1080), (1280, 720), (320, 180)):
        frame = np.full((h, w, 3), 255, np.uint8)
        PrivacyMask(polygon, w, h).apply(frame)
        fractions.append(np.mean(frame[..., 0] == 0))
    assert max(fractions) - min(fractions) < 0.01


def test_a_mask_refuses_a_frame_of_another_size(picture):
    mask = PrivacyMask([((0, 0), (1, 0), (1, 1))], 1280, 720)
    with pytest.raises(ValueError, match="1280x720"):
        mask.apply(picture)


def test_a_polygon_needs_three_points():
    with pytest.raises(ValueError, match="at least 3 points"):
        PrivacyMask([((0, 0), (1, 1))], W, H)


def test_no_zone_means_motion_counts_everywhere():
    zone = ZoneMask([], 320, 180)
    assert zone.shape == (180, 320) and zone.dtype == np.uint8
    assert (zone == 255).all()


def test_a_zone_counts_inside_and_not_outside():
    zone = ZoneMask([((0.5, 0), (1, 0), (1, 1), (0.5, 1))], 320, 180)  # the right half
    assert (zone[:, 161:] == 255).all()
    assert (zone[:, :159] == 0).all()
