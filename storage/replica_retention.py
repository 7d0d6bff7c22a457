"""The replica's own retention, applied on the SFTP server by the replicator.

The device's retention and deletions never reach the replica (storage.replica never deletes a
file because the device did). The replica keeps clips for its own `max_age_days` and within its
own `max_total_bytes` (0: no limit), deleting whole clips (video, thumbnail, metadata and any
`.partial`) under `clips/` only, oldest first. It never deletes:

* the clip being recorded (an id with a `.partial` on the device now);
* the newest clip on the replica (a size budget smaller than one clip keeps that one);
* anything outside `clips/`: the audit log, recipients.txt and the wrapped identities stay.

Memory: one day directory's listing at a time plus one (day, bytes) pair per day on the
replica; never a list of every clip.

Age is not measured against the device's wall clock alone, which can be wrong (no battery
clock, a bad RTC, an unauthenticated NTP answer on the LAN): a clock a year ahead must not
wipe the replica. A clip's age counts back from `age_reference_us`: the earlier of now and the
start of the newest clip on the replica or the device, so one pass never deletes more than the
clips older than `max_age_days` before the newest clip; and while the clock is known to be
unsynchronised (doorbell.clock_sync) no clip is deleted or left uncopied for its age (the size
budget still applies).

So that a clip the replica's retention removed is not copied again from the device (whose own
retention may keep it longer), the replicator copies no clip at or before `deleted_through`,
the newest clip id this retention deleted (clip ids sort by start time), nor one older than
`max_age_days` (it logs that it did not, once per clip). `deleted_through` is kept in the
replicator's state directory (RETENTION_FILE_NAME), so a restart does not copy those clips
again.
"""

import contextlib
import json
import logging
import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .clipid import clip_start_us
from .errors import InvalidClipId

log = logging.getLogger(__name__)

RETENTION_FILE_NAME = "retention.json"
US_PER_DAY = 86_400 * 1_000_000
CLIP_ID_LENGTH = len("YYYYMMDDTHHMMSSZ-xxxxxx")


def age_reference_us(now_us: int, newest_clip_id: str | None,
                     clock_synchronised: bool = True) -> int | None:
    """When clip ages count back from (see the module docstring); None: no age rule now."""
    if not clock_synchronised:
        return None
    if newest_clip_id is None:
        return now_us
    return min(now_us, clip_start_us(newest_clip_id))


def clip_id_of(name: str) -> str | None:
    """The clip id a file under clips/ belongs to (ID.mp4.age, ID.jpg.age.partial ...)."""
    candidate = name[:CLIP_ID_LENGTH]
    if len(name) <= CLIP_ID_LENGTH or name[CLIP_ID_LENGTH] != ".":
        return None
    try:
        clip_start_us(candidate)
    except InvalidClipId:
        return None
    return candidate


@dataclass(slots=True)
class RetentionResult:
    deleted_clips: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept_bytes: int = 0


