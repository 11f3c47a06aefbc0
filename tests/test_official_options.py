"""The official code's behaviour as options of MAP-RPS, DPS, RED-Diff and LMAP-RPS, each checked against a
TRANSCRIPTION of the official update rule written below, run on an exact Gaussian prior in float64.

The transcriptions follow, line by line, weigerzan/MAP_RPS d8d5217 ``runners/inverse_algorithms.py`` (``map_rps``,
``lmap_rps_t2i``), DPS2022/diffusion-posterior-sampling ``guided_diffusion/gaussian_diffusion.py`` (``DDPM.p_sample``
with ``clip_denoised=True`` and ``learned_range``) + ``condition_methods.py`` (``PosteriorSampling``), and
NVlabs/RED-diff ``algos/reddiff.py``. They use their own 0-based ``alphas_cumprod`` built from the betas, their own
closed-form Gaussian noise prediction, and draw noise from one shared ``torch.Generator`` in the official order
(an official draw whose value is never used, e.g. RED-Diff's ``noise_x0`` times ``sigma_x0 = 0``, comes from a
separate generator). The "network" of the learned-variance tests is the exact denoiser plus a fixed smooth
``v(x_t)`` for the variance channels.

Tolerance: every comparison is ``max |ours - official| <= 1e-12`` on values of order 1, after 10-1000 float64
steps whose operations differ only in association order (each step adds O(1e-16) relative; Adam and the clamp
are applied to the same numbers). Each option is also checked to MATTER (it moves the output by far more than the
tolerance), so no test passes because the option does nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dptheory as dpt
from dptheory.denoisers import Denoiser, ExactDenoiser
from dptheory.samplers.dps import learned_range_variance

T = 1000
TOL = 1e-12
D = 4


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _betas() -> torch.Tensor:
    """0-based official betas (linear 1e-4..0.02, T = 1000), float64."""
    return torch.from_numpy(np.linspace(1e-4, 0.02, T)).to(torch.float64)


def _ac() -> torch.Tensor:
    return torch.cumprod(1.0 - _betas(), 0)


# a prior with mass outside [-1, 1], so the clamp acts
M = torch.tensor([0.9, -0.8, 0.4, 0.0], dtype=torch.float64)
S = torch.tensor([[0.30, 0.05, 0.00, 0.02],
                  [0.05, 0.25, 0.03, 0.00],
                  [0.00, 0.03, 0.20, 0.04],
                  [0.02, 0.00, 0.04, 0.35]], dtype=torch.float64)  # fmt: skip
A = torch.tensor([[1.0, 0.5, 0.0, -0.3], [0.0, 0.4, 1.0, 0.6]], dtype=torch.float64)
SIGMA_Y = 0.2
Y = torch.tensor([1.4, 0.9], dtype=torch.float64)


def _eps_exact(x_t, ab):
    """Closed-form ``eps_hat`` of N(M, S): ``sqrt(1 - ab) (ab S + (1 - ab) I)^{-1} (x_t - sqrt(ab) M)``."""
    S_t = ab * S + (1.0 - ab) * torch.eye(D, dtype=torch.float64)
    return math.sqrt(1.0 - ab) * torch.linalg.solve(S_t, (x_t - math.sqrt(ab) * M).T).T


def _v(x_t):
    """The variance channels of the test "network": smooth, in (-1.3, 0.5)."""
    return 0.9 * torch.tanh(x_t) - 0.4


class _LearnedVarianceDenoiser(Denoiser):
    """The exact denoiser of N(M, S) with a variance head ``v(x_t)`` (like an ADM with ``learn_sigma``)."""

    data_range = (-1.0, 1.0)

    def __init__(self):
        self.exact = ExactDenoiser(dpt.Gaussian(M, S))

    def __call__(self, x_t, alpha_bar):
        return self.exact(x_t, alpha_bar)

    def x0_and_variance_values(self, x_t, alpha_bar):
        return self.exact(x_t, alpha_bar), _v(x_t)


def _problem():
    return dpt.LinearInverseProblem(dpt.Gaussian(M, S), A, SIGMA_Y)


def _H(x):
    return x @ A.T


# ---------------------------------------------------------------------------------------------- MAP-RPS pixel
def official_map_rps(y, gen, *, w_prior, noise_t, renoise_t, iters, vae_lr=0.5, xi=1.0):
    """Transcription of ``map_rps`` (M = 1, batch 1, ``ps_method='dps'``, a 6-channel network: the official stage
    2 reads its variance channels)."""
    betas, ac = _betas(), _ac()
    x0_init = (torch.linalg.pinv(A) @ y).unsqueeze(0)
    x = x0_init.clone().requires_grad_(True)
    opt = torch.optim.AdamW([x], lr=vae_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=1e-5)
    for _ in range(iters):
        opt.zero_grad()
        loss_likelihood = torch.sum((y - _H(x)) ** 2)
        at = float(ac[noise_t])
        xt = math.sqrt(at) * x + math.sqrt(1 - at) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        et = _eps_exact(xt, at)
        loss = loss_likelihood + w_prior * torch.sum(et.detach() * x)
        loss.backward()
        opt.step()
        sched.step()
    x0_t = x.detach()
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    post_log_var_clipped = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
    at_init = float(ac[renoise_t - 1])
    xt = math.sqrt(at_init) * x0_t + math.sqrt(1 - at_init) * torch.randn(x0_t.shape, generator=gen,
                                                                          dtype=x0_t.dtype)
    for i in reversed(range(renoise_t)):
        at = float(ac[i])
        at_next = float(ac[i - 1]) if i > 0 else 1.0
        xg = xt.clone().requires_grad_(True)
        et = _eps_exact(xg, at)
        var = torch.exp(_v(xg))
        frac = (var + 1.0) / 2.0
        model_log_variance = frac * torch.log(betas[i]) + (1 - frac) * post_log_var_clipped[i]
        model_variance = torch.exp(model_log_variance * 0.5)
        x0 = (xg - et * math.sqrt(1 - at)) / math.sqrt(at)
        x0 = x0.clamp(-1, 1)
        loss = torch.linalg.norm(y - _H(x0))
        grad = torch.autograd.grad(loss, [xg])[0]
        sigma_ddpm = math.sqrt((1 - at_next) / (1 - at)) * math.sqrt(1 - at / at_next)
        noise = torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
        xt_next = (math.sqrt(at_next) * x0 + math.sqrt(1 - at_next - sigma_ddpm**2) * et + model_variance * noise
                   - xi * grad)
        xt = xt_next.detach()
    return xt


OFFICIAL_PIXEL_STAGE2 = dict(clip_denoised=True, mean="eps", variance="learned_exp", final_noise=True)


def _ours_map_rps(seed, **knobs):
    den = _LearnedVarianceDenoiser()
    return dpt.solve(_problem(), Y, "map-rps", denoiser=den, generator=torch.Generator().manual_seed(seed), **knobs)


def test_map_rps_official_pixel_matches_transcription():
    """Stage 1 (official weighting, AdamW decay 0.01) + the official stage 2 (clamp in the step and the guidance,
    eps-form mean, learned variance with exp first, final-step noise)."""
    knobs = dict(t0=40, t1=10, iters=30, weighting="official", w_prior=0.25, zeta=1.0)
    ours = _ours_map_rps(3, **knobs, **OFFICIAL_PIXEL_STAGE2)
    ref = official_map_rps(Y, torch.Generator().manual_seed(3), w_prior=0.25, noise_t=10, renoise_t=40, iters=30)
    assert (ours - ref).abs().max() <= TOL
    # each stage-2 option matters: switching any one back moves the output far beyond the tolerance
    for k, plain in dict(clip_denoised=False, mean="posterior", variance="small", final_noise=False).items():
        other = _ours_map_rps(3, **knobs, **(OFFICIAL_PIXEL_STAGE2 | {k: plain}))
        assert (other - ref).abs().max() > 1e-4, k


def test_map_rps_stage1_official_weighting_matches_transcription():
    """The stage-1 point alone (t0 = 0) with the official weighting (w_prior 0.7, AdamW weight decay 0.01)."""
    ours = _ours_map_rps(5, t0=0, t1=10, iters=25, weighting="official", w_prior=0.7)
    gen = torch.Generator().manual_seed(5)
    ac = _ac()
    x = (torch.linalg.pinv(A) @ Y).unsqueeze(0).requires_grad_(True)
    opt = torch.optim.AdamW([x], lr=0.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=25, eta_min=1e-5)
    for _ in range(25):
        opt.zero_grad()
        at = float(ac[10])
        xt = math.sqrt(at) * x + math.sqrt(1 - at) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        loss = torch.sum((Y - _H(x)) ** 2) + 0.7 * torch.sum(_eps_exact(xt, at).detach() * x)
        loss.backward()
        opt.step()
        sched.step()
    assert (ours - x.detach()).abs().max() <= TOL


def test_learned_exp_variance_is_1p7_to_2p2_beta_tilde_at_t2():
    """The official exp-first interpolation at t = 2 (0-based index 1) of the linear schedule: ``var / beta_tilde =
    (beta / beta_tilde)^((e^v + 1)/2)``: 1.71 at v = -1 and 2.20 at v = 0 (guided-diffusion's range: 1.0 and
    1.48). Oracle: the numbers from the formula in numpy."""
    sched = dpt.linear_schedule()
    _, _, bt, b = sched.reverse_coefficients(2, 1)
    v = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    ratio = learned_range_variance(v, bt, b, exp_first=True) / bt
    r = b / bt
    expected = np.array([r ** ((np.exp(-1.0) + 1) / 2), r])
    assert np.allclose(ratio.numpy(), expected, rtol=1e-12)
    assert 1.70 < float(ratio[0]) < 1.72 and 2.19 < float(ratio[1]) < 2.21
    plain = learned_range_variance(v, bt, b) / bt
    assert np.allclose(plain.numpy(), [1.0, math.sqrt(r)], rtol=1e-12)


# ---------------------------------------------------------------------------------------------- DPS
def official_dps(y, gen, *, scale):
    """Transcription of guided-diffusion ``DDPM.p_sample_loop`` with ``clip_denoised=True``, ``learned_range``
    and DPS's ``PosteriorSampling`` (batch 1; every step of T = 1000). ``x_T`` is drawn first from ``gen``."""
    betas, ac = _betas(), _ac()
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    post_log_var_clipped = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
    coef1 = betas * torch.sqrt(ac_prev) / (1.0 - ac)
    coef2 = (1.0 - ac_prev) * torch.sqrt(1.0 - betas) / (1.0 - ac)
    img = torch.randn(1, D, generator=gen, dtype=torch.float64)
    for idx in reversed(range(T)):
        img = img.requires_grad_()
        at = float(ac[idx])
        eps = _eps_exact(img, at)
        pred_xstart = (math.sqrt(1.0 / at) * img - math.sqrt(1.0 / at - 1) * eps).clamp(-1, 1)
        mean = coef1[idx] * pred_xstart + coef2[idx] * img
        frac = (_v(img) + 1.0) / 2.0
        log_var = frac * torch.log(betas[idx]) + (1 - frac) * post_log_var_clipped[idx]
        sample = mean
        noise = torch.randn(img.shape, generator=gen, dtype=img.dtype)
        if idx != 0:
            sample = sample + torch.exp(0.5 * log_var) * noise
        norm = torch.linalg.norm(y - _H(pred_xstart))
        norm_grad = torch.autograd.grad(outputs=norm, inputs=img)[0]
        img = (sample - norm_grad * scale).detach()
    return img


