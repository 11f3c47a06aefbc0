"""RED-Diff (docs/theory §7, claim 17): the update, the official normalisation, the expected gradient and the fixed
point.

Oracles are independent of the library: plain numpy for the Gaussian algebra (the schedule is rebuilt from its
betas), a hand-written copy of the official mean-reduced loss for the normalisation, and Monte Carlo with
stated standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tables import GAUSSIANS, PROBLEMS, MaskImage, measurement, problem

import dptheory as dpt
from dptheory.images.problem import GaussianImageDenoiser
from dptheory.samplers.red_diff import red_diff, red_diff_effective_precision, red_diff_fixed_point

T = 1000
LAM = 0.25


@pytest.fixture(autouse=True)
def _one_thread():
    """These are loops over tiny tensors: one intra-op thread avoids thread-wake-up overhead (measured 2 us
    against 20 ms per small op with 2 threads on a loaded machine). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _np_alpha_bars() -> np.ndarray:
    """1-based ``ab_1..ab_T`` of the DDPM linear schedule, rebuilt from its betas (docs/theory §0)."""
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))


def _g2():
    m, S = (np.array(v, dtype=float) for v in GAUSSIANS["g2"])
    _, A, sigma, y = PROBLEMS["G2"]
    return m, S, np.array(A, dtype=float), sigma, np.array(y, dtype=float)


def _np_eps_hat(x_t, ab, m, S):
    """Exact eps prediction of N(m, S): ``sqrt(1 - ab) S_t^{-1} (x_t - sqrt(ab) m)`` (docs/theory §3.1)."""
    S_t = ab * S + (1 - ab) * np.eye(len(m))
    return np.sqrt(1 - ab) * np.linalg.solve(S_t, (x_t - np.sqrt(ab) * m).T).T


def _np_fixed_point(m, S, A, sigma, y, lam, w=1.0):
    """``(P_eff, mu*)``: P_eff = lam mean_t (1 - ab_t) S_t^{-1} by an explicit loop over t = 1..T (docs/theory §7.2)."""
    P = sum((1 - ab) * np.linalg.inv(ab * S + (1 - ab) * np.eye(len(m))) for ab in _np_alpha_bars())
    P = lam * P / T
    H = P + w * A.T @ A / sigma**2
    return P, np.linalg.solve(H, P @ m + w * A.T @ y / sigma**2)


# ---------------------------------------------------------------------------------------------- the update
@pytest.mark.parametrize("t_order", ["descending", "random"])
def test_one_sgd_step_is_the_documented_gradient(t_order):
    """mu_1 = mu_0 - lr [w A^T (A mu_0 - y) / s^2 + lam_t (eps_hat - eps)], lam_t = lam sqrt((1-ab)/ab): the sum
    reductions, the 1/(2 sigma^2) data term and the SNR weighting, one particle at a time."""
    m, S, A, sigma, _ = _g2()
    prob = problem("G2")
    y = torch.tensor([[0.7], [-0.3], [1.1]])  # one measurement per particle
    mu0 = torch.tensor([[0.2, 0.1], [-0.5, 0.4], [1.0, -1.0]])
    lr, w = 0.05, 1.7
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    mu1 = red_diff(
        dpt.ExactDenoiser(prob.prior),
        mu0,
        dpt.linear_schedule(),
        operator=prob.operator,
        y=y,
        sigma_y=sigma,
        lam=LAM,
        lr=lr,
        steps=1,
        t_order=t_order,
        obs_weight=w,
        optimizer="sgd",
        generator=gen,
    )
    replay = torch.Generator()
    replay.set_state(state)
    t = T if t_order == "descending" else int(torch.randint(1, T + 1, (1,), generator=replay))
    eps = torch.randn(mu0.shape, generator=replay).numpy()
    ab = _np_alpha_bars()[t - 1]
    x_t = np.sqrt(ab) * mu0.numpy() + np.sqrt(1 - ab) * eps
    grad = w * (mu0.numpy() @ A.T - y.numpy()) @ A / sigma**2
    grad += LAM * np.sqrt((1 - ab) / ab) * (_np_eps_hat(x_t, ab, m, S) - eps)
    np.testing.assert_allclose(mu1.numpy(), mu0.numpy() - lr * grad, rtol=0, atol=1e-12)  # same algebra, float64


