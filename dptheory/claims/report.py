"""Render claim results as a terminal table, Markdown or JSON."""

from __future__ import annotations

import json
import textwrap

__all__ = ["format_table", "to_markdown", "to_json", "format_measured"]


def format_measured(measured: dict, width: int = 60) -> str:
    """``name=value`` pairs, floats to 4 significant digits."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(u) for u in v) + "]"
        return str(v)

    text = "; ".join(f"{k}={fmt(v)}" for k, v in measured.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(results) -> str:
    """A plain-text table: id, verdict, check passed, measured values, time."""
    lines = [f"{'id':<9} {'verdict':<16} {'check':<6} {'time':>6}  measured", "-" * 100]
    for r in results:
        lines.append(
            f"{r.id:<9} {r.verdict:<16} {'ok' if r.passed else 'FAIL':<6} {r.seconds:>5.1f}s  "
            f"{format_measured(r.measured)}"
        )
        lines.extend("          " + w for w in textwrap.wrap(r.statement, 88))
    n_ok = sum(r.passed for r in results)
    lines.append("-" * 100)
    lines.append(f"{n_ok}/{len(results)} checks met the toolkit's expectation")
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
