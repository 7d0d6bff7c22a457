"""The rules every settings and household change in the browser follows.

1. Re-authentication: the member types their passphrase again, and it must unlock their own
   identity on the device (rate-limited like a login, before the slow scrypt check).
2. The audit log must be intact, so no change can be made that leaves no trace.
3. Validation by the same config model as the file: one error naming the field.
4. Atomic write (storage.durable): a power cut mid-save leaves the old or the new config.toml.
5. An audit entry: who, what, and each changed key's value before and after.
"""

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

from flask import request

from doorbell.config import ConfigError, load_settings
from doorbell.config.editor import ConfigChange, edit_config
from doorbell.storage.durable import write_atomically
from doorbell.storage.errors import AuditLogCorrupt, WrongPassphraseError

from .guards import DEVICE_COOKIE
from .unlock import RateLimited, UnlockBusy, unlock_with_limit


class ChangeRefused(Exception):
    """A change that was not made; str() is one sentence for the page, `status` its HTTP code."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class Confirmation:
    member: str
    address: str


def confirm_passphrase(viewer, session, passphrase: str, address: str) -> Confirmation:
    """Rule 1 (and 2): raise ChangeRefused unless `passphrase` unlocks the session's member."""
    if not passphrase:
        raise ChangeRefused("Type your passphrase to confirm the change.", 401, "passphrase")
    try:
        identity = unlock_with_limit(viewer, session.member, passphrase, address, "reauth",
                                     request.cookies.get(DEVICE_COOKIE))
    except RateLimited as exc:
        raise ChangeRefused(exc.sentence, 429) from None
    except UnlockBusy:
        raise ChangeRefused("Another unlock is in progress: try again in a moment.", 503) \
            from None
    except WrongPassphraseError:
        raise ChangeRefused("Wrong passphrase: nothing was changed.", 401, "passphrase") \
            from None
    if str(identity.recipient) != str(session.identity.recipient):
        raise ChangeRefused("Your key on this device changed since you unlocked: lock and "
                            "unlock again.", 401)
    try:
        viewer.audit.require_intact()
    except AuditLogCorrupt:
        raise ChangeRefused("The audit log is damaged, so nothing is changed until it is "
                            "repaired (see the Audit page).", 409) from None
    return Confirmation(session.member, address)


def current_settings(viewer):
    """The settings in config.toml now (someone may have edited it by hand since the viewer
    started), so a form never shows, and then saves back, a value that is no longer there.
    The viewer's own section stays what it started with. A file that does not load gives the
    last good settings."""
    try:
        fresh = load_settings(viewer.home.root)
    except ConfigError:
        return viewer.settings
    viewer.settings = dataclasses.replace(fresh, viewer=viewer.settings.viewer)
    return viewer.settings


def field_sentence(exc) -> str:
    """A ConfigError as one sentence that names the field."""
    if exc.key and exc.key not in exc.message:
        return f"{exc.key}: {exc.message}"
    return exc.message


class SettingsWriter:
    """Rules 3-5 for config.toml. One save at a time; the viewer's settings follow the file."""

    def __init__(self, viewer) -> None:
        self._viewer = viewer
        self._lock = threading.Lock()

    def save(self, confirmation: Confirmation, values: dict[str, Any]) -> ConfigChange:
        v = self._viewer
        path = v.home.config_file
        with self._lock:
            try:
                current = path.read_text(encoding="utf-8-sig")
            except FileNotFoundError:
                current = ""
            try:
                change = edit_config(current, values, source=path.name)
            except ConfigError as exc:
                raise ChangeRefused(field_sentence(exc), 400, exc.key) from None
            if not change.changes:
                return change
            try:
                write_atomically(path, change.text.encode("utf-8"), mode=0o640)
            except OSError as exc:
                raise ChangeRefused(f"The settings could not be saved ({exc.strerror or exc}); "
                                    "the old settings are still in force.", 500) from None
            v.audit.append(confirmation.member, "settings.change", address=confirmation.address,
                           changes={key: {"before": before, "after": after}
                                    for key, (before, after) in change.changes.items()})
            # The viewer's own section (bind, networks) is what it started with until a restart.
            v.settings = dataclasses.replace(change.settings, viewer=v.settings.viewer)
            return change
