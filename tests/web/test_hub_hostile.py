"""A hub given a hostile replica folder: whoever can write to the NAS can write to the replica.

The replica here is a copy of the test household's home in the shape `doorbell replicate`
leaves it (clips, identities, recipients.txt; no index), which a test then tampers with as an
attacker on the NAS would: links out of the folder, a FIFO or a 300 MB file as an identity, an
identity at a huge work factor, a planted member, a huge interrupted clip. The hub must keep
serving its household, never read outside the folder, and say what it refuses.
"""

import json
import os
import re
import resource
import shutil
import threading
import time
from pathlib import Path

import pytest

from doorbell.config import load_settings
from doorbell.storage.age.reader import DecryptingReader
from doorbell.storage.age.stream import CHUNK_SIZE
from doorbell.storage.age.writer import encrypt
from doorbell.storage.home import Home
from doorbell.storage.keyring import Keyring
from doorbell.storage.recipients import read_recipients
from doorbell.storage.replica_folder import ReplicaFolder
from doorbell.web import create_app
from doorbell.web.unlock import decoy_identity_file
from tests.web import hub_replicas
from tests.web.conftest import FAST_WORK_FACTOR, MEMBER, login, new_client

PLANTED = "mallory"
PLANTED_PASSPHRASE = "quiet-lantern-over-moss-77"
GROWING_ID = "20261204T101500Z-abcdef"


@pytest.fixture
def replica(template_home, tmp_path) -> Path:
    root = tmp_path / "replica-front"
    shutil.copytree(template_home.root, root,
                    ignore=shutil.ignore_patterns("*.sqlite3*", "tls*", "runtime"))
    return root


@pytest.fixture
def hub_home(replica, tmp_path, runtime_dir) -> Path:
    root = tmp_path / "hub-home"
    root.mkdir()
    (root / "config.toml").write_text(f'[hub]\ncameras = {{ front = "{replica}" }}\n')
    return root


def hub(hub_home: Path):
    return create_app(load_settings(hub_home), Home(hub_home), testing=True)


def in_thread(work, timeout_s: float) -> bool:
    """Whether `work()` returned within `timeout_s`."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive()


def unblock(fifo: Path) -> None:
    """Let a reader blocked on `fifo` go (so a failing test does not hang the run)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def day_folder(replica: Path, clip_id: str) -> Path:
    return next((replica / "clips").rglob(f"{clip_id}.mp4.age")).parent


# -- 1. nothing outside the folder ----------------------------------------------------------


def test_a_clip_linked_from_outside_the_replica_is_neither_listed_nor_served(
        replica, hub_home, template_home, tmp_path):
    clip_id = template_home.clips["doorbell"].id
    outside = tmp_path / "outside"
    outside.mkdir()
    day = day_folder(replica, clip_id)
    shutil.move(day / f"{clip_id}.mp4.age", outside / "secret.mp4.age")
    os.symlink(outside / "secret.mp4.age", day / f"{clip_id}.mp4.age")
    client = new_client(hub(hub_home))
    assert login(client).status_code == 303
    assert clip_id not in client.get("/").get_data(as_text=True)
    video = client.get(f"/clips/{clip_id}/video?camera=front", headers={"Range": "bytes=0-99"})
    assert video.status_code == 404
    assert client.get(f"/clips/{clip_id}?camera=front").status_code == 404


def test_a_day_folder_linked_outside_the_replica_is_not_served(replica, hub_home,
                                                               template_home, tmp_path):
    clip_id = template_home.clips["motion"].id
    day = day_folder(replica, clip_id)
    outside = tmp_path / "elsewhere"
    shutil.move(day, outside)
    os.symlink(outside, day)
    client = new_client(hub(hub_home))
    assert login(client).status_code == 303
    assert clip_id not in client.get("/").get_data(as_text=True)
    video = client.get(f"/clips/{clip_id}/video?camera=front", headers={"Range": "bytes=0-99"})
    assert video.status_code == 404
    with pytest.raises(Exception, match="does not exist"):
        ReplicaFolder(replica).video_path(clip_id)


