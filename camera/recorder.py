"""The recorder: one frame loop for every camera.

    pipeline.frames() -> motion detector -> state machine -> clip cutter -> store
         (masked)            (+ the tuner's trial detector)      (packets the pipeline released)
                  \\-> live frame (masked JPEG in a tmpfs), status, retention, notifications

The pipeline (camera/pipeline.py) burns the privacy mask in before anything sees a frame, and
encodes: in software (PyAV) or in the camera (picamera2). The recorder only decides, and reads
the same for both. Everything storage-related goes through the store's write-only API.

Settings follow config.toml and recipients.txt while recording (camera.reload): after each frame
`check_settings()` applies what changed, from the next frame on. Masks, motion, recording,
retention and live settings apply in place; any other section makes `run()` return with
`restart_sections` set, and the command starts itself again.
"""

import errno
import logging
import threading
import time
from collections.abc import Callable, Sequence

from doorbell.config import Settings
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.reconcile import reconcile

from .cutter import ClipCutter
from .frames import Frame, SourceLost
from .live import LiveFramePublisher, StatusPublisher
from .motion import MotionDetector
from .pipeline import VideoPipeline
from .presses import NoButton, PressSource
from .reload import SettingsWatcher, changed_sections
from .statemachine import Action, RecorderStateMachine, State
from .tuning import MotionTuner
from .upkeep import Activity, Retention, StatusReporter
from .watchdog import SystemdWatchdog

log = logging.getLogger("doorbell.recorder")

# The recording settings an encoder is built with: a change waits until no clip is open.
ENCODER_SETTINGS = ("preset", "crf", "keyframe_interval_s")
MAX_BACKOFF_S = 30.0


