"""The status page's picture and words for the disk: how much is footage, what else uses it,
what is free, and how long clips stay (sizes and times from web/display.py)."""

import time

from .capacity import RECENT_DAYS
from .display import age_text, human_bytes, local_date_time


def disk_picture(status: dict) -> dict:
    """The disk bar's three parts, in percent of the disk (footage, everything else, free)."""
    total = max(status["disk_total_bytes"], 1)
    free = min(status["disk_free_bytes"], total)
    footage = min(status["clips_total_bytes"], total - free)
    parts = {"footage": footage, "other": total - free - footage, "free": free}
    return {name: round(100 * size / total, 2) for name, size in parts.items()}


def disk_words(status: dict, retention) -> dict:
    """What the page says about space and how long clips stay, in words."""
    now_s = time.time()
    oldest = status["oldest_clip_time"]
    per_day = status["bytes_per_day"]
    used = status["disk_total_bytes"] - status["disk_free_bytes"]
    return {
        "footage": human_bytes(status["clips_total_bytes"]),
        "free": human_bytes(status["disk_free_bytes"]),
        "total": human_bytes(status["disk_total_bytes"]),
        "other": human_bytes(max(0, used - status["clips_total_bytes"])),
        "per_day": _per_day_words(per_day, now_s - oldest if oldest else None),
        "reserve": human_bytes(retention.min_free_bytes),
        "kept": (f"{retention.max_age_days} days, then deleted" if retention.max_age_days
                 else "until space runs out (no age limit)"),
        "oldest": (f"{age_text(now_s - oldest)} old (from {local_date_time(oldest)})"
                   if oldest else "no clips yet"),
        "cap": human_bytes(retention.max_total_bytes) if retention.max_total_bytes else None,
    }


def _per_day_words(per_day: float, recording_for_s: float | None) -> str:
    """The footage rate, saying what it was measured over (web/capacity.py counts at least a
    day, so a first hour of recording gives a floor, not a rate)."""
    if not per_day:
        return "nothing recorded lately"
    if recording_for_s is None or recording_for_s >= RECENT_DAYS * 86400:
        return f"about {human_bytes(per_day)} a day (from the last {RECENT_DAYS} days' clips)"
    rate, recorded = human_bytes(per_day), age_text(recording_for_s)
    if recording_for_s >= 86400:
        return f"about {rate} a day (from the {recorded} recorded so far)"
    return f"at least {rate} a day (recording began {recorded} ago)"
