"""deploy/install.sh, end to end, in a fresh Debian bookworm root (debootstrap --variant=minbase).

The tree is made once and cached (/var/cache/doorbell-tests, or $DOORBELL_TEST_CACHE): a clean
copy of it is used per test session. Inside it, as root in a chroot (its own mount and pid
namespaces, so /proc and every process vanish with it), the installer runs with
`--no-systemd` against the real Debian archive and PyPI: there is no python3-picamera2 in
Debian, so it must say so and go on. Then `doorbell init` runs as the viewer user, exactly as
the installer prints it; the recorder user is refused the identities; the recorder records as
its own user and the viewer user lists, authenticates and deletes what it wrote; a second run
changes nothing and adds the firewall; uninstall keeps the footage, a re-install adopts it, and
--purge removes it.

Needs root, debootstrap (installed with apt-get when missing) and the Debian mirror and PyPI.
Debian packages are cached between runs (apt's archives); the root itself is always fresh.
"""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DOORBELL_TEST_CACHE", "/var/cache/doorbell-tests"))
SUITE = "bookworm"
MARKER = ".doorbell-debootstrap-complete"
SRC_IN_ROOT = "/srv/doorbell-src"
PASSPHRASE = "amber-kettle-under-snow-31"
MEMBER = "alice"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache",
                                     ".ruff_cache", "*.egg-info", "build", "doorbell-demo",
                                     "demo-home")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap, chroot and useradd need root"),
    pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("chroot") is None,
                       reason="unshare and chroot (util-linux, coreutils) are needed"),
]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (sources.list or deb822 .sources files)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            if match.group(2) == SUITE and "security" not in match.group(1):
                return match.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split() and \
                    "security" not in uris.group(1):
                return uris.group(1)
    return "http://deb.debian.org/debian"


def pristine_tree() -> Path:
    """The cached debootstrap tree, made now if it is missing (minutes)."""
    tree = CACHE / f"{SUITE}-minbase"
    if (tree / MARKER).is_file():
        return tree
    if shutil.which("debootstrap") is None:
        result = subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"],
                                capture_output=True, text=True, check=False,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if result.returncode != 0 or shutil.which("debootstrap") is None:
            pytest.skip(f"debootstrap is missing and apt-get could not install it: "
                        f"{result.stderr.strip()[-300:]}")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / f"{SUITE}-minbase.partial"
    if partial.exists():
        shutil.rmtree(partial)
    mirror = debian_mirror()
    command = ["debootstrap", "--variant=minbase", SUITE, str(partial), mirror]
    started = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                                check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"debootstrap from {mirror} took longer than 20 minutes")
    if result.returncode != 0:
        pytest.skip(f"debootstrap from {mirror} failed (no mirror access?): "
                    f"{(result.stdout + result.stderr).strip()[-500:]}")
    (partial / MARKER).write_text(f"{' '.join(command)}\n{time.monotonic() - started:.0f} s\n")
    if tree.exists():
        shutil.rmtree(tree)
    partial.rename(tree)
    return tree


