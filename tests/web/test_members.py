"""Household members in the browser: add (passphrase here, or someone's age public key), remove,
change one's own passphrase. The CSRF, re-authentication and rate-limit rules these forms share
with the settings pages are in test_settings.py."""

import html
import re

import pytest

from doorbell.storage.age import AgeError
from doorbell.storage.age.identities import X25519Identity
from doorbell.storage.clipreader import read_metadata
from doorbell.storage.errors import WrongPassphraseError
from doorbell.storage.household import add_member
from doorbell.storage.keyring import Keyring
from doorbell.storage.recipients import RECOVERY_NAME, read_household_keys

from .conftest import (
    FAST_WORK_FACTOR,
    MEMBER,
    ORIGIN,
    PASSPHRASE,
    csrf_token,
    local_today_at,
    login,
    new_client,
    pseudo_random,
    session_cookie,
    unlock_directly,
    write_clip,
)

SAME_ORIGIN = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
ALERT = re.compile(r'role="alert"[^>]*>(.*?)</p>', re.S)
NOTE = re.compile(r'role="status"[^>]*>(.*?)</p>', re.S)
CAROL_PASSPHRASE = "copper-meadow-sunlit-fern-24"
BOB_PASSPHRASE = "bob-walks-the-long-road-42"
NEW_PASSPHRASE = "violet-harbour-lamp-quiet-88"


def _text(pattern, response) -> str:
    match = pattern.search(response.get_data(as_text=True))
    return " ".join(html.unescape(match.group(1)).split()) if match else ""


def post(client, path: str, data: dict, passphrase: str | None = PASSPHRASE):
    form = {"csrf_token": csrf_token(client), **data}
    if passphrase is not None:
        form["passphrase"] = passphrase
    return client.post(path, data=form, headers=SAME_ORIGIN)


def names(home) -> list[str]:
    return [key.name for key in read_household_keys(home.root / "recipients.txt")]


def key_of(home, name: str) -> str:
    return next(str(k.recipient) for k in read_household_keys(home.root / "recipients.txt")
                if k.name == name)


def keyring(home) -> Keyring:
    return Keyring(home.root / "identities")


def household_state(home) -> dict[str, bytes]:
    paths = [home.root / "recipients.txt", *sorted((home.root / "identities").iterdir())]
    return {p.name: p.read_bytes() for p in paths}


def can_read(home, clip, identity) -> bool:
    """Whether `identity` decrypts the clip's metadata (and it is the clip's)."""
    try:
        metadata = read_metadata(home.root / "clips", clip.id, [identity])
    except AgeError:
        return False
    return metadata["start_us"] == clip.start_us and metadata["trigger"] == "motion"


def record_clip(home, hour: int, seed: int):
    """A clip recorded now, encrypted to whoever recipients.txt names (as the recorder does)."""
    start = local_today_at(hour)
    return write_clip(home.root, start, pseudo_random(5_000, seed), None,
                      {"trigger": "motion", "duration_s": 3.0, "start_us": start})


@pytest.fixture
def bob(home):
    """A second member with a passphrase on this device: (identity)."""
    add_member(home.home, "bob", passphrase=BOB_PASSPHRASE, work_factor=FAST_WORK_FACTOR)
    return keyring(home).unlock("bob", BOB_PASSPHRASE)


def test_the_page_lists_every_key_and_what_kind_it_is(home, unlocked):
    page = unlocked.get("/members")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "alice (you)" in text
    assert key_of(home, MEMBER) in text
    assert key_of(home, RECOVERY_NAME) in text
    assert "recovery key, kept off the device" in text
    assert "passphrase on this device" in text
    # No way offered to remove yourself or the recovery key.
    assert 'name="name" value="alice"' not in text
    assert 'name="name" value="recovery"' not in text


def test_the_page_needs_an_unlocked_viewer(client):
    response = client.get("/members")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


# -- adding

def test_adding_a_member_with_a_passphrase(app, home, unlocked):
    response = post(unlocked, "/members/add", {
        "name": "carol", "new_passphrase": CAROL_PASSPHRASE,
        "new_passphrase_confirm": CAROL_PASSPHRASE})
    assert response.status_code == 303
    assert response.headers["Location"] == "/members?note=added:carol"
    assert names(home) == [MEMBER, RECOVERY_NAME, "carol"]
    assert (home.root / "identities" / "carol.age").exists()
    carol = keyring(home).unlock("carol", CAROL_PASSPHRASE)
    assert str(carol.recipient) == key_of(home, "carol")
    [entry] = home.actions("keys.add")
    assert entry.actor == MEMBER
    assert entry.details["member"] == "carol"
    assert entry.details["key"] == key_of(home, "carol")
    assert entry.details["kind"] == "passphrase identity"
    page = unlocked.get("/members?note=added:carol")
    assert _text(NOTE, page) == ("Added carol: clips from now on are encrypted to their key too.")
    assert 'data-member="carol"' in page.get_data(as_text=True)
    # Carol can now unlock the viewer herself and see clips recorded from now on.
    clip = record_clip(home, 9, 3)
    assert can_read(home, clip, carol)
    assert login(new_client(app, "192.168.1.30"), "carol", CAROL_PASSPHRASE).status_code == 303


