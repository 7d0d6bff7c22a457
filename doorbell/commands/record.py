"""`doorbell record [--home DIR] [--source SPEC] [--until-eof]`: the write-only recorder.

A home without recipients.txt yet (set-up is finished in the viewer's browser) is waited for:
the recorder tells systemd it is up, keeps its watchdog fed and starts recording as soon as the
household's keys appear. While recording it follows config.toml and recipients.txt (see
camera.reload); a change it cannot apply in place ends the run cleanly, like SIGTERM, and the
command starts itself again with the same arguments (os.execv: under systemd the PID stays).
"""

import logging
import os
import sys
import threading
from collections.abc import Callable

from doorbell.camera.capture import redact_url
from doorbell.camera.live import LiveFramePublisher, StatusPublisher, prepare_runtime_dir
from doorbell.camera.notify import build_event_bus
from doorbell.camera.notify.switches import Switches
from doorbell.camera.recorder import Recorder
from doorbell.camera.reload import SettingsWatcher
from doorbell.camera.sources import plan_source
from doorbell.camera.tuning import MotionTuner
from doorbell.camera.watchdog import SystemdWatchdog
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.errors import AuditLogCorrupt
from doorbell.storage.home import Home
from doorbell.storage.index import ClipIndex

from ..clock_sync import (
    WAIT_UNTIL_UPTIME_S,
    SyncWatcher,
    clock_synchronised,
    uptime_s,
    wait_for_clock_sync,
)
from ..errors import CommandError
from ..guard import forbid_identity_access
from ..log_output import configure_logging
from ..stopping import stop_on_signals

log = logging.getLogger("doorbell.recorder")

SET_UP_POLL_S = 2.0
WAITING_FOR_SET_UP = "waiting for set-up: no household keys yet; finish set-up in the viewer"


def build_presses(settings, plan, switches=None):
    button = settings.doorbell.button_pin
    if button is None:
        return plan.presses
    from doorbell.camera.presses import GpioDoorbell

    return GpioDoorbell(button, settings.doorbell.chime_pin, settings.doorbell.debounce_s,
                        settings.doorbell.chime_s, switches=switches)


def wait_for_set_up(home: Home, stop: threading.Event, watchdog: SystemdWatchdog,
                    poll_s: float = SET_UP_POLL_S) -> bool:
    """Until recipients.txt exists: True then, False if stopped first."""
    if home.is_initialised():
        return True
    log.info("%s", WAITING_FOR_SET_UP)
    watchdog.ready(status=WAITING_FOR_SET_UP)  # up and well: systemd must not restart us
    wait_s = min(poll_s, watchdog.ping_interval_s or poll_s)
    while not home.is_initialised():
        watchdog.ping()
        if stop.wait(wait_s):
            log.info("stopped while waiting for set-up")
            return False
    log.info("the household's keys are there: starting to record")
    return True


WAITING_FOR_CLOCK = "waiting for the clock to be synchronised (NTP) before recording"


def wait_for_clock(audit: AuditLog, stop: threading.Event, watchdog: SystemdWatchdog) -> bool:
    """Shortly after boot, wait (bounded) for NTP. True if recording must start without it
    (follow_clock then marks the clips and watches for NTP). After boot the audit log says
    so, and again once the clock is synchronised: clips started between those two entries
    carry times from an unsynchronised clock, and retention ages them from the second. Long
    after boot (a restart, or a network without a time server) it does not wait, and the
    start is not audited (only a later clock.synchronised)."""
    told_systemd = False

    def keep_alive() -> None:
        nonlocal told_systemd
        if not told_systemd:  # up and well: systemd must not time our start-up out meanwhile
            told_systemd = watchdog.ready(status=WAITING_FOR_CLOCK) or True
        watchdog.ping()

    after_boot = uptime_s() < WAIT_UNTIL_UPTIME_S
    synchronised, waited_s = wait_for_clock_sync(stop, keep_alive)
    if synchronised is not False or stop.is_set():
        return False
    log.warning("the clock is not synchronised (no NTP): recording anyway; clip times may be "
                "wrong until it is")
    if after_boot:
        mark_clock(audit, "clock.unsynchronised", waited_s=round(waited_s, 1))
    return True


