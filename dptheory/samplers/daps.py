"""Decoupled annealing posterior sampling (DAPS), Zhang, Chu, Berner, Meng, Anandkumar & Song, CVPR 2025
(arXiv 2407.01521), Algorithm 1; official code zhangbingliang2019/DAPS ``cores/mcmc.py``, ``sampler.py``.

From ``x_t`` DAPS draws ``x0 ~ p(x0 | x_t, y)`` approximately and re-noises, ``x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s)
z``; with exact inner draws every ``x_s`` has the exact marginal ``p_s(x_s | y)`` (the paper's Proposition; claim
PEER-5). The inner draw: ``x0_hat`` by ``ode_steps`` deterministic DDIM steps from ``t`` to 0 (1: Tweedie), then
``langevin_steps`` unadjusted Langevin steps on ``log N(x0; x0_hat, r_t^2 I) - ||y - A x0||^2 / (2 tau^2)``,

    x0 <- x0 + lr_i [ (x0_hat - x0) / r_t^2 - A^T (A x0 - y) / tau^2 ] + sqrt(2 lr_i) xi,

``lr_i = lr (1 + (i / n_levels) (lr_min_ratio - 1))`` (the official linear decay), ``r_t = sigma_t = sqrt((1 -
ab_t)/ab_t)`` (``r="sigma"``, official) or ``r_t^2 = 1 - ab_t`` (``r="pigdm"``, exact for data ``N(m, I)``). The
last level returns the Langevin iterate; :func:`dptheory.sampler_law` gives the exact law when ``D`` is affine.
NFE: ``ode_steps`` per level. Differences from the official code (grid, ODE, ``tau``): ``paper_notes/peers.md``.
"""

from __future__ import annotations

import math
import numbers

from .._checks import check_int
from ._common import apply_A, progress, randn_like, reverse_pairs
from ._svd import ve_sigma

__all__ = ["daps", "daps_lr", "daps_r2"]


def _check_knobs(sigma_y, tau, lr, lr_min_ratio, r):
    if tau is None and (sigma_y is None or not float(sigma_y) > 0):
        raise ValueError(f"daps needs sigma_y > 0 or an explicit tau > 0 (the likelihood std), got {sigma_y}")
    if tau is not None and (isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not float(tau) > 0):
        raise ValueError(f"tau must be a number > 0 (the likelihood std), got {tau!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0.0 < float(lr) < math.inf:
        raise ValueError(f"lr must be a finite number > 0 (the Langevin step), got {lr!r}")
    if isinstance(lr_min_ratio, bool) or not isinstance(lr_min_ratio, numbers.Real) or \
            not 0.0 < float(lr_min_ratio) <= 1.0:
        raise ValueError(f"lr_min_ratio must lie in (0, 1], got {lr_min_ratio!r}")
    if r not in ("sigma", "pigdm"):
        raise ValueError(f"r must be 'sigma' (official r_t = sigma_t) or 'pigdm' (r_t^2 = 1 - ab_t), got {r!r}")


def daps_lr(lr: float, lr_min_ratio: float, i: int, n_levels: int) -> float:
    """Langevin step at level ``i`` of ``n_levels``: ``lr (1 + (i / n_levels) (lr_min_ratio - 1))``."""
    return float(lr) * (1.0 + (i / n_levels) * (float(lr_min_ratio) - 1.0))


def daps_r2(ab: float, r: str) -> float:
    """``r_t^2``: ``(1 - ab) / ab`` (``"sigma"``) or ``1 - ab`` (``"pigdm"``)."""
    return ve_sigma(ab) ** 2 if r == "sigma" else 1.0 - ab


def _ode_x0(denoiser, x, schedule, t: int, ode_steps: int):
    """``x0_hat`` by ``ode_steps`` DDIM (eta = 0) steps from level ``t`` to 0."""
    for u, v in reverse_pairs(schedule, min(ode_steps, t), t):
        ab_u, ab_v = float(schedule.alpha_bar(u)), float(schedule.alpha_bar(v))
        x0 = denoiser(x, ab_u)
        eps = (x - math.sqrt(ab_u) * x0) / math.sqrt(1.0 - ab_u)
        x = math.sqrt(ab_v) * x0 + math.sqrt(1.0 - ab_v) * eps
    return x


def daps(denoiser, x, schedule, *, operator, y, sigma_y, steps=200, t_start=None, ode_steps=5,
         langevin_steps=100, lr=1e-4, lr_min_ratio=0.01, tau=None, r="sigma", generator=None, callback=None,
         progress_bar=False):
    """DAPS (Zhang et al. 2025, Algorithm 1; module docstring). Returns the last Langevin iterate ``(n, ...)``.

    Args:
        denoiser: the PRIOR denoiser ``D(x_t, ab)`` (no gradients through it).
        x: the start ``x_{t_start}``, usually ``N(0, I)``.
        operator: forward operator with ``A``/``A_adjoint``; ``y``; ``sigma_y``.
        steps: annealing levels (default 200, DAPS-1K); ``t_start``: first level (default T).
        ode_steps: DDIM steps of the inner ODE (>= 1; default 5).
        langevin_steps: Langevin steps per level (>= 0; default 100).
        lr, lr_min_ratio: Langevin step ``lr`` decayed linearly to ``lr * lr_min_ratio`` over the levels.
        tau: likelihood std (default ``sigma_y``).
        r: ``"sigma"`` (official ``r_t = sigma_t``) or ``"pigdm"`` (``r_t^2 = 1 - ab_t``).
        callback: ``callback(i, t, x_s, x0)`` after each level.
    """
    _check_knobs(sigma_y, tau, lr, lr_min_ratio, r)
    ode_steps = check_int(ode_steps, "ode_steps")
    langevin_steps = check_int(langevin_steps, "langevin_steps", minimum=0)
    tau2 = float(sigma_y if tau is None else tau) ** 2
    pairs = reverse_pairs(schedule, steps, t_start)
    for i, (t, s) in enumerate(progress(pairs, progress_bar, "daps")):
        ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
        x0_hat = _ode_x0(denoiser, x, schedule, t, ode_steps).detach()
        r2 = daps_r2(ab_t, r)
        step = daps_lr(lr, lr_min_ratio, i, len(pairs))
        x0 = x0_hat
        for _ in range(langevin_steps):
            grad = (x0_hat - x0) / r2 - operator.A_adjoint(apply_A(operator, x0) - y) / tau2
            x0 = x0 + step * grad + math.sqrt(2.0 * step) * randn_like(x0, generator)
        x = x0 if ab_s == 1.0 else math.sqrt(ab_s) * x0 + math.sqrt(1.0 - ab_s) * randn_like(x0, generator)
        if callback is not None:
            callback(i, t, x, x0)
    return x
