"""The whole recorder pipeline in-process over the synthetic scene (its ground truth is the truth).

The Recorder runs with an injected wall clock fixed at ORIGIN_US, so a clip's wall-clock start
(metadata `start_us`) minus ORIGIN_US is the source timestamp it started at, and clips compare
directly with `SyntheticScene.ground_truth()`.
"""

import errno
import io
import json
import logging
import threading
from datetime import UTC, datetime

import av
import cv2
import numpy as np
import pytest

import doorbell.camera.upkeep as upkeep_module
import doorbell.storage.clipwriter as clipwriter_module
from doorbell.camera.frames import SourceLost
from doorbell.camera.presses import ScriptedPresses
from doorbell.camera.synthetic import ScriptedEvent, SyntheticScene

WIDTH, HEIGHT, FPS = 640, 360, 15  # the camera conftest.py configures
ORIGIN_US = 1_714_564_800_000_000  # conftest's ORIGIN_US: the injected wall clock

pytestmark = pytest.mark.slow

NUISANCE_SCRIPT = [  # everything that must not count as a visit, back to back
    ScriptedEvent("cloud", 2.0, 6.0),
    ScriptedEvent("exposure_step", 10.0, 5.0),
    ScriptedEvent("rain", 17.0, 26.0),
    ScriptedEvent("headlights", 22.0, 3.0),
    ScriptedEvent("branch_gust", 45.0, 10.0),
    ScriptedEvent("cloud", 57.0, 4.0),
    ScriptedEvent("exposure_step", 62.0, 4.0),
    ScriptedEvent("headlights", 68.0, 2.5),
]


def one_pass(scene_kwargs=None) -> SyntheticScene:
    scene = SyntheticScene(WIDTH, HEIGHT, FPS, **(scene_kwargs or {}))
    return SyntheticScene(WIDTH, HEIGHT, FPS, duration_s=scene.period_s, **(scene_kwargs or {}))


def iso_us(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
                 .timestamp() * 1e6)


def decode_mp4(data: bytes):
    frames, error = [], None
    try:
        with av.open(io.BytesIO(data)) as container:
            frames.extend(f.to_ndarray(format="bgr24") for f in container.decode(video=0))
    except av.FFmpegError as exc:
        error = exc
    return frames, error


def score(clips, truths, duration_s: float):
    """(recall, false clips per hour, uncovered truths, false clips)."""
    covered, uncovered = 0, []
    for truth in truths:
        covering = [c for c in clips
                    if c.start_us - ORIGIN_US <= truth.start_us
                    and c.end_us - ORIGIN_US >= truth.end_us]
        if covering:
            covered += 1
        else:
            uncovered.append(truth)
    false = [c for c in clips
             if not any(c.start_us - ORIGIN_US <= t.end_us and c.end_us - ORIGIN_US >= t.start_us
                        for t in truths)]
    recall = covered / len(truths) if truths else 1.0
    return recall, len(false) / (duration_s / 3600), uncovered, false


# -- the scripted scene: recall and false clips -------------------------------------------------


@pytest.fixture(scope="module")
def default_run(home_factory):
    home = home_factory("default-script")
    scene = one_pass()
    truths = scene.ground_truth()
    recorder = home.record(scene, ScriptedPresses(scene.doorbell_presses_us()))
    return home, scene, truths, recorder, home.clips()


def test_every_visit_and_press_is_covered_and_nothing_else(default_run, capsys):
    home, scene, truths, recorder, clips = default_run
    assert len(truths) >= 5 and any(t.kind == "doorbell" for t in truths)
    recall, false_per_hour, uncovered, false = score(clips, truths, scene.period_s)
    with capsys.disabled():
        print(f"\n[recorder, synthetic default script {scene.period_s:.0f} s, {WIDTH}x{HEIGHT}] "
              f"event recall {recall:.3f} ({len(truths) - len(uncovered)}/{len(truths)}), "
              f"false clips {len(false)} ({false_per_hour:.1f} per hour), clips {len(clips)}")
    described = "\n".join(
        [f"clip {c.id} {c.trigger} {(c.start_us - ORIGIN_US) / 1e6:.2f}.."
         f"{(c.end_us - ORIGIN_US) / 1e6:.2f} s" for c in clips]
        + [f"truth {t.kind} {t.start_us / 1e6:.2f}..{t.end_us / 1e6:.2f} s" for t in truths])
    assert recall == 1.0, f"uncovered: {uncovered}\n{described}"
    assert false == [], described
    assert all(c.state == "complete" for c in clips)
    assert recorder.stats.clips == len(clips)


