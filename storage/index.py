"""The clip index: SQLite in WAL mode, holding only what must stay readable without a key.

Per clip: its id (which encodes the start second), start time in µs, state and size on disk,
and whether it began before the clock was set (`clock_unsynced`) with the time retention ages
it from (`kept_from_us`, see storage.retention). That is enough to list, prune and verify
without unlocking anything; everything that describes
what happened (trigger, duration, motion, thumbnails) stays inside the encrypted files. Anyone
holding the SD card can therefore learn *when* clips were recorded and how big they are, and
nothing else. The index is a cache of the files: `reconcile` can rebuild it from them.

A damaged index (not an SQLite file, corrupt pages, a table that is not ours) is therefore
handled like a lost one: the recorder opens it with `set_aside_damaged=True` at its start, which
moves the bad file aside (kept, never deleted: `index.sqlite3.damaged-<UTC time>`) and starts a
fresh one for `reconcile` to fill from the clip files. Anyone else opening it gets an OSError
saying so in one sentence.

A write that finds the disk full ("database or disk is full") raises OSError(ENOSPC), the same
error a clip file's write raises there, so every caller handles a full disk one way.
"""

import errno
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .durable import fsync_directory

STATES = ("complete", "truncated", "damaged")
_FULL_BYTES = 1 << 20  # an I/O error with less free than this is taken for a full disk

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clips (
    id TEXT PRIMARY KEY,
    start_us INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('complete', 'truncated', 'damaged')),
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
    clock_unsynced INTEGER NOT NULL DEFAULT 0,
    kept_from_us INTEGER
);
CREATE INDEX IF NOT EXISTS clips_by_start ON clips (start_us);
"""
# Columns added since the first index files: an older file gains them when it is opened.
_ADDED_COLUMNS = {
    "clock_unsynced": "INTEGER NOT NULL DEFAULT 0",
    "kept_from_us": "INTEGER",
}


_SELECT_RANGE = (
    "SELECT id, start_us, state, size_bytes, clock_unsynced, kept_from_us FROM clips "
    "WHERE start_us >= ? AND start_us < ? "
)
_NEWEST_FIRST = _SELECT_RANGE + "ORDER BY start_us DESC, id DESC LIMIT ? OFFSET ?"
_OLDEST_FIRST = _SELECT_RANGE + "ORDER BY start_us ASC, id ASC LIMIT ? OFFSET ?"


def _connect(path: Path, check_pages: bool) -> tuple[sqlite3.Connection | None, str | None]:
    """(the open index, None), or (None, what is wrong with the file) if it is not one."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        problem = _damage(db, check_pages)
        if problem is None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut
            db.executescript(_SCHEMA)
            _add_missing_columns(db)
            return db, None
    except sqlite3.DatabaseError as exc:
        db.close()
        if exc.sqlite_errorcode not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise  # busy, locked, read-only, the disk full: the file itself may be fine
        return None, str(exc)
    except BaseException:
        db.close()
        raise
    db.close()
    return None, problem


