"""Retention: the oldest clips go first, by age, by total size and by free space, while the
recorder keeps writing, and the clip being written is never touched."""

import random

import pytest

from doorbell.config import RetentionSettings
from doorbell.storage.age import X25519Identity
from doorbell.storage.clipid import clip_paths
from doorbell.storage.clipreader import open_video
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex
from doorbell.storage.retention import enforce_retention

DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000
NOW_US = 1_717_243_200_000_000  # 2024-06-01T12:00:00Z
MIB = 1024 * 1024
NO_LIMITS = {"max_age_days": 0, "max_total_bytes": 0, "min_free_bytes": 0}


def limits(**changes) -> RetentionSettings:
    return RetentionSettings(**{**NO_LIMITS, **changes})


def plenty_of_space() -> int:
    return 10**12


@pytest.fixture
def owner():
    return X25519Identity.generate()


@pytest.fixture
def store(tmp_path, owner):
    index = ClipIndex(tmp_path / "index.sqlite3")
    yield ClipStore(tmp_path / "clips", index, [owner.recipient])
    index.close()


def record(store: ClipStore, start_us: int, size: int = 64 * 1024, seed: int = 0):
    writer = store.begin_clip(start_us)
    writer.video.write(random.Random(seed).randbytes(size))
    return writer.finish(b"\xff\xd8\xff", {"trigger": "motion"})


def files_of(store: ClipStore, clip_id: str) -> list:
    return [p for p in clip_paths(store.clips_dir, clip_id).values() if p.exists()]


def remaining(store: ClipStore) -> list[str]:
    return [c.id for c in store.index.clips(newest_first=False)]


# -- by age ------------------------------------------------------------------------------------


def test_the_age_limit_prunes_only_clips_older_than_it_oldest_first(store):
    ages_days = [45, 40, 31, 29, 10, 0.01]
    clips = [record(store, NOW_US - int(d * DAY_US), seed=i) for i, d in enumerate(ages_days)]

    pruned = enforce_retention(store, limits(max_age_days=30), NOW_US, plenty_of_space)

    assert [p.clip_id for p in pruned] == [c.id for c in clips[:3]]
    assert {p.reason for p in pruned} == {"age"}
    assert [p.size_bytes for p in pruned] == [c.size_bytes for c in clips[:3]]
    assert remaining(store) == [c.id for c in clips[3:]]
    for clip in clips[:3]:
        assert files_of(store, clip.id) == []
    for clip in clips[3:]:
        assert len(files_of(store, clip.id)) == 3


def test_a_store_within_every_limit_is_left_alone(store):
    clips = [record(store, NOW_US - i * DAY_US, seed=i) for i in range(5)]
    settings = limits(max_age_days=30, max_total_bytes=10_000_000, min_free_bytes=1_000_000)

    assert enforce_retention(store, settings, NOW_US, plenty_of_space) == []
    assert sorted(remaining(store)) == sorted(c.id for c in clips)


# -- by size -----------------------------------------------------------------------------------


def test_the_size_limit_prunes_oldest_first_until_the_store_fits(store):
    clips = [record(store, NOW_US - (20 - i) * HOUR_US, size=MIB, seed=i) for i in range(14)]
    limit = 10_000_000
    total = sum(c.size_bytes for c in clips)
    assert total > limit
    expected = 0
    while total > limit:  # the smallest number of oldest clips whose removal fits the limit
        total -= clips[expected].size_bytes
        expected += 1

    pruned = enforce_retention(store, limits(max_total_bytes=limit), NOW_US, plenty_of_space)

    assert [p.clip_id for p in pruned] == [c.id for c in clips[:expected]]
    assert {p.reason for p in pruned} == {"size"}
    assert remaining(store) == [c.id for c in clips[expected:]]
    assert store.index.total_size_bytes() <= limit
    on_disk = sum(p.stat().st_size for p in store.clips_dir.rglob("*") if p.is_file())
    assert on_disk == store.index.total_size_bytes()


# -- by free space -----------------------------------------------------------------------------


def test_low_free_space_prunes_oldest_first_until_enough_is_free(store):
    clips = [record(store, NOW_US - (10 - i) * HOUR_US, size=MIB, seed=i) for i in range(8)]
    clip_size = clips[0].size_bytes
    capacity = 10 * clip_size

    def free_bytes() -> int:  # a small disk holding only the store
        return capacity - store.index.total_size_bytes()

    # 2 clips' worth free now; 4.5 clips' worth wanted: three clips must go.
    settings = limits(min_free_bytes=int(4.5 * clip_size))

    pruned = enforce_retention(store, settings, NOW_US, free_bytes)

    assert [p.clip_id for p in pruned] == [c.id for c in clips[:3]]
    assert {p.reason for p in pruned} == {"free space"}
    assert remaining(store) == [c.id for c in clips[3:]]
    assert free_bytes() >= settings.min_free_bytes


def test_age_size_and_free_space_each_name_their_reason(store):
    old = record(store, NOW_US - 40 * DAY_US, size=MIB, seed=1)
    big = [record(store, NOW_US - (9 - i) * HOUR_US, size=4 * MIB, seed=2 + i) for i in range(4)]
    clip_size = big[0].size_bytes
    capacity = int(4.5 * clip_size)
    settings = limits(max_age_days=30, max_total_bytes=13_000_000, min_free_bytes=2 * clip_size)

    def free_bytes() -> int:  # a small disk holding only the store
        return capacity - store.index.total_size_bytes()

    pruned = enforce_retention(store, settings, NOW_US, free_bytes)

    # old (age) and the oldest big clip (size) go first; then the disk still has less than two
    # clips' worth free, so one more goes for free space.
    assert [(p.clip_id, p.reason) for p in pruned] == [
        (old.id, "age"), (big[0].id, "size"), (big[1].id, "free space")]
    assert remaining(store) == [c.id for c in big[2:]]


