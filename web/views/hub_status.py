"""The hub's status: per camera, its clips on the replica and the replication lag.

The lag is the age of the newest byte the replicator wrote into the camera's folder (its SFTP
writes set the files' modification times): a few seconds while the doorbell records, and a
lag that keeps growing while it records means the copy has stopped.
"""

import time

from flask import jsonify, render_template

from doorbell.storage.durable import PARTIAL_SUFFIX
from doorbell.storage.index import ClipIndex

from ..display import human_bytes, local_date_time, zone_sentence
from .common import viewer


def collect_hub_status() -> dict:
    now_s = time.time()
    cameras = []
    for name, camera in viewer().hub.cameras.items():
        scan = camera.refresh()
        with ClipIndex(camera.index_file) as index:
            total, newest = index.count(), index.clips(limit=1)
        newest_s = scan.newest_mtime_s
        cameras.append({
            "name": name,
            "folder": str(camera.folder.root),
            "clips": total,
            "growing_or_interrupted": sum(1 for c in scan.clips.values()
                                          if c.video.name.endswith(PARTIAL_SUFFIX)),
            "replica_bytes": sum(c.size_bytes for c in scan.clips.values()),
            "newest_clip_start_us": newest[0].start_us if newest else None,
            "last_write_wall_us": None if newest_s is None else int(newest_s * 1e6),
            "lag_s": None if newest_s is None else round(max(0.0, now_s - newest_s), 1),
            "last_write_text": _clock_text(newest_s),
        })
    return {"hub": True, "cameras": cameras, "time_zone": zone_sentence("hub")}


def page():
    return render_template("hub_status.html", status=collect_hub_status(), size=human_bytes)


def data():
    return jsonify(collect_hub_status())


def _clock_text(at_s: float | None) -> str:
    """When the replica last received bytes, on the hub's clock: "4 Dec 2026, 14:03:05 CET"."""
    return "never" if at_s is None else local_date_time(at_s, seconds=True)
