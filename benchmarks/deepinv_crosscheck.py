"""Cross-check of dptheory's DDRM and DiffPIR against deepinv 0.5 on one tiny problem with a shared denoiser.

Run it in a SEPARATE environment that has deepinv (deepinv imports torchvision, which pins its own torch; keep it
out of the project's environment):

    python3 -m venv /tmp/dinv && /tmp/dinv/bin/pip install torch==2.14.1 torchvision==0.29.1 "deepinv==0.5.*"
    PYTHONPATH=$PWD /tmp/dinv/bin/python benchmarks/deepinv_crosscheck.py

Problem: 4x4 grey images in [0, 1] with a Gaussian prior ``N(0.5, 0.01 C)`` (``C_ij = exp(-|p_i - p_j|^2 / 2)`` +
1e-3 I over pixel positions), inpainting with a fixed half mask and ``sigma_y = 0.05``. The shared denoiser is the
exact Tweedie denoiser of that prior, written as a ``torch.nn.Module`` ``D(x, sigma) = m + S (S + sigma^2 I)^{-1}
(x - m)`` (variance-exploding, [0, 1] units), which is what deepinv's samplers call; dptheory calls the same
Gaussian's :class:`~dptheory.denoisers.ExactDenoiser` on its variance-preserving grid (the same map).

Both samplers are run with the SAME noise: deepinv's ``torch.randn_like`` draws are recorded and fed, in order,
to dptheory's sampler, on a grid built from deepinv's levels (DDRM: its ``sigmas``; DiffPIR: its ``seq`` on its
float32 ``alphas_cumprod``). Measured: the largest absolute difference of the outputs.

By-design differences, asserted rather than hidden:

- deepinv 0.5.0's DDRM draws every fresh noise as ``std * randn / sqrt(2)`` (``x_bar = mean + std *
  torch.randn_like(x_bar) / np.sqrt(2.0)``), i.e. half the variance of Kawar et al. eq. (8). With the recorded
  draws divided by sqrt(2) the two agree to ~1e-6 (deepinv divides ``U^T y`` by ``s + 1e-6``); with the draws as
  drawn they differ at O(0.1).
- deepinv's DiffPIR ``lambda_`` is 2 times dptheory's ``lam`` (it passes ``gamma = 1 / (2 rho)`` to an L2 prox with
  weight ``1/2``); its start is ``sqrt(ab_T) (2 A^T y - 1 + sqrt(sigma_T^2 - 4 sigma_y^2) z)`` and it returns the
  iterate at its last level (no final data step). The script runs ours from that start with ``lam = lambda_ / 2``
  on deepinv's grid.

Writes ``benchmarks/results/deepinv_crosscheck.json`` (read by ``tests/test_deepinv_crosscheck.py``). ~5 s.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

import dptheory as dpt
from dptheory.samplers import ddrm, diffpir
from dptheory.schedules import VPSchedule

F64 = torch.float64
H = W = 4
SIGMA_Y = 0.05
ddrm_module = importlib.import_module("dptheory.samplers.ddrm")  # the modules (the package exports the functions)
diffpir_module = importlib.import_module("dptheory.samplers.diffpir")
OUT = Path(__file__).resolve().parent / "results" / "deepinv_crosscheck.json"


def prior01():
    """Mean and covariance of the [0, 1]-unit Gaussian prior on 4x4 images (flattened)."""
    ij = torch.stack(torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij"), -1).reshape(-1, 2).to(F64)
    C = torch.exp(-torch.cdist(ij, ij).square() / 2)
    return torch.full((H * W,), 0.5, dtype=F64), 0.01 * C + 1e-3 * torch.eye(H * W, dtype=F64)


class GaussianVEDenoiser(torch.nn.Module):
    """``D(x, sigma) = m + S (S + sigma^2 I)^{-1} (x - m)`` on ``(n, 1, H, W)`` images (the exact E[x0 | x0 +
    sigma n])."""

    def __init__(self, m, S):
        super().__init__()
        self.m, self.S = m, S

    def forward(self, x, sigma):
        s2 = float(sigma) ** 2
        G = torch.linalg.solve(self.S + s2 * torch.eye(self.S.shape[0], dtype=F64), self.S).T  # S (S + s2)^-1
        flat = x.reshape(x.shape[0], -1).to(F64)
        return (self.m + (flat - self.m) @ G.T).reshape(x.shape)


class GridSchedule(VPSchedule):
    """A VP schedule whose descending grid is given explicitly (deepinv's levels)."""

    grid: list

    def timesteps(self, steps=None, t_start=None):
        return list(self.grid)


def grid_schedule(alpha_bars, grid) -> GridSchedule:
    """``alpha_bars`` for steps ``1..T`` and the descending grid of steps the sampler walks."""
    ab = alpha_bars.copy() if isinstance(alpha_bars, np.ndarray) else alpha_bars  # no negative numpy strides
    base = VPSchedule.from_alpha_bars(torch.as_tensor(ab).to(F64))
    sched = GridSchedule(betas=base.betas, alpha_bars=base.alpha_bars, name="deepinv grid")
    object.__setattr__(sched, "grid", list(grid))
    return sched


class Recorder:
    """Records ``torch.randn_like`` draws while active."""

    def __init__(self):
        self.draws, self._orig = [], torch.randn_like

    def __enter__(self):
        def rec(x, *a, **k):
            z = self._orig(x, *a, **k)
            self.draws.append(z.detach().clone().to(F64))
            return z

        torch.randn_like = rec
        return self

    def __exit__(self, *exc):
        torch.randn_like = self._orig


def feed(draws, scale=1.0):
    """A ``randn_like(x, generator)`` replacement that returns the recorded draws in order."""
    queue = [d * scale for d in draws]

    def randn_like(x, generator):
        return queue.pop(0).reshape(x.shape).to(x.dtype)

    return randn_like, queue


def problem():
    import deepinv as dinv

    m, S = prior01()
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, H, W, generator=g, dtype=F64) > 0.5).to(F64)
    x = (m + torch.linalg.cholesky(S) @ torch.randn(H * W, generator=g, dtype=F64)).reshape(1, 1, H, W)
    y = mask * x + SIGMA_Y * mask * torch.randn(x.shape, generator=g, dtype=F64)
    physics = dinv.physics.Inpainting(img_size=(1, H, W), mask=mask, noise_model=dinv.physics.GaussianNoise(SIGMA_Y))
    return m, S, mask, x, y, physics


