"""The shape of ``storage``: what each module may import, and how large a module may grow."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.layout import REPO, imported_modules, loaded_after

STORAGE = REPO / "storage"
MODULES = sorted(STORAGE.glob("*.py"))
MAX_LINES = 500


def test_the_storage_modules_are_found() -> None:
    assert {path.stem for path in MODULES} >= {"records", "errors", "repositories", "threads"}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_storage_never_imports_bot(path: Path) -> None:
    offending = {
        name for name in imported_modules(path) if name == "bot" or name.startswith("bot.")
    }
    assert not offending, f"{path.name} imports {sorted(offending)}"


def test_loading_every_storage_module_loads_nothing_of_bot() -> None:
    modules = ", ".join(f"storage.{path.stem}" for path in MODULES if path.stem != "__init__")
    assert not {name for name in loaded_after(f"import {modules}") if name.split(".")[0] == "bot"}


def test_records_and_errors_load_without_sqlalchemy() -> None:
    # What the conversation core needs from storage must not drag the database layer in.
    loaded = {name.split(".")[0] for name in loaded_after("import storage.records, storage.errors")}
    assert "storage" in loaded
    assert "sqlalchemy" not in loaded


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_storage_module_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by job"
