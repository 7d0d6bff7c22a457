"""Live reload: the settings and keys the viewer edits take effect without restarting the recorder.

The viewer replaces `config.toml` and `recipients.txt` atomically (write, then rename) while the
recorder runs. The frame loop calls `SettingsWatcher.poll()` after every frame; at most once a
second it stats both files, which costs two system calls, and only a file whose
(inode, mtime, size) changed is read again. A file that does not load (a ConfigError naming
file, line and key; a recipients file without a valid key) is logged in one line and the
settings in force stay; it is not read again until it changes again.

`config_sha256` and `recipients_sha256` are the SHA-256 of the bytes the settings in force came
from (of b"" for a file that is absent): the recorder publishes them in its status, and the
viewer compares them with what it wrote to show "applied".
"""

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from doorbell.config import ConfigError, Settings, load_settings
from doorbell.storage.age import X25519Recipient
from doorbell.storage.home import Home
from doorbell.storage.recipients import read_recipients

log = logging.getLogger("doorbell.recorder")

Stamp = tuple[int, int, int] | None  # (st_ino, st_mtime_ns, st_size); None: no such file
_REREAD: Stamp = (-1, -1, -1)  # matches no file: read it again at the next poll


# The sections a running recorder puts in force by itself; a change anywhere else (camera,
# doorbell button, notifications, the viewer's networks) takes a restart.
LIVE_SECTIONS = ("privacy", "motion", "recording", "retention", "live")


def changed_sections(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """(the sections that differ, those of them only a restart applies)."""
    changed = [section.name for section in dataclasses.fields(new)
               if getattr(new, section.name) != getattr(old, section.name)]
    restart = [name for name in changed if name not in LIVE_SECTIONS]
    if "viewer" in restart and new.viewer.allowed_networks == old.viewer.allowed_networks:
        restart.remove("viewer")  # the recorder uses only the networks from [viewer]
    return changed, restart


def file_stamp(path: Path) -> Stamp:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's bytes, of b"" when it is absent."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Reload:
    """What changed since the last poll; None where nothing (valid) did."""

    settings: Settings | None = None
    recipients: list[X25519Recipient] | None = None


class _WatchedFile:
    """One file: its stamp when last read, and the digest of the version in force."""

    def __init__(self, path: Path, load: Callable[[], object]):
        self.path = path
        self._load = load
        self.stamp: Stamp = _REREAD
        self.sha256 = ""

    def read(self) -> object:
        """Load the file now (raising what `load` raises); digest and stamp follow it."""
        self.stamp = file_stamp(self.path)
        digest = file_sha256(self.path)
        value = self._load()
        if file_stamp(self.path) != self.stamp:
            # Replaced while we read: the digest may be of another version than the value.
            # Read it again at the next poll, which puts the two back in step.
            self.stamp = _REREAD
        self.sha256 = digest
        return value

    def changed(self) -> bool:
        return file_stamp(self.path) != self.stamp


class SettingsWatcher:
    """config.toml and recipients.txt of `home`, read at start and again whenever they change.

    Construction reads both and raises (ConfigError, RecipientsError) as start-up always has.
    """

    def __init__(self, home: Home, clock: Callable[[], float] = time.monotonic,
                 interval_s: float = 1.0):
        self.home = home
        self._clock = clock
        self._interval_s = interval_s
        self._last_poll_s: float | None = None
        self._config = _WatchedFile(home.config_file, lambda: load_settings(home.root))
        self._recipients = _WatchedFile(home.recipients_file,
                                        lambda: read_recipients(home.recipients_file))
        self.settings: Settings = self._config.read()
        self.recipients: list[X25519Recipient] = self._recipients.read()

    @property
    def config_sha256(self) -> str:
        return self._config.sha256

    @property
    def recipients_sha256(self) -> str:
        return self._recipients.sha256

    def poll(self) -> Reload | None:
        """None until a second has passed since the last check; then what changed (if nothing
        did, an empty Reload: the caller's once-a-second tick)."""
        now = self._clock()
        if self._last_poll_s is not None and now - self._last_poll_s < self._interval_s:
            return None
        self._last_poll_s = now
        settings = recipients = None
        if self._config.changed():
            previous = self._config.sha256
            try:
                settings = self._config.read()
            except ConfigError as exc:
                self._config.sha256 = previous
                log.error("config.toml not applied, the recorder keeps its settings: %s", exc)
            else:
                self.settings = settings
        if self._recipients.changed():
            previous = self._recipients.sha256
            try:
                recipients = self._recipients.read()
            except (ValueError, OSError) as exc:  # RecipientsError, or not UTF-8 text
                self._recipients.sha256 = previous
                log.error("recipients.txt not applied, new clips stay encrypted to the %d keys "
                          "in use: %s", len(self.recipients), exc)
            else:
                self.recipients = recipients
        return Reload(settings, recipients)
