"""First-run set-up in the browser: set-up code -> first member -> recovery key -> timeline."""

import html
import re
import subprocess

import pytest

from doorbell.storage.age import HybridIdentity, HybridRecipient, X25519Identity, X25519Recipient
from doorbell.storage.age.identities import parse_identity
from doorbell.storage.clipreader import open_video
from doorbell.storage.errors import WrongPassphraseError
from doorbell.storage.home import Home
from doorbell.storage.household import create_household
from doorbell.storage.keyring import Keyring
from doorbell.storage.recipients import RECOVERY_NAME, read_household_keys
from doorbell.web.onboarding import LIFETIME_S, SetupCode
from tests.age_cli import age_for

from .conftest import (
    FAST_WORK_FACTOR,
    ORIGIN,
    SESSION_COOKIE,
    make_jpeg,
    new_client,
    pseudo_random,
    session_cookie,
    write_clip,
)

OWNER = "dana"
OWNER_PASSPHRASE = "otter-lantern-gravel-mosaic-7"
SAME_ORIGIN = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
ALERT = re.compile(r'role="alert"[^>]*>(.*?)</p>', re.S)
RECOVERY_KEY = re.compile(r'<pre id="recovery-key"[^>]*>([^<]+)</pre>')
EXPIRED = "The set-up code has expired: restart the viewer to print a new one."


def _alert(response) -> str:
    match = ALERT.search(response.get_data(as_text=True))
    return html.unescape(match.group(1)).strip() if match else ""


def _redirects_to(response, path: str) -> bool:
    return response.status_code in (302, 303) and response.headers["Location"] == path


def submit(client, code: str, member: str = OWNER, passphrase: str = OWNER_PASSPHRASE,
           confirm: str | None = None, headers: dict | None = None, x25519: bool = False):
    """POST the set-up form as a browser on the device's own origin would."""
    data = {"code": code, "member": member, "passphrase": passphrase,
            "passphrase_confirm": passphrase if confirm is None else confirm}
    if x25519:
        data["key_type"] = "x25519"
    return client.post("/setup", data=data, headers={**SAME_ORIGIN, **(headers or {})})


