"""Recording waits for the clock after boot (bounded), then records anyway and marks it.

The real recorder runs in a time namespace (`unshare --time --boottime`) whose clock says the
machine booted 170 s ago; this machine's kernel says its clock is not synchronised (adjtimex's
STA_UNSYNC: no NTP client here), as a Pi's is straight after boot. So the recorder must wait
until 180 s after boot (about 10 s), then record, with the audit log saying so. Long after boot
(the same machine without the namespace) it does not wait and does not audit.
"""

import os
import re
import shutil
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from doorbell.clock_sync import (
    WAIT_UNTIL_UPTIME_S,
    SyncWatcher,
    kernel_clock_synchronised,
    uptime_s,
    wait_for_clock_sync,
)
from tests.helpers import clean_env

from .conftest import PROJECT

BOOTED_AGO_S = WAIT_UNTIL_UPTIME_S - 10


@pytest.fixture
def visit_video(tmp_path):
    """Eight seconds of a still scene with a block crossing it from 2 s to 5 s."""
    path = tmp_path / "visit.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 180))
    for n in range(80):
        frame = np.full((180, 320, 3), 90, np.uint8)
        if 20 <= n < 50:
            x = (n - 20) * 9
            frame[50:130, x:x + 60] = 230
        writer.write(frame)
    writer.release()
    return path


def record(home, video, booted_ago_s: float | None) -> tuple[subprocess.CompletedProcess, float]:
    command = [sys.executable, "-m", "doorbell", "record", "--source", str(video), "--until-eof"]
    if booted_ago_s is not None:
        offset = int(booted_ago_s - uptime_s())
        command = ["unshare", "--time", "--fork", f"--boottime={offset}", *command]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=PROJECT,
                            env=clean_env(DOORBELL_HOME=str(home.root)),
                            stdin=subprocess.DEVNULL, check=False)
    return result, time.monotonic() - started


def clock_actions(home) -> list:
    return [e for e in home.audit_entries() if e.action.startswith("clock.")]


needs_unsynchronised_kernel = pytest.mark.skipif(
    kernel_clock_synchronised() is not False,
    reason="this machine's clock is synchronised (or adjtimex cannot tell): nothing to wait for",
)


@needs_unsynchronised_kernel
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a time namespace needs root and unshare")
def test_just_after_boot_the_recorder_waits_then_records_and_marks_it(home, still_video):
    result, elapsed_s = record(home, still_video, booted_ago_s=BOOTED_AGO_S)

    assert result.returncode == 0, result.stderr
    assert "waiting for the clock to be synchronised" in result.stderr
    assert "the clock is not synchronised" in result.stderr
    assert elapsed_s >= 8, f"it did not wait: {elapsed_s:.1f} s"
    marks = clock_actions(home)
    assert [m.action for m in marks] == ["clock.unsynchronised"]
    assert marks[0].actor == "recorder" and marks[0].details["waited_s"] >= 8
    # It recorded after the wait: the recording's start is logged after the waiting line.
    waiting = result.stderr.index("waiting for the clock")
    assert re.search(r"recording from .*", result.stderr[waiting:])


@needs_unsynchronised_kernel
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a time namespace needs root and unshare")
def test_a_clip_recorded_before_ntp_is_marked_in_the_index_and_kept(home, visit_video):
    home.root.joinpath("config.toml").write_text(
        "[camera]\nwidth = 320\nheight = 180\nfps = 10\n\n[retention]\nmin_free_bytes = 0\n")
    # A few seconds of waiting are left when the recorder gets there, even on a loaded machine.
    result, _elapsed_s = record(home, visit_video, booted_ago_s=WAIT_UNTIL_UPTIME_S - 6)
    assert result.returncode == 0, result.stderr

    from doorbell.storage.index import ClipIndex

    with ClipIndex(home.root / "index.sqlite3") as index:
        rows = index.clips()
    assert len(rows) == 1, result.stderr
    assert rows[0].clock_unsynced and rows[0].kept_from_us is None  # waits for NTP
    assert [m.action for m in clock_actions(home)] == ["clock.unsynchronised"]


@needs_unsynchronised_kernel
def test_long_after_boot_the_recorder_does_not_wait_and_does_not_audit(home, still_video):
    assert uptime_s() > WAIT_UNTIL_UPTIME_S, "this machine booted less than 3 minutes ago"
    result, _elapsed_s = record(home, still_video, booted_ago_s=None)
    assert result.returncode == 0, result.stderr
    assert "waiting for the clock" not in result.stderr
    assert "the clock is not synchronised" in result.stderr  # still said, once
    assert clock_actions(home) == []


