"""The viewer's TLS certificate: self-signed, made at init, its fingerprint shown to the owner.

There is no certificate authority on a home network; the owner compares the SHA-256
fingerprint the browser shows with the one `doorbell init` and `doorbell serve` print.
"""

import datetime
import ipaddress
import os
import socket
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


def create_certificate(tls_dir: Path, extra_names: list[str] = ()) -> str:
    """Make a key and a 10-year self-signed certificate for this device; return its fingerprint."""
    tls_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    host = socket.gethostname()
    short = host.split(".")[0]
    names = sorted({host, short, f"{short}.local", "localhost", *extra_names})
    addresses = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
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
