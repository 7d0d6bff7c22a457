"""Deleting a clip: its files, then its index row (durability invariant 5 in storage.durable).

Needs no key at all, public or private: the recorder's retention, the viewer and the command
line all delete through `delete_clip`. On flash this is not secure erasure (see retention).
"""

from pathlib import Path

from .clipid import clip_paths
from .durable import PARTIAL_SUFFIX, fsync_directory
from .index import ClipIndex


def delete_clip(clips_dir: Path, index: ClipIndex, clip_id: str) -> bool:
    """Remove a clip's files (committed or partial), then its row. True if anything existed."""
    paths = clip_paths(clips_dir, clip_id)
    removed = False
    for path in paths.values():
        for candidate in (path, path.with_name(path.name + PARTIAL_SUFFIX)):
            try:
                candidate.unlink()
                removed = True
            except FileNotFoundError:
                pass
    if removed:
        fsync_directory(paths["video"].parent)
    had_row = index.get(clip_id) is not None
    index.remove(clip_id)
    return removed or had_row
