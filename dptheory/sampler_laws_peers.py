"""Affine steps of DDRM, DiffPIR, PiGDM and DAPS on a linear-Gaussian problem, for :func:`dptheory.sampler_law`.

With the exact prior denoiser ``D(x_t) = K x_t + J Y + b`` (affine; :class:`dptheory.sampler_laws._BaseLaw`) every step
of these samplers is ``x_s = F x_t + H Y + h + xi``, ``xi ~ N(0, Q)`` independent of the past, written below line
by line as the samplers (:mod:`dptheory.samplers.ddrm`, ``diffpir``, ``pigdm``, ``daps``) compute it. Spectral
filters ``V diag(c(s)) V^T`` use the same :class:`~dptheory.samplers._svd.Spectrum` as the samplers, so the
singular-value cut-off is identical.

DDRM and PiGDM transform their input noise into ``x_T`` (``init="ddrm"`` / ``"pinv"``): that is one more affine
map before the first step.
"""

from __future__ import annotations

import math

import torch

from .samplers._common import reverse_pairs
from .samplers._svd import Spectrum, safe_div, ve_sigma
from .samplers.daps import daps_lr, daps_r2
from .samplers.ddrm import ddrm_coefficients, ddrm_init_coefficients
from .samplers.diffpir import diffpir_prox_coefficients

__all__ = ["PEER_METHODS", "peer_maps"]

PEER_METHODS = ("ddrm", "diffpir", "pigdm", "daps")
"""The methods whose affine maps are here (their knobs, defaults and checks: ``dptheory.samplers.METHODS``)."""


def peer_maps(problem, base, schedule, method: str, kn: dict, pairs):
    """Yield ``(F, H, h, Q)`` for each affine map of ``method`` on the grid ``pairs`` (module docstring)."""
    A = problem.A
    d = problem.dim
    eye = torch.eye(d, dtype=A.dtype, device=A.device)
    spec = Spectrum(problem.operator, A.new_zeros(1, d))
    V = spec.V.to(A.dtype)

    def vf(c):
        return (V * c) @ V.T

    a_pinv = vf(safe_div(torch.ones_like(spec.s), spec.s**2)) @ A.T  # (d, m), as Spectrum.pinv
    zeros_d, zeros_dd = A.new_zeros(d), A.new_zeros(d, d)
    sy = problem.sigma_y
    if not pairs:
        return
    ab_first = float(schedule.alpha_bar(pairs[0][0]))
    if method == "ddrm" and kn["init"] == "ddrm":
        c_y, c_z = ddrm_init_coefficients(spec.s, ve_sigma(ab_first), sy)
        r = math.sqrt(ab_first)
        yield r * vf(c_z), r * vf(c_y) @ a_pinv, zeros_d, zeros_dd
    if method == "pigdm" and kn["init"] == "pinv":
        yield math.sqrt(1.0 - ab_first) * eye, math.sqrt(ab_first) * a_pinv, zeros_d, zeros_dd
    n_levels = len(pairs)
    for i, (t, s_) in enumerate(pairs):
        ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s_))
        K, J, b, _ = base.denoiser(ab_t)
        if method == "ddrm":
            sig_t, sig_s = ve_sigma(ab_t), ve_sigma(ab_s)
            c_e, c_r, c_z = ddrm_coefficients(spec.s, sig_s, sy, float(kn["eta"]), float(kn["eta_b"]))
            Ce, Cr = vf(c_e), vf(c_r)
            q = math.sqrt(ab_s)
            F = q * (K + Ce @ (eye / math.sqrt(ab_t) - K) / sig_t - Cr @ K)
            H = q * (J - Ce @ J / sig_t + Cr @ (a_pinv - J))
            h = q * (b - Ce @ b / sig_t - Cr @ b)
            Q = ab_s * vf(c_z**2) if sig_s > 0 else zeros_dd
        elif method == "diffpir":
            rho = float(kn["lam"]) * sy**2 / ve_sigma(ab_t) ** 2
            c_aty, c_x0 = diffpir_prox_coefficients(spec.s, rho)
            Cx0 = vf(c_x0)
            k = math.sqrt((1.0 - ab_s) * (1.0 - float(kn["zeta"])))
            coef = math.sqrt(ab_s) - k * math.sqrt(ab_t / (1.0 - ab_t))
            F = coef * (Cx0 @ K) + (k / math.sqrt(1.0 - ab_t)) * eye
            H = coef * (vf(c_aty) @ A.T + Cx0 @ J)
            h = coef * (Cx0 @ b)
            Q = (1.0 - ab_s) * float(kn["zeta"]) * eye if ab_s < 1.0 else zeros_dd
        elif method == "pigdm":
            r2 = 1.0 - ab_t
            c = torch.where(spec.s > 0, safe_div(torch.ones_like(spec.s), r2 * spec.s**2 + sy**2),
                            torch.zeros_like(spec.s))
            w = float(kn["weight"]) * (ab_t if kn["guidance"] == "official" else 1.0)
            G = w * (1.0 - ab_t) / math.sqrt(ab_t) * K.T @ vf(c) @ A.T  # (d, m)
            P = eye - G @ A
            _, _, beta_tilde, _ = schedule.reverse_coefficients(t, s_)
            c2 = float(kn["eta"]) ** 2 * beta_tilde
            e = math.sqrt(max(1.0 - ab_s - c2, 0.0))
            coef = math.sqrt(ab_s) - e * math.sqrt(ab_t / (1.0 - ab_t))
            F = coef * (P @ K) + (e / math.sqrt(1.0 - ab_t)) * eye
            H = coef * (P @ J + G)
            h = coef * (P @ b)
            Q = c2 * eye
        else:  # daps
            F, H, h, Q = _daps_level(problem, base, schedule, kn, t, ab_s, i, n_levels, eye)
        yield F, H, h, Q


