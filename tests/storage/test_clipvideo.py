"""The store's playback face (storage.clipvideo), deletion without keys, and the audit guard.

ClipVideo decides what is decrypted when: a Range decrypts only its chunks, authenticating the
whole file happens once, and damage is an error, never bytes.
"""

import random

import pytest

from doorbell.storage.age import PayloadError, X25519Identity
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipid import clip_paths
from doorbell.storage.clipvideo import open_clip_video
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.deletion import delete_clip
from doorbell.storage.errors import AuditLogCorrupt, ClipNotFound
from doorbell.storage.index import ClipIndex
from doorbell.storage.reconcile import reconcile

CHUNK = 64 * 1024
ENCRYPTED_CHUNK = CHUNK + 16
START_US = 1_714_564_800_000_000


@pytest.fixture
def owner():
    return X25519Identity.generate()


@pytest.fixture
def store(tmp_path, owner):
    index = ClipIndex(tmp_path / "index.sqlite3")
    yield ClipStore(tmp_path / "clips", index, [owner.recipient])
    index.close()


def record(store, size: int, seed: int = 0, start_us: int = START_US, finish: bool = True):
    data = random.Random(seed).randbytes(size)
    writer = store.begin_clip(start_us)
    writer.video.write(data)
    if finish:
        writer.finish(b"\xff\xd8\xff thumbnail", {"trigger": "motion"})
    else:
        writer.abandon()
        reconcile(store.clips_dir, store.index)
    return writer.clip_id, data


def flip_in_chunk(store, clip_id: str, chunk: int) -> None:
    path = clip_paths(store.clips_dir, clip_id)["video"]
    data = bytearray(path.read_bytes())
    payload = data.index(b"\n", data.index(b"\n---") + 1) + 1 + 16  # after the MAC line, nonce
    data[payload + chunk * ENCRYPTED_CHUNK + 100] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def decryptions(monkeypatch):
    """Every payload-chunk decryption attempt, by chunk index."""
    import doorbell.storage.age.stream as stream

    real = stream.ChaCha20Poly1305
    indices = []

    class Counting:
        def __init__(self, key):
            self._inner = real(key)

        def decrypt(self, nonce, data, associated_data):
            indices.append(int.from_bytes(nonce[:11], "big"))
            return self._inner.decrypt(nonce, data, associated_data)

        def encrypt(self, nonce, data, associated_data):
            return self._inner.encrypt(nonce, data, associated_data)

    monkeypatch.setattr(stream, "ChaCha20Poly1305", Counting)
    return indices


def test_a_range_yields_exactly_its_bytes_and_decrypts_only_its_chunks(store, owner,
                                                                       decryptions):
    clip_id, data = record(store, 40 * CHUNK + 321)
    with open_clip_video(store.clips_dir, clip_id, [owner]) as video:
        assert (video.size_bytes, video.truncated) == (len(data), False)
        decryptions.clear()
        start, end = 17 * CHUNK - 5, 19 * CHUNK + 9
        assert b"".join(video.iter_range(start, end, block_bytes=1000)) == data[start : end + 1]
        assert set(decryptions) == {16, 17, 18, 19}
        assert b"".join(video.iter_range(0, len(data) - 1)) == data
        assert list(video.iter_range(5, 4)) == []  # an empty range


def test_authenticate_all_decrypts_every_chunk_once_and_remembers(store, owner, decryptions):
    clip_id, data = record(store, 6 * CHUNK + 5)
    with open_clip_video(store.clips_dir, clip_id, [owner]) as video:
        decryptions.clear()
        video.authenticate_all()
        assert sorted(set(decryptions)) == list(range(7))
        decryptions.clear()
        video.authenticate_all()
        assert decryptions == []


def test_damage_fails_authenticate_all_and_says_how_far_the_clip_authenticates(store, owner,
                                                                              decryptions):
    clip_id, data = record(store, 6 * CHUNK + 5)
    flip_in_chunk(store, clip_id, 3)
    with open_clip_video(store.clips_dir, clip_id, [owner]) as video:
        assert video.truncated is False  # the final chunk is fine: the damage is found later
        for _attempt in range(2):
            decryptions.clear()
            with pytest.raises(PayloadError) as caught:
                video.authenticate_all()
            assert caught.value.authenticated_bytes == 3 * CHUNK
            assert "chunk 3" in str(caught.value)
        assert decryptions == []  # the second call remembered the outcome
        # Ranges that avoid the damaged chunk still play.
        assert b"".join(video.iter_range(0, 100)) == data[:101]


def test_damage_at_the_start_of_a_range_raises_before_the_first_block(store, owner):
    clip_id, data = record(store, 6 * CHUNK + 5)
    flip_in_chunk(store, clip_id, 2)
    with open_clip_video(store.clips_dir, clip_id, [owner]) as video:
        with pytest.raises(PayloadError):
            video.iter_range(2 * CHUNK + 10, 2 * CHUNK + 20)
        blocks = video.iter_range(CHUNK, 3 * CHUNK, block_bytes=CHUNK // 2)
        received = bytearray()
        with pytest.raises(PayloadError):
            for block in blocks:
                received += block
        assert bytes(received) == data[CHUNK : 2 * CHUNK]  # only what authenticated


def test_an_interrupted_clip_serves_its_authenticated_prefix(store, owner, decryptions):
    clip_id, data = record(store, 5 * CHUNK + 777, finish=False)
    with open_clip_video(store.clips_dir, clip_id, [owner]) as video:
        assert (video.truncated, video.size_bytes) == (True, 5 * CHUNK)
        decryptions.clear()
        video.authenticate_all()  # already done while the prefix was found
        assert decryptions == []
        assert b"".join(video.iter_range(0, video.size_bytes - 1)) == data[: 5 * CHUNK]
        with pytest.raises(ValueError):
            video.iter_range(0, 5 * CHUNK)  # past the prefix


def test_the_video_owns_its_file(store, owner):
    clip_id, _ = record(store, 3 * CHUNK)
    video = open_clip_video(store.clips_dir, clip_id, [owner])
    with video:
        pass
    with pytest.raises(ValueError):
        list(video.iter_range(0, 10))  # the file is closed
    with pytest.raises(ClipNotFound):
        open_clip_video(store.clips_dir, "20240501T120000Z-abcdef", [owner])


def test_deleting_needs_no_recipients(tmp_path, store, owner):
    clip_id, _ = record(store, 3 * CHUNK)
    kept, _ = record(store, 1000, seed=1, start_us=START_US + 60_000_000)
    (tmp_path / "recipients.txt").write_text("")  # the household's keys are nowhere in reach

    with ClipIndex(tmp_path / "index.sqlite3") as index:
        assert delete_clip(store.clips_dir, index, clip_id) is True
        assert delete_clip(store.clips_dir, index, clip_id) is False
        assert [row.id for row in index.clips()] == [kept]
    assert not list(store.clips_dir.rglob(f"{clip_id}*"))


def test_the_audit_guard_refuses_a_damaged_log_in_one_sentence(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("alice", "clip.view", clip="a")
    log.append("alice", "clip.view", clip="b")
    log.require_intact()
    log.path.write_bytes(log.path.read_bytes().replace(b'"a"', b'"x"'))

    with pytest.raises(AuditLogCorrupt) as caught:
        log.require_intact()

    message = str(caught.value)
    assert message.startswith("the audit log is damaged, so nothing is changed")
    assert "line 1" in message and message.endswith(".") and "\n" not in message
