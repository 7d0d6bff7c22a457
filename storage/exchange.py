"""The files the recorder and the viewer exchange: one typed record each, and how long each stays
believable. Both processes read and write them only through this module.

    runtime directory (Home.run_dir, a tmpfs), written by the recorder:
        recorder.json        RecorderStatus: every STATUS_INTERVAL_S, and at once on a change
        motion-overlay.json  MotionOverlay: at the live frame rate while the tuner page is open
        events.jsonl         one EventLine a line: the last 200 events
        live.jpg, motion-mask.png   images, no record: written with replace_file; whether they
                             are current is what recorder.json and motion-overlay.json say
    home, written by the viewer:
        motion-tuning.json   MotionTrial: every 5 s while the tuner page is open

Each file is one JSON object (events.jsonl: one a line) whose keys are the record's field names.
Writers replace a file atomically, so a reader sees the old version or the new one, never a mix.
`load` gives None for a missing file and ExchangeFileError (one sentence) for anything that is
not the record: larger than MAX_FILE_BYTES, not UTF-8, not JSON, a key missing, a value of the
wrong type or out of range. The two processes run as different users, so neither trusts the
other's bytes; keys a reader does not know are ignored.

This module decrypts nothing and imports nothing that does: the recorder uses it.
"""

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from doorbell.config.errors import ConfigError
from doorbell.config.model import MotionSettings, Settings

from .clipid import check_clip_id
from .durable import write_atomically
from .errors import ExchangeFileError, InvalidClipId

# -- how long each file stays believable -------------------------------------------------------

STATUS_INTERVAL_S = 1.0
"""The recorder rewrites recorder.json at least this often while frames arrive."""

RECORDER_STALE_S = 10.0
"""A recorder.json or motion-overlay.json older than this comes from a recorder that stopped or
hangs: its camera is not alive, it applies no new settings, its tuner overlay is off.

One limit for both files because one frame loop writes both, so the same stalls delay both
(sealing a clip, a retention pass, a slow SD card: seconds on a Pi Zero). The overlay is
rewritten every 1 / live.fps, which is 5 s at the slowest live rate (live.fps = 0.2): a 5 s limit
for it, as the viewer once had, turned the overlay off between two writes. 10 s is two overlay
writes at that rate and ten status writes."""

TRIAL_LIFETIME_S = 15.0
"""The viewer's tuner page rewrites motion-tuning.json every 5 s with `expires_at` this far
ahead: two refreshes may go missing (a busy device, a sleeping phone) before the trial lapses,
and a page closed without a word costs the recorder its second detector for at most 15 s."""

MAX_TRIAL_EXPIRY_S = 120.0
"""The recorder believes an `expires_at` at most this far ahead of when it read the file.
A cap, not a lifetime, hence larger than TRIAL_LIFETIME_S: whoever can write the file (or a
viewer whose clock runs ahead) cannot keep a second detector running without rewriting it."""

MAX_FILE_BYTES = 1 << 20
"""No exchange file is legitimately near this (events.jsonl, the largest, holds 200 short
lines): a bigger one is refused unread, not loaded into the viewer's memory."""

_MAX_INT = 2**53 - 1  # counters go on to the browser, whose JSON numbers hold this exactly
_MAX_TIME_S = 4_102_444_800.0  # 2100-01-01: a later "time" is a broken clock or a forged file
_MAX_TEXT = 200
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")  # goes into an SSE "id:" line as it is
_EVENT_TYPE = re.compile(r"[a-z_]{1,40}")  # and into an "event:" line
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX = "a SHA-256 in 64 lowercase hex digits"
_REQUIRED = object()



def replace_file(path: Path, data: bytes) -> None:
    """Write `path` atomically (a reader sees the old file or the new one, never a part).

    No fsync: runtime files live in a tmpfs and mean nothing after a reboot."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def fresh(time_s: float, now_s: float, limit_s: float = RECORDER_STALE_S) -> bool:
    """Whether a file stamped `time_s` is current at `now_s` (wall clock seconds).

    A stamp in the future counts only within the same limit: both processes read one clock, so
    a stamp far ahead is forged; one slightly ahead (the clock set back, e.g. by NTP on a Pi
    without a real-time clock) is replaced by the next write within a second."""
    return abs(now_s - time_s) < limit_s


def read_capped(path: Path) -> bytes | None:
    """The file's bytes (at most MAX_FILE_BYTES + 1), or None if there is no such file."""
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _json_value(name: str, data: bytes | str) -> Any:
    if len(data) > MAX_FILE_BYTES:
        raise ExchangeFileError(f"{name} is larger than {MAX_FILE_BYTES} bytes.")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError:
        raise ExchangeFileError(f"{name} is not UTF-8 text.") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
        raise ExchangeFileError(f"{name} is not JSON.") from None


