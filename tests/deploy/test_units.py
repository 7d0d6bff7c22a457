"""The systemd units: they verify cleanly, score an exposure of 2.0 or lower, and say what the
deployment relies on (users, writable paths, the runtime directory, the address filter); the
sd_notify watchdog the recorder unit needs; the installer's scripts pass bash -n and shellcheck,
and its kernel check reports an address filter the kernel cannot enforce."""

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from doorbell.camera.watchdog import SystemdWatchdog

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
SYSTEMD = DEPLOY / "systemd"
EXEC_START = "/opt/doorbell/venv/bin/doorbell"
UNITS = ("doorbell-recorder.service", "doorbell-viewer.service")
REPLICATOR = "doorbell-replicate.service"  # optional: not behind the firewall unit
LAN_RANGES = ["localhost", "link-local", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
              "fc00::/7"]

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every assignment in order (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"assignment outside a section: {raw}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service(name: str) -> dict[str, list[str]]:
    return parse_unit((SYSTEMD / name).read_text())["Service"]


def words(values: list[str]) -> list[str]:
    return [word for value in values for word in value.split()]


@pytest.fixture
def runnable_units(tmp_path) -> Path:
    """Copies of the units whose ExecStart points at an executable that exists here.

    `systemd-analyze verify` checks that ExecStart's binary exists; the real path is
    /opt/doorbell/venv/bin/doorbell, which only an install creates. Everything else is unchanged
    (the test asserts the rewrite touched exactly the ExecStart lines).
    """
    stub = tmp_path / "bin" / "doorbell"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    out = tmp_path / "units"
    out.mkdir()
    for path in [*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.conf")]:
        text = path.read_text()
        rewritten = text.replace(f"ExecStart={EXEC_START} ", f"ExecStart={stub} ")
        changed = [a for a, b in zip(text.splitlines(), rewritten.splitlines(), strict=True)
                   if a != b]
        assert all(line.startswith(f"ExecStart={EXEC_START} ") for line in changed)
        (out / path.name).write_text(rewritten)
    return out


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def exposure(unit_path: Path) -> float:
    result = analyze("security", "--offline=true", "--threshold=20", str(unit_path))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert result.returncode == 0, f"exposure above 2.0:\n{result.stdout}"
    return float(match.group(1))


# -- systemd-analyze ----------------------------------------------------------------------------

@needs_analyze
def test_units_verify_without_a_single_warning(runnable_units):
    units = [runnable_units / name
             for name in (*UNITS, REPLICATOR, "doorbell-firewall.service")]
    result = analyze("verify", *map(str, units))
    assert result.returncode == 0, result.stdout + result.stderr
    # verify exits 0 even for unknown keys and bad values; any output at all is a finding.
    assert result.stdout + result.stderr == ""


@needs_analyze
def test_recorder_with_the_lan_drop_in_verifies(runnable_units, tmp_path):
    # A unit with its drop-in, the way systemd reads them: the drop-in's lines come last.
    merged = tmp_path / "doorbell-recorder.service"
    merged.write_text((runnable_units / "doorbell-recorder.service").read_text() + "\n"
                      + (runnable_units / "recorder-lan.conf").read_text())
    result = analyze("verify", str(merged))
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


@needs_analyze
@pytest.mark.parametrize("unit", (*UNITS, REPLICATOR))
def test_exposure_is_at_most_2(unit, runnable_units):
    score = exposure(runnable_units / unit)
    print(f"{unit}: overall exposure {score}")
    assert score <= 2.0


@needs_analyze
def test_recorder_with_lan_access_still_scores_at_most_2(runnable_units, tmp_path):
    merged = tmp_path / "doorbell-recorder.service"
    merged.write_text((runnable_units / "doorbell-recorder.service").read_text() + "\n"
                      + (runnable_units / "recorder-lan.conf").read_text())
    score = exposure(merged)
    print(f"doorbell-recorder.service + recorder-lan.conf: overall exposure {score}")
    assert score <= 2.0


# -- what the units promise ---------------------------------------------------------------------

@pytest.mark.parametrize("unit", UNITS)
def test_common_hardening(unit):
    s = service(unit)
    assert s["ExecStart"][0].startswith(f"{EXEC_START} ")
    assert s["Group"] == ["doorbell"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["ReadWritePaths"] == ["/var/lib/doorbell"]  # the only writable persistent path
    assert s["ProtectHome"] == ["yes"] and s["PrivateTmp"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""] and s["AmbientCapabilities"] == [""]
    assert s["SystemCallFilter"][0] == "@system-service"
    assert s["Restart"] == ["always"]
    assert "RestrictAddressFamilies" in s
    env = words(s["Environment"])
    assert "DOORBELL_RUNTIME_DIR=/run/doorbell" in env
    assert "DOORBELL_HOME=/var/lib/doorbell" in env
    assert "StateDirectory" not in s  # it would chown the shared directory to one user


def test_replicator_reads_the_data_directory_only_and_reaches_the_home_network_only():
    s = service(REPLICATOR)
    assert s["User"] == ["doorbell-replica"] and s["ProtectSystem"] == ["strict"]
    assert s["ReadOnlyPaths"] == ["/var/lib/doorbell"] and "ReadWritePaths" not in s
    assert s["NoNewPrivileges"] == ["yes"] and s["CapabilityBoundingSet"] == [""]
    assert s["IPAddressDeny"] == ["any"] and words(s["IPAddressAllow"]) == LAN_RANGES
    assert s["LoadCredential"][0].startswith("replica-key:")  # the SSH key, and no footage key
    # its own group, not doorbell (which may write the clips): it reads through install.sh's
    # ACLs; its one writable place is its own state directory, where progress.json goes
    assert s["Group"] == ["doorbell-replica"]
    assert s["StateDirectory"] == ["doorbell-replica"] and s["StateDirectoryMode"] == ["0750"]
    assert "--state-dir /var/lib/doorbell-replica" in s["ExecStart"][0]
    # it yields to the recorder
    assert int(s["Nice"][0]) > 0 and s["IOSchedulingPriority"] == ["7"]
    unit = parse_unit((SYSTEMD / REPLICATOR).read_text())["Unit"]
    assert unit["ConditionPathExists"] == ["/var/lib/doorbell/replica-target.json",
                                           "/etc/doorbell/replica_ed25519"]


def test_recorder_has_no_network_and_feeds_a_watchdog():
    s = service("doorbell-recorder.service")
    assert s["User"] == ["doorbell-rec"]
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["PrivateNetwork"] == ["yes"]
    assert "AF_INET" not in words(s["RestrictAddressFamilies"])
    assert "AF_INET6" not in words(s["RestrictAddressFamilies"])
    # Live frames on a tmpfs the viewer (group doorbell) can read and nobody else can.
    assert s["RuntimeDirectory"] == ["doorbell"]
    assert s["RuntimeDirectoryMode"] == ["0750"]
    # Cameras and GPIO only.
    assert s["DevicePolicy"] == ["closed"]
    allowed = {value.split()[0] for value in s["DeviceAllow"]}
    assert allowed == {"char-video4linux", "char-media", "char-dma_heap", "char-gpiochip",
                       "char-bcm2835-gpiomem", "char-rpi-gpiomem"}


def test_viewer_answers_the_home_network_only():
    s = service("doorbell-viewer.service")
    assert s["User"] == ["doorbell-view"]
    assert s["IPAddressDeny"] == ["any"]
    assert words(s["IPAddressAllow"]) == LAN_RANGES
    assert s["PrivateDevices"] == ["yes"]  # it never touches the camera
    assert "RuntimeDirectory" not in s  # /run/doorbell is the recorder's; the viewer reads it


def test_lan_drop_in_opens_the_home_network_only():
    s = parse_unit((SYSTEMD / "recorder-lan.conf").read_text())["Service"]
    assert s["PrivateNetwork"] == ["no"]
    assert words(s["IPAddressAllow"]) == LAN_RANGES
    assert "IPAddressDeny" not in s  # the unit's IPAddressDeny=any stays in force


def test_firewall_unit_fails_closed():
    unit = parse_unit((SYSTEMD / "doorbell-firewall.service").read_text())
    assert words(unit["Install"]["RequiredBy"]) == list(UNITS)
    assert set(words(unit["Unit"]["Before"])) >= set(UNITS)
    assert unit["Service"]["ExecStart"] == ["/usr/sbin/nft --file /etc/doorbell/doorbell.nft"]


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="nft --check needs root")
def test_nftables_rules_parse(tmp_path):
    # The service users do not exist on a development machine: use numeric ids instead.
    rules = (DEPLOY / "nftables" / "doorbell.nft").read_text()
    numeric = rules.replace('"doorbell-rec"', "64001").replace('"doorbell-view"', "64002")
    assert numeric != rules
    path = tmp_path / "doorbell.nft"
    path.write_text(numeric)
    result = subprocess.run(["nft", "--check", "--file", str(path)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr


# -- sd_notify ----------------------------------------------------------------------------------

def received(sock) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    sock.settimeout(5)
    return messages


def test_watchdog_is_a_no_op_outside_systemd():
    watchdog = SystemdWatchdog({})
    assert not watchdog.enabled
    assert watchdog.ready() is False and watchdog.frame_arrived() is False


def test_watchdog_ready_and_rate_limited_pings(notify_socket):
    path, sock = notify_socket
    now = [100.0]
    watchdog = SystemdWatchdog({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"},
                               clock=lambda: now[0])
    assert watchdog.enabled
    assert watchdog.ready()
    assert sock.recv(4096) == b"READY=1\nSTATUS=recording"
    sent = []
    for _ in range(100):  # 100 frames at 10 fps = 10 s: one ping (the interval is 15 s)
        sent.append(watchdog.frame_arrived())
        now[0] += 0.1
    assert sent.count(True) == 1 and sent[0] is True
    now[0] += 5.1  # 15.1 s after the first ping
    assert watchdog.frame_arrived() is True
    assert received(sock) == ["WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_abstract_socket_and_foreign_watchdog_pid():
    name = f"doorbell-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        watchdog = SystemdWatchdog({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert watchdog.frame_arrived() and sock.recv(100) == b"WATCHDOG=1"
        # WATCHDOG_PID names another process (a parent that exec'd us wrongly): not ours.
        other = SystemdWatchdog({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000",
                                 "WATCHDOG_PID": "1"})
        assert not other.enabled and other.frame_arrived() is False
        assert other.ready()  # READY is still ours to send
    finally:
        sock.close()


def test_watchdog_survives_a_vanished_socket(tmp_path):
    watchdog = SystemdWatchdog({"NOTIFY_SOCKET": str(tmp_path / "gone"), "WATCHDOG_USEC": "1"})
    assert watchdog.frame_arrived() is False  # logged, never raised into the capture loop


@pytest.mark.slow
def test_record_command_notifies_systemd(notify_socket, tmp_path):
    """`doorbell record` under Type=notify: READY=1, then WATCHDOG=1 while frames arrive."""
    path, sock = notify_socket
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL_")}
    env.update(PYTHONDONTWRITEBYTECODE="1", DOORBELL_PASSPHRASE="amber-kettle-under-snow-31")
    subprocess.run([sys.executable, "-m", "doorbell", "init", "--home", str(home), "--user",
                    "alice", "--work-factor", "15"], cwd=PROJECT, env=env, check=True,
                   capture_output=True, timeout=120)
    (home / "config.toml").write_text('[camera]\nsource = "synthetic"\nwidth = 320\n'
                                      'height = 240\nfps = 10\n')
    env.update(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="2000000",
               DOORBELL_RUNTIME_DIR=str(tmp_path / "run"))
    process = subprocess.Popen([sys.executable, "-m", "doorbell", "record", "--home", str(home)],
                               cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        messages = []
        while len([m for m in messages if m == "WATCHDOG=1"]) < 3:
            messages.append(sock.recv(4096).decode())  # times out after 5 s of silence
        assert messages[0].startswith("READY=1")
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- the scripts --------------------------------------------------------------------------------

SCRIPTS = [DEPLOY / "install.sh", DEPLOY / "uninstall.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_syntax(script):
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed "
                    "(apt-get install shellcheck)")
def test_shellcheck():
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def _fake_tools(tmp_path, journal: str, cgroup_fs: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "journalctl").write_text(f"#!/bin/sh\ncat <<'EOF'\n{journal}\nEOF\n")
    (bin_dir / "stat").write_text(f"#!/bin/sh\necho {cgroup_fs}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "DOORBELL_FORCE_IP_FILTER_CHECK": "1"}


# What systemd 252 logs once per boot on a kernel without cgroup-BPF (from a Raspberry Pi).
NO_BPF_JOURNAL = (
    "File /lib/systemd/system/systemd-journald.service:12 configures an IP firewall "
    "(IPAddressDeny=any), but the local system does not support BPF/cgroup based firewalling.\n"
    "Proceeding WITHOUT firewalling in effect! (This warning is only shown for the first loaded "
    "unit using IP firewalling.)"
)


@pytest.mark.parametrize(("journal", "cgroup_fs", "code", "says"), [
    (NO_BPF_JOURNAL, "cgroup2fs", 1, "WITHOUT firewalling"),
    ("Started doorbell-viewer.service.", "tmpfs", 1, "not the unified cgroup v2 hierarchy"),
    ("Started doorbell-viewer.service.", "cgroup2fs", 0, "are enforced"),
])
def test_installer_reports_an_address_filter_the_kernel_cannot_enforce(
        tmp_path, journal, cgroup_fs, code, says):
    result = subprocess.run(["bash", str(DEPLOY / "install.sh"), "--check-ip-filter"],
                            env=_fake_tools(tmp_path, journal, cgroup_fs), capture_output=True,
                            text=True, check=False)
    assert result.returncode == code
    output = result.stdout + result.stderr
    assert says in output
    if code:
        assert "cannot enforce IPAddressDeny=" in output and "--firewall" in output
