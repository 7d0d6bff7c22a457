"""A Mosquitto broker of the test's own (Debian's `mosquitto`, on a free port), a subscriber
that records what it receives, and the MQTT sink on an event bus, for the MQTT tests
(tests/camera/test_mqtt.py, tests/camera/test_ha_switches.py).

`running_broker(tmp_path)` makes a module's `broker` fixture; mark the module `needs_mosquitto`.
"""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from doorbell.camera.events import EventBus
from doorbell.config import Settings
from tests.helpers import free_port

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None)
needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None,
    reason="Debian's mosquitto broker is not installed (apt-get install -y mosquitto; "
           "deploy/dev-setup.sh does it)")

DEVICE = "0123456789ab"  # the device id the tests give the sink (a home gives a random one)


class Broker:
    def __init__(self, directory: Path, extra: str = ""):
        self.directory = directory
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        # As root, mosquitto would switch to the `mosquitto` user, who cannot read this test's
        # private temporary directory (password file, certificate): stay as we are.
        stay = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(f"listener {self.port} 127.0.0.1\npersistence false\n{stay}"
                               f"{extra or 'allow_anonymous true'}\n")
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Broker":
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def running_broker(directory: Path):
    """For a test module's `broker` fixture: `yield from running_broker(tmp_path)`."""
    made = Broker(directory).start()
    try:
        yield made
    finally:
        made.stop()


class Subscriber:
    """Collects (receive time, topic, payload, retain) of everything under `topics`."""

    def __init__(self, port: int, topics=("#",), protocol: str = "3.1.1"):
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.cond = threading.Condition()
        version = MQTTProtocolVersion.MQTTv5 if protocol == "5" else MQTTProtocolVersion.MQTTv311
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=version)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        assert subscribed.wait(5), "the subscription was not acknowledged"

    def _on_message(self, client, userdata, message) -> None:
        with self.cond:
            self.messages.append((time.time(), message.topic, message.payload, message.retain))
            self.cond.notify_all()

    def wait_for(self, predicate, timeout_s: float = 5.0):
        """The first message with predicate(topic, payload) true, waiting up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for message in self.messages:
                    if predicate(message[1], message[2]):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def on(self, topic: str) -> list[tuple[float, str, bytes, bool]]:
        with self.cond:
            return [m for m in self.messages if m[1] == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_settings(port: int, prefix: str = "doorbell-test", **mqtt) -> Settings:
    lines = [f"{k} = {json.dumps(v)}" for k, v in
             {"enabled": True, "host": "127.0.0.1", "port": port, "topic_prefix": prefix, **mqtt}
             .items()]
    return Settings.from_toml_text("[mqtt]\n" + "\n".join(lines) + "\n", "test.toml")


def mqtt_bus(settings: Settings, queue_size: int = 64, **sink_kwargs) -> EventBus:
    from doorbell.camera.notify.mqtt import MqttSink

    sink_kwargs.setdefault("device_id", DEVICE)
    sink = MqttSink(settings, "127.0.0.1", reconnect_delay_s=(1, 1), **sink_kwargs)
    return EventBus([sink], queue_size=queue_size, images=settings.mqtt.snapshot_images)


def connected(bus: EventBus, timeout_s: float = 5.0) -> bool:
    return bus.sinks[0].connected.wait(timeout_s)
