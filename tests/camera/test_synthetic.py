"""The synthetic doorstep scene: deterministic, and its ground truth is where the visitor is."""

import numpy as np
import pytest

from doorbell.camera.frames import Frame, FrameSource
from doorbell.camera.synthetic import GroundTruth, ScriptedEvent, SyntheticScene

SMALL = (640, 360)  # rendering is resolution-independent; small keeps these tests quick


def test_the_scene_is_a_frame_source_of_timestamped_bgr_frames():
    scene = SyntheticScene(*SMALL, fps=15, duration_s=1.0)
    frames = list(scene.frames())

    assert isinstance(scene, FrameSource)
    assert len(frames) == 15
    assert all(isinstance(f, Frame) for f in frames)
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8
    assert [f.pts_us for f in frames[:3]] == [0, 66_667, 133_333]
    assert all(b.pts_us > a.pts_us for a, b in zip(frames, frames[1:], strict=False))


def test_same_seed_gives_the_same_frames_and_another_seed_does_not():
    # Frames during a visit in the rain, with sensor noise: everything random is seeded.
    script = [ScriptedEvent("rain", 0.0, 4.0), ScriptedEvent("visit", 0.5, 3.0)]
    a = SyntheticScene(*SMALL, seed=3, script=script, duration_s=4.0)
    b = SyntheticScene(*SMALL, seed=3, script=script, duration_s=4.0)
    c = SyntheticScene(*SMALL, seed=4, script=script, duration_s=4.0)

    for fa, fb in zip(a.frames(), b.frames(), strict=True):
        assert fa.pts_us == fb.pts_us
        assert np.array_equal(fa.image, fb.image)
    assert not np.array_equal(a.render(30), c.render(30))
    assert a.ground_truth() == b.ground_truth()


def test_ground_truth_is_exactly_where_and_when_the_visitor_is_visible():
    # Render each visit with and without the visitor (everything else stays identical, by
    # design): the pixels that differ must lie inside figure_box, and must exist exactly in the
    # ground truth's visible interval.
    scene = SyntheticScene(*SMALL, duration_s=180)
    truths = scene.ground_truth()
    visits = [e for e in scene.script if e.kind in ("visit", "doorbell")]
    assert len(truths) == len(visits) == 5

    for event, truth in zip(visits, truths, strict=True):
        without = SyntheticScene(
            *SMALL, script=[e for e in scene.script if e is not event], duration_s=180
        )
        first, last = round(truth.start_us * 15 / 1e6), round(truth.end_us * 15 / 1e6)
        checked = sorted({first - 1, first, first + 1, last - 1, last, last + 1,
                          *range(first, last, 4)})
        for index in checked:
            changed = np.any(scene.render(index) != without.render(index), axis=2)
            box = scene.figure_box(index)
            visible = truth.start_us <= scene.pts_us(index) <= truth.end_us
            if not visible:
                assert box is None and not changed.any(), f"frame {index}: visitor outside truth"
                continue
            assert box is not None and changed.any(), f"frame {index}: truth says visible"
            x, y, w, h = box
            inside = np.zeros_like(changed)
            inside[max(0, y - 1):y + h + 1, max(0, x - 1):x + w + 1] = True
            assert not (changed & ~inside).any(), f"frame {index}: visitor drawn outside its box"


def test_the_straight_visitor_grows_in_place_while_the_side_visitor_walks_across():
    scene = SyntheticScene(*SMALL, duration_s=180)
    straight = next(t for t in scene.ground_truth() if t.path == "straight")
    side = next(t for t in scene.ground_truth() if t.path == "side")

    def boxes(truth: GroundTruth, from_s: float):
        start = round(truth.start_us * 15 / 1e6 + from_s * 15)
        return [scene.figure_box(i) for i in range(start, round(truth.at_door_us * 15 / 1e6))]

    walk = boxes(straight, 1.0)  # after stepping out of the gate and turning to the camera
    centres = [x + w / 2 for x, _, w, _ in walk]
    assert max(centres) - min(centres) < 0.04 * SMALL[0]  # hardly any lateral motion
    assert walk[-1][3] > 2.5 * walk[0][3]  # but much taller (nearer) by the time they arrive

    across = boxes(side, 0.0)
    assert abs(across[-1][0] - across[0][0]) > 0.25 * SMALL[0]


