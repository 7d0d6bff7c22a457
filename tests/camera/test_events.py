"""Recorder events: the bus's delivery policy, events.jsonl, and what the recorder emits when.

 * emit() never blocks: a stuck sink's queue is bounded and drops its oldest event, counted and
   logged; a failing sink is retried in order; a refused event is dropped, logged.
 * events.jsonl keeps the last 200 events, one JSON line each, replaced atomically, no images.
 * The Recorder (generic and picamera2's) emits doorbell_pressed, motion_started/ended,
   clip_saved (id, trigger, duration), camera_lost/back and disk_low at the right moments; the
   thumbnail rides along only when images are on, and it is the masked one.
"""

import errno
import json
import logging
import threading
import time

import cv2
import numpy as np
import pytest

import doorbell.camera.events as events_module
import doorbell.camera.upkeep as upkeep_module
import doorbell.storage.clipwriter as clipwriter_module
from doorbell.camera.events import (
    EVENTS_FILE,
    DeliveryRefused,
    EventBus,
    EventLogFile,
    make_event,
)
from doorbell.camera.frames import SourceLost
from doorbell.camera.presses import ScriptedPresses
from doorbell.camera.synthetic import ScriptedEvent, SyntheticScene

from .barcode_scene import configure, masked_region, record_on_picamera

WIDTH, HEIGHT, FPS = 640, 360, 15  # the camera conftest.py configures


