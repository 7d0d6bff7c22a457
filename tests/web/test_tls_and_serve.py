"""The certificate made at init, and `doorbell serve`: gunicorn, plain HTTP on loopback only,
TLS elsewhere, the whole guard stack in front of the app."""

import hashlib
import http.client
import re
import shutil
import socket
import ssl
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from doorbell.web.server import is_loopback
from doorbell.web.tls import certificate_paths, create_certificate, fingerprint
from tests.helpers import clean_env

from .conftest import MEMBER, PASSPHRASE, SESSION_COOKIE
from .live_server import Server, request

# -- the certificate

def test_certificate_fingerprint_and_names(tmp_path):
    tls_dir = tmp_path / "tls"
    printed = create_certificate(tls_dir, ["doorbell.lan"])
    cert_path, key_path = certificate_paths(tls_dir)
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", printed)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert printed.replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    assert fingerprint(cert_path) == printed
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    host = socket.gethostname()
    assert {"localhost", host, f"{host.split('.')[0]}.local", "doorbell.lan"} <= names
    addresses = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1"} <= addresses
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3650
    # The private key is the owner's alone, and belongs to this certificate.
    assert key_path.stat().st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    # A second certificate is a new key, with a new fingerprint.
    assert create_certificate(tmp_path / "again") != printed


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_fingerprint_matches_openssl(home):
    cert_path, _key = certificate_paths(home.root / "tls")  # the one `doorbell init` made
    out = subprocess.run(["openssl", "x509", "-in", str(cert_path), "-noout", "-fingerprint",
                          "-sha256"], capture_output=True, text=True, check=True).stdout
    assert out.strip().split("=", 1)[1].upper() == fingerprint(cert_path)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("fd00::1", False),  # noqa: S104
    ("doorbell.local", False), ("", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("bind", "tls"), [
    ("127.0.0.1:8080", False), ("[::1]:8080", False), ("0.0.0.0:8443", True),
    ("[::]:8443", True), ("192.168.1.20:8443", True),
])
def test_serve_uses_tls_off_loopback(home, monkeypatch, capsys, bind, tls):
    import doorbell.commands.serve as serve_command
    from doorbell.cli import main

    calls = []
    monkeypatch.setattr(serve_command, "serve", lambda *args: calls.append(args))
    assert main(["serve", "--home", str(home.root), "--bind", bind]) == 0
    (_app, host, port, given_tls), = calls
    assert host == bind.rsplit(":", 1)[0].strip("[]")
    assert port == int(bind.rsplit(":", 1)[1])
    out = capsys.readouterr().out
    cert_path, key_path = certificate_paths(home.root / "tls")
    if tls:
        assert given_tls == (cert_path, key_path)
        assert f"fingerprint: {fingerprint(cert_path)}" in out
        assert "Viewer on https://" in out
    else:
        assert given_tls is None
        assert "fingerprint" not in out
        assert "Viewer on http://" in out


# -- a real gunicorn

def _free_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@pytest.fixture
def servers():
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def test_doorbell_serve_on_loopback(home, servers, tmp_path, runtime_dir):
    port = _free_port()
    env = clean_env(DOORBELL_RUNTIME_DIR=str(runtime_dir))
    server = Server(["-m", "doorbell", "serve", "--home", str(home.root),
                     "--bind", f"127.0.0.1:{port}"], tmp_path / "serve.log", env)
    servers.append(server)
    server.wait_ready("127.0.0.1", port)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    response, body = request(connection, "GET", "/login")
    assert response.status == 200
    assert "gunicorn" in response.getheader("Server", "").lower()
    assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy")
    assert b'id="login-form"' in body

    response, _ = request(connection, "GET", "/")
    assert response.status == 302 and response.getheader("Location") == "/login"

    response, _ = request(connection, "GET", "/login", {"Host": "evil.example"})
    assert response.status == 400
    response, _ = request(connection, "GET", "/login", {"Host": f"localhost:{port}"})
    assert response.status == 200

    clip = home.clips["motion"]
    response, _ = request(connection, "GET", f"/clips/{clip.id}/video")
    assert response.status == 401

    form = f"member={MEMBER}&passphrase={PASSPHRASE}".encode()
    origin = f"http://127.0.0.1:{port}"
    response, _ = request(connection, "POST", "/login", {
        "Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"},
        form)
    assert response.status == 403
    response, _ = request(connection, "POST", "/login", {
        "Content-Type": "application/x-www-form-urlencoded", "Origin": origin}, form)
    assert response.status == 303
    cookie = response.getheader("Set-Cookie")
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "Secure" in cookie
    session = cookie.split(";")[0]

    response, body = request(connection, "GET", "/", {"Cookie": session})
    assert response.status == 200 and clip.id.encode() in body
    response, body = request(connection, "GET", f"/clips/{clip.id}/video",
                              {"Cookie": session, "Range": "bytes=70000-70099"})
    assert response.status == 206
    assert response.getheader("Content-Range") == f"bytes 70000-70099/{len(clip.video)}"
    assert body == clip.video[70000:70100]
    assert response.getheader("Cache-Control") == "no-store"
    connection.close()

    server.stop()
    assert server.process.returncode is not None
    assert "Traceback" not in server.log_path.read_text()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_doorbell_serve_on_ipv6_loopback(home, servers, tmp_path, runtime_dir):
    port = _free_port(socket.AF_INET6, "::1")
    env = clean_env(DOORBELL_RUNTIME_DIR=str(runtime_dir))
    server = Server(["-m", "doorbell", "serve", "--home", str(home.root),
                     "--bind", f"[::1]:{port}"], tmp_path / "serve6.log", env)
    servers.append(server)
    server.wait_ready("::1", port)
    connection = http.client.HTTPConnection("::1", port, timeout=30)
    response, _ = request(connection, "GET", "/login")
    assert response.status == 200
    assert "gunicorn" in response.getheader("Server", "").lower()
    response, _ = request(connection, "GET", "/login", {"Host": "attacker.com"})
    assert response.status == 400
    connection.close()


SERVE_TLS = """
import sys
from doorbell.config import load_settings
from doorbell.storage.home import Home
from doorbell.web import create_app
from doorbell.web.server import serve
from doorbell.web.tls import certificate_paths

home = Home.resolve(sys.argv[1])
serve(create_app(load_settings(home.root), home), "127.0.0.1", int(sys.argv[2]),
      certificate_paths(home.tls_dir))
"""


def test_tls_serves_the_certificate_made_at_init(home, servers, tmp_path, runtime_dir):
    cert_path, _key = certificate_paths(home.root / "tls")
    port = _free_port()
    env = clean_env(DOORBELL_RUNTIME_DIR=str(runtime_dir))
    server = Server(["-c", SERVE_TLS, str(home.root), str(port)], tmp_path / "tls.log", env)
    servers.append(server)
    server.wait_ready("127.0.0.1", port)

    context = ssl.create_default_context(cafile=str(cert_path))
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=30)
    response, body = request(connection, "GET", "/login")
    assert response.status == 200 and b'id="login-form"' in body
    assert response.getheader("Strict-Transport-Security", "").startswith("max-age=")
    served = connection.sock.getpeercert(binary_form=True)
    digest = hashlib.sha256(served).hexdigest().upper()
    assert ":".join(digest[i : i + 2] for i in range(0, 64, 2)) == fingerprint(cert_path)
    connection.close()

    # Plain HTTP to the TLS port gets nothing useful.
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        response, body = request(plain, "GET", "/login")
        assert response.status != 200 or b"login-form" not in body
    except (http.client.HTTPException, OSError):
        pass
    finally:
        plain.close()
