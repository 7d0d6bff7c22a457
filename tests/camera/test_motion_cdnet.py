"""The motion detector on CDnet 2014 sequences with per-pixel ground truth (../shared/testdata/
cdnet).

baseline-pedestrians: a sunny sidewalk by a lawn, single people walking across. A user expects a
clip for each person who walks by, and a motion mask that covers the person (the mask is what the
tuner shows and what zones cut): at least as well as OpenCV's KNN subtractor does on the same
frames, the better of OpenCV's two.

baseline-highway: cars from an overpass whose camera shakes by a few pixels, trees at the top. A
doorbell facing a street sees cars; zones, not the detector, decide whether they count, so the
mask must follow them (busy lanes, cars entering behind each other) at least as well as KNN.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from doorbell.camera.frames import Frame
from doorbell.camera.motion import MotionDetector

CDNET_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "cdnet"
PEDESTRIANS = CDNET_DIR / "baseline-pedestrians"
HIGHWAY = CDNET_DIR / "baseline-highway"
CDNET_FPS = 25.0  # CDnet frames carry no timestamps

pytestmark = pytest.mark.skipif(
    not (PEDESTRIANS.is_dir() and HIGHWAY.is_dir()),
    reason=f"CDnet test footage not found at {CDNET_DIR} (../shared)")


def pixel_f1(masks: dict[int, np.ndarray], folder: Path) -> float:
    """F1 of motion masks against ground truth 255 (0 and 50, shadow, are background; 85 and
    170 are not scored), over the labelled frames, inside ROI.bmp."""
    first, last = (int(v) for v in (folder / "temporalROI.txt").read_text().split()[:2])
    roi = cv2.imread(str(folder / "ROI.bmp"), cv2.IMREAD_GRAYSCALE) > 0
    tp = fp = fn = 0
    for n, fg in masks.items():
        if not first <= n <= last:
            continue
        gt = cv2.imread(str(folder / "groundtruth" / f"gt{n:06d}.png"), cv2.IMREAD_GRAYSCALE)
        scored = roi & np.isin(gt, (0, 50, 255))
        truth = gt == 255
        tp += np.count_nonzero(fg & truth & scored)
        fp += np.count_nonzero(fg & ~truth & scored)
        fn += np.count_nonzero(~fg & truth & scored)
    return 2 * tp / (2 * tp + fp + fn)


def detect(folder: Path):
    """Per frame number: the project's mask (scaled to the frame), KNN's mask, triggered."""
    detector = MotionDetector()
    knn = cv2.createBackgroundSubtractorKNN(detectShadows=True)
    ours, theirs, triggered = {}, {}, {}
    for path in sorted((folder / "input").glob("in*.jpg")):
        n = int(path.stem[2:])
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        motion = detector.update(Frame(image=image, pts_us=round((n - 1) * 1e6 / CDNET_FPS)))
        h, w = image.shape[:2]
        ours[n] = cv2.resize(motion.mask, (w, h), interpolation=cv2.INTER_NEAREST) > 0
        theirs[n] = knn.apply(image) > 200
        triggered[n] = motion.triggered
    return ours, theirs, triggered


@pytest.fixture(scope="module")
def pedestrians():
    return detect(PEDESTRIANS)


def test_every_person_walking_by_triggers(pedestrians):
    _, _, triggered = pedestrians
    events = json.loads((PEDESTRIANS / "events.json").read_text())["events_frames"]
    for first, last in events:
        hits = [n for n in range(first, last + 1) if triggered[n]]
        assert hits, f"the person in frames {first}-{last} did not trigger"
        assert (hits[0] - first) / CDNET_FPS < 1.0  # within a second of stepping into view


def test_the_mask_covers_people_at_least_as_well_as_opencv_knn(pedestrians):
    ours, theirs, _ = pedestrians
    f1_ours, f1_knn = pixel_f1(ours, PEDESTRIANS), pixel_f1(theirs, PEDESTRIANS)
    print(f"\nbaseline-pedestrians pixel F1: project {f1_ours:.3f}, KNN {f1_knn:.3f}")
    assert f1_ours >= f1_knn


def test_the_mask_follows_cars_at_least_as_well_as_opencv_knn():
    ours, theirs, _ = detect(HIGHWAY)
    f1_ours, f1_knn = pixel_f1(ours, HIGHWAY), pixel_f1(theirs, HIGHWAY)
    print(f"\nbaseline-highway pixel F1: project {f1_ours:.3f}, KNN {f1_knn:.3f}")
    assert f1_ours >= f1_knn
