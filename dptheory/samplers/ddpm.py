"""Unconditional (or plug-in conditional) ancestral DDPM and DDIM samplers.

Both take a denoiser ``D(x_t, alpha_bar) -> E[x0|x_t]`` and walk a descending grid of steps; every step uses the
forward posterior ``q(x_s | x_t, x0) = N(c1 x0 + c2 x_t, beta_tilde I)`` (:meth:`VPSchedule.reverse_coefficients`).
"""

from __future__ import annotations

import math

from ..denoisers import eps_from_x0
from ._common import progress, randn_like, reverse_pairs

__all__ = ["ddpm", "ddim"]


def _check_ddpm(variance) -> None:
    if variance not in ("small", "large"):
        raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")


def _check_ddim(eta) -> None:
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")


def ddpm(denoiser, x, schedule, *, steps=None, t_start=None, variance="small", generator=None, callback=None,
         progress_bar=False):
    """Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2, written with the x0-prediction):

        x_s = c1 D(x_t) + c2 x_t + sigma z,   sigma^2 = beta_tilde ("small") or beta ("large"),

    with no noise at the final step ``s = 0``.

    Args:
        denoiser: ``D(x_t, alpha_bar)``.
        x: start ``x_{t_start}``, shape ``(n, ...)``.
        schedule: :class:`~dptheory.VPSchedule`.
        steps: number of reverse steps (respaced evenly); default: every step.
        t_start: starting step (default ``T``).
        variance: ``"small"`` (beta_tilde, "fixedsmall") or ``"large"`` (beta, "fixedlarge").
        callback: called as ``callback(i, t, x_s, x0_hat)`` after each step.
    """
    _check_ddpm(variance)
    pairs = reverse_pairs(schedule, steps, t_start)
    for i, (t, s) in enumerate(progress(pairs, progress_bar, "ddpm")):
        c1, c2, beta_tilde, beta = schedule.reverse_coefficients(t, s)
        x0 = denoiser(x, float(schedule.alpha_bar(t)))
        var = 0.0 if s == 0 else (beta_tilde if variance == "small" else beta)
        x = c1 * x0 + c2 * x + math.sqrt(var) * randn_like(x, generator)
        if callback is not None:
            callback(i, t, x, x0)
    return x


def ddim(denoiser, x, schedule, *, eta=0.0, steps=None, t_start=None, generator=None, callback=None,
         progress_bar=False):
    """DDIM sampling (Song, Meng & Ermon 2021, eq. (12)):

        x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps_hat + sigma z,   sigma = eta sqrt(beta_tilde).

    ``eta = 0`` is deterministic; ``eta = 1`` equals DDPM with beta_tilde (docs/theory §1.1).
    """
    _check_ddim(eta)
    pairs = reverse_pairs(schedule, steps, t_start)
    for i, (t, s) in enumerate(progress(pairs, progress_bar, "ddim")):
        ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
        _, _, beta_tilde, _ = schedule.reverse_coefficients(t, s)
        x0 = denoiser(x, ab_t)
        eps = eps_from_x0(x, x0, ab_t)
        sigma2 = float(eta) ** 2 * beta_tilde
        x = math.sqrt(ab_s) * x0 + math.sqrt(max(1.0 - ab_s - sigma2, 0.0)) * eps
        if sigma2 > 0:
            x = x + math.sqrt(sigma2) * randn_like(x, generator)
        if callback is not None:
            callback(i, t, x, x0)
    return x
