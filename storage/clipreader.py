"""Reading clips: the household's side of the store. Needs an unlocked identity.

The video opens as a storage.clipvideo.ClipVideo (random access for playback, the authenticated
prefix of an interrupted clip); the thumbnail and metadata are small and read whole: a damaged
or cut one raises, it is never returned in part.
"""

import json
from collections.abc import Sequence
from pathlib import Path

from .age.errors import AgeError
from .age.identities import Identity
from .age.reader import check_payload, decrypt
from .clipid import clip_paths
from .clipvideo import open_clip_video

# The name the tests and older callers use for storage.clipvideo.open_clip_video.
open_video = open_clip_video


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


def authenticate_file(path: Path, identities: Sequence[Identity],
                      truncated: bool = False) -> tuple[bool, str]:
    """Decrypt every chunk of a file (discarding the plaintext); (ok, problem).

    `truncated`: the index says the clip was interrupted, so a file cut short is what is
    expected; it passes if its authenticated prefix is all that a cut left (nothing after the
    first failing chunk authenticates again), and fails if it was damaged.
    """
    try:
        with path.open("rb") as handle:
            if truncated:
                problem = check_payload(handle, identities).problem
                return not problem, problem
            reader = decrypt(handle, identities)
            while reader.read(1024 * 1024):
                pass
    except AgeError as exc:
        return False, str(exc)
    return True, ""
