"""The code's shape holds: small classes and functions, one package that imports watchdog, a role line per module."""

from __future__ import annotations

import ast
import re

from conftest import ROOT

PACKAGE = ROOT / "snackwatch"
WATCHDOG_IMPORTERS = {"watch/inotify.py", "watch/observer.py"}
MAX_CLASS, MAX_FUNCTION = 250, 50


def modules() -> dict[str, ast.Module]:
    return {str(path.relative_to(PACKAGE)): ast.parse(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_class_over_250_lines_and_no_function_over_50() -> None:
    too_long = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > limit:
                    too_long.append(f"{name}:{node.lineno} {node.name} ({size} lines)")
    assert too_long == []


def test_only_the_watch_package_imports_watchdog_and_there_two_modules() -> None:
    importers = set()
    for name, tree in modules().items():
        for node in ast.walk(tree):
            imported = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = [node.module]
            if any(module == "watchdog" or module.startswith("watchdog.") for module in imported):
                importers.add(name)
    assert importers == WATCHDOG_IMPORTERS


def test_every_module_says_its_role_in_its_first_line() -> None:
    silent = [name for name, tree in modules().items() if not (ast.get_docstring(tree) or "").strip()]
    assert silent == []


def test_every_package_with_code_is_shipped() -> None:
    """A subpackage missing from pyproject's list installs without its modules: the daemon dies at start."""
    listed = re.search(r"^packages = \[(.*)\]", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert listed is not None
    shipped = set(re.findall(r'"([^"]+)"', listed.group(1)))
    code = {".".join(path.parent.relative_to(ROOT).parts) for path in PACKAGE.rglob("*.py")}
    assert code <= shipped
