"""The gold-standard posterior sampler: ancestral sampling with the EXACT reverse kernels (docs/theory §3.3).

With an exact (conditional) denoiser that can draw from ``p(x0 | x_t)``, the kernel

    x0 ~ p(x0 | x_t),   x_s = c1 x0 + c2 x_t + sqrt(beta_tilde) z

composes ``q(x_s | x_t, x0)`` with the exact ``p(x0 | x_t)``, so it IS ``p(x_s | x_t)`` for any ``s < t``: started
from the exact ``p_{t_start}``, every marginal is exact, on any (respaced) grid. For a Gaussian this kernel is
``N(c1 D + c2 x_t, beta_tilde I + c1^2 C_t)``; for a GMM it is the mixture kernel of docs/theory §3.3. Plain DDPM with
beta_tilde is NOT exact (it under-disperses by O(1/T)).
"""

from __future__ import annotations

import math

from ._common import progress, randn_like, reverse_pairs

__all__ = ["posterior"]


def posterior(denoiser, x, schedule, *, steps=None, t_start=None, generator=None, callback=None,
              progress_bar=False):
    """Exact ancestral sampler; ``denoiser`` must provide ``sample_x0(x_t, alpha_bar, generator)``.

    With :class:`~dptheory.denoisers.ConditionalExactDenoiser` this samples the posterior ``p(x0 | y)``.

    Args:
        x: start ``x_{t_start}`` ``(n, d)``; exact when drawn from the diffused law at ``t_start``.
        steps, t_start: the grid (default: every step from T).
        callback: ``callback(i, t, x_s, x0_draw)``.
    """
    if not callable(getattr(denoiser, "sample_x0", None)):
        raise TypeError(
            "posterior() needs an exact denoiser with sample_x0 (ExactDenoiser or ConditionalExactDenoiser); "
            "with a network use dps or vsrd"
        )
    pairs = reverse_pairs(schedule, steps, t_start)
    for i, (t, s) in enumerate(progress(pairs, progress_bar, "posterior")):
        c1, c2, beta_tilde, _ = schedule.reverse_coefficients(t, s)
        x0 = denoiser.sample_x0(x, float(schedule.alpha_bar(t)), generator)
        x = c1 * x0 + c2 * x
        if beta_tilde > 0:
            x = x + math.sqrt(beta_tilde) * randn_like(x, generator)
        if callback is not None:
            callback(i, t, x, x0)
    return x