class _Fields:
    """Typed access to one JSON object's keys; every refusal is an ExchangeFileError."""

    def __init__(self, name: str, raw: Any, what: str = "a JSON object"):
        if not isinstance(raw, dict):
            raise ExchangeFileError(f"{name} is not {what}.")
        self.name = name
        self.raw = raw

    def refuse(self, key: str, must: str) -> ExchangeFileError:
        return ExchangeFileError(f"{self.name}: {key} must be {must}.")

    def get(self, key: str, default: Any = _REQUIRED) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is _REQUIRED:
            raise ExchangeFileError(f"{self.name} has no {key}.")
        return default

    def text(self, key: str, pattern: re.Pattern | None = None, must: str = "",
             nullable: bool = False, default: Any = _REQUIRED) -> str | None:
        value = self.get(key, default)
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT or \
                (pattern is not None and not pattern.fullmatch(value)):
            must = must or f"a string of 1 to {_MAX_TEXT} characters"
            raise self.refuse(key, must + (" or null" if nullable else ""))
        return value

    def integer(self, key: str, minimum: int = 0, maximum: int = _MAX_INT) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or \
                not minimum <= value <= maximum:
            raise self.refuse(key, f"a whole number from {minimum} to {maximum}")
        return value

    def number(self, key: str, minimum: float | None = 0.0, maximum: float | None = None,
               value: Any = _REQUIRED) -> float:
        value = self.get(key) if value is _REQUIRED else value
        try:
            number = float(value) if isinstance(value, int | float) and \
                not isinstance(value, bool) else math.nan
        except OverflowError:  # an integer with hundreds of digits
            number = math.nan
        if not math.isfinite(number) or (minimum is not None and number < minimum) or \
                (maximum is not None and number > maximum):
            if maximum is not None:
                raise self.refuse(key, f"a number from {minimum:g} to {maximum:g}")
            at_least = "" if minimum is None else f" of at least {minimum:g}"
            raise self.refuse(key, f"a finite number{at_least}")
        return number

    def time(self, key: str, nullable: bool = False) -> float | None:
        value = self.get(key)
        if value is None and nullable:
            return None
        try:
            return self.number(key, 0.0, _MAX_TIME_S, value)
        except ExchangeFileError:
            raise self.refuse(key, "a time in seconds since 1970, before 2100" +
                              (" or null" if nullable else "")) from None

    def flag(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise self.refuse(key, "true or false")
        return value


class _ExchangeFile:
    """What every exchange record does: its bytes, and reading and writing its file."""

    FILE_NAME: ClassVar[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str):
        return cls._from_fields(_Fields(cls.FILE_NAME, _json_value(cls.FILE_NAME, data)))

    @classmethod
    def _from_fields(cls, fields: _Fields):
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path):
        """The record in `path`; None if there is no such file. Raises ExchangeFileError (the
        file is not the record) or OSError (it cannot be read)."""
        data = read_capped(path)
        return None if data is None else cls.from_json(data)

    @classmethod
    def load_or_none(cls, path: Path):
        """Like `load`, but a file that is not the record is None too: for a reader whose only
        answer to it is "no recorder" (the viewer's pages)."""
        try:
            return cls.load(path)
        except ExchangeFileError:
            return None

    def write(self, path: Path) -> None:
        replace_file(path, self.to_json())


# -- recorder.json ------------------------------------------------------------------------------

# The recorder's state while Home Assistant's privacy switch is on (camera/recorder.py): no clip,
# no live frame.
PRIVACY_MODE_STATE = "privacy mode"


