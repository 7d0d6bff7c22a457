"""Status: is the recorder alive, how fast, how many clips today, how long the disk lasts."""

import json
import shutil
import time
from datetime import datetime

from flask import Blueprint, jsonify, render_template

from storage.index import ClipIndex

from .common import viewer

blueprint = Blueprint("status", __name__)

RECENT_DAYS = 7
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
    now_us = time.time_ns() // 1000
    with ClipIndex(home.index_file) as index:
        clips_today = len(index.clips(since_us=int(midnight.timestamp() * 1e6)))
        total_bytes = index.total_size_bytes()
        recent = index.clips(since_us=now_us - RECENT_DAYS * 86_400_000_000)
        oldest = index.clips(newest_first=False, limit=1)
    disk = shutil.disk_usage(home.clips_dir)
    span_days = RECENT_DAYS
    if oldest:
        span_days = min(RECENT_DAYS, max(1.0, (now_us - oldest[0].start_us) / 86_400_000_000))
    bytes_per_day = sum(c.size_bytes for c in recent) / span_days if recent else 0
    retention = v.settings.retention
    budget = disk.free + total_bytes - retention.min_free_bytes
    if retention.max_total_bytes:
        budget = min(budget, retention.max_total_bytes)
    days_fit = round(max(0, budget) / bytes_per_day, 1) if bytes_per_day else None
    if days_fit is not None and retention.max_age_days:
        days_fit = min(days_fit, retention.max_age_days)
    return {
        "recorder_alive": alive,
        "recorder_state": recorder.get("state", "not running"),
        "camera": recorder.get("camera", "unknown"),
        "fps": recorder.get("fps", 0.0),
        "last_frame_time": last_frame,
        "recording": recorder.get("recording"),
        "clips_today": clips_today,
        "clips_total_bytes": total_bytes,
        "disk_free_bytes": disk.free,
        "disk_total_bytes": disk.total,
        "bytes_per_day": round(bytes_per_day),
        "days_of_footage_that_fit": days_fit,
    }


@blueprint.get("/status")
def page():
    status = collect_status()
    last = status["last_frame_time"]
    last_text = datetime.fromtimestamp(last).astimezone().strftime("%H:%M:%S") if last else "never"
    return render_template("status.html", status=status, last_frame=last_text)


@blueprint.get("/status.json")
def data():
    return jsonify(collect_status())
