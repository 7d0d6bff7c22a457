"""A doorbell killed mid-clip: the real `doorbell record` on a real video with the real
`doorbell replicate` into a real sshd; after `kill -9` of the recorder the hub, serving the
replica folder, plays the interrupted clip's authenticated prefix (and the sealed clips)."""

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doorbell.config import load_settings
from doorbell.storage.age.errors import TruncatedError
from doorbell.storage.age.reader import decrypt
from doorbell.storage.home import Home
from doorbell.storage.keyring import Keyring
from doorbell.web import create_app
from tests.helpers import clean_env
from tests.sftp_server import SftpServer
from tests.web.conftest import MEMBER, PASSPHRASE, PROJECT, doorbell, login, new_client

pytestmark = pytest.mark.slow

# People walking: motion at once. ../shared beside the checkout (the test skips without it).
VIDEO = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "video" / "vtest.avi"
GROWING_FOR_S = 3.0  # how long the partial grows before the kill


def _start(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "doorbell", *args], stdout=output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=PROJECT,
            env=clean_env(DOORBELL_HOME=str(home), DOORBELL_RUNTIME_DIR=str(home.parent / "run")))


def _authenticated_prefix(path: Path, identity) -> bytes:
    out = bytearray()
    with path.open("rb") as src:
        reader = decrypt(src, [identity])
        with contextlib.suppress(TruncatedError):
            while block := reader.read(64 * 1024):
                out += block
    return bytes(out)


def _same(source: Path, copy: Path) -> bool:
    return copy.exists() and copy.read_bytes() == source.read_bytes()


@pytest.fixture
def sshd(tmp_path):
    server = SftpServer(tmp_path / "sshd").start()
    yield server
    server.stop()


@pytest.mark.skipif(not VIDEO.is_file(), reason=f"{VIDEO} is not there")
def test_after_kill_9_mid_clip_the_hub_plays_the_interrupted_clips_prefix(sshd, tmp_path):
    home = tmp_path / "front-home"
    (tmp_path / "run").mkdir(mode=0o700)
    secret = tmp_path / "passphrase.txt"
    secret.write_text(PASSPHRASE + "\n")
    result = doorbell("init", "--home", str(home), "--user", MEMBER, "--passphrase-file",
                      str(secret), "--work-factor", "15")
    assert result.returncode == 0, result.stderr
    (home / "config.toml").write_text(
        "[recording]\nmax_clip_s = 5\n[retention]\nmin_free_bytes = 0\n"
        f'[replica]\nstate_dir = "{tmp_path / "replica-state"}"\n')
    paired = doorbell("replicate", "--home", str(home), "--pair", sshd.url)
    assert paired.returncode == 0, paired.stderr
    log = tmp_path / "processes.log"
    replicator = _start(["replicate", "--identity-file", str(sshd.client_key)], home, log)
    recorder = _start(["record", "--source", str(VIDEO)], home, log)
    clips = home / "clips"
    try:
        deadline = time.monotonic() + 90
        first_seen: dict[Path, float] = {}
        while True:
            assert recorder.poll() is None and replicator.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no sealed clip and a growing one within 90 s"
            now = time.monotonic()
            partials = list(clips.rglob("*.mp4.age.partial")) if clips.is_dir() else []
            for partial in partials:
                first_seen.setdefault(partial, now)
            sealed = list(clips.rglob("*.mp4.age")) if clips.is_dir() else []
            if sealed and partials and now - first_seen[partials[0]] >= GROWING_FOR_S:
                break
            time.sleep(0.05)
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
        partial = partials[0]
        replica_partial = sshd.root / partial.relative_to(home)
        device_size = partial.stat().st_size
        deadline = time.monotonic() + 10  # the replicator catches up with what was on disk
        while not (replica_partial.exists() and replica_partial.stat().st_size == device_size
                   and all(_same(s, sshd.root / s.relative_to(home)) for s in sealed)):
            assert time.monotonic() < deadline, "the replica never held the partial's bytes"
            time.sleep(0.1)
    finally:
        for process, sig in ((recorder, signal.SIGKILL), (replicator, signal.SIGTERM)):
            if process.poll() is None:
                process.send_signal(sig)
                process.wait(timeout=15)

    identity = Keyring(home / "identities").unlock(MEMBER, PASSPHRASE)
    expected = _authenticated_prefix(replica_partial, identity)
    assert expected[4:8] == b"ftyp" and len(expected) >= 64 * 1024
    assert _authenticated_prefix(partial, identity).startswith(expected)

    hub = tmp_path / "hub-home"
    hub.mkdir()
    (hub / "config.toml").write_text(f'[hub]\ncameras = {{ front = "{sshd.root}" }}\n')
    app = create_app(load_settings(hub), Home(hub), testing=True)
    client = new_client(app)
    assert login(client).status_code == 303
    clip_id = partial.name.removesuffix(".mp4.age.partial")
    assert f"/clips/{clip_id}?camera=front" in client.get("/").get_data(as_text=True)
    page = client.get(f"/clips/{clip_id}?camera=front").get_data(as_text=True)
    assert 'id="truncated-note"' in page
    video = client.get(f"/clips/{clip_id}/video?camera=front", headers={"Range": "bytes=0-"})
    assert video.status_code == 206
    assert video.headers["Content-Range"] == f"bytes 0-{len(expected) - 1}/{len(expected)}"
    assert video.data == expected
    for sealed_clip in sealed:  # and the sealed clips play whole
        sealed_id = sealed_clip.name.removesuffix(".mp4.age")
        whole = client.get(f"/clips/{sealed_id}/video?camera=front")
        copy = sshd.root / sealed_clip.relative_to(home)
        with copy.open("rb") as src:
            assert whole.status_code == 200 and whole.data == decrypt(src, [identity]).read()
