"""Every footage access is on the record, once per view: video bytes (playing and downloading),
thumbnails and the live picture, coalesced so a seeking player or a live page writes one entry,
not one per request (web/coalesced_audit.py)."""

import pytest

from doorbell.web.views.common import local_time

from .conftest import MEMBER, new_client, unlock_directly


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app):
    clock = FakeClock()
    app.extensions["doorbell"].access_audit._clock = clock
    return clock


def _ranges(client, clip_id: str, count: int, size: int) -> None:
    step = max(1, size // count)
    for number in range(count):
        start = (number * step) % size
        response = client.get(f"/clips/{clip_id}/video",
                              headers={"Range": f"bytes={start}-{min(start + 999, size - 1)}"})
        assert response.status_code == 206, response.status_code
        response.close()


def test_fifty_range_requests_are_one_entry(unlocked, home):
    clip = home.clips["motion"]
    before = len(home.audit())
    _ranges(unlocked, clip.id, 50, len(clip.video))
    assert len(home.audit()) == before + 1
    [view] = home.actions("clip.view")
    assert (view.actor, view.details["clip"], view.details["via"]) == (MEMBER, clip.id, "video")
    assert view.details["address"] == "127.0.0.1"


def test_the_player_page_and_its_range_requests_are_one_entry(unlocked, home):
    clip = home.clips["motion"]
    assert unlocked.get(f"/clips/{clip.id}").status_code == 200
    _ranges(unlocked, clip.id, 50, len(clip.video))
    [view] = home.actions("clip.view")
    assert view.details["clip"] == clip.id and "via" not in view.details
    # Opening the page again is a new look at it, and says so.
    assert unlocked.get(f"/clips/{clip.id}").status_code == 200
    assert len(home.actions("clip.view")) == 2


def test_each_clip_is_its_own_view(unlocked, home):
    for clip in home.clips.values():
        _ranges(unlocked, clip.id, 5, len(clip.video))
    views = home.actions("clip.view")
    assert sorted(e.details["clip"] for e in views) == sorted(c.id for c in home.clips.values())


def test_a_download_is_its_own_entry(unlocked, home):
    clip = home.clips["motion"]
    _ranges(unlocked, clip.id, 3, len(clip.video))
    whole = unlocked.get(f"/clips/{clip.id}/video?download=1")
    assert whole.get_data() == clip.video
    [download] = home.actions("clip.download")
    assert (download.actor, download.details["clip"]) == (MEMBER, clip.id)
    assert len(home.actions("clip.view")) == 1  # the player's view, not the download
    # A resumed download continues the same download; a new one from the start is another.
    resumed = unlocked.get(f"/clips/{clip.id}/video?download=1", headers={"Range": "bytes=1000-"})
    assert resumed.status_code == 206 and resumed.get_data() == clip.video[1000:]
    assert len(home.actions("clip.download")) == 1
    assert unlocked.get(f"/clips/{clip.id}/video?download=1").status_code == 200
    assert len(home.actions("clip.download")) == 2


def test_a_timeline_page_is_one_entry_naming_the_clips_it_shows(unlocked, home):
    today = [home.clips["doorbell"].id, home.clips["motion"].id]
    page = unlocked.get("/")
    assert page.status_code == 200
    [listing] = home.actions("timeline.view")
    assert sorted(listing.details["clips"]) == sorted(today)
    assert listing.actor == MEMBER
    # The page's thumbnails, however often the browser asks, add nothing.
    for _ in range(5):
        for clip_id in today:
            assert unlocked.get(f"/clips/{clip_id}/thumbnail.jpg").status_code == 200
    unlocked.get("/")  # a reload shows nothing new
    assert len(home.actions("timeline.view")) == 1
    assert home.actions("clip.thumbnail") == []
    # A thumbnail fetched without a page that shows it is recorded by itself, once.
    other = home.clips["yesterday"].id
    for _ in range(3):
        assert unlocked.get(f"/clips/{other}/thumbnail.jpg").status_code == 200
    assert [e.details["clip"] for e in home.actions("clip.thumbnail")] == [other]
    # Yesterday's page lists only what is not on record yet: nothing left.
    day = local_time(home.clips["yesterday"].start_us).strftime("%Y-%m-%d")
    assert unlocked.get("/", query_string={"day": day}).status_code == 200
    assert len(home.actions("timeline.view")) == 1


def test_a_live_session_is_one_entry(app, unlocked, home, runtime_dir, identity):
    (runtime_dir / "live.jpg").write_bytes(b"\xff\xd8\xff\xe0frame\xff\xd9")
    for _ in range(3):  # the page reconnects its stream
        stream = unlocked.get("/live/stream", buffered=False)
        assert stream.status_code == 200
        next(iter(stream.response))
        stream.close()
    for _ in range(20):  # the settings pages' refreshing picture
        assert unlocked.get("/live/frame.jpg").status_code == 200
    [view] = home.actions("live.view")
    assert (view.actor, view.details["via"], view.details["viewers"]) == (MEMBER, "stream", 1)
    # Another session (another unlock) is another live session.
    other = new_client(app)
    unlock_directly(app, other, identity)
    assert other.get("/live/frame.jpg").status_code == 200
    assert [e.details["via"] for e in home.actions("live.view")] == ["stream", "frame"]


def test_a_quiet_gap_ends_a_view_and_long_views_are_renewed(app, unlocked, home, clock):
    from doorbell.web.coalesced_audit import QUIET_S, RENEW_S

    clip = home.clips["motion"]
    _ranges(unlocked, clip.id, 3, len(clip.video))
    clock.now += QUIET_S - 1  # paused a while, then seeking again: the same view
    _ranges(unlocked, clip.id, 3, len(clip.video))
    assert len(home.actions("clip.view")) == 1
    clock.now += QUIET_S + 1  # came back later: a new view
    _ranges(unlocked, clip.id, 3, len(clip.video))
    assert len(home.actions("clip.view")) == 2
    # Requests without a quiet gap for longer than RENEW_S are recorded again.
    elapsed = 0.0
    while elapsed <= RENEW_S:
        clock.now += 60
        elapsed += 60
        _ranges(unlocked, clip.id, 1, len(clip.video))
    assert len(home.actions("clip.view")) == 3


def test_nothing_is_shown_when_the_access_cannot_be_recorded(unlocked, home, runtime_dir):
    (runtime_dir / "live.jpg").write_bytes(b"\xff\xd8\xff\xe0frame\xff\xd9")
    clip = home.clips["motion"]
    (home.root / "audit.jsonl.head").unlink()  # a damaged log: appends refuse
    for url in (f"/clips/{clip.id}/video", f"/clips/{clip.id}/thumbnail.jpg", "/live/frame.jpg",
                f"/clips/{clip.id}", "/"):
        response = unlocked.get(url, headers={"Range": "bytes=0-99"})
        body = response.get_data()
        assert response.status_code == 503, (url, response.status_code)
        assert b"audit log cannot record this access" in body, url
        assert clip.video[:64] not in body and clip.thumbnail not in body
    assert unlocked.get("/live/stream").status_code == 503
    assert unlocked.application.extensions["doorbell"].live_viewers == 0


def test_the_marks_of_ended_views_are_forgotten(tmp_path):
    from doorbell.storage.audit import AuditLog
    from doorbell.web.coalesced_audit import CoalescedAudit

    clock = FakeClock()
    log = AuditLog(tmp_path / "audit.jsonl")
    audit = CoalescedAudit(log, quiet_s=300, renew_s=3600, clock=clock)
    for number in range(100):
        audit.record(f"session-{number}", "live", "alice", "live.view")
    assert len(audit) == 100 and len(log.entries()) == 100
    clock.now += 301
    audit.record("session-new", "live", "alice", "live.view")
    assert len(audit) == 1  # memory does not grow with every session there ever was
    assert audit.record("session-new", "live", "alice", "live.view") is None
    assert len(log.entries()) == 101