def test_dps_official_matches_transcription():
    den = _LearnedVarianceDenoiser()
    run = lambda **kw: dpt.solve(_problem(), Y, "dps", denoiser=den, generator=torch.Generator().manual_seed(7),  # noqa: E731
                                 zeta=0.5, **kw)
    ours = run(variance="learned")  # clip_denoised=None: on, from the denoiser's data_range
    ref = official_dps(Y, torch.Generator().manual_seed(7), scale=0.5)
    assert (ours - ref).abs().max() <= TOL
    assert (run(variance="learned", clip_denoised=False) - ref).abs().max() > 1e-4
    assert (run(variance="small") - ref).abs().max() > 1e-4


def test_clip_default_off_for_exact_priors_on_for_pixel_networks():
    from dptheory.samplers._common import clip_range

    assert clip_range(ExactDenoiser(dpt.Gaussian(M, S)), None) is None
    assert clip_range(_LearnedVarianceDenoiser(), None) == (-1.0, 1.0)
    assert clip_range(ExactDenoiser(dpt.Gaussian(M, S)), True) == (-1.0, 1.0)
    assert clip_range(_LearnedVarianceDenoiser(), False) is None
    from dptheory.images.backbones import load_photo_unet

    den, _ = load_photo_unet()
    assert den.data_range == (-1.0, 1.0)
    with pytest.raises(ValueError, match="clip_denoised"):
        clip_range(den, "yes")


