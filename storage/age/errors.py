"""Sentinel errors of the age implementation, one class per way a file can be refused.

They mirror the outcomes of the C2SP CCTV test vectors, so a caller (or a test) can tell
"this key does not open this file" from "this file was tampered with".
"""


class AgeError(Exception):
    """Base class: anything age refuses to decrypt or encrypt raises a subclass of this."""


class NoIdentityMatchError(AgeError):
    """None of the given identities can unwrap the file key (wrong key or wrong passphrase)."""


class HeaderError(AgeError):
    """The header is malformed: not a valid age v1 header or an invalid recipient stanza."""


class HeaderMACError(AgeError):
    """The header's MAC does not verify: the header was modified after it was written."""


class PayloadError(AgeError):
    """A payload chunk fails authentication or the chunk layout is invalid.

    A read of everything (`read()`, `readall()`) that fails sets `prefix`: the plaintext that
    authenticated before the failure, from where the read began. storage.clipvideo sets
    `authenticated_bytes`: how far from the start of the clip it authenticates.
    """

    prefix: bytes = b""
    authenticated_bytes: int | None = None


class TruncatedError(PayloadError):
    """The payload ends before its final chunk: the file was cut short (crash, power cut)."""


class UnsupportedRecipientError(AgeError):
    """A key or stanza type this implementation does not support (e.g. a plugin's)."""


class ArmorError(AgeError):
    """The ASCII armor around the file is malformed."""