def test_doorbell_visits_are_doorbell_clips_with_the_press_time(default_run):
    _, _, truths, _, clips = default_run
    for truth in (t for t in truths if t.kind == "doorbell"):
        covering = [c for c in clips if c.start_us - ORIGIN_US <= truth.pressed_at_us
                    <= c.end_us - ORIGIN_US]
        assert covering, f"no clip holds the press at {truth.pressed_at_us / 1e6:.2f} s"
        clip = covering[0]
        assert clip.trigger == "doorbell"
        presses = [iso_us(p) - ORIGIN_US for p in clip.meta["doorbell_presses"]]
        assert any(abs(p - truth.pressed_at_us) < 2_000 for p in presses), presses
    for truth in (t for t in truths if t.kind == "visit"):
        clip = next(c for c in clips if c.start_us - ORIGIN_US <= truth.start_us
                    <= c.end_us - ORIGIN_US)
        assert clip.trigger == "motion"


def test_each_clip_has_a_thumbnail_metadata_and_a_playable_video(default_run):
    home, _, _, _, clips = default_run
    assert clips
    for clip in clips:
        meta = clip.meta
        assert meta["id"] == clip.id
        assert meta["camera"] == "Front door"
        assert (meta["width"], meta["height"], meta["fps"]) == (WIDTH, HEIGHT, FPS)
        assert iso_us(meta["start"]) == pytest.approx(clip.start_us, abs=1_000)
        assert meta["motion"]["frames_with_motion"] > 0
        assert 0 < meta["motion"]["max_score"] <= 1
        thumbnail = cv2.imdecode(np.frombuffer(home.thumbnail(clip.id), np.uint8),
                                 cv2.IMREAD_COLOR)
        assert thumbnail is not None and thumbnail.shape[1] == 480
    # one video decoded in full: frame count matches the metadata's duration
    video, truncated = home.video(clips[0].id)
    frames, error = decode_mp4(video)
    assert not truncated and error is None
    assert len(frames) == round(clips[0].meta["duration_s"] * FPS)
    assert frames[0].shape == (HEIGHT, WIDTH, 3)


def test_light_changes_noise_rain_and_branch_alone_make_no_clip(home, capsys):
    scene = one_pass({"script": NUISANCE_SCRIPT})
    home.record(scene)
    clips = home.clips()
    with capsys.disabled():
        print(f"\n[recorder, nuisance-only script {scene.period_s:.0f} s] false clips "
              f"{len(clips)} ({len(clips) / (scene.period_s / 3600):.1f} per hour)")
    assert clips == [], [(c.trigger, (c.start_us - ORIGIN_US) / 1e6) for c in clips]


def test_a_long_visit_is_split_into_continued_clips_without_losing_footage(home):
    home.configure("\n[recording]\nmax_clip_s = 5.0\npost_roll_s = 2.0\n")
    scene = one_pass({"script": [ScriptedEvent("visit", 2.0, 16.0, "side")]})
    truth = scene.ground_truth()[0]
    home.record(scene)
    clips = home.clips()
    assert len(clips) >= 3, [(c.trigger, c.meta["duration_s"]) for c in clips]
    assert [c.trigger for c in clips] == ["motion"] + ["continued"] * (len(clips) - 1)
    assert all(c.state == "complete" for c in clips)
    for before, after in zip(clips, clips[1:], strict=False):
        # no gap, and no more overlap than one keyframe interval (1 s)
        assert before.end_us - 1_000_000 <= after.start_us <= before.end_us + 1_000, \
            (before.id, after.id)
    # max_clip_s counts from the trigger: the first clip also holds the pre-roll (3 s), and a
    # clip may run to the next keyframe (1 s)
    assert clips[0].meta["duration_s"] <= 5.0 + 3.0 + 1.0 + 1e-6
    for clip in clips[1:-1]:
        assert clip.meta["duration_s"] <= 5.0 + 1.0 + 1e-6
    assert clips[0].start_us - ORIGIN_US <= truth.start_us
    assert clips[-1].end_us - ORIGIN_US >= truth.end_us


# -- privacy masks --------------------------------------------------------------------------------


MASK_TOML = """
[privacy]
masks = [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]]
"""


