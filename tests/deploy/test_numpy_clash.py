"""The Pi's numpy clash, reproduced on Debian 12 with apt's numpy, and the installer's way out.

On Raspberry Pi OS Bookworm the camera stack comes from apt (python3-picamera2, which imports
python3-simplejpeg), built against apt's numpy 1.24. The installer's venv sees it
(--system-site-packages). Installed without constraints, `opencv-python-headless>=4.8` resolves to
a release that requires numpy 2.x, pip puts numpy 2.x in the venv, it shadows apt's numpy, and
apt's numpy-1.x extension modules stop importing. Debian 12 has no simplejpeg or picamera2, so
python3-bottleneck stands in: a small apt extension module built against the same numpy ABI
(python3-numpy-abi9). A `picamera2` package on PYTHONPATH that imports it stands in for
picamera2's own import of simplejpeg.

Here, with Debian's /usr/bin/python3 and the real PyPI (or the machine's pip index):
1. a venv with system site packages gets the project installed as pip alone would do it:
   numpy 2.x lands in the venv and bottleneck fails with numpy's "compiled using NumPy 1.x";
   `plan_source("picamera2")` says so in one sentence, with no page of numpy text;
2. `deploy/install.sh --python-only --venv` on that same venv repairs it: numpy is apt's file
   again, bottleneck imports, OpenCV (< 4.12) and PyAV work on numpy 1.24 (a synthetic frame is
   encoded to H.264), picamera2's stand-in imports;
3. the same installer on a fresh venv never lets numpy 2.x in.

Needs python3-numpy and python3-bottleneck from apt (deploy/dev-setup.sh installs them).
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import clean_env

PROJECT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
APT_SITE = Path("/usr/lib/python3/dist-packages")
PIP_TIMEOUT_S = 900
NUMPY_1X_MESSAGE = "compiled using NumPy 1.x cannot be run in"
# picamera2 (from apt) imports simplejpeg (from apt, built for numpy 1.x); bottleneck stands in.
PICAMERA2_STAND_IN = "import bottleneck  # as picamera2 imports simplejpeg\n"
PROBE = """
import json, sys
import numpy
from doorbell.camera.sources import plan_source
from doorbell.config import Settings
try:
    plan_source("picamera2", Settings())
    picamera2 = "imported"
except ValueError as exc:
    picamera2 = str(exc)
print(json.dumps({"numpy_version": numpy.__version__, "numpy_file": numpy.__file__,
                  "picamera2": picamera2}))
"""
ENCODE = """
import cv2, numpy
from doorbell.camera.encoder import H264Encoder
from doorbell.camera.synthetic import SyntheticScene
encoder = H264Encoder(320, 240, 15, "ultrafast", 30, 1.0)
packets = [p for frame in SyntheticScene(320, 240, 15, duration_s=1).frames()
           for p in encoder.encode(frame)]
