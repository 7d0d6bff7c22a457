"""storage.age against two independent age implementations, in both directions.

The stock `age` CLI (Go, Debian package `age`) and `pyrage` (Rust, the `age` crate) must read
every file we write and we must read every file they write: the footage has to stay the owner's
even without this software: every stored file is a standard age v1 file.

`age` reads passphrases from /dev/tty, never from stdin, so the passphrase cases run it on a
pseudo-terminal (stdlib `pty`) and answer its prompts there.
"""

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from doorbell.storage import age
from doorbell.storage.age.armor import BEGIN, armor, dearmor

from .sealing import open_strict, seal
from .tty import run_on_tty

try:
    import pyrage
    import pyrage.passphrase
    import pyrage.x25519
except ImportError:  # pragma: no cover - exercised only where pyrage is missing
    pyrage = None

try:
    import pty
except ImportError:  # pragma: no cover - no pty module (Windows)
    pty = None

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")

needs_age = pytest.mark.skipif(
    AGE is None, reason="the `age` CLI is not on PATH (install the Debian package `age`)"
)
needs_keygen = pytest.mark.skipif(
    AGE is None or AGE_KEYGEN is None,
    reason="`age` and `age-keygen` are not on PATH (install the Debian package `age`)",
)
needs_pyrage = pytest.mark.skipif(
    pyrage is None, reason="pyrage is not importable (pip install pyrage, the dev extra)"
)
needs_tty = pytest.mark.skipif(
    AGE is None or pty is None or not sys.platform.startswith(("linux", "darwin")),
    reason="needs the `age` CLI and a pseudo-terminal (age reads passphrases from /dev/tty)",
)

CHUNK = 64 * 1024
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10 * 1024 * 1024]
SIZE_IDS = ["0", "1", "64KiB-1", "64KiB", "64KiB+1", "3x64KiB", "10MiB"]
PASSPHRASE = "correct horse battery staple"
TEST_WORK_FACTOR = 10  # fast in tests; the product itself calibrates to >= 2^15 at init


# -- helpers ------------------------------------------------------------------------------------






def run_age(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AGE, *args], capture_output=True, timeout=60, check=False)


def run_ok(*argv: str) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, f"{argv} failed: {result.stderr.decode(errors='replace')}"
    return result


def age_decrypt(key: Path, clip: Path) -> bytes:
    """`age -d -i key clip`, plaintext from stdout (with -o, age creates no file for 0 bytes)."""
    return run_ok(AGE, "-d", "-i", str(key), str(clip)).stdout


