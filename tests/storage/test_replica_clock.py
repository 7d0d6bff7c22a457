"""The replica's age retention (storage.replica_retention) when the device's wall clock is wrong,
against a real OpenSSH sshd on loopback: a clock that jumps ahead must not wipe the replica."""

import logging
import os
import time
from pathlib import Path

from doorbell.storage.replica import Replicator
from doorbell.storage.replica_retention import US_PER_DAY, ReplicaRetention
from tests.storage.test_replica import home, sshd
from tests.storage.test_replica_faults import sftp

__all__ = ["home", "sftp", "sshd"]  # fixtures

HOUR_US = 3600 * 1_000_000
YEAR_US = 365 * US_PER_DAY


def clip_at(home: Path, start_us: int, n: int) -> str:
    t = time.gmtime(start_us / 1e6)
    day = home / "clips" / time.strftime("%Y/%m/%d", t)
    day.mkdir(parents=True, exist_ok=True)
    clip_id = time.strftime("%Y%m%dT%H%M%SZ", t) + f"-{n:06x}"
    (day / f"{clip_id}.mp4.age").write_bytes(os.urandom(10_000))
    (day / f"{clip_id}.jpg.age").write_bytes(os.urandom(1_000))
    return clip_id


def on_replica(root: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (root / "clips").rglob("*.mp4.age"))


def wall_now_us() -> int:
    return time.time_ns() // 1000


def test_a_clock_a_year_ahead_deletes_nothing_recent(home, sshd, sftp):
    now_us = wall_now_us()
    ids = [clip_at(home, now_us - hours * HOUR_US, hours) for hours in (5, 4, 3, 2, 1)]
    Replicator(home, str(sshd.root), ReplicaRetention(max_age_days=90)).run_pass(sftp)
    assert on_replica(sshd.root) == sorted(ids)
    # a bad RTC, an unauthenticated NTP answer on the LAN: the clock says a year later
    ahead = Replicator(home, str(sshd.root), ReplicaRetention(max_age_days=90),
                       clock_us=lambda: wall_now_us() + YEAR_US,
                       clock_synchronised=lambda: True)
    result = ahead.run_pass(sftp)
    assert result.retention.deleted_clips == []
    assert on_replica(sshd.root) == sorted(ids)
    # and a clip recorded next is still copied (nothing was marked deleted)
    later = clip_at(home, now_us, 9)
    ahead.run_pass(sftp)
    assert on_replica(sshd.root) == sorted([*ids, later])


def test_one_pass_deletes_only_clips_older_than_max_age_before_the_newest(home, sshd, sftp):
    now_us = wall_now_us()
    old = clip_at(home, now_us - 100 * US_PER_DAY, 1)  # 100 days before the newest
    kept = clip_at(home, now_us - 80 * US_PER_DAY, 2)  # 80 days before
    newest = clip_at(home, now_us - HOUR_US, 3)
    # copied while the clock said the right time but with no age limit yet
    Replicator(home, str(sshd.root)).run_pass(sftp)
    assert on_replica(sshd.root) == [old, kept, newest]
    ahead = Replicator(home, str(sshd.root), ReplicaRetention(max_age_days=90),
                       clock_us=lambda: wall_now_us() + YEAR_US,
                       clock_synchronised=lambda: True)
    assert ahead.run_pass(sftp).retention.deleted_clips == [old]
    assert on_replica(sshd.root) == [kept, newest]


def test_nothing_is_aged_while_the_clock_is_unsynchronised(home, sshd, sftp, caplog):
    caplog.set_level(logging.INFO, logger="doorbell.storage.replica")
    now_us = wall_now_us()
    ancient = clip_at(home, now_us - 200 * US_PER_DAY, 1)
    newest = clip_at(home, now_us - HOUR_US, 2)
    synced = [False]
    replicator = Replicator(home, str(sshd.root), ReplicaRetention(max_age_days=90),
                            clock_synchronised=lambda: synced[0])
    result = replicator.run_pass(sftp)
    # the clock cannot be trusted: the clip is copied, not aged (nor refused for its age)
    assert result.retention.deleted_clips == []
    assert on_replica(sshd.root) == [ancient, newest]
    assert "not copying" not in caplog.text
    synced[0] = True  # NTP set the clock: now the 200-day-old clip goes
    replicator.forget_remote_state()
    assert replicator.run_pass(sftp).retention.deleted_clips == [ancient]
    assert on_replica(sshd.root) == [newest]


def test_a_clip_past_max_age_is_not_copied_and_the_log_says_so_once(home, sshd, sftp, caplog):
    caplog.set_level(logging.INFO, logger="doorbell.storage.replica")
    now_us = wall_now_us()
    ancient = clip_at(home, now_us - 200 * US_PER_DAY, 1)
    newest = clip_at(home, now_us - HOUR_US, 2)
    replicator = Replicator(home, str(sshd.root), ReplicaRetention(max_age_days=90),
                            clock_synchronised=lambda: True)
    for _ in range(3):
        replicator.run_pass(sftp)
    assert on_replica(sshd.root) == [newest]
    said = [r.getMessage() for r in caplog.records if ancient in r.getMessage()]
    assert said == [f"replica: not copying clip {ancient}: it is older than the replica's "
                    f"max_age_days (90 days before the newest clip)"]
