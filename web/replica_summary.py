"""What the device's viewer says about its replicator (settings page): from progress.json."""

import time

from doorbell.storage.replica_state import ReplicaStateError, read_progress


def replica_summary(settings) -> dict:
    """{"paired": False} when the replicator left no progress.json; {"paired": None,
    "problem": sentence} when it cannot be read; else the pairing and the last copy."""
    try:
        progress = read_progress(settings.replica.state_dir)
    except ReplicaStateError as exc:
        return {"paired": None, "problem": str(exc)}
    if progress is None:
        return {"paired": False}
    last = progress.last_copy_wall_us
    return {"paired": True, "target": progress.target,
            "host_key_fingerprint": progress.host_key_fingerprint,
            "last_copy_wall_us": last, "pending_files": progress.pending_files,
            "last_error": progress.last_error,
            "last_copy_age_s": None if last is None else round(time.time() - last / 1e6, 1)}
