"""The timeline: a day's events with thumbnails, filters, and an activity strip."""

from datetime import datetime, timedelta

from flask import Blueprint, render_template, request

from doorbell.storage.index import ClipIndex

from .. import access
from ..display import local_time, utc_text
from .common import page_number, record_listing
from .sources import ClipSource, all_sources

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


def _day_counts(source: ClipSource, index: ClipIndex) -> list[tuple[str, int]]:
    """Days with clips, recomputed only when the index changed (grouping 100,000 rows by
    local date costs a few hundred ms; checking whether anything changed costs little)."""
    cache = source.day_cache
    version = index.version()
    if cache.get("version") != version:
        cache.update(version=version, days=index.day_counts())
    return cache["days"]


def _merged_days(per_source: list[list[tuple[str, int]]]) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for days in per_source:
        for day, count in days:
            totals[day] = totals.get(day, 0) + count
    return sorted(totals.items(), reverse=True)


@blueprint.get("/")
@access.page
def index():
    sources = all_sources()
    cameras = [s.camera for s in sources if s.camera]
    camera = request.args.get("camera", "")
    if camera not in cameras:
        camera = ""
    shown = [s for s in sources if not camera or s.camera == camera]
    trigger = request.args.get("trigger", "")
    if trigger not in ("", "motion", "doorbell"):
        trigger = ""
    page = page_number()
    indexes = [(source, ClipIndex(source.index_file)) for source in shown]
    try:
        days = _merged_days([_day_counts(source, index) for source, index in indexes])
        day = request.args.get("day", "")
        if day not in {d for d, _ in days}:
            day = days[0][0] if days else ""
        rows, strip, has_more = [], [0] * BUCKETS_PER_DAY, False
        if day:
            since, until = _day_bounds_us(day)
            starts = [t for _, index in indexes for t in index.start_times_us(since, until)]
            strip = activity_strip(starts, since)
            wanted = (page + 1) * PAGE_SIZE
            if len(indexes) == 1:
                source, index = indexes[0]
                rows = [(row, source) for row in index.clips(
                    since_us=since, until_us=until, limit=PAGE_SIZE, offset=page * PAGE_SIZE)]
            else:  # newest first across the cameras: each gives its newest to the page's end
                rows = sorted(((row, source) for source, index in indexes for row in
                               index.clips(since_us=since, until_us=until, limit=wanted)),
                              key=lambda pair: (pair[0].start_us, pair[0].id), reverse=True)
                rows = rows[page * PAGE_SIZE : wanted]
            has_more = len(starts) > wanted
    finally:
        for _, index in indexes:
            index.close()
    events = []
    for row, source in rows:
        meta = source.metadata(row.id)
        kind = meta.get("trigger", "unknown")
        if kind == "continued":
            kind = "motion"
        if trigger and kind != trigger:
            continue
        events.append({
            "id": row.id,
            "camera": source.camera,
            "subject": source.subject(row.id),
            "time": local_time(row.start_us / 1e6, seconds=True),  # "14:03:05 CET"
            "utc": utc_text(row.start_us / 1e6),
            "trigger": kind,
            "duration_s": meta.get("duration_s"),
            "state": row.state,
            "error": meta.get("error"),
            "clock_unsynced": row.clock_unsynced,  # its time came from a clock not yet set
        })
    # One entry for the page, naming the clips whose thumbnails (and decrypted details) it
    # shows, rather than one per thumbnail request: the same facts, in one fsynced line
    # instead of up to PAGE_SIZE. The thumbnail requests that follow find themselves on record.
    record_listing({f"thumbnail {e['subject']}": e["subject"] for e in events}, "timeline.view",
                   listed_as="clips", day=day, page=page, **({"camera": camera} if camera else {}))
    return render_template(
        "timeline.html", days=days, day=day, events=events, strip=strip, trigger=trigger,
        page=page, has_more=has_more, cameras=cameras, camera=camera,
    )
