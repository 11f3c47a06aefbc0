"""VML closed form, its VML_S gradient, and the reconstructed VML-MAP sampler (docs/theory §8, claim 16).

Independent oracles: numpy/scipy Gaussian conditioning and KL, Monte Carlo KL between numpy GMMs, central
finite differences, scipy optimisers and root finders, and the problem's own MAP (Carreira-Perpinan + Newton).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize
from scipy.stats import multivariate_normal
from tables import (
    PROBLEMS,
    MaskImage,
    matrices,
    measurement,
    np_gaussian_condition,
    np_mixture_logpdf,
    prior_params,
    problem,
    spd_matrices,
)

import dptheory as dpt
from dptheory.images.problem import GaussianImageDenoiser
from dptheory.samplers import ddim
from dptheory.samplers.vml_map import operator_norm_squared, vml_map, vml_map_step_size
from dptheory.vml_loss import vml, vml_s, vml_s_gradient, vml_trace_terms

T = 1000


@pytest.fixture(autouse=True)
def _one_thread():
    """Loops over tiny tensors: one intra-op thread avoids thread-wake-up overhead (measured 2 us against 20 ms
    per small op with 2 threads on a loaded machine). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _np_alpha_bars() -> np.ndarray:
    """1-based ``ab_1..ab_T`` of the DDPM linear schedule, rebuilt from its betas."""
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))


def _np_gmm_given_xt(weights, means, covs, ab, x_t):
    """``p(x0 | x_t)`` of a GMM prior as (weights, means, covs): each component conditioned on the observation
    ``x_t = sqrt(ab) x0 + N(0, (1 - ab) I)``, weights ~ w_k N(x_t; sqrt(ab) m_k, ab S_k + (1 - ab) I)."""
    d = means.shape[1]
    A, s = np.sqrt(ab) * np.eye(d), np.sqrt(1 - ab)
    parts = [np_gaussian_condition(m, S, A, s, x_t) for m, S in zip(means, covs, strict=True)]
    logw = np.log(weights) + np.array(
        [
            multivariate_normal(np.sqrt(ab) * m, ab * S + (1 - ab) * np.eye(d)).logpdf(x_t)
            for m, S in zip(means, covs, strict=True)
        ]
    )
    w = np.exp(logw - logw.max())
    return w / w.sum(), np.array([p[0] for p in parts]), np.array([p[1] for p in parts])


def _np_gmm_posterior(weights, means, covs, A, sigma, y):
    """``p(x0 | y)`` for ``y = A x0 + N(0, sigma^2 I)``: weights ~ w_k N(y; A m_k, A S_k A^T + sigma^2 I)."""
    A = np.asarray(A, dtype=float)
    parts = [np_gaussian_condition(m, S, A, sigma, y) for m, S in zip(means, covs, strict=True)]
    logw = np.log(weights) + np.array(
        [
            multivariate_normal(A @ m, A @ S @ A.T + sigma**2 * np.eye(len(y))).logpdf(y)
            for m, S in zip(means, covs, strict=True)
        ]
    )
    w = np.exp(logw - logw.max())
    return w / w.sum(), np.array([p[0] for p in parts]), np.array([p[1] for p in parts])


def _np_gaussian_kl(m1, S1, m2, S2) -> float:
    """KL(N(m1, S1) || N(m2, S2)) (docs/theory §9.1), numpy."""
    P2 = np.linalg.inv(S2)
    dm = m2 - m1
    return 0.5 * (np.trace(P2 @ S1) + dm @ P2 @ dm - len(m1) + np.linalg.slogdet(S2)[1] - np.linalg.slogdet(S1)[1])


