"""Set-up, settings and household pages in a real browser, against the real recorder and viewer.

Debian's Chromium (Playwright) drives:

1. onboarding a fresh home: the set-up code from `doorbell serve`'s log, the recovery key shown
   once (downloaded, then used with the real `age` CLI on the first clip), and the recorder that
   was waiting for set-up starting on its own;
2. a privacy mask drawn with the mouse on the snapshot (a corner then dragged by mouse and by
   touch), saved with the passphrase, then black in the next live frame and in every frame of
   the next recorded clip;
3. the motion tuner: the detector's overlay follows the sliders. At the least sensitive values a
   visitor close to the door still counts (they fill more than 5 % of the picture), so the test
   checks that small areas count at the most sensitive values and none under 5 % at the least;
4. adding and removing a member, and who can decrypt the clips recorded after each change.

Test 1 has a device of its own (an empty home); tests 2-4 share one (module-scoped) whose
config.toml shortens clips so that a "next clip" comes within a visit of the synthetic scene
(a visitor about every 20-30 s). Every page is checked for CSP violations and for requests going
anywhere but the device.
"""

import base64
import io
import json
import re
import shutil
import subprocess
import time
import tomllib

import cv2
import numpy as np
import pytest

from tests.age_cli import NO_HYBRID_AGE, age_for

from . import browser_fixtures
from .browser_fixtures import (
    CAMERA_CONFIG,
    MEMBER,
    PASSPHRASE,
    make_empty_home,
    running_device,
    unlock,
    wait_until,
    watch_page,
)

chromium = browser_fixtures.chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTH, HEIGHT = 640, 360
# Short clips, so a clip that starts after a change is closed soon after a visitor arrives.
FAST_CONFIG = CAMERA_CONFIG + """
[recording]
pre_roll_s = 1.0
post_roll_s = 2.0
max_clip_s = 10.0
"""
NEXT_CLIP_TIMEOUT_S = 100.0  # the scene's longest quiet stretch is ~35 s, plus a clip
APPLIED_TIMEOUT_S = 20.0
BOB = "bob"
BOB_PASSPHRASE = "violet-harbour-across-tin-47"

# The privacy mask drawn in test 2 (fractions of the picture): a quadrilateral over the porch
# wall on the left; its third corner is then dragged from DRAWN[2] to MIDWAY with the mouse,
# then on to DRAGGED_TO with a finger.
DRAWN = [(0.05, 0.10), (0.35, 0.10), (0.30, 0.60), (0.05, 0.60)]
MIDWAY = (0.45, 0.45)
DRAGGED_TO = (0.40, 0.75)
MASK = [DRAWN[0], DRAWN[1], DRAGGED_TO, DRAWN[3]]

# fetch() through the page (its session cookie): status and body, base64.
FETCH_BYTES = """async (url) => {
    const response = await fetch(url, {credentials: 'same-origin', cache: 'no-store'});
    const bytes = new Uint8Array(await response.arrayBuffer());
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
        text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return {status: response.status, type: response.headers.get('Content-Type'),
            body: btoa(text)};
}"""

LOADED_THUMBNAILS = """() => Array.from(document.querySelectorAll('ul.events img'))
    .filter(img => img.complete && img.naturalWidth > 0).map(img => img.getAttribute('src'))"""


