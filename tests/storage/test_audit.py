"""The audit log: format, chain, tamper detection, torn writes, concurrency (storage/audit.py)."""

import hashlib
import json
import multiprocessing
import os
import re
from pathlib import Path

import pytest

from doorbell.storage.audit import GENESIS, MAX_ENTRY_BYTES, AuditEntry, AuditLog
from doorbell.storage.errors import AuditLogCorrupt


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def dump(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")


def filled(log: AuditLog, count: int) -> AuditLog:
    for number in range(1, count + 1):
        log.append("alice", "clip.view", clip=f"clip-{number}")
    return log


def read_lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().split(b"\n")[:-1]


def write_lines(log: AuditLog, lines: list[bytes]) -> None:
    """Rewrite the log the way an attacker would: the head file is left alone."""
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))


def edited(line: bytes, **changes) -> bytes:
    obj = json.loads(line)
    obj.update(changes)
    return dump(obj)


# -- format and round trip ---------------------------------------------------------------------


def test_round_trip(log):
    first = log.append("alice", "session.unlock", ip="192.168.1.20")
    second = log.append("bob", "clip.export", clip="2024-05-01T12-00-00", to=["usb"], n={"a": 1})

    assert log.entries() == [first, second]
    assert isinstance(first, AuditEntry)
    assert (first.seq, first.actor, first.action) == (1, "alice", "session.unlock")
    assert second.details == {"clip": "2024-05-01T12-00-00", "to": ["usb"], "n": {"a": 1}}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.time)
    assert first.prev_sha256 == GENESIS
    assert second.prev_sha256 == first.line_sha256


def test_file_format_is_exact(log):
    entry = log.append("alice", "clip.delete", clip="x1")
    raw = log.path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    expected = {
        "seq": 1,
        "time": entry.time,
        "actor": "alice",
        "action": "clip.delete",
        "details": {"clip": "x1"},
        "prev": GENESIS,
    }
    assert raw[:-1] == dump(expected)
    assert list(json.loads(raw)) == ["seq", "time", "actor", "action", "details", "prev"]
    assert entry.line_sha256 == sha(raw[:-1])


def test_chain_across_many_entries(log):
    filled(log, 300)
    lines = read_lines(log)
    entries = log.entries()
    assert [entry.seq for entry in entries] == list(range(1, 301))
    for previous, line, entry in zip([None, *lines[:-1]], lines, entries, strict=True):
        assert json.loads(line)["prev"] == (sha(previous) if previous else GENESIS)
        assert entry.line_sha256 == sha(line)
    result = log.verify()
    assert (result.ok, result.entries, result.problem_line) == (True, 300, None)
    assert sha(lines[-1]) in result.message
    assert log.head() == (300, sha(lines[-1]))
    head = json.loads(log.head_path.read_bytes())
    assert head == {"seq": 300, "sha256": sha(lines[-1])}


def test_empty_and_missing_log(log):
    assert log.entries() == []
    assert log.head() == (0, GENESIS)
    result = log.verify()
    assert (result.ok, result.entries, result.problem_line) == (True, 0, None)
    assert not log.path.exists()


def test_file_modes_ignore_umask(log):
    old = os.umask(0o077)
    try:
        log.append("alice", "settings.change", key="retention.days", value=30)
    finally:
        os.umask(old)
    assert log.path.stat().st_mode & 0o777 == 0o640


def test_unicode_actor_names(log):
    names = [
        "Zoë",
        "山田太郎",
        "Ольга",
        "👩\u200d👧 family",
        "line\u2028separator",
        "tab\tand\nnewline",
    ]
    for name in names:
        log.append(name, "session.unlock", note=f"héllo {name}")
    raw = log.path.read_bytes()
    assert "山田太郎".encode() in raw  # stored as UTF-8, not \u escapes
    assert raw.count(b"\n") == len(names)  # a newline in a name is escaped, never raw
    assert [entry.actor for entry in log.entries()] == names
    assert log.verify().ok


def test_oversized_details_refused(log):
    log.append("alice", "session.unlock")
    before = log.path.read_bytes()
    with pytest.raises(ValueError, match="at most 65536 bytes"):
        log.append("alice", "clip.export", blob="x" * MAX_ENTRY_BYTES)
    assert log.path.read_bytes() == before
    fitting = log.append("alice", "clip.export", blob="x" * (MAX_ENTRY_BYTES - 300))
    assert len(read_lines(log)[-1]) <= MAX_ENTRY_BYTES
    assert fitting.seq == 2 and log.verify().ok


