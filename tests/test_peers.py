"""DDRM, DiffPIR, PiGDM and DAPS: transcriptions of the published update rules, exact laws against Monte Carlo,
the spectral filters of the image operators, the photo UNet, and knob validation.

Oracles:

- numpy transcriptions of each paper's update rule written in the explicit SVD basis (DDRM, as the official
  ``efficient_generalized_steps`` writes it per case), with a dense linear solve (DiffPIR's data step), with the
  explicit Jacobian ``K`` and ``(r^2 A A^T + s^2 I)^{-1}`` (PiGDM), and with plain loops (DAPS), fed the same
  noise (drawn from a generator with the same seed, in the same order) -> agreement to 1e-10 (round-off of ~20
  steps of O(1) values);
- :func:`dptheory.sampler_law` against Monte Carlo of the sampler (mean |z| <= 4.5 and covariance |z| <= 5 with
  the delta-method SE; ~60 simultaneous comparisons, false-alarm rate < 1e-3);
- dense ``V diag(g(s)) V^T`` from ``operator.matrix`` against the matrix-free spectral filters (1e-10).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tables import measurement, problem

import dptheory as dpt
from dptheory.claims._util import cov_z_scores, mean_z_scores
from dptheory.samplers import daps, ddrm, diffpir, pigdm
from dptheory.samplers._svd import Spectrum

F64 = torch.float64
SCHED = dpt.linear_schedule(200)


def _gauss_problem(sigma_y=0.3):
    """d = 3, m = 2 (a null direction), singular values 1.18 and 0.80: DDRM's three cases all occur."""
    S = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]], dtype=F64)
    prior = dpt.Gaussian(torch.tensor([0.2, -0.1, 0.3], dtype=F64), S)
    A = torch.tensor([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5]], dtype=F64)
    return dpt.LinearInverseProblem(prior, A, sigma_y), torch.tensor([0.5, -0.2], dtype=F64)


def _mixture_problem():
    prior = dpt.GaussianMixture([0.4, 0.6], [[-1.0, 0.5, 0.0], [1.0, 0.0, -0.5]],
                                torch.stack([torch.eye(3, dtype=F64) * 0.3,
                                             torch.diag(torch.tensor([0.5, 0.2, 0.4], dtype=F64))]))
    A = torch.tensor([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5]], dtype=F64)
    return dpt.LinearInverseProblem(prior, A, 0.2), torch.tensor([0.4, 0.1], dtype=F64)


def _np_den(den):
    return lambda x, ab: den(torch.as_tensor(x), ab).detach().numpy()


def _noise(g, n, d):
    return torch.randn((n, d), generator=g, dtype=F64).numpy()


def _ab(t):
    return float(SCHED.alpha_bar(t))


# ---------------------------------------------------------------------------------------------- transcriptions
def _ddrm_np(den, x, A, y, s0, eta, eta_b, grid, g):
    """Kawar et al. 2022 eqs. (7)-(8), per singular direction, as the official code writes the three cases."""
    n, d = x.shape
    U, s, Vh = np.linalg.svd(A, full_matrices=True)
    V = Vh.T
    sv = np.zeros(d)
    sv[: s.size] = s
    uty = np.zeros(d)
    uty[: s.size] = U.T @ y
    ybar = np.where(sv > 0, uty / np.where(sv > 0, sv, 1), 0.0)
    ab = _ab(grid[0])
    sig = math.sqrt((1 - ab) / ab)
    zb = x @ V
    big = (sv > 0) & (sv * sig > s0)
    xb = np.where(big, ybar + np.sqrt(np.clip(sig**2 - s0**2 / np.where(sv > 0, sv, 1) ** 2, 0, None)) * zb,
                  sig * zb)
    x = math.sqrt(ab) * xb @ V.T
    for t, s_ in zip(grid[:-1], grid[1:], strict=True):
        ab_t, ab_s = _ab(t), _ab(s_)
        sig_s = math.sqrt((1 - ab_s) / ab_s)
        x0 = den(x, ab_t)
        et = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
        vx0, vet = x0 @ V, et @ V
        zb = _noise(g, n, d) @ V if sig_s > 0 else np.zeros((n, d))
        new = vx0 + math.sqrt(sig_s**2 - (eta * sig_s) ** 2) * vet + eta * sig_s * zb
        for i in range(d):
            if sv[i] > 0 and sv[i] * sig_s < s0:
                new[:, i] = vx0[:, i] + math.sqrt(1 - eta**2) * sig_s * (uty[i] - sv[i] * vx0[:, i]) / s0 \
                    + eta * sig_s * zb[:, i]
            elif sv[i] > 0 and sv[i] * sig_s > s0:
                new[:, i] = ybar[i] * eta_b + (1 - eta_b) * vx0[:, i] \
                    + math.sqrt(sig_s**2 - s0**2 / sv[i] ** 2 * eta_b**2) * zb[:, i]
        x = math.sqrt(ab_s) * new @ V.T
    return x


