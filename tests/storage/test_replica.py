"""The replicator (storage.replica) against a real OpenSSH sshd on loopback: what it copies,
the growing clip as it is written, resumption after the server goes away, never deleting."""

import hashlib
import logging
import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from doorbell.storage.age import X25519Identity
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex
from doorbell.storage.replica import Replicator, run_forever, source_files
from doorbell.storage.replica_progress import HEARTBEAT_FILE_NAME
from doorbell.storage.replica_retention import US_PER_DAY, ReplicaRetention
from doorbell.storage.replica_target import (
    PinnedTarget,
    SftpTarget,
    connection_errors,
    fetch_host_key,
    open_sftp,
)
from tests.sftp_server import SftpServer

NETWORKS = ("127.0.0.0/8",)
START_US = 1_714_564_800_000_000


@pytest.fixture
def sshd(tmp_path):
    server = SftpServer(tmp_path / "sshd").start()
    yield server
    server.stop()


@pytest.fixture
def home(tmp_path) -> Path:
    root = tmp_path / "home"
    (root / "identities").mkdir(parents=True)
    (root / "identities" / "alice.age").write_bytes(b"age-encryption.org/v1\n-> scrypt ...")
    (root / "recipients.txt").write_text("# alice\nage1example\n")
    (root / "audit.jsonl").write_text('{"seq":1}\n')
    return root


