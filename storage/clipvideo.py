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

from collections.abc import Iterator, Sequence
from pathlib import Path

from .age.errors import AgeError, PayloadError
from .age.identities import Identity
from .age.reader import DecryptingReader, decrypt, recover_prefix
from .clipid import clip_paths
from .errors import ClipNotFound

BLOCK_BYTES = 256 * 1024  # what iter_range yields at a time: four chunks


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


def open_video_file(path: Path, clip_id: str, identities: Sequence[Identity]) -> ClipVideo:
    """open_clip_video for a video file named by its path (a replica's growing `.partial`)."""
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
            # Finding the prefix authenticates every chunk of it.
            recovered = recover_prefix(handle, identities)
            return ClipVideo(handle, recovered.reader, recovered.size_bytes, recovered.truncated,
                             authenticated=True)
    except BaseException:
        handle.close()
        raise