ok, jpeg = cv2.imencode(".jpg", numpy.zeros((48, 64, 3), numpy.uint8))
print(cv2.__version__, len(packets), ok)
"""


def debian_12() -> bool:
    release = Path("/etc/os-release")
    return release.is_file() and re.search(r'^VERSION_ID="?12"?$', release.read_text(),
                                           re.M) is not None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not debian_12() or not SYSTEM_PYTHON.is_file(),
                       reason="reproduces the clash with Debian 12's own python3 and numpy"),
]


def run(*args, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                            check=False, **kwargs)
    if check:
        assert result.returncode == 0, (f"{' '.join(map(str, args))} failed\n"
                                        f"stdout:\n{result.stdout[-3000:]}\n"
                                        f"stderr:\n{result.stderr[-3000:]}")
    return result


def environment(stand_in: Path) -> dict[str, str]:
    env = clean_env()
    for name in ("PYTHONHOME", "VIRTUAL_ENV", "PIP_CONSTRAINT"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(stand_in)  # picamera2's stand-in, nothing of the project
    return env


@pytest.fixture(scope="module")
def apt_numpy() -> str:
    result = run(str(SYSTEM_PYTHON), "-I", "-c",
                 "import numpy, bottleneck; print(numpy.__version__, numpy.__file__)",
                 check=False)
    if result.returncode != 0:
        pytest.fail("apt's python3-numpy and python3-bottleneck are needed: run "
                    f"deploy/dev-setup.sh ({result.stderr.strip()[-300:]})")
    version, path = result.stdout.split()
    assert version.startswith("1."), f"Debian 12's numpy is 1.24, found {version}"
    assert Path(path).is_relative_to(APT_SITE), path
    return version


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("numpy-clash")
    source = root / "source"  # what install.sh builds from (its tar of the checkout)
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, source / name)
    for name in ("doorbell", "camera", "storage", "web", "config"):
        shutil.copytree(PROJECT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    stand_in = root / "stand-in"
    (stand_in / "picamera2").mkdir(parents=True)
    (stand_in / "picamera2" / "__init__.py").write_text(PICAMERA2_STAND_IN)
    return {"root": root, "source": source, "stand_in": stand_in}


def probe(venv: Path, stand_in: Path) -> dict:
    env = environment(stand_in)
    python = str(venv / "bin" / "python")
    found = run(python, "-c", PROBE, env=env, cwd=venv)
    bottleneck = run(python, "-c", "import bottleneck; print(bottleneck.__file__)", env=env,
                     cwd=venv, check=False)
    return {**json.loads(found.stdout), "probe_stderr": found.stderr,
            "bottleneck_code": bottleneck.returncode, "bottleneck_stderr": bottleneck.stderr,
            "opencv": run(python, "-c", "import cv2; print(cv2.__version__)", env=env,
                          cwd=venv).stdout.strip()}


def installer(venv: Path, workspace: dict) -> subprocess.CompletedProcess:
    env = environment(workspace["stand_in"])
    return run("bash", str(PROJECT / "deploy" / "install.sh"), "--python-only", "--venv",
               str(venv), "--src", str(PROJECT), env=env, cwd=workspace["root"])


@pytest.fixture(scope="module")
def clash(apt_numpy, workspace) -> dict:
    """One venv: installed as pip alone would (before), then repaired by the installer."""
    venv = workspace["root"] / "venv"
    run(str(SYSTEM_PYTHON), "-m", "venv", "--system-site-packages", str(venv))
    run(str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(workspace["source"]),
        env=environment(workspace["stand_in"]), cwd=workspace["root"])
    before = probe(venv, workspace["stand_in"])
    repaired = installer(venv, workspace)
    after = probe(venv, workspace["stand_in"])
    return {"venv": venv, "before": before, "after": after, "installer": repaired,
            "apt_numpy": apt_numpy, "stand_in": workspace["stand_in"]}


def test_unconstrained_install_puts_numpy_2_over_apts_and_breaks_its_modules(clash):
    before, venv = clash["before"], clash["venv"]
    assert before["numpy_version"].startswith("2."), before
    assert Path(before["numpy_file"]).is_relative_to(venv), before
    assert tuple(map(int, before["opencv"].split(".")[:2])) >= (4, 12), before
    assert before["bottleneck_code"] != 0
    assert NUMPY_1X_MESSAGE in before["bottleneck_stderr"], before["bottleneck_stderr"]


def test_picamera2_that_cannot_load_on_this_numpy_is_one_sentence(clash):
    before = clash["before"]
    message = before["picamera2"]
    assert message.startswith("the picamera2 source cannot start: the camera modules from apt "
                              "are built for the system's numpy"), message
    assert before["numpy_version"] in message and "deploy/install.sh" in message, message
    assert "\n" not in message and ". " not in message, message
    # numpy's page about the clash is held back: the sentence is all the user sees.
    assert NUMPY_1X_MESSAGE not in before["probe_stderr"], before["probe_stderr"]


def test_the_installer_repairs_that_venv_and_keeps_apts_numpy(clash):
    after, venv = clash["after"], clash["venv"]
    assert "removing the virtualenv's own numpy" in clash["installer"].stdout
    assert after["numpy_version"] == clash["apt_numpy"], after
    assert Path(after["numpy_file"]).is_relative_to(APT_SITE), after
    assert after["bottleneck_code"] == 0, after["bottleneck_stderr"]
    assert tuple(map(int, after["opencv"].split(".")[:2])) < (4, 12), after
    assert after["picamera2"] == "imported", after
    constraints = (venv / "pip-constraints.txt").read_text()
    assert f"numpy=={clash['apt_numpy']}" in constraints.splitlines()
    env = environment(clash["stand_in"])
    encoded = run(str(venv / "bin" / "python"), "-c", ENCODE, env=env, cwd=venv)
    version, packets, ok = encoded.stdout.split()
    assert int(packets) > 0 and ok == "True", encoded.stdout
    run(str(venv / "bin" / "doorbell"), "--help", env=env, cwd=venv)


def test_the_installer_on_a_fresh_venv_never_lets_numpy_2_in(apt_numpy, workspace):
    venv = workspace["root"] / "fresh-venv"
    installer(venv, workspace)
    after = probe(venv, workspace["stand_in"])
    assert after["numpy_version"] == apt_numpy, after
    assert Path(after["numpy_file"]).is_relative_to(APT_SITE), after
    assert after["bottleneck_code"] == 0, after["bottleneck_stderr"]
    assert after["picamera2"] == "imported", after
    listed = run(str(venv / "bin" / "python"), "-m", "pip", "list", "--path",
                 str(next((venv / "lib").glob("python3*/site-packages"))), cwd=venv).stdout
    assert not re.search(r"^numpy\s", listed, re.M), listed
