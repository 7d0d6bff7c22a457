"""Home Assistant's privacy mode and mute chime switches, against a real Mosquitto.

Home Assistant's side is a paho client publishing "ON" / "OFF" on the command topics, as Home
Assistant does when someone flips the switch; the doorbell side is the real MQTT sink, the real
Recorder over the synthetic scene, and the audit log in the home. A switch is flipped at a
chosen moment of the recording: the source runs the flip before handing over that frame and
waits until the state topic echoes it (the echo goes out only once the change is in force).

 * Privacy mode: the open clip is sealed at once, no clip is cut while it is on (presses still
   ring, without a picture), live.jpg is gone and stays gone, the status says so; when it is
   off, recording resumes and no pre-roll from before reaches back into it. Every change is in
   the audit log, and a restarted recorder keeps it.
 * Mute chime: the chime pin stays low while muted, the press still goes out.
 * Refusals: a change that cannot be audited is not made; bad payloads and retained commands
   change nothing; a damaged switches.json reads as off.
"""

import json
import logging
import time
from collections.abc import Callable

import pytest

from doorbell.camera.notify.switches import Switches
from doorbell.storage.audit import AuditLog
from tests.camera.mqtt_broker import (
    DEVICE,
    Subscriber,
    connected,
    mqtt_bus,
    mqtt_settings,
    needs_mosquitto,
    running_broker,
)
from tests.recorder_home import ORIGIN_US

pytestmark = needs_mosquitto

TEST = f"doorbell-test/{DEVICE}"
S = 1_000_000  # microseconds in a second
RECORDING = "[recording]\npre_roll_s = 2.0\npost_roll_s = 2.0\n"


@pytest.fixture
def broker(tmp_path):
    yield from running_broker(tmp_path)


