"""Where benchmarks write their scratch files: the same disk as the project, then deleted."""

import os
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def pick_directory(given: str | None, prefix: str) -> Path:
    """A new temporary directory under `given`, or on the project's file system (so a write
    benchmark measures the disk the product uses, not a tmpfs)."""
    if given:
        base = Path(given)
    else:
        tmp = Path(tempfile.gettempdir())
        base = tmp if os.stat(tmp).st_dev == os.stat(PROJECT).st_dev else PROJECT / "bench"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
