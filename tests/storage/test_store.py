"""The clip store as the recorder and the household see it: what lands on disk, and how.

A finished clip is three age files in clips/YYYY/MM/DD/ that every household key (and the
recovery key, and the stock `age` CLI) decrypts; no stored byte is plaintext; the video is
fsynced while it is written; deleting removes the files before the index row.
"""

import json
import os
import random
import shutil
import sqlite3
import subprocess

import pytest

from doorbell.config import RecordingSettings
from doorbell.storage.age import (
    NoIdentityMatchError,
    PayloadError,
    TruncatedError,
    X25519Identity,
    decrypt,
)
from doorbell.storage.clipid import clip_paths
from doorbell.storage.clipreader import open_video, read_metadata, read_thumbnail
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex

AGE = shutil.which("age")
needs_age = pytest.mark.skipif(
    AGE is None, reason="the `age` CLI is not on PATH (install the Debian package `age`)"
)

AGE_MAGIC = b"age-encryption.org/v1\n"
CANARY = b"PLAINTEXT-CANARY-front-door"
START_US = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z
BLOCK = 64 * 1024 - 1000  # what an encoder hands over: about a chunk, rarely aligned to one


def fake_mp4(size: int, seed: int = 0) -> bytes:
    """Bytes that start like a fragmented MP4 and carry a canary that must never hit the disk."""
    head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + CANARY
    body = random.Random(seed).randbytes(max(0, size - len(head) - len(CANARY)))
    return (head + body + CANARY)[:size]


THUMBNAIL = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + CANARY + bytes(2000) + b"\xff\xd9"
METADATA = {"trigger": "motion", "camera": "Front door", "note": CANARY.decode()}


def write_in_blocks(writer, data: bytes, block: int = BLOCK) -> None:
    for offset in range(0, len(data), block):
        writer.video.write(data[offset : offset + block])


@pytest.fixture
def keys():
    return {"member": X25519Identity.generate(), "recovery": X25519Identity.generate()}


@pytest.fixture
def store(tmp_path, keys):
    index = ClipIndex(tmp_path / "index.sqlite3")
    recipients = [keys["member"].recipient, keys["recovery"].recipient]
    yield ClipStore(tmp_path / "clips", index, recipients)
    index.close()


@pytest.fixture
def finished(store):
    """A clip written the way the recorder writes one: (clip row, video plaintext)."""
    video = fake_mp4(5 * 65536 + 1234)
    writer = store.begin_clip(START_US)
    write_in_blocks(writer, video)
    clip = writer.finish(THUMBNAIL, METADATA)
    return clip, video


def stored_files(store) -> list:
    return sorted(p for p in store.clips_dir.rglob("*") if p.is_file())


# -- layout and index -------------------------------------------------------------------------


def test_a_finished_clip_is_three_age_files_in_its_day_directory(store, finished):
    clip, _ = finished
    day = store.clips_dir / "2024" / "05" / "01"

    assert clip.id.startswith("20240501T120000Z-")
    assert sorted(p.name for p in day.iterdir()) == sorted(
        [f"{clip.id}.mp4.age", f"{clip.id}.jpg.age", f"{clip.id}.json.age"]
    )
    assert [p.parent for p in stored_files(store)] == [day] * 3
    assert not list(store.clips_dir.rglob("*.partial"))


def test_a_finished_clip_has_a_complete_index_row_with_its_size_on_disk(store, finished):
    clip, _ = finished
    on_disk = sum(p.stat().st_size for p in clip_paths(store.clips_dir, clip.id).values())

    row = store.index.get(clip.id)

    assert row is not None
    assert row.state == "complete"
    assert row.size_bytes == on_disk
    assert row.start_us == START_US
    assert [c.id for c in store.index.clips()] == [clip.id]