def household_files(root) -> dict[str, bytes]:
    """Every file set-up could write (everything but the rate limiter's database)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("viewer.sqlite3")}


def assert_not_set_up(fresh_home) -> None:
    assert household_files(fresh_home.root) == {}
    assert not fresh_home.home.is_initialised()


def recovery_secret(response) -> str:
    match = RECOVERY_KEY.search(response.get_data(as_text=True))
    assert match, "no recovery key on the page"
    return match.group(1).strip()


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def visitor(fresh_app):
    """A browser on the home network that has never seen the viewer."""
    return new_client(fresh_app)


@pytest.fixture
def owner(visitor, setup_code):
    """A browser that just set the device up (the recovery key is not confirmed yet)."""
    response = submit(visitor, setup_code)
    assert _redirects_to(response, "/setup/recovery"), response.status_code
    return visitor


def confirm_saved(client):
    page = client.get("/setup/recovery")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    return client.post("/setup/recovery", data={"csrf_token": token.group(1), "saved": "yes"},
                       headers=SAME_ORIGIN)


# -- before set-up

@pytest.mark.parametrize("path", [
    "/", "/login", "/settings", "/settings/areas", "/settings/motion", "/settings/recording",
    "/members", "/audit", "/status", "/live", "/setup/recovery", "/status.json",
    "/settings/applied.json", "/clips/20240101T000000Z-abcd",
])
def test_before_setup_every_page_leads_to_the_setup_page(visitor, path):
    assert _redirects_to(visitor.get(path), "/setup")


def test_the_setup_page_asks_for_the_code_a_name_and_a_passphrase(visitor):
    page = visitor.get("/setup")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for field in ('name="code"', 'name="member"', 'name="passphrase"',
                  'name="passphrase_confirm"'):
        assert field in text
    assert re.search(r"It works once, for (29|30) more minutes", text)
    assert 'id="suggestion"' in text


def test_before_setup_nothing_else_accepts_a_post(visitor, fresh_home):
    response = visitor.post("/login", data={"member": "dana", "passphrase": OWNER_PASSPHRASE},
                            headers=SAME_ORIGIN)
    assert response.status_code == 403
    assert_not_set_up(fresh_home)


def test_wrong_code_is_401_and_writes_nothing(visitor, fresh_home, setup_code):
    wrong = "2222-3333-4444" if setup_code != "2222-3333-4444" else "5555-6666-7777"
    response = submit(visitor, wrong)
    assert response.status_code == 401
    assert _alert(response) == "Wrong set-up code: it is printed in the viewer's log."
    assert session_cookie(visitor) is None
    assert_not_set_up(fresh_home)
    assert submit(visitor, "").status_code == 401
    assert_not_set_up(fresh_home)


@pytest.mark.parametrize("typed", [
    lambda code: code,
    lambda code: code.lower(),
    lambda code: code.replace("-", ""),
    lambda code: code.replace("-", "").lower(),
    lambda code: " " + code.replace("-", " ") + " ",
], ids=["as printed", "lower case", "no dashes", "lower case no dashes", "spaces"])
def test_the_code_is_accepted_however_it_is_typed(visitor, fresh_home, setup_code, typed):
    response = submit(visitor, typed(setup_code))
    assert _redirects_to(response, "/setup/recovery")
    assert fresh_home.home.is_initialised()


@pytest.mark.parametrize(("member", "passphrase", "confirm", "says"), [
    (OWNER, "short", "short", "too short"),
    (OWNER, "password123", "password123", "common"),
    (OWNER, OWNER_PASSPHRASE, OWNER_PASSPHRASE + "x", "differ"),
    ("Dana Smith", OWNER_PASSPHRASE, OWNER_PASSPHRASE, "Invalid member name"),
    ("recovery", OWNER_PASSPHRASE, OWNER_PASSPHRASE, "Invalid member name"),
    ("", OWNER_PASSPHRASE, OWNER_PASSPHRASE, "Invalid member name"),
], ids=["weak", "common", "mismatch", "name with a space", "reserved name", "no name"])
def test_name_and_passphrase_are_checked_without_using_up_the_code(
        visitor, fresh_home, setup_code, member, passphrase, confirm, says):
    response = submit(visitor, setup_code, member, passphrase, confirm)
    assert response.status_code == 400
    assert says in _alert(response)
    assert session_cookie(visitor) is None
    assert_not_set_up(fresh_home)
    # The same code still works once the form is right.
    assert _redirects_to(submit(visitor, setup_code), "/setup/recovery")


# -- a successful set-up

def test_setup_creates_the_household(owner, fresh_home, fresh_app):
    keys = read_household_keys(fresh_home.home.recipients_file)
    assert [key.name for key in keys] == [OWNER, RECOVERY_NAME]
    identity = Keyring(fresh_home.root / "identities").unlock(OWNER, OWNER_PASSPHRASE)
    assert str(identity.recipient) == str(keys[0].recipient)
    with pytest.raises(WrongPassphraseError):
        Keyring(fresh_home.root / "identities").unlock(OWNER, OWNER_PASSPHRASE + "x")
    assert Keyring(fresh_home.root / "identities").work_factor(OWNER) == FAST_WORK_FACTOR
    [entry] = fresh_home.actions("setup")
    assert entry.actor == OWNER
    assert entry.details["member"] == OWNER
    assert entry.details["member_key"] == str(keys[0].recipient)
    assert entry.details["recovery_key"] == str(keys[1].recipient)
    assert entry.details["address"] == "127.0.0.1"
    assert (fresh_home.root / "tls" / "viewer-cert.pem").exists()
    # The new owner is unlocked straight away, with a proper session cookie.
    assert session_cookie(owner)
    sessions = fresh_app.extensions["doorbell"].sessions
    assert len(sessions) == 1
    assert sessions.get(session_cookie(owner)).member == OWNER


def test_setup_sets_a_strict_session_cookie(visitor, setup_code):
    response = submit(visitor, setup_code)
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if SESSION_COOKIE in c]
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie


def test_the_recovery_page_shows_the_recovery_key_of_recipients_txt(owner, fresh_home):
    page = owner.get("/setup/recovery")
    assert page.status_code == 200
    secret = recovery_secret(page)
    assert secret.startswith("AGE-SECRET-KEY-PQ-1")
    recovery = [k for k in read_household_keys(fresh_home.home.recipients_file)
                if k.name == RECOVERY_NAME]
    assert str(parse_identity(secret).recipient) == str(recovery[0].recipient)
    text = page.get_data(as_text=True)
    groups = re.search(r'<pre id="recovery-groups"[^>]*>([^<]+)</pre>', text).group(1)
    assert groups.replace(" ", "") == secret
    [entry] = fresh_home.actions("setup")
    assert entry.details["tls_fingerprint"] in text


@pytest.mark.parametrize("path", ["/", "/settings", "/settings/recording", "/members", "/audit",
                                  "/status", "/live", "/clips/20240101T000000Z-abcd"])
def test_every_page_waits_until_the_recovery_key_is_saved(owner, path):
    assert _redirects_to(owner.get(path), "/setup/recovery")


def test_changes_wait_until_the_recovery_key_is_saved(owner, fresh_home):
    page = owner.get("/setup/recovery")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    before = household_files(fresh_home.root)
    response = owner.post("/members/add", data={"csrf_token": token, "name": "eve",
                                                "public_key": "age1x", "passphrase": "x"},
                          headers=SAME_ORIGIN)
    assert response.status_code == 403
    trial = owner.post("/settings/motion/trial", json={"sensitivity": 0.9},
                       headers={**SAME_ORIGIN, "X-CSRF-Token": token})
    assert trial.status_code == 403
    assert household_files(fresh_home.root) == before


def test_the_box_must_be_ticked(owner, fresh_home):
    page = owner.get("/setup/recovery")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    for data in ({"csrf_token": token}, {"csrf_token": token, "saved": "no"}):
        response = owner.post("/setup/recovery", data=data, headers=SAME_ORIGIN)
        assert response.status_code == 400
        assert _alert(response) == "Tick the box once the recovery key is saved or printed."
        assert recovery_secret(response) == recovery_secret(page)  # still shown
    assert _redirects_to(owner.get("/"), "/setup/recovery")
    # Without the form's token the confirmation is refused too.
    response = owner.post("/setup/recovery", data={"saved": "yes"}, headers=SAME_ORIGIN)
    assert response.status_code == 403
    assert _redirects_to(owner.get("/"), "/setup/recovery")
    assert not fresh_home.actions("setup.recovery_saved")


def test_once_saved_the_recovery_key_is_gone_and_the_timeline_works(owner, fresh_home,
                                                                    fresh_app):
    secret = recovery_secret(owner.get("/setup/recovery"))
    response = confirm_saved(owner)
    assert _redirects_to(response, "/")
    timeline = owner.get("/")
    assert timeline.status_code == 200
    assert 'id="lock-now"' in timeline.get_data(as_text=True)
    assert _redirects_to(owner.get("/setup/recovery"), "/")
    for path in ("/", "/members", "/settings", "/audit", "/status"):
        page = owner.get(path)
        assert page.status_code == 200, path
        assert secret not in page.get_data(as_text=True), path
    assert [e.actor for e in fresh_home.actions("setup.recovery_saved")] == [OWNER]
    # Stored nowhere under the home, in any form.
    raw = parse_identity(secret)._seed
    for path in fresh_home.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data, path
            assert secret.lower().encode() not in data, path
            assert raw not in data, path
    # The members page lists the recovery key by its public half only.
    members = owner.get("/members").get_data(as_text=True)
    assert str(parse_identity(secret).recipient) in members


def test_setup_makes_post_quantum_keys_by_default(owner, fresh_home):
    keys = read_household_keys(fresh_home.home.recipients_file)
    assert [type(key.recipient) for key in keys] == [HybridRecipient, HybridRecipient]
    owner_key = Keyring(fresh_home.root / "identities").unlock(OWNER, OWNER_PASSPHRASE)
    assert isinstance(owner_key, HybridIdentity)
    page = owner.get("/setup/recovery")
    assert isinstance(parse_identity(recovery_secret(page)), HybridIdentity)
    assert "reads it from version 1.3.0 on" in page.get_data(as_text=True)
    assert fresh_home.actions("setup")[0].details["key_type"] == "post-quantum"


def test_the_setup_page_offers_x25519_keys_for_an_older_age(visitor):
    text = visitor.get("/setup").get_data(as_text=True)
    assert 'name="key_type" value="x25519"' in text
    assert "age 1.3.0 or later" in text


def test_setup_with_x25519_keys_for_an_older_age(visitor, fresh_home, setup_code):
    response = submit(visitor, setup_code, x25519=True)
    assert _redirects_to(response, "/setup/recovery"), response.status_code
    keys = read_household_keys(fresh_home.home.recipients_file)
    assert [type(key.recipient) for key in keys] == [X25519Recipient, X25519Recipient]
    page = visitor.get("/setup/recovery")
    secret = recovery_secret(page)
    assert isinstance(parse_identity(secret), X25519Identity)
    assert "not safe from a future quantum computer" in page.get_data(as_text=True)
    assert fresh_home.actions("setup")[0].details["key_type"] == "X25519"


def test_a_clip_recorded_to_a_hybrid_household_plays_and_opens_with_the_recovery_key(
        owner, fresh_home, tmp_path):
    secret = recovery_secret(owner.get("/setup/recovery"))
    assert _redirects_to(confirm_saved(owner), "/")
    video = pseudo_random(3 * 64 * 1024 + 4321, 16)
    clip = write_clip(fresh_home.root, 1_714_564_800_000_000, video, make_jpeg(90),
                      {"kind": "doorbell"})  # the recorder's ClipStore and recipients.txt
    path = fresh_home.paths(clip.id)["video"]
    header = path.read_bytes()[:8192]
    assert header.count(b"\n-> mlkem768x25519 ") == 2 and b"\n-> X25519 " not in header

    played = owner.get(f"/clips/{clip.id}/video")  # the viewer, unlocked as the owner
    assert played.status_code == 200
    assert played.get_data() == video
    part = owner.get(f"/clips/{clip.id}/video", headers={"Range": "bytes=70000-70099"})
    assert part.status_code == 206 and part.get_data() == video[70000:70100]

    opened = open_video(fresh_home.home.clips_dir, clip.id, [parse_identity(secret)])
    try:
        assert opened.reader.read() == video  # the recovery key alone
    finally:
        opened.close()
    age = age_for(secret)
    if age is None:
        return  # no age 1.3+ here; tests/age_cli.py says how to point at one
    key = tmp_path / "recovery.txt"
    key.write_text(secret + "\n")
    result = subprocess.run([age, "-d", "-i", str(key), str(path)], capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == video


# -- refused once the device is set up

def test_after_setup_the_setup_page_is_closed(owner, fresh_home, setup_code, fresh_app):
    confirm_saved(owner)
    before = household_files(fresh_home.root)
    stranger = new_client(fresh_app, "192.168.1.50")
    assert _redirects_to(stranger.get("/setup"), "/login")
    assert _redirects_to(owner.get("/setup"), "/login")
    # A second set-up with the same code (say, from another tab or another browser).
    for client in (stranger, owner):
        response = submit(client, setup_code, member="mallory")
        assert response.status_code == 403
    assert household_files(fresh_home.root) == before
    assert len(fresh_home.actions("setup")) == 1
    assert [k.name for k in read_household_keys(fresh_home.home.recipients_file)] == \
        [OWNER, RECOVERY_NAME]


def test_setup_is_refused_when_doorbell_init_ran_meanwhile(visitor, fresh_home, setup_code):
    # The viewer started (and printed a code) on an empty home; then `doorbell init` ran.
    create_household(Home(fresh_home.root), "bob", "bob-walks-the-long-road-42",
                     FAST_WORK_FACTOR)
    before = household_files(fresh_home.root)
    response = submit(visitor, setup_code)
    assert response.status_code == 403
    assert session_cookie(visitor) is None
    assert household_files(fresh_home.root) == before
    assert not (fresh_home.root / "identities" / f"{OWNER}.age").exists()
    assert not fresh_home.actions("setup")
    assert _redirects_to(visitor.get("/setup"), "/login")
    assert _redirects_to(visitor.get("/"), "/login")


def test_setup_is_refused_on_a_home_set_up_before_the_viewer_started(app, client, home):
    assert app.extensions["doorbell"].setup is None  # no code is printed at all
    before = home.root.joinpath("recipients.txt").read_bytes()
    assert _redirects_to(client.get("/setup"), "/login")
    response = submit(client, "ABCD-EFGH-JKMN")
    assert response.status_code == 403
    assert home.root.joinpath("recipients.txt").read_bytes() == before
    assert not home.actions("setup")


# -- expired and used codes

def test_an_expired_code_is_refused_and_says_so(fresh_app, visitor, fresh_home):
    clock = FakeClock()
    fresh_app.extensions["doorbell"].setup = SetupCode(clock=clock)
    code = fresh_app.extensions["doorbell"].setup.display
    clock.now += 10 * 60
    assert "for 20 more minutes" in visitor.get("/setup").get_data(as_text=True)
    clock.now += LIFETIME_S - 10 * 60 + 60  # 31 minutes after the code was printed
    page = visitor.get("/setup")
    assert page.status_code == 410
    assert _alert(page) == EXPIRED
    response = submit(visitor, code)
    assert response.status_code == 401
    assert _alert(response) == EXPIRED
    assert session_cookie(visitor) is None
    assert_not_set_up(fresh_home)


def test_a_code_taken_by_another_tab_is_refused(fresh_app, visitor, fresh_home, setup_code):
    # Another tab's set-up took the code a moment ago and is still writing the household.
    fresh_app.extensions["doorbell"].setup.consume(setup_code)
    response = submit(visitor, setup_code)
    assert response.status_code == 401
    assert _alert(response) == "This set-up code was already used: the device is set up."
    assert session_cookie(visitor) is None
    assert_not_set_up(fresh_home)


# -- rate limit and cross-site requests

def _limited_app(make_fresh_app):
    """A viewer before set-up that allows 3 wrong codes per address (so 150 in all)."""
    return make_fresh_app({"viewer.login_attempts_per_15min": 3})


def _use_up(client, tries: int = 3) -> None:
    for i in range(tries):
        assert submit(client, f"{i + 2}{i + 2}{i + 2}{i + 2}-2222-2222").status_code == 401


def test_wrong_codes_are_limited_per_address_before_the_code_is_compared(
        make_fresh_app, fresh_home, monkeypatch):
    app = _limited_app(make_fresh_app)
    code = app.extensions["doorbell"].setup.display
    guesser = new_client(app, "192.168.1.66")
    _use_up(guesser)
    compared = []
    monkeypatch.setattr(SetupCode, "_matches", lambda self, given: compared.append(given))
    response = submit(guesser, code)
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60
    assert _alert(response).startswith("Too many wrong set-up codes from this address. "
                                       "Try again in ")
    assert compared == []  # refused before the code was looked at, even the right one
    assert session_cookie(guesser) is None
    assert_not_set_up(fresh_home)


def test_a_guesser_on_the_lan_cannot_keep_the_owner_out(make_fresh_app, fresh_home):
    app = _limited_app(make_fresh_app)
    code = app.extensions["doorbell"].setup.display
    for i in range(20):  # twenty addresses, each until it is refused
        guesser = new_client(app, f"192.168.1.{100 + i}")
        _use_up(guesser)
        assert submit(guesser, "2345-6789-ABCD").status_code == 429
    owner = new_client(app, "192.168.1.10")
    assert _redirects_to(submit(owner, code), "/setup/recovery")
    assert fresh_home.home.is_initialised()


def test_an_address_may_try_again_after_fifteen_minutes(make_fresh_app, fresh_home):
    app = _limited_app(make_fresh_app)
    clock = FakeClock()
    app.extensions["doorbell"].setup = SetupCode(clock=clock, wrong_per_address=3)
    code = app.extensions["doorbell"].setup.display
    owner = new_client(app, "192.168.1.10")  # typos of their own
    _use_up(owner)
    assert submit(owner, code).status_code == 429
    clock.now += 15 * 60
    assert _redirects_to(submit(owner, code), "/setup/recovery")


def test_the_overall_ceiling_retires_the_code_and_a_restart_starts_afresh(
        make_fresh_app, fresh_home):
    app = _limited_app(make_fresh_app)
    code = app.extensions["doorbell"].setup.display
    for i in range(50):  # 3 wrong codes from each of 50 addresses: the whole budget of 150
        _use_up(new_client(app, f"10.1.0.{i + 1}"))
    retired = "Too many wrong set-up codes were tried: restart the viewer to print a new one."
    owner = new_client(app, "192.168.1.10")
    response = submit(owner, code)
    assert response.status_code == 410 and _alert(response) == retired
    page = owner.get("/setup")
    assert page.status_code == 410 and _alert(page) == retired
    assert_not_set_up(fresh_home)
    # The restart prints a new code with a budget of its own, for every address.
    restarted = _limited_app(make_fresh_app)
    new_code = restarted.extensions["doorbell"].setup.display
    assert new_code != code
    assert submit(new_client(restarted, "10.1.0.1"), code).status_code == 401  # the old code
    assert _redirects_to(submit(new_client(restarted, "10.1.0.2"), new_code), "/setup/recovery")


def test_a_restart_gives_a_blocked_address_a_fresh_budget(make_fresh_app, fresh_home):
    app = _limited_app(make_fresh_app)
    owner = new_client(app, "192.168.1.10")
    _use_up(owner)
    assert submit(owner, app.extensions["doorbell"].setup.display).status_code == 429
    restarted = _limited_app(make_fresh_app)
    again = new_client(restarted, "192.168.1.10")
    assert _redirects_to(submit(again, restarted.extensions["doorbell"].setup.display),
                         "/setup/recovery")


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"},
])
def test_a_cross_site_setup_is_refused(visitor, fresh_home, setup_code, headers):
    response = submit(visitor, setup_code, headers=headers)
    assert response.status_code == 403
    assert session_cookie(visitor) is None
    assert_not_set_up(fresh_home)
    # The code was not used up by the forged request.
    assert _redirects_to(submit(visitor, setup_code), "/setup/recovery")
