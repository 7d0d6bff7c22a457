"""Editing config.toml from a program: comments and untouched keys kept byte for byte, the result
validated exactly as the file is at start, errors that name the field."""

import difflib
import json
import textwrap
from importlib import resources

import pytest

from doorbell.config import ConfigError, Settings, load_settings
from doorbell.config.editor import ConfigChange, edit_config, setting_value

DEFAULT_TOML = (resources.files("doorbell.config") / "default.toml").read_text("utf-8")
TRIANGLE = [[0.1, 0.2], [0.3, 0.2], [0.3, 0.4]]

USER_FILE = textwrap.dedent("""\
    # My doorbell. Keep this comment.

    [camera]
    name = "Back gate"   # renamed in May
    fps = 10

    [motion]
    # Tuned on a windy day.
    sensitivity = 0.35  # was 0.5
    zones = [
        [[0, 0], [1, 0], [1, 0.5]],  # the path
    ]
    # This comment closes the motion section.

    [retention]
    max_age_days = 14
""")


def changed_lines(before: str, after: str) -> list[str]:
    """The lines removed (-) and added (+), without diff headers or context."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def reloaded(tmp_path, text: str) -> Settings:
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    return load_settings(tmp_path)


def error_for(text: str, values: dict) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        edit_config(text, values)
    return caught.value


# -- what changes and what does not --------------------------------------------------------------


def test_only_the_edited_values_change_and_every_comment_is_kept(tmp_path):
    change = edit_config(USER_FILE, {"motion.sensitivity": 0.6, "camera.fps": 12})

    assert isinstance(change, ConfigChange)
    assert changed_lines(USER_FILE, change.text) == [
        "-fps = 10", "+fps = 12",
        "-sensitivity = 0.35  # was 0.5", "+sensitivity = 0.6  # was 0.5",
    ]
    assert change.changes == {"motion.sensitivity": (0.35, 0.6), "camera.fps": (10, 12)}
    assert change.settings.motion.sensitivity == 0.6
    assert change.settings.camera.name == "Back gate"
    assert change.settings.retention.max_age_days == 14
    assert reloaded(tmp_path, change.text) == change.settings


def test_a_polygon_list_is_written_as_one_compact_rounded_inline_array(tmp_path):
    zones = [[[0, 0], [1, 0], [1, 0.123456789]], [[0.5, 0.5], [0.75, 0.5], [0.6, 0.9], [0.5, 0.9]]]
    change = edit_config(USER_FILE, {"motion.zones": zones, "privacy.masks": [TRIANGLE]})

    assert "zones = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.1235]], [[0.5, 0.5], [0.75, 0.5], " \
           "[0.6, 0.9], [0.5, 0.9]]]\n" in change.text
    assert "\n[privacy]\nmasks = [[[0.1, 0.2], [0.3, 0.2], [0.3, 0.4]]]\n" in change.text
    # The old multi-line value is gone with its inner comment; the comments around it stay.
    assert "# the path" not in change.text
    assert "# Tuned on a windy day.\nsensitivity = 0.35  # was 0.5\nzones = [[[" in change.text
    assert "# This comment closes the motion section." in change.text
    assert change.settings.motion.zones[0][2] == (1.0, 0.1235)
    assert change.settings.privacy.masks == (((0.1, 0.2), (0.3, 0.2), (0.3, 0.4)),)
    assert change.changes["privacy.masks"] == ([], [TRIANGLE])
    assert change.changes["motion.zones"][0] == [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.5]]]
    assert reloaded(tmp_path, change.text) == change.settings


def test_the_shipped_defaults_as_a_config_file_edit_cleanly(tmp_path):
    # Many owners start by copying default.toml: every comment must survive an edit of it.
    change = edit_config(DEFAULT_TOML, {
        "privacy.masks": [TRIANGLE], "recording.pre_roll_s": 5, "doorbell.button_pin": 17,
        "retention.max_total_bytes": 20_000_000_000,
    })

    assert changed_lines(DEFAULT_TOML, change.text) == [
        "-masks = []", "+masks = [[[0.1, 0.2], [0.3, 0.2], [0.3, 0.4]]]",
        "-pre_roll_s = 3.0", "+pre_roll_s = 5.0",
        "-max_total_bytes = 0", "+max_total_bytes = 20000000000",
        "+button_pin = 17",
    ]
    # An optional key goes right under its commented-out example.
    assert "# button_pin = 17\nbutton_pin = 17\n" in change.text
    assert change.changes == {
        "privacy.masks": ([], [TRIANGLE]),
        "recording.pre_roll_s": (3.0, 5.0),
        "doorbell.button_pin": (None, 17),
        "retention.max_total_bytes": (0, 20_000_000_000),
    }
    assert reloaded(tmp_path, change.text) == change.settings


def test_a_new_key_goes_after_the_sections_last_key_not_after_its_closing_comment():
    change = edit_config(USER_FILE, {"motion.min_area": 0.01})

    assert changed_lines(USER_FILE, change.text) == ["+min_area = 0.01"]
    assert "]\nmin_area = 0.01\n# This comment closes the motion section.\n" in change.text


def test_a_missing_section_is_added_at_the_end(tmp_path):
    change = edit_config(USER_FILE, {"recording.preset": "fast", "live.fps": 1})

    assert change.text.startswith(USER_FILE)
    assert change.text[len(USER_FILE):] == '\n[recording]\npreset = "fast"\n\n[live]\nfps = 1.0\n'
    assert change.changes == {"recording.preset": ("veryfast", "fast"), "live.fps": (2.0, 1.0)}
    assert reloaded(tmp_path, change.text) == change.settings


def test_a_file_without_a_final_newline_gets_one_before_a_new_section():
    change = edit_config('[camera]\nname = "Gate"', {"live.width": 800})
    assert change.text == '[camera]\nname = "Gate"\n\n[live]\nwidth = 800\n'


@pytest.mark.parametrize("empty", ["", "\n", "\ufeff"])
def test_an_empty_file_becomes_just_the_edited_keys(tmp_path, empty):
    change = edit_config(empty, {"motion.sensitivity": 0.7, "privacy.masks": [TRIANGLE]})

    assert "[motion]\nsensitivity = 0.7\n" in change.text
    assert "[privacy]\nmasks = [[[0.1, 0.2], [0.3, 0.2], [0.3, 0.4]]]\n" in change.text
    assert not change.text.startswith("\n\n")
    assert change.settings == reloaded(tmp_path, change.text)
    assert change.settings == Settings.defaults().with_overrides(
        {"motion.sensitivity": 0.7, "privacy.masks": [TRIANGLE]})


def test_values_equal_to_the_current_ones_leave_the_text_alone():
    # A settings form posts every field: the unchanged ones must not be rewritten or added.
    values = {"camera.name": "Back gate", "camera.fps": 10, "motion.sensitivity": 0.35,
              "motion.zones": [[[0, 0], [1, 0], [1, 0.5]]], "recording.preset": "veryfast",
              "doorbell.button_pin": None}
    change = edit_config(USER_FILE, values)

    assert change.text == USER_FILE
    assert change.changes == {}


def test_none_removes_a_key_so_the_default_applies_again():
    change = edit_config(USER_FILE, {"camera.fps": None, "motion.sensitivity": None})

    assert changed_lines(USER_FILE, change.text) == [
        "-fps = 10", "-sensitivity = 0.35  # was 0.5",
    ]
    assert "# Tuned on a windy day." in change.text
    assert change.changes == {"camera.fps": (10, 15), "motion.sensitivity": (0.35, 0.5)}


def test_a_section_written_with_dotted_keys_is_edited_in_place(tmp_path):
    text = "# dotted\nmotion.sensitivity = 0.4  # keep me\nmotion.trigger_frames = 5\n" \
           '\n[camera]\nname = "Gate"\n'
    change = edit_config(text, {"motion.sensitivity": 0.9, "motion.min_area": 0.02})

    assert changed_lines(text, change.text) == [
        "-motion.sensitivity = 0.4  # keep me",
        "+motion.sensitivity = 0.9  # keep me",
        "+motion.min_area = 0.02",
    ]
    assert change.settings.motion.trigger_frames == 5
    assert change.settings.motion.min_area == 0.02
    assert reloaded(tmp_path, change.text) == change.settings


def test_a_section_written_as_an_inline_table_is_edited_in_place(tmp_path):
    text = 'motion = { sensitivity = 0.4 }  # inline\n\n[camera]\nname = "Gate"\n'
    change = edit_config(text, {"motion.sensitivity": 0.9, "motion.zones": [TRIANGLE]})

    assert change.text.endswith('  # inline\n\n[camera]\nname = "Gate"\n')
    assert change.settings.motion.sensitivity == 0.9
    assert change.settings.motion.zones == (((0.1, 0.2), (0.3, 0.2), (0.3, 0.4)),)
    assert reloaded(tmp_path, change.text) == change.settings


@pytest.mark.parametrize("text", ["motion = 3\n", "[[motion]]\nsensitivity = 0.5\n"],
                         ids=["a-value", "an-array-of-tables"])
def test_a_section_that_is_not_a_table_is_refused_clearly(text):
    error = error_for(text, {"motion.sensitivity": 0.9})
    assert error.key == "motion"
    assert error.message.startswith('"motion" must be a section [motion], got ')
    assert "correct the file first" in error.message
    assert error.line == 1


def test_a_broken_file_can_be_fixed_by_an_edit_but_never_made_worse():
    broken = "[motion]\nsensitivity = 7\n[camera]\nfps = 10\n"
    fixed = edit_config(broken, {"motion.sensitivity": 0.5})
    assert fixed.settings.motion.sensitivity == 0.5
    assert fixed.changes == {}  # 0.5 is what the defaults (the "before") say too
    assert fixed.text == broken.replace("= 7", "= 0.5")

    error = error_for(broken, {"camera.fps": 12})  # the other mistake stays and is named
    assert (error.key, error.line) == ("motion.sensitivity", 2)


def test_a_toml_syntax_error_in_the_current_file_is_reported_with_its_line():
    error = error_for("[motion]\nsensitivity = = 1\n", {"camera.fps": 12})
    assert error.line == 2 and error.message.startswith("the file is not valid TOML")


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, key, words",
    [
        ({"motion.sensitivity": 1.5}, "motion.sensitivity", "a number between 0 and 1, got 1.5."),
        ({"motion.sensitivity": "high"}, "motion.sensitivity", 'got "high".'),
        ({"motion.sensitivity": True}, "motion.sensitivity", "got true."),
        ({"motion.sensitivity": float("nan")}, "motion.sensitivity", "got nan."),
        ({"camera.fps": 61}, "camera.fps", "between 1 and 60"),
        ({"camera.fps": 12.5}, "camera.fps", "a whole number"),
        ({"recording.pre_roll_s": -1}, "recording.pre_roll_s", "between 0 and 30"),
        ({"recording.preset": "slow"}, "recording.preset", "one of"),
        ({"retention.max_total_bytes": 5000}, "retention.max_total_bytes", "at least 10000000"),
        ({"viewer.allowed_networks": ["0.0.0.0/0"]}, "viewer.allowed_networks[0]", "LAN-only"),
        ({"privacy.masks": [TRIANGLE, [[0, 0], [1, 1]]]}, "privacy.masks[1]", "at least 3"),
        ({"privacy.masks": [[[0, 0], [1.2, 0], [1, 1]]]}, "privacy.masks[0]", "between 0 and 1"),
        ({"privacy.masks": [[[0, 0], [1, 0], [True, 1]]]}, "privacy.masks[0]", "a polygon"),
        ({"privacy.masks": TRIANGLE}, "privacy.masks[0]", "a polygon"),
        ({"privacy.masks": "none"}, "privacy.masks", "must be a list"),
        ({"motion.zones": [{"x": 1}]}, "motion.zones", "a list of those, got a dict."),
        ({"motion.zones": [[[0, 0], None, [1, 1]]]}, "motion.zones", "got a NoneType."),
        ({"mqtt.enabled": True}, "mqtt.enabled", "needs mqtt.host"),
    ],
)
def test_an_invalid_value_names_the_field_in_one_sentence(values, key, words):
    error = error_for(USER_FILE, values)

    assert error.key == key
    assert words in error.message
    assert error.message.endswith(".") and "\n" not in error.message
    assert error.message.count(". ") == 0 or "e.g." in error.message


def test_an_error_in_the_file_is_located_at_the_edited_line():
    error = error_for(USER_FILE, {"motion.sensitivity": 2})
    assert (error.source, error.line) == ("config.toml", 9)
    assert str(error).startswith('config.toml line 9: "motion.sensitivity" must be')


@pytest.mark.parametrize(
    "key, words",
    [
        ("motion.sensitivty", 'unknown key "motion.sensitivty" (known keys in [motion]: zones'),
        ("moton.sensitivity", 'unknown setting "moton.sensitivity": there is no section [moton]'),
        ("sensitivity", '"sensitivity" is not a setting name like "section.key".'),
        ("motion.zones[0]", 'unknown key "motion.zones[0]"'),
        ("motion.sensitivity.x", 'unknown key "motion.sensitivity.x"'),
    ],
)
def test_an_unknown_key_is_named(key, words):
    error = error_for(USER_FILE, {key: 1})
    assert error.key == key
    assert words in error.message


def test_nothing_is_half_applied_when_one_of_several_values_is_refused():
    with pytest.raises(ConfigError):
        edit_config(USER_FILE, {"camera.fps": 12, "motion.sensitivity": 9})
    # edit_config only returns text; the caller writes nothing, so the file is unchanged.


# -- degenerate polygons: the model refuses them, from the file and from the editor alike ---------


DEGENERATE = {
    "collinear": [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]],
    "collinear, many points": [[x / 10, 0.3] for x in range(10)],
    "one spot": [[0.4, 0.4], [0.4, 0.4], [0.4, 0.4]],
    "a sliver under a pixel": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.1000001]],
}


@pytest.mark.parametrize("points", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_a_polygon_without_area_is_refused_by_the_editor_and_the_file(tmp_path, points):
    error = error_for("", {"motion.zones": [TRIANGLE, points]})
    assert error.key == "motion.zones[1]"
    assert "must be a polygon that encloses an area, not points on one line" in error.message

    (tmp_path / "config.toml").write_text(f"[motion]\nzones = [{json.dumps(points)}]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert caught.value.key == "motion.zones[0]"
    assert caught.value.line == 2


def test_a_self_crossing_polygon_still_covers_an_area():
    figure_eight = [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]  # signed area 0
    change = edit_config("", {"privacy.masks": [figure_eight]})
    assert len(change.settings.privacy.masks[0]) == 4


def test_too_many_points_or_polygons_are_refused():
    circle_ish = [[0.5 + 0.4 * (i % 2), i / 70] for i in range(65)]
    error = error_for("", {"privacy.masks": [circle_ish]})
    assert error.key == "privacy.masks[0]"
    assert "a polygon of at most 64 points" in error.message

    error = error_for("", {"privacy.masks": [TRIANGLE] * 17})
    assert error.key == "privacy.masks"
    assert error.message == '"privacy.masks" must be a list of at most 16 entries, got 17.'

    assert len(edit_config("", {"privacy.masks": [TRIANGLE] * 16}).settings.privacy.masks) == 16


# -- setting_value and base ------------------------------------------------------------------------


def test_setting_value_is_json_friendly():
    settings = Settings.defaults().with_overrides({"privacy.masks": [TRIANGLE]})
    assert setting_value(settings, "motion.sensitivity") == 0.5
    assert setting_value(settings, "privacy.masks") == [TRIANGLE]
    assert setting_value(settings, "viewer.allowed_networks")[0] == "127.0.0.0/8"
    assert setting_value(settings, "doorbell.button_pin") is None
    json.dumps({key: setting_value(settings, key) for key in
                ("privacy.masks", "viewer.hostnames", "ntfy.events", "camera.name")})
    with pytest.raises(ConfigError) as caught:
        setting_value(settings, "motion.nope")
    assert caught.value.key == "motion.nope"


def test_the_settings_are_read_over_the_given_base():
    base = Settings.defaults().with_overrides({"camera.fps": 30})
    change = edit_config("", {"motion.sensitivity": 0.8}, base=base, source="browser")
    assert change.settings.camera.fps == 30
    assert change.changes == {"motion.sensitivity": (0.5, 0.8)}
    with pytest.raises(ConfigError) as caught:
        edit_config("", {"camera.fps": 0}, base=base, source="browser")
    assert caught.value.source == "browser"
