"""``dpt.solve``: every method runs, the wiring matches the samplers called directly, and bad input gives
clear errors.

Oracles: the sampler functions called directly with the same generator seed (solve must be a thin front door),
the exact posterior moments (start="exact" with t_start), and a "network" that is secretly the exact Gaussian
eps (tests/test_denoisers.py), so the network path can be compared with the exact path to round-off.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tables import GAUSSIANS, PROBLEMS, measurement, np_gaussian_condition, problem
from test_denoisers import _SecretlyExactNet

import dptheory as dpt
from dptheory.samplers import DPSGuidedDenoiser, dps, map_rps, pinv_start, vsrd
from dptheory.solver import METHOD_NAMES

# cheap knobs per method (short grids / few iterations); solve fills in everything else
FAST_KNOBS = {
    "posterior": dict(steps=8),
    "ddpm": dict(steps=8),
    "ddim": dict(steps=8),
    "dps": dict(steps=8),
    "vsrd": dict(steps=8, lam=0.5),
    "map-rps": dict(t0=5, iters=5),
    "red-diff": dict(steps=8),
    "vml-map": dict(steps=8),
    "ddrm": dict(steps=8),
    "diffpir": dict(steps=8),
    "pigdm": dict(steps=8),
    "daps": dict(steps=4, ode_steps=2, langevin_steps=3, lr=1e-2),
}
def _network(schedule):
    return dpt.NetworkDenoiser(_SecretlyExactNet(schedule, "eps"), schedule, prediction="eps")


# ---------------------------------------------------------------------------------------------- shapes
def test_method_table_is_complete():
    assert set(FAST_KNOBS) == set(METHOD_NAMES)


@pytest.mark.parametrize("name", ["G2", "gmm2_k2_one_row", "B1_s05", "g3_two_rows"])
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_runs_and_returns_the_right_shape(method, name, gen):
    prob, y = problem(name), measurement(name)
    x = dpt.solve(prob, y, method, n_samples=5, generator=gen, **FAST_KNOBS[method])
    assert x.shape == (5, prob.dim) and x.dtype == torch.float64
    assert torch.isfinite(x).all()
    # one reconstruction per measurement for a batch y (n, m)
    _, ys = prob.sample_joint(3, generator=gen)
    xs = dpt.solve(prob, ys, method, generator=gen, **FAST_KNOBS[method])
    assert xs.shape == (3, prob.dim)


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dps", "vsrd", "map-rps"])
def test_methods_run_with_a_network_denoiser(method, gen):
    sched = dpt.linear_schedule(100)
    prob, y = problem("G2"), measurement("G2")
    x = dpt.solve(prob, y, method, n_samples=4, generator=gen, denoiser=_network(sched), schedule=sched,
                  **FAST_KNOBS[method])  # fmt: skip
    assert x.shape == (4, 2) and torch.isfinite(x).all()


@pytest.mark.parametrize("method", ["posterior", "vsrd", "dps", "map-rps"])
def test_solve_is_reproducible_from_the_generator(method):
    prob, y = problem("gmm2_k2_one_row"), measurement("gmm2_k2_one_row")
    a, b, c = (
        dpt.solve(prob, y, method, n_samples=6, generator=torch.Generator().manual_seed(s), **FAST_KNOBS[method])
        for s in (1, 1, 2)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------------------------------------- wiring
def test_solve_dps_with_secretly_exact_network_equals_exact_denoiser(gen):
    """On the network's own grid the adapter is exact, so the network and exact paths agree to round-off."""
    sched = dpt.linear_schedule(100)
    prob, y = problem("G2"), measurement("G2")
    kw = dict(n_samples=16, schedule=sched, norm="squared")
    a = dpt.solve(prob, y, "dps", generator=torch.Generator().manual_seed(5), denoiser=_network(sched), **kw)
    b = dpt.solve(prob, y, "dps", generator=torch.Generator().manual_seed(5), **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)  # 100 steps of round-off in two eps evaluations


def test_solve_vsrd_with_network_is_dps_guided_small_kernel(gen):
    """With a network, vsrd uses the DPS-guided conditional denoiser (weight zeta) and kernel 'small'."""
    sched = dpt.linear_schedule(100)
    prob, y = problem("G2"), measurement("G2")
    net = _network(sched)
    a = dpt.solve(prob, y, "vsrd", n_samples=8, generator=torch.Generator().manual_seed(2), denoiser=net,
                  schedule=sched, zeta=0.7, lam=0.3)  # fmt: skip
    g = torch.Generator().manual_seed(2)
    x_T = torch.randn(8, 2, generator=g)
    guided = DPSGuidedDenoiser(net, prob.operator, y, prob.sigma_y, zeta=0.7)
    b = vsrd(guided, x_T, sched, lam=0.3, kernel="small", generator=g)
    assert torch.equal(a, b)


