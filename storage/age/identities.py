"""Identities: the private half. Whatever holds one can decrypt; the recorder never does."""

import os
import re
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from . import bech32, hybrid
from .errors import AgeError, HeaderError, NoIdentityMatchError, UnsupportedRecipientError
from .header import Stanza, b64decode
from .hybrid import HybridRecipient
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


class HybridIdentity:
    """An `AGE-SECRET-KEY-PQ-1...` private key: a 32-byte seed, as the age specification has it.

    The seed expands (SHAKE256 to 96 bytes, per filippo.io/hpke-pq) into the ML-KEM-768 seed
    (the first 64 bytes) and the X25519 private key (the last 32); the rest is the HPKE of the
    `cryptography` package.
    """

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise AgeError("a hybrid (post-quantum) private key is 32 bytes")
        self._seed = bytes(seed)
        digest = hashes.Hash(hashes.SHAKE256(digest_size=96))
        digest.update(self._seed)
        expanded = digest.finalize()
        mlkem = MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
        self._x25519 = X25519PrivateKey.from_private_bytes(expanded[64:])
        self._key = hpke.MLKEM768X25519PrivateKey(mlkem, self._x25519)
        self._public = (mlkem.public_key().public_bytes_raw()
                        + self._x25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @classmethod
    def generate(cls) -> "HybridIdentity":
        return cls(os.urandom(32))

    @property
    def recipient(self) -> HybridRecipient:
        return HybridRecipient(self._public)

    def unwrap(self, stanzas: list[Stanza]) -> bytes:
        suite = hybrid.hpke_suite()
        for stanza in stanzas:
            if stanza.type != hybrid.STANZA_TYPE:
                continue
            if len(stanza.args) != 1:
                raise HeaderError("invalid mlkem768x25519 stanza: it must have exactly one "
                                  "argument")
            enc = b64decode(stanza.args[0])
            if len(enc) != hybrid.ENC_BYTES:
                raise HeaderError(f"invalid mlkem768x25519 stanza: enc is {len(enc)} bytes, "
                                  f"not {hybrid.ENC_BYTES}")
            if len(stanza.body) != hybrid.SEALED_FILE_KEY_BYTES:  # before any decryption
                raise HeaderError("invalid mlkem768x25519 stanza: the sealed file key has the "
                                  "wrong size")
            share = X25519PublicKey.from_public_bytes(enc[hybrid.MLKEM_CIPHERTEXT_BYTES:])
            try:
                self._x25519.exchange(share)  # refuses the all-zero shared secret
            except ValueError:
                raise HeaderError("invalid mlkem768x25519 stanza: low-order X25519 share") \
                    from None
            try:
                return suite.decrypt(enc + stanza.body, self._key, info=hybrid.HPKE_INFO)
            except InvalidTag:
                continue
        raise NoIdentityMatchError("no mlkem768x25519 stanza matches this identity")

    def __str__(self) -> str:
        return bech32.encode(hybrid.IDENTITY_HRP, self._seed).upper()

    def __repr__(self) -> str:
        text = str(self.recipient)
        return f"HybridIdentity(recipient={text[:16]}...{text[-8:]})"  # never the secret


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


def parse_identity(text: str) -> X25519Identity | HybridIdentity:
    """Parse an `AGE-SECRET-KEY-1...` (X25519) or `AGE-SECRET-KEY-PQ-1...` (hybrid) string."""
    text = text.strip()
    try:
        hrp, data = bech32.decode(text)
    except bech32.Bech32Error as exc:
        raise AgeError(f"not a valid age identity ({exc})") from None
    if text != text.upper():
        raise UnsupportedRecipientError(f"unsupported identity type {hrp.upper()!r}: age "
                                        "identities are written in upper case")
    if hrp == "age-secret-key-":
        return X25519Identity(data)
    if hrp == hybrid.IDENTITY_HRP:
        return HybridIdentity(data)
    raise UnsupportedRecipientError(f"unsupported identity type {hrp.upper()!r}")


def parse_identities_text(text: str) -> list[X25519Identity | HybridIdentity]:
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
