"""Import rules of the package, checked on the source with ``ast`` (nothing is imported).

1. ``dptheory/samplers/**`` imports nothing from ``dptheory.images`` (the samplers are layer-agnostic).
2. The core (every module of ``dptheory/`` except the command-line modules :data:`CLI_FILES`) imports no
   command-line module (:data:`CLI_MODULES`).
3. Nothing under ``dptheory/`` imports ``analyses``, ``benchmarks``, ``tests`` or ``notebooks``, nor a module of
   those folders by its bare name (the tests import ``tables`` that way).

Every ``import`` counts, at module level or inside a function. Relative imports are resolved against the
importing module's package; ``from pkg import name`` counts as importing ``pkg`` and ``pkg.name``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dptheory"
CLI_FILES = ("cli.py", "_argparse.py", "reproduce.py", "_reproduce_pool.py", "sweep.py", "__main__.py")
CLI_MODULES = tuple(f"dptheory.{f[:-3]}" for f in CLI_FILES if f != "__main__.py")
OUTSIDE_FOLDERS = ("analyses", "benchmarks", "tests", "notebooks")


def module_name(path: Path) -> str:
    """``dptheory/images/operators.py`` -> ``dptheory.images.operators``; a package's ``__init__.py`` -> the
    package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source``, the code of ``module``.

    ``from X import a, b`` yields ``X``, ``X.a`` and ``X.b`` (``a`` may be a submodule); a relative ``X`` is
    resolved against the package of ``module`` (``module`` itself when ``is_package``).
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 >= len(package):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top-level package")
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def _outside_modules() -> set[str]:
    """Top-level names that would import from the folders outside the package."""
    names = set(OUTSIDE_FOLDERS)
    for folder in OUTSIDE_FOLDERS:
        names |= {p.stem for p in (ROOT / folder).glob("*.py")} if (ROOT / folder).is_dir() else set()
    return names - {"__init__"}


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(source: str, module: str, *, is_package: bool = False, outside=None) -> list[str]:
    """The rule violations of one module's source, each as ``"LINE: imports NAME (rule)"``."""
    outside = _outside_modules() if outside is None else outside
    in_cli = module in CLI_MODULES or module == "dptheory.__main__"
    rules = {
        "the samplers must not depend on dptheory.images":
            lambda name: _within(module, ("dptheory.samplers",)) and _within(name, ("dptheory.images",)),
        "the core must not depend on a command-line module": lambda name: not in_cli and _within(name, CLI_MODULES),
        f"the package must not import {'/'.join(OUTSIDE_FOLDERS)}": lambda name: name.split(".")[0] in outside,
    }
    first = {}  # (line, rule) -> the first offending name (``X`` before ``X.a``)
    for line, name in imported_names(source, module, is_package=is_package):
        for rule, broken in rules.items():
            if broken(name):
                first.setdefault((line, rule), name)
    return [f"{line}: imports {name} ({rule})" for (line, rule), name in first.items()]


def test_package_follows_the_import_rules():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30 and (PACKAGE / "samplers" / "_svd.py") in files
    outside = _outside_modules()
    bad = []
    for path in files:
        for v in violations(path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py",
                            outside=outside):
            bad.append(f"{path.relative_to(ROOT)}:{v}")
    assert not bad, "import rule violations:\n" + "\n".join(bad)


@pytest.mark.parametrize(("module", "source", "rule"), [
    ("dptheory.samplers.fake", "from .. import images", "dptheory.images (the samplers"),
    ("dptheory.samplers.fake", "from ..images.operators import Blur", "dptheory.images.operators (the samplers"),
    ("dptheory.samplers.fake", "import dptheory.images.problem", "dptheory.images.problem (the samplers"),
    ("dptheory.samplers.fake", "def f():\n    from dptheory import images", "dptheory.images (the samplers"),
    ("dptheory.images.fake", "from .._argparse import ArgumentParser", "dptheory._argparse (the core"),
    ("dptheory.gaussian", "from . import cli", "dptheory.cli (the core"),
    ("dptheory.claims.fake", "from ..sweep import run", "dptheory.sweep (the core"),
    ("dptheory.plotting", "import tables", "tables (the package must not import"),
    ("dptheory.plotting", "from analyses.pinwheel import main", "analyses.pinwheel (the package"),
])
def test_checker_flags_a_violating_snippet(module, source, rule):
    found = violations(source, module, outside={"analyses", "tests", "tables"})
    assert len(found) >= 1 and any(rule in v for v in found), found
    assert found[0].startswith(f"{source.count(chr(10)) + 1}: imports ")


def test_checker_resolves_relative_imports_and_allows_the_rest():
    assert imported_names("from ..operators import LinearOperator", "dptheory.samplers._svd") == [
        (1, "dptheory.operators"), (1, "dptheory.operators.LinearOperator")]
    assert imported_names("from . import ddpm", "dptheory.samplers", is_package=True) == [
        (1, "dptheory.samplers"), (1, "dptheory.samplers.ddpm")]
    allowed = "from ..operators import LinearOperator\nfrom .._checks import as_tensor\nimport torch"
    assert violations(allowed, "dptheory.samplers.fake", outside={"tests"}) == []
    assert violations("from ._argparse import ArgumentParser", "dptheory.cli", outside=set()) == []
    with pytest.raises(ValueError, match="beyond the top-level package"):
        imported_names("from .... import x", "dptheory.samplers.fake")
