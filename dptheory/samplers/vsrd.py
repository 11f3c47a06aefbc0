"""Variance-scaled reverse diffusion (VSRD), Wang, Bi, Zhang & Yuan, CVPR 2025 (arXiv 2503.20297).

Reverse transition ``p_lam(x_s | x_t, y) = N(mu(x_t, y), lam C)``: the mean keeps the full conditional denoiser,
only the kernel covariance is scaled by ``lam in [0, 1]``, the VARIANCE factor (noise std ``sqrt(lam)``; why this
reading of the transcribed Algorithm 1: docs/theory §5.1). Kernels (docs/theory §5.2):

- ``kernel="exact"`` (variant B): ``x0 = D + sqrt(lam) (x0~ - D)`` with ``x0~ ~ p(x0 | x_t, y)`` exact, then
  ``x_s = c1 x0 + c2 x_t + sqrt(lam beta_tilde) z`` (covariance ``lam (beta_tilde I + c1^2 Cov[x0|x_t,y])``); at
  ``lam = 1`` exact posterior sampling; Gaussian posterior: end law ``N(mu_y, lam Sigma_y)`` + O(ab_T) (Theorem 1).
- ``kernel="small"`` (variant A, "DDPM with scaled noise"): ``x_s = c1 D + c2 x_t + sqrt(lam beta_tilde) z``;
  off by O(1/T) (docs/theory §3.3).

With a network, Wang et al.'s Algorithm 1 is ``kernel="small"`` with a ``DPSGuidedDenoiser``; its squared-norm
guidance diverges on the photo UNet at high noise, so use the unsquared form ``dps(..., lam=...)``.
"""

from __future__ import annotations

import math

from ._common import progress, randn_like, reverse_pairs

__all__ = ["vsrd"]


def _check_knobs(lam, kernel) -> None:
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {float(lam)}")
    if kernel not in ("exact", "small"):
        raise ValueError(f"kernel must be 'exact' or 'small', got {kernel!r}")


def vsrd(denoiser, x, schedule, *, lam, kernel="exact", steps=None, t_start=None, generator=None, callback=None,
         progress_bar=False):
    """Variance-scaled reverse diffusion with a conditional denoiser ``D(x_t, ab) = E[x0 | x_t, y]``.

    Args:
        lam: variance scale in [0, 1]; 0 is deterministic (ends at the MMSE for a Gaussian posterior).
        kernel: ``"exact"`` (needs ``denoiser.sample_x0``) or ``"small"``.
    """
    _check_knobs(lam, kernel)
    lam = float(lam)
    if kernel == "exact" and not callable(getattr(denoiser, "sample_x0", None)):
        raise TypeError("kernel='exact' needs an exact denoiser with sample_x0; use kernel='small' with a network")
    pairs = reverse_pairs(schedule, steps, t_start)
    for i, (t, s) in enumerate(progress(pairs, progress_bar, f"vsrd lam={lam:g}")):
        c1, c2, beta_tilde, _ = schedule.reverse_coefficients(t, s)
        ab_t = float(schedule.alpha_bar(t))
        x0 = denoiser(x, ab_t)
        if kernel == "exact" and lam > 0:
            x0 = x0 + math.sqrt(lam) * (denoiser.sample_x0(x, ab_t, generator) - x0)
        x_new = c1 * x0 + c2 * x
        if lam > 0 and beta_tilde > 0:
            x_new = x_new + math.sqrt(lam * beta_tilde) * randn_like(x, generator)
        x = x_new
        if callback is not None:
            callback(i, t, x, x0)
    return x
