"""MQTT against a real Mosquitto (Debian's `mosquitto`), started by each test on a free port.

 * Home Assistant discovery payloads, checked field by field against the keys HA documents for
   MQTT event, binary_sensor, sensor, image and switch entities (MQTT 3.1.1 and 5). What the
   switches do: tests/camera/test_ha_switches.py.
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
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doorbell.camera.notify.discovery import load_device_id
from doorbell.config import Settings
from tests.camera.mqtt_broker import (
    DEVICE,
    Broker,
    Subscriber,
    connected,
    mqtt_bus,
    mqtt_settings,
    needs_mosquitto,
    running_broker,
)

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = needs_mosquitto


@pytest.fixture
def broker(tmp_path):
    yield from running_broker(tmp_path)


# -- Home Assistant's documented MQTT discovery keys -------------------------------------------
# From home-assistant.io/integrations/{event,binary_sensor,sensor,image,switch}.mqtt and
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
    "switch": ENTITY_COMMON | {
        "command_template", "command_topic", "device_class", "optimistic", "payload_off",
        "payload_on", "retain", "state_off", "state_on", "state_topic", "value_template"},
}
REQUIRED = {
    "event": {"state_topic", "event_types"},
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "image": {"image_topic"},  # or url_topic
    "switch": {"command_topic"},
}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer",
               "model", "model_id", "name", "serial_number", "suggested_area", "sw_version",
               "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
EVENT_DEVICE_CLASSES = {"button", "doorbell", "motion"}
SWITCH_DEVICE_CLASSES = {"outlet", "switch"}
BINARY_SENSOR_CLASSES = {"connectivity", "motion", "problem"}  # the ones used, all documented
DATA_SIZE_UNITS = {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB",
                   "YB", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"}
ENTITY_CATEGORIES = {"config", "diagnostic"}

TEST = f"doorbell-test/{DEVICE}"  # the state topics: <topic_prefix>/<device id>/...
NODE = f"doorbell_{DEVICE}"
ENTITIES = [("event", "doorbell"), ("binary_sensor", "motion"), ("binary_sensor", "camera"),
            ("binary_sensor", "disk_low"), ("sensor", "disk_free"), ("sensor", "last_clip"),
            ("image", "snapshot"), ("switch", "privacy_mode"), ("switch", "mute_chime")]


# -- discovery ------------------------------------------------------------------------------------


def check_entity(component: str, config: dict, settings: Settings,
                 device_id: str = DEVICE) -> None:
    prefix = f"{settings.mqtt.topic_prefix}/{device_id}"
    assert set(config) <= DOCUMENTED[component], set(config) - DOCUMENTED[component]
    assert REQUIRED[component] <= set(config)
    assert isinstance(config["name"], str) and config["name"]
    assert config["unique_id"].startswith(f"doorbell_{device_id}_")
    assert config["availability_topic"] == f"{prefix}/availability"
    assert (config["payload_available"], config["payload_not_available"]) == \
        ("online", "offline")
    device = config["device"]
    assert set(device) <= DEVICE_KEYS
    assert device["identifiers"] == [f"doorbell_{device_id}"]
    assert device["name"] == settings.camera.name
    assert device["manufacturer"] and device["model"] and device["sw_version"]
    assert set(config["origin"]) <= ORIGIN_KEYS and config["origin"]["name"]
    assert config.get("qos", 0) in (0, 1, 2)
    assert config.get("entity_category", "diagnostic") in ENTITY_CATEGORIES
    if component == "binary_sensor":
        assert config["device_class"] in BINARY_SENSOR_CLASSES
    if component == "switch":
        assert config["device_class"] in SWITCH_DEVICE_CLASSES
        assert config["command_topic"].startswith(f"{prefix}/")
    for key, value in config.items():
        if key.endswith("_topic"):
            assert "+" not in value and "#" not in value, key


def wait_announced(port: int, availability_topics: list[str]) -> None:
    """Until the broker holds each sink's "online" (published last, after discovery): from then
    on a new subscriber gets every discovery message retained (a broker sends live ones
    unflagged, so subscribing earlier could see a retained message as a live one)."""
    probe = Subscriber(port, availability_topics)
    try:
        for topic in availability_topics:
            assert probe.wait_for(lambda t, p, topic=topic: t == topic and p == b"online")
    finally:
        probe.close()


def retained_configs(subscriber: Subscriber, node: str = NODE) -> dict:
    """{(component, object_id): config} of every entity's retained discovery message."""
    configs = {}
    for component, object_id in ENTITIES:
        topic = f"homeassistant/{component}/{node}/{object_id}/config"
        message = subscriber.wait_for(lambda t, _p, topic=topic: t == topic)
        assert message is not None, f"no retained {topic}"
        assert message[3], f"{topic} is not retained"
        configs[component, object_id] = json.loads(message[2])
    return configs


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_discovery_payloads_are_what_home_assistant_documents(broker, protocol, tmp_path):
    from doorbell.camera.notify.switches import Switches

    settings = mqtt_settings(broker.port, protocol=protocol, snapshot_images=True)
    with mqtt_bus(settings, switches=Switches.in_home(tmp_path, None)) as bus:
        assert connected(bus), broker.log.read_text()
    # Retained: a subscriber that comes afterwards (Home Assistant restarting) gets them all.
    subscriber = Subscriber(broker.port, ["homeassistant/#", f"{TEST}/#"], protocol)
    try:
        configs = retained_configs(subscriber)
        for (component, _object_id), config in configs.items():
            check_entity(component, config, settings)

        event, motion = configs["event", "doorbell"], configs["binary_sensor", "motion"]
        camera, disk_low = configs["binary_sensor", "camera"], configs["binary_sensor", "disk_low"]
        disk_free = configs["sensor", "disk_free"]
        sensor, image = configs["sensor", "last_clip"], configs["image", "snapshot"]
        # Home Assistant requires "ring" of a doorbell event entity (the old form stops in 2027.4).
        assert event["event_types"] == ["ring"]
        assert event["device_class"] in EVENT_DEVICE_CLASSES and event["device_class"] == \
            "doorbell"
        assert event["state_topic"] == f"{TEST}/doorbell"
        assert motion["device_class"] == "motion"
        assert motion["state_topic"] == f"{TEST}/motion"
        assert (motion["payload_on"], motion["payload_off"]) == ("ON", "OFF")
        # connectivity: ON means connected; problem: ON means a problem.
        assert (camera["device_class"], camera["state_topic"]) == ("connectivity", f"{TEST}/camera")
        assert (disk_low["device_class"], disk_low["state_topic"]) == \
            ("problem", f"{TEST}/disk_low")
        for binary in (camera, disk_low):
            assert (binary["payload_on"], binary["payload_off"]) == ("ON", "OFF")
            assert binary["entity_category"] == "diagnostic"
        assert disk_free["device_class"] == "data_size"
        assert disk_free["unit_of_measurement"] in DATA_SIZE_UNITS
        assert disk_free["state_class"] == "measurement"
        assert disk_free["state_topic"] == f"{TEST}/disk_free"
        assert isinstance(disk_free["suggested_display_precision"], int)
        assert sensor["state_topic"] == sensor["json_attributes_topic"] == \
            f"{TEST}/last_clip"
        assert sensor["device_class"] == "timestamp"
        assert sensor["value_template"] == "{{ value_json.start }}"
        assert image["image_topic"] == f"{TEST}/snapshot"
        assert image["content_type"] == "image/jpeg"
        assert "url_topic" not in image  # image_topic and url_topic exclude each other
        for object_id, name in (("privacy_mode", "Privacy mode"), ("mute_chime", "Mute chime")):
            switch = configs["switch", object_id]
            assert switch["name"] == name and switch["unique_id"] == f"{NODE}_{object_id}"
            assert switch["state_topic"] == f"{TEST}/{object_id}"
            assert switch["command_topic"] == f"{TEST}/{object_id}/set"
            assert (switch["payload_on"], switch["payload_off"]) == ("ON", "OFF")
            # The state topic says what is in force; Home Assistant sends commands unretained.
            assert switch["optimistic"] is False and switch["retain"] is False
            assert "entity_category" not in switch  # controls, not configuration
            state = subscriber.wait_for(lambda t, _p, o=object_id: t == f"{TEST}/{o}")
            assert state[2] == b"OFF" and state[3]
        assert len({c["unique_id"] for c in configs.values()}) == len(ENTITIES)
        assert all(c["device"] == event["device"] for c in configs.values())
        # The viewer binds to loopback by default: Home Assistant could not open it, no link.
        assert "configuration_url" not in event["device"]
        # Availability: "online", retained, after the clean stop "offline" (retained too).
        availability = subscriber.wait_for(lambda t, _p: t == f"{TEST}/availability")
        assert availability[2] == b"offline" and availability[3]
        motion_state = subscriber.wait_for(lambda t, _p: t == f"{TEST}/motion")
        assert motion_state[2] == b"OFF" and motion_state[3]
        camera_state = subscriber.wait_for(lambda t, _p: t == f"{TEST}/camera")
        assert camera_state[2] == b"ON" and camera_state[3]
    finally:
        subscriber.close()

    # Snapshots off again: the image entity is removed (an empty retained config); so are the
    # switches of a sink without them.
    with mqtt_bus(mqtt_settings(broker.port, protocol=protocol)) as bus:
        assert connected(bus)
    late = Subscriber(broker.port, ["homeassistant/#"])
    try:
        assert late.wait_for(lambda t, _p: t.startswith("homeassistant/sensor/"))
        assert not [m for m in late.messages if m[1].startswith("homeassistant/image/")]
        assert not [m for m in late.messages if m[1].startswith("homeassistant/switch/")]
    finally:
        late.close()


