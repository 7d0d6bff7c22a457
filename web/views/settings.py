"""Settings in the browser: privacy masks and motion zones drawn on the picture, the motion
tuner with the detector's live overlay, and recording/retention with the days that fit.

Every save goes through web/changes.py (passphrase again, same validation as the file, atomic
write, audit entry). The recorder notices the new config.toml within about a second and applies
it; `applied.json` compares what the recorder runs with what is on disk.
"""

import hashlib
import json
import math
import time

from flask import (
    Blueprint,
    Response,
    abort,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from doorbell.config import ConfigError
from doorbell.config.editor import setting_value
from doorbell.storage.exchange import (
    TRIAL_LIFETIME_S,
    MotionOverlay,
    MotionTrial,
    RecorderStatus,
)

from .. import access
from ..capacity import days_that_fit, measure_usage
from ..changes import (
    ChangeRefused,
    confirm_passphrase,
    current_settings,
    field_sentence,
)
from ..display import local_date_time
from ..replica_summary import replica_summary
from .common import record_access, viewer
from .live import LIVE

blueprint = Blueprint("settings", __name__, url_prefix="/settings")

GB = 1_000_000_000
MOTION_KEYS = ("sensitivity", "min_area", "trigger_frames")
RECORDING_FIELDS = {  # form field -> (dotted key, conversion)
    "pre_roll_s": ("recording.pre_roll_s", float),
    "post_roll_s": ("recording.post_roll_s", float),
    "max_clip_s": ("recording.max_clip_s", float),
    "max_age_days": ("retention.max_age_days", int),
    "max_total_gb": ("retention.max_total_bytes", lambda text: round(float(text) * GB)),
    "min_free_gb": ("retention.min_free_bytes", lambda text: round(float(text) * GB)),
}


def _save(values: dict, page: str):
    """Confirm the passphrase, save, and go back to `page` saying so (or show the refusal)."""
    v = viewer()
    confirmation = confirm_passphrase(v, g.session, request.form.get("passphrase", ""),
                                      request.remote_addr)
    change = v.settings_writer.save(confirmation, values)
    note = "saved" if change.changes else "unchanged"
    return redirect(url_for(page, note=note), code=303)


@blueprint.errorhandler(ChangeRefused)
def refused(exc: ChangeRefused):
    """A refused change re-shows its page with the sentence (and the field) in an alert."""
    endpoint = request.endpoint.removesuffix("_save")
    pages = {"settings.areas": areas, "settings.motion": motion,
             "settings.recording": recording}
    if endpoint in pages and request.method == "POST":
        body = pages[endpoint](error=str(exc), error_field=exc.field, form=request.form)
        return body, exc.status
    return jsonify(error=str(exc), field=exc.field), exc.status


@blueprint.get("")
@access.page
def index():
    v = viewer()
    if v.hub is not None:
        cameras = [(name, str(c.folder.root)) for name, c in v.hub.cameras.items()]
        return render_template("settings.html", hub_cameras=cameras)
    return render_template("settings.html", replica=replica_summary(v.settings),
                           clock=_clock_text)


def _clock_text(wall_us: int | None) -> str:
    """The device's clock with its zone label, as every page: "4 Dec 2025, 01:00:00 CET"."""
    return "not yet" if wall_us is None else local_date_time(wall_us / 1e6, seconds=True)


# -- privacy masks and motion zones ---------------------------------------------------------------

@blueprint.get("/areas")
@access.page
def areas(error=None, error_field=None, form=None):
    s = current_settings(viewer())
    masks = form.get("masks") if form else json.dumps(setting_value(s, "privacy.masks"))
    zones = form.get("zones") if form else json.dumps(setting_value(s, "motion.zones"))
    return render_template("settings_areas.html", masks=masks, zones=zones, error=error,
                           error_field=error_field, note=request.args.get("note"))


@blueprint.post("/areas")
@access.page
def areas_save():
    values = {"privacy.masks": _polygons_field("masks", "privacy.masks"),
              "motion.zones": _polygons_field("zones", "motion.zones")}
    return _save(values, "settings.areas")


def _polygons_field(name: str, key: str) -> list:
    try:
        polygons = json.loads(request.form.get(name, "[]") or "[]")
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        raise ChangeRefused(f"{key}: the polygons could not be read; reload the page.", 400,
                            key) from None
    if not isinstance(polygons, list):
        raise ChangeRefused(f"{key}: expected a list of polygons.", 400, key)
    return polygons


# -- motion tuner ----------------------------------------------------------------------------------

@blueprint.get("/motion")
@access.page
def motion(error=None, error_field=None, form=None):
    s = current_settings(viewer())
    values = {key: setting_value(s, f"motion.{key}") for key in MOTION_KEYS}
    if form:
        values.update({key: form.get(key, values[key]) for key in MOTION_KEYS})
    return render_template("settings_motion.html", values=values, error=error,
                           error_field=error_field, note=request.args.get("note"))


@blueprint.post("/motion")
@access.page
def motion_save():
    values = {f"motion.{key}": _number(key, f"motion.{key}", float if key != "trigger_frames"
                                       else int) for key in MOTION_KEYS}
    response = _save(values, "settings.motion")
    viewer().home.motion_tuning_file.unlink(missing_ok=True)  # the saved values are in force
    return response


@blueprint.post("/motion/trial")
@access.data
def motion_trial():
    """The tuner's trial values: the recorder runs a second detector with them (no recording
    changes) and publishes its mask and boxes while the file stays fresh. Not a settings change:
    nothing persistent changes, so no passphrase is asked."""
    v = viewer()
    try:
        data = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        abort(400, "The motion values are not valid JSON: reload the page.")
    if not isinstance(data, dict):
        abort(400, "Expected a JSON object of motion values.")
    trial = MotionTrial(motion={key: data[key] for key in MOTION_KEYS if key in data},
                        expires_at=time.time() + TRIAL_LIFETIME_S, member=g.session.member)
    try:
        trial.apply_to(current_settings(v), source="tuner")  # what the recorder will check
    except ConfigError as exc:
        return jsonify(error=field_sentence(exc), field=exc.key), 400
    trial.write(v.home.motion_tuning_file)
    return jsonify(ok=True, expires_at=trial.expires_at)


@blueprint.get("/motion/overlay.json")
@access.background
def motion_overlay():
    overlay = MotionOverlay.load_or_none(viewer().home.motion_overlay_file)
    if overlay is None or not overlay.active(time.time()):
        return jsonify(active=False)  # no stale boxes drawn over a newer picture
    return jsonify({**overlay.to_dict(), "active": True})


@blueprint.get("/motion/mask.png")
@access.background
def motion_mask():
    path = viewer().home.motion_mask_file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        abort(404, "No overlay: the tuner is not running or the recorder is stopped.")
    # Where things move in the live picture: part of the page's live session, like its frames.
    record_access(LIVE, "live.view", via="motion mask")
    return Response(data, mimetype="image/png")


# -- recording and retention -------------------------------------------------------------------

@blueprint.get("/recording")
@access.page
def recording(error=None, error_field=None, form=None):
    s = current_settings(viewer())
    values = {
        "pre_roll_s": s.recording.pre_roll_s, "post_roll_s": s.recording.post_roll_s,
        "max_clip_s": s.recording.max_clip_s, "max_age_days": s.retention.max_age_days,
        "max_total_gb": _gb(s.retention.max_total_bytes),
        "min_free_gb": _gb(s.retention.min_free_bytes),
    }
    if form:
        values.update({key: form.get(key, values[key]) for key in RECORDING_FIELDS})
    return render_template("settings_recording.html", values=values, error=error,
                           error_field=error_field, note=request.args.get("note"),
                           estimate=_estimate(s))


@blueprint.post("/recording")
@access.page
def recording_save():
    values = {key: _number(field, key, convert) for field, (key, convert)
              in RECORDING_FIELDS.items()}
    return _save(values, "settings.recording")


@blueprint.get("/recording/estimate.json")
@access.data
def recording_estimate():
    """Days that fit for proposed values (query string, the form's fields), before saving."""
    s = current_settings(viewer())
    values = {key: _number(field, key, convert, request.args) for field, (key, convert)
              in RECORDING_FIELDS.items() if field in request.args}
    try:
        proposed = s.with_overrides(values, source="form")
    except ConfigError as exc:
        return jsonify(error=field_sentence(exc), field=exc.key), 400
    return jsonify(_estimate(proposed))


def _estimate(proposed) -> dict:
    v = viewer()
    usage = measure_usage(v.home.index_file, v.home.clips_dir)
    days = days_that_fit(usage, proposed.retention, proposed.recording, v.settings.recording)
    return {"days": days, "bytes_per_day": round(usage.bytes_per_day),
            "free_bytes": usage.free_bytes, "clips_bytes": usage.clips_bytes}


def _gb(size_bytes: int) -> float:
    return round(size_bytes / GB, 2)


def _number(field: str, key: str, convert, source=None):
    text = (source if source is not None else request.form).get(field, "").strip()
    try:
        value = convert(text)
    except (TypeError, ValueError, OverflowError):  # OverflowError: "inf" GB as whole bytes
        kind = "a whole number" if convert is int else "a number"
        raise ChangeRefused(f"{key}: enter {kind}.", 400, key) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ChangeRefused(f"{key}: enter a finite number.", 400, key)
    return value


# -- did the recorder pick it up? ------------------------------------------------------------------

@blueprint.get("/applied.json")
@access.background
def applied():
    v = viewer()
    try:
        saved = hashlib.sha256(v.home.config_file.read_bytes()).hexdigest()
    except FileNotFoundError:
        saved = hashlib.sha256(b"").hexdigest()
    status = RecorderStatus.load_or_none(v.home.recorder_status_file)
    running = status.config_sha256 if status else None
    fresh = status is not None and status.recorder_running(time.time())
    return jsonify(saved_sha256=saved, recorder_sha256=running,
                   recorder_running=fresh, applied=fresh and running == saved)
