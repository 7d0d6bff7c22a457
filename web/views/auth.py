"""Unlock (log in), lock (log out). Unlocking decrypts the member's identity into memory."""

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

from doorbell.storage.errors import WrongPassphraseError

from .. import access
from ..guards import DEVICE_COOKIE, SESSION_COOKIE, set_device_cookie, set_session_cookie
from ..unlock import RateLimited, UnlockBusy, unlock_with_limit

blueprint = Blueprint("auth", __name__)


def _viewer():
    return current_app.extensions["doorbell"]


@blueprint.get("/login")
@access.public
def login():
    if g.session is not None:
        return redirect(url_for("timeline.index"))
    return render_template("login.html", error=None, member="")


@blueprint.post("/login")
@access.public.form_before_session
def login_submit():
    viewer = _viewer()
    member = request.form.get("member", "").strip()[:64]
    passphrase = request.form.get("passphrase", "")
    if not member or not passphrase:
        return render_template("login.html", error="Enter your name and passphrase.",
                               member=member), 400
    device_token = request.cookies.get(DEVICE_COOKIE)
    try:
        identity = unlock_with_limit(viewer, member, passphrase, request.remote_addr, "unlock",
                                     device_token)
    except RateLimited as exc:
        response = make_response(render_template("login.html", member=member,
                                                 error=exc.sentence), 429)
        response.headers["Retry-After"] = str(int(exc.wait_s))
        return response
    except UnlockBusy:
        abort(503, "Another unlock is in progress: try again in a moment.")
    except WrongPassphraseError:  # logged with its audit entry, or counted (web/refusals.py)
        return render_template("login.html", error="Wrong name or passphrase.",
                               member=member), 401
    # This browser's earlier session (unlocked again, or as someone else) ends here: its key
    # would otherwise stay in memory, reachable by the old cookie, until it idled out.
    viewer.sessions.drop(g.session_id)
    session_id, _session = viewer.sessions.create(member, identity)
    viewer.audit.append(member, "unlock", address=request.remote_addr)
    response = set_session_cookie(redirect(url_for("timeline.index"), code=303), session_id)
    return set_device_cookie(response, viewer.limiter.trust_device(member, device_token))


@blueprint.post("/lock")
@access.recovery
def lock():
    viewer = _viewer()
    session = viewer.sessions.drop(g.session_id)
    if session is not None:
        viewer.audit.append(session.member, "lock", address=request.remote_addr)
    response = redirect(url_for("auth.login"), code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                           samesite="Strict")
    return response
