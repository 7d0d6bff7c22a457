"""Loading settings: defaults, per-key merging, and one clear error per kind of mistake."""

import dataclasses
import textwrap
from pathlib import Path

import pytest

from doorbell.config import ConfigError, Settings, load_settings


def write_config(home: Path, text: str) -> Path:
    path = home / "config.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        Settings.from_toml_text(textwrap.dedent(text), source="test.toml")
    return caught.value


def test_defaults_load_without_a_config_file(tmp_path):
    settings = load_settings(tmp_path)
    assert settings == Settings.defaults()
    assert settings.camera.source == "synthetic"
    assert settings.motion.zones == ()
    assert settings.doorbell.button_pin is None
    assert settings.viewer.bind == "127.0.0.1:8080"


def test_user_file_overrides_some_keys_and_keeps_the_rest(tmp_path):
    write_config(tmp_path, """
        [motion]
        sensitivity = 0.8

        [recording]
        preset = "fast"
        pre_roll_s = 5   # an int is fine for a float

        [doorbell]
        button_pin = 17

        [privacy]
        masks = [
            [[0, 0], [0.5, 0], [0.5, 0.25]],
            [[0.6, 0.6], [1, 0.6], [1, 1], [0.6, 1]],
        ]
    """)
    settings = load_settings(tmp_path)
    defaults = Settings.defaults()

    assert settings.motion.sensitivity == 0.8
    assert settings.motion.detect_width == defaults.motion.detect_width
    assert settings.recording.preset == "fast"
    assert settings.recording.pre_roll_s == 5.0
    assert isinstance(settings.recording.pre_roll_s, float)
    assert settings.recording.crf == defaults.recording.crf
    assert settings.doorbell.button_pin == 17
    assert settings.doorbell.chime_pin is None
    assert settings.privacy.masks == (
        ((0.0, 0.0), (0.5, 0.0), (0.5, 0.25)),
        ((0.6, 0.6), (1.0, 0.6), (1.0, 1.0), (0.6, 1.0)),
    )
    assert all(isinstance(c, float) for poly in settings.privacy.masks for p in poly for c in p)
    # Untouched sections are the defaults exactly.
    assert settings.viewer == defaults.viewer
    assert settings.camera == defaults.camera


def test_from_toml_text_merges_over_defaults():
    settings = Settings.from_toml_text('[camera]\nname = "Back gate"\n')
    assert settings.camera.name == "Back gate"
    assert settings.camera.fps == 15
    assert dataclasses.replace(settings.camera, name="Front door") == Settings.defaults().camera


def test_empty_text_and_empty_sections_are_the_defaults():
    assert Settings.from_toml_text("") == Settings.defaults()
    assert Settings.from_toml_text("[motion]\n[live]\n") == Settings.defaults()


@pytest.mark.parametrize(
    "bind, host, port",
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("0.0.0.0:8443", "0.0.0.0", 8443),  # noqa: S104
        ("[::1]:8080", "::1", 8080),
        ("[::]:1", "::", 1),
        ("doorbell.local:65535", "doorbell.local", 65535),
    ],
)
def test_valid_binds(bind, host, port):
    viewer = Settings.from_toml_text(f'[viewer]\nbind = "{bind}"\n').viewer
    assert (viewer.bind, viewer.bind_host, viewer.bind_port) == (bind, host, port)


def test_accepted_values_at_the_edges():
    settings = Settings.from_toml_text("""
        [retention]
        max_total_bytes = 10_000_000
        max_age_days = 0
        [viewer]
        allowed_networks = ["192.168.1.0/24", "fd12:3456::/48", "127.0.0.1/32"]
        hostnames = ["doorbell.lan", "doorbell", "192.168.1.20"]
        [doorbell]
        button_pin = 0
        chime_pin = 27
    """)
    assert settings.retention.max_total_bytes == 10_000_000
    assert settings.viewer.allowed_networks == ("192.168.1.0/24", "fd12:3456::/48", "127.0.0.1/32")
    assert settings.viewer.hostnames == ("doorbell.lan", "doorbell", "192.168.1.20")
    assert (settings.doorbell.button_pin, settings.doorbell.chime_pin) == (0, 27)


