"""Server-side sessions: an unlocked identity lives here, in memory, and nowhere else.

The browser holds only a random session id. Locking (explicitly, by idle timeout, or by a
restart of the viewer) drops the identity; nothing about it was ever written to disk.
"""

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from doorbell.storage.keyring import MemberIdentity


@dataclass
class Session:
    member: str
    identity: MemberIdentity
    csrf_token: str
    created_s: float
    last_seen_s: float
    metadata_cache: dict = field(default_factory=dict)  # decrypted clip metadata, this session only
    # Set-up only: the recovery key, in memory until the new owner confirms they saved it.
    recovery_secret: str | None = None


class SessionStore:
    def __init__(self, idle_timeout_s: float, clock: Callable[[], float] = time.monotonic):
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, member: str, identity: MemberIdentity) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(member, identity, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None, activity: bool = True) -> Session | None:
        """The live session for this id; None if unknown or idle too long.

        `activity` says the person did something (a page, a form, a click): it restarts the
        idle timeout. Background requests pass False, and the timeout runs on.
        """
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_seen_s > self.idle_timeout_s:
                del self._sessions[session_id]
                return None
            if activity:
                session.last_seen_s = now
            return session

    def is_alive(self, session_id: str | None) -> bool:
        """Whether the session is still unlocked, without counting this as activity."""
        with self._lock:
            session = self._sessions.get(session_id) if session_id else None
            return session is not None and self._clock() - session.last_seen_s <= \
                self.idle_timeout_s

    def drop(self, session_id: str | None) -> Session | None:
        with self._lock:
            return self._sessions.pop(session_id, None) if session_id else None

    def drop_member(self, member: str) -> int:
        with self._lock:
            doomed = [sid for sid, s in self._sessions.items() if s.member == member]
            for sid in doomed:
                del self._sessions[sid]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._sessions)
