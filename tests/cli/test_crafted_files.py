"""Crafted files in a home meet `doorbell record` at its start: one sentence, never a traceback.

A config.toml the recorder cannot use stops it with one sentence; files in the store that it
does not understand (a clip named for 30 February, an index.sqlite3 that is not an index) must
not stop it at all: the first is reported and left alone, the second is kept aside and the index
rebuilt from the clip files, as a lost index is.
"""

import sqlite3
import time

import pytest

from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.index import ClipIndex
from doorbell.storage.recipients import read_recipients

from .conftest import assert_one_sentence

IMPOSSIBLE = "20260230T120000Z-abcdef"  # 30 February


def record_until_eof(home, video):
    result = home.doorbell("record", "--source", str(video), "--until-eof", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    return output


def store_one_clip(home) -> str:
    with ClipIndex(home.root / "index.sqlite3") as index:
        store = ClipStore(home.clips_dir, index, read_recipients(home.root / "recipients.txt"))
        writer = store.begin_clip(time.time_ns() // 1000 - 3_600_000_000)  # retention keeps it
        writer.video.write(b"\x00" * 100_000)
        return writer.finish(None, {"trigger": "motion"}).id


CRAFTED_CONFIG = {
    "nested 1,200 deep": "x = " + "[" * 1200 + "]" * 1200 + "\n",
    "a 5,000-digit number": "[camera]\nfps = " + "9" * 5000 + "\n",
}


@pytest.mark.parametrize("text", CRAFTED_CONFIG.values(), ids=CRAFTED_CONFIG.keys())
def test_a_crafted_config_stops_the_recorder_at_its_start_with_one_sentence(recorder_home,
                                                                            still_video, text):
    (recorder_home.root / "config.toml").write_text(text)

    result = recorder_home.doorbell("record", "--source", str(still_video), "--until-eof")

    line = assert_one_sentence(result)
    assert "config.toml" in line


def test_a_clip_file_named_for_an_impossible_date_is_reported_and_left_alone(recorder_home,
                                                                            still_video):
    kept = store_one_clip(recorder_home)
    crafted = recorder_home.clips_dir / "2026" / "02" / "30" / f"{IMPOSSIBLE}.mp4.age"
    crafted.parent.mkdir(parents=True)
    crafted.write_bytes(b"age-encryption.org/v1\n" + b"\x00" * 100)

    output = record_until_eof(recorder_home, still_video)

    assert f"orphan file left in place: 2026/02/30/{IMPOSSIBLE}.mp4.age" in output
    assert crafted.read_bytes().startswith(b"age-encryption.org/v1\n")  # never deleted
    assert [row.id for row in recorder_home.index_rows()] == [kept]
    listed = recorder_home.doorbell("clips", "list")
    assert listed.returncode == 0 and kept in listed.stdout and IMPOSSIBLE not in listed.stdout


def garbage(path):
    path.write_bytes(b"this is not an SQLite database\n" * 200)


def corrupt_pages(path):
    """A real SQLite file whose pages after the first are overwritten."""
    rows = [(f"20240501T12{i // 60:02d}{i % 60:02d}Z-00{i:04x}", i) for i in range(2000)]
    with sqlite3.connect(path) as db:  # enough rows for several pages
        db.executemany("INSERT INTO clips (id, start_us, state, size_bytes)"
                       " VALUES (?, ?, 'complete', 1)", rows)
    db.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\xa5" * (len(data) - page)
    path.write_bytes(bytes(data))


def foreign_table(path):
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE clips (name TEXT)")
    db.close()


@pytest.mark.parametrize("damage", [garbage, corrupt_pages, foreign_table],
                         ids=["not SQLite", "corrupt pages", "another table"])
def test_a_damaged_index_is_kept_aside_and_rebuilt_from_the_clip_files(recorder_home, still_video,
                                                                       damage):
    clip_id = store_one_clip(recorder_home)
    index_file = recorder_home.root / "index.sqlite3"
    with sqlite3.connect(index_file) as db:  # everything in the main file, nothing in a -wal
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    damage(index_file)
    damaged = index_file.read_bytes()

    output = record_until_eof(recorder_home, still_video)

    warnings = [line for line in output.splitlines() if "clip index was damaged" in line]
    assert len(warnings) == 1, output
    aside = sorted(recorder_home.root.glob("index.sqlite3.damaged-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))] == \
        [aside[0].name] and aside[0].name in warnings[0]
    assert aside[0].read_bytes() == damaged  # kept as it was, for whoever wants to look
    rows = recorder_home.index_rows()
    assert [(r.id, r.state) for r in rows] == [(clip_id, "complete")]
    listed = recorder_home.doorbell("clips", "list")
    assert listed.returncode == 0 and clip_id in listed.stdout


def test_other_commands_on_a_damaged_index_say_so_in_one_sentence(recorder_home):
    garbage(recorder_home.root / "index.sqlite3")

    line = assert_one_sentence(recorder_home.doorbell("clips", "list"))

    assert "clip index is damaged" in line and "rebuilds it" in line
