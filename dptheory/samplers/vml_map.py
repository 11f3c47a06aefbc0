"""VML-MAP: mode seeking by minimising the variational mode-seeking loss at every noise level (Gutha,
Vinuesa & Azizpour, arXiv 2512.10524; docs/theory §8). **A reconstruction**: the paper has no public code, and its
exact schedule (gradient steps per level, step sizes, inter-level sampler) was not recoverable (docs/theory §8.1).

For each level ``t`` of a descending grid (docs/theory §8.2, "reconstructed algorithm"):

1. ``inner_steps`` gradient steps ``x_t <- x_t - eta grad VML_S(x_t)`` (``inner_steps + final_steps`` at the
   last level), with
   ``grad VML_S = J_D^T [A^T (A D - y) / sigma_y^2 - sqrt(ab) s_t(x_t)]``
   (:func:`dptheory.vml_loss.vml_s_gradient`, one vector-Jacobian product through the denoiser);
2. a deterministic DDIM (eta = 0) move to the next level ``s`` from ``x0_hat = D(x_t)``:
   ``x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s) eps_hat``. At ``s = 0`` this returns ``x0_hat``, i.e. ``D(x_t)``
   at the last level after its gradient steps.

**Step sizes (a toolkit choice, not the paper's).** For a Gaussian prior N(m, S) the Hessian of VML_S in
``x_t`` is ``K_t Sigma_y^{-1} K_t``, with ``K_t = sqrt(ab) S S_t^{-1}`` and
``Sigma_y^{-1} = S^{-1} + A^T A / sigma_y^2``. Per eigenvalue ``lam`` of ``S`` (``c = 1 - ab``): the prior
part ``ab lam / (ab lam + c)^2`` is at most ``1 / (4c)`` (at ``ab lam = c``), and
``||K_t|| = sqrt(ab) lam / (ab lam + c) <= 1 / sqrt(ab)``, so for EVERY Gaussian prior, in any dimension,

    ||Hessian|| <= h_t := 1 / (4 (1 - ab)) + ||A||^2 / (ab sigma_y^2).

The first step at each level is ``eta_t = step_size / h_t``
``= step_size * 4 ab (1 - ab) sigma_y^2 / (ab sigma_y^2 + 4 (1 - ab) ||A||^2)``: prior-free (it needs only
``||A||^2``, from ``operator.singular_values`` or power iteration through ``A``/``A_adjoint``) and stable on every
Gaussian problem for ``0 < step_size < 2``. The bound is attained only by prior directions of variance
``~ (1 - ab)/ab``, so at small ``t`` it is far too cautious for the others (for G2 at ``t = 1`` by a factor
~ 4000). With ``step_rule="bb"`` (default) the later steps of a level therefore use the Barzilai-Borwein step
``<s, s> / <s, q>`` (``s`` = last step, ``q`` = change of gradient: the inverse of a Rayleigh quotient of
the average Hessian along ``s``; Barzilai & Borwein 1988), per particle, clipped to
``[eta_t, BB_CAP eta_t]`` (``BB_CAP = 1e4``) and replaced by ``eta_t`` where the secant curvature is not
positive (a non-convex GMM region). BB is non-monotone but converges on strongly convex quadratics (Raydan
1993). The cap matters once a particle has converged: its secant is then round-off, and an uncapped BB step
of 2e14 from a 3e-14 secant was observed to throw a converged GMM particle 19 units away; capped, such a step
moves it by ~1e4 eta_t |grad| (~1e-12 in float64). ``step_rule="fixed"`` keeps ``eta_t`` throughout.

**The last level** is where the answer is read off, and where VML_S is closest to ``-log p(x0 | y)``. The
DDIM moves leave an error at each level that a few steps only partly remove (16-D inpainting, 30 levels x 5
steps: 3e-3 from the MAP), so the last level gets ``final_steps`` extra steps (toolkit default 50: 3e-8 in
the same problem; ~1% of the cost of 1000 levels x 4 calls).

**Limits.** As ``sigma_y -> 0`` the problem itself becomes ill-conditioned; the paper's SVD preconditioner
(its Eq. 8, not recovered) is not implemented. The score comes from the denoiser by Tweedie,
``s_t = (sqrt(ab) D - x_t) / (1 - ab)``, whose round-off is ``~ eps |x_t| / (1 - ab)``: in float32 a last
level at ``t = 10`` (``1 - ab = 1.9e-3``) limits the end point to ~5e-4 (3e-5 at ``t = 33``).

**Where it converges.** For a Gaussian prior VML_S = VML + const and its minimiser satisfies
``D_t(x_t) = mu_y`` at every level (docs/theory §8.2), so with enough inner steps at the last level the output is
``mu_y`` = MAP = MMSE (G2, 50 levels: 2e-10). For a GMM prior the stationarity condition at the last level is
``sqrt(ab) s_t(x_t) = A^T (A D - y) / sigma_y^2``, the MAP condition
``grad log p(x0) = A^T (A x0 - y) / sigma_y^2`` up to O(1 - ab) of the last level (exact where one component
dominates: for a Gaussian ``sqrt(ab) s_t(x_t) = grad log p(D_t(x_t))``). Which mode is reached depends on the
start (mode seeking).

Cost per level: ``inner_steps + 1`` denoiser calls with a backward pass (the last one also gives the
``x0_hat`` of the DDIM move), plus ``final_steps`` at the last level; one plain call per level when
``inner_steps = final_steps = 0``, which is exactly DDIM (eta = 0) with the prior denoiser.
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
    over the bound ``1 / (4 (1 - ab)) + ||A||^2 / (ab sigma_y^2)`` on the Hessian of VML_S (module docstring).
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
"""The Barzilai-Borwein step is clipped to ``[eta_t, BB_CAP eta_t]`` (module docstring)."""


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
