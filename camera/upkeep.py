"""What the recorder does beside recording: retention, its status file and activity events.

Each is a small part the recorder calls between frames; none touches video.

    Retention       deletes the oldest clips by age, size and free space, at most once a
                    `interval_s` (or at once when forced: start, a full disk, new settings),
                    and writes what it deleted to the audit log
    StatusReporter  recorder.json for the viewer (storage.exchange.RecorderStatus): state,
                    camera, frames, frame rate, clips saved, the settings in force
    Activity        motion_started / motion_ended / camera_lost / camera_back notifications
"""

import logging
import time
from collections import deque
from collections.abc import Callable

from doorbell.config import RetentionSettings
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.exchange import STATUS_INTERVAL_S, RecorderStatus
from doorbell.storage.retention import disk_free_bytes, enforce_retention

from .live import StatusPublisher

log = logging.getLogger("doorbell.recorder")

FPS_WINDOW_S = 5.0  # the frame rate shown is the mean over this many seconds


class Activity:
    """Notifications about what the recorder sees (queued on the event bus: never blocks)."""

    def __init__(self, events=None):
        self.events = events  # camera.events.EventBus, or None
        self._active = False  # a visit is under way (motion_started sent, motion_ended not)

    def emit(self, kind: str, **fields) -> None:
        if self.events is not None:
            self.events.emit(kind, **fields)

    def track(self, active: bool, trigger: str | None) -> None:
        """motion_started when the state machine leaves idle, motion_ended when it returns."""
        if active != self._active:
            self._active = active
            self.emit("motion_started", trigger=trigger) if active else self.emit("motion_ended")

    def camera_changed(self, previous: str, state: str, message: str) -> None:
        if state != previous and "lost" in (state, previous):
            self.emit("camera_lost" if state == "lost" else "camera_back", message=message)


class Retention:
    def __init__(self, store: ClipStore, audit: AuditLog | None, activity: Activity,
                 wall_clock_us: Callable[[], int], interval_s: float = 60.0):
        self.store = store
        self.audit = audit
        self.activity = activity
        self._wall_clock_us = wall_clock_us
        self._interval_us = round(interval_s * 1_000_000)
        self._last_us: int | None = None

    def run(self, settings: RetentionSettings, force: bool = False) -> None:
        now_us = self._wall_clock_us()
        if not force and self._last_us is not None and now_us - self._last_us < self._interval_us:
            return
        self._last_us = now_us
        pruned = enforce_retention(self.store, settings, now_us=now_us)
        min_free = settings.min_free_bytes
        if self.activity.events is not None and min_free and \
                (free := disk_free_bytes(self.store.clips_dir)) < min_free:
            self.activity.emit("disk_low", reason="free space below retention.min_free_bytes",
                               free_bytes=free, min_free_bytes=min_free)
        if pruned:
            log.info("retention deleted %d clip(s)", len(pruned))
            if self.audit is not None:
                self.audit.append("recorder", "retention",
                                  deleted=[p.clip_id for p in pruned],
                                  reasons=sorted({p.reason for p in pruned}),
                                  freed_bytes=sum(p.size_bytes for p in pruned))


class StatusReporter:
    def __init__(self, publisher: StatusPublisher | None, applied_sha256: dict[str, str]):
        self.publisher = publisher
        self.applied_sha256 = applied_sha256  # config_sha256, recipients_sha256: in force
        self.camera = "starting"
        self.frames = 0
        self.clips = 0  # saved since the start
        self.fps = 0.0
        self.last_frame_wall_s: float | None = None
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
        ))
