"""The directions imports must never take, read from the source with ``ast`` (nothing is
imported): the worker's code never reaches into the web app, the core reaches into
neither, the data layer stands on config alone and the highlighter on config, logs and
controls.
Every form counts: ``import a.b``, ``from a import b``, ``from a import b as c``, relative
imports, imports inside functions and ``importlib.import_module("a.b")``."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import ROOT

OURS = ("snippet_service", "tasks")


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # absolute dotted name

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} → {self.module}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_ours(module: str) -> bool:
    return any(module == top or module.startswith(top + ".") for top in OURS)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of ours (a file or directory in the tree)."""
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path, source: str | None = None) -> Iterator[Import]:
    """Every module the file imports, anywhere in it, as absolute names."""
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                # ``from snippet_service import web`` imports the module snippet_service.web
                yield Import(path, node.lineno,
                             candidate if alias.name != "*" and is_module(candidate) else base)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield Import(path, node.lineno, node.args[0].value)


def files(*patterns: str) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(ROOT.glob(pattern))
    return sorted(path for path in found if path.is_file())


CORE = files("snippet_service/*.py")
DATA_LAYER = files("snippet_service/db.py", "snippet_service/sqlite.py", "snippet_service/bulk.py",
                   "snippet_service/backend.py", "snippet_service/postgres.py")
DATA_LAYER_MODULES = {module_name(path) for path in DATA_LAYER}
HIGHLIGHTER = files("snippet_service/highlighter.py", "snippet_service/renderpool.py")
HIGHLIGHTER_MODULES = {module_name(path) for path in HIGHLIGHTER}


@dataclass(frozen=True)
class Rule:
    files: list[Path]
    forbidden: Callable[[str], bool]


RULES = {
    "tasks never import the web app": Rule(
        files("tasks/**/*.py"), lambda module: within(module, "snippet_service.web")),
    "the core imports neither the web app nor tasks": Rule(
        CORE, lambda module: within(module, "snippet_service.web") or within(module, "tasks")),
    "the data layer imports nothing of ours but config": Rule(
        DATA_LAYER, lambda module: is_ours(module) and module != "snippet_service.config"
        and module not in DATA_LAYER_MODULES),
    "the highlighter imports nothing of ours but config, logs and controls": Rule(
        HIGHLIGHTER, lambda module: is_ours(module)
        and module not in ("snippet_service.config", "snippet_service.logs",
                           "snippet_service.controls")
        and module not in HIGHLIGHTER_MODULES),
    "config, logs and controls import nothing of ours": Rule(
        files("snippet_service/config.py", "snippet_service/logs.py",
              "snippet_service/controls.py"), is_ours),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_forbidden_import_directions(rule: str) -> None:
    checked = RULES[rule]
    assert checked.files, "no files to check: has the tree moved?"
    offending = list(dict.fromkeys(str(found) for path in checked.files
                                   for found in imports_of(path)
                                   if checked.forbidden(found.module)))
    assert not offending, f"{rule}; these do:\n" + "\n".join(offending)


def test_every_form_of_import_is_seen() -> None:
    source = "\n".join([
        "import snippet_service.web.views",
        "from snippet_service import web",
        "from snippet_service.web import app as web_app",
        "from . import queue",
        "from .web.forms import max_body_bytes",
        "from .. import tasks",
        "def later():",
        "    from tasks.retry import RetryPolicy",
        "    import importlib",
        "    return importlib.import_module('snippet_service.web.app')",
        "from snippet_service.config import *",
    ])
    path = ROOT / "snippet_service" / "example.py"
    assert sorted((found.line, found.module) for found in imports_of(path, source)) == [
        (1, "snippet_service.web.views"),
        (2, "snippet_service.web"),
        (3, "snippet_service.web.app"),
        (4, "snippet_service.queue"),
        (5, "snippet_service.web.forms"),
        (6, "tasks"),
        (8, "tasks.retry"),
        (9, "importlib"),
        (10, "snippet_service.web.app"),
        (11, "snippet_service.config"),
    ]
