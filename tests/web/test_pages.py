"""The pages a member sees: timeline, audit, status, live; and the headers and markup every
response carries (CSP without inline script, no-store, frame-ancestors 'none')."""

import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from doorbell.storage.exchange import RecorderStatus

from .conftest import MEMBER, new_client, post_form

SLOT = re.compile(r'<span class="slot a(\d)"></span>')


def _html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def _local_hhmmss(start_us: int) -> str:
    return datetime.fromtimestamp(start_us / 1e6).astimezone().strftime("%H:%M:%S")


def _today() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d")


# -- timeline

def test_timeline_lists_todays_clips_with_thumbnails_and_trigger(unlocked, home):
    html = _html(unlocked.get("/"))
    for name, kind in (("doorbell", "Doorbell"), ("motion", "Motion")):
        clip = home.clips[name]
        item = re.search(rf'<li class="event (\w+)">\s*<a href="/clips/{clip.id}">(.*?)</li>',
                         html, re.S)
        assert item, name
        assert item.group(1) == clip.metadata["trigger"]
        assert f'<img src="/clips/{clip.id}/thumbnail.jpg"' in item.group(2)
        assert f'<span class="kind">{kind}</span>' in item.group(2)
        assert _local_hhmmss(clip.start_us) in item.group(2)
    assert '<span class="duration">2 s</span>' in html
    assert home.clips["yesterday"].id not in html
    # Newest first.
    assert html.index(home.clips["motion"].id) < html.index(home.clips["doorbell"].id)
    # The thumbnails it points at are the real ones.
    clip = home.clips["doorbell"]
    assert unlocked.get(f"/clips/{clip.id}/thumbnail.jpg").get_data() == clip.thumbnail


@pytest.mark.parametrize(("trigger", "shown", "hidden"), [
    ("doorbell", "doorbell", "motion"),
    ("motion", "motion", "doorbell"),
])
def test_filter_by_trigger(unlocked, home, trigger, shown, hidden):
    html = _html(unlocked.get(f"/?trigger={trigger}"))
    assert home.clips[shown].id in html
    assert home.clips[hidden].id not in html
    assert f'<option value="{trigger}" selected>' in html


def test_unknown_trigger_shows_everything(unlocked, home):
    html = _html(unlocked.get("/?trigger=<script>"))
    assert home.clips["doorbell"].id in html and home.clips["motion"].id in html
    assert "<script>" not in html.split("</head>")[1]


def test_filter_by_day(unlocked, home):
    yesterday = (datetime.now().astimezone() - timedelta(days=1)).strftime("%Y-%m-%d")
    html = _html(unlocked.get(f"/?day={yesterday}"))
    assert home.clips["yesterday"].id in html
    assert home.clips["doorbell"].id not in html and home.clips["motion"].id not in html
    assert f'<option value="{yesterday}" selected>{yesterday} (1)</option>' in html
    assert f'<option value="{_today()}" >{_today()} (2)</option>' in html
    # An unknown day falls back to the newest one.
    fallback = _html(unlocked.get("/?day=1999-01-01"))
    assert home.clips["doorbell"].id in fallback
    assert _html(unlocked.get("/?day=../../etc")) == _html(unlocked.get("/"))
    html = _html(unlocked.get(f"/?day={yesterday}&trigger=doorbell"))
    assert "No events of this kind on this day." in html


