"""One clip: the player page, the video by HTTP Range, thumbnail, export and delete."""

import hashlib

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from doorbell.storage.age.errors import AgeError
from doorbell.storage.clipreader import read_thumbnail
from doorbell.storage.deletion import delete_clip
from doorbell.storage.errors import AuditLogCorrupt, ClipNotFound
from doorbell.storage.index import ClipIndex

from .. import access
from ..display import local_date_time, utc_text
from ..ranges import UnsatisfiableRange, parse_range
from .common import identities, record_access, valid_clip_id, viewer
from .sources import ClipSource, source_named

blueprint = Blueprint("clips", __name__, url_prefix="/clips")

READ_BLOCK = 256 * 1024
TAMPERED = "This clip cannot be decrypted: it was damaged or tampered with"
NO_DELETE_ON_HUB = ("The hub never deletes from a replica: delete the clip on its doorbell's own "
                    "viewer (the replica keeps its copy either way).")


def _source() -> ClipSource:
    """The clip's camera on a hub (`?camera=`), the home on the device."""
    return source_named(request.args.get("camera"))


def _open(source: ClipSource, clip_id: str):
    if source.replica is not None:
        _indexed(source, clip_id)  # a hub serves only what its scan of the replica listed
    try:
        return source.open_video(clip_id)
    except ClipNotFound:
        abort(404, "No such clip.")
    except AgeError as exc:
        abort(422, f"{TAMPERED} ({exc}).")


def _indexed(source: ClipSource, clip_id: str):
    with ClipIndex(source.index_file) as index:
        row = index.get(clip_id)
    if row is None:
        abort(404, "No such clip.")
    return row


