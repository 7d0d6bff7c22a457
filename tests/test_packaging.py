"""The wheel is the product: built with `python -m build`, installed (not editable) into a fresh
venv, it holds everything under `doorbell/` and runs `doorbell demo`. The sdist is what a Pi
owner unpacks and runs deploy/install.sh from: it carries deploy/ whole.

The fresh venv gets the project's code only from the wheel. Its third-party dependencies come
from the test environment's site-packages through a .pth line (installing OpenCV, PyAV and
friends again would take minutes); a path added that way is not a site directory, so the
editable install's finder in there is never activated. The demo runs in a working directory
holding a `config.py` and a `web/` package that raise when imported: `python -m doorbell` puts
the working directory first on sys.path, so any leftover top-level `import config` or `from web`
in the installed code would fail the test.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.helpers import clean_env, free_port

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("camera", "config", "storage", "web")  # installed as doorbell.<name>
BUILD_TIMEOUT_S = 300
VIEWER_TIMEOUT_S = 180  # the demo's `doorbell init` (scrypt 2^15) and gunicorn's start first
RECORDER_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
TRAP = 'raise ImportError("imported {name!r} from the working directory, not doorbell.{name}")\n'
STYLESHEET = re.compile(r'<link rel="stylesheet" href="(/static/[^"]+\.css)"')


def run(*args, timeout_s: float = BUILD_TIMEOUT_S, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False,
                            **kwargs)
    assert result.returncode == 0, (f"{' '.join(map(str, args))} failed\n"
                                    f"stdout:\n{result.stdout[-3000:]}\n"
                                    f"stderr:\n{result.stderr[-3000:]}")
    return result


def env_without_project() -> dict[str, str]:
    """The test's environment minus anything that could point Python at the source tree."""
    env = clean_env()
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def _build(tmp_path: Path, kind: str, pattern: str) -> Path:
    """`python -m build --<kind>` from a copy of the tree (a build writes build/ and egg-info)."""
    try:
        import build  # noqa: F401 - only to say what is missing
    except ImportError:
        pytest.fail("python -m build is not installed: run deploy/dev-setup.sh (dev extras).")
    source = tmp_path / f"{kind}-source"
    shutil.copytree(PROJECT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
    dist = tmp_path / f"{kind}-dist"
    run(sys.executable, "-m", "build", f"--{kind}", "--outdir", str(dist), str(source),
        env=env_without_project())
    built = list(dist.glob(pattern))
    assert len(built) == 1, built
    return built[0]


def build_wheel(tmp_path: Path) -> Path:
    return _build(tmp_path, "wheel", "privacy_doorbell-*.whl")


def build_sdist(tmp_path: Path) -> Path:
    return _build(tmp_path, "sdist", "privacy_doorbell-*.tar.gz")


def fresh_venv(tmp_path: Path, wheel: Path) -> tuple[Path, Path]:
    """(venv, its site-packages) with the wheel installed and the test's third-party packages."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
        "--no-index", "--no-compile", str(wheel), env=env_without_project())
    site_packages = Path(run(str(python), "-c",
                             "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                             cwd=tmp_path).stdout.strip())
    (site_packages / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, site_packages


def repo_files(folder: str, pattern: str) -> list[Path]:
    return sorted(p.relative_to(PROJECT / folder) for p in (PROJECT / folder).glob(pattern)
                  if p.is_file() and "__pycache__" not in p.parts)


def demo_processes(demo_dir: Path) -> list[int]:
    """Pids whose command line names the demo home: the recorder, the viewer and its worker."""
    found = subprocess.run(["pgrep", "-f", str(demo_dir)], capture_output=True, text=True,
                           check=False)
    return [int(pid) for pid in found.stdout.split()]


def get(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body); connection errors are raised, HTTP errors answered."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp_path)
    venv, site_packages = fresh_venv(tmp_path, wheel)
    return wheel, venv, site_packages


def test_the_wheel_installs_everything_under_doorbell_and_nothing_at_the_top(installed):
    wheel, _, site_packages = installed
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"doorbell"}, \
        top_level
    for name in PACKAGE_FOLDERS:
        assert not (site_packages / name).exists(), f"a top-level {name}/ in site-packages"
        assert not (site_packages / f"{name}.py").exists(), f"a top-level {name}.py"

    installed_root = site_packages / "doorbell"
    for folder in PACKAGE_FOLDERS:
        # Every module, subpackage and data file of the folder, at doorbell/<folder>/...
        shipped = [*repo_files(folder, "**/*.py"), *repo_files(folder, "**/*.toml"),
                   *repo_files(folder, "templates/*"), *repo_files(folder, "static/*"),
                   *repo_files(folder, "wordlists/*")]
        missing = [str(p) for p in shipped if not (installed_root / folder / p).is_file()]
        assert not missing, f"not in the wheel under doorbell/{folder}/: {missing}"
    for data in ("web/templates/login.html", "web/static/style.css",
                 "storage/wordlists/eff_large.txt", "config/default.toml"):
        assert (installed_root / data).read_bytes() == (PROJECT / data).read_bytes(), data


def test_the_installed_wheel_runs_the_demo_from_any_directory(installed, tmp_path):
    _, venv, site_packages = installed
    workdir = tmp_path / "anywhere"
    workdir.mkdir()
    (workdir / "config.py").write_text(TRAP.format(name="config"))
    (workdir / "web").mkdir()
    (workdir / "web" / "__init__.py").write_text(TRAP.format(name="web"))
    env = env_without_project()
    env["DOORBELL_RUNTIME_DIR"] = str(tmp_path / "run")

    modules = run(str(venv / "bin" / "python"), "-c",
                  "import doorbell.camera, doorbell.config, doorbell.storage, doorbell.web;"
                  "print(*(m.__file__ for m in (doorbell.camera, doorbell.config, "
                  "doorbell.storage, doorbell.web)))", cwd=workdir, env=env, timeout_s=60)
    for module_file in modules.stdout.split():
        assert Path(module_file).is_relative_to(site_packages / "doorbell"), module_file

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    demo_dir = workdir / "doorbell-demo"
    log = tmp_path / "demo.log"
    with log.open("wb") as output:
        demo = subprocess.Popen(
            [str(venv / "bin" / "doorbell"), "demo", "--bind", f"127.0.0.1:{port}"],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True)

    def describe() -> str:
        return f"exit code {demo.poll()}\n{log.read_text(errors='replace')[-4000:]}"

    def wait_for(condition, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while not (result := condition()):
            assert demo.poll() is None, f"the demo exited\n{describe()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{describe()}"
            time.sleep(1.0)
        return result

    def login_page() -> bytes | None:
        with contextlib.suppress(OSError):
            status, _, body = get(f"{base_url}/login")
            if status == 200:
                return body
        return None

    try:
        page = wait_for(login_page, VIEWER_TIMEOUT_S, "GET /login to answer 200").decode()
        stylesheets = STYLESHEET.findall(page)
        assert stylesheets, page[:2000]
        for href in stylesheets:
            status, content_type, body = get(base_url + href)
            assert status == 200, (href, status)
            assert content_type.startswith("text/css"), (href, content_type)
            assert body == (PROJECT / "web" / href.lstrip("/")).read_bytes(), href
        # The recorder (doorbell.camera) started from the wheel too, and stays up.
        wait_for((tmp_path / "run" / "recorder.json").is_file, RECORDER_TIMEOUT_S,
                 "the recorder's status file")
        assert "the recorder stopped" not in log.read_text(errors="replace"), describe()

        demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGINT did not stop the demo within {STOP_TIMEOUT_S} s\n{describe()}")
        assert code == 0, describe()
        assert "Traceback" not in log.read_text(errors="replace"), describe()
        assert (demo_dir / "recipients.txt").is_file(), "the demo home is not in the working dir"
        deadline = time.monotonic() + 5
        while (left := demo_processes(demo_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"processes left running after the demo stopped: {left}"
    finally:
        if demo.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
        for pid in demo_processes(demo_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_sdist_carries_deploy_and_what_install_sh_installs_from(tmp_path):
    archive = build_sdist(tmp_path)
    with tarfile.open(archive) as sdist:
        members = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/" in m.name}
    deploy = [str(p.relative_to(PROJECT)) for p in sorted((PROJECT / "deploy").rglob("*"))
              if p.is_file() and "__pycache__" not in p.parts]
    assert "deploy/install.sh" in deploy and "deploy/systemd/doorbell-viewer.service" in deploy
    missing = [name for name in deploy if name not in members]
    assert not missing, f"not in the sdist: {missing}"
    for script in ("deploy/install.sh", "deploy/uninstall.sh", "deploy/dev-setup.sh"):
        assert members[script].mode & 0o111, f"{script} is not executable in the sdist"
        assert members[script].size == (PROJECT / script).stat().st_size, script
    # What install.sh copies and builds from (its `tar -C "$SRC" ...` line), so an unpacked
    # sdist is a checkout for it.
    for name in ("pyproject.toml", "README.md", "doorbell/__main__.py", "camera/recorder.py",
                 "storage/index.py", "web/templates/login.html", "config/default.toml"):
        assert name in members, f"{name} is not in the sdist"