def write_secret(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    path.chmod(0o600)
    return path




@pytest.fixture
def plain(age_plaintext, tmp_path):
    """plain(size) -> (plaintext bytes, path of a file holding them)."""

    def make(size: int, seed: int = 0) -> tuple[bytes, Path]:
        data = age_plaintext(size, seed)
        path = tmp_path / f"plain-{size}-{seed}.bin"
        path.write_bytes(data)
        return data, path

    return make


# -- X25519 round trips with the age CLI ---------------------------------------------------------


@needs_age
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_ours_decrypted_by_age_cli(size, plain, tmp_path):
    plaintext, _ = plain(size)
    identity = age.X25519Identity.generate()
    (tmp_path / "clip.age").write_bytes(seal(plaintext, [identity.recipient]))
    key = write_secret(tmp_path / "key.txt", f"{identity}\n")

    assert age_decrypt(key, tmp_path / "clip.age") == plaintext


@needs_age
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_age_cli_decrypted_by_us(size, plain, tmp_path):
    plaintext, path = plain(size)
    identity = age.X25519Identity.generate()
    out = tmp_path / "clip.age"

    run_ok(AGE, "-e", "-r", str(identity.recipient), "-o", str(out), str(path))

    assert open_strict(out.read_bytes(), [identity]) == plaintext


# -- X25519 round trips with pyrage ---------------------------------------------------------------


@needs_pyrage
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_ours_decrypted_by_pyrage(size, age_plaintext):
    plaintext = age_plaintext(size)
    identity = age.X25519Identity.generate()
    ciphertext = seal(plaintext, [identity.recipient])

    theirs = pyrage.x25519.Identity.from_str(str(identity))
    assert pyrage.decrypt(ciphertext, [theirs]) == plaintext


@needs_pyrage
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_pyrage_decrypted_by_us(size, age_plaintext):
    plaintext = age_plaintext(size)
    identity = age.X25519Identity.generate()
    recipient = pyrage.x25519.Recipient.from_str(str(identity.recipient))

    ciphertext = pyrage.encrypt(plaintext, [recipient])

    assert open_strict(ciphertext, [identity]) == plaintext


@needs_pyrage
def test_key_strings_agree_with_pyrage():
    ours = age.X25519Identity.generate()
    theirs = pyrage.x25519.Identity.from_str(str(ours))
    assert str(theirs.to_public()) == str(ours.recipient)
    generated = pyrage.x25519.Identity.generate()
    assert str(age.parse_identity(str(generated)).recipient) == str(generated.to_public())
    assert str(age.parse_recipient(str(generated.to_public()))) == str(generated.to_public())


# -- several recipients -------------------------------------------------------------------------


@needs_age
@needs_pyrage
def test_three_recipients_each_identity_decrypts_alone(age_plaintext, tmp_path):
    plaintext = age_plaintext(2 * CHUNK + 4321, seed=3)
    identities = [age.X25519Identity.generate() for _ in range(3)]
    clip = tmp_path / "clip.age"
    clip.write_bytes(seal(plaintext, [i.recipient for i in identities]))
    assert clip.read_bytes().count(b"\n-> X25519 ") == 3

    for n, identity in enumerate(identities):
        assert open_strict(clip.read_bytes(), [identity]) == plaintext
        theirs = pyrage.x25519.Identity.from_str(str(identity))
        assert pyrage.decrypt(clip.read_bytes(), [theirs]) == plaintext
        key = write_secret(tmp_path / f"key{n}.txt", f"{identity}\n")
        assert age_decrypt(key, clip) == plaintext

    stranger = age.X25519Identity.generate()
    with pytest.raises(age.NoIdentityMatchError):
        open_strict(clip.read_bytes(), [stranger])
    key = write_secret(tmp_path / "stranger.txt", f"{stranger}\n")
    assert run_age("-d", "-i", str(key), "-o", str(tmp_path / "nope"), str(clip)).returncode != 0


@needs_age
def test_age_cli_three_recipients_decrypted_by_us(plain, tmp_path):
    plaintext, path = plain(CHUNK + 17, seed=4)
    identities = [age.X25519Identity.generate() for _ in range(3)]
    out = tmp_path / "clip.age"
    recipient_args = [arg for i in identities for arg in ("-r", str(i.recipient))]

    run_ok(AGE, "-e", *recipient_args, "-o", str(out), str(path))

    for identity in identities:
        assert open_strict(out.read_bytes(), [identity]) == plaintext
    with pytest.raises(age.NoIdentityMatchError):
        open_strict(out.read_bytes(), [age.X25519Identity.generate()])


@needs_pyrage
def test_pyrage_three_recipients_decrypted_by_us(age_plaintext):
    plaintext = age_plaintext(CHUNK + 17, seed=5)
    identities = [age.X25519Identity.generate() for _ in range(3)]
    recipients = [pyrage.x25519.Recipient.from_str(str(i.recipient)) for i in identities]

    ciphertext = pyrage.encrypt(plaintext, recipients)

    for identity in identities:
        assert open_strict(ciphertext, [identity]) == plaintext


# -- keys: our strings in age, age-keygen's strings in ours ---------------------------------------


@needs_keygen
def test_our_identity_file_is_read_by_age_keygen(tmp_path):
    identity = age.X25519Identity.generate()
    key = write_secret(tmp_path / "key.txt", f"# household member\n{identity}\n")

    result = run_ok(AGE_KEYGEN, "-y", str(key))

    assert result.stdout.decode().strip() == str(identity.recipient)


@needs_keygen
def test_age_keygen_identity_is_parsed_by_us(plain, tmp_path):
    key = tmp_path / "key.txt"
    run_ok(AGE_KEYGEN, "-o", str(key))
    public = run_ok(AGE_KEYGEN, "-y", str(key)).stdout.decode().strip()
    text = key.read_text()
    assert f"# public key: {public}" in text

    identities = age.parse_identities_text(text)  # comments are skipped

    assert len(identities) == 1
    assert str(identities[0].recipient) == public
    assert age.parse_recipient(public) == identities[0].recipient
    plaintext, path = plain(CHUNK + 1, seed=6)
    # age encrypts to age-keygen's key, we decrypt with our parse of it ...
    clip = tmp_path / "from-age.age"
    recipients_file = tmp_path / "recipients.txt"
    recipients_file.write_text(f"# alice\n{public}\n")
    run_ok(AGE, "-e", "-R", str(recipients_file), "-o", str(clip), str(path))
    assert open_strict(clip.read_bytes(), identities) == plaintext
    # ... and we encrypt to the parsed public key, age decrypts with age-keygen's file.
    ours = tmp_path / "from-us.age"
    ours.write_bytes(seal(plaintext, [age.parse_recipient(public)]))
    assert age_decrypt(key, ours) == plaintext


@needs_keygen
def test_key_case_rules_match_age(tmp_path):
    """age wants identities upper case and recipients lower case; so do we."""
    identity = age.X25519Identity.generate()
    clip = tmp_path / "clip.age"
    clip.write_bytes(seal(b"x", [identity.recipient]))
    lower = write_secret(tmp_path / "lower.txt", f"{str(identity).lower()}\n")
    assert run_age("-d", "-i", str(lower), str(clip)).returncode != 0
    with pytest.raises(age.AgeError):
        age.parse_identity(str(identity).lower())

    upper = str(identity.recipient).upper()
    assert run_age("-e", "-r", upper, "-o", str(tmp_path / "o"), str(lower)).returncode != 0
    with pytest.raises(age.AgeError):
        age.parse_recipient(upper)


# -- armor --------------------------------------------------------------------------------------


@needs_age
@pytest.mark.parametrize("size", [0, 100, 2 * CHUNK + 7], ids=["0", "100", "2x64KiB+7"])
def test_age_cli_armored_decrypted_by_us(size, plain, tmp_path):
    plaintext, path = plain(size, seed=7)
    identity = age.X25519Identity.generate()
    out = tmp_path / "clip.age.asc"

    run_ok(AGE, "-e", "-a", "-r", str(identity.recipient), "-o", str(out), str(path))

    text = out.read_bytes()
    assert text.startswith(BEGIN)
    assert open_strict(dearmor(text), [identity]) == plaintext


@needs_age
def test_our_armor_decrypted_by_age_cli(plain, tmp_path):
    plaintext, _ = plain(2 * CHUNK + 7, seed=8)
    identity = age.X25519Identity.generate()
    clip = tmp_path / "clip.age.asc"
    clip.write_bytes(armor(seal(plaintext, [identity.recipient])))
    key = write_secret(tmp_path / "key.txt", f"{identity}\n")

    assert age_decrypt(key, clip) == plaintext


@needs_pyrage
def test_armor_round_trips_with_pyrage(age_plaintext):
    plaintext = age_plaintext(CHUNK + 300, seed=9)
    identity = age.X25519Identity.generate()
    theirs = pyrage.x25519.Identity.from_str(str(identity))

    armored = pyrage.encrypt(plaintext, [theirs.to_public()], armored=True)
    assert open_strict(dearmor(armored), [identity]) == plaintext
    assert pyrage.decrypt(armor(seal(plaintext, [identity.recipient])), [theirs]) == plaintext


# -- scrypt (passphrase) recipients -------------------------------------------------------------


@needs_pyrage
def test_our_scrypt_decrypted_by_pyrage(age_plaintext):
    plaintext = age_plaintext(CHUNK + 5, seed=10)
    ciphertext = seal(plaintext, [age.ScryptRecipient(PASSPHRASE, TEST_WORK_FACTOR)])
    assert f" {TEST_WORK_FACTOR}\n".encode() in ciphertext.split(b"\n---")[0]

    assert pyrage.passphrase.decrypt(ciphertext, PASSPHRASE) == plaintext
    with pytest.raises(pyrage.DecryptError):
        pyrage.passphrase.decrypt(ciphertext, PASSPHRASE + "!")


@needs_pyrage
def test_pyrage_scrypt_decrypted_by_us(age_plaintext):
    # pyrage calibrates its own work factor (about a second); ours accepts up to 2^22.
    plaintext = age_plaintext(CHUNK + 6, seed=11)
    ciphertext = pyrage.passphrase.encrypt(plaintext, PASSPHRASE)

    assert open_strict(ciphertext, [age.ScryptIdentity(PASSPHRASE)]) == plaintext


@needs_tty
def test_our_scrypt_decrypted_by_age_cli_on_a_tty(plain, tmp_path):
    plaintext, _ = plain(CHUNK + 7, seed=12)
    clip = tmp_path / "clip.age"
    clip.write_bytes(seal(plaintext, [age.ScryptRecipient(PASSPHRASE, TEST_WORK_FACTOR)]))
    out = tmp_path / "out"

    code, transcript = run_on_tty([AGE, "-d", "-o", str(out), str(clip)], [PASSPHRASE])

    assert code == 0, transcript
    assert "passphrase" in transcript.lower()
    assert out.read_bytes() == plaintext

    code, transcript = run_on_tty([AGE, "-d", "-o", str(tmp_path / "bad"), str(clip)], ["wrong"])
    assert code != 0
    assert "incorrect passphrase" in transcript


@needs_tty
def test_age_cli_scrypt_decrypted_by_us(plain, tmp_path):
    plaintext, path = plain(CHUNK + 8, seed=13)
    clip = tmp_path / "clip.age"

    code, transcript = run_on_tty(
        [AGE, "-e", "-p", "-o", str(clip), str(path)], [PASSPHRASE, PASSPHRASE]
    )

    assert code == 0, transcript
    assert b"\n-> scrypt " in clip.read_bytes()
    assert open_strict(clip.read_bytes(), [age.ScryptIdentity(PASSPHRASE)]) == plaintext
    with pytest.raises(age.NoIdentityMatchError):
        age.decrypt(io.BytesIO(clip.read_bytes()), [age.ScryptIdentity("not it")])


# -- passphrase-protected identity files (how household members log in) -------------------------


def _protected_identity_file(identity: age.X25519Identity) -> bytes:
    """Like `age-keygen | age -p`: the identity line plus a newline, encrypted to a passphrase."""
    return seal(f"{identity}\n".encode(), [age.ScryptRecipient(PASSPHRASE, TEST_WORK_FACTOR)])


@needs_tty
def test_our_protected_identity_file_is_used_by_age_cli(plain, tmp_path):
    identity = age.X25519Identity.generate()
    idfile = write_secret(tmp_path / "alice.key.age", _protected_identity_file(identity))
    plaintext, _ = plain(3 * CHUNK + 99, seed=14)
    clip = tmp_path / "clip.mp4.age"
    clip.write_bytes(seal(plaintext, [identity.recipient]))
    out = tmp_path / "clip.mp4"

    code, transcript = run_on_tty(
        [AGE, "-d", "-i", str(idfile), "-o", str(out), str(clip)], [PASSPHRASE]
    )

    assert code == 0, transcript
    assert "identity file" in transcript  # age knew it was unlocking an identity file
    assert out.read_bytes() == plaintext


@needs_pyrage
def test_our_protected_identity_file_is_used_by_pyrage(age_plaintext):
    identity = age.X25519Identity.generate()
    idfile = _protected_identity_file(identity)
    plaintext = age_plaintext(CHUNK + 9, seed=15)
    clip = seal(plaintext, [identity.recipient])

    unlocked = pyrage.passphrase.decrypt(idfile, PASSPHRASE)

    assert unlocked == f"{identity}\n".encode()
    theirs = pyrage.x25519.Identity.from_str(unlocked.decode().strip())
    assert pyrage.decrypt(clip, [theirs]) == plaintext


@needs_tty
def test_age_protected_identity_file_is_unlocked_by_us(plain, tmp_path):
    """`age-keygen -o key; age -p key`: we unlock it and decrypt a clip age made for it."""
    if AGE_KEYGEN is None:
        pytest.skip("age-keygen is not on PATH (install the Debian package `age`)")
    key = tmp_path / "key.txt"
    run_ok(AGE_KEYGEN, "-o", str(key))
    public = run_ok(AGE_KEYGEN, "-y", str(key)).stdout.decode().strip()
    idfile = tmp_path / "key.txt.age"
    code, transcript = run_on_tty(
        [AGE, "-e", "-p", "-o", str(idfile), str(key)], [PASSPHRASE, PASSPHRASE]
    )
    assert code == 0, transcript
    key.unlink()  # from here on only the protected file exists
    plaintext, path = plain(CHUNK + 10, seed=16)
    clip = tmp_path / "clip.age"
    run_ok(AGE, "-e", "-r", public, "-o", str(clip), str(path))

    unlocked = open_strict(idfile.read_bytes(), [age.ScryptIdentity(PASSPHRASE)])
    identities = age.parse_identities_text(unlocked.decode())

    assert [str(i.recipient) for i in identities] == [public]
    assert open_strict(clip.read_bytes(), identities) == plaintext
    with pytest.raises(age.NoIdentityMatchError):
        age.decrypt(io.BytesIO(idfile.read_bytes()), [age.ScryptIdentity(PASSPHRASE + " ")])
