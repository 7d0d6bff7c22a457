"""The hub: `doorbell serve` over replica folders (one per camera) instead of its own home.

`[hub] cameras = { front = "/srv/doorbell/front", back = "/srv/doorbell/back" }` in the hub's
config.toml. The folders are what `doorbell replicate` copies into (storage/replica_folder.py);
the hub only reads them. Everything it writes (its sessions are in memory; its audit log, rate
limits, TLS certificate and one clip index per camera) lives in its own data directory, the
`--home` it was started with, under `hub/` for the indexes.

Unlocking: a member's passphrase opens their wrapped identity in every camera's replica that
has one (doorbells set up apart are separate households); the session holds those identities
together as one `KeySet`. The recovery key of a doorbell (never on the device, nor in the
replica) unlocks its clips too, pasted into the hub's recovery page.

A replica is written by the doorbell, but whoever can write to the NAS can write to it too. So
a key unlocks on the hub only if it is in the camera's `recipients.txt` now *and* was when the
hub first saw that camera: the hub pins each camera's keys in its own data directory
(`hub/<camera>.recipients.json`). A member removed on the doorbell is refused at once (their
identity file stays on the replica, which never deletes); a key added to `recipients.txt`
(a new member, or one planted on the NAS) is refused until someone with access to the hub
accepts it by deleting that file, and the status page says so meanwhile.
"""

import contextlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from doorbell.config import ConfigError
from doorbell.storage.age.errors import AgeError, NoIdentityMatchError
from doorbell.storage.age.header import read_header
from doorbell.storage.age.recipients import MIN_SCRYPT_WORK_FACTOR
from doorbell.storage.durable import write_atomically
from doorbell.storage.errors import RecipientsError, WrongPassphraseError
from doorbell.storage.home import Home
from doorbell.storage.index import ClipIndex
from doorbell.storage.keyring import calibrate_work_factor, decrypt_identity
from doorbell.storage.recipients import check_member_name, read_recipients
from doorbell.storage.replica_folder import (
    MAX_RECIPIENTS_BYTES,
    FolderScan,
    ReplicaFolder,
    refresh_index,
)

from .unlock import UnlockBusy, decoy_identity_file

REFRESH_INTERVAL_S = 2.0  # a replica is scanned at most this often (a growing clip's pace)


class KeySet:
    """Several unlocked identities used as one (an age Identity): the first that matches a
    file's header unwraps it. For a member of more than one household, one per camera."""

    def __init__(self, identities: list) -> None:
        self.identities = list(identities)

    def unwrap(self, stanzas) -> bytes:
        for identity in self.identities:
            with contextlib.suppress(NoIdentityMatchError):
                return identity.unwrap(stanzas)
        raise NoIdentityMatchError("no identity of this session matches this file")

    def __repr__(self) -> str:
        return f"KeySet(<{len(self.identities)} identities>)"


@dataclass(frozen=True)
class KeyChange:
    """How a camera's recipients.txt differs from the keys the hub pinned for it."""

    added: frozenset[str]  # refused until accepted
    removed: frozenset[str]  # refused from now on

    def sentence(self, camera: str, pin_file: Path) -> str:
        parts = []
        if self.added:
            parts.append(f"{len(self.added)} key{'s' if len(self.added) > 1 else ''} added "
                         f"(refused until you accept them by deleting {pin_file} on the hub)")
        if self.removed:
            parts.append(f"{len(self.removed)} key{'s' if len(self.removed) > 1 else ''} "
                         f"removed (refused from now on)")
        return f"The keys in {camera}'s recipients.txt changed since the hub pinned them: " + \
            " and ".join(parts) + "."


@dataclass
class HubCamera:
    name: str
    folder: ReplicaFolder
    index_file: Path  # in the hub's own data directory
    pin_file: Path  # the camera's keys as the hub first saw them, in its own data directory
    last_scan: FolderScan | None = None
    last_scan_s: float = 0.0
    day_counts: dict = field(default_factory=dict)  # index version -> days with clips
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current_keys(self) -> frozenset[str]:
        """The public keys in the replica's recipients.txt now (none if it is unreadable)."""
        with contextlib.suppress(OSError, ValueError, RecipientsError, AgeError):
            self.folder.read_text(self.folder.recipients_file, MAX_RECIPIENTS_BYTES)  # checked
            return frozenset(str(r) for r in read_recipients(self.folder.recipients_file))
        return frozenset()

    def pinned_keys(self) -> frozenset[str] | None:
        """The keys the hub pinned for this camera, pinning the current ones if none yet."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return frozenset(json.loads(self.pin_file.read_text(encoding="utf-8"))["keys"])
        current = self.current_keys()
        if not current:
            return None
        write_atomically(self.pin_file, json.dumps(
            {"camera": self.name, "pinned_wall_us": int(time.time() * 1e6),
             "keys": sorted(current)}, indent=1).encode(), mode=0o640)
        return current

    def trusted_keys(self) -> frozenset[str]:
        """The keys that unlock this camera on the hub: in recipients.txt and pinned."""
        return self.current_keys() & (self.pinned_keys() or frozenset())

    def key_change(self) -> KeyChange | None:
        pinned, current = self.pinned_keys(), self.current_keys()
        if pinned is None or pinned == current:
            return None
        return KeyChange(frozenset(current - pinned), frozenset(pinned - current))

    def refresh(self, now_s: float | None = None) -> FolderScan:
        """Scan the replica (at most every REFRESH_INTERVAL_S) into the hub's own index."""
        now_s = time.monotonic() if now_s is None else now_s
        with self.lock:
            if self.last_scan is None or now_s - self.last_scan_s >= REFRESH_INTERVAL_S:
                scan = self.folder.scan(self.last_scan)
                if not _same_listings(scan, self.last_scan):  # else nothing can have changed
                    with ClipIndex(self.index_file) as index:
                        refresh_index(scan, index)
                self.last_scan, self.last_scan_s = scan, now_s
            return self.last_scan


