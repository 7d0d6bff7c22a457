"""systemd's service watchdog, fed by the capture loop only while frames arrive.

Under systemd (deploy/systemd/doorbell-recorder.service: Type=notify, WatchdogSec=) the recorder
says READY=1 once it is set up, then WATCHDOG=1 at most every WatchdogSec/2, and only from the
frame loop: a camera that stops delivering frames, or a loop that hangs, stops the pings and
systemd restarts the recorder. It speaks the sd_notify datagram protocol directly (one AF_UNIX
datagram to $NOTIFY_SOCKET), so it needs no library; outside systemd ($NOTIFY_SOCKET unset)
every call is a no-op.
"""

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("doorbell.recorder")


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):  # an abstract socket
        return "\0" + value[1:]
    return value if value.startswith("/") else None


class SystemdWatchdog:
    def __init__(self, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._interval_s: float | None = None
        watchdog_pid = env.get("WATCHDOG_PID", "")
        for_us = not watchdog_pid or watchdog_pid == str(os.getpid())
        usec = env.get("WATCHDOG_USEC", "")
        if self._address and for_us and usec.isdigit() and int(usec) > 0:
            self._interval_s = int(usec) / 1_000_000 / 2
        self._clock = clock
        self._last_ping_s: float | None = None

    @property
    def enabled(self) -> bool:
        """True when systemd expects watchdog pings from this process."""
        return self._interval_s is not None

    @property
    def ping_interval_s(self) -> float | None:
        """How often systemd wants a ping (WatchdogSec/2), None outside systemd's watchdog."""
        return self._interval_s

    def ready(self, status: str = "recording") -> bool:
        """Tell systemd start-up is complete (Type=notify)."""
        return self._send(f"READY=1\nSTATUS={status}")

    def frame_arrived(self) -> bool:
        """Call once per frame; pings the watchdog at most every WatchdogSec/2."""
        return self.ping()

    def ping(self) -> bool:
        """WATCHDOG=1, at most every WatchdogSec/2: from the frame loop, or while the recorder
        waits for set-up (alive, but with no camera open yet)."""
        if self._interval_s is None:
            return False
        now = self._clock()
        if self._last_ping_s is not None and now - self._last_ping_s < self._interval_s:
            return False
        self._last_ping_s = now
        return self._send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self._send("STOPPING=1")

    def _send(self, message: str) -> bool:
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError as exc:  # systemd will notice the silence; recording goes on meanwhile
            log.warning("cannot notify systemd (%s): %s", message.split("=")[0], exc)
            return False
        return True
