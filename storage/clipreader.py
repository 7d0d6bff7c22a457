"""Reading clips: the household's side of the store. Needs an unlocked identity.

A complete clip opens with the strict reader; a truncated one (interrupted recording) opens
with prefix recovery, which exposes exactly its authenticated whole chunks and says so.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .age.errors import AgeError, PayloadError
from .age.identities import Identity
from .age.reader import DecryptingReader, decrypt, recover_prefix
from .clipid import clip_paths
from .errors import ClipNotFound


@dataclass
class OpenedVideo:
    reader: DecryptingReader
    size_bytes: int  # plaintext bytes that authenticate
    truncated: bool

    def close(self) -> None:
        self.reader._src.close()


def open_video(clips_dir: Path, clip_id: str, identities: Sequence[Identity]) -> OpenedVideo:
    """Open a clip's MP4 for random access. Raises ClipNotFound or an AgeError subclass."""
    path = clip_paths(clips_dir, clip_id)["video"]
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ClipNotFound(f"clip {clip_id} does not exist") from None
    try:
        reader = decrypt(handle, identities)
        try:
            # A sealed clip: random access, each chunk authenticated when it is read.
            return OpenedVideo(reader, reader.size, truncated=False)
        except PayloadError:
            # An interrupted clip: find its authenticated prefix (one pass over the file).
            recovered = recover_prefix(handle, identities)
            return OpenedVideo(recovered.reader, recovered.size_bytes, recovered.truncated)
    except Exception:
        handle.close()
        raise


def _read_small(path: Path, identities: Sequence[Identity]) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return decrypt(handle, identities).read()
    except FileNotFoundError:
        return None


def read_thumbnail(clips_dir: Path, clip_id: str, identities: Sequence[Identity]) -> bytes | None:
    return _read_small(clip_paths(clips_dir, clip_id)["thumbnail"], identities)


def read_metadata(clips_dir: Path, clip_id: str, identities: Sequence[Identity]) -> dict | None:
    data = _read_small(clip_paths(clips_dir, clip_id)["metadata"], identities)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        raise AgeError(f"clip {clip_id} metadata authenticates but is not JSON") from None


def authenticate_file(path: Path, identities: Sequence[Identity]) -> tuple[bool, str]:
    """Decrypt every chunk of a file (discarding the plaintext); (ok, problem)."""
    try:
        with path.open("rb") as handle:
            reader = decrypt(handle, identities)
            while reader.read(1024 * 1024):
                pass
    except AgeError as exc:
        return False, str(exc)
    return True, ""
