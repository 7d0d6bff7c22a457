"""Fixtures for the recorder tests: `home` and `home_factory` are the recorder's home.

The home itself (RecorderHome, the session's template, the MP4 readers) is in
tests/recorder_home.py, which tests/cli and tests/web use too; the camera tests call its
`recorder_home` just `home`.
"""

import pytest

# test_reload.py imports ORIGIN_US and camera_config from here; they are tests.recorder_home's.
from tests.recorder_home import ORIGIN_US, RecorderHome, camera_config  # noqa: F401


@pytest.fixture
def home(recorder_home) -> RecorderHome:
    """A fresh recorder home with a 640x360 camera and its own runtime dir."""
    return recorder_home


@pytest.fixture(scope="session")
def home_factory(recorder_home_factory):
    """For module- and session-scoped recordings: `home_factory("name")` -> a fresh home."""
    return recorder_home_factory
