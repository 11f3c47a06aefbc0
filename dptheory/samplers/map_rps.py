"""MAP-RPS: MAP estimate, then re-noised posterior sampling (Zhang, Liu, Yan, Xiao & Gu, ICML 2026,
arXiv 2605.28711; official code weigerzan/MAP_RPS d8d5217, ``runners/inverse_algorithms.py``; docs/theory §6).

Stage 1 (stochastic MAP): from ``x = A^+ y``, AdamW with a cosine learning rate (to ``eta_min``) on

    L(x) = ||y - A x||^2 + w_prior <stopgrad(eps_hat(x_t1, t1)), x>,   x_t1 = sqrt(ab) x + sqrt(1 - ab) z,

``z`` re-drawn every iteration (``likelihood="l2"``: the unsquared norm). In expectation this is SGD on
``||y - Ax||^2/(2 s^2) - kappa g_tau(x)``, ``g_tau`` the log prior blurred at ``tau^2 = (1 - ab)/ab``, ``kappa =
w_prior tau / (2 s^2)`` (docs/theory §6.3): ``weighting="bayes"`` (default) sets kappa = 1 (a smoothed MAP),
``"official"`` uses :data:`OFFICIAL_PRIOR_WEIGHTS` with weight decay 0.01. Stage 2: re-noise to ``t0`` and run
``t0`` reverse steps of ``"posterior"`` (exact prior), ``"dps"`` (network; ``zeta`` = the official ``--lr``) or
``"vsrd"``; ``t0 = 0`` returns the stage-1 point. Official options (``clip_denoised``, ``mean="eps"``, ``variance=
"learned_exp"``, ``final_noise``), iteration counts, ``t1``/``t0`` indexing: ``paper_notes/map_rps.md``, theory §0.4.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_int
from ._common import apply_A, progress, randn_like
from .dps import dps
from .posterior import posterior
from .vsrd import _check_knobs as _check_vsrd
from .vsrd import vsrd

__all__ = ["map_rps", "map_rps_stage1", "bayes_prior_weight", "OFFICIAL_PRIOR_WEIGHTS"]

OFFICIAL_PRIOR_WEIGHTS = {"denoise": 2.0, "inp": 0.7, "sr4": 0.25, "deblur": 0.01}
"""Official pixel-space ``w_prior`` per task (``scripts/`` of weigerzan/MAP_RPS; docs/theory §6.2)."""


def bayes_prior_weight(schedule, t1: int, sigma_y: float) -> float:
    """``w_Bayes = 2 sigma_y^2 / tau_{t1} = 2 sigma_y^2 sqrt(ab / (1 - ab))``, ``ab = alphas_cumprod[t1]``.

    Source: docs/theory §6.3 (the weight that makes the expected stage-1 gradient that of the smoothed posterior).
    """
    ab = float(schedule.alpha_bar(schedule.check_step(t1 + 1, "t1 + 1")))
    return 2.0 * float(sigma_y) ** 2 * math.sqrt(ab / (1.0 - ab))


def _check_stage1(likelihood, eta_min, weighting, w_prior) -> None:
    if likelihood not in ("squared", "l2"):
        raise ValueError(f"likelihood must be 'squared' or 'l2', got {likelihood!r}")
    if not float(eta_min) >= 0:
        raise ValueError(f"eta_min must be >= 0, got {eta_min!r}")
    if weighting not in ("bayes", "official"):
        raise ValueError(f"weighting must be 'bayes' or 'official', got {weighting!r}")
    if weighting == "official" and w_prior is None:
        raise ValueError("weighting='official' needs w_prior (e.g. OFFICIAL_PRIOR_WEIGHTS['sr4'] = 0.25)")


_DPS_STAGE2_DEFAULTS = dict(clip_denoised=None, variance="small", mean="posterior", final_noise=False, norm="l2",
                            zeta_scale="constant")


def _check_stage2(stage2, dps_options: dict) -> None:
    """``stage2`` is one of the three, and the ``"dps"`` stage-2 options keep their defaults for the others."""
    if stage2 != "dps":
        changed = [k for k, v in dps_options.items() if v != _DPS_STAGE2_DEFAULTS[k]]
        if changed:
            raise ValueError(f"{', '.join(changed)} apply to stage2='dps' only (stage2={stage2!r})")
    if stage2 not in ("posterior", "dps", "vsrd"):
        raise ValueError(f"stage2 must be 'posterior', 'dps' or 'vsrd', got {stage2!r}")


def _check_knobs(kn: dict, schedule) -> None:
    """The knob checks of :func:`map_rps` (``kn``: every knob), before anything runs."""
    schedule.check_step(kn["t0"], "t0")
    _check_stage2(kn["stage2"], {k: kn[k] for k in _DPS_STAGE2_DEFAULTS})
    if kn["stage2"] == "vsrd":
        _check_vsrd(kn["lam"], "exact")
    _check_stage1(kn["likelihood"], kn["eta_min"], kn["weighting"], kn["w_prior"])
    schedule.check_step(kn["t1"] + 1, "t1 + 1")


def map_rps_stage1(denoiser, x, schedule, *, operator, y, sigma_y, t1=10, iters=500, lr=0.5, eta_min=1e-5,
                   weighting="bayes", w_prior=None, weight_decay=None, likelihood="squared", generator=None,
                   callback=None, progress_bar=False):
    """Stage 1 of MAP-RPS: AdamW + cosine LR on the stochastic MAP loss (module docstring). Returns ``(n, ...)``.

    Args:
        x: initial point, usually ``A^+ y`` (one row per particle; each particle has its own noise).
        t1: 0-based noise index of the official code (``alpha_bar(t1 + 1)``); 10 for pixel models, 50 latent.
        iters: optimisation steps (official pixel scripts: 60 denoise, 400 inp, 300 sr4, 200 deblur).
        lr: initial learning rate (official 0.5), annealed by a cosine schedule to ``eta_min`` (official 1e-5;
            1e-2 in the SD 1.5 / COCO runs).
        weighting: ``"bayes"`` or ``"official"`` (then ``w_prior`` is required).
        weight_decay: AdamW decoupled decay; default 0 for ``"bayes"`` and 0.01 for ``"official"``.
        likelihood: ``"squared"`` (``||y - A x||^2``, official default) or ``"l2"`` (``||y - A x||`` summed over
            particles, the official ``--stable``).
    """
    _check_stage1(likelihood, eta_min, weighting, w_prior)
    iters = check_int(iters, "iters")
    if w_prior is None:
        w_prior = bayes_prior_weight(schedule, t1, sigma_y)
    if weight_decay is None:
        weight_decay = 0.0 if weighting == "bayes" else 0.01
    ab1 = float(schedule.alpha_bar(schedule.check_step(t1 + 1, "t1 + 1")))
    x = x.detach().clone().requires_grad_(True)
    opt = torch.optim.AdamW([x], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=eta_min)
    for i in progress(range(iters), progress_bar, "map-rps stage 1"):
        with torch.no_grad():
            x_t1 = math.sqrt(ab1) * x + math.sqrt(1.0 - ab1) * randn_like(x, generator)
            eps = denoiser.eps(x_t1, ab1)
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            r = y - apply_A(operator, x)
            data = r.square().sum() if likelihood == "squared" else r.reshape(x.shape[0], -1).norm(dim=1).sum()
            loss = data + float(w_prior) * (eps * x).sum()
            loss.backward()
        opt.step()
        sched.step()
        if callback is not None:
            callback(i, t1, x.detach(), None)
    return x.detach()


def map_rps(denoiser, x, schedule, *, operator, y, sigma_y, t0, stage2="posterior", posterior_denoiser=None,
            zeta=1.0, lam=1.0, t1=10, iters=500, lr=0.5, eta_min=1e-5, weighting="bayes", w_prior=None,
            weight_decay=None, likelihood="squared", clip_denoised=None, variance="small", mean="posterior",
            final_noise=False, norm="l2", zeta_scale="constant", stage2_operator=None, generator=None,
            callback=None, progress_bar=False):
    """MAP-RPS: stage 1 (``map_rps_stage1``) then re-noise to ``t0`` and sample down to 0.

    Args:
        denoiser: the prior denoiser (stage 1, and stage 2 with ``"dps"``).
        x: stage-1 start, usually ``A^+ y``, ``(n, ...)``.
        t0: integer in ``[0, T]``; the D-P knob (0 = MAP, large = posterior sampling).
        stage2: ``"posterior"`` (needs ``posterior_denoiser``, an exact conditional denoiser), ``"dps"``
            (unsquared norm, step ``zeta``) or ``"vsrd"`` (``posterior_denoiser`` with ``lam``).
        clip_denoised, variance, mean, final_noise, norm, zeta_scale: the ``"dps"`` stage 2's options
            (:func:`~dptheory.samplers.dps`; module docstring). The official pixel stage 2 is
            ``clip_denoised=True, mean="eps", variance="learned_exp", final_noise=True``; the official SD 1.5 one
            ``norm="l2_squared"`` (``"l2"`` with ``--stable``), ``zeta_scale="alpha_bar"``.
        stage2_operator: the operator of the ``"dps"`` stage-2 guidance (default ``operator``); the latent front
            door uses it to clamp the decoded pixels in stage 2 only, as the official SD 1.5 code does.
        Other knobs: see :func:`map_rps_stage1`.
    """
    dps_options = dict(clip_denoised=clip_denoised, variance=variance, mean=mean, final_noise=final_noise,
                       norm=norm, zeta_scale=zeta_scale)
    t0 = schedule.check_step(t0, "t0")
    _check_stage2(stage2, dps_options)
    if stage2 in ("posterior", "vsrd") and posterior_denoiser is None:
        raise ValueError(f"stage2={stage2!r} needs posterior_denoiser (the exact conditional denoiser)")
    x_map = map_rps_stage1(denoiser, x, schedule, operator=operator, y=y, sigma_y=sigma_y, t1=t1, iters=iters,
                           lr=lr, eta_min=eta_min, weighting=weighting, w_prior=w_prior,
                           weight_decay=weight_decay, likelihood=likelihood, generator=generator,
                           progress_bar=progress_bar)
    if t0 == 0:
        return x_map
    ab0 = float(schedule.alpha_bar(t0))
    x_t0 = math.sqrt(ab0) * x_map + math.sqrt(1.0 - ab0) * randn_like(x_map, generator)
    common = dict(t_start=t0, generator=generator, callback=callback, progress_bar=progress_bar)
    if stage2 == "posterior":
        return posterior(posterior_denoiser, x_t0, schedule, **common)
    if stage2 == "vsrd":
        return vsrd(posterior_denoiser, x_t0, schedule, lam=lam, **common)
    op2 = operator if stage2_operator is None else stage2_operator
    return dps(denoiser, x_t0, schedule, operator=op2, y=y, sigma_y=sigma_y, zeta=zeta, **dps_options, **common)

