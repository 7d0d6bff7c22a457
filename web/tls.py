"""The viewer's TLS certificate: self-signed, made at init, its fingerprint shown to the owner.

There is no certificate authority on a home network; the owner compares the SHA-256
fingerprint the browser shows with the one `doorbell init` and `doorbell serve` print.

The certificate names every way the household reaches the device: its host name, `NAME.local`
(mDNS), `localhost`, the names configured in viewer.hostnames, and the device's own addresses
on the home network (IPv4 and IPv6, read from the kernel when the certificate is made; global
IPv6 addresses and link-local IPv6, which needs a zone in a URL, are left out). An address
added later (a new DHCP lease) is not in it: `doorbell serve` says so (see missing_names).
"""

import datetime
import fcntl
import ipaddress
import os
import socket
import struct
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_NAME = "viewer-cert.pem"
KEY_NAME = "viewer-key.pem"


def certificate_paths(tls_dir: Path) -> tuple[Path, Path]:
    return tls_dir / CERT_NAME, tls_dir / KEY_NAME


def fingerprint(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


_SIOCGIFADDR = 0x8915  # linux/sockios.h: an interface's (primary) IPv4 address
_IF_INET6 = Path("/proc/net/if_inet6")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _interface_ipv4(sock: socket.socket, interface: str) -> ipaddress.IPv4Address | None:
    request = struct.pack("256s", interface.encode()[:15])
    try:
        reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
    except OSError:  # no IPv4 address on this interface
        return None
    return ipaddress.IPv4Address(reply[20:24])


def _interface_names() -> list[str]:
    """The network interfaces' names. (if_nameindex needs a netlink socket, which the viewer's
    sandbox does not allow: RestrictAddressFamilies; /sys/class/net is readable there.)"""
    try:
        return [name for _index, name in socket.if_nameindex()]
    except OSError:
        pass
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


def _ipv6_addresses() -> list[ipaddress.IPv6Address]:
    try:
        lines = _IF_INET6.read_text().splitlines()
    except OSError:  # no IPv6 in this kernel
        return []
    return [ipaddress.IPv6Address(int(line.split()[0], 16)) for line in lines if line.strip()]


def _on_the_home_network(address: Address) -> bool:
    if address.is_loopback:
        return True
    if address.is_global or address.is_multicast or address.is_unspecified:
        return False
    return not (address.version == 6 and address.is_link_local)


def device_addresses() -> list[Address]:
    """This device's loopback and home-network addresses, as the kernel has them now."""
    found: set[Address] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # for ioctl only: no traffic
        for interface in _interface_names():
            address = _interface_ipv4(sock, interface)
            if address is not None:
                found.add(address)
    found.update(_ipv6_addresses())
    return sorted((a for a in found if _on_the_home_network(a)),
                  key=lambda a: (a.version, int(a)))


def device_names(extra_names=()) -> list[str]:
    """The host name, its short form and .local name, localhost, and the configured names."""
    host = socket.gethostname()
    short = host.split(".")[0]
    return sorted({host, short, f"{short}.local", "localhost", *extra_names})


def certificate_names(cert_path: Path) -> tuple[set[str], set[Address]]:
    """(DNS names, IP addresses) the certificate is valid for."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), set(san.get_values_for_type(x509.IPAddress))


def missing_names(cert_path: Path, extra_names=()) -> list[str]:
    """The device's names and current addresses the certificate does not name."""
    names, addresses = certificate_names(cert_path)
    return [n for n in device_names(extra_names) if n not in names] + \
        [str(a) for a in device_addresses() if a not in addresses]


def create_certificate(tls_dir: Path, extra_names=()) -> str:
    """Make a key and a 10-year self-signed certificate for this device; return its fingerprint.

    `extra_names` are the configured host names (viewer.hostnames)."""
    tls_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    short = socket.gethostname().split(".")[0]
    names = device_names(extra_names)
    addresses = device_addresses()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{short} doorbell")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addresses]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = certificate_paths(tls_dir)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return fingerprint(cert_path)
