"""Clips recorded before the clock was set are aged from when it was, not from their date.

A Pi without a real-time clock records with the clock at the last shutdown (or 1970) until NTP
sets it: such a clip is dated days or decades back. The index says so (clock_unsynced) and when
the clock became trustworthy (kept_from_us); age retention counts from there, while size and
free space still delete it in its place by start time. An index written before these columns
existed opens and gains them.
"""

import random
import sqlite3
import threading

import pytest

from doorbell.config import RetentionSettings
from doorbell.storage.age import X25519Identity
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex, IndexedClip
from doorbell.storage.reconcile import reconcile
from doorbell.storage.retention import enforce_retention

DAY_US = 86_400 * 1_000_000
NOW_US = 1_717_243_200_000_000  # 2024-06-01T12:00:00Z
THIRTY_DAYS = {"max_age_days": 30, "max_total_bytes": 0, "min_free_bytes": 0}


def plenty_of_space() -> int:
    return 10**12


@pytest.fixture
def store(tmp_path):
    index = ClipIndex(tmp_path / "index.sqlite3")
    yield ClipStore(tmp_path / "clips", index, [X25519Identity.generate().recipient])
    index.close()


def record(store: ClipStore, start_us: int, size: int = 32 * 1024):
    writer = store.begin_clip(start_us)
    writer.video.write(random.Random(start_us).randbytes(size))
    return writer.finish(None, {"trigger": "motion"})


def remaining(store: ClipStore) -> list[str]:
    return [c.id for c in store.index.clips(newest_first=False)]


def test_a_clip_begun_before_the_clock_was_set_is_indexed_so_and_not_aged_meanwhile(store):
    store.clock_changed(unsynced=True)
    stale = record(store, NOW_US - 40 * DAY_US)  # the clock is 40 days behind
    assert store.index.get(stale.id).clock_unsynced
    assert store.index.get(stale.id).kept_from_us is None

    # Still waiting for the clock (or it was just set and nobody has said so yet): kept.
    assert enforce_retention(store, RetentionSettings(**THIRTY_DAYS), NOW_US,
                             plenty_of_space) == []
    assert remaining(store) == [stale.id]


def test_once_the_clock_is_set_it_is_kept_max_age_days_from_then(store):
    store.clock_changed(unsynced=True)
    stale = record(store, NOW_US - 40 * DAY_US)
    store.clock_changed(unsynced=False)
    fresh = record(store, NOW_US - DAY_US)  # after the clock was set: by its date
    assert not store.index.get(fresh.id).clock_unsynced
    assert store.index.keep_unsynced_from(NOW_US) == 1
    assert store.index.get(stale.id).kept_from_us == NOW_US
    limits = RetentionSettings(**THIRTY_DAYS)

    assert enforce_retention(store, limits, NOW_US + 29 * DAY_US, plenty_of_space) == []
    pruned = enforce_retention(store, limits, NOW_US + 30 * DAY_US + 1, plenty_of_space)
    assert [(p.clip_id, p.reason) for p in pruned] == [(stale.id, "age"), (fresh.id, "age")]


def test_a_young_clip_dated_decades_back_does_not_shield_old_ones_behind_it(store):
    store.clock_changed(unsynced=True)
    from_1970 = record(store, 3_600 * 1_000_000)
    store.index.keep_unsynced_from(NOW_US - DAY_US)  # set yesterday: young
    store.clock_changed(unsynced=False)
    expired = record(store, NOW_US - 31 * DAY_US)
    kept = record(store, NOW_US - 2 * DAY_US)

    pruned = enforce_retention(store, RetentionSettings(**THIRTY_DAYS), NOW_US, plenty_of_space)

    assert [p.clip_id for p in pruned] == [expired.id]
    assert remaining(store) == [from_1970.id, kept.id]


def test_size_limit_still_deletes_it_first_as_the_oldest(store):
    store.clock_changed(unsynced=True)
    stale = record(store, NOW_US - 40 * DAY_US, size=64 * 1024)
    store.index.keep_unsynced_from(NOW_US)
    store.clock_changed(unsynced=False)
    newer = [record(store, NOW_US - d * DAY_US, size=64 * 1024) for d in (3, 2, 1)]
    budget = sum(c.size_bytes for c in newer)  # room for the three newer clips only
    limits = RetentionSettings(max_age_days=30, max_total_bytes=budget, min_free_bytes=0)

    pruned = enforce_retention(store, limits, NOW_US, plenty_of_space)

    assert [(p.clip_id, p.reason) for p in pruned] == [(stale.id, "size")]
    assert remaining(store) == [c.id for c in newer]


