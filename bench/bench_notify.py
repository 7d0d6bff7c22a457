"""Doorbell notification latency benchmark; prints one JSON object (progress on stderr).

    .venv/bin/python bench/bench_notify.py [--presses 50] [--protocol 3.1.1|5] [--fps 15]

From a button press to the MQTT message at a subscriber, through everything a real press goes
through:

    gpiozero MockFactory pin driven low -> camera.presses.GpioDoorbell (debounced, counted on
    gpiozero's thread) -> the Recorder's capture loop (synthetic camera at --fps in real time,
    640x360, H.264, encrypted clips) notices it at its next frame -> EventBus.emit ->
    the MQTT worker -> paho -> a local Mosquitto (started here on a free 127.0.0.1 port) ->
    a paho subscriber on <prefix>/doorbell.

Reported: median and p99 (inclusive interpolation) of press -> subscriber, and its two parts,
press -> emit (waiting for the next frame: up to one frame interval) and emit -> subscriber
(the bus, paho, the broker). Presses are spaced 150-400 ms apart at random so they land at
every phase of the frame clock. No timed assertions: this reports.
"""

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

BUTTON_PIN = 17
PREFIX = "bench-doorbell"


def log(message: str) -> None:
    print(f"[bench_notify] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_mosquitto(directory: Path) -> tuple[subprocess.Popen, int, str]:
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None)
    if binary is None:
        sys.exit("bench_notify: Debian's mosquitto is not installed (apt-get install mosquitto)")
    port = free_port()
    config = directory / "mosquitto.conf"
    stay = "user root\n" if os.geteuid() == 0 else ""
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                      f"{stay}")
    version = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False)
    version_line = (version.stdout or version.stderr).splitlines()[0].strip()
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port, version_line
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("bench_notify: mosquitto did not start")


def summary(values_ms: list[float]) -> dict:
    if not values_ms:
        return {}
    quantiles = statistics.quantiles(values_ms, n=100, method="inclusive") \
        if len(values_ms) > 1 else values_ms * 99
    return {
        "median": round(statistics.median(values_ms), 2),
        "p99": round(quantiles[98], 2),
        "mean": round(statistics.fmean(values_ms), 2),
        "min": round(min(values_ms), 2),
        "max": round(max(values_ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=50)
    parser.add_argument("--protocol", choices=("3.1.1", "5"), default="3.1.1")
    parser.add_argument("--fps", type=int, default=15)
    args = parser.parse_args()

    import paho.mqtt.client as mqtt
    from gpiozero.pins.mock import MockFactory
    from paho.mqtt.enums import CallbackAPIVersion

    from doorbell.camera.notify import build_event_bus
    from doorbell.camera.presses import GpioDoorbell
    from doorbell.camera.recorder import Recorder
    from doorbell.camera.software import SoftwarePipeline
    from doorbell.camera.synthetic import SyntheticScene
    from doorbell.config import Settings
    from doorbell.storage.age.identities import X25519Identity
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex

    load_at_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    broker, port, broker_version = start_mosquitto(work)
    log(f"{broker_version} on 127.0.0.1:{port}")
    settings = Settings.from_toml_text(f"""
[camera]
width = 640
height = 360
fps = {args.fps}
[retention]
min_free_bytes = 0
[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
protocol = "{args.protocol}"
topic_prefix = "{PREFIX}"
""")
    received: dict[int, float] = {}
    cond = threading.Condition()
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(client, userdata, message):
        now = time.time()
        with cond:
            received[len(received)] = now
            cond.notify_all()

    subscribed = threading.Event()
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *a: subscribed.set()
    subscriber.connect("127.0.0.1", port)
    subscriber.loop_start()
    subscriber.subscribe(f"{PREFIX}/+/doorbell", qos=1)  # <prefix>/<device id>/doorbell
    subscribed.wait(5)

    factory = MockFactory()
    doorbell = GpioDoorbell(BUTTON_PIN, None, debounce_s=0.02, pin_factory=factory)
    pin = factory.pin(BUTTON_PIN)
    run_dir = work / "run"
    run_dir.mkdir()
    bus = build_event_bus(settings, run_dir)
    emitted: list[float] = []
    real_emit = bus.emit

    def emit(kind, **kwargs):
        event = real_emit(kind, **kwargs)
        if kind == "doorbell_pressed" and event is not None:
            emitted.append(event.time)
        return event

    bus.emit = emit
    press_ms, emit_ms, transport_ms = [], [], []
    lost = 0
    stop = threading.Event()
    made: dict = {}

    def record() -> None:  # SQLite: the index is used on the thread that opened it
        (work / "clips").mkdir(exist_ok=True)  # as `doorbell init` leaves it
        with ClipIndex(work / "index.sqlite3") as index:
            store = ClipStore(work / "clips", index, [X25519Identity.generate().recipient])
            made["recorder"] = Recorder(settings, store, None, doorbell, None, None, events=bus)
            scene = SyntheticScene(640, 360, args.fps, realtime=True, script=[])
            made["recorder"].run(
                lambda in_force: SoftwarePipeline(scene, in_force, "the synthetic scene"), stop)

    with bus:
        thread = threading.Thread(target=record, daemon=True)
        thread.start()
        if not bus.sinks[1].connected.wait(10):
            sys.exit("bench_notify: the recorder's MQTT sink did not connect")
        time.sleep(1.5)  # the pipeline is warm
        if not thread.is_alive():
            sys.exit("bench_notify: the recorder stopped")
        rng = random.Random(6)
        log(f"{args.presses} presses at {args.fps} fps, MQTT {args.protocol}")
        for n in range(args.presses):
            with cond:
                before = len(received)
            pressed_at = time.time()
            pin.drive_low()
            with cond:
                cond.wait_for(lambda before=before: len(received) > before, timeout=2.0)
                arrived = received.get(before)
            pin.drive_high()
            if arrived is None or len(emitted) <= n - lost:
                lost += 1
                log(f"press {n}: no message within 2 s")
            else:
                emitted_at = emitted[n - lost]
                press_ms.append((arrived - pressed_at) * 1000)
                emit_ms.append((emitted_at - pressed_at) * 1000)
                transport_ms.append((arrived - emitted_at) * 1000)
            time.sleep(rng.uniform(0.15, 0.4))
        stop.set()
        thread.join(30)
        frames = made["recorder"].stats.frames
        stats = bus.stats()
    doorbell.close()
    subscriber.disconnect()
    subscriber.loop_stop()
    broker.terminate()
    broker.wait(10)
    shutil.rmtree(work, ignore_errors=True)

    print(json.dumps({
        "benchmark": "bench_notify",
        "what": "mock-pin button press -> GpioDoorbell -> Recorder frame loop -> EventBus -> "
                "paho -> Mosquitto -> subscriber on <prefix>/doorbell",
        "presses": args.presses,
        "received": len(press_ms),
        "lost": lost,
        "press_to_subscriber_ms": summary(press_ms),
        "press_to_emit_ms": summary(emit_ms),
        "emit_to_subscriber_ms": summary(transport_ms),
        "frame_interval_ms": round(1000 / args.fps, 1),
        "frames_processed": frames,
        "mqtt": {"protocol": args.protocol, "qos": 1, "broker": broker_version,
                 "queue_stats": stats.get("mqtt")},
        "target_ms": 500,
        "load_average_1m_at_start": round(load_at_start, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
