"""MAP-RPS: MAP estimate, then re-noised posterior sampling (Zhang, Liu, Yan, Xiao & Gu, ICML 2026,
arXiv 2605.28711; official code weigerzan/MAP_RPS d8d5217, ``runners/inverse_algorithms.py``; docs/theory §6).

Stage 1 (stochastic MAP). Start at ``x = A^+ y`` and run AdamW with a cosine learning rate (to ``eta_min``,
official 1e-5 pixel and FFHQ latent, 1e-2 in most SD 1.5 / COCO runs) on

    L(x) = ||y - A x||^2 + w_prior <stopgrad(eps_hat(x_t1, t1)), x>,   x_t1 = sqrt(ab) x + sqrt(1 - ab) z,

with ``z`` re-drawn at every iteration (one denoiser call per iteration). ``likelihood="l2"`` replaces
``||y - A x||^2`` by the unsquared ``||y - A x||`` (the official ``--stable`` of the SD 1.5 runs). For ANY prior,
``E_z[eps_hat(x_t1)] = -tau grad g_tau(x)`` with ``tau^2 = (1 - ab)/ab`` and ``g_tau`` the log of the prior blurred
at level tau (docs/theory §6.3), so stage 1 (squared likelihood) is SGD on ``||y - Ax||^2/(2 s^2) - kappa g_tau(x)``
with ``kappa = w_prior tau / (2 s^2)``. Two weightings:

- ``weighting="bayes"`` (the default, for every denoiser, exact or network): ``w_prior = 2 sigma_y^2 / tau``
  (kappa = 1): the expected prior gradient is minus the smoothed score, so the fixed point is the MAP of the
  posterior with the prior blurred at ``tau`` (for a Gaussian prior: the posterior mean under N(m, S + tau^2 I),
  O(tau^2) from the true MAP). Default weight decay 0, so AdamW's decoupled shrinkage does not move the fixed
  point.
- ``weighting="official"``: the tuned task weights of the official scripts (:data:`OFFICIAL_PRIOR_WEIGHTS`,
  pixel: denoise 2.0, inp 0.7, sr4 0.25, deblur 0.01), ``weight_decay = 0.01`` (torch's AdamW default, which the
  official code keeps). These are 2-7x weaker than Bayes (docs/theory §6.3): the point is a MAP under a rescaled prior.

``t1`` follows the official code: ``noise_t = 10`` means ``alphas_cumprod[10]`` (0-based) = ``alpha_bar(11)``.
Official iteration counts (pixel FFHQ scripts): denoise 60, inp 400, sr4 300, deblur 200; latent FFHQ 60-120,
COCO 100-400 (500 only for the nonlinear deblur of the COCO script).

Stage 2 (re-noise and sample). ``x_t0 = sqrt(ab_t0) x_MAP + sqrt(1 - ab_t0) z``, then ``t0`` reverse steps from
``t0`` down to 0 with a posterior sampler: ``"posterior"`` (exact kernels with the exact conditional denoiser;
default with an exact prior), ``"dps"`` (default with a network) or ``"vsrd"`` (with ``lam``). ``t0 = 0`` returns
the stage-1 point unchanged. ``t0`` counts reverse steps, as in the official code (stage 2 starts at
``alphas_cumprod[t0 - 1]``).

The ``"dps"`` stage 2 is :func:`~dptheory.samplers.dps`: ``x_s = mean - zeta grad_{x_t} ||y - A x0c(x_t)|| +
noise`` with the unsquared norm. ``zeta`` is the official ``--lr`` (``xi`` in the code; 1.0 for denoise, inp and
sr4, 2.0 for deblur). It is NOT the paper's ``zeta'`` of DPS's Algorithm 1 (``zeta_i = zeta' / ||y - A x0_hat||``
on the SQUARED norm): since ``grad ||r||^2 = 2 ||r|| grad ||r||``, ``zeta = 2 zeta'``. Options reproducing the
official pixel stage 2 (all off by default except the clamp, see ``paper_notes/map_rps.md``):

- ``clip_denoised`` (default ``None``: on for pixel networks with data in [-1, 1], off for exact priors):
  ``x0c = clamp(x0_hat, -1, 1)`` in the step and inside the guidance gradient;
- ``mean="eps"``: ``sqrt(ab_s) x0c + sqrt(1 - ab_s - beta_tilde) eps_hat`` with the raw ``eps_hat``;
- ``variance="learned_exp"``: the network's learned-range variance with ``exp`` applied before the interpolation
  (:func:`~dptheory.samplers.dps.learned_range_variance`; 1.7-2.2x beta_tilde at t = 2);
- ``final_noise=True``: noise is added at the final step too.
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

