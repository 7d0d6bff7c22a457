"""Login rate limit per client address and per member name, kept across restarts.

Attempts are recorded in SQLite before the (deliberately slow) passphrase check runs, so
neither guessing nor a flood of logins can make the device spend its memory on scrypt.
"""

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

WINDOW_S = 15 * 60


class LoginRateLimiter:
    def __init__(self, path: Path, attempts_per_window: int,
                 clock: Callable[[], float] = time.time):
        self._limit = attempts_per_window
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS login_attempts (key TEXT NOT NULL, at_s REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS attempts_by_key ON login_attempts (key)")

    def _count(self, key: str, since_s: float) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM login_attempts WHERE key = ? AND at_s > ?", (key, since_s)
        ).fetchone()
        return row[0]

    def try_acquire(self, address: str, member: str) -> float | None:
        """Record an attempt and return None, or return seconds to wait if over the limit."""
        keys = (f"addr:{address}", f"user:{member.lower()[:64]}")
        now = self._clock()
        with self._lock:
            self._db.execute("DELETE FROM login_attempts WHERE at_s <= ?", (now - WINDOW_S,))
            for key in keys:
                if self._count(key, now - WINDOW_S) >= self._limit:
                    oldest = self._db.execute(
                        "SELECT MIN(at_s) FROM login_attempts WHERE key = ?", (key,)
                    ).fetchone()[0]
                    return max(1.0, oldest + WINDOW_S - now)
            self._db.executemany(
                "INSERT INTO login_attempts (key, at_s) VALUES (?, ?)", [(k, now) for k in keys]
            )
        return None

    def forget(self, address: str, member: str) -> None:
        """After a successful unlock, that address and member start afresh."""
        with self._lock:
            self._db.execute(
                "DELETE FROM login_attempts WHERE key IN (?, ?)",
                (f"addr:{address}", f"user:{member.lower()[:64]}"),
            )

    def close(self) -> None:
        self._db.close()