@dataclass(frozen=True)
class RecorderStatus(_ExchangeFile):
    """recorder.json: alive, state, last frame time, frame rate. Nothing footage-derived."""

    FILE_NAME: ClassVar[str] = "recorder.json"

    state: str  # the state machine's ("idle", "recording", "post-roll"...), "stopped", ...
    camera: str  # "starting", "ok", "lost"
    frames: int
    fps: float
    clips_saved: int
    last_frame_time: float | None  # wall clock seconds; None before the first frame
    recording: str | None  # the open clip's id
    updated: float  # wall clock seconds
    config_sha256: str | None = None  # of the config.toml bytes in force (None: not followed)
    recipients_sha256: str | None = None  # likewise recipients.txt
    # Why retention cannot keep its limits right now, in one sentence (a disk that deleting
    # clips cannot free, a full disk, an audit log that cannot record deletions), or None.
    retention_problem: str | None = None

    @classmethod
    def _from_fields(cls, f: _Fields) -> "RecorderStatus":
        recording = f.text("recording", nullable=True)
        if recording is not None:
            try:
                check_clip_id(recording)
            except InvalidClipId:
                raise f.refuse("recording", "a clip id or null") from None
        return cls(
            state=f.text("state"),
            camera=f.text("camera"),
            frames=f.integer("frames"),
            fps=f.number("fps"),
            clips_saved=f.integer("clips_saved"),
            last_frame_time=f.time("last_frame_time", nullable=True),
            recording=recording,
            updated=f.time("updated"),
            config_sha256=f.text("config_sha256", _SHA256, _HEX, nullable=True, default=None),
            recipients_sha256=f.text("recipients_sha256", _SHA256, _HEX, nullable=True,
                                     default=None),
            retention_problem=f.text("retention_problem", nullable=True, default=None),
        )

    def camera_alive(self, now_s: float) -> bool:
        """Frames arrived within RECORDER_STALE_S of `now_s` (wall clock seconds)."""
        return self.last_frame_time is not None and fresh(self.last_frame_time, now_s)

    def recorder_running(self, now_s: float) -> bool:
        """The recorder wrote this within RECORDER_STALE_S of `now_s`, frames or not."""
        return fresh(self.updated, now_s)

    def in_privacy_mode(self, now_s: float) -> bool:
        """A running recorder says privacy mode is on: it records nothing and shows nothing."""
        return self.state == PRIVACY_MODE_STATE and self.recorder_running(now_s)


# -- the motion tuner: motion-tuning.json (viewer -> recorder) -----------------------------------

@dataclass(frozen=True)
class MotionTrial(_ExchangeFile):
    """motion-tuning.json: trial motion values the recorder tries on the live picture.

    `motion` holds motion.* keys as the viewer sent them; they are checked exactly like
    config.toml's, over the settings in force (`apply_to`), by the viewer before it writes and
    by the recorder when it reads.
    """

    FILE_NAME: ClassVar[str] = "motion-tuning.json"

    motion: Mapping[str, Any]
    expires_at: float  # wall clock seconds
    member: str | None = None  # who is tuning (for the recorder's log)

    def __post_init__(self):
        object.__setattr__(self, "motion", MappingProxyType(dict(self.motion)))

    def to_dict(self) -> dict:
        return {"motion": dict(self.motion), "expires_at": self.expires_at,
                "member": self.member}

    @classmethod
    def _from_fields(cls, f: _Fields) -> "MotionTrial":
        motion = f.get("motion")
        if not isinstance(motion, dict):
            raise f.refuse("motion", "an object of motion settings")
        return cls(motion=motion, expires_at=f.number("expires_at", None),
                   member=f.text("member", nullable=True, default=None))

    def write(self, path: Path) -> None:
        # Under the home (the recorder's runtime directory is not the viewer's to write), so
        # durable like every file there, and readable by the recorder's group.
        write_atomically(path, self.to_json(), mode=0o640)

    def apply_to(self, base: Settings, source: str) -> MotionSettings:
        """The trial values over `base`; ConfigError names a value config.toml would refuse."""
        return base.with_overrides({f"motion.{key}": value for key, value in self.motion.items()},
                                   source=source).motion

    def expiry_s(self, now_s: float) -> float:
        """When the trial ends, as the recorder believes it (capped at MAX_TRIAL_EXPIRY_S)."""
        return min(self.expires_at, now_s + MAX_TRIAL_EXPIRY_S)


