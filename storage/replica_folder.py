"""Reading a replica folder (what `doorbell replicate` copies to a NAS), never writing to it.

A replica mirrors a doorbell's home: `clips/YYYY/MM/DD/ID.*.age`, the clip being recorded as
`ID.mp4.age.partial` (growing while it is copied, or left so when the doorbell died mid-clip),
`identities/`, `recipients.txt` and the audit log. It has no clip index (that is the device's
cache), so the hub keeps one per camera in its own data directory, filled from a scan of the
folder: this module only lists, stats and opens files for reading.

States, as the device's index has them: a sealed video with its metadata is "complete"; a
partial video (or a sealed one without metadata: an interrupted clip the device recovered) is
"truncated" and plays up to its authenticated prefix; a video without a valid age header is
"damaged".
"""

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .age.errors import PayloadError
from .age.identities import Identity
from .age.reader import decrypt
from .clipid import (
    METADATA_SUFFIX,
    VIDEO_SUFFIX,
    clip_paths,
    clip_start_us,
    split_clip_file_name,
)
from .clipvideo import ClipVideo, open_video_file
from .durable import PARTIAL_SUFFIX
from .errors import ClipNotFound
from .index import ClipIndex, IndexedClip
from .inspect import inspect_file
from .recipients import check_member_name

QUIET_S = 60.0  # a folder unchanged this long, with no partial in it, holds sealed files only
MAX_IDENTITY_BYTES = 8 * 1024  # a member's hybrid identity file is about 2.3 KB
MAX_RECIPIENTS_BYTES = 256 * 1024  # about 130 hybrid keys
HEARTBEAT_FILE = "replica-heartbeat.json"
MAX_HEARTBEAT_BYTES = 4 * 1024
MAX_THUMBNAIL_BYTES = 4 * 1024 * 1024  # the recorder's are tens of KB
MAX_METADATA_BYTES = 1024 * 1024  # the recorder's are a few KB


@dataclass(frozen=True, slots=True)
class ReplicaClip:
    id: str
    video: Path  # the sealed video, or the partial one if that is all the replica holds
    has_metadata: bool
    size_bytes: int  # every file of the clip on the replica


@dataclass(frozen=True, slots=True)
class Listing:
    """One folder's clip files as (id, suffix, is_partial, size, path), its newest file's
    time, and whether a later scan may reuse it."""

    mtime_ns: int
    clip_files: tuple[tuple[str, str, bool, int, Path], ...]
    newest_mtime_s: float | None
    settled: bool  # no partial in it, and unchanged for QUIET_S when it was listed


@dataclass(frozen=True, slots=True)
class FolderScan:
    clips: dict[str, ReplicaClip]
    newest_mtime_s: float | None  # the newest file of the replica: when it last received bytes
    listings: dict[Path, Listing]  # per folder, for the next scan


