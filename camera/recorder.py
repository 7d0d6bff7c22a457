"""The recorder pipeline, one frame at a time:

    source -> privacy mask -> motion detector -> state machine -> H.264 encoder
           -> pre-roll ring -> active clip (fragmented MP4 -> age writer -> store)
           -> live frame (masked JPEG in a tmpfs)

The mask is burned in first, so nothing downstream (encoder, thumbnail, live view, detector)
ever sees the masked area. Full frames go to the encoder; the detector makes its own small
grayscale copy. Everything storage-related goes through the store's write-only API.

Settings follow config.toml and recipients.txt while recording (camera.reload): after each frame
`check_settings()` applies what changed, from the next frame on. Masks, motion, recording,
retention and live settings apply in place; any other section makes `run()` return with
`restart_sections` set, and the command starts itself again.
"""

import dataclasses
import errno
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from doorbell.config import Settings
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.reconcile import reconcile
from doorbell.storage.retention import disk_free_bytes, enforce_retention

from .clip import ActiveClip
from .encoder import H264Encoder
from .frames import Frame, FrameSource, SourceLost
from .live import LiveFramePublisher, StatusPublisher
from .masks import PrivacyMask
from .motion import MotionDetector
from .preroll import PacketRing
from .presses import NoButton, PressSource
from .reload import SettingsWatcher
from .statemachine import Action, RecorderStateMachine, State
from .tuning import MotionTuner
from .watchdog import SystemdWatchdog

log = logging.getLogger("doorbell.recorder")

_US = 1_000_000

# The sections a running recorder puts in force by itself; a change anywhere else (camera,
# doorbell button, notifications, the viewer's networks) takes a restart.
LIVE_SECTIONS = ("privacy", "motion", "recording", "retention", "live")


@dataclass
class RecorderStats:
    frames: int = 0
    clips: int = 0
    last_frame_wall_s: float | None = None
    fps: float = 0.0
    camera: str = "starting"