class Chroot:
    """A throw-away copy of the pristine tree, entered with chroot in fresh namespaces.

    Each command gets its own mount and pid namespaces (`unshare --fork`): its /proc and the
    bind mount of the apt archive cache exist only inside them and vanish with the command, so
    nothing is ever left mounted on the host (and deleting the tree cannot reach through a
    mount).
    """

    def __init__(self, root: Path, binds: list[tuple[Path, str]], env: dict[str, str]):
        self.root = root
        self.binds = binds  # (host directory, directory inside the root)
        self.env = env

    def run(self, *command: str, env: dict | None = None, timeout: float = 900,
            check: bool = True) -> subprocess.CompletedProcess:
        environment = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8",
                       "DEBIAN_FRONTEND": "noninteractive", **self.env, **(env or {})}
        mounts = "".join(f'mount --bind "{host}" "{self.path(inside)}" && '
                         for host, inside in self.binds)
        result = subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={self.root}/proc",
             "/bin/sh", "-c", mounts + 'exec "$@"', "sh",
             "chroot", str(self.root), "/usr/bin/env", "-i",
             *[f"{k}={v}" for k, v in environment.items()], *command],
            capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def sh(self, script: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run("/bin/sh", "-c", script, **kwargs)

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def ids(self, name: str, database: str = "passwd") -> int:
        out = self.run("getent", database, name).stdout
        return int(out.split(":")[2])

    def install(self, *options: str) -> subprocess.CompletedProcess:
        return self.run("bash", f"{SRC_IN_ROOT}/deploy/install.sh", *options)

    def as_recorder(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        """As doorbell-rec, with the recorder unit's UMask=0007."""
        return self.run("setpriv", "--reuid=doorbell-rec", "--regid=doorbell", "--init-groups",
                        "--", "/bin/sh", "-c", 'umask 0007 && exec "$@"', "sh", *command,
                        **kwargs)

    def as_replicator(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        """As doorbell-replica, with its unit's group and UMask=0077."""
        return self.run("setpriv", "--reuid=doorbell-replica", "--regid=doorbell-replica",
                        "--init-groups", "--", "/bin/sh", "-c", 'umask 0077 && exec "$@"', "sh",
                        *command, **kwargs)

    def acl(self, inside: str) -> list[str]:
        """getfacl's entries for a path (no comments), e.g. ['user::rw-', 'group::---', ...]."""
        out = self.run("getfacl", "--omit-header", "--absolute-names", inside).stdout
        return [line.split("#")[0].strip() for line in out.splitlines() if line.strip()]

    def as_viewer(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        """As doorbell-view, the way the installer tells the owner to run commands."""
        return self.run("runuser", "-u", "doorbell-view", "--", *command, **kwargs)


def _not_mounted_below(path: Path) -> bool:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as handle:
        return not any(line.split()[4].startswith(prefix) for line in handle)


@pytest.fixture(scope="module")
def chroot(tmp_path_factory):
    tree = pristine_tree()
    work = tmp_path_factory.mktemp("debian")
    root = work / "root"
    started = time.monotonic()
    subprocess.run(["cp", "-a", str(tree), str(root)], check=True)
    (root / MARKER).unlink()
    shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")  # apt and pip need names
    # This machine may reach the internet through a TLS-inspecting proxy whose CA is installed
    # locally: give the fresh root the same local CAs (the installer's ca-certificates picks
    # them up) and point pip at the system bundle instead of its own.
    local_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for ca in local_cas:
        target = root / "usr/local/share/ca-certificates" / ca.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ca, target)
    shutil.copytree(PROJECT, root / SRC_IN_ROOT.lstrip("/"), ignore=COPY_IGNORE)
    binds = []
    for name, inside in (("apt-archives", "/var/cache/apt/archives"),):
        (CACHE / name / "partial").mkdir(parents=True, exist_ok=True)
        (root / inside.lstrip("/")).mkdir(parents=True, exist_ok=True)
        binds.append((CACHE / name, inside))
    print(f"fresh root copied in {time.monotonic() - started:.0f} s")
    env = {"PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"} if local_cas else {}
    yield Chroot(root, binds, env)
    if _not_mounted_below(root):
        shutil.rmtree(work, ignore_errors=True)
    else:  # never delete through a mount point
        print(f"left {work} in place: something is still mounted below it")


@pytest.fixture(scope="module")
def installed(chroot):
    started = time.monotonic()
    result = chroot.install("--no-systemd")
    print(f"install.sh took {time.monotonic() - started:.0f} s")
    return result


@pytest.fixture(scope="module")
def initialised(chroot, installed):
    command = next((line.strip() for line in installed.stdout.splitlines()
                    if "doorbell init" in line and "YOUR-NAME" in line), None)
    assert command, installed.stdout
    words = command.split()
    if words[0] == "sudo":  # we are root already, as the message says
        words = words[1:]
    words = [MEMBER if w == "YOUR-NAME" else w for w in words]
    result = chroot.run(*words, "--work-factor", "15", env={"DOORBELL_PASSPHRASE": PASSPHRASE})
    return command, result


@pytest.fixture(scope="module")
def recorded(chroot, initialised):
    """The recorder, as doorbell-rec, records one pass of the synthetic scene (small frames)."""
    config = chroot.path("/var/lib/doorbell/config.toml")
    config.write_text(config.read_text().replace('source = "/dev/video0"', 'source = "synthetic"')
                      + "\n[recording]\npreset = \"ultrafast\"\n")
    text = config.read_text().replace("[camera]\n", "[camera]\nwidth = 320\nheight = 240\n", 1)
    config.write_text(text)
    # What systemd's RuntimeDirectory= makes: /run/doorbell, doorbell-rec:doorbell, 0750.
    chroot.sh("install -d -o doorbell-rec -g doorbell -m 0750 /run/doorbell")
    started = time.monotonic()
    result = chroot.as_recorder(
        "/opt/doorbell/venv/bin/doorbell", "record", "--until-eof", "--source", "synthetic",
        env={"DOORBELL_RUNTIME_DIR": "/run/doorbell"}, timeout=600)
    print(f"recording one pass of the synthetic scene took {time.monotonic() - started:.0f} s")
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -- the first install ----------------------------------------------------------------------------

def test_install_completes_and_degrades_without_picamera2(installed):
    out = installed.stdout
    assert "picamera2 not available: use a USB/RTSP/file source" in out
    assert "created user doorbell-rec" in out and "created user doorbell-view" in out
    assert "created user doorbell-replica" in out
    assert "systemd is not running here" not in out  # --no-systemd was explicit
    assert "installed: /opt/doorbell/venv/bin/doorbell" in out


def test_users_and_groups(chroot, installed):
    for user in ("doorbell-rec", "doorbell-view"):
        entry = chroot.run("getent", "passwd", user).stdout.strip().split(":")
        assert int(entry[2]) < 1000, "a system user"
        assert entry[3] == str(chroot.ids("doorbell", "group"))
        assert entry[6] == "/usr/sbin/nologin"
    groups = chroot.run("id", "-nG", "doorbell-rec").stdout.split()
    assert groups[0] == "doorbell"
    # Debian has a video group (camera devices), Raspberry Pi OS a gpio group as well.
    assert "video" in groups
    assert "video" not in chroot.run("id", "-nG", "doorbell-view").stdout.split()
    # The replicator: a system user in its own group only, never in doorbell (which may write
    # the clips and the audit log); the viewer is in its group (it reads progress.json).
    entry = chroot.run("getent", "passwd", "doorbell-replica").stdout.strip().split(":")
    assert int(entry[2]) < 1000 and entry[6] == "/usr/sbin/nologin"
    assert entry[3] == str(chroot.ids("doorbell-replica", "group"))
    assert chroot.run("id", "-nG", "doorbell-replica").stdout.split() == ["doorbell-replica"]
    assert "doorbell-replica" in chroot.run("id", "-nG", "doorbell-view").stdout.split()
    assert "doorbell-replica" not in chroot.run("id", "-nG", "doorbell-rec").stdout.split()


def test_virtualenv_sees_the_system_packages(chroot, installed):
    cfg = chroot.path("/opt/doorbell/venv/pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    # The apt packages it installed are importable from the venv, the project too.
    result = chroot.run("/opt/doorbell/venv/bin/python", "-c",
                        "import gpiozero, doorbell.cli, cv2, av; print(gpiozero.__file__)")
    assert result.stdout.startswith("/usr/lib/python3/dist-packages/")
    assert chroot.run("/opt/doorbell/venv/bin/doorbell", "--help").returncode == 0
    assert chroot.run("age", "--version").returncode == 0


def test_units_installed_and_enabled(chroot, installed):
    for unit in ("doorbell-recorder.service", "doorbell-viewer.service",
                 "doorbell-replicate.service"):
        installed_unit = chroot.path(f"/etc/systemd/system/{unit}")
        assert installed_unit.read_bytes() == (PROJECT / "deploy/systemd" / unit).read_bytes()
        link = chroot.path(f"/etc/systemd/system/multi-user.target.wants/{unit}")
        assert os.readlink(link) == f"/etc/systemd/system/{unit}"


def test_data_directory_before_init(chroot, installed):
    home = chroot.path("/var/lib/doorbell")
    view, rec, group = (chroot.ids("doorbell-view"), chroot.ids("doorbell-rec"),
                        chroot.ids("doorbell", "group"))
    assert rec != view
    info = home.stat()
    assert (info.st_uid, info.st_gid, mode(home)) == (view, group, 0o2770)
    assert (home / "tls").stat().st_uid == view and mode(home / "tls") == 0o700
    # identities/: the owner, and the replicator's group may read (an ACL entry); the owning
    # group (the recorder's) and others nothing, now and for the files made later
    assert (home / "identities").stat().st_uid == view
    assert chroot.acl("/var/lib/doorbell/identities") == [
        "user::rwx", "group::---", "group:doorbell-replica:r-x", "mask::r-x", "other::---",
        "default:user::rwx", "default:group::---", "default:group:doorbell-replica:r--",
        "default:mask::r--", "default:other::---"]
    assert mode(home / "clips") == 0o2770
    assert "default:group:doorbell-replica:r-x" in chroot.acl("/var/lib/doorbell/clips")
    state = chroot.path("/var/lib/doorbell-replica")
    assert (state.stat().st_uid, mode(state)) == (chroot.ids("doorbell-replica"), 0o750)
    for name in ("index.sqlite3", "audit.jsonl"):
        assert mode(home / name) == 0o660 and (home / name).stat().st_gid == group
    assert mode(home / "config.toml") == 0o640
    assert 'bind = "0.0.0.0:8443"' in (home / "config.toml").read_text()
    assert not (home / "recipients.txt").exists()


# -- doorbell init, as printed --------------------------------------------------------------------

def test_first_install_prints_the_init_command(initialised):
    command, _result = initialised
    # /usr/local/bin/doorbell (deploy/bin/doorbell) runs it as doorbell-view: the fixture ran
    # exactly this, as root, and test_init_as_the_viewer_user checks who owns what it made.
    assert command == "sudo doorbell init --user YOUR-NAME"


def test_first_install_prints_the_viewer_by_name_and_by_address(installed):
    urls = [line.strip() for line in installed.stdout.splitlines()
            if line.strip().startswith("https://")]
    assert urls and urls[0].endswith(".local:8443/"), installed.stdout
    assert any(re.fullmatch(r"https://(\d+\.){3}\d+:8443/", url) for url in urls), urls


def test_admin_command_on_path(chroot, installed):
    command = chroot.path("/usr/local/bin/doorbell")
    assert command.read_bytes() == (PROJECT / "deploy/bin/doorbell").read_bytes()
    assert mode(command) == 0o755


def test_init_as_the_viewer_user(chroot, initialised):
    _command, result = initialised
    assert "RECOVERY KEY" in result.stdout
    printed = re.search(r"fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", result.stdout)
    assert printed
    home = chroot.path("/var/lib/doorbell")
    view = chroot.ids("doorbell-view")
    identity = home / "identities" / f"{MEMBER}.age"
    assert identity.stat().st_uid == view
    # init kept what the installer made: the owner and the replicator's group (r) only
    assert chroot.acl(f"/var/lib/doorbell/identities/{MEMBER}.age") == [
        "user::rw-", "group::---", "group:doorbell-replica:r--", "mask::r--", "other::---"]
    assert "group::---" in chroot.acl("/var/lib/doorbell/identities")
    assert mode(home / "tls" / "viewer-key.pem") == 0o600
    assert mode(home / "audit.jsonl") == 0o660  # the recorder must be able to append
    assert (home / "audit.jsonl").stat().st_size > 0
    assert mode(home / "recipients.txt") & 0o040  # the recorder reads the public keys
    # The fingerprint the owner is told to compare is the certificate's.
    cert = chroot.run("/opt/doorbell/venv/bin/python", "-c",
                      "from doorbell.web.tls import fingerprint; from pathlib import Path; "
                      "print(fingerprint(Path('/var/lib/doorbell/tls/viewer-cert.pem')))")
    assert cert.stdout.strip() == printed.group(1)


def test_recorder_user_cannot_read_identities(chroot, initialised):
    identity = f"/var/lib/doorbell/identities/{MEMBER}.age"
    for command in (["cat", identity], ["ls", "/var/lib/doorbell/identities"],
                    ["cat", "/var/lib/doorbell/tls/viewer-key.pem"]):
        denied = chroot.as_recorder(*command, check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, command
    # ... while it can read what it needs: the public keys and the settings.
    assert "age1" in chroot.as_recorder("cat", "/var/lib/doorbell/recipients.txt").stdout
    chroot.as_recorder("cat", "/var/lib/doorbell/config.toml")
    # The viewer user can read the identity (it unlocks it at login).
    assert chroot.as_viewer("head", "-c", "21", identity).stdout == "age-encryption.org/v1"
    # Other users get nothing at all.
    assert chroot.run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "ls",
                      "/var/lib/doorbell", check=False).returncode != 0


# -- the two users share the store ------------------------------------------------------------

def test_recorder_writes_what_the_viewer_reads_and_deletes(chroot, recorded):
    assert recorded.returncode == 0
    clips = json.loads(chroot.as_viewer("/opt/doorbell/venv/bin/doorbell", "clips", "list",
                                        "--json").stdout)
    assert clips, recorded.stderr[-2000:]
    # Every chunk of every file authenticates with alice's key (as the viewer user).
    verify = chroot.as_viewer("/opt/doorbell/venv/bin/doorbell", "verify", "--user", MEMBER,
                              env={"DOORBELL_PASSPHRASE": PASSPHRASE}, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The viewer deletes a clip the recorder wrote (group-writable day directories).
    first = clips[0]["id"]
    chroot.as_viewer("/opt/doorbell/venv/bin/doorbell", "clips", "delete", first)
    left = json.loads(chroot.as_viewer("/opt/doorbell/venv/bin/doorbell", "clips", "list",
                                       "--json").stdout)
    assert first not in {c["id"] for c in left}
    # Both appended to one audit log, and its chain holds.
    audit = chroot.as_viewer("/opt/doorbell/venv/bin/doorbell", "audit", "--verify")
    assert audit.returncode == 0
    log = chroot.path("/var/lib/doorbell/audit.jsonl").read_text()
    assert '"action":"init"' in log and '"action":"clip.delete"' in log
    # What the recorder made under its unit's UMask: group doorbell can remove it, others
    # get nothing (and the home, 2770, lets no other user even look inside).
    clips_dir = chroot.path("/var/lib/doorbell/clips")
    for path in clips_dir.rglob("*"):
        assert mode(path) == (0o2770 if path.is_dir() else 0o640), path
        assert path.stat().st_gid == chroot.ids("doorbell", "group")
    a_clip = next(clips_dir.rglob("*.mp4.age"))
    assert a_clip.stat().st_uid == chroot.ids("doorbell-rec")
    inside = "/" + str(a_clip.relative_to(chroot.root))
    assert chroot.run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat",
                      inside, check=False).returncode != 0


REPLICATOR_READS = """
import os, sys
from pathlib import Path
from doorbell.storage.replica import source_files
home = Path("/var/lib/doorbell")
names = [f.relative for f in source_files(home)]
for name in names:
    (home / name).read_bytes()  # PermissionError fails the test
print(" ".join(names))
refused = []
day = next((home / "clips").rglob("*.mp4.age")).parent
for attempt in (lambda: open(home / "audit.jsonl", "ab"),
                lambda: open(next(day.glob("*.mp4.age")), "r+b"),
                lambda: open(day / "new.mp4.age", "wb"),
                lambda: os.unlink(next(day.glob("*.jpg.age"))),
                lambda: os.rename(home / "recipients.txt", home / "r.txt"),
                lambda: open(home / "identities" / "x.age", "wb"),
                lambda: open(home / "viewer.sqlite3", "rb"),
                lambda: open(home / "index.sqlite3", "rb"),
                lambda: open(home / "tls" / "viewer-key.pem", "rb")):
    try:
        attempt()
    except PermissionError:
        refused.append(True)
    else:
        refused.append(False)
print(refused)
"""


def test_replicator_user_reads_everything_it_copies_and_writes_nothing(chroot, recorded):
    """doorbell-replica reads every file the replicator copies (the sealed clips, the audit log
    and its head, recipients.txt, the wrapped identity), including those made after the install
    (the recorder's clips, init's identity, a rewritten head); it can change nothing, and reads
    neither the viewer's database, the index nor the TLS key. It learns nothing more than the
    replica will hold: ciphertext and its sizes."""
    result = chroot.as_replicator("/opt/doorbell/venv/bin/python", "-c", REPLICATOR_READS)
    names, refused = result.stdout.strip().splitlines()
    names = names.split()
    for expected in ("audit.jsonl", "audit.jsonl.head", "recipients.txt",
                     f"identities/{MEMBER}.age"):
        assert expected in names
    assert any(name.endswith(".mp4.age") for name in names)
    assert refused == str([True] * 9)
    # ... and the config it needs to start (viewer.allowed_networks, [replica])
    chroot.as_replicator("cat", "/var/lib/doorbell/config.toml")
    # nothing became world-readable for it (others still get nothing at all)
    assert chroot.run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat",
                      f"/var/lib/doorbell/identities/{MEMBER}.age", check=False).returncode != 0
    # the viewer reads the replicator's state directory, the recorder does not
    assert chroot.as_viewer("ls", "/var/lib/doorbell-replica").returncode == 0
    assert chroot.as_recorder("ls", "/var/lib/doorbell-replica", check=False).returncode != 0


def test_footage_recovers_with_age_alone(chroot, initialised, recorded):
    """The README's recovery: Debian's `age` and the recovery key printed once at init."""
    _command, init = initialised
    key = re.search(r"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+", init.stdout).group(0)
    assert key not in "".join(p.read_text(errors="replace") for p in
                              chroot.path("/var/lib/doorbell").rglob("*") if p.is_file())
    chroot.path("/root/recovery.txt").write_text(key + "\n")
    clip = next(chroot.path("/var/lib/doorbell/clips").rglob("*.mp4.age"))
    inside = "/" + str(clip.relative_to(chroot.root))
    version = re.search(r"(\d+)\.(\d+)", chroot.run("age", "--version").stdout)
    if key.startswith("AGE-SECRET-KEY-PQ-") and tuple(map(int, version.groups())) < (1, 3):
        # The recovery key is post-quantum by default: Debian bookworm's age (1.1.1) predates
        # such keys (age 1.3.0) and refuses it, writing nothing; the README says so.
        refused = chroot.run("age", "-d", "-i", "/root/recovery.txt", "-o", "/root/clip.mp4",
                             inside, check=False)
        assert refused.returncode != 0 and not chroot.path("/root/clip.mp4").exists()
        pytest.skip(f"Debian's age {version.group(0)} cannot read a post-quantum recovery key")
    chroot.run("age", "--decrypt", "-i", "/root/recovery.txt", "-o", "/root/clip.mp4", inside)
    assert chroot.path("/root/clip.mp4").read_bytes()[4:8] == b"ftyp"
    thumbnail = inside.replace(".mp4.age", ".jpg.age")
    chroot.run("age", "-d", "-i", "/root/recovery.txt", "-o", "/root/thumb.jpg", thumbnail)
    assert chroot.path("/root/thumb.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_live_frame_readable_by_the_viewer_only(chroot, recorded):
    live = "/run/doorbell/live.jpg"
    assert chroot.path(live).exists() or chroot.path("/run/doorbell/recorder.json").exists()
    status = "/run/doorbell/recorder.json"
    assert chroot.as_viewer("cat", status).returncode == 0
    assert chroot.run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat",
                      status, check=False).returncode != 0


# -- again, uninstall, re-install, purge -------------------------------------------------------

def _tree_digest(root: Path) -> dict[str, tuple[int, int, int, str]]:
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode),
                                            digest)
    return out


@pytest.fixture(scope="module")
def second_run(chroot, recorded):
    home = chroot.path("/var/lib/doorbell")
    before = _tree_digest(home)
    uids = (chroot.ids("doorbell-rec"), chroot.ids("doorbell-view"))
    again = chroot.install("--no-systemd", "--firewall")
    return before, uids, again


def test_second_run_changes_nothing_and_adds_the_firewall(chroot, second_run):
    before, uids, again = second_run
    assert "created user" not in again.stdout
    assert "Next: create the household's first member" not in again.stdout  # initialised
    assert _tree_digest(chroot.path("/var/lib/doorbell")) == before
    assert (chroot.ids("doorbell-rec"), chroot.ids("doorbell-view")) == uids
    nft = chroot.path("/etc/doorbell/doorbell.nft")
    assert nft.read_bytes() == (PROJECT / "deploy/nftables/doorbell.nft").read_bytes()
    for unit in ("doorbell-recorder.service", "doorbell-viewer.service"):
        requires = chroot.path(f"/etc/systemd/system/{unit}.requires/doorbell-firewall.service")
        assert os.readlink(requires) == "/etc/systemd/system/doorbell-firewall.service"


# -- booted: the units, for real, under systemd (systemd-nspawn) ---------------------------------

class Booted:
    """The installed root booted with systemd-nspawn (private network: loopback only)."""

    def __init__(self, root: Path, log: Path):
        self.log = log
        self._log_handle = log.open("wb")
        self.process = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--directory", str(root), "--boot",
             "--private-network", "--register=no", "--keep-unit", "--console=passive",
             f"--machine=doorbell-test-{os.getpid()}"],
            stdin=subprocess.DEVNULL, stdout=self._log_handle, stderr=subprocess.STDOUT)
        self.leader = self._find_leader()

    def _find_leader(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.skip(f"systemd-nspawn cannot boot here: {self.log.read_text()[-1500:]}")
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            found = children.read_text().split() if children.exists() else []
            if found:
                return int(found[0])
            time.sleep(0.2)
        pytest.skip("systemd-nspawn did not start the container's init")

    def run(self, *command: str, check: bool = True, timeout: float = 120,
            env: dict | None = None) -> subprocess.CompletedProcess:
        environment = [f"{k}={v}" for k, v in (env or {}).items()]
        result = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "/usr/bin/env", "-i",
                                 f"PATH={PATH}", "LANG=C.UTF-8", *environment, *command],
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed ({result.returncode}) in the container:\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *[f"--property={p}" for p in properties]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def shutdown(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # nspawn asks the container's systemd to power off
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log_handle.close()


SESSION = """
import http.cookiejar, re, ssl, sys, urllib.parse, urllib.request
context = ssl.create_default_context(cafile="/var/lib/doorbell/tls/viewer-cert.pem")
context.check_hostname = False  # the certificate names the host; the chain is still pinned
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                     urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
base = "https://127.0.0.1:8443"
form = urllib.parse.urlencode({"member": sys.argv[1], "passphrase": sys.argv[2]}).encode()
assert opener.open(base + "/login", data=form).url == base + "/"
clip = re.search(r'href="/clips/([0-9A-Za-z-]+)"', opener.open(base + "/").read().decode())[1]
video = opener.open(urllib.request.Request(base + f"/clips/{clip}/video",
                                           headers={"Range": "bytes=0-4095"}))
assert video.status == 206 and video.read()[4:8] == b"ftyp"
assert opener.open(base + "/live/frame.jpg").read()[:2] == b"\\xff\\xd8"
assert opener.open(base + "/status").status == 200
print("session ok", clip)
"""

PROBE_IP_FILTER = """
import socket
try:
    socket.create_connection(("127.0.0.1", 8443), timeout=3).close()
    print("connected")
except OSError as exc:
    print("refused", exc)
"""


@pytest.fixture(scope="module")
def booted(chroot, second_run, tmp_path_factory):
    if shutil.which("systemd-nspawn") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "systemd-container"],
                       capture_output=True, check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if shutil.which("systemd-nspawn") is None:
            pytest.skip("systemd-nspawn (systemd-container) is missing and could not be installed")
    # minbase has no init: add systemd, as any real Debian or Raspberry Pi OS system has.
    chroot.run("apt-get", "install", "-y", "-q", "--no-install-recommends", "systemd",
               "systemd-sysv", "dbus")
    machine = Booted(chroot.root, tmp_path_factory.mktemp("nspawn") / "console.log")
    try:
        # Up when the viewer is active and the recorder (active, or still "activating" while
        # it has no READY=1 to send) publishes live frames.
        deadline = time.monotonic() + 120
        while True:
            viewer = machine.run("systemctl", "is-active", "doorbell-viewer.service",
                                 check=False).stdout.strip()
            frame = machine.run("test", "-s", "/run/doorbell/live.jpg", check=False)
            if viewer == "active" and frame.returncode == 0:
                break
            assert time.monotonic() < deadline, \
                f"the services did not come up: {machine.log.read_text()[-2000:]}"
            time.sleep(1)
        yield machine, viewer
    finally:
        machine.shutdown()


