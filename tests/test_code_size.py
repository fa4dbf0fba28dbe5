"""The size limits of the source, checked: no module over 700 lines, no function over 100 in ``src/``.

Small modules named for what they hold and functions that fit on a screen are the project's
style rule; this walks ``src/`` with :mod:`ast` and names every offender, so a change that
grows one past its limit fails here with the file, the function and its length.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 100


def _modules() -> list[Path]:
    modules = sorted(SRC.rglob("*.py"))
    assert modules, f"no Python files under {SRC}"
    return modules


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """``(name, first line, length in lines)`` of every function and method in ``path`` (nested ones too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.name, node.lineno, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def test_no_module_over_700_lines() -> None:
    too_long = []
    for path in _modules():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(SRC)}: {n} lines")
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them by concern):\n" + "\n".join(too_long)


def test_no_function_over_100_lines() -> None:
    too_long = []
    for path in _modules():
        for name, line, n in _functions(path):
            if n > MAX_FUNCTION_LINES:
                too_long.append(f"{path.relative_to(SRC)}:{line} {name}: {n} lines")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (extract helpers):\n" + "\n".join(too_long)


def test_the_checks_see_an_offender(tmp_path: Path) -> None:
    """The function measure counts a long function's full length, methods included."""
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "long.py"
    path.write_text(f"class A:\n    def long(self):\n{body}\n\n\ndef short():\n    return 1\n", encoding="utf-8")
    lengths = {name: n for name, _, n in _functions(path)}
    assert lengths == {"long": MAX_FUNCTION_LINES + 1, "short": 2}
