"""RED-Diff: variational posterior mean by stochastic optimisation against the denoiser (Mardani, Song, Kautz &
Vahdat, ICLR 2024, arXiv 2305.04391, Algorithm 1; official code NVlabs/RED-diff ``algos/reddiff.py``; theory §7).

From ``mu = A^+ y``, for each level ``t`` of a descending sweep (the code, and the paper's best ablation) or
``t ~ U{1..T}`` (its theory), draw ``eps ~ N(0, I)`` and take one Adam step (lr 0.1, betas (0.9, 0.99)) on

    L(mu) = obs_weight ||y - A mu||^2 / (2 sigma_y^2) + lam_t <stopgrad(eps_hat(x_t) - eps), mu>,
    x_t = sqrt(ab_t) mu + sqrt(1 - ab_t) eps,     lam_t = lam sqrt((1 - ab_t) / ab_t) = lam / sqrt(SNR_t).

Both terms are SUMS; the official code MEAN-reduces them and has no ``sigma_y``, so its balance is ours with
``obs_weight = sigma_y^2 dim(x) / dim(y)`` (docs/theory §7.1). For a Gaussian prior and ``t ~ U{1..T}`` the
expected gradient vanishes at the posterior mean under ``N(m, P_eff^{-1})``, ``P_eff = lam mean_t[(1 - ab_t)
S_t^{-1}]`` (:func:`red_diff_fixed_point`, docs/theory §7.2): the MAP of a weaker prior, not of ``p``. With
``optimizer="sgd"`` the stationary mean of the iterates is that point; with Adam only approximately.
"""

from __future__ import annotations

import math
import numbers

import torch

from ..gaussian import Gaussian
from ._common import apply_A, progress, randn_like

__all__ = ["red_diff", "red_diff_effective_precision", "red_diff_fixed_point", "official_levels"]