def test_two_doorbells_with_the_default_prefix_on_one_broker_do_not_collide(broker, tmp_path):
    """Each home makes its own device id: ids, topics and client ids all differ."""
    from doorbell.camera.notify import build_event_bus
    from doorbell.camera.notify.switches import Switches
    from doorbell.storage.audit import AuditLog

    homes = [tmp_path / "front", tmp_path / "back"]
    buses = []
    for home, name in zip(homes, ("Front door", "Back door"), strict=True):
        (home / "clips").mkdir(parents=True)
        toml = (f'[camera]\nname = "{name}"\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\n'
                f'port = {broker.port}\nsnapshot_images = true\n[viewer]\nbind = "0.0.0.0:8443"\n'
                f'hostnames = ["{home.name}.lan"]\n')
        settings = Settings.from_toml_text(toml, "test.toml")
        assert settings.mqtt.topic_prefix == "doorbell"  # the default, for both
        switches = Switches.in_home(home, AuditLog(home / "audit.jsonl"))
        buses.append(build_event_bus(settings, tmp_path / f"run-{home.name}", home,
                                     switches=switches).start())
    try:
        sinks = [bus.sinks[1] for bus in buses]
        assert all(sink.connected.wait(5) for sink in sinks), broker.log.read_text()
        ids = [load_device_id(home) for home in homes]
        assert ids[0] != ids[1] and [s.device_id for s in sinks] == ids
        assert load_device_id(homes[0]) == ids[0]  # kept: the same id on the next start
        wait_announced(broker.port, [f"doorbell/{device_id}/availability" for device_id in ids])
        subscriber = Subscriber(broker.port, ["homeassistant/#", "doorbell/#"])
        try:
            seen = [retained_configs(subscriber, f"doorbell_{device_id}") for device_id in ids]
            unique_ids = [c["unique_id"] for configs in seen for c in configs.values()]
            assert len(set(unique_ids)) == 2 * len(ENTITIES)
            for configs, device_id, home, sink in zip(seen, ids, homes, sinks, strict=True):
                for (component, _o), config in configs.items():
                    check_entity(component, config, sink.settings, device_id)
                device = configs["event", "doorbell"]["device"]
                assert device["configuration_url"] == f"https://{home.name}.lan:8443/"
            assert [s[("event", "doorbell")]["device"]["name"] for s in seen] == \
                ["Front door", "Back door"]
            # Both stay online: neither client id nor availability topic is shared.
            for device_id in ids:
                online = subscriber.wait_for(
                    lambda t, p, d=device_id: t == f"doorbell/{d}/availability" and p == b"online")
                assert online is not None
            buses[0].emit("doorbell_pressed")
            ring = subscriber.wait_for(lambda t, _p: t == f"doorbell/{ids[0]}/doorbell")
            assert ring is not None and json.loads(ring[2])["event_type"] == "ring"
            time.sleep(0.3)
            assert not subscriber.on(f"doorbell/{ids[1]}/doorbell")
            assert subscriber.wait_for(
                lambda t, p: t == f"doorbell/{ids[1]}/availability" and p == b"online")
            assert all(s.connected.is_set() for s in sinks)
            # A switch command reaches its own doorbell only.
            subscriber.client.publish(f"doorbell/{ids[0]}/privacy_mode/set", "ON", qos=1)
            assert subscriber.wait_for(
                lambda t, p: t == f"doorbell/{ids[0]}/privacy_mode" and p == b"ON")
            assert [s.switches.privacy_mode for s in sinks] == [True, False]
            assert [m[2] for m in subscriber.on(f"doorbell/{ids[1]}/privacy_mode")] == [b"OFF"]
        finally:
            subscriber.close()
    finally:
        for bus in buses:
            bus.close()


