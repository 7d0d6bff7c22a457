"""How many days of footage fit: from what was recorded lately, the disk, and retention.

    days = budget / bytes_per_day, at most retention.max_age_days
    budget = free space + what clips use now - retention.min_free_bytes (and at most
             retention.max_total_bytes when set)

For a proposed change of pre-roll/post-roll, bytes per day scale with the length of a typical
clip, taken as pre-roll + TYPICAL_MOTION_S + post-roll (capped at max_clip_s): the index holds no
clip lengths (only what must be readable without a key), so this is an estimate and says so.
"""

import shutil
import time
from dataclasses import dataclass

from doorbell.storage.index import ClipIndex

RECENT_DAYS = 7
TYPICAL_MOTION_S = 10.0
_DAY_US = 86_400_000_000


@dataclass(frozen=True)
class Usage:
    bytes_per_day: float  # over the last RECENT_DAYS (or since the first clip)
    clips_bytes: int
    free_bytes: int
    total_bytes: int
    oldest_clip_us: int | None = None  # when the oldest clip still stored began


def measure_usage(index_file, clips_dir, now_us: int | None = None) -> Usage:
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    with ClipIndex(index_file) as index:
        clips_bytes = index.total_size_bytes()
        recent = index.clips(since_us=now_us - RECENT_DAYS * _DAY_US)
        oldest = index.clips(newest_first=False, limit=1)
    disk = shutil.disk_usage(clips_dir)
    span_days = RECENT_DAYS
    if oldest:
        span_days = min(RECENT_DAYS, max(1.0, (now_us - oldest[0].start_us) / _DAY_US))
    bytes_per_day = sum(c.size_bytes for c in recent) / span_days if recent else 0.0
    return Usage(bytes_per_day, clips_bytes, disk.free, disk.total,
                 oldest[0].start_us if oldest else None)


def typical_clip_s(recording) -> float:
    return min(recording.max_clip_s,
               recording.pre_roll_s + TYPICAL_MOTION_S + recording.post_roll_s)


def days_that_fit(usage: Usage, retention, recording=None, recorded_with=None) -> float | None:
    """Days of footage the store holds under `retention`; None before anything was recorded.

    With `recording` (proposed) and `recorded_with` (what recent footage was recorded with),
    bytes per day are scaled by the change in a typical clip's length.
    """
    bytes_per_day = usage.bytes_per_day
    if not bytes_per_day:
        return None
    if recording is not None and recorded_with is not None:
        bytes_per_day *= typical_clip_s(recording) / typical_clip_s(recorded_with)
    budget = usage.free_bytes + usage.clips_bytes - retention.min_free_bytes
    if retention.max_total_bytes:
        budget = min(budget, retention.max_total_bytes)
    days = round(max(0, budget) / bytes_per_day, 1)
    if retention.max_age_days:
        days = min(days, retention.max_age_days)
    return days
