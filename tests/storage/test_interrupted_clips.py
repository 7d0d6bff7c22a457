"""Clips interrupted early, and telling a cut file from a damaged one (issue 12, items 2 and 6).

The header and nonce reach the disk, with the file's name, when a clip begins; a clip cut off
before its first whole chunk is then "truncated" with an empty prefix, not "damaged".
`check_payload` passes a file that a crash only cut short and fails one damaged in the middle.
"""

import io
import os
import random

import pytest

from doorbell.storage import age
from doorbell.storage.age.reader import check_payload
from doorbell.storage.clipid import clip_paths
from doorbell.storage.clipreader import authenticate_file
from doorbell.storage.clipvideo import open_clip_video
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex
from doorbell.storage.inspect import inspect_file
from doorbell.storage.reconcile import reconcile

CHUNK = 64 * 1024
ENCRYPTED_CHUNK = CHUNK + 16
START_US = 1_714_564_800_000_000


@pytest.fixture
def owner():
    return age.X25519Identity.generate()


@pytest.fixture
def store(tmp_path, owner):
    index = ClipIndex(tmp_path / "index.sqlite3")
    yield ClipStore(tmp_path / "clips", index, [owner.recipient])
    index.close()


def partial_of(store, clip_id: str):
    video = clip_paths(store.clips_dir, clip_id)["video"]
    return video.with_name(video.name + ".partial")


def test_a_clip_has_its_header_on_disk_as_soon_as_it_begins(store, owner, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = store.begin_clip(START_US)
    monkeypatch.setattr(os, "fsync", real_fsync)

    partial = partial_of(store, writer.clip_id)
    shape = inspect_file(partial)  # read through another file descriptor
    assert shape.recipients == 1 and shape.chunks == 0
    assert str(partial) in synced  # the header and nonce
    assert str(partial.parent) in synced  # the file's name in its directory
    with partial.open("rb") as handle:
        assert check_payload(handle, [owner]).authenticated_chunks == 0  # header MAC verifies
    writer.abandon()


def test_a_clip_interrupted_before_its_first_chunk_is_truncated_with_nothing_to_play(store,
                                                                                     owner):
    writer = store.begin_clip(START_US)
    writer.video.write(b"\x00\x00\x00\x20ftyp" + bytes(30_000))  # less than a chunk: unsealed
    writer.abandon()

    report = reconcile(store.clips_dir, store.index)

    assert report.recovered_truncated == [writer.clip_id] and report.damaged == []
    assert report.nothing_saved == [writer.clip_id]
    assert any("before any of its video was written" in line for line in report.lines())
    assert store.index.get(writer.clip_id).state == "truncated"
    with open_clip_video(store.clips_dir, writer.clip_id, [owner]) as video:
        assert (video.truncated, video.size_bytes) == (True, 0)
        assert list(video.iter_range(0, -1)) == []
    video_path = clip_paths(store.clips_dir, writer.clip_id)["video"]
    assert authenticate_file(video_path, [owner], truncated=True) == (True, "")


def test_an_interrupted_clip_with_whole_chunks_is_not_reported_as_empty(store, owner):
    writer = store.begin_clip(START_US)
    writer.video.write(random.Random(1).randbytes(3 * CHUNK + 10))
    writer.abandon()

    report = reconcile(store.clips_dir, store.index)

    assert report.recovered_truncated == [writer.clip_id] and report.nothing_saved == []
    assert f"clip {writer.clip_id} was interrupted: its authenticated prefix is kept" in \
        report.lines()


# -- check_payload: cut or damaged -------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed():
    identity = age.X25519Identity.generate()
    plaintext = random.Random(4).randbytes(5 * CHUNK + 300)  # six chunks
    dst = io.BytesIO()
    with age.encrypt(dst, [identity.recipient]) as writer:
        writer.write(plaintext)
    data = dst.getvalue()
    payload = data.index(b"\n", data.index(b"\n---") + 1) + 1 + 16
    return identity, data, payload


def check(data: bytes, identity) -> age.reader.PayloadCheck:
    return check_payload(io.BytesIO(data), [identity])


def flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x10
    return bytes(out)


def test_a_whole_file_is_sealed_and_passes(sealed):
    identity, data, _ = sealed
    result = check(data, identity)
    assert (result.sealed, result.authenticated_chunks, result.chunks) == (True, 6, 6)
    assert result.size_bytes == 5 * CHUNK + 300 and result.problem == ""


@pytest.mark.parametrize("whole_chunks", [0, 1, 4])
@pytest.mark.parametrize("torn_bytes", [0, 7, 5000])
def test_a_file_a_crash_cut_short_passes(sealed, whole_chunks, torn_bytes):
    identity, data, payload = sealed
    result = check(data[: payload + whole_chunks * ENCRYPTED_CHUNK + torn_bytes], identity)
    assert result.sealed is False
    assert result.authenticated_chunks == whole_chunks
    assert result.size_bytes == whole_chunks * CHUNK
    assert result.problem == ""


def test_damage_inside_a_cut_files_prefix_fails(sealed):
    identity, data, payload = sealed
    cut = data[: payload + 4 * ENCRYPTED_CHUNK]
    result = check(flip(cut, payload + ENCRYPTED_CHUNK + 99), identity)
    assert result.authenticated_chunks == 1 and result.resumes_at == 2
    assert "chunk 1 fails authentication but chunk 2 after it authenticates" in result.problem


def test_damage_in_the_middle_of_a_sealed_file_fails(sealed):
    identity, data, payload = sealed
    result = check(flip(data, payload + 3 * ENCRYPTED_CHUNK + 5), identity)
    assert result.sealed is False and result.resumes_at == 4 and result.problem


def test_data_after_a_final_chunk_fails(sealed):
    identity = sealed[0]
    dst = io.BytesIO()
    with age.encrypt(dst, [identity.recipient]) as writer:
        writer.write(bytes(2 * CHUNK))  # the final chunk is full, so it stays where it was
    result = check(dst.getvalue() + bytes(100), identity)
    assert result.sealed is True and result.problem == "data follows the final chunk"
