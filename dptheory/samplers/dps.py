"""Diffusion posterior sampling (DPS), Chung, Kim, McCann, Klasky & Ye, ICLR 2023 (arXiv 2209.14687).

DPS adds the gradient of ``log p(y | x0_hat(x_t))``, back-propagated through the denoiser, to the DDPM step (§1.3):

- ``norm="l2"`` (the official code): ``x_s = DDPM step - zeta * grad_{x_t} ||y - A x0_hat(x_t)||`` (UNSQUARED
  norm); the paper's ``zeta'`` is ``zeta / 2`` (``paper_notes/dps.md``). Typical ``zeta``: 1.0 to 2.0 (deblur).
- ``norm="squared"`` (the Bayes-consistent "ideal DPS" of docs/theory §4): the step adds ``zeta * g * grad log p~``,
  ``log p~ = -||y - A x0_hat||^2 / (2 sigma_y^2)``, ``g = beta / sqrt(alpha)``: ``zeta = 1`` is the plug-in
  likelihood at face value.

Official options (``paper_notes/dps.md``): ``clip_denoised`` (on by default for pixel networks, off for exact
priors), ``variance="learned"``, ``mean="eps"``, ``variance="learned_exp"`` and ``final_noise`` (MAP-RPS stage 2),
``norm="l2_squared"`` with ``zeta_scale="alpha_bar"`` (LMAP-RPS stage 2). One denoiser call per step (forward with
autograd, one backward); on coarse grids (e.g. 10 steps) the explicit guidance step can overshoot and diverge.
"""

from __future__ import annotations

import math

import torch

from ..denoisers import Denoiser, eps_from_x0
from ._common import apply_A, clip_range, clip_x0, progress, randn_like, reverse_pairs

__all__ = ["dps", "DPSGuidedDenoiser", "learned_range_variance", "VARIANCES"]


def _residual_loss(denoiser, x, ab, operator, y, norm, sigma_y, extra_var=0.0):
    """``(x0_hat, grad_x loss)`` with loss = sum over particles of ||r|| or ||r||^2 / (2 (sigma_y^2 + extra_var))."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0 = denoiser(xg, ab)
        r = (y - apply_A(operator, x0)).reshape(x.shape[0], -1)
        loss = r.norm(dim=1).sum() if norm == "l2" else r.square().sum() / (2.0 * (sigma_y**2 + extra_var))
        (grad,) = torch.autograd.grad(loss, xg)
    return x0.detach(), grad


def _check_dps_args(norm, sigma_y, zeta):
    if norm not in ("l2", "squared", "l2_squared"):
        raise ValueError(f"norm must be 'l2', 'squared' or 'l2_squared', got {norm!r}")
    if norm == "squared" and (sigma_y is None or float(sigma_y) <= 0):
        raise ValueError("norm='squared' needs sigma_y > 0")
    if not float(zeta) >= 0:
        raise ValueError(f"zeta must be >= 0, got {zeta}")


VARIANCES = ("small", "large", "learned", "learned_exp")


def _check_knobs(norm, sigma_y, zeta, lam, variance, mean, zeta_scale, final_noise) -> None:
    """The knob checks of :func:`dps` (those that need no denoiser)."""
    _check_dps_args(norm, sigma_y, zeta)
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {float(lam)}")
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {', '.join(map(repr, VARIANCES))}, got {variance!r}")
    if mean not in ("posterior", "eps"):
        raise ValueError(f"mean must be 'posterior' or 'eps', got {mean!r}")
    if zeta_scale not in ("constant", "alpha_bar"):
        raise ValueError(f"zeta_scale must be 'constant' or 'alpha_bar', got {zeta_scale!r}")
    if not isinstance(final_noise, bool):
        raise ValueError(f"final_noise must be True or False, got {final_noise!r}")


def learned_range_variance(v: torch.Tensor, beta_tilde_clipped: float, beta: float, *, exp_first: bool = False):
    """The ancestral variance of an ADM network with a learned range (Nichol & Dhariwal 2021, eq. 15):

        log var = f log beta + (1 - f) log beta_tilde_clipped,     f = (v + 1) / 2,

    with ``v`` the network's extra output channels (about [-1, 1]; ``v = -1`` is ``beta_tilde``, ``v = 1`` is
    ``beta``), as in guided-diffusion and the official DPS code. ``exp_first=True`` reproduces the official
    MAP-RPS stage 2 (weigerzan/MAP_RPS ``map_rps``: ``var = torch.exp(et[:, 3:])`` before ``frac = (var + 1) /
    2``), i.e. ``f = (exp(v) + 1) / 2``: ``f`` lies in (1/2, inf) instead of [0, 1], so the variance is at least
    ``sqrt(beta beta_tilde)`` and exceeds ``beta`` for ``v > 0``. At ``t = 2`` of the linear schedule
    (``beta / beta_tilde = 2.20``) it is ``2.20^f beta_tilde``: 1.71x beta_tilde at ``v = -1`` and 2.20x at
    ``v = 0``, against 1.0x and 1.48x for the learned range as trained.
    """
    f = ((v.exp() if exp_first else v) + 1.0) / 2.0
    return torch.exp(f * math.log(beta) + (1.0 - f) * math.log(beta_tilde_clipped))


def _guided_step_parts(denoiser, x, ab, operator, y, norm, sigma_y, box, want_var):
    """``(x0_hat, clamp(x0_hat), grad_{x_t} loss, v)``: one denoiser call, the loss on the CLAMPED estimate (the
    gradient flows through the clamp, as in the official DPS and MAP-RPS code), summed over particles."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        if want_var:
            x0, v = denoiser.x0_and_variance_values(xg, ab)
            if v is None:
                raise ValueError("variance='learned'/'learned_exp' needs a network that predicts a variance (an ADM "
                                 "with learn_sigma); this denoiser returned none")
        else:
            x0, v = denoiser(xg, ab), None
        x0c = clip_x0(x0, box)
        r = (y - apply_A(operator, x0c)).reshape(x.shape[0], -1)
        if norm == "l2":
            loss = r.norm(dim=1).sum()
        elif norm == "squared":
            loss = r.square().sum() / (2.0 * sigma_y**2)
        else:
            loss = r.square().sum()
        (grad,) = torch.autograd.grad(loss, xg)
    return x0.detach(), x0c.detach(), grad, None if v is None else v.detach()


