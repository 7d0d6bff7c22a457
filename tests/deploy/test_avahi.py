"""deploy/avahi/doorbell.service: Debian's real avahi-daemon loads it and answers for it.

avahi-daemon runs in a private mount namespace where /etc/avahi/services holds only our file
(and /run/avahi-daemon is private, so a running avahi is not disturbed), without D-Bus. Then a
plain mDNS query (legacy unicast, RFC 6762 section 6.7: from a port other than 5353, so the
answer comes back to us alone) asks the home network for the device's NAME.local address and
for the HTTPS services: the viewer is among them, on the installer's port.
"""

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
SERVICE_FILE = PROJECT / "deploy" / "avahi" / "doorbell.service"
AVAHI = shutil.which("avahi-daemon") or "/usr/sbin/avahi-daemon"
MDNS_GROUP, MDNS_PORT = "224.0.0.251", 5353
TYPE_A, TYPE_PTR, TYPE_SRV = 1, 12, 33

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root"),
    pytest.mark.skipif(not os.access(AVAHI, os.X_OK), reason="avahi-daemon is not installed"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is missing"),
]


def lan_interface() -> tuple[str, str] | None:
    """(interface, IPv4 address) of the first non-loopback interface with one."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            if name == "lo":
                continue
            try:
                reply = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()))
            except OSError:
                continue
            return name, socket.inet_ntoa(reply[20:24])
    return None


def query(name: str, qtype: int) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!6H", 0x1234, 0, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!2H", qtype, 1)


def ask(address: str, name: str, qtype: int, timeout_s: float = 3.0) -> bytes:
    """Send one mDNS query out of `address`'s interface; the first answer, or b""."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.bind((address, 0))
        sock.settimeout(timeout_s)
        sock.sendto(query(name, qtype), (MDNS_GROUP, MDNS_PORT))
        try:
            return sock.recvfrom(9000)[0]
        except TimeoutError:
            return b""


@pytest.fixture
def avahi(tmp_path):
    found = lan_interface()
    if found is None:
        pytest.skip("no network interface besides loopback")
    interface, address = found
    services = tmp_path / "services"
    services.mkdir()
    shutil.copy(SERVICE_FILE, services / "doorbell.service")
    config = tmp_path / "avahi-daemon.conf"
    config.write_text(f"[server]\nuse-ipv4=yes\nuse-ipv6=no\nenable-dbus=no\n"
                      f"allow-interfaces={interface}\n[publish]\npublish-addresses=yes\n")
    log = tmp_path / "avahi.log"
    script = (f"mount --bind {services} /etc/avahi/services && "
              "mkdir -p /run/avahi-daemon && mount -t tmpfs tmpfs /run/avahi-daemon && "
              f"exec {AVAHI} -f {config} --no-drop-root --no-chroot --no-rlimits")
    with log.open("wb") as output:
        process = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "successfully established" not in log.read_text():
            if process.poll() is not None:
                pytest.skip(f"avahi-daemon did not start here: {log.read_text()[-500:]}")
            time.sleep(0.2)
        yield address, log
    finally:
        process.terminate()
        process.wait(10)


def test_avahi_loads_the_service_file(avahi):
    _address, log = avahi
    text = log.read_text()
    host = socket.gethostname().split(".")[0]
    assert f'Service "Doorbell on {host}"' in text and "successfully established" in text, text
    assert "Failed" not in text and "error" not in text.lower(), text


def test_the_home_network_finds_the_device_and_its_viewer(avahi):
    address, _log = avahi
    host = socket.gethostname().split(".")[0]

    answer = ask(address, f"{host}.local", TYPE_A)
    assert socket.inet_aton(address) in answer, f"no address for {host}.local: {answer!r}"

    answer = ask(address, "_https._tcp.local", TYPE_PTR)
    assert f"Doorbell on {host}".encode() in answer, answer

    answer = ask(address, f"Doorbell on {host}._https._tcp.local", TYPE_SRV)
    # SRV data: priority 0, weight 0, then the port install.sh's config binds.
    assert struct.pack("!3H", 0, 0, 8443) in answer, answer
