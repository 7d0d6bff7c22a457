"""Finding a stock `age` CLI that knows the post-quantum hybrid keys (age 1.3.0 and later).

Debian 12 ships age 1.1.1, which does not; Debian unstable ships 1.3.2. A test that needs one
takes the first of: $DOORBELL_AGE_PQ_DIR (a directory holding `age` and `age-keygen`, e.g. the
unpacked Debian 1.3.2 package's usr/bin), then .venv/age-pq/usr/bin (where deploy/dev-setup.sh
unpacks Debian unstable's package), then `age` on PATH, whose `age --version` is 1.3.0 or later;
else it is skipped and says why.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HYBRID_SINCE = (1, 3, 0)


def age_version(binary: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except OSError:
        return None
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else None


def _candidates() -> list[Path]:
    found = []
    directory = os.environ.get("DOORBELL_AGE_PQ_DIR")
    if directory:
        found.append(Path(directory))
    found.append(Path(__file__).resolve().parents[1] / ".venv" / "age-pq" / "usr" / "bin")
    on_path = shutil.which("age")
    if on_path:
        found.append(Path(on_path).parent)
    return found


def hybrid_age_dir() -> Path | None:
    """The directory of an `age` (and `age-keygen`) that reads and writes age1pq1 keys."""
    for directory in _candidates():
        binary = directory / "age"
        version = age_version(str(binary)) if binary.is_file() else None
        if version is not None and version >= HYBRID_SINCE:
            return directory
    return None


HYBRID_AGE_DIR = hybrid_age_dir()
needs_hybrid_age = pytest.mark.skipif(
    HYBRID_AGE_DIR is None,
    reason="no age 1.3.0 or later: set DOORBELL_AGE_PQ_DIR to the directory of one "
           "(Debian unstable's package `age` 1.3.2, unpacked) or put it on PATH",
)


def stock_age_knows_hybrid() -> bool:
    """Whether plain `age` on PATH (what an owner types) reads age1pq1 keys."""
    on_path = shutil.which("age")
    version = age_version(on_path) if on_path else None
    return version is not None and version >= HYBRID_SINCE


def age_for(secret_key: str) -> str | None:
    """An `age` binary that reads this secret key (or identity file text): any for X25519 keys,
    1.3.0 or later for a post-quantum one (`AGE-SECRET-KEY-PQ-1...`); None if there is none."""
    if "AGE-SECRET-KEY-PQ-" in secret_key.upper():
        return str(HYBRID_AGE_DIR / "age") if HYBRID_AGE_DIR else None
    return shutil.which("age")


NO_HYBRID_AGE = ("the key is post-quantum and no age 1.3.0 or later is here: set "
                 "DOORBELL_AGE_PQ_DIR (see tests/age_cli.py)")
