"""The replica's SFTP target: its URL, the home-network rule and the pinned host key.

`doorbell replicate --pair sftp://user@nas.lan:22/srv/doorbell` connects once, prints the
server's host key fingerprint (OpenSSH's SHA256 form) and pins the key in the home's
`replica-target.json`. Every later connection must present exactly that key: an unknown or
changed key is refused before any authentication or file transfer. The target must be on the
home network, as MQTT and ntfy targets are (viewer.allowed_networks).

paramiko is the SSH library: synchronous like the rest of the storage package (the replicator
is a plain polling loop, asyncssh would bring an event loop for one connection), maintained,
in Debian (python3-paramiko), and it exposes the server's key before authentication.
"""

import base64
import hashlib
import ipaddress
import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .durable import write_atomically
from .errors import ReplicaTargetError

PIN_FILE_NAME = "replica-target.json"
DEFAULT_SSH_PORT = 22
_URL_FORM = "an sftp:// URL such as sftp://doorbell@nas.lan:22/srv/doorbell"


@dataclass(frozen=True, slots=True)
class SftpTarget:
    user: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> "SftpTarget":
        try:
            parts = urlsplit(url)
            port = parts.port or DEFAULT_SSH_PORT
        except ValueError:
            raise ReplicaTargetError(f"{url!r} is not {_URL_FORM}") from None
        if parts.scheme != "sftp" or not parts.hostname or not parts.username or \
                parts.password or parts.query or parts.fragment or not parts.path.startswith("/"):
            raise ReplicaTargetError(f"{url!r} is not {_URL_FORM}")
        return cls(unquote(parts.username), parts.hostname, port, unquote(parts.path))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{self.user}@{host}:{self.port}{self.path}"


