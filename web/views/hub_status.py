"""The hub's status: per camera, its clips on the replica, the replication lag, and a warning
when the camera's keys changed since the hub pinned them (web/hub.py, KeyChange).

The lag comes from `replica-heartbeat.json`, which the replicator writes at the replica's root
after each complete pass: {"device_wall_us", "last_complete_pass_wall_us", "pending_files"}.
It is how long ago the replica last held everything the doorbell had: a few seconds, also on
an idle doorbell. It is counted as the heartbeat's age on the replica's clock (its file's
modification time) plus the pass's age on the doorbell's clock when it wrote it, so the two
clocks need not agree. A replica without a heartbeat (an older replicator) shows the time of
its newest file instead, which cannot tell an idle doorbell from a copy that stopped.
"""

import contextlib
import json
import os
import time

from flask import jsonify, render_template

from doorbell.storage.durable import PARTIAL_SUFFIX
from doorbell.storage.index import ClipIndex
from doorbell.storage.replica_folder import MAX_HEARTBEAT_BYTES

from ..display import age_text, human_bytes, local_date_time, zone_sentence
from .common import viewer

LAG_LIMIT_S = 60.0  # a heartbeat older than this: the copy has stopped


def collect_hub_status() -> dict:
    now_s = time.time()
    cameras = []
    for name, camera in viewer().hub.cameras.items():
        scan = camera.refresh()
        with ClipIndex(camera.index_file) as index:
            total, newest = index.count(), index.clips(limit=1)
        newest_s = scan.newest_mtime_s
        heartbeat = read_heartbeat(camera.folder)
        change = camera.key_change()
        entry = {
            "name": name,
            "folder": str(camera.folder.root),
            "clips": total,
            "growing_or_interrupted": sum(1 for c in scan.clips.values()
                                          if c.video.name.endswith(PARTIAL_SUFFIX)),
            "replica_bytes": sum(c.size_bytes for c in scan.clips.values()),
            "newest_clip_start_us": newest[0].start_us if newest else None,
            "last_write_wall_us": None if newest_s is None else int(newest_s * 1e6),
            "last_write_text": _clock_text(newest_s),
            "heartbeat": heartbeat is not None,
            "keys_changed": change.sentence(name, camera.pin_file) if change else None,
        }
        if heartbeat is not None and heartbeat["pass_age_s"] is None:
            entry.update(lag_s=None, pending_files=heartbeat["pending_files"], lag_ok=False,
                         lag_text="no complete copy yet")
        elif heartbeat is not None:
            lag_s = max(0.0, now_s - heartbeat["written_s"]) + heartbeat["pass_age_s"]
            entry.update(lag_s=round(lag_s, 1), pending_files=heartbeat["pending_files"],
                         lag_ok=lag_s <= LAG_LIMIT_S,
                         lag_text=f"copied up to {_duration_text(lag_s)} ago")
        else:
            lag_s = None if newest_s is None else max(0.0, now_s - newest_s)
            entry.update(lag_s=None if lag_s is None else round(lag_s, 1), pending_files=None,
                         lag_ok=None, lag_text="no heartbeat: nothing copied yet" if lag_s is None
                         else f"no heartbeat: last file copied {_duration_text(lag_s)} ago")
        cameras.append(entry)
    return {"hub": True, "cameras": cameras, "time_zone": zone_sentence("hub")}


def read_heartbeat(folder) -> dict | None:
    """The replica's heartbeat as {"written_s", "pass_age_s", "pending_files"} (pass_age_s None
    before the replicator's first complete pass), or None if it has none, or none that reads as
    one (a hostile file)."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads(folder.read_text(folder.heartbeat_file, MAX_HEARTBEAT_BYTES))
        device_us, pass_us, pending = (data[k] for k in (
            "device_wall_us", "last_complete_pass_wall_us", "pending_files"))
        if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
               for v in (device_us, pending)) and (pass_us is None or (
                   isinstance(pass_us, int) and not isinstance(pass_us, bool))):
            written_s = os.stat(folder.heartbeat_file, follow_symlinks=False).st_mtime
            return {"written_s": written_s, "pending_files": pending,
                    "pass_age_s": None if pass_us is None else max(0, device_us - pass_us) / 1e6}
    return None


def page():
    return render_template("hub_status.html", status=collect_hub_status(), size=human_bytes)


def data():
    return jsonify(collect_hub_status())


def _duration_text(seconds: float) -> str:
    """"4 s" under a minute, else as display.age_text: "12 minutes", "5.5 hours"."""
    return f"{seconds:.0f} s" if seconds < 60 else age_text(seconds)


def _clock_text(at_s: float | None) -> str:
    """When the replica last received bytes, on the hub's clock: "4 Dec 2026, 14:03:05 CET"."""
    return "never" if at_s is None else local_date_time(at_s, seconds=True)
