"""`doorbell replicate --pair/--check` against a real OpenSSH sshd on loopback."""

import contextlib
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from doorbell.storage.age import parse_identity
from doorbell.storage.age.errors import TruncatedError
from doorbell.storage.age.reader import decrypt
from doorbell.storage.replica import source_files
from doorbell.storage.replica_progress import HEARTBEAT_FILE_NAME
from tests.cli.conftest import PROJECT, WORK_FACTOR, assert_ok, assert_one_sentence, doorbell
from tests.helpers import clean_env
from tests.sftp_server import SftpServer


@pytest.fixture
def sshd(tmp_path):
    server = SftpServer(tmp_path / "sshd").start()
    yield server
    server.stop()


def test_pair_prints_and_pins_the_servers_fingerprint(home, sshd):
    result = assert_ok(home.run("replicate", "--pair", sshd.url))
    fingerprint = sshd.host_key_fingerprint()  # what ssh-keygen -lf says on the server
    assert fingerprint in result.stdout
    pinned = json.loads((home.root / "replica-target.json").read_text())
    assert pinned["fingerprint"] == fingerprint and pinned["url"] == sshd.url
    assert fingerprint in assert_ok(home.run("replicate", "--check")).stdout


def test_a_changed_host_key_is_refused(home, sshd):
    assert_ok(home.run("replicate", "--pair", sshd.url))
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    for args in (("--check",), ("--pair", sshd.url)):
        message = assert_one_sentence(home.run("replicate", *args))
        assert "not the pinned" in message and sshd.host_key_fingerprint() in message
    # the pin is unchanged: the impostor's key was not stored
    pinned = json.loads((home.root / "replica-target.json").read_text())
    assert pinned["fingerprint"] != sshd.host_key_fingerprint()


def test_a_running_replicator_stops_at_a_changed_host_key_and_says_so(home, sshd, tmp_path):
    assert_ok(home.run("replicate", "--pair", sshd.url))
    sshd.stop()  # it starts while the server is away: it waits for it
    state_dir = tmp_path / "state"
    log = tmp_path / "replicate.log"
    replicator = _start(["replicate", "--identity-file", str(sshd.client_key), "--state-dir",
                         str(state_dir)], home.root, log)
    try:
        assert _wait_for(lambda: (p := _progress(state_dir)) and p["last_error"], 20), \
            log.read_text()
        assert replicator.poll() is None
        sshd.new_host_key()  # an impostor where the NAS was
        sshd.start()
        replicator.wait(timeout=30)
    finally:
        if replicator.poll() is None:
            replicator.kill()
            replicator.wait()
    assert replicator.returncode == 1
    assert "not the pinned" in log.read_text() and "Traceback" not in log.read_text()
    progress = _progress(state_dir)
    assert "not the pinned" in progress["last_error"]
    assert sshd.host_key_fingerprint() in progress["last_error"]
    assert not list(sshd.root.iterdir())  # nothing was sent to it


def test_check_before_pairing_is_refused(home):
    assert "--pair" in assert_one_sentence(home.run("replicate", "--check"))


@pytest.mark.parametrize("url", ["sftp://doorbell@8.8.8.8/srv/doorbell",
                                 "sftp://doorbell@[2001:4860:4860::8888]:22/srv"])
def test_a_public_target_is_refused_naming_the_key(home, url):
    message = assert_one_sentence(home.run("replicate", "--pair", url))
    assert "viewer.allowed_networks" in message and "outside the home network" in message
    assert not (home.root / "replica-target.json").exists()


@pytest.mark.parametrize("url", ["http://nas.lan/x", "sftp://nas.lan/srv", "sftp://u@nas.lan",
                                 "sftp://u:pw@nas.lan/srv"])
def test_a_malformed_url_gets_one_sentence(home, url):
    assert "sftp://" in assert_one_sentence(home.run("replicate", "--pair", url))


