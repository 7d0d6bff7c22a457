"""Stopping a long-running command on SIGTERM or SIGINT, safely.

A Python signal handler runs in the main thread between two bytecodes, which may be inside the
handler of the signal before it. Ctrl-C in a terminal signals the whole process group, and
`doorbell demo`'s supervisor then sends SIGTERM as well: the second handler ran inside the
first one's `Event.set()`, whose lock is not re-entrant, and the recorder hung until it was
killed. So the handler sets the event on the first signal only.
"""

import signal
import threading


def stop_on_signals(stop: threading.Event,
                    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set `stop` on the first of `signals`; later ones change nothing (and take no lock)."""
    seen: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        seen.append(signum)  # atomic: no lock, unlike Event.set()
        if len(seen) == 1:
            stop.set()

    for signum in signals:
        signal.signal(signum, on_signal)
