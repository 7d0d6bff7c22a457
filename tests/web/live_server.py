"""A real viewer process for tests: `Server` runs a command (`doorbell serve`, gunicorn) with
its output in a log file; `request` sends one HTTP request on a connection and reads the body.
Used by test_tls_and_serve and test_forwarded."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, args: list[str], log: Path, env: dict):
        self._log = log.open("wb")
        self.log_path = log
        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=PROJECT, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, host: str, port: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"the server did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


def request(connection, method: str, path: str, headers: dict | None = None,
             body: bytes | None = None):
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()
