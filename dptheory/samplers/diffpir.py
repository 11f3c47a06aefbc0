"""DiffPIR: denoising diffusion models for plug-and-play image restoration, Zhu, Zhang, Liang, Cao, Wen, Timofte &
Van Gool, CVPR Workshops 2023 (arXiv 2305.08995), Algorithm 1; official code yuanzhi-zhu/DiffPIR.

Half-quadratic splitting in the reverse diffusion; at each level ``t -> s``, ``sigma_t = sqrt((1 - ab_t)/ab_t)``::

    x0     = D(x_t)                                                  (prior step, the denoiser)
    x0_hat = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2,   rho_t = lam sigma_y^2 / sigma_t^2     (data step)
    eps    = (x_t - sqrt(ab_t) x0_hat) / sqrt(1 - ab_t)
    x_s    = sqrt(ab_s) x0_hat + sqrt(1 - ab_s) (sqrt(1 - zeta) eps + sqrt(zeta) z).

The data step is the spectral filter ``(A^T A + rho I)^{-1} (A^T y + rho x0)`` (the projection ``A^+ y + (I - A^+
A) x0`` if ``sigma_y = 0``); at ``s = 0`` the output is ``x0_hat``. ``lam = 1`` is the Bayes weight for ``p(x0 | x_t)
~ N(x0, sigma_t^2 I)`` (official ``lam`` = 4 x ours, deepinv's 2 x: ``paper_notes/peers.md``); ``E[x0 | x_t, y]`` for
data ``N(m, I)`` needs ``lam = 1 / ab_t`` (PEER-4). Affine when ``D`` is (:func:`dptheory.sampler_law`); 1 NFE/step.
"""

from __future__ import annotations

import math
import numbers

import torch

from ._common import progress, randn_like, reverse_pairs
from ._svd import Spectrum, safe_div, ve_sigma

__all__ = ["diffpir", "diffpir_prox_coefficients"]


def _check_knobs(sigma_y, lam, zeta):
    if sigma_y is None or not float(sigma_y) >= 0:
        raise ValueError(f"diffpir needs sigma_y >= 0 (the measurement noise std), got {sigma_y}")
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0.0 < float(lam) < math.inf:
        raise ValueError(f"lam must be a finite number > 0 (rho_t = lam sigma_y^2 / sigma_t^2), got {lam!r}")
    if isinstance(zeta, bool) or not isinstance(zeta, numbers.Real) or not 0.0 <= float(zeta) <= 1.0:
        raise ValueError(f"zeta must be a number in [0, 1] (the fresh-noise fraction), got {zeta!r}")


def diffpir_prox_coefficients(s: torch.Tensor, rho: float):
    """``(c_aty, c_x0)``: ``x0_hat = V diag(c_aty) V^T A^T y + V diag(c_x0) V^T x0``, the minimiser of
    ``||y - A x||^2 + rho ||x - x0||^2`` (``rho >= 0``; on the null space ``x0_hat = x0``)."""
    pos = s > 0
    denom = s**2 + rho
    c_aty = torch.where(pos, safe_div(torch.ones_like(s), denom), torch.zeros_like(s))
    c_x0 = torch.where(pos, safe_div(torch.full_like(s, rho), denom), torch.ones_like(s))
    return c_aty, c_x0


def diffpir(denoiser, x, schedule, *, operator, y, sigma_y, lam=1.0, zeta=0.3, steps=100, t_start=None,
            generator=None, callback=None, progress_bar=False):
    """DiffPIR (Zhu et al. 2023, Algorithm 1; module docstring). Returns ``x0_hat`` of the last step.

    Args:
        denoiser: the PRIOR denoiser ``D(x_t, ab)``.
        x: the start ``x_{t_start}`` (usually ``N(0, I)``), ``(n, ...)``.
        operator: an operator with an SVD (:mod:`dptheory.samplers._svd`); ``y``, ``sigma_y`` (>= 0).
        lam: > 0, the data-step weight ``rho_t = lam sigma_y^2 / sigma_t^2`` (1 = Bayes with ``r_t = sigma_t``;
            official values / 4, deepinv's / 2).
        zeta: in [0, 1], the fresh-noise fraction (0 = deterministic DDIM-like, 1 = all fresh noise).
        steps: reverse steps (default 100, the paper's NFE); ``t_start``: first level (default T).
    """
    _check_knobs(sigma_y, lam, zeta)
    s2, lam, zeta = float(sigma_y) ** 2, float(lam), float(zeta)
    spec = Spectrum(operator, x)
    aty = operator.A_adjoint(y)
    for i, (t, s_) in enumerate(progress(reverse_pairs(schedule, steps, t_start), progress_bar, "diffpir")):
        ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s_))
        x0 = denoiser(x, ab_t)
        rho = lam * s2 / ve_sigma(ab_t) ** 2
        c_aty, c_x0 = diffpir_prox_coefficients(spec.s, rho)
        x0_hat = spec.filter(c_aty, aty) + spec.filter(c_x0, x0)
        eps = (x - math.sqrt(ab_t) * x0_hat) / math.sqrt(1.0 - ab_t)
        x = math.sqrt(ab_s) * x0_hat + math.sqrt((1.0 - ab_s) * (1.0 - zeta)) * eps
        if ab_s < 1.0 and zeta > 0:
            x = x + math.sqrt((1.0 - ab_s) * zeta) * randn_like(x, generator)
        if callback is not None:
            callback(i, t, x, x0_hat)
    return x
