"""One contract for every camera: the recorder cuts the same clips from both pipelines.

Each test runs twice, on the software pipeline (the scene as a FrameSource -> mask -> PyAV ->
packet ring, released at once) and on picamera2's (its real classes over the libcamera doubles:
the camera encodes, CircularOutput2 releases seconds late, the recorder analyses the small luma
stream). The scene stamps every frame with its index (tests/camera/barcode_scene.py), so a
decoded clip and every analysed frame say exactly which camera frames they are: boundaries are
checked in frames, not in seconds.

The contract: a clip starts at a keyframe at most pre-roll + one keyframe interval and at least
the pre-roll before its trigger, holds every frame in order, ends at the frame before the state
machine's stop (post-roll), splits at a keyframe with no gap and no overlap, has the privacy mask
burnt in (video, thumbnail, live frame), keeps no frame from before a mask change, becomes a
doorbell clip at a press, and is sealed with the camera's last frames at shutdown.
"""

import errno

import cv2
import numpy as np
import pytest

from doorbell.camera.clip import ActiveClip, iso_utc
from doorbell.camera.presses import ScriptedPresses
from doorbell.camera.recorder import Recorder
from doorbell.camera.statemachine import Action

from .barcode_scene import (
    FPS,
    HEIGHT,
    ORIGIN_US,
    PERSON_IN,
    PERSON_OUT,
    WIDTH,
    BarcodeSource,
    configure,
    decode,
    frame_index,
    masked_region,
    record_on_picamera,
    scene,
)

# picamera2's NullPreview still calls Thread.setDaemon().
pytestmark = pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")

KEYFRAME_FRAMES = FPS  # keyframe_interval_s = 1.0 in barcode_scene.configure
CORNER = [(0.0, 0.93), (0.12, 0.93), (0.12, 1.0), (0.0, 1.0)]  # ground: never the visitor


def corner_region(image: np.ndarray, margin: int = 3) -> np.ndarray:
    h, w = image.shape[:2]
    return image[round(0.93 * h) + margin:h - margin, margin:round(0.12 * w) - margin]


class Analysed:
    """What the recorder analysed: `indices` maps pts_us to the camera frame index (read off the
    frame's barcode: the Pi pipeline analyses a smaller luma picture, and drops frames under
    load); `hook(recorder, index)`, if set, runs before each frame is processed."""

    def __init__(self):
        self.indices: dict[int, int] = {}
        self.hook = None

    @property
    def first(self) -> int:
        return min(self.indices.values())


@pytest.fixture
def analysed(monkeypatch) -> Analysed:
    seen = Analysed()
    process = Recorder.process

    def noting(self, frame):
        index = seen.indices[frame.pts_us] = frame_index(frame.image)
        if seen.hook is not None:
            seen.hook(self, index)
        process(self, frame)

    monkeypatch.setattr(Recorder, "process", noting)
    return seen


@pytest.fixture(params=["software", "picamera2"])
def record(request, home, analysed):
    """record(frames, scene_fn, presses, hook=...) -> the recorder, on one pipeline: until the
    camera has made `frames` frames, then shut down (a software source ends there)."""

    def run(frames: int, scene_fn=scene, presses=None, hook=None, speed: float = 4.0):
        analysed.hook = hook
        if request.param == "software":
            return home.record(BarcodeSource(frames, scene_fn), presses=presses)
        doubles = request.getfixturevalue("doubles")
        recorder, _ = record_on_picamera(home, doubles, frames, scene_fn, speed, presses=presses)
        return recorder

    run.pipeline = request.param
    return run


def decoded(home, clip):
    """The clip's camera frame indices and the indices of its keyframes."""
    data, truncated = home.video(clip.id)
    assert not truncated and data[4:8] == b"ftyp"
    frames, keyframes = decode(data)
    return [frame_index(f) for f in frames], keyframes, frames


def frames_at(decisions, analysed: Analysed, kind) -> list[int]:
    """The camera frame indices at which the state machine took decisions of `kind`."""
    return [analysed.indices[pts] for pts, action in decisions if action is kind]


