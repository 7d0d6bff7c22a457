"""Members' identities: an age file encrypted to a passphrase is the only login there is.

scrypt is kept at 2^15 here (the product's floor); only the floor/cap logic of the calibration
is exercised, with a small memory budget, never a full one-second calibration.
"""

import io
import os
import shutil
import sys

import pytest

from doorbell.storage.age import X25519Identity, decrypt, encrypt
from doorbell.storage.age.header import read_header
from doorbell.storage.errors import KeyringError, WeakPassphraseError, WrongPassphraseError
from doorbell.storage.keyring import MAX_WORK_FACTOR, Keyring, calibrate_work_factor
from tests.age_cli import HYBRID_AGE_DIR

from .tty import run_on_tty

try:
    import pty
except ImportError:  # pragma: no cover - no pty module (Windows)
    pty = None

AGE = shutil.which("age")
needs_tty = pytest.mark.skipif(
    AGE is None or pty is None or not sys.platform.startswith(("linux", "darwin")),
    reason="needs the `age` CLI (Debian package `age`) and a pseudo-terminal",
)
# identities are post-quantum hybrid by default: reading them takes age 1.3.0 or later
AGE_PQ = str(HYBRID_AGE_DIR / "age") if HYBRID_AGE_DIR else None
needs_pq_tty = pytest.mark.skipif(
    AGE_PQ is None or pty is None or not sys.platform.startswith(("linux", "darwin")),
    reason="needs age 1.3.0 or later (see tests/age_cli.py) and a pseudo-terminal",
)

WF = 15
PASSPHRASE = "violet-tram-under-rain-7"
NEW_PASSPHRASE = "quiet lanterns over the harbour"


@pytest.fixture
def keyring(tmp_path):
    return Keyring(tmp_path / "identities")


@pytest.fixture
def alice(keyring):
    return keyring.create("alice", PASSPHRASE, work_factor=WF)


# -- create and unlock -------------------------------------------------------------------------


def test_a_created_identity_unlocks_with_its_passphrase(keyring, alice):
    unlocked = keyring.unlock("alice", PASSPHRASE)

    assert str(unlocked) == str(alice)
    assert str(unlocked.recipient) == str(alice.recipient)
    assert keyring.members() == ["alice"]
    assert keyring.exists("alice")
    assert keyring.work_factor("alice") == WF


def test_the_identity_file_is_a_private_passphrase_age_file_without_the_key_in_clear(
    keyring, alice
):
    path = keyring.path_for("alice")
    data = path.read_bytes()

    # private: the directory lets no one but its owner in (the file is 0640 for the
    # replicator's ACL, deploy/install.sh)
    assert path.parent.stat().st_mode & 0o777 == 0o700 and path.stat().st_mode & 0o777 == 0o640
    assert data.startswith(b"age-encryption.org/v1\n")
    header = read_header(io.BytesIO(data))
    assert [s.type for s in header.stanzas] == ["scrypt"]
    assert str(alice).encode() not in data
    assert str(alice).lower().encode() not in data
    assert b"AGE-SECRET-KEY" not in data.upper()


def test_a_wrong_passphrase_is_refused(keyring, alice):
    with pytest.raises(WrongPassphraseError):
        keyring.unlock("alice", "violet-tram-under-rain-8")
    with pytest.raises(WrongPassphraseError):
        keyring.unlock("alice", "")


def test_an_unknown_member_is_not_a_wrong_passphrase(keyring, alice):
    with pytest.raises(KeyringError) as caught:
        keyring.unlock("bob", PASSPHRASE)
    assert not isinstance(caught.value, WrongPassphraseError)
    assert "bob" in str(caught.value)


def test_creating_a_member_twice_is_refused_and_keeps_the_first_key(keyring, alice):
    with pytest.raises(KeyringError):
        keyring.create("alice", NEW_PASSPHRASE, work_factor=WF)
    assert str(keyring.unlock("alice", PASSPHRASE)) == str(alice)


