"""Reading a replica folder (what `doorbell replicate` copies to a NAS), never writing to it.

A replica mirrors a doorbell's home: `clips/YYYY/MM/DD/ID.*.age`, the clip being recorded as
`ID.mp4.age.partial` (growing while it is copied, or left so when the doorbell died mid-clip),
`identities/`, `recipients.txt` and the audit log. It has no clip index (that is the device's
cache), so the hub keeps one per camera in its own data directory, filled from a scan of the
folder: this module only lists, stats and opens files for reading.

States, as the device's index has them: a sealed video with its metadata is "complete"; a
partial video (or a sealed one without metadata: an interrupted clip the device recovered) is
"truncated" and plays up to its authenticated prefix; a video without a valid age header is
"damaged".
"""

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .age.identities import Identity
from .clipid import (
    METADATA_SUFFIX,
    SUFFIXES,
    VIDEO_SUFFIX,
    check_clip_id,
    clip_paths,
    clip_start_us,
)
from .clipvideo import ClipVideo, open_video_file
from .durable import PARTIAL_SUFFIX
from .errors import ClipNotFound, InvalidClipId
from .index import ClipIndex, IndexedClip
from .inspect import inspect_file


@dataclass(frozen=True, slots=True)
class ReplicaClip:
    id: str
    video: Path  # the sealed video, or the partial one if that is all the replica holds
    has_metadata: bool
    size_bytes: int  # every file of the clip on the replica


@dataclass(frozen=True, slots=True)
class FolderScan:
    clips: dict[str, ReplicaClip]
    newest_mtime_s: float | None  # the newest file of the replica: when it last received bytes


@dataclass(frozen=True, slots=True)
class ReplicaFolder:
    root: Path

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    @property
    def identities_dir(self) -> Path:
        return self.root / "identities"

    @property
    def recipients_file(self) -> Path:
        return self.root / "recipients.txt"

    def problem(self) -> str | None:
        """Why this is not a replica folder the hub can show, in one sentence, or None."""
        if not self.root.is_dir():
            return f"{self.root} is not a folder"
        if not os.access(self.root, os.R_OK | os.X_OK):
            return f"{self.root} cannot be read by this user"
        return None

    def scan(self) -> FolderScan:
        clips: dict[str, dict] = {}
        newest: float | None = None
        for path, info in _files(self.root):
            newest = info.st_mtime if newest is None else max(newest, info.st_mtime)
            parsed = _clip_file(path.name)
            if parsed is None or \
                    path.parent != clip_paths(self.clips_dir, parsed[0])["video"].parent:
                continue
            clip_id, suffix, partial = parsed
            entry = clips.setdefault(clip_id, {"video": None, "partial": None,
                                               "metadata": False, "size": 0})
            entry["size"] += info.st_size
            if suffix == VIDEO_SUFFIX:
                entry["partial" if partial else "video"] = path
            elif suffix == METADATA_SUFFIX and not partial:
                entry["metadata"] = True
        found = {}
        for clip_id, entry in clips.items():
            video = entry["video"] or entry["partial"]
            if video is not None:
                found[clip_id] = ReplicaClip(clip_id, video, entry["metadata"], entry["size"])
        return FolderScan(found, newest)

    def video_path(self, clip_id: str) -> Path:
        """The clip's sealed video, else its partial one; ClipNotFound if neither exists."""
        sealed = clip_paths(self.clips_dir, clip_id)["video"]
        for candidate in (sealed, sealed.with_name(sealed.name + PARTIAL_SUFFIX)):
            if candidate.is_file():
                return candidate
        raise ClipNotFound(f"clip {clip_id} does not exist")

    def open_video(self, clip_id: str, identities: Sequence[Identity]) -> ClipVideo:
        """The clip's video: a growing or interrupted one as its authenticated prefix."""
        return open_video_file(self.video_path(clip_id), clip_id, identities)


def refresh_index(scan: FolderScan, index: ClipIndex) -> int:
    """Make `index` (the hub's own, never a file in the replica) agree with `scan`: new clips
    added, sizes and states updated, rows of clips no longer there dropped. Rows changed."""
    changed = 0
    for clip in scan.clips.values():
        row = index.get(clip.id)
        if clip.video.name.endswith(PARTIAL_SUFFIX) or not clip.has_metadata:
            state = "truncated"
        else:
            state = "complete"
        if row is not None and row.size_bytes == clip.size_bytes and \
                row.state in (state, "damaged"):
            continue
        try:
            if not inspect_file(clip.video).recipients:
                state = "damaged"  # no valid age header: nothing in it decrypts
        except OSError:
            continue  # renamed (sealed) since the scan: the next refresh sees it
        index.put(IndexedClip(clip.id, clip_start_us(clip.id), state, clip.size_bytes))
        changed += 1
    for row in index.clips():
        if row.id not in scan.clips:
            index.remove(row.id)
            changed += 1
    return changed


def _clip_file(name: str) -> tuple[str, str, bool] | None:
    partial = name.endswith(PARTIAL_SUFFIX)
    base = name.removesuffix(PARTIAL_SUFFIX)
    for suffix in SUFFIXES:
        if base.endswith(suffix):
            try:
                return check_clip_id(base.removesuffix(suffix)), suffix, partial
            except InvalidClipId:
                return None
    return None


def _files(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every regular file under `root` with its stat, not following symbolic links."""
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    yield Path(entry.path), entry.stat(follow_symlinks=False)
            except OSError:
                continue
