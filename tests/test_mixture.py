"""GaussianMixture: densities, responsibilities, scores, Tweedie denoiser/covariance, diffusion, conditioning.

Oracles: a numpy mixture of scipy.stats.multivariate_normal densities, finite differences and autograd,
1-D / 2-D quadrature of x0 p(x0) N(x_t; sqrt(ab) x0, (1 - ab) I), Gaussian-conditioning closed forms in numpy,
and goodness-of-fit tests for sampling.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp
from tables import (
    MIXTURES,
    MIXTURES_1D,
    gaussian,
    grid_moments,
    matrices,
    mixture,
    np_gaussian_condition,
    np_mixture_logpdf,
    prior_box,
    prior_logpdf_on,
    prior_params,
    spd_matrices,
    vectors,
)

import dptheory as dpt

NAMES = list(MIXTURES)
ALPHA_BARS = [0.97, 0.6, 0.05]


def _points(name: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """Points spread over the prior's range (means +- 2)."""
    _, means, _ = prior_params(name)
    lo, hi = means.min(0) - 2.0, means.max(0) + 2.0
    u = torch.rand(n, means.shape[1], generator=gen, dtype=torch.float64)
    return torch.from_numpy(lo) + u * torch.from_numpy(hi - lo)


def _diffused_params(name: str, ab: float):
    w, means, covs = prior_params(name)
    d = means.shape[1]
    return w, math.sqrt(ab) * means, ab * covs + (1 - ab) * np.eye(d)


# ---------------------------------------------------------------------------------------------- densities
@pytest.mark.parametrize("ab", [1.0, 0.5])
@pytest.mark.parametrize("name", NAMES)
def test_log_prob_and_responsibilities_match_scipy_mixture(name, ab, gen):
    q = mixture(name).diffuse(ab)
    w, means, covs = _diffused_params(name, ab)
    x = _points(name, 11, gen)
    xn = x.numpy()
    # different algebra (eigh + logsumexp vs scipy's cholesky): float64 round-off
    np.testing.assert_allclose(q.log_prob(x).numpy(), np_mixture_logpdf(xn, w, means, covs), rtol=0, atol=1e-12)
    comp = np.stack(
        [
            np.log(wk) + np.atleast_1d(stats.multivariate_normal(m, S).logpdf(xn))
            for wk, m, S in zip(w, means, covs, strict=True)
        ],
        -1,
    )
    np.testing.assert_allclose(q.component_log_probs(x).numpy(), comp, rtol=0, atol=1e-12)
    gamma = np.exp(comp - logsumexp(comp, -1, keepdims=True))
    np.testing.assert_allclose(q.responsibilities(x).numpy(), gamma, rtol=0, atol=1e-12)
    assert q.log_prob(x.reshape(11, 1, -1)).shape == (11, 1)  # batch shape follows x


