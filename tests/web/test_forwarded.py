"""No proxy is trusted: X-Forwarded-* headers change neither the client address the
allowed-network check and the audit log see, nor the scheme (web/server.py)."""

import http.client

import pytest

from doorbell.web.server import gunicorn_app
from tests.helpers import clean_env, free_port

from .conftest import MEMBER, login, new_client
from .live_server import Server, request

FORWARDED = {
    "X-Forwarded-For": "192.168.1.5",
    "X-Real-IP": "192.168.1.5",
    "Forwarded": "for=192.168.1.5;proto=https",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "localhost",
}


@pytest.mark.parametrize("tls", [None, ("cert.pem", "key.pem")])
def test_gunicorn_trusts_no_front_end(app, monkeypatch, tls):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # what gunicorn would otherwise go by
    cfg = gunicorn_app(app, "0.0.0.0", 8443, tls).cfg  # noqa: S104
    assert cfg.forwarded_allow_ips == []
    assert cfg.forwarded_allow_networks() == []
    assert cfg.secure_scheme_headers == {}
    assert cfg.forwarder_headers == []
    assert cfg.proxy_protocol == "off" and cfg.proxy_allow_ips == []


def test_a_forwarded_header_does_not_let_an_outside_client_in(app):
    outside = new_client(app, "203.0.113.7")
    assert outside.get("/login", headers=FORWARDED).status_code == 403


def test_a_forwarded_header_does_not_change_the_address_that_is_audited(app, home):
    client = new_client(app, "192.168.1.20")
    headers = {**FORWARDED, "X-Forwarded-For": "203.0.113.9"}
    assert client.get("/login", headers=headers).status_code == 200
    assert login(client, MEMBER, "wrong-passphrase-1", headers=headers).status_code == 401
    failed, = home.actions("unlock.failed")
    assert failed.details["address"] == "192.168.1.20"


@pytest.fixture
def server(home, tmp_path, runtime_dir):
    port = free_port()
    started = Server(["-m", "doorbell", "serve", "--home", str(home.root),
                      "--bind", f"127.0.0.1:{port}"], tmp_path / "serve.log",
                     clean_env(DOORBELL_RUNTIME_DIR=str(runtime_dir),
                               FORWARDED_ALLOW_IPS="127.0.0.1"))
    started.wait_ready("127.0.0.1", port)
    yield port
    started.stop()


def test_doorbell_serve_ignores_forwarded_headers_even_from_loopback(server, home):
    port = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    response, _ = request(connection, "GET", "/login", FORWARDED)
    assert response.status == 200
    # Had gunicorn believed X-Forwarded-Proto, the app would think it is on HTTPS.
    assert response.getheader("Strict-Transport-Security") is None
    form = f"member={MEMBER}&passphrase=wrong-passphrase-1".encode()
    response, _ = request(connection, "POST", "/login", {
        **FORWARDED, "Content-Type": "application/x-www-form-urlencoded",
        "Origin": f"https://127.0.0.1:{port}"}, form)
    assert response.status == 403  # an https Origin is another origin for a plain-HTTP viewer
    response, _ = request(connection, "POST", "/login", {
        **FORWARDED, "Content-Type": "application/x-www-form-urlencoded",
        "Origin": f"http://127.0.0.1:{port}"}, form)
    assert response.status == 401
    connection.close()
    failed, = home.actions("unlock.failed")
    assert failed.details["address"] == "127.0.0.1"
