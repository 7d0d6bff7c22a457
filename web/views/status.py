"""Status: is the recorder alive, how fast, how many clips today, how long the disk lasts.

Sizes in GB/MB and times with the device's zone label (web/display.py); status.json keeps the
raw numbers (bytes, seconds since the epoch) and adds the texts the page's script shows.
"""

import time
from datetime import datetime

from flask import Blueprint, jsonify, render_template

from doorbell.storage.exchange import RecorderStatus
from doorbell.storage.index import ClipIndex

from .. import access
from ..capacity import days_that_fit, measure_usage
from ..disk_summary import disk_picture, disk_words
from ..display import local_time, zone_sentence
from ..replica_summary import replica_summary
from .common import viewer

blueprint = Blueprint("status", __name__)
# Every page's footer names the zone its times are in (base.html).
blueprint.add_app_template_global(zone_sentence, "time_zone_sentence")


def collect_status() -> dict:
    v = viewer()
    home = v.home
    recorder = RecorderStatus.load_or_none(home.recorder_status_file)
    midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    with ClipIndex(home.index_file) as index:
        clips_today = len(index.clips(since_us=int(midnight.timestamp() * 1e6)))
    usage = measure_usage(home.index_file, home.clips_dir)
    days_fit = days_that_fit(usage, v.settings.retention)
    return {
        "recorder_alive": recorder is not None and recorder.camera_alive(time.time()),
        "recorder_state": recorder.state if recorder else "not running",
        "privacy_mode": recorder is not None and recorder.in_privacy_mode(time.time()),
        "camera": recorder.camera if recorder else "unknown",
        "fps": recorder.fps if recorder else 0.0,
        "last_frame_time": recorder.last_frame_time if recorder else None,
        "recording": recorder.recording if recorder else None,
        "retention_problem": recorder.retention_problem if recorder else None,
        "clips_today": clips_today,
        "clips_total_bytes": usage.clips_bytes,
        "disk_free_bytes": usage.free_bytes,
        "disk_total_bytes": usage.total_bytes,
        "bytes_per_day": round(usage.bytes_per_day),
        "days_of_footage_that_fit": days_fit,
        "oldest_clip_time": usage.oldest_clip_us / 1e6 if usage.oldest_clip_us else None,
        "last_frame_text": last_frame_text(recorder.last_frame_time if recorder else None),
        "time_zone": zone_sentence(),
        "replica": replica_summary(v.settings),
    }


def last_frame_text(at_s: float | None) -> str:
    return local_time(at_s, seconds=True) if at_s else "never"


@blueprint.get("/status")
@access.page
def page():
    status = collect_status()
    return render_template("status.html", status=status, last_frame=status["last_frame_text"],
                           disk=disk_picture(status),
                           words=disk_words(status, viewer().settings.retention))


@blueprint.get("/status.json")
@access.background
def data():
    return jsonify(collect_status())