def test_a_clip_in_progress_is_a_partial_file_without_an_index_row(store):
    writer = store.begin_clip(START_US)
    write_in_blocks(writer, fake_mp4(200_000))
    writer.sync()
    video = clip_paths(store.clips_dir, writer.clip_id)["video"]

    assert video.with_name(video.name + ".partial").is_file()
    assert not video.exists()
    assert store.index.get(writer.clip_id) is None

    writer.finish(None, {})
    assert video.is_file()
    assert store.index.get(writer.clip_id).state == "complete"


# -- who can decrypt ---------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["member", "recovery"])
def test_every_file_of_a_clip_decrypts_with_each_household_key(store, finished, keys, who):
    clip, video = finished
    identities = [keys[who]]

    opened = open_video(store.clips_dir, clip.id, identities)
    try:
        assert opened.truncated is False
        assert opened.size_bytes == len(video)
        assert opened.reader.read() == video
    finally:
        opened.close()
    assert read_thumbnail(store.clips_dir, clip.id, identities) == THUMBNAIL
    assert read_metadata(store.clips_dir, clip.id, identities) == {"id": clip.id, **METADATA}


def test_a_stranger_key_decrypts_nothing(store, finished):
    clip, _ = finished
    stranger = X25519Identity.generate()
    for path in clip_paths(store.clips_dir, clip.id).values():
        with path.open("rb") as handle, pytest.raises(NoIdentityMatchError):
            decrypt(handle, [stranger])


@needs_age
@pytest.mark.parametrize("who", ["member", "recovery"])
def test_the_stock_age_cli_decrypts_every_file_with_the_identity_string(
    store, finished, keys, who, tmp_path
):
    clip, video = finished
    key_file = tmp_path / f"{who}.txt"
    key_file.write_text(f"{keys[who]}\n")
    key_file.chmod(0o600)
    expected = {"video": video, "thumbnail": THUMBNAIL}

    for kind, path in clip_paths(store.clips_dir, clip.id).items():
        result = subprocess.run(
            [AGE, "-d", "-i", str(key_file), str(path)], capture_output=True, timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        if kind == "metadata":
            assert json.loads(result.stdout) == {"id": clip.id, **METADATA}
        else:
            assert result.stdout == expected[kind]


# -- no plaintext on disk ----------------------------------------------------------------------


def _assert_no_plaintext(path):
    data = path.read_bytes()
    assert data.startswith(AGE_MAGIC), f"{path.name} does not start with the age header"
    assert data[4:8] != b"ftyp", f"{path.name} starts like a plaintext MP4"
    assert not data.startswith(b"\xff\xd8\xff"), f"{path.name} starts like a plaintext JPEG"
    assert not data.lstrip().startswith(b"{"), f"{path.name} starts like plaintext JSON"
    assert CANARY not in data, f"plaintext found inside {path.name}"
    assert b"ftypisom" not in data and b"JFIF" not in data and b'"trigger"' not in data


def test_no_stored_file_holds_plaintext(store, finished):
    files = stored_files(store)
    assert len(files) == 3
    for path in files:
        _assert_no_plaintext(path)


def test_a_clip_being_written_is_already_ciphertext_on_disk(store):
    writer = store.begin_clip(START_US)
    write_in_blocks(writer, fake_mp4(300 * 1024))
    writer.sync()

    (partial,) = stored_files(store)
    assert partial.name.endswith(".mp4.age.partial")
    assert partial.stat().st_size > 200 * 1024  # whole chunks reached the disk as they filled
    _assert_no_plaintext(partial)
    writer.abandon()


def test_the_index_holds_nothing_but_id_start_state_and_size(store, finished):
    clip, _ = finished
    with sqlite3.connect(store.index.path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(clips)")]
        rows = db.execute("SELECT * FROM clips").fetchall()
    # and whether the clip began before the clock was set, and since when it is kept: times
    assert columns == ["id", "start_us", "state", "size_bytes", "clock_unsynced", "kept_from_us"]
    assert len(rows) == 1
    assert CANARY.decode() not in repr(rows) and "motion" not in repr(rows)


# -- durability while recording ----------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_video_is_fsynced_at_least_every_fsync_interval(tmp_path, keys, monkeypatch):
    clock = FakeClock()
    interval = RecordingSettings().fsync_interval_s  # 2 s by default
    index = ClipIndex(tmp_path / "index.sqlite3")
    store = ClipStore(tmp_path / "clips", index, [keys["member"].recipient], clock=clock)
    writer = store.begin_clip(START_US, fsync_interval_s=interval)
    synced_at: list[float] = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        synced_at.append(clock.now)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    seconds, step = 30.0, 0.25  # 30 s of video, a 48 KiB block every 250 ms (about 1.5 Mbit/s)
    data = fake_mp4(int(seconds / step) * 48 * 1024)
    for offset in range(0, len(data), 48 * 1024):
        clock.now += step
        writer.video.write(data[offset : offset + 48 * 1024])
    end_of_recording = clock.now
    during = list(synced_at)
    writer.finish(None, {})
    index.close()

    assert len(during) >= int(seconds / interval) - 1, during
    times = [1000.0, *during, end_of_recording]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # A sync can only happen when a sealed chunk reaches the file (every ~0.33 s here).
    assert max(gaps) <= interval + 2 * step, gaps
    assert len(synced_at) > len(during)  # finishing syncs again (video, thumbnail/metadata, dir)


def test_writing_without_time_passing_does_not_fsync_every_chunk(tmp_path, keys, monkeypatch):
    clock = FakeClock()
    index = ClipIndex(tmp_path / "index.sqlite3")
    store = ClipStore(tmp_path / "clips", index, [keys["member"].recipient], clock=clock)
    writer = store.begin_clip(START_US, fsync_interval_s=2.0)
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))

    write_in_blocks(writer, fake_mp4(4 * 1024 * 1024))

    assert calls == []  # no time passed: the disk is not hammered with an fsync per chunk
    writer.abandon()
    index.close()


