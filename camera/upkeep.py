"""What the recorder does beside recording: retention, its status file and activity events.

Each is a small part the recorder calls between frames; none touches video.

    Retention       deletes the oldest clips by age, size and free space, at most once a
                    `interval_s` (or at once when forced: start, a full disk, new settings),
                    and writes what it deleted to the audit log; it also follows the wall
                    clock (set by NTP after boot, or jumping), so that clips dated by a wrong
                    clock are aged from when it was right
    StatusReporter  recorder.json for the viewer (storage.exchange.RecorderStatus): state,
                    camera, frames, frame rate, clips saved, the settings in force
    Activity        doorbell_pressed / motion_started / motion_ended / camera_lost /
                    camera_back notifications
"""

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from doorbell.config import RetentionSettings
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.errors import AuditLogCorrupt
from doorbell.storage.exchange import STATUS_INTERVAL_S, RecorderStatus
from doorbell.storage.retention import (
    disk_free_bytes,
    enforce_retention,
    free_space_shortfall,
)

from .clip import thumbnail_jpeg
from .live import StatusPublisher

log = logging.getLogger("doorbell.recorder")

FPS_WINDOW_S = 5.0  # the frame rate shown is the mean over this many seconds
STATUS_TEXT_MAX = 200  # characters in one of recorder.json's texts
# After a full disk, a new clip needs room for one as big as the biggest of the last few
# (at least a second or so of 720p video).
RECENT_CLIPS = 10
MIN_ROOM_BYTES = 1 << 20
ROOM_CHECK_INTERVAL_S = 1.0
# The wall clock moving against the monotonic one by more than this between two looks is a
# jump (set by hand, a bad time source): the clips dated by the clock before it are re-aged.
CLOCK_JUMP_US = 86_400 * 1_000_000
# A clip's start (its id's whole second, its pre-roll) may precede the first time retention saw.
CLOCK_MARGIN_US = 60 * 1_000_000
# A clock still unsynchronised this long after recording began is taken as it is (a network
# without a time server): clips are aged by it from then on, and re-aged if NTP sets it later.
UNSYNCED_TRUSTED_AFTER_S = 3_600.0


class Activity:
    """Notifications about what the recorder sees (queued on the event bus: never blocks)."""

    def __init__(self, events=None):
        self.events = events  # camera.events.EventBus, or None
        self._active = False  # a visit is under way (motion_started sent, motion_ended not)

    def emit(self, kind: str, **fields) -> None:
        if self.events is not None:
            self.events.emit(kind, **fields)

    def doorbell_pressed(self, full_image: Callable[[], np.ndarray]) -> None:
        """A press, with the masked picture of this moment when snapshots are on (MQTT's
        snapshot at the ring, not a clip's length later)."""
        if self.events is not None:
            self.events.emit("doorbell_pressed", image=thumbnail_jpeg(full_image())
                             if self.events.images else None)

    def track(self, active: bool, trigger: str | None) -> None:
        """motion_started when the state machine leaves idle, motion_ended when it returns."""
        if active != self._active:
            self._active = active
            self.emit("motion_started", trigger=trigger) if active else self.emit("motion_ended")

    def camera_changed(self, previous: str, state: str, message: str) -> None:
        if state != previous and "lost" in (state, previous):
            self.emit("camera_lost" if state == "lost" else "camera_back", message=message)


