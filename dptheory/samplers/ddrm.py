"""Denoising Diffusion Restoration Models (DDRM), Kawar, Elad, Ermon & Song, NeurIPS 2022 (arXiv 2201.11793),
eqs. (7)-(8); official code bahjat-kawar/ddrm ``functions/denoising.py: efficient_generalized_steps``.

In the spectral space of ``A = U diag(s) V^T`` and VE units ``u_t = x_t / sqrt(ab_t) = x0 + sigma_t eps``, with
``x0_bar = V^T D(x_t)``, ``y_bar = V^T A^+ y`` and ``e_bar = (u_t_bar - x0_bar) / sigma_t``, a step ``t -> s``
draws per direction ``i`` (cases on the NEXT level ``sigma_s``, as the official code does):

- ``s_i = 0`` or ``s_i sigma_s = sigma_y``:  ``x0_bar + sqrt(1 - eta^2) sigma_s e_bar + eta sigma_s z``;
- ``s_i sigma_s < sigma_y``: ``x0_bar + sqrt(1 - eta^2) sigma_s (y_bar - x0_bar) s_i / sigma_y + eta sigma_s z``;
- ``s_i sigma_s > sigma_y``: ``(1 - eta_b) x0_bar + eta_b y_bar + sqrt(sigma_s^2 - eta_b^2 sigma_y^2 / s_i^2) z``;

then ``x_s = sqrt(ab_s) V u_s_bar``; the last step returns ``D(x_t)``. ``init="ddrm"``: eq. (7), see
``paper_notes/peers.md``; ``init="given"``: ``x`` is ``x_T``. Forward marginals kept (PEER-1), not the posterior
(PEER-2), exact law by :func:`dptheory.sampler_law`; one call per step; ``eta = 0.85``, ``eta_b = 1``, 20 steps.
"""

from __future__ import annotations

import math
import numbers

import torch

from ._common import progress, randn_like, reverse_pairs
from ._svd import Spectrum, safe_div, ve_sigma

__all__ = ["ddrm", "ddrm_coefficients", "ddrm_init_coefficients"]


def _check_knobs(sigma_y, eta, eta_b, init):
    if sigma_y is None or not float(sigma_y) >= 0:
        raise ValueError(f"ddrm needs sigma_y >= 0 (the measurement noise std), got {sigma_y}")
    for name, v in (("eta", eta), ("eta_b", eta_b)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    if init not in ("ddrm", "given"):
        raise ValueError(f"init must be 'ddrm' (DDRM's p(x_T | y)) or 'given' (use x as x_T), got {init!r}")


def ddrm_coefficients(s: torch.Tensor, sigma_s: float, sigma_y: float, eta: float, eta_b: float):
    """Per-direction coefficients ``(c_e, c_r, c_z)`` of one DDRM step (module docstring):

        u_s_bar = x0_bar + c_e e_bar + c_r (y_bar - x0_bar) + c_z z,

    for singular values ``s`` (0 on the null space) and the next VE level ``sigma_s``.
    """
    pos = s > 0
    before = pos & (s * sigma_s > sigma_y)
    after = pos & (s * sigma_s < sigma_y)
    keep = math.sqrt(1.0 - eta**2) * sigma_s
    c_e = torch.where(before | after, torch.zeros_like(s), torch.full_like(s, keep))
    c_r = torch.where(after, keep * safe_div(s, torch.full_like(s, sigma_y)),
                      torch.where(before, torch.full_like(s, eta_b), torch.zeros_like(s)))
    rest = (sigma_s**2 - eta_b**2 * safe_div(torch.full_like(s, sigma_y**2), s**2)).clamp_min(0.0).sqrt()
    c_z = torch.where(before, rest, torch.full_like(s, eta * sigma_s))
    return c_e, c_r, c_z


def ddrm_init_coefficients(s: torch.Tensor, sigma_T: float, sigma_y: float):
    """``(c_y, c_z)`` of the DDRM start ``u_T_bar = c_y y_bar + c_z z`` (eq. (7), module docstring)."""
    big = (s > 0) & (s * sigma_T > sigma_y)
    c_y = big.to(s.dtype)
    rest = (sigma_T**2 - safe_div(torch.full_like(s, sigma_y**2), s**2)).clamp_min(0.0).sqrt()
    return c_y, torch.where(big, rest, torch.full_like(s, sigma_T))


def ddrm(denoiser, x, schedule, *, operator, y, sigma_y, eta=0.85, eta_b=1.0, init="ddrm", steps=20,
         t_start=None, generator=None, callback=None, progress_bar=False):
    """DDRM (Kawar et al. 2022, eqs. (7)-(8); module docstring). Returns ``D(x_1)`` of the last step, ``(n, ...)``.

    Args:
        denoiser: the PRIOR denoiser ``D(x_t, ab)``.
        x: white noise ``(n, ...)``: the ``z`` of the DDRM start (``init="ddrm"``), or ``x_T`` itself
            (``init="given"``).
        schedule: :class:`~dptheory.VPSchedule`; ``steps``, ``t_start``: the grid (default 20 steps, the paper's
            NFE, from T).
        operator: an operator with an SVD (see :mod:`dptheory.samplers._svd`); ``y``: the measurement (shared
            or one per particle); ``sigma_y``: its noise std (>= 0).
        eta: in [0, 1], the fresh-noise fraction of the null-space and less-noisy-than-y directions (0.85).
        eta_b: in [0, 1], the weight of ``y_bar`` in the noisier-than-y directions (1).
        callback: ``callback(i, t, x_s, x0_hat)`` after each step.
    """
    _check_knobs(sigma_y, eta, eta_b, init)
    sy, eta, eta_b = float(sigma_y), float(eta), float(eta_b)
    spec = Spectrum(operator, x)
    y_bar = spec.pinv(y)
    pairs = reverse_pairs(schedule, steps, t_start)
    if init == "ddrm" and pairs:
        ab = float(schedule.alpha_bar(pairs[0][0]))
        c_y, c_z = ddrm_init_coefficients(spec.s, ve_sigma(ab), sy)
        x = math.sqrt(ab) * (spec.filter(c_y, y_bar) + spec.filter(c_z, x))
    for i, (t, s_) in enumerate(progress(pairs, progress_bar, "ddrm")):
        ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s_))
        x0 = denoiser(x, ab_t)
        e = (x / math.sqrt(ab_t) - x0) / ve_sigma(ab_t)
        sig_s = ve_sigma(ab_s)
        c_e, c_r, c_z = ddrm_coefficients(spec.s, sig_s, sy, eta, eta_b)
        u = x0 + spec.filter(c_e, e) + spec.filter(c_r, y_bar - x0)
        if sig_s > 0:
            u = u + spec.filter(c_z, randn_like(x, generator))
        x = math.sqrt(ab_s) * u
        if callback is not None:
            callback(i, t, x, x0)
    return x
