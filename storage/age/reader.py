"""Decrypting reader: strict, random-access, and prefix-recovering.

`decrypt(src, identities)` returns a seekable reader. Reading a byte range decrypts only the
chunks that cover it (chunk i lives at a fixed offset), which is what makes HTTP Range playback
of a 1 GiB clip as quick as a 1 MiB one. Every chunk released has been authenticated; a file
that ends without its final chunk raises TruncatedError once the reader gets there, as age
requires: `read()` of everything raises rather than return a short result. `recover_prefix`
is the deliberate exception: it opens a cut file and exposes exactly its authenticated whole
chunks, and says that it was truncated. `check_payload` tells a cut file from a damaged one.
"""

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag

from .errors import (
    HeaderError,
    NoIdentityMatchError,
    PayloadError,
    TruncatedError,
)
from .header import Header, encode_header, read_header
from .identities import Identity
from .recipients import Recipient
from .stream import (
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    chunk_nonce,
    payload_aead,
)


def unwrap_file_key(header: Header, identities: Sequence[Identity]) -> bytes:
    """Find the file key with the first identity that matches, then check the header MAC."""
    if len(header.stanzas) > 1 and any(s.type == "scrypt" for s in header.stanzas):
        raise HeaderError("an scrypt stanza must be the only stanza in the header")
    for identity in identities:
        try:
            file_key = identity.unwrap(header.stanzas)
        except NoIdentityMatchError:
            continue
        header.verify_mac(file_key)
        return file_key
    raise NoIdentityMatchError("no identity matches this file (wrong key or passphrase)")


