"""Household members: who new clips are encrypted to.

Adding a member with a passphrase makes their identity here (they type the passphrase on the
device); adding a public key (age1...) is for someone who decrypts elsewhere. Removing a member
only stops new clips being encrypted to them: clips they could already decrypt stay decryptable
by their key, and the page says so. Each change needs the acting member's passphrase again and
is audited; the recorder reads recipients.txt again within about a second.
"""

from flask import Blueprint, g, redirect, render_template, request, url_for

from doorbell.storage.errors import (
    HouseholdError,
    KeyringError,
    RecipientsError,
    WrongPassphraseError,
)
from doorbell.storage.household import (
    add_member,
    change_passphrase,
    list_members,
    remove_member,
)
from doorbell.storage.passphrase import suggest_passphrase
from doorbell.storage.recipients import RECOVERY_NAME

from .. import access
from ..changes import ChangeRefused, confirm_passphrase
from .common import viewer

blueprint = Blueprint("members", __name__, url_prefix="/members")


@blueprint.errorhandler(ChangeRefused)
def refused(exc: ChangeRefused):
    return page(error=str(exc), error_field=exc.field), exc.status


@blueprint.get("")
@access.page
def page(error=None, error_field=None):
    v = viewer()
    form = dict(request.form.items()) if request.method == "POST" else {}
    if form.get("public_key", "").strip().upper().startswith("AGE-SECRET-KEY-"):
        form["public_key"] = ""  # a secret key pasted by mistake is never sent back
    return render_template("members.html", members=list_members(v.home), error=error,
                           error_field=error_field, note=request.args.get("note"),
                           recovery_name=RECOVERY_NAME, suggestion=suggest_passphrase(),
                           form=form)


def _confirm():
    return confirm_passphrase(viewer(), g.session, request.form.get("passphrase", ""),
                              request.remote_addr)


def _refuse(exc: Exception, field: str | None = None) -> ChangeRefused:
    text = str(exc)
    return ChangeRefused(text[:1].upper() + text[1:].rstrip(".") + ".", 400, field)


@blueprint.post("/add")
@access.page
def add():
    v = viewer()
    name = request.form.get("name", "").strip()
    public_key = request.form.get("public_key", "").strip()
    new_passphrase = request.form.get("new_passphrase", "")
    if public_key and new_passphrase:
        raise ChangeRefused("Give either a passphrase for the new member or their public key, "
                            "not both.", 400, "public_key")
    if not public_key and new_passphrase != request.form.get("new_passphrase_confirm", ""):
        raise ChangeRefused("The two new passphrases differ.", 400, "new_passphrase")
    confirmation = _confirm()
    try:
        if public_key:
            key = add_member(v.home, name, recipient=public_key)
            kind = "public key"
        else:
            key = add_member(v.home, name, passphrase=new_passphrase,
                             work_factor=v.scrypt_work_factor())
            kind = "passphrase identity"
    except (HouseholdError, RecipientsError, KeyringError) as exc:
        # The sentence names the member when the name is the problem (bad, or taken).
        about_name = repr(name) in str(exc) or isinstance(exc, RecipientsError)
        other = "public_key" if public_key else "new_passphrase"
        raise _refuse(exc, "name" if about_name else other) from None
    v.audit.append(confirmation.member, "keys.add", member=key.name, key=str(key.recipient),
                   kind=kind, address=confirmation.address)
    return redirect(url_for("members.page", note=f"added:{key.name}"), code=303)


@blueprint.post("/remove")
@access.page
def remove():
    v = viewer()
    name = request.form.get("name", "")
    if name == g.session.member:
        raise ChangeRefused("You cannot remove yourself: ask another member to do it.", 400)
    confirmation = _confirm()
    try:
        remove_member(v.home, name)
    except (HouseholdError, RecipientsError, KeyringError) as exc:
        raise _refuse(exc) from None
    dropped = v.sessions.drop_member(name)
    v.audit.append(confirmation.member, "keys.remove", member=name, sessions_locked=dropped,
                   address=confirmation.address)
    return redirect(url_for("members.page", note=f"removed:{name}"), code=303)


@blueprint.post("/passphrase")
@access.page
def passphrase():
    """Change one's own passphrase: the current one is the re-authentication."""
    v = viewer()
    new = request.form.get("new_passphrase", "")
    if new != request.form.get("new_passphrase_confirm", ""):
        raise ChangeRefused("The two new passphrases differ.", 400, "new_passphrase")
    confirmation = _confirm()
    try:
        change_passphrase(v.home, g.session.member, request.form.get("passphrase", ""), new)
    except WrongPassphraseError:
        raise ChangeRefused("Wrong passphrase: nothing was changed.", 401, "passphrase") \
            from None
    except (HouseholdError, KeyringError) as exc:
        raise _refuse(exc, "new_passphrase") from None
    v.audit.append(confirmation.member, "keys.passwd", member=g.session.member,
                   address=confirmation.address)
    return redirect(url_for("members.page", note="passphrase"), code=303)
