"""Small helpers the blueprints share: the viewer, the session's identities, clip metadata."""

from datetime import datetime

from flask import abort, current_app, g

from doorbell.storage.age.errors import AgeError
from doorbell.storage.clipid import check_clip_id
from doorbell.storage.clipreader import read_metadata
from doorbell.storage.errors import InvalidClipId


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
