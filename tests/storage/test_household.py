"""storage.household: the household's keys, shared by `doorbell init`/`keys` and the viewer.

Each function once as it should work, then each refusal: one sentence, and nothing on disk
changed. scrypt runs at 2^15 (work_factor=15) so nothing calibrates unless a test asks.
"""

import io
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

import doorbell.storage.household as household
from doorbell.storage.age import (
    HybridIdentity,
    HybridRecipient,
    X25519Identity,
    X25519Recipient,
    decrypt,
    encrypt,
    parse_recipients_text,
)
from doorbell.storage.errors import (
    HouseholdError,
    RecipientsError,
    WeakPassphraseError,
    WrongPassphraseError,
)
from doorbell.storage.home import Home
from doorbell.storage.household import (
    CONFIG_STUB,
    KIND_PASSPHRASE,
    KIND_PUBLIC_KEY,
    KIND_RECOVERY,
    Member,
    NewHousehold,
    add_member,
    change_passphrase,
    check_new_household,
    check_new_member,
    check_passphrase_member,
    classical_members,
    create_household,
    list_members,
    remove_member,
)
from doorbell.storage.keyring import Keyring
from doorbell.storage.recipients import HouseholdKey, read_household_keys, read_recipients
from tests.age_cli import HYBRID_AGE_DIR, needs_hybrid_age

OWNER_PASSPHRASE = "amber-kettle-under-snow-31"
CAROL_PASSPHRASE = "carol's own long passphrase"
NEW_PASSPHRASE = "seven-herons-at-dusk-again"
WF = 15


