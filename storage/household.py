"""The household's keys, in one place for the command line and the viewer's pages.

    new = create_household(home, "alice", passphrase)  # doorbell init
    add_member(home, "bob", recipient="age1pq1...")     # keys add: bob decrypts elsewhere
    add_member(home, "carol", passphrase="...")         # keys add: an identity on this device
    remove_member(home, "bob")                          # keys remove
    change_passphrase(home, "alice", old, new)          # keys passwd
    list_members(home)                                  # keys list

Every function checks everything it can before writing anything, so a refusal (HouseholdError,
RecipientsError for a bad name, WeakPassphraseError, WrongPassphraseError, ...) changes nothing;
each message is one sentence. recipients.txt is rewritten atomically and stays a valid age
recipients file. Changes hold an exclusive lock on the home directory, so the viewer and the
command line cannot interleave two read-modify-writes of it.

New keys (the first member's, the recovery key, a passphrase member's) are post-quantum hybrid
(ML-KEM-768 + X25519, `age1pq1...`) unless `post_quantum=False` asks for X25519 keys, for a
member who decrypts with an age older than 1.3.0. A household may mix both kinds: each clip is
then also wrapped to the X25519 keys, so it is only as safe against a future quantum computer
as its weakest key; `classical_members` names them so callers can say so.

What callers add around these: the audit entry (the command line and the viewer name the actor
differently), the TLS certificate at init, and how a passphrase or the recovery key is shown.

This module is the decrypting half (it creates and unlocks identities): the recorder never
imports it.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .age import AgeError, HybridRecipient, X25519Recipient, is_post_quantum, parse_recipient
from .age.recipients import MIN_SCRYPT_WORK_FACTOR
from .durable import write_atomically
from .errors import HouseholdError, KeyringError, RecipientsError
from .home import Home
from .index import ClipIndex
from .keyring import MAX_WORK_FACTOR, Keyring, MemberIdentity, calibrate_work_factor, new_identity
from .passphrase import check_passphrase_strength
from .recipients import (
    RECOVERY_NAME,
    HouseholdKey,
    check_member_name,
    read_household_keys,
    write_household_keys,
)

__all__ = [
    "CONFIG_STUB",
    "KIND_PASSPHRASE",
    "KIND_PUBLIC_KEY",
    "KIND_RECOVERY",
    "Member",
    "NewHousehold",
    "add_member",
    "change_passphrase",
    "check_new_household",
    "check_new_member",
    "check_passphrase_member",
    "classical_members",
    "create_household",
    "list_members",
    "remove_member",
]

# Written at init when the home has no config.toml yet (an existing one is kept as it is).
CONFIG_STUB = """\
# Your doorbell settings. Only the keys you change need to be here; the shipped defaults,
# with a comment for every key, are in the doorbell package's config/default.toml.
#
# [camera]
# source = "picamera2"
"""

# Member.kind:
# an identity on this device, under the member's passphrase (a kind of key, not a secret)
KIND_PASSPHRASE = "passphrase"  # noqa: S105
KIND_PUBLIC_KEY = "public key"  # only the public key is here: the member decrypts elsewhere
KIND_RECOVERY = "recovery"  # the recovery key, shown once at init and kept off the device


@dataclass(frozen=True, slots=True)
class NewHousehold:
    member_identity: MemberIdentity  # the first member's, also stored under their passphrase
    recovery_identity: MemberIdentity  # stored nowhere: the caller shows it once
    work_factor: int  # the scrypt work factor the member's identity was written with


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    recipient: X25519Recipient | HybridRecipient
    kind: str  # KIND_PASSPHRASE, KIND_PUBLIC_KEY or KIND_RECOVERY
    work_factor: int | None = None  # scrypt log2 N, for a KIND_PASSPHRASE member

    @property
    def post_quantum(self) -> bool:
        """A hybrid ML-KEM-768 + X25519 key (else X25519 only: age before 1.3.0 reads it)."""
        return is_post_quantum(self.recipient)


# -- checks that write nothing (also for a caller to run before asking for a passphrase) -----------


def check_new_household(home: Home, member: str) -> str:
    """The first member's name, if `home` can be initialised with it; else the refusal."""
    if home.is_initialised():
        raise HouseholdError(f"{home.root} is already initialised (it has a recipients.txt)")
    name = check_member_name(member)
    _refuse_leftover_identity(home, name)
    return name


def check_new_member(home: Home, name: str) -> str:
    """`name`, if a member of that name can be added; else the refusal."""
    return _new_member(home, name)[0]


