"""The ``dptheory`` command line as a new user meets it: help texts (plain text, every option of ``traverse``
described), the ``traverse`` table (legend, standard errors, ``--norm``) and the ``check`` table (verdict and
expectation in separate, labelled columns; ``--verbose`` in full)."""

from __future__ import annotations

import argparse

import pytest

from dptheory import reproduce
from dptheory.claims.report import format_table
from dptheory.claims.result import ClaimResult
from dptheory.cli import build_parser, main, restore_parser


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _helps():
    top = build_parser()
    yield "dptheory", top.format_help()
    for name, sub in _subparsers(top).items():
        yield name, sub.format_help()
    yield "restore (module)", restore_parser().format_help()
    yield "reproduce", reproduce.build_parser().format_help()


@pytest.mark.parametrize(("name", "text"), list(_helps()))
def test_help_has_no_rest_markup(name, text):
    assert "``" not in text and ":func:" not in text and ":mod:" not in text, f"{name} --help shows reST markup"


def test_analysis_help_has_no_rest_markup(capsys):
    from dptheory.plotting import parse_args

    with pytest.raises(SystemExit):
        parse_args("Figure ``x``: see :func:`dptheory.solve`.", ["--help"])
    assert "``" not in capsys.readouterr().out


def test_traverse_help_describes_every_option():
    parser = _subparsers(build_parser())["traverse"]
    helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
    for option in ("--method", "--knob", "--values", "--norm", "--problem"):
        assert helps[option] and len(helps[option].split()) > 5, f"{option} is not described"
    text = " ".join(parser.format_help().split())
    assert "D_y = E[||X - X^||^2 | y]" in text and "gap_y" in text and "Example: dptheory traverse" in text


def test_traverse_dps_runs_exact_with_the_squared_norm(capsys):
    assert main(["traverse", "--method", "dps", "--knob", "zeta", "--values", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "(exact)" in out and "norm squared" in out and "Columns: D_y" in out


def test_traverse_dps_l2_is_measured_by_monte_carlo(capsys):
    assert main(["traverse", "--method", "dps", "--knob", "zeta", "--values", "0.5", "--norm", "l2", "--n", "100",
                 "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "Monte Carlo" in out and "+-" in out


def test_traverse_b1_shows_standard_errors(capsys):
    assert main(["traverse", "--problem", "B1", "--values", "0,1", "--n", "100", "--steps", "10"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.strip().startswith(("0.0 |", "1.0 |"))]
    assert len(rows) == 2 and all(r.count("+-") == 4 for r in rows)


def test_traverse_norm_only_for_dps(capsys):
    assert main(["traverse", "--method", "vsrd", "--norm", "l2"]) == 2
    assert "--norm applies to --method dps only" in capsys.readouterr().err


def _result(passed, measured):
    return ClaimResult(id="X-1", paper="p", statement="s", measured=measured, expected="e", tolerance="t",
                       reason="r", verdict="holds", passed=passed)


def test_check_table_separates_verdict_and_expectation():
    lines = format_table([_result(False, {"a": 1.0})]).splitlines()
    header = lines[0].split()
    assert header[:5] == ["id", "paper", "claim", "expectation", "time"]
    row = lines[2]
    assert row.split()[:3] == ["X-1", "holds", "NOT"] and "NOT MET" in row
    assert "paper's claim:" in format_table([_result(True, {"a": 1.0})])


def test_check_verbose_shows_measured_values_in_full():
    measured = {f"value_{i}": float(i) / 3 for i in range(20)}
    assert "…" in format_table([_result(True, measured)])
    full = format_table([_result(True, measured)], verbose=True)
    assert "…" not in full and "value_19=6.333" in full and "expected: e" in full
