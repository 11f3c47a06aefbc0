"""LinearInverseProblem: posterior, MMSE, MAP, evidence, D*, against quadrature, brute-force Bayes and MC.

Problems come from ``tables.PROBLEMS`` (docs/theory §10: G2, B1 at sigma = 0.5 and 0.8, and more).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from tables import (
    GAUSSIAN_PROBLEMS,
    MIXTURE_PROBLEMS,
    PROBLEMS,
    QUADRATURE_PROBLEMS,
    grid_moments,
    measurement,
    mixture,
    np_gaussian_condition,
    np_mixture_logpdf,
    prior_box,
    prior_logpdf_on,
    prior_params,
    problem,
)

import dptheory as dpt


def _np_log_likelihood(name: str, x: np.ndarray) -> np.ndarray:
    """log N(y; A x, sigma^2 I) for the table's y, ``x (n, d)`` -> ``(n,)``."""
    _, A, sigma, y = PROBLEMS[name]
    r = np.asarray(y) - x @ np.asarray(A).T
    m = len(y)
    return -0.5 * np.sum(r**2, -1) / sigma**2 - 0.5 * m * np.log(2 * np.pi * sigma**2)


def _posterior_quadrature(name: str):
    """(log evidence, mean, cov) of p(x) N(y; A x, sigma^2 I) by grid quadrature (error < 1e-11, asserted)."""
    prior_name = PROBLEMS[name][0]
    lo, hi = prior_box(prior_name)
    return grid_moments(lambda x: prior_logpdf_on(prior_name, x) + _np_log_likelihood(name, x), lo, hi)


def _torch_log_posterior_unnormalised(prob: dpt.LinearInverseProblem, x: torch.Tensor, y: torch.Tensor):
    """log p(x) + log N(y; A x, sigma^2 I), written out here (not the library's posterior)."""
    r = y - x @ prob.A.T
    return prob.prior.log_prob(x) - 0.5 * (r**2).sum(-1) / prob.sigma_y**2