# (TOML text, key the error names, line it names, words the message must contain)
FAILURES = {
    "unknown section": (
        """\
        [camera]
        fps = 10

        [motoin]
        sensitivity = 0.7
        """,
        "motoin", 4, ["unknown section [motoin]", "known sections: camera, privacy, motion"],
    ),
    "key outside any section": (
        'verbose = true\n[camera]\nfps = 10\n',
        "verbose", 1, ['unknown key "verbose"', "known sections"],
    ),
    "typo in a key": (
        """\
        [motion]
        detect_width = 320
        sensitivty = 0.7
        """,
        "motion.sensitivty", 3,
        ['unknown key "motion.sensitivty"', "known keys in [motion]: zones, detect_width"],
    ),
    "text for a number": (
        '[recording]\n\n\npre_roll_s = "abc"\n',
        "recording.pre_roll_s", 4,
        ['"recording.pre_roll_s" must be a number between 0 and 30, got "abc".'],
    ),
    "bool for an int": (
        "[camera]\nfps = true\n",
        "camera.fps", 2, ['"camera.fps" must be a whole number between 1 and 60, got true.'],
    ),
    "bool for a float": (
        "[motion]\nsensitivity = false\n",
        "motion.sensitivity", 2, ["must be a number between 0 and 1, got false."],
    ),
    "float for an int": (
        "[camera]\nfps = 12.5\n",
        "camera.fps", 2, ["must be a whole number", "got 12.5."],
    ),
    "int above range": (
        "[recording]\ncrf = 52\n",
        "recording.crf", 2, ['"recording.crf" must be a whole number between 0 and 51, got 52.'],
    ),
    "float below range": (
        "[motion]\nmin_area = 0.00001\n",
        "motion.min_area", 2, ["between 0.0001 and 0.5", "got 1e-05."],
    ),
    "nan": (
        "[motion]\nsensitivity = nan\n",
        "motion.sensitivity", 2, ["must be a number between 0 and 1, got nan."],
    ),
    "not a choice": (
        '[recording]\npreset = "slow"\n',
        "recording.preset", 2, ['must be one of "ultrafast", "superfast"', 'got "slow".'],
    ),
    "empty name": (
        '[camera]\nname = ""\n',
        "camera.name", 2, ['"camera.name" must be text of 1 to 64 characters, got "".'],
    ),
    "empty source": (
        '[camera]\nsource = ""\n',
        "camera.source", 2, ['"camera.source" must be non-empty text, got "".'],
    ),
    "pin out of range": (
        "[doorbell]\nbutton_pin = 28\n",
        "doorbell.button_pin", 2, ["must be a whole number between 0 and 27, got 28."],
    ),
    "size limit too small": (
        "[retention]\nmax_total_bytes = 5000\n",
        "retention.max_total_bytes", 2, ["must be 0 (no limit) or at least 10000000 bytes"],
    ),
    "negative free space": (
        "[retention]\nmin_free_bytes = -1\n",
        "retention.min_free_bytes", 2, ["must be a whole number of at least 0, got -1."],
    ),
    "polygon with 2 points": (
        """\
        [privacy]
        masks = [[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1]]]
        """,
        "privacy.masks[1]", 2, ['"privacy.masks[1]" must be a polygon', "at least 3 [x, y] points"],
    ),
    "polygon point outside the frame": (
        "[motion]\nzones = [[[0, 0], [1.5, 0], [1, 1]]]\n",
        "motion.zones[0]", 2, ["x and y between 0 and 1", "got [[0, 0], [1.5, 0], [1, 1]]."],
    ),
    "polygon point not a pair": (
        "[motion]\nzones = [[[0, 0, 0], [1, 0], [1, 1]]]\n",
        "motion.zones[0]", 2, ["must be a polygon"],
    ),
    "polygons not a list": (
        "[privacy]\nmasks = 3\n",
        "privacy.masks", 2, ['"privacy.masks" must be a list, got 3.'],
    ),
    "not a network": (
        '[viewer]\nallowed_networks = ["10.0.0.0/8", "my-lan"]\n',
        "viewer.allowed_networks[1]", 2, ["must be a network such as 192.168.1.0/24", '"my-lan"'],
    ),
    "network with host bits": (
        '[viewer]\nallowed_networks = ["192.168.1.5/24"]\n',
        "viewer.allowed_networks[0]", 2, ["no host bits set"],
    ),
    "the whole internet": (
        '[viewer]\nallowed_networks = ["0.0.0.0/0"]\n',
        "viewer.allowed_networks[0]", 2, ["the viewer is LAN-only", 'got "0.0.0.0/0".'],
    ),
    "a public network": (
        '[viewer]\nallowed_networks = ["192.168.0.0/16", "8.8.8.0/24"]\n',
        "viewer.allowed_networks[1]", 2, ["the viewer is LAN-only", 'got "8.8.8.0/24".'],
    ),
    "a public IPv6 network": (
        '[viewer]\nallowed_networks = ["2001:db8::/32"]\n',
        "viewer.allowed_networks[0]", 2, ["the viewer is LAN-only"],
    ),
    "bind without port": (
        '[viewer]\nbind = "localhost"\n',
        "viewer.bind", 2, ['"viewer.bind" must be HOST:PORT', 'got "localhost".'],
    ),
    "bind port 0": (
        '[viewer]\nbind = "127.0.0.1:0"\n',
        "viewer.bind", 2, ["must be HOST:PORT with a port between 1 and 65535"],
    ),
    "bind port too big": (
        '[viewer]\nbind = "127.0.0.1:65536"\n',
        "viewer.bind", 2, ["must be HOST:PORT"],
    ),
    "bind IPv6 without brackets": (
        '[viewer]\nbind = "::1:8080"\n',
        "viewer.bind", 2, ["an IPv6 address in brackets"],
    ),
    "bind bad IPv6": (
        '[viewer]\nbind = "[fe80::zz]:8080"\n',
        "viewer.bind", 2, ["must be HOST:PORT"],
    ),
    "hostname with scheme": (
        '[viewer]\nhostnames = ["http://doorbell.lan"]\n',
        "viewer.hostnames[0]", 2, ["must be a host name or IP address without scheme or port"],
    ),
    "section that is not a table": (
        "motion = 3\n",
        "motion", 1, ['"motion" must be a section [motion], got 3.'],
    ),
}


