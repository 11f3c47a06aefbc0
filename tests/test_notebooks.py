"""The teaching notebooks are committed EXECUTED (a reader sees the plots and numbers without running them), and
the committed outputs must still be what the code prints.

Each notebook is re-executed; a cell that errors fails. Then every code cell's text outputs (stdout and
``text/plain`` results; images, stderr and progress bars are ignored) are compared with the committed ones: the
text with the numbers taken out must be identical, and each number must agree within

    max(1e-6 |a|, 1e-9, one unit in the last printed digit).

Reason: the notebooks compute in float64 on the CPU with seeded generators, so a rerun reproduces every number up
to round-off (BLAS and thread count change the order of sums). Relative 1e-6 leaves room for round-off amplified
by the eigen-solvers, absolute 1e-9 covers numbers that are themselves round-off (e.g. "max |difference| 5e-17"),
and a printed number may move by one unit in its last digit when round-off crosses a rounding boundary. A changed
formula or seed moves the numbers far beyond this.

To refresh the committed outputs after changing a notebook: ``python tests/test_notebooks.py --write``.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _execute(nb, cwd: Path):
    import nbclient

    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def _text_outputs(nb) -> list[list[str]]:
    """Per code cell, its whole stdout (one string: the kernel may split one print run into several stream
    messages, depending on timing) followed by its text/plain outputs (in order)."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        stdout, texts = [], []
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and o.name == "stdout":
                stdout.append(o.text)
            elif o.output_type in ("execute_result", "display_data") and "text/plain" in o.get("data", {}) \
                    and "image/png" not in o.data:
                texts.append(o.data["text/plain"])
        out.append((["".join(stdout)] if stdout else []) + texts)
    return out


def _unit(token: str) -> float:
    """One unit in the last printed digit of a number token ("0.3843" -> 1e-4, "1.6e-10" -> 1e-11, "12" -> 1)."""
    mantissa, _, exp = token.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** (int(exp or 0) - decimals)


def compare_text(committed: str, fresh: str) -> list[str]:
    """Differences between two outputs: the text skeletons must match, the numbers agree within the tolerance."""
    if _NUMBER.sub("#", committed) != _NUMBER.sub("#", fresh):
        return [f"text changed:\n--- committed\n{committed}\n--- now\n{fresh}"]
    problems = []
    for a, b in zip(_NUMBER.findall(committed), _NUMBER.findall(fresh), strict=True):
        x, y = float(a), float(b)
        tol = max(1e-6 * max(abs(x), abs(y)), 1e-9, _unit(a), _unit(b))
        if not (math.isfinite(x) and math.isfinite(y)) or abs(x - y) > tol * (1 + 1e-9):  # 1e-9: x - y's round-off
            problems.append(f"{a} -> {b} (tolerance {tol:.1e})")
    return problems


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 3, "the three teaching notebooks must be present"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_executed(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: commit it executed (see the module doc)"
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for c in code
               for o in c.get("outputs", [])), f"{path.name}: the committed notebook shows no plot"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_reproduces_its_outputs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as when the outputs were made
    committed = nbformat.read(path, as_version=4)
    for cell in committed.cells:  # teaching notebooks use only the public API
        if cell.cell_type == "code":
            assert "dptheory._" not in cell.source and "from dptheory._" not in cell.source
    fresh = _execute(nbformat.read(path, as_version=4), tmp_path)
    errors = [o for c in fresh.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    old, new = _text_outputs(committed), _text_outputs(fresh)
    assert len(old) == len(new)
    problems = []
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if len(a) != len(b):
            problems.append(f"cell {i}: {len(a)} committed text outputs, {len(b)} now")
            continue
        problems += [f"cell {i}: {p}" for x, y in zip(a, b, strict=True) for p in compare_text(x, y)]
    assert not problems, f"{path.name}: outputs changed; rerun `python tests/test_notebooks.py --write`:\n" + \
        "\n".join(problems)


@pytest.mark.parametrize(
    ("committed", "fresh", "ok"),
    [("D_y=0.3843 gap=1.60e-10", "D_y=0.3844 gap=1.61e-10", True),  # one unit in the last digit
     ("D_y=0.3843", "D_y=0.3846", False), ("diff 5.5e-17", "diff 1.1e-16", True), ("a 1.0", "b 1.0", False),
     ("x = 12", "x = 14", False)],
)
def test_compare_text_tolerance(committed, fresh, ok):
    assert (not compare_text(committed, fresh)) == ok


def _write_all() -> None:
    import os
    import tempfile

    import nbformat

    os.environ.pop("MPLBACKEND", None)
    for path in NOTEBOOKS:
        nb = _execute(nbformat.read(path, as_version=4), Path(tempfile.mkdtemp()))
        for cell in nb.cells:  # keep the committed files free of run-specific metadata
            cell.metadata.pop("execution", None)
        nbformat.write(nb, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/test_notebooks.py --write")
    _write_all()
