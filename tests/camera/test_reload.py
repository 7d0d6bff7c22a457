"""Settings changed while the recorder runs (the viewer rewrites config.toml and recipients.txt).

The Recorder runs in-process over a small synthetic scene (320x180) frame by frame; `actions`
rewrite the files (atomically, as the viewer does) just before a given frame is handed over, and
look at what a user would see: the live frame, the status the viewer reads, the clips decrypted.
The watcher's clock advances a second per call, so a change is picked up right after the frame
it was written before, and the frame after it is the first with the new settings.
"""

import hashlib
import io
import json
import logging
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from doorbell.camera.reload import SettingsWatcher
from doorbell.camera.synthetic import ScriptedEvent, SyntheticScene
from doorbell.storage.home import Home
from tests.recorder_home import ORIGIN_US, camera_config, decode_mp4

from .barcode_scene import PERSON_IN, configure, decode, frame_index, record_on_picamera
from .scripted_settings import record_scene, replace_text, ticking_clock

WIDTH, HEIGHT, FPS = 320, 180, 15
# The brick wall and door at the left of the synthetic scene: never black until masked.
WALL = [(0.0, 0.0), (0.15, 0.0), (0.15, 1.0), (0.0, 1.0)]
BASE = camera_config(WIDTH, HEIGHT, FPS)


def pts_us(index: int) -> int:
    return round(index * 1_000_000 / FPS)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes() if path.exists() else b"").hexdigest()


def wall_region(image: np.ndarray, margin_px: int = 3) -> np.ndarray:
    """The inside of WALL, scaled to `image`."""
    width = round(0.15 * image.shape[1])
    return image[margin_px:-margin_px, :width - margin_px]


def record(home, script, duration_s: float, actions: dict, **kwargs):
    scene = SyntheticScene(WIDTH, HEIGHT, FPS, script=script, duration_s=duration_s)
    return record_scene(home, scene, actions, **kwargs)


def status(home) -> dict:
    return json.loads((home.run_dir / "recorder.json").read_text())


@pytest.fixture
def small_home(home):
    replace_text(home.root / "config.toml", BASE + "\n[recording]\npre_roll_s = 2.0\n"
                 "post_roll_s = 1.0\n")
    return home


