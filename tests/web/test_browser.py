"""The viewer in a real browser: Debian's Chromium against the real recorder and gunicorn viewer.

The device runs as two subprocesses (see browser_fixtures.device): the recorder on the synthetic
camera in real time and `doorbell serve`. The tests unlock through the login form, look at the
timeline's thumbnails, play and seek a clip, watch the live view, lock, and play a clip whose
recording was killed with SIGKILL. Every page is checked for Content-Security-Policy violations
and for requests going anywhere but the device itself.
"""

import time

import pytest

from . import browser_fixtures
from .browser_fixtures import unlock, wait_until

# The fixtures (module-scoped device and browser, a fresh watched page per test).
chromium = browser_fixtures.chromium
device = browser_fixtures.device
watched_page = browser_fixtures.watched_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PARTIAL_BEFORE_KILL_BYTES = 200 * 1024

# Plays the page's <video id="player"> (muted), then seeks it to its middle. Returns what it saw.
PLAY_AND_SEEK = """async () => {
    const v = document.getElementById('player');
    const event = (name, ms) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(
            name + ' timed out (readyState ' + v.readyState + ', error ' +
            (v.error && v.error.message) + ')')), ms);
        v.addEventListener(name, () => { clearTimeout(timer); resolve(); }, {once: true});
    });
    if (v.readyState < 1) await event('loadedmetadata', 20000);
    const out = {duration: v.duration, width: v.videoWidth, height: v.videoHeight};
    if (!isFinite(v.duration)) return out;
    v.muted = true;
    const startedAt = v.currentTime;
    await v.play();
    const goal = Math.min(0.8, v.duration / 3);
    const started = performance.now();
    while (v.currentTime - startedAt < goal && performance.now() - started < 15000) {
        await new Promise(r => setTimeout(r, 50));
    }
    out.playedFrom = startedAt;
    out.playedTo = v.currentTime;
    out.goal = goal;
    v.pause();
    out.target = v.duration / 2;
    const seeked = event('seeked', 20000);
    v.currentTime = out.target;
    await seeked;
    out.afterSeek = v.currentTime;
    out.error = v.error ? v.error.message : null;
    return out;
}"""

ALL_THUMBNAILS = """() => Array.from(document.querySelectorAll('ul.events img')).map(img => ({
    src: img.getAttribute('src'), complete: img.complete, naturalWidth: img.naturalWidth}))"""


def screenshot(page, tmp_path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def newest_complete_clip(device) -> dict:
    return next(clip for clip in device.clips() if clip["state"] == "complete")


def test_unlock_shows_timeline_with_loaded_thumbnails(watched_page, device, tmp_path):
    page, watch = watched_page
    response = page.goto("/")
    assert page.url.endswith("/login"), "a locked viewer must show the login page"
    assert response.status == 200
    assert page.locator("#login-form").is_visible()

    unlock(page)
    assert page.url == device.base_url + "/"
    assert "Timeline" in page.title()
    clip = newest_complete_clip(device)
    assert page.locator(f'a[href="/clips/{clip["id"]}"]').count() == 1, (
        f"the timeline does not list clip {clip['id']}")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('ul.events img'))"
        ".some(img => img.complete && img.naturalWidth > 0)")
    thumbnails = page.evaluate(ALL_THUMBNAILS)
    screenshot(page, tmp_path, "timeline")
    loaded = [t for t in thumbnails if t["complete"] and t["naturalWidth"] > 0]
    assert loaded, f"no thumbnail loaded: {thumbnails}"
    assert any(t["src"] == f"/clips/{clip['id']}/thumbnail.jpg" for t in loaded), thumbnails
    watch.assert_clean(page)


def test_clip_plays_and_seeks_to_its_middle(watched_page, device, tmp_path):
    page, watch = watched_page
    clip = newest_complete_clip(device)
    meta = device.metadata(clip["id"])
    assert meta and meta.get("duration_s"), meta
    unlock(page)
    page.click(f'a[href="/clips/{clip["id"]}"]')
    page.wait_for_url(f"**/clips/{clip['id']}")
    assert page.locator("#truncated-note").count() == 0, "a complete clip is not interrupted"

    result = page.evaluate(PLAY_AND_SEEK)
    screenshot(page, tmp_path, "clip")
    assert result["duration"] is not None and result["duration"] == pytest.approx(
        meta["duration_s"], abs=max(0.5, 0.05 * meta["duration_s"])), (result, meta)
    assert result["width"] == 640 and result["height"] == 360, result
    assert result["error"] is None, result
    assert result["playedTo"] - result["playedFrom"] >= result["goal"], (
        f"currentTime did not advance: {result}")
    assert result["afterSeek"] == pytest.approx(result["target"], abs=0.3), result
    video_requests = [u for u in watch.requests if u.endswith(f"/clips/{clip['id']}/video")]
    assert video_requests, watch.requests
    watch.assert_clean(page)


def test_live_view_updates(watched_page, device, tmp_path):
    page, watch = watched_page
    unlock(page)
    page.click("nav >> text=Live")
    page.wait_for_url("**/live", wait_until="domcontentloaded")
    live = page.locator("img#live")
    page.wait_for_function(
        "() => { const i = document.getElementById('live'); return i && i.naturalWidth > 0; }")
    first = live.screenshot(path=str(tmp_path / "live-1.png"))
    changed = wait_until(
        lambda: live.screenshot(path=str(tmp_path / "live-2.png")) != first, 10,
        "the live picture to change", interval_s=1.5)
    assert changed
    width = page.evaluate("() => document.getElementById('live').naturalWidth")
    assert width == 640, width  # the configured live width
    watch.assert_clean(page)


