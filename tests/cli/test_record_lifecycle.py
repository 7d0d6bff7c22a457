"""`doorbell record` before set-up is finished, and when a setting needs a restart.

A home that exists without recipients.txt is what the installer leaves when set-up is finished
in the viewer's browser: the recorder waits for the household's keys (alive to systemd) instead
of failing. A change to camera.* while it records makes it restart itself in place.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import clean_env

from .conftest import PROJECT, assert_one_sentence, doorbell

WAITING = "waiting for set-up: no household keys yet; finish set-up in the viewer"
SMALL_CAMERA = '[camera]\nsource = "synthetic"\nwidth = 320\nheight = 180\nfps = 10\n' \
    "[retention]\nmin_free_bytes = 0\n"


def wait_until(condition, timeout_s: float = 30.0, process=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value or (process is not None and process.poll() is not None):
            return value
        time.sleep(0.1)
    return condition()


def replace_text(path: Path, text: str) -> None:
    """As the viewer writes: a new file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_text(text)
    os.replace(temporary, path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Recorder:
    """`doorbell record` in the background, its output in a log file."""

    def __init__(self, home: Path, tmp_path: Path, *args: str, **env: str):
        self.log = tmp_path / "record.log"
        self.run_dir = tmp_path / "run"
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "doorbell", "record", *args], stdout=handle,
                stderr=subprocess.STDOUT, cwd=PROJECT, stdin=subprocess.DEVNULL,
                env=clean_env(DOORBELL_HOME=str(home), DOORBELL_RUNTIME_DIR=str(self.run_dir),
                              **env))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, line: str, times: int = 1, timeout_s: float = 30.0) -> bool:
        return wait_until(lambda: self.text().count(line) >= times, timeout_s, self.process)

    def status(self) -> dict:
        try:
            return json.loads((self.run_dir / "recorder.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def terminate(self, timeout_s: float = 10.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def recorders():
    started: list[Recorder] = []
    yield started
    for recorder in started:
        recorder.kill()


def test_a_home_that_does_not_exist_is_one_sentence(tmp_path):
    result = doorbell("record", "--source", "synthetic", home=tmp_path / "nowhere")
    message = assert_one_sentence(result, 1)
    assert "does not exist" in message and "doorbell init" in message


def test_a_home_without_keys_waits_alive_to_systemd_and_stops_on_sigterm(tmp_path,
                                                                         notify_socket,
                                                                         recorders):
    path, sock = notify_socket
    home = tmp_path / "home"
    home.mkdir()
    recorder = Recorder(home, tmp_path, "--source", "synthetic", NOTIFY_SOCKET=str(path),
                        WATCHDOG_USEC="2000000")
    recorders.append(recorder)

    messages = [sock.recv(4096).decode() for _ in range(3)]  # each within 5 s
    assert messages[0] == f"READY=1\nSTATUS={WAITING}"
    assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]  # fed while waiting
    started = time.monotonic()
    assert recorder.terminate() == 0
    assert time.monotonic() - started < 5
    output = recorder.text()
    assert output.count(WAITING) == 1  # said once, not every poll
    assert "Traceback" not in output and not list(home.iterdir())  # it created nothing


def test_recording_starts_as_soon_as_the_keys_appear(home, tmp_path, recorders):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.toml").write_text(SMALL_CAMERA)
    recorder = Recorder(fresh, tmp_path, "--source", "synthetic")
    recorders.append(recorder)
    assert recorder.logged(WAITING), recorder.text()

    shutil.copy(home.root / "recipients.txt", fresh / ".recipients.txt.new")
    os.replace(fresh / ".recipients.txt.new", fresh / "recipients.txt")  # as the viewer does

    assert recorder.logged("recording from", timeout_s=15), recorder.text()
    assert wait_until(lambda: recorder.status().get("frames", 0) > 0, 15), recorder.text()
    status = recorder.status()
    assert status["camera"] == "ok"
    assert status["recipients_sha256"] == sha256(fresh / "recipients.txt")
    assert status["config_sha256"] == sha256(fresh / "config.toml")
    assert recorder.terminate() == 0
    assert "Traceback" not in recorder.text()


def test_a_camera_change_restarts_the_recorder_in_place(home, tmp_path, recorders):
    config = home.root / "config.toml"
    config.write_text(SMALL_CAMERA)
    recorder = Recorder(home.root, tmp_path, "--source", "synthetic")
    recorders.append(recorder)
    assert recorder.logged("recording from"), recorder.text()
    assert wait_until(lambda: recorder.status().get("frames", 0) > 0, 15), recorder.text()

    replace_text(config, SMALL_CAMERA.replace("[camera]", '[camera]\nname = "Back door"'))

    assert recorder.logged("camera settings changed: restarting the recorder to apply them",
                           timeout_s=10), recorder.text()
    # The same process (os.execv keeps the PID, as systemd expects) starts afresh.
    assert recorder.logged("recording from", times=2, timeout_s=30), recorder.text()
    assert wait_until(lambda: recorder.status().get("config_sha256") == sha256(config), 15)
    assert recorder.process.poll() is None
    output = recorder.text()
    assert output.index("restarting: doorbell record --source synthetic") > output.index(
        "camera settings changed")
    assert recorder.terminate() == 0
    assert "Traceback" not in recorder.text()
