"""Writing clips: the recorder's side of the store. Public keys only.

A clip is three age files in clips/YYYY/MM/DD/: the fragmented MP4 video, a JPEG thumbnail and
JSON metadata. The video is streamed: every byte the encoder produces goes straight into the
age writer, and the file is fsynced at least every `fsync_interval_s`. A power cut loses at
most that much of the clip in progress, plus the chunk not yet sealed (up to 64 KiB) and
whatever the muxer still holds; the header is durable from the moment the clip is begun
(see storage.durable for the numbered invariants).
"""

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from .age import X25519Recipient, encrypt
from .clipid import clip_paths, clip_start_us, new_clip_id
from .deletion import delete_clip
from .durable import commit_partial, create_partial, fsync_directory
from .index import ClipIndex, IndexedClip


class _SyncedFile:
    """A file object that fsyncs itself when `interval_s` has passed since the last fsync.

    The file is created by the first write (the age header and nonce, in one write), so that
    no crypto runs between creating it and giving it the header.
    """

    def __init__(self, create: Callable[[], BinaryIO], interval_s: float,
                 clock: Callable[[], float]):
        self._create = create
        self._handle: BinaryIO | None = None
        self._interval_s = interval_s
        self._clock = clock
        self._last_sync = clock()
        self._dirty = False
        self.bytes_written = 0

    def write(self, data) -> int:
        if self._handle is None:
            self._handle = self._create()
        written = self._handle.write(data)
        self.bytes_written += len(data)
        self._dirty = True
        self.sync_if_due()
        return written

    def sync_if_due(self) -> None:
        if self._dirty and self._clock() - self._last_sync >= self._interval_s:
            self.sync()

    def flush(self) -> None:
        self._handle.flush()

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._last_sync = self._clock()
        self._dirty = False

    def close(self) -> None:
        self._handle.close()


def _write_small_encrypted(path: Path, data: bytes, recipients: Sequence[X25519Recipient]) -> int:
    with create_partial(path) as handle:
        writer = encrypt(handle, recipients)
        writer.write(data)
        writer.close()
        handle.flush()
        os.fsync(handle.fileno())
        size = handle.tell()
    commit_partial(path)
    return size


class ClipWriter:
    """One clip being recorded. `video` is the file-like object the encoder writes into."""

    def __init__(
        self,
        store: "ClipStore",
        clip_id: str,
        fsync_interval_s: float,
        clock: Callable[[], float],
    ):
        self.clip_id = clip_id
        self._store = store
        self._paths = clip_paths(store.clips_dir, clip_id)
        # The keys in force when the clip began: a change of recipients.txt mid-clip applies
        # from the next clip, so the video, thumbnail and metadata of one clip always match.
        self.recipients = list(store.recipients)
        # The clock's state when it began (see ClipStore.clock_changed).
        self._clock_unsynced, self._clock_epoch = store.clock_unsynced, store.clock_epoch
        video_path = self._paths["video"]
        self._file = _SyncedFile(lambda: create_partial(video_path), fsync_interval_s, clock)
        self.video = encrypt(self._file, self.recipients)
        # The header reaches the disk now, with the file's name: a crash in the clip's first
        # chunk leaves a truncated clip with an empty prefix, not a file with nothing in it.
        self._file.sync()
        fsync_directory(video_path.parent)
        self._finished = False

    def sync(self) -> None:
        self._file.sync()

    def sync_if_due(self) -> None:
        """Called every frame: fsync what reached the file if the interval has passed."""
        self._file.sync_if_due()

    def finish(self, thumbnail_jpeg: bytes | None, metadata: dict) -> IndexedClip:
        """Seal the video, write thumbnail and metadata, then commit, in the durable order."""
        if self._finished:
            raise RuntimeError("clip already finished")
        self._finished = True
        recipients = self.recipients
        size = 0
        if thumbnail_jpeg is not None:
            size += _write_small_encrypted(self._paths["thumbnail"], thumbnail_jpeg, recipients)
        meta = json.dumps({"id": self.clip_id, **metadata}, sort_keys=True).encode()
        size += _write_small_encrypted(self._paths["metadata"], meta, recipients)
        self.video.close()
        self._file.sync()
        size += self._file.bytes_written
        self._file.close()
        commit_partial(self._paths["video"])  # the video's rename is the clip's commit point
        # Begun before the clock was set, or it was set (or jumped) while the clip was open:
        # its start is a time of the clock before, so retention must not age it by it.
        unsynced = self._clock_unsynced or self._store.clock_epoch != self._clock_epoch
        clip = IndexedClip(self.clip_id, clip_start_us(self.clip_id), "complete", size,
                           clock_unsynced=unsynced)
        self._store.index.put(clip)
        return clip

    def abandon(self) -> None:
        """Stop without sealing (the process is going down hard): leave the durable prefix."""
        if not self._finished:
            self._finished = True
            try:
                self._file.sync()
            finally:  # closed even when the last bytes do not fit (a full disk)
                self._file.close()


class ClipStore:
    """The write side of clips/: begin clips (and delete them). Never decrypts."""

    def __init__(
        self,
        clips_dir: Path,
        index: ClipIndex,
        recipients: Sequence[X25519Recipient],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.clips_dir = clips_dir
        self.index = index
        self.set_recipients(recipients)
        self._clock = clock
        # Whether the wall clock is not yet trustworthy (before NTP), and how many times it
        # changed: clips begun before it was set are indexed as such (see clock_changed).
        self.clock_unsynced = False
        self.clock_epoch = 0

    def set_recipients(self, recipients: Sequence[X25519Recipient]) -> None:
        """Encrypt clips begun from now on to `recipients`; a clip already open keeps its own."""
        if not recipients:
            raise ValueError("a clip store needs at least one recipient")
        self.recipients = list(recipients)

    def clock_changed(self, unsynced: bool) -> None:
        """The recorder's news about the wall clock: `unsynced` while it is not set yet, False
        once it is (or after it jumped). A clip begun while it was unsynced, or open when it
        changed, is indexed with clock_unsynced, so that retention does not age it by a date
        read from the clock before."""
        self.clock_unsynced = unsynced
        self.clock_epoch += 1

    def begin_clip(self, start_us: int, fsync_interval_s: float = 2.0) -> ClipWriter:
        """Start a clip whose first frame is at `start_us` (µs since the epoch, UTC)."""
        return ClipWriter(self, new_clip_id(start_us), fsync_interval_s, self._clock)

    def delete(self, clip_id: str) -> bool:
        """Remove a clip (storage.deletion.delete_clip). True if anything was removed."""
        return delete_clip(self.clips_dir, self.index, clip_id)
