"""The files recorder and viewer exchange: what one side writes the other reads back unchanged,
anything else is one ExchangeFileError, and each file goes stale after its documented limit."""

import json
import math

import pytest

from doorbell.config import ConfigError, Settings
from doorbell.storage.exchange import (
    MAX_FILE_BYTES,
    MAX_TRIAL_EXPIRY_S,
    RECORDER_STALE_S,
    TRIAL_LIFETIME_S,
    EventLine,
    ExchangeFileError,
    MotionOverlay,
    MotionTrial,
    RecorderStatus,
    load_events,
    parse_event_lines,
)

NOW_S = 1_714_564_800.0
SHA = "ab" * 32
CLIP_ID = "20240501T120000Z-abcdef"


def status(**changes) -> RecorderStatus:
    fields = dict(state="recording", camera="ok", frames=1200, fps=14.93, clips_saved=3,
                  last_frame_time=NOW_S - 0.2, recording=CLIP_ID, updated=NOW_S,
                  config_sha256=SHA, recipients_sha256="cd" * 32)
    return RecorderStatus(**{**fields, **changes})


def overlay(**changes) -> MotionOverlay:
    motion = Settings().with_overrides({
        "motion.sensitivity": 0.7, "motion.min_area": 0.001, "motion.trigger_frames": 2,
        "motion.zones": [[[0, 0], [1, 0], [1, 1]]]}).motion
    fields = dict(updated=NOW_S, frame_width=1280, frame_height=720,
                  boxes=((0.1, 0.2, 0.05, 0.0625),), score=0.0123, triggered=True,
                  light_change=False, motion=motion)
    return MotionOverlay(**{**fields, **changes})


def status_json(**changes) -> bytes:
    raw = json.loads(status().to_json())
    raw.update(changes)
    return json.dumps(raw).encode()


# -- round trips, in the format on disk ---------------------------------------------------------

def test_recorder_status_round_trips_with_the_keys_the_viewer_reads(tmp_path):
    path = tmp_path / "recorder.json"
    written = status()
    written.write(path)
    assert set(json.loads(path.read_bytes())) == {
        "state", "camera", "frames", "fps", "clips_saved", "last_frame_time", "recording",
        "updated", "config_sha256", "recipients_sha256", "retention_problem"}
    assert RecorderStatus.load(path) == written
    assert [p.name for p in tmp_path.iterdir()] == ["recorder.json"]  # no temporary left


def test_a_status_without_the_digests_or_a_frame_yet_reads(tmp_path):
    before_first_frame = status(last_frame_time=None, recording=None, frames=0,
                                config_sha256=None, recipients_sha256=None)
    assert RecorderStatus.from_json(before_first_frame.to_json()) == before_first_frame
    raw = json.loads(before_first_frame.to_json())
    del raw["config_sha256"], raw["recipients_sha256"]  # a recorder that follows no files
    assert RecorderStatus.from_json(json.dumps(raw).encode()) == before_first_frame
    assert not before_first_frame.camera_alive(NOW_S)


def test_a_retention_problem_is_one_sentence_of_at_most_200_characters(tmp_path):
    said = status(retention_problem="the disk is full and deleting older clips cannot make "
                                    "room for the next one")
    assert RecorderStatus.from_json(said.to_json()) == said
    raw = json.loads(said.to_json())
    raw["retention_problem"] = "x" * 201
    with pytest.raises(ExchangeFileError):
        RecorderStatus.from_json(json.dumps(raw).encode())


def test_a_missing_file_is_none_not_an_error(tmp_path):
    assert RecorderStatus.load(tmp_path / "recorder.json") is None
    assert MotionOverlay.load(tmp_path / "motion-overlay.json") is None
    assert MotionTrial.load(tmp_path / "motion-tuning.json") is None
    assert load_events(tmp_path / "events.jsonl") == []


def test_the_overlay_round_trips_with_the_trial_settings(tmp_path):
    path = tmp_path / "motion-overlay.json"
    written = overlay()
    written.write(path)
    raw = json.loads(path.read_bytes())
    assert raw["boxes"] == [[0.1, 0.2, 0.05, 0.0625]]
    assert raw["motion"] == {"sensitivity": 0.7, "min_area": 0.001, "trigger_frames": 2,
                             "detect_width": 320, "light_change_fraction": 0.6,
                             "zones": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]]}
    assert MotionOverlay.load(path) == written


