"""Identities: the private half. Whatever holds one can decrypt; the recorder never does."""

import re
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from . import bech32
from .errors import AgeError, HeaderError, NoIdentityMatchError, UnsupportedRecipientError
from .header import Stanza, b64decode
from .recipients import X25519Recipient, scrypt_wrap_key, x25519_wrap_key
from .stream import FILE_KEY_SIZE

_ZERO_NONCE = bytes(12)
_WRAPPED_KEY_SIZE = FILE_KEY_SIZE + 16
_DECIMAL = re.compile(r"[1-9][0-9]*")
DEFAULT_MAX_WORK_FACTOR = 22  # as age: higher would let a hostile file demand gigabytes


class Identity(Protocol):
    """Something that can unwrap a file key from a header's stanzas."""

    def unwrap(self, stanzas: list[Stanza]) -> bytes:
        """Return the file key, or raise NoIdentityMatchError (or HeaderError if malformed)."""
        ...


def _open_wrapped_key(wrap_key: bytes, body: bytes, kind: str) -> bytes:
    if len(body) != _WRAPPED_KEY_SIZE:
        raise HeaderError(f"invalid {kind} stanza: the wrapped file key has the wrong size")
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        raise NoIdentityMatchError(f"this {kind} identity does not match") from None


class X25519Identity:
    """An `AGE-SECRET-KEY-1...` private key."""

    def __init__(self, private_key: bytes):
        if len(private_key) != 32:
            raise AgeError("an X25519 private key is 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(private_key)
        self._public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> "X25519Identity":
        raw = X25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        return cls(raw)

    @property
    def recipient(self) -> X25519Recipient:
        return X25519Recipient(self._public)

    def unwrap(self, stanzas: list[Stanza]) -> bytes:
        for stanza in stanzas:
            if stanza.type != "X25519":
                continue
            if len(stanza.args) != 1:
                raise HeaderError("invalid X25519 stanza: it must have exactly one argument")
            share = b64decode(stanza.args[0])
            if len(share) != 32:
                raise HeaderError("invalid X25519 stanza: the ephemeral share is not 32 bytes")
            try:
                secret = self._key.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError:
                raise HeaderError("invalid X25519 stanza: low-order ephemeral share") from None
            wrap_key = x25519_wrap_key(secret, share, self._public)
            try:
                return _open_wrapped_key(wrap_key, stanza.body, "X25519")
            except NoIdentityMatchError:
                continue
        raise NoIdentityMatchError("no X25519 stanza matches this identity")

    def __str__(self) -> str:
        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return bech32.encode("age-secret-key-", raw).upper()

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient})"  # never the secret


class ScryptIdentity:
    """A passphrase, for files whose single stanza is an scrypt stanza."""

    def __init__(self, passphrase: str, max_work_factor: int = DEFAULT_MAX_WORK_FACTOR):
        self._passphrase = passphrase
        self.max_work_factor = max_work_factor

    def unwrap(self, stanzas: list[Stanza]) -> bytes:
        for stanza in stanzas:
            if stanza.type != "scrypt":
                continue
            if len(stanzas) != 1:
                raise HeaderError("an scrypt stanza must be the only stanza in the header")
            if len(stanza.args) != 2:
                raise HeaderError("invalid scrypt stanza: it must have exactly two arguments")
            salt = b64decode(stanza.args[0])
            if len(salt) != 16:
                raise HeaderError("invalid scrypt stanza: the salt is not 16 bytes")
            if not _DECIMAL.fullmatch(stanza.args[1]):
                raise HeaderError("invalid scrypt stanza: malformed work factor")
            work_factor = int(stanza.args[1])
            if work_factor > self.max_work_factor:
                raise HeaderError(f"scrypt work factor {work_factor} is too large")
            if len(stanza.body) != _WRAPPED_KEY_SIZE:
                raise HeaderError("invalid scrypt stanza: the wrapped file key has the wrong size")
            wrap_key = scrypt_wrap_key(self._passphrase, salt, work_factor)
            return _open_wrapped_key(wrap_key, stanza.body, "scrypt")
        raise NoIdentityMatchError("the file is not encrypted to a passphrase")

    def __repr__(self) -> str:
        return "ScryptIdentity(<passphrase>)"


def parse_identity(text: str) -> X25519Identity:
    """Parse an `AGE-SECRET-KEY-1...` string."""
    text = text.strip()
    try:
        hrp, data = bech32.decode(text)
    except bech32.Bech32Error as exc:
        raise AgeError(f"not a valid age identity ({exc})") from None
    if hrp != "age-secret-key-" or text != text.upper():
        raise UnsupportedRecipientError(f"unsupported identity type {hrp.upper()!r}")
    return X25519Identity(data)


def parse_identities_text(text: str) -> list[X25519Identity]:
    """Parse an identity file: one key per line, `#` comments and blank lines ignored."""
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(parse_identity(line))
        except AgeError as exc:
            raise type(exc)(f"line {number}: {exc}") from None
    return identities
