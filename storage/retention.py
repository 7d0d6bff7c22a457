"""Retention: delete the oldest clips first, by age, by total size and by free disk space.

A clip that began before the wall clock was set (a Pi without a real-time clock, before NTP)
may be dated days or decades back: it is aged from when the clock became trustworthy instead
(IndexedClip.kept_from_us, set by the recorder: camera.upkeep.Retention), so the footage of a
network outage is not deleted the moment the clock is right. Size and free space still delete it
in its place by start time, so the disk cannot fill.

Deleting a file on flash is not secure erasure: the card's wear levelling may keep old blocks.
What makes old footage unreadable is that it is encrypted; rotating (removing) a member's key
stops them decrypting new clips, and a lost card without a passphrase reveals nothing.
"""

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from doorbell.config import RetentionSettings

from .deletion import delete_clip
from .index import ClipIndex, IndexedClip

_DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class Pruned:
    clip_id: str
    reason: str  # "age", "size" or "free space"
    size_bytes: int


class StoredClips(Protocol):
    """Where the clips are: a ClipStore is one; deleting needs no recipients."""

    clips_dir: Path
    index: ClipIndex


def disk_free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def enforce_retention(
    store: StoredClips,
    limits: RetentionSettings,
    now_us: int | None = None,
    free_bytes: Callable[[], int] | None = None,
    *,
    room_bytes: int = 0,
    before_deleting: Callable[[], None] | None = None,
) -> list[Pruned]:
    """Delete clips, oldest first, until every limit holds (or nothing more may go).

    Age and total size limit the clips themselves, so any clip may go for them. Free space is
    the disk's: clips are deleted for it only if that can reach the floor (min_free_bytes, or
    `room_bytes` after the disk ran full), and never the newest clip. A floor that deleting
    every older clip cannot reach (a small card, a disk full of other files) leaves the clips
    alone: deleting them all, the newest included, would not free enough anyway. The caller
    sees that free space is still short and says so (see free_space_shortfall).

    `before_deleting` runs once, before the first deletion; whatever it raises stops retention
    with nothing deleted (the recorder checks there that the deletions can be audited).
    """
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    free_bytes = free_bytes or (lambda: disk_free_bytes(store.clips_dir))
    clips = store.index.clips(newest_first=False)
    total = sum(clip.size_bytes for clip in clips)
    floor = _free_space_floor(limits, room_bytes, free_bytes(), clips)
    pruned: list[Pruned] = []

    def delete(clip: IndexedClip, reason: str) -> None:
        nonlocal total
        if not pruned and before_deleting is not None:
            before_deleting()
        delete_clip(store.clips_dir, store.index, clip.id)
        total -= clip.size_bytes
        pruned.append(Pruned(clip.id, reason, clip.size_bytes))

    # Age first, over every clip: one recorded before the clock was set may be dated years
    # back and yet be young (kept_from_us), so the expired ones need not come first.
    kept = []
    for clip in clips:
        if limits.max_age_days and _age_us(clip, now_us) > limits.max_age_days * _DAY_US:
            delete(clip, "age")
        else:
            kept.append(clip)
    # Then size and free space, oldest start first whatever the clip's age.
    for clip in kept:
        if limits.max_total_bytes and total > limits.max_total_bytes:
            delete(clip, "size")
        elif floor and clip is not clips[-1] and free_bytes() < floor:
            delete(clip, "free space")
        else:
            break  # within the limits: so are the clips after this one
    return pruned


def _age_us(clip: IndexedClip, now_us: int) -> int:
    """How long the clip has been kept, by the clock retention trusts: from its start, or from
    when the clock became trustworthy for a clip that began before that (kept_from_us); a clip
    still waiting for the clock (clock_unsynced, no kept_from_us yet) has no age."""
    if clip.kept_from_us is not None:
        return now_us - clip.kept_from_us
    if clip.clock_unsynced:
        return 0
    return now_us - clip.start_us


def _free_space_floor(limits: RetentionSettings, room_bytes: int, free: int,
                      clips: list[IndexedClip]) -> int:
    """The free space to delete clips for: min_free_bytes if deleting all but the newest clip
    can reach it, and at least `room_bytes` (what the next clip needs, after a full disk)."""
    reclaimable = sum(clip.size_bytes for clip in clips[:-1])
    floor = limits.min_free_bytes if free + reclaimable >= limits.min_free_bytes else 0
    return max(floor, room_bytes)


def free_space_shortfall(clips_dir: Path, limits: RetentionSettings) -> str | None:
    """One sentence if free space is below min_free_bytes (after retention ran: deleting clips
    could not reach it), else None."""
    if not limits.min_free_bytes:
        return None
    free = disk_free_bytes(clips_dir)
    if free >= limits.min_free_bytes:
        return None
    return (f"only {_megabytes(free)} is free, below retention.min_free_bytes "
            f"({_megabytes(limits.min_free_bytes)}), and deleting older clips cannot free that "
            "much: the clips are kept, and the oldest are deleted only when the disk is full")


def _megabytes(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f} MB"
