"""Exact image-scale laws in DFT blocks (dptheory.images.spectral_laws) against the dense laws and Monte Carlo.

Oracles: the dense linear-Gaussian machinery (``dpt.sampler_law``, ``gaussian_w2``, ``gaussian_kl``) on the same
problem written as ``d x d`` matrices (8 x 8 grey images, d = 64), and Monte Carlo runs of the actual samplers
(``solve_image`` with the exact spectral denoiser) with stated standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch

import dptheory as dpt
from dptheory.images.operators import Blur, Denoising, SuperResolution, gaussian_kernel
from dptheory.images.problem import ImageInverseProblem, solve_image
from dptheory.images.spectral import PowerLawSpectrum, SpectralDenoiser, SpectralGaussianPrior
from dptheory.images.spectral_laws import BlockSpectralProblem, exact_traversal
from dptheory.sampler_laws import sampler_law

H = W = 8
SIGMA = 0.1
OPERATORS = {
    "blur": lambda: Blur(gaussian_kernel(5, 1.0)),
    "sr2": lambda: SuperResolution(2),
    "sr4": lambda: SuperResolution(4),
    "denoise": lambda: Denoising(),
}


def _prior(size=H, channels=1):
    law = PowerLawSpectrum([0.05] * channels, [0.05] * channels, [2.5] * channels)
    return SpectralGaussianPrior([0.2] * channels, law, size=(size, size), mean_var=[0.3] * channels)


def _dense(prior, op):
    S = prior.cov_matrix()
    m = prior._mean.expand(prior.shape).reshape(-1)
    return dpt.LinearInverseProblem(dpt.Gaussian(m, S), op.matrix(prior.shape), SIGMA)


def _setting(name):
    prior, op = _prior(), OPERATORS[name]()
    bp = BlockSpectralProblem(prior, op, SIGMA)
    x = prior.sample(1, generator=torch.Generator().manual_seed(1))[0]
    y = op.A(x[None])[0] + SIGMA * torch.randn(bp.out_shape, generator=torch.Generator().manual_seed(2),
                                               dtype=torch.float64)
    return prior, op, bp, _dense(prior, op), y


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_posterior_and_curves_match_dense(name):
    prior, op, bp, prob, y = _setting(name)
    # exact identities in float64: 1e-10 relative leaves room for the d x d Cholesky/eigh round-off
    assert abs(bp.mmse_error() - float(prob.mmse_error())) <= 1e-10 * float(prob.mmse_error())
    assert float((bp.mmse(y).reshape(-1) - prob.mmse(y.reshape(-1))).abs().max()) <= 1e-10
    curve = dpt.optimal_dp_curve(prob)
    assert abs(math.sqrt(bp.mmse_w2_squared()) - curve.w) <= 1e-8 * curve.w  # Bures via two eigh: ~1e-9 relative


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("given_y", [True, False])
def test_vsrd_law_matches_dense_recursion(name, lam, given_y):
    prior, op, bp, prob, y = _setting(name)
    yv = y.reshape(-1) if given_y else None
    dense = sampler_law(prob, "vsrd", y=yv, lam=lam, steps=50)  # respaced: the closed form holds on any grid
    block = bp.vsrd_law(lam, y=y if given_y else None)
    target = prob.posterior(y.reshape(-1)) if given_y else prob.prior
    assert abs(block.mse() - float(dense.mse)) <= 1e-10 * float(dense.mse)
    # W2 near a singular law (lam = 0) loses half the digits in the dense sqrt: 1e-7 absolute
    assert abs(block.w2() - float(dpt.gaussian_w2(dense.law, target))) <= 1e-7


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("t0", [0, 20, 300])
@pytest.mark.parametrize("given_y", [True, False])
def test_map_rps_law_matches_dense_recursion(name, t0, given_y):
    prior, op, bp, prob, y = _setting(name)
    yv = y.reshape(-1) if given_y else None
    dense = sampler_law(prob, "map-rps", y=yv, t0=t0)  # stage 1: the same fixed point with the Bayes weight
    block = bp.map_rps_law(t0, y=y if given_y else None)
    target = prob.posterior(y.reshape(-1)) if given_y else prob.prior
    assert abs(block.mse() - float(dense.mse)) <= 1e-10 * float(dense.mse)
    assert abs(block.w2() - float(dpt.gaussian_w2(dense.law, target))) <= 1e-7
    if t0 > 0:  # KL needs a non-singular estimate law
        for direction, (p, q) in {"target||estimate": (target, dense.law),
                                  "estimate||target": (dense.law, target)}.items():
            ref = float(dpt.gaussian_kl(p, q))
            assert abs(block.kl(direction) - ref) <= 1e-8 * max(1.0, ref)


def test_kl_is_infinite_only_at_singular_laws():
    _, _, bp, prob, y = _setting("blur")
    assert bp.map_rps_law(0, y=y).kl() == math.inf  # a point mass
    # VSRD at lam = 0 from N(0, I) keeps the O(alpha_bar_T) covariance G G^T: huge but finite, as the dense KL
    dense = sampler_law(prob, "vsrd", y=y.reshape(-1), lam=0.0, steps=50)
    ref = float(dpt.gaussian_kl(prob.posterior(y.reshape(-1)), dense.law))
    assert math.isfinite(bp.vsrd_law(0.0, y=y).kl()) and ref > 1e5
    assert abs(bp.vsrd_law(0.0, y=y).kl() - ref) <= 1e-6 * ref


def test_vsrd_monte_carlo_matches_exact_law():
    """The actual sampler (exact kernel, 50 steps) against the exact law at 16 x 16 RGB, blur: per-measurement
    MSE within 4 SE (failure rate ~6e-5 per comparison)."""
    prior = _prior(16, 3)
    op = Blur(gaussian_kernel(5, 1.0))
    bp = BlockSpectralProblem(prior, op, SIGMA)
    x = prior.sample(1, generator=torch.Generator().manual_seed(3))[0]
    y = op.A(x[None])[0] + SIGMA * torch.randn(bp.out_shape, generator=torch.Generator().manual_seed(4),
                                               dtype=torch.float64)
    mu = bp.mmse(y)
    problem = ImageInverseProblem(op, SIGMA)
    for lam in (0.25, 1.0):
        exact = bp.vsrd_law(lam, y=y).mse()
        out = solve_image(problem, y[None], "vsrd", SpectralDenoiser(prior), n_samples=400,
                          generator=torch.Generator().manual_seed(5), lam=lam, steps=50).x
        dev = (out - mu).square().flatten(1).sum(1) + bp.mmse_error()
        se = float(dev.std() / math.sqrt(dev.numel()))
        assert abs(float(dev.mean()) - exact) <= 4 * se, (lam, float(dev.mean()), exact, se)


def test_traversal_is_monotone_and_ends_on_the_curves():
    _, _, bp, _, y = _setting("sr2")
    res = exact_traversal(bp, y, lams=(0.0, 0.5, 1.0), t0s=(0, 20, 100, 1000))
    rows = res["map_rps"]
    D = [r["per_measurement"]["distortion"] for r in rows]
    assert D == sorted(D)
    dstar = res["curves"]["per_measurement"]["D_star"]
    # t0 = T is posterior sampling up to the O(alpha_bar_T^2) = 2e-9 trace of the re-noised start's residual
    assert abs(rows[-1]["per_measurement"]["gap"]) <= 1e-6 * dstar
    assert all(r["per_measurement"]["gap"] > 0 for r in rows[1:-1])
    # VSRD with the exact kernel is on the per-measurement curve up to its O(alpha_bar_T) start residual, which
    # the steep end of the curve (P ~ 0 at lam = 1) magnifies to ~3e-5 D*: bound 1e-4 D*
    assert all(abs(r["per_measurement"]["gap"]) <= 1e-4 * dstar for r in res["vsrd"])
    # posterior sampling: D_y = 2 D*_y and, jointly, MSE = 2 D* (Blau-Michaeli)
    assert abs(res["posterior"]["per_measurement"]["distortion"] - 2 * dstar) <= 1e-12
    assert abs(res["posterior"]["joint"]["distortion"] - 2 * dstar) <= 1e-10


def test_float32_path_agrees_with_float64():
    """The spectral denoiser and posterior mean in float32 at 256 x 256 x 3 against float64: relative error
    <= 1e-5 (float32 eps 6e-8 times the FFT's O(log2 n) = 16 rounding stages, with a 10x margin)."""
    prior = _prior(256, 3)
    x = prior.sample(1, generator=torch.Generator().manual_seed(0))
    den = SpectralDenoiser(prior)
    for ab in (0.9, 0.1):
        ref = den(x, ab)
        got = den(x.float(), ab)
        assert got.dtype == torch.float32
        assert float((got.double() - ref).norm() / ref.norm()) <= 1e-5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigma_y=0.0), "sigma_y must be > 0"),
        (dict(sigma_y=-1.0), "sigma_y"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlockSpectralProblem(_prior(), Denoising(), **kwargs)


def test_bad_knobs_and_shapes():
    _, _, bp, _, y = _setting("sr4")
    with pytest.raises(ValueError, match="lam must be in"):
        bp.vsrd_law(1.5)
    with pytest.raises(ValueError, match="t0 must be an integer step"):
        bp.map_rps_law(2.5)
    with pytest.raises(ValueError, match="y must have shape"):
        bp.map_rps_law(10, y=torch.zeros(1, 8, 8))
    with pytest.raises(TypeError, match="SpectralGaussian"):
        BlockSpectralProblem(object(), Denoising(), 0.1)
    with pytest.raises(ValueError, match="forms"):
        exact_traversal(bp, y, forms=("bogus",))
