"""The replicator: copies the home's ciphertext to a paired SFTP server, and never deletes there.

What is copied (paths relative to the home, mirrored under the target's path):

* append-only files, copied by appending: every file under `clips/` (a clip being recorded is
  its `.partial` video, which grows as the writer fsyncs) and `audit.jsonl`;
* small files replaced whole when their content changes (uploaded under a `.upload` name, then
  renamed): `recipients.txt`, `audit.jsonl.head`, `identities/*` (passphrase-wrapped).

Offsets: an append starts at the size the server reports for its copy (stat), never at a size
remembered here, so a connection lost mid-write cannot leave a gap or a duplicate. Before
appending, the last bytes of the copy are compared with the same bytes of the source
(`OVERLAP_BYTES`); a copy that is longer than the source or differs there is left alone and
reported (`Conflict`). When a clip is sealed its `.partial` video is renamed `...mp4.age`; the
copy's `.partial` is renamed on the server likewise and then completed.

The device's retention and deletions never reach the replica, and a partial the device abandons
stays there as a `.partial` (its authenticated prefix is what the recovery key decrypts). The
replica has its own retention (storage.replica_retention): the only deletions on the server.

Backlog: after an outage, catch-up is the growing clip first, then oldest first. Memory does not
grow with what is pending: files are walked one directory listing at a time (never a list of
every file), bytes are streamed in COPY_BLOCK_BYTES blocks, and what is remembered per file is
its (size, mtime) after the last copy, for the files on the device now (the device's own
retention bounds them). The replicator only reads the home: it never holds a lock the recorder
waits for.
"""

import errno
import logging
import os
import posixpath
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .clipid import VIDEO_SUFFIX
from .durable import PARTIAL_SUFFIX
from .errors import ReplicaCopyConflict, SourceUnreadable
from .replica_progress import HEARTBEAT_INTERVAL_S, write_heartbeat
from .replica_retention import ReplicaRetention, RetentionResult, age_reference_us, clip_id_of

log = logging.getLogger(__name__)

OVERLAP_BYTES = 4096
SETTLE_AFTER_NS = 2_000_000_000
COPY_BLOCK_BYTES = 256 * 1024
UPLOAD_SUFFIX = ".upload"
SMALL_FILES = ("recipients.txt", "audit.jsonl.head")
APPEND_FILES = ("audit.jsonl",)
SMALL_DIRS = ("identities",)
APPEND_DIRS = ("clips",)
UNREADABLE_RETRY_S = 30.0  # a file the card could not read is tried again after this ...
UNREADABLE_RETRY_MAX_S = 3600.0  # ... doubling each time it fails, up to this


@dataclass(frozen=True, slots=True)
class SourceFile:
    relative: str  # POSIX path relative to the home
    path: Path
    append_only: bool
    day: str | None = None  # clips/YYYY/MM/DD of a sealed clip's file
    day_mtime_ns: int | None = None  # that directory's mtime before it was listed


@dataclass(slots=True)
class Conflict:
    relative: str
    reason: str
    sentence: str = ""  # what the log and progress.json say; "<relative>: <reason>" if empty

    def __post_init__(self) -> None:
        if not self.sentence:
            self.sentence = f"{self.relative}: {self.reason}"


@dataclass(frozen=True, slots=True)
class _Unreadable:
    sentence: str
    delay_s: float
    retry_at_s: float  # time.monotonic()


class _LocalFile:
    """A file of the home opened for reading; an error reading it (other than its being gone)
    is SourceUnreadable, never mistaken for the server going away."""

    def __init__(self, source: SourceFile) -> None:
        self._source = source
        self._file = self._guard(open, source.path, "rb")

    def _guard(self, call, *args):
        try:
            return call(*args)
        except (FileNotFoundError, PermissionError):
            raise  # gone (sealed, deleted) or not ours to read: reported as before
        except OSError as exc:
            raise SourceUnreadable(self._source.relative, exc) from exc

    def read(self, size: int) -> bytes:
        return self._guard(self._file.read, size)

    def seek(self, position: int) -> None:
        self._guard(self._file.seek, position)

    def size_bytes(self) -> int:
        return self._guard(os.fstat, self._file.fileno()).st_size

    def __enter__(self) -> "_LocalFile":
        return self

    def __exit__(self, *exc_info) -> None:
        self._file.close()