@pytest.mark.parametrize("name", NAMES)
def test_moments_and_components(name):
    q = mixture(name)
    w, means, covs = prior_params(name)
    mean = w @ means
    cov = np.einsum("k,kij->ij", w, covs) + np.einsum("k,ki,kj->ij", w, means - mean, means - mean)
    np.testing.assert_allclose(q.mean.numpy(), mean, rtol=0, atol=1e-14)  # law of total expectation
    np.testing.assert_allclose(q.cov.numpy(), cov, rtol=0, atol=1e-14)  # law of total variance
    for k in range(len(w)):
        c = q.component(k)
        assert isinstance(c, dpt.Gaussian)
        np.testing.assert_array_equal(c.mean.numpy(), means[k])
        np.testing.assert_allclose(c.cov.numpy(), covs[k], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("ab", [1.0, *ALPHA_BARS])
@pytest.mark.parametrize("name", NAMES)
def test_score_matches_finite_differences_and_autograd(name, ab, gen):
    q = mixture(name)
    qt = q.diffuse(ab)
    x = _points(name, 7, gen)
    s = qt.score(x)
    h = 1e-5
    fd = torch.stack(
        [(qt.log_prob(x + h * e) - qt.log_prob(x - h * e)) / (2 * h) for e in torch.eye(q.dim, dtype=torch.float64)],
        -1,
    )
    # truncation h^2 |f'''| / 6 with |f'''| up to ~1e3 for the sharp B1 components -> 2e-8; round-off ~1e-10
    np.testing.assert_allclose(s.numpy(), fd.numpy(), rtol=0, atol=1e-7)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(qt.log_prob(xg).sum(), xg)
    np.testing.assert_allclose(s.numpy(), g.numpy(), rtol=0, atol=1e-10)  # same quantity, round-off only
    if ab < 1.0:
        s2, den = q.score_and_denoise(x, ab)
        np.testing.assert_allclose(s2.numpy(), s.numpy(), rtol=0, atol=1e-12)  # one pass == two calls
        np.testing.assert_allclose(den.numpy(), q.denoise(x, ab).numpy(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- denoiser
@pytest.mark.parametrize("ab", ALPHA_BARS)
@pytest.mark.parametrize("name", NAMES)
def test_denoiser_and_covariance_match_quadrature(name, ab, gen):
    """E[x0|x_t], Cov[x0|x_t] from quadrature of p(x0) N(x_t; sqrt(ab) x0, (1 - ab) I) (1-D and 2-D)."""
    q = mixture(name)
    lo, hi = prior_box(name)
    for x_t in _points(name, 3, gen):
        xt = x_t.numpy()

        def logf(x0, xt=xt):
            return prior_logpdf_on(name, x0) - 0.5 * np.sum((xt - math.sqrt(ab) * x0) ** 2, -1) / (1 - ab)

        _, mean, cov = grid_moments(logf, lo, hi)
        # grid error asserted < 1e-11 inside grid_moments
        np.testing.assert_allclose(q.denoise(x_t, ab).numpy(), mean, rtol=0, atol=1e-10)
        np.testing.assert_allclose(q.denoise_cov(x_t, ab).numpy(), cov, rtol=0, atol=1e-10)


@pytest.mark.parametrize("ab", ALPHA_BARS)
@pytest.mark.parametrize("name", NAMES)
def test_tweedie_first_and_second_order(name, ab, gen):
    """D = (x + (1 - ab) s_t) / sqrt(ab) (exact);  Cov = (1 - ab)/sqrt(ab) dD/dx (finite differences)."""
    q = mixture(name)
    x = _points(name, 5, gen)
    tweedie = (x + (1 - ab) * q.diffuse(ab).score(x)) / math.sqrt(ab)
    # analytic identity; the score is O(|x| / (1 - ab)), round-off scaled by 1/sqrt(ab) <= 4.5
    np.testing.assert_allclose(q.denoise(x, ab).numpy(), tweedie.numpy(), rtol=0, atol=1e-12)
    h = 1e-5
    cov = q.denoise_cov(x, ab)
    for i, e in enumerate(torch.eye(q.dim, dtype=torch.float64)):
        dD = (q.denoise(x + h * e, ab) - q.denoise(x - h * e, ab)) / (2 * h)  # column i of the Jacobian
        # docs/theory claim 4: <= 1e-7 for finite differences (h^2 |D'''| truncation, D''' ~ 1e2..1e3 at worst)
        np.testing.assert_allclose(cov[..., :, i].numpy(), ((1 - ab) / math.sqrt(ab) * dD).numpy(), atol=1e-7)


def test_single_component_mixture_agrees_with_gaussian(gen):
    """K = 1: every method must reduce to the Gaussian's (two independent code paths)."""
    g = gaussian("g3")
    q = dpt.GaussianMixture([1.0], g.mean.unsqueeze(0), g.cov.unsqueeze(0))
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    for ab in ALPHA_BARS:
        torch.testing.assert_close(q.denoise(x, ab), g.denoise(x, ab), rtol=0, atol=1e-12)
        torch.testing.assert_close(q.denoise_cov(x, ab), g.denoise_cov(x, ab), rtol=0, atol=1e-12)
        torch.testing.assert_close(q.diffuse(ab).score(x), g.diffuse(ab).score(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(q.log_prob(x), g.log_prob(x), rtol=0, atol=1e-12)


def test_singular_components_allowed_for_denoising(gen):
    """A GMM with a rank-1 component: denoising at ab < 1 is defined (Tweedie with the diffused score)."""
    covs = [[[1.0, 1.0], [1.0, 1.0]], [[0.3, 0.0], [0.0, 0.2]]]
    q = dpt.GaussianMixture([0.4, 0.6], [[0.5, -0.5], [-1.0, 1.0]], covs)
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    ab = 0.7
    tweedie = (x + (1 - ab) * q.diffuse(ab).score(x)) / math.sqrt(ab)
    torch.testing.assert_close(q.denoise(x, ab), tweedie, rtol=0, atol=1e-12)  # exact identity
    # the singular component's samples lie on its support line x1 - x2 = 1
    xs, k = q.sample(400, generator=gen, return_labels=True)
    line = xs[k == 0]
    assert line.shape[0] > 100
    assert (line[:, 0] - line[:, 1] - 1.0).abs().max() < 1e-12  # round-off


def test_chunked_batch_equals_pointwise(gen):
    """A batch larger than one internal chunk (2^18 / (K d) points) must equal the plain-numpy formulas."""
    name, ab = "gmm1_k4", 0.4
    q = mixture(name)
    n = (1 << 18) // 4 + 1000  # crosses a chunk boundary
    x = 4 * torch.rand(n, 1, generator=gen, dtype=torch.float64) - 2
    score, den = q.score_and_denoise(x, ab)
    w, means, covs = prior_params(name)
    s_k = ab * covs[:, 0, 0] + 1 - ab  # diffused component variances
    c_k = math.sqrt(ab) * means[:, 0]
    xn = x.numpy()[:, :1]
    logj = np.log(w) - 0.5 * np.log(2 * np.pi * s_k) - 0.5 * (xn - c_k) ** 2 / s_k
    g = np.exp(logj - logsumexp(logj, -1, keepdims=True))
    ref_score = -(g * (xn - c_k) / s_k).sum(-1)
    mu_k = means[:, 0] + math.sqrt(ab) * covs[:, 0, 0] / s_k * (xn - c_k)
    ref_den = (g * mu_k).sum(-1)
    np.testing.assert_allclose(score.numpy()[:, 0], ref_score, rtol=0, atol=1e-11)  # closed forms, round-off
    np.testing.assert_allclose(den.numpy()[:, 0], ref_den, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("name", NAMES)
def test_sampling_goodness_of_fit(name, gen):
    """Labels ~ Categorical(w) (chi-square) and draws ~ the mixture (KS on each coordinate's marginal).

    Failure rate: each p-value is > 1e-3 with probability 0.999 under the null (the seed is fixed).
    """
    q = mixture(name)
    w, means, covs = prior_params(name)
    n = 4000
    x, k = q.sample(n, generator=gen, return_labels=True)
    assert x.shape == (n, q.dim) and k.shape == (n,)
    counts = np.bincount(k.numpy(), minlength=len(w))
    assert stats.chisquare(counts, n * w).pvalue > 1e-3
    for j in range(q.dim):

        def cdf(t, j=j):
            return sum(
                wk * stats.norm.cdf(t, m[j], math.sqrt(S[j, j])) for wk, m, S in zip(w, means, covs, strict=True)
            )

        assert stats.kstest(x[:, j].numpy(), cdf).pvalue > 1e-3
    g2 = torch.Generator().manual_seed(20261124)
    assert torch.equal(x, q.sample(n, generator=g2))  # reproducible from the generator


# ---------------------------------------------------------------------------------------------- conditioning
@pytest.mark.parametrize(
    "name, A, sigma, y",
    [
        ("b1", [[1.0]], 0.5, [-0.6]),
        ("gmm1_k3", [[1.3]], 0.6, [0.4]),
        ("gmm2_k2", [[1.0, -0.4]], 0.4, [0.3]),
        ("gmm2_k4", [[1.0, 0.0], [0.0, 1.0]], 0.5, [0.4, -0.7]),
        ("gmm2_k3", [[0.5, 1.0]], 0.0, [0.2]),  # sigma = 0 is allowed: every A S_k A^T > 0
    ],
)
def test_condition_matches_numpy_closed_form(name, A, sigma, y):
    post = mixture(name).condition(A, y, sigma)
    w, means, covs = prior_params(name)
    An, yn = np.array(A), np.array(y)
    log_ev = [
        np.log(wk) + stats.multivariate_normal(An @ m, An @ S @ An.T + sigma**2 * np.eye(len(y))).logpdf(yn)
        for wk, m, S in zip(w, means, covs, strict=True)
    ]
    w_post = np.exp(np.array(log_ev) - logsumexp(log_ev))
    np.testing.assert_allclose(post.weights.numpy(), w_post, rtol=0, atol=1e-12)  # closed forms, round-off
    for k in range(len(w)):
        mu, Sig = np_gaussian_condition(means[k], covs[k], An, sigma, yn)
        np.testing.assert_allclose(post.means[k].numpy(), mu, rtol=0, atol=1e-12)
        np.testing.assert_allclose(post.covs[k].numpy(), Sig, rtol=0, atol=1e-12)


@st.composite
def _mixture_and_two_measurements(draw):
    d = draw(st.integers(1, 3))
    K = draw(st.integers(1, 3))
    raw_w = draw(st.lists(st.floats(0.1, 1.0), min_size=K, max_size=K))
    w = torch.tensor(raw_w, dtype=torch.float64)
    w = w / w.sum()
    means = torch.stack([draw(vectors(d)) for _ in range(K)])
    covs = torch.stack([draw(spd_matrices(d)) for _ in range(K)])
    m1, m2 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    A1, A2 = draw(matrices(m1, d)), draw(matrices(m2, d))
    y1, y2 = draw(vectors(m1, 3.0)), draw(vectors(m2, 3.0))
    sigma = draw(st.floats(0.2, 2.0))
    x = draw(vectors(d, 3.0))
    return w, means, covs, A1, A2, y1, y2, sigma, x


@given(_mixture_and_two_measurements())
def test_sequential_conditioning_equals_joint(case):
    w, means, covs, A1, A2, y1, y2, sigma, _ = case
    q = dpt.GaussianMixture(w, means, covs)
    seq = q.condition(A1, y1, sigma).condition(A2, y2, sigma)
    joint = q.condition(torch.cat([A1, A2]), torch.cat([y1, y2]), sigma)
    # exact identity (Bayes twice = Bayes once); bounded conditioning -> 1e-9 covers round-off
    torch.testing.assert_close(seq.weights, joint.weights, rtol=0, atol=1e-9)
    torch.testing.assert_close(seq.means, joint.means, rtol=0, atol=1e-9)
    torch.testing.assert_close(seq.covs, joint.covs, rtol=0, atol=1e-9)


@given(_mixture_and_two_measurements(), st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_diffuse_composes(case, a, b):
    w, means, covs, *_ = case
    q = dpt.GaussianMixture(w, means, covs)
    two, one = q.diffuse(a).diffuse(b), q.diffuse(a * b)
    torch.testing.assert_close(two.weights, one.weights, rtol=0, atol=1e-15)  # weights untouched
    torch.testing.assert_close(two.means, one.means, rtol=0, atol=1e-12)  # exact, round-off
    torch.testing.assert_close(two.covs, one.covs, rtol=0, atol=1e-12)


@given(_mixture_and_two_measurements(), st.floats(0.02, 0.999))
def test_tweedie_property(case, ab):
    w, means, covs, *_, x = case
    q = dpt.GaussianMixture(w, means, covs)
    tweedie = (x + (1 - ab) * q.diffuse(ab).score(x)) / math.sqrt(ab)
    torch.testing.assert_close(q.denoise(x, ab), tweedie, rtol=0, atol=1e-10)  # exact; round-off / sqrt(ab)


@pytest.mark.parametrize("name", MIXTURES_1D)
def test_one_dimensional_score_matches_scipy_pdf_derivative(name, gen):
    """An oracle without log-sum-exp: d/dx log sum_k w_k phi_k = sum_k w_k phi_k' / sum_k w_k phi_k."""
    w, means, covs = prior_params(name)
    x = _points(name, 9, gen).numpy()[:, 0]
    sd = np.sqrt(covs[:, 0, 0])
    pdf = np.stack([wk * stats.norm.pdf(x, m[0], s) for wk, m, s in zip(w, means, sd, strict=True)], -1)
    dpdf = pdf * (means[:, 0] - x[:, None]) / sd**2
    ref = dpdf.sum(-1) / pdf.sum(-1)
    got = mixture(name).score(torch.from_numpy(x[:, None])).numpy()[:, 0]
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)  # closed form, round-off