def test_booted_services_run_sandboxed_and_serve(booted):
    machine, _state = booted
    firewall = machine.show("doorbell-firewall.service", "ActiveState")
    assert firewall["ActiveState"] == "active"
    assert "service_egress" in machine.run("nft", "list", "table", "inet", "doorbell").stdout
    viewer = machine.show("doorbell-viewer.service", "ActiveState", "MainPID")
    assert viewer["ActiveState"] == "active", machine.run(
        "journalctl", "-u", "doorbell-viewer", "--no-pager").stdout[-3000:]
    pid = viewer["MainPID"]
    status = machine.run("cat", f"/proc/{pid}/status").stdout
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
    assert machine.run("id", "-un", uid).stdout.strip() == "doorbell-view"
    assert re.search(r"^CapEff:\s+0+$", status, re.M) and re.search(r"^NoNewPrivs:\s+1$",
                                                                       status, re.M)
    assert re.search(r"^Seccomp:\s+2$", status, re.M)  # the system-call filter is in force
    # A member unlocks, opens the timeline, a clip's bytes and the live frame the recorder
    # (another user, another sandbox) keeps in /run/doorbell.
    session = machine.run("/opt/doorbell/venv/bin/python", "-c", SESSION, MEMBER, PASSPHRASE)
    assert "session ok" in session.stdout
    logs = machine.run("journalctl", "-u", "doorbell-viewer", "-u", "doorbell-recorder",
                       "--no-pager", "-o", "cat").stdout
    assert "Traceback" not in logs, logs[-3000:]