def test_camera_lost_and_disk_low_reach_home_assistant(broker, tmp_path, monkeypatch):
    from doorbell.camera.notify import mqtt as mqtt_module

    free = {"bytes": 50_000_000_000}
    monkeypatch.setattr(mqtt_module, "disk_free_bytes", lambda _path: free["bytes"])
    settings = Settings.from_toml_text(
        f'[retention]\nmin_free_bytes = 2000000000\n[mqtt]\nenabled = true\n'
        f'host = "127.0.0.1"\nport = {broker.port}\ntopic_prefix = "doorbell-test"\n', "t.toml")
    subscriber = Subscriber(broker.port, [f"{TEST}/#"])
    try:
        with mqtt_bus(settings, disk_path=tmp_path, disk_interval_s=0.2) as bus:
            assert connected(bus)
            assert subscriber.wait_for(lambda t, p: t == f"{TEST}/disk_free" and
                                       p == b"50000000000")
            assert subscriber.wait_for(lambda t, p: t == f"{TEST}/disk_low" and p == b"OFF")
            bus.emit("camera_lost", message="no frame for 5 s")
            assert subscriber.wait_for(lambda t, p: t == f"{TEST}/camera" and p == b"OFF")
            free["bytes"] = 1_500_000_000  # below retention.min_free_bytes
            assert subscriber.wait_for(lambda t, p: t == f"{TEST}/disk_low" and p == b"ON")
            assert subscriber.wait_for(lambda t, p: t == f"{TEST}/disk_free" and
                                       p == b"1500000000")
        # Retained: Home Assistant restarting now sees the camera lost and the disk low.
        late = Subscriber(broker.port, [f"{TEST}/camera", f"{TEST}/disk_low"])
        try:
            assert late.wait_for(lambda t, p: t == f"{TEST}/camera" and p == b"OFF")
            assert late.wait_for(lambda t, p: t == f"{TEST}/disk_low" and p == b"ON")
        finally:
            late.close()
        with mqtt_bus(settings) as bus:
            assert connected(bus)
            bus.emit("camera_back", message="frames again")
            bus.emit("disk_low", reason="disk full", free_bytes=0)
            assert subscriber.wait_for(
                lambda t, p: t == f"{TEST}/disk_free" and p == b"0")
        camera = [m[2] for m in subscriber.on(f"{TEST}/camera")]
        assert camera[-1] == b"ON"
    finally:
        subscriber.close()


