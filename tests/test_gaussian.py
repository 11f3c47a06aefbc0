"""Gaussian: densities, scores, diffusion, Tweedie denoiser, conditioning, each against an independent oracle.

Oracles: scipy.stats.multivariate_normal (densities), finite differences and autograd (scores, Jacobians),
quadrature of x0 p(x0) N(x_t; sqrt(ab) x0, (1 - ab) I) (denoiser), numpy closed forms (conditioning).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import multivariate_normal
from tables import (
    GAUSSIANS,
    LOW_DIM_SPD_GAUSSIANS,
    SPD_GAUSSIANS,
    gaussian,
    grid_moments,
    matrices,
    np_gaussian_condition,
    prior_box,
    prior_logpdf_on,
    spd_matrices,
    vectors,
)

import dptheory as dpt

ALPHA_BARS = [0.97, 0.6, 0.05]


def _points(d: int, n: int, gen: torch.Generator) -> torch.Tensor:
    return 1.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)


def _fd_gradient(f, x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """Central finite differences of a scalar-per-row function ``f: (n, d) -> (n,)``."""
    cols = []
    for i in range(x.shape[-1]):
        e = torch.zeros_like(x)
        e[..., i] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return torch.stack(cols, -1)


def _fd_jacobian(f, x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """Central finite-difference Jacobian of ``f: (d,) -> (d,)``, ``J[i, j] = d f_i / d x_j``."""
    cols = []
    for j in range(x.shape[-1]):
        e = torch.zeros_like(x)
        e[j] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return torch.stack(cols, -1)


# ---------------------------------------------------------------------------------------------- densities
@pytest.mark.parametrize("name", SPD_GAUSSIANS)
def test_log_prob_matches_scipy(name, gen):
    p = gaussian(name)
    x = _points(p.dim, 9, gen)
    ref = multivariate_normal(*GAUSSIANS[name]).logpdf(x.numpy())
    # same formula, different algebra (eigh vs cholesky): agreement to float64 round-off
    np.testing.assert_allclose(p.log_prob(x).numpy(), ref, rtol=0, atol=1e-12)
    # batch shapes follow x: (..., d) -> (...)
    assert p.log_prob(x.reshape(3, 3, p.dim)).shape == (3, 3)


@pytest.mark.parametrize("ab", ALPHA_BARS)
@pytest.mark.parametrize("name", list(GAUSSIANS))
def test_diffused_law_matches_scipy(name, ab, gen):
    """p_t = N(sqrt(ab) m, ab S + (1 - ab) I), also for the singular prior (p_t is SPD for ab < 1)."""
    p = gaussian(name)
    m, S = (np.array(v) for v in GAUSSIANS[name])
    pt = p.diffuse(ab)
    ref_cov = ab * S + (1 - ab) * np.eye(len(m))
    np.testing.assert_allclose(pt.mean.numpy(), math.sqrt(ab) * m, rtol=0, atol=1e-14)  # exact scaling
    np.testing.assert_allclose(pt.cov.numpy(), ref_cov, rtol=0, atol=1e-13)  # eigen-reconstruction round-off
    x = _points(p.dim, 7, gen)
    ref = multivariate_normal(math.sqrt(ab) * m, ref_cov).logpdf(x.numpy())
    np.testing.assert_allclose(pt.log_prob(x).numpy(), ref, rtol=0, atol=1e-11)  # cond(S_t) <= 1/(1-ab) = 20


# ---------------------------------------------------------------------------------------------- scores
# a singular Gaussian has a score only once diffused (ab < 1); at ab = 1 it raises (see test_bad_input)
SCORE_CASES = [(n, ab) for n in GAUSSIANS for ab in [1.0, *ALPHA_BARS] if ab < 1.0 or n in SPD_GAUSSIANS]


@pytest.mark.parametrize("name, ab", SCORE_CASES)
def test_score_matches_finite_differences_and_autograd(name, ab, gen):
    p = gaussian(name)
    pt = p.diffuse(ab)
    x = _points(p.dim, 6, gen)
    s = pt.score(x)
    # log p is quadratic, so central differences have no truncation error; round-off ~ eps |log p| / h ~ 1e-10
    np.testing.assert_allclose(s.numpy(), _fd_gradient(pt.log_prob, x).numpy(), rtol=0, atol=1e-7)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(pt.log_prob(xg).sum(), xg)
    np.testing.assert_allclose(s.numpy(), g.numpy(), rtol=0, atol=1e-11)  # same quantity, exact to round-off


# ---------------------------------------------------------------------------------------------- denoiser
@pytest.mark.parametrize("ab", ALPHA_BARS)
@pytest.mark.parametrize("name", LOW_DIM_SPD_GAUSSIANS)
def test_denoiser_and_covariance_match_quadrature(name, ab, gen):
    """E[x0|x_t] and Cov[x0|x_t] from 1-D / 2-D quadrature of p(x0) N(x_t; sqrt(ab) x0, (1 - ab) I)."""
    p = gaussian(name)
    lo, hi = prior_box(name)
    for x_t in _points(p.dim, 3, gen):
        xt = x_t.numpy()

        def logf(x0, xt=xt):
            return prior_logpdf_on(name, x0) - 0.5 * np.sum((xt - math.sqrt(ab) * x0) ** 2, -1) / (1 - ab)

        _, mean, cov = grid_moments(logf, lo, hi)
        # grid error is asserted < 1e-11 inside grid_moments
        np.testing.assert_allclose(p.denoise(x_t, ab).numpy(), mean, rtol=0, atol=1e-10)
        np.testing.assert_allclose(p.denoise_cov(x_t, ab).numpy(), cov, rtol=0, atol=1e-10)


@pytest.mark.parametrize("ab", ALPHA_BARS)
@pytest.mark.parametrize("name", list(GAUSSIANS))
def test_tweedie_first_and_second_order(name, ab, gen):
    """D(x) = (x + (1 - ab) s_t(x)) / sqrt(ab);  Cov = (1 - ab)/sqrt(ab) dD/dx (docs/theory §1.2)."""
    p = gaussian(name)
    pt = p.diffuse(ab)
    x = _points(p.dim, 5, gen)
    tweedie = (x + (1 - ab) * pt.score(x)) / math.sqrt(ab)
    np.testing.assert_allclose(p.denoise(x, ab).numpy(), tweedie.numpy(), rtol=0, atol=1e-12)  # exact identity
    for xi in x:
        J = _fd_jacobian(lambda z: p.denoise(z, ab), xi)
        # D is affine: central differences are exact up to round-off eps |D| / h ~ 1e-10
        np.testing.assert_allclose(
            p.denoise_cov(xi, ab).numpy(), ((1 - ab) / math.sqrt(ab) * J).numpy(), rtol=0, atol=1e-8
        )
        # the analytic gain equals the autograd Jacobian (exact to round-off)
        Ja = torch.autograd.functional.jacobian(lambda z: p.denoise(z, ab), xi)
        np.testing.assert_allclose(p.denoise_gain(ab).numpy(), Ja.numpy(), rtol=0, atol=1e-12)
    # covariance is constant in x_t and broadcast to the batch
    assert p.denoise_cov(x, ab).shape == (5, p.dim, p.dim)


def test_denoiser_at_alpha_bar_one_is_identity(gen):
    p = gaussian("g3_singular")
    x = _points(3, 4, gen)
    assert torch.equal(p.denoise(x, 1.0), x)  # no noise: x0 = x_t exactly
    assert torch.equal(p.denoise_cov(x, 1.0), torch.zeros(4, 3, 3))
    assert torch.equal(p.denoise_gain(1.0), torch.eye(3))


# ---------------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("name", list(GAUSSIANS))
def test_sample_moments(name, gen):
    p = gaussian(name)
    n = 20000
    x = p.sample(n, generator=gen)
    assert x.shape == (n, p.dim)
    m, S = (np.array(v) for v in GAUSSIANS[name])
    se_mean = np.sqrt(np.diag(S) / n)
    assert np.all(np.abs(x.mean(0).numpy() - m) <= 4 * se_mean), "sample mean off by > 4 SE"
    # Var of the sample covariance entry (i,j) for a Gaussian: (S_ii S_jj + S_ij^2) / n
    se_cov = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)
    assert np.all(np.abs(np.cov(x.numpy().T).reshape(S.shape) - S) <= 4.5 * se_cov), "sample cov off by > 4.5 SE"
    # reproducible from the generator
    g2 = torch.Generator().manual_seed(20261124)
    assert torch.equal(x, p.sample(n, generator=g2))


def test_singular_samples_stay_in_the_support(gen):
    """g3_singular is the law of (u, v, u + v) up to the mean: x3 - x1 - x2 is constant (up to round-off)."""
    m = torch.tensor(GAUSSIANS["g3_singular"][0])
    x = gaussian("g3_singular").sample(500, generator=gen) - m
    assert (x[:, 2] - x[:, 0] - x[:, 1]).abs().max() < 1e-13  # eigendecomposition round-off


# ---------------------------------------------------------------------------------------------- conditioning
@pytest.mark.parametrize(
    "name, A, sigma, y",
    [
        ("g1", [[2.0]], 0.5, [0.3]),
        ("g2", [[1.0, 0.5]], 0.3, [0.7]),
        ("g2_aniso", [[1.0, 1.0], [0.0, 2.0]], 0.2, [0.1, -0.4]),
        ("g3", [[1.0, 0.0, 1.0]], 0.0, [0.4]),  # sigma = 0 is allowed: A S A^T > 0
        ("g3_singular", [[1.0, -1.0, 0.5], [0.0, 1.0, 0.0]], 0.3, [0.8, -0.1]),
    ],
)
def test_condition_matches_numpy_closed_form(name, A, sigma, y):
    post = gaussian(name).condition(A, y, sigma)
    mu, Sig = np_gaussian_condition(*GAUSSIANS[name], A, sigma, y)
    np.testing.assert_allclose(post.mean.numpy(), mu, rtol=0, atol=1e-12)  # two exact algebraic routes
    np.testing.assert_allclose(post.cov.numpy(), Sig, rtol=0, atol=1e-12)
    if name in SPD_GAUSSIANS and sigma > 0:
        # information form (S^-1 + A^T A / s^2)^-1: a third, independent route
        m, S = (np.array(v) for v in GAUSSIANS[name])
        An = np.array(A)
        prec = np.linalg.inv(S) + An.T @ An / sigma**2
        Sig_info = np.linalg.inv(prec)
        mu_info = Sig_info @ (np.linalg.solve(S, m) + An.T @ np.array(y) / sigma**2)
        np.testing.assert_allclose(post.cov.numpy(), Sig_info, rtol=0, atol=1e-12)
        np.testing.assert_allclose(post.mean.numpy(), mu_info, rtol=0, atol=1e-12)


def test_linear_map_matches_monte_carlo_free_formula(gen):
    p = gaussian("g3")
    F = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])
    h = torch.tensor([0.3, -1.0])
    q = p.linear_map(F, h)
    m, S = (np.array(v) for v in GAUSSIANS["g3"])
    np.testing.assert_allclose(q.mean.numpy(), F.numpy() @ m + h.numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(q.cov.numpy(), F.numpy() @ S @ F.numpy().T, rtol=0, atol=1e-13)
    # and the pushforward of samples has that mean (MC, 4 SE)
    x = p.sample(20000, generator=gen) @ F.T + h
    se = np.sqrt(np.diag(q.cov.numpy()) / 20000)
    assert np.all(np.abs(x.mean(0).numpy() - q.mean.numpy()) <= 4 * se)


# ---------------------------------------------------------------------------------------------- properties
@st.composite
def _gaussian_and_two_measurements(draw):
    d = draw(st.integers(1, 3))
    m1 = draw(st.integers(1, 2))
    m2 = draw(st.integers(1, 2))
    S = draw(spd_matrices(d))
    mean = draw(vectors(d))
    A1, A2 = draw(matrices(m1, d)), draw(matrices(m2, d))
    y1, y2 = draw(vectors(m1, 3.0)), draw(vectors(m2, 3.0))
    sigma = draw(st.floats(0.1, 2.0))
    return mean, S, A1, A2, y1, y2, sigma


@given(_gaussian_and_two_measurements())
def test_sequential_conditioning_equals_joint(case):
    mean, S, A1, A2, y1, y2, sigma = case
    p = dpt.Gaussian(mean, S)
    seq = p.condition(A1, y1, sigma).condition(A2, y2, sigma)
    joint = p.condition(torch.cat([A1, A2]), torch.cat([y1, y2]), sigma)
    # exact identity; conditioning numbers are bounded (S >= 0.1 I, sigma >= 0.1, |A| <= 1.5 entries)
    torch.testing.assert_close(seq.mean, joint.mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(seq.cov, joint.cov, rtol=0, atol=1e-9)


@given(
    st.integers(1, 3).flatmap(lambda d: st.tuples(vectors(d), spd_matrices(d), vectors(d, 3.0))),
    st.floats(0.01, 1.0),
    st.floats(0.01, 1.0),
)
def test_diffuse_composes(case, a, b):
    mean, S, x = case
    p = dpt.Gaussian(mean, S)
    two_steps, one_step = p.diffuse(a).diffuse(b), p.diffuse(a * b)
    torch.testing.assert_close(two_steps.mean, one_step.mean, rtol=0, atol=1e-12)  # exact, round-off only
    torch.testing.assert_close(two_steps.cov, one_step.cov, rtol=0, atol=1e-12)
    # and the cached eigendecomposition carried along still gives the right density
    torch.testing.assert_close(two_steps.log_prob(x), one_step.log_prob(x), rtol=0, atol=1e-10)


@given(
    st.integers(1, 3).flatmap(lambda d: st.tuples(vectors(d), spd_matrices(d), vectors(d, 3.0))),
    st.floats(0.02, 0.999),
)
def test_tweedie_property(case, ab):
    mean, S, x = case
    p = dpt.Gaussian(mean, S)
    tweedie = (x + (1 - ab) * p.diffuse(ab).score(x)) / math.sqrt(ab)
    # exact identity; |score| <= |x - c| / (1 - ab) so the round-off scales like 1/sqrt(ab) <= 7
    torch.testing.assert_close(p.denoise(x, ab), tweedie, rtol=0, atol=1e-11)
