"""`doorbell --version` says which release is installed (from the distribution's metadata)."""

import shutil
import subprocess
import sys
import tomllib

from tests.cli.conftest import PROJECT, assert_ok, doorbell


def project_version() -> str:
    with (PROJECT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def test_version_is_the_installed_release():
    result = assert_ok(doorbell("--version"))
    assert result.stdout == f"doorbell {project_version()}\n"
    assert result.stderr == ""


def test_version_needs_no_home_and_no_command():
    # No DOORBELL_HOME, no subcommand: --version answers before anything else is needed.
    result = assert_ok(doorbell("--version", env={"DOORBELL_HOME": "/nonexistent/doorbell"}))
    assert result.stdout.startswith("doorbell ")


def test_a_copy_without_metadata_says_so_in_one_sentence(tmp_path):
    # The package directory alone, without its installed metadata (-S: no site-packages).
    shutil.copytree(PROJECT / "doorbell", tmp_path / "doorbell",
                    ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-S", "-c",
         "from doorbell.parsers import build_parser; build_parser().parse_args(['--version'])"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doorbell: ") and "not installed" in lines[0]