@pytest.mark.parametrize(
    ("actor", "action", "details", "error"),
    [
        ("", "clip.view", {}, ValueError),
        ("alice", "", {}, ValueError),
        ("alice", "audit.torn_line", {}, ValueError),
        ("alice", "clip.view", {"when": object()}, TypeError),
        ("alice", "clip.view", {"ratio": float("nan")}, ValueError),
    ],
)
def test_bad_input_refused(log, actor, action, details, error):
    with pytest.raises(error):
        log.append(actor, action, **details)
    assert not log.path.exists() or log.path.read_bytes() == b""


# -- tampering ---------------------------------------------------------------------------------


def check(log: AuditLog, line: int, *words: str) -> None:
    result = log.verify()
    assert not result.ok
    assert result.problem_line == line, result.message
    for word in words:
        assert word in result.message
    assert result.message.endswith(".") and "\n" not in result.message


@pytest.mark.parametrize(
    "change",
    [
        {"time": "2020-01-01T00:00:00.000Z"},
        {"actor": "mallory"},
        {"action": "clip.delete"},
        {"details": {"clip": "other"}},
        {"seq": 99},
        {"prev": "1" * 64},
    ],
    ids=lambda change: next(iter(change)),
)
@pytest.mark.parametrize("where", [1, 5, 10])
def test_edited_entry_any_field(log, change, where):
    filled(log, 10)
    lines = read_lines(log)
    lines[where - 1] = edited(lines[where - 1], **change)
    write_lines(log, lines)
    check(log, where, f"line {where} was edited")


def test_edit_that_only_changes_spacing(log):
    filled(log, 5)
    lines = read_lines(log)
    lines[2] = lines[2].replace(b'"actor":', b'"actor": ')
    write_lines(log, lines)
    check(log, 3, "line 3 was edited")


@pytest.mark.parametrize("where", [1, 4, 9])
def test_removed_entry(log, where):
    filled(log, 10)
    lines = read_lines(log)
    del lines[where - 1]
    write_lines(log, lines)
    check(log, where, f"removed before line {where}", f"entry {where + 1}")


def test_removed_from_the_end(log):
    filled(log, 10)
    write_lines(log, read_lines(log)[:8])
    check(log, 9, "the log ends at line 8 but its head records 10 entries", "removed from the end")
    with pytest.raises(AuditLogCorrupt, match="removed from the end"):
        log.append("mallory", "session.unlock")


def test_everything_removed(log):
    filled(log, 3)
    log.path.write_bytes(b"")
    check(log, 1, "the log ends at line 0 but its head records 3 entries")
    log.path.unlink()
    check(log, 1, "removed from the end")


def test_inserted_entry_with_a_forged_chain(log):
    filled(log, 6)
    lines = read_lines(log)
    forged = edited(lines[3], actor="mallory", details={"clip": "forged"})  # seq 4, prev of 3
    lines.insert(3, forged)  # now line 4; the real entry 4 becomes line 5
    write_lines(log, lines)
    check(log, 4, "line 4 was inserted")


def test_inserted_entry_with_arbitrary_content(log):
    filled(log, 6)
    lines = read_lines(log)
    lines.insert(2, edited(lines[2], seq=42, prev="a" * 64))
    write_lines(log, lines)
    check(log, 3, "line 3 was inserted")


def test_duplicated_entry(log):
    filled(log, 6)
    lines = read_lines(log)
    lines.insert(3, lines[3])
    write_lines(log, lines)
    check(log, 5, "line 5 is a copy of line 4")


@pytest.mark.parametrize("first", [1, 4, 9])
def test_swapped_neighbours(log, first):
    filled(log, 10)
    lines = read_lines(log)
    lines[first - 1], lines[first] = lines[first], lines[first - 1]
    write_lines(log, lines)
    check(log, first, f"lines {first} and {first + 1} were swapped")


def test_reordered_far_apart(log):
    filled(log, 10)
    lines = read_lines(log)
    lines[2], lines[7] = lines[7], lines[2]
    write_lines(log, lines)
    check(log, 3, "line 3 is out of order", "is at line 8")


def test_moved_to_the_end(log):
    filled(log, 10)
    lines = read_lines(log)
    lines.append(lines.pop(4))
    write_lines(log, lines)
    check(log, 5, "line 5 is out of order", "is at line 10")


@pytest.mark.parametrize(
    "garbage", [b"", b"hello", b"[1,2]", b'{"seq":3}', b"\xff\xfe", b"[" * 100000]
)
def test_garbage_line_in_the_middle(log, garbage):
    filled(log, 6)
    lines = read_lines(log)
    lines.insert(3, garbage)
    write_lines(log, lines)
    check(log, 4, "line 4 is not a valid audit entry")
    with pytest.raises(AuditLogCorrupt, match="line 4") as caught:
        log.entries()
    assert caught.value.line == 4
    assert isinstance(caught.value, ValueError)


