"""Login rate limit per client address and per member name, kept across restarts.

Attempts are recorded in SQLite before the (deliberately slow) passphrase check runs, so
neither guessing nor a flood of logins can make the device spend its memory on scrypt.

A limit per member name alone would let anyone on the network lock a member out by guessing
wrong from many addresses. So a browser that has unlocked as a member once gets a device token
(a cookie; the database keeps only its SHA-256), and that browser's attempts for that member
count against the token instead of the member's shared limit: the owner's own browsers keep
working while a guesser is held at the member's limit ("device cookies", as OWASP describes).
"""

import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

WINDOW_S = 15 * 60
TRUSTED_DEVICES_PER_MEMBER = 16  # the newest are kept: a household's phones, laptops, tablets


def _member_key(member: str) -> str:
    return member.lower()[:64]


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


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
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS trusted_devices (member TEXT NOT NULL,"
            " token_sha256 TEXT NOT NULL, issued_at_s REAL NOT NULL,"
            " PRIMARY KEY (member, token_sha256))"
        )

    def _count(self, key: str, since_s: float) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM login_attempts WHERE key = ? AND at_s > ?", (key, since_s)
        ).fetchone()
        return row[0]

    def _keys(self, address: str, member: str, device_token: str | None) -> tuple[str, str]:
        """The address's key, and the member's, or this trusted browser's for that member."""
        member_key = _member_key(member)
        if device_token is not None and self._is_trusted(member_key, device_token):
            return f"addr:{address}", f"device:{_token_sha256(device_token)}:{member_key}"
        return f"addr:{address}", f"user:{member_key}"

    def _is_trusted(self, member_key: str, device_token: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM trusted_devices WHERE member = ? AND token_sha256 = ?",
            (member_key, _token_sha256(device_token)),
        ).fetchone() is not None

    def try_acquire(self, address: str, member: str,
                    device_token: str | None = None) -> float | None:
        """Record an attempt and return None, or return seconds to wait if over the limit."""
        now = self._clock()
        with self._lock:
            keys = self._keys(address, member, device_token)
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

    def forget(self, address: str, member: str, device_token: str | None = None) -> None:
        """After a successful unlock, that address and member (or browser) start afresh."""
        with self._lock:
            self._db.execute("DELETE FROM login_attempts WHERE key IN (?, ?)",
                             self._keys(address, member, device_token))

    def trust_device(self, member: str, device_token: str | None) -> str:
        """Remember this browser for `member` (after it unlocked) and return its token: the
        one it already has (if this device knows it for some member), or a new one. Only the
        newest few per member are kept."""
        member_key = _member_key(member)
        with self._lock:
            known = device_token is not None and self._db.execute(
                "SELECT 1 FROM trusted_devices WHERE token_sha256 = ?",
                (_token_sha256(device_token),)).fetchone() is not None
            token = device_token if known else secrets.token_urlsafe(32)
            self._db.execute(
                "INSERT OR REPLACE INTO trusted_devices (member, token_sha256, issued_at_s)"
                " VALUES (?, ?, ?)", (member_key, _token_sha256(token), self._clock()),
            )
            self._db.execute(
                "DELETE FROM trusted_devices WHERE member = ? AND token_sha256 NOT IN"
                " (SELECT token_sha256 FROM trusted_devices WHERE member = ?"
                "  ORDER BY issued_at_s DESC LIMIT ?)",
                (member_key, member_key, TRUSTED_DEVICES_PER_MEMBER),
            )
        return token

    def close(self) -> None:
        self._db.close()