def test_adding_a_member_by_their_public_key(home, unlocked):
    dave = X25519Identity.generate()
    response = post(unlocked, "/members/add", {"name": "dave",
                                               "public_key": f"  {dave.recipient} "})
    assert response.status_code == 303
    assert names(home) == [MEMBER, RECOVERY_NAME, "dave"]
    assert key_of(home, "dave") == str(dave.recipient)
    assert not (home.root / "identities" / "dave.age").exists()  # dave decrypts elsewhere
    [entry] = home.actions("keys.add")
    assert (entry.details["member"], entry.details["kind"]) == ("dave", "public key")
    text = unlocked.get("/members").get_data(as_text=True)
    row = re.search(r'<tr data-member="dave">.*?</tr>', text, re.S).group(0)
    assert "public key, decrypts elsewhere" in row
    clip = record_clip(home, 10, 4)
    assert can_read(home, clip, dave)


ALICE_KEY = "ALICE_KEY"  # filled in from the home: alice's own public key
SECRET = str(X25519Identity.generate())


@pytest.mark.parametrize(("form", "says"), [
    ({"name": "alice", "public_key": "age1"}, None),  # replaced below by a valid new key
    ({"name": "bob", "public_key": ALICE_KEY}, "That key already belongs to 'alice'."),
    ({"name": "bob", "public_key": "age1notakeyatall"}, "is not an age public key"),
    ({"name": "bob", "public_key": SECRET}, "That is a secret key, not a public key"),
    ({"name": "bob", "public_key": "VALID", "new_passphrase": CAROL_PASSPHRASE,
      "new_passphrase_confirm": CAROL_PASSPHRASE},
     "Give either a passphrase for the new member or their public key, not both."),
    ({"name": "bob", "new_passphrase": CAROL_PASSPHRASE,
      "new_passphrase_confirm": CAROL_PASSPHRASE + "!"}, "The two new passphrases differ."),
    ({"name": "bob", "new_passphrase": "short", "new_passphrase_confirm": "short"},
     "The passphrase is too short"),
    ({"name": "bob"}, "The passphrase is empty."),
    ({"name": "Bob Smith", "public_key": "VALID"}, "Invalid member name 'Bob Smith'"),
    ({"name": "recovery", "public_key": "VALID"}, "Invalid member name 'recovery'"),
], ids=["duplicate name", "duplicate key", "not a key", "secret key", "both", "mismatch",
        "weak", "neither", "bad name", "reserved name"])
def test_adding_is_refused_naming_the_problem(home, unlocked, form, says):
    valid = str(X25519Identity.generate().recipient)
    form = {k: valid if v in ("VALID", "age1") else key_of(home, MEMBER) if v == ALICE_KEY
            else v for k, v in form.items()}
    if says is None:
        says = "A member named 'alice' already exists."
    before = household_state(home)
    response = post(unlocked, "/members/add", form)
    assert response.status_code == 400
    alert = _text(ALERT, response)
    assert says in alert, alert
    assert household_state(home) == before
    assert not home.actions("keys.add")
    assert SECRET not in response.get_data(as_text=True)  # a pasted secret is never echoed


# -- removing

