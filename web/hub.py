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
"""

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from doorbell.config import ConfigError
from doorbell.storage.age.errors import AgeError, NoIdentityMatchError
from doorbell.storage.errors import KeyringError, RecipientsError, WrongPassphraseError
from doorbell.storage.home import Home
from doorbell.storage.index import ClipIndex
from doorbell.storage.keyring import Keyring, decrypt_identity
from doorbell.storage.recipients import check_member_name, read_recipients
from doorbell.storage.replica_folder import FolderScan, ReplicaFolder, refresh_index

from .unlock import UnlockBusy, Unlocker, decoy_identity_file

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


@dataclass
class HubCamera:
    name: str
    folder: ReplicaFolder
    index_file: Path  # in the hub's own data directory
    last_scan: FolderScan | None = None
    last_scan_s: float = 0.0
    day_counts: dict = field(default_factory=dict)  # index version -> days with clips
    lock: threading.Lock = field(default_factory=threading.Lock)

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
            cameras[name] = HubCamera(name, replica, hub_dir(home) / f"{name}.sqlite3")
        hub_dir(home).mkdir(mode=0o750, parents=True, exist_ok=True)
        return cls(cameras)

    def refresh(self) -> None:
        for camera in self.cameras.values():
            camera.refresh()

    def recovery_recipients(self) -> set[str]:
        """Every recipient the cameras encrypt to (recovery keys among them), as text."""
        found = set()
        for camera in self.cameras.values():
            with contextlib.suppress(OSError, RecipientsError, AgeError):
                found.update(str(r) for r in read_recipients(camera.folder.recipients_file))
        return found


def hub_dir(home: Home) -> Path:
    return home.root / "hub"


class HubUnlocker:
    """`Unlocker.unlock` over the cameras' replicas: the member's identity files (the same file
    copied from one household is opened once), as a KeySet. Every unlock costs as many scrypts
    as the member with the most distinct identity files needs (decoys make up the rest, at the
    slowest work factor, as on the device), so the time taken does not say which names exist
    or in how many households."""

    def __init__(self, hub: Hub, wait_s: float = 5.0) -> None:
        self._keyrings = [Keyring(c.folder.identities_dir) for c in hub.cameras.values()]
        self._unlockers = [Unlocker(c.folder.identities_dir, wait_s) for c in hub.cameras.values()]
        self._lock = threading.Lock()
        self._wait_s = wait_s

    @property
    def decoy_work_factor(self) -> int:
        """The slowest work factor among every camera's identity files (read now)."""
        return max(u.slowest_work_factor() for u in self._unlockers)

    def _files_of(self, member: str) -> list[bytes]:
        files: list[bytes] = []
        for keyring in self._keyrings:
            with contextlib.suppress(OSError, KeyringError, RecipientsError):
                data = keyring.path_for(member).read_bytes()
                if data not in files:
                    files.append(data)
        return files

    def _most_files(self) -> int:
        names = {name for keyring in self._keyrings for name in keyring.members()}
        return max((len(self._files_of(name)) for name in names), default=1)

    def unlock(self, member: str, passphrase: str) -> KeySet:
        if not self._lock.acquire(timeout=self._wait_s):
            raise UnlockBusy("another unlock is in progress")
        try:
            try:
                files = self._files_of(check_member_name(member))
            except RecipientsError:
                files = []
            opened = []
            for data in files:
                with contextlib.suppress(WrongPassphraseError, AgeError):
                    opened.append(decrypt_identity(data, passphrase))
            decoy = decoy_identity_file(self.decoy_work_factor)
            for _ in range(max(1, self._most_files()) - len(files)):
                with contextlib.suppress(WrongPassphraseError):  # same cost, always fails
                    decrypt_identity(decoy, passphrase)
        finally:
            self._lock.release()
        if not opened:
            raise WrongPassphraseError("wrong name or passphrase")
        return KeySet(opened)
