"""The certificate made at init, and `doorbell serve`: gunicorn, plain HTTP on loopback only,
TLS elsewhere, the whole guard stack in front of the app."""

import hashlib
import http.client
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from doorbell.web.server import is_loopback
from doorbell.web.tls import certificate_paths, create_certificate, fingerprint, missing_names
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


def san_of(cert_path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (set(san.get_values_for_type(x509.DNSName)),
            {str(a) for a in san.get_values_for_type(x509.IPAddress)})


def lan_addresses_from_hostname() -> set[str]:
    """What `hostname -I` lists (every address but loopback and IPv6 link-local), minus global
    ones: the addresses the household reaches the device at."""
    if shutil.which("hostname") is None:
        pytest.skip("hostname(1) is not installed")
    listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True,
                            check=True).stdout.split()
    return {a for a in listed if not ipaddress.ip_address(a).is_global}


def test_certificate_names_the_devices_lan_addresses(tmp_path):
    expected = lan_addresses_from_hostname()
    create_certificate(tmp_path / "tls")
    _names, addresses = san_of(certificate_paths(tmp_path / "tls")[0])
    assert expected <= addresses, f"hostname -I: {expected}, certificate: {addresses}"
    assert {"127.0.0.1", "::1"} <= addresses
    for address in map(ipaddress.ip_address, addresses):
        assert not address.is_global and not (address.version == 6 and address.is_link_local)


def test_a_client_trusting_the_certificate_reaches_the_device_by_its_lan_address(tmp_path):
    # A phone that trusts the certificate (its fingerprint checked once) and opens
    # https://<the device's address>/ gets no name mismatch: the handshake verifies the address.
    addresses = sorted(lan_addresses_from_hostname())
    if not addresses:
        pytest.skip("this machine has no home-network address besides loopback")
    create_certificate(tmp_path / "tls")
    cert_path, key_path = certificate_paths(tmp_path / "tls")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    client_context = ssl.create_default_context(cafile=str(cert_path))
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family) as listener:
            listener.bind((address, 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            accepted: list[bool] = []
            thread = threading.Thread(target=_handshake_into, daemon=True,
                                      args=(listener, server_context, accepted))
            thread.start()
            with socket.create_connection((address, port), timeout=10) as raw, \
                    client_context.wrap_socket(raw, server_hostname=address) as tls:
                assert tls.version() is not None
            thread.join(10)
        assert accepted == [True], address
    # And a name it does not carry is refused, so the check above can fail.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        threading.Thread(target=lambda: _handshake(listener, server_context), daemon=True).start()
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                pytest.raises(ssl.SSLCertVerificationError):
            client_context.wrap_socket(raw, server_hostname="not-this-device.example")


def _handshake_into(listener, context, results: list[bool]) -> None:
    results.append(_handshake(listener, context))


def _handshake(listener, context) -> bool:
    connection, _ = listener.accept()
    try:
        with context.wrap_socket(connection, server_side=True):
            return True
    except (ssl.SSLError, OSError):
        return False


def test_init_names_the_configured_host_names(tmp_path):
    fresh_home = tmp_path / "new-home"
    fresh_home.mkdir()
    (fresh_home / "config.toml").write_text(
        '[viewer]\nhostnames = ["doorbell.lan", "front-door.home.arpa"]\n')
    passphrase = tmp_path / "passphrase.txt"
    passphrase.write_text(PASSPHRASE + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "doorbell", "init", "--home", str(fresh_home),
         "--passphrase-file", str(passphrase), "--work-factor", "15"],
        capture_output=True, text=True, timeout=120, env=clean_env(), check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    names, _addresses = san_of(certificate_paths(fresh_home / "tls")[0])
    assert {"doorbell.lan", "front-door.home.arpa", "localhost"} <= names


def test_missing_names_tells_serve_what_an_old_certificate_lacks(tmp_path):
    create_certificate(tmp_path / "tls", ["doorbell.lan"])
    cert_path = certificate_paths(tmp_path / "tls")[0]
    assert missing_names(cert_path, ["doorbell.lan"]) == []
    assert missing_names(cert_path, ["doorbell.lan", "added-later.lan"]) == ["added-later.lan"]


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
    monkeypatch.setattr(serve_command, "serve", lambda *args, **_kwargs: calls.append(args))
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
