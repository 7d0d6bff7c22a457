"""The append-only, hash-chained audit log (design principle 5: the owner sees every access).

Every unlock, view, export, deletion and settings change is appended to `audit.jsonl` as one JSON
object per line, keys in this order::

    {"seq":1,"time":"2024-05-01T12:00:00.000Z","actor":"alice","action":"clip.export",
     "details":{...},"prev":"<sha256 hex of the previous line's exact bytes, no newline>"}

`prev` is 64 zeros on the first line and `seq` counts up by one, so `verify()` finds and names the
first line that was edited (any field), removed, inserted, duplicated or moved, and garbage lines.

What the chain proves, and what it cannot:

* A chain alone cannot notice entries cut off the end, so `audit.jsonl.head` records the seq and
  sha256 of the last line (replaced atomically on every append) and `verify()` compares the end
  of the log with it.
* Someone with write access to the home directory can rewrite the log *and* its head into a new,
  consistent history. The chain therefore proves integrity against edits of the log alone. The
  owner's protection against a full rewrite is an off-device copy of the head hash: `verify()`
  states it in its message, and `head()` returns it; a later log must still contain that line.
* Entries appended after the head was copied cannot be told apart from genuine ones by anyone who
  can write the log; the head only ever moves forward.

Durability and concurrency: the recorder and the viewer append to the same log. An append takes an
exclusive `flock` on the log, reads the last line's hash by seeking back from the end (never the
whole file), writes its line with one `os.write` (O_APPEND), fsyncs, then replaces the head. A
crash (or a failed head write) between the fsync and the head update leaves the head behind the
log, which is accepted; the entry is in the log and the next append brings the head up to date.
An append also refuses (AuditLogCorrupt) to build on a log whose end no longer matches its head,
so the next entry cannot launder an edited last line or entries removed from the end. The head
is written before the first line, so a missing head next to a non-empty log always means it was
removed. Only the file's owner may append (mode 0o640); its group may read and verify.

Torn writes: a power cut in the middle of an append can leave a final line without its newline,
often invalid JSON. `verify()` reports it as a torn final line, not as tampering, and `entries()`
raises AuditLogCorrupt for it. The next append keeps those bytes (nothing is ever dropped), ends
them with a newline and first appends a `system` entry with action `audit.torn_line` whose details
record the size and sha256 of each torn line, chained to the last valid entry; then it appends
its own entry. From then on the torn bytes are accounted for by the chain: `verify()` passes and
names them, `entries()` skips them, and any later edit of them is detected like any other edit.
The head is replaced only after the line is fsynced, so a damaged last line that the head already
covers is not a torn write: `verify()` reports it as cut short and appends refuse to go on.
`require_intact()`, the check before any change, writes the `audit.torn_line` entry itself
(`record_torn_tail()`), so a torn line blocks no change from any process, the command line's
included; anything else `verify()` finds still refuses every change.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from doorbell.storage.durable import write_atomically
from doorbell.storage.errors import AuditLogCorrupt

__all__ = [
    "GENESIS",
    "MAX_ENTRY_BYTES",
    "AuditEntry",
    "AuditLog",
    "AuditVerification",
]

GENESIS = "0" * 64
MAX_ENTRY_BYTES = 64 * 1024  # one serialised line, without its newline
FILE_MODE = 0o640
TORN_ACTOR = "system"
TORN_ACTION = "audit.torn_line"
_KEYS = ("seq", "time", "actor", "action", "details", "prev")
_HEX = frozenset("0123456789abcdef")
_BLOCK = 8192
# A torn write leaves at most a few lines of at most one entry each (the recovery line and the
# caller's line go out in one write); anything bigger at the end is not a torn write.
_MAX_TORN_LINES = 8
_MAX_TORN_BYTES = 4 * (MAX_ENTRY_BYTES + 1)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: str
    actor: str
    action: str
    details: dict[str, Any]
    prev_sha256: str
    line_sha256: str


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    entries: int
    problem_line: int | None
    message: str
    # The one problem is a torn final line, which the next append (or record_torn_tail) records:
    # the rest of the log and its head check out.
    torn_tail: bool = False


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")

    # -- writing ---------------------------------------------------------------------------

    def append(self, actor: str, action: str, **details: Any) -> AuditEntry:
        """Append one entry durably; raise ValueError for bad input, AuditLogCorrupt if the
        log's end does not match its head."""
        if not isinstance(actor, str) or not actor:
            raise ValueError("an audit entry needs an actor name.")
        if not isinstance(action, str) or not action:
            raise ValueError("an audit entry needs an action.")
        if action == TORN_ACTION:
            raise ValueError(f"the action {TORN_ACTION} is reserved for the audit log itself.")
        line = self._write((actor, action, details))
        entry = _parse(line)
        assert entry is not None
        return entry  # exactly what entries() will read back

    def record_torn_tail(self) -> bool:
        """Write now the `audit.torn_line` entry the next append would write first, if the log
        ends in a torn line; True if it did. AuditLogCorrupt as for append."""
        return self._write(None) is not None

    def _write(self, own: tuple[str, str, dict[str, Any]] | None) -> bytes | None:
        """Under the lock: account for a torn tail, then append `own` (actor, action,
        details) if given. The last line written, or None if there was nothing to write."""
        fd = self._open_for_append()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
            size = os.fstat(fd).st_size
            last, torn = _tail(fd, size)
            self._check_head(last)
            if own is None and not torn:
                return None
            if last is None and not self.head_path.exists():
                # Anchor before the first line: later, a missing head always means removal.
                self._write_head(0, GENESIS)
            seq, prev = (last.seq, last.line_sha256) if last else (0, GENESIS)
            now = _utc_now()
            # A last line without its newline (torn, or complete but cut before "\n") is ended
            # first, so the new line never runs into it.
            data = b"" if size == 0 or os.pread(fd, 1, size - 1) == b"\n" else b"\n"
            line = b""
            if torn:
                seq += 1
                line = _serialise(seq, now, TORN_ACTOR, TORN_ACTION, _torn_details(torn), prev)
                data += line + b"\n"
                prev = _sha256(line)
            if own is not None:
                seq += 1
                line = _serialise(seq, now, *own, prev)
                if len(line) > MAX_ENTRY_BYTES:
                    raise ValueError(
                        f"an audit entry may be at most {MAX_ENTRY_BYTES} bytes; "
                        f"this one is {len(line)}."
                    )
                data += line + b"\n"
            # One write under the lock: concurrent appenders never interleave, and a crash
            # leaves at most a torn tail that the next append accounts for.
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "the audit log line was only partly written")
            os.fsync(fd)
            self._write_head(seq, _sha256(line))
        finally:
            os.close(fd)
        return line

    def _open_for_append(self) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            return os.open(self.path, flags)
        os.fchmod(fd, FILE_MODE)  # the umask must not decide who may read the log
        return fd

    def _check_head(self, last: AuditEntry | None) -> None:
        head = _parse_head(self._read_head_bytes(), self.head_path.name)
        last_seq = last.seq if last else 0
        if head is None:
            if last is not None:
                raise AuditLogCorrupt(
                    f"{self.head_path.name} is missing although the log has entries; "
                    "run `doorbell audit --verify`."
                )
            return
        seq, sha = head
        if seq > last_seq:
            raise AuditLogCorrupt(
                f"the log ends at entry {last_seq} but its head records {seq} entries: "
                "entries were removed from the end."
            )
        # The head may lag one entry behind after a crash; then it names the last line's prev.
        expected = {last_seq: last.line_sha256 if last else GENESIS}
        if last is not None:
            expected[last_seq - 1] = last.prev_sha256
        if seq in expected and sha != expected[seq]:
            raise AuditLogCorrupt(
                f"entry {seq} of the log does not match its head: the log was edited."
            )

    def _write_head(self, seq: int, sha: str) -> None:
        # write_atomically: temp file in the same directory, fsync, rename, fsync directory
        # (which also makes a newly created log's directory entry durable).
        data = json.dumps({"seq": seq, "sha256": sha}, separators=(",", ":")) + "\n"
        write_atomically(self.head_path, data.encode(), FILE_MODE)

    # -- reading ---------------------------------------------------------------------------

    def entries(self, strict: bool = True) -> list[AuditEntry]:
        """Every entry in file order (torn lines already accounted for are skipped). With
        `strict=False` lines that are not entries are skipped too, instead of raising: what
        is left of a damaged log, to show next to verify()'s account of the damage."""
        data, _ = self._snapshot()
        lines, ends_cleanly = _split(data)
        result: list[AuditEntry] = []
        pending: list[int] = []  # damaged lines no entry has accounted for yet
        for index, raw in enumerate(lines):
            entry = _parse(raw)
            if entry is None:
                pending.append(index)
                continue
            if not strict:
                result.append(entry)
                continue
            if pending and not _accounts_for(entry, [lines[i] for i in pending]):
                number = pending[0] + 1
                raise AuditLogCorrupt(f"line {number} of the audit log is not valid.", number)
            pending = []
            result.append(entry)
        if pending and strict:
            number = pending[0] + 1
            if not ends_cleanly:
                raise AuditLogCorrupt(
                    f"line {number} of the audit log is a torn final line; "
                    "the next append will record it.",
                    number,
                )
            raise AuditLogCorrupt(f"line {number} of the audit log is not valid.", number)
        return result

    def head(self) -> tuple[int, str]:
        """(entries, sha256 of the last entry's line): the values to keep off the device."""
        try:
            with open(self.path, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_SH)
                last, _ = _tail(handle.fileno(), os.fstat(handle.fileno()).st_size)
        except FileNotFoundError:
            return 0, GENESIS
        return (last.seq, last.line_sha256) if last else (0, GENESIS)

    def verify(self) -> AuditVerification:
        """Check the whole chain and the head; report the first problem in one sentence."""
        try:
            data, head_bytes = self._snapshot()
        except OSError as exc:
            return AuditVerification(False, 0, None, f"the audit log cannot be read: {exc}.")
        return _verify(data, head_bytes, self.head_path.name)

    def require_intact(self) -> None:
        """Raise AuditLogCorrupt unless the log verifies: checked before any deletion or change,
        so that a damaged log cannot be used to make changes that leave no trace.

        A torn final line (an interrupted append, not an edit) is recorded here, as the next
        append would record it, so that any process can go on, the command line included. On a
        full disk it is left for the append after the change (a deletion makes room)."""
        result = self.verify()
        if result.torn_tail:
            try:
                self.record_torn_tail()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return  # intact but for the torn line; the change's own append records it
            result = self.verify()
        if not result.ok:
            raise AuditLogCorrupt(
                "the audit log is damaged, so nothing is changed until it is repaired: "
                f"{result.message.rstrip('.')}.",
                result.problem_line,
            )

    def _snapshot(self) -> tuple[bytes, bytes | None]:
        """The log and its head, read under a shared lock so no append lands in between."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below, after the lock
        except FileNotFoundError:
            return b"", self._read_head_bytes()
        with handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            return handle.read(), self._read_head_bytes()

    def _read_head_bytes(self) -> bytes | None:
        try:
            return self.head_path.read_bytes()
        except FileNotFoundError:
            return None


# -- lines -------------------------------------------------------------------------------------


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _serialise(seq: int, time: str, actor: str, action: str, details: dict, prev: str) -> bytes:
    obj = {
        "seq": seq,
        "time": time,
        "actor": actor,
        "action": action,
        "details": details,
        "prev": prev,
    }
    # allow_nan=False: NaN is not JSON, and other tools must be able to read the log.
    text = json.dumps(
        obj, separators=(",", ":"), ensure_ascii=False, sort_keys=False, allow_nan=False
    )
    return text.encode("utf-8")


def _parse(raw: bytes) -> AuditEntry | None:
    """The entry on one line, or None if the line is not a well-formed entry."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or tuple(obj) != _KEYS:
        return None
    seq, time, actor, action, details, prev = (obj[key] for key in _KEYS)
    if type(seq) is not int or seq < 1 or not isinstance(details, dict):
        return None
    if not all(isinstance(value, str) for value in (time, actor, action, prev)):
        return None
    if len(prev) != 64 or not _HEX.issuperset(prev):
        return None
    return AuditEntry(seq, time, actor, action, details, prev, _sha256(raw))


