"""`doorbell run` and `doorbell demo` start the recorder and the viewer as two processes.

They stay two processes (the recorder holds no key; the viewer never touches the camera) even
when one command starts both. A recorder that exits is restarted with back-off; if the viewer
exits, or on SIGTERM/SIGINT, both are stopped.
"""

import subprocess
import sys
import threading
import time

from .stopping import stop_on_signals


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "doorbell", *args])


def supervise(record_args: list[str], serve_args: list[str]) -> int:
    stop = threading.Event()
    stop_on_signals(stop)
    recorder = _start(["record", *record_args])
    viewer = _start(["serve", *serve_args])
    backoff_s = 1.0
    exit_code = 0
    try:
        while not stop.wait(0.5):
            if viewer.poll() is not None:
                print(f"doorbell: the viewer stopped (exit {viewer.returncode}).", file=sys.stderr)
                exit_code = 1
                break
            if recorder.poll() is not None:
                print(f"doorbell: the recorder stopped (exit {recorder.returncode}); restarting "
                      f"in {backoff_s:.0f} s.", file=sys.stderr)
                if stop.wait(backoff_s):
                    break
                backoff_s = min(backoff_s * 2, 60.0)
                started = time.monotonic()
                recorder = _start(["record", *record_args])
                if time.monotonic() - started > 60:
                    backoff_s = 1.0
    finally:
        for process in (recorder, viewer):
            if process.poll() is None:
                process.terminate()
        for process in (recorder, viewer):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    return exit_code
