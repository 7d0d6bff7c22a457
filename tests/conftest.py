"""Fixtures more than one test package needs."""

import socket

import pytest

# The recorder's home (recorder_home, recorder_home_factory, mp4, footage, vtest_recording): the
# camera, `doorbell record` and browser playback tests share it; small_disk, a tmpfs to fill up.
pytest_plugins = ["tests.recorder_home", "tests.small_disk"]


@pytest.fixture
def notify_socket(tmp_path):
    """A NOTIFY_SOCKET stand-in: (path, bound datagram socket) to read sd_notify messages from."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield path, sock
    sock.close()
