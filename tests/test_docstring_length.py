"""Module docstrings say what the code IS: at most 15 lines, and no history (issue 15).

Oracle: the source files themselves, parsed with ``ast``. A module docstring counts the lines it spans in the file
(opening to closing quotes). History (measured timings, debugging stories, departures from a plan) belongs in
``paper_notes/`` and ``benchmarks/README.md``; the markers below catch it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dptheory"
MAX_LINES = 15
HISTORY_MARKERS = ("on this 2-core", "this machine", "first plan")


def docstring_problems(source: str, name: str, max_lines: int = MAX_LINES) -> list[str]:
    """Problems of one module's docstring: too long, or a history marker in it."""
    body = ast.parse(source).body
    if not body or not isinstance(body[0], ast.Expr) or not isinstance(body[0].value, ast.Constant):
        return []
    node = body[0]
    if not isinstance(node.value.value, str):
        return []
    problems = []
    lines = node.end_lineno - node.lineno + 1
    if lines > max_lines:
        problems.append(f"{name}: module docstring has {lines} lines (at most {max_lines})")
    text = node.value.value.lower()
    problems += [f"{name}: module docstring contains {m!r}" for m in HISTORY_MARKERS if m in text]
    return problems


def test_checker_flags_a_long_docstring_and_a_history_marker():
    long_doc = '"""Title.\n\n' + "A line.\n" * 20 + '"""\nx = 1\n'
    assert docstring_problems(long_doc, "long.py") == ["long.py: module docstring has 23 lines (at most 15)"]
    history = '"""Title.\n\nMeasured on this 2-core CPU: 3 s (a departure from the first plan).\n"""\n'
    assert len(docstring_problems(history, "hist.py")) == 2
    assert docstring_problems('"""Short.\n\nFine.\n"""\n', "ok.py") == []
    assert docstring_problems("x = 1\n", "none.py") == []


def test_every_module_docstring_is_short_and_without_history():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += docstring_problems(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not problems, "\n".join(problems)