def test_the_device_id_is_made_once_and_a_damaged_one_is_one_sentence(tmp_path):
    made = load_device_id(tmp_path)
    assert len(made) == 12 and int(made, 16) >= 0
    assert load_device_id(tmp_path) == made
    assert [p.name for p in tmp_path.iterdir()] == ["device-id"]  # no draft left behind
    (tmp_path / "device-id").write_text("not an id\n")
    with pytest.raises(OSError, match="does not hold a device id"):
        load_device_id(tmp_path)


def test_viewer_url_is_reachable_from_the_lan_or_absent():
    from doorbell.camera.notify.discovery import viewer_url

    def url(viewer: str):
        return viewer_url(Settings.from_toml_text(f"[viewer]\n{viewer}\n", "t.toml"))

    assert url('bind = "127.0.0.1:8080"') is None
    assert url('bind = "192.168.1.20:8443"') == "https://192.168.1.20:8443/"
    assert url('bind = "[fd00::20]:8443"') == "https://[fd00::20]:8443/"
    assert url('bind = "0.0.0.0:8443"\nhostnames = ["door.lan"]') == "https://door.lan:8443/"
    assert url('bind = "0.0.0.0:8443"').endswith(":8443/")
    assert url('bind = "0.0.0.0:8443"').startswith("https://")


def test_state_topics_carry_events_and_the_masked_thumbnail_only_when_enabled(broker):
    subscriber = Subscriber(broker.port, [f"{TEST}/#"])
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
        last = subscriber.wait_for(lambda t, p: t == f"{TEST}/last_clip" and b"True" in p)
        assert last is not None
        body = json.loads(last[2])
        assert body["clip_id"] == "clip-True" and body["trigger"] == "doorbell"
        assert body["duration_s"] == 15.2
        assert datetime.datetime.fromisoformat(body["start"]).utcoffset() is not None
        snapshots = subscriber.on(f"{TEST}/snapshot")
        assert [m[2] for m in snapshots] == [jpeg], "a snapshot went out with images off"
        motion = [m[2] for m in subscriber.on(f"{TEST}/motion")]
        assert b"ON" in motion and motion[-1] == b"OFF"
        events = [json.loads(m[2]) for m in subscriber.on(f"{TEST}/event")]
        assert [e["type"] for e in events] == ["motion_started", "clip_saved", "motion_ended"] * 2
        assert all("image" not in e for e in events)
    finally:
        subscriber.close()
    # Retained state for whoever subscribes later: the last clip, motion OFF; no snapshot.
    late = Subscriber(broker.port, [f"{TEST}/#"])
    try:
        assert late.wait_for(lambda t, p: t == f"{TEST}/last_clip" and b"True" in p)
        assert late.wait_for(lambda t, p: t == f"{TEST}/motion" and p == b"OFF")
        assert all(m[3] for m in late.messages)
        assert not late.on(f"{TEST}/snapshot") and not late.on(f"{TEST}/event")
    finally:
        late.close()


