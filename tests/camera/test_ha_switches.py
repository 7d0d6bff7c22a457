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

    def flip(self, name: str, payload: str, timeout_s: float = 5.0) -> None:
        """Send `payload` to the switch and wait for the state topic to echo it."""
        state = f"{TEST}/{name}"
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
        assert audited(home, "privacy_mode") == [("home-assistant", {"on": True}),
                                                 ("home-assistant", {"on": False})]
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
        assert [d for _a, d in audited(home, "privacy_mode")] == [{"on": True}, {"on": False}]
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
        assert [d for _a, d in audited(home, "mute_chime")] == [{"on": True}, {"on": False}]
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
        Switches.in_home(tmp_path, None).set("camera", True)


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
        assert [d for _a, d in audited(home, "privacy_mode")] == [{"on": True}, {"on": False}]
    finally:
        ha.close()