def _split(data: bytes) -> tuple[list[bytes], bool]:
    """Lines without newlines, and whether the data ended with one (False: torn final line).

    Only b"\\n" ends a line: U+2028 and friends may appear raw in names (ensure_ascii=False).
    """
    lines = data.split(b"\n")
    ends_cleanly = lines[-1] == b""
    if ends_cleanly:
        lines.pop()
    return lines, ends_cleanly


def _lines_from_end(fd: int, size: int) -> Iterator[bytes]:
    """Yield the file's lines last first, reading back from the end only as far as needed."""
    end = size - 1 if size and os.pread(fd, 1, size - 1) == b"\n" else size
    start, buf = end, b""  # buf holds the bytes [start, end) not yet yielded
    while True:
        cut = buf.rfind(b"\n")
        if cut >= 0:
            yield buf[cut + 1 :]
            buf = buf[:cut]
            continue
        if start == 0:
            if size:
                yield buf
            return
        if len(buf) > _MAX_TORN_BYTES:
            raise AuditLogCorrupt("the end of the audit log is not an entry or a torn write.")
        step = min(_BLOCK, start)
        start -= step
        buf = os.pread(fd, step, start) + buf


def _tail(fd: int, size: int) -> tuple[AuditEntry | None, list[bytes]]:
    """The last valid entry, and the damaged (torn) lines after it in file order."""
    torn: list[bytes] = []
    for raw in _lines_from_end(fd, size):
        entry = _parse(raw)
        if entry is not None:
            return entry, torn[::-1]
        torn.append(raw)
        if len(torn) > _MAX_TORN_LINES or sum(map(len, torn)) > _MAX_TORN_BYTES:
            raise AuditLogCorrupt("the end of the audit log is not an entry or a torn write.")
    return None, torn[::-1]


