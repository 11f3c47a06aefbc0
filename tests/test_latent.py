"""Latent-space solvers (LMAP-RPS, latent DPS, RED-Diff) end to end on a tiny VAE + latent UNet built here and
loaded through ``load_backbone("sd:...")`` (nothing is downloaded)."""

import pytest
import torch
from test_backbones import _tiny_sd_folder  # the tiny SD-style folder builder (vae/, unet/, scheduler/)

from dptheory.images.backbones import LatentBackbone, load_backbone
from dptheory.images.latent_solve import LATENT_T1, LatentOperator, LatentSolution, solve_latent
from dptheory.images.operators import Inpainting, SuperResolution
from dptheory.images.problem import ImageInverseProblem

H = 16  # image side; the tiny VAE downsamples by 2 -> latents (4, 8, 8)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_sd")
    _tiny_sd_folder(root, with_text=False)
    emb = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    bb = load_backbone(f"sd:{root}", prompt_embedding=emb)
    assert isinstance(bb, LatentBackbone)
    return bb


def _setup(gen, op):
    x = torch.rand(1, 3, H, H, generator=gen, dtype=torch.float32) * 2 - 1
    problem = ImageInverseProblem(op, sigma_y=0.05)
    return problem, problem.measure(x, gen)


def _residual(problem, y, bb, z):
    with torch.no_grad():
        return float((y - problem.operator.A(bb.decode(z))).norm())


