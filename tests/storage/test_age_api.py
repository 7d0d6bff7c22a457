"""The public API of storage.age: writer, random-access reader, header re-wrapping and keys.

These are the properties the rest of the product relies on: the recorder's writer holds at most
one chunk of video; HTTP Range playback decrypts only the chunks a range covers; adding a
household member re-wraps a clip's header without touching its payload; keys are parsed as
strictly as age parses them and never leak through repr or error messages.
"""

import io
import os
import random
import shutil
import subprocess
import tracemalloc

import pytest

from doorbell.storage import age
from doorbell.storage.age import bech32

from .sealing import open_strict, seal

CHUNK = 64 * 1024
TAG = 16
ENCRYPTED_CHUNK = CHUNK + TAG
NONCE = 16
MiB = 1024 * 1024
PASSPHRASE = "correct horse battery staple"
TEST_WORK_FACTOR = 10

AGE = shutil.which("age")






def header_length(ciphertext: bytes) -> int:
    mac_line = ciphertext.index(b"\n--- ") + 1
    return ciphertext.index(b"\n", mac_line) + 1


class CountingSink:
    """A write-only destination that keeps nothing but a byte count (and the header)."""

    def __init__(self):
        self.written = 0
        self.head = bytearray()

    def write(self, data) -> int:
        size = len(memoryview(data).cast("B"))
        if len(self.head) < 4096:
            self.head += bytes(data[: 4096 - len(self.head)])
        self.written += size
        return size

    def flush(self) -> None:
        pass


# -- the encrypting writer ----------------------------------------------------------------------


def write_pattern(total: int, pattern: list[int]):
    """Yield write sizes from `pattern`, cycled, adding up to exactly `total`."""
    done = 0
    index = 0
    while done < total:
        size = min(pattern[index % len(pattern)], total - done)
        yield size
        done += size
        index += 1


WRITE_PATTERNS = {
    "1000-byte writes": [1000],
    "mixed sizes": [1, 7, 333, 4093, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5],
}


