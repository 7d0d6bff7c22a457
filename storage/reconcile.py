"""Bring the index and the files back into agreement after a crash, power cut or lost index.

Run at start by the recorder (and by `doorbell verify`). It never deletes footage:
 * an interrupted clip (`ID.mp4.age.partial`) is renamed to `ID.mp4.age` and indexed as
   "truncated": its authenticated prefix is what a key holder can still play (without a key
   nobody can tell which bytes authenticate, so the bytes are kept as they are). The header
   is on disk from the moment a clip begins, so a clip interrupted before its first whole
   chunk is "truncated" too, with an empty prefix: nothing to play, and reported as such;
 * a partial with no valid age header holds nothing decryptable: it is kept, indexed "damaged";
 * partial thumbnail or metadata files (written in a few ms before the video is sealed) are
   removed and reported: a clip without them still plays;
 * clip files without an index row are indexed; rows whose video file is gone are dropped;
 * files that are not clip files are reported as orphans and left alone.
"""

from dataclasses import dataclass, field
from pathlib import Path

from .clipid import (
    METADATA_SUFFIX,
    THUMBNAIL_SUFFIX,
    VIDEO_SUFFIX,
    clip_paths,
    clip_start_us,
    split_clip_file_name,
)
from .durable import PARTIAL_SUFFIX, commit_partial, fsync_directory
from .index import ClipIndex, IndexedClip
from .inspect import inspect_file


@dataclass
class ReconcileReport:
    recovered_truncated: list[str] = field(default_factory=list)
    nothing_saved: list[str] = field(default_factory=list)  # of those, with no whole chunk
    damaged: list[str] = field(default_factory=list)
    indexed: list[str] = field(default_factory=list)
    dropped_rows: list[str] = field(default_factory=list)
    removed_partials: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    def is_clean(self) -> bool:
        return not any(vars(self).values())

    def lines(self) -> list[str]:
        out = []
        for clip_id in self.recovered_truncated:
            if clip_id in self.nothing_saved:
                out.append(f"clip {clip_id} was interrupted before any of its video was "
                           "written: kept as truncated, with nothing to play")
            else:
                out.append(f"clip {clip_id} was interrupted: its authenticated prefix is kept")
        for clip_id in self.damaged:
            out.append(f"clip {clip_id} has no valid age header: kept as damaged")
        if self.indexed:
            out.append(f"{len(self.indexed)} clip(s) found without an index row were indexed")
        for clip_id in self.dropped_rows:
            out.append(f"clip {clip_id} was in the index but its video file is gone")
        for name in self.removed_partials:
            out.append(f"removed unfinished {name}")
        for name in self.orphans:
            out.append(f"orphan file left in place: {name}")
        return out


def _clip_size(clips_dir: Path, clip_id: str) -> int:
    return sum(p.stat().st_size for p in clip_paths(clips_dir, clip_id).values() if p.exists())


def reconcile(clips_dir: Path, index: ClipIndex, clock_unsynced: bool = False) -> ReconcileReport:
    """`clock_unsynced`: the recorder's clock is not set yet, so the clips indexed now may be
    dated by it (IndexedClip.clock_unsynced: retention waits for the clock to age them)."""
    report = ReconcileReport()
    on_disk: set[str] = set()
    companions: set[str] = set()  # ids with a thumbnail or metadata file
    for path in sorted(clips_dir.rglob("*")) if clips_dir.is_dir() else []:
        if not path.is_file():
            continue
        parsed = split_clip_file_name(path.name)
        if parsed is None or path.parent != clip_paths(clips_dir, parsed[0])["video"].parent:
            report.orphans.append(str(path.relative_to(clips_dir)))
            continue
        clip_id, suffix, partial = parsed
        if not partial:
            if suffix == VIDEO_SUFFIX:
                on_disk.add(clip_id)
            else:
                companions.add(clip_id)
            continue
        if suffix in (THUMBNAIL_SUFFIX, METADATA_SUFFIX):
            path.unlink()
            fsync_directory(path.parent)
            report.removed_partials.append(path.name)
            continue
        final = path.with_name(path.name.removesuffix(PARTIAL_SUFFIX))
        if final.exists():  # both exist: the committed file wins; the partial is a leftover
            report.orphans.append(str(path.relative_to(clips_dir)))
            continue
        shape = inspect_file(path)
        state = "truncated" if shape.recipients else "damaged"
        if shape.recipients and shape.chunks == 0:
            report.nothing_saved.append(clip_id)
        commit_partial(final)
        on_disk.add(clip_id)
        size = _clip_size(clips_dir, clip_id)
        index.put(IndexedClip(clip_id, clip_start_us(clip_id), state, size, clock_unsynced))
        (report.recovered_truncated if state == "truncated" else report.damaged).append(clip_id)
    for clip_id in sorted(on_disk):
        if index.get(clip_id) is None:
            # Sealed clips always have metadata; a recovered interrupted one never does; a
            # video without a valid header holds nothing that can be decrypted.
            paths = clip_paths(clips_dir, clip_id)
            if not inspect_file(paths["video"]).recipients:
                state = "damaged"
            else:
                state = "complete" if paths["metadata"].exists() else "truncated"
            size = _clip_size(clips_dir, clip_id)
            index.put(IndexedClip(clip_id, clip_start_us(clip_id), state, size, clock_unsynced))
            report.indexed.append(clip_id)
    for clip_id in sorted(companions - on_disk):
        for path in clip_paths(clips_dir, clip_id).values():
            if path.exists():
                report.orphans.append(str(path.relative_to(clips_dir)))
    for row in index.clips():
        if row.id not in on_disk:
            index.remove(row.id)
            report.dropped_rows.append(row.id)
    return report