def test_latent_operator(backbone, gen):
    problem, y = _setup(gen, SuperResolution(2))
    op = LatentOperator(problem.operator, backbone)
    with torch.no_grad():
        want = backbone.encode(problem.operator.pinv(y))
    torch.testing.assert_close(op.pinv(y), want, rtol=0, atol=0)
    assert op.pinv(y).shape == (1, 4, H // 2, H // 2)
    z = op.pinv(y).requires_grad_(True)
    Az = op.A(z)
    assert Az.shape == y.shape and op.decoder_calls == 1
    (g,) = torch.autograd.grad((y - Az).square().sum(), z)  # the data term differentiates through the decoder
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(NotImplementedError, match="nonlinear"):
        op.A_adjoint(y)


@pytest.mark.parametrize("op", ["sr", "inpaint"])
def test_lmap_rps_stage1_decreases_data_term(backbone, gen, op):
    """t0 = 0 returns the stage-1 point; with w_prior = 0 stage 1 is AdamW on ||y - A D(z)||^2 from E(A^+ y),
    so the residual through the decoder goes down; NFE = iters (one latent-UNet call per iteration)."""
    operator = SuperResolution(2) if op == "sr" else Inpainting(torch.rand(H, H, generator=gen) > 0.5)
    problem, y = _setup(gen, operator)
    iters = 25
    sol = solve_latent(problem, y, "map-rps", backbone, t0=0, iters=iters, lr=0.05, weighting="official",
                       w_prior=0.0, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert isinstance(sol, LatentSolution)
    assert sol.z.shape == (1, 4, H // 2, H // 2) and sol.x.shape == (1, 3, H, H)
    assert torch.isfinite(sol.x).all() and torch.isfinite(sol.z).all()
    assert sol.nfe == iters and sol.decoder_calls == iters + 1
    z_start = LatentOperator(problem.operator, backbone).pinv(y)
    r0, r1 = _residual(problem, y, backbone, z_start), _residual(problem, y, backbone, sol.z)
    assert r1 < 0.9 * r0, (r0, r1)


def test_lmap_rps_t0_positive_runs_latent_dps(backbone, gen):
    problem, y = _setup(gen, SuperResolution(2))
    seen = []
    sol = solve_latent(problem, y, "map-rps", backbone, t0=4, iters=6, weighting="official", w_prior=0.25,
                       n_samples=2, generator=torch.Generator().manual_seed(0),
                       callback=lambda i, t, z, z0: seen.append((t, tuple(z.shape))))  # fmt: skip
    assert sol.nfe == 6 + 4 and sol.decoder_calls == 6 + 4 + 1
    assert sol.x.shape == (2, 3, H, H) and torch.isfinite(sol.x).all()
    assert [t for t, _ in seen] == [4, 3, 2, 1] and seen[0][1] == (2, 4, H // 2, H // 2)  # stage-2 steps, latents
    assert not torch.equal(sol.z[0], sol.z[1])  # particles get their own noise


def test_latent_t1_default_and_prior_used(backbone, gen):
    """The default t1 is the official latent 50; a nonzero prior weight changes the stage-1 point."""
    assert LATENT_T1 == 50
    problem, y = _setup(gen, SuperResolution(2))
    kw = dict(t0=0, iters=5, lr=0.05, weighting="official")
    a = solve_latent(problem, y, "map-rps", backbone, w_prior=0.0, generator=torch.Generator().manual_seed(0), **kw)
    b = solve_latent(problem, y, "map-rps", backbone, w_prior=5.0, generator=torch.Generator().manual_seed(0), **kw)
    c = solve_latent(problem, y, "map-rps", backbone, w_prior=5.0, t1=LATENT_T1,
                     generator=torch.Generator().manual_seed(0), **kw)  # fmt: skip
    assert not torch.allclose(a.z, b.z)
    torch.testing.assert_close(b.z, c.z, rtol=0, atol=0)


@pytest.mark.parametrize("method, knobs, nfe", [("dps", dict(steps=5), 5), ("red-diff", dict(steps=4), 4)])
def test_latent_dps_and_red_diff(backbone, gen, method, knobs, nfe):
    problem, y = _setup(gen, SuperResolution(2))
    sol = solve_latent(problem, y, method, backbone, generator=torch.Generator().manual_seed(0), **knobs)
    assert sol.nfe == nfe and sol.decoder_calls == nfe + 1
    assert sol.x.shape == (1, 3, H, H) and torch.isfinite(sol.x).all() and torch.isfinite(sol.z).all()


def test_latent_rejects(backbone, gen):
    problem, y = _setup(gen, SuperResolution(2))
    with pytest.raises(ValueError, match="exact conditional"):
        solve_latent(problem, y, "posterior", backbone)
    with pytest.raises(ValueError, match="A_norm_squared"):
        solve_latent(problem, y, "vml-map", backbone, steps=2)
    with pytest.raises(ValueError, match="t0"):
        solve_latent(problem, y, "map-rps", backbone)


def test_latent_backbone_classifier_free_guidance(tmp_path, gen):
    """``guidance_scale`` (the official COCO runs' CFG 1.5 with a caption): the denoiser's network output is
    ``u + s (c - u)``, checked against two direct UNet calls; ``s = 1`` is the conditional output alone."""
    _tiny_sd_folder(tmp_path, with_text=False)
    f32 = dict(dtype=torch.float32)
    cond = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(1), **f32)
    uncond = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(2), **f32)
    bb = LatentBackbone(tmp_path, prompt_embedding=cond, guidance_scale=1.5, uncond_embedding=uncond)
    z = torch.randn(2, 4, 8, 8, generator=gen, **f32)
    t = torch.full((2,), 10, dtype=torch.long)
    with torch.no_grad():
        c = bb.unet(z, t, encoder_hidden_states=cond.expand(2, -1, -1)).sample
        u = bb.unet(z, t, encoder_hidden_states=uncond.expand(2, -1, -1)).sample
        out = bb.denoiser.net(z, t)
    assert torch.allclose(out, u + 1.5 * (c - u), atol=1e-6, rtol=0)  # float32 round-off of O(1) outputs
    assert (out - c).abs().max() > 1e-3
    with pytest.raises(ValueError, match="guidance_scale"):
        LatentBackbone(tmp_path, prompt_embedding=cond, guidance_scale=-1.0, uncond_embedding=uncond)
    with pytest.raises(ValueError, match="uncond_embedding"):
        LatentBackbone(tmp_path, prompt_embedding=cond, guidance_scale=1.5, uncond_embedding=uncond[:, :3])
