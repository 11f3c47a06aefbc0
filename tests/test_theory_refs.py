"""The reference rewriter (docs/_tools/rewrite_theory_refs.py) and the labels of the theory pages it points to.

Oracles: hand-written expected rewrites, and the ``(theory-x-y)=`` / ``(claim-n)=`` labels read from the pages.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD = "THEO" + "RY"  # spelled in two parts so that this file is not itself a reference to rewrite


def _tool():
    spec = importlib.util.spec_from_file_location("rewrite_theory_refs", ROOT / "docs/_tools/rewrite_theory_refs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("old, new", [
    (f"({OLD} 6.3)", "(docs/theory §6.3)"),
    (f"{OLD} section 3.1:", "docs/theory §3.1:"),
    (f"{OLD} sections 4, 5.2 and 6.3", "docs/theory §4, §5.2 and §6.3"),
    (f"({OLD} 1.3, 4, claim 15)", "(docs/theory §1.3, §4, claim 15)"),
    (f"{OLD} claim 14", "docs/theory claim 14"),
    (f"{OLD} claim 6 / 5.2", "docs/theory claim 6 / §5.2"),
    (f"{OLD} 1.4-1.6, 2.2-2.4", "docs/theory §1.4-1.6, §2.2-2.4"),
    (f"{OLD} 1.5.2", "docs/theory §1.5 (point 2)"),
    (f"{OLD} 9.4.", "docs/theory §9.4."),
    (f"{OLD}'s rounding", "docs/theory's rounding"),
    (f"{OLD} 5.3's 0.069", "docs/theory §5.3's 0.069"),
    (f"`{OLD}.md` section 10", "`docs/theory` §10"),
    (f"{OLD}_TABLE.items()", "QUOTED_TABLE.items()"),
])
def test_rewrite_examples_and_idempotence(old, new):
    tool = _tool()
    got, count, unmapped = tool.rewrite_text(old)
    assert (got, unmapped) == (new, [])
    assert tool.rewrite_text(got) == (got, 0, [])  # idempotent


def test_unknown_section_is_reported_not_rewritten():
    tool = _tool()
    text = f"{OLD} 13.2 and {OLD} claim 21"
    got, count, unmapped = tool.rewrite_text(text)
    assert got == text and count == 0 and len(unmapped) == 2


def test_long_python_comment_is_wrapped_under_the_line_limit():
    tool = _tool()
    source = "x = 1\n    # " + "word " * 22 + f"{OLD} 6.3 and more words here\n"
    new, count, _ = tool.rewrite_text(source)
    changed = {i for i, (a, b) in enumerate(zip(source.split("\n"), new.split("\n"), strict=True), 1) if a != b}
    wrapped, too_long = tool.wrap_python(new, changed)
    assert too_long == [] and all(len(line) <= tool.MAX_LINE for line in wrapped.split("\n"))
    assert wrapped.split("\n")[2].startswith("    # ")


def test_every_known_section_and_claim_has_a_label_in_the_pages():
    tool = _tool()
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs/theory").glob("*.md"))
    labels = set(re.findall(r"^\((theory-[\d-]+|claim-\d+)\)=$", text, flags=re.M))
    for sec in tool.SECTIONS:
        assert "theory-" + sec.replace(".", "-") in labels, sec
    for n in range(1, tool.N_CLAIMS + 1):
        assert f"claim-{n}" in labels, n
