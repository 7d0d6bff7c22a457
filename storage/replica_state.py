"""Reading the replicator's progress.json (storage/replica_progress.py writes it) for the
device's viewer: which target is paired, its pinned host key, when the last copy ended.

Absent means "not paired" (None); a file that cannot be read or is not the replicator's is a
ReplicaStateError whose message is one sentence, never a traceback.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ReplicaStateError
from .replica_progress import PROGRESS_FILE_NAME

MAX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ReplicaProgress:
    target: str
    host_key_fingerprint: str
    last_copy_wall_us: int | None
    pending_files: int
    last_error: str | None
    updated_wall_us: int


def read_progress(state_dir: Path) -> ReplicaProgress | None:
    path = Path(state_dir) / PROGRESS_FILE_NAME
    try:
        with path.open("rb") as handle:
            data = json.loads(handle.read(MAX_BYTES))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ReplicaStateError(f"{path} cannot be read by the viewer's user") from None
    except OSError as exc:
        raise ReplicaStateError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, RecursionError):
        raise ReplicaStateError(f"{path} is not the replicator's progress file (not JSON)") \
            from None
    try:
        progress = ReplicaProgress(
            target=_typed(data["target"], str), host_key_fingerprint=_typed(
                data["host_key_fingerprint"], str),
            last_copy_wall_us=_typed(data["last_copy_wall_us"], int, optional=True),
            pending_files=_typed(data["pending_files"], int),
            last_error=_typed(data["last_error"], str, optional=True),
            updated_wall_us=_typed(data["updated_wall_us"], int))
    except (KeyError, TypeError, ValueError):
        raise ReplicaStateError(f"{path} is not the replicator's progress file (a key is "
                                f"missing or of the wrong type)") from None
    return progress


def _typed(value, kind: type, optional: bool = False):
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(kind.__name__)
    return value
