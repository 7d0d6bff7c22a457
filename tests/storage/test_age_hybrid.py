"""The post-quantum hybrid recipient (mlkem768x25519): round trips, the spec's rules, interop.

Project <-> project with hybrid keys alone and mixed with X25519 keys; scrypt must stay alone;
Debian's age 1.3.2 both ways where one is found (tests/age_cli.py). pyrage 1.4.0 (the Rust
`age` crate 0.12) has no mlkem768x25519 support, so it is checked to refuse the key cleanly.
"""

import io
import os
import subprocess

import pytest

from doorbell.storage import age
from doorbell.storage.age.armor import dearmor
from doorbell.storage.age.header import Stanza, b64decode, encode_header
from doorbell.storage.age.hybrid import ENC_BYTES, PUBLIC_KEY_BYTES
from tests.age_cli import HYBRID_AGE_DIR, needs_hybrid_age

from .sealing import seal

try:
    import pyrage
    import pyrage.x25519
except ImportError:  # pragma: no cover - exercised only where pyrage is missing
    pyrage = None

CHUNK = 64 * 1024


def open_all(data: bytes, identities) -> bytes:
    return age.decrypt(io.BytesIO(data), identities).read()


def test_keys_encode_as_the_spec_says():
    identity = age.HybridIdentity.generate()
    secret, public = str(identity), str(identity.recipient)
    assert secret.startswith("AGE-SECRET-KEY-PQ-1") and secret == secret.upper()
    assert public.startswith("age1pq1") and len(identity.recipient.public_key) == PUBLIC_KEY_BYTES
    assert str(age.parse_identity(secret)) == secret
    assert age.parse_recipient(public) == identity.recipient
    assert str(age.parse_identity(secret).recipient) == public  # the seed gives the same key
    assert secret not in repr(identity) and public not in repr(identity.recipient)


@pytest.mark.parametrize("size", [0, 1, CHUNK, 3 * CHUNK + 5])
def test_hybrid_round_trip(size):
    identity = age.HybridIdentity.generate()
    plain = os.urandom(size)
    sealed = seal(plain, [identity.recipient])
    assert sealed.count(b"\n-> mlkem768x25519 ") == 1
    assert open_all(sealed, [identity]) == plain
    with pytest.raises(age.NoIdentityMatchError):
        open_all(sealed, [age.HybridIdentity.generate(), age.X25519Identity.generate()])


def test_hybrid_mixed_with_x25519_opens_with_either_kind():
    pq, pq2, classic = (age.HybridIdentity.generate(), age.HybridIdentity.generate(),
                        age.X25519Identity.generate())
    plain = os.urandom(2 * CHUNK + 17)
    sealed = seal(plain, [pq.recipient, classic.recipient, pq2.recipient])
    assert sealed.count(b"\n-> mlkem768x25519 ") == 2 and sealed.count(b"\n-> X25519 ") == 1
    for identity in (pq, pq2, classic):
        assert open_all(sealed, [identity]) == plain
    assert not age.is_post_quantum(classic.recipient) and age.is_post_quantum(pq.recipient)


def test_a_stanza_is_enc_and_a_32_byte_sealed_file_key():
    identity = age.HybridIdentity.generate()
    [stanza] = identity.recipient.wrap(bytes(16))
    assert stanza.type == "mlkem768x25519" and len(stanza.args) == 1
    assert len(b64decode(stanza.args[0])) == ENC_BYTES and len(stanza.body) == 32
    assert identity.unwrap([stanza]) == bytes(16)


def test_scrypt_must_stay_alone_with_hybrid_recipients_too():
    identity = age.HybridIdentity.generate()
    with pytest.raises(age.AgeError, match="only recipient"):
        seal(b"x", [age.ScryptRecipient("a long passphrase here", 10), identity.recipient])
    file_key = os.urandom(16)  # a file that breaks the rule anyway is refused on reading
    stanzas = [*identity.recipient.wrap(file_key),
               *age.ScryptRecipient("a long passphrase here", 10).wrap(file_key)]
    crafted = encode_header(stanzas, file_key) + os.urandom(16) + os.urandom(40)
    with pytest.raises(age.HeaderError, match="only stanza"):
        age.decrypt(io.BytesIO(crafted), [identity])