def test_garbage_line_at_the_end(log):
    filled(log, 3)
    log.path.write_bytes(log.path.read_bytes() + b"not json\n")
    check(log, 4, "line 4 is not a valid audit entry")


def test_missing_head_file(log):
    filled(log, 3)
    log.head_path.unlink()
    check(log, None, "head file audit.jsonl.head is missing")
    with pytest.raises(AuditLogCorrupt, match="missing"):
        log.append("alice", "clip.view")


def test_damaged_head_file(log):
    filled(log, 3)
    log.head_path.write_text("nonsense")
    check(log, None, "audit.jsonl.head is damaged")


def test_edited_last_line_cannot_be_laundered_by_the_next_append(log):
    filled(log, 4)
    lines = read_lines(log)
    lines[-1] = edited(lines[-1], actor="mallory")
    write_lines(log, lines)
    with pytest.raises(AuditLogCorrupt, match="edited"):
        log.append("alice", "clip.view")
    check(log, 4, "line 4 was edited", "head")


def test_head_one_behind_after_a_crash_is_accepted(log):
    filled(log, 4)
    lines = read_lines(log)
    # A crash between the log's fsync and the head's rename leaves the previous head.
    log.head_path.write_text(json.dumps({"seq": 3, "sha256": sha(lines[2])}))
    assert log.verify().ok
    log.append("alice", "clip.view")
    assert log.verify().ok and log.head()[0] == 5


def test_head_crash_before_the_first_line(log):
    log.append("alice", "clip.view")
    log.head_path.write_text(json.dumps({"seq": 0, "sha256": GENESIS}))
    assert log.verify().ok
    log.append("alice", "clip.view")
    assert log.verify().ok


def test_verify_never_raises_on_junk(log):
    filled(log, 2)
    for junk in [b"\x00" * 100, os.urandom(5000), b"\n\n\n", b"{" * 50000 + b"\n"]:
        log.path.write_bytes(junk)
        result = log.verify()
        assert not result.ok and result.message


# -- torn writes -------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 30, -1])
def test_torn_final_line(log, keep):
    filled(log, 5)
    intact = log.path.read_bytes()
    last_start = intact.rstrip(b"\n").rfind(b"\n") + 1
    torn = intact[: last_start + keep] if keep > 0 else intact[:-2]  # -1: lost "}\n"
    log.path.write_bytes(torn)
    # A real torn append never got as far as the head, which still names entry 4.
    fourth = intact.split(b"\n")[3]
    log.head_path.write_text(json.dumps({"seq": 4, "sha256": sha(fourth)}))

    result = log.verify()
    assert (result.ok, result.problem_line) == (False, 5)
    assert "torn final line" in result.message and "not an edit" in result.message
    with pytest.raises(AuditLogCorrupt, match="torn final line") as caught:
        log.entries()
    assert caught.value.line == 5
    assert log.head() == (4, sha(fourth))


def test_a_line_cut_short_after_its_append_is_not_a_torn_write(log):
    filled(log, 5)
    log.path.write_bytes(log.path.read_bytes()[:-20])  # the head already records entry 5
    check(log, 5, "line 5 was damaged or cut short after it was written", "head records 5 entries")
    with pytest.raises(AuditLogCorrupt, match="removed from the end"):
        log.append("alice", "clip.view")


def test_append_after_a_torn_line_records_it_and_keeps_everything(log):
    filled(log, 5)
    data = log.path.read_bytes()
    log.path.write_bytes(data[:-20])  # power cut in the middle of writing entry 5
    log.head_path.write_text(json.dumps({"seq": 4, "sha256": sha(data.split(b"\n")[3])}))
    fragment = data[:-20].rsplit(b"\n", 1)[1]

    entry = log.append("bob", "session.unlock")

    lines = read_lines(log)
    assert log.path.read_bytes().startswith(data[:-20] + b"\n")  # nothing was dropped
    assert lines[4] == fragment
    note = json.loads(lines[5])
    assert (note["seq"], note["actor"], note["action"]) == (5, "system", "audit.torn_line")
    assert note["details"] == {"torn": [{"bytes": len(fragment), "sha256": sha(fragment)}]}
    assert note["prev"] == sha(lines[3])
    assert (entry.seq, entry.prev_sha256) == (6, sha(lines[5]))

    result = log.verify()
    assert (result.ok, result.entries) == (True, 6), result.message
    assert "torn line 5" in result.message
    assert [e.seq for e in log.entries()] == [1, 2, 3, 4, 5, 6]

    # The torn bytes are now part of the record: changing them is detected.
    lines[4] = fragment[:-1] + b"X"
    write_lines(log, lines)
    check(log, 5, "line 5 is not a valid audit entry")