def _check_knobs(sigma_y, lam, lr, betas, t_order, obs_weight, optimizer):
    if sigma_y is None or not float(sigma_y) > 0:
        raise ValueError(
            f"red_diff needs sigma_y > 0 (the data term is ||y - A mu||^2 / (2 sigma_y^2)), got {sigma_y}"
        )
    for name, v in (("lam", lam), ("obs_weight", obs_weight)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= float(v) < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0.0 < float(lr) < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if (
        not isinstance(betas, (tuple, list))
        or len(betas) != 2
        or not all(isinstance(b, numbers.Real) and 0.0 <= float(b) < 1.0 for b in betas)
    ):
        raise ValueError(f"betas must be a pair (beta1, beta2) in [0, 1), got {betas!r}")
    if t_order not in ("descending", "random"):
        raise ValueError(f"t_order must be 'descending' or 'random', got {t_order!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")


def official_levels(T: int, steps: int) -> list[int]:
    """The official RED-Diff sweep in this package's 1-based levels: ``ts = range(0, T, T // steps)`` visited in
    reverse with ``alpha(t) = alphas_cumprod[t + 1]`` (NVlabs/RED-diff ``utils/functions.py: get_timesteps`` and
    ``models/diffusion.py: alpha``; ``start_step = T``, ``end_step = 0``), i.e. levels ``t + 1``: ending at level
    1 (alpha_bar = 0.9999 on the linear schedule) and never visiting ``T``. ``len(range(0, T, T // steps))``
    levels, which exceeds ``steps`` when ``steps`` does not divide ``T`` (e.g. 334 for 300 steps of 1000)."""
    return [t + 1 for t in reversed(range(0, T, T // steps))]


def _levels(schedule, steps, t_order, generator, device, grid="project"):
    """The ``t`` of each iteration: a descending grid ``T .. >= 1`` or i.i.d. ``U{1..T}`` draws."""
    n = schedule.T if steps is None else steps
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"steps must be a positive integer (number of iterations), got {steps!r}")
    if grid not in ("project", "official"):
        raise ValueError(f"grid must be 'project' or 'official', got {grid!r}")
    if grid == "official" and t_order != "descending":
        raise ValueError("grid='official' is a descending sweep (t_order='descending')")
    if grid == "official" and n > schedule.T:
        raise ValueError(f"steps must be at most T = {schedule.T}, got {n}")
    if t_order == "descending":
        if grid == "official":
            return official_levels(schedule.T, int(n))
        return schedule.timesteps(steps)[:-1]  # drop the final 0 (no noise, no eps prediction)
    return (
        int(torch.randint(1, schedule.T + 1, (1,), generator=generator, device=device)) for _ in range(int(n))
    )


def red_diff(denoiser, x, schedule, *, operator, y, sigma_y, lam=0.25, lr=0.1, betas=(0.9, 0.99), steps=None,
             t_order="descending", obs_weight=1.0, optimizer="adam", grid="project", returned="last",
             reduction="sum", generator=None, callback=None, progress_bar=False):
    """RED-Diff (Mardani et al. 2024, Algorithm 1; module docstring). Returns the final ``mu``, ``(n, ...)``.

    Args:
        denoiser: the PRIOR denoiser ``D(x_t, ab)``; only ``denoiser.eps`` is used (no gradient through it).
        x: the start ``mu_0``, usually ``A^+ y`` (one row per particle; each particle draws its own noise, the
            levels ``t`` are shared).
        schedule: :class:`~dptheory.VPSchedule`.
        operator: forward operator with ``A``/``A_adjoint``.
        y: the measurement (shared, or one per particle).
        sigma_y: noise std, > 0.
        lam: regulariser weight ``lam`` of ``lam_t = lam / sqrt(SNR_t)`` (official ``grad_term_weight`` 0.25).
        lr, betas: optimiser settings (official Adam: 0.1, (0.9, 0.99)); ``betas`` is ignored by SGD.
        steps: iterations: the number of levels of the descending grid (default every ``t = T..1``), or of
            ``U{1..T}`` draws (default ``T``).
        t_order: ``"descending"`` (official) or ``"random"`` (``t ~ U{1..T}``, drawn from ``generator``).
        obs_weight: weight of the data term (official ``obs_weight`` 1 with MEAN reductions corresponds to
            ``sigma_y^2 dim(x) / dim(y)`` here).
        optimizer: ``"adam"`` (official) or ``"sgd"`` (plain SGD: the theory's fixed point is exact in mean).
        grid: the levels of the descending sweep: ``"project"`` (``schedule.timesteps(steps)[:-1]``: ``T`` down to
            the last positive grid point) or ``"official"`` (:func:`official_levels`: ``alphas_cumprod[t + 1]`` for
            ``t`` in ``range(0, T, T // steps)``, down to level 1). The two are equal for ``steps = T`` (every level
            ``T..1``); on a respaced grid the official one is shifted down (e.g. 50 steps: 981, 961, ..., 1
            against 1000, 980, ..., 20).
        returned: ``"last"`` (the iterate after the last optimiser step) or ``"official"`` (the iterate BEFORE the
            last step: the official ``sample`` returns ``x0_pred = mu + sigma_x0 noise`` formed before the last
            ``optimizer.step()``, with ``sigma_x0 = 0``).
        reduction: ``"sum"`` (the loss above) or ``"mean"`` (the official loss, per particle: ``obs_weight
            mean((y - A mu)^2) / 2 + lam_t mean((eps_hat - eps) mu)``, no ``sigma_y``). Adam is invariant to a
            global gradient scale only up to its ``eps = 1e-8``, so ``"mean"`` is what reproduces the official
            iterates exactly.
        callback: called as ``callback(i, t, mu, None)`` after each step.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    _check_knobs(sigma_y, lam, lr, betas, t_order, obs_weight, optimizer)
    if returned not in ("last", "official"):
        raise ValueError(f"returned must be 'last' or 'official', got {returned!r}")
    s2 = float(sigma_y) ** 2
    mu = x.detach().clone().requires_grad_(True)
    if optimizer == "adam":
        opt = torch.optim.Adam([mu], lr=float(lr), betas=tuple(float(b) for b in betas), weight_decay=0.0)
    else:
        opt = torch.optim.SGD([mu], lr=float(lr))
    levels = _levels(schedule, steps, t_order, generator, x.device, grid)
    before_last = mu.detach().clone()
    total = len(levels) if isinstance(levels, list) else (schedule.T if steps is None else steps)
    for i, t in enumerate(progress(levels, progress_bar, "red-diff", total=total)):
        ab = float(schedule.alpha_bar(t))
        lam_t = float(lam) * math.sqrt((1.0 - ab) / ab)
        with torch.no_grad():
            eps = randn_like(mu, generator)
            x_t = math.sqrt(ab) * mu + math.sqrt(1.0 - ab) * eps
            direction = denoiser.eps(x_t, ab) - eps  # stopgrad(eps_hat - eps)
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            r = y - apply_A(operator, mu)
            if reduction == "sum":
                loss = float(obs_weight) * r.square().sum() / (2.0 * s2) + lam_t * (direction * mu).sum()
            else:
                n = mu.shape[0]
                loss = (float(obs_weight) * r.reshape(n, -1).square().mean(1).sum() / 2.0
                        + lam_t * (direction * mu).reshape(n, -1).mean(1).sum())
            loss.backward()
        if returned == "official":
            before_last = mu.detach().clone()
        opt.step()
        if callback is not None:
            callback(i, t, mu.detach().clone(), None)  # a copy: Adam updates mu in place
    return before_last if returned == "official" else mu.detach()


def red_diff_effective_precision(prior: Gaussian, lam: float, schedule) -> torch.Tensor:
    """``P_eff = lam mean_{t=1..T} [(1 - ab_t) S_t^{-1}]`` with ``S_t = ab_t S + (1 - ab_t) I`` (docs/theory §7.2).

    Returns ``(d, d)``. The expected RED-Diff regulariser gradient at a uniformly drawn level is
    ``P_eff (mu - m)`` for the prior ``N(m, S)``. Computed exactly from the eigendecomposition
    ``S = V diag(lam_i) V^T``: ``P_eff = V diag(lam mean_t (1 - ab_t) / (ab_t lam_i + 1 - ab_t)) V^T``.
    """
    if not isinstance(prior, Gaussian):
        raise TypeError(f"red_diff_effective_precision needs a Gaussian prior, got {type(prior).__name__}")
    ab = schedule.alpha_bars[1:].to(prior.dtype).unsqueeze(-1)  # (T, 1)
    eig = prior.eig
    f = ((1.0 - ab) / (ab * eig.evals + (1.0 - ab))).mean(0)  # (d,)
    return float(lam) * eig.matrix_function(f)


def red_diff_fixed_point(problem, y, lam: float, schedule, *, obs_weight: float = 1.0) -> torch.Tensor:
    """The zero of the expected RED-Diff gradient for ``t ~ U{1..T}``, Gaussian prior N(m, S) (docs/theory §7.2):

        mu* = (P_eff + w A^T A / sigma_y^2)^{-1} (P_eff m + w A^T y / sigma_y^2),   w = obs_weight,

    i.e. the posterior mean under the prior ``N(m, P_eff^{-1})`` (:func:`red_diff_effective_precision`) with
    noise variance ``sigma_y^2 / w``. It is the exact stationary mean of ``red_diff(..., t_order="random",
    optimizer="sgd")``. ``y (..., m)`` -> ``(..., d)``.
    """
    if not problem.is_gaussian:
        raise TypeError("red_diff_fixed_point is closed-form only for a Gaussian prior")
    if not problem.sigma_y > 0:
        raise ValueError("red_diff_fixed_point needs sigma_y > 0")
    y = problem.check_y(y)
    P = red_diff_effective_precision(problem.prior, lam, schedule)
    A, w, s2 = problem.A, float(obs_weight), problem.sigma_y**2
    H = P + w * A.T @ A / s2
    rhs = P @ problem.prior.mean + w * (y @ A) / s2  # (..., d)
    return torch.linalg.solve(H, rhs.unsqueeze(-1)).squeeze(-1)