@dataclass(slots=True)
class ReplicaRetention:
    max_age_days: int = 0  # 0: no age limit
    max_total_bytes: int = 0  # 0: no size limit
    deleted_through: str | None = None  # the newest clip id deleted here so far
    state_path: Path | None = None  # where deleted_through is kept (None: memory only)

    @classmethod
    def load(cls, state_dir: Path, max_age_days: int, max_total_bytes: int) -> "ReplicaRetention":
        path = Path(state_dir) / RETENTION_FILE_NAME
        try:
            through = json.loads(path.read_text())["deleted_through"]
            if through is not None:
                through = clip_id_of(f"{through}.") and through
        except FileNotFoundError:
            through = None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s (%s): clips the replica deleted may be copied again", path,
                        exc)
            through = None
        return cls(max_age_days, max_total_bytes, through, path)

    def _save(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            self.state_path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"deleted_through": self.deleted_through}) + "\n")
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            tmp.replace(self.state_path)
        except OSError as exc:
            log.error("cannot write %s: %s", self.state_path, exc.strerror or exc)

    def copies(self, clip_id: str, reference_us: int | None) -> bool:
        """Whether the replicator should copy this clip at all (see the module docstring)."""
        return self.not_copied_because(clip_id, reference_us) is None

    def not_copied_because(self, clip_id: str, reference_us: int | None) -> str | None:
        """Why the replicator does not copy this clip, None if it does; `reference_us` is
        age_reference_us()."""
        if self.deleted_through is not None and clip_id <= self.deleted_through:
            return "the replica's retention deleted it"
        if self._too_old(clip_id, reference_us):
            return (f"it is older than the replica's max_age_days ({self.max_age_days} days "
                    f"before the newest clip)")
        return None

    def _too_old(self, clip_id: str, reference_us: int | None) -> bool:
        return self.max_age_days > 0 and reference_us is not None and \
            clip_start_us(clip_id) < reference_us - self.max_age_days * US_PER_DAY

    def apply(self, sftp, clips_root: str, now_us: int, growing_ids: set[str],
              newest_device_clip: str | None = None,
              clock_synchronised: bool = True) -> RetentionResult:
        """Delete on the server what the replica's retention says, oldest first."""
        result = RetentionResult()
        if self.max_age_days == 0 and self.max_total_bytes == 0:
            return result
        days = list(_day_directories(sftp, clips_root))  # [(path, bytes)], oldest first
        total_bytes = sum(size for _, size in days)
        newest = _newest_clip(sftp, days)
        reference_us = age_reference_us(now_us, max(filter(None, (newest, newest_device_clip)),
                                                    default=None), clock_synchronised)
        for day, _ in days:
            clips = _clips_in(sftp, day)  # {id: [(name, bytes)]}, one day only
            for clip_id in sorted(clips):
                over_budget = self.max_total_bytes > 0 and total_bytes > self.max_total_bytes
                if not over_budget and not self._too_old(clip_id, reference_us):
                    result.kept_bytes = total_bytes
                    return result  # everything after this one is newer: nothing more to do
                if clip_id in growing_ids or clip_id == newest:
                    continue
                for name, size in clips[clip_id]:
                    with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                        sftp.remove(posixpath.join(day, name))
                    total_bytes -= size
                    result.deleted_bytes += size
                result.deleted_clips.append(clip_id)
                self._deleted(clip_id)
        result.kept_bytes = total_bytes
        return result

    def _deleted(self, clip_id: str) -> None:
        if self.deleted_through is None or clip_id > self.deleted_through:
            self.deleted_through = clip_id
            self._save()


def _listdir(sftp, path: str) -> list:
    try:
        return sftp.listdir_attr(path)
    except FileNotFoundError:
        return []


def _subdirectories(sftp, path: str, digits: int) -> list[str]:
    return sorted(posixpath.join(path, entry.filename) for entry in _listdir(sftp, path)
                  if stat.S_ISDIR(entry.st_mode or 0) and len(entry.filename) == digits
                  and entry.filename.isdigit())


def _day_directories(sftp, clips_root: str):
    """(clips/YYYY/MM/DD, bytes of clip files in it), oldest day first."""
    for year in _subdirectories(sftp, clips_root, 4):
        for month in _subdirectories(sftp, year, 2):
            for day in _subdirectories(sftp, month, 2):
                size = sum(entry.st_size or 0 for entry in _listdir(sftp, day)
                           if stat.S_ISREG(entry.st_mode or 0)
                           and clip_id_of(entry.filename) is not None)
                yield day, size


def _clips_in(sftp, day: str) -> dict[str, list[tuple[str, int]]]:
    clips: dict[str, list[tuple[str, int]]] = {}
    for entry in _listdir(sftp, day):
        clip_id = clip_id_of(entry.filename)
        if clip_id is not None and stat.S_ISREG(entry.st_mode or 0):
            clips.setdefault(clip_id, []).append((entry.filename, entry.st_size or 0))
    return clips


def _newest_clip(sftp, days: list[tuple[str, int]]) -> str | None:
    for day, _ in reversed(days):
        clips = _clips_in(sftp, day)
        if clips:
            return max(clips)
    return None
