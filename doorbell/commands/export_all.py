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
"""

import errno
import hashlib
import os
import sqlite3
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


@dataclass(frozen=True)
class Item:
    relative: str  # the path under the home and under DIR
    source: Path
    replaceable: bool  # may be replaced whole when it differs (not a clip, not the audit log)


def _sha256(path: Path, limit_bytes: int | None = None) -> str:
    digest = hashlib.sha256()
    remaining = limit_bytes
    with path.open("rb") as handle:
        while remaining is None or remaining > 0:
            block = handle.read(BLOCK_BYTES if remaining is None else min(BLOCK_BYTES, remaining))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
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
    have, want = destination.stat().st_size, item.source.stat().st_size
    if have == want and _sha256(destination) == _sha256(item.source):
        return "same"
    if have < want and _sha256(destination) == _sha256(item.source, have):
        return "grown"
    return "different"


def _temporary(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}{TEMPORARY_SUFFIX}")


def _copy_atomically(source: Path, destination: Path) -> int:
    """Copy to a temporary name, fsync, compare by reading back, rename; return the size."""
    make_directories(destination.parent)
    temporary = _temporary(destination)
    temporary.unlink(missing_ok=True)  # left by an interrupted run
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        with os.fdopen(fd, "wb") as out, source.open("rb") as handle:
            while block := handle.read(BLOCK_BYTES):
                out.write(block)
                digest.update(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
            # Drop the (now clean) cached pages, so the read-back below comes from the disk.
            os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        if _sha256(temporary) != digest.hexdigest():
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
        if destination.exists() and _sha256(destination) == _sha256(temporary):
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
    try:
        make_directories(target)
        plan = [(item, target / item.relative) for item in items]
        states = [_state(item, destination) for item, destination in plan]
        free_bytes, block_bytes = _free_bytes(target)
    except OSError as exc:
        raise _written_error(exc, target, outcome) from None
    needed_bytes = sum(
        -(-item.source.stat().st_size // block_bytes) * block_bytes
        for (item, _destination), state in zip(plan, states, strict=True)
        if state in ("missing", "grown") or (state == "different" and item.replaceable)
    )
    if home.index_file.is_file():
        needed_bytes += home.index_file.stat().st_size
    if needed_bytes > free_bytes:
        raise CommandError(f"{target} has {_human(free_bytes)} free but this backup needs about "
                           f"{_human(needed_bytes)} more: nothing was copied")
    try:
        for (item, destination), state in zip(plan, states, strict=True):
            if state == "same":
                outcome.up_to_date += 1
            elif state == "different" and not item.replaceable:
                outcome.differing.append(item.relative)
            else:
                outcome.copied_bytes += _copy_atomically(item.source, destination)
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
    if outcome.differing:
        raise CommandError(f"{len(outcome.differing)} file(s) in {target} differ from the "
                           f"device's and were left alone (first: {outcome.differing[0]}); "
                           "check them with 'doorbell verify --home', move them away and run "
                           "export-all again")
    return 0
