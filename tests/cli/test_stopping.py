"""doorbell/stopping.py: a second signal that arrives while the first one's handler is still
setting the stop event must not deadlock the command (Ctrl-C, then the supervisor's SIGTERM)."""

import subprocess
import sys

from tests.helpers import clean_env

from .conftest import PROJECT

# The main thread holds the event's lock, as the first handler does inside Event.set(), when the
# second signal's handler runs. A handler that set the event again would wait for that lock
# for ever; this one returns.
SCENARIO = """
import os, signal, threading, time
from doorbell.stopping import stop_on_signals

stop = threading.Event()
stop_on_signals(stop)
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.05)
assert stop.is_set()
with stop._cond:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
print("stopped once, second signal ignored")
"""


def test_a_second_signal_during_the_first_ones_handler_does_not_deadlock():
    result = subprocess.run([sys.executable, "-c", SCENARIO], cwd=PROJECT, env=clean_env(),
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert "second signal ignored" in result.stdout