# -- the motion tuner: motion-overlay.json (recorder -> viewer) ----------------------------------

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class MotionOverlay(_ExchangeFile):
    """motion-overlay.json: what the trial detector sees; motion-mask.png is written just before.

    `motion` is the trial detector's settings in force, checked like config.toml's on reading.
    """

    FILE_NAME: ClassVar[str] = "motion-overlay.json"

    updated: float  # wall clock seconds
    frame_width: int  # the camera's frame, in pixels
    frame_height: int
    boxes: tuple[Box, ...]  # x, y, w, h as fractions of the frame
    score: float
    triggered: bool
    light_change: bool
    motion: MotionSettings

    def to_dict(self) -> dict:
        m = self.motion
        return {
            "updated": self.updated, "frame_width": self.frame_width,
            "frame_height": self.frame_height, "boxes": [list(box) for box in self.boxes],
            "score": self.score, "triggered": self.triggered, "light_change": self.light_change,
            "motion": {
                "sensitivity": m.sensitivity, "min_area": m.min_area,
                "trigger_frames": m.trigger_frames, "detect_width": m.detect_width,
                "light_change_fraction": m.light_change_fraction,
                "zones": [[list(point) for point in zone] for zone in m.zones],
            },
        }

    @classmethod
    def _from_fields(cls, f: _Fields) -> "MotionOverlay":
        boxes = f.get("boxes")
        if not isinstance(boxes, list) or len(boxes) > 10_000:
            raise f.refuse("boxes", "a list of [x, y, w, h] boxes")
        parsed = []
        for index, box in enumerate(boxes):
            if not isinstance(box, list) or len(box) != 4:
                raise f.refuse(f"boxes[{index}]", "[x, y, w, h]")
            parsed.append(tuple(f.number(f"boxes[{index}]", 0.0, 1.0, value) for value in box))
        motion = f.get("motion")
        if not isinstance(motion, dict) or not set(_MOTION_KEYS) <= set(motion):
            raise f.refuse("motion", "an object of every motion setting")
        try:
            trial = Settings().with_overrides(
                {f"motion.{key}": motion[key] for key in _MOTION_KEYS}, source=cls.FILE_NAME)
        except ConfigError as exc:  # str(): "motion-overlay.json: <the value refused>"
            raise ExchangeFileError(str(exc)) from None
        return cls(
            updated=f.time("updated"),
            frame_width=f.integer("frame_width", 1, 100_000),
            frame_height=f.integer("frame_height", 1, 100_000),
            boxes=tuple(parsed),
            score=f.number("score", 0.0, 1.0),
            triggered=f.flag("triggered"),
            light_change=f.flag("light_change"),
            motion=trial.motion,
        )

    def active(self, now_s: float) -> bool:
        """The recorder's tuner is running: it wrote this within RECORDER_STALE_S."""
        return fresh(self.updated, now_s)


_MOTION_KEYS = ("sensitivity", "min_area", "trigger_frames", "detect_width",
                "light_change_fraction", "zones")


# -- events.jsonl (recorder -> viewer) ----------------------------------------------------------

@dataclass(frozen=True)
class EventLine:
    """One line of events.jsonl: {"id", "type", "time", ...the event's own fields}."""

    FILE_NAME: ClassVar[str] = "events.jsonl"

    id: str  # "<run>-<seq>": unique across recorder restarts
    type: str  # "clip_saved", "doorbell_pressed", ... (camera.events.EVENT_FIELDS)
    time: float  # wall clock seconds
    data: Mapping[str, Any]  # the event's own fields (clip_id, trigger, ...)

    def __post_init__(self):
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))

    def to_dict(self) -> dict:
        return {**self.data, "id": self.id, "type": self.type, "time": self.time}

    def to_json(self) -> str:
        """The line, without its newline (compact, keys sorted: one line per event)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: bytes | str) -> "EventLine":
        name = f"a line of {cls.FILE_NAME}"
        f = _Fields(name, _json_value(name, line))
        data = {key: value for key, value in f.raw.items() if key not in ("id", "type", "time")}
        return cls(id=f.text("id", _EVENT_ID, "letters, digits and - _ . : (1 to 100)"),
                   type=f.text("type", _EVENT_TYPE, "lowercase letters and _ (1 to 40)"),
                   time=f.time("time"), data=data)


def parse_event_lines(data: bytes) -> list[EventLine]:
    """The events in events.jsonl's bytes, oldest first. A line that is not an event is skipped:
    one foreign line does not hide the others."""
    events = []
    for line in data[:MAX_FILE_BYTES].splitlines():
        try:
            events.append(EventLine.from_json(line))
        except ExchangeFileError:
            continue
    return events


def load_events(path: Path) -> list[EventLine]:
    """The events in `path`, oldest first; none if there is no such file."""
    data = read_capped(path)
    return [] if data is None else parse_event_lines(data)