@pytest.mark.parametrize(
    "weak",
    [
        "",  # empty
        "k7#pQ2",  # short
        "password",  # common
        "Password123!",  # common with the usual suffix
        "raspberry1",  # the Pi's old default
        "aaaaaaaaaaaaaaaa",  # repetitive
        "abababababababab",  # repetitive
        "1212121212",
    ],
    ids=["empty", "short", "common", "common-suffixed", "pi-default", "repeat-1", "repeat-2",
         "repeat-digits"],
)
def test_weak_passphrases_are_refused_and_nothing_is_written(keyring, weak):
    with pytest.raises(WeakPassphraseError) as caught:
        keyring.create("alice", weak, work_factor=WF)
    assert str(caught.value)  # says why, in words
    assert not keyring.exists("alice")
    assert keyring.members() == []


def test_member_names_cannot_escape_the_identities_directory(keyring):
    for name in ("../alice", "alice/../../x", "/etc/passwd", "Alice", "recovery", ""):
        with pytest.raises(ValueError):
            keyring.create(name, PASSPHRASE, work_factor=WF)
    assert not any(keyring.directory.parent.rglob("*.age"))


# -- changing a passphrase ---------------------------------------------------------------------


def test_changing_the_passphrase_keeps_the_same_identity(keyring, alice):
    keyring.change_passphrase("alice", PASSPHRASE, NEW_PASSPHRASE, work_factor=WF)

    assert str(keyring.unlock("alice", NEW_PASSPHRASE)) == str(alice)
    with pytest.raises(WrongPassphraseError):
        keyring.unlock("alice", PASSPHRASE)


def test_changing_the_passphrase_needs_the_old_one(keyring, alice):
    before = keyring.path_for("alice").read_bytes()
    with pytest.raises(WrongPassphraseError):
        keyring.change_passphrase("alice", "not-the-passphrase-1", NEW_PASSPHRASE, work_factor=WF)
    assert keyring.path_for("alice").read_bytes() == before


def test_changing_to_a_weak_passphrase_is_refused(keyring, alice):
    with pytest.raises(WeakPassphraseError):
        keyring.change_passphrase("alice", PASSPHRASE, "password", work_factor=WF)
    assert str(keyring.unlock("alice", PASSPHRASE)) == str(alice)


def test_an_interrupted_change_leaves_the_old_file_usable(keyring, alice, monkeypatch):
    before = keyring.path_for("alice").read_bytes()
    real_replace = os.replace

    def power_cut(src, dst, *args, **kwargs):
        raise OSError(5, "Input/output error (simulated power cut before the rename)")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError):
        keyring.change_passphrase("alice", PASSPHRASE, NEW_PASSPHRASE, work_factor=WF)
    monkeypatch.setattr(os, "replace", real_replace)

    assert keyring.path_for("alice").read_bytes() == before
    assert str(keyring.unlock("alice", PASSPHRASE)) == str(alice)
    with pytest.raises(WrongPassphraseError):
        keyring.unlock("alice", NEW_PASSPHRASE)
    assert keyring.members() == ["alice"]  # the leftover is not mistaken for a member

    # Trying again after the interruption works.
    keyring.change_passphrase("alice", PASSPHRASE, NEW_PASSPHRASE, work_factor=WF)
    assert str(keyring.unlock("alice", NEW_PASSPHRASE)) == str(alice)


def test_an_interruption_while_writing_the_new_file_leaves_the_old_one(keyring, alice, monkeypatch):
    before = keyring.path_for("alice").read_bytes()

    def failing_fsync(fd):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        keyring.change_passphrase("alice", PASSPHRASE, NEW_PASSPHRASE, work_factor=WF)
    monkeypatch.undo()

    assert keyring.path_for("alice").read_bytes() == before
    assert str(keyring.unlock("alice", PASSPHRASE)) == str(alice)


def test_removing_a_member_deletes_their_identity_file(keyring, alice):
    keyring.remove("alice")
    assert keyring.members() == []
    with pytest.raises(KeyringError):
        keyring.unlock("alice", PASSPHRASE)
    with pytest.raises(KeyringError):
        keyring.remove("alice")