def test_booted_logs_are_journal_native(booted):
    """Under systemd stderr is the journal: the services' lines reach it with their priority
    parsed (no "<N>" left in the message) and without a timestamp of their own."""
    machine, _state = booted
    out = machine.run("journalctl", "-u", "doorbell-recorder", "-u", "doorbell-viewer",
                      "--no-pager", "-o", "json", "--output-fields=MESSAGE,PRIORITY").stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    ours = [e for e in entries if isinstance(e.get("MESSAGE"), str)
            and re.match(r"(<\d>)?doorbell\.(recorder|viewer): ", e["MESSAGE"])]
    assert ours, out[-2000:]
    for entry in ours:
        assert not entry["MESSAGE"].startswith("<"), entry  # journald took the priority
        assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", entry["MESSAGE"]), entry
    assert any(e["MESSAGE"].startswith("doorbell.recorder: recording from ")
               and e["PRIORITY"] == "6" for e in ours), ours[-10:]


def test_booted_recorder_has_no_network_and_feeds_the_watchdog(booted):
    machine, _state = booted
    recorder = machine.show("doorbell-recorder.service", "ActiveState", "MainPID", "NRestarts")
    # Type=notify: only READY=1 from the recorder makes it "active" (else "activating").
    assert recorder["ActiveState"] == "active"
    pid = recorder["MainPID"]
    own_net = machine.run("readlink", f"/proc/{pid}/ns/net").stdout
    assert own_net != machine.run("readlink", "/proc/1/ns/net").stdout  # PrivateNetwork=yes
    assert re.search(r"^Uid:\s+(\d+)", machine.run("cat", f"/proc/{pid}/status").stdout,
                     re.M).group(1) == machine.run("id", "-u", "doorbell-rec").stdout.strip()
    # Freeze the capture loop: the watchdog pings stop, systemd restarts the recorder.
    machine.run("systemctl", "kill", "--signal=SIGSTOP", "--kill-whom=main",
                "doorbell-recorder.service")
    deadline = time.monotonic() + 60
    while machine.show("doorbell-recorder.service", "NRestarts")["NRestarts"] == \
            recorder["NRestarts"]:
        assert time.monotonic() < deadline, "no watchdog restart within 60 s"
        time.sleep(2)
    journal = machine.run("journalctl", "-u", "doorbell-recorder", "--no-pager", "-o",
                          "cat").stdout
    assert "Watchdog timeout" in journal
    deadline = time.monotonic() + 60
    while machine.show("doorbell-recorder.service", "ActiveState")["ActiveState"] != "active":
        assert time.monotonic() < deadline, "the recorder did not come back"
        time.sleep(2)