def test_a_new_mask_is_in_the_next_live_frame_and_clip_and_no_older_frame_joins_a_clip(
        small_home):
    home = small_home
    config = home.root / "config.toml"
    change, seen = 45, {}  # at 3.0 s; the visitor arrives at 4.0 s

    def add_mask():
        polygon = ", ".join(f"[{x}, {y}]" for x, y in WALL)
        replace_text(config, config.read_text() + f"\n[privacy]\nmasks = [[{polygon}]]\n")
        seen["before"] = cv2.imread(str(home.run_dir / "live.jpg"))

    def look():  # the first frame with the new mask has been through the recorder
        seen["live"] = cv2.imread(str(home.run_dir / "live.jpg"))
        seen["status"] = status(home)

    initial_sha = sha256(config)
    record(home, [ScriptedEvent("visit", 4.0, 5.0, "side")], 10.0,
           {change: add_mask, change + 2: look})

    assert wall_region(seen["before"]).mean() > 40  # the wall, before
    assert wall_region(seen["live"]).max() <= 24  # black in the very next live frame
    assert seen["status"]["config_sha256"] == sha256(config) != initial_sha
    clips = home.clips()
    assert [c.trigger for c in clips] == ["motion"]
    frames, error = decode_mp4(home.video(clips[0].id)[0], ndarray=True)
    assert error is None and frames
    # Its pre-roll (2 s before a trigger at about 4.5 s) would reach back before the change:
    # the ring was emptied, so the clip starts at the first frame with the mask, a keyframe.
    assert clips[0].start_us - ORIGIN_US >= pts_us(change + 1)
    assert clips[0].start_us - ORIGIN_US <= pts_us(change + 1) + 1_000_000 // FPS
    assert max(wall_region(f).max() for f in frames) <= 24
    assert min(f[:, WIDTH // 2:].mean() for f in frames) > 40  # the rest is not black


def test_an_invalid_config_is_logged_once_and_recording_goes_on_as_before(small_home, caplog):
    home = small_home
    config = home.root / "config.toml"
    good_sha = sha256(config)
    caplog.set_level(logging.INFO, logger="doorbell.recorder")

    def break_it():
        replace_text(config, config.read_text() + "\n[motion]\nsensitivity = 7\n")

    recorder = record(home, [ScriptedEvent("visit", 3.0, 5.0, "side")], 10.0, {15: break_it})

    refused = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(refused) == 1, refused  # polled every frame, read (and logged) once
    assert f"{config} line " in refused[0] and "motion.sensitivity" in refused[0]
    assert recorder.settings.motion.sensitivity == 0.5
    assert status(home)["config_sha256"] == good_sha  # the viewer sees it is not applied
    assert [c.trigger for c in home.clips()] == ["motion"]  # the visit was still recorded


def test_new_recipients_encrypt_the_next_clip_and_the_open_clip_keeps_its_keys(small_home,
                                                                               caplog):
    from doorbell.storage.age import NoIdentityMatchError, X25519Identity
    from doorbell.storage.clipreader import open_video, read_metadata

    home = small_home
    recipients = home.root / "recipients.txt"
    newcomer = X25519Identity.generate()
    caplog.set_level(logging.INFO, logger="doorbell.recorder")
    seen = {}

    def replace_keys():  # mid-clip: the first visit is at the door
        seen["recording"] = [p.name for p in home.clips_dir.rglob("*.mp4.age.partial")]
        replace_text(recipients, f"# member: newcomer\n{newcomer.recipient}\n")

    def empty_file():
        replace_text(recipients, "# nobody\n")

    record(home, [ScriptedEvent("visit", 2.0, 4.0, "side"), ScriptedEvent("visit", 10.0, 3.0,
                                                                          "side")], 15.0,
           {60: replace_keys, 120: empty_file})

    first, second = (row.id for row in home.index_rows())
    assert seen["recording"] == [f"{first}.mp4.age.partial"]
    owner = [home.identity()]
    assert read_metadata(home.clips_dir, first, owner)["trigger"] == "motion"
    assert open_video(home.clips_dir, first, owner).reader.read()[4:8] == b"ftyp"
    assert read_metadata(home.clips_dir, second, [newcomer])["trigger"] == "motion"
    assert open_video(home.clips_dir, second, [newcomer]).reader.read()[4:8] == b"ftyp"
    with pytest.raises(NoIdentityMatchError):
        read_metadata(home.clips_dir, second, owner)  # the removed key opens nothing new
    messages = caplog.text
    assert "new clips are encrypted to 1 keys" in messages
    assert "recipients.txt not applied" in messages  # the empty file kept the newcomer
    assert status(home)["recipients_sha256"] != sha256(recipients)


def test_recording_settings_apply_to_the_state_machine_at_once_and_the_encoder_between_clips(
        small_home):
    home = small_home
    config = home.root / "config.toml"

    def faster_keyframes():  # while the first clip is open
        replace_text(config, config.read_text().replace(
            "post_roll_s = 1.0", "post_roll_s = 1.0\nkeyframe_interval_s = 0.4\n"
            "max_clip_s = 6.0"))

    record(home, [ScriptedEvent("visit", 2.0, 5.0, "side"), ScriptedEvent("visit", 11.0, 3.0,
                                                                          "side")], 16.0,
           {45: faster_keyframes})

    clips = home.clips()
    assert [c.trigger for c in clips][:2] == ["motion", "continued"]  # max_clip_s at once
    keyframe_gaps = []
    for clip in (clips[0], clips[-1]):
        with av.open(io.BytesIO(home.video(clip.id)[0])) as container:
            keys = [i for i, f in enumerate(container.decode(video=0)) if f.key_frame]
        keyframe_gaps.append({b - a for a, b in zip(keys, keys[1:], strict=False)})
    assert keyframe_gaps[0] == {15}  # the open clip kept its encoder (1 s at 15 fps)
    assert keyframe_gaps[1] == {6}  # the next clip: 0.4 s


def test_retention_runs_with_new_values_and_live_frames_change_size(small_home, monkeypatch):
    import doorbell.camera.upkeep as upkeep_module

    home = small_home
    config = home.root / "config.toml"
    runs, seen = [], {}
    enforce = upkeep_module.enforce_retention

    def spy(store, retention, now_us, **options):
        runs.append(retention.max_age_days)
        return enforce(store, retention, now_us=now_us, **options)

    monkeypatch.setattr(upkeep_module, "enforce_retention", spy)

    def change():
        replace_text(config, config.read_text().replace(
            "min_free_bytes = 0", "min_free_bytes = 0\nmax_age_days = 7")
            + "\n[live]\nwidth = 160\nfps = 15\n")

    def look():
        seen["live"] = cv2.imread(str(home.run_dir / "live.jpg")).shape[:2]

    recorder = record(home, [], 2.0, {10: change, 12: look})

    assert runs == [30, 7]  # at start, and at once with the new value
    assert seen["live"] == (90, 160)
    assert recorder.restart_sections == []


def test_a_camera_change_seals_the_clip_and_ends_the_run_for_a_restart(small_home, caplog):
    home = small_home
    config = home.root / "config.toml"
    caplog.set_level(logging.INFO, logger="doorbell.recorder")

    def rename_camera():  # mid-visit
        replace_text(config, config.read_text().replace("[camera]", '[camera]\nname = "Back"'))

    recorder = record(home, [ScriptedEvent("visit", 2.0, 6.0, "side")], 12.0,
                      {60: rename_camera})

    assert recorder.restart_sections == ["camera"]
    assert "camera settings changed: restarting the recorder to apply them" in caplog.text
    assert recorder.stats.frames == 61  # it stopped right after the frame that noticed
    clips = home.clips()
    assert [(c.state, c.trigger) for c in clips] == [("complete", "motion")]
    assert clips[0].meta["camera"] == "Front door"
    assert status(home)["state"] == "restarting"


def test_viewer_settings_restart_the_recorder_only_when_its_networks_change(small_home):
    """The recorder uses [viewer] for one thing, the networks notifications may reach: a new idle
    timeout must not break a visit into two clips."""
    home = small_home
    config = home.root / "config.toml"

    def longer_idle_timeout():
        replace_text(config, config.read_text() + "\n[viewer]\nidle_timeout_s = 1800\n")

    def fewer_networks():
        replace_text(config, config.read_text() + 'allowed_networks = ["192.168.0.0/16"]\n')

    recorder = record(home, [], 8.0, {30: longer_idle_timeout, 90: fewer_networks})

    assert recorder.settings.viewer.idle_timeout_s == 1800  # applied in place at frame 30
    assert recorder.restart_sections == ["viewer"]  # ...and the networks need a restart
    assert recorder.stats.frames == 91


# -- picamera2 -------------------------------------------------------------------------------------


def record_pi(home, doubles, frames: int, during):
    """The Recorder on picamera2's pipeline over the libcamera doubles, following the home's
    files, with a tuner; `during(camera)` runs on a thread while it records `frames` frames."""
    from doorbell.camera.tuning import MotionTuner

    watcher = SettingsWatcher(Home(home.root), clock=ticking_clock())
    recorder, _ = record_on_picamera(home, doubles, frames, during=during, watcher=watcher,
                                     tuner=MotionTuner(Home(home.root)))
    return recorder


@pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")
def test_picamera_recorder_burns_new_masks_in_from_the_next_frame_and_tunes(home, doubles):
    """The Raspberry Pi camera path: the camera masks from its next frame, packets encoded
    before that never start a clip, and the tuner's overlay comes from the lores stream."""
    configure(home, pre_roll=2.0, post_roll=1.0)
    config = home.root / "config.toml"
    corner = "[[0.0, 0.93], [0.12, 0.93], [0.12, 1.0], [0.0, 1.0]]"  # ground, no visitor
    tuning = {"motion": {"min_area": 0.002}, "expires_at": 4e9}
    (home.root / "motion-tuning.json").write_text(json.dumps(tuning))
    change, seen = 35, {}

    def corner_pixels(image):
        h, w = image.shape[:2]
        return image[round(0.93 * h) + 3:h - 3, 3:round(0.12 * w) - 3]

    def add_corner_mask(camera):
        camera.wait_for_frames(change, 60)
        replace_text(config, config.read_text().replace("masks = [[", f"masks = [{corner}, ["))
        camera.wait_for_frames(change + 40, 60)
        seen["live"] = cv2.imread(str(home.run_dir / "live.jpg"))
        seen["overlay"] = json.loads((home.run_dir / "motion-overlay.json").read_text())
        seen["mask"] = cv2.imread(str(home.run_dir / "motion-mask.png"), cv2.IMREAD_UNCHANGED)
        seen["status"] = status(home)

    recorder = record_pi(home, doubles, 190, add_corner_mask)

    assert corner_pixels(seen["live"]).max() <= 24
    assert seen["status"]["config_sha256"] == sha256(config)
    assert seen["overlay"]["frame_width"] == 640 and seen["overlay"]["frame_height"] == 360
    assert seen["overlay"]["motion"]["min_area"] == 0.002
    assert seen["mask"].shape == (180, 320)  # the lores stream: the detection resolution
    clips = home.clips()
    assert [c.trigger for c in clips] == ["motion"]
    frames, error = decode_mp4(home.video(clips[0].id)[0], ndarray=True)
    assert error is None
    indices = [frame_index(f) for f in frames]
    # A 2 s pre-roll would reach back before the change: what the ring held then stayed out.
    assert change < indices[0] < PERSON_IN
    assert indices == list(range(indices[0], indices[0] + len(frames)))
    assert max(corner_pixels(f).max() for f in frames) <= 24
    assert recorder.restart_sections == []
    assert not (home.run_dir / "motion-overlay.json").exists()  # tuning ends with the recorder


@pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")
def test_picamera_recorder_restarts_its_encoder_for_new_recording_settings(home, doubles):
    configure(home, pre_roll=1.0, post_roll=1.0)
    config = home.root / "config.toml"

    def faster_keyframes(camera):  # before the visitor: no clip is open
        camera.wait_for_frames(20, 60)
        replace_text(config, config.read_text().replace("keyframe_interval_s = 1.0",
                                                        "keyframe_interval_s = 0.4\ncrf = 30"))

    recorder = record_pi(home, doubles, 190, faster_keyframes)

    clips = home.clips()
    assert [c.trigger for c in clips] == ["motion"]
    frames, keyframes = decode(home.video(clips[0].id)[0])
    assert len(frames) > 30
    assert {b - a for a, b in zip(keyframes, keyframes[1:], strict=False)} == {6}  # 0.4 s
    assert recorder.settings.recording.crf == 30


def test_settings_are_followed_while_the_camera_is_away(small_home):
    """A camera that cannot be opened: fixing camera.* in the viewer restarts the recorder at
    once, not after the back-off."""
    import errno
    import threading
    import time

    home = small_home
    config = home.root / "config.toml"
    attempts = []

    def open_source():
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            replace_text(config, config.read_text().replace("[camera]",
                                                            '[camera]\nsource = "/dev/video1"'))
        raise OSError(errno.ENODEV, "No such device")

    watcher = SettingsWatcher(Home(home.root), clock=ticking_clock())
    started = time.monotonic()
    recorder = home.record(open_source, stop=threading.Event(), until_eof=False,
                           watcher=watcher)

    assert recorder.restart_sections == ["camera"]
    assert len(attempts) == 1 and time.monotonic() - started < 5
    assert status(home)["state"] == "restarting"
