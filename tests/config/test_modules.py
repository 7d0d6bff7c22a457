"""How the config package is cut: the model and the validation engine never need the loader.

test_layering already refuses import cycles; this names the rule for config itself, so that a
lazy import of the loader from the model (the old way round the cycle) fails here by name.
"""

import ast

from ..test_layering import PROJECT, imported_modules, module_name, python_files


def config_imports(filename: str) -> set[str]:
    return {name for name in imported_modules(PROJECT / "config" / filename)
            if name.startswith("doorbell.config.")}


def within(names: set[str], modules: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == m or n.startswith(m + ".") for m in modules)}


def test_model_never_imports_the_loader_or_the_editor():
    names = config_imports("model.py")
    assert within(names, ("doorbell.config.loader", "doorbell.config.editor")) == set()
    assert names == within(names, ("doorbell.config.errors", "doorbell.config.validation"))


def test_validation_and_errors_know_no_settings_model():
    names = config_imports("validation.py")
    assert names == within(names, ("doorbell.config.errors",))
    assert config_imports("errors.py") == set()


def test_config_modules_import_no_private_names_of_other_modules():
    found = []
    for path in python_files("config"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("doorbell."):
                found += [f"{module_name(path)} imports {node.module}.{alias.name}"
                          for alias in node.names if alias.name.startswith("_")]
    assert found == []