def test_learned_variance_needs_a_variance_head():
    with pytest.raises(ValueError, match="predicts a variance"):
        dpt.solve(_problem(), Y, "dps", denoiser=ExactDenoiser(dpt.Gaussian(M, S)), variance="learned", steps=5)
    with pytest.raises(ValueError, match="apply to stage2='dps' only"):
        dpt.solve(_problem(), Y, "map-rps", t0=5, iters=2, variance="learned_exp")


# ---------------------------------------------------------------------------------------------- RED-Diff
def official_red_diff(y, gen, *, num_steps, lr=0.1, lam=0.25, obs_weight=1.0):
    """Transcription of ``REDDIFF.sample`` (awd True, sigma_x0 = 0, linear weighting); returns ``(x0_pred, mu)``."""
    ac = _ac()
    discard = torch.Generator().manual_seed(999)  # noise_x0, multiplied by sigma_x0 = 0
    skip = T // num_steps
    ts = list(range(0, T, skip))
    mu = (torch.linalg.pinv(A) @ y).unsqueeze(0).clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    x0_pred = mu
    for ti in reversed(ts):
        alpha_t = float(ac[ti])  # diffusion.alpha(t) = alphas[t + 1], alphas[0] = 1
        noise_x0 = torch.randn(mu.shape, generator=discard, dtype=mu.dtype)
        noise_xt = torch.randn(mu.shape, generator=gen, dtype=mu.dtype)
        x0_pred = mu + 0.0 * noise_x0
        xt = math.sqrt(alpha_t) * x0_pred + math.sqrt(1 - alpha_t) * noise_xt
        et = _eps_exact(xt, alpha_t).detach()
        loss_obs = ((y - _H(x0_pred)) ** 2).mean() / 2
        loss_noise = torch.mul((et - noise_xt).detach(), x0_pred).mean()
        w_t = lam * math.sqrt(1 - alpha_t) / math.sqrt(alpha_t)
        loss = w_t * loss_noise + obs_weight * loss_obs
        opt.zero_grad()
        loss.backward()
        opt.step()
    return x0_pred.detach(), mu.detach()