class Running:
    """run_forever in a thread, over the pinned sshd, stopped at the end of the test."""

    def __init__(self, home: Path, server: SftpServer,
                 retention: ReplicaRetention | None = None) -> None:
        target = SftpTarget.parse(server.url)
        key = fetch_host_key(target, "127.0.0.1")
        pinned = PinnedTarget(target, key.get_name(), key.get_base64())
        self.stop = threading.Event()
        self.passes = 0
        self.thread = threading.Thread(target=run_forever, kwargs=dict(
            home_root=home, remote_root=target.path,
            connect=lambda: open_sftp(pinned, server.client_key, NETWORKS),
            poll_interval_s=0.2, retry_interval_s=0.3, should_stop=self.stop.is_set,
            on_pass=self._count, connection_errors=connection_errors(), retention=retention,
            retention_interval_s=0.2), daemon=True)
        self.thread.start()

    def _count(self, result) -> None:
        self.passes += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def digests(root: Path) -> dict[str, str]:
    """Every file under `root` by SHA-256, but the replicator's own heartbeat (not a copy)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != HEARTBEAT_FILE_NAME}


def replicated_digests(home: Path) -> dict[str, str]:
    return {f.relative: hashlib.sha256(f.path.read_bytes()).hexdigest()
            for f in source_files(home)}


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_every_file_reaches_the_replica_byte_identical_across_an_outage(home, sshd, caplog):
    caplog.set_level(logging.WARNING, logger="doorbell.storage.replica")
    index = ClipIndex(home / "index.sqlite3")
    store = ClipStore(home / "clips", index, [X25519Identity.generate().recipient])
    running = Running(home, sshd)
    try:
        sealed = store.begin_clip(START_US, fsync_interval_s=0.2)
        sealed.video.write(b"first clip " * 50_000)
        sealed.finish(b"jpeg", {"trigger": "motion"})

        growing = store.begin_clip(START_US + 60_000_000, fsync_interval_s=0.2)
        for i in range(40):
            growing.video.write(bytes([i]) * 70_000)
            growing.sync_if_due()
            time.sleep(0.4 if 10 <= i < 30 else 0.05)  # an 8 s outage, recording goes on
            if i == 10:
                sshd.stop()  # the NAS goes away while recording goes on
            if i == 30:
                sshd.start()
        # the growing clip's fsynced bytes appear on the replica before it is sealed
        partial = next((home / "clips").rglob("*.partial"))
        growing.sync()
        size_bytes = partial.stat().st_size
        replica_partial = sshd.root / partial.relative_to(home)
        assert wait_until(lambda: replica_partial.exists() and
                          replica_partial.stat().st_size >= size_bytes, 5.0)
        growing.finish(None, {"trigger": "doorbell"})
        with open(home / "audit.jsonl", "a") as audit:
            audit.write('{"seq":2}\n')

        expected = replicated_digests(home)
        assert wait_until(lambda: digests(sshd.root) == expected, 15.0), \
            (digests(sshd.root), expected)
        assert not any(name.endswith(".partial") for name in digests(sshd.root))
        assert "replica connection lost" in caplog.text  # the outage was one, mid-clip

        # the device deleting a clip (retention, a user) never deletes on the replica
        store.delete(sealed.clip_id)
        passes = running.passes
        assert wait_until(lambda: running.passes >= passes + 3, 5.0)
        assert digests(sshd.root) == expected
    finally:
        running.close()
        index.close()


def test_a_replica_copy_that_differs_is_left_alone_not_overwritten(home, sshd):
    day = "clips/2024/05/01"
    (home / day).mkdir(parents=True)
    source = home / day / "20240501T120000Z-abcdef.mp4.age"
    source.write_bytes(b"A" * 10_000)
    running = Running(home, sshd)
    try:
        copy = sshd.root / day / source.name
        assert wait_until(lambda: copy.exists() and copy.stat().st_size == 10_000, 5.0)
        copy.write_bytes(b"B" * 10_000)  # someone edited the copy
        with open(source, "ab") as handle:
            handle.write(b"A" * 5_000)
        passes = running.passes
        assert wait_until(lambda: running.passes >= passes + 3, 5.0)
        assert copy.read_bytes() == b"B" * 10_000
    finally:
        running.close()


def _clip_ids(root: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (root / "clips").rglob("*.mp4.age*"))


def test_the_replicas_own_retention_deletes_its_oldest_clips_only(home, sshd, tmp_path):
    now_us = time.time_ns() // 1000
    index = ClipIndex(home / "index.sqlite3")
    store = ClipStore(home / "clips", index, [X25519Identity.generate().recipient])
    # A clip 200 days old that an earlier run copied: older than the replica's 90 days.
    ancient = store.begin_clip(now_us - 200 * US_PER_DAY)
    ancient.video.write(b"old" * 1000)
    ancient.finish(None, {})
    for path in (home / "clips").rglob("*.age"):
        copy = sshd.root / path.relative_to(home)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
    # Four recent clips of about 1 MB each, an hour apart; the replica's budget is 2.5 MB.
    recent = []
    for hour in (4, 3, 2, 1):
        writer = store.begin_clip(now_us - hour * 3600 * 1_000_000)
        writer.video.write(bytes([hour]) * 1_000_000)
        recent.append(writer.finish(b"jpeg", {}).id)
    growing = store.begin_clip(now_us, fsync_interval_s=0.1)
    growing.video.write(b"g" * 1_500_000)
    growing.sync()
    retention = ReplicaRetention.load(tmp_path / "state", max_age_days=90,
                                      max_total_bytes=2_500_000)
    running = Running(home, sshd, retention)
    try:
        growing_id = growing.clip_id
        assert wait_until(lambda: _clip_ids(sshd.root) == [recent[3], growing_id], 15.0), \
            _clip_ids(sshd.root)
        # The newest sealed clip and the growing one, nothing older: the budget holds them.
        for name in ("audit.jsonl", "recipients.txt", "identities/alice.age"):
            assert (sshd.root / name).read_bytes() == (home / name).read_bytes()
        # The device still has them all; the replicator does not copy back what the replica's
        # retention removed, nor the clip older than its 90 days.
        assert len(_clip_ids(home)) == 6
        passes = running.passes
        assert wait_until(lambda: running.passes >= passes + 5, 5.0)
        assert _clip_ids(sshd.root) == [recent[3], growing_id]
    finally:
        running.close()
    # ... not after a restart either (the state directory remembers how far it deleted).
    again = Running(home, sshd, ReplicaRetention.load(tmp_path / "state", 90, 2_500_000))
    try:
        passes = again.passes
        assert wait_until(lambda: again.passes >= passes + 5, 10.0)
        assert _clip_ids(sshd.root) == [recent[3], growing_id]
        growing.finish(None, {})
        # sealed, it is the newest: the budget keeps it alone
        assert wait_until(lambda: _clip_ids(sshd.root) == [growing_id], 10.0)
        assert not list(sshd.root.rglob("*.partial"))
    finally:
        again.close()
        index.close()


BACKLOG_CLIPS = 12
BACKLOG_CLIP_BYTES = 1_000_000
MAX_PEAK_BYTES = 2_000_000  # COPY_BLOCK_BYTES (256 KiB) and paramiko's buffers, not the backlog


def test_a_backlog_is_copied_oldest_first_without_holding_it_in_memory(home, sshd):
    """12 MB waiting after an outage: one pass copies it, oldest clip first, while the Python
    heap of the whole process (the SSH thread included) never grows by more than 2 MB."""
    index = ClipIndex(home / "index.sqlite3")
    store = ClipStore(home / "clips", index, [X25519Identity.generate().recipient])
    now_us = time.time_ns() // 1000
    ids = []
    for n in range(BACKLOG_CLIPS):  # written newest first: the order on disk must not matter
        writer = store.begin_clip(now_us - (n + 1) * 60_000_000)
        writer.video.write(bytes([n]) * BACKLOG_CLIP_BYTES)
        ids.append(writer.finish(None, {}).id)
    index.close()
    target = SftpTarget.parse(sshd.url)
    key = fetch_host_key(target, "127.0.0.1")
    sftp = open_sftp(PinnedTarget(target, key.get_name(), key.get_base64()), sshd.client_key,
                     NETWORKS)
    replicator = Replicator(home, target.path)
    try:
        tracemalloc.start()
        try:
            result = replicator.run_pass(sftp)
            _current, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        sftp.close()
        sftp.get_channel().get_transport().close()
    assert result.copied_bytes > BACKLOG_CLIPS * BACKLOG_CLIP_BYTES and not result.conflicts
    print(f"backlog {result.copied_bytes} bytes, traced peak {peak_bytes} bytes")
    assert peak_bytes < MAX_PEAK_BYTES
    assert digests(sshd.root) == replicated_digests(home)
    # oldest first: the copies' modification times follow the clips' start times
    videos = sorted((sshd.root / "clips").rglob("*.mp4.age"), key=lambda p: p.stat().st_mtime_ns)
    assert [p.name.split(".")[0] for p in videos] == sorted(ids)


def test_a_day_already_copied_is_copied_again_when_a_clip_is_added_to_it(home, sshd):
    """Days whose files are all copied are no longer listed on every pass (the cost of a pass
    stays one stat per day); a new clip in such a day, growing then sealed, still arrives."""
    index = ClipIndex(home / "index.sqlite3")
    store = ClipStore(home / "clips", index, [X25519Identity.generate().recipient])
    day_us = time.time_ns() // 1000 - 3 * US_PER_DAY
    first = store.begin_clip(day_us)
    first.video.write(b"a" * 100_000)
    first.finish(None, {})
    day = next((home / "clips").rglob("*.mp4.age")).parent
    os.utime(day, (time.time() - 60, time.time() - 60))  # settled: older than a tick
    running = Running(home, sshd)
    try:
        assert wait_until(lambda: digests(sshd.root) == replicated_digests(home), 10.0)
        passes = running.passes
        assert wait_until(lambda: running.passes >= passes + 3, 5.0)
        late = store.begin_clip(day_us + 3_600_000_000, fsync_interval_s=0.1)
        late.video.write(b"b" * 300_000)
        late.sync()
        partial = next(day.glob("*.partial"))
        copy = sshd.root / partial.relative_to(home)
        assert wait_until(lambda: copy.exists() and
                          copy.stat().st_size == partial.stat().st_size, 10.0)
        time.sleep(2.5)  # the day's mtime (the partial's creation) is now old enough
        late.video.write(b"c" * 300_000)
        late.sync()
        assert wait_until(lambda: copy.stat().st_size == partial.stat().st_size, 10.0)
        late.finish(None, {})
        assert wait_until(lambda: digests(sshd.root) == replicated_digests(home), 10.0)
    finally:
        running.close()
        index.close()
