"""The audit log, newest first, with the result of verifying its hash chain."""

from flask import Blueprint, render_template

from doorbell.storage.errors import AuditLogCorrupt

from .. import access
from ..display import local_date_time_of_iso
from .common import page_number, viewer

blueprint = Blueprint("audit", __name__, url_prefix="/audit")
# Entries keep their UTC time; the page shows it in the device's zone, like every other page.
blueprint.add_app_template_filter(local_date_time_of_iso, "local_date_time_of_iso")

PAGE_SIZE = 200


@blueprint.get("")
@access.page
def page():
    viewer().refusals.flush_due()  # a window of counted refusals that is over
    log = viewer().audit
    verification = log.verify()
    try:
        entries = list(reversed(log.entries())) if log.path.exists() else []
    except AuditLogCorrupt:
        entries = []
    page = page_number()
    shown = entries[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    return render_template("audit.html", verification=verification, entries=shown, page=page,
                           has_more=len(entries) > (page + 1) * PAGE_SIZE, total=len(entries))