def test_solve_dps_passes_zeta_and_noise_start(gen):
    prob, y = problem("B1_s08"), measurement("B1_s08")
    a = dpt.solve(prob, y, "dps", n_samples=8, generator=torch.Generator().manual_seed(3), zeta=0.4, steps=20)
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(8, 1, generator=g)
    b = dps(dpt.ExactDenoiser(prob.prior), x_T, dpt.linear_schedule(), operator=prob.operator, y=y,
            sigma_y=prob.sigma_y, zeta=0.4, steps=20, generator=g)  # fmt: skip
    assert torch.equal(a, b)


def test_solve_exact_start_at_intermediate_t_start_gives_the_posterior(gen):
    """start='exact' with t_start = 500 draws x_500 from the diffused posterior; the exact sampler then ends
    at N(mu_y, Sigma_y) (MC: 4 SE on the mean, 4.5 SE on covariance entries)."""
    prob, y = problem("G2"), measurement("G2")
    m, S = GAUSSIANS["g2"]
    mu, Sig = np_gaussian_condition(m, S, *PROBLEMS["G2"][1:3], PROBLEMS["G2"][3])
    n = 20000
    x = dpt.solve(prob, y, "posterior", n_samples=n, generator=gen, start="exact", t_start=500, steps=10).numpy()
    assert np.all(np.abs(x.mean(0) - mu) <= 4 * np.sqrt(np.diag(Sig) / n))
    se_cov = np.sqrt((np.outer(np.diag(Sig), np.diag(Sig)) + Sig**2) / n)
    assert np.all(np.abs(np.cov(x.T) - Sig) <= 4.5 * se_cov)


def test_solve_exact_start_at_t_start_zero_is_the_posterior(gen):
    """Regression (solver.py once used ``knobs.get("t_start") or schedule.T``, so t_start = 0 fell back to T and
    start='exact' returned ~N(0, I) noise): with t_start = 0 the 0-step sampler returns exact posterior draws
    (mean (0.644, 0.065); MC, 4 SE)."""
    prob, y = problem("G2"), measurement("G2")
    x = dpt.solve(prob, y, "posterior", n_samples=4000, generator=gen, start="exact", t_start=0)
    post = prob.posterior(y)
    se = (torch.diagonal(post.cov) / 4000).sqrt()
    assert torch.all((x.mean(0) - post.mean).abs() <= 4 * se), (x.mean(0), post.mean)