def check_passphrase_member(home: Home, name: str) -> str:
    """`name`, if that member has a passphrase-protected identity on this device."""
    _require_initialised(home)
    if not Keyring(home.identities_dir).exists(name):
        raise HouseholdError(f"{name!r} has no passphrase-protected identity on this device")
    return name


# -- changes ---------------------------------------------------------------------------------------


def create_household(home: Home, member: str, passphrase: str,
                     work_factor: int | None = None, *, post_quantum: bool = True) -> NewHousehold:
    """A new home: its directories, a config stub (unless there is a config.toml), the first
    member's identity under `passphrase`, a recovery identity (returned, never stored),
    recipients.txt with both public keys, and the clip index.

    Both keys are hybrid (ML-KEM-768 + X25519) unless `post_quantum` is False (X25519 keys,
    which age before 1.3.0 can use). `work_factor` None calibrates scrypt to about a second
    here. Not done here: the TLS certificate and the audit entry.
    """
    name = check_new_household(home, member)
    check_passphrase_strength(passphrase)
    work_factor = _work_factor(work_factor)

    home.root.mkdir(mode=0o750, parents=True, exist_ok=True)
    with _locked(home):
        check_new_household(home, name)  # again: another process may have been quicker
        home.clips_dir.mkdir(mode=0o750, exist_ok=True)
        if not home.config_file.exists():
            write_atomically(home.config_file, CONFIG_STUB.encode(), mode=0o644)
        keyring = Keyring(home.identities_dir)
        identity = keyring.create(name, passphrase, work_factor, post_quantum)
        recovery = new_identity(post_quantum)
        with _undone_on_failure(keyring, name):
            ClipIndex(home.index_file).close()
            # Last: recipients.txt is what makes a home initialised.
            write_household_keys(home.recipients_file, [
                HouseholdKey(name, identity.recipient),
                HouseholdKey(RECOVERY_NAME, recovery.recipient),
            ])
    return NewHousehold(identity, recovery, work_factor)


def add_member(home: Home, name: str, *, passphrase: str | None = None,
               recipient: str | None = None, work_factor: int | None = None,
               post_quantum: bool = True) -> HouseholdKey:
    """Add a member by exactly one of: a passphrase (a new identity stored on this device) or
    their own age public key ("age1pq1..." or "age1...", they decrypt elsewhere). New clips are
    encrypted to the member's key from the next clip on; earlier clips are not.

    Passphrase only: the new identity is hybrid unless `post_quantum` is False (an X25519 key),
    and `work_factor` None calibrates scrypt to about a second here.
    """
    if (passphrase is None) == (recipient is None):
        raise HouseholdError("a new member needs either a passphrase or a public key (age1...), "
                             + ("not both" if passphrase is not None else "and neither was given"))
    name = check_new_member(home, name)
    if recipient is not None:
        if not post_quantum:
            raise HouseholdError("the kind of key is chosen only for a new passphrase identity: "
                                 "a given public key is used as it is")
        public_key = _public_key(recipient)
    else:
        check_passphrase_strength(passphrase)
        work_factor = _work_factor(work_factor)

    with _locked(home):
        name, keys = _new_member(home, name)  # again, under the lock
        keyring = Keyring(home.identities_dir)
        if recipient is not None:
            owners = [key.name for key in keys if key.recipient == public_key]
            if owners:
                raise HouseholdError(f"that key already belongs to {owners[0]!r}")
            added = HouseholdKey(name, public_key)
            write_household_keys(home.recipients_file, [*keys, added])
        else:
            created = keyring.create(name, passphrase, work_factor, post_quantum)
            added = HouseholdKey(name, created.recipient)
            with _undone_on_failure(keyring, name):
                write_household_keys(home.recipients_file, [*keys, added])
    return added


def remove_member(home: Home, name: str, *, allow_recovery: bool = False) -> None:
    """Take a member's key out of recipients.txt and delete their identity file, if any.

    New clips are no longer encrypted to the key; clips recorded before stay decryptable by it
    wherever a copy exists. Refused for the last member key besides the recovery key, and for
    the recovery key itself unless `allow_recovery`.
    """
    _require_initialised(home)
    with _locked(home):
        keys = read_household_keys(home.recipients_file)
        remaining = [key for key in keys if key.name != name]
        if len(remaining) == len(keys):
            raise HouseholdError(f"no member named {name!r}")
        if name == RECOVERY_NAME and not allow_recovery:
            raise HouseholdError("the recovery key is not removed here: it is the household's "
                                 "way back to every clip without this software or a passphrase")
        if name != RECOVERY_NAME and all(key.name == RECOVERY_NAME for key in remaining):
            raise HouseholdError(f"{name!r} holds the last member key: add another member "
                                 "first, or only the recovery key could decrypt new clips")
        write_household_keys(home.recipients_file, remaining)
        keyring = Keyring(home.identities_dir)
        if name != RECOVERY_NAME and _valid_name(name) and keyring.exists(name):
            keyring.remove(name)


