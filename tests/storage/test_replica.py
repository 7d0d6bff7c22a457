"""The replicator (storage.replica) against a real OpenSSH sshd on loopback: what it copies,
the growing clip as it is written, resumption after the server goes away, never deleting."""

import hashlib
import logging
import threading
import time
from pathlib import Path

import pytest

from doorbell.storage.age import X25519Identity
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex
from doorbell.storage.replica import run_forever, source_files
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

    def __init__(self, home: Path, server: SftpServer) -> None:
        target = SftpTarget.parse(server.url)
        key = fetch_host_key(target, "127.0.0.1")
        pinned = PinnedTarget(target, key.get_name(), key.get_base64())
        self.stop = threading.Event()
        self.passes = 0
        self.thread = threading.Thread(target=run_forever, kwargs=dict(
            home_root=home, remote_root=target.path,
            connect=lambda: open_sftp(pinned, server.client_key, NETWORKS),
            poll_interval_s=0.2, retry_interval_s=0.3, should_stop=self.stop.is_set,
            on_pass=self._count, connection_errors=connection_errors()), daemon=True)
        self.thread.start()

    def _count(self, result) -> None:
        self.passes += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


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
    (home / "clips" / "2024").mkdir(parents=True)
    source = home / "clips" / "2024" / "x.mp4.age"
    source.write_bytes(b"A" * 10_000)
    running = Running(home, sshd)
    try:
        copy = sshd.root / "clips" / "2024" / "x.mp4.age"
        assert wait_until(lambda: copy.exists() and copy.stat().st_size == 10_000, 5.0)
        copy.write_bytes(b"B" * 10_000)  # someone edited the copy
        with open(source, "ab") as handle:
            handle.write(b"A" * 5_000)
        passes = running.passes
        assert wait_until(lambda: running.passes >= passes + 3, 5.0)
        assert copy.read_bytes() == b"B" * 10_000
    finally:
        running.close()