def test_lock_returns_to_the_login_page(watched_page, device, tmp_path):
    page, watch = watched_page
    unlock(page)
    timeline_url = page.url
    with page.expect_navigation():
        page.click("#lock-now")
    assert page.url.endswith("/login"), page.url
    assert page.locator("#login-form").is_visible()
    assert page.locator("#lock-now").count() == 0
    screenshot(page, tmp_path, "locked")

    page.goto(timeline_url)
    assert page.url.endswith("/login"), "the timeline must not show once locked"
    assert page.locator("#login-form").is_visible()
    assert page.locator("ul.events").count() == 0

    # The history does not bring back what was shown before locking either.
    for _ in range(2):
        page.go_back()
        assert page.locator("ul.events").count() == 0, page.url
        assert page.locator("#lock-now").count() == 0, page.url

    # Clip media is refused too, not just the pages.
    clip = newest_complete_clip(device)
    status = page.evaluate(
        "async (u) => (await fetch(u, {credentials: 'same-origin'})).status",
        f"/clips/{clip['id']}/thumbnail.jpg")
    assert status == 401
    watch.assert_clean(page)


def test_every_page_is_local_and_within_the_csp(watched_page, device, tmp_path):
    page, watch = watched_page
    unlock(page)
    clip = newest_complete_clip(device)
    for path, heading in (("/", "Timeline"), (f"/clips/{clip['id']}", None),
                          ("/status", None), ("/audit", None), ("/live", "Live")):
        response = page.goto(path, wait_until="domcontentloaded")
        assert response.status == 200, path
        page.wait_for_load_state("domcontentloaded")
        if heading:
            assert heading in page.title(), (path, page.title())
        page.wait_for_timeout(700)  # let subresources and scripts (live stream) run
        screenshot(page, tmp_path, path.strip("/").replace("/", "-") or "timeline")
    with page.expect_request("**/status.json", timeout=10_000):
        page.goto("/status")  # app.js refreshes the figures with fetch() every 3 s
    page.wait_for_timeout(500)
    watch.assert_clean(page)

    # The probe itself works: an inline script (which the CSP forbids) is reported.
    page.evaluate("""() => { const s = document.createElement('script');
                             s.textContent = 'window.inlineRan = true';
                             document.body.append(s); }""")
    page.wait_for_timeout(300)
    assert watch.csp_violations, "the CSP violation probe saw nothing"
    assert page.evaluate("() => window.inlineRan === undefined"), "an inline script ran"


@pytest.fixture(scope="module")
def truncated_clip(device):
    """A clip whose recorder was killed with SIGKILL mid-clip, recovered at the next start."""
    def big_partial():
        device.check_running()
        return next((p for p in device.partials()
                     if p.exists() and p.stat().st_size > PARTIAL_BEFORE_KILL_BYTES), None)

    partial = wait_until(big_partial, 150, "a clip in progress over 200 KB",
                         describe=device.logs)
    clip_id = partial.name.removesuffix(".mp4.age.partial")
    device.kill_recorder_hard()
    assert partial.exists(), "SIGKILL must leave the partial clip behind"
    device.start_recorder()
    return device.wait_for_clip(
        lambda clip: clip["id"] == clip_id and clip["state"] == "truncated", 30,
        f"the restarted recorder to recover {clip_id} as truncated")


def test_truncated_clip_plays_and_says_it_was_interrupted(watched_page, device, truncated_clip,
                                                          tmp_path):
    page, watch = watched_page
    clip_id = truncated_clip["id"]
    unlock(page)
    page.goto(f"/?day={time.strftime('%Y-%m-%d')}")
    entry = page.locator(f'a[href="/clips/{clip_id}"]')
    if entry.count():  # the clip began today (local time), so it is on today's page
        assert "truncated" in entry.inner_text()
    page.goto(f"/clips/{clip_id}")
    note = page.locator("#truncated-note")
    assert note.is_visible(), "the player must say that the clip was interrupted"
    assert "interrupted" in note.inner_text()

    result = page.evaluate(PLAY_AND_SEEK)
    screenshot(page, tmp_path, "truncated-clip")
    assert result["error"] is None, result
    assert result["duration"] is not None and 0.5 < result["duration"] < 200, result
    assert result["playedTo"] - result["playedFrom"] >= result["goal"], (
        f"currentTime did not advance: {result}")
    assert result["afterSeek"] == pytest.approx(result["target"], abs=0.3), result
    watch.assert_clean(page)


PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}


@pytest.mark.parametrize("path", ["/", "/status", "/live", "/audit", "/settings"])
def test_pages_fit_a_phone_screen(chromium, device, tmp_path, path):
    """On a phone (390 px wide), nothing on the main pages scrolls sideways or hides its text."""
    with browser_fixtures.watch_page(chromium, device.base_url, **PHONE) as (page, watch):
        unlock(page)
        page.goto(path)
        page.wait_for_timeout(3500)  # one status refresh, one live frame
        page_width = page.evaluate("document.documentElement.scrollWidth")
        # What sticks out (a table may scroll inside its own box: its cells do not count).
        clipped = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
            .filter(e => !e.closest('.scrolls-sideways'))
            .filter(e => e.getBoundingClientRect().right > 391 ||
                         (getComputedStyle(e).overflowX === 'visible' &&
                          e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0))
            .map(e => e.tagName + '.' + e.className + ' ' + e.textContent.slice(0, 40))""")
        screenshot(page, tmp_path, "phone" + path.replace("/", "-"))
        assert page_width <= 390 and not clipped, (
            f"{path} is {page_width} px wide on a 390 px screen; these reach past its edge: "
            f"{clipped[:5]}")
        if path == "/status":
            assert "GB" in page.inner_text("main") or "MB" in page.inner_text("main")
            assert page.locator("#st-last").inner_text().strip()
        watch.assert_clean(page)
