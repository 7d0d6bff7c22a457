"""A crafted config.toml written while the recorder runs is one logged sentence; recording goes on.

Before, TOML nested past Python's stack or a number too long for int() escaped the watcher as
RecursionError / ValueError and ended the frame loop with a traceback.
"""

import itertools
import logging
import os

import pytest

from doorbell.camera.reload import SettingsWatcher
from doorbell.camera.synthetic import ScriptedEvent, SyntheticScene
from doorbell.storage.home import Home
from tests.recorder_home import camera_config

from .scripted_settings import ScriptedSource

WIDTH, HEIGHT, FPS = 320, 180, 15

CRAFTED = {
    "nested 1,200 deep": "x = " + "[" * 1200 + "]" * 1200 + "\n",
    "a 5,000-digit number": "[motion]\nmin_area = " + "9" * 5000 + "\n",
    "a 5,000-digit hex number": "[motion]\nmin_area = 0x" + "f" * 5000 + "\n",
}


@pytest.mark.parametrize("crafted", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_config_on_live_reload_is_logged_once_and_recording_goes_on(home, caplog,
                                                                              crafted):
    config = home.root / "config.toml"
    config.write_text(camera_config(WIDTH, HEIGHT, FPS))

    def craft():  # as the viewer writes it: a new file renamed over the old one
        temporary = config.with_name(".config.toml.new")
        temporary.write_text(crafted)
        os.replace(temporary, config)

    watcher = SettingsWatcher(Home(home.root), clock=itertools.count(0.0, 1.0).__next__)
    in_force = watcher.settings
    scene = SyntheticScene(WIDTH, HEIGHT, FPS, duration_s=8.0,
                           script=[ScriptedEvent("visit", 2.0, 4.0, "side")])
    caplog.set_level(logging.INFO, logger="doorbell.recorder")

    recorder = home.record(ScriptedSource(scene, {10: craft}), watcher=watcher)

    refused = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(refused) == 1, refused
    assert str(config) in refused[0] and "\n" not in refused[0]
    assert recorder.settings == in_force  # kept as they were
    assert recorder.stats.frames == 8 * FPS  # the frame loop went on to the end
    assert [c.trigger for c in home.clips()] == ["motion"]  # and the visit was recorded