@pytest.mark.parametrize("text, key, line, words", FAILURES.values(), ids=FAILURES.keys())
def test_each_mistake_names_the_key_and_line(text, key, line, words):
    error = error_for(text)
    assert (error.key, error.source, error.line) == (key, "test.toml", line)
    message = str(error)
    assert message.startswith(f"test.toml line {line}: ")
    for word in words:
        assert word in message
    # One plain sentence.
    assert "\n" not in message and message.endswith(".")


def test_a_toml_syntax_error_gives_its_line():
    error = error_for("""\
        [camera]
        fps = 15
        name = "Front door
    """)
    assert error.line == 3 and error.key is None
    assert str(error).startswith("test.toml line 3: the file is not valid TOML: ")
    assert str(error).endswith(".") and "\n" not in str(error)


def test_a_toml_error_at_the_end_of_the_file():
    error = error_for("[privacy]\nmasks = [\n")
    assert error.line == 2
    assert "at the end of the file." in str(error)


def test_a_redefined_key_is_a_syntax_error():
    error = error_for("[camera]\nfps = 15\nfps = 20\n")
    assert error.line == 3


def test_a_bad_user_file_names_its_path(tmp_path):
    path = write_config(tmp_path, """\
        # my doorbell
        [recording]
        crf = 99
    """)
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path} line 3: \"recording.crf\" must be")


def test_an_unreadable_config_is_a_config_error(tmp_path):
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path)


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path):
    (tmp_path / "config.toml").write_bytes(b'[camera]\nname = "Fr\xe9d"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(tmp_path)


def test_a_byte_order_mark_is_tolerated(tmp_path):
    (tmp_path / "config.toml").write_bytes('[camera]\nname = "Porte"\n'.encode("utf-8-sig"))
    assert load_settings(tmp_path).camera.name == "Porte"


# Finding the line is best effort, but it should cope with ordinary ways of writing TOML.
LINES = {
    "multi-line array before the key": (
        """\
        [privacy]
        masks = [
            [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]],
            [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]],
        ]
        maks = 1
        """,
        6,
    ),
    "error inside a multi-line array": (
        """\
        [camera]
        fps = 10
        [privacy]
        masks = [
            [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]],
            [[0.1, 0.1], [0.2, 0.1]],
        ]
        """,
        4,
    ),
    "same key name in an earlier section": (
        "[camera]\nfps = 10\nwidth = 640\n\n[live]\nfps = 99\n",
        6,
    ),
    "header with a comment and spaces": (
        "[ motion ]  # tuning\n  sensitivity = 2\n",
        2,
    ),
    "quoted key": (
        '[motion]\n"sensitivity" = 2\n',
        2,
    ),
    "dotted key at the top": (
        "# tuning\nmotion.sensitivity = 2\n",
        2,
    ),
    "inline table": (
        "# mine\nrecording = { crf = 99 }\n[camera]\nfps = 10\n",
        2,
    ),
}


@pytest.mark.parametrize("text, line", LINES.values(), ids=LINES.keys())
def test_line_finding(text, line):
    assert error_for(text).line == line