def test_free_space_still_deletes_a_clip_waiting_for_the_clock(store):
    store.clock_changed(unsynced=True)
    waiting = record(store, NOW_US - 40 * DAY_US, size=64 * 1024)
    newest = record(store, NOW_US - 39 * DAY_US, size=64 * 1024)
    free = [1_000]

    def free_bytes() -> int:
        return free[0] + (0 if waiting.id in remaining(store) else waiting.size_bytes)

    limits = RetentionSettings(max_age_days=30, max_total_bytes=0,
                               min_free_bytes=waiting.size_bytes)
    pruned = enforce_retention(store, limits, NOW_US, free_bytes)

    assert [(p.clip_id, p.reason) for p in pruned] == [(waiting.id, "free space")]
    assert remaining(store) == [newest.id]  # never the newest


def test_a_jump_re_ages_only_the_clips_the_clock_before_it_dated(store):
    before = record(store, NOW_US - 50 * DAY_US)  # an earlier run, its clock trusted
    store.clock_changed(unsynced=False)
    this_run = [record(store, NOW_US - 40 * DAY_US + n * 60_000_000) for n in range(2)]

    moved = store.index.keep_from_after_jump(NOW_US - 40 * DAY_US - 1, NOW_US - 39 * DAY_US,
                                             NOW_US)

    assert moved == 2
    rows = {c.id: c for c in store.index.clips()}
    assert rows[before.id].kept_from_us is None and not rows[before.id].clock_unsynced
    assert all(rows[c.id].kept_from_us == NOW_US and rows[c.id].clock_unsynced
               for c in this_run)
    pruned = enforce_retention(store, RetentionSettings(**THIRTY_DAYS), NOW_US, plenty_of_space)
    assert [p.clip_id for p in pruned] == [before.id]


def test_putting_a_row_again_keeps_what_it_knew_about_the_clock(store):
    store.clock_changed(unsynced=True)
    clip = record(store, NOW_US - 40 * DAY_US)
    store.index.keep_unsynced_from(NOW_US)
    # reconcile or a replica's scan puts the row again, knowing nothing about the clock
    store.index.put(IndexedClip(clip.id, clip.start_us, "complete", clip.size_bytes))
    row = store.index.get(clip.id)
    assert row.clock_unsynced and row.kept_from_us == NOW_US


OLD_SCHEMA = """
CREATE TABLE clips (
    id TEXT PRIMARY KEY,
    start_us INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('complete', 'truncated', 'damaged')),
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0)
);
CREATE INDEX clips_by_start ON clips (start_us);
"""


def old_index(path, rows: int = 3) -> list[str]:
    """An index file as the versions before the clock columns wrote it."""
    ids = [f"202405{10 + n:02d}T120000Z-00000{n}" for n in range(rows)]
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(OLD_SCHEMA)
        db.executemany("INSERT INTO clips VALUES (?, ?, 'complete', 1000)",
                       [(clip_id, NOW_US - (40 - n) * DAY_US, ) for n, clip_id in enumerate(ids)])
    return ids


def test_an_old_index_opens_and_gains_the_columns(tmp_path):
    path = tmp_path / "index.sqlite3"
    ids = old_index(path)

    with ClipIndex(path, set_aside_damaged=True) as index:  # as the recorder opens it
        assert index.set_aside is None  # not taken for a damaged index
        rows = index.clips(newest_first=False)
        assert [r.id for r in rows] == ids
        assert all(not r.clock_unsynced and r.kept_from_us is None for r in rows)
        assert index.keep_unsynced_from(NOW_US) == 0
        index.put(IndexedClip("20240601T120000Z-00000a", NOW_US, "complete", 10,
                              clock_unsynced=True, kept_from_us=NOW_US))
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(clips)")]
    assert columns == ["id", "start_us", "state", "size_bytes", "clock_unsynced",
                       "kept_from_us"]
    with ClipIndex(path) as index:  # and opens again as it now is
        assert index.get("20240601T120000Z-00000a").clock_unsynced
        assert index.count() == 4


def test_an_old_index_opened_by_recorder_and_viewer_at_once_gains_the_columns_once(tmp_path):
    path = tmp_path / "index.sqlite3"
    old_index(path)
    errors, start = [], threading.Barrier(4)

    def open_it() -> None:
        try:
            start.wait()
            ClipIndex(path).close()
        except Exception as exc:  # noqa: BLE001 - the test reports whatever it was
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with ClipIndex(path) as index:
        assert len(index.clips()) == 3


def test_a_clip_interrupted_while_the_clock_was_unset_keeps_the_mark_when_recovered(store):
    """A full disk or a crash while the network is down: reconcile indexes the prefix, and
    while the recorder's clock is still unset the row says so too."""
    store.clock_changed(unsynced=True)
    writer = store.begin_clip(NOW_US - 40 * DAY_US)
    writer.video.write(random.Random(1).randbytes(200_000))
    writer.abandon()

    report = reconcile(store.clips_dir, store.index, clock_unsynced=store.clock_unsynced)

    (row,) = store.index.clips()
    assert report.recovered_truncated == [row.id] and row.state == "truncated"
    assert row.clock_unsynced and row.kept_from_us is None
    assert enforce_retention(store, RetentionSettings(**THIRTY_DAYS), NOW_US,
                             plenty_of_space) == []
