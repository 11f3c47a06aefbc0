"""``dpt.solve``: the front door that runs any sampler on a :class:`~dptheory.LinearInverseProblem`.

It builds what each sampler needs from the problem and validates the knobs:

- the prior denoiser: ``denoiser`` if given (a network adapter, say), else the exact
  :class:`~dptheory.denoisers.ExactDenoiser` of the prior;
- the conditional denoiser: the exact :class:`~dptheory.denoisers.ConditionalExactDenoiser` when the denoiser is
  exact, else the DPS-guided :class:`~dptheory.samplers.DPSGuidedDenoiser` (knob ``zeta``);
- the start: ``x_T ~ N(0, I)`` for the diffusion samplers (``start="exact"`` draws from the exact diffused
  posterior at ``T`` instead), ``A^+ y`` for the optimisation-based ones (map-rps, red-diff).
"""

from __future__ import annotations

import math

import torch

from ._checks import check_denoiser, check_generator, check_int, check_memory, check_problem, check_schedule
from ._guard import FiniteDenoiser
from .denoisers import ConditionalExactDenoiser, ExactDenoiser
from .samplers import METHODS, DPSGuidedDenoiser, pinv_start
from .samplers.spec import check_method, run_method
from .schedules import VPSchedule

__all__ = ["solve", "METHOD_NAMES"]

METHOD_NAMES = tuple(METHODS)


def _check_solve_memory(problem, n: int, method: str) -> None:
    """Refuse up front a call whose particles cannot fit in memory (no chunking: the caller splits the call).

    Estimate: ``(16 + 5 K)`` arrays of ``(n, max(d, m))`` (``K`` the prior's components). Measured peaks, in such
    arrays: a Gaussian prior 7 (posterior), 12 (ddpm), 15 (vsrd); a 36-component mixture 24 (ddpm), 133
    (posterior), 137 (vsrd), 161 (map-rps), its exact denoiser forming ``(n, K, d)`` arrays.
    """
    K = int(getattr(problem.prior, "n_components", 1))
    need = (16.0 + 5.0 * K) * n * max(problem.dim, problem.m) * problem.A.element_size()
    check_memory(need, f"{method} with {n} samples of dimension d = {problem.dim}", problem.A.device)


def solve(problem, y, method: str, *, n_samples: int = 1, generator: torch.Generator | None = None,
          denoiser=None, schedule: VPSchedule | None = None, start: str = "noise", zeta: float | None = None,
          callback=None, progress: bool = False, **knobs) -> torch.Tensor:
    """Solve ``y = A x + noise`` with ``method`` and return the reconstructions.

    Args:
        problem: a :class:`~dptheory.LinearInverseProblem`.
        y: ``(m,)`` (then ``n_samples`` draws are returned, ``(n_samples, d)``), or ``(n, m)`` with one
            reconstruction per measurement (``n_samples`` must be 1), ``(n, d)``.
        method: one of ``"posterior"``, ``"ddpm"``, ``"ddim"``, ``"dps"``, ``"vsrd"``, ``"map-rps"``,
            ``"red-diff"``, ``"vml-map"``, ``"ddrm"``, ``"diffpir"``, ``"pigdm"``, ``"daps"`` (the last four take
            the prior denoiser and the operator; ddrm, diffpir and pigdm need an operator with an SVD).
        denoiser: a prior denoiser (default: exact). With a non-exact denoiser, ``"posterior"`` is unavailable
            and the conditional samplers use DPS guidance with weight ``zeta`` (default 1; for ``"diffpir"``,
            ``zeta`` is DiffPIR's own noise fraction, default 0.3).
        schedule: VP schedule (default: linear, T = 1000).
        start: ``"noise"`` (x_T ~ N(0, I)) or ``"exact"`` (x_T from the exact diffused posterior; exact problems).
        knobs: the sampler's own keyword arguments, e.g. ``lam`` (vsrd), ``t0`` (map-rps), ``steps``, ``eta``.

    Raises:
        ValueError: unknown method, a knob out of range (lam outside [0,1], t0 outside [0, T], ...), or shapes.
        TypeError: a knob the method does not take.
    """
    spec = check_method(METHODS, method, knobs)
    problem = check_problem(problem)
    schedule = check_schedule(schedule)
    generator = check_generator(generator)
    denoiser = check_denoiser(denoiser)
    if start not in ("noise", "exact"):
        raise ValueError(f"start must be 'noise' or 'exact', got {start!r}")
    y = problem.check_y(y)
    n_samples = check_int(n_samples, "n_samples")
    if y.ndim == 2 and n_samples != 1:
        raise ValueError("with a batch of measurements y (n, m), n_samples must be 1 (one draw per measurement)")
    n = n_samples if y.ndim == 1 else y.shape[0]
    _check_solve_memory(problem, n, method)

    exact = denoiser is None
    if spec.needs_exact and not exact:
        raise ValueError(f"method {method!r} needs the exact denoiser (denoiser=None)")
    prior_den = ExactDenoiser(problem.prior) if exact else FiniteDenoiser(denoiser, schedule)
    if exact:
        cond_den = ConditionalExactDenoiser(problem, y)
    elif spec.denoiser == "conditional":  # a network: a NaN or Inf prediction raises, naming the step
        guided = DPSGuidedDenoiser(prior_den, problem.operator, y, problem.sigma_y, 1.0 if zeta is None else zeta)
        cond_den = FiniteDenoiser(guided, schedule, "DPS-guided conditional denoiser")
    else:  # map-rps without an exact conditional denoiser runs its "dps" stage 2
        cond_den = None
    x_init = _start(problem, y, n, spec.start, start, schedule, cond_den, generator, knobs.get("t_start"))
    return run_method(spec, x_init, schedule, prior=prior_den, conditional=cond_den, exact=exact,
                      operator=problem.operator, y=y, sigma_y=problem.sigma_y, zeta=zeta, knobs=knobs,
                      generator=generator, callback=callback, progress=progress)


def _start(problem, y, n: int, kind: str, start: str, schedule, cond_den, generator, t_start) -> torch.Tensor:
    """``(n, d)`` starting points: ``A^+ y`` (``kind = "pinv"``), else ``N(0, I)`` or, for ``start = "exact"``,
    the exact diffused posterior at ``t_start`` (``x0`` drawn first, then the noise)."""
    d, dtype, device = problem.dim, problem.A.dtype, problem.A.device
    if kind == "pinv":
        return pinv_start(problem.operator, y).expand(n, d).clone()
    if start == "exact":
        if not isinstance(cond_den, ConditionalExactDenoiser):
            raise ValueError("start='exact' needs the exact denoiser")
        ab = float(schedule.alpha_bar(schedule.T if t_start is None else t_start))
        x0 = cond_den.sample_posterior(n, generator)
        return math.sqrt(ab) * x0 + math.sqrt(1.0 - ab) * torch.randn(x0.shape, generator=generator, dtype=dtype,
                                                                      device=device)
    return torch.randn(n, d, generator=generator, dtype=dtype, device=device)
