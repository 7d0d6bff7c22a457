"""replica-heartbeat.json (storage.replica_progress): what the replicator leaves on the replica
for a hub to show how far behind the copy is, against a real OpenSSH sshd on loopback."""

import json
import os
import time

from doorbell.storage.replica import Replicator
from doorbell.storage.replica_progress import HEARTBEAT_FILE_NAME
from tests.storage.test_replica import Running, home, sshd, wait_until
from tests.storage.test_replica_faults import DAY, Card, sftp, write_clip

__all__ = ["home", "sftp", "sshd"]  # fixtures


def test_a_running_replicator_keeps_a_heartbeat_a_reader_never_sees_half_of(home, sshd):
    beat = sshd.root / HEARTBEAT_FILE_NAME
    write_clip(home, DAY, "20240501T120000Z-aaaaaa.mp4.age", os.urandom(20_000))
    running = Running(home, sshd)
    try:
        assert wait_until(beat.exists, 10)
        first = json.loads(beat.read_text())
        assert set(first) == {"device_wall_us", "last_complete_pass_wall_us", "pending_files"}
        assert abs(first["device_wall_us"] - time.time_ns() // 1000) < 5_000_000
        assert first["pending_files"] == 0
        assert first["last_complete_pass_wall_us"] <= first["device_wall_us"]
        # read as a hub would, again and again while it is rewritten: always whole
        seen = set()
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            seen.add(json.loads(beat.read_text())["device_wall_us"])
        assert len(seen) >= 2  # it is rewritten (about once a second), not written once
        assert max(seen) > first["device_wall_us"]
    finally:
        running.close()
    assert not (sshd.root / (HEARTBEAT_FILE_NAME + ".tmp")).exists()


def test_the_heartbeat_shows_the_lag_growing_while_a_file_is_pending(home, sshd, sftp,
                                                                     monkeypatch):
    clock = {"wall_us": 1_800_000_000_000_000, "mono_s": 100.0}
    replicator = Replicator(home, str(sshd.root), clock_us=lambda: clock["wall_us"],
                            monotonic_s=lambda: clock["mono_s"], unreadable_retry_s=0.0)
    beat = sshd.root / HEARTBEAT_FILE_NAME
    replicator.run_pass(sftp)
    assert json.loads(beat.read_text()) == {"device_wall_us": clock["wall_us"],
                                            "last_complete_pass_wall_us": clock["wall_us"],
                                            "pending_files": 0}
    complete_us = clock["wall_us"]
    card = Card(monkeypatch)
    card.bad.add(write_clip(home, DAY, "20240501T120000Z-aaaaaa.mp4.age", os.urandom(9_000)))
    for _ in range(3):  # a minute of passes that cannot copy the clip
        clock["wall_us"] += 20_000_000
        clock["mono_s"] += 20
        replicator.run_pass(sftp)
    now = json.loads(beat.read_text())
    assert now == {"device_wall_us": complete_us + 60_000_000,
                   "last_complete_pass_wall_us": complete_us, "pending_files": 1}
    card.bad.clear()
    clock["wall_us"] += 20_000_000
    clock["mono_s"] += 20
    replicator.run_pass(sftp)
    assert json.loads(beat.read_text())["last_complete_pass_wall_us"] == clock["wall_us"]