def test_booted_ip_filter_check_tells_the_truth(booted):
    """install.sh's verdict on IPAddressDeny= matches what the kernel does."""
    machine, _state = booted
    check = machine.run("bash", f"{SRC_IN_ROOT}/deploy/install.sh", "--check-ip-filter",
                        check=False)
    probe = machine.run("systemd-run", "--wait", "--pipe", "--quiet",
                        "--property=IPAddressDeny=any", "/usr/bin/python3", "-c",
                        PROBE_IP_FILTER).stdout
    enforced = probe.startswith("refused")
    print(f"IPAddressDeny= enforced here: {enforced}; install.sh says: "
          f"{(check.stdout + check.stderr).strip()}")
    assert check.returncode == (0 if enforced else 1)


def test_uninstall_keeps_footage_reinstall_adopts_it_purge_removes_it(chroot, second_run):
    home = chroot.path("/var/lib/doorbell")
    clips_before = sorted(p.name for p in (home / "clips").rglob("*.mp4.age"))
    assert clips_before
    out = chroot.run("bash", f"{SRC_IN_ROOT}/deploy/uninstall.sh", "--no-systemd").stdout
    assert "kept /var/lib/doorbell" in out
    for gone in ("/opt/doorbell", "/usr/local/bin/doorbell",
                 "/etc/systemd/system/doorbell-recorder.service",
                 "/etc/systemd/system/doorbell-viewer.service", "/etc/doorbell",
                 "/etc/systemd/system/multi-user.target.wants/doorbell-viewer.service"):
        assert not chroot.path(gone).exists(), gone
    for user in ("doorbell-rec", "doorbell-view", "doorbell-replica"):
        assert chroot.run("getent", "passwd", user, check=False).returncode == 2
    assert chroot.run("getent", "group", "doorbell-replica", check=False).returncode == 2
    assert not chroot.path("/var/lib/doorbell-replica").exists()
    # the kept data names no deleted group: the replicator's ACL entries are gone
    for inside in ("/var/lib/doorbell", "/var/lib/doorbell/identities",
                   f"/var/lib/doorbell/identities/{MEMBER}.age", "/var/lib/doorbell/clips"):
        assert not [line for line in chroot.acl(inside)
                    if re.match(r"(default:)?group:[^:]+:", line)], inside
    assert mode(home / "identities" / f"{MEMBER}.age") == 0o640  # no permission widened
    assert sorted(p.name for p in (home / "clips").rglob("*.mp4.age")) == clips_before

    # A new install gets new users; the kept home is handed to them. (With the recorder's LAN
    # drop-in this time.)
    chroot.install("--no-systemd", "--recorder-lan")
    drop_in = chroot.path("/etc/systemd/system/doorbell-recorder.service.d/lan.conf")
    assert drop_in.read_bytes() == (PROJECT / "deploy/systemd/recorder-lan.conf").read_bytes()
    listed = json.loads(chroot.as_viewer("/opt/doorbell/venv/bin/doorbell", "clips", "list",
                                         "--json").stdout)
    # every kept clip is there (the booted container's recorder, still running on this tree
    # until the module ends, may have added more)
    assert set(clips_before) <= {f"{clip['id']}.mp4.age" for clip in listed}
    assert chroot.as_recorder("cat", f"/var/lib/doorbell/identities/{MEMBER}.age",
                              check=False).returncode != 0
    assert chroot.as_replicator("head", "-c", "21", f"/var/lib/doorbell/identities/{MEMBER}.age"
                                ).stdout == "age-encryption.org/v1"

    out = chroot.run("bash", f"{SRC_IN_ROOT}/deploy/install.sh", "--uninstall", "--purge",
                     "--no-systemd").stdout
    assert "removed /var/lib/doorbell" in out
    assert not home.exists()
    assert not drop_in.parent.exists()
