"""deploy/bin/doorbell, the admin's `doorbell` on PATH (/usr/local/bin/doorbell).

Run as root it must become the viewer user (ids, groups, no new privileges, a clean
environment) and pass the arguments through untouched; run as the viewer user it runs the
command directly; anyone else gets one sentence and nothing runs. The script is the real one,
with its three settings (the program, the user, the data directory) pointed at a test double
that reports who it runs as, and at `nobody`, so no user is created on this machine.
"""

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
WRAPPER = PROJECT / "deploy" / "bin" / "doorbell"
USER = "nobody"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing"),
]

REPORTER = """#!/bin/sh
echo "user=$(id -un)"
echo "groups=$(id -Gn)"
echo "home=$DOORBELL_HOME"
echo "secret=${CALLER_SECRET:-}"
echo "passphrase=${DOORBELL_PASSPHRASE:-}"
echo "term=${TERM:-}"
grep '^NoNewPrivs:' /proc/self/status
for arg in "$@"; do echo "arg=$arg"; done
"""


@pytest.fixture
def place():
    """A directory `nobody` can enter (pytest's tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="doorbell-wrapper-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def wrapper_for(place: Path, program: Path, user: str = USER) -> Path:
    text = WRAPPER.read_text()
    for name, value in (("DOORBELL", program), ("VIEW_USER", user),
                        ("HOME_DIR", "/srv/doorbell-test-home")):
        assert f"\n{name}=" in text, name
        text = "\n".join(f"{name}={value}" if line.startswith(f"{name}=") else line
                         for line in text.split("\n"))
    path = place / "doorbell"
    path.write_text(text)
    path.chmod(0o755)
    return path


def reporter(place: Path) -> Path:
    path = place / "venv-doorbell"
    path.write_text(REPORTER)
    path.chmod(0o755)
    return path


def run(command: list[str], as_user: str | None = None) -> subprocess.CompletedProcess:
    if as_user is not None:
        account = pwd.getpwnam(as_user)
        command = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                   "--clear-groups", "--", *command]
    env = {"PATH": os.environ["PATH"], "CALLER_SECRET": "from-the-caller", "TERM": "xterm",
           "DOORBELL_PASSPHRASE": "amber kettle", "DOORBELL_HOME": "/elsewhere"}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env,
                          cwd="/", check=False)


def test_the_wrapper_is_installed_executable():
    assert WRAPPER.stat().st_mode & stat.S_IXOTH


def test_root_runs_the_command_as_the_viewer_user(place):
    wrapper = wrapper_for(place, reporter(place))

    result = run([str(wrapper), "clips", "list", "--to", "a dir with spaces", ""])

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "user=nobody" in lines
    assert "groups=nogroup" in lines  # the user's own groups, not root's
    assert "home=/srv/doorbell-test-home" in lines  # the installed data directory, always
    assert "secret=" in lines  # the caller's environment is not passed on,
    assert "term=xterm" in lines  # but for the terminal, the locale
    assert "passphrase=amber kettle" in lines  # and a passphrase given the documented way
    assert any(line.split() == ["NoNewPrivs:", "1"] for line in lines), lines
    assert [line for line in lines if line.startswith("arg=")] == \
        ["arg=clips", "arg=list", "arg=--to", "arg=a dir with spaces", "arg="]


def test_the_viewer_user_runs_it_directly(place):
    wrapper = wrapper_for(place, reporter(place))
    result = run([str(wrapper), "audit"], as_user=USER)
    assert result.returncode == 0, result.stderr
    assert "user=nobody" in result.stdout and "arg=audit" in result.stdout


def test_anyone_else_is_refused_in_one_sentence(place):
    wrapper = wrapper_for(place, reporter(place), user="daemon")
    result = run([str(wrapper), "clips", "list"], as_user=USER)
    assert result.returncode == 1
    assert result.stdout == ""  # the command never ran
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doorbell: run it as root"), result.stderr


def test_a_missing_program_or_user_is_one_sentence(place):
    result = run([str(wrapper_for(place, place / "no-such-venv" / "doorbell"))])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"doorbell: {place}/no-such-venv/doorbell is missing: run deploy/install.sh again."]
    result = run([str(wrapper_for(place, reporter(place), user="doorbell-no-such-user"))])
    assert result.returncode == 1
    assert "doorbell-no-such-user does not exist" in result.stderr


def test_the_real_command_runs_through_it(place):
    venv_doorbell = PROJECT / ".venv" / "bin" / "doorbell"
    if not os.access(venv_doorbell, os.X_OK):
        pytest.skip("no .venv/bin/doorbell (run deploy/dev-setup.sh)")
    interpreter = os.path.realpath(PROJECT / ".venv" / "bin" / "python")
    if run(["test", "-x", interpreter], as_user=USER).returncode != 0:
        pytest.skip(f"{USER} cannot run this venv's interpreter {interpreter} (the installer's "
                    "venv in /opt/doorbell is everyone's; this one is not)")
    result = run([str(wrapper_for(place, venv_doorbell)), "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("doorbell ")
