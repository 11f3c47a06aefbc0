"""Pseudoinverse-guided diffusion models (PiGDM), Song, Vahdat, Mardani & Kautz, ICLR 2023 (OpenReview
9_gsMA8MRKQ), eqs. (7)-(8) and Algorithm 1; reference code NVlabs/RED-diff ``algos/pgdm.py``.

With ``p(x0 | x_t) ~ N(x0_hat, r_t^2 I)``, ``r_t^2 = sigma_t^2 / (1 + sigma_t^2) = 1 - ab_t``, the guidance is

    g = grad_{x_t} log p_t(y | x_t) = J^T A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat),   J = dx0_hat/dx_t,

one backward pass through the denoiser, with ``A^T (r^2 A A^T + s^2 I)^{-1}`` a spectral filter (exact for any
operator with an SVD). The guided estimate is ``x0_y = x0_hat + w ((1 - ab_t) / sqrt(ab_t)) g`` (``guidance=
"bayes"``; ``"official"``, the default, multiplies the correction by ``ab_t`` as the reference code does), and the
step is DDIM (eta) with ``x0_y``. For data ``N(m, I)`` ``x0_y = E[x0 | x_t, y]`` at ``w = 1`` with ``"bayes"``
(claim PEER-3). ``init="pinv"`` starts at ``sqrt(ab_T) A^+ y + sqrt(1 - ab_T) z``; ``init="given"`` uses the
input. Affine when ``D`` is (:func:`dptheory.sampler_law`). One denoiser call with a backward pass per step.
The DDIM step and the differences from the reference code: ``paper_notes/peers.md``.
"""

from __future__ import annotations

import math
import numbers

import torch

from ._common import apply_A, progress, randn_like, reverse_pairs
from ._svd import Spectrum, safe_div

__all__ = ["pigdm", "pigdm_guided_x0"]


def _check_knobs(sigma_y, eta, weight, init, guidance="official"):
    if guidance not in ("official", "bayes"):
        raise ValueError(f"guidance must be 'official' (coefficient ab_t x Bayes) or 'bayes', got {guidance!r}")
    if sigma_y is None or not float(sigma_y) >= 0:
        raise ValueError(f"pigdm needs sigma_y >= 0 (the measurement noise std), got {sigma_y}")
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1] (DDIM noise), got {eta!r}")
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0.0 <= float(weight) < math.inf:
        raise ValueError(f"weight must be a finite number >= 0 (the guidance weight), got {weight!r}")
    if init not in ("pinv", "given"):
        raise ValueError(f"init must be 'pinv' (x_T from A^+ y) or 'given' (use x as x_T), got {init!r}")


def pigdm_guided_x0(denoiser, x, ab, spec: Spectrum, operator, y, sigma_y: float, weight: float = 1.0):
    """``(x0_y, x0_hat)``: the PiGDM-guided and the plain denoiser estimate at level ``ab`` (module docstring),
    with guidance weight ``weight`` times the Bayes coefficient."""
    r2 = 1.0 - ab
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0 = denoiser(xg, ab)
        resid = operator.A_adjoint(y - apply_A(operator, x0.detach()))
        h = spec.filter(lambda s: torch.where(s > 0, safe_div(torch.ones_like(s), r2 * s**2 + sigma_y**2),
                                              torch.zeros_like(s)), resid)
        (g,) = torch.autograd.grad((x0 * h.detach()).sum(), xg)
    x0 = x0.detach()
    return x0 + weight * (1.0 - ab) / math.sqrt(ab) * g, x0


def pigdm(denoiser, x, schedule, *, operator, y, sigma_y, eta=1.0, weight=1.0, guidance="official", init="pinv",
          steps=100, t_start=None, generator=None, callback=None, progress_bar=False):
    """PiGDM (Song et al. 2023, Algorithm 1; module docstring). Returns ``x0_y`` of the last step, ``(n, ...)``.

    Args:
        denoiser: the PRIOR denoiser ``D(x_t, ab)``, differentiable in ``x_t``.
        x: white noise ``z`` of the start (``init="pinv"``) or ``x_T`` itself (``init="given"``).
        operator: an operator with an SVD (:mod:`dptheory.samplers._svd`); ``y``; ``sigma_y`` (>= 0).
        eta: DDIM noise in [0, 1] (1: ``beta_tilde``, the DDPM posterior variance).
        weight: guidance weight ``w`` >= 0.
        guidance: ``"official"`` (default: the reference code's coefficient, ``ab_t`` times the Bayes one, which
            keeps a network's Jacobian error from being amplified by ``1 / ab_t`` at high noise; the photo UNet
            diverges with ``"bayes"`` at 20 steps) or ``"bayes"`` (Tweedie's formula for the guided score; exact for
            data ``N(m, I)`` at ``w = 1``).
        steps: reverse steps (default 100); ``t_start``: first level (default T).
    """
    _check_knobs(sigma_y, eta, weight, init, guidance)
    sy, eta, weight = float(sigma_y), float(eta), float(weight)
    spec = Spectrum(operator, x)
    pairs = reverse_pairs(schedule, steps, t_start)
    if init == "pinv" and pairs:
        ab = float(schedule.alpha_bar(pairs[0][0]))
        x = math.sqrt(ab) * spec.pinv(y) + math.sqrt(1.0 - ab) * x
    for i, (t, s) in enumerate(progress(pairs, progress_bar, "pigdm")):
        ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
        _, _, beta_tilde, _ = schedule.reverse_coefficients(t, s)
        w = weight * (ab_t if guidance == "official" else 1.0)
        x0_y, _ = pigdm_guided_x0(denoiser, x, ab_t, spec, operator, y, sy, w)
        eps = (x - math.sqrt(ab_t) * x0_y) / math.sqrt(1.0 - ab_t)
        c2 = eta**2 * beta_tilde
        x = math.sqrt(ab_s) * x0_y + math.sqrt(max(1.0 - ab_s - c2, 0.0)) * eps
        if c2 > 0:
            x = x + math.sqrt(c2) * randn_like(x, generator)
        if callback is not None:
            callback(i, t, x, x0_y)
    return x.detach()
