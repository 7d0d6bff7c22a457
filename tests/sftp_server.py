"""A real OpenSSH sshd (Debian's /usr/sbin/sshd) on a loopback port, for replica tests.

It has its own host key and one authorized client key, serves SFTP with internal-sftp, and
runs as the current user (CI runs as root). `SftpServer.start()` waits until the port accepts;
`stop()` ends only the sshd it started. `new_host_key()` replaces the host key (a restart
then presents a changed key, as a reinstalled or impostor server would).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import free_port

SSHD = Path("/usr/sbin/sshd")
START_TIMEOUT_S = 10.0


def require_sshd() -> None:
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH's sshd is not installed (deploy/dev-setup.sh installs openssh-server)")


class SftpServer:
    def __init__(self, base: Path) -> None:
        require_sshd()
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.root = base / "replica"
        self.root.mkdir(exist_ok=True)
        self.port = free_port()
        self.host_key = base / "ssh_host_ed25519_key"
        self.client_key = base / "client_ed25519"
        self.user = subprocess.run(["id", "-un"], capture_output=True, text=True,
                                   check=True).stdout.strip()
        self._process: subprocess.Popen | None = None
        self.new_host_key()
        self._keygen(self.client_key)
        authorized = base / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        self.config = base / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {base / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\n")

    @staticmethod
    def _keygen(path: Path) -> None:
        for old in (path, path.with_suffix(".pub")):
            old.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True, capture_output=True)

    def new_host_key(self) -> None:
        self._keygen(self.host_key)

    def host_key_fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(self.host_key.with_suffix(".pub"))],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1]

    @property
    def url(self) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{self.root}"

    def start(self) -> "SftpServer":
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
        self._process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self._process.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on port {self.port} in {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """Stop sshd and the sessions it forked (so connected clients lose their connection,
        as when the server goes away)."""
        if self._process is not None and self._process.poll() is None:
            sessions = _descendants(self._process.pid)
            self._process.terminate()
            self._process.wait(timeout=10)
            for pid in sessions:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._process = None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