def check_ddrm(m, S, mask, y, physics, n_levels=20, eta=0.85, eta_b=1.0):
    import deepinv as dinv

    sigmas = np.linspace(1.0, 0.0, n_levels)
    model = dinv.sampling.DDRM(GaussianVEDenoiser(m, S), sigmas=sigmas, eta=eta, etab=eta_b)
    torch.manual_seed(1)
    with Recorder() as rec:
        theirs = model(y, physics)
    ab = 1.0 / (1.0 + np.asarray(sigmas) ** 2)  # VE level sigma <-> alpha_bar = 1 / (1 + sigma^2)
    # steps n-1 .. 1 carry sigmas[0] .. sigmas[n-2]; step 0 (ab = 1) is sigmas[n-1] = 0
    sched = grid_schedule(ab[::-1][1:], list(range(n_levels - 1, -1, -1)))
    op = dpt.MatrixOperator(torch.diag(mask.reshape(-1)))
    den = dpt.ExactDenoiser(dpt.Gaussian(m, S))
    out = {}
    for label, scale in (("draws_over_sqrt2", 1 / math.sqrt(2.0)), ("draws_as_drawn", 1.0)):
        randn, queue = feed(rec.draws, scale)
        z = queue.pop(0).reshape(1, -1)
        ddrm_module.randn_like, orig = randn, ddrm_module.randn_like
        try:
            ours = ddrm(den, z, sched, operator=op, y=y.reshape(-1), sigma_y=SIGMA_Y, eta=eta,
                                     eta_b=eta_b)
        finally:
            ddrm_module.randn_like = orig
        out[label] = float((ours.reshape(theirs.shape) - theirs.to(F64)).abs().max())
    out["output_scale"] = float(theirs.abs().max())
    out["n_levels"], out["eta"], out["eta_b"] = n_levels, eta, eta_b
    return out


def check_diffpir(m, S, mask, y, physics, max_iter=20, lambda_=7.0, zeta=0.3):
    import deepinv as dinv

    model = dinv.sampling.DiffPIR(GaussianVEDenoiser(m, S), dinv.optim.data_fidelity.L2(), sigma=SIGMA_Y,
                                  max_iter=max_iter, zeta=zeta, lambda_=lambda_)
    torch.manual_seed(2)
    with Recorder() as rec:
        theirs01 = model(y, physics)
    levels = [int(model.find_nearest(model.reduced_alpha_cumprod, model.sigmas[s])) for s in model.seq]
    alphas_cumprod = (model.sqrt_alphas_cumprod.to(F64)) ** 2
    sched = grid_schedule(alphas_cumprod, [t + 1 for t in levels])  # deepinv's 0-based t is our t + 1
    mpm, Spm = 2 * m - 1, 4 * S  # the prior in [-1, 1] units
    den = dpt.ExactDenoiser(dpt.Gaussian(mpm, Spm))
    op = dpt.MatrixOperator(torch.diag(mask.reshape(-1)))
    ypm = (2 * y - mask).reshape(-1)  # y in [-1, 1] units (observed pixels), 0 elsewhere
    randn, queue = feed(rec.draws)
    z = queue.pop(0).reshape(1, -1)
    ab_T = float(alphas_cumprod[-1])
    s_T = float(model.sigmas[model.seq[0]])
    x_start = math.sqrt(ab_T) * (2 * (mask * y).reshape(1, -1) - 1 + math.sqrt(s_T**2 - 4 * SIGMA_Y**2) * z)
    diffpir_module.randn_like, orig = randn, diffpir_module.randn_like
    try:
        ours = diffpir(den, x_start, sched, operator=op, y=ypm, sigma_y=2 * SIGMA_Y, lam=lambda_ / 2,
                                    zeta=zeta, steps=None)
    finally:
        diffpir_module.randn_like = orig
    ours01 = ours.reshape(theirs01.shape) / 2 + 0.5
    return {"same_noise": float((ours01 - theirs01.to(F64)).abs().max()), "output_scale": float(theirs01.abs().max()),
            "max_iter": max_iter, "lambda_deepinv": lambda_, "lam_dptheory": lambda_ / 2, "zeta": zeta,
            "unused_draws": len(queue)}


def main(argv=None) -> int:
    import deepinv as dinv

    torch.set_default_dtype(F64)
    m, S, mask, _, y, physics = problem()
    result = {
        "deepinv": dinv.__version__,
        "torch": torch.__version__,
        "problem": f"{H}x{W} inpainting, half mask, sigma_y = {SIGMA_Y}, Gaussian prior N(0.5, 0.01 C + 1e-3 I)",
        "ddrm": check_ddrm(m, S, mask, y, physics),
        "diffpir": check_diffpir(m, S, mask, y, physics),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
