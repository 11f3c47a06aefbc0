"""The record every claim check returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ClaimResult", "VERDICTS"]

VERDICTS = ("holds", "fails", "approximate", "one-formulation")
"""Verdict on the PAPER's statement: it holds; it fails; it holds only approximately (with the measured size of
the deviation); or it holds only in one formulation (e.g. per-measurement but not joint, Gaussian but not GMM)."""


@dataclass
class ClaimResult:
    """One executed claim.

    Attributes:
        id: e.g. ``"WANG-1"`` (the number used in ``paper_notes/``).
        paper: bib key in ``paper_notes/refs.bib``.
        statement: the paper's claim, in one sentence.
        measured: the measured numbers (name -> value; floats, lists or strings).
        expected: what the toolkit expects to measure (a sentence with numbers).
        tolerance: the tolerance used, and ``reason``: why that tolerance.
        verdict: one of :data:`VERDICTS` (about the paper's statement).
        passed: whether the measurement met the toolkit's expectation (``dptheory check`` exits non-zero if not).
        theory: the docs/theory claim numbers / sections this covers.
    """

    id: str
    paper: str
    statement: str
    measured: dict
    expected: str
    tolerance: str
    reason: str
    verdict: str
    passed: bool
    theory: str = ""
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_dict(self) -> dict:
        return asdict(self)
