"""Idle timeout means the person is idle: what a page fetches by itself never keeps it unlocked.

A status page, a live view, a timeline with its event stream or the motion tuner left open poll
the viewer forever; the session must still lock `idle_timeout_s` after the person's last click.
"""

from .conftest import ORIGIN, csrf_token, unlock_directly

# What the pages fetch on their own timers (web/static/app.js, settings.js), or hold open.
BACKGROUND_GETS = ["/status.json", "/live/frame.jpg", "/settings/motion/overlay.json",
                   "/settings/motion/mask.png", "/settings/applied.json"]


class FakeClock:
    def __init__(self, now_s: float = 1000.0):
        self.now = now_s

    def __call__(self) -> float:
        return self.now


def _is_login_redirect(response) -> bool:
    return response.status_code in (302, 303) and \
        response.headers["Location"].rstrip("/").endswith("/login")


def _unlocked_with_clock(app, client, identity) -> tuple[FakeClock, float]:
    sessions = app.extensions["doorbell"].sessions
    clock = FakeClock()
    sessions._clock = clock
    unlock_directly(app, client, identity)
    return clock, sessions.idle_timeout_s


def test_a_page_left_open_polling_locks_after_the_idle_timeout(app, client, identity):
    clock, timeout = _unlocked_with_clock(app, client, identity)
    assert client.get("/status").status_code == 200  # the person opens the page
    polled_s = 0.0
    while polled_s < timeout - 5:  # the page polls every few seconds while nobody touches it
        clock.now += 3
        polled_s += 3
        for path in BACKGROUND_GETS:
            assert client.get(path).status_code != 401, (path, polled_s)
    clock.now += 10  # past the timeout since the last click, though the last poll was 10 s ago
    for path in BACKGROUND_GETS + ["/events"]:
        assert client.get(path).status_code == 401, path
    assert _is_login_redirect(client.get("/status"))
    assert len(app.extensions["doorbell"].sessions) == 0


def test_opening_the_event_stream_does_not_count_as_activity(app, client, identity):
    clock, timeout = _unlocked_with_clock(app, client, identity)
    clock.now += timeout - 1
    response = client.get("/events", buffered=False)
    assert response.status_code == 200
    response.close()
    clock.now += 2
    assert client.get("/events").status_code == 401


def test_a_click_still_counts(app, client, identity):
    clock, timeout = _unlocked_with_clock(app, client, identity)
    clock.now += timeout - 1
    assert client.get("/").status_code == 200  # the person: the idle clock starts again
    clock.now += timeout - 1
    assert client.get("/status.json").status_code == 200


def test_the_tuner_keep_alive_says_it_is_background_and_a_slider_move_counts(app, client,
                                                                              identity):
    clock, timeout = _unlocked_with_clock(app, client, identity)
    token = csrf_token(client)
    headers = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", "X-CSRF-Token": token}

    def trial(**extra):
        return client.post("/settings/motion/trial", json={"sensitivity": 0.6},
                           headers={**headers, **extra})

    clock.now += timeout - 1
    assert trial(**{"X-Doorbell-Background": "1"}).status_code == 200  # the 5 s timer's tick
    clock.now += 2
    assert trial(**{"X-Doorbell-Background": "1"}).status_code == 401
    # Unlocked again: a slider move (no header) restarts the idle clock.
    clock, timeout = _unlocked_with_clock(app, client, identity)
    token = csrf_token(client)
    headers["X-CSRF-Token"] = token
    clock.now += timeout - 1
    assert trial().status_code == 200
    clock.now += timeout - 1
    assert client.get("/status.json").status_code == 200