def host_key_fingerprint(key_bytes: bytes) -> str:
    """OpenSSH's fingerprint of a public key blob: SHA256:<base64 without padding>."""
    digest = base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def resolve_on_lan(target: SftpTarget, networks: Iterable[str]) -> str:
    """The target's first address, after checking every address it resolves to is in
    `networks`; raises ReplicaTargetError naming viewer.allowed_networks otherwise."""
    networks = tuple(networks)
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ReplicaTargetError(
            f"cannot resolve the replica host {target.host}: {exc.strerror}") from None
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not any(ip in ipaddress.ip_network(n) for n in networks):
            shown = f"resolves to {address}" if address != target.host else f"is {address}"
            raise ReplicaTargetError(
                f"the replica target {target.host} {shown}, outside the home network "
                f"({', '.join(networks)}, from viewer.allowed_networks): the replica must be "
                f"on the LAN")
    return addresses[0]


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    target: SftpTarget
    key_type: str
    key_base64: str

    @property
    def fingerprint(self) -> str:
        return host_key_fingerprint(base64.b64decode(self.key_base64))

    def save(self, home_root: Path) -> Path:
        path = Path(home_root) / PIN_FILE_NAME
        data = json.dumps({"url": self.target.url, "host_key_type": self.key_type,
                           "host_key": self.key_base64,
                           "fingerprint": self.fingerprint}, indent=2) + "\n"
        # 0640, whatever the umask or the directory's default ACL: the replicator reads the
        # pin through its group, and no one but its owner may change which key is trusted.
        write_atomically(path, data.encode(), mode=0o640)
        os.chmod(path, 0o640)
        return path

    @classmethod
    def load(cls, home_root: Path) -> "PinnedTarget | None":
        path = Path(home_root) / PIN_FILE_NAME
        try:
            data = json.loads(path.read_text())
            return cls(SftpTarget.parse(data["url"]), data["host_key_type"], data["host_key"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            raise ReplicaTargetError(f"{path} is damaged: pair again with "
                                     f"'doorbell replicate --pair URL'") from None


def _key_family(algorithm: str) -> str:
    """The key type an algorithm signs with: an RSA key is pinned as ssh-rsa, and negotiated as
    rsa-sha2-512 or rsa-sha2-256."""
    return "ssh-rsa" if algorithm in ("rsa-sha2-512", "rsa-sha2-256") else algorithm


def _start_transport(target: SftpTarget, address: str, timeout_s: float,
                     key_type: str | None = None):
    """A paramiko Transport after the key exchange (the server's key known, no login yet).
    With `key_type` (the pinned key's), only a host key of that type is negotiated: a server
    that also has another type of key (a NAS adding ed25519 to its RSA key) shows the pinned
    one, not one paramiko happens to prefer. Unreachable: ConnectionError; a server without a
    key of that type: ReplicaTargetError."""
    import paramiko  # imported here: only the replicate command needs it

    try:
        sock = socket.create_connection((address, target.port), timeout=timeout_s)
    except OSError as exc:
        raise ConnectionError(f"cannot reach the replica at {target.host}:{target.port}: "
                              f"{exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    if key_type is not None:
        options = transport.get_security_options()
        offered = tuple(algorithm for algorithm in options.key_types
                        if _key_family(algorithm) == key_type)
        if not offered:
            transport.close()
            raise ReplicaTargetError(f"the pinned host key of {target.host} is of type "
                                     f"{key_type}, which this SSH library does not support: "
                                     f"pair again")
        options.key_types = offered
    try:
        transport.start_client(timeout=timeout_s)
    except paramiko.IncompatiblePeer as exc:
        transport.close()
        if key_type is None or "host key" not in str(exc):
            raise ConnectionError(f"{target.host}:{target.port} did not complete an SSH key "
                                  f"exchange: {exc}") from None
        raise ReplicaTargetError(
            f"the replica server {target.host}:{target.port} no longer offers a host key of "
            f"type {key_type}, the pinned key's type: refusing to connect (if the server was "
            f"reinstalled, check the new fingerprint on it and pair again)") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise ConnectionError(f"{target.host}:{target.port} did not complete an SSH key "
                              f"exchange: {exc}") from None
    return transport


def fetch_host_key(target: SftpTarget, address: str, timeout_s: float = 10.0,
                   key_type: str | None = None):
    """The server's host key (a paramiko PKey), read in the key exchange, before any login;
    of `key_type` if given (the pinned key's type), else the type paramiko prefers."""
    try:
        transport = _start_transport(target, address, timeout_s, key_type)
    except ConnectionError as exc:
        raise ReplicaTargetError(str(exc)) from None
    try:
        return transport.get_remote_server_key()
    finally:
        transport.close()


def check_pinned_key(pinned: PinnedTarget, key) -> None:
    """Refuse a server key that is not the pinned one (one sentence, both fingerprints)."""
    seen = host_key_fingerprint(key.asbytes())
    if key.get_base64() != pinned.key_base64:
        raise ReplicaTargetError(
            f"the replica server {pinned.target.host}:{pinned.target.port} presented host key "
            f"{seen}, not the pinned {pinned.fingerprint}: refusing to connect (if the server "
            f"was reinstalled, check the new fingerprint on it and pair again)")


def open_sftp(pinned: PinnedTarget, identity_file: Path, networks: Iterable[str],
              timeout_s: float = 10.0):
    """A paramiko SFTPClient on the pinned target, after the server showed the pinned key and
    accepted the private key in `identity_file`. Unreachable: ConnectionError (an OSError);
    a changed key or a refused login: ReplicaTargetError."""
    import paramiko

    address = resolve_on_lan(pinned.target, networks)
    try:
        client_key = paramiko.PKey.from_path(identity_file)
    except (OSError, paramiko.SSHException) as exc:
        raise ReplicaTargetError(f"cannot read the SSH key {identity_file}: {exc}") from None
    transport = _start_transport(pinned.target, address, timeout_s, pinned.key_type)
    try:
        check_pinned_key(pinned, transport.get_remote_server_key())
        transport.auth_publickey(pinned.target.user, client_key)
        sftp = paramiko.SFTPClient.from_transport(transport)
        sftp.get_channel().settimeout(timeout_s)
        return sftp
    except paramiko.AuthenticationException:
        transport.close()
        raise ReplicaTargetError(f"{pinned.target.host} refused the SSH key {identity_file} "
                                 f"for user {pinned.target.user}") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise ConnectionError(f"SSH to {pinned.target.host} failed: {exc}") from None
    except BaseException:
        transport.close()
        raise


def connection_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the SFTP server went away mid-transfer (paramiko's included)."""
    import paramiko

    return (OSError, EOFError, paramiko.SSHException)