def _same_listings(scan: FolderScan, previous: FolderScan | None) -> bool:
    """Whether `scan` reused every folder listing of `previous` (settled folders, unchanged)."""
    return previous is not None and scan.listings.keys() == previous.listings.keys() and \
        all(listing is previous.listings[d] for d, listing in scan.listings.items())


@dataclass
class Hub:
    cameras: dict[str, HubCamera]

    @classmethod
    def from_settings(cls, settings, home: Home) -> "Hub":
        """The hub of `settings.hub.cameras`; a ConfigError naming the camera's key if a
        folder is missing or unreadable (one sentence)."""
        cameras = {}
        for name, folder in settings.hub.cameras:
            replica = ReplicaFolder(Path(folder))
            problem = replica.problem()
            if problem is not None:
                raise ConfigError(f"hub.cameras.{name}: {problem} (has `doorbell replicate` "
                                  f"copied into it yet?).", key="hub.cameras")
            cameras[name] = HubCamera(name, replica, hub_dir(home) / f"{name}.sqlite3",
                                      hub_dir(home) / f"{name}.recipients.json")
        hub_dir(home).mkdir(mode=0o750, parents=True, exist_ok=True)
        for camera in cameras.values():
            camera.pinned_keys()  # first seen: pin its keys
        return cls(cameras)

    def refresh(self) -> None:
        for camera in self.cameras.values():
            camera.refresh()

    def recovery_recipients(self) -> set[str]:
        """Every recipient the cameras encrypt to (recovery keys among them) that the hub
        trusts (KeyChange), as text."""
        return {key for camera in self.cameras.values() for key in camera.trusted_keys()}


def hub_dir(home: Home) -> Path:
    return home.root / "hub"


class HubUnlocker:
    """`Unlocker.unlock` over the cameras' replicas: the member's identity files (the same file
    copied from one household is opened once), as a KeySet of the identities whose key the hub
    trusts for a camera that has the file (KeyChange). Every unlock costs as many scrypts as the
    member with the most distinct identity files needs (decoys make up the rest, at the slowest
    work factor, as on the device), so the time taken does not say which names exist or in how
    many households. The decoys' work factor is capped at the hub's own calibrated one: a file
    planted at 2^20 would otherwise make every login take as long as it."""

    def __init__(self, hub: Hub, wait_s: float = 5.0, max_work_factor: int | None = None) -> None:
        self._cameras = list(hub.cameras.values())
        self._lock = threading.Lock()
        self._wait_s = wait_s
        self.max_work_factor = max(MIN_SCRYPT_WORK_FACTOR, max_work_factor or
                                   calibrate_work_factor())

    @property
    def decoy_work_factor(self) -> int:
        """The slowest work factor among every camera's identity files (read now), at most
        max_work_factor."""
        factors = [MIN_SCRYPT_WORK_FACTOR]
        for camera in self._cameras:
            for name in camera.folder.identity_names():
                with contextlib.suppress(OSError, ValueError, IndexError, AgeError):
                    stanza = read_header(io.BytesIO(camera.folder.read_identity(name))).stanzas[0]
                    if stanza.type == "scrypt":
                        factors.append(int(stanza.args[1]))
        return min(max(factors), self.max_work_factor)

    def _files_of(self, member: str, trusted: dict[str, frozenset[str]] | None = None
                  ) -> dict[bytes, frozenset[str]]:
        """The member's distinct identity files, each with the keys `trusted` (per camera)
        for the cameras whose replica holds it."""
        files: dict[bytes, frozenset[str]] = {}
        for camera in self._cameras:
            with contextlib.suppress(OSError, RecipientsError):
                data = camera.folder.read_identity(member)
                files[data] = files.get(data, frozenset()) | \
                    (trusted or {}).get(camera.name, frozenset())
        return files

    def _most_files(self) -> int:
        names = {name for camera in self._cameras for name in camera.folder.identity_names()}
        return max((len(self._files_of(name)) for name in names), default=1)

    def unlock(self, member: str, passphrase: str) -> KeySet:
        if not self._lock.acquire(timeout=self._wait_s):
            raise UnlockBusy("another unlock is in progress")
        try:
            trusted = {camera.name: camera.trusted_keys() for camera in self._cameras}
            try:
                files = self._files_of(check_member_name(member), trusted)
            except RecipientsError:
                files = {}
            opened = []
            for data, trusted in files.items():
                with contextlib.suppress(WrongPassphraseError, AgeError):
                    identity = decrypt_identity(data, passphrase)
                    if str(identity.recipient) in trusted:
                        opened.append(identity)
            decoy = decoy_identity_file(self.decoy_work_factor)
            for _ in range(max(1, self._most_files()) - len(files)):
                with contextlib.suppress(WrongPassphraseError):  # same cost, always fails
                    decrypt_identity(decoy, passphrase)
        finally:
            self._lock.release()
        if not opened:
            raise WrongPassphraseError("wrong name or passphrase")
        return KeySet(opened)
