"""Members' identities: age keys stored as age files encrypted to each member's passphrase.

Unlocking an identity is logging in: there is no password database. Each identity file is a
standard age file (scrypt recipient) whose plaintext is the secret key line: a post-quantum
hybrid `AGE-SECRET-KEY-PQ-1...` by default, or an X25519 `AGE-SECRET-KEY-1...` for a member
who decrypts with an age older than 1.3.0. `age -d -i identities/alice.age clip.mp4.age` works
with the stock tool (age 1.3.0 or later for a hybrid key).

This module is the decrypting half: the recorder never imports it.
"""

import io
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .age import encrypt
from .age.errors import AgeError, NoIdentityMatchError
from .age.identities import HybridIdentity, ScryptIdentity, X25519Identity, parse_identities_text
from .age.reader import decrypt
from .age.recipients import MIN_SCRYPT_WORK_FACTOR, ScryptRecipient
from .durable import write_atomically
from .errors import KeyringError, WrongPassphraseError
from .passphrase import check_passphrase_strength
from .recipients import check_member_name

# The directory keeps everyone but its owner out (0700); the files are 0640 so that an ACL on
# the directory (deploy/install.sh: the replicator's read-only group) can let one more reader
# in. They are passphrase-wrapped, so a copy on the replica reveals nothing without one.
DIRECTORY_MODE = 0o700
IDENTITY_FILE_MODE = 0o640

__all__ = [
    "Keyring",
    "calibrate_work_factor",
    "check_passphrase_strength",
    "decrypt_identity",
    "encrypt_identity",
]

MAX_WORK_FACTOR = 22  # the stock `age` CLI refuses passphrase files above 2^22
MemberIdentity = HybridIdentity | X25519Identity


def new_identity(post_quantum: bool = True) -> MemberIdentity:
    """A fresh member or recovery key: hybrid ML-KEM-768 + X25519 unless `post_quantum` is off."""
    return HybridIdentity.generate() if post_quantum else X25519Identity.generate()


def _total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 512 * 1024 * 1024


def calibrate_work_factor(target_s: float = 1.0, max_memory_bytes: int | None = None) -> int:
    """The scrypt work factor (log2 N) that takes about `target_s` here, within memory limits.

    scrypt uses 128 * r * N bytes (r = 8): 2^18 is 256 MiB, too much for a 512 MB Pi Zero 2 W,
    so memory is capped at a quarter of RAM; never below 2^15.
    """
    if max_memory_bytes is None:
        max_memory_bytes = _total_memory_bytes() // 4
    probe = 14
    started = time.perf_counter()
    Scrypt(salt=b"calibration-salt", length=32, n=1 << probe, r=8, p=1).derive(b"probe")
    elapsed = max(time.perf_counter() - started, 1e-4)
    work_factor = probe
    while elapsed * 2 <= target_s * 1.4 and work_factor < MAX_WORK_FACTOR:
        if 128 * 8 * (1 << (work_factor + 1)) > max_memory_bytes:
            break
        work_factor += 1
        elapsed *= 2
    return max(work_factor, MIN_SCRYPT_WORK_FACTOR)


def encrypt_identity(identity: MemberIdentity, passphrase: str, work_factor: int) -> bytes:
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"# created: {created}\n# public key: {identity.recipient}\n{identity}\n"
    buffer = io.BytesIO()
    with encrypt(buffer, [ScryptRecipient(passphrase, work_factor)]) as writer:
        writer.write(text.encode())
    return buffer.getvalue()


def decrypt_identity(data: bytes, passphrase: str) -> MemberIdentity:
    try:
        reader = decrypt(io.BytesIO(data), [ScryptIdentity(passphrase)])
        identities = parse_identities_text(reader.read().decode("utf-8"))
    except NoIdentityMatchError:
        raise WrongPassphraseError("wrong passphrase") from None
    if len(identities) != 1:
        raise AgeError("an identity file must hold exactly one key")
    return identities[0]


@dataclass(frozen=True, slots=True)
class Keyring:
    """The `identities/` directory of a home."""

    directory: Path

    def path_for(self, name: str) -> Path:
        return self.directory / f"{check_member_name(name)}.age"

    def members(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name.removesuffix(".age") for p in self.directory.glob("*.age"))

    def exists(self, name: str) -> bool:
        return self.path_for(name).is_file()

    def create(self, name: str, passphrase: str, work_factor: int,
               post_quantum: bool = True) -> MemberIdentity:
        """Generate a member's identity (hybrid unless `post_quantum` is off) and store it
        encrypted to their passphrase."""
        check_passphrase_strength(passphrase)
        path = self.path_for(name)
        if path.exists():
            raise KeyringError(f"member {name!r} already exists")
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        identity = new_identity(post_quantum)
        write_atomically(path, encrypt_identity(identity, passphrase, work_factor),
                         mode=IDENTITY_FILE_MODE)
        return identity

    def unlock(self, name: str, passphrase: str) -> MemberIdentity:
        path = self.path_for(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyringError(f"no member named {name!r}") from None
        return decrypt_identity(data, passphrase)

    def work_factor(self, name: str) -> int:
        """The scrypt work factor a member's identity file was written with (no key needed)."""
        from .age.header import read_header

        with self.path_for(name).open("rb") as handle:
            stanzas = read_header(handle).stanzas
        return int(stanzas[0].args[1])

    def change_passphrase(self, name: str, old: str, new: str, work_factor: int) -> None:
        """Re-wrap the same identity under a new passphrase; an interruption keeps the old file."""
        identity = self.unlock(name, old)
        check_passphrase_strength(new)
        write_atomically(self.path_for(name), encrypt_identity(identity, new, work_factor),
                         IDENTITY_FILE_MODE)

    def remove(self, name: str) -> None:
        path = self.path_for(name)
        if not path.exists():
            raise KeyringError(f"no member named {name!r}")
        path.unlink()