@pytest.mark.parametrize("num_steps", [50, 300])
def test_red_diff_official_grid_and_iterate_match_transcription(num_steps):
    gen_seed = 11
    run = lambda **kw: dpt.solve(_problem(), Y, "red-diff", generator=torch.Generator().manual_seed(gen_seed),  # noqa: E731
                                 steps=num_steps, reduction="mean", **kw)
    x0_pred, mu = official_red_diff(Y, torch.Generator().manual_seed(gen_seed), num_steps=num_steps)
    assert (run(grid="official", returned="official") - x0_pred).abs().max() <= TOL
    assert (run(grid="official") - mu).abs().max() <= TOL
    assert (x0_pred - mu).abs().max() > 1e-4  # the returned iterate matters
    assert (run(returned="official") - x0_pred).abs().max() > 1e-4  # so does the grid


def test_red_diff_official_levels():
    from dptheory.samplers.red_diff import official_levels

    assert official_levels(1000, 50)[:2] == [981, 961] and official_levels(1000, 50)[-1] == 1
    assert official_levels(1000, 1000) == dpt.linear_schedule().timesteps(1000)[:-1]
    assert len(official_levels(1000, 300)) == 334


# ---------------------------------------------------------------------------------------------- LMAP-RPS
def official_lmap_rps_t2i(y, gen, H, decode, eps_fn, x0_init, *, w_prior, noise_t, renoise_t, iters, vae_lr, lr,
                          eta_min, stable):
    """Transcription of ``lmap_rps_t2i`` (``ps_method`` DPS, batch 1, no prompt: ``apply_model`` returns the
    noise prediction; the MAP anchor term has weight 0.0). Its stage-2 step draws ``noise = randn_like(x)``
    and then overwrites it with a second draw: the first comes from a separate generator."""
    ac = _ac()
    discard = torch.Generator().manual_seed(12345)
    x = x0_init.clone().requires_grad_(True)
    opt = torch.optim.AdamW([x], lr=vae_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=eta_min)
    for _ in range(iters):
        opt.zero_grad()
        pixels = decode(x)
        lik = torch.sum((y - H(pixels)) ** 2) if not stable else torch.linalg.norm(y - H(pixels))
        at = float(ac[noise_t])
        xt = math.sqrt(at) * x + math.sqrt(1 - at) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        et = eps_fn(xt, at)
        loss = lik + w_prior * torch.sum(et.detach() * x)
        loss.backward()
        opt.step()
        sched.step()
    x0_t = x.detach()
    at_init = float(ac[renoise_t - 1])
    xt = math.sqrt(at_init) * x0_t + math.sqrt(1 - at_init) * torch.randn(x0_t.shape, generator=gen,
                                                                          dtype=x0_t.dtype)
    for i in reversed(range(renoise_t)):
        at = float(ac[i])
        at_next = float(ac[i - 1]) if i > 0 else 1.0
        xg = xt.clone().requires_grad_(True)
        et = eps_fn(xg, at)
        x0_t_cfg = (xg - et * math.sqrt(1 - at)) / math.sqrt(at)
        pixels = decode(x0_t_cfg).clamp(-1, 1)
        r = torch.linalg.norm(y - H(pixels))
        loss = r**2.0 if not stable else r
        grad = torch.autograd.grad(outputs=loss, inputs=xg)[0] * at
        torch.randn(xt.shape, generator=discard, dtype=xt.dtype)
        sigma = math.sqrt((1 - at_next) / (1 - at)) * math.sqrt(1 - at / at_next)
        noise = torch.randn(xt.shape, generator=gen, dtype=xt.dtype)
        xt = (math.sqrt(at_next) * x0_t_cfg + math.sqrt(1 - at_next - sigma**2) * et + sigma * noise
              - lr * grad).detach()
    return decode(xt)


