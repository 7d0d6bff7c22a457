"""A clip's video for playback and export: the one place that decides what gets decrypted when.

Opening tells the two kinds of file apart:
 * sealed (its final chunk authenticates): random access, each chunk authenticated as it is
   read, so a Range request decrypts only the chunks it covers;
 * interrupted (the recorder stopped before sealing it): `truncated` is True and exactly the
   authenticated whole chunks are exposed. Finding them is one pass over the file, which also
   authenticates everything, so `authenticate_all()` costs nothing more.
A sealed file can still be damaged in the middle: `authenticate_all()` finds that before a
caller promises a whole body (a download, an export), and `iter_range()` raises when it reaches
the damage. Every error is a storage.age error whose message is one sentence.
"""

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

from .age.errors import AgeError, PayloadError
from .age.identities import Identity
from .age.reader import DecryptingReader, decrypt, recover_prefix
from .age.stream import CHUNK_SIZE
from .clipid import clip_paths
from .errors import ClipNotFound

BLOCK_BYTES = 256 * 1024  # what iter_range yields at a time: four chunks
# An interrupted clip is authenticated whole to find its end: one bigger than an hour (the
# longest recording.max_clip_s) at 8 Mbit/s is refused rather than decrypted at each request.
MAX_INTERRUPTED_BYTES = 4 * 1024**3
PREFIX_CACHE_ENTRIES = 64
FIRST_BYTES = 64 * 1024  # hashed to tell a file from another at the same inode


class _PrefixCache:
    """How many chunks of an interrupted file authenticated, per file: a growing clip's next
    Range request authenticates only the chunks appended since (they are only appended to).

    Keyed by the file's path, device and inode and a hash of its first bytes (its header and
    first chunk); reused while the file is no shorter. Serving still authenticates every chunk
    it reads, so a chunk rewritten in place is a clear error there, never served.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, path: Path, handle) -> tuple[tuple, int]:
        """(the file's key, its size now)."""
        info = os.fstat(handle.fileno())
        handle.seek(0)
        first = hashlib.sha256(handle.read(FIRST_BYTES)).digest()
        return (str(path), info.st_dev, info.st_ino, first), info.st_size

    def known_good_chunks(self, key: tuple, size_bytes: int) -> int:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] > size_bytes:
                return 0
            self._entries.move_to_end(key)
            return entry[1]

    def remember(self, key: tuple, size_bytes: int, good_chunks: int) -> None:
        with self._lock:
            self._entries[key] = (size_bytes, good_chunks)
            self._entries.move_to_end(key)
            while len(self._entries) > PREFIX_CACHE_ENTRIES:
                self._entries.popitem(last=False)


_prefixes = _PrefixCache()


class ClipVideo:
    """An opened clip video. Owns its file: use it as a context manager or call close()."""

    def __init__(self, handle, reader: DecryptingReader, size_bytes: int, truncated: bool,
                 authenticated: bool):
        self._handle = handle
        self._reader = reader
        self.size_bytes = size_bytes  # plaintext bytes that authenticate: what is served
        self.truncated = truncated  # an interrupted recording's authenticated prefix
        self._authenticated = authenticated  # every served chunk has been decrypted once
        self._failure: tuple[type[AgeError], str, int] | None = None

    @property
    def reader(self) -> DecryptingReader:
        """A seekable file object over the served plaintext, for tools that want one (PyAV)."""
        return self._reader

    def authenticate_all(self) -> None:
        """Decrypt every chunk once. Raises a PayloadError whose `authenticated_bytes` says how
        far the file authenticates; the outcome is remembered, so a second call is free."""
        if not self._authenticated and self._failure is None:
            position = 0
            self._reader.seek(0)
            try:
                while block := self._reader.read(BLOCK_BYTES):
                    position += len(block)
            except AgeError as exc:
                self._failure = (type(exc), str(exc), position)
            else:
                self._authenticated = True
        if self._failure is not None:
            kind, message, position = self._failure
            error = kind(message)
            error.authenticated_bytes = position
            raise error

    def iter_range(self, start: int, end: int, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
        """Plaintext of bytes start..end inclusive, in blocks, decrypting only the chunks needed.

        The first block is decrypted before this returns, so damage where the range begins
        raises here (before a response's headers are sent); damage further on raises from the
        iterator. An empty range (end < start) yields nothing.
        """
        if end >= start and (start < 0 or end >= self.size_bytes):
            raise ValueError(f"bytes {start}-{end} are outside the clip's {self.size_bytes}")
        length = max(0, end - start + 1)
        self._reader.seek(start)
        first = self._read_exactly(min(block_bytes, length))
        return self._blocks(first, length - len(first), block_bytes)

    def _blocks(self, first: bytes, remaining: int, block_bytes: int) -> Iterator[bytes]:
        if first:
            yield first
        while remaining > 0:
            block = self._read_exactly(min(block_bytes, remaining))
            remaining -= len(block)
            yield block

    def _read_exactly(self, size: int) -> bytes:
        data = self._reader.read(size)
        while len(data) < size:
            # A short read means the next chunk failed; reading on raises its error.
            more = self._reader.read(size - len(data))
            if not more:
                raise PayloadError("the clip ends before the bytes it promised")
            data += more
        return data

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ClipVideo":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_clip_video(clips_dir: Path, clip_id: str, identities: Sequence[Identity]) -> ClipVideo:
    """Open a clip's MP4. Raises ClipNotFound, or a storage.age error if nothing of it can be
    decrypted (a damaged header, a key that does not match)."""
    return open_video_file(clip_paths(clips_dir, clip_id)["video"], clip_id, identities)


def open_video_file(path: Path, clip_id: str, identities: Sequence[Identity],
                    handle=None) -> ClipVideo:
    """open_clip_video for a video file named by its path (a replica's growing `.partial`),
    or already opened as `handle` (which the ClipVideo then owns)."""
    if handle is None:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise ClipNotFound(f"clip {clip_id} does not exist") from None
    try:
        reader = decrypt(handle, identities)
        try:
            return ClipVideo(handle, reader, reader.size, truncated=False, authenticated=False)
        except PayloadError:
            # The final chunk does not authenticate: an interrupted clip (or a damaged end).
            return _open_prefix(path, handle, identities)
    except BaseException:
        handle.close()
        raise


def _open_prefix(path: Path, handle, identities: Sequence[Identity]) -> ClipVideo:
    """An interrupted clip's authenticated prefix. Finding it authenticates every chunk of it
    (the ones this process authenticated before in this same file are not read again)."""
    key, size_bytes = _prefixes.key(path, handle)
    if size_bytes > MAX_INTERRUPTED_BYTES:
        raise PayloadError(f"this interrupted clip is {size_bytes / 1e9:.1f} GB, more than any "
                           f"recording can be ({MAX_INTERRUPTED_BYTES / 1e9:.1f} GB), so it is "
                           f"not played")
    known = _prefixes.known_good_chunks(key, size_bytes)
    recovered = recover_prefix(handle, identities, known_good_chunks=known)
    if recovered.truncated:
        _prefixes.remember(key, size_bytes, -(-recovered.size_bytes // CHUNK_SIZE))
    return ClipVideo(handle, recovered.reader, recovered.size_bytes, recovered.truncated,
                     authenticated=True)
