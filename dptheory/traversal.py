"""Measured distortion-perception points of a solver as one knob sweeps (``dpt.traverse``).

Each knob value places ``X^`` on the D-P plane in both forms, with its gap ``D - D_opt(P)`` (:mod:`dptheory.dp_curve`):

- per measurement (fixed y; X and X^ independent given y): ``D_y = tr Sigma_y + E||X^ - mu_y||^2``,
  ``P_y = W2(p_{X^|y}, p_{X|y})`` and ``KL(p_{X^|y} || p_{X|y})``;
- joint (over Y ~ p(y)): ``D = E||X - X^||^2``, ``P = W2(p_{X^}, p_X)``, ``KL(p_{X^} || p_X)``.

Exact points (Gaussian prior, exact denoiser) use the law recursions of :mod:`dptheory.sampler_laws` and closed-form
W2 and KL; MAP-RPS's stage 1 is replaced by its expected-gradient fixed point (claim MRPS-3 checks the optimiser).
Monte Carlo points (GMM prior, or ``exact=False``) run the same sampler code through :func:`dptheory.solve`: D with
its standard error; W2 to the exact target (1-D: exact quantiles; else ``ot.emd2`` against as many fresh target
draws, biased upward, docs/theory §9.4), standard error from ``replicates`` parts; KL by the nearest-neighbour
estimator of :mod:`dptheory.divergences`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ._checks import check_generator, check_int, check_problem, check_schedule
from .dp_curve import DPCurve, optimal_dp_curve, per_measurement_dp_curve
from .estimate import Estimate
from .solver import METHOD_NAMES, _check_solve_memory, solve

__all__ = ["DPPoint", "Traversal", "traverse", "nfe"]


@dataclass
class DPPoint:
    """One (distortion, perception) point with standard errors (0 when exact) and its gap to the optimum."""

    distortion: float
    perception: float
    kl: float
    gap: float
    distortion_stderr: float = 0.0
    perception_stderr: float = 0.0
    kl_stderr: float = 0.0


@dataclass
class Traversal:
    """The result of :func:`traverse`: per knob value, the per-measurement and joint points."""

    method: str
    knob: str
    values: list
    per_measurement: list
    joint: list
    nfe: list
    exact: bool
    curve_per_measurement: DPCurve | None
    curve_joint: DPCurve | None
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("curve_per_measurement", "curve_joint"):
            d[key] = None if getattr(self, key) is None else asdict(getattr(self, key))
        return d


_LAW_ONLY_KNOBS = ("start", "conditional", "x_map")  # sampler_law's own knobs: no denoiser call depends on them


def nfe(method: str, knobs: dict, schedule) -> int:
    """Denoiser evaluations of one run of ``method`` with ``knobs`` on ``schedule``, MEASURED: the run goes through
    :func:`~dptheory.images.problem.solve_image` (which counts every call with
    :class:`~dptheory.denoisers.CountingDenoiser`) on a one-pixel problem with an exact Gaussian prior, whose
    calls cost nothing; the count depends on the grid and the knobs only. A particle batch counts once."""
    from .images.operators import Denoising
    from .images.problem import GaussianImageDenoiser, ImageInverseProblem, solve_image

    one = torch.ones(1, 1, 1, dtype=torch.float64)
    prior = GaussianImageDenoiser(0.0 * one, torch.eye(1, dtype=torch.float64))
    kn = {k: v for k, v in knobs.items() if k not in _LAW_ONLY_KNOBS}
    sol = solve_image(ImageInverseProblem(Denoising(), 1.0), one.unsqueeze(0), method, prior, schedule=schedule,
                      generator=torch.Generator().manual_seed(0), **kn)
    return sol.nfe


def traverse(problem, method: str, knob: str, values, *, y=None, forms=("per-measurement", "joint"), n: int = 2000,
             replicates: int = 5, exact: bool | None = None, schedule=None, generator=None, progress=False,
             **knobs) -> Traversal:
    """Measure the D-P point of ``method`` for each ``knob`` value.

    Args:
        problem: a :class:`~dptheory.LinearInverseProblem`.
        method, knob, values: e.g. ``"vsrd", "lam", [0, .25, .5, 1]`` or ``"map-rps", "t0", [0, 100, 300]``.
        y: the measurement for the per-measurement form (required for it).
        forms: which forms to compute.
        n: Monte Carlo sample size per point (ignored when exact).
        replicates: independent parts for the W2/KL standard errors (Monte Carlo).
        exact: force (True) or forbid (False) the exact law path; default: exact iff the prior is Gaussian.
        knobs: fixed knobs passed to the solver.
    """
    from .schedules import linear_schedule

    if method not in METHOD_NAMES:
        raise ValueError(f"method must be one of {', '.join(METHOD_NAMES)}; got {method!r}")
    forms = tuple(forms)
    bad = [f for f in forms if f not in ("per-measurement", "joint")]
    if bad or not forms:
        raise ValueError(f"forms must be a non-empty subset of ('per-measurement', 'joint'), got {forms}")
    if "per-measurement" in forms and y is None:
        raise ValueError("the per-measurement form needs y (the measurement to condition on)")
    values = list(values)
    if not values:
        raise ValueError("values must be a non-empty sequence of knob values")
    replicates = check_int(replicates, "replicates")
    if isinstance(n, bool) or not isinstance(n, int) or n < replicates:
        raise ValueError(f"n (the Monte Carlo size per point) must be an integer >= replicates = {replicates} "
                         f"(the samples are split into {replicates} parts for the standard errors), got {n!r}")
    generator = check_generator(generator)
    schedule = check_schedule(schedule)
    problem = check_problem(problem)
    exact = problem.is_gaussian if exact is None else bool(exact)
    if exact and not problem.is_gaussian:
        raise ValueError("exact=True needs a Gaussian prior (the laws are closed-form only there)")
    if not exact:
        _check_solve_memory(problem, max(n, 4000), method)  # the Monte Carlo points and the joint curve's draws
    schedule = linear_schedule() if schedule is None else schedule
    y = None if y is None else problem.check_y(y)

    curve_y = per_measurement_dp_curve(problem, y) if "per-measurement" in forms else None
    curve_j = None
    if "joint" in forms:
        curve_j = optimal_dp_curve(problem, n=max(n, 4000), generator=generator)

    it = values
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(values, desc=f"traverse {method} {knob}", leave=False)
    out = Traversal(method, knob, values, [], [], [], exact, curve_y, curve_j)
    if not exact and "joint" in forms and curve_j is not None:
        out.notes.append(curve_j.note)
    for v in it:
        kn = {**knobs, knob: v}
        out.nfe.append(nfe(method, kn, schedule))
        if exact:
            pm, jt = _exact_points(problem, method, y, forms, schedule, kn, curve_y, curve_j)
        else:
            pm, jt = _mc_points(problem, method, y, forms, schedule, kn, curve_y, curve_j, n, replicates,
                                generator)
        out.per_measurement.append(pm)
        out.joint.append(jt)
    return out


# ---------------------------------------------------------------------------------------------- exact
def _exact_points(problem, method, y, forms, schedule, kn, curve_y, curve_j):
    from . import sampler_laws
    from .divergences import gaussian_kl, gaussian_w2

    pm = jt = None
    if "per-measurement" in forms:
        res = sampler_laws.sampler_law(problem, method, y=y, schedule=schedule, **kn)
        post = problem.posterior(y)
        D, P = float(res.mse), float(gaussian_w2(res.law, post))
        pm = DPPoint(D, P, _kl_or_inf(gaussian_kl, res.law, post), float(curve_y.gap(P, D)))
    if "joint" in forms:
        res = sampler_laws.sampler_law(problem, method, y=None, schedule=schedule, **kn)
        D, P = float(res.mse), float(gaussian_w2(res.law, problem.prior))
        jt = DPPoint(D, P, _kl_or_inf(gaussian_kl, res.law, problem.prior), float(curve_j.gap(P, D)))
    return pm, jt


def _kl_or_inf(kl, p, q) -> float:
    """KL(p || q); +inf when p is singular (a point mass or a degenerate law has no density)."""
    if p.eig.is_singular:
        return math.inf
    return float(kl(p, q))


# ---------------------------------------------------------------------------------------------- Monte Carlo
def _w2_estimate(x: torch.Tensor, target, replicates: int, generator) -> Estimate:
    """W2 from samples ``x`` to the law ``target``, as the mean and spread over ``replicates`` parts.

    1-D: the sorted samples against the target's exact midpoint quantiles (one sample's noise only). Otherwise:
    exact OT (``ot.emd2``) between the part and as many fresh draws from ``target`` (biased upward).
    """
    from .divergences import empirical_w2_squared, quantile_w2_squared_to_samples

    vals = []
    for part in torch.chunk(x, replicates):
        if x.shape[1] == 1:
            w2sq = quantile_w2_squared_to_samples(target, part)
        else:
            w2sq = empirical_w2_squared(part, target.sample(part.shape[0], generator=generator))
        vals.append(math.sqrt(max(float(w2sq), 0.0)))
    return Estimate.from_samples(torch.tensor(vals, dtype=torch.float64))


def _mc_points(problem, method, y, forms, schedule, kn, curve_y, curve_j, n, replicates, generator):
    from .divergences import kl_samples_to_density

    n = n - n % replicates
    pm = jt = None
    if "per-measurement" in forms:
        post = problem.posterior(y)
        x_hat = solve(problem, y, method, n_samples=n, generator=generator, schedule=schedule, **kn)
        err = (x_hat - post.mean).square().sum(-1)
        D = Estimate.from_samples(err)
        d_val = curve_y.mmse_error + D.value
        P = _w2_estimate(x_hat, post, replicates, generator)
        kl = kl_samples_to_density(x_hat, post.log_prob, replicates=replicates)
        pm = DPPoint(d_val, P.value, kl.value, float(curve_y.gap(P.value, d_val)), D.stderr, P.stderr, kl.stderr)
    if "joint" in forms:
        x, ys = problem.sample_joint(n, generator=generator)
        x_hat = solve(problem, ys, method, generator=generator, schedule=schedule, **kn)
        D = Estimate.from_samples((x - x_hat).square().sum(-1))
        P = _w2_estimate(x_hat, problem.prior, replicates, generator)
        kl = kl_samples_to_density(x_hat, problem.prior.log_prob, replicates=replicates)
        jt = DPPoint(D.value, P.value, kl.value, float(curve_j.gap(P.value, D.value)), D.stderr, P.stderr,
                     kl.stderr)
    return pm, jt