def regions(image: np.ndarray, margin_px: int):
    """(masked top-left quarter, shrunk by margin; the rest of the frame's right half)."""
    h, w = image.shape[:2]
    masked = image[: h // 2 - margin_px, : w // 2 - margin_px]
    right = image[:, w // 2 + margin_px:]
    return masked, right


def test_masked_region_is_black_in_clip_thumbnail_and_live_frame(home):
    home.configure(MASK_TOML)
    script = [ScriptedEvent("doorbell", 2.0, 9.0, "side")]
    scene = one_pass({"script": script})
    home.record(scene, ScriptedPresses(scene.doorbell_presses_us()))
    clips = home.clips()
    assert clips, "the visit made no clip"

    video, _ = home.video(clips[0].id)
    frames, error = decode_mp4(video)
    assert error is None and len(frames) > 30
    for index, frame in enumerate(frames):
        masked, right = regions(frame, margin_px=16)
        assert masked.mean() < 8, f"frame {index}: masked area mean {masked.mean():.1f}"
        assert masked.max() < 60, f"frame {index}: something shows through the mask"
        assert right.mean() > 40, f"frame {index}: the unmasked area is black too"

    thumbnail = cv2.imdecode(np.frombuffer(home.thumbnail(clips[0].id), np.uint8),
                             cv2.IMREAD_COLOR)
    masked, right = regions(thumbnail, margin_px=8)
    assert masked.mean() < 8 and right.mean() > 40

    live_path = home.run_dir / "live.jpg"
    assert live_path.is_file()
    assert not str(live_path.resolve()).startswith(str(home.root.resolve()))
    live = cv2.imdecode(np.frombuffer(live_path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    masked, right = regions(live, margin_px=8)
    assert masked.mean() < 8 and right.mean() > 40
    assert not list(home.root.rglob("live.jpg"))


# -- failures: the camera vanishes, the disk fills up ---------------------------------------------


class FastStop(threading.Event):
    """A stop event whose back-off waits return at once (and are recorded)."""

    def __init__(self):
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


class VanishingSource:
    """Yields `lose_after` frames of a scene, then the camera is unplugged."""

    def __init__(self, scene: SyntheticScene, lose_after: int):
        self.scene, self.lose_after, self.closed = scene, lose_after, False

    def frames(self):
        for index, frame in enumerate(self.scene.frames()):
            if index == self.lose_after:
                raise SourceLost("the camera was unplugged")
            yield frame

    def close(self):
        self.closed = True
        self.scene.close()


def test_camera_that_vanishes_is_retried_with_back_off_and_recording_resumes(home, caplog):
    visit = [ScriptedEvent("visit", 2.0, 12.0, "side")]
    first = VanishingSource(SyntheticScene(WIDTH, HEIGHT, FPS, script=visit, duration_s=20),
                            lose_after=7 * FPS)
    second = SyntheticScene(WIDTH, HEIGHT, FPS, script=[ScriptedEvent("visit", 2.0, 6.0)],
                            duration_s=12)
    wall = [ORIGIN_US]
    opens = []

    def open_source():
        opens.append(len(opens))
        wall[0] += 60_000_000  # a minute passes between attempts
        if len(opens) == 1:
            return first
        if len(opens) in (2, 3):
            raise OSError(errno.ENODEV, "No such device")
        if len(opens) == 4:
            return second
        raise AssertionError("opened again after the source ended")

    stop = FastStop()
    caplog.set_level(logging.INFO, logger="doorbell.recorder")
    recorder = home.record(open_source, stop=stop, wall_clock_us=lambda: wall[0])

    assert len(opens) == 4
    assert first.closed
    assert stop.waits == [1.0, 2.0, 4.0]  # back-off doubles while the camera stays away
    messages = [r.getMessage() for r in caplog.records]
    assert any("camera lost" in m and "unplugged" in m for m in messages), messages
    assert sum("cannot open the camera" in m for m in messages) == 2, messages
    assert any(r.levelno >= logging.WARNING and "lost" in r.getMessage() for r in caplog.records)

    clips = home.clips()
    assert len(clips) == 2, [(c.id, c.state) for c in clips]
    lost, resumed = clips
    assert lost.state == "complete"  # sealed when the camera vanished, not left partial
    assert lost.meta["duration_s"] <= 7.0 + 0.2
    frames, error = decode_mp4(home.video(lost.id)[0])
    assert error is None and len(frames) == round(lost.meta["duration_s"] * FPS)
    assert resumed.state == "complete"
    assert resumed.start_us > lost.end_us
    assert recorder.stats.camera == "ok"
    status = json.loads((home.run_dir / "recorder.json").read_text())
    assert status["state"] == "stopped" and status["clips_saved"] == 2


def test_full_disk_keeps_the_prefix_prunes_and_keeps_recording(home, monkeypatch, caplog):
    original_write = clipwriter_module._SyncedFile.write
    calls = {"writes": 0, "failed": 0}

    def write(self, data):
        calls["writes"] += 1
        if calls["writes"] == 5 and not calls["failed"]:
            calls["failed"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return original_write(self, data)

    retention_runs = []
    original_retention = upkeep_module.enforce_retention

    def retention(*args, **kwargs):
        retention_runs.append(calls["failed"])
        return original_retention(*args, **kwargs)

    monkeypatch.setattr(clipwriter_module._SyncedFile, "write", write)
    monkeypatch.setattr(upkeep_module, "enforce_retention", retention)
    caplog.set_level(logging.INFO, logger="doorbell.recorder")

    scene = one_pass({"script": [ScriptedEvent("visit", 2.0, 16.0, "side")]})
    recorder = home.record(scene)

    assert calls["failed"] == 1
    assert any("disk is full" in r.getMessage() for r in caplog.records)
    assert retention_runs.count(1) >= 1, "retention did not run after the disk filled up"
    rows = home.index_rows()
    states = [r.state for r in rows]
    assert states[0] == "truncated", states
    assert "complete" in states[1:], "recording did not continue after the full disk"
    video, truncated = home.video(rows[0].id)
    assert truncated
    frames, _ = decode_mp4(video)
    assert len(frames) >= 1
    assert recorder.stats.clips == states.count("complete")
    assert not list(home.clips_dir.rglob("*.partial"))
