"""Errors the command line turns into one plain sentence on stderr and exit code 1."""

from doorbell.config import ConfigError
from doorbell.storage.age.errors import AgeError
from doorbell.storage.errors import (
    AuditLogCorrupt,
    HouseholdError,
    InvalidClipId,
    KeyringError,
    RecipientsError,
)


class CommandError(Exception):
    """A command cannot do what was asked; the message says why in one sentence."""


# Only these are expected failures; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    CommandError,
    ConfigError,
    AgeError,
    AuditLogCorrupt,
    InvalidClipId,
    RecipientsError,
    HouseholdError,  # storage.household: a refused change to the household's keys
    KeyringError,
    LookupError,
    OSError,  # the environment: permissions, a full disk, a path that is a file
)