def change_passphrase(home: Home, name: str, old: str, new: str) -> None:
    """Re-wrap a member's identity under a new passphrase (same key, same work factor)."""
    check_passphrase_member(home, name)
    check_passphrase_strength(new)
    with _locked(home):
        keyring = Keyring(home.identities_dir)
        keyring.change_passphrase(name, old, new, keyring.work_factor(name))


def list_members(home: Home) -> list[Member]:
    """Every key in recipients.txt, in its order, with what kind of key it is."""
    _require_initialised(home)
    keyring = Keyring(home.identities_dir)
    members = []
    for key in read_household_keys(home.recipients_file):
        if key.name == RECOVERY_NAME:
            members.append(Member(key.name, key.recipient, KIND_RECOVERY))
        elif _valid_name(key.name) and keyring.exists(key.name):
            members.append(Member(key.name, key.recipient, KIND_PASSPHRASE,
                                  keyring.work_factor(key.name)))
        else:
            members.append(Member(key.name, key.recipient, KIND_PUBLIC_KEY))
    return members


def classical_members(home: Home) -> list[str]:
    """Names whose key is X25519 only, if the household also has hybrid keys (else none):
    every new clip is wrapped to them too, so a future quantum computer could open it."""
    keys = read_household_keys(home.recipients_file)
    classical = [key.name for key in keys if not is_post_quantum(key.recipient)]
    return classical if len(classical) < len(keys) else []


# -- helpers ---------------------------------------------------------------------------------------


def _require_initialised(home: Home) -> None:
    if not home.is_initialised():
        raise HouseholdError(f"{home.root} is not initialised: run 'doorbell init' first")


def _new_member(home: Home, name: str) -> tuple[str, list[HouseholdKey]]:
    _require_initialised(home)
    name = check_member_name(name)
    keys = read_household_keys(home.recipients_file)
    if any(key.name == name for key in keys):
        raise HouseholdError(f"a member named {name!r} already exists")
    _refuse_leftover_identity(home, name)
    return name, keys


def _refuse_leftover_identity(home: Home, name: str) -> None:
    """An identity file whose key is not in recipients.txt (an interrupted init or removal)."""
    path = Keyring(home.identities_dir).path_for(name)
    if path.exists():
        raise HouseholdError(f"{path} already exists although {name!r} is not a member: "
                             "move it away first, or choose another name")


def _valid_name(name: str) -> bool:
    try:
        check_member_name(name)
    except RecipientsError:
        return False  # a hand-edited label in recipients.txt: never a file name
    return True


def _public_key(text: str) -> X25519Recipient | HybridRecipient:
    if text.strip().upper().startswith("AGE-SECRET-KEY-"):
        # Never echoed: it would end up in a terminal's scrollback or a log.
        raise HouseholdError("that is a secret key, not a public key: give the member's public "
                             "key (it starts with age1) and keep the secret key private")
    try:
        return parse_recipient(text)
    except AgeError as exc:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise HouseholdError(f"{shown!r} is not an age public key: {exc}") from None


def _work_factor(work_factor: int | None) -> int:
    if work_factor is None:
        return calibrate_work_factor()
    if isinstance(work_factor, bool) or not isinstance(work_factor, int) or \
            not MIN_SCRYPT_WORK_FACTOR <= work_factor <= MAX_WORK_FACTOR:
        raise HouseholdError(f"the scrypt work factor must be a whole number between "
                             f"{MIN_SCRYPT_WORK_FACTOR} and {MAX_WORK_FACTOR}, not {work_factor!r}")
    return work_factor


@contextlib.contextmanager
def _locked(home: Home) -> Iterator[None]:
    """An exclusive lock on the home directory for one read-modify-write of the household."""
    fd = os.open(home.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _undone_on_failure(keyring: Keyring, name: str) -> Iterator[None]:
    """Delete the identity just created if the step that makes it a member fails, so a retry is
    not refused by a leftover file."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError, KeyringError):
            keyring.remove(name)
        raise
