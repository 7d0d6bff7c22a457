"""The idle lock in a real browser: pages left open lock on time, although their scripts poll.

The timeline polls status.json every 3 s and holds the events stream; the motion tuner keeps its
trial alive every 5 s and polls its overlay; the live page refreshes its frame. None of that is
a person using the viewer (web/access.py `background`), so a device whose idle timeout is the
shortest allowed (60 s) must lock all of these tabs within a few seconds of it, and each tab must
then show the login page by itself. Before the timeout, the tabs stay unlocked.
"""

import time

import pytest

from . import browser_fixtures
from .browser_fixtures import running_device, unlock, wait_until, watch_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

chromium = browser_fixtures.chromium
IDLE_TIMEOUT_S = 60  # the least config/model.py allows
CONFIG = browser_fixtures.CAMERA_CONFIG + f"[viewer]\nidle_timeout_s = {IDLE_TIMEOUT_S}\n"
CHATTY_PAGES = ["/", "/settings/motion", "/live", "/status"]


@pytest.fixture(scope="module")
def idle_device(tmp_path_factory):
    with running_device(tmp_path_factory.mktemp("idle-device"), CONFIG) as device:
        yield device


def test_open_pages_that_poll_still_lock_on_time(chromium, idle_device):
    with watch_page(chromium, idle_device.base_url) as (page, watch):
        unlock(page)
        unlocked_at = time.monotonic()
        tabs = [page]
        page.goto(CHATTY_PAGES[0])
        for path in CHATTY_PAGES[1:]:
            tab = page.context.new_page()
            tab.goto(path)
            tabs.append(tab)
        for tab, path in zip(tabs, CHATTY_PAGES, strict=True):
            assert tab.locator("#lock-now").is_visible(), (path, tab.url)

        # Half way, every tab is still unlocked: the polling did not lock anything early.
        page.wait_for_timeout((IDLE_TIMEOUT_S / 2) * 1000)
        for tab, path in zip(tabs, CHATTY_PAGES, strict=True):
            assert "/login" not in tab.url and tab.locator("#lock-now").is_visible(), path

        def all_on_login() -> bool:
            page.wait_for_timeout(500)  # let the pages' timers and reloads run
            return all("/login" in tab.url for tab in tabs)

        wait_until(all_on_login, IDLE_TIMEOUT_S + 30, "every open tab to show the login page",
                   interval_s=0, describe=lambda: str([tab.url for tab in tabs]))
        locked_after_s = time.monotonic() - unlocked_at
        # Locked by the timeout (not before it) and within a few polls of it.
        assert IDLE_TIMEOUT_S - 1 <= locked_after_s <= IDLE_TIMEOUT_S + 20, locked_after_s
        for tab in tabs:
            assert tab.locator("input[name=passphrase]").is_visible()
        assert not watch.foreign_requests()
