"""The exact W = W2(p_X, p_X*) of a scalar problem (``dptheory.mmse_law_1d``).

Oracles: (1) the Gaussian closed form ``X* ~ N(m, S - Sigma)``; (2) an independent numpy/scipy transcription of
the quantile formula (mixture CDF inverted by scipy's ``brentq``, posterior mean by Bayes' rule in numpy) on the
same midpoint grid; (3) Monte Carlo: X* = E[X|Y] of simulated Y, sorted against the prior's exact quantiles
(this tests the premise that the law of X* is the monotone push-forward), with a stated SE and a bias
correction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

import dptheory as dpt
from dptheory.mmse_law_1d import mmse_quantile_1d, mmse_w2_squared_1d


def _b1(sigma):
    prior = dpt.GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.05]], [[0.05]]])
    return dpt.LinearInverseProblem(prior, [[1.0]], sigma)


@pytest.mark.parametrize(
    ("S", "A", "sigma"),
    [(1.0, [[1.0]], 1.0), (2.0, [[-0.7]], 0.3), (0.5, [[1.0], [2.0]], 0.8)],
)
def test_gaussian_prior_matches_the_closed_form(S, A, sigma):
    """X* ~ N(m, S - Sigma), Sigma = 1 / (1/S + |a|^2 / sigma^2): W^2 = (sqrt(S) - sqrt(S - Sigma))^2.
    Tolerance: the midpoint rule's error for two Gaussians, 1.3 (s_f - s_g)^2 / N (measured constant, doubled),
    plus 1e-13 of round-off. Covers a negative a (g decreasing in y, increasing in s = a^T y) and m = 2."""
    a2 = float(np.square(A).sum())
    Sig = 1.0 / (1.0 / S + a2 / sigma**2)
    exact = (math.sqrt(S) - math.sqrt(S - Sig)) ** 2
    prob = dpt.LinearInverseProblem(dpt.Gaussian([0.3], [[S]]), A, sigma)
    n = 20_000
    got = float(mmse_w2_squared_1d(prob, n_quantiles=n))
    assert abs(got - exact) <= 2 * 1.3 * exact / n + 1e-13, (got, exact)


def _np_mixture_quantile(w, m, v, u):
    """Mixture quantile by brentq on the scipy CDF (independent of dptheory.quantile_1d)."""
    s = np.sqrt(v)
    lo, hi = float((m - 40 * s).min()), float((m + 40 * s).max())
    return np.array(
        [optimize.brentq(lambda x, ui=ui: float(w @ stats.norm.cdf(x, m, s)) - ui, lo, hi, xtol=1e-14, rtol=1e-15)
         for ui in u]
    )


def test_mixture_matches_an_independent_transcription():
    """B1 (sigma = 0.5): the same midpoint grid (N = 400), quantiles by brentq and E[X|y] by Bayes' rule in
    numpy. Both sides are exact to round-off on the grid, so the tolerance is 1e-10 (brentq's xtol times the
    largest slope g' ~ Var[X|y] / sigma^2 < 5)."""
    prob, n = _b1(0.5), 400
    w, m, v, s2 = np.array([0.5, 0.5]), np.array([-1.0, 1.0]), np.array([0.05, 0.05]), 0.25
    u = (np.arange(n) + 0.5) / n
    q_x = _np_mixture_quantile(w, m, v, u)
    q_y = _np_mixture_quantile(w, m, v + s2, u)
    resp = w * stats.norm.pdf(q_y[:, None], m, np.sqrt(v + s2))
    resp /= resp.sum(1, keepdims=True)
    post_means = (m * s2 + v * q_y[:, None]) / (v + s2)
    g = (resp * post_means).sum(1)
    ref = float(np.mean((q_x - g) ** 2))
    torch.testing.assert_close(mmse_quantile_1d(prob, torch.tensor(u)), torch.tensor(g), rtol=0, atol=1e-10)
    assert abs(float(mmse_w2_squared_1d(prob, n_quantiles=n)) - ref) <= 1e-10


@pytest.mark.parametrize("sigma", [0.5, 0.8])
def test_mixture_matches_monte_carlo_of_the_mmse_estimate(sigma, gen):
    """n = 2e5 draws of Y, X* = problem.mmse(Y), sorted against the prior's exact quantiles (one-sample quantile
    coupling). That estimate is biased UPWARD by O(1/n); with 5 parts of n/5 the bias is removed to first order
    (jackknife-style: bias(n) ~ (mean of parts - full) / 4) and the SE comes from the parts' spread.
    Tolerance 4 SE (plus 1e-6 for the quadrature error of the exact value, ~1.5e-7 at N = 2e5)."""
    prob = _b1(sigma)
    exact = float(mmse_w2_squared_1d(prob))
    n, parts = 200_000, 5
    _, y = prob.sample_joint(n, generator=gen)
    x_star = prob.mmse(y)[:, 0]
    full = float(dpt.quantile_w2_squared_to_samples(prob.prior, x_star))
    part_vals = torch.tensor(
        [float(dpt.quantile_w2_squared_to_samples(prob.prior, p)) for p in torch.chunk(x_star, parts)]
    )
    corrected = full - (float(part_vals.mean()) - full) / (parts - 1)
    # SE of the full estimate = a part's spread / sqrt(5); the corrected value (5/4) full - (1/4) mean(parts)
    # has at most sqrt(25/16 + 1/16) = 1.27 times that SE (treating the two as independent: conservative)
    se = 1.3 * float(part_vals.std()) / math.sqrt(parts)
    assert abs(corrected - exact) <= 4 * max(se, 1e-7) + 1e-6, (corrected, exact, se, full)


def test_quadrature_error_is_small():
    """The midpoint rule's error on B1 (sigma = 0.5): refining N from 2e4 to 2e5 changes W^2 by 5.8e-5 relative
    (measured), and from 2e5 to 2e6 by 7e-6; the bound 1e-4 catches a quadrature that stopped converging.
    The result increases with N (the rule misses the tails, where the integrand is largest)."""
    prob = _b1(0.5)
    coarse, fine = float(mmse_w2_squared_1d(prob, 20_000)), float(mmse_w2_squared_1d(prob, 200_000))
    assert 0 <= fine - coarse <= 1e-4 * fine


def test_bad_input():
    prob2 = dpt.LinearInverseProblem(dpt.Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), [[1.0, 0.0]], 1.0)
    with pytest.raises(ValueError, match="dim = 1"):
        mmse_w2_squared_1d(prob2)
    with pytest.raises(ValueError, match="sigma_y > 0"):
        mmse_w2_squared_1d(dpt.LinearInverseProblem(dpt.Gaussian([0.0], [[1.0]]), [[1.0]], 0.0))
    with pytest.raises(ValueError, match="A is zero"):
        mmse_w2_squared_1d(dpt.LinearInverseProblem(dpt.Gaussian([0.0], [[1.0]]), [[0.0]], 1.0))