class HomeAssistant(Subscriber):
    """Home Assistant's end: watches every topic of the doorbell and flips its switches."""

    prefix = TEST  # <topic_prefix>/<device id>

    def flip(self, name: str, payload: str, timeout_s: float = 5.0) -> None:
        """Send `payload` to the switch and wait for the state topic to echo it."""
        state = f"{self.prefix}/{name}"
        before = len(self.on(state))
        self.client.publish(f"{state}/set", payload, qos=1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            echoed = self.on(state)[before:]
            if echoed:
                assert echoed[0][2] == payload.encode(), f"{name} echoed {echoed[0][2]!r}"
                return
            time.sleep(0.01)
        pytest.fail(f"the state topic {state} never echoed {payload}")


class Timeline:
    """The synthetic scene, running `actions[pts_us]()` just before the frame at pts_us."""

    def __init__(self, scene, actions: dict[int, Callable[[], None]]):
        self.scene = scene
        self.pending = sorted(actions.items())

    def frames(self):
        for frame in self.scene.frames():
            while self.pending and self.pending[0][0] <= frame.pts_us:
                self.pending.pop(0)[1]()
            yield frame

    def close(self) -> None:
        self.scene.close()


def scene(duration_s: float):
    from doorbell.camera.synthetic import SyntheticScene

    return SyntheticScene(640, 360, 15, duration_s=duration_s, script=[])


def switches_of(home) -> Switches:
    return Switches.in_home(home.root, AuditLog(home.root / "audit.jsonl"))


def audited(home, action: str) -> list[tuple[str, dict]]:
    log = AuditLog(home.root / "audit.jsonl")
    assert log.verify().ok
    return [(e.actor, e.details) for e in log.entries() if e.action == action]


def recorder_state(home) -> str:
    return json.loads((home.run_dir / "recorder.json").read_text())["state"]


def test_privacy_mode_stops_clips_and_live_view_and_recording_resumes_after(broker, home):
    from doorbell.camera.presses import ScriptedPresses

    home.configure(RECORDING)
    live = home.run_dir / "live.jpg"
    seen: dict[str, object] = {}
    ha = HomeAssistant(broker.port, [f"{TEST}/#"])
    switches = switches_of(home)

    def look(when: str) -> None:
        seen[when] = (live.exists(), recorder_state(home))

    try:
        with mqtt_bus(mqtt_settings(broker.port, snapshot_images=True),
                      switches=switches) as bus:
            assert connected(bus)
            timeline = Timeline(scene(12.0), {
                int(2.5 * S): lambda: look("before"),
                3 * S: lambda: ha.flip("privacy_mode", "ON"),
                5 * S: lambda: look("during"),
                6 * S: lambda: ha.flip("privacy_mode", "OFF"),
                8 * S: lambda: look("after"),
            })
            presses = ScriptedPresses([1 * S, int(3.5 * S), int(6.5 * S)])
            recorder = home.record(timeline, presses, events=bus, switches=switches)
        assert ha.wait_for(lambda t, _p: t == f"{TEST}/last_clip" and b"doorbell" in _p, 5)

        # The live view: there before, gone while private (not merely stale), back after.
        assert seen["before"][0] and seen["before"][1] != "privacy mode"
        assert seen["during"] == (False, "privacy mode")
        assert seen["after"][0] and seen["after"][1] != "privacy mode"

        # Clips: the one open at the switch is sealed then; none while it is on; the next one
        # begins after it, although its pre-roll (2 s before the press at 6.5 s) reaches back.
        clips = home.clips()
        assert [c.trigger for c in clips] == ["doorbell", "doorbell"], clips
        first, second = clips
        assert first.start_us <= ORIGIN_US + 1 * S
        assert first.end_us <= ORIGIN_US + 3 * S + S // 15 + 1000  # at most the frame it came
        assert second.start_us >= ORIGIN_US + 6 * S
        assert second.end_us >= ORIGIN_US + int(8.4 * S)  # the press's post-roll: recording
        assert recorder.stats.clips == 2

        # The press while private still rang Home Assistant, with no picture: the two
        # snapshots at the other rings and the two clips' thumbnails are all there is.
        assert len(ha.on(f"{TEST}/doorbell")) == 3
        assert len(ha.on(f"{TEST}/snapshot")) == 4
        kinds = [json.loads(m[2])["type"] for m in ha.on(f"{TEST}/event")]
        assert kinds.count("doorbell_pressed") == 3 and kinds.count("clip_saved") == 2

        # Echoed on the state topic, audited, and kept in the home.
        assert [m[2] for m in ha.on(f"{TEST}/privacy_mode")] == [b"OFF", b"ON", b"OFF"]
        # MQTT does not say who published: the audit names the way it came (the broker).
        via = {"topic": f"{TEST}/privacy_mode/set"}
        assert audited(home, "privacy_mode") == [("mqtt:127.0.0.1", {"on": True} | via),
                                                 ("mqtt:127.0.0.1", {"on": False} | via)]
        assert json.loads((home.root / "switches.json").read_text()) == \
            {"mute_chime": False, "privacy_mode": False}
    finally:
        ha.close()
    late = Subscriber(broker.port, [f"{TEST}/privacy_mode"])
    try:  # retained: Home Assistant restarting sees the switch as it is
        message = late.wait_for(lambda t, _p: True)
        assert message[2] == b"OFF" and message[3]
    finally:
        late.close()


def test_privacy_mode_survives_a_recorder_restart(broker, home):
    from doorbell.camera.presses import ScriptedPresses

    home.configure(RECORDING)
    settings = mqtt_settings(broker.port)
    ha = HomeAssistant(broker.port, [f"{TEST}/#"])
    try:
        switches = switches_of(home)
        with mqtt_bus(settings, switches=switches) as bus:
            assert connected(bus)
            timeline = Timeline(scene(4.0), {S // 2: lambda: ha.flip("privacy_mode", "ON")})
            home.record(timeline, ScriptedPresses([2 * S]), events=bus, switches=switches)
        assert home.index_rows() == []
    finally:
        ha.close()

    # A new recorder process: the switch is read back from the home, and said again.
    restarted = switches_of(home)
    assert restarted.privacy_mode is True
    seen = {}
    ha = HomeAssistant(broker.port, [f"{TEST}/#"])
    try:
        with mqtt_bus(settings, switches=restarted) as bus:
            assert connected(bus)
            assert ha.wait_for(lambda t, p: t == f"{TEST}/privacy_mode" and p == b"ON")
            timeline = Timeline(scene(6.0), {
                2 * S: lambda: seen.update(state=recorder_state(home),
                                           live=(home.run_dir / "live.jpg").exists()),
                3 * S: lambda: ha.flip("privacy_mode", "OFF"),
            })
            home.record(timeline, ScriptedPresses([1 * S, 4 * S]), events=bus,
                        switches=restarted)
        assert seen == {"state": "privacy mode", "live": False}
        (clip,) = home.clips()  # the press at 4 s; none for the one at 1 s
        assert clip.start_us >= ORIGIN_US + 3 * S
        assert [d["on"] for _a, d in audited(home, "privacy_mode")] == [True, False]
    finally:
        ha.close()


def test_mute_chime_keeps_the_chime_quiet_but_the_press_still_goes_out(broker, home):
    mock = pytest.importorskip("gpiozero.pins.mock", reason="gpiozero is not installed")
    from doorbell.camera.presses import GpioDoorbell

    factory = mock.MockFactory()
    button_pin, chime_pin = 17, 27
    switches = switches_of(home)
    ha = HomeAssistant(broker.port, [f"{TEST}/#"])
    rang: list[bool] = []

    def press() -> None:
        """Press and release the button; whether the chime went high within 0.5 s."""
        chime = factory.pin(chime_pin)
        start = len(chime.states)
        factory.pin(button_pin).drive_low()
        time.sleep(0.1)
        factory.pin(button_pin).drive_high()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not any(s.state for s in chime.states[start:]):
            time.sleep(0.01)
        rang.append(any(s.state for s in chime.states[start:]))
        time.sleep(0.4)  # the chime's 0.3 s are over before the next press

    doorbell = GpioDoorbell(button_pin, chime_pin, debounce_s=0.01, chime_s=0.3,
                            pin_factory=factory, switches=switches)
    try:
        with mqtt_bus(mqtt_settings(broker.port), switches=switches) as bus:
            assert connected(bus)
            timeline = Timeline(scene(6.0), {
                S // 2: press,
                1 * S: lambda: ha.flip("mute_chime", "ON"),
                2 * S: press,
                3 * S: lambda: ha.flip("mute_chime", "OFF"),
                4 * S: press,
            })
            home.record(timeline, doorbell, events=bus, switches=switches)
            assert ha.wait_for(lambda _t, _p: len(ha.on(f"{TEST}/doorbell")) == 3, 5)
        assert rang == [True, False, True]
        rings = [json.loads(m[2])["event_type"] for m in ha.on(f"{TEST}/doorbell")]
        assert rings == ["ring"] * 3  # the muted press rang Home Assistant all the same
        assert len(home.clips()) >= 1 and all(c.trigger == "doorbell" for c in home.clips())
        assert [m[2] for m in ha.on(f"{TEST}/mute_chime")] == [b"OFF", b"ON", b"OFF"]
        assert [d["on"] for _a, d in audited(home, "mute_chime")] == [True, False]
    finally:
        ha.close()
        doorbell.close()
        factory.reset()


def test_a_change_that_cannot_be_audited_is_not_made(broker, home, caplog):
    caplog.set_level(logging.ERROR, logger="doorbell.mqtt")
    audit = AuditLog(home.root / "audit.jsonl")
    audit.append("alice", "unlock", address="192.168.1.20")
    path = home.root / "audit.jsonl"
    path.write_bytes(path.read_bytes().replace(b"192.168.1.20", b"192.168.1.21"))  # edited
    switches = switches_of(home)
    ha = HomeAssistant(broker.port, [f"{TEST}/#"])
    try:
        with mqtt_bus(mqtt_settings(broker.port), switches=switches) as bus:
            assert connected(bus)
            assert ha.wait_for(lambda t, p: t == f"{TEST}/privacy_mode" and p == b"OFF")
            ha.client.publish(f"{TEST}/privacy_mode/set", "ON", qos=1)
            assert ha.wait_for(lambda _t, _p: len(ha.on(f"{TEST}/privacy_mode")) == 2)
        # Home Assistant's switch flips back: the state in force is still off.
        assert [m[2] for m in ha.on(f"{TEST}/privacy_mode")] == [b"OFF", b"OFF"]
        assert switches.privacy_mode is False
        assert json.loads((home.root / "switches.json").read_text())["privacy_mode"] is False
        assert "privacy_mode stays off: the change cannot be audited" in caplog.text
    finally:
        ha.close()


def test_bad_payloads_and_retained_commands_change_nothing(broker, home, caplog):
    caplog.set_level(logging.WARNING, logger="doorbell.mqtt")
    switches = switches_of(home)
    # A retained ON left on the broker (mosquitto_pub -r): it must not switch privacy mode on
    # at every reconnect long after someone turned it off.
    setter = Subscriber(broker.port, [f"{TEST}/privacy_mode/set"])
    setter.client.publish(f"{TEST}/privacy_mode/set", "ON", qos=1, retain=True).wait_for_publish(5)
    setter.close()
    ha = HomeAssistant(broker.port, [f"{TEST}/#"])
    try:
        with mqtt_bus(mqtt_settings(broker.port), switches=switches) as bus:
            assert connected(bus)
            assert ha.wait_for(lambda t, p: t == f"{TEST}/mute_chime" and p == b"OFF")
            for payload in ("on", "1", "TOGGLE", ""):
                ha.client.publish(f"{TEST}/mute_chime/set", payload, qos=1)
            assert ha.wait_for(lambda _t, _p: len(ha.on(f"{TEST}/mute_chime")) == 5)
        assert switches.state() == {"privacy_mode": False, "mute_chime": False}
        assert all(m[2] == b"OFF" for m in ha.on(f"{TEST}/mute_chime"))
        assert "ignored a retained privacy_mode command" in caplog.text
        assert "ignored the mute_chime command 'TOGGLE': it takes ON or OFF" in caplog.text
        assert audited(home, "privacy_mode") == [] and audited(home, "mute_chime") == []
    finally:
        ha.close()


def test_a_damaged_switches_file_reads_as_off_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="doorbell.mqtt")
    for text in ('{"privacy_mode": "yes", "mute_chime": false}', "not json", "[]",
                 '{"privacy_mode": true}'):
        (tmp_path / "switches.json").write_text(text)
        assert Switches.in_home(tmp_path, None).state() == \
            {"privacy_mode": False, "mute_chime": False}
    assert caplog.text.count("does not hold the switches") == 4
    (tmp_path / "switches.json").write_text('{"privacy_mode": true, "mute_chime": true}')
    assert Switches.in_home(tmp_path, None).state() == {"privacy_mode": True, "mute_chime": True}
    with pytest.raises(ValueError, match="there is no switch called 'camera'"):
        Switches.in_home(tmp_path, None).set("camera", True, "test")


def test_doorbell_record_obeys_the_switches_and_keeps_them_across_a_restart(broker, home):
    """The command as systemd runs it (real time, the synthetic scene's visitors), wired up by
    `doorbell record` itself: discovery, privacy mode on, a restart, privacy mode off."""
    import signal

    home.configure(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
                   'switches = true\n')
    live, status = home.run_dir / "live.jpg", home.run_dir / "recorder.json"

    def until(condition, timeout_s: float, what: str, log) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"{what} within {timeout_s} s\n{log.read_text()}")
            time.sleep(0.05)

    def state() -> str | None:
        try:
            return json.loads(status.read_text())["state"]
        except (OSError, ValueError):
            return None

    def clip_files() -> set[str]:
        return {p.name for p in home.clips_dir.rglob("*.mp4.age*")}

    ha = Subscriber(broker.port, ["doorbell/#", "homeassistant/switch/#"])
    process, log = home.start("record", "--source", "synthetic")
    try:
        until(lambda: (home.root / "device-id").exists(), 30, "no device id", log)
        device_id = (home.root / "device-id").read_text().strip()
        topic = f"doorbell/{device_id}/privacy_mode"
        until(lambda: ha.on(f"homeassistant/switch/doorbell_{device_id}/privacy_mode/config"),
              30, "no privacy mode switch discovered", log)
        until(lambda: live.exists(), 30, "no live frame", log)
        ha.client.publish(f"{topic}/set", "ON", qos=1)
        until(lambda: [m[2] for m in ha.on(topic)][-1:] == [b"ON"], 10, "no ON echo", log)
        until(lambda: state() == "privacy mode" and not live.exists(), 5, "not private", log)
        before = clip_files()
        time.sleep(4)  # the synthetic visitors keep coming
        assert not live.exists() and clip_files() == before
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()

        again, again_log = home.start("record", "--source", "synthetic", log_name="again.log")
        until(lambda: "camera open" in again_log.read_text(), 30, "no restart", again_log)
        until(lambda: state() == "privacy mode", 5, "privacy mode forgotten", again_log)
        time.sleep(2)
        assert not live.exists() and clip_files() == before
        ha.client.publish(f"{topic}/set", "OFF", qos=1)
        until(lambda: live.exists(), 10, "no live frame after privacy mode", again_log)
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0, again_log.read_text()
        assert "privacy_mode is on (set from Home Assistant, kept in" in again_log.read_text()
        assert [d["on"] for _a, d in audited(home, "privacy_mode")] == [True, False]
    finally:
        ha.close()


def test_without_mqtt_switches_the_command_topic_stops_nothing(broker, home):
    """The default (mqtt.switches = false): `doorbell record` offers no switch, and a client
    publishing ON to the privacy mode command topic (the device id is public in discovery)
    leaves the recording and the live view as they are."""
    import signal

    home.configure(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n')
    live, status = home.run_dir / "live.jpg", home.run_dir / "recorder.json"
    ha = Subscriber(broker.port, ["doorbell/#", "homeassistant/#"])
    process, log = home.start("record", "--source", "synthetic")
    try:
        deadline = time.monotonic() + 30
        while not (live.exists() and (home.root / "device-id").exists()
                   and ha.on(f"doorbell/{(home.root / 'device-id').read_text().strip()}"
                             "/availability")):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        device_id = (home.root / "device-id").read_text().strip()
        switch_configs = [m for m in ha.messages if m[1].startswith("homeassistant/switch/")]
        assert switch_configs and all(m[2] == b"" for m in switch_configs)  # removed, not offered
        ha.client.publish(f"doorbell/{device_id}/privacy_mode/set", "ON", qos=1).wait_for_publish(5)
        frame_before = live.stat().st_mtime_ns
        time.sleep(2)
        assert live.exists() and live.stat().st_mtime_ns != frame_before  # still live
        assert json.loads(status.read_text())["state"] != "privacy mode"
        assert not ha.on(f"doorbell/{device_id}/privacy_mode")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
        assert audited(home, "privacy_mode") == []
        assert not (home.root / "switches.json").exists()
    finally:
        if process.poll() is None:
            process.kill()
        ha.close()


def readme_acl() -> str:
    """The Mosquitto ACL the README gives (the fenced block starting with its file name)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("```\n# /etc/mosquitto/doorbell.acl\n") + 4
    return readme[start:readme.index("```", start)]


class BrokerUser(HomeAssistant):
    """A client logged in to the broker as `user` (Subscriber's, with a user name)."""

    def __init__(self, port: int, user: str, topics=(), prefix: str = TEST):
        import threading

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.prefix = prefix
        self.messages = []
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-test")
        self.client.username_pw_set(user, f"{user}-password")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if topics:
            self.client.subscribe([(t, 1) for t in topics])
            assert subscribed.wait(5), "the subscription was not acknowledged"


def test_with_the_readmes_acl_only_home_assistant_can_switch_and_each_change_is_announced(
        home, tmp_path):
    import subprocess

    from doorbell.camera.events import EVENTS_FILE
    from doorbell.camera.notify import build_event_bus
    from tests.camera.mqtt_broker import Broker

    passwords = tmp_path / "passwd"
    for user in ("doorbell", "homeassistant", "zigbee2mqtt"):  # the last: another broker client
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if user == "doorbell" else []),
                        str(passwords), user, f"{user}-password"], check=True, timeout=30)
    acl = tmp_path / "doorbell.acl"
    acl.write_text(readme_acl())
    broker = Broker(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n"
                              f"acl_file {acl}").start()
    secret = tmp_path / "doorbell-password"
    secret.write_text("doorbell-password\n")
    settings = mqtt_settings(broker.port, prefix="doorbell", switches=True, username="doorbell",
                             password_file=str(secret))
    switches = switches_of(home)
    home.run_dir.mkdir(parents=True, exist_ok=True)  # as `doorbell record` prepares it
    ha = BrokerUser(broker.port, "homeassistant", ["doorbell/#"])
    intruder = BrokerUser(broker.port, "zigbee2mqtt")
    try:
        with build_event_bus(settings, home.run_dir, home.root, switches=switches) as bus:
            assert bus.sinks[1].connected.wait(5), broker.log.read_text()  # [0]: events.jsonl
            device_id = (home.root / "device-id").read_text().strip()
            topic = f"doorbell/{device_id}/privacy_mode"
            assert ha.wait_for(lambda t, p: t == topic and p == b"OFF")
            assert ha.wait_for(lambda t, p: t == f"doorbell/{device_id}/mute_chime")
            # Another client on the broker, knowing the id from discovery: the broker drops
            # its command (MQTT 3.1.1 still acknowledges it), the doorbell never sees it.
            intruder.client.publish(f"{topic}/set", "ON", qos=1).wait_for_publish(5)
            ha.prefix = f"doorbell/{device_id}"
            ha.flip("mute_chime", "ON")  # after the intruder's, in order
            assert switches.privacy_mode is False
            assert [m[2] for m in ha.on(topic)] == [b"OFF"]
            # Home Assistant's user may: on, then off, each audited with the way it came.
            ha.flip("privacy_mode", "ON")
            assert switches.privacy_mode is True
            ha.flip("privacy_mode", "OFF")
            assert ha.wait_for(lambda t, p: t == f"doorbell/{device_id}/event"
                               and b'"privacy_mode"' in p and b'"on": false' in p)
        assert [(a, d["on"]) for a, d in audited(home, "privacy_mode")] == \
            [("mqtt:127.0.0.1", True), ("mqtt:127.0.0.1", False)]
        # Announced: the viewer's live events (events.jsonl) and MQTT's event topic.
        lines = [json.loads(line) for line in
                 (home.run_dir / EVENTS_FILE).read_text().splitlines()]
        assert [e["on"] for e in lines if e["type"] == "privacy_mode"] == [True, False]
        published = [json.loads(m[2]) for m in ha.on(f"doorbell/{device_id}/event")]
        assert [e["on"] for e in published if e["type"] == "privacy_mode"] == [True, False]
        assert not any(e["type"] == "mute_chime" for e in lines)  # the chime is not announced
    finally:
        ha.close()
        intruder.close()
        broker.stop()