def _diffpir_np(den, x, A, y, s0, lam, zeta, grid, g):
    """Zhu et al. 2023 Algorithm 1 with the data step as a dense solve."""
    n, d = x.shape
    for t, s_ in zip(grid[:-1], grid[1:], strict=True):
        ab_t, ab_s = _ab(t), _ab(s_)
        x0 = den(x, ab_t)
        rho = lam * s0**2 * ab_t / (1 - ab_t)
        x0h = np.linalg.solve(A.T @ A + rho * np.eye(d), (A.T @ y)[:, None] + rho * x0.T).T
        eps = (x - math.sqrt(ab_t) * x0h) / math.sqrt(1 - ab_t)
        x = math.sqrt(ab_s) * x0h + math.sqrt(1 - ab_s) * math.sqrt(1 - zeta) * eps
        if ab_s < 1 and zeta > 0:
            x = x + math.sqrt(1 - ab_s) * math.sqrt(zeta) * _noise(g, n, d)
    return x


def _pigdm_np(m, S, x, A, y, s0, eta, w, grid, g):
    """Song et al. 2023 eqs. (7)-(8) + DDIM, Gaussian prior N(m, S): x0_hat = m + K (x - sqrt(ab) m)."""
    n, d = x.shape
    ab = _ab(grid[0])
    x = math.sqrt(ab) * (np.linalg.pinv(A) @ y) + math.sqrt(1 - ab) * x
    for t, s_ in zip(grid[:-1], grid[1:], strict=True):
        ab_t, ab_s = _ab(t), _ab(s_)
        K = math.sqrt(ab_t) * S @ np.linalg.inv(ab_t * S + (1 - ab_t) * np.eye(d))
        x0 = m + (x - math.sqrt(ab_t) * m) @ K.T
        r2 = 1 - ab_t
        M = np.linalg.inv(r2 * A @ A.T + s0**2 * np.eye(A.shape[0]))
        grad = (y - x0 @ A.T) @ M.T @ A @ K  # rows: K^T A^T M (y - A x0)
        x0y = x0 + w * (1 - ab_t) / math.sqrt(ab_t) * grad
        beta_t = 1 - ab_t / ab_s
        bt = (1 - ab_s) / (1 - ab_t) * beta_t
        c2 = eta**2 * bt
        eps = (x - math.sqrt(ab_t) * x0y) / math.sqrt(1 - ab_t)
        x = math.sqrt(ab_s) * x0y + math.sqrt(max(1 - ab_s - c2, 0)) * eps
        if c2 > 0:
            x = x + math.sqrt(c2) * _noise(g, n, d)
    return x