@pytest.mark.parametrize("stable", [False, True])
def test_lmap_rps_sd_settings_match_transcription(stable):
    """Through :func:`solve_latent` with an identity "VAE" (``PixelBackbone``) on a Gaussian image prior: stage 1
    with eta_min = 1e-2 and the ``--stable`` likelihood, stage 2 with the squared (or ``--stable``) norm, the
    ``lr * alpha_bar`` step and the decoded pixels clamped."""
    from dptheory.images.backbones import PixelBackbone
    from dptheory.images.latent_solve import solve_latent
    from dptheory.images.operators import SuperResolution
    from dptheory.images.problem import GaussianImageDenoiser, ImageInverseProblem

    g = torch.Generator().manual_seed(0)
    imgs = 0.6 + 0.5 * torch.randn(200, 1, 4, 4, generator=g, dtype=torch.float64)  # mass above 1
    den = GaussianImageDenoiser.fit(imgs)
    sched = dpt.linear_schedule()
    bb = PixelBackbone(den, sched)
    op = SuperResolution(2)
    problem = ImageInverseProblem(op, 0.05)
    x = imgs[:1]
    y = problem.measure(x, torch.Generator().manual_seed(1))
    knobs = dict(t0=30, t1=50, iters=20, weighting="official", w_prior=0.3, lr=2.0, eta_min=1e-2, zeta=0.05,
                 stage2="dps", likelihood="l2" if stable else "squared", norm="l2" if stable else "l2_squared",
                 zeta_scale="alpha_bar", mean="eps")
    ours = solve_latent(problem, y, "map-rps", bb, generator=torch.Generator().manual_seed(4), clamp_pixels=True,
                        **knobs).x

    def eps_fn(x_t, ab):
        return (x_t - math.sqrt(ab) * den(x_t, ab)) / math.sqrt(1.0 - ab)

    ref = official_lmap_rps_t2i(y, torch.Generator().manual_seed(4), op.A, lambda z: z, eps_fn, op.pinv(y),
                                w_prior=0.3, noise_t=50, renoise_t=30, iters=20, vae_lr=2.0, lr=0.05,
                                eta_min=1e-2, stable=stable)
    assert (ours - ref).abs().max() <= TOL
    unclamped = solve_latent(problem, y, "map-rps", bb, generator=torch.Generator().manual_seed(4), **knobs).x
    assert (unclamped - ref).abs().max() > 1e-6


def test_restore_official_weighting_knobs():
    from dptheory.cli import restore_parser as build_parser
    from dptheory.images.restore import _knobs

    args = build_parser().parse_args(["--task", "inpaint-random", "--weighting", "official"])
    assert _knobs(args)["weighting"] == "official" and _knobs(args)["w_prior"] == 0.7
    args = build_parser().parse_args(["--task", "sr4", "--weighting", "official", "--w-prior", "0.5"])
    assert _knobs(args)["w_prior"] == 0.5
    args = build_parser().parse_args(["--task", "cs", "--weighting", "official"])
    with pytest.raises(ValueError, match="no official w_prior"):
        _knobs(args)
    assert "weighting" not in _knobs(build_parser().parse_args([]))
