"""Request guards every route passes through, and the headers every response carries.

Order, per request: the client must be on an allowed network (else 403), the Host must be the
device itself (else 400: DNS rebinding), state-changing methods must be same-origin and carry
the session's CSRF token (else 403), and every endpoint except login, set-up and static files
needs an unlocked session (else a redirect to the login page, or 401 for media and data requests).
Which of these apply is the rule each view declares next to itself (web/access.py).
"""

import hmac
import ipaddress
import logging
import socket
from collections.abc import Iterable
from functools import cache

from flask import Flask, abort, current_app, g, redirect, request, url_for

from . import access

log = logging.getLogger("doorbell.viewer")

SESSION_COOKIE = "__Host-doorbell-session"
DEVICE_COOKIE = "__Host-doorbell-device"  # a browser that unlocked before (web/ratelimit.py)
DEVICE_COOKIE_MAX_AGE_S = 400 * 24 * 3600  # the longest browsers keep a cookie
# Sent by a page's own timers: this request is not the person doing something (web/access.py).
BACKGROUND_HEADER = "X-Doorbell-Background"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "media-src 'self'",
    "connect-src 'self'",
    "font-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])


@cache
def _own_names() -> frozenset[str]:
    name = socket.gethostname().lower()
    short = name.split(".")[0]
    return frozenset({"localhost", name, short, f"{short}.local"})


def host_without_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_allowed_host(host: str, extra_names: Iterable[str]) -> bool:
    """The device's own name, its .local name, localhost, a configured name or an IP literal.

    An IP literal cannot be rebound by an attacker's DNS, so any is accepted; a name is
    accepted only if it is one of the device's own.
    """
    bare = host_without_port(host)
    if not bare:
        return False
    try:
        ipaddress.ip_address(bare.split("%")[0])
        return True
    except ValueError:
        pass
    return bare in _own_names() or bare in {n.lower() for n in extra_names}


def is_allowed_client(address: str | None, networks) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _same_origin() -> bool:
    """Browsers say where a request came from; anything cross-site is refused.

    A client that sends neither header (curl, a script) is judged by the CSRF token alone.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def set_session_cookie(response, session_id: str):
    """The browser's only piece of a session: a random id, never readable by scripts."""
    response.set_cookie(SESSION_COOKIE, session_id, secure=True, httponly=True,
                        samesite="Strict", path="/")
    return response


def set_device_cookie(response, token: str):
    """Marks this browser as one that unlocked before, so guessers elsewhere cannot lock it out."""
    response.set_cookie(DEVICE_COOKIE, token, max_age=DEVICE_COOKIE_MAX_AGE_S, secure=True,
                        httponly=True, samesite="Strict", path="/")
    return response


def _rule_of_endpoint(endpoint: str) -> access.Rule:
    view = current_app.view_functions.get(endpoint)
    if access.declared_rule(view) is None:
        log.error("%s declares no access rule: refused without an unlocked session", endpoint)
    return access.rule_of(view)


def _is_person_active(rule: access.Rule | None) -> bool:
    """Whether this request restarts the idle timeout: not background work, not a stray URL."""
    if rule is None or not rule.counts_as_activity:
        return False
    return request.headers.get(BACKGROUND_HEADER) != "1"


def install_guards(app: Flask) -> None:
    if "static" in app.view_functions:  # Flask's own view: the set-up page needs its files too
        access.setup(app.view_functions["static"])

    @app.before_request
    def check_request():
        viewer = current_app.extensions["doorbell"]
        if not is_allowed_client(request.remote_addr, viewer.allowed_networks):
            log.warning("refused %s %s from %s: not on an allowed network",
                        request.method, request.path, request.remote_addr)
            abort(403, "This viewer answers the home network only.")
        if not is_allowed_host(request.host, viewer.settings.viewer.hostnames):
            log.warning("refused Host %r from %s", request.host[:100], request.remote_addr)
            abort(400, "Unknown host name: open the viewer by the device's own name or address.")
        # No endpoint: nothing matched the URL or method, and routing answers 404 or 405 below.
        rule = None if request.endpoint is None else _rule_of_endpoint(request.endpoint)
        g.session_id = request.cookies.get(SESSION_COOKIE)
        g.session = viewer.sessions.get(g.session_id, activity=_is_person_active(rule))
        if request.method not in SAFE_METHODS:
            if not _same_origin():
                abort(403, "Cross-site request refused.")
            if rule is None or rule.csrf_token:
                if g.session is None and rule is not None and rule.needs_session and \
                        not rule.redirect_when_locked:
                    # A data POST (the tuner's trial values) from a page whose session locked:
                    # 401 makes the page reload to the login page, as its GETs do.
                    abort(401, "Locked: unlock the viewer first.")
                sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
                if g.session is None or not hmac.compare_digest(sent, g.session.csrf_token):
                    abort(403, "The form expired or did not come from this viewer: reload it.")
        if viewer.setup is not None and not (rule is not None and rule.before_setup) and \
                not viewer.home.is_initialised():
            if request.method == "GET":
                return redirect(url_for("setup.page"))
            abort(403, "This device is not set up yet: open the set-up page.")
        if rule is None or not rule.needs_session:
            return None
        if g.session is None:
            if request.method == "GET" and rule.redirect_when_locked:
                return redirect(url_for("auth.login"))
            abort(401, "Locked: unlock the viewer first.")
        if g.session.recovery_secret is not None and not rule.during_recovery:
            if request.method == "GET":
                return redirect(url_for("setup.recovery"))
            abort(403, "Confirm that you saved the recovery key first.")
        return None

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        # Not "no-referrer": browsers would then send `Origin: null` on our own form posts.
        headers["Referrer-Policy"] = "same-origin"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Cross-Origin-Resource-Policy"] = "same-origin"
        headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if request.endpoint != "static":
            headers["Cache-Control"] = "no-store"
        if request.is_secure:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        return response