def test_pair_without_a_url_pairs_replica_target_and_a_different_target_is_refused(home, sshd):
    (home.root / "config.toml").write_text(f'[replica]\ntarget = "{sshd.url}"\n')
    assert sshd.host_key_fingerprint() in assert_ok(home.run("replicate", "--pair")).stdout
    other = sshd.url.replace(str(sshd.root), "/srv/elsewhere")
    (home.root / "config.toml").write_text(f'[replica]\ntarget = "{other}"\n')
    message = assert_one_sentence(home.run("replicate", "--identity-file", str(sshd.client_key)))
    assert "replica.target is" in message and "--pair" in message


def test_a_bad_replica_section_is_refused_naming_the_key(home):
    (home.root / "config.toml").write_text('[replica]\ntarget = "sftp://u:pw@nas.lan/srv"\n')
    assert "target" in assert_one_sentence(home.run("replicate", "--check"))
    (home.root / "config.toml").write_text("[replica]\nmax_total_bytes = 5\n")
    assert "max_total_bytes" in assert_one_sentence(home.run("replicate", "--check"))


def _progress(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / "progress.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _wait_for(condition, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    return condition()


def test_progress_json_says_when_the_replica_last_caught_up_and_why_not(home, sshd, tmp_path):
    assert_ok(home.run("replicate", "--pair", sshd.url))
    state_dir = tmp_path / "state"
    log = tmp_path / "replicate.log"
    before_us = time.time_ns() // 1000
    replicator = _start(["replicate", "--identity-file", str(sshd.client_key), "--state-dir",
                         str(state_dir)], home.root, log)
    try:
        progress = _wait_for(lambda: (p := _progress(state_dir)) and
                             p["last_copy_wall_us"] and p, 20)
        assert progress, log.read_text()
        assert set(progress) == {"target", "host_key_fingerprint", "last_copy_wall_us",
                                 "pending_files", "last_error", "updated_wall_us"}
        assert progress["target"] == sshd.url and progress["last_error"] is None
        assert progress["host_key_fingerprint"] == sshd.host_key_fingerprint()
        assert before_us < progress["last_copy_wall_us"] <= progress["updated_wall_us"]
        assert progress["pending_files"] == 0
        assert (sshd.root / "recipients.txt").read_bytes() == \
            (home.root / "recipients.txt").read_bytes()
        assert (state_dir / "progress.json").stat().st_mode & 0o777 == 0o640

        sshd.stop()  # the NAS goes away; the device changes a file meanwhile
        home.write_clip(b"sealed while the replica was away" * 100,
                        start_us=time.time_ns() // 1000)
        down = _wait_for(lambda: (p := _progress(state_dir)) and p["last_error"] and
                         p["pending_files"] > 0 and p, 20)
        assert down, log.read_text()
        assert "unreachable" in down["last_error"] or "lost" in down["last_error"]
        assert down["last_copy_wall_us"] <= progress["last_copy_wall_us"] + 2_000_000
        sshd.start()
        back = _wait_for(lambda: (p := _progress(state_dir)) and p["last_error"] is None and
                         p["pending_files"] == 0 and p, 20)
        assert back and back["last_copy_wall_us"] > down["updated_wall_us"]
    finally:
        replicator.send_signal(signal.SIGTERM)
        replicator.wait(timeout=20)
    assert replicator.returncode == 0, log.read_text()


# People walking: motion at once. ../shared beside the checkout (the test skips without it).
VIDEO = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "video" / "vtest.avi"
CHUNK_BYTES = 64 * 1024
SEALED_CLIPS_BEFORE_KILL = 2
MAX_LAG_S = 4.0


def _env(home_root: Path) -> dict:
    return clean_env(DOORBELL_HOME=str(home_root),
                     DOORBELL_RUNTIME_DIR=str(home_root.parent / "run"))


def _start(args: list[str], home_root: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "doorbell", *args], stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=PROJECT, env=_env(home_root))


def _age_header_bytes(path: Path) -> int:
    data = path.read_bytes()[:65536]
    mac_line = data.index(b"\n--- ") + 1
    return data.index(b"\n", mac_line) + 1 + 16  # the header, then the payload nonce


def _authenticated_prefix(path: Path, identity) -> bytes:
    out = bytearray()
    with path.open("rb") as src:
        reader = decrypt(src, [identity])
        try:
            while block := reader.read(CHUNK_BYTES):
                out += block
        except TruncatedError:
            pass
    return bytes(out)


@pytest.mark.slow
@pytest.mark.skipif(not VIDEO.is_file(), reason=f"{VIDEO} is not there")
@pytest.mark.parametrize("round_number", [1, 2, 3])
def test_kill_9_and_a_wiped_device_leave_the_clips_on_the_replica(sshd, tmp_path,
                                                                   passphrase_file, round_number):
    # X25519 keys, so that the stock age Debian ships (1.1.1) decrypts with the recovery key
    root = tmp_path / "home"
    init = assert_ok(doorbell("init", "--passphrase-file", str(passphrase_file), "--x25519",
                              "--work-factor", WORK_FACTOR, home=root))
    home = SimpleNamespace(root=root, recovery_key=re.findall(r"AGE-SECRET-KEY-1[0-9A-Z]+",
                                                              init.stdout)[0],
                           run=lambda *args: doorbell(*args, home=root))
    (home.root / "config.toml").write_text(
        "[recording]\nmax_clip_s = 5\n[retention]\nmin_free_bytes = 0\n")
    assert_ok(home.run("replicate", "--pair", sshd.url))
    log = tmp_path / "processes.log"
    replicator = _start(["replicate", "--identity-file", str(sshd.client_key), "--state-dir",
                         str(tmp_path / "state")], home.root, log)
    recorder = _start(["record", "--source", str(VIDEO)], home.root, log)
    clips = home.root / "clips"
    sizes: list[tuple[float, Path, int]] = []  # (monotonic s, partial, its size) as it grows
    try:
        deadline = time.monotonic() + 90
        while True:
            assert recorder.poll() is None and replicator.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no two sealed clips within 90 s"
            now = time.monotonic()
            for partial in clips.rglob("*.partial") if clips.is_dir() else []:
                with contextlib.suppress(FileNotFoundError):
                    sizes.append((now, partial, partial.stat().st_size))
            sealed = list(clips.rglob("*.mp4.age")) if clips.is_dir() else []
            growing = [s for s in sizes if s[1].exists()]
            if len(sealed) >= SEALED_CLIPS_BEFORE_KILL and growing and \
                    now - growing[0][0] >= 2.5 + round_number * 0.3:
                break
            time.sleep(0.05)
        expected = {p.relative_to(home.root).as_posix(): p.read_bytes()
                    for p in sorted(clips.rglob("*")) if p.is_file()
                    and not p.name.endswith(".partial")}
        recorder.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        recorder.wait(timeout=10)
        partial = growing[-1][1]
        partial_name = partial.relative_to(home.root).as_posix()
        header_bytes = _age_header_bytes(partial)
        timeline = [(t, size) for t, path, size in sizes if path == partial]
        timeline.append((killed_at, partial.stat().st_size))
        shutil.rmtree(home.root)  # the doorbell is gone, with its card
    finally:
        for process in (recorder, replicator):
            if process.poll() is None:
                process.send_signal(signal.SIGKILL if process is recorder else signal.SIGTERM)
                process.wait(timeout=10)

    replica = sshd.root
    recovery = parse_identity(home.recovery_key)
    age = shutil.which("age")
    assert age, "the stock age is not installed (deploy/dev-setup.sh installs it)"
    key_file = tmp_path / "recovery-key.txt"
    key_file.write_text(home.recovery_key + "\n")
    for name, data in expected.items():  # every complete clip, byte-identical
        assert (replica / name).read_bytes() == data, name
        if name.endswith(".mp4.age"):
            plain = subprocess.run([age, "-d", "-i", str(key_file), str(replica / name)],
                                   capture_output=True, check=True).stdout
            assert plain[4:8] == b"ftyp"
    prefix = _authenticated_prefix(replica / partial_name, recovery)
    assert prefix[4:8] == b"ftyp"
    # The replica's prefix was on the device at some moment; how long before the kill?
    cipher_needed = header_bytes + (len(prefix) // CHUNK_BYTES) * (CHUNK_BYTES + 16)
    held_at = next(t for t, size in timeline if size >= cipher_needed)
    lag_s = killed_at - held_at
    LAGS_S.append(lag_s)
    print(f"round {round_number}: replica prefix {len(prefix)} bytes, lag {lag_s:.2f} s "
          f"(lags so far {sorted(round(x, 2) for x in LAGS_S)})")
    assert lag_s <= MAX_LAG_S
    # stock age writes the authenticated prefix, then says the file is cut short
    cut = subprocess.run([age, "-d", "-i", str(key_file), str(replica / partial_name)],
                         capture_output=True)
    assert cut.returncode != 0 and cut.stdout == prefix


LAGS_S: list[float] = []


OUTAGE_S = 60.0


def _tree_digests(root: Path) -> dict[str, str]:
    """Every file under `root` by SHA-256, but the replicator's own heartbeat (not a copy)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != HEARTBEAT_FILE_NAME}


def _replicated_digests(root: Path) -> dict[str, str]:
    return {f.relative: hashlib.sha256(f.path.read_bytes()).hexdigest()
            for f in source_files(root)}


@pytest.mark.slow
@pytest.mark.skipif(not VIDEO.is_file(), reason=f"{VIDEO} is not there")
def test_a_minute_long_outage_while_recording_loses_and_duplicates_nothing(sshd, tmp_path,
                                                                          passphrase_file):
    """The issue's outage: the NAS is away for a minute while the real recorder goes on
    recording (5 s clips), then comes back; afterwards every file on the replica has the
    hash of the device's file, and the replica holds nothing else."""
    root = tmp_path / "home"
    assert_ok(doorbell("init", "--passphrase-file", str(passphrase_file), "--x25519",
                       "--work-factor", WORK_FACTOR, home=root))
    (root / "config.toml").write_text(
        "[recording]\nmax_clip_s = 5\n[retention]\nmin_free_bytes = 0\n")
    assert_ok(doorbell("replicate", "--pair", sshd.url, home=root))
    log = tmp_path / "processes.log"
    replicator = _start(["replicate", "--identity-file", str(sshd.client_key), "--state-dir",
                         str(tmp_path / "state")], root, log)
    recorder = _start(["record", "--source", str(VIDEO)], root, log)
    clips = root / "clips"
    try:
        assert _wait_for(lambda: list(sshd.root.rglob("*.mp4.age")), 60), log.read_text()[-3000:]
        sshd.stop()
        stopped_at = time.monotonic()
        sealed_before = {p.name for p in clips.rglob("*.mp4.age")}
        replica_before = _tree_digests(sshd.root)
        while time.monotonic() - stopped_at < OUTAGE_S:
            assert recorder.poll() is None and replicator.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        sealed_during = {p.name for p in clips.rglob("*.mp4.age")} - sealed_before
        assert len(sealed_during) >= 8, "recording went on: about 12 clips of 5 s"
        assert _tree_digests(sshd.root) == replica_before  # nothing reached it meanwhile
        sshd.start()
        restarted_at = time.monotonic()
        assert _wait_for(lambda: all((sshd.root / "clips" / p.relative_to(clips)).exists()
                                     for p in clips.rglob("*.mp4.age")
                                     if p.name in sealed_during), 60), log.read_text()[-3000:]
        print(f"{len(sealed_during)} clips sealed during the {OUTAGE_S:.0f} s outage reached "
              f"the replica {time.monotonic() - restarted_at:.1f} s after it came back")
        recorder.send_signal(signal.SIGTERM)  # the last clip is sealed
        recorder.wait(timeout=30)
        expected = _replicated_digests(root)
        assert _wait_for(lambda: _tree_digests(sshd.root) == expected, 60), \
            sorted(set(_tree_digests(sshd.root).items()) ^ set(expected.items()))[:10]
    finally:
        for process in (recorder, replicator):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    assert "replica connection lost" in log.read_text() or "unreachable" in log.read_text()
    assert not [name for name in expected if name.endswith(".partial")]
    assert sum(1 for name in expected if name.endswith(".mp4.age")) >= 10