def test_the_trial_file_round_trips_and_is_checked_like_config_toml(tmp_path):
    path = tmp_path / "motion-tuning.json"
    written = MotionTrial(motion={"sensitivity": 0.8, "trigger_frames": 2},
                          expires_at=NOW_S + TRIAL_LIFETIME_S, member="alice")
    written.write(path)
    assert path.stat().st_mode & 0o777 == 0o640  # the recorder's group reads it
    read = MotionTrial.load(path)
    assert read == written
    motion = read.apply_to(Settings(), source=str(path))
    assert (motion.sensitivity, motion.trigger_frames, motion.min_area) == (0.8, 2, 0.004)
    with pytest.raises(ConfigError, match="motion.sensitivity"):
        MotionTrial(motion={"sensitivity": 3}, expires_at=NOW_S).apply_to(Settings(), "x")
    with pytest.raises(TypeError):
        read.motion["sensitivity"] = 1.0  # frozen all the way down to its values' mapping


def test_event_lines_round_trip_and_skip_what_is_not_an_event(tmp_path):
    saved = EventLine("1a2b3c4d-7", "clip_saved", NOW_S,
                      {"clip_id": CLIP_ID, "trigger": "doorbell", "duration_s": 12.5})
    line = saved.to_json()
    assert "\n" not in line and json.loads(line)["id"] == "1a2b3c4d-7"
    assert EventLine.from_json(line) == saved
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([
        line.encode(), b"{not json", b"\xff\xfe", b'{"id": "x\\ndata: forged", "type": "a",'
        b' "time": 1}', b'{"id": "2", "type": "doorbell_pressed", "time": 1714564801}']))
    events = load_events(path)
    assert [e.id for e in events] == ["1a2b3c4d-7", "2"]
    assert events[0].to_dict() == json.loads(line)


# -- malformed and hostile files: one error, one sentence ---------------------------------------

HOSTILE_STATUS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"{not json", id="not JSON"),
    pytest.param(b"\xff\xfe{\x00}\x00", id="not UTF-8"),
    pytest.param(b"[1, 2]", id="not an object"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested past the stack"),
    pytest.param(status_json(frames="1200"), id="frames as text"),
    pytest.param(status_json(frames=True), id="frames as a boolean"),
    pytest.param(status_json(frames=1.5), id="frames not whole"),
    pytest.param(status_json(frames=-1), id="negative frames"),
    pytest.param(status_json(frames=10**30), id="huge frames"),
    pytest.param(status_json(fps=None), id="fps null"),
    pytest.param(status_json(state=["idle"]), id="state a list"),
    pytest.param(status_json(state=""), id="state empty"),
    pytest.param(status_json(state="x" * 10_000), id="state huge"),
    pytest.param(status_json(recording="../../etc/passwd"), id="recording not a clip id"),
    pytest.param(status_json(updated="now"), id="updated as text"),
    pytest.param(status_json(updated=1e300), id="updated far in the future"),
    pytest.param(status_json(last_frame_time=-5), id="time before 1970"),
    pytest.param(status_json(config_sha256="not a digest"), id="digest malformed"),
    pytest.param(status_json().replace(b'"fps": 14.93', b'"fps": NaN'), id="NaN"),
    pytest.param(status_json().replace(b'"fps": 14.93', b'"fps": 1e999'), id="infinite"),
    pytest.param(status_json().replace(b'"fps": 14.93', b'"fps": ' + b"9" * 400),
                 id="integer too big for a float"),
    pytest.param(status_json().replace(b'"frames": 1200', b'"frames": ' + b"9" * 5000),
                 id="integer too long to parse"),
]


@pytest.mark.parametrize("data", HOSTILE_STATUS)
def test_a_malformed_status_is_one_exchange_file_error(data):
    with pytest.raises(ExchangeFileError) as caught:
        RecorderStatus.from_json(data)
    message = str(caught.value)
    assert message.startswith("recorder.json") and message.endswith(".")
    assert message.count(". ") == 0 and len(message) < 200  # one short sentence
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("key", ["state", "camera", "frames", "fps", "clips_saved",
                                 "last_frame_time", "recording", "updated"])
def test_every_required_status_key_is_required(key):
    raw = json.loads(status().to_json())
    del raw[key]
    with pytest.raises(ExchangeFileError, match=f"recorder.json has no {key}"):
        RecorderStatus.from_json(json.dumps(raw).encode())


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "recorder.json"
    path.write_bytes(b'{"state": "' + b"x" * MAX_FILE_BYTES + b'"}')
    with pytest.raises(ExchangeFileError, match="larger than"):
        RecorderStatus.load(path)
    (tmp_path / "events.jsonl").write_bytes(b"x" * (MAX_FILE_BYTES * 3))
    assert load_events(tmp_path / "events.jsonl") == []


def overlay_json(**changes) -> bytes:
    raw = json.loads(overlay().to_json())
    for key, value in changes.items():
        if key.startswith("motion_"):
            raw["motion"][key.removeprefix("motion_")] = value
        else:
            raw[key] = value
    return json.dumps(raw).encode()


