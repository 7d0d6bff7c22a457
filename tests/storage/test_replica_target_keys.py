"""Host key pinning (storage.replica_target) against a real OpenSSH sshd with more than one host
key: the pinned key's type is the one negotiated, so a server that also has another type of key
is not refused as an impostor, and a changed key of the pinned type still is."""

import subprocess
from pathlib import Path

import pytest

from doorbell.storage.errors import ReplicaTargetError
from doorbell.storage.replica_target import (
    PinnedTarget,
    SftpTarget,
    fetch_host_key,
    host_key_fingerprint,
    open_sftp,
)
from tests.sftp_server import SftpServer

NETWORKS = ("127.0.0.0/8",)


@pytest.fixture
def server(tmp_path):
    server = SftpServer(tmp_path / "sshd")
    yield server
    server.stop()


def host_key(server: SftpServer, key_type: str) -> Path:
    path = server.base / f"ssh_host_{key_type}_key"
    for old in (path, path.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def serve_with(server: SftpServer, *keys: Path) -> None:
    """(Re)start sshd presenting exactly these host keys."""
    server.stop()
    lines = [line for line in server.config.read_text().splitlines()
             if not line.startswith("HostKey ")]
    server.config.write_text("\n".join([*(f"HostKey {key}" for key in keys), *lines]) + "\n")
    server.start()


def pin(server: SftpServer) -> PinnedTarget:
    target = SftpTarget.parse(server.url)
    key = fetch_host_key(target, "127.0.0.1")
    return PinnedTarget(target, key.get_name(), key.get_base64())


def fingerprint_of(public_key_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key_file)], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]


def connects(pinned: PinnedTarget, server: SftpServer) -> bool:
    sftp = open_sftp(pinned, server.client_key, NETWORKS)
    try:
        return sftp.listdir(str(server.root)) == []
    finally:
        sftp.close()
        sftp.get_channel().get_transport().close()


@pytest.mark.parametrize("older", ["ecdsa", "rsa"])
def test_a_server_that_gains_an_ed25519_key_is_not_taken_for_an_impostor(server, older):
    first = host_key(server, older)
    serve_with(server, first)
    pinned = pin(server)
    assert pinned.fingerprint == fingerprint_of(first.with_suffix(".pub"))
    # the NAS's update adds an ed25519 host key, which paramiko prefers
    serve_with(server, first, server.host_key)
    assert connects(pinned, server)
    key = fetch_host_key(pinned.target, "127.0.0.1", key_type=pinned.key_type)
    assert host_key_fingerprint(key.asbytes()) == pinned.fingerprint


def test_an_ed25519_pin_holds_beside_an_rsa_key(server):
    serve_with(server, server.host_key, host_key(server, "rsa"))
    pinned = pin(server)
    assert pinned.key_type == "ssh-ed25519"
    assert pinned.fingerprint == server.host_key_fingerprint()
    assert connects(pinned, server)


def test_a_changed_key_of_the_pinned_type_is_refused_beside_the_others(server):
    ecdsa = host_key(server, "ecdsa")
    serve_with(server, ecdsa, server.host_key)
    pinned = pin_of_type(server, "ecdsa-sha2-nistp256")
    assert connects(pinned, server)
    serve_with(server, host_key(server, "ecdsa"), server.host_key)  # the ecdsa key changed
    with pytest.raises(ReplicaTargetError, match="not the pinned") as refused:
        open_sftp(pinned, server.client_key, NETWORKS)
    assert pinned.fingerprint in str(refused.value)


def test_a_server_without_a_key_of_the_pinned_type_is_refused_in_one_sentence(server):
    serve_with(server, host_key(server, "ecdsa"))
    pinned = pin(server)
    serve_with(server, server.host_key)  # only ed25519 now
    with pytest.raises(ReplicaTargetError) as refused:
        open_sftp(pinned, server.client_key, NETWORKS)
    sentence = str(refused.value)
    assert sentence.startswith(f"the replica server 127.0.0.1:{server.port} no longer offers "
                               f"a host key of type ecdsa-sha2-nistp256, the pinned key's type")
    assert "\n" not in sentence


def pin_of_type(server: SftpServer, key_type: str) -> PinnedTarget:
    target = SftpTarget.parse(server.url)
    key = fetch_host_key(target, "127.0.0.1", key_type=key_type)
    assert key.get_name() == key_type
    return PinnedTarget(target, key.get_name(), key.get_base64())
