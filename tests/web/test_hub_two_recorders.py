"""Two doorbells, one hub, all real processes: `doorbell record` on a real video at the front and
at the back door, each with its own `doorbell replicate` into its own folder on one real sshd,
and a hub serving both folders: one timeline holds both cameras' clips, the camera filter
narrows it, and a clip of each camera plays whole with the member's one passphrase."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doorbell.config import load_settings
from doorbell.storage.age.reader import decrypt
from doorbell.storage.home import Home
from doorbell.storage.keyring import Keyring
from doorbell.web import create_app
from tests.helpers import clean_env
from tests.sftp_server import SftpServer
from tests.web.conftest import MEMBER, PASSPHRASE, PROJECT, doorbell, login, new_client
from tests.web.hub_replicas import digests, source_digests

pytestmark = pytest.mark.slow

VIDEO = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "video" / "vtest.avi"
CAMERAS = ("front", "back")
CLIP_ID = re.compile(r'/clips/([0-9TZ]+-[0-9a-f]+)\?camera=(front|back)')


def _start(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "doorbell", *args], stdout=output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=PROJECT,
            env=clean_env(DOORBELL_HOME=str(home), DOORBELL_RUNTIME_DIR=str(home / "run")))


@pytest.fixture
def sshd(tmp_path):
    server = SftpServer(tmp_path / "sshd").start()
    yield server
    server.stop()


def _doorbell_home(base: Path, camera: str, sshd: SftpServer) -> Path:
    """An initialised home (alice, her usual passphrase: a member of both households) paired
    with its own folder on the server."""
    home = base / f"{camera}-home"
    secret = base / "passphrase.txt"
    secret.write_text(PASSPHRASE + "\n")
    result = doorbell("init", "--home", str(home), "--user", MEMBER, "--passphrase-file",
                      str(secret), "--work-factor", "15")
    assert result.returncode == 0, result.stderr
    (home / "run").mkdir(mode=0o700)
    (home / "config.toml").write_text(
        f'[camera]\nname = "{camera}"\n[recording]\nmax_clip_s = 8\n'
        f'[retention]\nmin_free_bytes = 0\n[replica]\nstate_dir = "{base / camera}-state"\n')
    (sshd.root / camera).mkdir()
    paired = doorbell("replicate", "--home", str(home), "--pair", f"{sshd.url}/{camera}")
    assert paired.returncode == 0, paired.stderr
    return home


@pytest.mark.skipif(not VIDEO.is_file(), reason=f"{VIDEO} is not there (../shared/testdata)")
def test_two_recorders_replicating_into_one_hub_share_one_timeline(sshd, tmp_path):
    homes = {camera: _doorbell_home(tmp_path, camera, sshd) for camera in CAMERAS}
    log = tmp_path / "processes.log"
    recorders = {camera: _start(["record", "--source", str(VIDEO), "--until-eof"], home, log)
                 for camera, home in homes.items()}
    replicators = {camera: _start(["replicate", "--identity-file", str(sshd.client_key)], home,
                                  log) for camera, home in homes.items()}
    try:
        for recorder in recorders.values():
            assert recorder.wait(timeout=240) == 0, log.read_text()[-3000:]
        deadline = time.monotonic() + 60  # each replicator catches up with its recorder
        while not all(digests(sshd.root / camera) == source_digests(home)
                      for camera, home in homes.items()):
            assert all(r.poll() is None for r in replicators.values()), log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the replicas never matched the devices"
            time.sleep(0.2)
    finally:
        for process in (*recorders.values(), *replicators.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)

    hub = tmp_path / "hub-home"
    hub.mkdir()
    (hub / "config.toml").write_text(
        "[hub]\ncameras = { " + ", ".join(f'{c} = "{sshd.root / c}"' for c in CAMERAS) + " }\n")
    client = new_client(create_app(load_settings(hub), Home(hub), testing=True))
    assert login(client).status_code == 303  # one passphrase opens both households' keys

    timeline = client.get("/").get_data(as_text=True)
    listed = set(CLIP_ID.findall(timeline))
    for camera, home in homes.items():
        on_device = {p.name.removesuffix(".mp4.age") for p in (home / "clips").rglob("*.mp4.age")}
        assert on_device, f"the {camera} recorder saved no clip"
        assert {clip for clip, cam in listed if cam == camera} == on_device, camera
    front_only = set(CLIP_ID.findall(client.get("/?camera=front").get_data(as_text=True)))
    assert front_only and {cam for _clip, cam in front_only} == {"front"}

    for camera, home in homes.items():  # the newest clip of each camera plays whole
        clip_id = max(clip for clip, cam in listed if cam == camera)
        replica_file = next((sshd.root / camera / "clips").rglob(f"{clip_id}.mp4.age"))
        identity = Keyring(home / "identities").unlock(MEMBER, PASSPHRASE)
        with replica_file.open("rb") as src:
            expected = decrypt(src, [identity]).read()
        video = client.get(f"/clips/{clip_id}/video?camera={camera}")
        assert video.status_code == 200 and video.data == expected, camera
        assert expected[4:8] == b"ftyp"
        part = client.get(f"/clips/{clip_id}/video?camera={camera}",
                          headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.data == expected[100:1100]
