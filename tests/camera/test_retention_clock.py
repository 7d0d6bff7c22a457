"""While recording, retention follows the wall clock: set by NTP after boot, or jumping.

A Pi without a real-time clock starts with the clock at its last shutdown. Here it is 40 days
behind; the footage recorded then must survive the moment the clock is set right (30 days
kept), and go 30 real days later. Both clocks are controlled: the wall clock (time.time) and
the monotonic one (which a clock being set does not move).
"""

import random

from doorbell.camera.synthetic import ScriptedEvent, SyntheticScene
from doorbell.camera.upkeep import UNSYNCED_TRUSTED_AFTER_S, Activity, Retention
from doorbell.config import RetentionSettings
from doorbell.storage.age import X25519Identity
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex
from doorbell.storage.retention import enforce_retention
from tests.recorder_home import ORIGIN_US, camera_config

DAY_US = 86_400 * 1_000_000
TRUTH_US = ORIGIN_US  # the real time when NTP answers
BEHIND_US = TRUTH_US - 40 * DAY_US  # the clock fake-hwclock restored
KEEP_30_DAYS = RetentionSettings(max_age_days=30, max_total_bytes=0, min_free_bytes=0)


class Clocks:
    """time.time (µs) and time.monotonic (s), moved by the test."""

    def __init__(self, wall_us: int):
        self.wall_us, self.monotonic_s = wall_us, 1_000.0

    def wall(self) -> int:
        return self.wall_us

    def monotonic(self) -> float:
        return self.monotonic_s

    def let_pass(self, seconds: float) -> None:  # real time: both clocks move
        self.wall_us += round(seconds * 1_000_000)
        self.monotonic_s += seconds

    def set_wall(self, wall_us: int) -> None:  # the clock is set: only the wall clock moves
        self.wall_us = wall_us


def make_retention(tmp_path, clocks: Clocks, audit: AuditLog | None = None):
    index = ClipIndex(tmp_path / "index.sqlite3")
    store = ClipStore(tmp_path / "clips", index, [X25519Identity.generate().recipient])
    return store, Retention(store, audit, Activity(), clocks.wall, clock=clocks.monotonic)


def record(store: ClipStore, start_us: int, size: int = 32 * 1024) -> str:
    writer = store.begin_clip(start_us)
    writer.video.write(random.Random(start_us).randbytes(size))
    return writer.finish(None, {"trigger": "motion"}).id


def remaining(store: ClipStore) -> list[str]:
    return [c.id for c in store.index.clips(newest_first=False)]


def test_footage_from_before_ntp_survives_the_clock_being_set_and_goes_30_real_days_later(
        tmp_path):
    clocks = Clocks(BEHIND_US)
    store, retention = make_retention(tmp_path, clocks)
    retention.clock_unsynchronised()  # `doorbell record` started before NTP
    retention.run(KEEP_30_DAYS, force=True)
    clocks.let_pass(600)
    visit = record(store, clocks.wall())  # ten minutes in, while the network is down
    retention.run(KEEP_30_DAYS, force=True)
    assert remaining(store) == [visit]

    clocks.let_pass(3_600)
    clocks.set_wall(TRUTH_US)  # NTP sets the clock: 40 days forward
    retention.run(KEEP_30_DAYS)  # before the watcher has said so: kept anyway
    retention.clock_synchronised()
    retention.run(KEEP_30_DAYS)
    row = store.index.get(visit)
    assert row.clock_unsynced and row.kept_from_us == TRUTH_US
    assert remaining(store) == [visit]
    assert retention.clock_moved  # the recorder re-anchors its clip times

    clocks.let_pass(29 * 86_400)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == [visit]
    clocks.let_pass(86_400 + 60)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == []


def test_a_clock_set_by_hours_not_days_keeps_its_clips_from_the_moment_ntp_says_so(tmp_path):
    clocks = Clocks(TRUTH_US - 20 * 3_600 * 1_000_000)  # 20 hours behind: no jump by itself
    store, retention = make_retention(tmp_path, clocks)
    retention.clock_unsynchronised()
    retention.run(KEEP_30_DAYS, force=True)
    visit = record(store, clocks.wall())
    clocks.let_pass(60)
    clocks.set_wall(TRUTH_US)
    retention.run(KEEP_30_DAYS)
    assert store.index.get(visit).kept_from_us is None  # still waiting for NTP's word
    assert not retention.clock_moved
    retention.clock_synchronised()
    retention.run(KEEP_30_DAYS)
    assert store.index.get(visit).kept_from_us == TRUTH_US
    assert retention.clock_moved
    clocks.let_pass(30 * 86_400 - 60)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == [visit]  # by its date it would have gone 20 hours ago
    clocks.let_pass(120)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == []


