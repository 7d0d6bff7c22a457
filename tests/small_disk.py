"""A real small disk for full-disk tests: a tmpfs of a few MiB mounted for one test.

Mounting needs root (the test machines run as root); where it is not permitted the test is
skipped, saying why. A pytest plugin (tests/conftest.py loads it): the fixture is `small_disk`.
"""

import os
import subprocess
from pathlib import Path

import pytest


def mount_tmpfs(directory: Path, size: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                             str(directory)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): "
                    f"{result.stderr.strip() or result.returncode}")


def fill(directory: Path, leave_bytes: int = 0) -> Path:
    """Fill the disk holding `directory` with a file, leaving about `leave_bytes` free."""
    filler = directory / "filler"
    with open(filler, "ab", buffering=0) as handle:
        while (free := os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize) > \
                leave_bytes:
            try:
                handle.write(b"\0" * max(4096, min(free - leave_bytes, 1 << 20)))
                handle.flush()
            except OSError:
                break
    return filler


@pytest.fixture
def small_disk(tmp_path):
    """A fresh 4 MiB tmpfs (unmounted afterwards)."""
    directory = tmp_path / "small-disk"
    mount_tmpfs(directory, "4m")
    yield directory
    subprocess.run(["umount", "-l", str(directory)], check=False)
