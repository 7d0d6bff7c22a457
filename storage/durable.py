"""The durability steps every stored file goes through, written once.

Invariants (Moonfire-style; each step happens only after the previous one is durable):
 1. A file is created under a `.partial` name in its final directory (O_EXCL: never overwrite).
 2. Its bytes are written and fsynced. A clip's video, written for minutes, first gets its age
    header and nonce written and fsynced, and its directory fsynced, the moment it is created:
    a crash at any later moment leaves a partial whose authenticated prefix can be recovered.
 3. It is renamed to its final name, then the directory is fsynced, so the rename survives a
    power cut.
 4. Only then is an index row written for it: every index row names a file that exists.
 5. Deletion removes the files first (then fsyncs the directory) and the index row last, so a
    crash never leaves a deleted clip's footage reachable only through a missing row.
"""

import contextlib
import os
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directories(path: Path) -> None:
    """`mkdir -p` whose new directories survive a power cut (each parent is fsynced)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            directory.mkdir()
        fsync_directory(directory.parent)


def create_partial(final_path: Path, mode: int = 0o640):
    """Invariant 1: open `final_path.partial` for writing, exclusively."""
    make_directories(final_path.parent)
    partial = final_path.with_name(final_path.name + PARTIAL_SUFFIX)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    return os.fdopen(fd, "wb")


def commit_partial(final_path: Path) -> None:
    """Invariant 3: rename `final_path.partial` to `final_path` and make the rename durable."""
    partial = final_path.with_name(final_path.name + PARTIAL_SUFFIX)
    os.replace(partial, final_path)
    fsync_directory(final_path.parent)


def write_atomically(final_path: Path, data: bytes, mode: int = 0o640) -> None:
    """Invariants 1-3 for a small file: afterwards the old or the new content exists, not a mix."""
    partial = final_path.with_name(final_path.name + PARTIAL_SUFFIX)
    partial.unlink(missing_ok=True)  # left by an earlier crash; never a committed file
    with create_partial(final_path, mode) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    commit_partial(final_path)
