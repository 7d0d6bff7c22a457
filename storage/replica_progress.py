"""progress.json: how far the replicator is, for the hub's status page (replication lag).

Written atomically (tmp + fsync + rename, mode 0640) into the replicator's state directory, at
most once per second, with exactly these keys:

    target               the target's URL (sftp://user@host:port/path: it never has a password)
    host_key_fingerprint the pinned host key, SHA256:...
    last_copy_wall_us    when the last complete pass ended (µs since the epoch, UTC): the
                         replica then held every byte the device had when that pass began;
                         null before the first one
    pending_files        files changed on the device and not yet on the replica
    last_error           one sentence (an unreachable server, a copy left alone), or null
    updated_wall_us      when this file was written

The replicator also writes a heartbeat on the replica itself, for a hub that reads the replica
folder and not this state directory: `replica-heartbeat.json` at the replica's root (uploaded
as `replica-heartbeat.json.tmp`, then renamed over it, so a reader never sees half a file),
after each pass, at most once per HEARTBEAT_INTERVAL_S:

    device_wall_us              the device's wall clock when it was written (µs since the
                                epoch, UTC): how long ago the replicator was last heard from
    last_complete_pass_wall_us  when the last pass ended that left nothing pending, on the
                                same clock: the replica then held every byte the device had
                                when that pass began (the lag is device_wall_us minus this,
                                whatever the hub's own clock says); null before the first one
    pending_files               files the last pass could not bring up to date
"""

import json
import logging
import os
import posixpath
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PROGRESS_FILE_NAME = "progress.json"
FILE_MODE = 0o640
DIRECTORY_MODE = 0o750
MIN_INTERVAL_S = 1.0
HEARTBEAT_FILE_NAME = "replica-heartbeat.json"
HEARTBEAT_INTERVAL_S = 1.0


def wall_us() -> int:
    return time.time_ns() // 1000


class ProgressFile:
    def __init__(self, state_dir: Path, target: str, host_key_fingerprint: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(state_dir) / PROGRESS_FILE_NAME
        self._clock = clock
        self._state = {"target": target, "host_key_fingerprint": host_key_fingerprint,
                       "last_copy_wall_us": None, "pending_files": 0, "last_error": None}
        self._written_at: float | None = None
        self._dirty = True
        self._failed = False

    def pass_complete(self, pending_files: int, error: str | None) -> None:
        self._set(last_copy_wall_us=wall_us(), pending_files=pending_files, last_error=error)

    def failed(self, error: str, pending_files: int | None = None) -> None:
        """A sentence for the status page; `pending_files` None keeps the last count."""
        if pending_files is None:
            self._set(last_error=error)
        else:
            self._set(last_error=error, pending_files=pending_files)

    def _set(self, **values) -> None:
        self._state.update(values)
        self._dirty = True
        self.write_if_due()

    def write_if_due(self) -> None:
        now = self._clock()
        if self._dirty and (self._written_at is None or now - self._written_at >= MIN_INTERVAL_S):
            self.write()

    def write(self) -> None:
        """Write now (also at stop, so the last state is not held back by the 1 s limit)."""
        self._written_at = self._clock()
        self._dirty = False
        data = json.dumps({**self._state, "updated_wall_us": wall_us()}).encode() + b"\n"
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # the umask must not decide who may read it
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._failed:  # said once: the copying matters more than this file
                log.error("cannot write %s: %s", self.path, exc.strerror or exc)
            self._failed = True
            return
        self._failed = False


def write_heartbeat(sftp, remote_root: str, device_wall_us: int,
                    last_complete_pass_wall_us: int | None, pending_files: int) -> None:
    """Upload replica-heartbeat.json to the replica's root, atomically (see the docstring)."""
    data = json.dumps({"device_wall_us": device_wall_us,
                       "last_complete_pass_wall_us": last_complete_pass_wall_us,
                       "pending_files": pending_files}).encode() + b"\n"
    remote = posixpath.join(remote_root, HEARTBEAT_FILE_NAME)
    with sftp.open(remote + ".tmp", "wb") as upload:
        upload.write(data)
    sftp.posix_rename(remote + ".tmp", remote)
