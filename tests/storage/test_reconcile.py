"""Reconciliation after a crash, a power cut or a lost index (design principle 7).

An interrupted clip keeps exactly its authenticated prefix and is marked truncated; a finished
clip is never lost; leftovers are reported; running it again changes nothing.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from doorbell.storage.age import TruncatedError, X25519Identity, decrypt, encrypt
from doorbell.storage.clipid import clip_paths, new_clip_id
from doorbell.storage.clipreader import open_video, read_metadata
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.durable import create_partial
from doorbell.storage.index import ClipIndex
from doorbell.storage.reconcile import reconcile

PROJECT = Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024
DAY_US = 86_400 * 1_000_000
START_US = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z


def video_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def owner():
    return X25519Identity.generate()


@pytest.fixture
def home(tmp_path):
    return tmp_path


def open_store(home: Path, owner: X25519Identity) -> ClipStore:
    return ClipStore(home / "clips", ClipIndex(home / "index.sqlite3"), [owner.recipient])


@pytest.fixture
def store(home, owner):
    store = open_store(home, owner)
    yield store
    store.index.close()


def write_clip(store: ClipStore, start_us: int, size: int, seed: int = 0):
    writer = store.begin_clip(start_us)
    writer.video.write(video_bytes(size, seed))
    return writer.finish(b"\xff\xd8\xff thumbnail", {"trigger": "motion"})


def read_prefix(store: ClipStore, clip_id: str, owner) -> tuple[bytes, bool]:
    opened = open_video(store.clips_dir, clip_id, [owner])
    try:
        return opened.reader.read(), opened.truncated
    finally:
        opened.close()


def snapshot(store: ClipStore) -> tuple[dict, list]:
    files = {
        p.relative_to(store.clips_dir).as_posix(): p.read_bytes()
        for p in sorted(store.clips_dir.rglob("*"))
        if p.is_file()
    }
    return files, store.index.clips()


# -- an interrupted clip -----------------------------------------------------------------------


def test_an_abandoned_clip_keeps_exactly_its_authenticated_prefix(store, owner):
    data = video_bytes(300 * 1024)
    writer = store.begin_clip(START_US)
    writer.video.write(data)
    writer.sync()
    writer.abandon()  # the process goes down hard: the last, unsealed chunk is lost

    report = reconcile(store.clips_dir, store.index)

    assert report.recovered_truncated == [writer.clip_id]
    video = clip_paths(store.clips_dir, writer.clip_id)["video"]
    assert video.is_file() and not video.with_name(video.name + ".partial").exists()
    row = store.index.get(writer.clip_id)
    assert row.state == "truncated"
    assert row.size_bytes == video.stat().st_size
    opened = open_video(store.clips_dir, writer.clip_id, [owner])
    assert opened.truncated is True
    assert opened.size_bytes == 4 * CHUNK  # 300 KiB: four whole chunks sealed, not a byte more
    assert opened.reader.read() == data[: 4 * CHUNK]
    opened.reader.seek(3 * CHUNK + 5)
    assert opened.reader.read(10) == data[3 * CHUNK + 5 : 3 * CHUNK + 15]
    opened.close()
    assert read_metadata(store.clips_dir, writer.clip_id, [owner]) is None
    assert any(writer.clip_id in line and "interrupted" in line for line in report.lines())


def test_a_dropped_writer_is_recovered_like_an_abandoned_one(store, owner):
    data = video_bytes(200 * 1024 + 17, seed=3)
    writer = store.begin_clip(START_US)
    writer.video.write(data)
    writer.sync()
    clip_id = writer.clip_id
    del writer  # no abandon(), no finish(): just gone

    report = reconcile(store.clips_dir, store.index)

    assert report.recovered_truncated == [clip_id]
    assert read_prefix(store, clip_id, owner) == (data[: 3 * CHUNK], True)


def test_the_strict_reader_still_refuses_a_recovered_clip(store, owner):
    writer = store.begin_clip(START_US)
    writer.video.write(video_bytes(150 * 1024))
    writer.abandon()
    reconcile(store.clips_dir, store.index)
    video = clip_paths(store.clips_dir, writer.clip_id)["video"]

    with video.open("rb") as handle:
        reader = decrypt(handle, [owner])
        with pytest.raises(TruncatedError):
            while reader.read(CHUNK):
                pass


_WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from doorbell.storage.age import parse_recipient
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex

    root, recipient, start_us, block = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), 16384
    index = ClipIndex(root / "index.sqlite3")
    store = ClipStore(root / "clips", index, [parse_recipient(recipient)])
    writer = store.begin_clip(start_us)
    print(writer.clip_id, flush=True)
    n = 0
    while True:
        writer.video.write(n.to_bytes(4, "big") * (block // 4))
        n += 1
        if n % 8 == 0:
            writer.sync()
            print(n, flush=True)
    """
)


