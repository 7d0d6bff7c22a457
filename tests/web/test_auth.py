"""Unlock (login), sessions, lock, cookie flags, CSRF and Origin checks, the login rate limit."""

import gc
import re
import time

import pytest

from doorbell.web.guards import DEVICE_COOKIE
from doorbell.web.unlock import Unlocker

from .conftest import (
    FAST_WORK_FACTOR,
    MEMBER,
    ORIGIN,
    PASSPHRASE,
    SESSION_COOKIE,
    csrf_token,
    login,
    new_client,
    session_cookie,
    unlock_directly,
)

ALERT = re.compile(r'<p class="error" role="alert">([^<]*)</p>')


def _alert(response) -> str:
    match = ALERT.search(response.get_data(as_text=True))
    return match.group(1) if match else ""


def _is_login_redirect(response) -> bool:
    return response.status_code in (302, 303) and response.headers["Location"].endswith("/login")


# -- unlocking

def test_the_right_passphrase_unlocks_and_is_audited(app, client, home):
    response = login(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert session_cookie(client)
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="lock-now"' in page.get_data(as_text=True)
    unlocks = home.actions("unlock")
    assert [(e.actor, e.details.get("address")) for e in unlocks] == [(MEMBER, "127.0.0.1")]
    assert len(app.extensions["doorbell"].sessions) == 1


def test_wrong_passphrase_is_401_audited_and_unlocks_nothing(app, client, home):
    response = login(client, passphrase="amber-kettle-under-snow-32")
    assert response.status_code == 401
    assert _alert(response) == "Wrong name or passphrase."
    assert session_cookie(client) is None
    assert client.get("/").status_code == 302
    failed = home.actions("unlock.failed")
    assert [(e.actor, e.details.get("address")) for e in failed] == [(MEMBER, "127.0.0.1")]
    assert not home.actions("unlock")
    assert len(app.extensions["doorbell"].sessions) == 0


def _add_member_file(home, name: str, passphrase: str, work_factor: int) -> None:
    from doorbell.storage.age.identities import X25519Identity
    from doorbell.storage.keyring import encrypt_identity

    path = home.root / "identities" / f"{name}.age"
    path.write_bytes(encrypt_identity(X25519Identity.generate(), passphrase, work_factor))


def _login_time_s(app, address: str, member: str) -> tuple[float, object]:
    started = time.perf_counter()
    response = login(new_client(app, address), member, "not-the-passphrase-9")
    return time.perf_counter() - started, response


def test_unknown_names_take_as_long_as_the_slowest_member(home, make_app):
    # alice's identity is at 2^15; bob's at 2^16 takes twice as long to try.
    _add_member_file(home, "bob", "bob-passphrase-lantern-4", FAST_WORK_FACTOR + 1)
    app = make_app()
    assert app.extensions["doorbell"].unlocker.decoy_work_factor == FAST_WORK_FACTOR + 1
    alice, bob, unknown = [], [], []
    for i in range(3):
        for times, member, net in ((alice, MEMBER, 1), (bob, "bob", 2), (unknown, "mallory", 3)):
            elapsed, response = _login_time_s(app, f"10.0.{net}.{i}", member)
            assert response.status_code == 401
            assert _alert(response) == "Wrong name or passphrase."
            times.append(elapsed)
    assert min(bob) > 1.4 * min(alice), (alice, bob)  # the difference is measurable here
    assert min(unknown) >= 0.8 * min(bob), (bob, unknown)


def test_the_decoy_follows_a_member_rewritten_at_a_higher_work_factor(home, app):
    unlocker = app.extensions["doorbell"].unlocker
    assert unlocker.decoy_work_factor == FAST_WORK_FACTOR  # made at start, before any login
    _add_member_file(home, MEMBER, PASSPHRASE, FAST_WORK_FACTOR + 2)  # a passphrase change
    assert login(new_client(app, "10.0.5.1"), "mallory", "not-the-passphrase-9") \
        .status_code == 401
    assert unlocker.decoy_work_factor == FAST_WORK_FACTOR + 2


def test_odd_member_names_are_a_plain_wrong_name(app):
    for i, member in enumerate(["recovery", "../identities/alice", "ünïcode"]):
        client = new_client(app, f"10.3.0.{i}")
        response = login(client, member, PASSPHRASE)
        assert response.status_code == 401, member
        assert _alert(response) == "Wrong name or passphrase."
        assert session_cookie(client) is None


def test_no_default_credentials(app):
    attempts = [(MEMBER, ""), ("", PASSPHRASE), ("", ""), ("admin", ""), ("admin", "admin"),
                ("pi", "raspberry"), (MEMBER, "admin")]
    for i, (member, passphrase) in enumerate(attempts):
        client = new_client(app, f"10.4.0.{i}")
        response = login(client, member, passphrase)
        assert response.status_code in (400, 401), (member, passphrase, response.status_code)
        assert session_cookie(client) is None
        assert _is_login_redirect(client.get("/"))
    assert len(app.extensions["doorbell"].sessions) == 0


# -- cookie

def _cookies_by_name(response) -> dict[str, tuple[str, dict[str, str]]]:
    cookies = {}
    for header in response.headers.getlist("Set-Cookie"):
        name_value, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = name_value.partition("=")
        cookies[name] = (value, {a.split("=")[0].lower(): a.partition("=")[2]
                                 for a in attributes})
    return cookies


def test_session_cookie_flags(client):
    cookies = _cookies_by_name(login(client))
    assert set(cookies) == {SESSION_COOKIE, DEVICE_COOKIE}
    for name, (value, lowered) in cookies.items():
        assert name.startswith("__Host-")
        assert len(value) >= 32
        assert "secure" in lowered
        assert "httponly" in lowered
        assert lowered.get("samesite") == "Strict"
        assert lowered.get("path") == "/"
        assert "domain" not in lowered
    # A session cookie: gone when the browser closes, never written to disk by it.
    session_attributes = cookies[SESSION_COOKIE][1]
    assert "expires" not in session_attributes and "max-age" not in session_attributes
    # The device cookie only says "this browser unlocked before": it is kept, and holds no key.
    assert int(cookies[DEVICE_COOKIE][1]["max-age"]) > 300 * 24 * 3600


def test_the_cookie_carries_only_a_random_id(client, identity):
    login(client)
    value = session_cookie(client)
    assert str(identity) not in value and MEMBER not in value
    second = new_client(client.application)
    login(second)
    assert session_cookie(second) != value


# -- sessions: idle timeout, lock now, restart

class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_idle_timeout_locks(app, client, identity, home):
    sessions = app.extensions["doorbell"].sessions
    clock = FakeClock()
    sessions._clock = clock
    unlock_directly(app, client, identity)
    timeout = sessions.idle_timeout_s
    assert timeout == 900  # the shipped default
    clip_id = home.clips["doorbell"].id
    clock.now += timeout - 1
    assert client.get("/").status_code == 200  # activity: the idle clock starts again
    clock.now += timeout - 1
    assert client.get(f"/clips/{clip_id}/thumbnail.jpg").status_code == 200
    clock.now += timeout + 1
    assert _is_login_redirect(client.get("/"))
    assert client.get(f"/clips/{clip_id}/thumbnail.jpg").status_code == 401
    assert len(sessions) == 0
    # Coming back later does not revive it.
    clock.now -= 10 * timeout
    assert _is_login_redirect(client.get("/"))


def test_configured_idle_timeout(make_app, identity):
    app = make_app({"viewer.idle_timeout_s": 60})
    client = new_client(app)
    clock = FakeClock()
    app.extensions["doorbell"].sessions._clock = clock
    unlock_directly(app, client, identity)
    clock.now += 59
    assert client.get("/status").status_code == 200
    clock.now += 61
    assert _is_login_redirect(client.get("/status"))


def test_session_store_with_a_fake_clock(identity):
    from doorbell.web.sessions import SessionStore

    clock = FakeClock()
    store = SessionStore(60, clock)
    session_id, session = store.create(MEMBER, identity)
    assert store.get(session_id) is session
    clock.now += 60
    assert store.is_alive(session_id)
    assert store.get(session_id) is session
    clock.now += 60.5
    assert not store.is_alive(session_id)
    assert store.get(session_id) is None
    assert store.get(session_id) is None and len(store) == 0
    assert store.get(None) is None and store.get("") is None


def test_lock_now_returns_to_login_and_the_old_cookie_is_refused(app, client, home):
    login(client)
    old = session_cookie(client)
    token = csrf_token(client)
    response = client.post("/lock", data={"csrf_token": token},
                           headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
    assert _is_login_redirect(response)
    assert any(SESSION_COOKIE in c and ("Max-Age=0" in c or "1970" in c)
               for c in response.headers.getlist("Set-Cookie"))
    assert client.get("/login").status_code == 200
    assert [e.actor for e in home.actions("lock")] == [MEMBER]
    # A copy of the old cookie (another tab, a stolen value) is refused too.
    replay = new_client(app)
    replay.set_cookie(SESSION_COOKIE, old, domain="localhost")
    assert _is_login_redirect(replay.get("/"))
    clip_id = home.clips["doorbell"].id
    assert replay.get(f"/clips/{clip_id}/video").status_code == 401
    assert replay.post("/lock", data={"csrf_token": token},
                       headers={"Origin": ORIGIN}).status_code == 403
    assert len(app.extensions["doorbell"].sessions) == 0


def test_a_restart_leaves_everything_locked(app, make_app, client, home):
    login(client)
    old = session_cookie(client)
    assert client.get("/").status_code == 200
    restarted = make_app()
    after = new_client(restarted)
    after.set_cookie(SESSION_COOKIE, old, domain="localhost")
    assert _is_login_redirect(after.get("/"))
    clip_id = home.clips["doorbell"].id
    assert after.get(f"/clips/{clip_id}/video").status_code == 401
    assert after.get(f"/clips/{clip_id}/thumbnail.jpg").status_code == 401
    assert after.get("/status.json").status_code == 401
    assert len(restarted.extensions["doorbell"].sessions) == 0
    # Nothing about the unlocked key was written to the home.
    secret = str(app.extensions["doorbell"].sessions.get(old).identity).encode()
    for path in home.root.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path


def test_logging_in_again_drops_the_browsers_previous_session(app, client, home):
    assert login(client).status_code == 303
    first = session_cookie(client)
    elsewhere = new_client(app, "10.0.7.1")  # the same member in another browser
    assert login(elsewhere).status_code == 303
    assert login(client).status_code == 303
    second = session_cookie(client)
    assert second != first
    sessions = app.extensions["doorbell"].sessions
    assert len(sessions) == 2 and not sessions.is_alive(first)
    replay = new_client(app)
    replay.set_cookie(SESSION_COOKIE, first, domain="localhost")
    assert _is_login_redirect(replay.get("/"))
    assert client.get("/").status_code == 200
    assert elsewhere.get("/").status_code == 200  # another browser keeps its session


# -- the passphrase is not kept

def _holds(value, secrets_: list[str], depth: int = 3) -> bool:
    if isinstance(value, str):
        return any(s in value for s in secrets_)
    if isinstance(value, (bytes, bytearray)):
        return any(s.encode() in value for s in secrets_)
    if depth and isinstance(value, dict):
        return any(_holds(v, secrets_, depth - 1) for v in (*value.keys(), *value.values()))
    if depth and isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds(v, secrets_, depth - 1) for v in value)
    return False


def _holders_of(secrets_: list[str]) -> list[str]:
    """What, among the objects the garbage collector knows, still refers to a passphrase.

    Containers of strings only are not tracked by the collector, so each object's attributes
    and tracked containers are searched a few levels down.
    """
    gc.collect()
    found = []
    for obj in gc.get_objects():
        if obj is secrets_:
            continue
        try:
            if isinstance(obj, (dict, list, tuple, set, frozenset)):
                held = _holds(obj, secrets_)
            elif hasattr(obj, "__dict__"):
                held = _holds(vars(obj), secrets_)
            else:
                held = _holds([getattr(obj, name, None) for name in
                               getattr(type(obj), "__slots__", ()) if isinstance(name, str)],
                              secrets_)
        except Exception:  # noqa: BLE001, S112 - an object that will not say is not holding ours
            continue
        if held:
            found.append(f"{type(obj).__qualname__}: {repr(obj)[:120]}")
    return found


def _status(response) -> int:
    return response.status_code  # the response (and its request) are dropped by the caller


def test_the_passphrase_is_not_kept_after_unlocking(app, client, home):
    import secrets

    from doorbell.storage.age.identities import X25519Identity
    from doorbell.storage.keyring import encrypt_identity

    typed = [f"otter-{secrets.token_hex(6)}-lantern-gravel" for _ in range(3)]
    passphrase, wrong, new = typed
    (home.root / "identities" / f"{MEMBER}.age").write_bytes(
        encrypt_identity(X25519Identity.generate(), passphrase, FAST_WORK_FACTOR))
    assert _status(login(client, MEMBER, wrong)) == 401
    assert _status(login(client, MEMBER, passphrase)) == 303
    token = csrf_token(client)
    assert _status(client.post("/members/passphrase", data={
        "csrf_token": token, "passphrase": passphrase, "new_passphrase": new,
        "new_passphrase_confirm": new}, headers={"Origin": ORIGIN})) == 303
    assert home.actions("keys.passwd")
    assert _holders_of(typed) == []
    assert client.get("/").status_code == 200  # unlocked all along: only the key is kept


# -- CSRF, Origin, Sec-Fetch-Site

REFUSALS = {
    "missing token": ({}, None),
    "wrong token": ({}, "not-the-token"),
    "empty token": ({}, ""),
    "another site's Origin": ({"Origin": "https://evil.example"}, "TOKEN"),
    "null Origin": ({"Origin": "null"}, "TOKEN"),
    "another port": ({"Origin": "http://localhost:8080"}, "TOKEN"),
    "another scheme": ({"Origin": "https://localhost"}, "TOKEN"),
    "cross-site fetch": ({"Sec-Fetch-Site": "cross-site"}, "TOKEN"),
    "same-site fetch": ({"Sec-Fetch-Site": "same-site"}, "TOKEN"),
    "cross-site with the right Origin": ({"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"},
                                         "TOKEN"),
}


def _post(client, path: str, headers: dict, token: str | None, real_token: str):
    data = {}
    if token is not None:
        data["csrf_token"] = real_token if token == "TOKEN" else token
    base = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
    return client.post(path, data=data, headers={**base, **headers})


def _assert_nothing_changed(app, home, clip_id: str, session_id: str) -> None:
    assert home.paths(clip_id)["video"].exists()
    assert home.index_row(clip_id) is not None
    assert not home.actions("clip.export")
    assert not home.actions("clip.delete")
    assert not home.actions("lock")
    assert app.extensions["doorbell"].sessions.is_alive(session_id)


@pytest.mark.parametrize("case", list(REFUSALS))
@pytest.mark.parametrize("action", ["lock", "export", "delete"])
def test_csrf_matrix_refuses(app, unlocked, home, case, action):
    clip_id = home.clips["doorbell"].id
    path = {"lock": "/lock", "export": f"/clips/{clip_id}/export",
            "delete": f"/clips/{clip_id}/delete"}[action]
    token = csrf_token(unlocked)
    session_id = session_cookie(unlocked)
    headers, sent = REFUSALS[case]
    response = _post(unlocked, path, headers, sent, token)
    assert response.status_code == 403, (case, action, response.status_code)
    _assert_nothing_changed(app, home, clip_id, session_id)
    assert unlocked.get("/").status_code == 200  # still unlocked


def test_another_sessions_token_is_refused(app, unlocked, identity, home):
    other = new_client(app)
    unlock_directly(app, other, identity)
    their_token = csrf_token(other)
    mine = csrf_token(unlocked)
    assert their_token != mine
    clip_id = home.clips["doorbell"].id
    response = unlocked.post(f"/clips/{clip_id}/delete", data={"csrf_token": their_token},
                             headers={"Origin": ORIGIN})
    assert response.status_code == 403
    _assert_nothing_changed(app, home, clip_id, session_cookie(unlocked))


@pytest.mark.parametrize("headers", [
    {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"},
    {"Origin": ORIGIN},
    {"Sec-Fetch-Site": "same-origin"},
    {},  # not a browser (curl): judged by the token alone
])
def test_right_token_same_origin_is_accepted(app, unlocked, home, headers):
    clip_id = home.clips["doorbell"].id
    token = csrf_token(unlocked)
    export = unlocked.post(f"/clips/{clip_id}/export", data={"csrf_token": token},
                           headers=headers)
    assert export.status_code == 200
    assert len(home.actions("clip.export")) == 1
    delete = unlocked.post(f"/clips/{clip_id}/delete", data={"csrf_token": token},
                           headers=headers)
    assert delete.status_code == 303
    assert not home.paths(clip_id)["video"].exists()
    lock = unlocked.post("/lock", data={"csrf_token": token}, headers=headers)
    assert _is_login_redirect(lock)
    assert len(app.extensions["doorbell"].sessions) == 0


def test_the_token_may_come_in_a_header(unlocked, home):
    clip_id = home.clips["doorbell"].id
    response = unlocked.post(f"/clips/{clip_id}/export",
                             headers={"X-CSRF-Token": csrf_token(unlocked), "Origin": ORIGIN})
    assert response.status_code == 200


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_cross_site_login_is_refused_before_the_passphrase_is_checked(
        app, client, home, monkeypatch, headers):
    calls = []
    original = Unlocker.unlock
    monkeypatch.setattr(Unlocker, "unlock",
                        lambda self, *a: calls.append(a) or original(self, *a))
    response = client.post("/login", data={"member": MEMBER, "passphrase": PASSPHRASE},
                           headers=headers)
    assert response.status_code == 403
    assert calls == []
    assert session_cookie(client) is None
    assert not home.actions("unlock") and not home.actions("unlock.failed")


def test_login_without_browser_headers_is_judged_by_the_passphrase(client):
    # No session exists before login, so there is no token to check; a browser always sends
    # Origin on a cross-site POST, and that is what is refused above.
    response = client.post("/login", data={"member": MEMBER, "passphrase": PASSPHRASE})
    assert response.status_code == 303
    assert session_cookie(client)


def test_no_state_change_on_get(app, unlocked, home):
    clip_id = home.clips["doorbell"].id
    confirm = unlocked.get(f"/clips/{clip_id}/delete")
    assert confirm.status_code == 200
    assert 'id="confirm-delete"' in confirm.get_data(as_text=True)
    for method in ("GET", "HEAD"):
        assert unlocked.open(f"/clips/{clip_id}/delete", method=method).status_code == 200
        assert unlocked.open(f"/clips/{clip_id}/export", method=method).status_code == 405
        assert unlocked.open("/lock", method=method).status_code == 405
    assert unlocked.get(f"/clips/{clip_id}/delete?csrf_token={csrf_token(unlocked)}") \
        .status_code == 200
    assert home.paths(clip_id)["video"].exists()
    assert home.paths(clip_id)["thumbnail"].exists()
    assert home.index_row(clip_id) is not None
    assert not home.actions("clip.delete") and not home.actions("clip.export")
    assert unlocked.get("/").status_code == 200  # GET /lock did not lock


# -- login rate limit

@pytest.fixture
def limited_home(home):
    home.write_config("[viewer]\nlogin_attempts_per_15min = 3\n")
    return home


@pytest.fixture
def unlock_calls(monkeypatch):
    calls = []
    original = Unlocker.unlock

    def counting(self, member, passphrase):
        calls.append(member)
        return original(self, member, passphrase)

    monkeypatch.setattr(Unlocker, "unlock", counting)
    return calls


def _assert_limited(response) -> None:
    assert response.status_code == 429
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 15 * 60
    assert "Too many attempts" in _alert(response)


def test_rate_limit_per_address_before_the_passphrase_is_checked(
        limited_home, make_app, unlock_calls):
    app = make_app()
    client = new_client(app, "192.168.1.20")
    for i in range(3):
        assert login(client, f"user{i}", "wrong-passphrase-1").status_code == 401
    assert len(unlock_calls) == 3
    _assert_limited(login(client, MEMBER, PASSPHRASE))  # even the right passphrase waits
    _assert_limited(login(client, "someone", "wrong-passphrase-1"))
    assert len(unlock_calls) == 3
    assert session_cookie(client) is None
    assert limited_home.actions("unlock.rate_limited")
    # Another address is not affected.
    other = new_client(app, "192.168.1.21")
    assert login(other).status_code == 303


def test_rate_limit_per_member_across_addresses(limited_home, make_app, unlock_calls):
    app = make_app()
    for i in range(3):
        response = login(new_client(app, f"10.9.0.{i + 1}"), MEMBER, "wrong-passphrase-1")
        assert response.status_code == 401
    _assert_limited(login(new_client(app, "10.9.0.50"), MEMBER, PASSPHRASE))
    _assert_limited(login(new_client(app, "10.9.0.51"), MEMBER.upper(), PASSPHRASE))
    assert len(unlock_calls) == 3
    # Another member from a fresh address is not limited.
    assert app.extensions["doorbell"].limiter.try_acquire("10.9.0.52", "bob") is None


def test_guessers_elsewhere_cannot_lock_out_a_browser_that_unlocked_before(
        limited_home, make_app, unlock_calls):
    app = make_app()
    own = new_client(app, "192.168.1.70")
    assert login(own).status_code == 303
    for i in range(3):  # someone on the network guesses the member's passphrase
        response = login(new_client(app, f"10.9.1.{i + 1}"), MEMBER, "wrong-passphrase-1")
        assert response.status_code == 401
    _assert_limited(login(new_client(app, "10.9.1.50"), MEMBER, PASSPHRASE))
    forged = new_client(app, "10.9.1.51")
    forged.set_cookie(DEVICE_COOKIE, "x" * 43, domain="localhost")  # a made-up device token
    _assert_limited(login(forged))
    # The member's own browser still unlocks: it is counted on its own.
    assert login(own).status_code == 303
    # ... and its own wrong guesses are limited just the same.
    for _ in range(3):
        assert login(own, MEMBER, "wrong-passphrase-1").status_code == 401
    _assert_limited(login(own))


def test_rate_limit_survives_a_restart(limited_home, make_app, unlock_calls):
    app = make_app()
    client = new_client(app, "192.168.1.30")
    assert login(client, MEMBER, "wrong-passphrase-1").status_code == 401
    limiter = app.extensions["doorbell"].limiter
    for _ in range(2):  # two more attempts, counted as the login route counts them
        assert limiter.try_acquire("192.168.1.30", MEMBER) is None
    _assert_limited(login(client))
    del app, client, limiter
    restarted = make_app()
    _assert_limited(login(new_client(restarted, "192.168.1.30")))
    _assert_limited(login(new_client(restarted, "192.168.1.31"), MEMBER, PASSPHRASE))
    assert len(unlock_calls) == 1
    assert len(restarted.extensions["doorbell"].sessions) == 0


def test_default_limit_is_ten(make_app, unlock_calls, monkeypatch):
    app = make_app()
    limiter = app.extensions["doorbell"].limiter
    # The count is kept before the slow check: exercise it without ten scrypts.
    for i in range(10):
        assert limiter.try_acquire("192.168.1.40", f"name{i}") is None
    _assert_limited(login(new_client(app, "192.168.1.40")))
    assert unlock_calls == []


def test_a_successful_unlock_clears_the_count(limited_home, make_app):
    app = make_app()
    limiter = app.extensions["doorbell"].limiter
    for _ in range(2):
        assert limiter.try_acquire("192.168.1.60", MEMBER) is None
    assert login(new_client(app, "192.168.1.60")).status_code == 303
    # Without the reset the third attempt above would have been the last one allowed.
    for _ in range(2):
        assert limiter.try_acquire("192.168.1.60", MEMBER) is None


def test_the_limit_expires_after_fifteen_minutes(tmp_path):
    from doorbell.web.ratelimit import LoginRateLimiter

    now = [1_000_000.0]
    limiter = LoginRateLimiter(tmp_path / "limit.sqlite3", 2, clock=lambda: now[0])
    assert limiter.try_acquire("a", "alice") is None
    assert limiter.try_acquire("a", "alice") is None
    wait = limiter.try_acquire("a", "alice")
    assert wait is not None and 899 <= wait <= 900
    now[0] += 15 * 60 + 1
    assert limiter.try_acquire("a", "alice") is None
    limiter.close()