def test_a_thumbnail_linked_to_a_fifo_or_a_huge_metadata_file_stops_no_page(
        replica, hub_home, template_home, tmp_path):
    clip_id = template_home.clips["doorbell"].id
    day = day_folder(replica, clip_id)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (day / f"{clip_id}.jpg.age").unlink()
    os.symlink(fifo, day / f"{clip_id}.jpg.age")
    with open(day / f"{clip_id}.json.age", "r+b") as handle:
        handle.truncate(300 * 1024 * 1024)  # sparse
    client = new_client(hub(hub_home))
    assert login(client).status_code == 303
    box = {}
    try:
        assert in_thread(lambda: box.update(thumbnail=client.get(
            f"/clips/{clip_id}/thumbnail.jpg?camera=front")), 20), "the thumbnail blocked"
        assert box["thumbnail"].status_code == 404
        assert in_thread(lambda: box.update(page=client.get(
            f"/clips/{clip_id}?camera=front")), 20), "the clip page blocked"
        assert box["page"].status_code == 200
        assert "more than the recorder ever writes" in box["page"].get_data(as_text=True)
    finally:
        unblock(fifo)


# -- 2. identities/ cannot stop or exhaust the hub ------------------------------------------


def test_an_identity_linked_to_a_fifo_blocks_neither_the_hubs_start_nor_a_login(
        replica, hub_home, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.symlink(fifo, replica / "identities" / "zz.age")
    box = {}
    try:
        assert in_thread(lambda: box.update(app=hub(hub_home)), 20), "create_app blocked"
        client = new_client(box["app"])
        assert in_thread(lambda: box.update(login=login(client)), 20), "the login blocked"
        assert box["login"].status_code == 303
        assert in_thread(lambda: box.update(zz=login(client, member="zz")), 20)
        assert box["zz"].status_code == 401
    finally:
        unblock(fifo)


def test_a_300_mb_identity_file_is_never_read_whole(replica, hub_home):
    big = replica / "identities" / "zz.age"
    with open(big, "wb") as handle:
        handle.write(b"age-encryption.org/v1\n")
        handle.truncate(300 * 1024 * 1024)  # sparse: costs no disk
    with pytest.raises(OSError, match="larger than"):
        ReplicaFolder(replica).read_identity("zz")
    client = new_client(hub(hub_home))
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert login(client).status_code == 303
    assert login(client, member="zz", passphrase="anything-at-all-123").status_code == 401
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib
    assert grown_kib < 100 * 1024, f"peak memory grew by {grown_kib // 1024} MB"


def test_an_identity_planted_at_work_factor_20_does_not_slow_every_login(replica, hub_home,
                                                                         monkeypatch):
    (replica / "identities" / "zz.age").write_bytes(decoy_identity_file(20))
    app = hub(hub_home)
    unlocker = app.extensions["doorbell"].unlocker
    unlocker.max_work_factor = FAST_WORK_FACTOR + 1  # the hub's calibrated maximum, as a slow hub
    assert unlocker.decoy_work_factor == FAST_WORK_FACTOR + 1
    tried = []
    import doorbell.web.hub as hub_module
    real = hub_module.decrypt_identity

    def counted(data, passphrase):
        from io import BytesIO

        from doorbell.storage.age.header import read_header
        tried.append(int(read_header(BytesIO(data)).stanzas[0].args[1]))
        return real(data, passphrase)

    monkeypatch.setattr(hub_module, "decrypt_identity", counted)
    client = new_client(app)
    assert login(client, member="nobody", passphrase="wrong-passphrase-xx").status_code == 401
    assert login(client).status_code == 303
    assert tried and max(tried) <= FAST_WORK_FACTOR + 1, tried


# -- 3. removed members and planted identities -----------------------------------------------


def without_member(recipients: Path, member: str) -> None:
    lines = recipients.read_text().splitlines()
    at = lines.index(f"# member: {member}")
    del lines[at:at + 2]
    recipients.write_text("\n".join(lines) + "\n")


def test_a_member_removed_on_the_doorbell_no_longer_unlocks_the_hub(replica, hub_home):
    client = new_client(hub(hub_home))
    assert login(client).status_code == 303
    # Removed on the doorbell: the replicator copies the new recipients.txt, and the replica
    # keeps alice's identity file (a replica never deletes).
    without_member(replica / "recipients.txt", MEMBER)
    assert (replica / "identities" / f"{MEMBER}.age").is_file()
    assert login(new_client(hub(hub_home))).status_code == 401
    assert "1 key removed (refused from now on)" in \
        client.get("/status.json").get_json()["cameras"][0]["keys_changed"]


def plant(replica: Path) -> str:
    """An identity the attacker knows the passphrase of, with its key added to recipients.txt."""
    identity = Keyring(replica / "identities").create(PLANTED, PLANTED_PASSPHRASE,
                                                      FAST_WORK_FACTOR)
    with (replica / "recipients.txt").open("a") as handle:
        handle.write(f"# member: {PLANTED}\n{identity.recipient}\n")
    return str(identity.recipient)


def test_an_identity_planted_on_the_nas_is_refused_until_accepted_on_the_hub(replica,
                                                                            hub_home):
    app = hub(hub_home)  # first sight of the camera: its keys are pinned
    plant(replica)
    client = new_client(app)
    assert login(client, member=PLANTED, passphrase=PLANTED_PASSPHRASE).status_code == 401
    assert login(client).status_code == 303  # the household still unlocks
    page = client.get("/status").get_data(as_text=True)
    assert "The keys in front&#39;s recipients.txt changed since the hub pinned them: 1 key " \
           "added (refused until you accept them by deleting" in page
    status = client.get("/status.json").get_json()
    assert "1 key added" in status["cameras"][0]["keys_changed"]
    # Accepted by someone with access to the hub: the pin file deleted, the keys pinned anew.
    (hub_home / "hub" / "front.recipients.json").unlink()
    assert client.get("/status.json").get_json()["cameras"][0]["keys_changed"] is None
    other = new_client(app)
    assert login(other, member=PLANTED, passphrase=PLANTED_PASSPHRASE).status_code == 303


def test_an_identity_whose_key_is_not_in_recipients_is_refused(replica, hub_home):
    Keyring(replica / "identities").create(PLANTED, PLANTED_PASSPHRASE, FAST_WORK_FACTOR)
    client = new_client(hub(hub_home))
    assert login(client, member=PLANTED, passphrase=PLANTED_PASSPHRASE).status_code == 401
    assert login(client).status_code == 303


# -- 4. a growing or interrupted clip --------------------------------------------------------


def grow(replica: Path, chunks: int, handle=None):
    """Start (or go on with) an interrupted clip of whole chunks, never sealed."""
    if handle is None:
        day = replica / "clips" / "2026" / "12" / "04"
        day.mkdir(parents=True, exist_ok=True)
        file = open(day / f"{GROWING_ID}.mp4.age.partial", "wb")  # noqa: SIM115
        handle = (file, encrypt(file, read_recipients(replica / "recipients.txt")))
    file, writer = handle
    writer.write(os.urandom(chunks * CHUNK_SIZE + 100))
    file.flush()
    return handle


def test_each_range_of_a_growing_clip_authenticates_only_the_chunks_new_since(
        replica, hub_home, monkeypatch):
    handle = grow(replica, 60)
    client = new_client(hub(hub_home))
    assert login(client).status_code == 303
    opened = []
    real = DecryptingReader._open
    monkeypatch.setattr(DecryptingReader, "_open",
                        lambda self, *args, **kwargs: opened.append(1) or
                        real(self, *args, **kwargs))
    url = f"/clips/{GROWING_ID}/video?camera=front"

    def ranged() -> tuple[int, str]:
        opened.clear()
        time.sleep(2.1)  # the hub rescans a replica at most every 2 s
        response = client.get(url, headers={"Range": "bytes=0-1023"})
        assert response.status_code == 206, response.get_data(as_text=True)
        return len(opened), response.headers["Content-Range"]

    first, extent = ranged()
    assert first >= 60 and extent.endswith(f"/{60 * CHUNK_SIZE}")
    again, extent = ranged()
    assert again <= 6 and extent.endswith(f"/{60 * CHUNK_SIZE}")
    grow(replica, 10, handle)
    grown, extent = ranged()
    assert grown <= 16 and extent.endswith(f"/{70 * CHUNK_SIZE}"), (grown, extent)
    handle[0].close()


def test_an_interrupted_clip_bigger_than_any_recording_is_refused_in_one_sentence(
        replica, hub_home):
    file, _writer = grow(replica, 2)
    file.truncate(4 * 1024**3 + CHUNK_SIZE)  # sparse: costs no disk
    file.close()
    client = new_client(hub(hub_home))
    assert login(client).status_code == 303
    response = client.get(f"/clips/{GROWING_ID}/video?camera=front",
                          headers={"Range": "bytes=0-1023"})
    assert response.status_code == 422
    assert "this interrupted clip is 4.3 GB, more than any recording can be (4.3 GB), so it " \
           "is not played" in response.get_data(as_text=True)


# -- 5. the replication lag from the replicator's heartbeat ----------------------------------


def heartbeat(replica: Path, pass_age_s: float, written_ago_s: float, pending: int = 0) -> None:
    now_us = int(time.time() * 1e6)
    path = replica / "replica-heartbeat.json"
    path.write_text(json.dumps({"device_wall_us": now_us,
                                "last_complete_pass_wall_us": now_us - int(pass_age_s * 1e6),
                                "pending_files": pending}))
    written_s = time.time() - written_ago_s
    os.utime(path, (written_s, written_s))


def lag_cell(client) -> str:
    page = client.get("/status").get_data(as_text=True)
    row = page[page.index('id="camera-front"'):]
    return row[row.index('class="lag'):row.index("</td>")]


def test_the_lag_of_an_idle_doorbell_is_its_heartbeats_in_human_units(replica, hub_home):
    old_s = time.time() - 3600  # the newest clip file is an hour old: the doorbell is idle
    for path in replica.rglob("*"):
        os.utime(path, (old_s, old_s))
    client = new_client(hub(hub_home))
    assert login(client).status_code == 303
    heartbeat(replica, pass_age_s=1, written_ago_s=3)
    cell = lag_cell(client)
    assert re.search(r'class="lag ok">copied up to [4-6] s ago', cell), cell
    camera = client.get("/status.json").get_json()["cameras"][0]
    assert camera["heartbeat"] is True and 3.5 <= camera["lag_s"] <= 6
    heartbeat(replica, pass_age_s=0, written_ago_s=12 * 60, pending=3)
    cell = lag_cell(client)
    assert 'class="lag error">copied up to 12 minutes ago (3 files waiting)' in cell, cell


def test_without_a_heartbeat_the_lag_says_so_and_falls_back_to_the_newest_file(replica,
                                                                               hub_home):
    old_s = time.time() - 5 * 60
    for path in replica.rglob("*"):
        os.utime(path, (old_s, old_s))
    client = new_client(hub(hub_home))
    assert login(client).status_code == 303
    cell = lag_cell(client)
    assert 'class="lag muted">no heartbeat: last file copied 5 minutes ago' in cell, cell
    (replica / "replica-heartbeat.json").write_text('{"device_wall_us": "soon"}')
    assert "no heartbeat" in lag_cell(client)
    (replica / "replica-heartbeat.json").write_text(json.dumps({  # before a complete pass
        "device_wall_us": int(time.time() * 1e6), "last_complete_pass_wall_us": None,
        "pending_files": 7}))
    cell = lag_cell(client)
    assert 'class="lag error">no complete copy yet (7 files waiting)' in cell, cell


replicas = hub_replicas.replicas  # two doorbells copied by the real replicator into a real sshd


def test_the_real_replicators_heartbeat_is_the_hubs_lag(replicas, tmp_path, runtime_dir):
    assert (replicas.front / "replica-heartbeat.json").is_file()
    root = tmp_path / "hub-of-two"
    root.mkdir()
    (root / "config.toml").write_text(
        f'[hub]\ncameras = {{ front = "{replicas.front}", back = "{replicas.back}" }}\n')
    client = new_client(hub(root))
    assert login(client).status_code == 303
    cameras = client.get("/status.json").get_json()["cameras"]
    assert [c["heartbeat"] for c in cameras] == [True, True]
    assert all(c["lag_text"].startswith("copied up to ") and c["pending_files"] == 0
               for c in cameras), cameras
