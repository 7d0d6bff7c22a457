"""First-run set-up in the browser: set-up code -> first member -> recovery key -> timeline.

Only while the home has no household keys (see web/onboarding.py for the code). The new member's
identity is unlocked straight away (we hold it), and the session keeps the recovery key in memory
until the owner confirms they saved it; every other page waits until then.

Both keys are post-quantum hybrid (ML-KEM-768 + X25519) unless the owner ticks "X25519 keys",
for a household that decrypts with an age older than 1.3.0.
"""

import logging

from flask import Blueprint, abort, g, redirect, render_template, request, url_for

from doorbell.storage.errors import HouseholdError, KeyringError, RecipientsError
from doorbell.storage.household import create_household
from doorbell.storage.passphrase import suggest_passphrase
from doorbell.storage.recipients import check_member_name
from doorbell.web.tls import certificate_paths, create_certificate, fingerprint

from .. import access
from ..guards import set_session_cookie
from ..onboarding import RETIRED, SetupCodeError, SetupCodeLimited, WrongSetupCode
from .common import viewer

blueprint = Blueprint("setup", __name__, url_prefix="/setup")
log = logging.getLogger("doorbell.viewer")

def needs_setup() -> bool:
    v = viewer()
    return v.setup is not None and not v.home.is_initialised()


def _form(error: str | None = None, status: int = 200, member: str = "", x25519: bool = False):
    return render_template("setup.html", error=error, member=member, x25519=x25519,
                           suggestion=suggest_passphrase(), fingerprint=_fingerprint(),
                           minutes_left=viewer().setup.minutes_left), status


def _fingerprint() -> str | None:
    cert, _key = certificate_paths(viewer().home.tls_dir)
    return fingerprint(cert) if cert.exists() else None


@blueprint.get("")
@access.setup
def page():
    if not needs_setup():
        return redirect(url_for("auth.login"))
    unusable = viewer().setup.unusable
    if unusable is not None:
        return _form(unusable, 410)
    return _form()


@blueprint.post("")
@access.setup.form_before_session
def submit():
    v = viewer()
    if not needs_setup():
        abort(403, "This device is already set up: unlock with your name and passphrase.")
    member = request.form.get("member", "").strip()[:64]
    passphrase = request.form.get("passphrase", "")
    x25519 = request.form.get("key_type") == "x25519"
    try:  # the address's and everyone's budget of wrong codes first, then the code
        v.setup.check(request.form.get("code", ""), request.remote_addr)
    except SetupCodeError as exc:
        if isinstance(exc, WrongSetupCode):  # at most the whole budget of lines, per code
            log.warning("wrong set-up code from %s", request.remote_addr)
            if v.setup.unusable == RETIRED:
                log.warning("too many wrong set-up codes: restart the viewer for a new code")
        page, status = _form(str(exc), exc.status, member, x25519)
        headers = {"Retry-After": str(int(exc.wait_s))} \
            if isinstance(exc, SetupCodeLimited) else {}
        return page, status, headers
    try:  # not guessing any more: typos below cost nothing
        check_member_name(member)
        if passphrase != request.form.get("passphrase_confirm", ""):
            raise KeyringError("the two passphrases differ")
        v.setup.consume(request.form.get("code", ""))
    except (RecipientsError, KeyringError) as exc:
        return _form(f"{_sentence(exc)}", 400, member, x25519)
    except SetupCodeError as exc:  # another tab finished set-up a moment ago
        return _form(str(exc), exc.status, member, x25519)
    try:
        household = create_household(v.home, member, passphrase, v.scrypt_work_factor(),
                                     post_quantum=not x25519)
        cert, _key = certificate_paths(v.home.tls_dir)
        digest = fingerprint(cert) if cert.exists() else \
            create_certificate(v.home.tls_dir, v.settings.viewer.hostnames)
    except (HouseholdError, RecipientsError, KeyringError, OSError) as exc:
        v.setup.release()
        log.error("set-up failed: %s", exc)
        return _form(f"Set-up failed: {_sentence(exc)}", 400 if not isinstance(exc, OSError)
                     else 500, member, x25519)
    v.audit.append(member, "setup", member=member,
                   member_key=str(household.member_identity.recipient),
                   recovery_key=str(household.recovery_identity.recipient),
                   key_type="X25519" if x25519 else "post-quantum",
                   tls_fingerprint=digest, address=request.remote_addr)
    log.info("set up by %s from %s", member, request.remote_addr)
    session_id, session = v.sessions.create(member, household.member_identity)
    session.recovery_secret = str(household.recovery_identity)
    return set_session_cookie(redirect(url_for("setup.recovery"), code=303), session_id)


@blueprint.get("/recovery")
@access.recovery
def recovery():
    secret = g.session.recovery_secret
    if secret is None:
        return redirect(url_for("timeline.index"))
    return _recovery_page(secret)


@blueprint.post("/recovery")
@access.recovery
def recovery_confirm():
    secret = g.session.recovery_secret
    if secret is None:
        return redirect(url_for("timeline.index"), code=303)
    if request.form.get("saved") != "yes":
        return _recovery_page(secret, "Tick the box once the recovery key is saved or printed.",
                              400)
    g.session.recovery_secret = None
    viewer().audit.append(g.session.member, "setup.recovery_saved",
                          address=request.remote_addr)
    return redirect(url_for("timeline.index"), code=303)


def _recovery_page(secret: str, error: str | None = None, status: int = 200):
    groups = " ".join(secret[i:i + 6] for i in range(0, len(secret), 6))
    post_quantum = secret.startswith("AGE-SECRET-KEY-PQ-")
    return render_template("setup_recovery.html", secret=secret, groups=groups, error=error,
                           post_quantum=post_quantum, fingerprint=_fingerprint()), status


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:].rstrip(".") + "."
