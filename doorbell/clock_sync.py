"""Is the wall clock right yet? The recorder names and dates clips by it.

A Raspberry Pi has no battery-backed clock: until NTP (systemd-timesyncd, chrony) sets it after
boot, the time is whatever fake-hwclock saved at the last shutdown, or 1970. So shortly after
boot the recorder waits, for a bounded time, for the clock to be synchronised, then records
anyway; clips recorded before synchronisation are marked in the audit log and in the index,
and retention ages them from when the clock was set (see record.py and camera.upkeep.Retention,
which also catches a clock jumping by more than a day while recording).

Two ways to tell, the first that answers wins:
 * the kernel's own flag: adjtimex(2) (read only, modes 0) reports TIME_ERROR while STA_UNSYNC
   is set, which every NTP client clears once it disciplines the clock. The recorder's sandbox
   filters @clock system calls, so there it fails with EPERM and:
 * systemd-timesyncd's marker, /run/systemd/timesync/synchronized (it creates it on sync).
Neither answering (no timesyncd, adjtimex refused) means "cannot tell": then nobody waits.
"""

import ctypes
import errno
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("doorbell.recorder")

TIMESYNC_MARKER = Path("/run/systemd/timesync/synchronized")
# A recorder starting this long after boot does not wait: by then NTP had its chance (a clock
# still unsynchronised stays so, e.g. a home network without a time server).
WAIT_UNTIL_UPTIME_S = 180.0
POLL_S = 1.0
_TIME_ERROR = 5  # adjtimex's return value while the clock is unsynchronised
_STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):  # struct timex, <sys/timex.h> (Linux, 64-bit and 32-bit)
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_padding", ctypes.c_int * 11),
    ]


def kernel_clock_synchronised() -> bool | None:
    """The kernel's view (adjtimex, read only); None if the call is refused or missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # this process's own C library
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    timex = _Timex()  # modes 0: read, change nothing
    state = adjtimex(ctypes.byref(timex))
    if state == -1:
        if ctypes.get_errno() not in (errno.EPERM, errno.ENOSYS, errno.EACCES):
            log.debug("adjtimex failed: errno %d", ctypes.get_errno())
        return None
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def clock_synchronised(marker: Path = TIMESYNC_MARKER) -> bool | None:
    """True once synchronised, False while not, None if this system cannot tell."""
    kernel = kernel_clock_synchronised()
    if kernel is not None:
        return kernel
    if marker.exists():
        return True
    return False if marker.parent.is_dir() else None  # timesyncd runs but has not synced yet


def uptime_s() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def wait_for_clock_sync(stop: threading.Event, keep_alive: Callable[[], None],
                        probe: Callable[[], bool | None] = clock_synchronised,
                        until_uptime_s: float = WAIT_UNTIL_UPTIME_S,
                        poll_s: float = POLL_S) -> tuple[bool | None, float]:
    """Wait while the clock is not synchronised, until `until_uptime_s` after boot at most.

    Returns (synchronised: True, False or None if it cannot tell, seconds waited).
    `keep_alive` is called while waiting (the systemd watchdog)."""
    started = time.monotonic()
    state = probe()
    if state is False and uptime_s() < until_uptime_s:
        log.info("waiting for the clock to be synchronised (NTP) before recording: at most "
                 "%.0f s more", until_uptime_s - uptime_s())
        while state is False and uptime_s() < until_uptime_s:
            keep_alive()
            if stop.wait(poll_s):
                break
            state = probe()
    return state, time.monotonic() - started


class SyncWatcher:
    """After recording started with the clock unsynchronised: call `on_sync` once it is."""

    def __init__(self, stop: threading.Event, on_sync: Callable[[], None],
                 probe: Callable[[], bool | None] = clock_synchronised, poll_s: float = 5.0):
        self._stop, self._on_sync, self._probe, self._poll_s = stop, on_sync, probe, poll_s
        self._thread = threading.Thread(target=self._run, name="clock-sync", daemon=True)

    def start(self) -> "SyncWatcher":
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            if self._probe():
                try:
                    self._on_sync()
                except Exception:  # the recording goes on; the log says what went wrong
                    log.exception("could not record that the clock is now synchronised")
                return
