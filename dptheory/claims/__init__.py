"""Every claim of the papers as an executable check.

Each module holds the checks of one paper as plain functions ``check(quick: bool) -> ClaimResult``, collected in
its ``CHECKS`` dict (id -> function); :data:`CLAIMS` merges them. ``paper_notes/`` numbers the same ids.
"""

from __future__ import annotations

import time

from . import (
    dps,
    extra,
    foundations,
    freirich,
    image_scale,
    kl_tradeoff,
    map_rps,
    map_rps_theorems,
    peers,
    red_diff,
    vml,
    wang,
)
from .result import VERDICTS, ClaimResult

__all__ = ["CLAIMS", "ClaimResult", "VERDICTS", "run_claims"]

CLAIMS = {
    **foundations.CHECKS,
    **freirich.CHECKS,
    **wang.CHECKS,
    **map_rps.CHECKS,
    **dps.CHECKS,
    **red_diff.CHECKS,
    **vml.CHECKS,
    **image_scale.CHECKS,
    **map_rps_theorems.CHECKS,
    **kl_tradeoff.CHECKS,
    **extra.CHECKS,
    **peers.CHECKS,
}


def run_claims(ids=None, *, quick: bool = False, progress: bool = False) -> list[ClaimResult]:
    """Run the checks ``ids`` (default: all) and return their results, timed, in registry order."""
    ids = list(CLAIMS) if ids is None else list(ids)
    unknown = [i for i in ids if i not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; known: {', '.join(CLAIMS)}")
    iterator = ids
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ids, desc="claims")
    results = []
    for cid in iterator:
        start = time.perf_counter()
        res = CLAIMS[cid](quick)
        res.seconds = time.perf_counter() - start
        results.append(res)
    return results
