"""The motion tuner: trial motion values from the viewer, tried on the live picture.

The scene is the synthetic empty yard at 320x180 with a small parcel put on the path at frame 30:
about 0.2% of the frame, below the default min_area (0.4%), so the recorder's own detector
ignores it while a tuner trying min_area 0.1% outlines it.
"""

import itertools
import json
import logging
import os

import cv2
import pytest

from doorbell.camera.frames import Frame
from doorbell.camera.synthetic import SyntheticScene
from doorbell.camera.tuning import MotionTuner
from doorbell.config import Settings
from doorbell.storage.exchange import MAX_TRIAL_EXPIRY_S
from doorbell.storage.home import Home

from .scripted_settings import record_scene, replace_text

WIDTH, HEIGHT, FPS = 320, 180, 15
PARCEL = (150, 140, 11, 11)  # x, y, w, h in pixels
PARCEL_FROM = 30  # frame


class ParcelScene(SyntheticScene):
    def __init__(self, duration_s: float | None = None):
        super().__init__(WIDTH, HEIGHT, FPS, script=[], duration_s=duration_s)

    def render(self, index):
        image = super().render(index)
        if index >= PARCEL_FROM:
            x, y, w, h = PARCEL
            image[y:y + h, x:x + w] = (30, 40, 90)
            image[y + 3:y + 7, x + 2:x + 8] = (200, 200, 220)  # its label
        return image


