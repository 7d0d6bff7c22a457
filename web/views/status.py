"""Status: is the recorder alive, how fast, how many clips today, how long the disk lasts."""

import json
import time
from datetime import datetime

from flask import Blueprint, jsonify, render_template

from doorbell.storage.index import ClipIndex

from .. import access
from ..capacity import days_that_fit, measure_usage
from .common import viewer

blueprint = Blueprint("status", __name__)

STALE_S = 10.0


def collect_status() -> dict:
    v = viewer()
    home = v.home
    try:
        recorder = json.loads(home.recorder_status_file.read_text())
    except (FileNotFoundError, ValueError):
        recorder = {}
    last_frame = recorder.get("last_frame_time")
    alive = bool(last_frame) and time.time() - last_frame < STALE_S
    midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    with ClipIndex(home.index_file) as index:
        clips_today = len(index.clips(since_us=int(midnight.timestamp() * 1e6)))
    usage = measure_usage(home.index_file, home.clips_dir)
    days_fit = days_that_fit(usage, v.settings.retention)
    return {
        "recorder_alive": alive,
        "recorder_state": recorder.get("state", "not running"),
        "camera": recorder.get("camera", "unknown"),
        "fps": recorder.get("fps", 0.0),
        "last_frame_time": last_frame,
        "recording": recorder.get("recording"),
        "clips_today": clips_today,
        "clips_total_bytes": usage.clips_bytes,
        "disk_free_bytes": usage.free_bytes,
        "disk_total_bytes": usage.total_bytes,
        "bytes_per_day": round(usage.bytes_per_day),
        "days_of_footage_that_fit": days_fit,
    }


@blueprint.get("/status")
@access.page
def page():
    status = collect_status()
    last = status["last_frame_time"]
    last_text = datetime.fromtimestamp(last).astimezone().strftime("%H:%M:%S") if last else "never"
    return render_template("status.html", status=status, last_frame=last_text)


@blueprint.get("/status.json")
@access.data
def data():
    return jsonify(collect_status())
