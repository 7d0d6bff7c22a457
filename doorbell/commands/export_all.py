"""`doorbell export-all --to DIR`: a backup of everything stored, exactly as stored.

What is copied, into the same layout as the home (so `doorbell verify --home DIR` and
`doorbell audit --verify --home DIR` check the backup, and `age -d` with the recovery key
decrypts any clip in it):

    clips/YYYY/MM/DD/*.age   every sealed clip's video, thumbnail and metadata: ciphertext
    index.sqlite3            a consistent snapshot (SQLite's backup API, the recorder may be
                             writing), replaced whenever it changed
    recipients.txt           the household's public keys, replaced whenever they changed
    audit.jsonl(.head)       the audit log, which only grows: the head first, so the copy's
                             head is never ahead of its log

Nothing is decrypted, and no key is copied: identities/ (private keys), tls/ and config.toml
(which may hold a camera's password) stay on the device. The clip being recorded (a .partial)
is left for the next run.

Resumable: a file already in DIR with the same size and SHA-256 is not copied again; one that
is missing or shorter (and a prefix of the device's) is copied. A clip or audit log in DIR that
differs otherwise is left alone and reported: a backup is never overwritten by a file that may
be the damaged one. Each file is written to a temporary name, fsynced, read back from the disk
(its cached pages dropped first) and compared, then renamed over its final name and the
directory fsynced: DIR never holds half a file.

A file on the device that cannot be read (a failing SD card's bad sector gives EIO) is named,
skipped and the rest copied; the run then ends with one sentence listing what is missing from
the backup and exit status 1. A failure writing DIR stops the run, as before.
"""

import errno
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from doorbell.storage.durable import PARTIAL_SUFFIX, fsync_directory, make_directories
from doorbell.storage.errors import AuditLogCorrupt
from doorbell.storage.home import Home

from ..audit_trail import cli_actor, intact_audit_log
from ..errors import CommandError

BLOCK_BYTES = 1024 * 1024
TEMPORARY_SUFFIX = ".export-tmp"
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


@dataclass
class Outcome:
    copied: list[str] = field(default_factory=list)
    copied_bytes: int = 0
    up_to_date: int = 0
    differing: list[str] = field(default_factory=list)
    in_progress: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (relative, reason)


@dataclass(frozen=True)
class Item:
    relative: str  # the path under the home and under DIR
    source: Path
    replaceable: bool  # may be replaced whole when it differs (not a clip, not the audit log)


class SourceUnreadable(Exception):
    """A file on the device could not be read (not DIR's fault): it is skipped and reported."""

    def __init__(self, relative: str, cause: OSError):
        super().__init__(f"{relative}: {cause.strerror or cause}")
        self.relative = relative
        self.reason = cause.strerror or str(cause)


def _blocks(path: Path, limit_bytes: int | None = None) -> Iterator[bytes]:
    remaining = limit_bytes
    with path.open("rb") as handle:
        while remaining is None or remaining > 0:
            block = handle.read(BLOCK_BYTES if remaining is None else min(BLOCK_BYTES, remaining))
            if not block:
                break
            yield block
            if remaining is not None:
                remaining -= len(block)


def _source_blocks(item: Item, limit_bytes: int | None = None) -> Iterator[bytes]:
    """The device's file, block by block; its read errors (only) become SourceUnreadable."""
    try:
        yield from _blocks(item.source, limit_bytes)
    except OSError as exc:
        raise SourceUnreadable(item.relative, exc) from exc


def _source_size_bytes(item: Item) -> int:
    try:
        return item.source.stat().st_size
    except OSError as exc:
        raise SourceUnreadable(item.relative, exc) from exc


