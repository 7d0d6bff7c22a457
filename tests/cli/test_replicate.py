"""`doorbell replicate --pair/--check` against a real OpenSSH sshd on loopback."""

import json

import pytest

from tests.cli.conftest import assert_ok, assert_one_sentence
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