def test_official_mean_reduced_loss_equals_obs_weight_sigma2_d_over_m():
    """NVlabs/RED-diff reduces both terms by MEAN and has no sigma_y; Adam ignores a global gradient scale, so the
    official iterates equal ours with obs_weight = sigma_y^2 dim(x)/dim(y) (module docstring, docs/theory §7.1)."""
    prob, y = problem("G2"), measurement("G2")
    sigma, d, m = prob.sigma_y, prob.dim, prob.m
    den, sched = dpt.ExactDenoiser(prob.prior), dpt.linear_schedule()
    x = prob.operator.pinv(y).expand(4, d).clone()
    ours = red_diff(
        den,
        x,
        sched,
        operator=prob.operator,
        y=y,
        sigma_y=sigma,
        steps=60,
        obs_weight=sigma**2 * d / m,
        generator=torch.Generator().manual_seed(9),
    )

    gen = torch.Generator().manual_seed(9)  # the official loop, written out (algos/reddiff.py, sigma_x0 = 0)
    mu = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=0.1, betas=(0.9, 0.99), weight_decay=0.0)
    for t in sched.timesteps(60)[:-1]:
        ab = float(sched.alpha_bar(t))
        noise = torch.randn(mu.shape, generator=gen)
        x_t = math.sqrt(ab) * mu.detach() + math.sqrt(1 - ab) * noise
        et = den.eps(x_t, ab)
        loss_obs = ((y - mu @ prob.A.T) ** 2).mean() / 2
        loss_noise = ((et - noise).detach() * mu).mean()
        loss = LAM * math.sqrt((1 - ab) / ab) * loss_noise + 1.0 * loss_obs
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Adam's eps = 1e-8 is not scale-invariant: the official gradients are 1/(n d) = 1/8 of ours, a relative
    # change of the denominators of ~1e-7 per step
    np.testing.assert_allclose(ours.numpy(), mu.detach().numpy(), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- claim 17
@pytest.mark.parametrize("t", [10, 300, 900])
def test_expected_eps_residual_is_linear_in_mu(t, gen):
    """E_eps[eps_hat(sqrt(ab) mu + sqrt(1-ab) eps) - eps] = sqrt(ab (1-ab)) S_t^{-1} (mu - m) (claim 17), by
    Monte Carlo with the library's exact denoiser: each coordinate within 4 SE (failure rate ~1e-4)."""
    m, S, *_ = _g2()
    den = dpt.ExactDenoiser(problem("G2").prior)
    ab = _np_alpha_bars()[t - 1]
    mu = np.array([0.9, -0.6])
    eps = torch.randn(200_000, 2, generator=gen)
    x_t = math.sqrt(ab) * torch.tensor(mu) + math.sqrt(1 - ab) * eps
    diff = (den.eps(x_t, float(ab)) - eps).numpy()
    se = diff.std(0, ddof=1) / math.sqrt(diff.shape[0])
    S_t = ab * S + (1 - ab) * np.eye(2)
    expected = np.sqrt(ab * (1 - ab)) * np.linalg.solve(S_t, mu - m)
    assert np.all(np.abs(diff.mean(0) - expected) <= 4 * se), (diff.mean(0), expected, se)


def test_effective_precision_and_fixed_point_closed_form():
    """Library P_eff (eigen route) and mu* against an explicit numpy loop over t = 1..T: two exact routes, 1e-12.
    Also: the expected gradient (data + sum_t lam_t E[eps_hat - eps] / T) vanishes at mu*."""
    m, S, A, sigma, y = _g2()
    prob, sched = problem("G2"), dpt.linear_schedule()
    P_np, mu_np = _np_fixed_point(m, S, A, sigma, y, LAM)
    np.testing.assert_allclose(red_diff_effective_precision(prob.prior, LAM, sched).numpy(), P_np, atol=1e-12)
    np.testing.assert_allclose(red_diff_fixed_point(prob, measurement("G2"), LAM, sched).numpy(), mu_np, atol=1e-12)
    expected_grad = A.T @ (A @ mu_np - y) / sigma**2
    for ab in _np_alpha_bars():
        S_t = ab * S + (1 - ab) * np.eye(2)
        lam_t = LAM * np.sqrt((1 - ab) / ab)
        expected_grad += lam_t * np.sqrt(ab * (1 - ab)) * np.linalg.solve(S_t, mu_np - m) / T
    assert np.abs(expected_grad).max() < 1e-10  # float64 sum of 1000 O(1) terms
    # obs_weight w: the posterior mean with noise variance sigma^2 / w
    _, mu_w = _np_fixed_point(m, S, A, sigma, y, LAM, w=0.18)
    np.testing.assert_allclose(
        red_diff_fixed_point(prob, measurement("G2"), LAM, sched, obs_weight=0.18).numpy(), mu_w, atol=1e-12
    )


def test_fixed_point_is_not_the_map_on_g2():
    """docs/theory §7.2 / claim 17: on G2 with lam = 0.25 the fixed point is (0.688, 0.012) against the MAP (0.644,
    0.065) and P_eff has eigenvalues (0.17, 0.20) against S^-1's (0.66, 3.43); docs/theory rounds to 2-3 decimals.
    Reproduced with the 1/(2 sigma^2) likelihood (the official mean reductions give (0.667, 0.0005) instead)."""
    prob, y, sched = problem("G2"), measurement("G2"), dpt.linear_schedule()
    fp = red_diff_fixed_point(prob, y, LAM, sched)
    np.testing.assert_allclose(fp.numpy(), [0.688, 0.012], atol=5e-4)
    np.testing.assert_allclose(prob.map(y).numpy(), [0.644, 0.065], atol=5e-4)
    evals = torch.linalg.eigvalsh(red_diff_effective_precision(prob.prior, LAM, sched)).numpy()
    np.testing.assert_allclose(evals, [0.17, 0.20], atol=5e-3)
    assert float((fp - prob.map(y)).norm()) > 0.05


def test_sgd_with_uniform_t_converges_in_mean_to_the_fixed_point(gen):
    """Plain SGD with t ~ U{1..T}: the expected update is affine with a zero at mu*, so the stationary mean of the
    iterates is mu* exactly. 100 particles, lr 0.1 (stable: lr ||H|| <= 1.42 < 2), 500 burn-in steps (the
    slowest mode contracts by (1 - lr h_min)^500 ~ 1e-4 of an O(0.3) start), then the time average over
    3000 steps with a batch-means standard error (10 blocks of 300 steps, ~5 correlation times each); the t
    draws are shared by the particles, so the blocks, not the particles, are the independent units. 4 SE."""
    prob, y, sched = problem("G2"), measurement("G2"), dpt.linear_schedule()
    fp = red_diff_fixed_point(prob, y, LAM, sched)
    means = []
    x = prob.operator.pinv(y).expand(100, 2).clone()
    red_diff(
        dpt.ExactDenoiser(prob.prior),
        x,
        sched,
        operator=prob.operator,
        y=y,
        sigma_y=prob.sigma_y,
        lr=0.1,
        steps=3500,
        t_order="random",
        optimizer="sgd",
        generator=gen,
        callback=lambda i, t, mu, _: means.append(mu.mean(0)),
    )
    blocks = torch.stack(means[500:]).reshape(10, 300, 2).mean(1)
    est, se = blocks.mean(0), blocks.std(0) / math.sqrt(10)
    assert bool(((est - fp).abs() <= 4 * se).all()), (est, fp, se)
    assert float((est - prob.map(y)).norm()) > 100 * float(se.max())  # and it is measurably not the MAP


# ---------------------------------------------------------------------------------------------- solve, shapes
def test_solve_runs_red_diff_from_the_pseudo_inverse(gen):
    """dpt.solve wires red-diff with x = A^+ y; the official Adam run ends near the fixed point / MAP (report-level
    check: within 0.5 of the MAP for every particle, a loose sanity bound, not a theory claim)."""
    prob, y = problem("G2"), measurement("G2")
    out = dpt.solve(prob, y, "red-diff", n_samples=16, generator=gen, steps=200)
    assert out.shape == (16, 2) and bool(torch.isfinite(out).all())
    assert float((out - prob.map(y)).norm(dim=1).max()) < 0.5


def test_runs_on_float32_images_like_on_vectors():
    """The same code on (n, c, h, w) float32 images and on (n, d) float32 vectors: same noise stream (same numel,
    dtype and generator), same iterates up to float32 round-off in reductions (1e-5)."""
    g = torch.Generator().manual_seed(0)
    B = torch.randn(16, 16, generator=g, dtype=torch.float64)
    prior = dpt.Gaussian(torch.zeros(16, dtype=torch.float32), (B @ B.T / 16 + 0.1 * torch.eye(16)).float())
    mask = torch.rand(4, 4, generator=g) < 0.5
    op = MaskImage(mask)
    y = torch.randn(3, int(mask.sum()), generator=g, dtype=torch.float32)
    x_img = op.A_adjoint(y)
    kw = dict(y=y, sigma_y=0.2, steps=50)
    img = red_diff(
        GaussianImageDenoiser.of_gaussian(prior, (1, 4, 4)),
        x_img,
        dpt.linear_schedule(),
        operator=op,
        generator=torch.Generator().manual_seed(1),
        **kw,
    )
    assert img.shape == (3, 1, 4, 4) and img.dtype == torch.float32
    flat_op = dpt.MatrixOperator(torch.eye(16)[mask.reshape(-1)])
    vec = red_diff(
        dpt.ExactDenoiser(prior),
        x_img.reshape(3, 16),
        dpt.linear_schedule(),
        operator=flat_op,
        generator=torch.Generator().manual_seed(1),
        **kw,
    )
    np.testing.assert_allclose(img.reshape(3, 16).numpy(), vec.numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------- knobs
@pytest.mark.parametrize(
    ("knobs", "match"),
    [
        (dict(sigma_y=0.0), "sigma_y > 0"),
        (dict(lam=-0.1), "lam must be"),
        (dict(obs_weight=float("nan")), "obs_weight must be"),
        (dict(lr=0.0), "lr must be"),
        (dict(betas=(0.9, 1.0)), "betas must be"),
        (dict(betas=0.9), "betas must be"),
        (dict(t_order="ascending"), "t_order must be"),
        (dict(optimizer="adamw"), "optimizer must be"),
        (dict(steps=0), "steps must be"),
        (dict(steps=2.5, t_order="random"), "steps must be"),
        (dict(steps=T + 1), "steps must be"),
    ],
)
def test_bad_knobs_raise(knobs, match):
    prob, y = problem("G2"), measurement("G2")
    args = dict(operator=prob.operator, y=y, sigma_y=prob.sigma_y) | knobs
    with pytest.raises(ValueError, match=match):
        red_diff(dpt.ExactDenoiser(prob.prior), torch.zeros(1, 2), dpt.linear_schedule(), **args)


def test_fixed_point_needs_a_gaussian_prior():
    with pytest.raises(TypeError, match="Gaussian prior"):
        red_diff_fixed_point(problem("B1_s05"), measurement("B1_s05"), LAM, dpt.linear_schedule())
