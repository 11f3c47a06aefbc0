"""VML-MAP: mode seeking by minimising the variational mode-seeking loss at every noise level (Gutha, Vinuesa &
Azizpour, arXiv 2512.10524; docs/theory §8). **A reconstruction**: the paper has no public code, and its schedule
(gradient steps per level, step sizes, inter-level sampler) was not recoverable (docs/theory §8.1).

For each level ``t`` of a descending grid: ``inner_steps`` gradient steps ``x_t <- x_t - eta grad VML_S(x_t)``
(``inner_steps + final_steps`` at the last level) with ``grad VML_S = J_D^T [A^T (A D - y) / sigma_y^2 - sqrt(ab)
s_t(x_t)]`` (:func:`dptheory.vml_loss.vml_s_gradient`), then a DDIM (eta = 0) move to the next level from
``x0_hat = D(x_t)`` (at the last level the output is ``D(x_t)``).

Step sizes (a toolkit choice, docs/theory §8.3): the first step of a level is ``eta_t = step_size / h_t`` with
``h_t = 1 / (4 (1 - ab)) + ||A||^2 / (ab sigma_y^2)``, a Hessian bound for EVERY Gaussian prior (stable for
``0 < step_size < 2``); ``step_rule="bb"`` (default) then takes Barzilai-Borwein steps clipped to
``[eta_t, BB_CAP eta_t]``, ``"fixed"`` keeps ``eta_t``. Gaussian prior: ends at ``mu_y`` = MAP; GMM: at a mode.
Per level ``inner_steps + 1`` calls with a backward pass (``inner_steps = final_steps = 0``: DDIM, eta = 0).
"""

from __future__ import annotations

import math
import numbers

import torch

from ..denoisers import eps_from_x0
from ..vml_loss import vml_s_gradient_and_x0
from ._common import progress, randn_like, reverse_pairs

__all__ = ["vml_map", "vml_map_step_size", "operator_norm_squared"]


def operator_norm_squared(operator, like: torch.Tensor, *, iters: int = 100, generator=None) -> float:
    """``||A||^2`` (largest eigenvalue of ``A^T A``): from ``operator.singular_values(shape)`` (one input's shape
    ``like.shape[1:]``) when ``operator.has_singular_values``, else by power
    iteration on ``A_adjoint(A(v))`` started at ``v ~ N(0, I)`` shaped like ``like[:1]`` (``iters`` steps).

    Power iteration converges from below; the VML-MAP step bound keeps a factor-2 margin (``step_size < 2``).
    """
    if operator.has_singular_values:  # exact: the thin SVD of a matrix, or an image operator's diagonal
        s = operator.singular_values(tuple(like.shape[1:]))
        return float(s.max()) ** 2 if s.numel() else 0.0
    v = randn_like(like[:1], generator)
    est = 0.0
    for _ in range(iters):
        norm = v.norm()
        if float(norm) == 0.0:
            return 0.0
        w = operator.A_adjoint(operator.A(v / norm))
        est = float((v / norm * w).sum())
        v = w
    return est


def vml_map_step_size(alpha_bar: float, sigma_y: float, A_norm_squared: float, step_size: float = 1.0):
    """``eta_t = step_size * 4 ab (1 - ab) sigma_y^2 / (ab sigma_y^2 + 4 (1 - ab) ||A||^2)``: ``step_size``
    over the bound ``1 / (4 (1 - ab)) + ||A||^2 / (ab sigma_y^2)`` on the Hessian of VML_S (docs/theory §8.3).
    """
    ab, s2, L = float(alpha_bar), float(sigma_y) ** 2, float(A_norm_squared)
    return float(step_size) * 4.0 * ab * (1.0 - ab) * s2 / (ab * s2 + 4.0 * (1.0 - ab) * L)


def _check_knobs(sigma_y, inner_steps, final_steps, step_size, step_rule, A_norm_squared):
    if sigma_y is None or not float(sigma_y) > 0:
        raise ValueError(
            f"vml_map needs sigma_y > 0 (the data term is ||y - A D||^2 / (2 sigma_y^2)), got {sigma_y}"
        )
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, numbers.Integral) or inner_steps < 0:
        raise ValueError(f"inner_steps must be an integer >= 0, got {inner_steps!r}")
    if isinstance(final_steps, bool) or not isinstance(final_steps, numbers.Integral) or final_steps < 0:
        raise ValueError(f"final_steps must be an integer >= 0, got {final_steps!r}")
    if not (isinstance(step_size, numbers.Real) and 0.0 < float(step_size) < 2.0):
        raise ValueError(
            f"step_size must lie in (0, 2) (a fraction of the inverse Hessian bound; >= 2 diverges on a "
            f"Gaussian problem), got {step_size!r}"
        )
    if step_rule not in ("bb", "fixed"):
        raise ValueError(f"step_rule must be 'bb' or 'fixed', got {step_rule!r}")
    if A_norm_squared is not None and not (isinstance(A_norm_squared, numbers.Real) and A_norm_squared >= 0):
        raise ValueError(f"A_norm_squared must be a number >= 0 (||A||^2), got {A_norm_squared!r}")


