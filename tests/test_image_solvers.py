"""``solve_image``: every sampler runs unchanged on image batches ``(n, c, h, w)``, the exact cases match the exact
posterior mean, NFE is counted, and bad input gives clear errors.

Oracles: the exact posterior mean of the empirical mixture (``EmpiricalMixtureDenoiser.posterior_mean``, a
softmax-weighted average of its atoms) and of a Gaussian image prior (checked against the vector
``LinearInverseProblem`` in tests/test_restore.py); Monte Carlo comparisons use k = 5 standard errors per pixel
(192 pixels: false-alarm rate < 1e-4 per test).

Images are float32 (the image path's precision) although conftest sets float64 as the default dtype.
"""

from __future__ import annotations

import math

import pytest
import torch

from dptheory.denoisers import NetworkDenoiser
from dptheory.images.backbones import EmpiricalMixtureDenoiser
from dptheory.images.operators import make_task
from dptheory.images.problem import (
    CountingDenoiser,
    GaussianImageDenoiser,
    ImageInverseProblem,
    ImageSolution,
    solve_image,
)
from dptheory.schedules import VPSchedule, linear_schedule

F32 = torch.float32
SHAPE = (3, 8, 8)
SIGMA_Y = 0.3  # large enough that the empirical posterior spreads over several atoms (effective size > 3)

# cheap knobs per method (few steps); every method of dptheory.samplers.METHODS
FAST_KNOBS = {
    "posterior": dict(steps=5),
    "ddpm": dict(steps=5),
    "ddim": dict(steps=5),
    "dps": dict(steps=5, zeta=0.5),
    "vsrd": dict(steps=5, lam=0.5),
    "map-rps": dict(t0=5, iters=5),
    "red-diff": dict(steps=5),
    "vml-map": dict(steps=5, final_steps=3),
    "ddrm": dict(steps=5),
    "diffpir": dict(steps=5),
    "pigdm": dict(steps=5),
    "daps": dict(steps=3, ode_steps=2, langevin_steps=3, lr=1e-3),
}


def _smooth_images(n, generator):
    x = torch.rand(n, *SHAPE, generator=generator, dtype=F32) * 2 - 1
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


@pytest.fixture(scope="module")
def setup():
    """12 smooth 8x8 atoms, sr4 (2x2 measurement), y from a perturbed atom."""
    g = torch.Generator().manual_seed(7)
    atoms = _smooth_images(12, g)
    den = EmpiricalMixtureDenoiser(atoms)
    op, _ = make_task("sr4", SHAPE, g)
    prob = ImageInverseProblem(op, SIGMA_Y)
    x = atoms[:1] + 0.1 * torch.randn(1, *SHAPE, generator=g, dtype=F32)
    y = prob.measure(x, g)
    return den, prob, x, y


def _posterior_mean_sd(den, prob, y):
    """Exact per-pixel posterior mean and std of the empirical mixture (weights from ``condition``)."""
    w = den.condition(prob.operator, y, SIGMA_Y).weights.to(F32)
    atoms = den.images.reshape(den.N, -1)
    mean, second = w @ atoms, w @ atoms.square()
    pm = den.posterior_mean(prob.operator, y, SIGMA_Y).to(F32)
    torch.testing.assert_close(mean.reshape(SHAPE), pm)
    return pm, (second - mean.square()).clamp_min(0).sqrt().reshape(SHAPE)


