"""The recorder: one frame loop for every camera.

    pipeline.frames() -> motion detector -> state machine -> clip cutter -> store
         (masked)            (+ the tuner's trial detector)      (packets the pipeline released)
                  \\-> live frame (masked JPEG in a tmpfs), status, retention, notifications

The pipeline (camera/pipeline.py) burns the privacy mask in before anything sees a frame, and
encodes: in software (PyAV) or in the camera (picamera2). The recorder only decides, and reads
the same for both. Everything storage-related goes through the store's write-only API. Its
small parts: the camera loop with its back-off (camera/loop.py), retention, status and activity
events (camera/upkeep.py), write failures and a full disk (camera/faults.py).

Settings follow config.toml and recipients.txt while recording (camera.reload): after each frame
`check_settings()` applies what changed, from the next frame on. Masks, motion, recording,
retention and live settings apply in place; any other section makes `run()` return with
`restart_sections` set, and the command starts itself again.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence

from doorbell.config import Settings
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore

from .cutter import ClipCutter
from .faults import WriteFaults
from .frames import Frame
from .live import LiveFramePublisher, StatusPublisher
from .loop import CameraLoop
from .motion import MotionDetector
from .pipeline import VideoPipeline
from .presses import NoButton, PressSource
from .reload import SettingsWatcher, changed_sections
from .statemachine import Action, Decision, RecorderStateMachine, State
from .tuning import MotionTuner
from .upkeep import Activity, Retention, StatusReporter
from .watchdog import SystemdWatchdog

log = logging.getLogger("doorbell.recorder")

# The recording settings an encoder is built with: a change waits until no clip is open.
ENCODER_SETTINGS = ("preset", "crf", "keyframe_interval_s")


class Recorder:
    def __init__(self, settings: Settings, store: ClipStore, audit: AuditLog | None = None,
                 presses: PressSource | None = None, live: LiveFramePublisher | None = None,
                 status: StatusPublisher | None = None, *,
                 wall_clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
                 retention_interval_s: float = 60.0, watchdog: SystemdWatchdog | None = None,
                 events=None, watcher: SettingsWatcher | None = None,
                 tuner: MotionTuner | None = None, switches=None):
        self.settings = settings
        self.presses = presses or NoButton()
        self.store = store
        self.events = events  # camera.events.EventBus: notifications (never blocks capture)
        if events is not None:
            self.store = events.observe_store(store)
        self.live, self.watcher, self.tuner = live, watcher, tuner
        self.switches = switches  # camera.notify.switches.Switches (privacy mode), or None
        self._privacy_on = False
        self.watchdog = watchdog or SystemdWatchdog()  # a no-op outside systemd
        self.activity = Activity(events)
        self.retention = Retention(self.store, audit, self.activity, wall_clock_us,
                                   retention_interval_s)
        self.faults = WriteFaults(self.store, self.retention, self.activity)
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

    # -- the frame loop ---------------------------------------------------------------------------

    def run(self, open_pipeline: Callable[[Settings], VideoPipeline], stop: threading.Event,
            until_eof: bool = False) -> None:
        """Record until `stop` is set (or the source ends, with `until_eof`). A camera that
        fails or vanishes is reopened with back-off (camera/loop.py); its clip is sealed first."""
        self.retention.run(self.settings.retention, force=True)
        CameraLoop(self, self.watchdog, follow_settings=self.watcher is not None).run(
            open_pipeline, stop, until_eof)
        if self.tuner is not None:
            self.tuner.end()
        self.stats.publish("restarting" if self.restart_sections else "stopped", None, True)

    def attach(self, pipeline: VideoPipeline) -> None:
        """Record from `pipeline`: a fresh timeline, detector and cutter (timestamps restart)."""
        self.pipeline, self._origin, self._encoder_stale = pipeline, None, False
        self._detector.reset()
        self.cutter = ClipCutter(pipeline, self.store, self.settings.camera.name,
                                 self.settings.recording.fsync_interval_s, self._to_wall,
                                 self._machine.anchor_start)

    def detach(self) -> None:
        if self.pipeline is None:
            return
        self.close_clip()
        pipeline, self.pipeline = self.pipeline, None
        pipeline.close()

    def process(self, frame: Frame) -> None:
        pipeline, cutter = self.pipeline, self.cutter
        if self._origin is None or (self.retention.clock_moved and not cutter.busy):
            self._origin = (frame.pts_us, self._wall_clock_us())  # and after the clock was set
            self.retention.clock_moved = False
        if self._private(frame):
            return
        if self._encoder_stale and not cutter.busy:
            pipeline.set_recording(self.settings.recording, rebuild_encoder=True)
            self._encoder_stale = False
        fresh = frame.pts_us >= pipeline.fresh_from_us  # it shows the masks in force
        motion = self._detector.update(frame)
        if self.tuner is not None:
            self.tuner.update(frame, pipeline.size)  # never affects recording
        pressed = self.presses.pressed(frame.pts_us)
        if pressed:
            log.info("doorbell pressed")
            self.activity.doorbell_pressed(pipeline.full_image)
        decision = self._machine.step(frame.pts_us, motion.triggered, pressed)
        # motion_started / motion_ended now: motion_ended goes out before the clip_saved below
        self.activity.track(self._machine.state is not State.IDLE, self._machine.clip_trigger)
        if decision.action is Action.START and not self.retention.room_for_a_clip():
            self._machine.stop()  # the disk is still full: a clip begun now could not be kept
            decision = Decision(None, State.IDLE)
        try:
            cutter.follow(decision, frame.pts_us, self.settings.recording.pre_roll_s)
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

    def _private(self, frame: Frame) -> bool:
        """Privacy mode (Home Assistant's switch): no clip, no live frame, no picture; a press
        still goes out, without one. When it ends, a fresh start from the next frame (set_masks
        drops the pre-roll), so no frame from while it was on can begin a clip."""
        on = self.switches is not None and self.switches.privacy_mode
        if on != self._privacy_on:
            self._privacy_on = on
            if on:
                self.close_clip()
                if self.live is not None:
                    self.live.clear()
            else:
                self._detector.reset()
                self.pipeline.set_masks(self.settings.privacy.masks)
            self._publish_status(force=True)
        if on:
            if self.presses.pressed(frame.pts_us):
                self.activity.emit("doorbell_pressed")
            self.stats.frame()
            self._publish_status()
            self.retention.run(self.settings.retention)
        return on

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
        stops recording: keep the interrupted clip's prefix, prune, and go on."""
        self.cutter.abandon()
        self._machine.stop()
        self.faults.write_failed(exc, self.settings.retention)

    def reconcile_at_start(self) -> None:
        self.faults.reconcile_at_start(self.settings.retention)

    def _count_saved(self) -> None:
        saved = self.cutter.take_saved()
        self.faults.clips_saved(len(saved))
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
            if self.pipeline is not None and new.motion.detect_width != old.motion.detect_width:
                self.pipeline.set_detect_width(new.motion.detect_width)
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

    def camera_state(self, state: str, message: str) -> None:
        previous, self.stats.camera = self.stats.camera, state
        self.activity.camera_changed(previous, state, message)
        (log.warning if state == "lost" else log.info)("%s", message)
        self._publish_status(force=True)

    def _publish_status(self, force: bool = False) -> None:
        recording = self.cutter.recording_id if self.cutter is not None else None
        self.stats.retention_problem = self.retention.problem
        state = "privacy mode" if self._privacy_on else self._machine.state.value
        self.stats.publish(state, recording, force)