def test_solve_forwards_zeta_to_map_rps(gen):
    """Regression (solve's own ``zeta`` parameter once swallowed the map-rps knob ``zeta``, the stage-2 DPS
    step, so map_rps always ran with zeta = 1.0): G2, a network denoiser (stage2='dps'), t0=5, iters=5,
    zeta=0.0 must equal map_rps(..., zeta=0.0) with the same seed (the zeta = 1 result differs by ~1)."""
    sched = dpt.linear_schedule(100)
    prob, y = problem("G2"), measurement("G2")
    net = _network(sched)
    a = dpt.solve(prob, y, "map-rps", n_samples=4, generator=torch.Generator().manual_seed(0), denoiser=net,
                  schedule=sched, zeta=0.0, t0=5, iters=5)  # fmt: skip
    x0 = pinv_start(prob.operator, y).expand(4, 2).clone()
    b = map_rps(net, x0, sched, operator=prob.operator, y=y, sigma_y=prob.sigma_y, t0=5, iters=5,
                stage2="dps", zeta=0.0, generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_importing_submodules_keeps_dpt_solve_callable():
    """Regression: when the module was dptheory/solve.py, importing it (or any module doing
    ``from .solve import solve``) before the first ``dpt.solve`` access bound ``dptheory.solve`` to the MODULE
    and ``dpt.solve(...)`` raised "TypeError: 'module' object is not callable". Fresh interpreter per check."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    for module in ("dptheory.solver", "dptheory.traversal", "dptheory.samplers"):
        code = f"import dptheory as dpt, {module}; assert callable(dpt.solve), type(dpt.solve)"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
        assert proc.returncode == 0, (module, proc.stderr.strip().splitlines()[-1:])


# ---------------------------------------------------------------------------------------------- callbacks
@pytest.mark.parametrize("method", ["posterior", "ddpm", "ddim", "dps", "vsrd"])
def test_callback_is_called_once_per_step(method, gen):
    prob, y = problem("B1_s05"), measurement("B1_s05")
    calls = []
    knobs = dict(steps=12, lam=0.5) if method == "vsrd" else dict(steps=12)
    x = dpt.solve(prob, y, method, n_samples=3, generator=gen, callback=lambda *a: calls.append(a), **knobs)
    grid = dpt.linear_schedule().timesteps(12)
    assert [c[0] for c in calls] == list(range(12))
    assert [c[1] for c in calls] == grid[:-1]
    assert torch.equal(calls[-1][2], x)  # the last callback sees the returned state
    assert all(c[2].shape == (3, 1) and c[3].shape == (3, 1) for c in calls)


def test_callback_map_rps_reports_the_stage2_steps(gen):
    """map-rps forwards the callback to stage 2 only: t0 calls, t = t0, ..., 1 (stage-1 iterations are not
    reported through solve; map_rps_stage1 takes its own callback)."""
    prob, y = problem("G2"), measurement("G2")
    calls = []
    dpt.solve(prob, y, "map-rps", n_samples=2, generator=gen, t0=6, iters=3, callback=lambda *a: calls.append(a))
    assert [c[1] for c in calls] == [6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize("method", ["posterior", "vsrd", "map-rps"])
def test_progress_bar_runs_without_warnings(method, gen):
    prob, y = problem("G2"), measurement("G2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pytest's filterwarnings = error as well, made explicit here
        x = dpt.solve(prob, y, method, n_samples=2, generator=gen, progress=True, **FAST_KNOBS[method])
    assert x.shape == (2, 2)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("lam", [-0.1, 1.5, float("nan")])
def test_lam_outside_unit_interval(lam):
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(ValueError, match="lam"):
        dpt.solve(prob, y, "vsrd", lam=lam, steps=4)


@pytest.mark.parametrize("t0, err", [(-1, ValueError), (1001, ValueError), (2.5, TypeError), ("10", TypeError)])
def test_t0_outside_range_or_not_an_integer(t0, err):
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(err, match="t0"):
        dpt.solve(prob, y, "map-rps", t0=t0, iters=2)


def test_map_rps_needs_t0():
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(ValueError, match="t0"):
        dpt.solve(prob, y, "map-rps")


def test_unknown_method_lists_the_methods():
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(ValueError, match="method must be one of") as info:
        dpt.solve(prob, y, "ddnm")
    assert all(name in str(info.value) for name in METHOD_NAMES)


def test_unknown_knob_lists_the_valid_knobs():
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(TypeError, match="t0") as info:
        dpt.solve(prob, y, "vsrd", t0=10)
    msg = str(info.value)
    assert "lam" in msg and "steps" in msg and "kernel" in msg  # vsrd's own knobs are listed
    with pytest.raises(TypeError, match="lam"):
        dpt.solve(prob, y, "ddpm", lam=0.5)


def test_n_samples_with_batched_y():
    prob = problem("G2")
    with pytest.raises(ValueError, match="n_samples"):
        dpt.solve(prob, torch.zeros(3, 1), "posterior", n_samples=2)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_n_samples_must_be_a_positive_integer(n):
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(ValueError, match="n_samples"):
        dpt.solve(prob, y, "ddpm", n_samples=n, steps=2)


def test_posterior_and_exact_start_need_the_exact_denoiser():
    sched = dpt.linear_schedule(100)
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(ValueError, match="exact denoiser"):
        dpt.solve(prob, y, "posterior", denoiser=_network(sched), schedule=sched)
    with pytest.raises(ValueError, match="exact denoiser"):
        dpt.solve(prob, y, "ddpm", denoiser=_network(sched), schedule=sched, start="exact")


def test_bad_start_and_bad_y():
    prob, y = problem("G2"), measurement("G2")
    with pytest.raises(ValueError, match="start"):
        dpt.solve(prob, y, "ddpm", start="zeros")
    with pytest.raises(ValueError, match="y"):
        dpt.solve(prob, torch.zeros(2), "ddpm")  # m = 1
    with pytest.raises(ValueError, match="NaN"):
        dpt.solve(prob, torch.tensor([math.nan]), "ddpm")