def expected_stream(blocks: int, block: int = 16384) -> bytes:
    return b"".join(n.to_bytes(4, "big") * (block // 4) for n in range(blocks))


def test_a_writer_killed_with_sigkill_leaves_a_recoverable_prefix(home, owner):
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER_SCRIPT, str(home), str(owner.recipient), str(START_US)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT,
    )
    try:
        clip_id = process.stdout.readline().strip()
        assert clip_id, process.stderr.read()
        synced_blocks = 0
        deadline = time.monotonic() + 60
        while synced_blocks < 48 and time.monotonic() < deadline:  # at least 768 KiB synced
            line = process.stdout.readline()
            assert line, process.stderr.read()
            synced_blocks = int(line)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    store = open_store(home, owner)
    try:
        report = reconcile(store.clips_dir, store.index)
        assert report.recovered_truncated == [clip_id]
        assert store.index.get(clip_id).state == "truncated"
        recovered, truncated = read_prefix(store, clip_id, owner)
    finally:
        store.index.close()

    assert truncated is True
    assert len(recovered) % CHUNK == 0  # whole authenticated chunks only
    synced_chunks = (synced_blocks * 16384 - 1) // CHUNK  # sealed before the last sync report
    assert len(recovered) >= synced_chunks * CHUNK
    assert recovered == expected_stream(len(recovered) // 16384 + 1)[: len(recovered)]


# -- a store in a mess -------------------------------------------------------------------------


def _partial_small_file(store: ClipStore, clip_id: str, kind: str, owner) -> Path:
    """What a crash inside finish() leaves: an encrypted thumbnail/metadata not yet renamed."""
    final = clip_paths(store.clips_dir, clip_id)[kind]
    with create_partial(final) as handle:
        writer = encrypt(handle, [owner.recipient])
        writer.write(b"not yet committed")
        writer.close()
    return final.with_name(final.name + ".partial")


def _build_messy_store(home: Path, owner) -> dict:
    store = open_store(home, owner)
    complete = [
        write_clip(store, START_US + i * 3_600_000_000, 100_000 + i, seed=i) for i in range(3)
    ]
    originals = {
        c.id: {kind: p.read_bytes() for kind, p in clip_paths(store.clips_dir, c.id).items()}
        for c in complete
    }

    # Video interrupted while recording.
    interrupted = store.begin_clip(START_US + DAY_US)
    interrupted.video.write(video_bytes(200 * 1024, seed=10))
    interrupted.sync()
    interrupted.abandon()

    # Crash inside finish(): thumbnail not yet committed.
    in_thumb = store.begin_clip(START_US + DAY_US + 60_000_000)
    in_thumb.video.write(video_bytes(140 * 1024, seed=11))
    in_thumb.sync()
    thumb_partial = _partial_small_file(store, in_thumb.clip_id, "thumbnail", owner)
    in_thumb.abandon()

    # Crash inside finish(): thumbnail committed, metadata not yet.
    in_meta = store.begin_clip(START_US + DAY_US + 120_000_000)
    in_meta.video.write(video_bytes(140 * 1024, seed=12))
    in_meta.sync()
    thumb = clip_paths(store.clips_dir, in_meta.clip_id)["thumbnail"]
    _partial_small_file(store, in_meta.clip_id, "thumbnail", owner).rename(thumb)
    meta_partial = _partial_small_file(store, in_meta.clip_id, "metadata", owner)
    in_meta.abandon()

    # A video partial with nothing in it (power cut right after it was created).
    empty_id = new_clip_id(START_US + 2 * DAY_US)
    empty = clip_paths(store.clips_dir, empty_id)["video"]
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.with_name(empty.name + ".partial").write_bytes(b"")

    # Files that are not clips.
    orphan = store.clips_dir / "2024" / "05" / "01" / "notes.txt"
    orphan.write_text("left here by someone\n")

    store.index.close()
    for suffix in ("", "-wal", "-shm"):  # the index is lost
        Path(f"{home / 'index.sqlite3'}{suffix}").unlink(missing_ok=True)
    return {
        "complete": [c.id for c in complete],
        "originals": originals,
        "interrupted": [interrupted.clip_id, in_thumb.clip_id, in_meta.clip_id],
        "removed": [thumb_partial.name, meta_partial.name],
        "empty": empty_id,
        "orphan": orphan,
    }


def test_a_messy_store_with_a_lost_index_reconciles_without_losing_a_finished_clip(home, owner):
    mess = _build_messy_store(home, owner)
    store = open_store(home, owner)
    try:
        assert store.index.count() == 0
        report = reconcile(store.clips_dir, store.index)

        rows = {c.id: c for c in store.index.clips()}
        for clip_id in mess["complete"]:
            assert rows[clip_id].state == "complete"
            paths = clip_paths(store.clips_dir, clip_id)
            assert {k: p.read_bytes() for k, p in paths.items()} == mess["originals"][clip_id]
            assert rows[clip_id].size_bytes == sum(p.stat().st_size for p in paths.values())
            assert read_prefix(store, clip_id, owner)[1] is False
        for clip_id in mess["interrupted"]:
            assert rows[clip_id].state == "truncated"
            data, truncated = read_prefix(store, clip_id, owner)
            assert truncated and len(data) > 0 and len(data) % CHUNK == 0
        assert rows[mess["empty"]].state == "damaged"
        empty = clip_paths(store.clips_dir, mess["empty"])["video"]
        assert empty.is_file() and empty.stat().st_size == 0  # kept, never silently dropped
        assert len(rows) == 3 + 3 + 1
        assert not list(store.clips_dir.rglob("*.partial"))
        assert mess["orphan"].read_text() == "left here by someone\n"

        assert sorted(report.recovered_truncated) == sorted(mess["interrupted"])
        assert report.damaged == [mess["empty"]]
        assert sorted(report.removed_partials) == sorted(mess["removed"])
        assert report.orphans == ["2024/05/01/notes.txt"]
        assert sorted(report.indexed) == sorted(mess["complete"])
        text = "\n".join(report.lines())
        for clip_id in mess["interrupted"]:
            assert f"clip {clip_id} was interrupted" in text
        assert f"clip {mess['empty']}" in text and "damaged" in text
        assert "3 clip(s) found without an index row were indexed" in text
        for name in mess["removed"]:
            assert f"removed unfinished {name}" in text
        assert "orphan file left in place: 2024/05/01/notes.txt" in text
    finally:
        store.index.close()


def test_reconciling_twice_changes_nothing_the_second_time(home, owner):
    _build_messy_store(home, owner)
    store = open_store(home, owner)
    try:
        reconcile(store.clips_dir, store.index)
        before = snapshot(store)

        again = reconcile(store.clips_dir, store.index)

        assert snapshot(store) == before
        assert again.recovered_truncated == again.damaged == again.indexed == []
        assert again.dropped_rows == again.removed_partials == []
        # The orphan is still there and still reported: it is never silently forgotten.
        assert again.lines() == ["orphan file left in place: 2024/05/01/notes.txt"]
    finally:
        store.index.close()


def test_a_tidy_store_reconciles_to_a_clean_report(store, owner):
    for i in range(3):
        write_clip(store, START_US + i * 1_000_000, 70_000, seed=i)
    before = snapshot(store)

    report = reconcile(store.clips_dir, store.index)

    assert report.is_clean() and report.lines() == []
    assert snapshot(store) == before


def test_a_row_whose_video_is_gone_is_dropped_and_reported(store, owner):
    kept = write_clip(store, START_US, 70_000)
    gone = write_clip(store, START_US + 1_000_000, 70_000, seed=1)
    for path in clip_paths(store.clips_dir, gone.id).values():
        path.unlink()

    report = reconcile(store.clips_dir, store.index)

    assert report.dropped_rows == [gone.id]
    assert [c.id for c in store.index.clips()] == [kept.id]
    assert any(gone.id in line and "gone" in line for line in report.lines())


def test_a_committed_file_and_a_stale_partial_of_it_keep_the_committed_one(store, owner):
    clip = write_clip(store, START_US, 100_000)
    video = clip_paths(store.clips_dir, clip.id)["video"]
    committed = video.read_bytes()
    stale = video.with_name(video.name + ".partial")
    stale.write_bytes(committed[: len(committed) // 2])

    report = reconcile(store.clips_dir, store.index)

    assert video.read_bytes() == committed
    assert store.index.get(clip.id).state == "complete"
    assert stale.exists()  # reported, not dropped
    assert report.orphans == [stale.relative_to(store.clips_dir).as_posix()]


def test_a_damaged_clip_stays_damaged_after_the_index_is_lost_again(home, owner):
    store = open_store(home, owner)
    empty_id = new_clip_id(START_US)
    empty = clip_paths(store.clips_dir, empty_id)["video"]
    empty.parent.mkdir(parents=True)
    empty.with_name(empty.name + ".partial").write_bytes(b"")
    reconcile(store.clips_dir, store.index)
    assert store.index.get(empty_id).state == "damaged"
    store.index.close()
    (home / "index.sqlite3").unlink()

    store = open_store(home, owner)
    try:
        reconcile(store.clips_dir, store.index)
        assert store.index.get(empty_id).state == "damaged"
    finally:
        store.index.close()


def test_thumbnail_and_metadata_left_without_their_video_are_reported(store, owner):
    clip = write_clip(store, START_US, 70_000)
    paths = clip_paths(store.clips_dir, clip.id)
    paths["video"].unlink()
    reconcile(store.clips_dir, store.index)  # drops the row and reports it

    report = reconcile(store.clips_dir, store.index)

    leftovers = sorted(p.relative_to(store.clips_dir).as_posix()
                       for p in (paths["thumbnail"], paths["metadata"]) if p.exists())
    assert leftovers == [] or sorted(report.orphans) == leftovers
