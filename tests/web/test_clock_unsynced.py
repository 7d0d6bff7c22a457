"""A clip recorded before the device's clock was set says so on the timeline and its page."""

import dataclasses
import re
import time

from doorbell.storage.index import ClipIndex

NOTE = "recorded before the clock was set"


def mark_unsynced(home, clip_id: str, kept_from_us: int | None) -> None:
    """As the recorder leaves it: begun before NTP, kept from when the clock was set."""
    with ClipIndex(home.root / "index.sqlite3") as index:
        index.put(dataclasses.replace(index.get(clip_id), clock_unsynced=True))
        if kept_from_us is not None:
            index.keep_unsynced_from(kept_from_us)


def event_item(html: str, clip_id: str) -> str:
    item = re.search(rf'<li class="event \w+">\s*<a href="/clips/{clip_id}">(.*?)</li>', html,
                     re.S)
    assert item, clip_id
    return item.group(1)


def test_the_timeline_marks_only_the_clips_recorded_before_the_clock_was_set(unlocked, home):
    marked, other = home.clips["doorbell"], home.clips["motion"]
    mark_unsynced(home, marked.id, kept_from_us=None)

    html = unlocked.get("/").get_data(as_text=True)

    assert NOTE in event_item(html, marked.id)
    assert NOTE not in event_item(html, other.id)


def test_the_clip_page_says_so_and_since_when_retention_counts(unlocked, home):
    marked, other = home.clips["doorbell"], home.clips["motion"]
    kept_from_us = int(time.time()) * 1_000_000
    mark_unsynced(home, marked.id, kept_from_us)

    page = unlocked.get(f"/clips/{marked.id}").get_data(as_text=True)
    note = re.search(r'<p class="muted" id="clock-note">(.*?)</p>', page, re.S)
    assert note and "Recorded before the clock was set" in note.group(1)
    assert "Retention counts its age from" in note.group(1)
    utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(kept_from_us / 1e6))
    assert f'<time datetime="{utc}' in note.group(1)
    assert 'id="clock-note"' not in unlocked.get(f"/clips/{other.id}").get_data(as_text=True)
