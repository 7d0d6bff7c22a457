"""The recorder state machine, driven with plain numbers (no video, no clock but the pts given)."""

import pytest

from doorbell.camera.statemachine import Action, RecorderStateMachine, State
from doorbell.config import RecordingSettings

FPS = 10
STEP_US = 1_000_000 // FPS


def settings(**overrides) -> RecordingSettings:
    base = {"pre_roll_s": 3.0, "post_roll_s": 5.0, "max_clip_s": 60.0, "doorbell_clip_s": 15.0}
    base.update(overrides)
    return RecordingSettings(**base)


def drive(machine, until_s, motion=lambda t: False, pressed=lambda t: False, start_s=0.0):
    """Feed one frame every 1/FPS s from start_s to until_s; return [(t_s, decision)]."""
    out = []
    index = round(start_s * FPS)
    while index <= round(until_s * FPS):
        t_s = index / FPS
        out.append((t_s, machine.step(index * STEP_US, motion(t_s), pressed(t_s))))
        index += 1
    return out


def actions(decisions):
    return [(t, d.action, d.trigger) for t, d in decisions if d.action is not None]


def test_idle_without_motion_or_press():
    machine = RecorderStateMachine(settings())
    decisions = drive(machine, 30)
    assert actions(decisions) == []
    assert machine.state is State.IDLE


def test_triggered_motion_starts_a_motion_clip():
    machine = RecorderStateMachine(settings())
    decisions = drive(machine, 2.0, motion=lambda t: t >= 1.0)
    assert actions(decisions) == [(1.0, Action.START, "motion")]
    assert machine.state is State.RECORDING
    assert machine.clip_trigger == "motion"


def test_post_roll_keeps_the_clip_open_after_the_last_motion_then_stops():
    machine = RecorderStateMachine(settings(post_roll_s=5.0))
    decisions = drive(machine, 30, motion=lambda t: 1.0 <= t <= 4.0)
    got = actions(decisions)
    assert got[0] == (1.0, Action.START, "motion")
    assert len(got) == 2 and got[1][1] is Action.STOP
    stop_s = got[1][0]
    assert stop_s == pytest.approx(4.0 + 5.0, abs=1.5 / FPS)
    states = {t: d.state for t, d in decisions}
    assert states[2.0] is State.RECORDING
    assert states[6.0] is State.POST_ROLL  # quiet, but still inside the post-roll
    assert states[8.9] is State.POST_ROLL
    assert states[20.0] is State.IDLE


def test_motion_during_post_roll_extends_the_clip():
    machine = RecorderStateMachine(settings(post_roll_s=5.0))
    motion = lambda t: 1.0 <= t <= 2.0 or 5.0 <= t <= 6.0  # noqa: E731
    got = actions(drive(machine, 30, motion=motion))
    assert [a for _, a, _ in got] == [Action.START, Action.STOP]
    assert got[1][0] == pytest.approx(6.0 + 5.0, abs=1.5 / FPS)


def test_press_starts_a_doorbell_clip_lasting_at_least_doorbell_clip_s():
    machine = RecorderStateMachine(settings(post_roll_s=2.0, doorbell_clip_s=15.0))
    got = actions(drive(machine, 40, pressed=lambda t: t == 3.0))
    assert got[0] == (3.0, Action.START, "doorbell")
    assert got[1][1] is Action.STOP
    assert got[1][0] >= 3.0 + 15.0 - 1e-9
    assert got[1][0] == pytest.approx(18.0, abs=1.5 / FPS)  # and not much longer
    assert machine.state is State.IDLE


def test_press_during_a_motion_clip_marks_it_doorbell_and_extends_it():
    machine = RecorderStateMachine(settings(post_roll_s=2.0, doorbell_clip_s=10.0))
    decisions = drive(machine, 40, motion=lambda t: 1.0 <= t <= 4.0, pressed=lambda t: t == 3.5)
    got = actions(decisions)
    assert got[0] == (1.0, Action.START, "motion")
    assert [a for _, a, _ in got] == [Action.START, Action.STOP]  # no second clip for the press
    assert got[1][0] >= 13.5 - 1e-9
    by_time = dict(decisions)
    assert by_time[3.5].action is None
    # the machine now reports the open clip as a doorbell clip, with the press time
    machine2 = RecorderStateMachine(settings(post_roll_s=2.0, doorbell_clip_s=10.0))
    drive(machine2, 3.6, motion=lambda t: 1.0 <= t <= 4.0, pressed=lambda t: t == 3.5)
    assert machine2.clip_trigger == "doorbell"
    assert machine2.clip_presses_us == [35 * STEP_US]


def test_max_clip_length_splits_a_long_event_into_continued_clips():
    machine = RecorderStateMachine(settings(max_clip_s=10.0, post_roll_s=2.0))
    got = actions(drive(machine, 40, motion=lambda t: 1.0 <= t <= 25.0))
    kinds = [(a, trig) for _, a, trig in got]
    assert kinds == [
        (Action.START, "motion"),
        (Action.SPLIT, "continued"),
        (Action.SPLIT, "continued"),
        (Action.STOP, None),
    ]
    starts = [t for t, a, _ in got if a in (Action.START, Action.SPLIT)]
    assert starts[1] - starts[0] == pytest.approx(10.0, abs=1.5 / FPS)
    assert starts[2] - starts[1] == pytest.approx(10.0, abs=1.5 / FPS)
    assert got[-1][0] == pytest.approx(27.0, abs=1.5 / FPS)
    # no clip is ever longer than max_clip_s
    bounds = [t for t, _, _ in got]
    assert all(b - a <= 10.0 + 1e-9 for a, b in zip(bounds, bounds[1:], strict=False))


def test_split_carries_a_pending_doorbell_minimum():
    machine = RecorderStateMachine(settings(max_clip_s=10.0, post_roll_s=1.0,
                                            doorbell_clip_s=15.0))
    got = actions(drive(machine, 40, pressed=lambda t: t == 2.0))
    assert got[0] == (2.0, Action.START, "doorbell")
    assert got[1][1] is Action.SPLIT and got[1][2] == "continued"
    # the press asked for 15 s: the continuation stays open until then
    assert got[-1][1] is Action.STOP
    assert got[-1][0] >= 17.0 - 1e-9


def test_stop_closes_the_open_clip_and_goes_idle():
    machine = RecorderStateMachine(settings())
    drive(machine, 2.0, motion=lambda t: t >= 1.0)
    assert machine.stop() is True
    assert machine.state is State.IDLE
    assert machine.clip_trigger is None
    assert machine.stop() is False  # nothing open any more
    # motion after a stop starts a fresh clip
    got = actions(drive(machine, 5.0, motion=lambda t: t >= 4.0, start_s=3.0))
    assert got == [(4.0, Action.START, "motion")]
