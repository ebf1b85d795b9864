"""The shape of ``storage``: what each module may import, and how large a module may grow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

STORAGE = Path(__file__).resolve().parents[2] / "storage"
MODULES = sorted(STORAGE.glob("*.py"))
MAX_LINES = 500


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import statement stands."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _loaded_after(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running ``statement``."""
    report = "print(' '.join({name.split('.')[0] for name in sys.modules}))"
    code = f"import sys\n{statement}\n{report}"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=STORAGE.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_the_storage_modules_are_found() -> None:
    assert {path.stem for path in MODULES} >= {"records", "errors", "repositories", "threads"}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_storage_never_imports_bot(path: Path) -> None:
    offending = {name for name in _imported(path) if name == "bot" or name.startswith("bot.")}
    assert not offending, f"{path.name} imports {sorted(offending)}"


def test_loading_every_storage_module_loads_nothing_of_bot() -> None:
    modules = ", ".join(f"storage.{path.stem}" for path in MODULES if path.stem != "__init__")
    assert "bot" not in _loaded_after(f"import {modules}")


def test_records_and_errors_load_without_sqlalchemy() -> None:
    # What the conversation core needs from storage must not drag the database layer in.
    loaded = _loaded_after("import storage.records, storage.errors")
    assert "storage" in loaded
    assert "sqlalchemy" not in loaded


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_storage_module_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by job"