def test_a_free_space_floor_out_of_reach_deletes_no_clip_for_it(store):
    clips = [record(store, NOW_US - (5 - i) * HOUR_US, seed=i) for i in range(5)]
    # A disk full of other data: deleting every clip would free 320 KiB, 1 GB is wanted.
    settings = limits(max_age_days=30, min_free_bytes=10**9)

    assert enforce_retention(store, settings, NOW_US, lambda: 0) == []

    assert remaining(store) == [c.id for c in clips]  # not every clip, the newest included


def test_a_reachable_floor_never_takes_the_newest_clip(store):
    clips = [record(store, NOW_US - (5 - i) * HOUR_US, size=MIB, seed=i) for i in range(5)]
    capacity = 5 * clips[0].size_bytes + 1000

    def free_bytes() -> int:
        return capacity - store.index.total_size_bytes()

    # Reachable by deleting all four older clips (the newest cannot count towards it).
    settings = limits(min_free_bytes=4 * clips[0].size_bytes)

    pruned = enforce_retention(store, settings, NOW_US, free_bytes)

    assert [p.clip_id for p in pruned] == [c.id for c in clips[:4]]
    assert remaining(store) == [clips[-1].id]


def test_room_after_a_full_disk_prunes_the_oldest_but_never_the_newest(store):
    clips = [record(store, NOW_US - (5 - i) * HOUR_US, size=MIB, seed=i) for i in range(5)]
    clip_size = clips[0].size_bytes

    def free_bytes() -> int:  # a disk full of other data: only what is deleted comes free
        return 5 * clip_size - store.index.total_size_bytes()

    no_floor = limits(min_free_bytes=0)
    pruned = enforce_retention(store, no_floor, NOW_US, free_bytes, room_bytes=2 * clip_size + 1)

    assert [p.clip_id for p in pruned] == [c.id for c in clips[:3]]
    assert {p.reason for p in pruned} == {"free space"}
    more = enforce_retention(store, no_floor, NOW_US, free_bytes, room_bytes=10**9)
    assert [p.clip_id for p in more] == [clips[3].id]
    assert remaining(store) == [clips[4].id]  # the newest stays, whatever room is wanted


# -- while recording ---------------------------------------------------------------------------


def test_a_store_filled_past_its_limits_while_writing_keeps_the_newest_clips(store, owner):
    settings = limits(max_age_days=3, max_total_bytes=10_000_000, min_free_bytes=0)
    finished: list = []
    video = {}
    now = NOW_US - 10 * DAY_US
    reasons = set()
    for n in range(24):  # a clip every 8 hours for 8 days: small ones, then big ones
        now += 8 * HOUR_US
        writer = store.begin_clip(now)
        data = random.Random(n).randbytes(3 * MIB // 4 if n < 14 else 2 * MIB)
        writer.video.write(data[: len(data) // 2])
        writer.sync()
        final = clip_paths(store.clips_dir, writer.clip_id)["video"]
        partial = final.with_name(final.name + ".partial")

        pruned = enforce_retention(store, settings, now, plenty_of_space)  # mid-clip

        assert writer.clip_id not in {p.clip_id for p in pruned}
        assert partial.is_file()
        writer.video.write(data[len(data) // 2 :])
        clip = writer.finish(b"\xff\xd8\xff", {"n": n})
        finished.append(clip)
        video[clip.id] = data
        pruned += enforce_retention(store, settings, now, plenty_of_space)
        reasons |= {p.reason for p in pruned}

        kept = remaining(store)
        ids = [c.id for c in finished]
        # What is left is always the newest clips, in order, with nothing missing in between.
        assert kept == ids[len(ids) - len(kept) :]
        assert store.index.total_size_bytes() <= settings.max_total_bytes
        assert all(now - store.index.get(i).start_us <= 3 * DAY_US for i in kept)
        assert clip.id in kept  # the clip just written survives its own retention run

    assert reasons == {"age", "size"}  # the small clips aged out, the big ones overflowed
    kept = remaining(store)
    assert 0 < len(kept) < len(finished)
    assert kept == [c.id for c in finished[-len(kept) :]]
    for clip_id in kept:  # and they still play
        opened = open_video(store.clips_dir, clip_id, [owner])
        assert opened.reader.read() == video[clip_id] and opened.truncated is False
        opened.close()
    on_disk = {p.name.split(".")[0] for p in store.clips_dir.rglob("*") if p.is_file()}
    assert on_disk == set(kept)


def test_no_free_space_at_all_never_touches_the_clip_being_written(store, owner):
    for i in range(5):
        record(store, NOW_US - (5 - i) * HOUR_US, seed=i)
    writer = store.begin_clip(NOW_US)
    data = random.Random(99).randbytes(300 * 1024)
    writer.video.write(data)
    writer.sync()

    pruned = enforce_retention(store, limits(min_free_bytes=10**9), NOW_US, lambda: 0,
                               room_bytes=10**9)  # the disk ran full: make all the room it can

    assert len(pruned) == 4  # every finished clip but the newest had to go ...
    assert len(remaining(store)) == 1
    clip = writer.finish(None, {})  # ... and the one in progress finishes intact
    opened = open_video(store.clips_dir, clip.id, [owner])
    assert opened.reader.read() == data and opened.truncated is False
    opened.close()