class FakeWallClock:
    def __init__(self, now_s: float = 1_714_564_800.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def tuning_file(home_root, motion: dict, expires_at: float) -> None:
    replace_text(Home(home_root).motion_tuning_file,
                 json.dumps({"motion": motion, "expires_at": expires_at}))


def make_tuner(home_root, wall: FakeWallClock) -> MotionTuner:
    # Every call of its own clock is a second later: it writes the overlay at every frame.
    return MotionTuner(Home(home_root), wall_clock_s=wall,
                       clock_s=itertools.count(0.0, 1.0).__next__)


def overlay(run_dir) -> dict:
    return json.loads((run_dir / "motion-overlay.json").read_text())


def test_the_overlay_shows_what_trial_values_see_while_recording_is_untouched(home):
    """Recorder + tuner: boxes around the parcel in the overlay, no clip recorded, and the
    overlay files gone once the tuner's file expires."""
    replace_text(home.root / "config.toml", f"[camera]\nwidth = {WIDTH}\nheight = {HEIGHT}\n"
                 "[retention]\nmin_free_bytes = 0\n")
    wall = FakeWallClock()
    trial = {"sensitivity": 0.7, "min_area": 0.001, "trigger_frames": 2}
    tuning_file(home.root, trial, wall.now_s + 30)
    seen = {}

    def look():
        seen["overlay"] = overlay(home.run_dir)
        seen["mask"] = cv2.imread(str(home.run_dir / "motion-mask.png"), cv2.IMREAD_UNCHANGED)

    def expire():
        wall.now_s += 31  # the viewer's page stopped refreshing the file

    def look_again():
        seen["after"] = sorted(p.name for p in home.run_dir.iterdir()
                               if p.name.startswith("motion"))

    record_scene(home, ParcelScene(duration_s=6.0), {70: look, 75: expire, 77: look_again},
                 tuner=make_tuner(home.root, wall), live=False)

    got = seen["overlay"]
    assert got["motion"] == {**trial, "detect_width": 320, "light_change_fraction": 0.6,
                             "zones": []}
    assert (got["frame_width"], got["frame_height"]) == (WIDTH, HEIGHT)
    assert got["triggered"] and got["score"] > 0 and not got["light_change"]
    x, y, w, h = PARCEL
    (box,) = [b for b in got["boxes"] if b[0] <= (x + w / 2) / WIDTH <= b[0] + b[2]]
    assert all(0 <= v <= 1 for v in box)
    assert box[1] <= (y + h / 2) / HEIGHT <= box[1] + box[3]
    assert box[2] * box[3] < 0.01  # the parcel, not half the yard
    assert got["updated"] == pytest.approx(FakeWallClock().now_s, abs=1)
    assert seen["mask"].shape == (HEIGHT, WIDTH)  # detection resolution (detect_width 320)
    assert seen["mask"][y + h // 2, x + w // 2] == 255
    assert seen["after"] == []  # expired: both files deleted
    assert home.clips() == []  # the recorder's own detector (min_area 0.004) saw nothing


def frames(count: int) -> list[Frame]:
    scene = ParcelScene()
    return [Frame(scene.render(i), scene.pts_us(i)) for i in range(count)]


@pytest.fixture
def tuner_home(tmp_path, monkeypatch) -> Home:
    """A home directory and a runtime directory: all the tuner itself needs."""
    monkeypatch.setenv("DOORBELL_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    return Home(tmp_path)


def test_lower_min_area_outlines_the_parcel_the_defaults_ignore(tuner_home):
    wall = FakeWallClock()
    seen = {}
    for name, motion in (("defaults", {}), ("trial", {"min_area": 0.001})):
        tuner = make_tuner(tuner_home.root, wall)
        tuning_file(tuner_home.root, motion, wall.now_s + 60)
        tuner.poll(Settings())
        assert tuner.active
        for frame in frames(60):
            tuner.update(frame)
        seen[name] = overlay(tuner_home.run_dir)
        tuner.end()
    assert seen["defaults"]["boxes"] == [] and seen["defaults"]["motion"]["min_area"] == 0.004
    assert len(seen["trial"]["boxes"]) == 1 and seen["trial"]["motion"]["min_area"] == 0.001


def test_invalid_removed_and_expired_tuning_files_end_tuning(tuner_home, caplog):
    home, tmp_path = tuner_home, tuner_home.root
    caplog.set_level(logging.INFO, logger="doorbell.recorder")
    wall = FakeWallClock(1000.0)
    tuner = make_tuner(tmp_path, wall)
    settings = Settings()
    outputs = (home.motion_mask_file, home.motion_overlay_file)

    def run_frames(count=3):
        for frame in frames(count):
            tuner.update(frame)

    tuning_file(tmp_path, {"sensitivity": 3}, 2000.0)  # out of range, like in config.toml
    for _ in range(3):
        tuner.poll(settings)  # once a second
    refused = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(refused) == 1 and "motion.sensitivity" in refused[0], refused
    assert not tuner.active

    tuning_file(tmp_path, {"sensitivity": 0.8}, 2000.0)
    tuner.poll(settings)
    run_frames()
    assert tuner.active and all(p.exists() for p in outputs)

    replace_text(home.motion_tuning_file, "{not json")
    tuner.poll(settings)
    assert not tuner.active and not any(p.exists() for p in outputs)

    # Expiry is capped at two minutes from reading: a viewer that vanished costs little.
    tuning_file(tmp_path, {"sensitivity": 0.8}, 1e12)
    tuner.poll(settings)
    run_frames()
    detector = tuner.detector
    wall.now_s += MAX_TRIAL_EXPIRY_S - 1
    tuning_file(tmp_path, {"sensitivity": 0.8}, 1e12)  # refreshed: same values, same detector
    tuner.poll(settings)
    assert tuner.detector is detector
    wall.now_s += MAX_TRIAL_EXPIRY_S - 1
    tuner.poll(settings)
    assert tuner.active  # two minutes from the refresh, not from the first read
    wall.now_s += 2
    tuner.poll(settings)  # not refreshed again in time
    assert not tuner.active and not any(p.exists() for p in outputs)

    tuning_file(tmp_path, {"sensitivity": 0.8}, wall.now_s + 10)
    tuner.poll(settings)
    run_frames()
    os.unlink(home.motion_tuning_file)  # the viewer closed the tuner
    tuner.poll(settings)
    assert not tuner.active and not any(p.exists() for p in outputs)
    assert "motion tuning ended" in caplog.text