def test_doorbell_presses_fall_inside_their_visit_and_repeat_with_the_script():
    scene = SyntheticScene(*SMALL)  # no duration: the script loops forever
    doorbells = [t for t in scene.ground_truth() if t.kind == "doorbell"]
    presses = scene.doorbell_presses_us()

    assert len(presses) == len(doorbells) == 2
    for truth, press in zip(doorbells, presses, strict=True):
        assert truth.start_us < truth.at_door_us <= press < truth.end_us
    period_us = round(scene.period_s * 1e6)
    assert scene.presses_between(0, period_us) == presses
    assert scene.presses_between(period_us, 2 * period_us) == [p + period_us for p in presses]
    assert scene.presses_between(presses[0] + 1, presses[1]) == []


def test_visits_are_not_reported_as_doorbell_presses():
    scene = SyntheticScene(*SMALL, script=[ScriptedEvent("visit", 1.0, 12.0)], duration_s=15)
    (truth,) = scene.ground_truth()
    assert truth.kind == "visit" and truth.pressed_at_us is None
    assert scene.doorbell_presses_us() == []


def test_light_events_change_the_whole_picture():
    script = [ScriptedEvent("cloud", 2.0, 4.0), ScriptedEvent("exposure_step", 8.0, 2.0),
              ScriptedEvent("headlights", 12.0, 2.0)]
    scene = SyntheticScene(*SMALL, script=script, duration_s=15)

    def brightness(t_s: float) -> float:
        return float(scene.render(round(t_s * 15)).mean())

    assert brightness(4.0) / brightness(1.0) == pytest.approx(0.7, abs=0.05)  # cloud: -30%
    step = brightness(8.0) / brightness(8.0 - 1 / 15)  # from one frame to the next
    assert abs(step - 1.0) > 0.15
    lit = scene.render(round(13.0 * 15)).astype(int) - scene.render(round(11.0 * 15)).astype(int)
    assert lit.mean() > 5 and (lit > 40).any()  # headlights: a bright patch


def test_branch_sways_rain_falls_and_noise_never_stops():
    script = [ScriptedEvent("rain", 2.0, 4.0)]
    scene = SyntheticScene(*SMALL, script=script, duration_s=8)
    quiet_a, quiet_b = scene.render(10), scene.render(11)
    noise = np.abs(quiet_a.astype(int) - quiet_b.astype(int))
    assert 0.5 < noise.mean() < 5  # sensor noise everywhere, small

    rain = np.abs(scene.render(60).astype(int) - scene.render(61).astype(int))
    assert (rain > 40).sum() > 20 * (noise > 40).sum() + 100  # streaks

    top_right = (slice(0, SMALL[1] // 3), slice(SMALL[0] // 2, SMALL[0]))
    calm = [scene.render(i)[top_right].astype(int) for i in (0, 8)]
    assert np.abs(calm[0] - calm[1]).max() > 60  # the branch moved over the sky


def test_looping_repeats_the_script_and_close_stops_the_frames():
    script = [ScriptedEvent("visit", 0.5, 3.0)]
    scene = SyntheticScene(320, 180, script=script)  # loops: period = 3.5 s + a quiet tail
    period_frames = round(scene.period_s * 15)
    assert scene.figure_box(20) is not None
    assert scene.figure_box(20 + period_frames) == scene.figure_box(20)

    frames = scene.frames()
    seen = [next(frames) for _ in range(period_frames + 5)]
    assert seen[-1].pts_us > seen[-2].pts_us  # timestamps keep counting across loops
    scene.close()
    assert list(frames) == []


def test_realtime_scene_still_yields_every_frame():
    scene = SyntheticScene(160, 90, fps=30, realtime=True, duration_s=0.2)
    assert len(list(scene.frames())) == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "parade", "start_s": 0.0, "duration_s": 1.0}, "unknown event kind"),
        ({"kind": "visit", "start_s": 0.0, "duration_s": 1.0, "path": "roof"}, "visit path"),
        ({"kind": "cloud", "start_s": -1.0, "duration_s": 1.0}, "start_s >= 0"),
    ],
)
def test_a_bad_script_event_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScriptedEvent(**kwargs)