def _final_beta_tilde(schedule, pairs):
    """The "clipped" beta_tilde of guided-diffusion for the last pair ``(t, 0)`` (whose own beta_tilde is 0): the
    beta_tilde of the pair above it in the grid (``posterior_variance[1]``)."""
    if len(pairs) >= 2:
        return schedule.reverse_coefficients(*pairs[-2])[2]
    t = pairs[-1][0]
    return schedule.reverse_coefficients(min(2 * t, schedule.T), t)[2] if 2 * t <= schedule.T else None


def dps(denoiser, x, schedule, *, operator, y, sigma_y=None, zeta=1.0, norm="l2", variance="small", lam=1.0,
        clip_denoised=None, mean="posterior", final_noise=False, zeta_scale="constant", steps=None, t_start=None,
        generator=None, callback=None, progress_bar=False):
    """DPS (Chung et al. 2023, Algorithm 1) on a VP schedule.

    Args:
        denoiser: the PRIOR denoiser ``D(x_t, ab)``.
        x: start ``x_{t_start}`` ``(n, ...)``.
        operator: forward operator with ``A(x)``; ``y``: the measurement (shared or one per particle).
        sigma_y: noise std (needed for ``norm="squared"``).
        zeta: step size (see module docstring).
        norm: ``"l2"`` (``||r||``, official DPS and pixel MAP-RPS), ``"squared"`` (``||r||^2 / (2 sigma_y^2)``
            with the step ``zeta beta / sqrt(alpha)``) or ``"l2_squared"`` (``||r||^2`` with step ``zeta``, the
            official LMAP-RPS stage 2 without ``--stable``).
        variance: ancestral noise ``"small"`` (beta_tilde), ``"large"`` (beta), ``"learned"`` (the network's
            learned range, :func:`learned_range_variance`, as the official DPS) or ``"learned_exp"`` (the same
            with ``exp`` applied first, as the official MAP-RPS stage 2). The learned ones need a denoiser with
            ``x0_and_variance_values`` that returns a variance (an ADM with ``learn_sigma``).
        lam: variance scale in [0, 1] of the ancestral noise (``sqrt(lam var) z``): VSRD's knob (Wang et al.
            2025, docs/theory §5.1) with the DPS conditional score, i.e. VSRD's Algorithm 1 with the small kernel and
            DPS guidance. ``lam = 1`` is DPS, ``lam = 0`` the deterministic guided mean path. This is the form
            that runs on a trained network: the squared-norm :class:`DPSGuidedDenoiser` inside ``vsrd``
            multiplies the network's Jacobian error by ``(1 - ab) / (ab sigma_y^2)`` at high noise and diverges
            (the photo UNet: NaN for every zeta >= 0.1 on sr4).
        clip_denoised: clamp ``x0_hat`` to the data range before the step AND inside the guidance loss (the
            official ``clip_denoised=True``). ``None`` (default): on for denoisers that declare a ``data_range``
            (the pixel networks: photo UNet, ADM, diffusers pixel UNets, data in [-1, 1]), off for exact priors.
        mean: ``"posterior"`` (``c1 x0c + c2 x_t``, the DDPM posterior mean of guided-diffusion / official DPS)
            or ``"eps"`` (``sqrt(ab_s) x0c + sqrt(1 - ab_s - beta_tilde) eps_hat`` with the network's UNCLAMPED
            ``eps_hat``, the official MAP-RPS stage 2). The two are equal when nothing is clamped.
        final_noise: add noise at the last step too (official MAP-RPS stage 2), with guided-diffusion's clipped
            variance there (``beta_tilde`` of the step above; ``beta_1`` as the learned range's upper end).
        zeta_scale: ``"constant"`` or ``"alpha_bar"`` (the step is ``zeta ab_t``, official LMAP-RPS stage 2).
    """
    _check_knobs(norm, sigma_y, zeta, lam, variance, mean, zeta_scale, final_noise)
    lam = float(lam)
    learned = variance in ("learned", "learned_exp")
    if learned and not callable(getattr(denoiser, "x0_and_variance_values", None)):
        raise ValueError(f"variance={variance!r} needs a denoiser that predicts a variance (x0_and_variance_values; "
                         "an ADM with learn_sigma); use 'small' or 'large'")
    box = clip_range(denoiser, clip_denoised)
    pairs = reverse_pairs(schedule, steps, t_start)
    for i, (t, s) in enumerate(progress(pairs, progress_bar, "dps")):
        c1, c2, beta_tilde, beta = schedule.reverse_coefficients(t, s)
        ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
        x0, x0c, grad, v = _guided_step_parts(denoiser, x, ab_t, operator, y, norm, sigma_y, box, learned)
        bt_clip = beta_tilde if s > 0 else _final_beta_tilde(schedule, pairs)
        if s == 0 and not final_noise:
            var = 0.0
        elif learned:
            var = lam * learned_range_variance(v, bt_clip if bt_clip is not None else beta, beta,
                                               exp_first=variance == "learned_exp")
        elif variance == "small" or s == 0:  # guided-diffusion's fixed_large also uses the clipped value at s = 0
            var = lam * (bt_clip if bt_clip is not None else beta)
        else:
            var = lam * beta
        step = float(zeta) * beta / math.sqrt(1.0 - beta) if norm == "squared" else float(zeta)
        if zeta_scale == "alpha_bar":
            step *= ab_t
        if mean == "posterior":
            drift = c1 * x0c + c2 * x
        else:
            drift = math.sqrt(ab_s) * x0c + math.sqrt(max(1.0 - ab_s - beta_tilde, 0.0)) * eps_from_x0(x, x0, ab_t)
        noise = randn_like(x, generator)
        x = drift + (var.sqrt() if isinstance(var, torch.Tensor) else math.sqrt(var)) * noise - step * grad
        if callback is not None:
            callback(i, t, x, x0c)
    return x


