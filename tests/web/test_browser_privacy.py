"""Privacy mode in Chromium: the live page open while Home Assistant switches privacy mode on
shows the sentence instead of the last picture within a few seconds, and the picture again
when it is switched off; the status page's note follows. `doorbell serve` runs for real; the
test plays the recorder's part by writing recorder.json and live.jpg as the recorder does
(tests/camera/test_ha_switches.py checks that the real recorder writes them so)."""

import threading
import time

import cv2
import numpy as np
import pytest

from doorbell.storage.exchange import RecorderStatus

from . import browser_fixtures
from .browser_fixtures import make_device, stop_process, unlock, wait_until, watch_page

chromium = browser_fixtures.chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class FakeRecorder:
    """Writes recorder.json every 0.5 s, and live.jpg while not private (the recorder removes
    it when privacy mode comes on), until stopped."""

    def __init__(self, runtime_dir) -> None:
        self.runtime_dir = runtime_dir
        self.private = False
        self.stop = threading.Event()
        ok, jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))
        assert ok
        self.jpeg = jpeg.tobytes()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            live = self.runtime_dir / "live.jpg"
            if self.private:
                live.unlink(missing_ok=True)
            else:
                live.write_bytes(self.jpeg)
            RecorderStatus(state="privacy mode" if self.private else "idle", camera="ok",
                           frames=10, fps=15.0, clips_saved=0, last_frame_time=now,
                           recording=None, updated=now).write(self.runtime_dir / "recorder.json")
            self.stop.wait(0.5)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@pytest.fixture
def viewer_only(tmp_path):
    device = make_device(tmp_path)
    recorder = FakeRecorder(device.runtime_dir)
    device.start_viewer()
    try:
        wait_until(device.viewer_answers, 30, "the viewer", describe=lambda: device.log("serve"))
        yield device, recorder
    finally:
        recorder.close()
        stop_process(device.viewer)


def test_the_live_page_follows_privacy_mode_on_and_off(chromium, viewer_only):
    device, recorder = viewer_only
    with watch_page(chromium, device.base_url) as (page, watch):
        unlock(page)
        page.goto("/live")
        assert page.locator("#live").count() == 1
        wait_until(lambda: page.evaluate(
            "() => document.getElementById('live').naturalWidth") == 160, 10, "a live picture")

        recorder.private = True  # Home Assistant switched it on
        switched = time.monotonic()
        wait_until(lambda: page.locator("#privacy-mode").count() == 1, 15,
                   "the privacy sentence", describe=lambda: page.content()[:2000])
        assert time.monotonic() - switched < 8  # the page checks every 5 s
        assert page.locator("#live").count() == 0
        assert page.locator("#privacy-mode").inner_text().startswith(
            "Privacy mode is on: the camera is not recording or streaming.")

        recorder.private = False
        wait_until(lambda: page.locator("#live").count() == 1, 15, "the picture again",
                   describe=lambda: page.content()[:2000])
        wait_until(lambda: page.evaluate(
            "() => document.getElementById('live').naturalWidth") == 160, 10, "a live picture")

        page.goto("/status")
        assert not page.locator("#st-privacy").is_visible()
        recorder.private = True
        wait_until(lambda: page.locator("#st-privacy").is_visible(), 10, "the status note")
        assert "running (privacy mode, camera ok)" in page.locator("#st-alive").inner_text()
        watch.assert_clean(page)