def _fd_gradient(f, x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """Central finite differences of a per-row scalar function ``f (n, d) -> (n,)``."""
    out = torch.zeros_like(x)
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        out[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return out


# ---------------------------------------------------------------------------------------------- VML closed form
@pytest.mark.parametrize("name", ["G2", "g2_aniso_full", "g3_two_rows", "g1_half"])
@pytest.mark.parametrize("ab", [0.999, 0.7, 0.05])
def test_vml_equals_gaussian_kl(name, ab):
    """Claim 16: VML(x_t) = KL(p(x0|x_t) || p(x0|y)) for a Gaussian prior, against numpy conditioning + the numpy
    KL and against dpt.gaussian_kl. Exact algebra in float64: 1e-12 (observed <= 2e-13 on KLs up to O(100))."""
    prior_name, A, sigma, y = PROBLEMS[name]
    _, means, covs = prior_params(prior_name)
    d = means.shape[1]
    prob = problem(name)
    x_t = torch.linspace(-1.3, 1.1, 3 * d).reshape(3, d)
    got = vml(prob, measurement(name), x_t, ab).numpy()
    mu_y, Sig_y = np_gaussian_condition(means[0], covs[0], A, sigma, y)
    post = dpt.Gaussian(mu_y, Sig_y)
    for i, x in enumerate(x_t.numpy()):
        m_t, C_t = np_gaussian_condition(means[0], covs[0], np.sqrt(ab) * np.eye(d), np.sqrt(1 - ab), x)
        assert abs(got[i] - _np_gaussian_kl(m_t, C_t, mu_y, Sig_y)) < 1e-12
        assert abs(got[i] - float(dpt.gaussian_kl(dpt.Gaussian(m_t, C_t), post))) < 1e-12


def test_vml_gmm_matches_monte_carlo_kl():
    """Claim 16, GMM prior (gmm2_k2 with one measurement row): the closed form against a Monte Carlo KL between
    the two numpy GMMs p(x0|x_t) and p(x0|y), 2e5 draws, within 3 SE (failure rate 0.3% per case)."""
    name = "gmm2_k2_one_row"
    prior_name, A, sigma, y = PROBLEMS[name]
    w, means, covs = prior_params(prior_name)
    prob = problem(name)
    post = _np_gmm_posterior(w, means, covs, A, sigma, np.asarray(y))
    rng = np.random.default_rng(7)
    for ab, x_t in [(0.6, np.array([0.4, -0.9])), (0.2, np.array([-0.3, 0.5]))]:
        q = _np_gmm_given_xt(w, means, covs, ab, x_t)
        n = 200_000
        k = rng.choice(len(q[0]), size=n, p=q[0])
        z = rng.standard_normal((n, 2))
        chol = np.linalg.cholesky(q[2])
        x0 = q[1][k] + np.einsum("nij,nj->ni", chol[k], z)
        terms = np_mixture_logpdf(x0, *q) - np_mixture_logpdf(x0, *post)
        mc, se = terms.mean(), terms.std(ddof=1) / math.sqrt(n)
        got = float(vml(prob, measurement(name), torch.tensor(x_t), ab))
        assert abs(got - mc) <= 3 * se, (got, mc, se)


def test_vml_argmin_is_the_inverse_denoiser_of_the_posterior_mean():
    """Claim 16: argmin_x VML(x) = sqrt(ab) m + K_t^{-1} (mu_y - m) on G2 (docs/theory §8.2), with scipy BFGS on the
    closed form; 1e-6 (optimiser tolerance; gtol 1e-10 on a problem with O(1) curvature)."""
    prob, y = problem("G2"), measurement("G2")
    _, means, covs = prior_params("g2")
    m, S = means[0], covs[0]
    mu_y = prob.map(y).numpy()
    for ab in (0.9, 0.4):
        K = np.sqrt(ab) * S @ np.linalg.inv(ab * S + (1 - ab) * np.eye(2))
        x_star = np.sqrt(ab) * m + np.linalg.solve(K, mu_y - m)
        res = optimize.minimize(
            lambda x, ab=ab: float(vml(prob, y, torch.tensor(x), ab)),
            np.zeros(2),
            method="BFGS",
            options={"gtol": 1e-10},
        )
        np.testing.assert_allclose(res.x, x_star, rtol=0, atol=1e-6)
        # at the minimiser p(x0 | x_t) = N(mu_y, C_t): VML = KL(N(mu_y, C_t) || N(mu_y, Sigma_y)) > 0
        C = np.linalg.inv(np.linalg.inv(S) + ab / (1 - ab) * np.eye(2))
        _, Sig = np_gaussian_condition(m, S, PROBLEMS["G2"][1], PROBLEMS["G2"][2], PROBLEMS["G2"][3])
        assert abs(res.fun - _np_gaussian_kl(mu_y, C, mu_y, Sig)) < 1e-10


def test_trace_terms_are_constant_for_a_gaussian_prior():
    """For a Gaussian prior C = Cov[x0|x_t] does not depend on x_t, so VML - VML_S is a constant (docs/theory §8.2)."""
    prob, y = problem("G2"), measurement("G2")
    x_t = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    tr = vml_trace_terms(prob, y, x_t, 0.3)
    assert float(tr.max() - tr.min()) < 1e-13
    torch.testing.assert_close(vml(prob, y, x_t, 0.3) - vml_s(prob, y, x_t, 0.3), tr, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------------- VML_S gradient
@pytest.mark.parametrize("name", ["G2", "g3_two_rows", "gmm2_k2_one_row", "gmm2_k4_identity", "B1_s05"])
@pytest.mark.parametrize("ab", [0.995, 0.6, 0.02])
def test_vml_s_gradient_matches_finite_differences(name, ab):
    """grad VML_S = J_D^T [A^T (A D - y)/s^2 - sqrt(ab) s_t] (one VJP) against central differences of the closed
    form VML_S (docs/theory §8.2 says 2e-10). h = 1e-5: truncation ~h^2 |f'''| plus round-off ~1e-16 |f| / h, both
    <= 1e-9 here; tolerance 1e-7 (relative to max(1, |grad|)). GMM priors make C, hence the dropped traces, vary."""
    prob, y = problem(name), measurement(name)
    d = prob.dim
    x_t = torch.linspace(-1.2, 0.9, 3 * d).reshape(3, d)
    g = vml_s_gradient(dpt.ExactDenoiser(prob.prior), x_t, ab, prob.operator, y, prob.sigma_y)
    fd = _fd_gradient(lambda x: vml_s(prob, y, x, ab), x_t)
    scale = max(1.0, float(g.abs().max()))
    assert float((g - fd).abs().max()) < 1e-7 * scale, (g, fd)


def test_vml_s_gradient_is_not_the_gradient_of_full_vml_for_a_gmm():
    """The trace terms matter for a GMM: the VML_S gradient differs from the full VML gradient (so the FD test
    above would catch a formula that included/omitted them wrongly)."""
    name, ab = "gmm2_k2_one_row", 0.6
    prob, y = problem(name), measurement(name)
    x_t = torch.tensor([[0.1, 0.2]])
    g = vml_s_gradient(dpt.ExactDenoiser(prob.prior), x_t, ab, prob.operator, y, prob.sigma_y)
    fd_full = _fd_gradient(lambda x: vml(prob, y, x, ab), x_t)
    assert float((g - fd_full).abs().max()) > 1e-3


# ---------------------------------------------------------------------------------------------- step size
@given(S=spd_matrices(2), A=matrices(2, 2), sigma=st.floats(0.05, 2.0), ab=st.floats(1e-4, 0.9999))
def test_step_bound_dominates_the_gaussian_hessian(S, A, sigma, ab):
    """The VML-MAP step is 1/h_t with h_t >= ||K_t Sigma_y^{-1} K_t||, the Hessian of VML_S for EVERY Gaussian
    prior (module docstring of vml_map). numpy eigenvalues; slack 1e-9 relative for round-off."""
    S, A = S.numpy(), A.numpy()
    if np.linalg.norm(A, 2) == 0:
        return
    K = np.sqrt(ab) * S @ np.linalg.inv(ab * S + (1 - ab) * np.eye(2))
    H = K @ (np.linalg.inv(S) + A.T @ A / sigma**2) @ K
    h_t = 1.0 / vml_map_step_size(ab, sigma, np.linalg.norm(A, 2) ** 2, 1.0)
    assert np.linalg.eigvalsh(0.5 * (H + H.T)).max() <= h_t * (1 + 1e-9)


def test_operator_norm_by_power_iteration_matches_svd(gen):
    """Power iteration through A / A_adjoint only (an operator without svd) against numpy's largest singular
    value: 100 iterations, gap ratio ~0.3 here, so converged to ~1e-12 relative."""
    M = torch.tensor([[1.0, 0.5, 0.0], [0.2, -1.0, 0.3]])

    class NoSvd(dpt.LinearOperator):
        def A(self, x):
            return x @ M.T

        def A_adjoint(self, y):
            return y @ M

    est = operator_norm_squared(NoSvd(), torch.zeros(4, 3), generator=gen)
    assert abs(est - np.linalg.norm(M.numpy(), 2) ** 2) < 1e-10
    assert abs(operator_norm_squared(dpt.MatrixOperator(M), torch.zeros(4, 3)) - est) < 1e-10


# ---------------------------------------------------------------------------------------------- VML-MAP
def _run(name, steps, inner_steps, n=8, seed=0, **kw):
    prob, y = problem(name), measurement(name)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, prob.dim, generator=g)
    out = vml_map(
        dpt.ExactDenoiser(prob.prior),
        x,
        dpt.linear_schedule(),
        operator=prob.operator,
        y=y,
        sigma_y=prob.sigma_y,
        steps=steps,
        inner_steps=inner_steps,
        generator=g,
        **kw,
    )
    return prob, y, out


def test_vml_map_gaussian_ends_at_the_map():
    """G2: the VML_S minimiser has D_t(x_t) = mu_y at every level, so the end point is mu_y = MAP = MMSE (docs/theory
    §8.2). 20 levels x 3 BB steps + 50 at the last level, from N(0, I): observed 7e-16; tolerance 1e-10
    (convergence of the last level's BB iteration)."""
    prob, y, out = _run("G2", steps=20, inner_steps=3)
    assert float((out - prob.map(y)).abs().max()) < 1e-10


def test_vml_map_fixed_step_rule_is_stable_but_slower():
    """step_rule='fixed' (the Hessian bound alone, no final steps) decreases the error monotonically in
    inner_steps but is limited by the cautious prior bound at small t; BB with the same budget is far closer
    (docs/theory §8.2 gives no step schedule; both are ours)."""
    errs = []
    for inner in (1, 3, 10):
        prob, y, out = _run("G2", steps=100, inner_steps=inner, step_rule="fixed", final_steps=0)
        errs.append(float((out - prob.map(y)).abs().max()))
    assert errs[0] > errs[1] > errs[2] > 1e-5  # observed 0.16, 4e-3, 1.3e-4
    prob, y, out = _run("G2", steps=100, inner_steps=10, final_steps=0)
    assert float((out - prob.map(y)).abs().max()) < 1e-3 * errs[2]  # observed 1e-15


def test_vml_map_b1_reaches_the_mode():
    """B1 (0.5 N(-1, .05) + 0.5 N(1, .05), sigma 0.5, y = -0.6): MAP -0.9333 (docs/theory §6.4). At the mode the other
    component's responsibility is ~e^-30, so locally the prior is Gaussian and the last-level stationary point is
    the MAP exactly (see the GMM test for when it is not); observed 6e-15, tolerance 1e-9."""
    prob, y, out = _run("B1_s05", steps=50, inner_steps=3, n=16)
    mode = prob.map(y)
    assert abs(float(mode) - (-0.9333)) < 5e-5
    assert float((out - mode).abs().max()) < 1e-9


def _np_diffused_score_and_denoiser(weights, means, covs, ab, x):
    """(s_t(x), D_t(x)) of a GMM prior at one point x (d,), numpy (docs/theory §3.2)."""
    d = len(x)
    c = 1 - ab
    logj, scores = [], []
    for w, m, S in zip(weights, means, covs, strict=True):
        S_t = ab * S + c * np.eye(d)
        logj.append(np.log(w) + multivariate_normal(np.sqrt(ab) * m, S_t).logpdf(x))
        scores.append(-np.linalg.solve(S_t, x - np.sqrt(ab) * m))
    gamma = np.exp(np.array(logj) - max(logj))
    gamma /= gamma.sum()
    s = gamma @ np.array(scores)
    return s, (x + c * s) / np.sqrt(ab)


def test_vml_map_gmm_converges_to_the_last_level_stationary_point_near_the_map():
    """gmm2_k2 (overlapping components), 100 levels x 3 BB steps + 50 final ones. Two oracles:
    (1) scipy root of the last-level stationarity sqrt(ab) s_t(x) = A^T (A D(x) - y) / sigma^2 (numpy GMM):
        D(x*) against the output to 1e-8 (the optimiser converges; observed 2e-14);
    (2) problem.map(y): the stationarity differs from the MAP condition by O(1 - ab_last) (module docstring);
        observed |out - MAP| = 0.44 (1 - ab_last) at t_last = 10; tolerance (1 - ab_last) = 1.9e-3.
    Every start reaches the same (global) mode here."""
    name = "gmm2_k2_one_row"
    prior_name, A, sigma, y = PROBLEMS[name]
    w, means, covs = prior_params(prior_name)
    A, y = np.asarray(A), np.asarray(y)
    prob, _, out = _run(name, steps=100, inner_steps=3, n=8)
    t_last = dpt.linear_schedule().timesteps(100)[-2]
    ab = _np_alpha_bars()[t_last - 1]

    def stationarity(x):
        s, D = _np_diffused_score_and_denoiser(w, means, covs, ab, x)
        return np.sqrt(ab) * s - A.T @ (A @ D - y) / sigma**2

    root = optimize.root(stationarity, np.sqrt(ab) * out[0].numpy(), tol=1e-14)
    # the oracle is the root's residual, not scipy's success flag (hybr reports "xtol too small" once it stalls
    # at round-off): to first order |x - x*| <= |F(x)| / sigma_min(J_F), with J_F by central differences
    # (h = 1e-6: truncation ~1e-12 relative, far below what the bound must resolve). Require that bound
    # <= 1e-10, two orders inside the 1e-8 comparison below (|J_D| is O(1 / sqrt(ab)) here).
    h = 1e-6
    J = np.stack([(stationarity(root.x + h * e) - stationarity(root.x - h * e)) / (2 * h) for e in np.eye(2)], 1)
    x_err_bound = np.linalg.norm(stationarity(root.x)) / np.linalg.svd(J, compute_uv=False).min()
    assert x_err_bound <= 1e-10, (x_err_bound, root.message)
    D_star = _np_diffused_score_and_denoiser(w, means, covs, ab, root.x)[1]
    assert float(np.abs(out.numpy() - D_star).max()) < 1e-8
    gap = float((out - prob.map(measurement(name))).norm(dim=1).max())
    assert gap < (1 - ab), (gap, 1 - ab)


def test_vml_map_without_inner_steps_is_ddim():
    """inner_steps = final_steps = 0 leaves only the DDIM (eta = 0) moves: samplers.ddim with the prior denoiser."""
    prob, y = problem("gmm2_k2_one_row"), measurement("gmm2_k2_one_row")
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(2))
    den, sched = dpt.ExactDenoiser(prob.prior), dpt.linear_schedule()
    out = vml_map(den, x, sched, operator=prob.operator, y=y, sigma_y=prob.sigma_y, steps=40, inner_steps=0,
                  final_steps=0)
    torch.testing.assert_close(out, ddim(den, x, sched, steps=40), rtol=0, atol=1e-14)


def test_solve_runs_vml_map(gen):
    prob, y = problem("G2"), measurement("G2")
    out = dpt.solve(prob, y, "vml-map", n_samples=4, generator=gen, steps=20)
    assert out.shape == (4, 2)
    assert float((out - prob.map(y)).abs().max()) < 1e-10  # as in the G2 test


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-6), (torch.float32, 3e-4)])
def test_runs_on_images_and_reaches_the_map(dtype, tol):
    """(n, 1, 4, 4) images, an inpainting operator with only A/A_adjoint (power iteration for ||A||^2), a 16-D
    Gaussian prior, 30 levels (last t = 33): the end point is the posterior mean of each particle's y.
    float64: observed 3e-8 (BB convergence in 16-D, condition number ~60); tolerance 1e-6. float32: observed
    6e-5, set by round-off in the Tweedie score (x - sqrt(ab) D)/(1 - ab), ~eps_32 |x| / 9e-3 ~ 3e-5 per
    coordinate before amplification by the inverse Hessian; tolerance 3e-4."""
    g = torch.Generator().manual_seed(0)
    B = torch.randn(16, 16, generator=g)
    cov = B @ B.T / 16 + 0.1 * torch.eye(16)
    mask = torch.rand(4, 4, generator=g) < 0.5
    y = torch.randn(3, int(mask.sum()), generator=g)
    prior = dpt.Gaussian(torch.zeros(16, dtype=dtype), cov.to(dtype))
    x = torch.randn(3, 1, 4, 4, generator=g, dtype=dtype)
    den = GaussianImageDenoiser.of_gaussian(prior, (1, 4, 4))
    out = vml_map(den, x, dpt.linear_schedule(), operator=MaskImage(mask), y=y.to(dtype),
                  sigma_y=0.3, steps=30, generator=g)
    assert out.shape == (3, 1, 4, 4) and out.dtype == dtype
    prob = dpt.LinearInverseProblem(dpt.Gaussian(torch.zeros(16), cov), torch.eye(16)[mask.reshape(-1)], 0.3)
    np.testing.assert_allclose(out.reshape(3, 16).double().numpy(), prob.mmse(y).numpy(), rtol=0, atol=tol)