class Recorder:
    def __init__(self, settings: Settings, store: ClipStore, audit: AuditLog | None = None,
                 presses: PressSource | None = None, live: LiveFramePublisher | None = None,
                 status: StatusPublisher | None = None, *,
                 wall_clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
                 retention_interval_s: float = 60.0, watchdog: SystemdWatchdog | None = None,
                 events=None, watcher: SettingsWatcher | None = None,
                 tuner: MotionTuner | None = None):
        self.settings = settings
        self.presses = presses or NoButton()
        self.store = store
        self.events = events  # camera.events.EventBus: notifications (never blocks capture)
        if events is not None:
            self.presses = events.observe_presses(self.presses)
            self.store = events.observe_store(store)
        self.live, self.watcher, self.tuner = live, watcher, tuner
        self.watchdog = watchdog or SystemdWatchdog()  # a no-op outside systemd
        self.activity = Activity(events)
        self.retention = Retention(self.store, audit, self.activity, wall_clock_us,
                                   retention_interval_s)
        self.stats = StatusReporter(status, {} if watcher is None else {
            "config_sha256": watcher.config_sha256,
            "recipients_sha256": watcher.recipients_sha256})
        self._wall_clock_us = wall_clock_us
        self._machine = RecorderStateMachine(settings.recording)
        self._detector = MotionDetector(settings.motion)
        self.pipeline: VideoPipeline | None = None
        self.cutter: ClipCutter | None = None
        self._origin: tuple[int, int] | None = None  # (pts_us, wall_us) of the first frame
        self.restart_sections: list[str] = []  # set: run() returns so the command restarts
        self._status_due = False  # a change was applied: publish once a frame shows it
        self._encoder_stale = False  # encoder settings changed: rebuild once no clip is open
        self._disk_full = False  # a write found the disk full, and no clip was saved since

    # -- the frame loop ---------------------------------------------------------------------------

    def run(self, open_pipeline: Callable[[Settings], VideoPipeline], stop: threading.Event,
            until_eof: bool = False) -> None:
        """Record until `stop` is set (or the source ends, with `until_eof`). A camera that
        fails or vanishes is reopened with back-off; its open clip is sealed first."""
        backoff_s, ended = 1.0, False
        self.retention.run(self.settings.retention, force=True)
        self.watchdog.ready()
        while not ended and not self._stopping(stop):
            try:
                self._attach(open_pipeline(self.settings))
            except (OSError, ValueError, SourceLost) as exc:
                self._camera_state("lost", f"cannot open the camera: {exc}; retrying in "
                                   f"{backoff_s:.0f} s")
                self._wait(stop, backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
                continue
            self._camera_state("ok", "camera open")
            try:
                for frame in self.pipeline.frames():
                    self.process(frame)
                    self.watchdog.frame_arrived()  # only while frames really arrive
                    backoff_s = 1.0
                    self.check_settings()
                    if self._stopping(stop):
                        break
                else:
                    if not until_eof:
                        raise SourceLost("the source ended")
                    ended = True
            except SourceLost as exc:
                self._detach()
                self._camera_state("lost", f"camera lost: {exc}; retrying in {backoff_s:.0f} s")
                self._wait(stop, backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            finally:
                self._detach()
        if self.tuner is not None:
            self.tuner.end()
        self.stats.publish("restarting" if self.restart_sections else "stopped", None, True)

    def _attach(self, pipeline: VideoPipeline) -> None:
        """Record from `pipeline`: a fresh timeline, detector and cutter (timestamps restart)."""
        self.pipeline, self._origin, self._encoder_stale = pipeline, None, False
        self._detector.reset()
        self.cutter = ClipCutter(pipeline, self.store, self.settings.camera.name,
                                 self.settings.recording.fsync_interval_s, self._to_wall,
                                 self._machine.anchor_start)

    def _detach(self) -> None:
        if self.pipeline is None:
            return
        self.close_clip()
        pipeline, self.pipeline = self.pipeline, None
        pipeline.close()

    def _stopping(self, stop: threading.Event) -> bool:
        return stop.is_set() or bool(self.restart_sections)

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        """Wait out a back-off while still following the settings: a fixed camera.source,
        say, restarts the recorder at once instead of after the back-off."""
        if self.watcher is None:
            stop.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self._stopping(stop) and (left_s := deadline - time.monotonic()) > 0:
            stop.wait(min(left_s, 1.0))
            self.check_settings()

    def process(self, frame: Frame) -> None:
        pipeline, cutter = self.pipeline, self.cutter
        if self._origin is None:
            self._origin = (frame.pts_us, self._wall_clock_us())
        if self._encoder_stale and not cutter.busy:
            pipeline.set_recording(self.settings.recording, rebuild_encoder=True)
            self._encoder_stale = False
        fresh = frame.pts_us >= pipeline.fresh_from_us  # it shows the masks in force
        motion = self._detector.update(frame)
        if self.tuner is not None:
            self.tuner.update(frame, pipeline.size)  # never affects recording
        pressed = self.presses.pressed(frame.pts_us)
        decision = self._machine.step(frame.pts_us, motion.triggered, pressed)
        if pressed:
            log.info("doorbell pressed")
        # motion_started / motion_ended now: motion_ended goes out before the clip_saved below
        self.activity.track(self._machine.state is not State.IDLE, self._machine.clip_trigger)
        if decision.action is Action.START and not self.retention.room_for_a_clip():
            self._machine.stop()  # the disk is still full: a clip begun now could not be kept
        try:
            if decision.action is Action.START and self._machine.state is not State.IDLE:
                cutter.start(frame.pts_us, decision.trigger, self.settings.recording.pre_roll_s)
            elif decision.action is Action.STOP:
                cutter.stop(frame.pts_us)
            elif decision.action is Action.SPLIT:
                cutter.split(frame.pts_us)
            if fresh:
                cutter.note((frame.width, frame.height), motion.score, motion.triggered,
                            motion.boxes, pipeline.full_image)
            if pressed:
                cutter.press(self._to_wall(frame.pts_us))
            cutter.pump()
        except OSError as exc:
            self._write_failed(exc)
        self._count_saved()
        now_s = time.monotonic()
        if self.live is not None and fresh and self.live.due(now_s):
            self.live.publish(pipeline.full_image(), now_s)
        self.stats.frame()
        # After a change the status goes out with the first frame showing it (its live frame
        # published first), so "applied" in the viewer is what the live view shows.
        due, self._status_due = self._status_due and fresh, self._status_due and not fresh
        self._publish_status(force=due)
        self.retention.run(self.settings.retention)

    def close_clip(self) -> None:
        """Seal the open clip, if any, and go idle (shutdown, camera lost)."""
        self._machine.stop()
        self.activity.track(False, None)  # motion_ended goes out before clip_saved
        if self.cutter is None:
            return
        try:
            self.cutter.close()
        except OSError as exc:
            self._write_failed(exc)
        self._count_saved()

    def _write_failed(self, exc: OSError) -> None:
        """A full disk (a clip file's write or the index's) or another write failure never
        stops recording: prune, keep the interrupted clip's prefix, and go on."""
        self.cutter.abandon()
        self._machine.stop()
        if exc.errno == errno.ENOSPC:
            if not self._disk_full:  # one sentence per full disk, not one per failed write
                log.error("the disk is full: pruning the oldest clips and continuing")
                self.activity.emit("disk_low", reason="disk full")
            self._disk_full = True
            self.retention.disk_full(self.settings.retention)  # first: reconcile needs room
        else:
            log.error("writing the clip failed (%s): it is kept up to where it was written", exc)
        try:
            reconcile(self.store.clips_dir, self.store.index)  # the interrupted clip's prefix
        except OSError as again:  # no room even for its index row: the next reconcile adds it
            log.error("the interrupted clip is not indexed yet (%s)", again)

    def reconcile_at_start(self) -> None:
        """Put right what a crash or power cut left (interrupted clips keep their prefix, the
        index follows the files) and log it; a disk too full for the index is pruned first."""
        try:
            report = reconcile(self.store.clips_dir, self.store.index)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            log.error("the disk is full: pruning the oldest clips before recording")
            self._disk_full = True
            self.retention.disk_full(self.settings.retention)
            report = reconcile(self.store.clips_dir, self.store.index)
        for line in report.lines():
            log.warning("%s", line)

    def _count_saved(self) -> None:
        saved = self.cutter.take_saved()
        if saved:  # a clip reached the disk: a later full disk is news again
            self._disk_full = False
            self.retention.clip_saved()
        self.stats.clips += len(saved)

    # -- settings that change while recording ----------------------------------------------------

    def check_settings(self) -> None:
        """At the watcher's pace (once a second), apply what changed in config.toml,
        recipients.txt and the motion tuner's file."""
        if self.watcher is None or (reload := self.watcher.poll()) is None:
            return
        if reload.settings is not None and self.apply_settings(reload.settings):
            self.stats.applied_sha256["config_sha256"] = self.watcher.config_sha256
        if reload.recipients is not None:
            self.apply_recipients(reload.recipients)
            self.stats.applied_sha256["recipients_sha256"] = self.watcher.recipients_sha256
        if self.tuner is not None:
            self.tuner.poll(self.settings)
        if self._status_due and self.pipeline is None:
            self._status_due = False  # no frames flowing (camera lost): say so now
            self._publish_status(force=True)

    def apply_settings(self, new: Settings) -> bool:
        """Put `new` in force from the next frame on; True if it is. False if a section
        changed that only a restart applies: `restart_sections` names it."""
        changed, restart = changed_sections(self.settings, new)
        if restart:
            log.warning("%s settings changed: restarting the recorder to apply them",
                        ", ".join(restart))
            self.restart_sections = restart
            return False
        old, self.settings = self.settings, new
        if "privacy" in changed:
            self._detector.reset()  # the newly blacked-out area would look like motion
            if self.tuner is not None:
                self.tuner.reset()
            if self.pipeline is not None:
                self.pipeline.set_masks(new.privacy.masks)
            if self.live is not None:
                self.live.publish_next()
        if "motion" in changed:
            self._detector = MotionDetector(new.motion)
        if "recording" in changed:
            self._machine.settings = new.recording
            if self.pipeline is not None:
                self.pipeline.set_recording(new.recording, rebuild_encoder=False)
            self._encoder_stale = any(getattr(new.recording, name) != getattr(
                old.recording, name) for name in ENCODER_SETTINGS)
        if "live" in changed and self.live is not None:
            self.live = LiveFramePublisher(self.live.path, new.live.fps, new.live.width,
                                           new.live.jpeg_quality)
        if "retention" in changed:
            self.retention.run(new.retention, force=True)
        if changed:
            log.info("settings applied without a restart: %s", ", ".join(changed))
        self._status_due = True
        return True

    def apply_recipients(self, recipients: Sequence) -> None:
        """Encrypt the next clip to `recipients`; the open clip keeps the keys it began with."""
        self.store.set_recipients(recipients)
        log.info("recipients.txt changed: new clips are encrypted to %d keys", len(recipients))
        self._status_due = True

    # -- helpers ----------------------------------------------------------------------------------

    def _to_wall(self, pts_us: int) -> int:
        pts0, wall0 = self._origin
        return wall0 + (pts_us - pts0)

    def _camera_state(self, state: str, message: str) -> None:
        previous, self.stats.camera = self.stats.camera, state
        self.activity.camera_changed(previous, state, message)
        (log.warning if state == "lost" else log.info)("%s", message)
        self._publish_status(force=True)

    def _publish_status(self, force: bool = False) -> None:
        recording = self.cutter.recording_id if self.cutter is not None else None
        self.stats.retention_problem = self.retention.problem
        self.stats.publish(self._machine.state.value, recording, force)