def _tiny_schedule(T=50, ab_T=1e-12):
    """A VP grid ending at ``alpha_bar_T = 1e-12``, so ``x_T ~ N(0, I)`` is the diffused law to ~1e-6."""
    return VPSchedule.from_alpha_bars(torch.logspace(math.log10(0.999), math.log10(ab_T), T, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- every method
@pytest.mark.parametrize("method", sorted(FAST_KNOBS))
def test_every_method_runs_on_images(method, setup):
    den, prob, _, y = setup
    g = torch.Generator().manual_seed(1)
    sol = solve_image(prob, y, method, den, schedule=linear_schedule(), n_samples=3, generator=g,
                      **FAST_KNOBS[method])
    assert isinstance(sol, ImageSolution)
    assert sol.x.shape == (3, *SHAPE)
    assert sol.x.dtype == F32
    assert bool(torch.isfinite(sol.x).all())
    assert sol.nfe > 0 and sol.seconds > 0
    assert sol.exact_conditional == (method in ("posterior", "ddpm", "ddim", "vsrd", "map-rps"))


@pytest.mark.parametrize("method", ["ddpm", "ddim", "vsrd", "map-rps"])
def test_dps_guided_conditional_runs(method, setup):
    """``posterior_denoiser="dps"`` forces DPS guidance (the network path) even with an exact backbone."""
    den, prob, _, y = setup
    sol = solve_image(prob, y, method, den, n_samples=2, generator=torch.Generator().manual_seed(2),
                      posterior_denoiser="dps", zeta=0.1, **FAST_KNOBS[method])
    assert sol.x.shape == (2, *SHAPE) and sol.x.dtype == F32 and bool(torch.isfinite(sol.x).all())
    assert not sol.exact_conditional


def test_measure_and_pinv(setup):
    den, prob, x, y = setup
    assert y.shape == (1, 3, 2, 2) and y.dtype == F32
    noiseless = ImageInverseProblem(prob.operator, 0.0)
    assert torch.equal(noiseless.measure(x), prob.operator.A(x))
    assert prob.pinv(y).shape == (1, *SHAPE)
    torch.testing.assert_close(prob.operator.A(prob.pinv(y)), y, atol=1e-6, rtol=0)  # A A^+ = I (full row rank)


# ---------------------------------------------------------------------------------------------- exact cases
def test_posterior_sampler_mean_matches_exact_posterior_mean(setup):
    """The exact ancestral sampler with the mixture's exact conditional denoiser draws atoms from p(x0 | y):
    the mean of 400 draws is within 5 standard errors (exact posterior std / sqrt(n)) of posterior_mean."""
    den, prob, _, y = setup
    n = 400
    sol = solve_image(prob, y, "posterior", den, schedule=_tiny_schedule(), n_samples=n, steps=20,
                      generator=torch.Generator().manual_seed(3))
    pm, sd = _posterior_mean_sd(den, prob, y)
    se = sd / n**0.5
    assert bool((se > 1e-3).all())  # the posterior is spread: a real test
    assert float(((sol.x.mean(0) - pm).abs() / se).max()) < 5.0


def test_map_rps_stage2_posterior_mean_matches_exact(setup):
    """MAP-RPS with t0 = T re-noises the stage-1 point to x_T ~ N(0, I) (alpha_bar_T = 1e-12), so its exact
    stage 2 is the posterior sampler: same 5-SE check on 400 particles."""
    den, prob, _, y = setup
    n, sched = 400, _tiny_schedule()
    sol = solve_image(prob, y, "map-rps", den, schedule=sched, n_samples=n, t0=sched.T, iters=3,
                      generator=torch.Generator().manual_seed(4))
    assert sol.exact_conditional
    pm, sd = _posterior_mean_sd(den, prob, y)
    se = sd / n**0.5
    assert float(((sol.x.mean(0) - pm).abs() / se).max()) < 5.0
    assert sol.nfe == 3 + sched.T  # stage 1: one eps per iteration; stage 2: one exact draw per step


def test_vsrd_lam0_one_step_is_exact_posterior_mean(setup):
    """Deterministic exact case: vsrd(lam=0) from T to 0 in ONE step returns E[x0 | x_T, y], which equals
    E[x0 | y] up to the logit shift sqrt(ab_T) |<x_T, x_i>| / (1 - ab_T) <~ 1e-6 * 30 at ab_T = 1e-12."""
    den, prob, _, y = setup
    sol = solve_image(prob, y, "vsrd", den, schedule=_tiny_schedule(), n_samples=4, lam=0.0, steps=1,
                      generator=torch.Generator().manual_seed(5))
    pm = den.posterior_mean(prob.operator, y, SIGMA_Y).to(F32)
    torch.testing.assert_close(sol.x, pm.expand_as(sol.x), atol=1e-4, rtol=0)


def test_vsrd_lam0_gaussian_prior_ends_at_mmse():
    """For a Gaussian posterior vsrd(lam=0) ends at the MMSE after ANY number of steps (docs/theory §5.1), up to
    O(sqrt(ab_T)) from the N(0, I) start (1e-6 here); float32 round-off over 30 steps allows 1e-4."""
    g = torch.Generator().manual_seed(6)
    prior = GaussianImageDenoiser.fit(_smooth_images(300, g))
    op, _ = make_task("inpaint-random", SHAPE, g)
    prob = ImageInverseProblem(op, 0.1)
    y = prob.measure(_smooth_images(1, g), g)
    sol = solve_image(prob, y, "vsrd", prior, schedule=_tiny_schedule(), n_samples=3, lam=0.0, steps=30,
                      generator=g)
    pm = prior.posterior_mean(op, y, 0.1).to(F32)
    torch.testing.assert_close(sol.x, pm.expand_as(sol.x), atol=1e-4, rtol=0)


def test_vsrd_lam0_empirical_is_not_the_posterior_mean(setup):
    """Documented limit: on the DISCRETE empirical posterior the deterministic lam = 0 path is mode seeking;
    with 50 steps it ends far from E[x0 | y] (the Gaussian-posterior theory does not apply)."""
    den, prob, _, y = setup
    sol = solve_image(prob, y, "vsrd", den, schedule=_tiny_schedule(), lam=0.0, steps=50,
                      generator=torch.Generator().manual_seed(5))
    pm = den.posterior_mean(prob.operator, y, SIGMA_Y).to(F32)
    assert float((sol.x[0] - pm).abs().max()) > 0.05


# ---------------------------------------------------------------------------------------------- NFE
class _TinyEpsNet(torch.nn.Module):
    """A 3x3 conv eps-predictor that records whether its input requires grad."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1).to(F32)
        self.grad_flags: list[bool] = []

    def forward(self, x, t):
        self.grad_flags.append(x.requires_grad)
        return 0.1 * self.conv(x)


def test_dps_calls_the_network_once_per_step_and_backpropagates(setup):
    _, prob, _, y = setup
    net = _TinyEpsNet()
    sched = linear_schedule()
    den = NetworkDenoiser(net, sched, "eps")
    steps = 7
    sol = solve_image(prob, y, "dps", den, schedule=sched, n_samples=2, steps=steps, zeta=0.1,
                      generator=torch.Generator().manual_seed(8))
    assert sol.nfe == steps
    assert net.grad_flags == [True] * steps  # every call is on the autograd graph (DPS back-propagates)
    assert sol.x.dtype == F32 and bool(torch.isfinite(sol.x).all())


def test_network_map_rps_defaults_to_dps_stage2(setup):
    _, prob, _, y = setup
    net = _TinyEpsNet()
    sched = linear_schedule()
    sol = solve_image(prob, y, "map-rps", NetworkDenoiser(net, sched, "eps"), schedule=sched, t0=4, iters=6,
                      generator=torch.Generator().manual_seed(9))
    assert not sol.exact_conditional
    assert sol.nfe == 6 + 4
    assert net.grad_flags == [False] * 6 + [True] * 4  # stage 1 eps under no_grad; stage 2 DPS with autograd


@pytest.mark.parametrize(
    ("method", "knobs", "expected"),
    [
        ("posterior", dict(steps=6), 6),
        ("ddpm", dict(steps=6), 6),
        ("ddim", dict(steps=6), 6),
        ("vsrd", dict(steps=6, lam=0.5), 12),  # exact kernel: the mean and one exact draw per step
        ("vsrd", dict(steps=6, lam=0.0), 6),
        ("red-diff", dict(steps=6), 6),
        ("vml-map", dict(steps=4, inner_steps=2, final_steps=3), 4 * 3 + 3),
        ("map-rps", dict(t0=0, iters=9), 9),
    ],
)
def test_nfe_counts(method, knobs, expected, setup):
    den, prob, _, y = setup
    sol = solve_image(prob, y, method, den, generator=torch.Generator().manual_seed(10), **knobs)
    assert sol.nfe == expected


def test_counting_denoiser_sees_sample_x0_only_when_present():
    g = torch.Generator().manual_seed(0)
    exact = CountingDenoiser(EmpiricalMixtureDenoiser(_smooth_images(3, g)))
    assert callable(getattr(exact, "sample_x0", None))
    net = CountingDenoiser(NetworkDenoiser(_TinyEpsNet(), linear_schedule(), "eps"))
    assert getattr(net, "sample_x0", None) is None
    net(torch.zeros(1, *SHAPE, dtype=F32), 0.5)
    net.eps(torch.zeros(1, *SHAPE, dtype=F32), 0.5)
    assert net.nfe == 2


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("method", "knobs", "exc", "match"),
    [
        ("nope", {}, ValueError, "method must be one of"),
        ("vsrd", dict(lam=1.5, steps=2), ValueError, "lam must lie in"),
        ("map-rps", dict(t0=1001, iters=2), ValueError, "t0 must be an integer step"),
        ("map-rps", dict(iters=2), ValueError, "needs the knob t0"),
        ("dps", dict(t0=5), TypeError, "does not take knob"),
        ("dps", dict(lam=1.5, steps=2), ValueError, "lam must lie in"),
        ("ddpm", dict(t0=3), TypeError, "does not take knob"),
    ],
)
def test_bad_knobs(method, knobs, exc, match, setup):
    den, prob, _, y = setup
    with pytest.raises(exc, match=match):
        solve_image(prob, y, method, den, **knobs)


def test_posterior_needs_an_exact_conditional(setup):
    _, prob, _, y = setup
    den = NetworkDenoiser(_TinyEpsNet(), linear_schedule(), "eps")
    with pytest.raises(ValueError, match="exact conditional"):
        solve_image(prob, y, "posterior", den, steps=2)


def test_bad_problem_and_y(setup):
    den, prob, _, y = setup
    with pytest.raises(ValueError, match="sigma_y"):
        ImageInverseProblem(prob.operator, -1.0)
    with pytest.raises(TypeError, match="A and A_adjoint"):
        ImageInverseProblem(object(), 0.1)
    with pytest.raises(ValueError, match="n_samples must be 1"):
        solve_image(prob, y.expand(2, -1, -1, -1), "ddpm", den, n_samples=2, steps=2)
    with pytest.raises(ValueError, match="n_samples"):
        solve_image(prob, y, "ddpm", den, n_samples=0, steps=2)
    with pytest.raises(ValueError, match="finite"):
        solve_image(prob, y * float("nan"), "ddpm", den, steps=2)
