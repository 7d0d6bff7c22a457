"""Unlocking a member's identity, one at a time, in the same time whether the member exists.

scrypt at the calibrated work factor takes about a second and up to a quarter of RAM, so only
one unlock runs at once (others wait briefly, then get "busy"). For an unknown name a decoy
identity file is tried instead, so the answer takes as long as for the slowest member and reveals
nothing about which names exist. The decoy exists from the viewer's start, with the highest work
factor among the members' identity files, and is made again whenever that changes (a member
added, or a passphrase changed, at another factor). Making it costs nothing: its scrypt stanza
wraps random bytes instead of a key, so trying it costs one scrypt at that work factor and then
fails exactly as a wrong passphrase does.
"""

import contextlib
import os
import threading
from pathlib import Path

from doorbell.storage.age.errors import AgeError
from doorbell.storage.age.header import Stanza, b64encode, encode_header
from doorbell.storage.age.identities import DEFAULT_MAX_WORK_FACTOR
from doorbell.storage.age.recipients import MIN_SCRYPT_WORK_FACTOR
from doorbell.storage.errors import KeyringError, RecipientsError, WrongPassphraseError
from doorbell.storage.keyring import Keyring, MemberIdentity, decrypt_identity
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


def unlock_with_limit(viewer, member: str, passphrase: str, address: str, action: str,
                      device_token: str | None = None) -> MemberIdentity:
    """A login or a re-authentication: the rate limit first (before scrypt), then the unlock.

    Refusals are audited as `<action>.rate_limited` / `<action>.failed`, or counted once there
    are many (web/refusals.py); raises RateLimited, UnlockBusy or WrongPassphraseError. A success
    clears the address's and member's count and writes the summary of what was counted so far.
    `device_token` is the browser's device cookie: a browser that unlocked as `member` before
    is counted on its own, not against the member's shared limit (web/ratelimit.py).
    """
    wait_s = viewer.limiter.try_acquire(address, member, device_token)
    if wait_s is not None:
        viewer.refusals.record(member, f"{action}.rate_limited", address)
        raise RateLimited(wait_s)
    try:
        identity = viewer.unlocker.unlock(member, passphrase)
    except WrongPassphraseError:
        viewer.refusals.record(member, f"{action}.failed", address)
        raise
    viewer.limiter.forget(address, member, device_token)
    viewer.refusals.flush()
    return identity


def decoy_identity_file(work_factor: int) -> bytes:
    """An identity file no passphrase opens, that costs one scrypt at `work_factor` to try."""
    stanza = Stanza("scrypt", [b64encode(os.urandom(16)), str(work_factor)], os.urandom(32))
    # As long as a real identity file's payload: nonce, the key's text (about 185 bytes), tag.
    return encode_header([stanza], os.urandom(16)) + os.urandom(16 + 185 + 16)


class Unlocker:
    def __init__(self, identities_dir: Path, wait_s: float = 5.0):
        self._keyring = Keyring(identities_dir)
        self._lock = threading.Lock()
        self._wait_s = wait_s
        self.decoy_work_factor = self.slowest_work_factor()
        self._decoy = decoy_identity_file(self.decoy_work_factor)

    def slowest_work_factor(self) -> int:
        """The highest scrypt work factor among the members' identity files (read from their
        headers, no key needed), within what an unlock accepts."""
        factors = []
        for member in self._keyring.members():
            with contextlib.suppress(OSError, AgeError, KeyringError, RecipientsError,
                                     ValueError, IndexError):  # not an identity: no cost to copy
                factors.append(self._keyring.work_factor(member))
        return min(max(factors, default=MIN_SCRYPT_WORK_FACTOR), DEFAULT_MAX_WORK_FACTOR)

    def _decoy_file(self) -> bytes:
        work_factor = self.slowest_work_factor()
        if work_factor != self.decoy_work_factor:
            self.decoy_work_factor, self._decoy = work_factor, decoy_identity_file(work_factor)
        return self._decoy

    def unlock(self, member: str, passphrase: str) -> MemberIdentity:
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
