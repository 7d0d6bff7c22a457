"""Structural checks of an age file without a key: the header parses and the chunk layout fits.

This is what `doorbell verify` can say to anyone holding the card: whether each file is a
well-formed age file of a plausible size. Authenticating the chunks needs a key.
"""

from dataclasses import dataclass
from pathlib import Path

from .age.errors import AgeError
from .age.header import read_header
from .age.stream import ENCRYPTED_CHUNK_SIZE, NONCE_SIZE, TAG_SIZE


@dataclass(frozen=True, slots=True)
class FileShape:
    ok: bool
    problem: str  # "" when ok
    recipients: int = 0
    chunks: int = 0
    size_bytes: int = 0


def inspect_file(path: Path) -> FileShape:
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header = read_header(handle)
    except AgeError as exc:
        return FileShape(False, f"the header is not valid age: {exc}", size_bytes=size)
    payload = size - header.size_bytes - NONCE_SIZE
    if payload < 0:
        return FileShape(False, "the file ends inside the payload nonce", size_bytes=size)
    if payload == 0:
        return FileShape(False, "the file has no payload chunk", len(header.stanzas), 0, size)
    chunks = -(-payload // ENCRYPTED_CHUNK_SIZE)
    last = payload - (chunks - 1) * ENCRYPTED_CHUNK_SIZE
    if last < TAG_SIZE or (chunks > 1 and last == TAG_SIZE):
        problem = "the last chunk is too short: the file was cut"
        return FileShape(False, problem, len(header.stanzas), chunks, size)
    return FileShape(True, "", len(header.stanzas), chunks, size)
