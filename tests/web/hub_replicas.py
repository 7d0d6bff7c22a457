"""Helpers for the hub tests: the real replicator in a thread, a second household, digests, and
the fixtures of a hub over two replicas (a test module takes them as `replicas =
hub_replicas.replicas`)."""

import hashlib
import re
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from doorbell.config import load_settings
from doorbell.storage.age.stream import CHUNK_SIZE
from doorbell.storage.clipwriter import ClipStore
from doorbell.storage.home import Home
from doorbell.storage.index import ClipIndex
from doorbell.storage.recipients import read_recipients
from doorbell.storage.replica import run_forever, source_files
from doorbell.storage.replica_progress import HEARTBEAT_FILE_NAME
from doorbell.storage.replica_target import (
    PinnedTarget,
    SftpTarget,
    connection_errors,
    fetch_host_key,
    open_sftp,
)
from doorbell.web import create_app
from tests.sftp_server import SftpServer
from tests.web.conftest import (
    MEMBER,
    PASSPHRASE,
    doorbell,
    local_today_at,
    make_jpeg,
    make_mp4,
    pseudo_random,
    write_clip,
)

NETWORKS = ("127.0.0.0/8",)
RECOVERY_KEY = re.compile(r"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+")


def digests(root: Path) -> dict[str, str]:
    """Every file under `root` by SHA-256, but the replicator's own heartbeat (not a copy)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != HEARTBEAT_FILE_NAME}


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


GROWING_BYTES = 5 * CHUNK_SIZE + 1234  # written, not sealed: 5 whole chunks authenticate


def every_entry(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root` with its size, mode and mtime: what a write changes."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mode,
                                             p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def replicas(template_home, tmp_path_factory):
    """Two doorbells (front: the test household's three clips and a clip still being written;
    back: its own household and one clip) replicated into one sshd folder each; the
    replicators are stopped once every file is on the replica, byte-identical."""
    base = tmp_path_factory.mktemp("hub")
    front = base / "front-home"
    shutil.copytree(template_home.root, front)
    back, back_recovery_key = second_household(base)
    back_clip = write_clip(back, local_today_at(9, 30), make_mp4(frames=30), make_jpeg(30),
                           {"trigger": "doorbell", "duration_s": 3.0})
    growing_video = pseudo_random(GROWING_BYTES, 7)
    with ClipIndex(Home(front).index_file) as index:
        store = ClipStore(Home(front).clips_dir, index, read_recipients(front / "recipients.txt"))
        growing = store.begin_clip(local_today_at(15, 45))
        growing.video.write(growing_video)
        growing.sync()  # as the recorder's fsync: the replicator copies what is on disk
    server = SftpServer(base / "sshd").start()
    try:
        replicate_until_copied(server, {"front": front, "back": back})
    finally:
        server.stop()
    yield SimpleNamespace(
        front=server.root / "front", back=server.root / "back",
        front_clips=template_home.clips, back_clip=back_clip, growing_id=growing.clip_id,
        growing_video=growing_video, back_recovery_key=back_recovery_key)


@pytest.fixture
def hub_home(replicas, tmp_path) -> Path:
    root = tmp_path / "hub-home"
    root.mkdir()
    (root / "config.toml").write_text(
        f'[hub]\ncameras = {{ front = "{replicas.front}", back = "{replicas.back}" }}\n')
    return root


@pytest.fixture
def hub_app(hub_home, runtime_dir):
    app = create_app(load_settings(hub_home), Home(hub_home), testing=True)
    return app