def test_torn_write_of_zeros(log):
    """After a power cut a file can end in zeros where the data never reached the disk."""
    filled(log, 3)
    log.path.write_bytes(log.path.read_bytes() + b"\x00" * 180)
    check(log, 4, "torn final line")
    log.append("alice", "clip.view")
    assert log.verify().ok


def test_torn_first_line(log):
    log.append("alice", "clip.view")
    log.path.write_bytes(log.path.read_bytes()[:10])
    log.head_path.write_text(json.dumps({"seq": 0, "sha256": GENESIS}))
    check(log, 1, "torn final line")
    entry = log.append("alice", "clip.view")
    assert entry.seq == 2
    assert log.verify().ok


def test_two_torn_lines(log):
    """The recovery write itself was torn: two damaged lines, both accounted for."""
    filled(log, 3)
    log.path.write_bytes(log.path.read_bytes() + b'{"seq":4,"ti\n{"seq":4,"time":"20')
    check(log, 4, "torn final line")
    log.append("alice", "clip.view")
    result = log.verify()
    assert result.ok and "torn line 4, 5" in result.message


def test_complete_last_line_without_its_newline(log):
    filled(log, 3)
    log.path.write_bytes(log.path.read_bytes()[:-1])
    assert log.verify().ok
    assert len(log.entries()) == 3
    log.append("alice", "clip.view")
    assert log.verify().ok and len(read_lines(log)) == 4


def test_removed_torn_line_is_detected(log):
    filled(log, 3)
    log.path.write_bytes(log.path.read_bytes() + b'{"seq":4,')
    log.append("alice", "clip.view")
    lines = read_lines(log)
    del lines[3]
    write_lines(log, lines)
    check(log, 4, "records torn lines before it that are no longer there")


def test_the_guard_before_a_change_records_a_torn_final_line_and_lets_it_go_on(log):
    filled(log, 3)
    log.path.write_bytes(log.path.read_bytes() + b'{"seq":4,"ti')  # the head still names 3
    assert log.verify().torn_tail

    log.require_intact()  # what any process (the CLI, retention) checks before a change

    result = log.verify()
    assert result.ok and "torn line 4" in result.message, result.message
    assert [e.action for e in log.entries()][-1] == "audit.torn_line"
    assert log.record_torn_tail() is False  # nothing left to record


def test_a_torn_final_line_does_not_hide_an_edit_before_it(log):
    filled(log, 3)
    lines = read_lines(log)
    lines[2] = edited(lines[2], actor="mallory")  # the head names the original line 3
    write_lines(log, lines)
    log.path.write_bytes(log.path.read_bytes() + b'{"seq":4,"ti')

    result = log.verify()
    assert not result.ok and not result.torn_tail
    assert "line 3 was edited" in result.message, result.message
    before = log.path.read_bytes()
    with pytest.raises(AuditLogCorrupt, match="line 3 was edited"):
        log.require_intact()
    assert log.path.read_bytes() == before  # refused, and nothing was written


def test_a_lenient_read_shows_what_is_left_of_a_damaged_log(log):
    filled(log, 3)
    log.path.write_bytes(log.path.read_bytes() + b"garbage\n" + b'{"seq":4,"ti')

    with pytest.raises(AuditLogCorrupt):
        log.entries()
    assert [e.seq for e in log.entries(strict=False)] == [1, 2, 3]


def test_long_garbage_at_the_end_is_refused(log):
    filled(log, 3)
    log.path.write_bytes(log.path.read_bytes() + b"x" * (5 * MAX_ENTRY_BYTES))
    with pytest.raises(AuditLogCorrupt, match="not an entry or a torn write"):
        log.append("alice", "clip.view")


# -- concurrency -------------------------------------------------------------------------------


def _append_many(path: str, worker: int, count: int, ready) -> None:
    log = AuditLog(Path(path))
    ready.wait()  # all workers start appending together, so their appends interleave
    for number in range(count):
        log.append(f"worker-{worker}", "clip.view", n=number)


def test_concurrent_appends_from_several_processes(log):
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(4)
    workers = [
        context.Process(target=_append_many, args=(str(log.path), worker, 50, ready))
        for worker in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0

    result = log.verify()
    assert (result.ok, result.entries) == (True, 200), result.message
    entries = log.entries()
    assert [entry.seq for entry in entries] == list(range(1, 201))
    for worker in range(4):
        mine = [entry.details["n"] for entry in entries if entry.actor == f"worker-{worker}"]
        assert mine == list(range(50))
    assert log.head() == (200, entries[-1].line_sha256)
    switches = sum(a.actor != b.actor for a, b in zip(entries, entries[1:], strict=False))
    assert switches > 3  # 3 would mean the workers ran one after another, not interleaved