def screenshot(page, tmp_path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def fetch_bytes(page, url: str) -> tuple[int, str, bytes]:
    result = page.evaluate(FETCH_BYTES, url)
    return result["status"], result["type"], base64.b64decode(result["body"])


# -- pictures: inside and outside a polygon --------------------------------------------------------


def polygon_regions(polygon, width: int = WIDTH, height: int = HEIGHT,
                    margin_px: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """(well inside, well outside): boolean masks `margin_px` clear of the polygon's edge, so
    JPEG/H.264 ringing along the edge does not count."""
    points = np.rint(np.asarray(polygon) * [width - 1, height - 1]).astype(np.int32)
    filled = np.zeros((height, width), np.uint8)
    cv2.fillPoly(filled, [points.reshape(-1, 1, 2)], 255)
    kernel = np.ones((2 * margin_px + 1, 2 * margin_px + 1), np.uint8)
    inside = cv2.erode(filled, kernel) > 0
    outside = cv2.dilate(filled, kernel) == 0
    return inside, outside


def black_inside(image: np.ndarray, polygon) -> tuple[bool, str]:
    """Whether `image` (BGR) is black well inside `polygon` and not black well outside it."""
    assert image.shape[:2] == (HEIGHT, WIDTH), image.shape
    inside, outside = polygon_regions(polygon)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    inner = gray[inside]
    outer = gray[outside]
    figures = (f"inside: mean {inner.mean():.1f}, p99 {np.percentile(inner, 99):.0f}; "
               f"outside: mean {outer.mean():.1f}")
    masked = inner.mean() < 8 and np.percentile(inner, 99) < 40 and outer.mean() > 40
    return masked, figures


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"not a JPEG ({len(data)} bytes)"
    return image


def clip_frames(mp4: bytes) -> list[np.ndarray]:
    import av

    with av.open(io.BytesIO(mp4)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


# -- clips -----------------------------------------------------------------------------------------


def decrypt_video(device, clip_id: str, identity) -> bytes:
    """The clip's MP4, decrypted with `identity` (raises NoIdentityMatchError if it cannot)."""
    from doorbell.storage.clipreader import open_video

    opened = open_video(device.clips_dir, clip_id, [identity])
    try:
        assert not opened.truncated, f"clip {clip_id} is truncated"
        return opened.reader.read()
    finally:
        opened.close()


def next_complete_clip(device, after_s: float, what: str) -> dict:
    """The first complete clip that starts after `after_s` (unix seconds)."""
    return device.wait_for_clip(
        lambda clip: clip["state"] == "complete" and clip["start_us"] > after_s * 1e6,
        NEXT_CLIP_TIMEOUT_S, what)


def wait_applied(device, name: str) -> float:
    """Wait until the recorder publishes the home's `name` as in force; returns the time."""
    wait_until(lambda: device.check_running() or device.recorder_applied(name),
               APPLIED_TIMEOUT_S, f"the recorder to apply the new {name}",
               describe=lambda: json.dumps(device.recorder_status()) + "\n" + device.logs())
    return time.time()


# -- 1. onboarding ---------------------------------------------------------------------------------


@pytest.fixture
def empty_device(tmp_path):
    """`doorbell serve` and `doorbell record --source synthetic` on a home with no keys yet."""
    device = make_empty_home(tmp_path / "device", FAST_CONFIG)
    try:
        device.start_viewer()
        device.start_recorder()
        wait_until(device.viewer_answers, 30, "the viewer to answer", describe=device.logs)
        wait_until(device.setup_code, 10, "the set-up code in the viewer's log",
                   describe=device.logs)
        yield device
    finally:
        device.stop()


def test_onboarding_from_an_empty_home_to_a_recorded_clip(chromium, empty_device, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    if shutil.which("age") is None:
        pytest.skip("the age command line tool is not installed (apt-get install age): it "
                    "checks that the downloaded recovery key opens a clip")
    device = empty_device
    code = device.setup_code()
    wait_until(lambda: device.check_running() or "waiting for set-up" in device.log("record-1"),
               15, "the recorder to say it waits for set-up", describe=device.logs)
    assert not (device.root / "recipients.txt").exists()
    assert not device.clips_dir.exists() or not any(device.clips_dir.rglob("*.age"))

    with watch_page(chromium, device.base_url, accept_downloads=True) as (page, watch):
        page.goto("/")
        assert page.url == device.base_url + "/setup", page.url
        assert page.locator("#setup-form").is_visible()

        # A wrong code is refused and says so.
        wrong = "2345-6789-ABCD" if code != "2345-6789-ABCD" else "ABCD-2345-6789"
        page.fill("input[name=code]", wrong)
        page.fill("input[name=member]", MEMBER)
        page.fill("#new-passphrase", PASSPHRASE)
        page.fill("input[name=passphrase_confirm]", PASSPHRASE)
        with page.expect_navigation() as navigation:
            page.click("#setup-form button[type=submit]")
        assert navigation.value.status == 401
        assert "Wrong set-up code" in page.locator("#form-error").inner_text()
        assert not (device.root / "recipients.txt").exists()
        device.check_running()  # the recorder still waits

        # The right code (typed as a person might), a name, the suggested passphrase.
        page.fill("input[name=code]", code.lower().replace("-", " "))
        page.fill("input[name=member]", MEMBER)
        page.fill("#new-passphrase", "")
        page.fill("input[name=passphrase_confirm]", "")
        suggestion = page.locator("#suggestion").inner_text().strip()
        assert len(suggestion.split("-")) == 6, suggestion
        page.click("#use-suggestion")
        assert page.input_value("#new-passphrase") == suggestion
        assert page.input_value("input[name=passphrase_confirm]") == suggestion
        assert page.locator("#new-passphrase-strength").inner_text() == "strong (score 4 of 4)"
        assert page.evaluate("() => document.getElementById('new-passphrase-meter').value") == 4
        screenshot(page, tmp_path, "setup")
        with page.expect_navigation(timeout=60_000):
            page.click("#setup-form button[type=submit]")
        assert page.url == device.base_url + "/setup/recovery", page.url
        assert (device.root / "recipients.txt").exists()

        secret = page.locator("#recovery-key").inner_text().strip()
        assert re.fullmatch(r"AGE-SECRET-KEY-PQ-1[0-9A-Z]{58}", secret), secret
        grouped = page.locator("#recovery-groups").inner_text().split()
        assert "".join(grouped) == secret
        screenshot(page, tmp_path, "recovery")

        with page.expect_download() as download_info:
            page.click("#download-recovery")
        download = download_info.value
        assert download.suggested_filename == "doorbell-recovery-key.txt"
        key_file = tmp_path / "recovery.txt"
        download.save_as(key_file)
        assert secret in key_file.read_text().splitlines()

        # Continue is refused until the box is ticked: the browser does not even submit.
        posts_before = [u for u in watch.requests if u.endswith("/setup/recovery")]
        page.click("#recovery-continue")
        page.wait_for_timeout(700)
        assert page.url == device.base_url + "/setup/recovery", page.url
        assert page.evaluate(
            "() => document.getElementById('recovery-saved').validity.valueMissing")
        assert [u for u in watch.requests if u.endswith("/setup/recovery")] == posts_before
        # ... and every other page waits until then.
        page.goto("/")
        assert page.url == device.base_url + "/setup/recovery", page.url

        page.check("#recovery-saved")
        with page.expect_navigation():
            page.click("#recovery-continue")
        assert page.url == device.base_url + "/", page.url
        assert "Timeline" in page.title()
        assert page.locator("#lock-now").is_visible()
        page.goto("/setup/recovery")  # shown once: the key is gone from the session
        assert page.url == device.base_url + "/", page.url
        assert secret not in page.content()

        # The recorder, which was waiting, starts with the new household's keys: the first clip
        # shows on the timeline.
        def thumbnail_shown():
            device.check_running()
            page.reload()
            try:
                page.wait_for_function(f"() => ({LOADED_THUMBNAILS})().length > 0",
                                       timeout=3000)
            except PlaywrightTimeout:  # not yet: reload again
                return None
            return page.evaluate(LOADED_THUMBNAILS)

        thumbnails = wait_until(thumbnail_shown, 90, "a thumbnail on the timeline",
                                interval_s=1.0, describe=device.logs)
        screenshot(page, tmp_path, "timeline")
        clip_id = re.fullmatch(r"/clips/([^/]+)/thumbnail\.jpg", thumbnails[0]).group(1)
        watch.assert_clean(page)

    assert "starting to record" in device.log("record-1")
    assert device.recorder_applied("recipients.txt"), device.recorder_status()
    clip = device.wait_for_clip(lambda c: c["id"] == clip_id and c["state"] == "complete", 30,
                                f"clip {clip_id} to be complete")
    from doorbell.storage.clipid import clip_paths

    video = clip_paths(device.clips_dir, clip["id"])["video"]
    out = tmp_path / "clip.mp4"
    age = age_for(key_file.read_text()) or pytest.skip(NO_HYBRID_AGE)
    result = subprocess.run([age, "-d", "-i", str(key_file), "-o", str(out), str(video)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    frames = clip_frames(out.read_bytes())
    assert frames and frames[0].shape == (HEIGHT, WIDTH, 3), len(frames)


# -- 2-4. one running device ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    with running_device(tmp_path_factory.mktemp("device"), FAST_CONFIG) as device:
        yield device


@pytest.fixture
def watched_page(chromium, device):
    with watch_page(chromium, device.base_url, viewport={"width": 1000, "height": 1000}) as pair:
        yield pair


def canvas_point(box: dict, point) -> tuple[float, float]:
    return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]


def touch_drag(page, start, end, steps: int = 8) -> None:
    """A one-finger drag, as a touch screen sends it (Chromium's input events over CDP)."""
    cdp = page.context.new_cdp_session(page)
    try:
        def touch(kind: str, point=None) -> None:
            points = [] if point is None else [{"x": point[0], "y": point[1], "id": 1}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", start)
        for i in range(1, steps + 1):
            touch("touchMove", (start[0] + (end[0] - start[0]) * i / steps,
                                start[1] + (end[1] - start[1]) * i / steps))
        touch("touchEnd")
    finally:
        cdp.detach()


def masks_field(page) -> list:
    return json.loads(page.input_value("#masks-field"))


def assert_polygon(actual, expected, what: str, tolerance: float = 0.01) -> None:
    assert len(actual) == len(expected), (what, actual)
    for got, want in zip(actual, expected, strict=True):
        assert got == pytest.approx(list(want), abs=tolerance), (what, actual, expected)


def test_privacy_mask_drawn_with_the_mouse_blacks_out_live_view_and_clip(watched_page, device,
                                                                         tmp_path):
    page, watch = watched_page
    unlock(page)
    page.goto("/settings")
    with page.expect_navigation():
        page.click("text=Privacy masks and motion zones")
    assert page.url == device.base_url + "/settings/areas"
    assert masks_field(page) == []
    page.wait_for_function(
        "() => { const i = document.getElementById('snapshot'); return i.naturalWidth > 0; }")
    status, kind, before = fetch_bytes(page, "/live/frame.jpg")
    assert status == 200 and kind == "image/jpeg", (status, kind)
    inside, _ = polygon_regions(MASK)
    assert cv2.cvtColor(decode_jpeg(before), cv2.COLOR_BGR2GRAY)[inside].mean() > 40, (
        "the area to mask must show something before: " + black_inside(decode_jpeg(before),
                                                                         MASK)[1])

    # Draw: "Draw a polygon", a click on each corner, then the first corner again.
    canvas = page.locator("#area-canvas")
    canvas.scroll_into_view_if_needed()
    page.click("#new-polygon")
    box = canvas.bounding_box()
    for point in DRAWN:
        page.mouse.click(*canvas_point(box, point))
    assert page.locator("#finish-polygon").is_enabled()
    page.mouse.click(*canvas_point(box, DRAWN[0]))  # closes it
    assert page.locator("#finish-polygon").is_disabled()
    drawn = masks_field(page)
    assert len(drawn) == 1, drawn
    assert_polygon(drawn[0], DRAWN, "the polygon as drawn")
    assert "4 corners" in page.locator("#polygon-list").inner_text()

    # Drag the third corner somewhere else with the mouse, then on with a finger (the editor
    # uses pointer events, which touch screens send too).
    page.mouse.move(*canvas_point(box, DRAWN[2]))
    page.mouse.down()
    page.mouse.move(*canvas_point(box, MIDWAY), steps=8)
    page.mouse.up()
    dragged = masks_field(page)
    assert len(dragged) == 1, dragged
    assert_polygon(dragged[0], [DRAWN[0], DRAWN[1], MIDWAY, DRAWN[3]],
                   "the polygon after dragging a corner with the mouse")
    touch_drag(page, canvas_point(box, MIDWAY), canvas_point(box, DRAGGED_TO))
    dragged = masks_field(page)
    assert len(dragged) == 1, dragged
    assert_polygon(dragged[0], MASK, "the polygon after dragging the corner by touch")
    assert page.input_value("#zones-field") == "[]"
    screenshot(page, tmp_path, "areas-drawn")

    # Save with the passphrase: "Saved", then "applied" once the recorder runs it.
    page.fill("#areas-form input[name=passphrase]", PASSPHRASE)
    with page.expect_navigation():
        page.click("#save-areas")
    assert page.url.endswith("/settings/areas?note=saved"), page.url
    assert "Saved" in page.locator("#form-note").inner_text()
    page.locator("#applied-done").wait_for(timeout=APPLIED_TIMEOUT_S * 1000)
    applied_s = time.time()
    assert device.recorder_applied("config.toml"), device.recorder_status()
    saved = masks_field(page)  # the page shows what is now in config.toml
    assert_polygon(saved[0], MASK, "the saved polygon", tolerance=0.002)
    screenshot(page, tmp_path, "areas-saved")

    # The next live frame is black inside the polygon (and only there).
    page.wait_for_timeout(1500)  # the live view is written twice a second
    status, _, after = fetch_bytes(page, "/live/frame.jpg")
    assert status == 200
    live = decode_jpeg(after)
    cv2.imwrite(str(tmp_path / "live-masked.png"), live)
    masked, figures = black_inside(live, MASK)
    assert masked, f"the live frame after the save is not masked: {figures}"

    # So is every frame of the next clip.
    clip = next_complete_clip(device, applied_s, "a clip recorded after the mask was applied")
    frames = clip_frames(decrypt_video(device, clip["id"], device.identity()))
    assert len(frames) >= 10, len(frames)
    for index, frame in enumerate(frames):
        masked, figures = black_inside(frame, MASK)
        if not masked:
            cv2.imwrite(str(tmp_path / f"clip-frame-{index}.png"), frame)
        assert masked, f"frame {index} of clip {clip['id']} is not masked: {figures}"
    watch.assert_clean(page)


def overlay_state(page) -> dict:
    return page.evaluate("""() => {
        const s = document.getElementById('overlay-state');
        return {text: s.textContent, boxes: s.dataset.boxes, sensitivity: s.dataset.sensitivity,
                minArea: s.dataset.minArea, triggerFrames: s.dataset.triggerFrames};
    }""")


def set_slider(page, name: str, value: str) -> None:
    page.locator(f"#{name}").fill(value)  # sets the value and fires input + change


def wait_overlay_values(page, sensitivity: float, min_area: float) -> dict:
    def echoed():
        state = overlay_state(page)
        if state["sensitivity"] is None or state["minArea"] is None:
            return None
        ok = (float(state["sensitivity"]) == pytest.approx(sensitivity)
              and float(state["minArea"]) == pytest.approx(min_area))
        return state if ok else None

    return wait_until(echoed, 8, f"the overlay to show sensitivity {sensitivity} and smallest "
                      f"area {min_area}", interval_s=0.25,
                      describe=lambda: json.dumps(overlay_state(page)))


def overlay_boxes(page) -> list:
    status, _, body = fetch_bytes(page, "/settings/motion/overlay.json")
    assert status == 200
    overlay = json.loads(body)
    return overlay["boxes"] if overlay.get("active") else []


def test_motion_tuner_overlay_follows_the_sliders(watched_page, device, tmp_path):
    page, watch = watched_page
    unlock(page)
    page.goto("/settings/motion")
    tuning_file = device.root / "motion-tuning.json"
    wait_until(tuning_file.exists, 5, "the tuner page to start a trial")
    page.wait_for_function(
        "() => document.getElementById('overlay-state').dataset.sensitivity !== undefined",
        timeout=15_000)
    # At first the trial runs the values in force, which the sliders start at.
    saved_sensitivity = float(page.input_value("#sensitivity"))
    saved_min_area = float(page.input_value("#min_area"))
    first = wait_overlay_values(page, saved_sensitivity, saved_min_area)
    assert first["boxes"].isdigit(), first

    # Most sensitive: small moving areas count (noise, a visitor's limbs, the branch).
    set_slider(page, "sensitivity", "1")
    set_slider(page, "min_area", "0.0001")
    assert page.locator("#sensitivity-out").inner_text() == "1"
    assert page.locator("#min_area-out").inner_text() == "0.01 %"
    wait_overlay_values(page, 1.0, 0.0001)

    def small_box():
        boxes = overlay_boxes(page)
        return [b for b in boxes if b[2] * b[3] < 0.05] or None

    small = wait_until(small_box, 60, "a moving area under 5 % at the most sensitive values",
                       interval_s=0.5, describe=lambda: json.dumps(overlay_state(page)))
    assert small
    screenshot(page, tmp_path, "tuner-most-sensitive")

    # Least sensitive: only areas of at least 5 % of the picture count; most of the time none.
    set_slider(page, "min_area", "0.05")
    set_slider(page, "sensitivity", "0")
    assert page.locator("#sensitivity-out").inner_text() == "0"
    assert page.locator("#min_area-out").inner_text() == "5.00 %"
    state = wait_overlay_values(page, 0.0, 0.05)
    assert state["boxes"] is not None
    seen = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        boxes = overlay_boxes(page)
        seen.append(len(boxes))
        for box in boxes:
            assert box[2] * box[3] >= 0.05 * 0.95, f"an area under 5 % counts: {box}"
        state = overlay_state(page)
        assert float(state["minArea"]) == pytest.approx(0.05), state
        page.wait_for_timeout(400)
    assert state["boxes"].isdigit(), state
    screenshot(page, tmp_path, "tuner-least-sensitive")

    # Nothing was saved: a trial is not a settings change.
    saved = tomllib.loads((device.root / "config.toml").read_text()).get("motion", {})
    assert "sensitivity" not in saved and "min_area" not in saved, saved
    watch.assert_clean(page)


def test_adding_and_removing_a_member_decides_who_decrypts_the_next_clips(watched_page, device,
                                                                           tmp_path):
    from doorbell.storage.age.errors import NoIdentityMatchError
    from doorbell.storage.keyring import Keyring

    page, watch = watched_page
    unlock(page)
    page.goto("/members")
    assert page.locator(f'tr[data-member="{MEMBER}"]').count() == 1
    assert page.locator(f'tr[data-member="{BOB}"]').count() == 0

    # Add bob with a passphrase of his own; alice confirms with hers.
    form = page.locator("#add-member-form")
    form.locator("input[name=name]").fill(BOB)
    form.locator("input[name=new_passphrase]").fill(BOB_PASSPHRASE)
    form.locator("input[name=new_passphrase_confirm]").fill(BOB_PASSPHRASE)
    form.locator("input[name=passphrase]").fill(PASSPHRASE)
    with page.expect_navigation(timeout=60_000):
        page.click("#add-member")
    assert "Added bob" in page.locator("#form-note").inner_text(), page.content()[:3000]
    assert page.locator(f'tr[data-member="{BOB}"]').count() == 1
    screenshot(page, tmp_path, "members-added")
    bob = Keyring(device.root / "identities").unlock(BOB, BOB_PASSPHRASE)
    added_s = wait_applied(device, "recipients.txt")

    with_bob = next_complete_clip(device, added_s, "a clip recorded after bob was added")
    decrypt_video(device, with_bob["id"], bob)  # decrypts: bob is a recipient

    # Remove bob: the page says what that does and does not do.
    row = page.locator(f'tr[data-member="{BOB}"]')
    row.locator("summary").click()
    removal = row.locator("form.remove-member")
    assert "stay decryptable" in removal.inner_text()
    removal.locator("input[name=passphrase]").fill(PASSPHRASE)
    with page.expect_navigation():
        removal.locator("button[type=submit]").click()
    note = page.locator("#form-note").inner_text()
    assert "Removed bob" in note and "stay decryptable" in note, note
    assert page.locator(f'tr[data-member="{BOB}"]').count() == 0
    screenshot(page, tmp_path, "members-removed")
    removed_s = wait_applied(device, "recipients.txt")

    without_bob = next_complete_clip(device, removed_s, "a clip recorded after bob was removed")
    with pytest.raises(NoIdentityMatchError):
        decrypt_video(device, without_bob["id"], bob)
    assert decrypt_video(device, without_bob["id"], device.identity())
    assert decrypt_video(device, with_bob["id"], bob), "an earlier clip stays decryptable"
    watch.assert_clean(page)
