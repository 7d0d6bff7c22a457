"""What a failed write changes: a full disk (or a failing card) never stops recording.

`WriteFaults` is told when a clip's write (its file, or the index's row) failed and when a clip
was saved. On a full disk it prunes at once, says so in one sentence (not one per failed write),
and keeps the interrupted clip's authenticated prefix indexed; a clip saved later makes the next
full disk news again. At start it puts right what a crash or power cut left.
"""

import errno
import logging

from doorbell.config import RetentionSettings
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.reconcile import reconcile

from .upkeep import Activity, Retention

log = logging.getLogger("doorbell.recorder")


class WriteFaults:
    def __init__(self, store: ClipStore, retention: Retention, activity: Activity):
        self.store = store
        self.retention = retention
        self.activity = activity
        self.disk_full = False  # a write found the disk full, and no clip was saved since

    def _reconcile(self):
        """Clips it indexes while the clock is not set yet are marked so (see Retention)."""
        return reconcile(self.store.clips_dir, self.store.index, self.store.clock_unsynced)

    def reconcile_at_start(self, settings: RetentionSettings) -> None:
        """Put right what a crash or power cut left (interrupted clips keep their prefix, the
        index follows the files) and log it; a disk too full for the index is pruned first."""
        try:
            report = self._reconcile()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            log.error("the disk is full: pruning the oldest clips before recording")
            self.disk_full = True
            self.retention.disk_full(settings)
            report = self._reconcile()
        for line in report.lines():
            log.warning("%s", line)

    def write_failed(self, exc: OSError, settings: RetentionSettings) -> None:
        """The open clip was abandoned after `exc`: prune if the disk is full, and index what
        reached the disk of the interrupted clip."""
        if exc.errno == errno.ENOSPC:
            if not self.disk_full:
                log.error("the disk is full: pruning the oldest clips and continuing")
                self.activity.emit("disk_low", reason="disk full")
            self.disk_full = True
            self.retention.disk_full(settings)  # first: reconcile needs room
        else:
            log.error("writing the clip failed (%s): it is kept up to where it was written", exc)
        try:
            self._reconcile()  # the interrupted clip's prefix
        except OSError as again:  # no room even for its index row: the next reconcile adds it
            log.error("the interrupted clip is not indexed yet (%s)", again)

    def clips_saved(self, count: int) -> None:
        if count:  # a clip reached the disk: a later full disk is news again
            self.disk_full = False
            self.retention.clip_saved()
