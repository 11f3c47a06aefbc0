"""Packaging: a cheap, lazy ``import dptheory`` (no torch, no matplotlib); a complete, documented __all__."""

from __future__ import annotations

import importlib
import json
import pathlib
import subprocess
import sys
import time

import pytest

import dptheory

REPO = pathlib.Path(__file__).resolve().parents[1]


def _fresh_import(code: str) -> tuple[float, dict]:
    """Run ``code`` after ``import dptheory`` in a fresh interpreter; return (wall seconds, JSON output)."""
    prog = "import time, sys, json\nt0 = time.perf_counter()\nimport dptheory\ndt = time.perf_counter() - t0\n" + code
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", prog], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    wall = time.perf_counter() - start
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_fast_and_lazy():
    """STYLE: importing the package is cheap. Budget: < 1 s wall for a whole fresh interpreter (min of 3
    runs, to discount a loaded machine); inside it, neither torch nor matplotlib may be imported."""
    code = (
        "heavy = ('torch', 'matplotlib', 'scipy', 'numpy', 'ot', 'sympy')\n"
        "mods = sorted(m for m in heavy if m in sys.modules)\n"
        "print(json.dumps({'import_s': dt, 'modules': mods}))\n"
    )
    runs = [_fresh_import(code) for _ in range(3)]
    wall = min(w for w, _ in runs)
    assert wall < 1.0, f"import dptheory took {wall:.2f} s (min of 3 fresh interpreters)"
    for _, info in runs:
        assert "torch" not in info["modules"], "import dptheory imported torch eagerly"
        assert "matplotlib" not in info["modules"], "import dptheory imported matplotlib"


def test_accessing_a_name_imports_only_what_it_needs():
    """Touching a torch-based name loads torch, but still not matplotlib."""
    code = (
        "dptheory.Gaussian\nprint(json.dumps({'torch': 'torch' in sys.modules, 'mpl': 'matplotlib' in sys.modules}))\n"
    )
    _, info = _fresh_import(code)
    assert info == {"torch": True, "mpl": False}


def test_every_public_name_resolves_and_has_a_docstring():
    missing, undocumented = [], []
    for name in dptheory.__all__:
        if name == "__version__":
            assert isinstance(dptheory.__version__, str)
            continue
        try:
            obj = getattr(dptheory, name)
        except (AttributeError, ImportError) as err:  # report every broken export at once
            missing.append(f"{name}: {err}")
            continue
        if not (getattr(obj, "__doc__", None) or "").strip():
            undocumented.append(name)
    assert not missing, f"names in dptheory.__all__ that do not resolve: {missing}"
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_all_is_consistent_with_dir_and_modules():
    assert sorted(dir(dptheory)) == sorted(dptheory.__all__)
    assert len(set(dptheory.__all__)) == len(dptheory.__all__)
    # each export is defined in (and listed by) the submodule the lazy table names
    for name, module in dptheory._EXPORTS.items():
        mod = importlib.import_module(f"dptheory.{module}")
        assert name in getattr(mod, "__all__", []), f"{name} is not in dptheory.{module}.__all__"


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        dptheory.not_a_name  # noqa: B018
