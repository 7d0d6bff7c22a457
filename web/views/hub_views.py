"""The hub's own pages and rules: unlocking with a doorbell's recovery key, and refusing what a
hub must not do (delete from a replica, change a doorbell's settings, set up a household).

Registered on a hub only: a doorbell's recovery key is kept off the doorbell by design.
"""

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from doorbell.storage.age.errors import AgeError
from doorbell.storage.age.identities import parse_identity

from .. import access
from ..display import zone_sentence
from ..guards import set_session_cookie
from ..hub import KeySet
from . import hub_status
from .clips import NO_DELETE_ON_HUB
from .common import viewer

blueprint = Blueprint("hub", __name__, url_prefix="/hub")

RECOVERY_MEMBER = "recovery"
NOT_ON_HUB = ("The hub shows the cameras' replicas only: the live view, members, set-up and "
              "camera settings are on each doorbell's own viewer.")
# Endpoints a hub refuses: they act on a doorbell (its camera, household or footage).
DEVICE_ONLY_BLUEPRINTS = ("live", "events", "members", "setup")
DEVICE_ONLY_ENDPOINTS = ("clips.confirm_delete", "clips.delete")
# The device's pages a hub answers with its own (the access rule is the device page's).
HUB_PAGES = {"status.page": hub_status.page, "status.data": hub_status.data}


@blueprint.get("/recovery-key")
@access.public
def recovery_page():
    return render_template("hub_recovery.html", error=None)


@blueprint.post("/recovery-key")
@access.public.form_before_session
def recovery_unlock():
    v = viewer()
    address = request.remote_addr
    wait_s = v.limiter.try_acquire(address, RECOVERY_MEMBER)
    if wait_s is not None:
        v.refusals.record(RECOVERY_MEMBER, "unlock.rate_limited", address)
        response = make_response(render_template(
            "hub_recovery.html", error="Too many attempts. Try again in "
            f"{int(wait_s // 60) + 1} minutes."), 429)
        response.headers["Retry-After"] = str(int(wait_s))
        return response
    text = request.form.get("recovery_key", "").strip()
    try:
        identity = parse_identity(text[:4096]) if text else None
    except AgeError:
        identity = None
    if identity is None or str(identity.recipient) not in v.hub.recovery_recipients():
        v.refusals.record(RECOVERY_MEMBER, "unlock.failed", address)
        return render_template("hub_recovery.html", error="That is not the recovery key of "
                               "any camera on this hub."), 401
    v.limiter.forget(address, RECOVERY_MEMBER)
    v.refusals.flush()
    v.sessions.drop(g.session_id)
    session_id, _session = v.sessions.create(RECOVERY_MEMBER, KeySet([identity]))
    v.audit.append(RECOVERY_MEMBER, "unlock", address=address, via="recovery key")
    return set_session_cookie(redirect(url_for("timeline.index"), code=303), session_id)


def install_hub_rules(app) -> None:
    """On a hub: refuse the device-only pages, and every change to a doorbell's settings."""

    @app.before_request
    def refuse_device_only():
        endpoint = request.endpoint or ""
        if endpoint in DEVICE_ONLY_ENDPOINTS:
            abort(403, NO_DELETE_ON_HUB)
        if endpoint.partition(".")[0] in DEVICE_ONLY_BLUEPRINTS:
            abort(404, NOT_ON_HUB)
        if endpoint.startswith("settings.") and endpoint != "settings.index":
            abort(404, NOT_ON_HUB)
        if endpoint in HUB_PAGES and g.get("session") is not None:  # the guards ran first
            return HUB_PAGES[endpoint]()
        return None

    @app.context_processor
    def hub_context():
        # Every page's footer names the hub's zone: its times are on the hub's clock, whichever
        # doorbell recorded the clip (a context value wins over status.py's template global).
        return {"on_hub": current_app.extensions["doorbell"].hub is not None,
                "time_zone_sentence": lambda: zone_sentence("hub")}
