"""The storage package's errors (the age format's own are in storage.age.errors).

This module imports nothing and holds no key material, so any process may import it: the command
line's error handling names these errors, and the recorder imports that handling too, without
loading the decrypting half of storage. Each message is one sentence.
"""


class KeyringError(Exception):
    """A member is unknown, exists already, or a passphrase is refused."""


class WrongPassphraseError(KeyringError):
    """The passphrase does not unlock this member's identity."""


class WeakPassphraseError(KeyringError):
    """The passphrase is empty or too easy to guess."""


class RecipientsError(ValueError):
    """recipients.txt is missing, malformed, or a change to it is invalid."""


class HouseholdError(ValueError):
    """A change to the household's keys is refused (storage.household)."""


class InvalidClipId(ValueError):
    """A string that is not a clip id."""


class ClipNotFound(LookupError):
    """No clip with this id exists in the store."""


class AuditLogCorrupt(ValueError):
    """The log cannot be read or appended to as it stands; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class ExchangeFileError(ValueError):
    """A file between recorder and viewer that is not what its writer writes (one sentence)."""


class ReplicaTargetError(ValueError):
    """A replica target that is malformed, outside the home, or presents the wrong host key."""


class SourceUnreadable(Exception):  # noqa: N818 - says what was found
    """A file on the device that cannot be read (an I/O error on the card), met by the
    replicator (storage.replica): this file is skipped and retried later, the others are
    copied. `sentence` says which file and why."""

    def __init__(self, relative: str, error: OSError) -> None:
        self.relative = relative
        self.sentence = (f"cannot read {relative} from the card: "
                         f"{error.strerror or error}")
        super().__init__(self.sentence)


class ReplicaStateError(Exception):
    """The replicator's progress.json exists but cannot be used (storage.replica_state); str()
    is one sentence."""


class ReplicaCopyConflict(Exception):  # noqa: N818 - says what was found
    """The replica's copy of a file is longer than the device's, or differs before its end: it
    is left alone (storage.replica)."""

