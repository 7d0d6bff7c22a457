"""Times in Chromium are the device's clock with its zone label, whatever the browser's zone:
the timeline's entries, the footer, and the note a doorbell press puts on the open timeline
(server-sent events). `doorbell serve` runs for real with TZ=Europe/Berlin; the browser runs in
another zone (America/New_York), so a time taken from the browser's clock would show."""

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from doorbell.camera.events import EVENTS_FILE, EventBus, EventLogFile

from . import browser_fixtures
from .browser_fixtures import make_device, stop_process, unlock, wait_until, watch_page
from .conftest import local_today_at, make_jpeg, pseudo_random, write_clip

chromium = browser_fixtures.chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def berlin_viewer(tmp_path, monkeypatch):
    device = make_device(tmp_path)
    clip = write_clip(device.root, local_today_at(11, 0), pseudo_random(20_000, 5),
                      make_jpeg(120), {"trigger": "doorbell", "duration_s": 3.0})
    monkeypatch.setenv("TZ", "Europe/Berlin")  # the viewer's environment, as systemd passes it
    device.start_viewer()
    try:
        wait_until(device.viewer_answers, 30, "the viewer", describe=lambda: device.log("serve"))
        yield device, clip
    finally:
        stop_process(device.viewer)


def test_the_timeline_and_its_live_notes_are_on_the_devices_clock(chromium, berlin_viewer):
    device, clip = berlin_viewer
    with watch_page(chromium, device.base_url, timezone_id="America/New_York") as (page, watch):
        unlock(page)
        assert page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone") == \
            "America/New_York"
        moment = datetime.fromtimestamp(clip.start_us / 1e6, BERLIN)
        when = page.locator(f'a[href="/clips/{clip.id}"] .when').inner_text()
        assert when == moment.strftime("%H:%M:%S %Z")
        assert moment.strftime("%Z") in ("CET", "CEST")
        assert page.locator("#time-zone").inner_text().startswith(
            "Times are the doorbell's local time, Europe/Berlin (")

        time.sleep(1.5)  # the page's event stream is open (it starts at the file's end)
        with EventBus([EventLogFile(device.runtime_dir / EVENTS_FILE)]) as bus:
            bus.emit("doorbell_pressed")
        line = (device.runtime_dir / EVENTS_FILE).read_text().splitlines()[-1]
        pressed = datetime.fromtimestamp(json.loads(line)["time"], BERLIN)
        note = wait_until(lambda: page.locator("#live-events p.warning").all_inner_texts(), 15,
                          "the press's note", describe=lambda: page.content()[:2000])
        assert [text.strip() for text in note] == [
            f"Someone rang the doorbell at {pressed:%H:%M:%S %Z}."], note
        watch.assert_clean(page)