def _daps_np(den, x, A, y, tau, grid, ode, nl, lr, lr_min, g):
    """Zhang et al. 2025 Algorithm 1 (r_t = sigma_t), the official linear lr decay."""
    n, d = x.shape
    levels = len(grid) - 1
    for i, (t, s_) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        ab_t, ab_s = _ab(t), _ab(s_)
        sub = SCHED.timesteps(min(ode, t), t)
        xo = x
        for u, v in zip(sub[:-1], sub[1:], strict=True):
            x0 = den(xo, _ab(u))
            xo = math.sqrt(_ab(v)) * x0 + math.sqrt(1 - _ab(v)) * (xo - math.sqrt(_ab(u)) * x0) / math.sqrt(1 - _ab(u))
        x0h, z = xo, xo
        r2 = (1 - ab_t) / ab_t
        step = lr * (1 + i / levels * (lr_min - 1))
        for _ in range(nl):
            grad = (x0h - z) / r2 - (z @ A.T - y) @ A / tau**2
            z = z + step * grad + math.sqrt(2 * step) * _noise(g, n, d)
        x = z if ab_s == 1 else math.sqrt(ab_s) * z + math.sqrt(1 - ab_s) * _noise(g, n, d)
    return x


@pytest.mark.parametrize("kind", ["gauss", "mixture"])
@pytest.mark.parametrize("method", ["ddrm", "diffpir", "daps"])
def test_samplers_match_transcriptions_of_the_papers(method, kind):
    prob, y = _gauss_problem() if kind == "gauss" else _mixture_problem()
    den = dpt.ExactDenoiser(prob.prior)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    A, yn, s0 = prob.A.numpy(), y.numpy(), prob.sigma_y
    if method == "ddrm":
        knobs = dict(steps=20, eta=0.7, eta_b=0.8)
        ours = ddrm(den, x, SCHED, operator=prob.operator, y=y, sigma_y=s0,
                    generator=torch.Generator().manual_seed(9), **knobs)
        ref = _ddrm_np(_np_den(den), x.numpy(), A, yn, s0, 0.7, 0.8, SCHED.timesteps(20),
                       torch.Generator().manual_seed(9))
    elif method == "diffpir":
        ours = diffpir(den, x, SCHED, operator=prob.operator, y=y, sigma_y=s0, steps=20, lam=1.7, zeta=0.4,
                       generator=torch.Generator().manual_seed(9))
        ref = _diffpir_np(_np_den(den), x.numpy(), A, yn, s0, 1.7, 0.4, SCHED.timesteps(20),
                          torch.Generator().manual_seed(9))
    else:
        ours = daps(den, x, SCHED, operator=prob.operator, y=y, sigma_y=s0, steps=6, ode_steps=3, langevin_steps=4,
                    lr=1e-2, generator=torch.Generator().manual_seed(9))
        ref = _daps_np(_np_den(den), x.numpy(), A, yn, s0, SCHED.timesteps(6), 3, 4, 1e-2, 0.01,
                       torch.Generator().manual_seed(9))
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-10)


def test_pigdm_matches_a_transcription_with_the_explicit_jacobian():
    prob, y = _gauss_problem()
    den = dpt.ExactDenoiser(prob.prior)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    ours = pigdm(den, x, SCHED, operator=prob.operator, y=y, sigma_y=0.3, steps=15, eta=0.6, weight=0.8,
                 guidance="bayes", generator=torch.Generator().manual_seed(8))
    ref = _pigdm_np(prob.prior.mean.numpy(), prob.prior.cov.numpy(), x.numpy(), prob.A.numpy(), y.numpy(), 0.3, 0.6,
                    0.8, SCHED.timesteps(15), torch.Generator().manual_seed(8))
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------------- exact laws
LAW_CASES = [
    ("ddrm", dict(steps=20)),
    ("ddrm", dict(steps=20, eta=0.3, eta_b=0.6)),
    ("diffpir", dict(steps=20, lam=2.0)),
    ("pigdm", dict(steps=20, eta=0.5)),
    ("pigdm", dict(steps=20, guidance="bayes", weight=0.7)),
    ("daps", dict(steps=8, ode_steps=3, langevin_steps=15, lr=2e-2, r="pigdm")),
]