def test_a_clip_open_when_the_clock_is_set_is_kept_from_then_too(tmp_path):
    clocks = Clocks(BEHIND_US)
    store, retention = make_retention(tmp_path, clocks)
    retention.clock_unsynchronised()
    retention.run(KEEP_30_DAYS, force=True)
    writer = store.begin_clip(clocks.wall())  # a visit under way ...
    writer.video.write(b"\x00" * 10_000)
    clocks.set_wall(TRUTH_US)  # ... when NTP sets the clock
    retention.clock_synchronised()
    retention.run(KEEP_30_DAYS)
    clocks.let_pass(20)
    clip = writer.finish(None, {"trigger": "motion"})  # sealed afterwards
    clocks.let_pass(60)
    retention.run(KEEP_30_DAYS)

    assert store.index.get(clip.id).kept_from_us == TRUTH_US + 80_000_000
    clocks.let_pass(30 * 86_400 - 120)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == [clip.id]
    clocks.let_pass(180)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == []


def test_a_clock_jumping_forward_while_running_is_treated_the_same(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    clocks = Clocks(BEHIND_US)  # a clock nobody said was unsynchronised (long after boot)
    store, retention = make_retention(tmp_path, clocks, audit)
    older = record(store, BEHIND_US - 31 * DAY_US)  # before this run: by its date
    retention.run(KEEP_30_DAYS, force=True)
    assert remaining(store) == []  # expired by the clock of the time
    clocks.let_pass(300)
    visit = record(store, clocks.wall())
    clocks.let_pass(300)
    retention.run(KEEP_30_DAYS, force=True)

    clocks.set_wall(TRUTH_US)  # 40 days forward, without a word from NTP
    retention.run(KEEP_30_DAYS)

    assert older not in remaining(store) and remaining(store) == [visit]
    assert store.index.get(visit).kept_from_us == TRUTH_US
    jumped = [e for e in audit.entries() if e.action == "clock.jumped"]
    assert len(jumped) == 1 and jumped[0].details["clips"] == 1
    assert round(jumped[0].details["by_s"] / 86_400) == 40
    clocks.let_pass(30 * 86_400 + 60)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == []


def test_a_clock_jumping_back_re_ages_the_clips_dated_ahead_of_it(tmp_path):
    clocks = Clocks(TRUTH_US + 300 * DAY_US)  # set wrongly, 300 days ahead
    store, retention = make_retention(tmp_path, clocks)
    retention.run(KEEP_30_DAYS, force=True)
    visit = record(store, clocks.wall())
    clocks.let_pass(60)
    retention.run(KEEP_30_DAYS, force=True)
    clocks.set_wall(TRUTH_US)  # put right
    retention.run(KEEP_30_DAYS)
    assert store.index.get(visit).kept_from_us == TRUTH_US
    clocks.let_pass(30 * 86_400 + 60)  # not 330 days
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == []


def test_a_clock_drifting_or_stepped_by_minutes_is_no_jump(tmp_path):
    clocks = Clocks(TRUTH_US - 40 * DAY_US)
    store, retention = make_retention(tmp_path, clocks)
    retention.run(KEEP_30_DAYS, force=True)
    old = record(store, clocks.wall() - 31 * DAY_US)
    for _ in range(24):
        clocks.let_pass(3_600)
        clocks.set_wall(clocks.wall() + 2_000_000)  # NTP slewing: 2 s an hour
    clocks.set_wall(clocks.wall() + 5 * 60_000_000)  # and a 5-minute step
    retention.run(KEEP_30_DAYS)
    assert not retention.clock_moved
    assert old not in remaining(store)


def test_size_still_deletes_a_clip_waiting_for_the_clock(tmp_path):
    clocks = Clocks(BEHIND_US)
    store, retention = make_retention(tmp_path, clocks)
    retention.clock_unsynchronised()
    waiting = [record(store, clocks.wall() + n * 60_000_000, size=64 * 1024) for n in range(3)]
    budget = 2 * store.index.get(waiting[0]).size_bytes
    retention.run(RetentionSettings(max_age_days=30, max_total_bytes=budget, min_free_bytes=0),
                  force=True)
    assert remaining(store) == waiting[1:]  # the oldest went, for size


def test_the_recorder_marks_the_clips_before_the_clock_was_set_and_dates_the_next_right(home):
    """The real recorder: a visit while the clock is 40 days behind, NTP sets it, a second
    visit. The first clip is kept from then; the second is dated by the right clock (the
    recorder's clip times, anchored on the wall clock, follow it)."""
    home.root.joinpath("config.toml").write_text(camera_config(320, 180, 15))
    scene = SyntheticScene(320, 180, 15, duration_s=32.0,
                           script=[ScriptedEvent("visit", 2.0, 2.0, "side"),
                                   ScriptedEvent("visit", 24.0, 2.0, "side")])
    calls = [0]
    set_at_call = 15 * 15  # about 15 s of frames in: between the two clips

    def wall_clock_us() -> int:  # a frame's worth of time per call (retention: one per frame)
        calls[0] += 1
        base_us = BEHIND_US if calls[0] < set_at_call else TRUTH_US - set_at_call * 66_667
        return base_us + calls[0] * 66_667

    recorder = home.record(scene, wall_clock_us=wall_clock_us, retention_interval_s=1.0)

    first, second = home.index_rows()
    assert abs(first.start_us - (BEHIND_US + 1 * 1_000_000)) < 5 * 1_000_000
    assert first.clock_unsynced and first.kept_from_us is not None
    assert abs(first.kept_from_us - TRUTH_US) < 5 * 1_000_000
    assert not second.clock_unsynced and second.kept_from_us is None
    assert abs(second.start_us - (TRUTH_US + 6 * 1_000_000)) < 5 * 1_000_000
    assert recorder.stats.clips == 2
    with ClipIndex(home.root / "index.sqlite3") as index:
        store = ClipStore(home.clips_dir, index, [X25519Identity.generate().recipient])
        assert enforce_retention(store, KEEP_30_DAYS, TRUTH_US + 29 * DAY_US) == []
        assert len(enforce_retention(store, KEEP_30_DAYS, TRUTH_US + 31 * DAY_US)) == 2


def test_a_clock_ntp_never_sets_is_taken_as_it_is_after_an_hour_and_re_aged_if_set_later(
        tmp_path):
    clocks = Clocks(TRUTH_US - 6 * 3_600 * 1_000_000)  # a network without a time server
    store, retention = make_retention(tmp_path, clocks)
    retention.clock_unsynchronised()
    retention.run(KEEP_30_DAYS, force=True)
    visit = record(store, clocks.wall())
    clocks.let_pass(UNSYNCED_TRUSTED_AFTER_S - 60)
    retention.run(KEEP_30_DAYS)
    assert store.index.get(visit).kept_from_us is None  # still waiting
    clocks.let_pass(120)
    retention.run(KEEP_30_DAYS)
    taken_at_us = clocks.wall()
    assert store.index.get(visit).kept_from_us == taken_at_us  # aged by this clock from now
    later = record(store, clocks.wall() + 1_000_000)
    assert not store.index.get(later).clock_unsynced

    clocks.let_pass(3 * 86_400)
    clocks.set_wall(clocks.wall() + 6 * 3_600 * 1_000_000)  # NTP after all: 6 hours forward
    retention.clock_synchronised()
    retention.run(KEEP_30_DAYS)
    set_at_us = clocks.wall()
    assert store.index.get(visit).kept_from_us == set_at_us  # both re-aged from then
    assert store.index.get(later).kept_from_us == set_at_us
    clocks.let_pass(30 * 86_400 - 60)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == [visit, later]
    clocks.let_pass(120)
    retention.run(KEEP_30_DAYS)
    assert remaining(store) == []


def test_an_index_that_cannot_take_the_jump_holds_age_back_but_not_size(tmp_path, monkeypatch,
                                                                       caplog):
    clocks = Clocks(BEHIND_US)
    store, retention = make_retention(tmp_path, clocks)
    retention.run(KEEP_30_DAYS, force=True)
    clips = []
    for _ in range(3):
        clocks.let_pass(60)
        clips.append(record(store, clocks.wall(), size=64 * 1024))
        retention.run(KEEP_30_DAYS)  # as after every frame
    budget = 2 * store.index.get(clips[0]).size_bytes
    limits = RetentionSettings(max_age_days=30, max_total_bytes=budget, min_free_bytes=0)
    real_update = store.index.keep_from_after_jump
    failures = []

    def disk_full(*args):
        failures.append(args)
        raise OSError(28, "the disk is full, so the clip index cannot be written")

    monkeypatch.setattr(store.index, "keep_from_after_jump", disk_full)
    clocks.set_wall(TRUTH_US)
    for _ in range(3):
        retention.run(limits, force=True)
    assert remaining(store) == clips[1:]  # the size limit held: the oldest went
    assert len(failures) == 3  # the jump was tried again at each call
    assert sum("could not record a change of the clock" in r.getMessage()
               for r in caplog.records) == 1

    monkeypatch.setattr(store.index, "keep_from_after_jump", real_update)
    retention.run(limits, force=True)
    assert remaining(store) == clips[1:]  # kept from the jump, not deleted for age
    assert all(store.index.get(c).kept_from_us == TRUTH_US for c in clips[1:])