@blueprint.get("/<clip_id>")
@access.page
def player(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    source = _source()
    row = _indexed(source, clip_id)
    # Authenticate every chunk once here (about 10 ms for a typical clip), so the page can say
    # whether the clip is whole, interrupted (the recorder stopped) or damaged afterwards.
    with _open(source, clip_id) as clip_video:
        try:
            clip_video.authenticate_all()
            intact, size_bytes = not clip_video.truncated, clip_video.size_bytes
        except AgeError as exc:
            intact, size_bytes = False, exc.authenticated_bytes
    damaged = not intact and row.state == "complete"
    # Every page load is recorded; the player's Range requests that follow are part of it.
    record_access(f"clip {source.subject(clip_id)}", "clip.view", force=True,
                  clip=clip_id, **_camera(source))
    return render_template(
        "clip.html", clip_id=clip_id, meta=source.metadata(clip_id), row=row,
        started=local_date_time(row.start_us / 1e6, seconds=True),  # "4 Dec 2026, 14:03:05 CET"
        started_utc=utc_text(row.start_us / 1e6),
        kept_from=row.kept_from_us and local_date_time(row.kept_from_us / 1e6, seconds=True),
        kept_from_utc=row.kept_from_us and utc_text(row.kept_from_us / 1e6),
        truncated=not intact and not damaged, damaged=damaged, size_bytes=size_bytes,
        camera=source.camera, on_replica=source.replica is not None,
    )


def _camera(source: ClipSource) -> dict:
    """The audit entry's `camera` detail, on a hub."""
    return {"camera": source.camera} if source.camera else {}


@blueprint.get("/<clip_id>/video")
@access.data
def video(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    source = _source()
    clip_video = _open(source, clip_id)
    size = clip_video.size_bytes
    try:
        wanted = parse_range(request.headers.get("Range"), size)
    except UnsatisfiableRange as exc:
        clip_video.close()
        response = Response(f"Range not satisfiable: {exc}.\n", status=416, mimetype="text/plain")
        response.headers["Content-Range"] = f"bytes */{size}"
        return response
    start, end = (wanted.start, wanted.end) if wanted else (0, size - 1)
    length = end - start + 1
    if wanted is None:
        # The whole body is asked for (a download): authenticate it all before the headers
        # promise its length, so damage anywhere is a clear 422, not a body that breaks off.
        try:
            clip_video.authenticate_all()
        except AgeError as exc:
            clip_video.close()
            abort(422, f"{TAMPERED}: it stops authenticating after "
                       f"{exc.authenticated_bytes} bytes.")
    # The first block is decrypted before answering, so a damaged range gets a clear 422
    # rather than a response that breaks off. Damage further on breaks the stream off; the
    # player's next Range request then starts inside the damaged chunk and gets the 422.
    try:
        blocks = clip_video.iter_range(start, end, READ_BLOCK)
    except AgeError as exc:
        clip_video.close()
        abort(422, f"{TAMPERED} ({exc}).")
    try:
        _record_video(source, clip_id, wanted)
    except HTTPException:
        clip_video.close()
        raise

    def body():
        with clip_video:
            yield from blocks

    response = Response(body(), status=206 if wanted else 200, mimetype="video/mp4",
                        direct_passthrough=True)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Content-Length"] = str(length)
    if wanted:
        response.headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
    if request.args.get("download") == "1":
        response.headers["Content-Disposition"] = f'attachment; filename="{clip_id}.mp4"'
    return response


def _record_video(source: ClipSource, clip_id: str, wanted) -> None:
    """A player's Range requests are one view (with the page's own entry, if it was loaded);
    a download is an entry of its own, and its resumed parts (Range not at 0) belong to it."""
    subject = source.subject(clip_id)
    if request.args.get("download") == "1":
        record_access(f"download {subject}", "clip.download", clip=clip_id,
                      force=wanted is None or wanted.start == 0, **_camera(source))
    else:
        record_access(f"clip {subject}", "clip.view", clip=clip_id, via="video",
                      **_camera(source))


@blueprint.get("/<clip_id>/thumbnail.jpg")
@access.data
def thumbnail(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    source = _source()
    if source.replica is not None:
        _indexed(source, clip_id)
    try:
        data = source.replica.thumbnail(clip_id, identities()) if source.replica else \
            read_thumbnail(source.clips_dir, clip_id, identities())
    except AgeError:
        abort(422, "This thumbnail cannot be decrypted: it was damaged or tampered with.")
    if data is None:
        abort(404, "This clip has no thumbnail.")
    # Thumbnails on a timeline page are on record already: the page's entry lists them.
    record_access(f"thumbnail {source.subject(clip_id)}", "clip.thumbnail", clip=clip_id,
                  **_camera(source))
    return Response(data, mimetype="image/jpeg")


@blueprint.post("/<clip_id>/export")
@access.page
def export(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    source = _source()
    digest = hashlib.sha256()
    with _open(source, clip_id) as clip_video:
        try:
            for block in clip_video.iter_range(0, clip_video.size_bytes - 1, 1024 * 1024):
                digest.update(block)
        except AgeError as exc:
            abort(422, f"{TAMPERED} ({exc}).")
    viewer().audit.append(g.session.member, "clip.export", clip=clip_id,
                          sha256=digest.hexdigest(), truncated=clip_video.truncated,
                          address=request.remote_addr, **_camera(source))
    return render_template("export.html", clip_id=clip_id, sha256=digest.hexdigest(),
                           camera=source.camera,
                           size_bytes=clip_video.size_bytes, truncated=clip_video.truncated)


def _writable_source() -> ClipSource:
    """Deleting is the device's alone: a hub never removes anything from a replica."""
    source = _source()
    if source.replica is not None:
        abort(403, NO_DELETE_ON_HUB)
    return source


@blueprint.get("/<clip_id>/delete")
@access.page
def confirm_delete(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    row = _indexed(_writable_source(), clip_id)
    return render_template("confirm_delete.html", clip_id=clip_id,
                           started=local_date_time(row.start_us / 1e6, seconds=True))


@blueprint.post("/<clip_id>/delete")
@access.page
def delete(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    _writable_source()
    home = viewer().home
    try:
        viewer().audit.require_intact()
    except AuditLogCorrupt:
        abort(503, "The audit log is damaged: nothing is deleted until it is repaired.")
    with ClipIndex(home.index_file) as index:
        if not delete_clip(home.clips_dir, index, clip_id):
            abort(404, "No such clip.")
    g.session.metadata_cache.pop(clip_id, None)
    viewer().audit.append(g.session.member, "clip.delete", clip=clip_id,
                          address=request.remote_addr)
    return redirect(url_for("timeline.index"), code=303)