@pytest.mark.parametrize(("method", "knobs"), LAW_CASES)
def test_sampler_law_matches_monte_carlo(method, knobs):
    prob, y = _gauss_problem()
    law = dpt.sampler_law(prob, method, y=y, schedule=SCHED, **knobs).law
    n = 20_000
    x = dpt.solve(prob, y, method, n_samples=n, schedule=SCHED, generator=torch.Generator().manual_seed(11),
                  **knobs)
    assert float(mean_z_scores(x, law.mean, law.cov).abs().max()) <= 4.5
    assert float(cov_z_scores(x, law.mean, law.cov).abs().max()) <= 5.0


def test_joint_law_over_y_matches_monte_carlo():
    """One reconstruction per measurement y ~ p(y): the joint law of (X, X^) from the augmented recursion."""
    prob, _ = _gauss_problem()
    n = 20_000
    g = torch.Generator().manual_seed(12)
    xs, ys = prob.sample_joint(n, generator=g)
    xh = dpt.solve(prob, ys, "diffpir", schedule=SCHED, generator=g, steps=10, zeta=0.5)
    out = dpt.sampler_law(prob, "diffpir", schedule=SCHED, steps=10, zeta=0.5)
    assert float(mean_z_scores(xh, out.law.mean, out.law.cov).abs().max()) <= 4.5
    assert float(cov_z_scores(xh, out.law.mean, out.law.cov).abs().max()) <= 5.0
    mse = (xs - xh).square().sum(1)
    assert abs(float(mse.mean()) - float(out.mse)) <= 4.5 * float(mse.std()) / math.sqrt(n)


