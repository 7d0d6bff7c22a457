"""One clip: the player page, the video by HTTP Range, thumbnail, export and delete."""

import hashlib

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for

from doorbell.storage.age.errors import AgeError
from doorbell.storage.age.reader import recover_prefix
from doorbell.storage.clipid import clip_paths
from doorbell.storage.clipreader import open_video, read_thumbnail
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.errors import ClipNotFound
from doorbell.storage.index import ClipIndex
from doorbell.storage.recipients import read_recipients

from .. import access
from ..ranges import UnsatisfiableRange, parse_range
from .common import clip_metadata, identities, local_time, valid_clip_id, viewer

blueprint = Blueprint("clips", __name__, url_prefix="/clips")

READ_BLOCK = 256 * 1024
TAMPERED = "This clip cannot be decrypted: it was damaged or tampered with"


def _open(clip_id: str):
    try:
        return open_video(viewer().home.clips_dir, clip_id, identities())
    except ClipNotFound:
        abort(404, "No such clip.")
    except AgeError as exc:
        abort(422, f"{TAMPERED} ({exc}).")


def _indexed(clip_id: str):
    with ClipIndex(viewer().home.index_file) as index:
        row = index.get(clip_id)
    if row is None:
        abort(404, "No such clip.")
    return row


@blueprint.get("/<clip_id>")
@access.page
def player(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    row = _indexed(clip_id)
    # Authenticate every chunk once here (about 10 ms for a typical clip), so the page can say
    # whether the clip is whole, interrupted (the recorder stopped) or damaged afterwards.
    try:
        with clip_paths(viewer().home.clips_dir, clip_id)["video"].open("rb") as handle:
            recovered = recover_prefix(handle, identities())
    except FileNotFoundError:
        abort(404, "No such clip.")
    except AgeError as exc:
        abort(422, f"{TAMPERED} ({exc}).")
    damaged = recovered.truncated and row.state == "complete"
    viewer().audit.append(g.session.member, "clip.view", clip=clip_id)
    return render_template(
        "clip.html", clip_id=clip_id, meta=clip_metadata(clip_id), row=row,
        started=local_time(row.start_us).strftime("%A %d %B %Y, %H:%M:%S"),
        truncated=recovered.truncated and not damaged, damaged=damaged,
        size_bytes=recovered.size_bytes,
    )


@blueprint.get("/<clip_id>/video")
@access.data
def video(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    opened = _open(clip_id)
    size = opened.size_bytes
    try:
        wanted = parse_range(request.headers.get("Range"), size)
    except UnsatisfiableRange:
        opened.close()
        response = Response(status=416)
        response.headers["Content-Range"] = f"bytes */{size}"
        return response
    start, length = (wanted.start, wanted.length) if wanted else (0, size)
    if wanted is None and not opened.truncated:
        # The whole body is asked for (a download): authenticate it all before the headers
        # promise its length, so damage anywhere is a clear 422, not a body that breaks off.
        try:
            whole = recover_prefix(opened.reader._src, identities())
        except AgeError as exc:
            opened.close()
            abort(422, f"{TAMPERED} ({exc}).")
        if whole.truncated:
            opened.close()
            abort(422, f"{TAMPERED}: it stops authenticating after {whole.size_bytes} bytes.")
    # Decrypt the first block before answering, so a damaged range gets a clear 422 rather
    # than a response that breaks off. Damage further on ends the stream early; the player's
    # next Range request then starts inside the damaged chunk and gets the 422.
    try:
        opened.reader.seek(start)
        first = opened.reader.read(min(READ_BLOCK, length))
    except AgeError as exc:
        opened.close()
        abort(422, f"{TAMPERED} ({exc}).")

    def body():
        try:
            if first:
                yield first
            remaining = length - len(first)
            while remaining > 0:
                block = opened.reader.read(min(READ_BLOCK, remaining))
                if not block:
                    break
                remaining -= len(block)
                yield block
        finally:
            opened.close()

    response = Response(body(), status=206 if wanted else 200, mimetype="video/mp4",
                        direct_passthrough=True)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Content-Length"] = str(length)
    if wanted:
        response.headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
    if request.args.get("download") == "1":
        response.headers["Content-Disposition"] = f'attachment; filename="{clip_id}.mp4"'
    return response


@blueprint.get("/<clip_id>/thumbnail.jpg")
@access.data
def thumbnail(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    try:
        data = read_thumbnail(viewer().home.clips_dir, clip_id, identities())
    except AgeError:
        abort(422, "This thumbnail cannot be decrypted: it was damaged or tampered with.")
    if data is None:
        abort(404, "This clip has no thumbnail.")
    return Response(data, mimetype="image/jpeg")


@blueprint.post("/<clip_id>/export")
@access.page
def export(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    opened = _open(clip_id)
    digest = hashlib.sha256()
    try:
        while block := opened.reader.read(1024 * 1024):
            digest.update(block)
    except AgeError as exc:
        abort(422, f"{TAMPERED} ({exc}).")
    finally:
        opened.close()
    viewer().audit.append(g.session.member, "clip.export", clip=clip_id,
                          sha256=digest.hexdigest(), truncated=opened.truncated,
                          address=request.remote_addr)
    return render_template("export.html", clip_id=clip_id, sha256=digest.hexdigest(),
                           size_bytes=opened.size_bytes, truncated=opened.truncated)


@blueprint.get("/<clip_id>/delete")
@access.page
def confirm_delete(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    row = _indexed(clip_id)
    return render_template("confirm_delete.html", clip_id=clip_id,
                           started=local_time(row.start_us).strftime("%d %B %Y, %H:%M:%S"))


@blueprint.post("/<clip_id>/delete")
@access.page
def delete(clip_id: str):
    clip_id = valid_clip_id(clip_id)
    home = viewer().home
    if not viewer().audit.verify().ok:
        abort(503, "The audit log is damaged: nothing is deleted until it is repaired.")
    with ClipIndex(home.index_file) as index:
        store = ClipStore(home.clips_dir, index, read_recipients(home.recipients_file))
        if not store.delete(clip_id):
            abort(404, "No such clip.")
    g.session.metadata_cache.pop(clip_id, None)
    viewer().audit.append(g.session.member, "clip.delete", clip=clip_id,
                          address=request.remote_addr)
    return redirect(url_for("timeline.index"), code=303)