def _daps_level(problem, base, schedule, kn, t, ab_s, i, n_levels, eye):
    """One DAPS level: the ODE estimate, the Langevin chain, the re-noising (all affine)."""
    A = problem.A
    P, R, p = eye.clone(), A.new_zeros(eye.shape[0], A.shape[0]), A.new_zeros(eye.shape[0])
    for u, v in reverse_pairs(schedule, min(int(kn["ode_steps"]), t), t):
        ab_u, ab_v = float(schedule.alpha_bar(u)), float(schedule.alpha_bar(v))
        K, J, b, _ = base.denoiser(ab_u)
        cu = math.sqrt(ab_v) - math.sqrt(1.0 - ab_v) * math.sqrt(ab_u / (1.0 - ab_u))
        cx = math.sqrt(1.0 - ab_v) / math.sqrt(1.0 - ab_u)
        M = cu * K + cx * eye
        P, R, p = M @ P, M @ R + cu * J, M @ p + cu * b
    ab_t = float(schedule.alpha_bar(t))
    r2 = daps_r2(ab_t, kn["r"])
    tau2 = float(problem.sigma_y if kn["tau"] is None else kn["tau"]) ** 2
    step = daps_lr(kn["lr"], kn["lr_min_ratio"], i, n_levels)
    M = eye - step * (eye / r2 + A.T @ A / tau2)
    X, Y, c0, Q = P.clone(), R.clone(), p.clone(), torch.zeros_like(eye)
    for _ in range(int(kn["langevin_steps"])):
        X = M @ X + (step / r2) * P
        Y = M @ Y + (step / r2) * R + (step / tau2) * A.T
        c0 = M @ c0 + (step / r2) * p
        Q = M @ Q @ M.T + 2.0 * step * eye
    if ab_s == 1.0:
        return X, Y, c0, Q
    q = math.sqrt(ab_s)
    return q * X, q * Y, q * c0, ab_s * Q + (1.0 - ab_s) * eye