def _torn_details(torn: list[bytes]) -> dict[str, Any]:
    return {"torn": [{"bytes": len(raw), "sha256": _sha256(raw)} for raw in torn]}


def _accounts_for(entry: AuditEntry, torn: list[bytes]) -> bool:
    """Whether `entry` is the note an append wrote for exactly these torn lines."""
    return (
        entry.actor == TORN_ACTOR
        and entry.action == TORN_ACTION
        and entry.details == _torn_details(torn)
    )


def _parse_head(raw: bytes | None, name: str) -> tuple[int, str] | None:
    if raw is None:
        return None
    try:
        obj = json.loads(raw)
        seq, sha = obj["seq"], obj["sha256"]
    except (ValueError, KeyError, TypeError):
        seq = sha = None
    if type(seq) is not int or seq < 0 or not isinstance(sha, str) or len(sha) != 64:
        raise AuditLogCorrupt(f"the head file {name} is damaged.")
    return seq, sha


# -- verification ------------------------------------------------------------------------------


def _verify(data: bytes, head_bytes: bytes | None, head_name: str) -> AuditVerification:
    lines, ends_cleanly = _split(data)
    parsed = [_parse(raw) for raw in lines]
    total = sum(entry is not None for entry in parsed)
    try:
        head = _parse_head(head_bytes, head_name)
        head_problem = None
    except AuditLogCorrupt as exc:
        head, head_problem = None, str(exc)

    def bad(line: int | None, message: str) -> AuditVerification:
        return AuditVerification(False, total, line, message)

    good: list[int] = []  # indices of the lines that continue the chain
    pending: list[int] = []  # damaged lines no entry has accounted for yet
    recovered: list[int] = []  # torn lines (1-based) that an append accounted for
    for index, entry in enumerate(parsed):
        if entry is None:
            pending.append(index)
            continue
        if pending or entry.action == TORN_ACTION:
            if not _accounts_for(entry, [lines[i] for i in pending]):
                if pending:
                    number = pending[0] + 1
                    return bad(
                        number,
                        f"line {number} is not a valid audit entry: it was damaged or inserted.",
                    )
                return bad(
                    index + 1,
                    f"line {index + 1} records torn lines before it that are "
                    "no longer there: lines were removed.",
                )
            recovered += [i + 1 for i in pending]
            pending = []
        expected_prev = parsed[good[-1]].line_sha256 if good else GENESIS
        if entry.seq != len(good) + 1 or entry.prev_sha256 != expected_prev:
            return bad(*_diagnose(index, parsed, lines, good, head))
        good.append(index)

    torn_line = None  # a torn final line: reported once the head has been checked too
    if pending:
        number = pending[0] + 1
        if head is not None and head[0] > len(good):
            # The head is replaced only after the line is fsynced, so a real torn write is never
            # covered by it: this line was complete once and has been cut short since.
            return bad(
                number,
                f"line {number} was damaged or cut short after it was written: the head records "
                f"{head[0]} entries but only {len(good)} are complete.",
            )
        if ends_cleanly:
            return bad(number,
                       f"line {number} is not a valid audit entry: it was damaged or added.")
        torn_line = number

    count = len(good)
    last_sha = parsed[good[-1]].line_sha256 if good else GENESIS
    if head_problem:
        return bad(None, head_problem)
    if head is None:
        if count:
            return bad(
                None,
                f"the head file {head_name} is missing, so entries removed from "
                "the end of the log would go unnoticed.",
            )
    else:
        head_seq, head_sha = head
        if head_seq > count:
            return bad(
                len(lines) + 1,
                f"the log ends at line {len(lines)} but its head records "
                f"{head_seq} entries: entries were removed from the end.",
            )
        if head_seq == 0:
            if head_sha != GENESIS:
                return bad(None, f"the head file {head_name} is damaged.")
        elif head_sha != parsed[good[head_seq - 1]].line_sha256:
            number = good[head_seq - 1] + 1
            if head_seq == count:
                return bad(
                    number,
                    f"line {number} was edited: its hash does not match the head file {head_name}.",
                )
            return bad(
                number,
                f"the head file {head_name} does not match line {number}: "
                "the log or its head was rewritten.",
            )

    if torn_line is not None:
        return AuditVerification(
            False, total, torn_line,
            f"line {torn_line} is a torn final line: an append was interrupted "
            "(for example by a power cut) before it finished, which is not "
            "an edit, and the next append will record it.",
            torn_tail=True,
        )
    note = ""
    if recovered:
        which = ", ".join(str(number) for number in recovered)
        note = f" (torn line {which} from an interrupted append is recorded by the entry after it)"
    return AuditVerification(
        True,
        total,
        None,
        f"the audit log is intact: {count} entries{note}; the last line's sha256 is {last_sha}, "
        "keep a copy of it off the device.",
    )


