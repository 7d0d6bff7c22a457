"""The replicator (storage.replica) when something goes wrong on either side, against a real
OpenSSH sshd on loopback: a clip the card cannot read, a huge file planted on the server, an
append the server refused part of before the clip was sealed."""

import builtins
import errno
import logging
import os
import tracemalloc
from pathlib import Path

import pytest

import doorbell.storage.replica as replica_module
from doorbell.storage.replica import Replicator
from doorbell.storage.replica_target import PinnedTarget, SftpTarget, fetch_host_key, open_sftp
from tests.storage.test_replica import NETWORKS, digests, home, replicated_digests, sshd

__all__ = ["home", "sshd"]  # fixtures

DAY = "clips/2024/05/01"


def connect(server):
    target = SftpTarget.parse(server.url)
    key = fetch_host_key(target, "127.0.0.1")
    return open_sftp(PinnedTarget(target, key.get_name(), key.get_base64()), server.client_key,
                     NETWORKS)


@pytest.fixture
def sftp(sshd):
    client = connect(sshd)
    yield client
    client.close()
    client.get_channel().get_transport().close()


def write_clip(home: Path, day: str, name: str, data: bytes) -> Path:
    (home / day).mkdir(parents=True, exist_ok=True)
    path = home / day / name
    path.write_bytes(data)
    return path


