"""age v1 (age-encryption.org/v1) on the `cryptography` package.

A small API in the spirit of Go's age:

    writer = encrypt(dst, [parse_recipient("age1pq1...")])   # write(), flush(), close()
    reader = decrypt(src, [parse_identity("AGE-SECRET-KEY-1...")])   # read(), seek(), .size

The encrypting half (writer, recipients) is imported eagerly. The decrypting half (reader,
identities) is loaded on first use through `__getattr__`, so that `import storage.age` in the
recorder never loads code that can decrypt: the recorder is write-only by construction, and a
test checks `sys.modules` to prove it.
"""

import importlib

from .errors import (
    AgeError,
    ArmorError,
    HeaderError,
    HeaderMACError,
    NoIdentityMatchError,
    PayloadError,
    TruncatedError,
    UnsupportedRecipientError,
)
from .hybrid import HybridRecipient
from .recipients import (
    Recipient,
    ScryptRecipient,
    X25519Recipient,
    is_post_quantum,
    parse_recipient,
    parse_recipients_text,
)
from .writer import EncryptingWriter, encrypt

_DECRYPTING_HALF = {
    "decrypt": "reader",
    "recover_prefix": "reader",
    "rewrap_header": "reader",
    "DecryptingReader": "reader",
    "RecoveredPrefix": "reader",
    "Identity": "identities",
    "X25519Identity": "identities",
    "HybridIdentity": "identities",
    "ScryptIdentity": "identities",
    "parse_identity": "identities",
    "parse_identities_text": "identities",
}


def __getattr__(name: str):
    if name in _DECRYPTING_HALF:
        module = importlib.import_module(f".{_DECRYPTING_HALF[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AgeError",
    "ArmorError",
    "EncryptingWriter",
    "HeaderError",
    "HeaderMACError",
    "HybridRecipient",
    "NoIdentityMatchError",
    "PayloadError",
    "Recipient",
    "ScryptRecipient",
    "TruncatedError",
    "UnsupportedRecipientError",
    "X25519Recipient",
    "encrypt",
    "is_post_quantum",
    "parse_recipient",
    "parse_recipients_text",
    *_DECRYPTING_HALF,
]