class DecryptingReader(io.RawIOBase):
    """A read-only, seekable view of an age file's plaintext."""

    def __init__(self, src: BinaryIO, file_key: bytes, payload_offset: int, limit_chunks=None):
        super().__init__()
        self._src = src
        src.seek(0, os.SEEK_END)
        end = src.tell()
        if end - payload_offset < NONCE_SIZE:
            # The nonce completes the header: without it nothing can be authenticated.
            raise HeaderError("the file ends before the payload nonce: it was cut short")
        src.seek(payload_offset)
        self._aead = payload_aead(file_key, src.read(NONCE_SIZE))
        self._first_chunk_offset = payload_offset + NONCE_SIZE
        payload_bytes = end - self._first_chunk_offset
        self._chunk_count = -(-payload_bytes // ENCRYPTED_CHUNK_SIZE)
        self._last_chunk_bytes = payload_bytes - (self._chunk_count - 1) * ENCRYPTED_CHUNK_SIZE
        self._limit_chunks = limit_chunks  # set by recover_prefix: chunks past it do not exist
        self._final_index: int | None = None  # index of the chunk sealed as final, once seen
        self._cached: tuple[int, bytes] | None = None
        self._position = 0

    # -- chunk access -------------------------------------------------------------------------

    def _open(self, index: int, ciphertext: bytes, last: bool) -> bytes | None:
        try:
            return self._aead.decrypt(chunk_nonce(index, last), ciphertext, None)
        except InvalidTag:
            return None

    def _read_ciphertext(self, index: int) -> bytes:
        self._src.seek(self._first_chunk_offset + index * ENCRYPTED_CHUNK_SIZE)
        return self._src.read(ENCRYPTED_CHUNK_SIZE)

    def _chunk(self, index: int) -> bytes | None:
        """Plaintext of chunk `index`, or None past the end of a complete payload."""
        if self._cached and self._cached[0] == index:
            return self._cached[1]
        if self._limit_chunks is not None and index >= self._limit_chunks:
            return None
        if index >= self._chunk_count:
            if self._chunk_count == 0:
                raise TruncatedError("the file has no payload chunks: it was cut short")
            self._chunk(self._chunk_count - 1)
            if self._final_index == self._chunk_count - 1:
                return None
            raise TruncatedError("the file ends before its final chunk: it was cut short")
        if self._final_index is not None and index > self._final_index:
            raise PayloadError("data follows the final chunk")
        ciphertext = self._read_ciphertext(index)
        is_last_in_file = index == self._chunk_count - 1
        if len(ciphertext) < TAG_SIZE:
            raise PayloadError(f"chunk {index} is shorter than its authentication tag")
        plaintext = self._open(index, ciphertext, last=is_last_in_file)
        if plaintext is not None and is_last_in_file:
            self._final_index = index
        elif plaintext is None and len(ciphertext) == ENCRYPTED_CHUNK_SIZE:
            # A full chunk may be sealed either way: non-final (cut file) or final (trailing data).
            plaintext = self._open(index, ciphertext, last=not is_last_in_file)
            if plaintext is not None and not is_last_in_file:
                self._final_index = index
        if plaintext is None:
            raise PayloadError(f"chunk {index} fails authentication: the file is damaged")
        if not plaintext and index > 0 and self._final_index == index:
            raise PayloadError("the final chunk is empty, which age forbids")
        self._cached = (index, plaintext)
        return plaintext

    # -- file-like interface ------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Plaintext size in bytes. Raises TruncatedError if the final chunk is missing."""
        last_index = self._chunk_count - 1
        if self._limit_chunks is not None:
            last_index = self._limit_chunks - 1
            if last_index < 0:
                return 0
        elif last_index < 0:
            raise TruncatedError("the file has no payload chunks: it was cut short")
        last_chunk = self._chunk(last_index)
        if self._limit_chunks is None and self._final_index != last_index:
            raise TruncatedError("the file ends before its final chunk: it was cut short")
        return last_index * CHUNK_SIZE + len(last_chunk)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            position = offset
        elif whence == os.SEEK_CUR:
            position = self._position + offset
        elif whence == os.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError("negative seek position")
        self._position = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        """Read up to `size` bytes, or everything from here to the end (size -1 or None).

        `read(n)` streams: data authenticated before a failing chunk is returned first and the
        error is raised by the next call. Reading everything never returns a short result: a
        cut or damaged file raises, with what authenticated before it as the error's `prefix`.
        """
        if size is None:
            size = -1
        out = bytearray()
        while size < 0 or len(out) < size:
            index, offset = divmod(self._position, CHUNK_SIZE)
            try:
                plaintext = self._chunk(index)
            except PayloadError as exc:
                if size < 0:
                    exc.prefix = bytes(out)
                    raise
                if out:
                    break
                raise
            if plaintext is None or offset >= len(plaintext):
                break  # end of the payload
            available = len(plaintext) - offset
            take = available if size < 0 else min(available, size - len(out))
            out += plaintext[offset : offset + take]
            self._position += take
        return bytes(out)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)


def _open_header(src: BinaryIO, identities: Sequence[Identity]) -> tuple[Header, bytes]:
    src.seek(0)
    header = read_header(src)
    return header, unwrap_file_key(header, identities)


def decrypt(src: BinaryIO, identities: Sequence[Identity]) -> DecryptingReader:
    """Open an age file for reading. `src` must be seekable (a file or BytesIO)."""
    header, file_key = _open_header(src, identities)
    return DecryptingReader(src, file_key, header.size_bytes)


@dataclass(frozen=True, slots=True)
class RecoveredPrefix:
    reader: DecryptingReader
    truncated: bool  # True if the file lacked its final chunk or had a damaged one
    size_bytes: int  # plaintext bytes that authenticate


def _authenticated_prefix(reader: "DecryptingReader", start: int = 0) -> tuple[int, bool]:
    """(how many chunks from the start authenticate, whether they end with the final chunk).
    A final chunk followed by garbage authenticates; what follows it does not count. The first
    `start` chunks are taken as authenticated already (not read)."""
    good = min(start, reader._chunk_count)
    for index in range(good, reader._chunk_count):
        try:
            reader._chunk(index)
        except PayloadError:
            return good, False
        good = index + 1
        if reader._final_index == index:
            return good, True
    return good, False