def snapshot(home: Home) -> dict[str, bytes]:
    if not home.root.exists():
        return {}
    return {str(p.relative_to(home.root)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(home.root.rglob("*"))}


def assert_one_sentence(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message
    assert message.rstrip(".").count(". ") == 0, message
    return message


def recipients_lines(home: Home) -> list[str]:
    text = home.recipients_file.read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def assert_valid_recipients_file(home: Home, count: int) -> None:
    """Both this project's parser and the stock `age` CLI accept the file: age 1.3.0 or later
    (if found) once it holds a hybrid key, else the `age` on PATH (if installed)."""
    text = home.recipients_file.read_text()
    assert len(parse_recipients_text(text)) == count
    assert [str(k.recipient) for k in read_household_keys(home.recipients_file)] == \
        recipients_lines(home)
    if any(line.startswith("age1pq1") for line in recipients_lines(home)):
        age = str(HYBRID_AGE_DIR / "age") if HYBRID_AGE_DIR else None
    else:
        age = shutil.which("age")
    if age:
        result = subprocess.run([age, "-e", "-R", str(home.recipients_file)], input=b"x",
                                capture_output=True, check=False, timeout=30)
        if classical_members(home):
            # age 1.3 will not itself encrypt to post-quantum and X25519 keys at once (the file
            # would be no safer than X25519); our recorder does, and age decrypts such files
            assert b"can't mix post-quantum and classic recipients" in result.stderr
            return
        assert result.returncode == 0, result.stderr
        stanzas = result.stdout.count(b"\n-> X25519 ") + \
            result.stdout.count(b"\n-> mlkem768x25519 ")
        assert stanzas == count


@pytest.fixture
def new_home(tmp_path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture
def made(new_home) -> tuple[Home, NewHousehold]:
    return new_home, create_household(new_home, "owner", OWNER_PASSPHRASE, WF)


@pytest.fixture
def home(made) -> Home:
    return made[0]


# -- create_household ------------------------------------------------------------------------------


def test_create_household_makes_a_complete_home(made):
    home, new = made

    assert stat.S_IMODE(home.root.stat().st_mode) == 0o750
    assert home.clips_dir.is_dir()
    assert home.config_file.read_text() == CONFIG_STUB
    assert home.index_file.is_file()
    assert home.is_initialised()
    assert new.work_factor == WF
    unlocked = Keyring(home.identities_dir).unlock("owner", OWNER_PASSPHRASE)
    assert str(unlocked) == str(new.member_identity)
    assert [(k.name, k.recipient) for k in read_household_keys(home.recipients_file)] == [
        ("owner", new.member_identity.recipient), ("recovery", new.recovery_identity.recipient),
    ]
    assert_valid_recipients_file(home, 2)
    assert not home.tls_dir.exists() and not home.audit_file.exists()  # the callers' part


def test_the_recovery_key_is_returned_and_stored_nowhere(made):
    home, new = made
    secrets = [str(new.recovery_identity).encode(), str(new.member_identity).encode(),
               new.recovery_identity._seed]
    for path in home.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"age-secret-key-" not in data.lower(), path
            assert not any(s in data or s.lower() in data for s in secrets), path


def test_new_household_keys_are_post_quantum_hybrid_by_default(made):
    home, new = made
    assert isinstance(new.member_identity, HybridIdentity)
    assert isinstance(new.recovery_identity, HybridIdentity)
    assert str(new.recovery_identity).startswith("AGE-SECRET-KEY-PQ-1")
    assert all(line.startswith("age1pq1") for line in recipients_lines(home))
    assert all(m.post_quantum for m in list_members(home))
    assert classical_members(home) == []


def test_an_x25519_household_for_an_age_older_than_1_3(new_home):
    new = create_household(new_home, "owner", OWNER_PASSPHRASE, WF, post_quantum=False)
    assert isinstance(new.member_identity, X25519Identity)
    assert isinstance(new.recovery_identity, X25519Identity)
    assert str(new.recovery_identity).startswith("AGE-SECRET-KEY-1")
    lines = recipients_lines(new_home)
    assert len(lines) == 2 and not any(line.startswith("age1pq") for line in lines)
    assert not any(m.post_quantum for m in list_members(new_home))
    assert classical_members(new_home) == []  # nothing stronger to be weakened
    unlocked = Keyring(new_home.identities_dir).unlock("owner", OWNER_PASSPHRASE)
    assert str(unlocked) == str(new.member_identity)
    assert_valid_recipients_file(new_home, 2)


def test_create_household_keeps_an_existing_config(new_home):
    new_home.root.mkdir()
    new_home.config_file.write_text("[camera]\nname = \"Gate\"\n")
    create_household(new_home, "alice", OWNER_PASSPHRASE, WF)
    assert new_home.config_file.read_text() == "[camera]\nname = \"Gate\"\n"


def test_create_household_calibrates_the_work_factor_when_not_given(new_home, monkeypatch):
    calls = []
    monkeypatch.setattr(household, "calibrate_work_factor", lambda: calls.append(1) or 16)
    new = create_household(new_home, "alice", OWNER_PASSPHRASE)
    assert calls == [1] and new.work_factor == 16
    assert Keyring(new_home.identities_dir).work_factor("alice") == 16


def test_create_household_refuses_an_initialised_home_and_changes_nothing(home):
    before = snapshot(home)
    with pytest.raises(HouseholdError) as caught:
        create_household(home, "second", OWNER_PASSPHRASE, WF)
    assert "already initialised" in assert_one_sentence(caught.value)
    with pytest.raises(HouseholdError):
        check_new_household(home, "second")
    assert snapshot(home) == before


@pytest.mark.parametrize(
    "member, passphrase, work_factor, error",
    [
        ("owner", "", WF, WeakPassphraseError),
        ("owner", "password", WF, WeakPassphraseError),
        ("owner", "zzzzzzzzzzzzzz", WF, WeakPassphraseError),
        ("Owner", OWNER_PASSPHRASE, WF, RecipientsError),
        ("../owner", OWNER_PASSPHRASE, WF, RecipientsError),
        ("recovery", OWNER_PASSPHRASE, WF, RecipientsError),
        ("owner", OWNER_PASSPHRASE, 14, HouseholdError),
        ("owner", OWNER_PASSPHRASE, 23, HouseholdError),
    ],
    ids=["empty", "common", "repetitive", "upper-case", "path", "reserved", "wf-low", "wf-high"],
)
def test_create_household_refuses_before_writing_anything(new_home, member, passphrase,
                                                          work_factor, error):
    with pytest.raises(error) as caught:
        create_household(new_home, member, passphrase, work_factor)
    assert_one_sentence(caught.value)
    assert not new_home.root.exists()


def test_create_household_refuses_a_leftover_identity_file(new_home):
    new_home.identities_dir.mkdir(parents=True)
    leftover = new_home.identities_dir / "owner.age"
    leftover.write_bytes(b"age-encryption.org/v1\n")
    before = snapshot(new_home)

    with pytest.raises(HouseholdError) as caught:
        create_household(new_home, "owner", OWNER_PASSPHRASE, WF)

    assert "already exists" in assert_one_sentence(caught.value)
    assert snapshot(new_home) == before


def test_a_failed_init_leaves_no_identity_behind_so_it_can_be_retried(new_home, monkeypatch):
    def fail(path, keys):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(household, "write_household_keys", fail)
    with pytest.raises(OSError):
        create_household(new_home, "owner", OWNER_PASSPHRASE, WF)
    assert not (new_home.identities_dir / "owner.age").exists()
    assert not new_home.is_initialised()

    monkeypatch.undo()
    create_household(new_home, "owner", OWNER_PASSPHRASE, WF)
    assert new_home.is_initialised()


# -- add_member ------------------------------------------------------------------------------------


def test_add_a_member_by_public_key(home):
    bob = X25519Identity.generate()

    added = add_member(home, "bob", recipient=f"  {bob.recipient}\n")

    assert added == HouseholdKey("bob", bob.recipient)
    assert [m.name for m in list_members(home)] == ["owner", "recovery", "bob"]
    assert list_members(home)[-1] == Member("bob", bob.recipient, KIND_PUBLIC_KEY)
    assert not (home.identities_dir / "bob.age").exists()
    assert_valid_recipients_file(home, 3)


def test_add_a_member_with_a_passphrase(home):
    added = add_member(home, "carol", passphrase=CAROL_PASSPHRASE, work_factor=WF)

    carol = Keyring(home.identities_dir).unlock("carol", CAROL_PASSPHRASE)
    assert added == HouseholdKey("carol", carol.recipient)
    assert list_members(home)[-1] == Member("carol", carol.recipient, KIND_PASSPHRASE, WF)
    assert_valid_recipients_file(home, 3)


def test_a_passphrase_member_gets_a_hybrid_key_unless_asked_for_x25519(home):
    add_member(home, "carol", passphrase=CAROL_PASSPHRASE, work_factor=WF)
    add_member(home, "dave", passphrase=NEW_PASSPHRASE, work_factor=WF, post_quantum=False)
    keyring = Keyring(home.identities_dir)
    assert isinstance(keyring.unlock("carol", CAROL_PASSPHRASE), HybridIdentity)
    assert isinstance(keyring.unlock("dave", NEW_PASSPHRASE), X25519Identity)
    kinds = {m.name: type(m.recipient) for m in list_members(home)}
    assert kinds == {"owner": HybridRecipient, "recovery": HybridRecipient,
                     "carol": HybridRecipient, "dave": X25519Recipient}
    assert classical_members(home) == ["dave"]
    assert_valid_recipients_file(home, 4)


def test_hybrid_and_x25519_public_keys_are_both_accepted(home):
    bob, eve = HybridIdentity.generate(), X25519Identity.generate()
    add_member(home, "bob", recipient=str(bob.recipient))
    add_member(home, "eve", recipient=str(eve.recipient))
    assert list_members(home)[-2:] == [Member("bob", bob.recipient, KIND_PUBLIC_KEY),
                                       Member("eve", eve.recipient, KIND_PUBLIC_KEY)]
    assert classical_members(home) == ["eve"]
    assert_valid_recipients_file(home, 4)


def test_a_key_type_is_not_chosen_for_a_given_public_key(home):
    before = snapshot(home)
    with pytest.raises(HouseholdError) as info:
        add_member(home, "bob", recipient=str(X25519Identity.generate().recipient),
                   post_quantum=False)
    assert "public key is used as it is" in assert_one_sentence(info.value)
    assert snapshot(home) == before


def test_add_member_calibrates_the_work_factor_when_not_given(home, monkeypatch):
    monkeypatch.setattr(household, "calibrate_work_factor", lambda: 16)
    add_member(home, "carol", passphrase=CAROL_PASSPHRASE)
    assert Keyring(home.identities_dir).work_factor("carol") == 16


@needs_hybrid_age
def test_a_member_added_can_decrypt_what_age_encrypts_to_the_file(home):
    bob = HybridIdentity.generate()
    add_member(home, "bob", recipient=str(bob.recipient))
    age = str(Path(HYBRID_AGE_DIR) / "age")
    sealed = subprocess.run([age, "-e", "-R", str(home.recipients_file)], input=b"hello bob",
                            capture_output=True, check=True, timeout=30).stdout
    assert sealed.count(b"\n-> mlkem768x25519 ") == 3
    assert decrypt(io.BytesIO(sealed), [bob]).read() == b"hello bob"


def test_an_x25519_member_with_an_older_age_decrypts_what_the_household_encrypts(home, tmp_path):
    age = shutil.which("age")
    if not age:
        pytest.skip("the age CLI is not installed")
    bob = X25519Identity.generate()
    add_member(home, "bob", recipient=str(bob.recipient))
    buffer = io.BytesIO()  # as the recorder does: every key in recipients.txt
    with encrypt(buffer, read_recipients(home.recipients_file)) as writer:
        writer.write(b"hello bob")
    key = tmp_path / "bob.txt"
    key.write_text(f"{bob}\n")
    result = subprocess.run([age, "-d", "-i", str(key)], input=buffer.getvalue(),
                            capture_output=True, check=False, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello bob"


@pytest.mark.parametrize(
    "name, kwargs, error, words",
    [
        ("owner", {"recipient": "NEW"}, HouseholdError, "already exists"),
        ("recovery", {"recipient": "NEW"}, RecipientsError, "invalid member name"),
        ("Bob", {"recipient": "NEW"}, RecipientsError, "invalid member name"),
        ("../bob", {"passphrase": CAROL_PASSPHRASE}, RecipientsError, "invalid member name"),
        ("bob", {"recipient": "OWNER"}, HouseholdError, "already belongs to 'owner'"),
        ("bob", {"recipient": "RECOVERY"}, HouseholdError, "already belongs to 'recovery'"),
        ("bob", {"recipient": "age1notakey"}, HouseholdError, "is not an age public key"),
        ("bob", {"recipient": "ssh-ed25519 AAAAC3Nz"}, HouseholdError, "not an age public key"),
        ("bob", {"recipient": "SECRET"}, HouseholdError, "that is a secret key"),
        ("bob", {}, HouseholdError, "neither was given"),
        ("bob", {"recipient": "NEW", "passphrase": CAROL_PASSPHRASE}, HouseholdError, "not both"),
        ("bob", {"passphrase": "password1"}, WeakPassphraseError, "passphrase"),
        ("bob", {"passphrase": CAROL_PASSPHRASE, "work_factor": 30}, HouseholdError,
         "between 15 and 22"),
    ],
    ids=["existing", "reserved", "upper-case", "path", "owners-key", "recovery-key", "bad-key",
         "ssh-key", "secret-key", "neither", "both", "weak", "work-factor"],
)
def test_add_member_refuses_and_changes_nothing(made, name, kwargs, error, words):
    home, new = made
    secret = str(X25519Identity.generate())
    texts = {"NEW": str(X25519Identity.generate().recipient), "SECRET": secret,
             "OWNER": str(new.member_identity.recipient),
             "RECOVERY": str(new.recovery_identity.recipient)}
    kwargs = {k: texts.get(v, v) if k == "recipient" else v for k, v in kwargs.items()}
    kwargs.setdefault("work_factor", WF) if "passphrase" in kwargs else None
    before = snapshot(home)

    with pytest.raises(error) as caught:
        add_member(home, name, **kwargs)

    assert words in assert_one_sentence(caught.value)
    assert secret not in str(caught.value)
    assert snapshot(home) == before


def test_check_new_member_refuses_without_writing(home):
    assert check_new_member(home, "bob") == "bob"
    with pytest.raises(HouseholdError):
        check_new_member(home, "owner")


def test_add_member_refuses_a_leftover_identity_file(home):
    (home.identities_dir / "dave.age").write_bytes(b"age-encryption.org/v1\n")
    before = snapshot(home)
    with pytest.raises(HouseholdError) as caught:
        add_member(home, "dave", recipient=str(X25519Identity.generate().recipient))
    assert "is not a member" in assert_one_sentence(caught.value)
    assert snapshot(home) == before


def test_an_add_that_fails_after_creating_the_identity_removes_it(home, monkeypatch):
    before = snapshot(home)

    def fail(path, keys):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(household, "write_household_keys", fail)
    with pytest.raises(OSError):
        add_member(home, "carol", passphrase=CAROL_PASSPHRASE, work_factor=WF)
    assert snapshot(home) == before


def test_members_added_at_once_are_all_kept(home):
    # The viewer (threads) and the command line (another process) may add at the same time:
    # each read-modify-write of recipients.txt holds the home's lock.
    keys = {f"m{i}": X25519Identity.generate().recipient for i in range(8)}
    errors = []

    def add(name):
        try:
            add_member(home, name, recipient=str(keys[name]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(name,)) for name in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    listed = {m.name: m.recipient for m in list_members(home)}
    assert {name: listed.get(name) for name in keys} == keys
    assert_valid_recipients_file(home, 2 + len(keys))


def test_functions_refuse_an_uninitialised_home(new_home):
    for call in (lambda: add_member(new_home, "bob", recipient="age1x"),
                 lambda: remove_member(new_home, "bob"),
                 lambda: list_members(new_home),
                 lambda: change_passphrase(new_home, "bob", OWNER_PASSPHRASE, NEW_PASSPHRASE)):
        with pytest.raises(HouseholdError) as caught:
            call()
        assert "not initialised" in assert_one_sentence(caught.value)
    assert not new_home.root.exists()


# -- remove_member ---------------------------------------------------------------------------------


def test_remove_a_public_key_member(home):
    bob = X25519Identity.generate()
    add_member(home, "bob", recipient=str(bob.recipient))

    remove_member(home, "bob")

    assert [m.name for m in list_members(home)] == ["owner", "recovery"]
    assert str(bob.recipient) not in home.recipients_file.read_text()
    assert_valid_recipients_file(home, 2)


def test_remove_a_passphrase_member_deletes_their_identity_file(home):
    add_member(home, "carol", passphrase=CAROL_PASSPHRASE, work_factor=WF)

    remove_member(home, "carol")

    assert not (home.identities_dir / "carol.age").exists()
    assert [m.name for m in list_members(home)] == ["owner", "recovery"]
    assert (home.identities_dir / "owner.age").exists()


def test_the_first_member_can_go_once_another_is_there(home):
    add_member(home, "bob", recipient=str(X25519Identity.generate().recipient))
    remove_member(home, "owner")
    assert [m.name for m in list_members(home)] == ["recovery", "bob"]
    assert not (home.identities_dir / "owner.age").exists()


@pytest.mark.parametrize(
    "name, kwargs, words",
    [
        ("nobody", {}, "no member named 'nobody'"),
        ("Bad Name", {}, "no member named"),
        ("recovery", {}, "the recovery key is not removed here"),
        ("owner", {}, "holds the last member key"),
        ("owner", {"allow_recovery": True}, "holds the last member key"),
    ],
    ids=["unknown", "invalid-name", "recovery", "last-member", "last-member-even-so"],
)
def test_remove_member_refuses_and_changes_nothing(home, name, kwargs, words):
    before = snapshot(home)
    with pytest.raises(HouseholdError) as caught:
        remove_member(home, name, **kwargs)
    assert words in assert_one_sentence(caught.value)
    assert snapshot(home) == before


def test_the_recovery_key_goes_only_when_allowed(home):
    remove_member(home, "recovery", allow_recovery=True)
    assert [m.name for m in list_members(home)] == ["owner"]
    assert_valid_recipients_file(home, 1)
    # ... and then the owner is the last key of all.
    with pytest.raises(HouseholdError, match="last member key"):
        remove_member(home, "owner", allow_recovery=True)


# -- list_members and change_passphrase ------------------------------------------------------------


def test_list_members_names_each_kind(made):
    home, new = made
    bob = X25519Identity.generate()
    add_member(home, "bob", recipient=str(bob.recipient))
    add_member(home, "carol", passphrase=CAROL_PASSPHRASE, work_factor=16)
    carol = Keyring(home.identities_dir).unlock("carol", CAROL_PASSPHRASE)

    assert list_members(home) == [
        Member("owner", new.member_identity.recipient, KIND_PASSPHRASE, WF),
        Member("recovery", new.recovery_identity.recipient, KIND_RECOVERY),
        Member("bob", bob.recipient, KIND_PUBLIC_KEY),
        Member("carol", carol.recipient, KIND_PASSPHRASE, 16),
    ]


def test_change_passphrase_keeps_the_key_and_the_work_factor(made):
    home, new = made
    assert check_passphrase_member(home, "owner") == "owner"

    change_passphrase(home, "owner", OWNER_PASSPHRASE, NEW_PASSPHRASE)

    keyring = Keyring(home.identities_dir)
    assert str(keyring.unlock("owner", NEW_PASSPHRASE)) == str(new.member_identity)
    with pytest.raises(WrongPassphraseError):
        keyring.unlock("owner", OWNER_PASSPHRASE)
    assert keyring.work_factor("owner") == WF


@pytest.mark.parametrize(
    "name, old, new, error, words",
    [
        ("owner", "wrong-passphrase-here", NEW_PASSPHRASE, WrongPassphraseError, "passphrase"),
        ("owner", OWNER_PASSPHRASE, "password", WeakPassphraseError, "passphrase"),
        ("bob", OWNER_PASSPHRASE, NEW_PASSPHRASE, HouseholdError, "no passphrase-protected"),
        ("nobody", OWNER_PASSPHRASE, NEW_PASSPHRASE, HouseholdError, "no passphrase-protected"),
        ("recovery", OWNER_PASSPHRASE, NEW_PASSPHRASE, RecipientsError, "invalid member name"),
    ],
    ids=["wrong-old", "weak-new", "public-key-member", "unknown", "recovery"],
)
def test_change_passphrase_refuses_and_changes_nothing(home, name, old, new, error, words):
    add_member(home, "bob", recipient=str(X25519Identity.generate().recipient))
    before = snapshot(home)

    with pytest.raises(error) as caught:
        change_passphrase(home, name, old, new)

    assert words in assert_one_sentence(caught.value)
    assert snapshot(home) == before
