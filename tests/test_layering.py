"""Package boundaries the design promises, checked two ways.

 * At run time: a fresh interpreter that imports the recorder (camera.recorder, camera.sources,
   the `record` command, and every other camera module) has loaded none of the decrypting half
   of storage. The recorder is write-only by construction, not by discipline.
 * In the source: camera/ never imports web/, web/ never imports camera/, storage/ imports
   neither, and camera/ never names a decrypting storage module.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
DECRYPTING = ("doorbell.storage.age.reader", "doorbell.storage.age.identities",
              "doorbell.storage.keyring", "doorbell.storage.clipreader",
              "doorbell.storage.clipvideo", "doorbell.storage.household")
RECORDER_ENTRY_POINTS = ("doorbell.camera.recorder", "doorbell.camera.sources",
                         "doorbell.commands.record")


def python_files(package: str) -> list[Path]:
    root = PROJECT / package
    return sorted(root.rglob("*.py")) if root.is_dir() else []


def module_name(path: Path) -> str:
    """The installed name: camera/clip.py is doorbell.camera.clip (pyproject's package-dir)."""
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] != "doorbell":
        parts.insert(0, "doorbell")
    return ".".join(parts)


def import_statements(path: Path):
    """(module, imported names) of each import in a file, relative imports resolved; a plain
    `import X` gives (X, ()), an import_module("X") call gives (X, ())."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            yield prefix, tuple(alias.name for alias in node.names)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant)
              and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__")):
            yield str(node.args[0].value), ()


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    names: set[str] = set()
    for module, imported in import_statements(path):
        names.add(module)
        names.update(f"{module}.{name}" for name in imported)
    return names


def offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in python_files(package):
        for name in sorted(imported_modules(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PROJECT)} imports {name}")
    return found


def loaded_modules(entry_points: list[str], optional: list[str] = ()) -> set[str]:
    """sys.modules of a fresh interpreter after importing `entry_points` (and `optional`)."""
    probe = f"""
import importlib, json, sys
for name in {list(entry_points)!r}:
    importlib.import_module(name)
for name in {list(optional)!r}:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # an optional third-party dependency (picamera2, gpiozero) that is not installed
        if (exc.name or "").split(".")[0] == "doorbell":
            raise
from doorbell.camera.sources import plan_source
from doorbell.config import Settings
plan_source("synthetic", Settings())
print(json.dumps(sorted(sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=PROJECT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert set(entry_points) <= modules
    return modules


def decrypting(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == d or m.startswith(d + ".") for d in DECRYPTING))


def test_camera_package_loads_no_decrypting_code():
    camera_modules = [module_name(p) for p in python_files("camera")]
    modules = loaded_modules(["doorbell.camera.recorder", "doorbell.camera.sources"],
                             camera_modules)
    assert decrypting(modules) == [], "the camera package loaded decrypting code"
    assert not any(m == "doorbell.web" or m.startswith("doorbell.web.") for m in modules)


def test_record_command_loads_no_decrypting_code():
    modules = loaded_modules(list(RECORDER_ENTRY_POINTS))
    assert decrypting(modules) == [], "the record command loaded decrypting code"



def test_doorbell_record_process_loads_no_decrypting_code():
    # What `doorbell record` runs: the command line itself, then the record handler.
    modules = loaded_modules(["doorbell.cli", "doorbell.parsers", "doorbell.errors",
                              "doorbell.commands.record"])
    assert decrypting(modules) == [], "the `doorbell record` process loaded decrypting code"
    assert not any(m == "flask" or m.startswith(("flask.", "doorbell.web.")) for m in modules)


def test_camera_never_imports_web_and_web_never_imports_camera():
    assert offending("camera", ("doorbell.web",)) == []
    assert offending("web", ("doorbell.camera",)) == []


def test_storage_imports_neither_camera_nor_web():
    assert offending("storage", ("doorbell.camera", "doorbell.web", "doorbell.commands",
                                  "doorbell.cli")) == []


def test_camera_source_never_names_a_decrypting_module():
    assert offending("camera", DECRYPTING) == []


def test_the_recorder_guard_refuses_identity_files(tmp_path):
    identities = tmp_path / "identities"
    identities.mkdir()
    (identities / "alice.age").write_bytes(b"age-encryption.org/v1\n")
    probe = f"""
import sys
from pathlib import Path
from doorbell.guard import forbid_identity_access
forbid_identity_access(Path({str(identities)!r}))
try:
    open({str(identities / "alice.age")!r}, "rb")
except PermissionError as exc:
    print("refused:", exc)
    sys.exit(0)
sys.exit("the recorder could open an identity file")
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=PROJECT, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused" in result.stdout


@pytest.mark.parametrize("package", ["camera", "storage", "web", "config", "doorbell"])
def test_every_package_parses(package):
    # A syntax error in a rarely imported module would otherwise hide until it is needed.
    for path in python_files(package):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# -- import cycles --------------------------------------------------------------------------------


def project_imports(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, at the top or inside a function (a lazy import is
    still a dependency: a cycle through one only waits for the call that closes it).

    `from P import n` depends on P.n when that is a module, else on P; the parent packages
    Python initialises on the way are not counted (a package's __init__ importing its own
    submodules is not a cycle).
    """
    found: set[str] = set()
    for module, imported in import_statements(path):
        if not imported:
            found.add(module)
        for name in imported:
            child = f"{module}.{name}"
            found.add(child if child in known else module)
    return found & known


def import_cycles() -> list[list[str]]:
    paths = [p for package in ("camera", "storage", "web", "config", "doorbell")
             for p in python_files(package)]
    known = {module_name(p) for p in paths}
    graph = {module_name(p): project_imports(p, known) - {module_name(p)} for p in paths}
    cycles, state = [], {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                walk(target, trail + [target])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    return cycles


def test_no_import_cycles():
    cycles = import_cycles()
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