@dataclass(slots=True)
class PassResult:
    copied_bytes: int = 0
    files_changed: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    retention: RetentionResult | None = None

    @property
    def pending_files(self) -> int:
        """Files this pass could not bring up to date (each is retried next pass)."""
        return len(self.conflicts)

    def error_sentence(self) -> str | None:
        """For progress.json's last_error: the first file not copied, and how many more."""
        if not self.conflicts:
            return None
        more = len(self.conflicts) - 1
        return self.conflicts[0].sentence + (f" ({more} more file(s) not copied)" if more else "")


def source_files(home_root: Path, settled: Mapping[str, int] | None = None,
                 unlistable: list[tuple[Path, OSError]] | None = None) -> Iterator[SourceFile]:
    """Every file to replicate, growing `.partial` videos first, then the small files, then the
    clips oldest first (clip paths are dated, clips/YYYY/MM/DD/<start time>-..., so path order
    is time order). A generator: one directory's listing is held at a time.

    `settled` maps day directories (clips/YYYY/MM/DD) to an mtime: a day whose directory still
    has that mtime is not listed (its files were all copied then, and any file made, renamed or
    removed in it since would have changed the mtime).

    A directory the card cannot list (an I/O error) is skipped, and (it, the error) appended to
    `unlistable` if given: the rest is still listed."""
    settled = settled or {}
    days = [(relative, path, mtime_ns) for relative, path, mtime_ns
            in _clip_days(home_root, unlistable) if settled.get(relative) != mtime_ns]
    for relative, path, _ in days:
        for name in _sorted_names(path, unlistable):
            if name.endswith(VIDEO_SUFFIX + PARTIAL_SUFFIX):
                yield SourceFile(f"{relative}/{name}", path / name, True)
    for name in SMALL_FILES + APPEND_FILES:
        path = home_root / name
        if path.is_file():
            yield SourceFile(name, path, name in APPEND_FILES)
    for directory in SMALL_DIRS:
        for name in _sorted_names(home_root / directory, unlistable):
            path = home_root / directory / name
            if not name.endswith((UPLOAD_SUFFIX, PARTIAL_SUFFIX)) and path.is_file():
                yield SourceFile(f"{directory}/{name}", path, False)
    for relative, path, mtime_ns in days:
        for name in _sorted_names(path):  # an error listing it was noted above
            if not name.endswith((UPLOAD_SUFFIX, PARTIAL_SUFFIX)):
                yield SourceFile(f"{relative}/{name}", path / name, True, relative, mtime_ns)