@pytest.fixture
def berlin(monkeypatch):
    """The device's zone is Europe/Berlin for this test (TZ, as systemd passes it)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield ZoneInfo("Europe/Berlin")
    monkeypatch.undo()
    time.tzset()


def test_timeline_and_clip_times_carry_the_devices_zone_label(unlocked, home, berlin):
    clip = home.clips["doorbell"]
    moment = datetime.fromtimestamp(clip.start_us / 1e6, berlin)  # 09:05:00 CET for 08:05 UTC
    html = _html(unlocked.get("/"))
    item = re.search(rf'<a href="/clips/{clip.id}">(.*?)</a>', html, re.S).group(1)
    utc = datetime.fromtimestamp(clip.start_us // 1_000_000, ZoneInfo("UTC"))
    assert (f'<span class="when"><time datetime="{utc:%Y-%m-%dT%H:%M:%SZ}">'
            f'{moment:%H:%M:%S %Z}</time></span>') in item
    assert moment.strftime("%Z") in ("CET", "CEST")
    assert "Times are the doorbell&#39;s local time, Europe/Berlin (" in html
    page = _html(unlocked.get(f"/clips/{clip.id}"))
    assert f"{moment.day} {moment:%b %Y}, {moment:%H:%M:%S %Z}</time></h1>" in page
    confirm = _html(unlocked.get(f"/clips/{clip.id}/delete"))
    assert f"The clip from {moment.day} {moment:%b %Y}, {moment:%H:%M:%S %Z} will be" in confirm


def test_activity_strip_has_96_slots_marked_where_clips_are(unlocked, home):
    levels = [int(level) for level in SLOT.findall(_html(unlocked.get("/")))]
    assert len(levels) == 96
    marked = {i for i, level in enumerate(levels) if level}
    assert marked == {8 * 4 + 0, 13 * 4 + 1}  # 08:05 and 13:20, 15-minute slots
    yesterday = (datetime.now().astimezone() - timedelta(days=1)).strftime("%Y-%m-%d")
    levels = [int(x) for x in SLOT.findall(_html(unlocked.get(f"/?day={yesterday}")))]
    assert {i for i, level in enumerate(levels) if level} == {18 * 4}


def test_activity_strip_levels():
    from doorbell.web.views.timeline import activity_strip

    day = 1_000_000_000_000_000
    slot = 15 * 60 * 1_000_000
    starts = [day + 5] + [day + slot] * 3 + [day + 2 * slot] * 9 + [day - 1, day + 96 * slot]
    levels = activity_strip(starts, day)
    assert len(levels) == 96
    assert levels[:4] == [1, 2, 4, 0]
    assert sum(levels) == 7


def test_empty_home_timeline(unlocked, home):
    for clip in home.clips.values():
        assert post_form(unlocked, f"/clips/{clip.id}/delete").status_code == 303
    html = _html(unlocked.get("/"))
    assert "No clips yet" in html


# -- audit

def test_audit_page_shows_entries_and_that_the_chain_is_intact(unlocked, home):
    clip = home.clips["doorbell"]
    unlocked.get(f"/clips/{clip.id}")
    html = _html(unlocked.get("/audit"))
    assert re.search(r'<p class="ok" id="audit-verification">the audit log is intact', html)
    assert "<td>init</td>" in html
    assert f"<td>{MEMBER}</td><td>clip.view</td>" in html
    assert f"clip: {clip.id}" in html
    # Newest first.
    assert html.index("clip.view") < html.index("<td>init</td>")


def test_audit_page_reports_an_edited_log(unlocked, home):
    path = home.root / "audit.jsonl"
    path.write_text(path.read_text().replace('"action":"init"', '"action":"inIt"', 1))
    response = unlocked.get("/audit")
    html = _html(response)
    assert '<p class="error" id="audit-verification">' in html
    assert "intact" not in html


# -- status

def _write_recorder(runtime_dir, **fields):
    """recorder.json as the recorder writes it (storage.exchange.RecorderStatus)."""
    status = {"state": "watching", "camera": "synthetic", "fps": 14.8, "frames": 420,
              "clips_saved": 0, "last_frame_time": time.time(), "recording": None,
              "updated": time.time(), **fields}
    RecorderStatus(**status).write(runtime_dir / "recorder.json")


def test_status_shows_the_recorder_state(unlocked, runtime_dir):
    _write_recorder(runtime_dir)
    data = unlocked.get("/status.json")
    assert data.status_code == 200 and data.mimetype == "application/json"
    assert data.headers["Cache-Control"] == "no-store"
    status = data.get_json()
    assert status["recorder_alive"] is True
    assert status["recorder_state"] == "watching"
    assert status["camera"] == "synthetic"
    assert status["fps"] == 14.8
    assert status["clips_today"] == 2
    assert status["clips_total_bytes"] > 300 * 1024
    assert 0 < status["days_of_footage_that_fit"] <= 30
    html = _html(unlocked.get("/status"))
    assert '<dd id="st-alive" class="ok">running (watching, camera synthetic)</dd>' in html
    assert '<dd id="st-fps">14.8</dd>' in html
    assert '<dd id="st-today">2</dd>' in html
    assert 'data-source="/status.json"' in html


def test_status_when_the_recorder_is_stale_or_absent(unlocked, runtime_dir):
    status = unlocked.get("/status.json").get_json()
    assert status["recorder_alive"] is False
    assert status["recorder_state"] == "not running"
    assert "not receiving frames" in _html(unlocked.get("/status"))
    _write_recorder(runtime_dir, last_frame_time=time.time() - 60)
    assert unlocked.get("/status.json").get_json()["recorder_alive"] is False
    (runtime_dir / "recorder.json").write_text("{not json")
    assert unlocked.get("/status.json").get_json()["recorder_alive"] is False
    assert unlocked.get("/status").status_code == 200
    # Not what a recorder writes (a frame time a year ahead, a text frame count): no recorder.
    _write_recorder(runtime_dir, last_frame_time=time.time() + 365 * 86400)
    assert unlocked.get("/status.json").get_json()["recorder_alive"] is False
    (runtime_dir / "recorder.json").write_text('{"state": "recording", "frames": "many"}')
    status = unlocked.get("/status.json").get_json()
    assert (status["recorder_alive"], status["recorder_state"]) == (False, "not running")
    assert unlocked.get("/status").status_code == 200


def test_days_that_fit_follow_the_storage_budget(make_app, identity, runtime_dir):
    from .conftest import unlock_directly

    app = make_app({"retention.max_total_bytes": 10_000_000, "retention.max_age_days": 0})
    client = new_client(app)
    unlock_directly(app, client, identity)
    status = client.get("/status.json").get_json()
    assert status["bytes_per_day"] > 0
    expected = 10_000_000 / status["bytes_per_day"]
    assert status["days_of_footage_that_fit"] == pytest.approx(expected, rel=0.02, abs=0.1)


def test_days_that_fit_is_never_negative(unlocked, monkeypatch):
    from collections import namedtuple

    import doorbell.web.capacity as status_view

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(status_view.shutil, "disk_usage",
                        lambda path: usage(8_000_000_000, 7_500_000_000, 500_000_000))
    status = unlocked.get("/status.json").get_json()
    assert status["disk_free_bytes"] == 500_000_000
    assert status["days_of_footage_that_fit"] is not None
    assert status["days_of_footage_that_fit"] >= 0


# -- live

def test_live_page(unlocked):
    html = _html(unlocked.get("/live"))
    assert '<img id="live"' in html and 'data-stream="/live/stream"' in html


def test_privacy_mode_is_said_on_the_live_and_status_pages_instead_of_a_broken_picture(
        unlocked, runtime_dir):
    # What the recorder writes while Home Assistant's privacy switch is on (live.jpg removed).
    _write_recorder(runtime_dir, state="privacy mode")
    live = _html(unlocked.get("/live"))
    assert "Privacy mode is on: the camera is not recording or streaming." in live
    assert '<img id="live"' not in live and "/live/stream" not in live
    assert 'id="privacy-mode" data-session-check="/status.json"' in live  # it comes back by itself
    assert unlocked.get("/status.json").get_json()["privacy_mode"] is True
    status = _html(unlocked.get("/status"))
    assert re.search(r'<p class="warning" id="st-privacy" >Privacy mode is on \(switched from '
                     r'Home Assistant\): the camera is not recording or streaming\.</p>', status)
    assert "running (privacy mode, camera synthetic)" in status

    # Switched off: the picture is back, and the status page's note is hidden.
    _write_recorder(runtime_dir, state="idle")
    live = _html(unlocked.get("/live"))
    assert '<img id="live"' in live and "Privacy mode is on" not in live
    assert unlocked.get("/status.json").get_json()["privacy_mode"] is False
    assert '<p class="warning" id="st-privacy" hidden>' in _html(unlocked.get("/status"))
    # A recorder that stopped long ago says nothing about now: not private, just not running.
    _write_recorder(runtime_dir, state="privacy mode", updated=time.time() - 120,
                    last_frame_time=time.time() - 120)
    assert unlocked.get("/status.json").get_json()["privacy_mode"] is False


def test_live_frame_is_the_recorders_jpeg(unlocked, runtime_dir):
    assert unlocked.get("/live/frame.jpg").status_code == 404  # recorder not running
    frame = b"\xff\xd8\xff\xe0 masked frame \xff\xd9"
    (runtime_dir / "live.jpg").write_bytes(frame)
    response = unlocked.get("/live/frame.jpg")
    assert response.status_code == 200
    assert response.mimetype == "image/jpeg"
    assert response.get_data() == frame
    assert response.headers["Cache-Control"] == "no-store"


def test_live_stream_sends_a_multipart_part_and_is_audited(app, unlocked, home, runtime_dir):
    frame = b"\xff\xd8\xff\xe0 live \xff\xd9"
    (runtime_dir / "live.jpg").write_bytes(frame)
    response = unlocked.get("/live/stream", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "multipart/x-mixed-replace"
    boundary = response.mimetype_params["boundary"]
    part = next(iter(response.response))
    assert part.startswith(f"--{boundary}\r\n".encode())
    assert b"Content-Type: image/jpeg\r\n" in part
    assert f"Content-Length: {len(frame)}\r\n\r\n".encode() in part
    assert part.endswith(frame + b"\r\n")
    views = home.actions("live.view")
    assert [(e.actor, e.details["via"], e.details["viewers"]) for e in views] == \
        [(MEMBER, "stream", 1)]
    assert app.extensions["doorbell"].live_viewers == 1
    response.close()
    assert app.extensions["doorbell"].live_viewers == 0


def test_locking_ends_the_live_stream(app, unlocked, runtime_dir):
    from .conftest import session_cookie

    (runtime_dir / "live.jpg").write_bytes(b"\xff\xd8frame")
    response = unlocked.get("/live/stream", buffered=False)
    parts = iter(response.response)
    next(parts)
    app.extensions["doorbell"].sessions.drop(session_cookie(unlocked))
    started = time.monotonic()
    rest = list(parts)  # the stream ends by itself once the session is locked
    assert rest == [] and time.monotonic() - started < 5
    response.close()
    assert app.extensions["doorbell"].live_viewers == 0


def test_live_viewers_are_limited(app, unlocked, home, runtime_dir):
    from doorbell.web.views.live import MAX_STREAMS

    (runtime_dir / "live.jpg").write_bytes(b"\xff\xd8frame")
    streams = [unlocked.get("/live/stream", buffered=False) for _ in range(MAX_STREAMS)]
    try:
        assert all(s.status_code == 200 for s in streams)
        assert unlocked.get("/live/stream").status_code == 503
        # One session's streams are one live session: one entry.
        assert [e.details["viewers"] for e in home.actions("live.view")] == [1]
    finally:
        for stream in streams:
            stream.close()
    assert app.extensions["doorbell"].live_viewers == 0
    again = unlocked.get("/live/stream", buffered=False)
    assert again.status_code == 200
    again.close()


# -- headers and markup on every page

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.I)
HANDLER_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
EXTERNAL_URL = re.compile(r'(?:src|href|action)="(?:https?:)?//', re.I)


def _assert_csp(response, where: str) -> None:
    policy = response.headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives.get("script-src") == ["'self'"], (where, policy)
    assert directives.get("frame-ancestors") == ["'none'"], (where, policy)
    assert directives.get("default-src") == ["'none'"], (where, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (where, policy)
    assert response.headers.get("X-Frame-Options") == "DENY", where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where


def _assert_clean_markup(html: str, where: str) -> None:
    assert not INLINE_SCRIPT.search(html), where
    assert not STYLE_ATTRIBUTE.search(html), where
    assert not HANDLER_ATTRIBUTE.search(html), where
    assert "javascript:" not in html.lower(), where
    assert not EXTERNAL_URL.search(html), where  # every asset comes from the device itself
    assert "<style" not in html.lower(), where


def test_every_page_has_csp_no_store_and_no_inline_script(app, unlocked, home, runtime_dir):
    _write_recorder(runtime_dir)
    (runtime_dir / "live.jpg").write_bytes(b"\xff\xd8frame")
    clip = home.clips["doorbell"]
    pages = {
        "timeline": unlocked.get("/"),
        "timeline filtered": unlocked.get("/?trigger=motion"),
        "player": unlocked.get(f"/clips/{clip.id}"),
        "confirm delete": unlocked.get(f"/clips/{clip.id}/delete"),
        "export": post_form(unlocked, f"/clips/{clip.id}/export"),
        "live": unlocked.get("/live"),
        "status": unlocked.get("/status"),
        "audit": unlocked.get("/audit"),
        "not found": unlocked.get("/no-such-page"),
        "bad clip": unlocked.get("/clips/nope"),
        "bad host": unlocked.get("/", headers={"Host": "evil.example"}),
        "wrong network": unlocked.get("/", environ_base={"REMOTE_ADDR": "8.8.8.8"}),
        "csrf refused": unlocked.post("/lock"),
        "login": new_client(app).get("/login"),
        "login failed": new_client(app).post("/login", data={"member": MEMBER,
                                                             "passphrase": ""}),
    }
    for name, response in pages.items():
        assert response.mimetype == "text/html", name
        _assert_csp(response, name)
        assert response.headers["Cache-Control"] == "no-store", name
        _assert_clean_markup(response.get_data(as_text=True), name)
    others = {
        "video": unlocked.get(f"/clips/{clip.id}/video"),
        "range": unlocked.get(f"/clips/{clip.id}/video", headers={"Range": "bytes=0-9"}),
        "thumbnail": unlocked.get(f"/clips/{clip.id}/thumbnail.jpg"),
        "live frame": unlocked.get("/live/frame.jpg"),
        "status json": unlocked.get("/status.json"),
        "locked media": new_client(app).get(f"/clips/{clip.id}/video"),
        "redirect": new_client(app).get("/"),
    }
    for name, response in others.items():
        _assert_csp(response, name)
        assert response.headers["Cache-Control"] == "no-store", name
    static = unlocked.get("/static/app.js")
    _assert_csp(static, "static")
    assert "no-store" not in static.headers.get("Cache-Control", "")


def test_templates_have_no_inline_script_or_style():
    from pathlib import Path

    from doorbell import web

    templates = Path(web.__file__).parent / "templates"
    files = sorted(templates.glob("*.html"))
    assert len(files) >= 10
    for path in files:
        _assert_clean_markup(path.read_text(), path.name)


def test_status_says_why_retention_waits(unlocked, runtime_dir):
    _write_recorder(runtime_dir)
    assert 'id="st-retention"' not in _html(unlocked.get("/status"))
    problem = "the audit log cannot be appended, so no clip is deleted until it is repaired"
    _write_recorder(runtime_dir, retention_problem=problem)
    assert unlocked.get("/status.json").get_json()["retention_problem"] == problem
    html = _html(unlocked.get("/status"))
    assert f'id="st-retention" role="alert">Old clips are not being deleted: {problem}</p>' in html