@dataclass(frozen=True, slots=True)
class ReplicaFolder:
    root: Path

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    @property
    def identities_dir(self) -> Path:
        return self.root / "identities"

    @property
    def recipients_file(self) -> Path:
        return self.root / "recipients.txt"

    @property
    def heartbeat_file(self) -> Path:
        return self.root / HEARTBEAT_FILE

    def problem(self) -> str | None:
        """Why this is not a replica folder the hub can show, in one sentence, or None."""
        if not self.root.is_dir():
            return f"{self.root} is not a folder"
        if not os.access(self.root, os.R_OK | os.X_OK):
            return f"{self.root} cannot be read by this user"
        return None

    def scan(self, previous: FolderScan | None = None) -> FolderScan:
        """Every clip in the replica. A day's folder that `previous` found settled and whose
        modification time is unchanged is not listed again: its files are sealed, and any
        new file or rename would have changed the folder's time (appends do not, so a folder
        is settled only once nothing in it changed for QUIET_S)."""
        old = previous.listings if previous is not None else {}
        now_s = time.time()
        listings: dict[Path, Listing] = {}
        clips: dict[str, dict] = {}
        newest: float | None = None
        for directory, mtime_ns in _folders(self.root, self.clips_dir):
            listing = old.get(directory)
            if listing is None or not listing.settled or listing.mtime_ns != mtime_ns:
                listing = _list(directory, mtime_ns, now_s, self.clips_dir)
            listings[directory] = listing
            if listing.newest_mtime_s is not None:
                newest = listing.newest_mtime_s if newest is None else \
                    max(newest, listing.newest_mtime_s)
            for clip_id, suffix, partial, size, path in listing.clip_files:
                entry = clips.setdefault(clip_id, {"video": None, "partial": None,
                                                   "metadata": False, "size": 0})
                entry["size"] += size
                if suffix == VIDEO_SUFFIX:
                    entry["partial" if partial else "video"] = path
                elif suffix == METADATA_SUFFIX and not partial:
                    entry["metadata"] = True
        found = {}
        for clip_id, entry in clips.items():
            video = entry["video"] or entry["partial"]
            if video is not None:
                found[clip_id] = ReplicaClip(clip_id, video, entry["metadata"], entry["size"])
        return FolderScan(found, newest, listings)

    def video_path(self, clip_id: str) -> Path:
        """The clip's sealed video, else its partial one; ClipNotFound if neither exists as a
        regular file inside the replica (a link, even to a file inside it, does not count)."""
        sealed = clip_paths(self.clips_dir, clip_id)["video"]
        for candidate in (sealed, sealed.with_name(sealed.name + PARTIAL_SUFFIX)):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(candidate.lstat().st_mode) and self.holds(candidate):
                    return candidate
        raise ClipNotFound(f"clip {clip_id} does not exist")

    def open_video(self, clip_id: str, identities: Sequence[Identity]) -> ClipVideo:
        """The clip's video: a growing or interrupted one as its authenticated prefix."""
        path = self.video_path(clip_id)
        try:
            handle = open_regular(path)
        except OSError:
            raise ClipNotFound(f"clip {clip_id} does not exist") from None
        return open_video_file(path, clip_id, identities, handle=handle)

    def thumbnail(self, clip_id: str, identities: Sequence[Identity]) -> bytes | None:
        """The clip's decrypted thumbnail, None if it has none (a link or a FIFO counts as
        none); a storage.age error if it does not authenticate or is too big to be one."""
        return self._read_small(clip_id, "thumbnail", MAX_THUMBNAIL_BYTES, identities)

    def metadata(self, clip_id: str, identities: Sequence[Identity]) -> dict | None:
        """The clip's decrypted metadata, as thumbnail() reads it."""
        data = self._read_small(clip_id, "metadata", MAX_METADATA_BYTES, identities)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise PayloadError(f"clip {clip_id} metadata authenticates but is not JSON") from None

    def _read_small(self, clip_id: str, kind: str, max_bytes: int,
                    identities: Sequence[Identity]) -> bytes | None:
        path = clip_paths(self.clips_dir, clip_id)[kind]
        try:
            if not self.holds(path):
                return None
            handle = open_regular(path)
        except OSError:
            return None
        with handle:
            size_bytes = os.fstat(handle.fileno()).st_size
            if size_bytes > max_bytes:
                raise PayloadError(f"the clip's {kind} file is {size_bytes} bytes, more than "
                                   f"the recorder ever writes ({max_bytes})")
            return decrypt(handle, identities).read()

    def holds(self, path: Path) -> bool:
        """Whether `path`'s folder, links resolved, is inside the replica (and so `path`, when
        it is no link itself)."""
        return Path(os.path.realpath(path.parent)).is_relative_to(os.path.realpath(self.root))

    def identity_names(self) -> list[str]:
        """The members with an identity file in the replica: regular files only, not links."""
        directory = self.identities_dir
        try:
            if not stat.S_ISDIR(directory.lstat().st_mode) or not self.holds(directory):
                return []
            entries = list(os.scandir(directory))
        except OSError:
            return []
        names = []
        for entry in entries:
            name = entry.name.removesuffix(".age")
            with contextlib.suppress(OSError, ValueError):
                if entry.name.endswith(".age") and entry.is_file(follow_symlinks=False) and \
                        check_member_name(name) == name:
                    names.append(name)
        return sorted(names)

    def read_identity(self, member: str) -> bytes:
        """A member's passphrase-wrapped identity file; OSError if it is no regular file in the
        replica or larger than MAX_IDENTITY_BYTES (a hostile replica's FIFO or 300 MB file)."""
        path = self.identities_dir / f"{check_member_name(member)}.age"
        if not self.holds(path):
            raise OSError(errno.EXDEV, f"{path} is outside the replica")
        return read_small_file(path, MAX_IDENTITY_BYTES)

    def read_text(self, path: Path, max_bytes: int) -> str:
        """A small text file of the replica (recipients.txt, the heartbeat), read as
        read_identity reads; OSError or UnicodeDecodeError (a ValueError) if it is not one."""
        if not self.holds(path):
            raise OSError(errno.EXDEV, f"{path} is outside the replica")
        return read_small_file(path, max_bytes).decode("utf-8")