def follow_clock(recorder: Recorder, audit: AuditLog, stop: threading.Event,
                 probe: Callable[[], bool | None] = clock_synchronised,
                 poll_s: float = 5.0) -> SyncWatcher:
    """Recording starts before the clock is set: its clips wait for it, and once NTP has set
    it they are kept from then on (camera.upkeep.Retention), and the audit log says so."""
    recorder.retention.clock_unsynchronised()

    def synchronised() -> None:
        recorder.retention.clock_synchronised()
        mark_clock(audit, "clock.synchronised")
        log.info("the clock is synchronised now: clips recorded before are kept from now on")

    return SyncWatcher(stop, synchronised, probe=probe, poll_s=poll_s).start()


def mark_clock(audit: AuditLog, action: str, **details) -> None:
    try:
        audit.append("recorder", action, **details)
    except (AuditLogCorrupt, OSError) as exc:  # a damaged log must not stop the recording
        log.warning("could not write %s to the audit log: %s", action, exc)


def restart_arguments(args) -> list[str]:
    """The `doorbell` arguments this recorder was started with."""
    argv = ["record"]
    if args.home:
        argv += ["--home", args.home]
    if args.source:
        argv += ["--source", args.source]
    if args.until_eof:
        argv.append("--until-eof")
    return argv


def restart(args) -> None:
    """Replace this process by a fresh `doorbell record` (only once everything is closed)."""
    argv = [sys.executable, "-m", "doorbell", *restart_arguments(args)]
    log.info("restarting: %s", " ".join(map(redact_url, argv[2:])))  # no camera password
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and arguments


def run(args) -> int:
    configure_logging()  # journal priorities under systemd, timestamps on a terminal
    home = Home.resolve(args.home)
    if not home.root.is_dir():
        raise CommandError(f"{home.root} does not exist: run 'doorbell init' first")
    forbid_identity_access(home.identities_dir)
    stop = threading.Event()
    stop_on_signals(stop)
    watchdog = SystemdWatchdog()  # a no-op outside systemd
    if not wait_for_set_up(home, stop, watchdog):
        return 0
    watcher = SettingsWatcher(home)  # config.toml and recipients.txt, now and as they change
    settings = watcher.settings
    spec = args.source or settings.camera.source
    try:
        plan = plan_source(spec, settings, until_eof=args.until_eof)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    # After the settings: a broken config.toml is said at once, not after the clock wait.
    clock_unsynchronised = wait_for_clock(AuditLog(home.audit_file), stop, watchdog)
    if stop.is_set():
        return 0
    prepare_runtime_dir(home.run_dir)
    # Notifications (events.jsonl for the viewer, MQTT, ntfy): targets resolved and checked
    # to be on the home network now, or a ConfigError naming the key.
    # Home Assistant's privacy mode and mute chime (mqtt.switches only), read by the recorder
    # and the chime.
    audit = AuditLog(home.audit_file)
    switches = (Switches.in_home(home.root, audit)
                if settings.mqtt.enabled and settings.mqtt.switches else None)
    events = build_event_bus(settings, home.run_dir, home.root, switches=switches)
    # A damaged index is moved aside and rebuilt from the clip files, like a lost one (events:
    # started here, closed at the end).
    with ClipIndex(home.index_file, set_aside_damaged=True) as index, events:
        if index.set_aside is not None:
            log.warning("the clip index was damaged (%s): it is kept as %s and rebuilt from "
                        "the clip files", index.damage, index.set_aside.name)
        store = ClipStore(home.clips_dir, index, watcher.recipients)
        recorder = Recorder(
            settings, store, audit, build_presses(settings, plan, switches),
            LiveFramePublisher(home.live_frame_file, settings.live.fps, settings.live.width,
                               settings.live.jpeg_quality),
            StatusPublisher(home.recorder_status_file),
            events=events, watchdog=watchdog, watcher=watcher, tuner=MotionTuner(home),
            switches=switches,
        )
        if clock_unsynchronised:
            follow_clock(recorder, audit, stop)
        recorder.reconcile_at_start()
        log.info("recording from %s to %s (%d recipient keys)", plan.description,
                 home.clips_dir, len(watcher.recipients))
        recorder.run(plan.open, stop, until_eof=args.until_eof)
        recorder.presses.close()
    log.info("stopped: %d clip(s) saved, %d frames", recorder.stats.clips, recorder.stats.frames)
    if recorder.restart_sections and not stop.is_set():
        restart(args)  # the clip is sealed, the index and the event bus are closed
    return 0
