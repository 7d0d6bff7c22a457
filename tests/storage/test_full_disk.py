"""The index on a full disk: its writes fail as OSError(ENOSPC), like a clip file's, so that the
recorder handles "database or disk is full" the way it handles any full disk (tests/cli's
test_full_disk.py records onto one)."""

import errno
import sqlite3

import pytest

from doorbell.storage.age import X25519Identity
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex, IndexedClip
from doorbell.storage.reconcile import reconcile
from tests.small_disk import fill

START_US = 1_714_564_800_000_000


def test_reconciling_on_a_full_disk_is_enospc_and_leaves_the_index_whole(small_disk):
    with ClipIndex(small_disk / "index.sqlite3") as index:
        store = ClipStore(small_disk / "clips", index, [X25519Identity.generate().recipient])
        writer = store.begin_clip(START_US)  # interrupted: reconcile must index it
        writer.video.write(b"\x00" * 100_000)
        writer.sync()
        fill(small_disk)

        with pytest.raises(OSError) as error:
            reconcile(small_disk / "clips", index)
        with pytest.raises(OSError) as put_error:
            index.put(IndexedClip("20240501T120000Z-abcdef", START_US, "complete", 1))

    for raised in (error.value, put_error.value):
        assert raised.errno == errno.ENOSPC
        assert str(raised).startswith("[Errno 28] the disk is full")
    (small_disk / "filler").unlink()
    with sqlite3.connect(small_disk / "index.sqlite3") as db:  # nothing half-written
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_opening_the_index_on_a_disk_full_to_the_last_byte_is_enospc(small_disk):
    ClipIndex(small_disk / "index.sqlite3").close()  # closed: its -shm file is gone
    fill(small_disk)

    with pytest.raises(OSError) as error:  # SQLite: "disk I/O error" (no room for -shm)
        ClipIndex(small_disk / "index.sqlite3")

    assert error.value.errno == errno.ENOSPC
