"""Privacy mode switched over MQTT shows on the open timeline page as a note, in Chromium.

The whole way a household member would see it: a Home Assistant client publishes ON, then OFF,
to the command topic on a real Mosquitto; the doorbell's MQTT sink (mqtt.switches on) keeps,
audits and announces the change on the event bus, whose events.jsonl the real `doorbell serve`
streams to the page (server-sent events). The viewer runs with TZ=Europe/Berlin.
"""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from doorbell.camera.events import EVENTS_FILE
from doorbell.camera.notify import build_event_bus
from doorbell.camera.notify.switches import Switches
from doorbell.storage.audit import AuditLog
from tests.camera.mqtt_broker import Subscriber, mqtt_settings, needs_mosquitto, running_broker

from . import browser_fixtures
from .browser_fixtures import make_device, stop_process, unlock, wait_until, watch_page

chromium = browser_fixtures.chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_mosquitto]

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def broker(tmp_path):
    yield from running_broker(tmp_path)


@pytest.fixture
def berlin_viewer(tmp_path, monkeypatch):
    device = make_device(tmp_path)
    monkeypatch.setenv("TZ", "Europe/Berlin")  # the viewer's environment, as systemd passes it
    device.start_viewer()
    try:
        wait_until(device.viewer_answers, 30, "the viewer", describe=lambda: device.log("serve"))
        yield device
    finally:
        stop_process(device.viewer)


def test_privacy_mode_on_and_off_from_home_assistant_are_notes_on_the_timeline(
        chromium, berlin_viewer, broker):
    device = berlin_viewer
    switches = Switches.in_home(device.root, AuditLog(device.root / "audit.jsonl"))
    settings = mqtt_settings(broker.port, prefix="doorbell", switches=True)
    ha = Subscriber(broker.port, ["doorbell/#"])
    try:
        with build_event_bus(settings, device.runtime_dir, device.root, switches=switches) as bus, \
                watch_page(chromium, device.base_url, timezone_id="America/New_York") as (page,
                                                                                         watch):
            assert bus.sinks[1].connected.wait(5)
            unlock(page)
            page.wait_for_timeout(1500)  # the page's event stream is open (from the file's end)
            device_id = (device.root / "device-id").read_text().strip()

            def notes(count: int) -> list[str] | None:
                texts = page.locator("#live-events p.warning").all_inner_texts()
                return texts if len(texts) == count else None

            for payload, count in (("ON", 1), ("OFF", 2)):
                ha.client.publish(f"doorbell/{device_id}/privacy_mode/set", payload, qos=1)
                shown = wait_until(lambda n=count: notes(n), 15, f"the note for {payload}",
                                   describe=lambda: page.content()[:2000])
            lines = [json.loads(line) for line in
                     (device.runtime_dir / EVENTS_FILE).read_text().splitlines()]
            on, off = (datetime.fromtimestamp(e["time"], BERLIN) for e in lines
                       if e["type"] == "privacy_mode")
            # The newest first; on the device's clock with its zone label, not the browser's.
            assert [text.strip() for text in shown] == [
                f"Privacy mode turned off at {off:%H:%M:%S %Z}: recording again.",
                f"Privacy mode turned on at {on:%H:%M:%S %Z}: no recording, no live view."]
            watch.assert_clean(page)
    finally:
        ha.close()
