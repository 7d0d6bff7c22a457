"""The hub: `doorbell serve` over two cameras' replicas, filled by the real replicator over a
real OpenSSH sshd on loopback. One timeline holds both cameras' clips, both play by HTTP Range,
a growing (unsealed) clip plays up to its authenticated prefix, members and a recovery key
unlock, and nothing in a replica folder changes, whatever the session does."""

import hashlib
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from doorbell.config import ConfigError, load_settings
from doorbell.storage.age.stream import CHUNK_SIZE
from doorbell.storage.audit import AuditLog
from doorbell.storage.home import Home
from doorbell.web import create_app
from tests.web import hub_replicas
from tests.web.conftest import (
    ORIGIN,
    PASSPHRASE,
    doorbell,
    login,
    new_client,
    post_form,
)
from tests.web.hub_replicas import digests, every_entry

replicas = hub_replicas.replicas  # module-scoped: two doorbells replicated once per module
hub_home = hub_replicas.hub_home
hub_app = hub_replicas.hub_app


def csrf_of(client, path: str = "/settings") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]


def test_one_timeline_holds_both_cameras_and_both_play_by_range_without_writing_a_replica(
        replicas, hub_app, hub_home):
    before = {"front": (digests(replicas.front), every_entry(replicas.front)),
              "back": (digests(replicas.back), every_entry(replicas.back))}
    client = new_client(hub_app)
    assert client.get("/").status_code == 302  # locked: the login page, no set-up code
    unlocked = login(client)
    assert unlocked.status_code == 303, unlocked.get_data(as_text=True)[:500]

    today = client.get("/").get_data(as_text=True)
    front_ids = [replicas.front_clips["doorbell"].id, replicas.front_clips["motion"].id,
                 replicas.growing_id]
    for clip_id in front_ids:
        assert f"/clips/{clip_id}?camera=front" in today
    assert f"/clips/{replicas.back_clip.id}?camera=back" in today
    assert 'id="camera-filter"' in today
    only_back = client.get("/?camera=back").get_data(as_text=True)
    assert f"/clips/{replicas.back_clip.id}?camera=back" in only_back
    assert not any(clip_id in only_back for clip_id in front_ids)

    # both cameras' clips play by Range: the bytes are the recorded MP4's
    for camera, clip in (("front", replicas.front_clips["doorbell"]),
                         ("back", replicas.back_clip)):
        page = client.get(f"/clips/{clip.id}?camera={camera}")
        assert page.status_code == 200
        assert f"/clips/{clip.id}/video?camera={camera}" in page.get_data(as_text=True)
        part = client.get(f"/clips/{clip.id}/video?camera={camera}",
                          headers={"Range": "bytes=100-"})
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes 100-{len(clip.video) - 1}/{len(clip.video)}"
        assert part.data == clip.video[100:]
        thumb = client.get(f"/clips/{clip.id}/thumbnail.jpg?camera={camera}")
        assert thumb.status_code == 200 and thumb.data == clip.thumbnail
    # a clip asked for under the other camera is not there
    assert client.get(f"/clips/{replicas.back_clip.id}?camera=front").status_code == 404
    assert client.get(f"/clips/{replicas.back_clip.id}?camera=garage").status_code == 404

    # the clip still being written plays up to its authenticated prefix: 5 whole chunks
    growing = client.get(f"/clips/{replicas.growing_id}?camera=front").get_data(as_text=True)
    assert 'id="truncated-note"' in growing and "still being copied" in growing
    video = client.get(f"/clips/{replicas.growing_id}/video?camera=front",
                       headers={"Range": "bytes=0-"})
    assert video.status_code == 206
    assert video.data == replicas.growing_video[: 5 * CHUNK_SIZE]

    # deleting is refused on the hub, asked for either way
    token = csrf_of(client)
    clip_id = replicas.front_clips["motion"].id
    assert client.get(f"/clips/{clip_id}/delete?camera=front").status_code == 403
    refused = client.post(f"/clips/{clip_id}/delete?camera=front",
                          data={"csrf_token": token},
                          headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
    assert refused.status_code == 403
    assert "never deletes from a replica" in refused.get_data(as_text=True)
    assert "Delete…" not in client.get(f"/clips/{clip_id}?camera=front").get_data(as_text=True)
    # the device's own pages are not on a hub
    assert client.get("/live").status_code == 404
    assert client.get("/members").status_code == 404

    # the status page shows each camera's replication lag
    status = client.get("/status.json").get_json()
    lags = {c["name"]: c["lag_s"] for c in status["cameras"]}
    assert set(lags) == {"front", "back"}
    assert all(lag is not None and 0 <= lag < 600 for lag in lags.values()), lags
    page = client.get("/status").get_data(as_text=True)
    assert 'id="camera-front"' in page and 'id="camera-back"' in page

    # nothing in either replica changed; the hub's own state is in its own directory
    assert {"front": (digests(replicas.front), every_entry(replicas.front)),
            "back": (digests(replicas.back), every_entry(replicas.back))} == before
    assert (hub_home / "hub" / "front.sqlite3").is_file()
    assert (hub_home / "audit.jsonl").is_file()
    audit = (hub_home / "audit.jsonl").read_text()
    assert '"unlock"' in audit and "front/" + replicas.front_clips["doorbell"].id in audit


def test_a_doorbells_recovery_key_unlocks_its_clips_on_the_hub_and_only_its_own(replicas,
                                                                                 hub_app):
    client = new_client(hub_app)
    assert 'id="recovery-link"' in client.get("/login").get_data(as_text=True)
    headers = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
    wrong = client.post("/hub/recovery-key", data={"recovery_key": "AGE-SECRET-KEY-1XYZ"},
                        headers=headers)
    assert wrong.status_code == 401
    assert "not the recovery key of any camera" in wrong.get_data(as_text=True)
    done = client.post("/hub/recovery-key", data={"recovery_key": replicas.back_recovery_key},
                       headers=headers)
    assert done.status_code == 303
    clip = replicas.back_clip
    video = client.get(f"/clips/{clip.id}/video?camera=back", headers={"Range": "bytes=0-"})
    assert video.status_code == 206 and video.data == clip.video
    # the back doorbell's recovery key does not open the front doorbell's household
    other = replicas.front_clips["doorbell"].id
    assert client.get(f"/clips/{other}/video?camera=front").status_code == 422


def test_a_hub_member_is_refused_with_a_wrong_passphrase(hub_app):
    client = new_client(hub_app)
    assert login(client, passphrase="not-the-passphrase-at-all").status_code == 401
    assert login(client, member="mallory").status_code == 401


def test_hub_settings_are_read_only_and_list_the_cameras(replicas, hub_app):
    client = new_client(hub_app)
    assert login(client).status_code == 303
    page = client.get("/settings").get_data(as_text=True)
    assert str(replicas.front) in page and str(replicas.back) in page
    assert client.get("/settings/recording").status_code == 404
    refused = post_form(client, "/settings/recording", {"pre_roll_s": "1"})
    assert refused.status_code == 404


def test_a_missing_camera_folder_is_one_sentence_naming_the_camera(tmp_path, replicas):
    home = tmp_path / "hub-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[hub]\ncameras = {{ front = "{replicas.front}", back = "{tmp_path}/nowhere" }}\n')
    with pytest.raises(ConfigError) as error:
        create_app(load_settings(home), Home(home), testing=True)
    assert str(error.value).startswith(f"hub.cameras.back: {tmp_path}/nowhere is not a folder")
    result = doorbell("serve", "--home", str(home), timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "hub.cameras.back" in lines[0] and "not a folder" in lines[0]


@pytest.mark.parametrize("text, named", [
    ('[hub]\nfolders = { front = "/srv/a" }\n', 'unknown key "hub.folders"'),
    ('[hub]\ncameras = { "Front Door" = "/srv/a" }\n', "'Front Door'"),
    ('[hub]\ncameras = { front = "srv/a" }\n', "the folder of front"),
    ('[hub]\ncameras = []\n', '"hub.cameras" must be a table'),
    # a NUL byte (TOML's "\u0000") would cut the path short in the C library: refused
    ('[hub]\ncameras = { front = "/srv/a\\u0000/etc" }\n', "the folder of front"),
    ('[hub]\ncameras = { front = "\\u0000/srv/a" }\n', "the folder of front"),
    # nor any other control character: a newline would split the one-sentence error in two
    ('[hub]\ncameras = { front = "/nowhere\\nsecond line" }\n', "the folder of front"),
    ('[hub]\ncameras = { front = "/srv/a\\tb" }\n', "the folder of front"),
    ('[hub]\ncameras = { front = "/srv/\\u001b[31mred" }\n', "the folder of front"),
    ('[hub]\ncameras = { front = "/srv/a\\u007f" }\n', "the folder of front"),
    ('[hub]\ncameras = { front = "/srv/a\\u200bb" }\n', "the folder of front"),
    ('[hub]\ncameras = { "front\\u0000" = "/srv/a" }\n', "'front\\x00'"),
    ('[hub]\ncameras = { front = "" }\n', "the folder of front"),
    ('[hub]\ncameras = { front = "./srv/a" }\n', "the folder of front"),
    ('[hub]\ncameras = { front = "~/replica" }\n', "the folder of front"),
    ('[hub]\ncameras = { front = 7 }\n', "the folder of front"),
    ('[hub]\ncameras = { front = ["/srv/a"] }\n', "the folder of front"),
    ('[hub]\ncameras = { front = { path = "/srv/a" } }\n', "the folder of front"),
    ('[hub]\ncameras = {}\n', "naming 1 to"),
    ('[hub]\ncameras = { "../back" = "/srv/a" }\n', "'../back'"),
    ('[hub]\ncameras = { "" = "/srv/a" }\n', "not ''"),
])
def test_a_bad_hub_section_is_refused_naming_the_key(tmp_path, text, named):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_folder_with_spaces_or_letters_beyond_ascii_is_accepted(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[hub]\ncameras = { front = "/srv/Türkamera vorne", back = "/mnt/nas/ドア" }\n')
    assert list(load_settings(tmp_path).hub.cameras) == [
        ("front", "/srv/Türkamera vorne"), ("back", "/mnt/nas/ドア")]


def test_an_odd_but_absolute_camera_folder_is_one_sentence_when_it_is_not_a_folder(
        tmp_path, replicas):
    """Paths the config accepts (absolute) that name no folder: a file, a dangling link, the
    replica's own clip file; the hub refuses to start, naming the camera, with no traceback."""
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    clip_file = next((replicas.front / "clips").rglob("*.mp4.age"))
    for folder in (a_file, dangling, clip_file, "/proc/self/fd/999999"):
        home = tmp_path / f"hub-{abs(hash(str(folder)))}"
        home.mkdir()
        (home / "config.toml").write_text(
            f'[hub]\ncameras = {{ front = "{replicas.front}", back = "{folder}" }}\n')
        with pytest.raises(ConfigError) as error:
            create_app(load_settings(home), Home(home), testing=True)
        assert str(error.value).startswith(f"hub.cameras.back: {folder} is not a folder"), folder
        assert "\n" not in str(error.value)


@pytest.fixture
def berlin(monkeypatch):
    """The hub's zone is Europe/Berlin for this test (TZ, as systemd passes it)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield ZoneInfo("Europe/Berlin")
    monkeypatch.undo()
    time.tzset()


def test_hub_times_carry_the_hubs_zone_label(replicas, hub_app, berlin):
    client = new_client(hub_app)
    assert login(client).status_code == 303
    timeline = client.get("/").get_data(as_text=True)
    clip = replicas.back_clip
    moment = datetime.fromtimestamp(clip.start_us / 1e6, berlin)
    label = moment.strftime("%Z")
    assert label in ("CET", "CEST")
    entry = re.search(rf'href="/clips/{clip.id}\?camera=back">(.*?)</a>', timeline, re.S)[1]
    assert f">{moment:%H:%M:%S} {label}</time>" in entry
    assert "Times are the hub&#39;s local time, Europe/Berlin (" in timeline
    page = client.get(f"/clips/{clip.id}?camera=back").get_data(as_text=True)
    assert f"{moment.day} {moment:%b %Y}, {moment:%H:%M:%S} {label}</time>" in page
    # the status page: when each replica last received bytes, on the hub's clock, and its size
    status = client.get("/status.json").get_json()
    assert status["time_zone"].startswith("Times are the hub's local time, Europe/Berlin (")
    html = client.get("/status").get_data(as_text=True)
    for camera in status["cameras"]:
        written = datetime.fromtimestamp(camera["last_write_wall_us"] / 1e6, berlin)
        text = f"{written.day} {written:%b %Y}, {written:%H:%M:%S} {written:%Z}"
        assert camera["last_write_text"] == text
        row = re.search(rf'<tr id="camera-{camera["name"]}">(.*?)</tr>', html, re.S)[1]
        assert f"<td>{text}</td>" in row
        assert re.search(r"<td>\d+\.\d (KB|MB)</td>", row), row
        assert "bytes" not in row


@pytest.mark.parametrize("camera", ["", "garage", "../front", "front/../back", "front\x00",
                                    "x" * 5000, "FRONT"])
def test_a_camera_the_hub_does_not_have_is_a_404_never_a_500(replicas, hub_app, camera):
    client = new_client(hub_app)
    assert login(client).status_code == 303
    clip_id = replicas.front_clips["doorbell"].id
    for path in (f"/clips/{clip_id}", f"/clips/{clip_id}/video", f"/clips/{clip_id}/thumbnail.jpg"):
        assert client.get(path, query_string={"camera": camera}).status_code == 404, path
    # the timeline shows every camera rather than none
    assert f"/clips/{clip_id}?camera=front" in client.get(
        "/", query_string={"camera": camera}).get_data(as_text=True)


def test_every_hub_unlock_costs_the_same_number_of_scrypts(hub_app, monkeypatch):
    """alice has an identity in both households; an unknown name and a wrong passphrase must
    take as long, so that the answer's time does not tell which names exist, or where."""
    from doorbell.web import hub as hub_module

    calls = []
    real = hub_module.decrypt_identity

    def counted(data, passphrase):
        calls.append(1)
        return real(data, passphrase)

    monkeypatch.setattr(hub_module, "decrypt_identity", counted)
    counts = {}
    for member, passphrase in (("alice", PASSPHRASE), ("mallory", PASSPHRASE),
                               ("alice", "not-the-passphrase-at-all")):
        calls.clear()
        login(new_client(hub_app), member=member, passphrase=passphrase)
        counts[(member, passphrase == PASSPHRASE)] = len(calls)
    assert set(counts.values()) == {2}, counts


def test_a_replica_clip_exports_and_downloads_on_the_hub(replicas, hub_app, hub_home):
    client = new_client(hub_app)
    assert login(client).status_code == 303
    clip = replicas.back_clip
    page = post_form(client, f"/clips/{clip.id}/export?camera=back")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert hashlib.sha256(clip.video).hexdigest() in text
    link = re.search(r'href="([^"]*download=1[^"]*)"', text)[1].replace("&amp;", "&")
    assert "camera=back" in link
    download = client.get(link)
    assert download.status_code == 200 and download.data == clip.video
    exports = [e for e in AuditLog(hub_home / "audit.jsonl").entries()
               if e.action == "clip.export"]
    assert [(e.details["clip"], e.details["camera"]) for e in exports] == [(clip.id, "back")]


@pytest.mark.parametrize("value", ["", " ", "AGE-SECRET-KEY-1" + "Q" * 5000, "\x00" * 100,
                                   "age1notasecretkey", "AGE-SECRET-KEY-PQ-1ABC"])
def test_a_hostile_recovery_key_is_a_sentence_never_a_500(hub_app, value):
    refused = new_client(hub_app).post(
        "/hub/recovery-key", data={"recovery_key": value},
        headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
    assert refused.status_code == 401
    assert "not the recovery key of any camera" in refused.get_data(as_text=True)
