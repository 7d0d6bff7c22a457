"""MQTT against a real Mosquitto (Debian's `mosquitto`), started by each test on a free port.

 * Home Assistant discovery payloads, checked field by field against the keys HA documents for
   MQTT event, binary_sensor, sensor and image entities (MQTT 3.1.1 and 5).
 * A doorbell press, through the real Recorder, reaches a subscriber within 500 ms.
 * The last will marks the device offline when the publishing process is SIGKILLed.
 * With the broker down, recording goes on (every frame processed, emit() never waits) and the
   bus drops the oldest events by policy, counted and logged; when the broker is back, what was
   kept is delivered in order.
 * Username / password (from a file) and TLS with a CA file.
"""

import datetime
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from doorbell.camera.events import EventBus  # noqa: E402
from doorbell.camera.notify.discovery import node_id  # noqa: E402
from doorbell.config import Settings  # noqa: E402
from tests.helpers import free_port  # noqa: E402

PROJECT = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None)

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None,
    reason="Debian's mosquitto broker is not installed (apt-get install -y mosquitto; "
           "deploy/dev-setup.sh does it)")

# -- Home Assistant's documented MQTT discovery keys -------------------------------------------
# From home-assistant.io/integrations/{event,binary_sensor,sensor,image}.mqtt and
# /integrations/mqtt (device, origin, availability). Only full key names (no abbreviations).