def test_a_visit_is_one_clip_with_pre_roll_post_roll_and_the_mask_burnt_in(
        record, home, decisions, analysed):
    configure(home, pre_roll=1.0, post_roll=1.5)
    recorder = record(190)

    clips = home.clips()
    assert [(c.state, c.trigger) for c in clips] == [("complete", "motion")]  # window ignored
    clip = clips[0]
    indices, keyframes, frames = decoded(home, clip)
    assert indices == list(range(indices[0], indices[0] + len(frames)))  # every frame, in order
    assert keyframes[0] == indices[0]  # it starts at a keyframe: plays on its own
    (trigger,), (stop,) = (frames_at(decisions, analysed, kind)
                           for kind in (Action.START, Action.STOP))
    assert PERSON_IN <= trigger < PERSON_IN + 15  # the visitor, a few frames in
    # Pre-roll: a keyframe at least 1 s before the trigger, at most pre-roll + one keyframe
    # interval (what the ring holds) before it.
    assert trigger - FPS - KEYFRAME_FRAMES < indices[0] <= trigger - FPS
    # Post-roll: the clip ends at the frame before the state machine's stop, on both (the Pi's
    # ring still held those frames: the cutter drained it up to there).
    assert PERSON_OUT + round(1.5 * FPS) - 2 <= stop <= PERSON_OUT + round(1.5 * FPS) + 3
    assert indices[-1] == stop - 1
    # The wall-clock start is the first frame's: the clock starts at the first analysed frame.
    assert clip.start_us - ORIGIN_US == pytest.approx((indices[0] - analysed.first) * 1e6 / FPS,
                                                      abs=1e6 / FPS / 2)

    # The privacy mask, burnt in before the encoder: black in every frame of the video ...
    assert max(masked_region(f).max() for f in frames) <= 24
    assert max(f[40:90, 20:200].mean() for f in frames) > 60  # while the rest is not black
    # ... in the thumbnail (the full-resolution frame with the most motion) ...
    thumbnail = cv2.imdecode(np.frombuffer(home.thumbnail(clip.id), np.uint8), cv2.IMREAD_COLOR)
    assert thumbnail.shape[1] == 480
    assert masked_region(thumbnail).max() <= 24
    assert PERSON_IN <= frame_index(thumbnail) < PERSON_OUT
    # ... and in the live frame.
    assert masked_region(cv2.imread(str(home.run_dir / "live.jpg"))).max() <= 24

    meta = clip.meta
    assert (meta["width"], meta["height"], meta["fps"]) == (WIDTH, HEIGHT, FPS)
    assert meta["duration_s"] == pytest.approx(len(frames) / FPS, abs=0.01)
    assert meta["motion"]["frames_with_motion"] >= 3  # analysed frames: fewer under load
    assert recorder.stats.clips == 1


def test_a_long_visit_splits_at_keyframes_and_shutdown_keeps_the_last_frames(
        record, home, decisions, analysed):
    configure(home, pre_roll=1.0, post_roll=1.5, max_clip=5.0)
    record(210, lambda index: scene(index, person_out=10_000))  # the visitor never leaves

    clips = home.clips()
    splits = frames_at(decisions, analysed, Action.SPLIT)
    # max_clip_s counts from the clip's first frame, its pre-roll included
    assert len(clips) == len(splits) + 1 >= 2
    assert [c.trigger for c in clips] == ["motion"] + ["continued"] * len(splits)
    assert all(c.state == "complete" for c in clips)
    cut = [decoded(home, c) for c in clips]
    assert cut[0][0][0] < PERSON_IN and cut[0][1][0] == cut[0][0][0]
    for split, (before, _, _), (after, after_keys, _) in zip(splits, cut, cut[1:], strict=False):
        # At the first keyframe at or after the split: no gap, no overlap, and the
        # continuation starts with a keyframe, so each clip plays on its own.
        assert after[0] == before[-1] + 1
        assert after_keys[0] == after[0] and split <= after[0] < split + KEYFRAME_FRAMES
        assert after == list(range(after[0], after[0] + len(after)))
    for clip, next_clip in zip(clips, clips[1:], strict=False):
        assert next_clip.start_us == pytest.approx(clip.end_us, abs=1e6 / FPS + 1)
    # Stopped mid-visit: the open clip is sealed with the last frames the camera made (the
    # Pi's ring is flushed into it), not what was released a ring's length earlier.
    assert cut[-1][0][-1] >= 210 - 3


