"""Settings files changed while the in-process recorder runs, as the viewer changes them.

`record_scene` runs the Recorder (software pipeline) over a scene, following the home's
config.toml and recipients.txt with a watcher whose clock advances a second per call, and runs
`actions[i]()` just before frame i is handed over. Used by test_reload and test_tuning.
"""

import itertools
import os
from pathlib import Path

from doorbell.camera.reload import SettingsWatcher
from doorbell.camera.synthetic import SyntheticScene
from doorbell.storage.home import Home


def replace_text(path: Path, text: str) -> None:
    """What the viewer does: write a new file, then rename it over the old one."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_text(text)
    os.replace(temporary, path)


class ScriptedSource:
    """A synthetic scene that runs `actions[i]()` just before it hands over frame i."""

    def __init__(self, scene: SyntheticScene, actions: dict):
        self.scene = scene
        self.fps = scene.fps
        self.actions = actions

    def frames(self):
        for index, frame in enumerate(self.scene.frames()):
            if index in self.actions:
                self.actions[index]()
            yield frame

    def close(self):
        self.scene.close()


def ticking_clock():
    """A clock a second further on at every call: the watcher checks the files every frame."""
    return itertools.count(0.0, 1.0).__next__


def record_scene(home, scene: SyntheticScene, actions: dict, **kwargs):
    """The Recorder over `scene`, following the home's files, with `actions` on the way."""
    watcher = SettingsWatcher(Home(home.root), clock=ticking_clock())
    return home.record(ScriptedSource(scene, actions), watcher=watcher, **kwargs)
