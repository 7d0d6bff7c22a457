"""Encrypting writer: `encrypt(dst, recipients)` returns a file-like object that seals as it goes.

Memory stays bounded at one chunk: a full 64 KiB chunk is sealed and written as soon as the
next byte arrives (only then is it known not to be the last chunk), so a crash loses at most the
final, unsealed 64 KiB; everything already written authenticates as a prefix.
"""

import os
from collections.abc import Sequence
from typing import BinaryIO

from .errors import AgeError
from .header import encode_header
from .recipients import Recipient, ScryptRecipient
from .stream import CHUNK_SIZE, FILE_KEY_SIZE, NONCE_SIZE, chunk_nonce, payload_aead


class EncryptingWriter:
    """Write plaintext in, age ciphertext goes to `dst`. `close()` seals the final chunk.

    It does not close `dst`: the caller owns it (and decides when to fsync it).
    """

    def __init__(self, dst: BinaryIO, file_key: bytes, header: bytes = b""):
        nonce = os.urandom(NONCE_SIZE)
        self._dst = dst
        self._aead = payload_aead(file_key, nonce)
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        self.plaintext_bytes = 0
        # Header and nonce in one write: a file holding one holds the other (nothing before
        # the nonce can be authenticated), and a caller can make both durable at once.
        dst.write(header + nonce)

    def _seal(self, chunk: bytes | bytearray | memoryview, last: bool) -> None:
        self._dst.write(self._aead.encrypt(chunk_nonce(self._counter, last), chunk, None))
        self._counter += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed age writer")
        view = memoryview(data).cast("B")
        size = len(view)
        position = 0
        while position < size:
            if len(self._buffer) == CHUNK_SIZE:
                self._seal(self._buffer, last=False)
                self._buffer.clear()
            if not self._buffer and size - position > CHUNK_SIZE:
                # Seal straight from the caller's buffer: no copy for bulk writes.
                self._seal(view[position : position + CHUNK_SIZE], last=False)
                position += CHUNK_SIZE
                continue
            take = min(CHUNK_SIZE - len(self._buffer), size - position)
            self._buffer += view[position : position + take]
            position += take
        self.plaintext_bytes += size
        return size

    def flush(self) -> None:
        """Push sealed chunks to `dst`. At most one chunk of plaintext stays held back."""
        self._dst.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._seal(self._buffer, last=True)
        self._buffer.clear()
        self._closed = True
        self._dst.flush()

    @property
    def closed(self) -> bool:
        return self._closed

    def writable(self) -> bool:
        return True

    def __enter__(self) -> "EncryptingWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def new_file_key() -> bytes:
    return os.urandom(FILE_KEY_SIZE)


def encrypt(dst: BinaryIO, recipients: Sequence[Recipient]) -> EncryptingWriter:
    """Write an age header for `recipients` to `dst` and return a writer for the plaintext."""
    if not recipients:
        raise AgeError("at least one recipient is needed to encrypt")
    if len(recipients) > 1 and any(isinstance(r, ScryptRecipient) for r in recipients):
        raise AgeError("a passphrase (scrypt) recipient must be a file's only recipient")
    file_key = new_file_key()
    stanzas = [stanza for recipient in recipients for stanza in recipient.wrap(file_key)]
    return EncryptingWriter(dst, file_key, encode_header(stanzas, file_key))