class Retention:
    """Retention while recording, and what a full disk and a wrong clock change about it.

    After a write found the disk full (`disk_full()`), every run also makes room for the next
    clip (as big as the biggest recent one, never by deleting the newest clip), and
    `room_for_a_clip()` holds new clips back until that room is there: a disk that cannot be
    freed costs one sentence, not a failed clip (and an empty file) on every frame.

    The clock: a Pi without a real-time clock records with the clock at the last shutdown (or
    1970) until NTP sets it. The command calls `clock_unsynchronised()` when recording starts
    so: clips begun then are indexed as clock_unsynced and not aged by age at all (size and
    free space still delete them). Once the clock is synchronised (`clock_synchronised()`,
    from any thread) or whenever the clock is trusted, such clips are kept from that moment
    (kept_from_us): deleted for age only after max_age_days of real time. A wall clock that
    jumps by more than a day against time.monotonic is treated the same way: clips dated by
    the clock before the jump are kept from the jump. After either, `clock_moved` tells the
    recorder to re-anchor its clip times on the new clock. A clock NTP never sets is taken as
    it is after UNSYNCED_TRUSTED_AFTER_S (what it dated is re-aged if NTP sets it later)."""

    def __init__(self, store: ClipStore, audit: AuditLog | None, activity: Activity,
                 wall_clock_us: Callable[[], int], interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.audit = audit
        self.activity = activity
        self._wall_clock_us = wall_clock_us
        self._clock = clock
        self._interval_us = round(interval_s * 1_000_000)
        self._last_us: int | None = None
        self._full = False  # a write found the disk full and no clip was saved since
        self._room_checked_s = -1e9
        self._room = True
        self._clock_trusted = True  # False from clock_unsynchronised() until it is set
        self._synchronised = False  # clock_synchronised() was called (maybe from a thread)
        self._untrusted_since_s = 0.0
        self._clock_unwritten = False  # the index could not take a change of the clock
        self._clock_offset_us: int | None = None  # wall - monotonic at the last look
        self._clock_since_us: int | None = None  # this clock's first time seen (or a jump's)
        self._clock_last_us = 0  # its last time seen
        self.clock_moved = False  # set or jumped: clip times must be re-anchored on it
        # Why retention cannot keep the limits right now (one sentence), or None: logged once
        # when it appears, and what the status should show while it lasts.
        self.problem: str | None = None

    def clock_unsynchronised(self) -> None:
        """Recording starts before the clock is set: clips begun from now on wait for it."""
        self._clock_trusted = False
        self._untrusted_since_s = self._clock()
        self.store.clock_changed(unsynced=True)

    def clock_synchronised(self) -> None:
        """NTP has set the clock (safe from another thread: the next run applies it)."""
        self._synchronised = True

    def run(self, settings: RetentionSettings, force: bool = False) -> None:
        """Apply the limits, at most once an interval unless forced."""
        now_us = self._wall_clock_us()
        try:
            force = self._follow_clock(now_us) or force
            if self._clock_trusted and (force or self._due(now_us)):
                # clips begun before it was set (or open when it was)
                self.store.index.keep_unsynced_from(now_us)
            self._clock_unwritten = False
        except OSError as exc:  # the index cannot take it (a full disk): size and free space
            # still apply; age waits until the clips' ages are written (tried again each call)
            if not self._clock_unwritten:
                log.warning("retention could not record a change of the clock (%s): no clip "
                            "is deleted for age until it can", exc)
            self._clock_unwritten = True
            settings = dataclasses.replace(settings, max_age_days=0)
        if not force and not self._due(now_us):
            return
        self._last_us = now_us
        room_bytes = self._room_needed_bytes() if self._full else 0
        try:
            pruned = enforce_retention(self.store, settings, now_us=now_us,
                                       room_bytes=room_bytes, before_deleting=self._auditable)
        except AuditLogCorrupt as exc:  # nothing was deleted: recording goes on, clips stay
            self._report(f"retention is waiting, so that no clip is deleted unaudited: {exc}")
            return
        except OSError as exc:  # a file or the index that cannot be changed: try again later
            self._report(f"retention could not delete clips ({exc}): it tries again at its "
                         "next run")
            return
        min_free = settings.min_free_bytes
        if self.activity.events is not None and min_free and \
                (free := disk_free_bytes(self.store.clips_dir)) < min_free:
            self.activity.emit("disk_low", reason="free space below retention.min_free_bytes",
                               free_bytes=free, min_free_bytes=min_free)
        if pruned:
            log.info("retention deleted %d clip(s)", len(pruned))
            if self.audit is not None:
                try:
                    self.audit.append("recorder", "retention",
                                      deleted=[p.clip_id for p in pruned],
                                      reasons=sorted({p.reason for p in pruned}),
                                      freed_bytes=sum(p.size_bytes for p in pruned))
                except (AuditLogCorrupt, OSError) as exc:  # damaged since it was checked
                    log.error("retention deleted %s but the audit log could not record it: %s",
                              ", ".join(p.clip_id for p in pruned), exc)
        self._room_checked_s = -1e9  # look again: the run may have made room
        if self._full and not self.room_for_a_clip():
            free = disk_free_bytes(self.store.clips_dir)
            self._report(f"the disk is full and deleting older clips cannot make room for the "
                         f"next one ({_megabytes(free)} free, {_megabytes(room_bytes)} needed): "
                         "the newest clip is kept, and recording resumes when space is freed")
        else:
            self._report(free_space_shortfall(self.store.clips_dir, settings))

    def _due(self, now_us: int) -> bool:
        """An interval since the last run (or the clock went back since)."""
        return self._last_us is None or not 0 <= now_us - self._last_us < self._interval_us

    def _follow_clock(self, now_us: int) -> bool:
        """Notice the clock being set or jumping, and re-age the clips it dated wrongly (before
        anything is deleted for age). True if retention should run now."""
        now_s = self._clock()
        offset_us = now_us - round(now_s * 1_000_000)
        step_us = 0 if self._clock_offset_us is None else offset_us - self._clock_offset_us
        if self._clock_since_us is None:
            self._clock_since_us = now_us
        moved = False
        if abs(step_us) > CLOCK_JUMP_US:
            clips = self._keep_this_clocks_clips(now_us, self._clock_last_us)
            log.warning("the clock jumped by %+.1f days: %d clip(s) dated by the clock before "
                        "are kept from now", step_us / 8.64e10, clips)
            self._audit_clock("clock.jumped", by_s=step_us // 10**6, clips=clips)
            self._clock_offset_us, self._clock_last_us = offset_us, now_us  # said once
            moved = True
        if self._synchronised:  # NTP set it, by however little: what this clock dated is re-aged
            self._keep_this_clocks_clips(now_us, max(now_us, self._clock_last_us))
            self._synchronised = False
            self._clock_trusted = moved = True
        changed = moved
        if not self._clock_trusted and now_s - self._untrusted_since_s >= UNSYNCED_TRUSTED_AFTER_S:
            log.warning("the clock is still not synchronised after %.0f minutes: clips are aged "
                        "by it from now on (and again from when NTP sets it)",
                        UNSYNCED_TRUSTED_AFTER_S / 60)
            self._clock_trusted = changed = True  # e.g. no time server on this network
        if changed:
            self.store.clock_changed(unsynced=not self._clock_trusted)
        if moved:
            self.clock_moved = True
        self._clock_offset_us, self._clock_last_us = offset_us, now_us
        return changed

    def _keep_this_clocks_clips(self, now_us: int, until_us: int) -> int:
        """Clips dated by the clock since it was last set or jumped are kept from `now_us`."""
        clips = self.store.index.keep_from_after_jump(
            self._clock_since_us - CLOCK_MARGIN_US, until_us + CLOCK_MARGIN_US, now_us)
        self._clock_since_us = now_us
        return clips

    def _audit_clock(self, action: str, **details) -> None:
        if self.audit is not None:
            try:
                self.audit.append("recorder", action, **details)
            except (AuditLogCorrupt, OSError) as exc:  # recording goes on
                log.warning("could not write %s to the audit log: %s", action, exc)

    def _auditable(self) -> None:
        """Before the first deletion: the log must be able to record it (AuditLogCorrupt if
        not), so that no clip is ever deleted without a trace."""
        if self.audit is not None:
            self.audit.require_intact()

    def disk_full(self, settings: RetentionSettings) -> None:
        """A write found the disk full: make room now (and at every run until a clip is saved)."""
        self._full = True
        self.run(settings, force=True)

    def clip_saved(self) -> None:
        self._full = False

    def room_for_a_clip(self) -> bool:
        """Whether a new clip may begin: always, unless the disk ran full and has no room for
        one yet (looked at once a second)."""
        if not self._full:
            return True
        now_s = self._clock()
        if now_s - self._room_checked_s >= ROOM_CHECK_INTERVAL_S:
            self._room_checked_s = now_s
            self._room = disk_free_bytes(self.store.clips_dir) >= self._room_needed_bytes()
        return self._room

    def _room_needed_bytes(self) -> int:
        """Room for one clip as big as the biggest recent one."""
        recent = self.store.index.clips(limit=RECENT_CLIPS)
        return max([MIN_ROOM_BYTES, *(clip.size_bytes for clip in recent)])

    def _report(self, problem: str | None) -> None:
        """Say a new problem once (not at every run while it lasts), and when it is over."""
        if problem is not None and (self.problem is None or
                                    _kind(problem) != _kind(self.problem)):
            log.warning("%s", problem)
        elif problem is None and self.problem is not None:
            log.info("retention keeps its limits again")
        self.problem = problem


def _kind(problem: str) -> str:
    """A problem's sentence without its numbers: the same problem with other figures."""
    return "".join(c for c in problem if not c.isdigit())


def _megabytes(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f} MB"


class StatusReporter:
    def __init__(self, publisher: StatusPublisher | None, applied_sha256: dict[str, str]):
        self.publisher = publisher
        self.applied_sha256 = applied_sha256  # config_sha256, recipients_sha256: in force
        self.camera = "starting"
        self.frames = 0
        self.clips = 0  # saved since the start
        self.fps = 0.0
        self.last_frame_wall_s: float | None = None
        self.retention_problem: str | None = None  # Retention.problem, for the viewer
        self._arrivals_s: deque[float] = deque()
        self._last_publish_s = -1e9

    def frame(self) -> None:
        now_s = time.monotonic()
        self.frames += 1
        self.last_frame_wall_s = time.time()
        self._arrivals_s.append(now_s)
        while now_s - self._arrivals_s[0] > FPS_WINDOW_S:
            self._arrivals_s.popleft()
        span_s = self._arrivals_s[-1] - self._arrivals_s[0]
        self.fps = (len(self._arrivals_s) - 1) / span_s if span_s > 0 else 0.0

    def publish(self, state: str, recording: str | None, force: bool = False) -> None:
        if self.publisher is None:
            return
        now_s = time.monotonic()
        if not force and now_s - self._last_publish_s < STATUS_INTERVAL_S:
            return
        self._last_publish_s = now_s
        self.publisher.publish(RecorderStatus(
            state=state, camera=self.camera, frames=self.frames, fps=round(self.fps, 2),
            clips_saved=self.clips, last_frame_time=self.last_frame_wall_s,
            recording=recording, updated=time.time(),
            config_sha256=self.applied_sha256.get("config_sha256"),
            recipients_sha256=self.applied_sha256.get("recipients_sha256"),
            retention_problem=_status_text(self.retention_problem),
        ))


def _status_text(sentence: str | None) -> str | None:
    """At most the characters a recorder.json text may hold (storage.exchange)."""
    if sentence is None or len(sentence) <= STATUS_TEXT_MAX:
        return sentence
    return sentence[:STATUS_TEXT_MAX - 1] + "…"