def test_an_unknown_stanza_beside_a_hybrid_one_is_ignored():
    identity = age.HybridIdentity.generate()
    file_key = os.urandom(16)
    stanzas = [Stanza("grease-x", ["a"], b"junk"), *identity.recipient.wrap(file_key)]
    header = encode_header(stanzas, file_key)
    assert age.parse_identity(str(identity)).unwrap(stanzas) == file_key
    assert header.startswith(b"age-encryption.org/v1\n-> grease-x a\n")


def test_malformed_hybrid_keys_are_one_clear_error():
    identity = age.HybridIdentity.generate()
    with pytest.raises(age.AgeError, match="1216 bytes"):
        age.parse_recipient(age.bech32.encode("age1pq", identity.recipient.public_key[:-1]))
    with pytest.raises(age.AgeError, match="32 bytes"):
        age.parse_identity(age.bech32.encode("age-secret-key-pq-", os.urandom(31)).upper())
    with pytest.raises(age.UnsupportedRecipientError):
        age.parse_recipient(str(identity.recipient).upper())


def run(*argv: str, data: bytes = b"") -> bytes:
    result = subprocess.run(list(argv), input=data, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


@needs_hybrid_age
@pytest.mark.parametrize("size", [0, CHUNK + 1, 3 * CHUNK])
def test_age_1_3_decrypts_ours_and_we_decrypt_its_files(size, tmp_path):
    binary, keygen = str(HYBRID_AGE_DIR / "age"), str(HYBRID_AGE_DIR / "age-keygen")
    plain = os.urandom(size)
    ours = age.HybridIdentity.generate()
    key_file = tmp_path / "ours.txt"
    key_file.write_text(f"{ours}\n")
    assert run(binary, "-d", "-i", str(key_file), data=seal(plain, [ours.recipient])) == plain

    theirs = run(keygen, "-pq").decode()  # age-keygen's own post-quantum key
    secret = next(line for line in theirs.splitlines() if line.startswith("AGE-SECRET-KEY-PQ-"))
    public = run(keygen, "-y", data=theirs.encode()).decode().strip()
    assert str(age.parse_identity(secret).recipient) == public  # same public key derivation
    sealed = run(binary, "-r", public, "-r", str(ours.recipient), data=plain)
    assert open_all(sealed, [age.parse_identity(secret)]) == plain
    assert open_all(sealed, [ours]) == plain
    armored = run(binary, "-a", "-r", public, data=plain)
    assert open_all(dearmor(armored), [age.parse_identity(secret)]) == plain


@needs_hybrid_age
def test_age_1_3_decrypts_our_mixed_files_but_will_not_write_one(tmp_path):
    binary = str(HYBRID_AGE_DIR / "age")
    pq, classic = age.HybridIdentity.generate(), age.X25519Identity.generate()
    sealed = seal(b"mixed household", [pq.recipient, classic.recipient])
    for identity in (pq, classic):
        key_file = tmp_path / "key.txt"
        key_file.write_text(f"{identity}\n")
        assert run(binary, "-d", "-i", str(key_file), data=sealed) == b"mixed household"
    refused = subprocess.run([binary, "-r", str(pq.recipient), "-r", str(classic.recipient)],
                             input=b"x", capture_output=True, timeout=60, check=False)
    assert refused.returncode != 0 and b"can't mix post-quantum and classic" in refused.stderr


@pytest.mark.skipif(pyrage is None, reason="pyrage is not importable (the dev extra)")
def test_pyrage_has_no_hybrid_support_and_refuses_the_key_cleanly():
    with pytest.raises(pyrage.IdentityError):
        pyrage.x25519.Identity.from_str(str(age.HybridIdentity.generate()))