class DPSGuidedDenoiser(Denoiser):
    """A prior denoiser turned into an approximate CONDITIONAL denoiser with DPS guidance:

        D_y(x_t) = D(x_t) + ((1 - ab) / sqrt(ab)) * zeta * grad_{x_t} [ -||y - A D(x_t)||^2 / (2 sigma_y^2) ],

    i.e. Tweedie's formula applied to the DPS conditional score ``s + zeta grad log p(y | x0_hat)``. Plugged into
    an ancestral step it shifts the mean by ``zeta (beta/sqrt(alpha)) grad log p~`` exactly like
    ``dps(norm="squared")``; this is how vsrd and MAP-RPS run on a network. ``zeta = 1`` is the plain DPS
    approximation; Wang et al.'s Algorithm 1 uses a tuned weight.

    ``likelihood``:

    - ``"plugin"`` (DPS): ``p(y | x_t) ~ N(y; A x0_hat, sigma_y^2 I)``. At high noise this ignores the spread of
      ``x0`` given ``x_t`` and over-steps by about ``(prior variance) / sigma_y^2`` (100x for photos at
      sigma_y = 0.05); with a network, vsrd then diverges.
    - ``"pigdm"``: ``N(y; A x0_hat, (sigma_y^2 + r_t^2) I)`` with ``r_t^2 = 1 - ab``, the pseudoinverse-guided
      likelihood of Song, Vahdat, Mardani & Kautz (ICLR 2023, PiGDM, eq. 7 with ``r_t^2 = sigma_t^2 / (1 +
      sigma_t^2)``, ``sigma_t^2 = (1 - ab) / ab``) with ``A A^T`` replaced by ``I``: exact for inpainting and
      orthonormal compressed sensing, conservative (a smaller step) when ``||A|| < 1`` (pooling, blur).
    """

    def __init__(self, denoiser, operator, y, sigma_y, zeta=1.0, likelihood="plugin"):
        _check_dps_args("squared", sigma_y, zeta)
        if likelihood not in ("plugin", "pigdm"):
            raise ValueError(f"likelihood must be 'plugin' or 'pigdm', got {likelihood!r}")
        self.denoiser, self.operator, self.y = denoiser, operator, y
        self.sigma_y, self.zeta, self.likelihood = float(sigma_y), float(zeta), likelihood

    def __call__(self, x_t, alpha_bar):
        ab = float(alpha_bar)
        if ab == 1.0:
            return self.denoiser(x_t, ab)
        extra = 1.0 - ab if self.likelihood == "pigdm" else 0.0
        x0, grad = _residual_loss(self.denoiser, x_t, ab, self.operator, self.y, "squared", self.sigma_y, extra)
        return x0 - (1.0 - ab) / math.sqrt(ab) * self.zeta * grad