def _per_particle(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(n,)`` -> ``(n, 1, ..., 1)`` broadcasting against ``like (n, ...)``."""
    return v.reshape(v.shape + (1,) * (like.ndim - 1))


BB_CAP = 1e4
"""The Barzilai-Borwein step is clipped to ``[eta_t, BB_CAP eta_t]`` (docs/theory §8.3; why: paper_notes/vml_map.md)."""


def _bb_step(x_old, x_new, g_old, g_new, eta_floor):
    """Barzilai-Borwein ``<s, s> / <s, q>`` per particle, clipped to ``[eta_floor, BB_CAP eta_floor]`` (the floor
    when ``<s, q> <= 0``)."""
    s = (x_new - x_old).flatten(1)
    q = (g_new - g_old).flatten(1)
    sq, ss = (s * q).sum(1), (s * s).sum(1)
    bb = torch.where(sq > 0, ss / torch.where(sq > 0, sq, torch.ones_like(sq)), torch.zeros_like(sq))
    return _per_particle(bb.clamp(eta_floor, BB_CAP * eta_floor), x_new)


def vml_map(denoiser, x, schedule, *, operator, y, sigma_y, steps=None, t_start=None, inner_steps=3,
            final_steps=50, step_size=1.0, step_rule="bb", A_norm_squared=None, generator=None, callback=None,
            progress_bar=False):
    """VML-MAP (reconstructed; module docstring): gradient steps on VML_S at each level, then DDIM (eta = 0).

    Args:
        denoiser: the PRIOR denoiser ``D(x_t, ab)``, differentiable in ``x_t``.
        x: start ``x_{t_start}``, ``(n, ...)``, usually ``N(0, I)``.
        schedule: :class:`~dptheory.VPSchedule`.
        operator: forward operator with ``A``/``A_adjoint``.
        y: the measurement (shared, or one per particle).
        sigma_y: noise std, > 0.
        steps: number of levels (reverse steps, respaced evenly); default: every step.
        t_start: first level (default ``T``).
        inner_steps: gradient steps on VML_S per level (toolkit default 3).
        final_steps: extra steps at the last level (toolkit default 50; with ``inner_steps = 0`` as well, the
            sampler is plain DDIM).
        step_size: in (0, 2), the fraction of the inverse Hessian bound ``1 / h_t`` used by the first step of
            each level (by all steps with ``step_rule="fixed"``); toolkit default 1.
        step_rule: ``"bb"`` (Barzilai-Borwein after the first step of a level; default) or ``"fixed"``.
        A_norm_squared: ``||A||^2``; default from :func:`operator_norm_squared` (``svd()`` or power iteration,
            which draws its start from ``generator``).
        callback: called as ``callback(i, t, x_s, x0_hat)`` after each level.

    Returns:
        ``x0_hat`` after the last level, ``(n, ...)``.
    """
    _check_knobs(sigma_y, inner_steps, final_steps, step_size, step_rule, A_norm_squared)
    sigma_y = float(sigma_y)
    pairs = reverse_pairs(schedule, steps, t_start)
    if A_norm_squared is None:
        A_norm_squared = operator_norm_squared(operator, x, generator=generator)
    for i, (t, s) in enumerate(progress(pairs, progress_bar, "vml-map")):
        ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
        eta_t = vml_map_step_size(ab_t, sigma_y, A_norm_squared, step_size)
        n_steps = inner_steps + (final_steps if s == 0 else 0)
        if n_steps == 0:
            x0 = denoiser(x, ab_t).detach()
        else:
            grad, x0 = vml_s_gradient_and_x0(denoiser, x, ab_t, operator, y, sigma_y)
            eta = eta_t
            for _ in range(n_steps):
                x_new = x - eta * grad
                grad_new, x0 = vml_s_gradient_and_x0(denoiser, x_new, ab_t, operator, y, sigma_y)
                if step_rule == "bb":
                    eta = _bb_step(x, x_new, grad, grad_new, eta_t)
                x, grad = x_new, grad_new
        eps = eps_from_x0(x, x0, ab_t)
        x = math.sqrt(ab_s) * x0 + math.sqrt(1.0 - ab_s) * eps
        if callback is not None:
            callback(i, t, x, x0)
    return x