@pytest.mark.parametrize("pattern", list(WRITE_PATTERNS))
def test_writer_holds_at_most_one_chunk(pattern, age_plaintext):
    identity = age.X25519Identity.generate()
    plaintext = age_plaintext(10 * MiB + 12345, seed=1)
    sink = CountingSink()
    writer = age.encrypt(sink, [identity.recipient])
    header = header_length(bytes(sink.head))
    view = memoryview(plaintext)
    written = 0
    writes = 0
    for size in write_pattern(len(plaintext), WRITE_PATTERNS[pattern]):
        assert writer.write(view[written : written + size]) == size
        written += size
        writes += 1
        payload = sink.written - header - NONCE
        assert payload >= 0
        assert payload % ENCRYPTED_CHUNK == 0, "only whole chunks are written before close"
        sealed = payload // ENCRYPTED_CHUNK * CHUNK
        assert sealed >= written - CHUNK, f"after {written} bytes only {sealed} were sealed"
        assert sealed <= written
    writer.close()
    assert writes > 150
    expected_total = header + NONCE + len(plaintext) + -(-len(plaintext) // CHUNK) * TAG
    assert sink.written == expected_total


def test_writer_memory_stays_at_one_chunk(age_plaintext):
    plaintext = age_plaintext(10 * MiB, seed=2)
    sink = CountingSink()
    writer = age.encrypt(sink, [age.X25519Identity.generate().recipient])
    view = memoryview(plaintext)
    tracemalloc.start()
    try:
        for start in range(0, len(plaintext), 4000):
            writer.write(view[start : start + 4000])
        writer.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.written > 10 * MiB
    assert peak < 4 * CHUNK, f"the writer allocated {peak} bytes at its peak for 10 MiB"


def test_a_large_write_is_sealed_as_it_arrives(age_plaintext):
    identity = age.X25519Identity.generate()
    plaintext = age_plaintext(10 * MiB + 1, seed=3)
    dst = io.BytesIO()
    writer = age.encrypt(dst, [identity.recipient])
    header = header_length(dst.getvalue())
    assert len(dst.getvalue()) == header + NONCE

    writer.write(plaintext)

    assert len(dst.getvalue()) == header + NONCE + 160 * ENCRYPTED_CHUNK  # only 1 byte held
    writer.close()
    assert open_strict(dst.getvalue(), [identity]) == plaintext


def test_close_seals_but_does_not_close_dst_and_is_idempotent():
    identity = age.X25519Identity.generate()
    dst = io.BytesIO()
    writer = age.encrypt(dst, [identity.recipient])
    writer.write(b"frame")
    writer.flush()
    assert not writer.closed

    writer.close()
    sealed = dst.getvalue()
    writer.close()

    assert writer.closed
    assert not dst.closed
    assert dst.getvalue() == sealed
    assert open_strict(sealed, [identity]) == b"frame"


def test_context_manager_closes_the_writer():
    identity = age.X25519Identity.generate()
    dst = io.BytesIO()
    with age.encrypt(dst, [identity.recipient]) as writer:
        writer.write(b"x" * (CHUNK + 1))
    assert writer.closed
    assert not dst.closed
    assert open_strict(dst.getvalue(), [identity]) == b"x" * (CHUNK + 1)


def test_write_after_close_raises():
    writer = age.encrypt(io.BytesIO(), [age.X25519Identity.generate().recipient])
    writer.close()
    with pytest.raises(ValueError):
        writer.write(b"late")


def test_encrypt_without_recipients_raises_and_writes_nothing():
    dst = io.BytesIO()
    with pytest.raises(age.AgeError):
        age.encrypt(dst, [])
    assert dst.getvalue() == b""


@pytest.mark.parametrize("order", ["scrypt-first", "scrypt-last", "two-scrypt"])
def test_scrypt_cannot_be_mixed_with_other_recipients(order):
    scrypt = age.ScryptRecipient(PASSPHRASE, TEST_WORK_FACTOR)
    x25519 = age.X25519Identity.generate().recipient
    recipients = {
        "scrypt-first": [scrypt, x25519],
        "scrypt-last": [x25519, scrypt],
        "two-scrypt": [scrypt, age.ScryptRecipient("another", TEST_WORK_FACTOR)],
    }[order]
    dst = io.BytesIO()
    with pytest.raises(age.AgeError):
        age.encrypt(dst, recipients)
    assert dst.getvalue() == b""


# -- random access ------------------------------------------------------------------------------


class CountingAEAD:
    """Stands in for the reader's ChaCha20Poly1305 and records which chunk each call opens."""

    def __init__(self, inner):
        self._inner = inner
        self.chunks: list[int] = []

    def decrypt(self, nonce: bytes, data: bytes, associated_data):
        self.chunks.append(int.from_bytes(nonce[:11], "big"))
        return self._inner.decrypt(nonce, data, associated_data)


class CountingSource(io.BytesIO):
    """A seekable source that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


@pytest.fixture(scope="module")
def big_file(age_plaintext):
    identity = age.X25519Identity.generate()
    plaintext = age_plaintext(10 * MiB + 777, seed=4)
    return identity, plaintext, seal(plaintext, [identity.recipient])


def counted_reader(ciphertext: bytes, identity):
    src = CountingSource(ciphertext)
    reader = age.decrypt(src, [identity])
    assert hasattr(reader, "_aead"), "the reader no longer keeps its AEAD in `_aead`"
    counter = CountingAEAD(reader._aead)
    reader._aead = counter
    src.bytes_read = 0
    return reader, counter, src


def test_random_reads_return_exactly_the_plaintext(big_file):
    identity, plaintext, ciphertext = big_file
    reader = age.decrypt(io.BytesIO(ciphertext), [identity])
    rng = random.Random(5)
    for _ in range(300):
        offset = rng.choice(
            [
                rng.randrange(len(plaintext)),
                rng.randrange(len(plaintext) // CHUNK) * CHUNK + rng.choice([-1, 0, 1]),
                len(plaintext) - rng.randrange(1, 3 * CHUNK),
                len(plaintext) + rng.randrange(0, 100),
            ]
        )
        offset = max(offset, 0)
        size = rng.choice([0, 1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, rng.randrange(300_000)])
        assert reader.seek(offset) == offset
        data = reader.read(size)
        assert data == plaintext[offset : offset + size], (offset, size)
        assert reader.tell() == offset + len(data)


def test_seek_whence(big_file):
    identity, plaintext, ciphertext = big_file
    reader = age.decrypt(io.BytesIO(ciphertext), [identity])
    assert reader.seekable() and reader.readable()

    assert reader.seek(-1000, os.SEEK_END) == len(plaintext) - 1000
    assert reader.read() == plaintext[-1000:]
    assert reader.seek(0, os.SEEK_END) == len(plaintext)
    assert reader.read(10) == b""
    reader.seek(CHUNK - 3)
    reader.read(2)
    assert reader.seek(10, os.SEEK_CUR) == CHUNK + 9
    assert reader.read(5) == plaintext[CHUNK + 9 : CHUNK + 14]
    with pytest.raises(ValueError):
        reader.seek(-1)


@pytest.mark.parametrize("offset", [0, 77 * CHUNK, 77 * CHUNK + 1, 100 * CHUNK - 12345])
def test_a_64k_range_decrypts_only_the_chunks_it_covers(big_file, offset):
    identity, plaintext, ciphertext = big_file
    reader, counter, src = counted_reader(ciphertext, identity)
    covering = set(range(offset // CHUNK, (offset + CHUNK - 1) // CHUNK + 1))

    reader.seek(offset)
    assert reader.read(CHUNK) == plaintext[offset : offset + CHUNK]

    assert set(counter.chunks) == covering
    assert len(counter.chunks) <= 2
    assert src.bytes_read <= len(covering) * ENCRYPTED_CHUNK

    before = len(counter.chunks)
    assert reader.size == len(plaintext)
    assert len(counter.chunks) - before <= 1  # .size opens the last chunk, nothing else


def test_seek_end_opens_only_the_last_chunks(big_file):
    identity, plaintext, ciphertext = big_file
    reader, counter, src = counted_reader(ciphertext, identity)

    reader.seek(-CHUNK, os.SEEK_END)
    assert reader.read() == plaintext[-CHUNK:]

    last = (len(plaintext) - 1) // CHUNK
    assert set(counter.chunks) <= {last - 1, last}
    assert len(counter.chunks) <= 3
    assert src.bytes_read <= 3 * ENCRYPTED_CHUNK


def test_seek_end_of_a_truncated_file_raises(big_file):
    identity, _, ciphertext = big_file
    cut = ciphertext[: header_length(ciphertext) + NONCE + 40 * ENCRYPTED_CHUNK]
    reader = age.decrypt(io.BytesIO(cut), [identity])
    with pytest.raises(age.TruncatedError):
        reader.seek(0, os.SEEK_END)
    with pytest.raises(age.TruncatedError):
        _ = reader.size


# -- rewrap_header ------------------------------------------------------------------------------


@pytest.fixture
def clip(age_plaintext):
    owner = age.X25519Identity.generate()
    plaintext = age_plaintext(3 * CHUNK + 100, seed=6)
    return owner, plaintext, seal(plaintext, [owner.recipient])


def rewrap(ciphertext: bytes, identities, add) -> bytes:
    dst = io.BytesIO()
    age.rewrap_header(io.BytesIO(ciphertext), dst, identities, add=add)
    return dst.getvalue()


def test_rewrap_adds_a_recipient_without_touching_the_payload(clip):
    owner, plaintext, ciphertext = clip
    member = age.X25519Identity.generate()

    rewrapped = rewrap(ciphertext, [owner], [member.recipient])

    old_header, new_header = header_length(ciphertext), header_length(rewrapped)
    assert rewrapped[new_header:] == ciphertext[old_header:]  # nonce and chunks, byte for byte
    old_stanzas = ciphertext[: ciphertext.index(b"\n---") + 1]
    assert rewrapped.startswith(old_stanzas)  # the owner's stanza is kept as it was
    assert rewrapped[:new_header].count(b"\n-> X25519 ") == 2
    assert open_strict(rewrapped, [member]) == plaintext
    assert open_strict(rewrapped, [owner]) == plaintext
    with pytest.raises(age.NoIdentityMatchError):
        open_strict(rewrapped, [age.X25519Identity.generate()])


def test_rewrap_twice_keeps_every_member(clip):
    owner, plaintext, ciphertext = clip
    members = [age.X25519Identity.generate() for _ in range(2)]
    once = rewrap(ciphertext, [owner], [members[0].recipient])
    twice = rewrap(once, [members[0]], [members[1].recipient])
    for identity in [owner, *members]:
        assert open_strict(twice, [identity]) == plaintext


@pytest.mark.skipif(AGE is None, reason="the `age` CLI is not on PATH (Debian package `age`)")
def test_rewrapped_file_is_decrypted_by_age_cli(clip, tmp_path):
    owner, plaintext, ciphertext = clip
    member = age.X25519Identity.generate()
    path = tmp_path / "clip.age"
    path.write_bytes(rewrap(ciphertext, [owner], [member.recipient]))
    key = tmp_path / "member.txt"
    key.write_text(f"{member}\n")
    key.chmod(0o600)

    result = subprocess.run(
        [AGE, "-d", "-i", str(key), str(path)], capture_output=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == plaintext


def test_rewrap_without_a_matching_identity_is_refused(clip):
    _, _, ciphertext = clip
    stranger = age.X25519Identity.generate()
    dst = io.BytesIO()
    with pytest.raises(age.NoIdentityMatchError):
        age.rewrap_header(io.BytesIO(ciphertext), dst, [stranger], add=[stranger.recipient])
    assert dst.getvalue() == b""


def test_rewrap_refuses_a_tampered_header(clip):
    owner, _, ciphertext = clip
    position = ciphertext.index(b"\n--- ") + 8
    replacement = b"A" if ciphertext[position : position + 1] != b"A" else b"B"
    tampered = ciphertext[:position] + replacement + ciphertext[position + 1 :]
    with pytest.raises(age.HeaderMACError):
        rewrap(tampered, [owner], [age.X25519Identity.generate().recipient])


def test_rewrap_refuses_to_add_to_a_passphrase_file(age_plaintext):
    plaintext = age_plaintext(CHUNK + 1, seed=7)
    ciphertext = seal(plaintext, [age.ScryptRecipient(PASSPHRASE, TEST_WORK_FACTOR)])
    dst = io.BytesIO()
    with pytest.raises(age.AgeError):
        age.rewrap_header(
            io.BytesIO(ciphertext),
            dst,
            [age.ScryptIdentity(PASSPHRASE)],
            add=[age.X25519Identity.generate().recipient],
        )
    assert dst.getvalue() == b""


def test_rewrap_refuses_to_add_a_passphrase(clip):
    owner, _, ciphertext = clip
    with pytest.raises(age.AgeError):
        rewrap(ciphertext, [owner], [age.ScryptRecipient(PASSPHRASE, TEST_WORK_FACTOR)])


# -- keys ---------------------------------------------------------------------------------------


def test_key_strings_round_trip():
    identity = age.X25519Identity.generate()
    secret = str(identity)
    public = str(identity.recipient)

    assert secret.startswith("AGE-SECRET-KEY-1") and secret == secret.upper()
    assert len(secret) == 74
    assert public.startswith("age1") and public == public.lower()
    assert len(public) == 62
    assert age.parse_identity(secret).recipient == identity.recipient
    assert age.parse_identity(f"  {secret}\n").recipient == identity.recipient
    assert age.parse_recipient(public) == identity.recipient
    assert str(age.parse_recipient(public)) == public


def test_repr_never_leaks_a_secret():
    identity = age.X25519Identity.generate()
    secret = str(identity)
    data_part = secret[len("AGE-SECRET-KEY-1") :]

    for text in (repr(identity), repr([identity]), f"{identity!r}"):
        assert data_part.lower() not in text.lower()
        assert "AGE-SECRET-KEY" not in text.upper()
    assert str(identity.recipient) in repr(identity)  # the public half is fine to show

    passphrase = "hunter2 is my passphrase"
    assert "hunter2" not in repr(age.ScryptIdentity(passphrase))
    assert "hunter2" not in repr(age.ScryptRecipient(passphrase, TEST_WORK_FACTOR))


def test_parse_errors_never_echo_a_secret():
    secret = str(age.X25519Identity.generate())
    last = secret[-1]
    corrupted = secret[:-1] + ("Q" if last != "Q" else "P")  # bad checksum
    data_part = secret[len("AGE-SECRET-KEY-1") : -6]
    for bad in (corrupted, secret.lower(), secret[:30] + secret[30:].lower()):
        with pytest.raises(age.AgeError) as info:
            age.parse_identity(bad)
        assert data_part.lower() not in str(info.value).lower()


def test_wrong_passphrase_is_no_identity_match(age_plaintext):
    ciphertext = seal(b"clip", [age.ScryptRecipient(PASSPHRASE, TEST_WORK_FACTOR)])
    with pytest.raises(age.NoIdentityMatchError):
        age.decrypt(io.BytesIO(ciphertext), [age.ScryptIdentity(PASSPHRASE + ".")])
    with pytest.raises(age.NoIdentityMatchError):
        age.decrypt(io.BytesIO(ciphertext), [age.X25519Identity.generate()])
    assert open_strict(ciphertext, [age.ScryptIdentity(PASSPHRASE)]) == b"clip"


def test_wrong_key_is_no_identity_match():
    ciphertext = seal(b"clip", [age.X25519Identity.generate().recipient])
    with pytest.raises(age.NoIdentityMatchError):
        age.decrypt(io.BytesIO(ciphertext), [age.X25519Identity.generate()])
    with pytest.raises(age.NoIdentityMatchError):
        age.decrypt(io.BytesIO(ciphertext), [age.ScryptIdentity(PASSPHRASE)])
    with pytest.raises(age.NoIdentityMatchError):
        age.decrypt(io.BytesIO(ciphertext), [])


def test_scrypt_work_factor_above_the_limit_is_refused():
    ciphertext = seal(b"clip", [age.ScryptRecipient(PASSPHRASE, 12)])
    with pytest.raises(age.HeaderError):
        age.decrypt(io.BytesIO(ciphertext), [age.ScryptIdentity(PASSPHRASE, max_work_factor=11)])


@pytest.mark.parametrize(
    "hrp, size",
    [("age-plugin-yubikey-", 32), ("age-secret-key-tag-", 32)],
)
def test_plugin_identities_are_unsupported(hrp, size):
    text = bech32.encode(hrp, os.urandom(size)).upper()
    with pytest.raises(age.UnsupportedRecipientError):
        age.parse_identity(text)


@pytest.mark.parametrize(
    "hrp, size", [("age1tag", 65), ("age1yubikey", 33), ("age", 32)]
)
def test_plugin_recipients_are_unsupported(hrp, size):
    text = bech32.encode(hrp, os.urandom(size))
    if hrp == "age":  # a well-formed X25519 recipient, written in upper case as age refuses
        text = text.upper()
    else:
        assert text.startswith(f"{hrp}1")
    with pytest.raises(age.UnsupportedRecipientError):
        age.parse_recipient(text)


def test_mixed_case_is_refused():
    identity = age.X25519Identity.generate()
    secret, public = str(identity), str(identity.recipient)
    i = next(i for i in range(20, len(secret)) if secret[i].isalpha())  # not a digit
    j = next(j for j in range(10, len(public)) if public[j].isalpha())
    mixed_secret = secret[:i] + secret[i].lower() + secret[i + 1 :]
    mixed_public = public[:j] + public[j].upper() + public[j + 1 :]
    assert mixed_secret != secret and mixed_public != public
    with pytest.raises(age.AgeError):
        age.parse_identity(mixed_secret)
    with pytest.raises(age.AgeError):
        age.parse_recipient(mixed_public)


@pytest.mark.parametrize("position", [-1, -6, -7, -30, -50])  # checksum and data characters
def test_bad_checksum_is_refused(position):
    identity = age.X25519Identity.generate()
    for text, parse, charset in (
        (str(identity.recipient), age.parse_recipient, "qpzry9x8gf2tvdw0s3jn54khce6mua7l"),
        (str(identity), age.parse_identity, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"),
    ):
        index = position % len(text)
        replacement = charset[(charset.index(text[index]) + 1) % 32]
        bad = text[:index] + replacement + text[index + 1 :]
        with pytest.raises(age.AgeError) as info:
            parse(bad)
        assert not isinstance(info.value, age.UnsupportedRecipientError)


def test_wrong_key_lengths_are_refused():
    with pytest.raises(age.AgeError):
        age.parse_recipient(bech32.encode("age", os.urandom(31)))
    with pytest.raises(age.AgeError):
        age.parse_identity(bech32.encode("age-secret-key-", os.urandom(33)).upper())
