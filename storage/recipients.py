"""`recipients.txt`: the household's public keys, the only key material the recorder reads.

The file stays a valid age recipients file (`age -R recipients.txt` works, with age 1.3.0 or
later once it holds a post-quantum `age1pq1...` key); the member each key belongs to is carried
in the comment line just above it:

    # member: alice
    age1pq1...
    # recovery
    age1pq1...
"""

import re
from dataclasses import dataclass
from pathlib import Path

from .age import AgeError, HybridRecipient, X25519Recipient, parse_recipient
from .durable import write_atomically
from .errors import RecipientsError

RECOVERY_NAME = "recovery"
_MEMBER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True)
class HouseholdKey:
    name: str  # a member's name, or "recovery"
    recipient: X25519Recipient | HybridRecipient


def check_member_name(name: str) -> str:
    if name == RECOVERY_NAME or not _MEMBER_NAME.fullmatch(name):
        raise RecipientsError(
            f"invalid member name {name!r}: use 1-32 lower-case letters, digits, '-' or '_' "
            f"(and not {RECOVERY_NAME!r})"
        )
    return name


def read_household_keys(path: Path) -> list[HouseholdKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipientsError(
            f"{path} does not exist: run 'doorbell init' to create the household keys"
        ) from None
    keys: list[HouseholdKey] = []
    name = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("# member:"):
            name = line.removeprefix("# member:").strip()
        elif line == f"# {RECOVERY_NAME}":
            name = RECOVERY_NAME
        elif line and not line.startswith("#"):
            try:
                recipient = parse_recipient(line)
            except AgeError as exc:
                raise RecipientsError(f"{path} line {number}: {exc}") from None
            keys.append(HouseholdKey(name or f"key{number}", recipient))
            name = None
    if not keys:
        raise RecipientsError(f"{path} holds no recipient: clips could not be encrypted")
    return keys


def read_recipients(path: Path) -> list[X25519Recipient | HybridRecipient]:
    """Every key a new clip is encrypted to."""
    return [key.recipient for key in read_household_keys(path)]


def write_household_keys(path: Path, keys: list[HouseholdKey]) -> None:
    if not keys:
        raise RecipientsError("at least one key must remain, or no clip could be encrypted")
    lines = [
        "# Doorbell recipients: every new clip, thumbnail and metadata file is encrypted",
        "# to each key below. Public keys only: nothing here can decrypt.",
    ]
    for key in keys:
        lines.append(f"# {RECOVERY_NAME}" if key.name == RECOVERY_NAME else f"# member: {key.name}")
        lines.append(str(key.recipient))
    write_atomically(path, ("\n".join(lines) + "\n").encode(), mode=0o644)