def test_default_steps_of_the_law_are_the_samplers():
    prob, y = _gauss_problem()
    a = dpt.sampler_law(prob, "diffpir", y=y, schedule=SCHED).law
    b = dpt.sampler_law(prob, "diffpir", y=y, schedule=SCHED, steps=100).law
    torch.testing.assert_close(a.cov, b.cov, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- image operators
def _image_ops():
    from dptheory.images.operators import (
        Blur,
        CompressedSensing,
        Denoising,
        Inpainting,
        SuperResolution,
        gaussian_kernel,
        random_mask,
    )

    g = torch.Generator().manual_seed(0)
    shape = (2, 4, 4)
    return shape, {
        "inpaint": Inpainting(random_mask(shape, 0.5, g)),
        "sr2": SuperResolution(2),
        "blur": Blur(gaussian_kernel(3, 1.0), tol=0.05),
        "cs": CompressedSensing(0.4, shape, g),
        "denoise": Denoising(),
    }


@pytest.mark.parametrize("name", ["inpaint", "sr2", "blur", "cs", "denoise"])
def test_spectral_filters_of_image_operators_match_the_dense_svd(name):
    shape, ops = _image_ops()
    op = ops[name]
    M = op.matrix(shape)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    spec = Spectrum(op, x)
    U, s, Vh = torch.linalg.svd(M, full_matrices=True)
    sv = torch.zeros(M.shape[1], dtype=F64)
    sv[: s.numel()] = torch.where(s > 1e-10, s, torch.zeros_like(s))  # round-off singular values are 0
    if name == "blur":  # the spectrum keeps |H| > tol max|H| only, as Blur.pinv does
        sv = torch.where(sv > op.tol * sv.max(), sv, torch.zeros_like(sv))

    def g(v):
        return torch.where(v > 0, 1.0 / (v**2 + 0.3), torch.full_like(v, 2.0)) + v

    dense = ((x.reshape(3, -1) @ Vh.T) * g(sv)) @ Vh
    np.testing.assert_allclose(spec.filter(g, x).reshape(3, -1).numpy(), dense.numpy(), rtol=0, atol=1e-10)
    y = op.A(x)
    np.testing.assert_allclose(spec.pinv(y).numpy(), op.pinv(y).numpy(), rtol=0, atol=1e-10)


def test_operator_without_svd_is_rejected_by_name():
    class Opaque(dpt.LinearOperator):
        def A(self, x):
            return x

        def A_adjoint(self, y):
            return y

    with pytest.raises(TypeError, match="Opaque has no SVD"):
        Spectrum(Opaque(), torch.zeros(1, 2, 4, 4))


# ---------------------------------------------------------------------------------------------- networks
@pytest.mark.parametrize(("method", "knobs", "nfe"), [
    ("ddrm", dict(steps=4), 4),
    ("diffpir", dict(steps=4), 4),
    ("pigdm", dict(steps=4), 4),
    ("daps", dict(steps=2, ode_steps=2, langevin_steps=5), 4),
])
def test_new_samplers_run_on_the_photo_unet(method, knobs, nfe):
    from dptheory.images.backbones import load_backbone
    from dptheory.images.data import load_image
    from dptheory.images.operators import make_task
    from dptheory.images.problem import ImageInverseProblem, solve_image

    bb = load_backbone("photo-unet")
    x = load_image("skimage:astronaut", 32)
    op, sigma_y = make_task("sr4", tuple(x.shape[1:]))
    prob = ImageInverseProblem(op, sigma_y)
    g = torch.Generator().manual_seed(0)
    y = prob.measure(x, g)
    levels = []

    def recorded(x_t, ab):  # the noise levels asked for; the net runs twice where the two experts are mixed
        levels.append(ab)
        return bb.denoiser(x_t, ab)

    recorded.network_passes, recorded.data_range = bb.denoiser.network_passes, bb.denoiser.data_range
    sol = solve_image(prob, y, method, recorded, schedule=bb.schedule, generator=g, **knobs)
    assert sol.x.shape == x.shape and sol.x.dtype == torch.float32 and bool(torch.isfinite(sol.x).all())
    assert len(levels) == nfe and sol.nfe == sum(bb.denoiser.network_passes(ab) for ab in levels)


# ---------------------------------------------------------------------------------------------- knobs
@pytest.mark.parametrize(("method", "knobs", "match"), [
    ("ddrm", dict(eta=1.5), "eta must be a number in"),
    ("ddrm", dict(eta_b=-0.1), "eta_b must be a number in"),
    ("ddrm", dict(init="x"), "init must be"),
    ("diffpir", dict(lam=0.0), "lam must be a finite number > 0"),
    ("diffpir", dict(zeta=2.0), "zeta must be a number in"),
    ("pigdm", dict(weight=-1.0), "weight must be"),
    ("pigdm", dict(eta=float("nan")), "eta must be"),
    ("pigdm", dict(guidance="x"), "guidance must be"),
    ("daps", dict(lr=0.0), "lr must be"),
    ("daps", dict(lr_min_ratio=0.0), "lr_min_ratio must"),
    ("daps", dict(r="x"), "r must be"),
    ("daps", dict(tau=-1.0), "tau must be"),
])
def test_bad_knobs_name_the_knob_and_range(method, knobs, match):
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(ValueError, match=match):
        dpt.solve(prob, y, method, n_samples=2, steps=3, **knobs)
    if method != "daps" or "tau" not in knobs:
        with pytest.raises(ValueError, match=match):
            dpt.sampler_law(prob, method, y=y, steps=3, **knobs)


def test_daps_needs_positive_noise_or_tau():
    prob = dpt.LinearInverseProblem(dpt.Gaussian([0.0], [[1.0]]), [[1.0]], 0.0)
    with pytest.raises(ValueError, match="sigma_y > 0 or an explicit tau"):
        dpt.solve(prob, [0.5], "daps", steps=2)
    x = dpt.solve(prob, [0.5], "daps", steps=2, tau=0.1, langevin_steps=2, lr=1e-3)
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("method", ["ddrm", "diffpir", "pigdm", "daps"])
def test_restore_cli_runs_the_new_samplers(method, tmp_path, capsys):
    """``dptheory restore --method ...`` on the exact Gaussian image prior (tiny): runs, reports, beats nothing
    silently (finite output and the NFE of its grid)."""
    import json

    from dptheory.cli import restore_main as main

    out = tmp_path / "out"
    code = main(["--task", "sr4", "--method", method, "--steps", "4", "--out", str(out), "--backbone", "gaussian",
                 "--size", "12", "--n-crops", "24", "--no-progress", "--json"])
    assert code == 0
    report = json.loads((out / "restore.json").read_text())
    assert report["method"] == method and math.isfinite(report["psnr"])
    assert report["nfe"] == (4 * 5 if method == "daps" else 4)  # DAPS: ode_steps = 5 calls per level


@pytest.mark.parametrize(("method", "knobs"), [
    ("ddrm", dict(steps=10)),
    ("diffpir", dict(steps=10)),
    ("pigdm", dict(steps=10)),
    ("daps", dict(steps=5, ode_steps=2, langevin_steps=5, lr=1e-2)),
])
def test_network_path_equals_the_exact_path(method, knobs):
    """A network that is secretly the exact Gaussian eps (tests/test_denoisers.py), on its own grid: the adapter is
    exact, so ``solve(..., denoiser=network)`` equals the exact path to round-off (PiGDM: autograd through it)."""
    from test_denoisers import _SecretlyExactNet

    sched = dpt.linear_schedule(100)
    prob, y = problem("G2"), measurement("G2")
    net = dpt.NetworkDenoiser(_SecretlyExactNet(sched, "eps"), sched, prediction="eps")
    kw = dict(n_samples=8, schedule=sched, **knobs)
    a = dpt.solve(prob, y, method, generator=torch.Generator().manual_seed(5), denoiser=net, **kw)
    b = dpt.solve(prob, y, method, generator=torch.Generator().manual_seed(5), **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("op_name", ["blur", "sr2", "inpaint"])
@pytest.mark.parametrize("method", ["ddrm", "diffpir", "pigdm"])
def test_image_path_equals_the_vector_path(method, op_name):
    """The same Gaussian prior and operator as images (matrix-free spectral filters: DFT, projections) and as
    vectors (dense SVD), fed the same noise (the draws have the same count and order): equal to round-off."""
    from dptheory.images.operators import Blur, gaussian_kernel
    from dptheory.images.problem import GaussianImageDenoiser, ImageInverseProblem, solve_image

    shape, ops = _image_ops()
    # the blur without its pinv cut-off (tol = 0): the dense SVD of the vector path keeps every |H| > 0 too
    op = Blur(gaussian_kernel(3, 1.0), tol=0.0) if op_name == "blur" else ops[op_name]
    d = math.prod(shape)
    g = torch.Generator().manual_seed(2)
    L = torch.randn(d, d, generator=g, dtype=F64) / math.sqrt(d)
    S = L @ L.T + 0.1 * torch.eye(d, dtype=F64)
    m = 0.1 * torch.randn(d, generator=g, dtype=F64)
    x = (m + torch.linalg.cholesky(S) @ torch.randn(d, generator=g, dtype=F64)).reshape(1, *shape)
    prob_img = ImageInverseProblem(op, 0.1)
    y = prob_img.measure(x, g)
    M = op.matrix(shape)
    prob_vec = dpt.LinearInverseProblem(dpt.Gaussian(m, S), M, 0.1)
    kw = dict(steps=8, n_samples=3)
    a = solve_image(prob_img, y, method, GaussianImageDenoiser(m.reshape(shape), S), schedule=SCHED,
                    generator=torch.Generator().manual_seed(4), **kw).x
    b = dpt.solve(prob_vec, y.reshape(-1), method, schedule=SCHED, generator=torch.Generator().manual_seed(4), **kw)
    torch.testing.assert_close(a.reshape(3, -1), b, rtol=0, atol=1e-9)