class Card:
    """The card failing to read some files (EIO), as a worn SD card does, until healed."""

    def __init__(self, monkeypatch) -> None:
        self.bad: set[Path] = set()
        self.failed_reads: list[Path] = []
        real_open = builtins.open

        def card_open(path, *args, **kwargs):
            if Path(path) in self.bad:
                self.failed_reads.append(Path(path))
                raise OSError(errno.EIO, "Input/output error", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(replica_module, "open", card_open, raising=False)


def test_a_clip_the_card_cannot_read_is_skipped_named_and_retried(home, sshd, sftp,
                                                                  monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="doorbell.storage.replica")
    bad = write_clip(home, DAY, "20240501T120000Z-aaaaaa.mp4.age", os.urandom(50_000))
    newer = write_clip(home, "clips/2024/05/02", "20240502T120000Z-bbbbbb.mp4.age",
                       os.urandom(50_000))
    card = Card(monkeypatch)
    card.bad.add(bad)
    replicator = Replicator(home, str(sshd.root), unreadable_retry_s=0.0)

    result = replicator.run_pass(sftp)
    # every other file is copied, newer clips included
    assert (sshd.root / newer.relative_to(home)).read_bytes() == newer.read_bytes()
    assert not (sshd.root / bad.relative_to(home)).exists()
    sentence = (f"cannot read {DAY}/{bad.name} from the card: Input/output error")
    assert result.error_sentence() == sentence  # progress.json's last_error
    assert result.pending_files == 1

    # still unreadable: still named, still pending, the rest unaffected
    again = replicator.run_pass(sftp)
    assert again.error_sentence() == sentence and again.pending_files == 1

    card.bad.clear()  # the read succeeds on a later try
    healed = replicator.run_pass(sftp)
    assert healed.error_sentence() is None and healed.pending_files == 0
    assert digests(sshd.root) == replicated_digests(home)


def test_an_unreadable_clip_is_retried_after_a_delay_that_doubles(home, sshd, sftp,
                                                                  monkeypatch):
    bad = write_clip(home, DAY, "20240501T120000Z-aaaaaa.mp4.age", os.urandom(5_000))
    card = Card(monkeypatch)
    card.bad.add(bad)
    now_s = [1000.0]
    replicator = Replicator(home, str(sshd.root), unreadable_retry_s=10.0,
                            monotonic_s=lambda: now_s[0])
    tried = []
    for step_s in [0, 5, 6, 9, 12, 20, 40]:  # at 0, 5, 11, 20, 32, 52, 92 s
        now_s[0] += step_s
        replicator.run_pass(sftp)
        tried.append(len(card.failed_reads))
    # tried at 0, then at >= 10 s (11), then >= 20 s after that (32), then >= 40 s after (92)
    assert tried == [1, 1, 2, 2, 3, 3, 4]


def test_a_huge_file_planted_on_the_server_is_replaced_without_reading_it(home, sshd, sftp):
    planted = sshd.root / "recipients.txt"
    with open(planted, "wb") as handle:
        handle.truncate(300 * 1024 * 1024)  # 300 MB (sparse) where recipients.txt goes
    replicator = Replicator(home, str(sshd.root))
    tracemalloc.start()
    try:
        result = replicator.run_pass(sftp)
        _current, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert planted.read_bytes() == (home / "recipients.txt").read_bytes()
    assert peak_bytes < 2_000_000, peak_bytes
    assert not result.conflicts
    # the same size but other bytes is replaced too; an identical copy is not rewritten
    planted.write_bytes(b"x" * planted.stat().st_size)
    replicator.forget_remote_state()
    (home / "recipients.txt").touch()
    replicator.run_pass(sftp)
    assert planted.read_bytes() == (home / "recipients.txt").read_bytes()
    inode = planted.stat().st_ino
    replicator.forget_remote_state()
    assert replicator.run_pass(sftp).files_changed == 0
    assert planted.stat().st_ino == inode


class RefusingServer:
    """The real SFTP client, except that one append to a growing clip has a write refused
    (a full disk) while the server takes the write after it (space freed meanwhile): the copy
    gets a hole, and the error surfaces when the file is closed, as pipelined writes do."""

    def __init__(self, sftp, refuse_write: int) -> None:
        self._sftp = sftp
        self._refuse_write = refuse_write

    def __getattr__(self, name):
        return getattr(self._sftp, name)

    def open(self, path, mode="r", *args):
        handle = self._sftp.open(path, mode, *args)
        if path.endswith(".partial") and mode != "rb":
            return _RefusingFile(handle, self._refuse_write)
        return handle


class _RefusingFile:
    def __init__(self, handle, refuse_write: int) -> None:
        self._handle = handle
        self._refuse_write = refuse_write
        self._writes = 0

    def set_pipelined(self, pipelined=True) -> None:
        self._handle.set_pipelined(pipelined)

    def seek(self, offset) -> None:
        self._handle.seek(offset)

    def write(self, data: bytes) -> None:
        self._writes += 1
        if self._writes == self._refuse_write:
            self._handle.seek(self._handle.tell() + len(data))  # refused: nothing written
        else:
            self._handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.close()
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_clip_sealed_after_a_partly_refused_append_arrives_byte_identical(home, sshd, sftp):
    block = replica_module.COPY_BLOCK_BYTES
    partial = write_clip(home, DAY, "20240501T120000Z-abcdef.mp4.age.partial",
                         os.urandom(1_000_000))
    replicator = Replicator(home, str(sshd.root))
    replicator.run_pass(sftp)
    copy = sshd.root / partial.relative_to(home)
    assert copy.read_bytes() == partial.read_bytes()

    # The writer appends two blocks and a little; the server refuses the second block but
    # takes the last 2,000 bytes: the copy's last 4 KiB hold 2 KiB of hole.
    with open(partial, "ab") as handle:
        handle.write(os.urandom(2 * block + 2_000))
    with pytest.raises(OSError):
        replicator.run_pass(RefusingServer(sftp, refuse_write=2))
    assert copy.stat().st_size == partial.stat().st_size  # as long, but with a hole

    # The clip is sealed (renamed, its last bytes written) before the next connection.
    sealed = partial.with_name(partial.name.removesuffix(".partial"))
    os.rename(partial, sealed)
    with open(sealed, "ab") as handle:
        handle.write(os.urandom(700))
    replicator.forget_remote_state()
    result = replicator.run_pass(sftp)
    assert not result.conflicts, result.error_sentence()
    assert (sshd.root / sealed.relative_to(home)).read_bytes() == sealed.read_bytes()
    assert not copy.exists()
    assert digests(sshd.root) == replicated_digests(home)


def test_a_clip_whose_very_stat_fails_is_not_retried_on_every_pass(home, sshd, sftp,
                                                                  monkeypatch):
    bad = write_clip(home, DAY, "20240501T120000Z-aaaaaa.mp4.age", os.urandom(5_000))
    real_stat = Path.stat
    stats = []

    def card_stat(self, *args, **kwargs):
        if self == bad:
            if kwargs.get("follow_symlinks", True):  # a read attempt, not lstat's "is it there"
                stats.append(self)
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", card_stat)
    now_s = [0.0]
    replicator = Replicator(home, str(sshd.root), unreadable_retry_s=10.0,
                            monotonic_s=lambda: now_s[0])
    for _ in range(5):  # five passes within the first 10 s
        now_s[0] += 1
        result = replicator.run_pass(sftp)
        assert result.error_sentence() == (f"cannot read {DAY}/{bad.name} from the card: "
                                           f"Input/output error")
    assert len(stats) == 1


def test_a_day_the_card_cannot_list_is_named_and_the_other_days_are_copied(home, sshd, sftp,
                                                                          monkeypatch):
    old = write_clip(home, DAY, "20240501T120000Z-aaaaaa.mp4.age", os.urandom(5_000))
    newer = write_clip(home, "clips/2024/05/02", "20240502T120000Z-bbbbbb.mp4.age",
                       os.urandom(5_000))
    real_scandir = os.scandir
    failing = {home / DAY}

    def card_scandir(path):
        if Path(path) in failing:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_scandir(path)

    monkeypatch.setattr(replica_module.os, "scandir", card_scandir)
    replicator = Replicator(home, str(sshd.root))
    result = replicator.run_pass(sftp)
    assert result.error_sentence() == f"cannot list {DAY} on the card: Input/output error"
    assert (sshd.root / newer.relative_to(home)).read_bytes() == newer.read_bytes()
    assert not (sshd.root / old.relative_to(home)).exists()
    failing.clear()
    assert replicator.run_pass(sftp).error_sentence() is None
    assert digests(sshd.root) == replicated_digests(home)
