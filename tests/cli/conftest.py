"""Fixtures for driving the `doorbell` command as a user would: a subprocess, a home, a passphrase.

scrypt runs at 2^15 (`init --work-factor 15`) so that a test never calibrates.
"""

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import clean_env

PROJECT = Path(__file__).resolve().parents[2]
PASSPHRASE = "amber-kettle-under-snow-31"
WORK_FACTOR = "15"
START_US = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z


def doorbell(*args: str, home: Path | None = None, env: dict | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m doorbell ARGS` with DOORBELL_HOME=home (if given); text in and out."""
    extra = dict(env or {})
    if home is not None:
        extra.setdefault("DOORBELL_HOME", str(home))
    return subprocess.run(
        [sys.executable, "-m", "doorbell", *args],
        capture_output=True, text=True, timeout=timeout, env=clean_env(**extra), cwd=PROJECT,
        stdin=subprocess.DEVNULL, check=False,
    )


def assert_one_sentence(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """Exit `code`, no traceback, and stderr is one plain line starting 'doorbell:'."""
    described = f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.returncode == code, described
    assert "Traceback" not in result.stderr + result.stdout, described
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, described
    assert lines[0].startswith("doorbell: ") and lines[0].endswith("."), described
    return lines[0]


def assert_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result


@dataclass
class InitialisedHome:
    root: Path
    passphrase_file: Path
    init_stdout: str
    recovery_key: str  # as printed by init, once
    owner_public_key: str

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return doorbell(*args, home=self.root, **kwargs)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def write_clip(self, video: bytes, start_us: int = START_US, thumbnail: bytes | None = None,
                   metadata: dict | None = None) -> str:
        """Record a clip the way the recorder does: ClipStore + recipients.txt, public keys only."""
        from doorbell.storage.clipwriter import ClipStore
        from doorbell.storage.home import Home
        from doorbell.storage.index import ClipIndex
        from doorbell.storage.recipients import read_recipients

        home = Home(self.root)
        with ClipIndex(home.index_file) as index:
            store = ClipStore(home.clips_dir, index, read_recipients(home.recipients_file))
            writer = store.begin_clip(start_us)
            for offset in range(0, len(video), 60_000):
                writer.video.write(video[offset : offset + 60_000])
            clip = writer.finish(thumbnail or b"\xff\xd8\xff\xe0thumb", metadata or {})
        return clip.id

    def video_path(self, clip_id: str) -> Path:
        from doorbell.storage.clipid import clip_paths

        return clip_paths(self.root / "clips", clip_id)["video"]

    def audit_entries(self) -> list:
        from doorbell.storage.audit import AuditLog

        return AuditLog(self.root / "audit.jsonl").entries()


@pytest.fixture
def still_video(tmp_path) -> Path:
    """Ten still frames: `record --until-eof` starts, reconciles, records nothing and stops."""
    import cv2
    import numpy as np

    path = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for _ in range(10):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    return path


@pytest.fixture
def passphrase_file(tmp_path) -> Path:
    path = tmp_path / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def fresh_home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="session")
def _initialised_template(tmp_path_factory) -> InitialisedHome:
    """One real `doorbell init`; each test gets its own copy of the result (see `home`)."""
    base = tmp_path_factory.mktemp("initialised")
    passphrase = base / "passphrase.txt"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    root = base / "home"
    result = assert_ok(
        doorbell("init", "--passphrase-file", str(passphrase), "--work-factor", WORK_FACTOR,
                 home=root)
    )
    recovery = re.findall(r"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+", result.stdout)
    public = re.findall(r"age1[0-9a-z]+", result.stdout)
    assert len(set(recovery)) == 1, result.stdout
    return InitialisedHome(root, passphrase, result.stdout, recovery[0], public[0])


@pytest.fixture
def home(_initialised_template, fresh_home, passphrase_file) -> InitialisedHome:
    """A home straight after `doorbell init --work-factor 15` (passphrase PASSPHRASE)."""
    shutil.copytree(_initialised_template.root, fresh_home, symlinks=True)
    template = _initialised_template
    return InitialisedHome(fresh_home, passphrase_file, template.init_stdout,
                           template.recovery_key, template.owner_public_key)