ENTITY_COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon",
    "json_attributes_template", "json_attributes_topic", "name", "object_id",
    "default_entity_id", "payload_available", "payload_not_available", "platform", "origin",
    "qos", "unique_id",
}
DOCUMENTED = {
    "event": ENTITY_COMMON | {"device_class", "event_types", "state_topic", "value_template"},
    "binary_sensor": ENTITY_COMMON | {
        "device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on",
        "state_topic", "value_template"},
    "sensor": ENTITY_COMMON | {
        "device_class", "expire_after", "force_update", "last_reset_value_template",
        "options", "suggested_display_precision", "state_class", "state_topic",
        "unit_of_measurement", "value_template"},
    "image": ENTITY_COMMON | {
        "content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
}
REQUIRED = {
    "event": {"state_topic", "event_types"},
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "image": {"image_topic"},  # or url_topic
}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer",
               "model", "model_id", "name", "serial_number", "suggested_area", "sw_version",
               "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
EVENT_DEVICE_CLASSES = {"button", "doorbell", "motion"}


# -- a broker of our own, and a subscriber --------------------------------------------------------


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


@pytest.fixture
def broker(tmp_path):
    made = Broker(tmp_path).start()
    yield made
    made.stop()


class Subscriber:
    """Collects (receive time, topic, payload, retain) of everything under `topics`."""

    def __init__(self, port: int, topics=("#",), protocol: str = "3.1.1"):
        from paho.mqtt.enums import MQTTProtocolVersion

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

    sink = MqttSink(settings, "127.0.0.1", reconnect_delay_s=(1, 1), **sink_kwargs)
    return EventBus([sink], queue_size=queue_size, images=settings.mqtt.snapshot_images)


def connected(bus: EventBus, timeout_s: float = 5.0) -> bool:
    return bus.sinks[0].connected.wait(timeout_s)


# -- discovery ------------------------------------------------------------------------------------


def check_entity(component: str, config: dict, settings: Settings) -> None:
    prefix = settings.mqtt.topic_prefix
    assert set(config) <= DOCUMENTED[component], set(config) - DOCUMENTED[component]
    assert REQUIRED[component] <= set(config)
    assert isinstance(config["name"], str) and config["name"]
    assert config["unique_id"].startswith(f"doorbell_{node_id(prefix)}_")
    assert config["availability_topic"] == f"{prefix}/availability"
    assert (config["payload_available"], config["payload_not_available"]) == \
        ("online", "offline")
    device = config["device"]
    assert set(device) <= DEVICE_KEYS
    assert device["identifiers"] == [f"doorbell_{node_id(prefix)}"]
    assert device["name"] == settings.camera.name
    assert device["manufacturer"] and device["model"] and device["sw_version"]
    assert set(config["origin"]) <= ORIGIN_KEYS and config["origin"]["name"]
    assert config.get("qos", 0) in (0, 1, 2)
    for key, value in config.items():
        if key.endswith("_topic"):
            assert "+" not in value and "#" not in value, key


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_discovery_payloads_are_what_home_assistant_documents(broker, protocol):
    settings = mqtt_settings(broker.port, protocol=protocol, snapshot_images=True)
    with mqtt_bus(settings) as bus:
        assert connected(bus), broker.log.read_text()
    # Retained: a subscriber that comes afterwards (Home Assistant restarting) gets them all.
    subscriber = Subscriber(broker.port, ["homeassistant/#", "doorbell-test/#"], protocol)
    try:
        node = node_id("doorbell-test")
        configs = {}
        for component, object_id in [("event", "doorbell"), ("binary_sensor", "motion"),
                                     ("sensor", "last_clip"), ("image", "snapshot")]:
            topic = f"homeassistant/{component}/{node}/{object_id}/config"
            message = subscriber.wait_for(lambda t, _p, topic=topic: t == topic)
            assert message is not None, f"no retained {topic}"
            assert message[3], f"{topic} is not retained"
            configs[component] = json.loads(message[2])
            check_entity(component, configs[component], settings)

        event, motion = configs["event"], configs["binary_sensor"]
        sensor, image = configs["sensor"], configs["image"]
        assert event["event_types"] == ["press"]
        assert event["device_class"] in EVENT_DEVICE_CLASSES and event["device_class"] == \
            "doorbell"
        assert event["state_topic"] == "doorbell-test/doorbell"
        assert motion["device_class"] == "motion"
        assert motion["state_topic"] == "doorbell-test/motion"
        assert (motion["payload_on"], motion["payload_off"]) == ("ON", "OFF")
        assert sensor["state_topic"] == sensor["json_attributes_topic"] == \
            "doorbell-test/last_clip"
        assert sensor["device_class"] == "timestamp"
        assert sensor["value_template"] == "{{ value_json.start }}"
        assert image["image_topic"] == "doorbell-test/snapshot"
        assert image["content_type"] == "image/jpeg"
        assert "url_topic" not in image  # image_topic and url_topic exclude each other
        assert len({c["unique_id"] for c in configs.values()}) == 4
        assert all(c["device"] == event["device"] for c in configs.values())
        # Availability: "online", retained, after the clean stop "offline" (retained too).
        availability = subscriber.wait_for(lambda t, _p: t == "doorbell-test/availability")
        assert availability[2] == b"offline" and availability[3]
        motion_state = subscriber.wait_for(lambda t, _p: t == "doorbell-test/motion")
        assert motion_state[2] == b"OFF" and motion_state[3]
    finally:
        subscriber.close()

    # Snapshots off again: the image entity is removed (an empty retained config).
    with mqtt_bus(mqtt_settings(broker.port, protocol=protocol)) as bus:
        assert connected(bus)
    late = Subscriber(broker.port, ["homeassistant/#"])
    try:
        assert late.wait_for(lambda t, _p: t.startswith("homeassistant/sensor/"))
        assert not [m for m in late.messages if m[1].startswith("homeassistant/image/")]
    finally:
        late.close()


def test_state_topics_carry_events_and_the_masked_thumbnail_only_when_enabled(broker):
    subscriber = Subscriber(broker.port, ["doorbell-test/#"])
    jpeg = b"\xff\xd8\xff\xe0 pretend thumbnail \xff\xd9"
    metadata = {"trigger": "doorbell", "duration_s": 15.2, "start_us": 1_714_564_800_000_000}
    try:
        for images in (False, True):
            settings = mqtt_settings(broker.port, snapshot_images=images)
            with mqtt_bus(settings) as bus:
                assert connected(bus)
                bus.emit("motion_started", trigger="doorbell")
                bus.clip_saved(f"clip-{images}", metadata, jpeg)
                bus.emit("motion_ended")
        last = subscriber.wait_for(lambda t, p: t == "doorbell-test/last_clip" and b"True" in p)
        assert last is not None
        body = json.loads(last[2])
        assert body["clip_id"] == "clip-True" and body["trigger"] == "doorbell"
        assert body["duration_s"] == 15.2
        assert datetime.datetime.fromisoformat(body["start"]).utcoffset() is not None
        snapshots = subscriber.on("doorbell-test/snapshot")
        assert [m[2] for m in snapshots] == [jpeg], "a snapshot went out with images off"
        motion = [m[2] for m in subscriber.on("doorbell-test/motion")]
        assert b"ON" in motion and motion[-1] == b"OFF"
        events = [json.loads(m[2]) for m in subscriber.on("doorbell-test/event")]
        assert [e["type"] for e in events] == ["motion_started", "clip_saved", "motion_ended"] * 2
        assert all("image" not in e for e in events)
    finally:
        subscriber.close()
    # Retained state for whoever subscribes later: the last clip, motion OFF; no snapshot.
    late = Subscriber(broker.port, ["doorbell-test/#"])
    try:
        assert late.wait_for(lambda t, p: t == "doorbell-test/last_clip" and b"True" in p)
        assert late.wait_for(lambda t, p: t == "doorbell-test/motion" and p == b"OFF")
        assert all(m[3] for m in late.messages)
        assert not late.on("doorbell-test/snapshot") and not late.on("doorbell-test/event")
    finally:
        late.close()


# -- a press through the real recorder ------------------------------------------------------------


def test_a_doorbell_press_through_the_recorder_arrives_within_500_ms(broker, home):
    from doorbell.camera.presses import ScriptedPresses
    from doorbell.camera.synthetic import SyntheticScene

    settings = mqtt_settings(broker.port)
    subscriber = Subscriber(broker.port, ["doorbell-test/#"])
    bus = mqtt_bus(settings)
    emitted = []
    real_emit = bus.emit

    def emit(kind, **kwargs):
        event = real_emit(kind, **kwargs)
        emitted.append(event)
        return event

    bus.emit = emit
    try:
        with bus:
            assert connected(bus)
            scene = SyntheticScene(640, 360, 15, duration_s=4.0, script=[])
            recorder = home.record(scene, ScriptedPresses([1_000_000, 2_000_000]), events=bus)
        presses = [e for e in emitted if e and e.type == "doorbell_pressed"]
        assert len(presses) == 2
        received = [m for m in subscriber.on("doorbell-test/doorbell")]
        assert subscriber.wait_for(lambda t, _p: t == "doorbell-test/doorbell", 2) and \
            len(subscriber.on("doorbell-test/doorbell")) == 2
        received = subscriber.on("doorbell-test/doorbell")
        for event, message in zip(presses, received, strict=True):
            assert json.loads(message[2])["event_type"] == "press"
            latency_s = message[0] - event.time
            assert 0 <= latency_s < 0.5, f"a press took {latency_s * 1000:.0f} ms"
        kinds = [json.loads(m[2])["type"] for m in subscriber.on("doorbell-test/event")]
        assert kinds == ["doorbell_pressed", "motion_started", "doorbell_pressed",
                         "motion_ended", "clip_saved"], kinds
        clip = json.loads(subscriber.on("doorbell-test/last_clip")[-1][2])
        assert clip["trigger"] == "doorbell" and clip["duration_s"] > 1
        assert clip["clip_id"] == home.index_rows()[0].id
        assert recorder.stats.clips == 1
    finally:
        subscriber.close()


# -- the last will ---------------------------------------------------------------------------------

PUBLISHER = """
import sys, time
from doorbell.camera.notify.mqtt import MqttSink
from doorbell.camera.events import EventBus
from doorbell.config import Settings
settings = Settings.from_toml_text(sys.argv[1])
bus = EventBus([MqttSink(settings, "127.0.0.1")]).start()
assert bus.sinks[0].connected.wait(10)
print("connected", flush=True)
time.sleep(60)
"""


def test_the_last_will_marks_the_device_offline_when_the_recorder_is_killed(broker):
    toml = (f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
            f'topic_prefix = "killed"\n')
    subscriber = Subscriber(broker.port, ["killed/availability"])
    process = subprocess.Popen([sys.executable, "-c", PUBLISHER, toml], cwd=PROJECT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "connected", process.stderr.read()
        assert subscriber.wait_for(lambda _t, p: p == b"online"), "never online"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        started = time.monotonic()
        offline = subscriber.wait_for(lambda _t, p: p == b"offline", timeout_s=5)
        assert offline is not None, "the broker did not publish the last will"
        assert time.monotonic() - started < 5
    finally:
        subscriber.close()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
    # Retained: Home Assistant starting later sees the device offline too.
    later = Subscriber(broker.port, ["killed/availability"])
    try:
        message = later.wait_for(lambda _t, _p: True)
        assert message[2] == b"offline" and message[3]
    finally:
        later.close()


# -- the broker away: recording goes on, events are dropped by policy, then delivered --------------


def test_recording_goes_on_while_the_broker_is_down_and_catches_up(tmp_path, home, caplog):
    from doorbell.camera.presses import ScriptedPresses
    from doorbell.camera.synthetic import SyntheticScene

    caplog.set_level(logging.INFO, logger="doorbell.events")
    down = Broker(tmp_path)  # its port is chosen, nothing listens there yet
    settings = mqtt_settings(down.port, prefix="away")
    queue_size = 8
    bus = mqtt_bus(settings, queue_size=queue_size)
    waits = []
    real_emit = bus.emit

    def timed_emit(kind, **kwargs):
        started = time.perf_counter()
        event = real_emit(kind, **kwargs)
        waits.append(time.perf_counter() - started)
        return event

    bus.emit = timed_emit

    def record(events=None):
        scene = SyntheticScene(640, 360, 15, duration_s=6.0, script=[])
        presses = ScriptedPresses([i * 300_000 for i in range(1, 19)])  # 18 presses in 5.4 s
        return home.record(scene, presses, events=events).stats.frames

    baseline = record()  # the same recording without a notifier
    with bus:
        assert record(bus) == baseline == 90  # every frame went through the pipeline
        assert not connected(bus, 0)
        emitted = len(waits)
        assert emitted == 18 + 3  # the presses, motion started and ended, the clip
        # Counted, not timed: no emit() waited for the network (a blocked one waits seconds).
        assert max(waits) < 0.1, f"emit() waited {max(waits) * 1000:.0f} ms"
        stats = bus.stats()["mqtt"]
        assert stats["delivered"] == 0
        assert stats["queued"] == queue_size
        assert stats["dropped"] == emitted - queue_size
        assert "mqtt is not keeping up" in caplog.text and "dropped the oldest" in caplog.text
        kept = bus.pending("mqtt")  # the newest `queue_size` events, in order
        assert [e.id for e in kept] == [f"{bus.run}-{n}" for n in range(emitted - 7, emitted + 1)]

        subscriber_broker = down.start()
        try:
            subscriber = Subscriber(subscriber_broker.port, ["away/event"])
            try:
                assert connected(bus, 10), "did not reconnect"
                deadline = time.monotonic() + 5
                while len(subscriber.on("away/event")) < queue_size and \
                        time.monotonic() < deadline:
                    time.sleep(0.05)
                delivered = [json.loads(m[2])["id"] for m in subscriber.on("away/event")]
                assert delivered == [e.id for e in kept]
                assert bus.stats()["mqtt"]["delivered"] == queue_size
                assert "mqtt is delivering again" in caplog.text
            finally:
                subscriber.close()
        finally:
            bus.close()
            down.stop()


# -- credentials and TLS ---------------------------------------------------------------------------


def test_username_and_password_from_a_file(tmp_path, caplog):
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed")
    users = tmp_path / "users"
    subprocess.run([passwd, "-b", "-c", str(users), "doorbell", "s3cret-broker"], check=True,
                   capture_output=True)
    users.chmod(0o644)
    broker = Broker(tmp_path, f"allow_anonymous false\npassword_file {users}").start()
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("s3cret-broker\n")
    bad.write_text("wrong\n")
    try:
        with mqtt_bus(mqtt_settings(broker.port, username="doorbell",
                                    password_file=str(good))) as bus:
            assert connected(bus), broker.log.read_text()
        caplog.set_level(logging.ERROR, logger="doorbell.mqtt")
        with mqtt_bus(mqtt_settings(broker.port, username="doorbell",
                                    password_file=str(bad))) as bus:
            assert not connected(bus, 2)
        assert "refused the connection" in caplog.text
    finally:
        broker.stop()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (its own CA)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "broker.pem", directory / "broker.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    for path in (cert_path, key_path):
        path.chmod(0o644)
    return cert_path, key_path


def test_tls_with_a_ca_file(tmp_path, caplog):
    cert, key = make_certificate(tmp_path)
    broker = Broker(tmp_path, f"allow_anonymous true\ncertfile {cert}\nkeyfile {key}").start()
    try:
        settings = mqtt_settings(broker.port, host="localhost", tls=True, ca_file=str(cert),
                                 protocol="5")
        with mqtt_bus(settings) as bus:
            assert bus.sinks[0].connect_host == "localhost"  # by name: the certificate's
            assert connected(bus), broker.log.read_text()
        # Without the CA the broker's certificate is not trusted: no connection.
        caplog.set_level(logging.WARNING)
        with mqtt_bus(mqtt_settings(broker.port, host="localhost", tls=True)) as bus:
            assert not connected(bus, 2)
    finally:
        broker.stop()