def _sha256(blocks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()


def _items(home: Home, outcome: Outcome) -> list[Item]:
    """What to copy, in copy order: clips oldest first, then the index, keys and audit log."""
    items = []
    if home.clips_dir.is_dir():
        for path in sorted(home.clips_dir.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            if path.name.endswith(PARTIAL_SUFFIX):
                outcome.in_progress += path.name.endswith(".mp4.age" + PARTIAL_SUFFIX)
                continue
            if path.name.endswith(".age"):
                items.append(Item(path.relative_to(home.root).as_posix(), path, False))
    for path, replaceable in ((home.recipients_file, True),
                              (home.audit_file.with_name(home.audit_file.name + ".head"), True),
                              (home.audit_file, False)):
        if path.is_file():
            items.append(Item(path.name, path, replaceable))
    return items


def _state(item: Item, destination: Path) -> str:
    """'missing', 'same', 'grown' (the copy is a shorter prefix) or 'different'."""
    if not destination.exists():
        return "missing"
    have, want = destination.stat().st_size, _source_size_bytes(item)
    if have == want and _sha256(_blocks(destination)) == _sha256(_source_blocks(item)):
        return "same"
    if have < want and _sha256(_blocks(destination)) == _sha256(_source_blocks(item, have)):
        return "grown"
    return "different"


def _temporary(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}{TEMPORARY_SUFFIX}")


def _copy_atomically(item: Item, destination: Path) -> int:
    """Copy to a temporary name, fsync, compare by reading back, rename; return the size."""
    make_directories(destination.parent)
    temporary = _temporary(destination)
    temporary.unlink(missing_ok=True)  # left by an interrupted run
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            for block in _source_blocks(item):
                out.write(block)
                digest.update(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
            # Drop the (now clean) cached pages, so the read-back below comes from the disk.
            os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        if _sha256(_blocks(temporary)) != digest.hexdigest():
            raise OSError(errno.EIO, "the copy read back differs from what was written",
                          str(destination))
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(destination.parent)
    return size


def _snapshot_index(home: Home, destination: Path, outcome: Outcome) -> None:
    """A consistent copy of the index (the recorder may be writing it), replaced if changed."""
    if not home.index_file.is_file():
        return
    make_directories(destination.parent)
    temporary = _temporary(destination)
    temporary.unlink(missing_ok=True)
    try:
        source = sqlite3.connect(f"file:{home.index_file}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(temporary)
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                target.close()
        finally:
            source.close()
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if destination.exists() and \
                _sha256(_blocks(destination)) == _sha256(_blocks(temporary)):
            temporary.unlink()
            outcome.up_to_date += 1
            return
        size = temporary.stat().st_size
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(destination.parent)
    outcome.copied.append(destination.name)
    outcome.copied_bytes += size


def check_target(home: Home, target: Path) -> Path:
    """The resolved target, or CommandError if it is inside the data directory."""
    resolved = target.expanduser().resolve()
    data = home.root.resolve()
    if resolved == data or resolved.is_relative_to(data):
        raise CommandError(f"{target} is inside the data directory {data}: a backup must be "
                           "somewhere else (another disk, a USB stick)")
    if resolved.exists() and not resolved.is_dir():
        raise CommandError(f"{target} is not a directory")
    return resolved


def _free_bytes(directory: Path) -> tuple[int, int]:
    status = os.statvfs(directory)
    return status.f_bavail * status.f_frsize, status.f_frsize


def _human(size_bytes: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} bytes"


def _written_error(exc: OSError, target: Path, outcome: Outcome) -> CommandError:
    done = f"{len(outcome.copied)} file(s) were copied before it"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CommandError(f"{target} is full: {done}; free some space there and run "
                            "export-all again, it carries on where it stopped")
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        reason += f" for {cli_actor().removeprefix('cli:')}, the user this runs as"
    return CommandError(f"cannot write the backup to {target} ({reason}): {done}")


def export_all(home: Home, target: Path) -> Outcome:
    outcome = Outcome()
    items = _items(home, outcome)
    plan = []  # (item, destination, state, size_bytes)
    try:
        make_directories(target)
        for item in items:
            destination = target / item.relative
            try:
                plan.append((item, destination, _state(item, destination),
                             _source_size_bytes(item)))
            except SourceUnreadable as exc:
                outcome.unreadable.append((exc.relative, exc.reason))
        free_bytes, block_bytes = _free_bytes(target)
    except OSError as exc:
        raise _written_error(exc, target, outcome) from None
    needed_bytes = sum(
        -(-size_bytes // block_bytes) * block_bytes
        for item, _destination, state, size_bytes in plan
        if state in ("missing", "grown") or (state == "different" and item.replaceable)
    )
    if home.index_file.is_file():
        needed_bytes += home.index_file.stat().st_size
    if needed_bytes > free_bytes:
        raise CommandError(f"{target} has {_human(free_bytes)} free but this backup needs about "
                           f"{_human(needed_bytes)} more: nothing was copied")
    try:
        for item, destination, state, _size_bytes in plan:
            if state == "same":
                outcome.up_to_date += 1
            elif state == "different" and not item.replaceable:
                outcome.differing.append(item.relative)
            else:
                try:
                    outcome.copied_bytes += _copy_atomically(item, destination)
                except SourceUnreadable as exc:  # a bad sector on the card: the rest goes on
                    outcome.unreadable.append((exc.relative, exc.reason))
                    continue
                outcome.copied.append(item.relative)
        _snapshot_index(home, target / home.index_file.name, outcome)
    except OSError as exc:
        if exc.filename is not None and not str(exc.filename).startswith(str(target)):
            raise  # the device's own file: reported as it is (permissions, a vanished clip)
        raise _written_error(exc, target, outcome) from None
    return outcome


def run(args) -> int:
    home = Home.resolve(args.home)
    if not home.is_initialised():
        raise CommandError(f"{home.root} is not initialised: there is nothing to back up")
    target = check_target(home, Path(args.to))
    try:
        audit = intact_audit_log(home)
    except AuditLogCorrupt:
        audit = None
        print("Note: the audit log is damaged (see 'doorbell audit --verify'), so this export "
              "is not recorded in it; it is copied as it is.")
    if audit is not None:  # before copying, so the backup holds the record of itself
        audit.append(cli_actor(), "export_all", to=str(target))
    outcome = export_all(home, target)
    print(f"Backed up {home.root} to {target}: {len(outcome.copied)} file(s) copied "
          f"({_human(outcome.copied_bytes)}), {outcome.up_to_date} already there and unchanged.")
    if outcome.in_progress:
        print(f"{outcome.in_progress} clip being recorded is left for the next run.")
    print("Everything copied is ciphertext; identities/ (private keys) is not copied: keep "
          "the recovery key (or a member's key) to decrypt this backup.")
    for relative, reason in outcome.unreadable:
        print(f"Could not read {relative} on the device ({reason}): skipped, the rest was "
              "copied.")
    differing = ""
    if outcome.differing:
        differing = (f"{len(outcome.differing)} file(s) in {target} differ from the device's "
                     f"and were left alone (first: {outcome.differing[0]}); check them with "
                     "'doorbell verify --home', move them away and run export-all again")
    if outcome.unreadable:
        raise CommandError(f"{_unreadable_sentence(outcome.unreadable)}"
                           + (f"; also, {differing}" if differing else ""))
    if differing:
        raise CommandError(differing)
    return 0


NAMED_UNREADABLE = 5  # the end sentence names this many; the lines above it name them all


def _unreadable_sentence(unreadable: list[tuple[str, str]]) -> str:
    names = ", ".join(f"{relative} ({reason})" for relative, reason in
                      unreadable[:NAMED_UNREADABLE])
    more = len(unreadable) - NAMED_UNREADABLE
    if more > 0:
        names += f" and {more} more (listed above)"
    return (f"{len(unreadable)} file(s) could not be read on the device and were skipped: "
            f"{names}; everything else was copied (a copy an earlier run made is kept), but the "
            "device's storage may be failing: run 'doorbell verify' and replace the card soon")
