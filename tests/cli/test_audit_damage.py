"""A damaged audit log from the command line: a torn final line never blocks a change, and the
listing and `audit --verify` always agree about the log.

A torn final line is what a power cut leaves in the middle of an append; it is not an edit, and
the next append from any process records it. Before, every CLI change was refused on it (only
a viewer login appended past it), and `doorbell audit` listed an edited log without a word.
"""

import random

import pytest

from doorbell.storage.audit import AuditLog

from .conftest import START_US, assert_ok, assert_one_sentence

TORN = b'{"seq":2,"time":"2024-05-01T12:00:00.0'  # an append cut off by a power cut


def tear(home) -> None:
    with open(home.root / "audit.jsonl", "ab") as log:
        log.write(TORN)


def mp4_bytes(size: int) -> bytes:
    return b"\x00\x00\x00\x18ftypmp42" + random.Random(size).randbytes(size)


def test_a_torn_final_line_is_recorded_by_the_next_cli_change(home):
    clip_id = home.write_clip(mp4_bytes(20_000))
    tear(home)

    result = assert_ok(home.run("clips", "delete", clip_id))

    assert "Traceback" not in result.stderr
    assert not home.video_path(clip_id).exists()
    log = AuditLog(home.root / "audit.jsonl")
    assert log.verify().ok, log.verify().message
    *_, torn, deleted = log.entries()
    assert (torn.actor, torn.action) == ("system", "audit.torn_line")
    assert torn.details["torn"][0]["bytes"] == len(TORN)  # kept and accounted for, not dropped
    assert (deleted.action, deleted.details["clip"]) == ("clip.delete", clip_id)
    assert TORN in (home.root / "audit.jsonl").read_bytes()


def test_an_edited_log_still_refuses_cli_changes(home):
    clip_id = home.write_clip(mp4_bytes(20_000))
    log = home.root / "audit.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"member":"owner"', b'"member":"0wner"', 1))
    tear(home)  # a torn line after it does not make the edit acceptable

    assert "damaged" in assert_one_sentence(home.run("clips", "delete", clip_id), 1)
    assert home.video_path(clip_id).exists()


def edit_first_line(home) -> None:
    log = home.root / "audit.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"member":"owner"', b'"member":"0wner"', 1))


def append_garbage_line(home) -> None:
    with open(home.root / "audit.jsonl", "ab") as log:
        log.write(b"not an entry\n")


DAMAGE = {"torn final line": tear, "edited line": edit_first_line,
          "inserted line": append_garbage_line}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_the_listing_and_verify_agree_on_a_damaged_log(home, damage):
    clip_id = home.write_clip(mp4_bytes(20_000), start_us=START_US)
    assert_ok(home.run("clips", "delete", clip_id))
    damage(home)

    listing = home.run("audit")
    verify = home.run("audit", "--verify")

    assert "Traceback" not in listing.stderr + verify.stderr
    assert listing.returncode == verify.returncode == 1
    lines = listing.stdout.splitlines()
    assert len(lines) == 2 and " init " in lines[0] and " clip.delete " in lines[1]
    warning = listing.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("doorbell: warning: the audit log is "
                                                       "damaged: ")
    assert verify.stdout.splitlines()[0] in warning[0]  # the same account of the damage


def test_the_listing_and_verify_agree_on_an_intact_log(home):
    listing = assert_ok(home.run("audit"))
    verify = assert_ok(home.run("audit", "--verify"))

    assert listing.stderr == ""
    assert len(listing.stdout.splitlines()) == 1
    assert "intact: 1 entries" in verify.stdout
