"""A crafted config.toml gets one sentence naming the file, never a traceback or a long wait.

Each of these once escaped as RecursionError or ValueError (a traceback at the recorder's start,
a dead recorder on live reload) or took seconds in the error locator.
"""

import time

import pytest

from doorbell.config import ConfigError, load_settings

CRAFTED = {
    "arrays nested 1,200 deep": "x = " + "[" * 1200 + "]" * 1200 + "\n",
    "inline tables nested 1,200 deep": "[camera]\nname = " + "{a = " * 1200 + "1" + "}" * 1200,
    "a 5,000-digit number": "[camera]\nfps = " + "7" * 5000 + "\n",
    "a 5,000-digit number in the wrong place": "[camera]\nname = 1" + "0" * 4999 + "\n",
    "a 5,000-digit hex number": "[camera]\nfps = 0x" + "f" * 5000 + "\n",
    "a 5,000-digit hex number as text": "[camera]\nname = 0x" + "f" * 5000 + "\n",
    "a 5,000-digit hex number for a decimal": "[motion]\nmin_area = 0x" + "f" * 5000 + "\n",
    "a mask nested as deep as TOML reads": "[privacy]\nmasks = " + "[" * 400 + "]" * 400,
}


@pytest.mark.parametrize("text", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_config_is_one_sentence_naming_the_file(tmp_path, text):
    config = tmp_path / "config.toml"
    config.write_text(text)

    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path)

    message = str(error.value)
    assert message.startswith(f"{config}"), message
    assert "\n" not in message and message.endswith("."), message
    assert len(message) < 300, message


def test_a_too_long_number_is_located_on_its_line(tmp_path):
    (tmp_path / "config.toml").write_text("[camera]\nname = \"door\"\n\n[motion]\n"
                                          "min_area = " + "1" * 5000 + "\n")

    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path)

    assert error.value.line == 5
    assert "more than 4300 digits" in error.value.message


def test_the_error_locator_is_fast_on_lines_built_to_make_it_backtrack(tmp_path):
    # Lines that look like the start of a [table] header followed by 80,000 spaces, inside a
    # multi-line string (valid TOML, and a valid camera.source), then a bad value further down
    # whose line the locator looks for past them.
    lure = "[a" + " " * 80_000 + "x\n" + "[[a" + " " * 80_000 + "]x\n"
    text = f'[camera]\nsource = """\n{lure}"""\n\n[motion]\nsensitivity = 7\n'
    (tmp_path / "config.toml").write_text(text)

    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path)
    elapsed_s = time.monotonic() - started

    assert elapsed_s < 1.0, f"locating the error took {elapsed_s:.1f} s"
    assert error.value.key == "motion.sensitivity"
    assert error.value.line == 8
