"""Retention never deletes a clip the audit log cannot record, and never stops the recorder.

Before, retention deleted first and appended after: on a damaged log it deleted the clips
without a trace and then the recorder died of AuditLogCorrupt. Now it asks the log first; if
the log cannot take the entry, retention waits (the clips stay), recording goes on and the
recorder's status says why. A torn final line is no reason to wait: it is recorded and
retention goes ahead.
"""

import itertools
import json
import logging

from doorbell.camera.synthetic import ScriptedEvent, SyntheticScene
from doorbell.storage.audit import AuditLog
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex
from doorbell.storage.recipients import read_recipients
from tests.recorder_home import ORIGIN_US, camera_config

WIDTH, HEIGHT, FPS = 320, 180, 15
DAY_US = 86_400 * 1_000_000


def expired_clips(home, count: int = 3) -> list[str]:
    """Clips 40 days older than the recorder's clock: past the 30-day age limit."""
    ids = []
    with ClipIndex(home.root / "index.sqlite3") as index:
        store = ClipStore(home.clips_dir, index, read_recipients(home.root / "recipients.txt"))
        for n in range(count):
            writer = store.begin_clip(ORIGIN_US - 40 * DAY_US + n * 60_000_000)
            writer.video.write(b"\x00" * 50_000)
            ids.append(writer.finish(None, {"trigger": "motion"}).id)
    return ids


def record_a_visit(home):
    """Eight seconds with a visit; the wall clock runs a second per call, so retention (every
    60 s) comes round more than once."""
    home.root.joinpath("config.toml").write_text(camera_config(WIDTH, HEIGHT, FPS))
    scene = SyntheticScene(WIDTH, HEIGHT, FPS, duration_s=8.0,
                           script=[ScriptedEvent("visit", 2.0, 4.0, "side")])
    clock = itertools.count(ORIGIN_US, 1_000_000)
    return home.record(scene, wall_clock_us=clock.__next__)


def test_a_damaged_audit_log_makes_retention_wait_while_recording_goes_on(home, caplog):
    expired = expired_clips(home)
    log_file = home.root / "audit.jsonl"
    log_file.write_bytes(log_file.read_bytes().replace(b'"member":"owner"', b'"member":"0wn"', 1))
    damaged = log_file.read_bytes()
    caplog.set_level(logging.INFO, logger="doorbell.recorder")

    recorder = record_a_visit(home)  # before: AuditLogCorrupt out of the frame loop

    rows = [row.id for row in home.index_rows()]
    assert rows[:3] == expired  # nothing deleted without a trace ...
    assert all((home.clips_dir / c[:4] / c[4:6] / c[6:8] / f"{c}.mp4.age").exists()
               for c in expired)
    assert len(rows) == 4 and recorder.stats.clips == 1  # ... and the visit was recorded
    waiting = [r.getMessage() for r in caplog.records if "retention is waiting" in r.getMessage()]
    assert len(waiting) == 1, waiting  # said once, though retention came round again
    assert "audit log is damaged" in waiting[0] and "\n" not in waiting[0]
    status = json.loads((home.run_dir / "recorder.json").read_text())
    assert status["retention_problem"].startswith("retention is waiting")
    assert log_file.read_bytes() == damaged  # and the log was not written to


def test_a_torn_final_line_is_recorded_and_retention_goes_ahead(home):
    expired = expired_clips(home)
    with open(home.root / "audit.jsonl", "ab") as log:
        log.write(b'{"seq":2,"time":"2024-05-01T1')  # a power cut in the middle of an append

    record_a_visit(home)

    remaining = [row.id for row in home.index_rows()]
    assert not set(expired) & set(remaining) and len(remaining) == 1  # the visit's clip
    log = AuditLog(home.root / "audit.jsonl")
    assert log.verify().ok, log.verify().message
    actions = [(e.action, e.details.get("deleted")) for e in log.entries()]
    assert ("audit.torn_line", None) in actions
    assert actions[-1] == ("retention", expired)
    status = json.loads((home.run_dir / "recorder.json").read_text())
    assert status["retention_problem"] is None