def open_regular(path: Path):
    """`path` opened for reading if it is a regular file and no link (O_NOFOLLOW); never blocks
    on a FIFO or device (O_NONBLOCK, then refused). OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_small_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file (as open_regular), OSError if it holds more than max_bytes:
    never more than that is read."""
    with open_regular(path) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"{path} is larger than {max_bytes} bytes")
    return data


def refresh_index(scan: FolderScan, index: ClipIndex) -> int:
    """Make `index` (the hub's own, never a file in the replica) agree with `scan`: new clips
    added, sizes and states updated, rows of clips no longer there dropped, in one commit.
    Returns the number of rows changed."""
    rows = {row.id: row for row in index.clips()}
    changes: list[IndexedClip] = []
    for clip in scan.clips.values():
        row = rows.get(clip.id)
        if clip.video.name.endswith(PARTIAL_SUFFIX) or not clip.has_metadata:
            state = "truncated"
        else:
            state = "complete"
        if row is not None and row.size_bytes == clip.size_bytes and \
                row.state in (state, "damaged"):
            continue
        try:
            if not inspect_file(clip.video).recipients:
                state = "damaged"  # no valid age header: nothing in it decrypts
        except OSError:
            continue  # renamed (sealed) since the scan: the next refresh sees it
        changes.append(IndexedClip(clip.id, clip_start_us(clip.id), state, clip.size_bytes))
    gone = [clip_id for clip_id in rows if clip_id not in scan.clips]
    if changes or gone:
        with index.transaction():
            for clip in changes:
                index.put(clip)
            for clip_id in gone:
                index.remove(clip_id)
    return len(changes) + len(gone)


CLIP_FOLDER_DEPTH = 3  # clips/YYYY/MM/DD: a day's folder holds files only


def _folders(root: Path, clips_dir: Path) -> Iterator[tuple[Path, int]]:
    """`root` and the folders under it with their modification times, not following links;
    a day's folder under clips/ is not looked into (it holds the clip files only)."""
    try:
        top = root.stat(follow_symlinks=False).st_mtime_ns
    except OSError:
        return
    pending = [(root, top, -1 if root != clips_dir else 0)]
    while pending:
        directory, mtime_ns, depth = pending.pop()
        yield directory, mtime_ns
        if depth >= CLIP_FOLDER_DEPTH:
            continue
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    path = Path(entry.path)
                    below = 0 if path == clips_dir else depth + 1 if depth >= 0 else -1
                    pending.append((path, entry.stat(follow_symlinks=False).st_mtime_ns,
                                    below))


def _list(directory: Path, mtime_ns: int, now_s: float, clips_dir: Path) -> Listing:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        entries = []
    clip_files, newest, has_partial = [], None, False
    for entry in entries:
        with contextlib.suppress(OSError):
            if not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
            newest = info.st_mtime if newest is None else max(newest, info.st_mtime)
            has_partial = has_partial or entry.name.endswith(PARTIAL_SUFFIX)
            parsed = split_clip_file_name(entry.name)
            if parsed is not None and \
                    directory == clip_paths(clips_dir, parsed[0])["video"].parent:
                clip_files.append((*parsed, info.st_size, Path(entry.path)))
    settled = now_s - mtime_ns / 1e9 >= QUIET_S and not has_partial
    return Listing(mtime_ns, tuple(clip_files), newest, settled)