# -- a press through the real recorder ------------------------------------------------------------


def test_a_doorbell_press_through_the_recorder_arrives_within_500_ms(broker, home):
    from doorbell.camera.presses import ScriptedPresses
    from doorbell.camera.synthetic import SyntheticScene

    settings = mqtt_settings(broker.port)
    subscriber = Subscriber(broker.port, [f"{TEST}/#"])
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
        received = [m for m in subscriber.on(f"{TEST}/doorbell")]
        assert subscriber.wait_for(lambda t, _p: t == f"{TEST}/doorbell", 2) and \
            len(subscriber.on(f"{TEST}/doorbell")) == 2
        received = subscriber.on(f"{TEST}/doorbell")
        for event, message in zip(presses, received, strict=True):
            assert json.loads(message[2])["event_type"] == "ring"
            latency_s = message[0] - event.time
            assert 0 <= latency_s < 0.5, f"a press took {latency_s * 1000:.0f} ms"
        kinds = [json.loads(m[2])["type"] for m in subscriber.on(f"{TEST}/event")]
        assert kinds == ["doorbell_pressed", "motion_started", "doorbell_pressed",
                         "motion_ended", "clip_saved"], kinds
        clip = json.loads(subscriber.on(f"{TEST}/last_clip")[-1][2])
        assert clip["trigger"] == "doorbell" and clip["duration_s"] > 1
        assert clip["clip_id"] == home.index_rows()[0].id
        assert recorder.stats.clips == 1
    finally:
        subscriber.close()


def test_a_ring_sends_the_masked_picture_at_once_when_snapshots_are_on(broker, home):
    """Home Assistant shows who is at the door at the ring, not a clip's length later."""
    import cv2
    import numpy as np

    from doorbell.camera.presses import ScriptedPresses
    from doorbell.camera.synthetic import SyntheticScene

    home.configure("[privacy]\nmasks = [[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]]\n")
    subscriber = Subscriber(broker.port, [f"{TEST}/#"])
    try:
        with mqtt_bus(mqtt_settings(broker.port, snapshot_images=True)) as bus:
            assert connected(bus)
            home.record(SyntheticScene(640, 360, 15, duration_s=4.0, script=[]),
                        ScriptedPresses([1_000_000]), events=bus)
        assert subscriber.wait_for(lambda t, _p: t == f"{TEST}/last_clip", 5)
        (ring,) = subscriber.on(f"{TEST}/doorbell")
        ring_picture, clip_thumbnail = subscriber.on(f"{TEST}/snapshot")
        (saved,) = subscriber.on(f"{TEST}/last_clip")
        assert abs(ring_picture[0] - ring[0]) < 0.5 and ring_picture[0] < saved[0]
        for message in (ring_picture, clip_thumbnail):
            image = cv2.imdecode(np.frombuffer(message[2], np.uint8), cv2.IMREAD_COLOR)
            assert image.shape[1] == 480 and not message[3]  # 480 px wide, not retained
            assert image[4:-4, 4:232].max() <= 24  # the masked half is black
            assert image[:, 256:].mean() > 40  # the rest is the scene
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
    subscriber = Subscriber(broker.port, ["killed/+/availability"])
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
    later = Subscriber(broker.port, ["killed/+/availability"])
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
            subscriber = Subscriber(subscriber_broker.port, [f"away/{DEVICE}/event"])
            try:
                assert connected(bus, 10), "did not reconnect"
                deadline = time.monotonic() + 5
                while len(subscriber.on(f"away/{DEVICE}/event")) < queue_size and \
                        time.monotonic() < deadline:
                    time.sleep(0.05)
                delivered = [json.loads(m[2])["id"] for m in subscriber.on(f"away/{DEVICE}/event")]
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