def test_the_wait_ends_as_soon_as_the_clock_is_synchronised():
    answers = iter([False, False, True])
    pings = []
    state, waited_s = wait_for_clock_sync(threading.Event(), lambda: pings.append(1),
                                          probe=lambda: next(answers),
                                          until_uptime_s=uptime_s() + 60, poll_s=0.05)
    assert state is True and waited_s < 5 and len(pings) == 2


def test_a_system_that_cannot_tell_is_not_waited_for():
    state, waited_s = wait_for_clock_sync(threading.Event(), lambda: None, probe=lambda: None,
                                          until_uptime_s=uptime_s() + 60, poll_s=0.05)
    assert state is None and waited_s < 1


def test_stopping_ends_the_wait():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    state, waited_s = wait_for_clock_sync(stop, lambda: None, probe=lambda: False,
                                          until_uptime_s=uptime_s() + 60, poll_s=0.05)
    assert state is False and waited_s < 5


def test_the_watcher_reports_synchronisation_once():
    stop = threading.Event()
    answers = iter([False, True, True, True])
    calls = []
    SyncWatcher(stop, lambda: calls.append(time.monotonic()), probe=lambda: next(answers),
                poll_s=0.05).start()
    time.sleep(0.5)
    stop.set()
    assert len(calls) == 1


# -- what the recorder does with it: clips before the clock was set are kept from when it was --


def test_clips_recorded_before_ntp_are_kept_from_when_the_watcher_sees_it_set(recorder_home):
    """`doorbell record` started before NTP (follow_clock): a clip recorded with the clock 40
    days behind is flagged, the watcher sees the clock set, the audit log says so, and the
    clip is aged from then: it survives 30-day retention and goes 30 days later."""
    from doorbell.camera.recorder import Recorder
    from doorbell.commands.record import follow_clock
    from doorbell.config import RetentionSettings
    from doorbell.storage.audit import AuditLog
    from doorbell.storage.clipwriter import ClipStore
    from doorbell.storage.index import ClipIndex
    from doorbell.storage.recipients import read_recipients
    from doorbell.storage.retention import enforce_retention
    from tests.recorder_home import ORIGIN_US

    day_us = 86_400 * 1_000_000
    wall = [ORIGIN_US - 40 * day_us]  # fake-hwclock's time, 40 days behind
    synchronised = threading.Event()
    keep = RetentionSettings(max_age_days=30, max_total_bytes=0, min_free_bytes=0)
    audit = AuditLog(recorder_home.root / "audit.jsonl")
    stop = threading.Event()
    with ClipIndex(recorder_home.root / "index.sqlite3") as index:
        recipients = read_recipients(recorder_home.root / "recipients.txt")
        store = ClipStore(recorder_home.clips_dir, index, recipients)
        recorder = Recorder(recorder_home.settings(), store, audit, wall_clock_us=lambda: wall[0])
        watcher = follow_clock(recorder, audit, stop, probe=synchronised.is_set, poll_s=0.02)
        writer = store.begin_clip(wall[0])
        writer.video.write(b"\x00" * 20_000)
        clip = writer.finish(None, {"trigger": "doorbell"})
        recorder.retention.run(keep, force=True)

        wall[0] = ORIGIN_US  # NTP answers
        synchronised.set()
        watcher.join(5)
        recorder.retention.run(keep, force=True)
        row = index.get(clip.id)
        assert row is not None and row.clock_unsynced and row.kept_from_us == ORIGIN_US
        assert index.get(clip.id) is not None  # by its date it is 40 days old
        stop.set()
        # 30 days from when the clock was set (the recorder's own clocks are real here, so a
        # month is passed to retention directly; tests/camera/test_retention_clock.py moves both)
        assert enforce_retention(store, keep, ORIGIN_US + 30 * day_us - 60_000_000) == []
        assert [p.clip_id for p in enforce_retention(
            store, keep, ORIGIN_US + 30 * day_us + 60_000_000)] == [clip.id]
    actions = [e.action for e in audit.entries() if e.action.startswith(("clock.", "retention"))]
    assert actions == ["clock.synchronised", "clock.jumped"]