def test_removing_a_member_locks_them_out_of_new_clips(app, home, unlocked, bob):
    before_clip = record_clip(home, 7, 5)  # recorded while bob was a member
    bobs_browser = new_client(app, "192.168.1.31")
    unlock_directly(app, bobs_browser, bob, member="bob")
    assert bobs_browser.get("/").status_code == 200
    page = unlocked.get("/members").get_data(as_text=True)
    assert ("Clips recorded until now stay decryptable by bob's key wherever a copy of it "
            "exists") in " ".join(page.split())

    response = post(unlocked, "/members/remove", {"name": "bob"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/members?note=removed:bob"
    assert names(home) == [MEMBER, RECOVERY_NAME]
    assert not (home.root / "identities" / "bob.age").exists()
    # Bob's open session is gone at once.
    locked = bobs_browser.get("/")
    assert locked.status_code == 302 and locked.headers["Location"] == "/login"
    assert login(bobs_browser, "bob", BOB_PASSPHRASE).status_code == 401
    [entry] = home.actions("keys.remove")
    assert (entry.actor, entry.details["member"], entry.details["sessions_locked"]) == \
        (MEMBER, "bob", 1)
    note = _text(NOTE, unlocked.get("/members?note=removed:bob"))
    assert note == ("Removed bob: new clips are no longer encrypted to their key. Clips "
                    "recorded before now stay decryptable by that key wherever a copy of it "
                    "exists.")
    # What the page says is true: bob's key still opens the old clip, not a new one.
    assert can_read(home, before_clip, bob)
    assert not can_read(home, record_clip(home, 11, 6), bob)
    assert unlocked.get("/").status_code == 200  # the remover stays unlocked


def test_you_cannot_remove_yourself(app, home, unlocked, bob):
    before = household_state(home)
    response = post(unlocked, "/members/remove", {"name": MEMBER})
    assert response.status_code == 400
    assert _text(ALERT, response) == "You cannot remove yourself: ask another member to do it."
    assert household_state(home) == before
    assert unlocked.get("/").status_code == 200
    assert not home.actions("keys.remove")


def test_the_recovery_key_cannot_be_removed_here(home, unlocked):
    before = household_state(home)
    response = post(unlocked, "/members/remove", {"name": RECOVERY_NAME})
    assert response.status_code == 400
    assert "The recovery key is not removed here" in _text(ALERT, response)
    assert household_state(home) == before
    assert not home.actions("keys.remove")


def test_removing_someone_who_is_not_a_member(home, unlocked):
    before = household_state(home)
    response = post(unlocked, "/members/remove", {"name": "zed"})
    assert response.status_code == 400
    assert _text(ALERT, response) == "No member named 'zed'."
    assert household_state(home) == before


# -- changing one's own passphrase

def test_changing_your_passphrase(app, home, unlocked, identity):
    response = post(unlocked, "/members/passphrase", {
        "new_passphrase": NEW_PASSPHRASE, "new_passphrase_confirm": NEW_PASSPHRASE})
    assert response.status_code == 303
    assert response.headers["Location"] == "/members?note=passphrase"
    with pytest.raises(WrongPassphraseError):
        keyring(home).unlock(MEMBER, PASSPHRASE)
    same = keyring(home).unlock(MEMBER, NEW_PASSPHRASE)
    assert str(same.recipient) == str(identity.recipient)  # the key itself is unchanged
    assert key_of(home, MEMBER) == str(identity.recipient)
    assert [(e.actor, e.details["member"]) for e in home.actions("keys.passwd")] == \
        [(MEMBER, MEMBER)]
    assert _text(NOTE, unlocked.get("/members?note=passphrase")) == \
        "Your passphrase was changed; your key itself is unchanged."
    assert unlocked.get("/").status_code == 200  # still unlocked
    assert login(new_client(app, "10.0.0.5"), MEMBER, PASSPHRASE).status_code == 401
    browser = new_client(app, "10.0.0.6")
    assert login(browser, MEMBER, NEW_PASSPHRASE).status_code == 303
    assert session_cookie(browser)


@pytest.mark.parametrize(("current", "new", "confirm", "status", "says"), [
    ("amber-kettle-under-snow-32", NEW_PASSPHRASE, NEW_PASSPHRASE, 401,
     "Wrong passphrase: nothing was changed."),
    (PASSPHRASE, NEW_PASSPHRASE, NEW_PASSPHRASE + "x", 400, "The two new passphrases differ."),
    (PASSPHRASE, "short", "short", 400, "The passphrase is too short"),
    (PASSPHRASE, "password123", "password123", 400,
     "The passphrase is too weak (score 0 of 4, 3 needed): this is a very common "
     "password."),
], ids=["wrong current", "mismatch", "weak", "common"])
def test_a_refused_passphrase_change_keeps_the_old_one(home, unlocked, current, new, confirm,
                                                       status, says):
    before = household_state(home)
    response = post(unlocked, "/members/passphrase",
                    {"new_passphrase": new, "new_passphrase_confirm": confirm},
                    passphrase=current)
    assert response.status_code == status
    assert says in _text(ALERT, response)
    assert household_state(home) == before
    assert str(keyring(home).unlock(MEMBER, PASSPHRASE).recipient) == key_of(home, MEMBER)
    assert not home.actions("keys.passwd")
