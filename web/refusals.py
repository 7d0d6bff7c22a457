"""Refused unlocks on the record, without letting a flood of them fill the disk.

A refused unlock (a wrong name or passphrase, or an attempt over the rate limit) is the owner's
business, but anything on the LAN can send thousands a second, and each audit line is bytes that
retention would pay for with footage. So refusals are accounted for in 15-minute windows:

* The first FIRST_PER_ADDRESS refusals of an address in a window are written one by one
  (`<action>.failed` or `<action>.rate_limited`, with the name tried), at most FIRST_IN_ALL
  lines in all. With the default limit of 10 attempts these are every passphrase that was tried.
* Every later refusal is counted, in the viewer's SQLite file so that a restart keeps the count,
  and the window ends with one `refusals` entry per address: how many, of which kind, the first
  names tried, first and last time. Only SUMMED_ADDRESSES addresses are counted apart; any
  further ones share one entry (address "other addresses"), so the count stays small too.
* A window ends WINDOW_S after its first refusal. Its summary is written by the first refusal
  after that, by the viewer's next start, or at once by a successful unlock (the owner then sees
  what happened before their own `unlock` entry), whichever comes first.

Requests without a session therefore add at most FIRST_IN_ALL + SUMMED_ADDRESSES + 1 lines to
the audit log per window, however many are sent and from however many addresses.
"""

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from doorbell.storage.audit import AuditLog
from doorbell.storage.errors import AuditLogCorrupt

from .ratelimit import WINDOW_S

log = logging.getLogger("doorbell.viewer")

FIRST_PER_ADDRESS = 10
FIRST_IN_ALL = 40
SUMMED_ADDRESSES = 16
NAMES_KEPT = 3  # names tried, per summary: enough to tell guessing from a forgotten passphrase
OTHERS = "other addresses"
SUMMARY_ACTOR = "viewer"
SUMMARY_ACTION = "refusals"


@dataclass
class Tally:
    """One address's refusals in the current window."""

    written: int = 0  # written one by one
    counts: dict[str, int] = field(default_factory=dict)  # counted, by action
    names: list[str] = field(default_factory=list)
    first_s: float | None = None  # of the counted ones
    last_s: float | None = None

    @property
    def counted(self) -> int:
        return sum(self.counts.values())


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")


class RefusalAudit:
    def __init__(self, audit: AuditLog, db_path: Path, clock: Callable[[], float] = time.time):
        self._audit = audit
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False,
                                   timeout=5)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A count lost to a power cut is acceptable; an fsync for every request of a flood is not.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS refusal_window "
                         "(start_s REAL NOT NULL, written INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS refusal_tallies (address TEXT PRIMARY KEY, "
                         "written INTEGER NOT NULL, counts TEXT NOT NULL, names TEXT NOT NULL, "
                         "first_s REAL, last_s REAL)")
        self._start_s: float | None = None
        self._written = 0
        self._tallies: dict[str, Tally] = {}
        self._load()
        self.flush_due()

    # -- what the unlock path calls ----------------------------------------------------------

    def record(self, member: str, action: str, address: str) -> None:
        """One refused unlock: written as an entry, or counted for the window's summary."""
        address = address or "unknown"
        with self._lock:
            now = self._clock()
            if self._start_s is not None and now - self._start_s >= WINDOW_S:
                self._close()
            if self._start_s is None:
                self._start_s, self._written = now, 0
                self._save_window()
            key = address if address in self._tallies or \
                len(self._tallies.keys() - {OTHERS}) < SUMMED_ADDRESSES else OTHERS
            tally = self._tallies.setdefault(key, Tally())
            if key != OTHERS and tally.written < FIRST_PER_ADDRESS and \
                    self._written < FIRST_IN_ALL and self._write(member, action, address):
                tally.written += 1
                self._written += 1
                self._save_window()
                self._save_tally(key, tally)
                return
            if not tally.counted:
                log.warning("further refused unlocks from %s are counted: the audit log gets one "
                            "summary of them for these %d minutes", key, WINDOW_S // 60)
            tally.counts[action] = tally.counts.get(action, 0) + 1
            if member not in tally.names and len(tally.names) < NAMES_KEPT:
                tally.names.append(member)
            tally.first_s = now if tally.first_s is None else tally.first_s
            tally.last_s = now
            self._save_tally(key, tally)

    def flush(self) -> None:
        """End the window now and write its summaries (after a successful unlock)."""
        with self._lock:
            if self._start_s is not None:
                self._close()

    def flush_due(self) -> None:
        """Write the summaries of a window that is over."""
        with self._lock:
            if self._start_s is not None and self._clock() - self._start_s >= WINDOW_S:
                self._close()

    def close(self) -> None:
        self._db.close()

    # -- inside the lock ---------------------------------------------------------------------

    def _write(self, member: str, action: str, address: str) -> bool:
        try:
            self._audit.append(member, action, address=address)
        except (AuditLogCorrupt, OSError) as exc:  # counted instead, and summed up later
            log.error("a refused unlock could not be written to the audit log: %s", exc)
            return False
        log.warning("refused unlock (%s) for %r from %s", action, member, address)
        return True

    def _close(self) -> None:
        """Write one summary per address that has counted refusals, then start afresh.

        An address whose summary cannot be written stays in the window, to be tried again.
        """
        order = sorted((k for k in self._tallies if k != OTHERS),
                       key=lambda k: self._tallies[k].first_s or 0)
        for key in [*order, OTHERS]:
            tally = self._tallies.get(key)
            if tally is None:
                continue
            if tally.counted:
                details = {"address": key, "refused": tally.counted, **tally.counts,
                           "names": ", ".join(tally.names), "first": _utc(tally.first_s),
                           "last": _utc(tally.last_s)}
                try:
                    self._audit.append(SUMMARY_ACTOR, SUMMARY_ACTION, **details)
                except (AuditLogCorrupt, OSError) as exc:
                    log.error("the summary of refused unlocks could not be written: %s", exc)
                    return
                log.warning("%d refused unlocks from %s since %s", tally.counted, key,
                            details["first"])
            del self._tallies[key]
            self._db.execute("DELETE FROM refusal_tallies WHERE address = ?", (key,))
        self._start_s, self._written = None, 0
        self._db.execute("DELETE FROM refusal_window")

    def _save_window(self) -> None:
        self._db.execute("DELETE FROM refusal_window")
        self._db.execute("INSERT INTO refusal_window VALUES (?, ?)",
                         (self._start_s, self._written))

    def _save_tally(self, key: str, tally: Tally) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO refusal_tallies VALUES (?, ?, ?, ?, ?, ?)",
            (key, tally.written, json.dumps(tally.counts), json.dumps(tally.names),
             tally.first_s, tally.last_s))

    def _load(self) -> None:
        row = self._db.execute("SELECT start_s, written FROM refusal_window").fetchone()
        if row is None:
            return
        self._start_s, self._written = row
        for key, written, counts, names, first_s, last_s in self._db.execute(
                "SELECT * FROM refusal_tallies"):
            self._tallies[key] = Tally(written, json.loads(counts), json.loads(names),
                                       first_s, last_s)
