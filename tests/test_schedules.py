"""VP schedules: docs/theory §0 reference values, reverse-step coefficients (docs/theory §1.1), lookups.

Oracles: numpy re-implementations of the schedules, Gaussian conditioning of the joint law of (x_s, x_t) given
x0 (for the forward-posterior coefficients), and the exact Gaussian E[x_{t-1} | x_t].
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tables import GAUSSIANS, gaussian

import dptheory as dpt


@pytest.fixture(scope="module")
def lin():
    return dpt.linear_schedule()


def _np_linear_alpha_bars(T=1000):
    betas = np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T)
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


# ---------------------------------------------------------------------------------------------- tables
def test_linear_schedule_reference_values(lin):
    """docs/theory §0 [V]; each is quoted to 4 significant digits (tolerance: half a unit in the last)."""
    ab = lambda t: float(lin.alpha_bar(t))
    assert lin.T == 1000
    assert ab(1000) == pytest.approx(4.036e-5, abs=5e-9)
    assert math.sqrt(ab(1000)) == pytest.approx(6.35e-3, abs=5e-6)
    # the official code's 0-based alphas_cumprod[10], [50] are alpha_bar_11, alpha_bar_51 (1-based)
    assert ab(11) == pytest.approx(0.997807, abs=5e-7)
    assert ab(51) == pytest.approx(0.969951, abs=5e-7)
    assert ab(25) == pytest.approx(0.99156, abs=5e-6)
    assert ab(100) == pytest.approx(0.89702, abs=5e-6)
    assert ab(300) == pytest.approx(0.39642, abs=5e-6)
    assert ab(600) == pytest.approx(0.02588, abs=5e-6)
    assert ab(0) == 1.0 and float(lin.beta(0)) == 0.0


@pytest.mark.parametrize("T", [1000, 250, 50])
def test_linear_schedule_matches_numpy(T):
    s = dpt.linear_schedule(T)
    ref = _np_linear_alpha_bars(T)
    np.testing.assert_allclose(s.alpha_bars.numpy(), ref, rtol=1e-13, atol=0)  # cumulative product round-off
    np.testing.assert_allclose(s.betas[1:].numpy(), np.linspace(1e-4, 0.02, T) * 1000 / T, rtol=1e-14, atol=0)


def test_cosine_schedule_matches_formula():
    """Nichol & Dhariwal eq. (17): alpha_bar(t) = f(t) / f(0) while beta <= 0.999 (clipped near t = T)."""
    T, s = 1000, 0.008
    sched = dpt.cosine_schedule(T)
    t = np.arange(T + 1) / T
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    ref = f / f[0]
    betas = 1 - ref[1:] / ref[:-1]
    unclipped = np.flatnonzero(betas > 0.999)
    first_clip = unclipped[0] + 1 if unclipped.size else T + 1
    np.testing.assert_allclose(sched.alpha_bars[:first_clip].numpy(), ref[:first_clip], rtol=1e-12, atol=0)
    assert float(sched.betas.max()) <= 0.999
    assert bool((sched.alpha_bars[1:] < sched.alpha_bars[:-1]).all())  # strictly decreasing


def test_derived_quantities(lin):
    t = torch.tensor([1, 10, 100, 500, 1000])
    ab = lin.alpha_bar(t)
    torch.testing.assert_close(lin.snr(t), ab / (1 - ab), rtol=1e-15, atol=0)
    torch.testing.assert_close(lin.sigma(t) ** 2, 1 - ab, rtol=1e-14, atol=0)
    torch.testing.assert_close(lin.tau(t) ** 2, 1 / lin.snr(t), rtol=1e-14, atol=0)
    assert math.isinf(float(lin.snr(0)))


def test_from_betas_and_from_alpha_bars_roundtrip(lin):
    again = dpt.VPSchedule.from_alpha_bars(lin.alpha_bars[1:])
    torch.testing.assert_close(again.betas, lin.betas, rtol=1e-10, atol=1e-16)  # ratio of products
    again2 = dpt.VPSchedule.from_betas(lin.betas[1:])
    torch.testing.assert_close(again2.alpha_bars, lin.alpha_bars, rtol=0, atol=0)  # same cumprod


# ---------------------------------------------------------------------------------------------- lookups
@pytest.mark.parametrize("t", [0, 1, 11, 51, 300, 999, 1000])
def test_step_from_alpha_bar_and_snr_invert_the_table(lin, t):
    ab = float(lin.alpha_bar(t))
    assert int(lin.step_from_alpha_bar(ab)) == t
    if t > 0:
        assert int(lin.step_from_snr(ab / (1 - ab))) == t
    # a level between two steps maps to the nearer one in log-SNR
    if 0 < t < 1000:
        lsnr = lambda s: math.log(float(lin.snr(s)))
        mid_lo = math.exp(0.51 * lsnr(t) + 0.49 * lsnr(t + 1))
        assert int(lin.step_from_snr(mid_lo)) == t


def test_timesteps(lin):
    grid = lin.timesteps(10)
    assert grid[0] == 1000 and grid[-1] == 0 and len(grid) == 11
    assert all(a > b for a, b in zip(grid, grid[1:], strict=False))
    assert lin.timesteps(None, 300) == list(range(300, -1, -1))  # every step
    assert lin.timesteps(0, 40) == [40]  # zero reverse steps: start point only
    g = lin.timesteps(7, 100)
    assert g[0] == 100 and g[-1] == 0 and len(g) == 8


# ---------------------------------------------------------------------------------------------- reverse steps
def test_reverse_coefficients_at_t1(lin):
    """docs/theory §1.1: at t = 1, c1 = 1, c2 = 0, beta_tilde = 0, so x0 = D(x1)."""
    c1, c2, bt, beta = lin.reverse_coefficients(1)
    assert c1 == pytest.approx(1.0, abs=1e-15)
    assert c2 == 0.0 and bt == 0.0
    assert beta == pytest.approx(1e-4, rel=1e-12)


@pytest.mark.parametrize("t, s", [(2, None), (17, None), (500, None), (1000, None), (1000, 900), (300, 0), (40, 7)])
def test_reverse_coefficients_are_the_forward_posterior(lin, t, s):
    """q(x_s | x_t, x0) by conditioning the jointly Gaussian (x_s, x_t) given x0 (independent derivation)."""
    s_ = t - 1 if s is None else s
    c1, c2, bt, _ = lin.reverse_coefficients(t, s)
    ab_s, ab_t = float(lin.alpha_bar(s_)), float(lin.alpha_bar(t))
    # x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s) e1;  x_t = sqrt(ab_t / ab_s) x_s + sqrt(1 - ab_t / ab_s) e2
    cov_st = math.sqrt(ab_t / ab_s) * (1 - ab_s)
    var_t = 1 - ab_t
    k = cov_st / var_t  # regression coefficient of x_s on x_t
    assert c2 == pytest.approx(k, rel=1e-12)
    assert c1 == pytest.approx(math.sqrt(ab_s) - k * math.sqrt(ab_t), rel=1e-9, abs=1e-15)  # cancellation
    assert bt == pytest.approx((1 - ab_s) - cov_st**2 / var_t, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("name", list(GAUSSIANS))
@pytest.mark.parametrize("t", [1, 5, 100, 600, 1000])
def test_ddpm_mean_identity_with_exact_gaussian_score(lin, name, t, gen):
    """c1 D(x) + c2 x = (x + beta s_t(x)) / sqrt(alpha) = E[x_{t-1} | x_t = x] (docs/theory §1.1)."""
    p = gaussian(name)
    c1, c2, _, beta = lin.reverse_coefficients(t)
    ab_t, ab_prev = float(lin.alpha_bar(t)), float(lin.alpha_bar(t - 1))
    x = torch.randn(4, p.dim, generator=gen, dtype=torch.float64)
    lhs = c1 * p.denoise(x, ab_t) + c2 * x
    rhs = (x + beta * p.diffuse(ab_t).score(x)) / math.sqrt(1 - beta)
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-11)  # exact identity, round-off amplified by c1, c2 <= ~1
    # E[x_{t-1} | x_t] from the joint Gaussian law: Cov(x_{t-1}, x_t) = sqrt(alpha_t) S_{t-1}
    m, S = (torch.tensor(v, dtype=torch.float64) for v in GAUSSIANS[name])
    eye = torch.eye(p.dim, dtype=torch.float64)
    S_prev = ab_prev * S + (1 - ab_prev) * eye
    S_t = ab_t * S + (1 - ab_t) * eye
    cond = math.sqrt(ab_prev) * m + (x - math.sqrt(ab_t) * m) @ torch.linalg.solve(S_t, math.sqrt(1 - beta) * S_prev)
    torch.testing.assert_close(lhs, cond, rtol=0, atol=1e-10)  # S_t solve, cond(S_t) <= ~1e4 at t = 1