# -- the scrypt work factor --------------------------------------------------------------------


def test_calibration_respects_the_floor_and_the_memory_cap():
    # scrypt needs 128 * r * 2^N bytes with r = 8: 2^15 is 32 MiB, 2^16 is 64 MiB.
    assert calibrate_work_factor(target_s=1000.0, max_memory_bytes=1024 * 1024) == 15  # floor
    assert calibrate_work_factor(target_s=1e-6, max_memory_bytes=1 << 40) == 15  # floor
    capped = calibrate_work_factor(target_s=1000.0, max_memory_bytes=64 * 1024 * 1024)
    assert capped == 16
    assert 128 * 8 * (1 << capped) <= 64 * 1024 * 1024
    assert calibrate_work_factor(target_s=1e9, max_memory_bytes=1 << 50) == MAX_WORK_FACTOR


# -- the stock age CLI uses the identity file --------------------------------------------------




@needs_pq_tty
def test_the_stock_age_cli_decrypts_a_clip_with_the_identity_file_and_the_passphrase(
    keyring, alice, tmp_path
):
    plaintext = os.urandom(3 * 65536 + 123)
    clip = tmp_path / "clip.mp4.age"
    with clip.open("wb") as handle, encrypt(handle, [alice.recipient]) as writer:
        writer.write(plaintext)
    out = tmp_path / "clip.mp4"
    identity_file = keyring.path_for("alice")

    code, transcript = run_on_tty(
        [AGE_PQ, "-d", "-i", str(identity_file), "-o", str(out), str(clip)], [PASSPHRASE]
    )

    assert code == 0, transcript
    assert out.read_bytes() == plaintext

    code, transcript = run_on_tty(
        [AGE_PQ, "-d", "-i", str(identity_file), "-o", str(tmp_path / "no"), str(clip)],
        ["violet-tram-under-rain-8"],
    )
    assert code != 0, transcript
    assert not (tmp_path / "no").exists() or (tmp_path / "no").read_bytes() == b""


@needs_tty
def test_an_age_older_than_1_3_decrypts_with_an_x25519_identity_file(keyring, tmp_path):
    bob = keyring.create("bob", PASSPHRASE, work_factor=WF, post_quantum=False)
    clip = tmp_path / "clip.age"
    with clip.open("wb") as handle, encrypt(handle, [bob.recipient]) as writer:
        writer.write(b"for an older age")
    out = tmp_path / "out"

    code, transcript = run_on_tty(
        [AGE, "-d", "-i", str(keyring.path_for("bob")), "-o", str(out), str(clip)], [PASSPHRASE]
    )

    assert code == 0, transcript
    assert out.read_bytes() == b"for an older age"


@needs_pq_tty
def test_the_stock_age_cli_accepts_the_identity_file_after_a_passphrase_change(
    keyring, alice, tmp_path
):
    keyring.change_passphrase("alice", PASSPHRASE, NEW_PASSPHRASE, work_factor=WF)
    clip = tmp_path / "clip.age"
    with clip.open("wb") as handle, encrypt(handle, [alice.recipient]) as writer:
        writer.write(b"hello from the front door")
    out = tmp_path / "out"

    code, transcript = run_on_tty(
        [AGE_PQ, "-d", "-i", str(keyring.path_for("alice")), "-o", str(out), str(clip)],
        [NEW_PASSPHRASE],
    )

    assert code == 0, transcript
    assert out.read_bytes() == b"hello from the front door"


def test_an_unlocked_identity_decrypts_what_was_encrypted_to_its_recipient(keyring, alice):
    buffer = io.BytesIO()
    with encrypt(buffer, [alice.recipient]) as writer:
        writer.write(b"footage")
    unlocked = keyring.unlock("alice", PASSPHRASE)
    assert decrypt(io.BytesIO(buffer.getvalue()), [unlocked]).read() == b"footage"
    stranger = X25519Identity.generate()
    with pytest.raises(Exception, match="no identity matches"):
        decrypt(io.BytesIO(buffer.getvalue()), [stranger])
