"""The timeline: a day's events with thumbnails, filters, and an activity strip."""

from datetime import datetime, timedelta

from flask import Blueprint, render_template, request

from doorbell.storage.index import ClipIndex

from .. import access
from .common import clip_metadata, local_time, page_number, record_listing, viewer

blueprint = Blueprint("timeline", __name__)

BUCKETS_PER_DAY = 96  # 15-minute slots in the activity strip
PAGE_SIZE = 200


def _day_bounds_us(day: str) -> tuple[int, int]:
    start = datetime.strptime(day, "%Y-%m-%d").astimezone()
    end = (start + timedelta(days=1)).astimezone()
    return int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)


def activity_strip(starts_us: list[int], day_start_us: int) -> list[int]:
    """Clip starts per 15-minute slot, mapped to levels 0..4 for the strip's CSS classes."""
    counts = [0] * BUCKETS_PER_DAY
    for start_us in starts_us:
        slot = (start_us - day_start_us) // (15 * 60 * 1_000_000)
        if 0 <= slot < BUCKETS_PER_DAY:
            counts[slot] += 1
    return [0 if c == 0 else 1 if c == 1 else 2 if c <= 3 else 3 if c <= 8 else 4 for c in counts]


def _day_counts(index: ClipIndex) -> list[tuple[str, int]]:
    """Days with clips, recomputed only when the index changed (grouping 100,000 rows by
    local date costs a few hundred ms; checking whether anything changed costs little)."""
    cache = viewer().day_counts_cache
    version = index.version()
    if cache.get("version") != version:
        cache.update(version=version, days=index.day_counts())
    return cache["days"]


@blueprint.get("/")
@access.page
def index():
    home = viewer().home
    trigger = request.args.get("trigger", "")
    if trigger not in ("", "motion", "doorbell"):
        trigger = ""
    page = page_number()
    with ClipIndex(home.index_file) as index:
        days = _day_counts(index)
        day = request.args.get("day", "")
        if day not in {d for d, _ in days}:
            day = days[0][0] if days else ""
        clips, strip, has_more = [], [0] * BUCKETS_PER_DAY, False
        if day:
            since, until = _day_bounds_us(day)
            starts = index.start_times_us(since, until)
            strip = activity_strip(starts, since)
            clips = index.clips(since_us=since, until_us=until, limit=PAGE_SIZE,
                                offset=page * PAGE_SIZE)
            has_more = len(starts) > (page + 1) * PAGE_SIZE
    events = []
    for row in clips:
        meta = clip_metadata(row.id)
        kind = meta.get("trigger", "unknown")
        if kind == "continued":
            kind = "motion"
        if trigger and kind != trigger:
            continue
        events.append({
            "id": row.id,
            "time": local_time(row.start_us).strftime("%H:%M:%S"),
            "trigger": kind,
            "duration_s": meta.get("duration_s"),
            "state": row.state,
            "error": meta.get("error"),
        })
    # One entry for the page, naming the clips whose thumbnails (and decrypted details) it
    # shows, rather than one per thumbnail request: the same facts, in one fsynced line
    # instead of up to PAGE_SIZE. The thumbnail requests that follow find themselves on record.
    record_listing({f"thumbnail {e['id']}": e["id"] for e in events}, "timeline.view",
                   listed_as="clips", day=day, page=page)
    return render_template(
        "timeline.html", days=days, day=day, events=events, strip=strip, trigger=trigger,
        page=page, has_more=has_more,
    )
