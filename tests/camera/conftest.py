"""Fixtures for the camera tests.

`home` and `home_factory` are the recorder's home (tests/recorder_home.py, which tests/cli and
tests/web use too). `doubles` puts the libcamera and pykms test doubles
(tests/camera/picamera_doubles.py) under picamera2's real classes; `decisions` records the
state machine's decisions.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.recorder_home import RecorderHome


@pytest.fixture
def home(recorder_home) -> RecorderHome:
    """A fresh recorder home with a 640x360 camera and its own runtime dir."""
    return recorder_home


@pytest.fixture(scope="session")
def home_factory(recorder_home_factory):
    """For module- and session-scoped recordings: `home_factory("name")` -> a fresh home."""
    return recorder_home_factory


def load_doubles():
    """tests/camera/picamera_doubles.py, loaded once per session whatever the import mode: the
    classes picamera2 saw at its first import must stay the libcamera double's classes."""
    name = "doorbell_tests_picamera_doubles"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("picamera_doubles.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def doubles(monkeypatch):
    """libcamera and pykms doubles in sys.modules, picamera2 imported over them, x86 encoders;
    `doubles.encoders` lists the encoders made, with their arguments."""
    if importlib.util.find_spec("picamera2") is None:  # importing it needs the doubles first
        pytest.skip("picamera2 is not installed (apt-get install libcap-dev; pip install "
                    "picamera2)")
    installed = load_doubles().install(monkeypatch)
    pytest.importorskip("picamera2", reason="picamera2 does not import over the test doubles")
    import picamera2.encoders
    from picamera2.encoders import LibavH264Encoder

    made = []

    class RecordedLibavH264Encoder(LibavH264Encoder):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            made.append((self, kwargs))

    # No /dev/video11 here: use the encoder picamera2 itself picks on a Pi 5 (libx264).
    monkeypatch.setattr(picamera2.encoders, "H264Encoder", RecordedLibavH264Encoder)
    installed.encoders = made
    return installed


@pytest.fixture
def decisions(monkeypatch) -> list:
    """(pts_us, action) of every decision the recorders' state machines take."""
    from doorbell.camera.statemachine import RecorderStateMachine

    taken = []
    step = RecorderStateMachine.step

    def recorded(self, pts_us, motion, pressed):
        decision = step(self, pts_us, motion, pressed)
        if decision.action is not None:
            taken.append((pts_us, decision.action))
        return decision

    monkeypatch.setattr(RecorderStateMachine, "step", recorded)
    return taken
