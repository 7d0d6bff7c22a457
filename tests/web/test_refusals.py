"""Refused logins are on the record without a flood of them filling the disk (web/refusals.py)."""

import hashlib

import pytest

from doorbell.storage.audit import AuditLog
from doorbell.web.refusals import (
    FIRST_IN_ALL,
    FIRST_PER_ADDRESS,
    OTHERS,
    SUMMARY_ACTION,
    SUMMED_ADDRESSES,
    RefusalAudit,
)

from .conftest import MEMBER, login, new_client, session_cookie

FLOOD = 20_000


def _footage(home) -> dict[str, str]:
    return {str(p.relative_to(home.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((home.root / "clips").rglob("*")) if p.is_file()}


def _audit_bytes(home) -> int:
    path = home.root / "audit.jsonl"
    return path.stat().st_size if path.exists() else 0


@pytest.mark.slow
def test_a_login_flood_from_the_lan_adds_a_few_kb_to_the_audit_log(app, home):
    footage = _footage(home)
    assert len(footage) == 3 * len(home.clips)  # video, thumbnail, metadata of each clip
    before = _audit_bytes(home)
    attacker = new_client(app, "192.168.1.77")
    statuses = [login(attacker, MEMBER, f"guess-{i}").status_code for i in range(FLOOD)]
    assert statuses.count(401) == 10 and statuses.count(429) == FLOOD - 10
    grown = _audit_bytes(home) - before
    assert grown <= 4096, f"{FLOOD} refused logins wrote {grown} bytes to the audit log"
    # The owner still sees every one: each passphrase tried, then how many more were refused.
    assert len(home.actions("unlock.failed")) == 10
    owner = new_client(app, "192.168.1.10")
    app.extensions["doorbell"].limiter.forget("192.168.1.10", MEMBER)  # alice's limit, used up
    assert login(owner).status_code == 303 and session_cookie(owner)
    summary, = (e for e in home.actions(SUMMARY_ACTION) if e.details["address"] == "192.168.1.77")
    assert summary.details["refused"] == FLOOD - 10
    assert summary.details["unlock.rate_limited"] == FLOOD - 10
    assert summary.details["names"] == MEMBER
    assert _audit_bytes(home) - before <= 4096
    assert _footage(home) == footage
    assert home.audit()[-1].action == "unlock"  # the summary comes before the owner's unlock
    assert AuditLog(home.root / "audit.jsonl").verify().ok


def test_refusals_from_many_addresses_add_a_bounded_number_of_lines(app, home):
    limiter = app.extensions["doorbell"].limiter
    for _ in range(10):  # alice's own limit used up, counted as the login route counts it
        assert limiter.try_acquire("10.20.0.1", MEMBER) is None
    lines_before = len(home.audit())
    addresses = [f"10.20.1.{i}" for i in range(1, 31)]
    for address in addresses:
        client = new_client(app, address)
        for _ in range(12):
            assert login(client, MEMBER, "wrong-passphrase-1").status_code == 429
    refused = len(addresses) * 12
    written = home.audit()[lines_before:]
    assert len(written) == FIRST_IN_ALL
    assert {e.action for e in written} == {"unlock.rate_limited"}
    assert max(sum(e.details["address"] == a for e in written) for a in addresses) \
        <= FIRST_PER_ADDRESS
    # The owner unlocks (from an address of their own): every other refusal is summed up.
    limiter.forget("10.20.0.1", MEMBER)
    assert login(new_client(app, "10.20.0.1")).status_code == 303
    summaries = home.actions(SUMMARY_ACTION)
    assert len(summaries) <= SUMMED_ADDRESSES + 1
    assert summaries[-1].details["address"] == OTHERS
    assert len(written) + sum(s.details["refused"] for s in summaries) == refused
    assert len(home.audit()) - lines_before <= FIRST_IN_ALL + SUMMED_ADDRESSES + 1 + 1


# -- the window, with a clock of our own

class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def log(tmp_path):
    return AuditLog(tmp_path / "audit.jsonl")


def _refusals(log, tmp_path, clock) -> RefusalAudit:
    return RefusalAudit(log, tmp_path / "viewer.sqlite3", clock)


def _actions(log) -> list[str]:
    return [e.action for e in log.entries()] if log.path.exists() else []


def test_the_first_refusals_are_written_then_counted_until_the_window_ends(log, tmp_path,
                                                                         clock):
    refusals = _refusals(log, tmp_path, clock)
    for i in range(FIRST_PER_ADDRESS + 5):
        refusals.record(f"name{i}", "unlock.failed", "192.168.1.5")
        clock.now += 1
    assert _actions(log) == ["unlock.failed"] * FIRST_PER_ADDRESS
    refusals.flush_due()  # the window is not over: nothing more yet
    assert len(_actions(log)) == FIRST_PER_ADDRESS
    clock.now += 15 * 60
    refusals.record("name99", "unlock.rate_limited", "192.168.1.5")  # a new window begins
    entries = log.entries()
    summary = entries[FIRST_PER_ADDRESS]
    assert summary.action == SUMMARY_ACTION
    assert summary.details == {
        "address": "192.168.1.5", "refused": 5, "unlock.failed": 5,
        "names": "name10, name11, name12", "first": "2023-11-14T22:13:30Z",
        "last": "2023-11-14T22:13:34Z"}
    assert entries[-1].action == "unlock.rate_limited"  # written: the new window's first


def test_counts_survive_a_restart_and_a_due_window_is_written_at_start(log, tmp_path, clock):
    refusals = _refusals(log, tmp_path, clock)
    for _ in range(FIRST_PER_ADDRESS + 3):
        refusals.record(MEMBER, "unlock.rate_limited", "fd00::7")
    refusals.close()
    restarted = _refusals(log, tmp_path, clock)  # the same window: still counting
    restarted.record(MEMBER, "unlock.rate_limited", "fd00::7")
    assert SUMMARY_ACTION not in _actions(log)
    restarted.close()
    clock.now += 15 * 60
    _refusals(log, tmp_path, clock)  # started after the window: its summary is written
    summary, = (e for e in log.entries() if e.action == SUMMARY_ACTION)
    assert summary.details["refused"] == 4 and summary.details["address"] == "fd00::7"


def test_a_damaged_audit_log_makes_refusals_counted_not_errors(log, tmp_path, clock):
    refusals = _refusals(log, tmp_path, clock)
    refusals.record(MEMBER, "unlock.failed", "192.168.1.9")
    log.head_path.unlink()  # an append now refuses: the log's end cannot be vouched for
    refusals.record(MEMBER, "unlock.failed", "192.168.1.9")
    refusals.flush()  # cannot be written either: the count is kept for later
    assert refusals._tallies["192.168.1.9"].counted == 1
