"""`doorbell init` and `doorbell keys ...`, run as the owner runs them: a process, a home, exit
codes and one-sentence errors; and no secret key left anywhere on disk."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from doorbell.storage.age import (
    HybridIdentity,
    HybridRecipient,
    NoIdentityMatchError,
    X25519Identity,
    X25519Recipient,
    parse_identity,
)
from doorbell.storage.clipreader import open_video
from doorbell.storage.errors import WrongPassphraseError
from doorbell.storage.keyring import Keyring
from doorbell.storage.recipients import read_household_keys

from .conftest import (
    PASSPHRASE,
    WORK_FACTOR,
    assert_ok,
    assert_one_sentence,
    doorbell,
)

NEW_PASSPHRASE = "seven-herons-at-dusk-again"


def decrypt_video(home, clip_id: str, identity) -> bytes:
    opened = open_video(home.root / "clips", clip_id, [identity])
    try:
        return opened.reader.read()
    finally:
        opened.close()


# -- init --------------------------------------------------------------------------------------


def test_init_then_list_verify_and_audit_all_pass(home):
    assert "RECOVERY KEY" in home.init_stdout

    listing = assert_ok(home.run("clips", "list"))
    assert "No clips." in listing.stdout
    assert json.loads(assert_ok(home.run("clips", "list", "--json")).stdout) == []
    assert "OK" in assert_ok(home.run("verify")).stdout
    report = json.loads(assert_ok(home.run("verify", "--json")).stdout)
    assert report["ok"] is True and report["problems"] == []
    assert "intact" in assert_ok(home.run("audit", "--verify")).stdout
    assert [e.action for e in home.audit_entries()] == ["init"]


def test_the_home_can_be_given_with_home_instead_of_the_environment(home):
    for args in (
        ["clips", "list", "--home", str(home.root)],
        ["verify", "--home", str(home.root)],
        ["audit", "--verify", "--home", str(home.root)],
        ["keys", "--home", str(home.root), "list"],
        ["keys", "list", "--home", str(home.root)],
    ):
        assert_ok(doorbell(*args))  # no DOORBELL_HOME in the environment


def test_init_reads_the_passphrase_from_the_environment(fresh_home):
    assert_ok(doorbell("init", "--user", "alice", "--work-factor", WORK_FACTOR, home=fresh_home,
                       env={"DOORBELL_PASSPHRASE": PASSPHRASE}))

    identity = Keyring(fresh_home / "identities").unlock("alice", PASSPHRASE)
    keys = read_household_keys(fresh_home / "recipients.txt")
    assert [(k.name, str(k.recipient)) for k in keys][0] == ("alice", str(identity.recipient))
    assert [k.name for k in keys] == ["alice", "recovery"]


def test_init_twice_fails_with_one_sentence_and_changes_nothing(home):
    before = {p: p.read_bytes() for p in home.files() if "index.sqlite3" not in p.name}

    result = home.run("init", "--passphrase-file", str(home.passphrase_file),
                      "--work-factor", WORK_FACTOR)

    message = assert_one_sentence(result, 1)
    assert "already initialised" in message
    assert "AGE-SECRET-KEY" not in result.stdout  # no second recovery key was made
    assert {p: p.read_bytes() for p in before} == before
    assert [e.action for e in home.audit_entries()] == ["init"]


@pytest.mark.parametrize("weak", ["", "password", "short1!", "zzzzzzzzzzzzzz"])
def test_init_refuses_a_weak_passphrase_and_leaves_no_home(fresh_home, tmp_path, weak):
    passphrase_file = tmp_path / "weak.txt"
    passphrase_file.write_text(weak + "\n")

    result = doorbell("init", "--passphrase-file", str(passphrase_file),
                      "--work-factor", WORK_FACTOR, home=fresh_home)

    assert "passphrase" in assert_one_sentence(result, 1)
    assert not (fresh_home / "recipients.txt").exists()
    assert not list(fresh_home.rglob("*.age")) if fresh_home.exists() else True


def test_init_without_any_passphrase_source_fails_rather_than_hanging(fresh_home):
    result = doorbell("init", "--work-factor", WORK_FACTOR, home=fresh_home)
    assert "passphrase" in assert_one_sentence(result, 1)
    assert not (fresh_home / "recipients.txt").exists()


def test_no_secret_key_is_anywhere_on_disk_after_init(home):
    owner = Keyring(home.root / "identities").unlock("owner", PASSPHRASE)
    recovery = parse_identity(home.recovery_key)
    secrets = {
        "the recovery key": home.recovery_key.encode(),
        "the recovery key (lower case)": home.recovery_key.lower().encode(),
        "owner's key": str(owner).encode(),
        "owner's key (lower case)": str(owner).lower().encode(),
        "the recovery key's raw bytes": recovery._seed,
        "owner's key's raw bytes": owner._seed,
    }
    files = home.files()
    assert any(p.name == "owner.age" for p in files)

    for path in files:
        data = path.read_bytes()
        assert b"age-secret-key-" not in data.lower(), f"a secret key is in {path}"
        for what, secret in secrets.items():
            assert secret not in data, f"{what} is in {path}"


def test_the_recovery_key_printed_once_decrypts_every_new_clip(home):
    video = b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 700
    clip_id = home.write_clip(video)

    assert decrypt_video(home, clip_id, parse_identity(home.recovery_key)) == video
    assert home.recovery_key not in assert_ok(home.run("keys", "list")).stdout


def test_init_makes_post_quantum_hybrid_keys_by_default(home):
    assert re.search(r"AGE-SECRET-KEY-PQ-1[0-9A-Z]{58}\b", home.init_stdout)
    assert home.owner_public_key.startswith("age1pq1")
    assert "post-quantum hybrid ML-KEM-768 + X25519" in home.init_stdout
    assert isinstance(parse_identity(home.recovery_key), HybridIdentity)
    owner = Keyring(home.root / "identities").unlock("owner", PASSPHRASE)
    assert isinstance(owner, HybridIdentity)
    keys = read_household_keys(home.root / "recipients.txt")
    assert [type(k.recipient) for k in keys] == [HybridRecipient, HybridRecipient]
    lines = assert_ok(home.run("keys", "list")).stdout.strip().splitlines()
    assert all("post-quantum" in line for line in lines)


def test_init_x25519_makes_keys_that_an_older_age_decrypts(fresh_home, passphrase_file,
                                                           tmp_path):
    result = assert_ok(doorbell("init", "--x25519", "--passphrase-file", str(passphrase_file),
                                "--work-factor", WORK_FACTOR, home=fresh_home))
    recovery = re.findall(r"AGE-SECRET-KEY-1[0-9A-Z]{58}\b", result.stdout)
    assert len(set(recovery)) == 1 and "AGE-SECRET-KEY-PQ" not in result.stdout
    assert "not safe from a future quantum computer" in result.stdout
    keys = read_household_keys(fresh_home / "recipients.txt")
    assert [type(k.recipient) for k in keys] == [X25519Recipient, X25519Recipient]

    age = shutil.which("age")  # Debian 12's age 1.1.1, which knows no post-quantum key
    if age is None:
        pytest.skip("the age CLI is not installed")
    from .conftest import InitialisedHome

    made = InitialisedHome(fresh_home, passphrase_file, result.stdout, recovery[0], "")
    video = b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 700
    clip = made.video_path(made.write_clip(video))
    key = tmp_path / "recovery.txt"
    key.write_text(recovery[0] + "\n")
    out = subprocess.run([age, "-d", "-i", str(key), str(clip)], capture_output=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == video


def test_keys_add_makes_a_hybrid_identity_or_with_x25519_an_older_one(home, tmp_path):
    carol_file = tmp_path / "carol.txt"
    carol_file.write_text("carol's own long passphrase\n")
    added = assert_ok(home.run("keys", "add", "carol", "--passphrase-file", str(carol_file),
                               "--work-factor", WORK_FACTOR)).stdout
    assert "post-quantum key age1pq1" in added and "Warning" not in added
    dave = assert_ok(home.run("keys", "add", "dave", "--x25519", "--passphrase-file",
                              str(carol_file), "--work-factor", WORK_FACTOR)).stdout
    assert "X25519 key age1" in dave
    assert "Warning: dave has an X25519 key" in dave  # every new clip is no safer than X25519
    keyring = Keyring(home.root / "identities")
    assert isinstance(keyring.unlock("carol", "carol's own long passphrase"), HybridIdentity)
    assert isinstance(keyring.unlock("dave", "carol's own long passphrase"), X25519Identity)
    listing = assert_ok(home.run("keys", "list")).stdout
    assert any(line.startswith("dave") and "X25519 only" in line for line in listing.splitlines())
    assert "Warning: dave has an X25519 key" in listing
    entries = [e for e in home.audit_entries() if e.action == "keys.add"]
    assert [e.details["key_type"] for e in entries] == ["post-quantum", "X25519"]


def test_keys_add_x25519_with_a_given_public_key_is_refused(home):
    before = (home.root / "recipients.txt").read_bytes()
    result = home.run("keys", "add", "bob", str(HybridIdentity.generate().recipient), "--x25519")
    assert "used as it is" in assert_one_sentence(result, 1)
    assert (home.root / "recipients.txt").read_bytes() == before


def test_a_hybrid_public_key_added_decrypts_the_next_clip(home):
    bob = HybridIdentity.generate()
    assert_ok(home.run("keys", "add", "bob", str(bob.recipient)))
    video = b"\x00\x00\x00\x20ftypisom" + b"for bob" * 9000
    clip_id = home.write_clip(video, start_us=1_714_564_900_000_000)
    assert decrypt_video(home, clip_id, bob) == video
    assert decrypt_video(home, clip_id, parse_identity(home.recovery_key)) == video
    assert Path(home.video_path(clip_id)).read_bytes().count(b"\n-> mlkem768x25519 ") == 3


# -- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["clips"],
        ["clips", "export", "20240501T120000Z-abcdef"],  # no -o
        ["clips", "list", "--jsn"],
        ["keys"],
        ["keys", "add"],
        ["init", "--work-factor", "fifteen"],
        ["verify", "--bogus"],
    ],
    ids=lambda a: " ".join(a) or "(nothing)",
)
def test_usage_errors_exit_2_without_a_traceback(fresh_home, args):
    result = doorbell(*args, home=fresh_home)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "usage:" in result.stderr


# -- keys --------------------------------------------------------------------------------------


def test_keys_list_shows_the_owner_and_the_recovery_key(home):
    out = assert_ok(home.run("keys", "list")).stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["owner", home.owner_public_key]
    assert lines[1].split()[0] == "recovery"
    assert "AGE-SECRET-KEY" not in out


def test_a_member_added_by_public_key_can_decrypt_the_next_clip(home):
    bob = X25519Identity.generate()
    before = home.write_clip(b"before bob" * 1000, start_us=1_714_564_800_000_000)

    added = assert_ok(home.run("keys", "add", "bob", str(bob.recipient)))
    assert "bob" in added.stdout

    listing = assert_ok(home.run("keys", "list")).stdout
    assert any(line.split()[:2] == ["bob", str(bob.recipient)] for line in listing.splitlines())
    after = home.write_clip(b"after bob" * 1000, start_us=1_714_564_860_000_000)
    assert decrypt_video(home, after, bob) == b"after bob" * 1000
    with pytest.raises(NoIdentityMatchError):  # clips recorded before are not re-encrypted
        decrypt_video(home, before, bob)
    owner = Keyring(home.root / "identities").unlock("owner", PASSPHRASE)
    assert decrypt_video(home, after, owner) == b"after bob" * 1000
    entry = home.audit_entries()[-1]
    assert (entry.action, entry.details["member"], entry.details["key"]) == (
        "keys.add", "bob", str(bob.recipient)
    )


def test_a_removed_member_cannot_decrypt_new_clips(home):
    bob = X25519Identity.generate()
    assert_ok(home.run("keys", "add", "bob", str(bob.recipient)))

    assert_ok(home.run("keys", "remove", "bob"))

    listing = assert_ok(home.run("keys", "list")).stdout
    assert "bob" not in listing and "owner" in listing
    clip_id = home.write_clip(b"after removal" * 500)
    with pytest.raises(NoIdentityMatchError):
        decrypt_video(home, clip_id, bob)
    assert decrypt_video(home, clip_id, parse_identity(home.recovery_key)) == b"after removal" * 500
    entry = home.audit_entries()[-1]
    assert (entry.action, entry.details["member"]) == ("keys.remove", "bob")
    assert "no member" in assert_one_sentence(home.run("keys", "remove", "bob"), 1)


@pytest.mark.parametrize(
    "name, key",
    [
        ("bob", "age1notakey"),
        ("bob", "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"),
        ("Bob", None),
        ("../bob", None),
        ("owner", None),
        ("recovery", None),
    ],
    ids=["bad-key", "secret-key", "upper-case-name", "path-name", "existing", "reserved"],
)
def test_keys_add_refuses_bad_input_and_changes_nothing(home, name, key):
    key = key or str(X25519Identity.generate().recipient)
    before = (home.root / "recipients.txt").read_bytes()
    entries = len(home.audit_entries())

    assert_one_sentence(home.run("keys", "add", name, key), 1)

    assert (home.root / "recipients.txt").read_bytes() == before
    assert len(home.audit_entries()) == entries


def test_keys_add_without_a_recipient_creates_a_passphrase_identity(home, tmp_path):
    carol_file = tmp_path / "carol.txt"
    carol_file.write_text("carol's own long passphrase\n")

    assert_ok(home.run("keys", "add", "carol", "--passphrase-file", str(carol_file),
                       "--work-factor", WORK_FACTOR))

    carol = Keyring(home.root / "identities").unlock("carol", "carol's own long passphrase")
    assert "passphrase on this device" in next(
        line for line in assert_ok(home.run("keys", "list")).stdout.splitlines()
        if line.startswith("carol")
    )
    clip_id = home.write_clip(b"for carol" * 300)
    assert decrypt_video(home, clip_id, carol) == b"for carol" * 300


def test_keys_passwd_changes_the_passphrase_but_not_the_key(home, tmp_path):
    keyring = Keyring(home.root / "identities")
    before = keyring.unlock("owner", PASSPHRASE)
    new_file = tmp_path / "new.txt"
    new_file.write_text(NEW_PASSPHRASE + "\n")

    assert_ok(home.run("keys", "passwd", "owner", "--passphrase-file", str(home.passphrase_file),
                       "--new-passphrase-file", str(new_file)))

    assert str(keyring.unlock("owner", NEW_PASSPHRASE)) == str(before)
    with pytest.raises(WrongPassphraseError):
        keyring.unlock("owner", PASSPHRASE)
    assert keyring.work_factor("owner") == int(WORK_FACTOR)
    assert home.audit_entries()[-1].action == "keys.passwd"
    assert "intact" in assert_ok(home.run("audit", "--verify")).stdout


def test_keys_passwd_from_the_environment(home):
    assert_ok(home.run("keys", "passwd", "owner", env={
        "DOORBELL_PASSPHRASE": PASSPHRASE, "DOORBELL_NEW_PASSPHRASE": NEW_PASSPHRASE,
    }))
    Keyring(home.root / "identities").unlock("owner", NEW_PASSPHRASE)


@pytest.mark.parametrize("old, new", [("wrong-passphrase-here", NEW_PASSPHRASE),
                                      (PASSPHRASE, "password")],
                         ids=["wrong-old", "weak-new"])
def test_keys_passwd_refuses_and_keeps_the_old_passphrase(home, tmp_path, old, new):
    old_file, new_file = tmp_path / "old.txt", tmp_path / "new.txt"
    old_file.write_text(old + "\n")
    new_file.write_text(new + "\n")
    identity_file = home.root / "identities" / "owner.age"
    before = identity_file.read_bytes()

    result = home.run("keys", "passwd", "owner", "--passphrase-file", str(old_file),
                      "--new-passphrase-file", str(new_file))

    assert "passphrase" in assert_one_sentence(result, 1)
    assert identity_file.read_bytes() == before
    Keyring(home.root / "identities").unlock("owner", PASSPHRASE)


def test_keys_passwd_for_a_member_without_an_identity_here_fails_cleanly(home):
    bob = X25519Identity.generate()
    assert_ok(home.run("keys", "add", "bob", str(bob.recipient)))
    assert_one_sentence(home.run("keys", "passwd", "bob",
                                 env={"DOORBELL_PASSPHRASE": PASSPHRASE}), 1)
    assert_one_sentence(home.run("keys", "passwd", "nobody",
                                 env={"DOORBELL_PASSPHRASE": PASSPHRASE}), 1)


def test_no_secret_key_is_on_disk_after_key_changes(home, tmp_path):
    carol_file = tmp_path / "carol.txt"
    carol_file.write_text("carol's own long passphrase\n")
    assert_ok(home.run("keys", "add", "carol", "--passphrase-file", str(carol_file),
                       "--work-factor", WORK_FACTOR))
    assert_ok(home.run("keys", "passwd", "owner", env={
        "DOORBELL_PASSPHRASE": PASSPHRASE, "DOORBELL_NEW_PASSPHRASE": NEW_PASSPHRASE,
    }))
    keyring = Keyring(home.root / "identities")
    secrets = [str(keyring.unlock("owner", NEW_PASSPHRASE)),
               str(keyring.unlock("carol", "carol's own long passphrase")), home.recovery_key]

    for path in home.files():
        data = path.read_bytes()
        assert b"age-secret-key-" not in data.lower(), path
        assert not any(s.encode() in data or s.lower().encode() in data for s in secrets), path


def test_a_key_change_that_cannot_be_audited_is_not_made(home):
    log = home.root / "audit.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"member":"owner"', b'"member":"0wner"', 1))
    before = (home.root / "recipients.txt").read_bytes()

    result = home.run("keys", "add", "mallory", str(X25519Identity.generate().recipient))

    assert_one_sentence(result, 1)
    assert (home.root / "recipients.txt").read_bytes() == before
