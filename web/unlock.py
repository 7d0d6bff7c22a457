"""Unlocking a member's identity, one at a time, in the same time whether the member exists.

scrypt at the calibrated work factor takes about a second and up to a quarter of RAM, so only
one unlock runs at once (others wait briefly, then get "busy"). For an unknown name a decoy
identity file is tried instead, so the answer takes as long as for a real member and reveals
nothing about which names exist. The decoy is made the first time an unknown name is tried
(with the first member's work factor at that moment) and kept for the viewer's lifetime; that
first attempt also pays one scrypt for making it.
"""

import contextlib
import secrets
import threading
from pathlib import Path

from doorbell.storage.age.identities import X25519Identity
from doorbell.storage.errors import KeyringError, RecipientsError, WrongPassphraseError
from doorbell.storage.keyring import Keyring, decrypt_identity, encrypt_identity
from doorbell.storage.recipients import check_member_name


class UnlockBusy(Exception):
    """Another unlock is running; try again in a moment."""


class RateLimited(Exception):
    """Too many attempts for this address or member; `wait_s` until the next is allowed."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"too many attempts: wait {wait_s:.0f} s")
        self.wait_s = wait_s

    @property
    def sentence(self) -> str:
        return f"Too many attempts. Try again in {int(self.wait_s // 60) + 1} minutes."


def unlock_with_limit(viewer, member: str, passphrase: str, address: str,
                      action: str) -> X25519Identity:
    """A login or a re-authentication: the rate limit first (before scrypt), then the unlock.

    Refusals are audited as `<action>.rate_limited` / `<action>.failed`, or counted once there
    are many (web/refusals.py); raises RateLimited, UnlockBusy or WrongPassphraseError. A success
    clears the address's and member's count and writes the summary of what was counted so far.
    """
    wait_s = viewer.limiter.try_acquire(address, member)
    if wait_s is not None:
        viewer.refusals.record(member, f"{action}.rate_limited", address)
        raise RateLimited(wait_s)
    try:
        identity = viewer.unlocker.unlock(member, passphrase)
    except WrongPassphraseError:
        viewer.refusals.record(member, f"{action}.failed", address)
        raise
    viewer.limiter.forget(address, member)
    viewer.refusals.flush()
    return identity


class Unlocker:
    def __init__(self, identities_dir: Path, wait_s: float = 5.0):
        self._keyring = Keyring(identities_dir)
        self._lock = threading.Lock()
        self._wait_s = wait_s
        self._decoy: bytes | None = None

    def _decoy_file(self) -> bytes:
        if self._decoy is None:
            members = self._keyring.members()
            work_factor = self._keyring.work_factor(members[0]) if members else 15
            self._decoy = encrypt_identity(
                X25519Identity.generate(), secrets.token_urlsafe(24), work_factor
            )
        return self._decoy

    def unlock(self, member: str, passphrase: str) -> X25519Identity:
        """The member's identity, or WrongPassphraseError for a wrong name or passphrase."""
        if not self._lock.acquire(timeout=self._wait_s):
            raise UnlockBusy("another unlock is in progress")
        try:
            try:
                check_member_name(member)
                path = self._keyring.path_for(member)
                data = path.read_bytes()
            except (RecipientsError, KeyringError, OSError):
                with contextlib.suppress(WrongPassphraseError):  # same cost, always fails
                    decrypt_identity(self._decoy_file(), passphrase)
                raise WrongPassphraseError("wrong name or passphrase") from None
            return decrypt_identity(data, passphrase)
        finally:
            self._lock.release()
