"""Audit entries for footage a session receives: one per view, not one per request.

A seeking player asks for dozens of byte ranges of one clip, the settings pages fetch the live
picture every 700 ms, a timeline page shows up to 200 thumbnails. Each is an access the owner
must see, but one fsynced line per request would flood the log (and wear the SD card) without
telling the owner anything more. So an access writes an entry only when the same session has not
had the same access (a subject: one clip's video, the live picture, ...) for `quiet_s`; requests
in between extend the view silently. A view that goes on for `renew_s` is recorded again, so
hours of watching show up as more than one entry.

A new session (every unlock, itself audited) starts with nothing recorded.
"""

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from doorbell.storage.audit import AuditEntry, AuditLog

QUIET_S = 300.0  # a gap this long (a paused player, a closed page) ends a view
RENEW_S = 3600.0


@dataclass
class _Mark:
    written_s: float  # when this view's entry was appended
    seen_s: float  # the view's latest request


class CoalescedAudit:
    def __init__(self, log: AuditLog, quiet_s: float = QUIET_S, renew_s: float = RENEW_S,
                 clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.quiet_s = quiet_s
        self.renew_s = renew_s
        self._clock = clock
        self._marks: dict[tuple[str, str], _Mark] = {}
        self._lock = threading.Lock()  # held across the append: one entry per view, not two
        self._pruned_s = clock()

    def record(self, session_id: str, subject: str, actor: str, action: str, *,
               force: bool = False, **details) -> AuditEntry | None:
        """Append an entry for this access unless the session's view of `subject` is already
        on record; `force` always appends (a page load, the start of a download).

        Raises what AuditLog.append raises; then nothing is marked, so the next try appends."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            key = (session_id, subject)
            if not force and self._is_on_record(key, now):
                self._marks[key].seen_s = now
                return None
            entry = self.log.append(actor, action, **details)
            self._marks[key] = _Mark(now, now)
            return entry

    def record_listing(self, session_id: str, subjects: Mapping[str, str], actor: str,
                       action: str, listed_as: str, **details) -> AuditEntry | None:
        """One entry for a page that shows many subjects at once (a timeline's thumbnails):
        `subjects` maps each subject to the name the entry lists under `listed_as`; only those
        not already on record are listed, and nothing is appended if there are none."""
        with self._lock:
            now = self._clock()
            self._prune(now)
            fresh = [name for subject, name in subjects.items()
                     if not self._is_on_record((session_id, subject), now)]
            entry = None
            if fresh:
                entry = self.log.append(actor, action, **details, **{listed_as: fresh})
            for subject in subjects:
                key = (session_id, subject)
                if self._is_on_record(key, now):
                    self._marks[key].seen_s = now
                else:
                    self._marks[key] = _Mark(now, now)
            return entry

    def seen(self, session_id: str, subject: str) -> None:
        """The view of `subject` goes on (a live stream that just ended and will reconnect)."""
        with self._lock:
            mark = self._marks.get((session_id, subject))
            if mark is not None:
                mark.seen_s = self._clock()

    def _is_on_record(self, key: tuple[str, str], now: float) -> bool:
        mark = self._marks.get(key)
        return mark is not None and now - mark.seen_s < self.quiet_s and \
            now - mark.written_s < self.renew_s

    def _prune(self, now: float) -> None:
        # Views of locked sessions and closed pages: forgotten once quiet, at most once a minute.
        if now - self._pruned_s < 60:
            return
        self._pruned_s = now
        self._marks = {key: mark for key, mark in self._marks.items()
                       if now - mark.seen_s < self.quiet_s}

    def __len__(self) -> int:
        return len(self._marks)