class ListSink:
    """Records what it is given; can be held (a slow broker) or made to fail."""

    def __init__(self, name="list", kinds=None):
        self.name = name
        self.kinds = kinds
        self.events = []
        self.gate = threading.Event()
        self.gate.set()
        self.holding = threading.Event()  # deliver() has been entered
        self.fail_next = 0
        self.refuse = set()
        self.closed = False
        self.started = False
        self.delivered_cond = threading.Condition()

    def accepts(self, kind):
        return self.kinds is None or kind in self.kinds

    def start(self):
        self.started = True

    def ready(self, timeout_s):
        return True

    def deliver(self, event):
        self.holding.set()
        self.gate.wait(10)
        if event.type in self.refuse:
            raise DeliveryRefused("HTTP 403")
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("the server is rebooting")
        with self.delivered_cond:
            self.events.append(event)
            self.delivered_cond.notify_all()

    def wait_for(self, count, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        with self.delivered_cond:
            while len(self.events) < count and time.monotonic() < deadline:
                self.delivered_cond.wait(0.05)
        return len(self.events) >= count

    def close(self):
        self.closed = True

    def kinds_seen(self):
        return [e.type for e in self.events]


# -- events and the bus ---------------------------------------------------------------------------


def test_events_are_typed_and_carry_only_their_own_fields():
    event = make_event("clip_saved", {"clip_id": "x", "trigger": "motion", "duration_s": 3.5},
                       "run-1", 1_700_000_000.25)
    assert event.to_dict() == {"id": "run-1", "type": "clip_saved", "time": 1_700_000_000.25,
                               "clip_id": "x", "trigger": "motion", "duration_s": 3.5}
    with pytest.raises(ValueError, match="unknown event type"):
        make_event("face_recognised", {}, "run-2", 0)
    with pytest.raises(ValueError, match="carries no"):
        make_event("doorbell_pressed", {"face": "someone"}, "run-3", 0)


def test_emit_never_raises_and_ids_are_unique_and_ordered(caplog):
    sink = ListSink()
    with EventBus([sink]) as bus:
        assert bus.emit("not_an_event") is None  # a bug is logged, never raised into capture
        first = bus.emit("doorbell_pressed")
        second = bus.emit("motion_started", trigger="doorbell")
        assert sink.wait_for(2)
    assert "could not emit not_an_event" in caplog.text
    assert first.id == f"{bus.run}-1" and second.id == f"{bus.run}-2"
    assert sink.kinds_seen() == ["doorbell_pressed", "motion_started"]
    assert sink.started and sink.closed
    assert EventBus().run != bus.run  # ids stay unique across restarts


def test_a_stuck_sink_never_blocks_emit_and_drops_its_oldest_events(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="doorbell.events")
    stuck, fine = ListSink("stuck"), ListSink("fine")
    stuck.gate.clear()  # a broker that never answers
    bus = EventBus([stuck, fine], queue_size=5).start()
    try:
        bus.emit("doorbell_pressed")
        assert stuck.holding.wait(5)  # the first event is in the stuck sink's hands
        waits = []
        for _ in range(49):
            started = time.perf_counter()
            bus.emit("doorbell_pressed")
            waits.append(time.perf_counter() - started)
        assert max(waits) < 0.1  # counted, not timed: it never waited for the stuck sink
        # The other sink is not held up by the stuck one: it gets the newest event at once
        # (a burst of 50 may overflow its small queue too: that is the same policy).
        deadline = time.monotonic() + 5
        while not (fine.events and fine.events[-1].id == f"{bus.run}-50") and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        assert fine.events[-1].id == f"{bus.run}-50"
        stats = bus.stats()
        assert stats["fine"]["delivered"] + stats["fine"]["dropped"] == 50
        # One event is in the stuck sink's hands, 5 wait in its queue, the rest were dropped.
        assert stats["stuck"] == {"queued": 5, "delivered": 0, "dropped": 44, "failed": 0}
        warnings = [r.getMessage() for r in caplog.records
                    if "stuck is not keeping up" in r.getMessage()]
        assert len(warnings) == 1  # the first drop at once, then a summary every 30 s at most
        assert "stuck is not keeping up (its queue is full, 5 events)" in warnings[0]
        assert "dropped the oldest (doorbell_pressed)" in warnings[0]
        kept = [e.id for e in bus.pending("stuck")]
        assert kept == [f"{bus.run}-{n}" for n in range(46, 51)]  # the newest ones

        stuck.gate.set()  # the broker is back: what was kept goes out, in order
        assert stuck.wait_for(6)
        assert [e.id for e in stuck.events] == [f"{bus.run}-1"] + kept
        assert "stuck is delivering again (44 event(s) dropped meanwhile" in caplog.text
    finally:
        bus.close()


def test_a_failing_sink_is_retried_in_order_and_a_refused_event_is_dropped(monkeypatch, caplog):
    monkeypatch.setattr(events_module, "RETRY_MIN_S", 0.01)
    sink = ListSink()
    sink.fail_next = 3
    sink.refuse = {"motion_ended"}
    with EventBus([sink]) as bus:
        bus.emit("doorbell_pressed")
        bus.emit("motion_ended")
        bus.emit("camera_lost", message="unplugged")
        assert sink.wait_for(2)
        time.sleep(0.05)
        stats = bus.stats()["list"]
    assert sink.kinds_seen() == ["doorbell_pressed", "camera_lost"]
    assert stats["failed"] == 4 and stats["dropped"] == 0 and stats["delivered"] == 2
    assert "list cannot deliver (the server is rebooting)" in caplog.text
    assert "list refused motion_ended (HTTP 403): dropped" in caplog.text


def test_sinks_get_only_the_events_they_take_and_disk_low_repeats_hourly():
    now = [1_000.0]
    doorbell_only = ListSink("bell", kinds={"doorbell_pressed", "disk_low"})
    with EventBus([doorbell_only], clock=lambda: now[0]) as bus:
        bus.emit("motion_started", trigger="motion")
        bus.emit("doorbell_pressed")
        assert bus.emit("disk_low", reason="disk full") is not None
        now[0] += 600
        assert bus.emit("disk_low", reason="disk full") is None  # not again within the hour
        now[0] += 3000
        assert bus.emit("disk_low", reason="disk full") is not None
        assert doorbell_only.wait_for(3)
    assert doorbell_only.kinds_seen() == ["doorbell_pressed", "disk_low", "disk_low"]


def test_images_ride_along_only_when_enabled_and_never_into_json():
    jpeg = b"\xff\xd8 masked thumbnail \xff\xd9"
    for images in (False, True):
        sink = ListSink()
        with EventBus([sink], images=images) as bus:
            bus.clip_saved("20240501T120000Z-abcdef", {"trigger": "doorbell", "duration_s": 9.5,
                                                       "start_us": 1_714_564_800_000_000}, jpeg)
            assert sink.wait_for(1)
        event = sink.events[0]
        assert event.image == (jpeg if images else None)
        assert "image" not in event.to_json() and "masked" not in event.to_json()
        assert event.data["start"] == "2024-05-01T12:00:00.000+00:00"


def test_events_jsonl_keeps_the_last_200_lines_atomically(tmp_path):
    path = tmp_path / EVENTS_FILE
    with EventBus([EventLogFile(path)], queue_size=300, images=True) as bus:
        for n in range(250):
            bus.emit("motion_started", trigger="motion")
            if n == 10:
                bus.clip_saved("clip-1", {"trigger": "motion", "duration_s": 1.0}, b"JPEG")
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    records = [json.loads(line) for line in lines]
    assert records[-1]["id"] == f"{bus.run}-251"
    assert all(r["type"] == "motion_started" for r in records)  # the clip is older than 200
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    # A restarted recorder keeps the history and appends after it, with new ids.
    with EventBus([EventLogFile(path)]) as again:
        again.emit("camera_back", message="camera open")
    lines = path.read_text().splitlines()
    assert len(lines) == 200 and json.loads(lines[-1])["id"] == f"{again.run}-1"
    assert json.loads(lines[-2])["id"] == f"{bus.run}-251"


# -- the recorder's events -------------------------------------------------------------------------


def test_the_recorder_emits_a_visit_with_a_press_and_its_clip(home):
    sink = ListSink()
    visit = [ScriptedEvent("visit", 1.0, 5.0, "straight")]
    scene = SyntheticScene(WIDTH, HEIGHT, FPS, script=visit, duration_s=20)
    with EventBus([sink, EventLogFile(home.run_dir / EVENTS_FILE)], images=True) as bus:
        recorder = home.record(scene, ScriptedPresses([3_000_000]), events=bus)
    kinds = sink.kinds_seen()
    assert kinds == ["motion_started", "doorbell_pressed", "motion_ended", "clip_saved"], kinds
    started, _, _, saved = sink.events
    assert started.data == {"trigger": "motion"}
    (row,) = home.index_rows()
    clip = home.clips()[0]
    assert saved.data["clip_id"] == row.id
    assert saved.data["trigger"] == "doorbell" == clip.trigger
    assert saved.data["duration_s"] == clip.meta["duration_s"]
    assert saved.image == home.thumbnail(row.id)  # the same (masked) thumbnail as stored
    assert recorder.stats.clips == 1
    # The viewer's copy: the same events, no image.
    lines = [json.loads(line) for line in
             (home.run_dir / EVENTS_FILE).read_text().splitlines()]
    assert [r["type"] for r in lines] == kinds
    assert lines[-1]["clip_id"] == row.id and "image" not in lines[-1]


def test_a_recorder_without_events_is_unchanged(home):
    presses = ScriptedPresses([])
    scene = SyntheticScene(WIDTH, HEIGHT, FPS, script=[], duration_s=1)
    recorder = home.record(scene, presses)
    assert recorder.presses is presses and recorder.events is None


class FastStop(threading.Event):
    def wait(self, timeout=None):
        return self.is_set()


def test_camera_lost_and_back_are_emitted_once_each(home):
    class Vanishing:
        def __init__(self):
            self.scene = SyntheticScene(WIDTH, HEIGHT, FPS, script=[], duration_s=3)

        def frames(self):
            for index, frame in enumerate(self.scene.frames()):
                if index == 10:
                    raise SourceLost("the camera was unplugged")
                yield frame

        def close(self):
            self.scene.close()

    opens = []

    def open_source():
        opens.append(1)
        if len(opens) == 1:
            return Vanishing()
        if len(opens) in (2, 3):
            raise OSError(errno.ENODEV, "No such device")
        return SyntheticScene(WIDTH, HEIGHT, FPS, script=[], duration_s=1)

    sink = ListSink()
    with EventBus([sink]) as bus:
        home.record(open_source, stop=FastStop(), events=bus)
    assert sink.kinds_seen() == ["camera_lost", "camera_back"]
    assert "unplugged" in sink.events[0].data["message"]


def test_disk_low_on_a_full_disk_and_below_the_free_space_floor(home, monkeypatch):
    original_write = clipwriter_module._SyncedFile.write
    failed = []

    def write(self, data):
        if not failed:
            failed.append(1)
            raise OSError(errno.ENOSPC, "No space left on device")
        return original_write(self, data)

    monkeypatch.setattr(clipwriter_module._SyncedFile, "write", write)
    sink = ListSink()
    visit = [ScriptedEvent("visit", 1.0, 4.0, "side")]
    with EventBus([sink]) as bus:
        home.record(SyntheticScene(WIDTH, HEIGHT, FPS, script=visit, duration_s=8), events=bus)
    assert sink.kinds_seen().count("disk_low") == 1
    assert next(e for e in sink.events if e.type == "disk_low").data == {"reason": "disk full"}

    config = home.root / "config.toml"
    config.write_text(config.read_text().replace("min_free_bytes = 0",
                                                 "min_free_bytes = 5_000_000_000"))
    monkeypatch.setattr(upkeep_module, "disk_free_bytes", lambda path: 1_000_000_000)
    monkeypatch.setattr(upkeep_module, "enforce_retention", lambda *a, **k: [])
    floor = ListSink()
    with EventBus([floor]) as bus:
        home.record(SyntheticScene(WIDTH, HEIGHT, FPS, script=[], duration_s=1), events=bus)
    (event,) = floor.events
    assert event.type == "disk_low"
    assert event.data == {"reason": "free space below retention.min_free_bytes",
                          "free_bytes": 1_000_000_000, "min_free_bytes": 5_000_000_000}


# -- the picamera2 recorder goes through the same seams ---------------------------------------


@pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")  # picamera2's NullPreview
def test_the_picamera2_recorder_emits_the_same_events(doubles, home):
    configure(home, pre_roll=1.0, post_roll=1.5)
    sink = ListSink()
    with EventBus([sink], images=True) as bus:
        record_on_picamera(home, doubles, 190, presses=ScriptedPresses([4_500_000]), live=False,
                           events=bus)
    kinds = sink.kinds_seen()
    assert kinds[:2] == ["motion_started", "doorbell_pressed"] or \
        kinds[:2] == ["doorbell_pressed", "motion_started"], kinds
    assert "motion_ended" in kinds and kinds[-1] == "clip_saved", kinds
    saved = sink.events[-1]
    (row,) = home.index_rows()
    assert saved.data["clip_id"] == row.id and saved.data["trigger"] == "doorbell"
    thumbnail = cv2.imdecode(np.frombuffer(saved.image, np.uint8), cv2.IMREAD_COLOR)
    assert masked_region(thumbnail).max() <= 24  # the snapshot has the privacy mask burnt in
