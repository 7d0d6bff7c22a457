"""The storage package's errors live in storage.errors (the age format keeps its own)."""

import ast
import importlib
import inspect
import pkgutil

import doorbell.storage
import doorbell.storage.errors


def test_every_storage_error_class_is_defined_in_storage_errors():
    elsewhere = []
    for info in pkgutil.iter_modules(doorbell.storage.__path__, "doorbell.storage."):
        if info.name in ("doorbell.storage.age", "doorbell.storage.errors"):
            continue
        module = importlib.import_module(info.name)
        elsewhere += [f"{info.name}.{name}" for name, value in vars(module).items()
                      if inspect.isclass(value) and issubclass(value, BaseException)
                      and value.__module__ == info.name]
    assert elsewhere == []


def test_storage_errors_imports_nothing_so_any_process_may_name_them():
    tree = ast.parse(inspect.getsource(doorbell.storage.errors))
    assert [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)] == []
