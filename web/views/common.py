"""Small helpers the blueprints share: the viewer, the session's identities, clip metadata."""

import logging
import re
from collections.abc import Mapping
from datetime import datetime

from flask import abort, current_app, g, request

from doorbell.storage.age.errors import AgeError
from doorbell.storage.clipid import check_clip_id
from doorbell.storage.clipreader import read_metadata
from doorbell.storage.errors import AuditLogCorrupt, InvalidClipId

log = logging.getLogger("doorbell.viewer")

UNRECORDED = ("The audit log cannot record this access, so nothing is shown: "
              "run `doorbell audit --verify`.")


# Far beyond any real list (a million pages), and small enough that page * size fits SQLite.
LAST_PAGE = 1_000_000
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() accepts "²", which int() refuses


def page_number() -> int:
    """The `?page=` asked for, from 0 to LAST_PAGE: a negative or non-numeric one is the first
    page, a huge one the last (empty: past the end). Never int() of thousands of digits."""
    text = request.args.get("page", "").strip()
    if not _DIGITS.fullmatch(text):
        return 0
    return LAST_PAGE if len(text) > len(str(LAST_PAGE)) else min(int(text), LAST_PAGE)


def viewer():
    return current_app.extensions["doorbell"]


def identities() -> list:
    return [g.session.identity]


def valid_clip_id(clip_id: str) -> str:
    try:
        return check_clip_id(clip_id)
    except InvalidClipId:
        abort(404, "No such clip.")


def clip_metadata(clip_id: str) -> dict:
    """Decrypted metadata, cached in the session (in memory, gone when it locks)."""
    cache = g.session.metadata_cache
    if clip_id not in cache:
        try:
            cache[clip_id] = read_metadata(viewer().home.clips_dir, clip_id, identities()) or {}
        except AgeError as exc:
            cache[clip_id] = {"error": f"metadata cannot be read: {exc}"}
    return cache[clip_id]


def local_time(start_us: int) -> datetime:
    return datetime.fromtimestamp(start_us / 1e6).astimezone()


def record_access(subject: str, action: str, *, force: bool = False, **details) -> None:
    """Audit footage (video, thumbnail, live picture) this session is about to receive, once
    per view (web/coalesced_audit.py). Nothing is shown that the log could not record: 503."""
    try:
        viewer().access_audit.record(g.session_id, subject, g.session.member, action,
                                     force=force, address=request.remote_addr, **details)
    except (AuditLogCorrupt, OSError) as exc:
        log.error("%s refused: the audit log cannot be appended: %s", action, exc)
        abort(503, UNRECORDED)


def record_listing(subjects: Mapping[str, str], action: str, listed_as: str, **details) -> None:
    """Audit a page showing many subjects at once: one entry listing those not yet on record."""
    try:
        viewer().access_audit.record_listing(g.session_id, subjects, g.session.member, action,
                                             listed_as, address=request.remote_addr, **details)
    except (AuditLogCorrupt, OSError) as exc:
        log.error("%s refused: the audit log cannot be appended: %s", action, exc)
        abort(503, UNRECORDED)
