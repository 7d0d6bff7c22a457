"""Reading everything from an age file is all or an error (issue 12, item 1).

`read()`, `read(-1)`, `read(None)` and `readall()` on a cut or tampered file raise; they never
hand back the authenticated prefix as if it were the whole file (the prefix rides on the
error). `read(n)` streams. Prefix recovery stays its own, explicit API (`recover_prefix`).
"""

import io
import random

import pytest

from doorbell.storage import age
from doorbell.storage.age.errors import AgeError
from doorbell.storage.clipid import clip_paths
from doorbell.storage.clipreader import read_thumbnail
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex

CHUNK = 64 * 1024
ENCRYPTED_CHUNK = CHUNK + 16
START_US = 1_714_564_800_000_000


def seal(plaintext: bytes, recipients) -> bytes:
    dst = io.BytesIO()
    with age.encrypt(dst, recipients) as writer:
        writer.write(plaintext)
    return dst.getvalue()


def payload_offset(ciphertext: bytes) -> int:
    """Offset of chunk 0: after the header's MAC line and the 16-byte nonce."""
    return ciphertext.index(b"\n", ciphertext.index(b"\n---") + 1) + 1 + 16


@pytest.fixture(scope="module")
def sample():
    identity = age.X25519Identity.generate()
    plaintext = random.Random(12).randbytes(3 * CHUNK + 999)  # four chunks
    return identity, plaintext, seal(plaintext, [identity.recipient])


def tampered_chunk_2(ciphertext: bytes) -> bytes:
    data = bytearray(ciphertext)
    data[payload_offset(ciphertext) + 2 * ENCRYPTED_CHUNK + 50] ^= 0x04
    return bytes(data)


def cut_after_two_chunks(ciphertext: bytes) -> bytes:
    return ciphertext[: payload_offset(ciphertext) + 2 * ENCRYPTED_CHUNK]


READ_ALL = {
    "read()": lambda reader: reader.read(),
    "read(-1)": lambda reader: reader.read(-1),
    "read(None)": lambda reader: reader.read(None),
    "readall()": lambda reader: reader.readall(),
}


@pytest.mark.parametrize("how", list(READ_ALL))
@pytest.mark.parametrize(("damage", "error"), [(tampered_chunk_2, age.PayloadError),
                                               (cut_after_two_chunks, age.TruncatedError)],
                         ids=["tampered chunk 2", "cut after chunk 1"])
def test_reading_everything_raises_with_the_prefix_on_the_error(sample, how, damage, error):
    identity, plaintext, ciphertext = sample
    reader = age.decrypt(io.BytesIO(damage(ciphertext)), [identity])

    with pytest.raises(error) as caught:
        READ_ALL[how](reader)

    assert caught.value.prefix == plaintext[: 2 * CHUNK]


def test_reading_everything_from_the_middle_puts_only_that_part_on_the_error(sample):
    identity, plaintext, ciphertext = sample
    reader = age.decrypt(io.BytesIO(tampered_chunk_2(ciphertext)), [identity])
    reader.seek(CHUNK + 7)

    with pytest.raises(age.PayloadError) as caught:
        reader.read()

    assert caught.value.prefix == plaintext[CHUNK + 7 : 2 * CHUNK]


def test_reading_everything_of_an_intact_file_is_the_whole_plaintext(sample):
    identity, plaintext, ciphertext = sample
    reader = age.decrypt(io.BytesIO(ciphertext), [identity])
    assert reader.read() == plaintext
    assert reader.read() == b""


def test_read_n_still_streams_up_to_the_damage(sample):
    identity, plaintext, ciphertext = sample
    reader = age.decrypt(io.BytesIO(tampered_chunk_2(ciphertext)), [identity])

    assert reader.read(3 * CHUNK) == plaintext[: 2 * CHUNK]  # what authenticated comes first
    with pytest.raises(age.PayloadError):
        reader.read(3 * CHUNK)  # then the error


def test_the_recovered_prefix_is_the_explicit_way_to_read_a_cut_file(sample):
    identity, plaintext, ciphertext = sample
    recovered = age.recover_prefix(io.BytesIO(cut_after_two_chunks(ciphertext)), [identity])
    assert recovered.truncated is True
    assert recovered.reader.read() == plaintext[: 2 * CHUNK]


def test_a_thumbnail_with_a_tampered_second_chunk_is_refused_not_cut_short(tmp_path):
    # A thumbnail bigger than one chunk (a large JPEG): the strict read must fail as a whole.
    identity = age.X25519Identity.generate()
    thumbnail = b"\xff\xd8\xff\xe0" + random.Random(5).randbytes(3 * CHUNK) + b"\xff\xd9"
    with ClipIndex(tmp_path / "index.sqlite3") as index:
        store = ClipStore(tmp_path / "clips", index, [identity.recipient])
        writer = store.begin_clip(START_US)
        writer.video.write(b"video")
        clip = writer.finish(thumbnail, {"trigger": "motion"})
    path = clip_paths(store.clips_dir, clip.id)["thumbnail"]
    path.write_bytes(tampered_chunk_2(path.read_bytes()))

    with pytest.raises(AgeError):
        read_thumbnail(store.clips_dir, clip.id, [identity])
