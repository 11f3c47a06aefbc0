"""Render claim results as a terminal table, Markdown or JSON."""

from __future__ import annotations

import json
import textwrap

__all__ = ["format_table", "to_markdown", "to_json", "format_measured"]


def format_measured(measured: dict, width: int | None = 60) -> str:
    """``name=value`` pairs, floats to 4 significant digits; cut to ``width`` characters with "…" (``None``: in
    full)."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(u) for u in v) + "]"
        return str(v)

    text = "; ".join(f"{k}={fmt(v)}" for k, v in measured.items())
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


TABLE_LEGEND = (
    "paper's claim: the verdict on the paper's statement (holds, fails, approximate, one-formulation). "
    "expectation: whether this run measured what the toolkit expects (met / NOT MET; NOT MET means the "
    "number changed, not that the paper is wrong). Exit status 1 when any expectation is not met."
)


def format_table(results, verbose: bool = False) -> str:
    """A plain-text table with labelled columns: id, the verdict on the paper's claim, whether the check met the
    toolkit's expectation, time, measured values (cut to 60 characters; ``verbose``: in full, plus the expectation
    and its tolerance)."""
    lines = [f"{'id':<9} {'paper claim':<16} {'expectation':<12} {'time':>6}  measured", "-" * 100]
    for r in results:
        lines.append(
            f"{r.id:<9} {r.verdict:<16} {'met' if r.passed else 'NOT MET':<12} {r.seconds:>5.1f}s  "
            f"{format_measured(r.measured, None if verbose else 60)}"
        )
        lines.extend("          " + w for w in textwrap.wrap(r.statement, 88))
        if verbose:
            lines.extend("          " + w for w in textwrap.wrap(f"expected: {r.expected}", 88))
            lines.extend("          " + w for w in textwrap.wrap(f"tolerance: {r.tolerance}", 88))
    n_ok = sum(r.passed for r in results)
    lines.append("-" * 100)
    lines.append(f"{n_ok}/{len(results)} checks met the toolkit's expectation")
    legend = TABLE_LEGEND + ("" if verbose else " Measured values are cut at 60 characters; --verbose shows them "
                             "in full.")
    lines.extend(textwrap.wrap(legend, 100))
    return "\n".join(lines)


def to_markdown(results) -> str:
    """A Markdown report with one table row per claim and a details section."""
    out = ["# Claims report", "", "| id | paper | verdict | check | measured | expected | tolerance |",
           "|---|---|---|---|---|---|---|"]
    for r in results:
        out.append(
            f"| {r.id} | {r.paper} | {r.verdict} | {'ok' if r.passed else '**FAIL**'} | "
            f"{format_measured(r.measured, 200)} | {r.expected} | {r.tolerance} |"
        )
    out += ["", "## Details", ""]
    for r in results:
        out += [f"### {r.id}: {r.statement}", "", f"- theory: {r.theory}", f"- reason for tolerance: {r.reason}",
                f"- time: {r.seconds:.1f} s", ""]
    return "\n".join(out)


def to_json(results) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2, default=float)
