"""Recipients: the public half. Everything here can encrypt and nothing here can decrypt."""

import os
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import bech32
from .errors import AgeError, UnsupportedRecipientError
from .header import Stanza, b64encode
from .hybrid import RECIPIENT_HRP, HybridRecipient

X25519_LABEL = b"age-encryption.org/v1/X25519"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_ZERO_NONCE = bytes(12)
MIN_SCRYPT_WORK_FACTOR = 15  # 2^15: the floor this product accepts for keys it creates


class Recipient(Protocol):
    """Something a file key can be wrapped to."""

    def wrap(self, file_key: bytes) -> list[Stanza]: ...


def x25519_wrap_key(shared_secret: bytes, ephemeral_share: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral_share + recipient, info=X25519_LABEL
    ).derive(shared_secret)


def scrypt_wrap_key(passphrase: str, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(passphrase.encode("utf-8"))


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class X25519Recipient:
    """An `age1...` public key (classical: not protected against a future quantum computer)."""

    def __init__(self, public_key: bytes):
        if len(public_key) != 32:
            raise AgeError("an X25519 public key is 32 bytes")
        self.public_key = public_key

    def wrap(self, file_key: bytes) -> list[Stanza]:
        ephemeral = X25519PrivateKey.generate()
        share = _raw_public(ephemeral.public_key())
        try:
            secret = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public_key))
        except ValueError:
            raise AgeError("the recipient is a low-order X25519 point") from None
        wrap_key = x25519_wrap_key(secret, share, self.public_key)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return [Stanza("X25519", [b64encode(share)], body)]

    def __str__(self) -> str:
        return bech32.encode("age", self.public_key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"X25519Recipient({self})"


class ScryptRecipient:
    """A passphrase. It must be a file's only recipient (age forbids mixing it with others)."""

    def __init__(self, passphrase: str, work_factor: int = 18):
        if not passphrase:
            raise AgeError("the passphrase is empty")
        if not 1 <= work_factor <= 30:
            raise AgeError("the scrypt work factor must be between 1 and 30")
        self._passphrase = passphrase
        self.work_factor = work_factor

    def wrap(self, file_key: bytes) -> list[Stanza]:
        salt = os.urandom(16)
        wrap_key = scrypt_wrap_key(self._passphrase, salt, self.work_factor)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return [Stanza("scrypt", [b64encode(salt), str(self.work_factor)], body)]

    def __repr__(self) -> str:
        return f"ScryptRecipient(work_factor={self.work_factor})"


def is_post_quantum(recipient: Recipient) -> bool:
    """Whether a file key wrapped to `recipient` stays secret against a quantum computer."""
    return isinstance(recipient, HybridRecipient)


def parse_recipient(text: str) -> X25519Recipient | HybridRecipient:
    """Parse an `age1...` (X25519) or `age1pq1...` (ML-KEM-768 + X25519) recipient string."""
    text = text.strip()
    try:
        hrp, data = bech32.decode(text)
    except bech32.Bech32Error as exc:
        raise AgeError(f"not a valid age recipient ({exc})") from None
    if text != text.lower():  # as age: an upper-case recipient is not one it knows
        raise UnsupportedRecipientError(f"unsupported recipient {text[:12]!r}: "
                                        "age recipients are written in lower case")
    if hrp == "age":
        return X25519Recipient(data)
    if hrp == RECIPIENT_HRP:
        return HybridRecipient(data)
    raise UnsupportedRecipientError(f"unsupported recipient type {hrp!r}")


def parse_recipients_text(text: str) -> list[X25519Recipient | HybridRecipient]:
    """Parse a recipients file: one `age1...` or `age1pq1...` per line, `#` comments and blank
    lines ignored."""
    recipients = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            recipients.append(parse_recipient(line))
        except AgeError as exc:
            raise AgeError(f"line {number}: {exc}") from None
    return recipients
