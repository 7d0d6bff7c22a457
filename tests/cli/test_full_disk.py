"""A full disk never stops `doorbell record`: on a real 4 MiB tmpfs, with a real video.

The home lives on the small disk; the clips fill it within seconds. Whatever write finds it full
(a clip's video, its thumbnail or metadata, the index's SQLite write, reconcile's), the recorder
prunes the oldest clips, keeps the interrupted clip's prefix, says so in one sentence and goes
on. A free-space floor the disk cannot reach is said once, instead of deleting every clip.
"""

import os
import random
import re
import shutil
import time

import pytest

from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.exchange import RecorderStatus
from doorbell.storage.index import ClipIndex
from doorbell.storage.recipients import read_recipients
from tests.recorder_home import RecorderHome, decode_mp4, video_file
from tests.small_disk import fill

SHORT_CLIPS = """\
[recording]
# many small clips, so that pruning the oldest makes room on a 4 MiB disk
max_clip_s = 5
pre_roll_s = 1
crf = 30
"""
FULL = "the disk is full: pruning the oldest clips"
FLOOR = "deleting older clips cannot free that much"


@pytest.fixture
def disk_home(recorder_home, small_disk) -> RecorderHome:
    """The recorder's home on the small disk (its runtime dir and keys stay where they were);
    retention as shipped: a 1 GB free-space floor this disk can never reach."""
    root = small_disk / "home"
    shutil.copytree(recorder_home.root, root)
    (root / "config.toml").write_text(SHORT_CLIPS)
    return RecorderHome(root, recorder_home.run_dir, recorder_home.passphrase_file,
                        recorder_home.scratch)


def clip_files(home) -> list:
    return sorted(p for p in home.clips_dir.rglob("*") if p.is_file())


def assert_store_consistent(home) -> list:
    rows = home.index_rows()
    assert {r.state for r in rows} <= {"complete", "truncated"}, rows
    videos = {p.name.removesuffix(".mp4.age") for p in clip_files(home)
              if p.name.endswith(".mp4.age")}
    assert videos == {r.id for r in rows}
    assert not [p for p in clip_files(home) if p.name.endswith(".partial")]
    assert not [p for p in clip_files(home) if p.stat().st_size == 0]
    assert AuditLog(home.root / "audit.jsonl").verify().ok
    return rows


@pytest.mark.slow
def test_recording_onto_a_small_disk_prunes_the_oldest_and_keeps_going(disk_home):
    home = disk_home
    result = home.doorbell("record", "--source", str(video_file("vtest.avi")), "--until-eof",
                           timeout=300)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert FULL in output
    assert output.count(FLOOR) == 1, output  # said once, not at every retention run
    status = RecorderStatus.load(home.run_dir / "recorder.json")
    assert FLOOR in status.retention_problem  # and shown by the viewer's status page
    saved = int(re.search(r"stopped: (\d+) clip\(s\) saved", output)[1])
    rows = assert_store_consistent(home)
    assert len(rows) >= 3, "the floor it cannot reach made retention delete clips it need not"
    assert saved > len(rows), "the disk filled up but nothing was pruned"
    pruned = [e for e in AuditLog(home.root / "audit.jsonl").entries() if e.action == "retention"]
    deleted = {clip for e in pruned for clip in e.details["deleted"]}
    assert pruned and not deleted & {r.id for r in rows}
    newest = rows[-1]  # complete, or cut short by the disk filling up once more: it plays
    assert len(decode_mp4(home.video(newest.id)[0])[0]) > 0
    complete = [r for r in rows if r.state == "complete"][-1]
    frames, error = decode_mp4(home.video(complete.id)[0])
    assert error is None and len(frames) > 0


def test_a_recorder_started_on_a_full_disk_prunes_before_it_reconciles(disk_home, still_video):
    home = disk_home
    recent_us = time.time_ns() // 1000 - 3_600_000_000  # within the age limit
    index_file = home.root / "index.sqlite3"
    viewer_index = ClipIndex(index_file)  # held open, as the viewer may, through the run
    try:
        store = ClipStore(home.clips_dir, viewer_index,
                          read_recipients(home.root / "recipients.txt"))
        finished = []
        for n in range(5):
            writer = store.begin_clip(recent_us + n * 60_000_000)
            writer.video.write(random.Random(n).randbytes(300_000))
            finished.append(writer.finish(None, {"trigger": "motion"}).id)
        interrupted = store.begin_clip(recent_us + 600_000_000)  # killed mid-clip, say
        interrupted.video.write(random.Random(9).randbytes(200_000))
        interrupted.sync()
        filler = fill(home.root)  # then something else filled the disk to the last byte
        assert os.statvfs(home.root).f_bavail == 0

        result = home.doorbell("record", "--source", str(still_video), "--until-eof")
    finally:
        viewer_index.close()
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert output.count("the disk is full: pruning the oldest clips before recording") == 1
    assert "clip(s) found without an index row were indexed" in output
    rows = {r.id: r.state for r in home.index_rows()}
    assert rows[interrupted.clip_id] == "truncated"  # its prefix kept and indexed
    assert finished[-1] in rows  # the newest finished clip is never pruned for room
    assert finished[0] not in rows  # the oldest made room
    assert filler.exists()  # what is not ours is not touched
    filler.unlink()
    assert_store_consistent(home)
