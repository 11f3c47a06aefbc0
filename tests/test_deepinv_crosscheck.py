"""The deepinv cross-check (``benchmarks/deepinv_crosscheck.py``, run in a separate environment with deepinv 0.5):
its committed result must show agreement with deepinv's DDRM and DiffPIR given the same noise, and the one
by-design difference (deepinv 0.5.0's DDRM draws its fresh noise with half the variance of Kawar et al. eq. (8)).

Tolerances: 1e-5 on outputs of size ~0.5 (deepinv divides ``U^T y`` by ``s + 1e-6`` and keeps its schedule in
float32, so agreement is at the 1e-7 level, not round-off); the by-design difference must be at least 1e-3 (it is
O(1e-2): the noise of every step is off by a factor sqrt(2)).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "deepinv_crosscheck.json"


def _result():
    return json.loads(RESULT.read_text())


def test_the_crosscheck_ran_against_deepinv_0_5():
    r = _result()
    assert r["deepinv"].startswith("0.5.")


def test_ddrm_agrees_with_deepinv_given_the_same_noise_up_to_its_sqrt2():
    r = _result()["ddrm"]
    assert r["draws_over_sqrt2"] <= 1e-5 * max(1.0, r["output_scale"])
    assert r["draws_as_drawn"] >= 1e-3  # by design: deepinv's std * randn / sqrt(2)


def test_diffpir_agrees_with_deepinv_given_the_same_noise():
    r = _result()["diffpir"]
    assert r["same_noise"] <= 1e-5 * max(1.0, r["output_scale"])
    assert r["lam_dptheory"] == r["lambda_deepinv"] / 2  # deepinv's lambda_ is 2x ours (module docstrings)
    assert r["unused_draws"] == 0  # every recorded deepinv draw was used, in order
