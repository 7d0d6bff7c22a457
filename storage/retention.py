"""Retention: delete the oldest clips first, by age, by total size and by free disk space.

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
from .index import ClipIndex

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
) -> list[Pruned]:
    """Delete clips, oldest first, until every limit holds (or no clip is left)."""
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    free_bytes = free_bytes or (lambda: disk_free_bytes(store.clips_dir))
    pruned: list[Pruned] = []
    total = store.index.total_size_bytes()
    for clip in store.index.clips(newest_first=False):
        if limits.max_age_days and now_us - clip.start_us > limits.max_age_days * _DAY_US:
            reason = "age"
        elif limits.max_total_bytes and total > limits.max_total_bytes:
            reason = "size"
        elif limits.min_free_bytes and free_bytes() < limits.min_free_bytes:
            reason = "free space"
        else:
            break  # the oldest remaining clip is within every limit, so are the newer ones
        delete_clip(store.clips_dir, store.index, clip.id)
        total -= clip.size_bytes
        pruned.append(Pruned(clip.id, reason, clip.size_bytes))
    return pruned