def recover_prefix(src: BinaryIO, identities: Sequence[Identity],
                   known_good_chunks: int = 0) -> RecoveredPrefix:
    """Open a possibly cut or torn file and expose exactly its authenticated chunks.

    Every chunk is authenticated (a whole-file pass): damage anywhere, not only at the end,
    ends the prefix. `truncated` is False only for a file that is entirely intact. A caller
    that authenticated the first `known_good_chunks` of this same file before (a growing clip,
    storage/clipvideo.py) has only the chunks after them checked now; each chunk is still
    authenticated again when it is read.
    """
    reader = decrypt(src, identities)
    good, sealed = _authenticated_prefix(reader, known_good_chunks)
    if sealed and good == reader._chunk_count:
        return RecoveredPrefix(reader, truncated=False, size_bytes=reader.size)
    header, file_key = _open_header(src, identities)
    prefix = DecryptingReader(src, file_key, header.size_bytes, limit_chunks=good)
    return RecoveredPrefix(prefix, truncated=True, size_bytes=prefix.size)


@dataclass(frozen=True, slots=True)
class PayloadCheck:
    """What a whole-file pass found: how far the file authenticates, and what follows."""

    chunks: int  # chunks in the file, the last one possibly partial
    authenticated_chunks: int  # the prefix of chunks that authenticates
    size_bytes: int  # plaintext bytes in that prefix
    sealed: bool  # the prefix ends with the final chunk: the file was finished
    resumes_at: int | None  # a later chunk that authenticates again after a failing one

    @property
    def problem(self) -> str:
        """Empty if the file is whole or only cut short (a crash loses its end, nothing else)."""
        if self.resumes_at is not None:
            return (f"chunk {self.authenticated_chunks} fails authentication but chunk "
                    f"{self.resumes_at} after it authenticates: damaged, not cut short")
        if self.sealed and self.authenticated_chunks < self.chunks:
            return "data follows the final chunk"
        return ""


def check_payload(src: BinaryIO, identities: Sequence[Identity]) -> PayloadCheck:
    """Authenticate every chunk and tell a cut file from a damaged one.

    A crash or power cut only ever loses the end of a file; damage (a flipped bit, an edit) can
    sit anywhere. So after the first chunk that fails, each later chunk is tried under both
    nonces: one that authenticates means the file was damaged, not cut.
    """
    reader = decrypt(src, identities)
    good, sealed = _authenticated_prefix(reader)
    resumes_at = None
    if not sealed:
        for index in range(good + 1, reader._chunk_count):
            ciphertext = reader._read_ciphertext(index)
            if any(reader._open(index, ciphertext, last) is not None for last in (False, True)):
                resumes_at = index
                break
    size = 0
    if good:
        size = (good - 1) * CHUNK_SIZE + len(reader._chunk(good - 1))
    return PayloadCheck(reader._chunk_count, good, size, sealed, resumes_at)


def rewrap_header(
    src: BinaryIO,
    dst: BinaryIO,
    identities: Sequence[Identity],
    add: Sequence[Recipient],
) -> None:
    """Copy `src` to `dst` with `add` appended to its recipients; the payload is copied as is.

    Only someone who can decrypt the file can add a recipient (the file key is needed), and the
    payload is never decrypted or re-encrypted: a 1 GiB clip costs one read and one write.
    """
    header, file_key = _open_header(src, identities)
    stanzas = list(header.stanzas)
    for recipient in add:
        stanzas.extend(recipient.wrap(file_key))
    if len(stanzas) > 1 and any(s.type == "scrypt" for s in stanzas):
        raise HeaderError("a file encrypted to a passphrase cannot have other recipients")
    dst.write(encode_header(stanzas, file_key))
    src.seek(header.size_bytes)
    while block := src.read(1024 * 1024):
        dst.write(block)
