"""Helpers for the hub tests: the real replicator in a thread, a second household, digests."""

import hashlib
import re
import threading
import time
from pathlib import Path

from doorbell.storage.replica import run_forever, source_files
from doorbell.storage.replica_target import (
    PinnedTarget,
    SftpTarget,
    connection_errors,
    fetch_host_key,
    open_sftp,
)
from tests.sftp_server import SftpServer
from tests.web.conftest import MEMBER, PASSPHRASE, doorbell

NETWORKS = ("127.0.0.0/8",)
RECOVERY_KEY = re.compile(r"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+")


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def source_digests(home: Path) -> dict[str, str]:
    """What the replicator copies of `home`, by SHA-256."""
    return {f.relative: hashlib.sha256(f.path.read_bytes()).hexdigest()
            for f in source_files(home)}


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


class Replicating:
    """The real replicator (storage.replica.run_forever) of one home into `remote_root` on the
    pinned sshd, in a thread, until close()."""

    def __init__(self, home: Path, server: SftpServer, remote_root: str) -> None:
        target = SftpTarget.parse(server.url)
        key = fetch_host_key(target, "127.0.0.1")
        pinned = PinnedTarget(target, key.get_name(), key.get_base64())
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_forever, kwargs=dict(
            home_root=home, remote_root=remote_root,
            connect=lambda: open_sftp(pinned, server.client_key, NETWORKS),
            poll_interval_s=0.2, retry_interval_s=0.3, should_stop=self.stop.is_set,
            connection_errors=connection_errors()), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


def replicate_until_copied(server: SftpServer, homes: dict[str, Path],
                           timeout_s: float = 30) -> None:
    """Replicate each home into `server.root / name` until every file is there, identical."""
    copies = [Replicating(home, server, f"{server.root}/{name}") for name, home in homes.items()]
    try:
        for name, home in homes.items():
            expected = source_digests(home)
            assert wait_until(lambda name=name, expected=expected:
                              digests(server.root / name) == expected, timeout_s), name
    finally:
        for copy in copies:
            copy.close()


def second_household(base: Path) -> tuple[Path, str]:
    """A doorbell set up on its own (its own keys): alice, same passphrase; its recovery key."""
    secret = base / "passphrase.txt"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    root = base / "back-home"
    result = doorbell("init", "--home", str(root), "--user", MEMBER, "--passphrase-file",
                      str(secret), "--work-factor", "15")
    assert result.returncode == 0, result.stdout + result.stderr
    return root, RECOVERY_KEY.findall(result.stdout)[0]
