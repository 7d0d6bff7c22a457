"""Log lines under systemd: the journal gets "<N>" syslog priorities and no second timestamp;
a terminal (anything that is not the stream JOURNAL_STREAM names) keeps its timestamps.

The recorder runs for real (`doorbell record --until-eof` on a few still frames, with a damaged
index so that it logs a warning as well as information); its stderr is a file, and
JOURNAL_STREAM names that file's device and inode exactly as systemd names its journal socket.
"""

import io
import logging
import os
import re
import socket
import subprocess
import sys

import pytest

from doorbell.log_output import JournalFormatter, stream_is_journal
from tests.helpers import clean_env

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
DAMAGE_WARNING = "the clip index was damaged"


def record_with_stderr_to(home, video, stderr_path, journal_stream: str | None) -> list[str]:
    """Run the recorder with stderr on stderr_path; return its stderr lines."""
    (home.root / "index.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    env = clean_env(DOORBELL_HOME=str(home.root))
    env.pop("JOURNAL_STREAM", None)
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    with stderr_path.open("wb") as stderr:
        result = subprocess.run(
            [sys.executable, "-m", "doorbell", "record", "--source", str(video), "--until-eof"],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
            timeout=120, check=False,
        )
    lines = stderr_path.read_text().splitlines()
    assert result.returncode == 0, lines
    return lines


def device_inode(path) -> str:
    status = os.stat(path)
    return f"{status.st_dev}:{status.st_ino}"


def test_under_the_journal_lines_carry_priorities_and_no_timestamps(home, still_video,
                                                                   tmp_path):
    stderr_path = tmp_path / "journal-stream"
    stderr_path.touch()
    lines = record_with_stderr_to(home, still_video, stderr_path, device_inode(stderr_path))

    assert lines, "the recorder logged nothing"
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert not any(TIMESTAMP.search(line) for line in lines), lines
    warnings = [line for line in lines if DAMAGE_WARNING in line]
    assert warnings and all(line.startswith("<4>doorbell.recorder: ") for line in warnings)
    assert any(line.startswith("<6>doorbell.recorder: recording from ") for line in lines), lines


def test_on_anything_else_lines_keep_timestamps_and_no_priorities(home, still_video, tmp_path):
    other = tmp_path / "some-other-stream"
    other.touch()
    stderr_path = tmp_path / "terminal"
    # JOURNAL_STREAM inherited from a service, but stderr is not that stream any more.
    lines = record_with_stderr_to(home, still_video, stderr_path, device_inode(other))

    logged = [line for line in lines if "doorbell.recorder: " in line]
    assert logged, lines
    assert all(TIMESTAMP.match(line) for line in logged), logged
    assert not any(line.startswith("<") for line in lines), lines
    assert any(DAMAGE_WARNING in line for line in logged)


@pytest.mark.parametrize("value", ["", "garbage", "12:", ":34", "1:2:3"])
def test_a_malformed_journal_stream_is_not_the_journal(tmp_path, value):
    with (tmp_path / "f").open("w") as stream:
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": value})


def test_every_line_of_a_traceback_carries_the_error_priority():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    logger = logging.getLogger("doorbell.test-journal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<3>doorbell.test-journal: it failed"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines), lines
    assert lines[-1] == "<3>ValueError: boom"


def test_the_web_servers_own_errors_go_the_same_way(home, tmp_path):
    # gunicorn logs "Connection in use" (error) when the viewer's port is taken; under the
    # journal that line, too, carries its priority and no timestamp of gunicorn's own.
    stderr_path = tmp_path / "journal-stream"
    stderr_path.touch()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = clean_env(DOORBELL_HOME=str(home.root), DOORBELL_RUNTIME_DIR=str(tmp_path / "run"),
                        JOURNAL_STREAM=device_inode(stderr_path))
        with stderr_path.open("wb") as stderr:
            subprocess.run([sys.executable, "-m", "doorbell", "serve", "--bind",
                            f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=stderr,
                           stdin=subprocess.DEVNULL, env=env, timeout=120, check=False)
    lines = stderr_path.read_text().splitlines()
    in_use = [line for line in lines if "Connection in use" in line]
    assert in_use, lines
    assert all(line.startswith("<3>gunicorn.error: ") for line in in_use), in_use
    assert not any(TIMESTAMP.search(line) for line in lines), lines
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