def _damage(db: sqlite3.Connection, check_pages: bool) -> str | None:
    """What makes this file not a clip index, or None. Reads only, so that a damaged file is
    set aside exactly as it was found."""
    try:
        db.execute("SELECT id, start_us, state, size_bytes FROM clips LIMIT 0")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_ERROR:  # busy, locked, ...: not damage
            raise
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'clips'").fetchone():
            return f"its clips table is not the index's ({exc})"  # "no such column"
    if check_pages:  # reads every page: once at the recorder's start, not per request
        problems = db.execute("PRAGMA quick_check(1)").fetchone()
        if problems != ("ok",):  # e.g. "*** in database main ***\nPage 2: btreeInitPage() ..."
            found = " ".join(str(problems[0] if problems else "").replace(
                "*** in database main ***", "").split())
            return f"corrupt pages: {found[:120] or 'quick_check failed'}"
    return None


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Give an index written by an older version the columns it lacks (one transaction, so a
    recorder and a viewer opening it at the same moment do not both add them)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        present = {row[1] for row in db.execute("PRAGMA table_info(clips)")}
        for name, declaration in _ADDED_COLUMNS.items():
            if name not in present:
                db.execute(f"ALTER TABLE clips ADD COLUMN {name} {declaration}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def _disk_full_as_enospc(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not _disk_full(exc, path):
            raise
        raise OSError(errno.ENOSPC, "the disk is full, so the clip index cannot be written",
                      str(path)) from None


def _disk_full(exc: sqlite3.OperationalError, path: Path) -> bool:
    """SQLITE_FULL, or an I/O error on a disk with no room left: without room for its -shm
    file SQLite says "disk I/O error" (SQLITE_IOERR_SHMSIZE), not "disk is full"."""
    code = exc.sqlite_errorcode or 0
    if code == sqlite3.SQLITE_FULL:
        return True
    if code & 0xFF != sqlite3.SQLITE_IOERR:
        return False
    try:
        disk = os.statvfs(path.parent)
    except OSError:
        return False
    return disk.f_bavail * disk.f_frsize < _FULL_BYTES


def _move_aside(path: Path) -> Path:
    """Rename the damaged index (and its -wal and -shm, which belong to it) out of the way."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, kept.with_name(kept.name + suffix))
    fsync_directory(path.parent)  # the rename is durable before a fresh index takes its place
    return kept


@dataclass(frozen=True, slots=True)
class IndexedClip:
    id: str
    start_us: int
    state: str
    size_bytes: int
    clock_unsynced: bool = False  # it began before the wall clock was set (NTP, after boot)
    # Retention ages the clip from here instead of start_us (µs since the epoch), or None. A
    # clock_unsynced clip without it is not aged at all until the clock is trusted.
    kept_from_us: int | None = None


def _clip(row: tuple) -> IndexedClip:
    clip_id, start_us, state, size_bytes, unsynced, kept_from_us = row
    return IndexedClip(clip_id, start_us, state, size_bytes, bool(unsynced), kept_from_us)


class ClipIndex:
    """One connection per process (and per thread: SQLite connections are not shared)."""

    def __init__(self, path: Path, set_aside_damaged: bool = False):
        self.path = Path(path)
        self.set_aside: Path | None = None  # where a damaged index was moved to, if it was
        self.damage: str | None = None  # and what was wrong with it
        with _disk_full_as_enospc(self.path):
            db, problem = _connect(self.path, check_pages=set_aside_damaged)
            if db is None:
                if not set_aside_damaged:
                    raise OSError(errno.EIO, "the clip index is damaged; the recorder rebuilds "
                                  "it from the clip files when it next starts", str(self.path))
                self.set_aside = _move_aside(self.path)
                self.damage = problem
                db, _ = _connect(self.path, check_pages=False)
        self._db = db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ClipIndex":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def put(self, clip: IndexedClip) -> None:
        if clip.state not in STATES:
            raise ValueError(f"unknown clip state {clip.state!r}")
        with _disk_full_as_enospc(self.path):
            # A row put again (reconcile, a replica's scan) keeps what it knew about the clock.
            self._db.execute(
                "INSERT INTO clips (id, start_us, state, size_bytes, clock_unsynced, kept_from_us) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET start_us = excluded.start_us, "
                "state = excluded.state, size_bytes = excluded.size_bytes, "
                "clock_unsynced = MAX(clock_unsynced, excluded.clock_unsynced), "
                "kept_from_us = COALESCE(excluded.kept_from_us, kept_from_us)",
                (clip.id, clip.start_us, clip.state, clip.size_bytes, int(clip.clock_unsynced),
                 clip.kept_from_us),
            )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several writes in one commit, so one fsync (a hub filling its index from a scan)."""
        with _disk_full_as_enospc(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def remove(self, clip_id: str) -> None:
        with _disk_full_as_enospc(self.path):
            self._db.execute("DELETE FROM clips WHERE id = ?", (clip_id,))

    def get(self, clip_id: str) -> IndexedClip | None:
        row = self._db.execute(
            "SELECT id, start_us, state, size_bytes, clock_unsynced, kept_from_us FROM clips "
            "WHERE id = ?", (clip_id,)
        ).fetchone()
        return _clip(row) if row else None

    def clips(
        self, newest_first: bool = True, limit: int | None = None, offset: int = 0,
        since_us: int | None = None, until_us: int | None = None,
    ) -> list[IndexedClip]:
        rows = self._db.execute(
            _NEWEST_FIRST if newest_first else _OLDEST_FIRST,
            (
                since_us if since_us is not None else -(2**62),
                until_us if until_us is not None else 2**62,
                limit if limit is not None else -1,
                offset,
            ),
        ).fetchall()
        return [_clip(row) for row in rows]

    def keep_unsynced_from(self, now_us: int) -> int:
        """The clock is trusted now: clips that began before it was set, and have no kept-from
        time yet, are aged from `now_us`. Returns how many."""
        with _disk_full_as_enospc(self.path):
            return self._db.execute(
                "UPDATE clips SET kept_from_us = ? WHERE clock_unsynced = 1 "
                "AND kept_from_us IS NULL", (now_us,)).rowcount

    def keep_from_after_jump(self, since_us: int, until_us: int, now_us: int) -> int:
        """The clock jumped: clips aged from a time in [since_us, until_us] (read from the
        clock before the jump) are marked as timed by a wrong clock and aged from `now_us`
        instead. Returns how many."""
        with _disk_full_as_enospc(self.path):
            return self._db.execute(
                "UPDATE clips SET clock_unsynced = 1, kept_from_us = ? "
                "WHERE COALESCE(kept_from_us, start_us) BETWEEN ? AND ?",
                (now_us, since_us, until_us)).rowcount

    def start_times_us(self, since_us: int, until_us: int) -> list[int]:
        """Start times in [since_us, until_us), oldest first: enough for an activity strip."""
        rows = self._db.execute(
            "SELECT start_us FROM clips WHERE start_us >= ? AND start_us < ? ORDER BY start_us",
            (since_us, until_us),
        ).fetchall()
        return [row[0] for row in rows]

    def version(self) -> tuple[int, int]:
        """Changes whenever clips are added or removed: (count, newest start)."""
        return self._db.execute("SELECT COUNT(*), COALESCE(MAX(start_us), 0) FROM clips").fetchone()

    def day_counts(self) -> list[tuple[str, int]]:
        """(YYYY-MM-DD in the device's local time, number of clips), newest day first."""
        rows = self._db.execute(
            "SELECT date(start_us / 1000000, 'unixepoch', 'localtime') AS day, COUNT(*) "
            "FROM clips GROUP BY day ORDER BY day DESC"
        ).fetchall()
        return [(day, count) for day, count in rows]

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM clips").fetchone()[0]

    def total_size_bytes(self) -> int:
        return self._db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM clips").fetchone()[0]