def _diagnose(
    index: int,
    parsed: list[AuditEntry | None],
    lines: list[bytes],
    good: list[int],
    head: tuple[int, str] | None,
) -> tuple[int, str]:
    """Name the first bad line and what happened, for an entry that does not continue the chain.

    An edit of line k shows up as a wrong prev on the line after it, a removal as a gap in seq, an
    insertion as a line the next one skips over, a swap as two lines chained backwards; the
    neighbours tell these apart.
    """
    entry = parsed[index]
    assert entry is not None
    number = index + 1
    expected = len(good) + 1
    expected_prev = parsed[good[-1]].line_sha256 if good else GENESIS
    before = f"line {good[-1] + 1}" if good else "the start of the log"
    nxt = parsed[index + 1] if index + 1 < len(parsed) else None
    next_continues = nxt is not None and nxt.seq == expected and nxt.prev_sha256 == expected_prev

    if next_continues and entry.prev_sha256 == nxt.line_sha256:
        return number, (
            f"lines {number} and {number + 1} were swapped: entry {expected} must "
            f"come before entry {entry.seq}."
        )
    if good and entry.seq == expected - 1 and entry.prev_sha256 == parsed[good[-1]].prev_sha256:
        # This line and the one before it both claim the same place in the chain.
        previous = good[-1] + 1
        if lines[index] == lines[good[-1]]:
            return number, f"line {number} is a copy of line {previous}."
        return previous, (
            f"line {previous} was inserted: line {number} continues the chain "
            "from the entry before it."
        )
    if next_continues:
        return number, (
            f"line {number} was inserted or moved here: line {number + 1} continues "
            f"the chain from {before}."
        )
    if entry.prev_sha256 == expected_prev:
        return number, (
            f"line {number} was edited: it holds seq {entry.seq} but {expected} was expected."
        )
    if entry.seq == expected:
        # Either the line before was edited (and this line's hash is confirmed by what follows)
        # or this line's own prev was edited (and what follows no longer matches it).
        if good and _confirmed(index, parsed, head):
            previous = good[-1] + 1
            return previous, (
                f"line {previous} was edited: its hash no longer matches the prev "
                f"recorded in line {number}."
            )
        return number, f"line {number} was edited: its prev hash does not match {before}."
    for later in range(index + 1, len(parsed)):
        candidate = parsed[later]
        if candidate is not None and candidate.seq == expected:
            return number, (
                f"line {number} is out of order: entry {expected}, which belongs "
                f"here, is at line {later + 1}."
            )
    if entry.seq > expected:
        return number, (
            f"entries were removed before line {number}: it holds entry {entry.seq} "
            f"but entry {expected} was expected."
        )
    return number, (
        f"line {number} is out of order: it holds entry {entry.seq} but entry "
        f"{expected} was expected."
    )


def _confirmed(index: int, parsed: list[AuditEntry | None], head: tuple[int, str] | None) -> bool:
    """Whether the line after this entry (or, for the last line, the head) vouches for it."""
    entry = parsed[index]
    assert entry is not None
    if index + 1 < len(parsed):
        nxt = parsed[index + 1]
        return nxt is not None and nxt.prev_sha256 == entry.line_sha256
    return head == (entry.seq, entry.line_sha256)