# ---------------------------------------------------------------------------------------------- posterior
@pytest.mark.parametrize("name", QUADRATURE_PROBLEMS)
def test_posterior_moments_match_quadrature(name):
    prob, y = problem(name), measurement(name)
    log_ev, mean, cov = _posterior_quadrature(name)
    post = prob.posterior(y)
    # grid error < 1e-11 (asserted in grid_moments); the library is exact
    np.testing.assert_allclose(post.mean.numpy(), mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(post.cov.numpy(), cov, rtol=0, atol=1e-10)
    np.testing.assert_allclose(prob.mmse(y).numpy(), mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(prob.posterior_cov_trace(y)), np.trace(cov), rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(prob.evidence().log_prob(y)), log_ev, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", GAUSSIAN_PROBLEMS)
def test_gaussian_posterior_matches_numpy_closed_form(name):
    """All Gaussian problems, including the 3-D and the singular-prior ones (no density: no quadrature)."""
    prior_name, A, sigma, y = PROBLEMS[name]
    _, means, covs = prior_params(prior_name)
    mu, Sig = np_gaussian_condition(means[0], covs[0], A, sigma, y)
    post = problem(name).posterior(measurement(name))
    np.testing.assert_allclose(post.mean.numpy(), mu, rtol=0, atol=1e-12)  # two exact algebraic routes
    np.testing.assert_allclose(post.cov.numpy(), Sig, rtol=0, atol=1e-12)
    An = np.asarray(A)
    R = An @ covs[0] @ An.T + sigma**2 * np.eye(len(y))
    ev = problem(name).evidence()
    np.testing.assert_allclose(ev.mean.numpy(), An @ means[0], rtol=0, atol=1e-14)  # Y ~ N(A m, A S A^T + s^2)
    np.testing.assert_allclose(ev.cov.numpy(), R, rtol=0, atol=1e-13)
    # MMSE law N(m, S - Sigma) with S - Sigma = G R G^T, G = S A^T R^-1 (a different product)
    G = np.linalg.solve(R, An @ covs[0]).T
    np.testing.assert_allclose(problem(name).mmse_law().cov.numpy(), G @ R @ G.T, rtol=0, atol=1e-12)
    assert problem(name).mmse_error().value == pytest.approx(np.trace(Sig), abs=1e-12)


@pytest.mark.parametrize("name", MIXTURE_PROBLEMS)
def test_mixture_log_posterior_matches_brute_force_bayes(name, gen):
    """log p(x|y) = log p(x) + log p(y|x) - log p(y), with scipy densities and 1-D quad / grid evidence."""
    prob, y = problem(name), measurement(name)
    prior_name = PROBLEMS[name][0]
    log_ev, _, _ = _posterior_quadrature(name)
    x = prob.posterior(y).sample(6, generator=gen)
    xn = x.numpy()
    ref = np_mixture_logpdf(xn, *prior_params(prior_name)) + _np_log_likelihood(name, xn) - log_ev
    np.testing.assert_allclose(prob.log_posterior(x, y).numpy(), ref, rtol=0, atol=1e-10)  # quadrature 1e-11


def test_mixture_evidence_matches_scipy_quad():
    """1-D: p(y) = int p(x) N(y; a x, s^2) dx by adaptive quadrature (scipy.integrate.quad, epsabs 1e-14)."""
    from scipy.integrate import quad

    for name in ["B1_s05", "B1_s08", "gmm1_k3"]:
        prior_name, A, sigma, y = PROBLEMS[name]
        w, means, covs = prior_params(prior_name)

        def f(x, w=w, means=means, covs=covs, A=A, sigma=sigma, y=y):
            prior = sum(
                wk * stats.norm.pdf(x, m[0], math.sqrt(S[0, 0])) for wk, m, S in zip(w, means, covs, strict=True)
            )
            return prior * stats.norm.pdf(y[0], A[0][0] * x, sigma)

        val, err = quad(f, -8, 8, points=list(means[:, 0]), epsabs=1e-14, epsrel=1e-13, limit=200)
        assert err < 1e-12
        got = float(problem(name).evidence().log_prob(measurement(name)).exp())
        assert got == pytest.approx(val, rel=1e-10)  # quad error < 1e-12 absolute on a value ~0.1-0.5


# ------------------------------------------------------------------------------------------ reference values
def test_g2_reference_values():
    """docs/theory §10 / claim 17: G2 posterior mean (0.644, 0.065) and D* = tr Sigma."""
    prob, y = problem("G2"), measurement("G2")
    mu = prob.mmse(y)
    np.testing.assert_allclose(mu.numpy(), [0.644, 0.065], rtol=0, atol=5e-4)  # docs/theory quotes 3 decimals
    d_star = prob.mmse_error()
    assert d_star.exact and d_star.stderr == 0.0
    assert d_star.value == pytest.approx(float(torch.trace(prob.posterior(y).cov)), abs=1e-14)
    # by hand: Sigma = S - S a a^T S / (a^T S a + s^2), a = (1, .5): S a = (1.3, 1.0), a^T S a = 1.8
    S_a, aSa = np.array([1.3, 1.0]), 1.8
    assert d_star.value == pytest.approx(1.8 - S_a @ S_a / (aSa + 0.09), abs=1e-14)


@pytest.mark.parametrize(
    "sigma, y, mmse, map_",
    [
        (0.5, -0.6, -0.9034, -0.9333),  # docs/theory §11 / §6.4 (B1 stand-in for Wang's figure)
        (0.8, -0.2, -0.2761, -0.9420),  # docs/theory claim 14
    ],
)
def test_b1_mmse_and_map_reference_values(sigma, y, mmse, map_):
    prob = dpt.LinearInverseProblem(mixture("b1"), [[1.0]], sigma)
    assert float(prob.mmse([y])[0]) == pytest.approx(mmse, abs=5e-5)  # docs/theory gives 4 decimals
    assert float(prob.map([y])[0]) == pytest.approx(map_, abs=5e-5)


def test_b1_symmetric_maps_at_y_zero():
    """docs/theory claim 13: at y = 0 (sigma = .5) the MMSE is 0 and the MAPs are +-0.8333 = +-20 / (20 + 4)."""
    prob = problem("B1_s05")
    y = torch.zeros(1)
    assert abs(float(prob.mmse(y)[0])) < 1e-15  # exact symmetry
    x_map = float(prob.map(y)[0])
    assert abs(x_map) == pytest.approx(20.0 / 24.0, abs=1e-9)  # each mode is a component mean (overlap e^-69)
    lp = prob.log_posterior(torch.tensor([[x_map], [-x_map]]), y)
    assert float(lp[0] - lp[1]) == pytest.approx(0.0, abs=1e-12)  # the two modes are equally high


# ---------------------------------------------------------------------------------------------- MAP
@pytest.mark.parametrize("name", MIXTURE_PROBLEMS)
def test_mixture_map_is_a_stationary_point_and_the_global_max(name, gen):
    prob = problem(name)
    y0 = measurement(name)
    ys = torch.stack([y0, y0 + 0.7, y0 - 1.1])  # batched y
    x_map = prob.map(ys)
    assert x_map.shape == (3, prob.dim)
    prec_scale = float(torch.linalg.eigvalsh(prob.prior.covs).min().reciprocal() + prob.sigma_y**-2)
    # a fine grid for the global-max check (1-D spacing ~7e-4, 2-D ~0.03), prior term computed once
    lo, hi = prior_box(PROBLEMS[name][0], n_sd=5.0)
    n = 8001 if prob.dim == 1 else 301
    axes = [torch.linspace(a, b, n, dtype=torch.float64) for a, b in zip(lo, hi, strict=True)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, prob.dim)
    prior_grid = prob.prior.log_prob(grid)
    for y, xm in zip(ys, x_map, strict=True):
        xg = xm.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_torch_log_posterior_unnormalised(prob, xg, y), xg)
        # the docstring promises |grad| < ~1e-9 relative to the precision scale
        assert float(g.abs().max()) < 1e-8 * prec_scale, f"|grad log p(x|y)| = {g.abs().max():.3g} at the MAP"
        torch.testing.assert_close(prob.map_objective_gradient(xm, y), g, rtol=0, atol=1e-10)
        # global max over the grid: no grid point may beat the returned mode
        lp_grid = prior_grid - 0.5 * ((y - grid @ prob.A.T) ** 2).sum(-1) / prob.sigma_y**2
        lp_map = _torch_log_posterior_unnormalised(prob, xm, y)
        assert float(lp_map) >= float(lp_grid.max()) - 1e-12, "a grid point beats the returned MAP"
        # and the best grid point lies next to it (1-D: within two grid spacings)
        if prob.dim == 1:
            spacing = float(axes[0][1] - axes[0][0])
            assert abs(float(grid[lp_grid.argmax(), 0] - xm[0])) <= 2 * spacing


def test_gaussian_map_equals_mmse():
    prob, y = problem("g3_two_rows"), measurement("g3_two_rows")
    ys = torch.stack([y, 2 * y, -y])
    torch.testing.assert_close(prob.map(ys), prob.mmse(ys), rtol=0, atol=0)  # same formula by definition


# ---------------------------------------------------------------------------------------------- batching
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_mmse_and_trace_are_batched(name, gen):
    prob = problem(name)
    _, ys = prob.sample_joint(5, generator=gen)
    batch = prob.mmse(ys)
    tr = prob.posterior_cov_trace(ys)
    assert batch.shape == (5, prob.dim) and tr.shape == (5,)
    for i, y in enumerate(ys):
        post = prob.posterior(y)
        torch.testing.assert_close(batch[i], post.mean, rtol=0, atol=1e-13)  # same algebra, one vs many
        torch.testing.assert_close(tr[i], torch.trace(post.cov), rtol=0, atol=1e-12)
    assert prob.mmse(ys.reshape(5, 1, -1)).shape == (5, 1, prob.dim)


# ---------------------------------------------------------------------------------------------- D* by MC
@pytest.mark.parametrize("name", GAUSSIAN_PROBLEMS)
def test_gaussian_mmse_error_matches_monte_carlo(name, gen):
    """Exact D* = tr Sigma against the plain MC mean of ||X - mmse(Y)||^2, n = 20000, 4 SE (failure ~6e-5)."""
    prob = problem(name)
    n = 20000
    x, y = prob.sample_joint(n, generator=gen)
    err = ((x - prob.mmse(y)) ** 2).sum(-1)
    mc = dpt.Estimate.from_samples(err)
    exact = prob.mmse_error()
    assert abs(mc.value - exact.value) <= 4 * mc.stderr, f"{mc} vs exact {exact}"


@pytest.mark.parametrize("name", MIXTURE_PROBLEMS)
def test_mixture_mmse_error_matches_plain_monte_carlo(name, gen):
    """Rao-Blackwellised D* (library) against an independent plain MC of ||X - mmse(Y)||^2: combined 4 SE."""
    prob = problem(name)
    n = 20000
    rb = prob.mmse_error(n, generator=gen)
    assert not rb.exact and rb.n == n
    gen2 = torch.Generator().manual_seed(7)  # an independent stream
    x, y = prob.sample_joint(n, generator=gen2)
    plain = dpt.Estimate.from_samples(((x - prob.mmse(y)) ** 2).sum(-1))
    assert abs(rb.value - plain.value) <= 4 * math.hypot(rb.stderr, plain.stderr), f"{rb} vs {plain}"
    # Rao-Blackwellisation must not increase the variance
    assert rb.stderr <= plain.stderr


@pytest.mark.parametrize(
    "name", [k for k in MIXTURE_PROBLEMS if len(PROBLEMS[k][3]) == 1 and len(PROBLEMS[k][1][0]) == 1]
)
def test_mixture_mmse_error_matches_quadrature(name, gen):
    """1-D: D* = E[X^2] - int E[X|y]^2 p(y) dy, with the posterior GMM written out in numpy and scipy quad.
    The library's Rao-Blackwellised MC value must lie within 4 of its own SE (n = 20000; failure ~6e-5)."""
    from scipy.integrate import quad

    prior_name, A, sigma, _ = PROBLEMS[name]
    w, means, covs = prior_params(prior_name)
    a, m, v = A[0][0], means[:, 0], covs[:, 0, 0]
    ev_var = a**2 * v + sigma**2

    def integrand(y):
        ev = w * stats.norm.pdf(y, a * m, np.sqrt(ev_var))  # w_k N(y; a m_k, a^2 v_k + s^2)
        mu_k = m + v * a / ev_var * (y - a * m)
        return (ev @ mu_k) ** 2 / ev.sum()  # E[X|y]^2 p(y)

    second, err = quad(integrand, -15, 15, points=list(a * m), epsabs=1e-13, epsrel=1e-12, limit=400)
    assert err < 1e-10
    d_star = float(w @ (v + m**2)) - second
    rb = problem(name).mmse_error(20000, generator=gen)
    assert abs(rb.value - d_star) <= 4 * rb.stderr, f"{rb} vs quadrature {d_star:.6f}"


def test_sample_joint_and_measure(gen):
    """Y = A X + sigma Z: the residual Y - A X has mean 0 and variance sigma^2 (MC, 4 SE)."""
    prob = problem("g3_two_rows")
    n = 20000
    x, y = prob.sample_joint(n, generator=gen)
    assert x.shape == (n, 3) and y.shape == (n, 2)
    r = (y - x @ prob.A.T).numpy()
    s = prob.sigma_y
    assert np.all(np.abs(r.mean(0)) <= 4 * s / math.sqrt(n))
    assert np.all(np.abs(r.var(0, ddof=1) - s**2) <= 4 * s**2 * math.sqrt(2 / (n - 1)))  # Var of s^2 estimate
    # the evidence law is N(A m, A S A^T + s^2 I): its mean matches the MC mean of Y
    ev = prob.evidence()
    se = np.sqrt(np.diag(ev.cov.numpy()) / n)
    assert np.all(np.abs(y.mean(0).numpy() - ev.mean.numpy()) <= 4 * se)


def test_operator_object_is_accepted():
    """A matrix and a LinearOperator with only A / A_adjoint (the inherited matrix()) give the same posterior."""

    class Op(dpt.LinearOperator):
        M = torch.tensor([[1.0, 0.5]], dtype=torch.float64)

        def A(self, x):
            return x @ self.M.T

        def A_adjoint(self, y):
            return y @ self.M

    g = problem("G2").prior
    a = dpt.LinearInverseProblem(g, Op(), 0.3).posterior([0.7])
    b = problem("G2").posterior([0.7])
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=1e-15)
    torch.testing.assert_close(a.cov, b.cov, rtol=0, atol=1e-15)
