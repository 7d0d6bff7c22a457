"""[mqtt] and [ntfy]: validation, and LAN only (a public target is refused naming the key).

No real DNS for public names: IP literals (never contacted) and a monkeypatched getaddrinfo.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doorbell.camera.events import EventLogFile
from doorbell.camera.notify import build_event_bus, resolve_target
from doorbell.config import ConfigError, Settings

PROJECT = Path(__file__).resolve().parents[2]


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        Settings.from_toml_text(textwrap.dedent(text), source="config.toml")
    return caught.value


def fake_dns(answers: dict[str, list[str]]):
    def getaddrinfo(host, port, type=0, *args):  # noqa: A002 - socket's own name
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in answers[host]]
    return getaddrinfo


def test_defaults_are_off_and_documented_values():
    settings = Settings.defaults()
    mqtt, ntfy = settings.mqtt, settings.ntfy
    assert not mqtt.enabled and not ntfy.enabled
    assert (mqtt.host, mqtt.port, mqtt.tls, mqtt.protocol) == (None, 1883, False, "3.1.1")
    assert (mqtt.topic_prefix, mqtt.discovery_prefix) == ("doorbell", "homeassistant")
    assert mqtt.snapshot_images is False and mqtt.allow_public_targets is False
    assert ntfy.url is None and ntfy.topic == "doorbell" and ntfy.click_url is None
    assert "doorbell_pressed" in ntfy.events and "motion_ended" not in ntfy.events


def test_a_lan_broker_and_ntfy_server_load():
    settings = Settings.from_toml_text(textwrap.dedent("""
        [mqtt]
        enabled = true
        host = "192.168.1.10"
        protocol = "5"
        username = "doorbell"
        password_file = "/etc/doorbell/mqtt-password"
        tls = true
        ca_file = "/etc/doorbell/ca.pem"
        port = 8883

        [ntfy]
        enabled = true
        url = "http://[fd12:3456::7]:8080"
        click_url = "https://doorbell.local:8443/"
    """))
    assert settings.mqtt.protocol == "5" and settings.mqtt.port == 8883
    assert settings.ntfy.host == "fd12:3456::7"


@pytest.mark.parametrize(("section", "key", "value", "address"), [
    ("mqtt", "host", "8.8.8.8", "8.8.8.8"),
    ("mqtt", "host", "2001:4860:4860::8888", "2001:4860:4860::8888"),
    ("ntfy", "url", "https://93.184.216.34/", "93.184.216.34"),
    ("ntfy", "url", "http://[2606:4700::1111]:80", "2606:4700::1111"),
])
def test_a_public_address_is_refused_at_load_naming_the_key(section, key, value, address):
    error = error_for(f"""
        [{section}]
        enabled = true
        {key} = "{value}"
    """)
    assert error.key == f"{section}.{key}"
    assert str(error).startswith(f"config.toml line 4: {section}.{key} points at {address}, "
                                 f"outside the home network")
    assert f"{section}.allow_public_targets = true" in str(error)


def test_allow_public_targets_is_the_explicit_way_out():
    settings = Settings.from_toml_text(textwrap.dedent("""
        [mqtt]
        enabled = true
        host = "8.8.8.8"
        allow_public_targets = true
    """))
    assert settings.mqtt.host == "8.8.8.8"
    # A disabled section is not checked: nothing is ever sent there.
    assert Settings.from_toml_text('[mqtt]\nhost = "8.8.8.8"\n').mqtt.host == "8.8.8.8"


def test_the_home_network_is_the_viewers_allowed_networks():
    error = error_for("""
        [viewer]
        allowed_networks = ["192.168.1.0/24"]
        [mqtt]
        enabled = true
        host = "10.0.0.5"
    """)
    assert error.key == "mqtt.host" and "10.0.0.5" in str(error)
    assert "192.168.1.0/24" in str(error)


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ("[mqtt]\nenabled = true\n", "mqtt.enabled", "needs mqtt.host"),
    ('[mqtt]\nca_file = "/ca.pem"\n', "mqtt.ca_file", "mqtt.tls is false"),
    ('[mqtt]\npassword_file = "/pw"\n', "mqtt.password_file", "without mqtt.username"),
    ('[mqtt]\nprotocol = "3.1"\n', "mqtt.protocol", 'one of "3.1.1", "5"'),
    ('[mqtt]\ntopic_prefix = "doorbell/#"\n', "mqtt.topic_prefix", "no +, #"),
    ('[mqtt]\ndiscovery_prefix = "/homeassistant"\n', "mqtt.discovery_prefix", "empty levels"),
    ('[mqtt]\nhost = "mqtt://broker"\n', "mqtt.host", "without scheme or port"),
    ("[mqtt]\nport = 0\n", "mqtt.port", "between 1 and 65535"),
    ('[mqtt]\nsnapshot_images = "yes"\n', "mqtt.snapshot_images", "true or false"),
    ("[ntfy]\nenabled = true\n", "ntfy.enabled", "needs ntfy.url"),
    ('[ntfy]\nurl = "ntfy.lan"\n', "ntfy.url", "http:// or https://"),
    ('[ntfy]\nurl = "http://user:pw@ntfy.lan/"\n', "ntfy.url", "no user"),
    ('[ntfy]\nclick_url = "javascript:alert(1)"\n', "ntfy.click_url", "http:// or https://"),
    ('[ntfy]\ntopic = "door bell"\n', "ntfy.topic", "letters, digits"),
    ('[ntfy]\nevents = ["face_seen"]\n', "ntfy.events[0]", '"doorbell_pressed"'),
])
def test_mistakes_are_refused_with_the_key_and_line(text, key, fragment):
    error = error_for(text)
    assert error.key == key
    assert fragment in str(error)
    assert error.line is not None


# -- names: resolved once at start, logged, checked the same way --------------------------------


def mqtt_named(host: str, **extra) -> Settings:
    keys = {"enabled": True, "host": host, **extra}
    return Settings.from_toml_text("[mqtt]\n" + "".join(f"{k} = {json.dumps(v)}\n"
                                                        for k, v in keys.items()))


def test_a_name_resolving_outside_the_home_network_stops_the_start(tmp_path):
    dns = fake_dns({"broker.example": ["93.184.216.34"]})
    with pytest.raises(ConfigError) as caught:
        build_event_bus(mqtt_named("broker.example"), tmp_path, getaddrinfo=dns)
    assert caught.value.key == "mqtt.host"
    assert str(caught.value).startswith(
        "mqtt.host resolves to 93.184.216.34, outside the home network")
    # Every address must be inside: one public answer among LAN ones is enough to refuse.
    mixed = fake_dns({"broker.lan": ["192.168.1.20", "93.184.216.34"]})
    with pytest.raises(ConfigError, match="mqtt.host resolves to 93.184.216.34"):
        build_event_bus(mqtt_named("broker.lan"), tmp_path, getaddrinfo=mixed)
    ntfy = Settings.from_toml_text('[ntfy]\nenabled = true\nurl = "https://push.example/"\n')
    with pytest.raises(ConfigError, match="ntfy.url resolves to 2606:4700::1111"):
        build_event_bus(ntfy, tmp_path, getaddrinfo=fake_dns({"push.example": ["2606:4700::1111"]}))


def test_a_lan_name_is_resolved_once_and_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="doorbell.events")
    calls = []
    dns = fake_dns({"broker.lan": ["192.168.1.20"]})

    def counting(*args, **kwargs):
        calls.append(args[0])
        return dns(*args, **kwargs)

    bus = build_event_bus(mqtt_named("broker.lan"), tmp_path, getaddrinfo=counting)
    assert calls == ["broker.lan"]
    assert "mqtt.host broker.lan resolves to 192.168.1.20" in caplog.text
    log_file, mqtt = bus.sinks
    assert isinstance(log_file, EventLogFile)
    assert mqtt.address == "192.168.1.20" and mqtt.connect_host == "192.168.1.20"
    # With TLS the name is what it connects to: the certificate must match it.
    tls = build_event_bus(mqtt_named("broker.lan", tls=True), tmp_path, getaddrinfo=dns)
    assert tls.sinks[1].connect_host == "broker.lan"
    assert resolve_target("k.host", "broker.lan", 1883, ["192.168.0.0/16"], False, dns) == \
        ["192.168.1.20"]


def test_allowed_public_names_are_logged_as_such(tmp_path, caplog):
    dns = fake_dns({"broker.example": ["93.184.216.34"]})
    bus = build_event_bus(mqtt_named("broker.example", allow_public_targets=True), tmp_path,
                          getaddrinfo=dns)
    assert bus.sinks[1].address == "93.184.216.34"
    assert "outside the home network (93.184.216.34); allowed by mqtt.allow_public_targets" in \
        caplog.text


def test_a_name_that_does_not_resolve_yet_does_not_stop_recording(tmp_path, caplog,
                                                                   monkeypatch):
    import doorbell.camera.notify as notify

    answers: dict[str, list[str]] = {}
    dns = fake_dns(answers)
    bus = build_event_bus(mqtt_named("broker.lan"), tmp_path, getaddrinfo=dns)
    deferred = bus.sinks[1]
    assert "mqtt.host broker.lan cannot be resolved now" in caplog.text
    assert deferred.accepts("doorbell_pressed")
    monkeypatch.setattr(notify, "RESOLVE_AGAIN_S", 0.0)
    started = []
    monkeypatch.setattr(deferred.sink, "start", lambda: started.append(True))
    monkeypatch.setattr(deferred.sink, "ready", lambda timeout_s: True)
    assert deferred.ready(0.01) is False  # still nothing
    answers["broker.lan"] = ["93.184.216.34"]  # the answer, when it comes, is public: off
    assert deferred.ready(0.01) is True and not deferred.accepts("doorbell_pressed")
    assert "notifications are off until the recorder restarts" in caplog.text
    assert not started

    again = build_event_bus(mqtt_named("broker.lan"), tmp_path, getaddrinfo=fake_dns({}))
    later = again.sinks[1]
    later._resolve = lambda: "192.168.1.20"
    monkeypatch.setattr(later.sink, "start", lambda: started.append(True))
    monkeypatch.setattr(later.sink, "ready", lambda timeout_s: True)
    assert later.ready(0.01) is True and started == [True]
    assert later.sink.address == "192.168.1.20"


def test_doorbell_record_refuses_a_public_broker_naming_the_key(tmp_path):
    from doorbell.storage.age.identities import X25519Identity

    home = tmp_path / "home"
    home.mkdir()
    (home / "recipients.txt").write_text(
        f"# member: alice\n{X25519Identity.generate().recipient}\n")
    (home / "config.toml").write_text('[mqtt]\nenabled = true\nhost = "broker.example"\n')
    run_dir = tmp_path / "run"
    probe = textwrap.dedent(f"""
        import socket, sys
        real = socket.getaddrinfo
        def fake(host, *args, **kwargs):
            if host == "broker.example":  # never asked of a real resolver
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 1883))]
            return real(host, *args, **kwargs)
        socket.getaddrinfo = fake
        from doorbell.cli import main
        sys.exit(main(["record", "--home", {str(home)!r}, "--until-eof"]))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
    env["DOORBELL_RUNTIME_DIR"] = str(run_dir)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=PROJECT, env=env, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("doorbell: mqtt.host resolves to 93.184.216.34, outside the home "
                           "network"), result.stderr
    assert "mqtt.host broker.example resolves to 93.184.216.34" in result.stderr  # logged

    (home / "config.toml").write_text('[ntfy]\nenabled = true\nurl = "http://8.8.8.8/"\n')
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=PROJECT, env=env, timeout=60, check=False)
    assert result.returncode == 1
    assert "config.toml line 3: ntfy.url points at 8.8.8.8, outside the home network" in \
        result.stderr
