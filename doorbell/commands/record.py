"""`doorbell record [--home DIR] [--source SPEC] [--until-eof]`: the write-only recorder."""

import logging
import signal
import threading

from camera.live import LiveFramePublisher, StatusPublisher, prepare_runtime_dir
from camera.notify import build_event_bus
from camera.recorder import Recorder
from camera.sources import plan_source
from config import load_settings
from storage.audit import AuditLog
from storage.clipwriter import ClipStore
from storage.home import Home
from storage.index import ClipIndex
from storage.recipients import read_recipients
from storage.reconcile import reconcile

from ..errors import CommandError
from ..guard import forbid_identity_access

log = logging.getLogger("doorbell.recorder")


def build_presses(settings, plan):
    button = settings.doorbell.button_pin
    if button is None:
        return plan.presses
    from camera.presses import GpioDoorbell

    return GpioDoorbell(button, settings.doorbell.chime_pin, settings.doorbell.debounce_s,
                        settings.doorbell.chime_s)


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    home = Home.resolve(args.home)
    if not home.is_initialised():
        raise CommandError(f"{home.root} is not initialised: run 'doorbell init' first")
    forbid_identity_access(home.identities_dir)
    settings = load_settings(home.root)
    spec = args.source or settings.camera.source
    try:
        plan = plan_source(spec, settings, until_eof=args.until_eof)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    recipients = read_recipients(home.recipients_file)
    prepare_runtime_dir(home.run_dir)
    # Notifications (events.jsonl for the viewer, MQTT, ntfy): targets resolved and checked
    # to be on the home network now, or a ConfigError naming the key.
    events = build_event_bus(settings, home.run_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with ClipIndex(home.index_file) as index, events:  # events: started, closed at the end
        for line in reconcile(home.clips_dir, index).lines():
            log.warning("%s", line)
        store = ClipStore(home.clips_dir, index, recipients)
        # picamera2 brings its own recorder (hardware encoder, its circular buffer).
        recorder_class = getattr(plan, "recorder_class", Recorder)
        recorder = recorder_class(
            settings, store, AuditLog(home.audit_file), build_presses(settings, plan),
            LiveFramePublisher(home.live_frame_file, settings.live.fps, settings.live.width,
                               settings.live.jpeg_quality),
            StatusPublisher(home.recorder_status_file),
            events=events,
        )
        log.info("recording from %s to %s (%d recipient keys)", plan.description,
                 home.clips_dir, len(recipients))
        recorder.run(plan.open, stop, until_eof=args.until_eof)
        recorder.presses.close()
    log.info("stopped: %d clip(s) saved, %d frames", recorder.stats.clips, recorder.stats.frames)
    return 0