# -- deletion ----------------------------------------------------------------------------------


def test_delete_removes_the_files_first_and_the_index_row_last(store, finished, monkeypatch):
    clip, _ = finished
    paths = list(clip_paths(store.clips_dir, clip.id).values())
    real_remove = store.index.remove
    seen_at_row_removal = []

    def remove(clip_id):
        seen_at_row_removal.append([p for p in paths if p.exists()])
        return real_remove(clip_id)

    monkeypatch.setattr(store.index, "remove", remove)
    assert store.delete(clip.id) is True

    assert seen_at_row_removal == [[]]  # every file was gone before the row went
    assert store.index.get(clip.id) is None
    assert stored_files(store) == []
    assert store.delete(clip.id) is False  # nothing left to delete


def test_delete_leaves_other_clips_alone(store, finished, keys):
    clip, video = finished
    other = store.begin_clip(START_US + 60_000_000)
    write_in_blocks(other, fake_mp4(70_000, seed=1))
    other_row = other.finish(THUMBNAIL, {})

    store.delete(clip.id)

    assert [c.id for c in store.index.clips()] == [other_row.id]
    assert len(stored_files(store)) == 3
    opened = open_video(store.clips_dir, other_row.id, [keys["member"]])
    assert opened.reader.read() == fake_mp4(70_000, seed=1)
    opened.close()


def test_a_finished_file_read_strictly_is_complete_but_a_partial_one_is_not(store, keys):
    writer = store.begin_clip(START_US)
    write_in_blocks(writer, fake_mp4(300 * 1024))
    writer.sync()
    video = clip_paths(store.clips_dir, writer.clip_id)["video"]
    partial = video.with_name(video.name + ".partial")

    with partial.open("rb") as handle:
        reader = decrypt(handle, [keys["member"]])
        with pytest.raises(PayloadError) as caught:
            reader.read()
            reader.read()  # data authenticated before the error comes first
    assert isinstance(caught.value, TruncatedError)
    writer.abandon()
