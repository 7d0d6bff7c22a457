"""Where a request's clips come from: the device's own home, or one camera's replica on a hub.

The timeline and the clip pages work on `ClipSource`s. On a doorbell there is one, its home;
on a hub (web/hub.py) one per camera, named by the `?camera=` of the request, whose files are
only ever read and whose index is the hub's own.
"""

from dataclasses import dataclass
from pathlib import Path

from flask import abort, g

from doorbell.storage.age.errors import AgeError
from doorbell.storage.clipvideo import ClipVideo, open_clip_video
from doorbell.storage.replica_folder import ReplicaFolder

from .common import clip_metadata, identities, viewer


@dataclass(frozen=True)
class ClipSource:
    camera: str | None  # None on the device itself
    clips_dir: Path
    index_file: Path
    day_cache: dict  # index version -> days with clips (see timeline._day_counts)
    replica: ReplicaFolder | None = None  # on a hub: the folder, read-only

    def open_video(self, clip_id: str) -> ClipVideo:
        if self.replica is not None:
            return self.replica.open_video(clip_id, identities())
        return open_clip_video(self.clips_dir, clip_id, identities())

    def subject(self, clip_id: str) -> str:
        """The clip as the audit log names it: `front/<id>` on a hub, `<id>` on the device."""
        return f"{self.camera}/{clip_id}" if self.camera else clip_id

    def metadata(self, clip_id: str) -> dict:
        """Decrypted metadata, cached in the session (common.clip_metadata on the device)."""
        if self.camera is None:
            return clip_metadata(clip_id)
        cache = g.session.metadata_cache
        key = (self.camera, clip_id)
        if key not in cache:
            try:
                cache[key] = self.replica.metadata(clip_id, identities()) or {}
            except AgeError as exc:
                cache[key] = {"error": f"metadata cannot be read: {exc}"}
        return cache[key]


def all_sources() -> list[ClipSource]:
    """Every source, a hub's replicas scanned first (at most every couple of seconds)."""
    v = viewer()
    if v.hub is None:
        return [ClipSource(None, v.home.clips_dir, v.home.index_file, v.day_counts_cache)]
    v.hub.refresh()
    return [_camera_source(camera) for camera in v.hub.cameras.values()]


def source_named(camera: str | None) -> ClipSource:
    """The request's source: on a hub the camera it names (404 if none or unknown); on the
    device its home (a `camera` there is ignored)."""
    v = viewer()
    if v.hub is None:
        return all_sources()[0]
    found = v.hub.cameras.get(camera or "")
    if found is None:
        abort(404, "No such camera on this hub.")
    found.refresh()
    return _camera_source(found)


def _camera_source(camera) -> ClipSource:
    return ClipSource(camera.name, camera.folder.clips_dir, camera.index_file, camera.day_counts,
                      camera.folder)
