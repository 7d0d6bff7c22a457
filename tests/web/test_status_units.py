"""The status page in words a person reads: GB/MB with one decimal, a picture of the disk, how
long clips are kept, and times in the device's zone with its label."""

import re
import time
from collections import namedtuple
from datetime import datetime
from html import unescape
from zoneinfo import ZoneInfo

import pytest

from doorbell.storage.exchange import RecorderStatus
from doorbell.storage.index import ClipIndex
from doorbell.web.display import age_text, human_bytes

from .conftest import new_client, unlock_directly, write_clip

DiskUsage = namedtuple("DiskUsage", "total used free")
TOTAL_BYTES = 128_000_000_000
FREE_BYTES = 49_713_729_536  # 78,286,270,464 bytes used
FIXED_FRAME_S = 1_733_317_385.0  # 2024-12-04 13:03:05 UTC: 14:03:05 in Berlin (CET)


@pytest.fixture
def berlin(monkeypatch):
    """The device's zone is Europe/Berlin for this test (TZ, as systemd passes it)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield ZoneInfo("Europe/Berlin")
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def disk(monkeypatch):
    monkeypatch.setattr("doorbell.web.capacity.shutil.disk_usage",
                        lambda _path: DiskUsage(TOTAL_BYTES, TOTAL_BYTES - FREE_BYTES, FREE_BYTES))


def write_recorder(runtime_dir, last_frame_time: float) -> None:
    RecorderStatus(state="idle", camera="ok", frames=10, fps=15.0, clips_saved=3,
                   last_frame_time=last_frame_time, recording=None,
                   updated=time.time()).write(runtime_dir / "recorder.json")


def page_text(response) -> str:
    """The page as a person reads it: tags dropped, white space collapsed."""
    assert response.status_code == 200, response.status_code
    html = response.get_data(as_text=True)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


@pytest.mark.parametrize(("size_bytes", "shown"), [
    (78_286_270_464, "78.3 GB"), (49_713_729_536, "49.7 GB"), (1_000_000_000, "1.0 GB"),
    (999_999_999, "1000.0 MB"), (307_323, "307.3 KB"), (2_500_000_000_000, "2.5 TB"),
    (999, "999 bytes"), (0, "0 bytes"),
])
def test_sizes_in_human_units(size_bytes, shown):
    assert human_bytes(size_bytes) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0 minutes"), (59, "1 minute"), (40 * 60, "40 minutes"), (3600, "1.0 hours"),
    (5.5 * 3600, "5.5 hours"), (47 * 3600, "47.0 hours"), (2 * 86400, "2.0 days"),
    (12.34 * 86400, "12.3 days"),
])
def test_ages_in_the_unit_a_person_uses(seconds, shown):
    assert age_text(seconds) == shown


def test_status_shows_sizes_in_gb_and_mb_not_bytes(unlocked, home, disk, runtime_dir):
    write_recorder(runtime_dir, time.time())
    response = unlocked.get("/status")
    text = page_text(response)
    with ClipIndex(home.home.index_file) as index:
        footage_bytes = index.total_size_bytes()
    assert 100_000 < footage_bytes < 1_000_000  # the test clips: a few hundred KB
    assert f"Footage {footage_bytes / 1000:.1f} KB" in text
    assert "Free 49.7 GB of 128.0 GB" in text
    assert "Other files 78.3 GB" in text
    assert "bytes" not in text  # no "78,286,270,464 bytes" anywhere
    assert not re.search(r"\d,\d{3}", text)
    assert "0.5 GB is always left free" not in text and "1.0 GB is always left free" in text
    # The JSON the page's script polls keeps the exact numbers.
    data = unlocked.get("/status.json").get_json()
    assert data["disk_free_bytes"] == FREE_BYTES and data["disk_total_bytes"] == TOTAL_BYTES


def test_status_draws_the_disk(unlocked, home, monkeypatch):
    with ClipIndex(home.home.index_file) as index:
        footage_bytes = index.total_size_bytes()
    total_bytes, free_bytes = 1_000_000, 400_000  # a small disk: the footage shows
    monkeypatch.setattr("doorbell.web.capacity.shutil.disk_usage",
                        lambda _path: DiskUsage(total_bytes, total_bytes - free_bytes, free_bytes))
    html = unlocked.get("/status").get_data(as_text=True)
    svg = re.search(r'<svg class="disk-bar".*?</svg>', html, re.S)
    assert svg, "no picture of the disk"
    svg = svg.group(0)
    assert 'role="img"' in svg and "<title" in svg
    assert "400.0 KB free of 1.0 MB" in svg  # what a screen reader says
    rects = re.findall(r'<rect class="(\w+)" x="([\d.]+)"[^>]*width="([\d.]+)"', svg)
    assert [name for name, _x, _w in rects] == ["footage", "other", "free"]
    x = {name: float(at) for name, at, _w in rects}
    widths = {name: float(width) for name, _x, width in rects}
    assert widths["footage"] == pytest.approx(100 * footage_bytes / total_bytes, abs=0.01)
    assert widths["free"] == 40
    assert widths["other"] == pytest.approx(60 - widths["footage"], abs=0.01)
    assert x["other"] == widths["footage"] and x["free"] == pytest.approx(60, abs=0.01)
    assert "style=" not in svg and "href" not in svg  # nothing inline the CSP refuses, no asset


def test_status_says_how_long_clips_are_kept(make_app, identity, home, disk, berlin):
    app = make_app({"retention.max_age_days": 30})
    client = new_client(app)
    unlock_directly(app, client, identity)
    text = page_text(client.get("/status"))
    assert "Clips are kept 30 days, then deleted; 1.0 GB is always left free" in text
    oldest = home.clips["yesterday"].start_us / 1e6
    shown = datetime.fromtimestamp(oldest, berlin)
    age_hours = (time.time() - oldest) / 3600
    assert (f"Oldest clip {age_hours:.1f} hours old (from {shown.day} {shown:%b %Y}, "
            f"{shown:%H:%M} {shown.tzname()})") in text
    # Under a day of recording: a floor, and it says so (the rate counts at least a day).
    assert re.search(r"Footage per day (about \d+\.\d KB a day \(from the \d+\.\d hours "
                     r"recorded so far\)|at least \d+\.\d KB a day \(recording began "
                     r"[\d.]+ (hours|minutes?) ago\))", text), text
    # A clip from ten days ago is the oldest now.
    ten_days_ago_us = int((time.time() - 10 * 86400) * 1e6)
    write_clip(home.root, ten_days_ago_us, b"\0" * 1000, None, {"trigger": "motion"})
    shown = datetime.fromtimestamp(ten_days_ago_us / 1e6, berlin)
    assert (f"Oldest clip 10.0 days old (from {shown.day} {shown:%b %Y}, {shown:%H:%M} "
            f"{shown.tzname()})") in page_text(client.get("/status"))
    assert "a day (from the last 7 days' clips)" in page_text(client.get("/status"))
    assert re.search(r"Days of footage that fit (\d+(\.\d)?) days", text), text

    app = make_app({"retention.max_age_days": 0, "retention.max_total_bytes": 20_000_000_000})
    client = new_client(app)
    unlock_directly(app, client, identity)
    text = page_text(client.get("/status"))
    assert ("Clips are kept until space runs out (no age limit), at most 20.0 GB in all; "
            "1.0 GB is always left free") in text


def test_status_times_carry_the_device_zone(unlocked, runtime_dir, berlin):
    write_recorder(runtime_dir, FIXED_FRAME_S)
    text = page_text(unlocked.get("/status"))
    assert "Last frame 14:03:05 CET" in text
    assert "Times are the doorbell's local time, Europe/Berlin (CET)." in text
    data = unlocked.get("/status.json").get_json()
    assert data["last_frame_text"] == "14:03:05 CET"  # what the page's script shows
    assert data["last_frame_time"] == FIXED_FRAME_S
    # Summer time is labelled as such.
    write_recorder(runtime_dir, FIXED_FRAME_S - 150 * 86400)  # July 2024
    assert "Last frame 15:03:05 CEST" in page_text(unlocked.get("/status"))


def test_status_time_zone_without_a_name(unlocked, runtime_dir, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        write_recorder(runtime_dir, FIXED_FRAME_S)
        text = page_text(unlocked.get("/status"))
        assert "Last frame 13:03:05 UTC" in text
        assert "Times are the doorbell's local time (UTC)." in text
        # A zone whose abbreviation is only an offset is labelled with it.
        monkeypatch.setenv("TZ", "Asia/Dubai")
        time.tzset()
        text = page_text(unlocked.get("/status"))
        assert "Last frame 17:03:05 UTC+04" in text
        assert "Asia/Dubai (UTC+04)" in text
    finally:
        monkeypatch.undo()
        time.tzset()


def test_every_page_names_the_zone_of_its_times(app, unlocked, berlin):
    for path in ("/", "/status", "/audit", "/live", "/settings"):
        text = page_text(unlocked.get(path))
        assert "Times are the doorbell's local time, Europe/Berlin (CET)." in text, path
    stranger = new_client(app)
    assert "Europe/Berlin" not in page_text(stranger.get("/login"))  # not before unlocking
