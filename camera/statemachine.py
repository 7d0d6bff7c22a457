"""When to record: idle -> recording -> post-roll -> idle, driven by timestamps alone.

It knows nothing about video: it is fed (pts_us, motion, pressed) per frame and answers with
what to do, so every rule below is tested with plain numbers.

 * Motion that the detector confirms, or a doorbell press, starts a clip; the clip's video
   begins at the last keyframe up to `pre_roll_s` before the trigger (the caller's ring).
 * Each new motion or press pushes the end out; after `post_roll_s` without either the clip
   closes. A press keeps the clip open at least `doorbell_clip_s` and marks it "doorbell".
 * A clip reaching `max_clip_s` is split: it closes and a new one continues at once.
"""

from dataclasses import dataclass, field
from enum import Enum

from doorbell.config import RecordingSettings

_US = 1_000_000


class State(Enum):
    IDLE = "idle"
    RECORDING = "recording"  # motion or a press within the last frame
    POST_ROLL = "post-roll"  # no activity, counting down to the close


class Action(Enum):
    START = "start"
    STOP = "stop"
    SPLIT = "split"  # STOP the current clip and START a continuation at the same frame


@dataclass
class Decision:
    action: Action | None
    state: State
    trigger: str | None = None  # "motion", "doorbell" or "continued", with START and SPLIT


@dataclass
class _Clip:
    start_us: int
    trigger: str
    last_activity_us: int
    min_end_us: int
    presses_us: list[int] = field(default_factory=list)


class RecorderStateMachine:
    def __init__(self, settings: RecordingSettings | None = None):
        self.settings = settings or RecordingSettings()
        self.state = State.IDLE
        self._clip: _Clip | None = None

    @property
    def clip_trigger(self) -> str | None:
        return self._clip.trigger if self._clip else None

    @property
    def clip_presses_us(self) -> list[int]:
        return list(self._clip.presses_us) if self._clip else []

    def step(self, pts_us: int, motion: bool, pressed: bool) -> Decision:
        s = self.settings
        if self._clip is None:
            if not (motion or pressed):
                return Decision(None, State.IDLE)
            self._open(pts_us, "doorbell" if pressed else "motion", pressed)
            return Decision(Action.START, self.state, self._clip.trigger)

        clip = self._clip
        if pressed:
            clip.trigger = "doorbell"
            clip.presses_us.append(pts_us)
            clip.min_end_us = max(clip.min_end_us, pts_us + round(s.doorbell_clip_s * _US))
        if motion or pressed:
            clip.last_activity_us = pts_us
        if pts_us - clip.start_us >= s.max_clip_s * _US:
            carry_press = clip.min_end_us > pts_us
            min_end = clip.min_end_us
            self._open(pts_us, "continued", False)
            self._clip.min_end_us = min_end if carry_press else pts_us
            return Decision(Action.SPLIT, self.state, "continued")
        quiet_us = pts_us - clip.last_activity_us
        if quiet_us >= s.post_roll_s * _US and pts_us >= clip.min_end_us:
            self._clip = None
            self.state = State.IDLE
            return Decision(Action.STOP, State.IDLE)
        self.state = State.RECORDING if (motion or pressed) else State.POST_ROLL
        return Decision(None, self.state)

    def anchor_start(self, pts_us: int) -> None:
        """The clip really begins at `pts_us` (its pre-roll): count its length from there."""
        if self._clip is not None:
            self._clip.start_us = min(self._clip.start_us, pts_us)

    def stop(self) -> bool:
        """Close any open clip now (shutdown, camera lost). True if one was open."""
        was_open = self._clip is not None
        self._clip = None
        self.state = State.IDLE
        return was_open

    def _open(self, pts_us: int, trigger: str, pressed: bool) -> None:
        min_end = pts_us + round(self.settings.doorbell_clip_s * _US) if pressed else pts_us
        self._clip = _Clip(pts_us, trigger, pts_us, min_end, [pts_us] if pressed else [])
        self.state = State.RECORDING