# ---------------------------------------------------------------------------------------------- knobs
@pytest.mark.parametrize(
    ("knobs", "match"),
    [
        (dict(sigma_y=0.0), "sigma_y > 0"),
        (dict(inner_steps=-1), "inner_steps must be"),
        (dict(inner_steps=1.5), "inner_steps must be"),
        (dict(final_steps=-1), "final_steps must be"),
        (dict(step_size=2.0), "step_size must lie in"),
        (dict(step_size=0.0), "step_size must lie in"),
        (dict(step_rule="adam"), "step_rule must be"),
        (dict(A_norm_squared=-1.0), "A_norm_squared must be"),
        (dict(steps=T + 1), "steps must be"),
    ],
)
def test_bad_knobs_raise(knobs, match):
    prob, y = problem("G2"), measurement("G2")
    args = dict(operator=prob.operator, y=y, sigma_y=prob.sigma_y) | knobs
    with pytest.raises(ValueError, match=match):
        vml_map(dpt.ExactDenoiser(prob.prior), torch.zeros(1, 2), dpt.linear_schedule(), **args)


def test_vml_rejects_alpha_bar_one_and_noiseless_problems():
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(ValueError, match="alpha_bar must be < 1"):
        vml(prob, y, torch.zeros(2), 1.0)
    noiseless = dpt.LinearInverseProblem(prob.prior, [[1.0, 0.5]], 0.0)
    with pytest.raises(ValueError, match="sigma_y > 0"):
        vml(noiseless, y, torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="sigma_y > 0"):
        vml_s_gradient(dpt.ExactDenoiser(prob.prior), torch.zeros(1, 2), 0.5, prob.operator, y, 0.0)
