"""The shipped default.toml and the dataclass defaults must not drift apart; the model is frozen."""

import dataclasses
import re
import tomllib
from importlib import resources

import pytest

from doorbell.config import ConfigError, Settings

DEFAULT_TOML = resources.files("doorbell.config") / "default.toml"


def section_lines(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[(\w+)\]", line.strip())
        if header:
            current = header[1]
            sections[current] = []
        elif current:
            sections[current].append(line)
    return sections


def test_default_toml_parses_to_exactly_the_dataclass_defaults():
    assert Settings.from_toml_text(DEFAULT_TOML.read_text("utf-8")) == Settings.defaults()


def test_default_toml_sets_every_key_itself():
    # Merging over the dataclass defaults would hide a key missing from the file, so compare keys.
    data = tomllib.loads(DEFAULT_TOML.read_text("utf-8"))
    assert list(data) == [f.name for f in dataclasses.fields(Settings)]
    for section in dataclasses.fields(Settings):
        for key in dataclasses.fields(section.type):
            if key.default is None:  # TOML has no null: documented as a commented-out example
                assert key.name not in data[section.name]
            else:
                value = data[section.name][key.name]
                value = tuple(value) if isinstance(value, list) else value
                assert value == key.default, f"{section.name}.{key.name}"


def test_default_toml_documents_every_key_with_a_comment():
    sections = section_lines(DEFAULT_TOML.read_text("utf-8"))
    for section in dataclasses.fields(Settings):
        lines = sections[section.name]
        for key in dataclasses.fields(section.type):
            pattern = re.compile(rf"(# )?{key.name} = ")
            at = [i for i, line in enumerate(lines) if pattern.match(line)]
            assert at, f"{section.name}.{key.name} is not in default.toml"
            # The first mention (maybe a commented-out example) follows a comment explaining it.
            above = lines[at[0] - 1]
            assert above.startswith("# ") and not re.match(r"# \w+ = ", above), (
                f"{section.name}.{key.name} has no comment"
            )


def test_settings_are_frozen_and_slotted():
    settings = Settings.defaults()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.motion.sensitivity = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.motion = settings.motion  # type: ignore[misc]
    assert not hasattr(settings.motion, "__dict__")
    assert hash(settings) == hash(Settings.defaults())


def test_defaults_are_fresh_equal_values():
    assert Settings.defaults() == Settings.defaults()
    assert Settings.defaults().viewer.allowed_networks[0] == "127.0.0.0/8"


def test_with_overrides_validates_like_the_file():
    settings = Settings.defaults().with_overrides(
        {"viewer.bind": "0.0.0.0:8443", "camera.source": "/dev/video0"}, source="--bind"
    )
    assert settings.viewer.bind_port == 8443
    assert settings.camera.source == "/dev/video0"
    assert settings.motion == Settings.defaults().motion

    with pytest.raises(ConfigError) as caught:
        settings.with_overrides({"viewer.bind": "nowhere"}, source="--bind")
    assert str(caught.value).startswith('--bind: "viewer.bind" must be HOST:PORT')
    assert caught.value.line is None

    with pytest.raises(ConfigError, match='unknown key "camera.colour"'):
        settings.with_overrides({"camera.colour": "red"})
    with pytest.raises(ConfigError, match="section.key"):
        settings.with_overrides({"bind": "127.0.0.1:1"})
