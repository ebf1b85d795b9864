"""Helpers of the layout tests (``tests/storage/test_layout.py``, ``tests/core/test_layout.py``,
``tests/conversation/test_imports.py``): what a module imports, and what importing loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

__all__ = ["REPO", "imported_modules", "loaded_after"]

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import statement stands (in a function,
    under ``TYPE_CHECKING``); a relative import as its dots and name (``.models``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def loaded_after(statement: str) -> set[str]:
    """Every module a fresh interpreter has loaded after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(done.stdout))