def test_a_press_makes_a_doorbell_clip_with_its_time_and_pre_roll(record, home, decisions,
                                                                  analysed):
    configure(home, pre_roll=1.0, post_roll=1.0, doorbell_clip=3.0)
    press_us = 2_000_000  # frame 30, with nobody in view: the press alone makes the clip
    record(120, lambda index: scene(index, person_in=10_000), ScriptedPresses([press_us]))

    (clip,) = home.clips()
    assert (clip.state, clip.trigger) == ("complete", "doorbell")
    indices, keyframes, _ = decoded(home, clip)
    (pressed,), (stop,) = (frames_at(decisions, analysed, kind)
                           for kind in (Action.START, Action.STOP))
    # The first analysed frame at 2.0 s on the camera's clock (the Pi may have dropped some).
    assert 0 <= pressed - (analysed.first + 30) <= 3
    assert keyframes[0] == indices[0] and pressed - 2 * FPS < indices[0] <= pressed - FPS
    assert indices[-1] == stop - 1 and stop >= pressed + 3 * FPS  # doorbell_clip_s after it
    (press_pts_us,) = [pts for pts, action in decisions if action is Action.START]
    first_pts_us = min(analysed.indices)
    assert clip.meta["doorbell_presses"] == [iso_utc(ORIGIN_US + press_pts_us - first_pts_us)]


def test_a_new_mask_applies_from_the_next_frame_and_no_older_frame_starts_a_clip(
        record, home, decisions, analysed):
    configure(home, pre_roll=2.0, post_roll=1.0, extra_masks=[CORNER])
    masked_settings = home.settings()
    configure(home, pre_roll=2.0, post_roll=1.0)
    change = 35  # the visitor comes at frame 60: a 2 s pre-roll would reach back before this
    applied = []

    def add_the_corner_mask(recorder, index):
        if index >= change and not applied:
            applied.append(index)
            assert recorder.apply_settings(masked_settings)

    record(190, hook=add_the_corner_mask)

    (clip,) = home.clips()
    indices, keyframes, frames = decoded(home, clip)
    assert applied and applied[0] < indices[0] < PERSON_IN
    assert keyframes[0] == indices[0] and indices == list(range(indices[0],
                                                               indices[0] + len(indices)))
    assert max(corner_region(f).max() for f in frames) <= 24  # the new mask, in every frame
    assert max(masked_region(f).max() for f in frames) <= 24  # and the old one still
    assert corner_region(cv2.imread(str(home.run_dir / "live.jpg"))).max() <= 24


def test_a_full_disk_mid_clip_loses_that_clip_only(record, home, monkeypatch, caplog):
    """The first write of a clip finds the disk full: that clip keeps what reached the disk
    (or, where the ring still holds the visit, is begun again), and recording goes on."""
    configure(home, pre_roll=1.0, post_roll=1.5)
    write = ActiveClip.write
    failures = []

    def full_once(self, packet):
        if not failures:
            failures.append(packet.pts_us)
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, packet)

    monkeypatch.setattr(ActiveClip, "write", full_once)
    two_visits = lambda index: scene(index) if index < 150 else scene(index, 200, 245)  # noqa: E731
    recorder = record(320, two_visits, speed=6.0)

    clips = home.clips()
    assert failures and len(clips) >= 2
    assert [r.getMessage() for r in caplog.records if "disk is full" in r.getMessage()] == [
        "the disk is full: pruning the oldest clips and continuing"]  # one sentence
    assert clips[-1].state == "complete" and clips[-1].trigger == "motion"
    indices, keyframes, _ = decoded(home, clips[-1])
    assert indices[0] < 200 and indices[-1] >= 245 and keyframes[0] == indices[0]
    assert recorder.stats.camera == "ok"


def test_both_pipelines_cut_the_same_clip_from_the_same_visit(home, home_factory, doubles):
    """Side by side: the same scene through both pipelines gives the same clip, frame for
    frame at its start (the same keyframe) and within a frame or two at its end."""
    configure(home, pre_roll=1.0, post_roll=1.5)
    pi_home = home_factory("contract-pi")
    configure(pi_home, pre_roll=1.0, post_roll=1.5)

    home.record(BarcodeSource(190))
    record_on_picamera(pi_home, doubles, 190)

    (software,), (pi,) = home.clips(), pi_home.clips()
    software_frames, _, _ = decoded(home, software)
    pi_frames, _, _ = decoded(pi_home, pi)
    assert pi_frames[0] == software_frames[0]
    assert abs(pi_frames[-1] - software_frames[-1]) <= 2
    assert software.trigger == pi.trigger == "motion"