class Recorder:
    # The recording settings the encoder is built with (a change waits until no clip is open).
    ENCODER_SETTINGS = ("preset", "crf", "keyframe_interval_s")

    def __init__(
        self,
        settings: Settings,
        store: ClipStore,
        audit: AuditLog | None = None,
        presses: PressSource | None = None,
        live: LiveFramePublisher | None = None,
        status: StatusPublisher | None = None,
        wall_clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
        retention_interval_s: float = 60.0,
        watchdog: SystemdWatchdog | None = None,
        events=None,  # camera.events.EventBus: notifications (never blocks capture)
        watcher: SettingsWatcher | None = None,  # config.toml and recipients.txt, followed
        tuner: MotionTuner | None = None,  # the viewer's motion tuner, when it is open
    ):
        self.settings = settings
        self.store = store
        self.audit = audit
        self.presses = presses or NoButton()
        self.events = events
        self._active = False  # a visit is under way (motion_started sent, motion_ended not yet)
        if events is not None:  # the seams both recorders share: presses and sealed clips
            self.presses = events.observe_presses(self.presses)
            self.store = events.observe_store(store)
        self.live = live
        self.status = status
        self.stats = RecorderStats()
        self.watchdog = watchdog or SystemdWatchdog()  # a no-op outside systemd
        self._wall_clock_us = wall_clock_us
        self._retention_interval_us = round(retention_interval_s * _US)
        self._machine = RecorderStateMachine(settings.recording)
        self._detector = MotionDetector(settings.motion)
        self._clip: ActiveClip | None = None
        self._clip_trigger: str | None = None  # why the open clip started
        self._presses_wall_us: list[int] = []  # doorbell presses during the open clip
        self._pipeline_size: tuple[int, int] | None = None
        self._encoder: H264Encoder | None = None
        self._ring: PacketRing | None = None
        self._mask: PrivacyMask | None = None
        self._origin: tuple[int, int] | None = None  # (pts_us, wall_us) of the first frame
        self._last_retention_us: int | None = None
        self._rate_window: list[float] = []
        self._fps = float(settings.camera.fps)
        self._last_status_s = 0.0
        self.watcher = watcher
        self.tuner = tuner
        self.restart_sections: list[str] = []  # set: run() returns so the command restarts
        self._status_due = False  # a change was applied: publish the status at once
        self._encoder_stale = False  # encoder settings changed: rebuild once no clip is open
        self._applied_sha256 = {} if watcher is None else {
            "config_sha256": watcher.config_sha256,
            "recipients_sha256": watcher.recipients_sha256,
        }

    # -- the frame loop ---------------------------------------------------------------------------

    def run(self, open_source: Callable[[], FrameSource], stop: threading.Event,
            until_eof: bool = False) -> None:
        """Record until `stop` is set (or the source ends, with `until_eof`).

        A source that fails or vanishes is reopened with back-off; the open clip is closed first.
        """
        backoff_s = 1.0
        self._run_retention(force=True)
        self.watchdog.ready()
        while not self._stopping(stop):
            try:
                source = open_source()
            except (OSError, ValueError, SourceLost) as exc:
                self._camera_state("lost", f"cannot open the camera: {exc}; retrying in "
                                   f"{backoff_s:.0f} s")
                self._wait(stop, backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)
                continue
            self._camera_state("ok", "camera open")
            # A video file knows its own frame rate; a camera runs at the configured one.
            self._fps = float(getattr(source, "fps", 0) or self.settings.camera.fps)
            try:
                for frame in source.frames():
                    self.process(frame)
                    self.watchdog.frame_arrived()  # only while frames really arrive
                    backoff_s = 1.0
                    self.check_settings()
                    if self._stopping(stop):
                        break
                else:
                    if until_eof:
                        break
                    raise SourceLost("the source ended")
            except SourceLost as exc:
                self.close_clip()
                self._reset_pipeline()
                self._camera_state("lost", f"camera lost: {exc}; retrying in {backoff_s:.0f} s")
                self._wait(stop, backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)
            finally:
                source.close()
        self.close_clip()
        if self.tuner is not None:
            self.tuner.end()
        self._publish_status(force=True,
                             state="restarting" if self.restart_sections else "stopped")

    def _stopping(self, stop: threading.Event) -> bool:
        return stop.is_set() or bool(self.restart_sections)

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        """Wait out a camera back-off while still following the settings: a fixed
        camera.source, say, restarts the recorder at once instead of after the back-off."""
        if self.watcher is None:
            stop.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self._stopping(stop) and (left_s := deadline - time.monotonic()) > 0:
            stop.wait(min(left_s, 1.0))
            self.check_settings()

    def process(self, frame: Frame) -> None:
        self._ensure_pipeline(frame)
        if self._encoder_stale and self._clip is None:
            self._rebuild_encoder()
        image = frame.image
        self._mask.apply(image)
        motion = self._detector.update(frame)
        if self.tuner is not None:
            self.tuner.update(frame)  # the same masked frame; it never affects recording
        pressed = self.presses.pressed(frame.pts_us)
        decision = self._machine.step(frame.pts_us, motion.triggered, pressed)
        if pressed:
            log.info("doorbell pressed")
        packets = self._encoder.encode(frame)
        for packet in packets:
            self._ring.append(packet)
        try:
            if decision.action in (Action.STOP, Action.SPLIT):
                self._seal_clip()
            if decision.action in (Action.START, Action.SPLIT):
                self._start_clip(frame.pts_us, decision.trigger)
            elif self._clip is not None:
                for packet in packets:
                    self._clip.write(packet)
            if self._clip is not None:
                self._clip.note_frame(image, motion.score, motion.triggered, motion.boxes)
                self._clip.writer.sync_if_due()
                if pressed:
                    self._presses_wall_us.append(self._to_wall(frame.pts_us))
        except OSError as exc:
            self._handle_write_error(exc)
        if self.live is not None:
            self.live.maybe_publish(image, time.monotonic())
        self._account(frame)
        self._run_retention()

    # -- settings that change while recording ----------------------------------------------------

    def check_settings(self) -> None:
        """After each frame: at the watcher's pace (once a second), apply what changed in
        config.toml, recipients.txt and the motion tuner's file."""
        if self.watcher is None:
            return
        reload = self.watcher.poll()
        if reload is None:
            return
        if reload.settings is not None and self.apply_settings(reload.settings):
            self._applied_sha256["config_sha256"] = self.watcher.config_sha256
        if reload.recipients is not None:
            self.apply_recipients(reload.recipients)
            self._applied_sha256["recipients_sha256"] = self.watcher.recipients_sha256
        if self.tuner is not None:
            self.tuner.poll(self.settings)
        if self._status_due and self._pipeline_size is None:
            self._status_due = False  # no frames flowing (camera lost): say so now
            self._publish_status(force=True)

    def apply_settings(self, new: Settings) -> bool:
        """Put `new` in force from the next frame on; True if it is.

        False if a section changed that only a restart applies: `restart_sections` names it,
        and run() seals the open clip and returns.
        """
        changed = [section.name for section in dataclasses.fields(new)
                   if getattr(new, section.name) != getattr(self.settings, section.name)]
        restart = [name for name in changed if name not in LIVE_SECTIONS]
        if "viewer" in restart and \
                new.viewer.allowed_networks == self.settings.viewer.allowed_networks:
            restart.remove("viewer")  # the recorder uses only the networks from [viewer]
        if restart:
            log.warning("%s settings changed: restarting the recorder to apply them",
                        ", ".join(restart))
            self.restart_sections = restart
            return False
        old, self.settings = self.settings, new
        if "privacy" in changed:
            self._masks_changed()
        if "motion" in changed:
            self._detector = MotionDetector(new.motion)
        if "recording" in changed:
            self._recording_changed(old)
        if "live" in changed and self.live is not None:
            self.live = LiveFramePublisher(self.live.path, new.live.fps, new.live.width,
                                           new.live.jpeg_quality)
        if "retention" in changed:
            self._run_retention(force=True)
        if changed:
            log.info("settings applied without a restart: %s", ", ".join(changed))
        self._status_due = True
        return True

    def apply_recipients(self, recipients: Sequence) -> None:
        """Encrypt the next clip to `recipients`; the open clip keeps the keys it began with."""
        self.store.set_recipients(recipients)
        log.info("recipients.txt changed: new clips are encrypted to %d keys", len(recipients))
        self._status_due = True

    def _masks_changed(self) -> None:
        """New privacy masks, burnt into the very next frame. No packet encoded under the old
        masks may start a later clip: the pre-roll ring starts again at a forced keyframe."""
        self._detector.reset()  # the newly blacked-out area would look like motion
        if self.tuner is not None:
            self.tuner.reset()
        if self._mask is None:
            return  # no frame yet: the pipeline is built from the settings in force
        self._mask = PrivacyMask(self.settings.privacy.masks, self._mask.width,
                                 self._mask.height)
        self._ring.clear()
        self._encoder.force_keyframe()
        if self.live is not None:
            self.live.publish_next()

    def _recording_changed(self, old: Settings) -> None:
        """Post-roll, lengths and pre-roll at once; the encoder between clips."""
        self._machine.settings = self.settings.recording
        if self._ring is not None:
            self._ring.duration_us = self._ring_duration_us()
        self._encoder_stale = any(getattr(self.settings.recording, name) !=
                                  getattr(old.recording, name) for name in self.ENCODER_SETTINGS)

    def _ring_duration_us(self) -> int:
        recording = self.settings.recording
        return round((recording.pre_roll_s + recording.keyframe_interval_s) * _US)

    def _rebuild_encoder(self) -> None:
        """An encoder with the recording settings in force. The ring restarts with its first
        keyframe: a clip never mixes packets of two encoders."""
        recording = self.settings.recording
        width, height = self._pipeline_size
        self._encoder = H264Encoder(width, height, self._fps, recording.preset, recording.crf,
                                    recording.keyframe_interval_s)
        self._encoder_stale = False
        if self._ring is not None:
            self._ring.clear()

    def _settings_visible(self, pts_us: int) -> bool:
        """Does the frame at `pts_us` show the settings in force (its mask)? Always, here."""
        return True

    # -- clips ------------------------------------------------------------------------------------

    def _start_clip(self, pts_us: int, trigger: str) -> None:
        # A new event reaches back by the pre-roll; a continuation (split) starts at the last
        # keyframe, overlapping the clip it continues by less than one keyframe interval.
        pre_roll_s = 0.0 if trigger == "continued" else self.settings.recording.pre_roll_s
        pre_roll_us = round(pre_roll_s * _US)
        packets = self._ring.since(pts_us - pre_roll_us)
        wall_start_us = self._to_wall(packets[0].pts_us if packets else pts_us)
        writer = self.store.begin_clip(wall_start_us, self.settings.recording.fsync_interval_s)
        width, height = self._pipeline_size
        self._clip = ActiveClip(writer, width, height, self._fps, wall_start_us,
                                self.settings.camera.name)
        if packets:
            self._machine.anchor_start(packets[0].pts_us)  # max_clip_s counts the pre-roll too
        self._clip_trigger = trigger
        self._presses_wall_us = []
        for packet in packets:
            self._clip.write(packet)
        log.info("clip %s started (%s)", writer.clip_id, trigger)

    def close_clip(self) -> None:
        """Seal the open clip, if any, and go idle (shutdown, camera lost)."""
        self._machine.stop()
        self._track_activity()
        self._seal_clip()

    def _seal_clip(self) -> None:
        self._track_activity()  # motion_ended (after a stop) goes out before clip_saved
        clip, self._clip = self._clip, None
        if clip is None:
            return
        trigger = self._clip_trigger
        if self._presses_wall_us and trigger != "doorbell":
            trigger = "doorbell"
        try:
            indexed = clip.finish(trigger, self._presses_wall_us)
        except OSError as exc:
            clip.abandon()
            self._handle_write_error(exc)
            return
        self.stats.clips += 1
        log.info("clip %s saved (%s, %d bytes)", indexed.id, trigger, indexed.size_bytes)

    def _handle_write_error(self, exc: OSError) -> None:
        """A full disk (or another write failure) never stops recording: prune and go on."""
        if self._clip is not None:
            self._clip.abandon()
            self._clip = None
            self._machine.stop()
        reconcile(self.store.clips_dir, self.store.index)  # keep the interrupted clip's prefix
        if exc.errno == errno.ENOSPC:
            log.error("the disk is full: pruning the oldest clips and continuing")
            self._emit("disk_low", reason="disk full")
            self._run_retention(force=True)
        else:
            log.error("writing the clip failed (%s): it is kept up to where it was written", exc)

    # -- helpers ----------------------------------------------------------------------------------

    def _ensure_pipeline(self, frame: Frame) -> None:
        size = (frame.width - frame.width % 2, frame.height - frame.height % 2)
        if self._pipeline_size == size:
            return
        self._pipeline_size = size
        self._ring = PacketRing(self._ring_duration_us())
        self._rebuild_encoder()
        self._mask = PrivacyMask(self.settings.privacy.masks, frame.width, frame.height)
        self._detector = MotionDetector(self.settings.motion)
        if self._origin is None:
            self._origin = (frame.pts_us, self._wall_clock_us())

    def _reset_pipeline(self) -> None:
        """After a reconnect timestamps restart: begin a fresh timeline and encoder."""
        self._pipeline_size = None
        self._origin = None

    def _to_wall(self, pts_us: int) -> int:
        pts0, wall0 = self._origin
        return wall0 + (pts_us - pts0)

    def _account(self, frame: Frame) -> None:
        now = time.monotonic()
        self.stats.frames += 1
        self.stats.last_frame_wall_s = time.time()
        self._rate_window.append(now)
        while self._rate_window and now - self._rate_window[0] > 5.0:
            self._rate_window.pop(0)
        if len(self._rate_window) > 1:
            span = self._rate_window[-1] - self._rate_window[0]
            self.stats.fps = (len(self._rate_window) - 1) / span if span > 0 else 0.0
        # After a change, the status goes out with the first frame showing it (its live frame
        # published first), so "applied" in the viewer is what the live view shows.
        due = self._status_due and self._settings_visible(frame.pts_us)
        self._status_due = self._status_due and not due
        self._publish_status(force=due)
        self._track_activity()

    def _emit(self, kind: str, **fields) -> None:
        if self.events is not None:
            self.events.emit(kind, **fields)  # queues and returns: never blocks, never raises

    def _track_activity(self) -> None:
        """motion_started when the state machine leaves idle, motion_ended when it returns."""
        active = self._machine.state is not State.IDLE
        if active != self._active:
            self._active = active
            if active:
                self._emit("motion_started", trigger=self._machine.clip_trigger)
            else:
                self._emit("motion_ended")

    def _camera_state(self, state: str, message: str) -> None:
        previous, self.stats.camera = self.stats.camera, state
        if state != previous and "lost" in (state, previous):
            self._emit("camera_lost" if state == "lost" else "camera_back", message=message)
        (log.warning if state == "lost" else log.info)("%s", message)
        self._publish_status(force=True)

    def _publish_status(self, force: bool = False, state: str | None = None) -> None:
        if self.status is None:
            return
        now = time.monotonic()
        if not force and now - self._last_status_s < 1.0:
            return
        self._last_status_s = now
        self.status.publish({
            "state": state or self._machine.state.value,
            "camera": self.stats.camera,
            "frames": self.stats.frames,
            "fps": round(self.stats.fps, 2),
            "clips_saved": self.stats.clips,
            "last_frame_time": self.stats.last_frame_wall_s,
            "recording": self._clip.clip_id if self._clip else None,
            "updated": time.time(),
            **self._applied_sha256,  # config_sha256, recipients_sha256: what is in force
        })

    def _run_retention(self, force: bool = False) -> None:
        now_us = self._wall_clock_us()
        if not force and self._last_retention_us is not None and \
                now_us - self._last_retention_us < self._retention_interval_us:
            return
        self._last_retention_us = now_us
        pruned = enforce_retention(self.store, self.settings.retention, now_us=now_us)
        min_free = self.settings.retention.min_free_bytes
        if self.events is not None and min_free and \
                (free := disk_free_bytes(self.store.clips_dir)) < min_free:
            self._emit("disk_low", reason="free space below retention.min_free_bytes",
                       free_bytes=free, min_free_bytes=min_free)
        if pruned:
            log.info("retention deleted %d clip(s)", len(pruned))
            if self.audit is not None:
                self.audit.append("recorder", "retention",
                                  deleted=[p.clip_id for p in pruned],
                                  reasons=sorted({p.reason for p in pruned}),
                                  freed_bytes=sum(p.size_bytes for p in pruned))