@pytest.mark.parametrize("data", [
    pytest.param(overlay_json(boxes=[[10, 20, 30, 40]]), id="boxes in pixels"),
    pytest.param(overlay_json(boxes=[[0.1, 0.2, 0.3]]), id="a box of three"),
    pytest.param(overlay_json(boxes={"x": 1}), id="boxes an object"),
    pytest.param(overlay_json(triggered=1), id="triggered a number"),
    pytest.param(overlay_json(frame_width=0), id="no width"),
    pytest.param(overlay_json(score=2.0), id="score above 1"),
    pytest.param(overlay_json(motion="fast"), id="motion text"),
    pytest.param(overlay_json(motion_sensitivity=3), id="sensitivity out of range"),
    pytest.param(overlay_json(motion_zones=[[[0, 0], [5, 5], [0, 1]]]), id="zone off the frame"),
    pytest.param(json.dumps({**json.loads(overlay().to_json()), "motion": {
        "sensitivity": 0.5}}).encode(), id="motion settings missing"),
])
def test_a_malformed_overlay_is_one_exchange_file_error(data):
    with pytest.raises(ExchangeFileError, match="^motion-overlay.json"):
        MotionOverlay.from_json(data)


@pytest.mark.parametrize("data", [
    b'{"motion": [0.5], "expires_at": 1714564830}',
    b'{"motion": {}, "expires_at": "soon"}',
    b'{"motion": {}, "expires_at": true}',
    b'{"motion": {}, "expires_at": Infinity}',
    b'{"motion": {}}',
    b'{"expires_at": 1714564830}',
    b'{"motion": {}, "expires_at": 1714564830, "member": 7}',
    b"\x80",
])
def test_a_malformed_trial_file_is_one_exchange_file_error(data):
    with pytest.raises(ExchangeFileError, match="^motion-tuning.json"):
        MotionTrial.from_json(data)


# -- staleness -------------------------------------------------------------------------------------

def test_the_camera_is_alive_only_while_frames_are_recent():
    assert status(last_frame_time=NOW_S - RECORDER_STALE_S + 0.5).camera_alive(NOW_S)
    assert not status(last_frame_time=NOW_S - RECORDER_STALE_S - 0.5).camera_alive(NOW_S)
    assert not status(last_frame_time=None).camera_alive(NOW_S)
    # Far in the future is no proof of life (a forged file, a clock set years ahead).
    assert not status(last_frame_time=NOW_S + 3600).camera_alive(NOW_S)


def test_a_recorder_that_stopped_writing_is_not_running_even_if_its_camera_was_ok():
    # The camera lost: no frames, but the recorder still writes its status.
    lost = status(camera="lost", last_frame_time=NOW_S - 60, updated=NOW_S - 1)
    assert lost.recorder_running(NOW_S) and not lost.camera_alive(NOW_S)
    assert not status(updated=NOW_S - RECORDER_STALE_S - 1).recorder_running(NOW_S)


def test_the_overlay_stays_on_between_writes_at_the_slowest_live_rate():
    slowest_interval_s = 1 / 0.2  # live.fps at its minimum
    assert overlay(updated=NOW_S - slowest_interval_s - 0.5).active(NOW_S)
    assert not overlay(updated=NOW_S - RECORDER_STALE_S - 0.5).active(NOW_S)


def test_a_trial_ends_at_its_expiry_but_never_beyond_the_cap():
    soon = MotionTrial(motion={}, expires_at=NOW_S + TRIAL_LIFETIME_S)
    assert soon.expiry_s(NOW_S) == NOW_S + TRIAL_LIFETIME_S
    forever = MotionTrial(motion={}, expires_at=1e15)
    assert forever.expiry_s(NOW_S) == NOW_S + MAX_TRIAL_EXPIRY_S
    assert MotionTrial.from_json(b'{"motion": {}, "expires_at": 1e15}').expiry_s(NOW_S) == \
        NOW_S + MAX_TRIAL_EXPIRY_S


def test_event_lines_refuse_what_would_break_an_sse_stream():
    for line in ['{"id": "a\\nevent: forged", "type": "clip_saved", "time": 1}',
                 '{"id": "a", "type": "clip_saved\\r\\ndata: x", "time": 1}',
                 '{"id": "a", "type": "clip_saved", "time": NaN}',
                 '{"id": 7, "type": "clip_saved", "time": 1}']:
        with pytest.raises(ExchangeFileError, match="^a line of events.jsonl"):
            EventLine.from_json(line)
    assert parse_event_lines(b"") == []
    assert math.isfinite(EventLine.from_json('{"id":"a","type":"b","time":5}').time)
