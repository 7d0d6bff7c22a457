"""Local-only: who may talk to the viewer (networks) and by which name (Host, DNS rebinding)."""

import logging
import socket

import pytest

from .conftest import MEMBER, PASSPHRASE, login, new_client

REFUSED_ADDRESSES = ["8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8", "100.64.0.1", "not-an-ip", ""]
ALLOWED_ADDRESSES = [
    "127.0.0.1", "192.168.1.20", "10.1.2.3", "172.16.5.4", "169.254.9.9", "::1", "fe80::1",
    "fd00::1", "::ffff:192.168.1.5",
]
ROUTES = ["/", "/login", "/static/style.css", "/static/app.js", "/live", "/status",
          "/status.json", "/audit", "/clips/20240501T120000Z-abcdef", "/no-such-page"]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_outside_the_allowed_networks_everything_is_403_and_logged(app, address, caplog):
    client = new_client(app, address)
    caplog.set_level(logging.WARNING, logger="doorbell.viewer")
    for path in ROUTES:
        caplog.clear()
        response = client.get(path)
        assert response.status_code == 403, (path, response.status_code)
        assert "home network only" in response.get_data(as_text=True)
        assert any("not on an allowed network" in r.getMessage() for r in caplog.records), path
    # A POST (login) is refused before the passphrase is looked at.
    response = login(client)
    assert response.status_code == 403
    assert client.get_cookie("__Host-doorbell-session") is None


def test_refused_network_cannot_log_in_even_with_the_right_passphrase(app, home):
    response = login(new_client(app, "8.8.8.8"), MEMBER, PASSPHRASE)
    assert response.status_code == 403
    assert not home.actions("unlock")
    assert len(app.extensions["doorbell"].sessions) == 0


@pytest.mark.parametrize("address", ALLOWED_ADDRESSES)
def test_allowed_networks_reach_the_viewer(app, address):
    client = new_client(app, address)
    assert client.get("/login").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login")


@pytest.mark.parametrize("host", [
    "evil.example", "attacker.com:8080", "doorbell.evil.com", "localhost.evil.com",
    "evil.example:80", "", "[::1", "local host",
])
def test_hostile_host_header_is_400(app, client, host, caplog):
    caplog.set_level(logging.WARNING, logger="doorbell.viewer")
    for path in ("/login", "/", "/static/style.css"):
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 400, (host, path, response.status_code)
        assert "Unknown host name" in response.get_data(as_text=True)
    assert any("refused Host" in r.getMessage() for r in caplog.records)


def test_hostile_host_cannot_log_in(app, client, home):
    response = login(client, headers={"Host": "evil.example", "Origin": "http://evil.example"})
    assert response.status_code == 400
    assert not home.actions("unlock")


def _own_hosts():
    name = socket.gethostname().lower()
    short = name.split(".")[0]
    return ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:8080", "[::1]:8080", "[::1]",
            "192.168.1.20:8443", "[fe80::1]:8443", name, f"{name}:8443", f"{short}.local",
            f"{short}.local:8443", name.upper()]


@pytest.mark.parametrize("host", _own_hosts())
def test_own_names_and_ip_literals_pass(app, client, host):
    response = client.get("/login", headers={"Host": host})
    assert response.status_code == 200, (host, response.status_code)


def test_a_configured_hostname_passes(make_app):
    app = make_app({"viewer.hostnames": ["doorbell.lan"]})
    client = new_client(app)
    assert client.get("/login", headers={"Host": "doorbell.lan"}).status_code == 200
    assert client.get("/login", headers={"Host": "DOORBELL.LAN:8443"}).status_code == 200
    assert client.get("/login", headers={"Host": "other.lan"}).status_code == 400


def test_configured_networks_replace_the_defaults(make_app):
    app = make_app({"viewer.allowed_networks": ["192.168.7.0/24"]})
    assert new_client(app, "192.168.7.9").get("/login").status_code == 200
    assert new_client(app, "192.168.1.20").get("/login").status_code == 403
    assert new_client(app, "127.0.0.1").get("/login").status_code == 403