def _sorted_names(directory: Path,
                  unlistable: list[tuple[Path, OSError]] | None = None) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(directory)
                      if entry.is_file(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    except OSError as exc:
        if unlistable is not None:
            unlistable.append((directory, exc))
        return []


def _sorted_directories(directory: Path, digits: int,
                        unlistable: list[tuple[Path, OSError]] | None = None) -> list[Path]:
    try:
        return sorted(Path(entry.path) for entry in os.scandir(directory)
                      if len(entry.name) == digits and entry.name.isdigit()
                      and entry.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    except OSError as exc:
        if unlistable is not None:
            unlistable.append((directory, exc))
        return []


def _newest_clip_id(home_root: Path) -> str | None:
    """The newest clip's id on the device (the newest day's listing only), None if none."""
    for year in reversed(_sorted_directories(home_root / APPEND_DIRS[0], 4)):
        for month in reversed(_sorted_directories(year, 2)):
            for day in reversed(_sorted_directories(month, 2)):
                ids = [clip_id for name in _sorted_names(day)
                       if (clip_id := clip_id_of(name)) is not None]
                if ids:
                    return max(ids)
    return None


def _clip_days(home_root: Path, unlistable: list[tuple[Path, OSError]] | None = None
               ) -> Iterator[tuple[str, Path, int]]:
    """(clips/YYYY/MM/DD, its path, its mtime_ns), oldest day first."""
    for year in _sorted_directories(home_root / APPEND_DIRS[0], 4, unlistable):
        for month in _sorted_directories(year, 2, unlistable):
            for day in _sorted_directories(month, 2, unlistable):
                try:
                    mtime_ns = day.stat().st_mtime_ns
                except (FileNotFoundError, NotADirectoryError, PermissionError):
                    continue
                except OSError as exc:
                    if unlistable is not None:
                        unlistable.append((day, exc))
                    continue
                yield day.relative_to(home_root).as_posix(), day, mtime_ns


class Replicator:
    """One pass over the home copies what changed since the last pass over `sftp` (a paramiko
    SFTPClient). `_copied` holds each file's (size, mtime) after its last copy, for the files
    on the device now, so an unchanged file costs a local stat only, and a day directory whose
    files were all copied and whose mtime has not changed since is not even listed (`_settled`):
    a pass costs about one stat per day on the device plus the files of the days that change.
    After a reconnect every file is checked against the server once (`forget_remote_state`)."""

    def __init__(self, home_root: Path, remote_root: str,
                 retention: ReplicaRetention | None = None,
                 clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
                 retention_interval_s: float = 60.0,
                 unreadable_retry_s: float = UNREADABLE_RETRY_S,
                 monotonic_s: Callable[[], float] = time.monotonic,
                 clock_synchronised: Callable[[], bool | None] = lambda: None) -> None:
        self.home_root = Path(home_root)
        self.remote_root = remote_root.rstrip("/") or "/"
        self.retention = retention or ReplicaRetention()
        self._clock_us = clock_us
        self._retention_interval_us = int(retention_interval_s * 1e6)
        self._retention_due_us: int | None = None  # at once after connecting
        self._copied: dict[str, tuple[int, int]] = {}
        self._checked: set[str] = set()
        self._settled: dict[str, int] = {}  # clips/YYYY/MM/DD -> its mtime when all was copied
        self._verify_all = True  # the first pass of a connection lists every day
        # append-only files whose last append failed: relative path -> where it started
        self._unsure: dict[str, int] = {}
        self._made_dirs: set[str] = set()
        self._unreadable_retry_s = unreadable_retry_s
        self._monotonic_s = monotonic_s
        self._clock_synchronised = clock_synchronised  # False: known wrong; None: cannot tell
        self._newest_clip: str | None = None
        self._clock_trusted = True
        self._age_reference_us: int | None = None
        self._skips_logged: set[str] = set()  # clips said not to be copied (logged once)
        self._heartbeat_at_s: float | None = None  # monotonic; None: at the next pass
        self._last_complete_pass_wall_us: int | None = None
        self._unreadable: dict[str, _Unreadable] = {}  # relative path -> when to try again

    def forget_remote_state(self) -> None:
        self._checked.clear()
        self._made_dirs.clear()
        self._retention_due_us = None
        self._verify_all = True
        self._heartbeat_at_s = None

    def pending_files(self) -> int:
        """Files changed on the device since their last copy (local stats only: no server)."""
        self._refresh_clock()
        pending = 0
        for source in source_files(self.home_root, self._settled):
            try:
                info = source.path.stat()
            except OSError:
                continue
            if self._copied.get(source.relative) != (info.st_size, info.st_mtime_ns) and \
                    self._not_copied_because(source) is None:
                pending += 1
        return pending

    def _not_copied_because(self, source: SourceFile) -> str | None:
        """Why the replica's own retention does not want this file, None if it does."""
        if not source.relative.startswith("clips/"):
            return None
        clip_id = clip_id_of(source.path.name)
        if clip_id is None:
            return None
        return self.retention.not_copied_because(clip_id, self._age_reference_us)

    def _refresh_clock(self) -> None:
        """The device's clock and whether it can be trusted, once per pass (see
        storage.replica_retention: ages count back from the newest clip, not from a clock that
        jumped ahead, and nothing is aged while the clock is unsynchronised)."""
        self._newest_clip = _newest_clip_id(self.home_root)
        self._clock_trusted = self._clock_synchronised() is not False
        self._age_reference_us = age_reference_us(self._clock_us(), self._newest_clip,
                                                  self._clock_trusted)

    def run_pass(self, sftp) -> PassResult:
        result = PassResult()
        self._refresh_clock()
        if self._verify_all:
            self._skips_logged.clear()  # every day is listed again: said again, once each
        copied: dict[str, tuple[int, int]] = {}
        growing: set[str] = set()
        days: dict[str, int | None] = {}  # listed this pass -> mtime, None if not all copied
        settled = {} if self._verify_all else self._settled
        unlistable: list[tuple[Path, OSError]] = []
        for source in source_files(self.home_root, settled, unlistable):
            if source.relative.endswith(PARTIAL_SUFFIX):
                growing.add(clip_id_of(source.path.name) or "")
                days[_day_of(source.relative)] = None  # it grows without touching the mtime
            if source.day is not None:
                days.setdefault(source.day, source.day_mtime_ns)
            if not self._copy(sftp, source, copied, result) and source.day is not None:
                days[source.day] = None
        for directory, exc in unlistable:  # its files are not copied, the rest are
            relative = directory.relative_to(self.home_root).as_posix()
            result.conflicts.append(Conflict(relative, "unlistable", (
                f"cannot list {relative} on the card: {exc.strerror or exc}")))
        # Files and days gone from the device are forgotten; a day left unlisted keeps its
        # marks.
        unlisted = {day: mtime for day, mtime in settled.items()
                    if day not in days and (self.home_root / day).is_dir()}
        self._copied = {relative: mark for relative, mark in self._copied.items()
                        if relative in copied or _day_of(relative) in unlisted} | copied
        # A day is settled when all its files were copied and its mtime is old enough that a
        # file made after the listing cannot share it (the clock ticks coarsely).
        old_enough_ns = time.time_ns() - SETTLE_AFTER_NS
        self._settled = unlisted | {day: mtime for day, mtime in days.items()
                                    if mtime is not None and mtime < old_enough_ns}
        self._verify_all = False
        self._unreadable = {relative: waiting for relative, waiting in self._unreadable.items()
                            if not _gone(self.home_root / relative)}
        now_us = self._clock_us()
        if self._retention_due_us is None or now_us >= self._retention_due_us:
            self._retention_due_us = now_us + self._retention_interval_us
            result.retention = self.retention.apply(sftp, self._remote("clips"), now_us,
                                                    growing, self._newest_clip,
                                                    self._clock_trusted)
            for clip_id in result.retention.deleted_clips:
                log.info("replica retention: deleted clip %s on the replica", clip_id)
        self._beat(sftp, result)
        return result

    def _beat(self, sftp, result: PassResult) -> None:
        """replica-heartbeat.json on the replica (storage.replica_progress), after a pass."""
        ended_us = self._clock_us()
        if result.pending_files == 0:
            self._last_complete_pass_wall_us = ended_us
        now_s = self._monotonic_s()
        if self._heartbeat_at_s is not None and now_s - self._heartbeat_at_s < \
                HEARTBEAT_INTERVAL_S:
            return
        self._heartbeat_at_s = now_s
        self._make_dirs(sftp, self.remote_root)
        write_heartbeat(sftp, self.remote_root, ended_us, self._last_complete_pass_wall_us,
                        result.pending_files)

    def _copy(self, sftp, source: SourceFile, copied: dict[str, tuple[int, int]],
              result: PassResult) -> bool:
        """Bring one file up to date on the server; False if it is not (retried next pass)."""
        waiting = self._unreadable.get(source.relative)
        if waiting is not None and self._monotonic_s() < waiting.retry_at_s:
            result.conflicts.append(Conflict(source.relative, "unreadable", waiting.sentence))
            return False
        try:
            info = source.path.stat()
        except (FileNotFoundError, PermissionError):
            return False  # renamed (sealed) or deleted since the scan: the next pass sees it
        except OSError as exc:
            self._unreadable_now(SourceUnreadable(source.relative, exc), result)
            return False
        mark = (info.st_size, info.st_mtime_ns)
        if self._copied.get(source.relative) == mark and source.relative in self._checked:
            copied[source.relative] = mark
            return True
        if (reason := self._not_copied_because(source)) is not None:
            clip_id = clip_id_of(source.path.name)
            if clip_id not in self._skips_logged and not reason.endswith("deleted it"):
                log.info("replica: not copying clip %s: %s", clip_id, reason)
            self._skips_logged.add(clip_id)
            return True  # outside the replica's own retention: it would be deleted there
        try:
            changed = (self._append(sftp, source) if source.append_only
                       else self._replace(sftp, source))
        except FileNotFoundError:
            return False
        except SourceUnreadable as exc:
            self._unreadable_now(exc, result)
            return False
        except PermissionError as exc:  # a file this user may not read (or write there)
            result.conflicts.append(Conflict(source.relative, f"not copied: {exc}"))
            return False
        except ReplicaCopyConflict as exc:
            result.conflicts.append(Conflict(source.relative, str(exc)))
            return False
        if self._unreadable.pop(source.relative, None) is not None:
            log.warning("replica: %s could be read again and is copied", source.relative)
        copied[source.relative] = mark
        self._checked.add(source.relative)
        if changed:
            result.copied_bytes += changed
            result.files_changed += 1
        return True

    def _unreadable_now(self, exc: SourceUnreadable, result: PassResult) -> None:
        """Skip a file the card cannot read; retry it after UNREADABLE_RETRY_S, doubling up to
        UNREADABLE_RETRY_MAX_S (a failing card is not hammered, a passing glitch heals)."""
        before = self._unreadable.get(exc.relative)
        delay_s = self._unreadable_retry_s if before is None else \
            min(before.delay_s * 2, UNREADABLE_RETRY_MAX_S)
        self._unreadable[exc.relative] = _Unreadable(exc.sentence, delay_s,
                                                     self._monotonic_s() + delay_s)
        result.conflicts.append(Conflict(exc.relative, "unreadable", exc.sentence))

    def _remote(self, relative: str) -> str:
        return posixpath.join(self.remote_root, relative)

    def _make_dirs(self, sftp, remote_dir: str) -> None:
        missing = []
        while remote_dir not in self._made_dirs and remote_dir not in ("", "/"):
            try:
                if stat.S_ISDIR(sftp.stat(remote_dir).st_mode):
                    break
            except FileNotFoundError:
                missing.append(remote_dir)
            remote_dir = posixpath.dirname(remote_dir)
        for directory in reversed(missing):
            try:
                sftp.mkdir(directory)
            except OSError:
                if not stat.S_ISDIR(sftp.stat(directory).st_mode):
                    raise
            self._made_dirs.add(directory)

    def _remote_size(self, sftp, remote: str) -> int | None:
        try:
            return sftp.stat(remote).st_size
        except FileNotFoundError:
            return None

    def _append(self, sftp, source: SourceFile) -> int:
        remote = self._remote(source.relative)
        self._make_dirs(sftp, posixpath.dirname(remote))
        # Writes are pipelined (no round trip per 32 KiB): if an append failed, the server may
        # have taken a later write after refusing an earlier one (a full disk freed meanwhile),
        # so nothing past where that append started is trusted; the copy is cut back there
        # (under its .partial name too, if the clip was sealed since) before anything else.
        key = source.relative.removesuffix(PARTIAL_SUFFIX)
        unsure_at = self._unsure.get(key)
        offset = self._remote_size(sftp, remote)
        if offset is None and not source.relative.endswith(PARTIAL_SUFFIX):
            # a sealed clip whose growing copy is on the server under its .partial name
            partial = remote + PARTIAL_SUFFIX
            partial_size = self._remote_size(sftp, partial)
            if partial_size is not None:
                if unsure_at is not None and partial_size > unsure_at:
                    sftp.truncate(partial, unsure_at)
                    partial_size = unsure_at
                self._check_overlap(sftp, partial, source, partial_size)
                sftp.posix_rename(partial, remote)
                offset = self._remote_size(sftp, remote)
        if offset is not None and unsure_at is not None and offset > unsure_at:
            sftp.truncate(remote, unsure_at)
            offset = unsure_at
        with _LocalFile(source) as local:
            if offset is not None:
                self._check_overlap(sftp, remote, source, offset, local)
            local.seek(offset or 0)
            copied = 0
            self._unsure[key] = min(offset or 0, unsure_at if unsure_at is not None else 1 << 62)
            with sftp.open(remote, "r+b" if offset is not None else "wb") as copy:
                copy.set_pipelined(True)  # errors surface at close, which waits for every ack
                copy.seek(offset or 0)
                while block := local.read(COPY_BLOCK_BYTES):
                    copy.write(block)
                    copied += len(block)
            del self._unsure[key]  # closed: every write acknowledged
        return copied

    def _check_overlap(self, sftp, remote: str, source: SourceFile, offset: int,
                       local: "_LocalFile | None" = None) -> None:
        if local is None:
            with _LocalFile(source) as opened:
                self._check_overlap(sftp, remote, source, offset, opened)
            return
        local_size = local.size_bytes()
        if offset > local_size:
            raise ReplicaCopyConflict(f"the replica's copy is {offset} bytes, the source only "
                                 f"{local_size}: left alone")
        start = max(0, offset - OVERLAP_BYTES)
        if start == offset:
            return
        with sftp.open(remote, "rb") as copy:
            copy.seek(start)
            theirs = copy.read(offset - start)
        local.seek(start)
        ours = local.read(offset - start)
        if theirs != ours:
            raise ReplicaCopyConflict(f"the replica's copy differs from the source before byte "
                                 f"{offset}: left alone")

    def _replace(self, sftp, source: SourceFile) -> int:
        with _LocalFile(source) as local:
            data = local.read(-1)
        remote = self._remote(source.relative)
        self._make_dirs(sftp, posixpath.dirname(remote))
        # The server's copy is compared only if its size matches, and never read past one byte
        # more than ours: a huge file planted there costs a stat, not memory.
        if self._remote_size(sftp, remote) == len(data):
            with sftp.open(remote, "rb") as copy:
                if copy.read(len(data) + 1) == data:
                    return 0
        upload = remote + UPLOAD_SUFFIX
        with sftp.open(upload, "wb") as copy:
            copy.write(data)
        sftp.posix_rename(upload, remote)
        return len(data)


def run_forever(home_root: Path, remote_root: str, connect: Callable[[], object],
                poll_interval_s: float = 0.5, retry_interval_s: float = 1.0,
                should_stop: Callable[[], bool] = lambda: False,
                on_pass: Callable[[PassResult], None] = lambda result: None,
                on_error: Callable[[str, int], None] = lambda sentence, pending: None,
                connection_errors: tuple[type[BaseException], ...] = (OSError, EOFError),
                retention: ReplicaRetention | None = None,
                retention_interval_s: float = 60.0,
                unreadable_retry_s: float = UNREADABLE_RETRY_S,
                clock_synchronised: Callable[[], bool | None] = lambda: None) -> None:
    """Passes every `poll_interval_s` over the SFTP client `connect()` returns; on a lost
    connection, reconnect every `retry_interval_s` and carry on from the server's sizes.
    `connection_errors` are the exceptions that mean the server went away (the SSH library's
    own included); anything else, a changed host key for one, ends the loop. `on_error` gets
    one sentence and the number of files waiting, at every failed connection attempt. The
    replica's retention runs after the first pass of each connection, then every
    `retention_interval_s`. A file the card cannot read is skipped (one sentence in the log
    and in the pass's conflicts) and retried after `unreadable_retry_s`, doubling.
    `clock_synchronised` (doorbell.clock_sync's) says whether the wall clock can be trusted
    for the replica's age retention."""
    replicator = Replicator(home_root, remote_root, retention,
                            retention_interval_s=retention_interval_s,
                            unreadable_retry_s=unreadable_retry_s,
                            clock_synchronised=clock_synchronised)
    reported: set[str] = set()
    while not should_stop():
        try:
            sftp = connect()
        except connection_errors as exc:
            log.warning("replica unreachable: %s", exc)
            on_error(f"the replica is unreachable: {exc}", replicator.pending_files())
            _sleep(retry_interval_s, should_stop)
            continue
        replicator.forget_remote_state()
        try:
            for _ in _ticks(poll_interval_s, should_stop):
                result = replicator.run_pass(sftp)
                for conflict in result.conflicts:
                    if conflict.relative not in reported:
                        log.error("replica: %s", conflict.sentence)
                # said once while it lasts, again if it comes back after being copied
                reported = {conflict.relative for conflict in result.conflicts}
                on_pass(result)
        except connection_errors as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                log.error("replica full: %s", exc)
                sentence = f"the replica server is full: {exc}"
            else:
                log.warning("replica connection lost: %s", exc)
                sentence = f"the connection to the replica was lost: {exc}"
            on_error(sentence, replicator.pending_files())
        finally:
            _close(sftp)
        _sleep(retry_interval_s, should_stop)


def _gone(path: Path) -> bool:
    """Whether the file is no longer there (an error other than its absence: still there)."""
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _day_of(relative: str) -> str:
    return relative.rpartition("/")[0]


def _ticks(interval_s: float, should_stop: Callable[[], bool]) -> Iterator[None]:
    while not should_stop():
        started = time.monotonic()
        yield
        _sleep(interval_s - (time.monotonic() - started), should_stop)


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not should_stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))


def _close(sftp) -> None:
    try:
        sftp.close()
        channel = sftp.get_channel()
        if channel is not None:
            channel.get_transport().close()
    except Exception as exc:  # noqa: BLE001 - closing a dead connection may fail any way
        log.debug("closing the replica connection: %s", exc)
