"""The passphrase meter in a real browser (Debian's Chromium): the device's verdict while typing.

The page runs the vendored zxcvbn (web/static/zxcvbn.js, npm zxcvbn 4.4.2, served by the device)
with the device's own rule, at least 10 characters and a score of 3 of 4. It must agree with
the server (storage/passphrase.py, the Python port), say "too weak" and why for a guessable
passphrase, and keep the form from being sent with one. zxcvbn's 822 KB load only on the pages
with a passphrase field.
"""

import pytest

from doorbell.storage.passphrase import passphrase_score

from . import browser_fixtures
from .browser_fixtures import (
    MEMBER,
    PASSPHRASE,
    make_device,
    make_empty_home,
    unlock,
    wait_until,
    watch_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
chromium = browser_fixtures.chromium

SAMPLES = ["password password password", "qwertyuiop", "abcdefghij", "1q2w3e4r5t", "raspberry1",
           "Password123!", "zzzzzzzzzzzzzzzz", "correct horse battery staple", PASSPHRASE,
           "carol's own long passphrase", "a" * 72 + "amber-kettle-under-snow-31"]


@pytest.fixture
def empty_viewer(tmp_path):
    device = make_empty_home(tmp_path / "device")
    try:
        device.start_viewer()
        wait_until(device.viewer_answers, 30, "the viewer to answer", describe=device.logs)
        yield device
    finally:
        device.stop()


def strength(page, element_id: str) -> tuple[str, float]:
    return (page.locator(f"#{element_id}-strength").inner_text(),
            page.evaluate(f"() => document.getElementById('{element_id}-meter').value"))


def test_the_setup_meter_gives_the_devices_verdict(chromium, empty_viewer):
    with watch_page(chromium, empty_viewer.base_url) as (page, watch):
        page.goto("/setup")
        field = "#new-passphrase"

        page.locator(field).press_sequentially("password password password")
        text, score = strength(page, "new-passphrase")
        assert text == ('too weak (score 2 of 4, 3 needed): repeats like "abcabcabc" are only '
                        'slightly harder to guess than "abc"'), text
        assert score == 2
        assert page.locator("#new-passphrase-strength").get_attribute("class") == "error"
        # The form is not sent: the browser holds it back with the same sentence.
        message = page.eval_on_selector(field, "input => input.validationMessage")
        assert message == f"The passphrase is {text}."
        page.fill("input[name=code]", "2345-6789-ABCD")
        page.fill("input[name=member]", MEMBER)
        page.fill("input[name=passphrase_confirm]", "password password password")
        sent = len(watch.requests)
        page.click("#setup-form button[type=submit]")
        page.wait_for_timeout(500)
        assert watch.requests[sent:] == [] and page.url == empty_viewer.base_url + "/setup"

        page.fill(field, "short")
        assert strength(page, "new-passphrase") == ("too short: use at least 10 characters", 0)

        # Strong: the suggestion (six diceware words), and the test household's passphrase.
        page.fill(field, "")
        page.click("#use-suggestion")
        assert strength(page, "new-passphrase") == ("strong (score 4 of 4)", 4)
        assert page.eval_on_selector(field, "input => input.validationMessage") == ""
        page.fill(field, PASSPHRASE)
        assert strength(page, "new-passphrase") == ("strong (score 4 of 4)", 4)

        # The page's score is the device's, on the same 72 characters.
        in_page = page.evaluate("(samples) => samples.map((s) => zxcvbn(s.slice(0, 72)).score)",
                                SAMPLES)
        assert in_page == [passphrase_score(s)[0] for s in SAMPLES]
        assert [u for u in watch.requests if u.endswith("/static/zxcvbn.js")], watch.requests
        watch.assert_clean(page)


def test_the_members_page_meters_a_new_members_passphrase(chromium, tmp_path):
    device = make_device(tmp_path)
    try:
        device.start_viewer()
        wait_until(device.viewer_answers, 30, "the viewer to answer", describe=device.logs)
        with watch_page(chromium, device.base_url) as (page, watch):
            unlock(page)
            # The login page and the timeline have no passphrase meter: no zxcvbn there.
            assert not [u for u in watch.requests if "zxcvbn" in u], watch.requests
            page.goto("/members")
            page.locator("#member-passphrase").press_sequentially("qwertyuiop")
            text, score = strength(page, "member-passphrase")
            assert text == "too weak (score 0 of 4, 3 needed): this is a top-100 common password"
            assert score == 0
            page.fill("#member-passphrase", "violet-harbour-across-tin-47")
            assert strength(page, "member-passphrase")[0].endswith("(score 4 of 4)")
            page.locator("#own-passphrase").press_sequentially("1q2w3e4r5t")
            assert strength(page, "own-passphrase")[0] == \
                "too weak (score 0 of 4, 3 needed): this is a very common password"
            watch.assert_clean(page)
    finally:
        device.stop()
