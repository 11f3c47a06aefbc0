"""Image backbones: the exact empirical-mixture denoiser against brute-force Bayes, and the checkpoint loaders on
tiny models built here (nothing is downloaded; every load is local)."""

import json
import math

import pytest
import torch

from dptheory.denoisers import x0_from_eps, x0_from_v
from dptheory.images.backbones import (
    ADM_CONFIGS,
    EmpiricalMixtureDenoiser,
    build_adm,
    load_adm,
    load_backbone,
    load_diffusers_unet,
)
from dptheory.images.backbones.adm import AttentionBlock
from dptheory.operators import LinearOperator

IMG = (2, 3, 3)  # (c, h, w) of the toy image sets


def _images(gen, n=6):
    return torch.randn(n, *IMG, generator=gen)


def _brute_weights(images, x_t, ab, log_w=None):
    """softmax_i(log w_i - ||x_t - sqrt(ab) x_i||^2 / (2 (1 - ab))) from explicit differences, (n, N)."""
    d2 = (x_t.flatten(1).unsqueeze(1) - math.sqrt(ab) * images.flatten(1).unsqueeze(0)).square().sum(-1)
    logits = -d2 / (2 * (1 - ab)) + (0.0 if log_w is None else log_w)
    return torch.softmax(logits, dim=-1)


class _MaskOp(LinearOperator):
    """A toy image operator with the image protocol: keep every other pixel of channel 0."""

    def A(self, x):
        return x[:, :1, ::2, ::2]


# ------------------------------------------------------------------------------------------------- empirical
@pytest.mark.parametrize("ab", [0.02, 0.5, 0.97])
@pytest.mark.parametrize("chunk", [2, 100])
def test_empirical_denoiser_matches_bruteforce(gen, ab, chunk):
    images = _images(gen)
    x_t = torch.randn(4, *IMG, generator=gen)
    D = EmpiricalMixtureDenoiser(images, chunk_size=chunk)
    r = _brute_weights(images, x_t, ab)
    want = (r @ images.flatten(1)).reshape(x_t.shape)
    torch.testing.assert_close(D(x_t, ab), want, rtol=0, atol=1e-12)  # float64: same sums, reordered
    cov_want = torch.einsum("ni,ij,ik->njk", r, images.flatten(1), images.flatten(1)) - torch.einsum(
        "nj,nk->njk", want.flatten(1), want.flatten(1)
    )
    torch.testing.assert_close(D.cov(x_t, ab), cov_want, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        D.variance(x_t, ab).flatten(1), torch.diagonal(cov_want, dim1=1, dim2=2), atol=1e-12, rtol=0
    )


def test_empirical_score_is_gradient_of_log_density(gen):
    """Tweedie's score equals autograd of log p_t = logsumexp_i(-||x - sqrt(ab) x_i||^2 / (2(1-ab)))."""
    images, ab = _images(gen), 0.6
    x = torch.randn(3, *IMG, generator=gen, requires_grad=True)
    d2 = (x.flatten(1).unsqueeze(1) - math.sqrt(ab) * images.flatten(1).unsqueeze(0)).square().sum(-1)
    (grad,) = torch.autograd.grad(torch.logsumexp(-d2 / (2 * (1 - ab)), -1).sum(), x)
    torch.testing.assert_close(EmpiricalMixtureDenoiser(images).score(x.detach(), ab), grad, rtol=0, atol=1e-12)


def test_empirical_float32_and_autograd(gen):
    images = _images(gen)
    x_t = torch.randn(3, *IMG, generator=gen)
    D64 = EmpiricalMixtureDenoiser(images)(x_t, 0.4)
    x32 = x_t.float().requires_grad_(True)
    D32 = EmpiricalMixtureDenoiser(images.float())(x32, 0.4)
    assert D32.dtype == torch.float32
    torch.testing.assert_close(D32.double(), D64, rtol=0, atol=1e-5)  # float32 rounding of O(10) logits
    D32.sum().backward()
    assert x32.grad is not None and torch.isfinite(x32.grad).all()


def test_empirical_float32_small_noise_recovers_the_image(gen):
    """At the first DDPM step the logits are about ||x||^2 / (1 - ab) ~ 1e7 here; they are formed in float64, so a
    float32 particle next to image j is denoised to image j (float32 output rounding only)."""
    images = torch.rand(8, 3, 32, 32, generator=gen).float() * 2 - 1
    ab = 1.0 - 1e-4
    x_t = math.sqrt(ab) * images[3:4] + 1e-2 * torch.randn(1, 3, 32, 32, generator=gen).float()
    out = EmpiricalMixtureDenoiser(images)(x_t, ab)
    torch.testing.assert_close(out, images[3:4], rtol=0, atol=1e-6)


def test_empirical_sample_x0_frequencies(gen):
    """Draws of the image index follow r(x_t): each count within 5 binomial standard errors (failure rate
    below 1e-5 per test)."""
    images, ab, n = _images(gen, 4), 0.2, 4000
    x_t = torch.randn(1, *IMG, generator=gen).expand(n, *IMG)
    D = EmpiricalMixtureDenoiser(images)
    draws = D.sample_x0(x_t, ab, generator=gen)
    idx = (draws.flatten(1).unsqueeze(1) == images.flatten(1).unsqueeze(0)).all(-1).float().argmax(-1)
    p = _brute_weights(images, x_t[:1], ab)[0]
    counts = torch.bincount(idx, minlength=4).double()
    se = (n * p * (1 - p)).sqrt()
    assert ((counts - n * p).abs() <= 5 * se + 1e-9).all(), (counts, n * p)


@pytest.mark.parametrize("op", ["object", "matrix"])
def test_empirical_condition_is_bruteforce_bayes(gen, op):
    images, sigma_y, ab = _images(gen, 5), 0.7, 0.5
    if op == "object":
        operator = _MaskOp()
        Ax = operator.A(images).flatten(1)
    else:
        operator = torch.randn(4, math.prod(IMG), generator=gen)
        Ax = images.flatten(1) @ operator.T
    y = Ax[2] + sigma_y * torch.randn(Ax.shape[1], generator=gen)
    if op == "object":
        y = y.reshape(_MaskOp().A(images[:1]).shape[1:])
    D = EmpiricalMixtureDenoiser(images)
    log_lik = -(Ax - y.flatten()).square().sum(-1) / (2 * sigma_y**2)
    w = torch.softmax(log_lik, -1)
    torch.testing.assert_close(
        D.posterior_mean(operator, y, sigma_y), (w @ images.flatten(1)).reshape(IMG), rtol=0, atol=1e-12
    )
    Dy = D.condition(operator, y, sigma_y)
    x_t = torch.randn(3, *IMG, generator=gen)
    r = _brute_weights(images, x_t, ab, log_w=log_lik)
    torch.testing.assert_close(Dy(x_t, ab), (r @ images.flatten(1)).reshape(x_t.shape), rtol=0, atol=1e-12)
    mean = w @ images.flatten(1)
    mmse = (w * (images.flatten(1) - mean).square().sum(-1)).sum()
    torch.testing.assert_close(Dy.total_variance, mmse, rtol=0, atol=1e-12)
    # one measurement per particle: row j conditioned on y[j] equals the single-y result
    ys = torch.stack([y, torch.zeros_like(y), y])
    Dk = D.condition(operator, ys, sigma_y)
    torch.testing.assert_close(Dk(x_t, ab)[0], Dy(x_t[:1], ab)[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(Dk.mean[2], D.posterior_mean(operator, y, sigma_y), rtol=0, atol=1e-12)
    draws = Dy.sample_posterior(3000, generator=gen)  # exact posterior draws: frequencies within 5 SE of w
    idx = (draws.flatten(1).unsqueeze(1) == images.flatten(1).unsqueeze(0)).all(-1).float().argmax(-1)
    counts = torch.bincount(idx, minlength=5).double()
    assert ((counts - 3000 * w).abs() <= 5 * (3000 * w * (1 - w)).sqrt() + 1e-9).all()


def test_load_backbone_empirical(tmp_path, gen):
    images = _images(gen)
    torch.save(images, tmp_path / "set.pt")
    for spec in (images, f"empirical:{tmp_path / 'set.pt'}"):
        bb = load_backbone(spec, dtype=torch.float64)
        assert not bb.latent and bb.encode(images) is images
        torch.testing.assert_close(bb.denoiser(images[:2], 0.3), EmpiricalMixtureDenoiser(images)(images[:2], 0.3))


def test_empirical_bad_input(gen):
    D = EmpiricalMixtureDenoiser(_images(gen))
    with pytest.raises(ValueError, match="x_t must have shape"):
        D(torch.zeros(2, 3, 3, 3), 0.5)
    with pytest.raises(ValueError, match="sigma_y"):
        D.condition(_MaskOp(), torch.zeros(1, 2, 2), 0.0)
    with pytest.raises(TypeError):
        EmpiricalMixtureDenoiser(torch.zeros(3, dtype=torch.long))


@pytest.mark.gpu
def test_backbones_on_cuda(tmp_path, gen):
    """CPU image set with CUDA particles (chunks move to the device), and the tiny ADM on CUDA in float32."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    images = _images(gen, 50)
    x_t = torch.randn(4, *IMG, generator=gen)
    D = EmpiricalMixtureDenoiser(images, chunk_size=7)
    out = D(x_t.cuda().float(), 0.3)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu().double(), D(x_t, 0.3), rtol=0, atol=1e-5)
    assert D.sample_x0(x_t.cuda(), 0.3, generator=gen).device.type == "cuda"
    model = build_adm(**TINY_ADM).float()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    den, _ = load_adm(tmp_path / "tiny.pt", TINY_ADM, device="cuda")
    den_cpu, _ = load_adm(tmp_path / "tiny.pt", TINY_ADM)
    x = torch.randn(2, 3, 16, 16, generator=gen, dtype=torch.float32)
    out = den(x.cuda(), 0.3)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), den_cpu(x, 0.3), rtol=1e-3, atol=1e-3)  # CPU vs CUDA kernels (TF32)


# ------------------------------------------------------------------------------------------------- diffusers
def _tiny_unet2d():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ).float()


@pytest.mark.parametrize(
    "prediction, layout", [("epsilon", "pipeline"), ("v_prediction", "flat"), ("sample", "pipeline")]
)
def test_diffusers_unet_roundtrip(tmp_path, gen, prediction, layout):
    from diffusers import DDPMScheduler

    unet = _tiny_unet2d()
    sched = DDPMScheduler(
        num_train_timesteps=100,
        beta_schedule="scaled_linear",
        beta_start=1e-3,
        beta_end=0.03,
        prediction_type=prediction,
    )
    unet_dir = tmp_path / "unet" if layout == "pipeline" else tmp_path / "model"
    unet.save_pretrained(unet_dir)
    sched.save_pretrained(tmp_path / "scheduler" if layout == "pipeline" else unet_dir)
    den, schedule = load_diffusers_unet(tmp_path if layout == "pipeline" else unet_dir)
    assert schedule.T == 100
    torch.testing.assert_close(schedule.alpha_bars[1:], sched.alphas_cumprod.double(), rtol=1e-6, atol=0)
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float32)
    ab = 0.55
    step = den.timestep(ab)
    ab_net = float(schedule.alpha_bar(step + 1))
    model = den.net.model
    with torch.no_grad():
        raw = model(x, torch.full((2,), step)).sample
        got = den(x, ab)
    want = {"epsilon": x0_from_eps(x, raw, ab_net), "v_prediction": x0_from_v(x, raw, ab_net), "sample": raw}
    torch.testing.assert_close(got, want[prediction], rtol=0, atol=1e-5)  # float32, same ops


def test_diffusers_unet_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json and diffusion_pytorch_model.safetensors"):
        load_diffusers_unet(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="UNet2DModel"):
        load_diffusers_unet(tmp_path / "empty")
    _tiny_unet2d().save_pretrained(tmp_path / "bare")
    with pytest.warns(UserWarning, match="no scheduler config"):
        den, schedule = load_diffusers_unet(tmp_path / "bare")
    assert schedule.T == 1000 and den.prediction == "eps"
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("nonsense-spec")
    with pytest.raises(FileNotFoundError, match="ffhq_10m.pt"):
        load_backbone(f"adm:ffhq_10m:{tmp_path / 'ffhq_10m.pt'}")
    with pytest.raises(ValueError, match="unknown ADM config"):
        load_backbone(f"adm:not_a_config:{tmp_path / 'x.pt'}")
    with pytest.raises(FileNotFoundError, match="Stable Diffusion folder"):
        load_backbone(f"sd:{tmp_path / 'no_sd'}")


# ------------------------------------------------------------------------------------------------- ADM
TINY_ADM = dict(
    image_size=16,
    num_channels=16,
    num_res_blocks=1,
    channel_mult=(1, 2),
    attention_resolutions="8",
    num_head_channels=8,
    learn_sigma=True,
    resblock_updown=True,
    use_scale_shift_norm=True,
    norm_groups=4,
)


def test_adm_tiny_strict_roundtrip(tmp_path, gen):
    torch.manual_seed(0)
    model = build_adm(**TINY_ADM).float()
    with torch.no_grad():
        for p in model.parameters():  # the zero-initialised convs would make eps = 0
            p.normal_(0.0, 0.2)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    den, schedule = load_adm(path, TINY_ADM)
    assert schedule.T == 1000 and den.channels == 3
    x = torch.randn(2, 3, 16, 16, generator=gen, dtype=torch.float32)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        out = den.net.model(x, t)
        assert out.shape == (2, 6, 16, 16)
        torch.testing.assert_close(out, model(x, t))
        ab = 0.3
        step = den.timestep(ab)
        raw = model(x, torch.full((2,), step))
        want = x0_from_eps(x, raw[:, :3], float(schedule.alpha_bar(step + 1)))
        torch.testing.assert_close(den(x, ab), want, rtol=0, atol=1e-5)
    state = model.state_dict()
    state.pop("out.2.bias")
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="strict"):
        load_adm(tmp_path / "bad.pt", TINY_ADM)
    with pytest.raises(FileNotFoundError, match="ffhq_10m.pt"):
        load_adm(tmp_path / "missing.pt", "ffhq_10m")


@pytest.mark.parametrize("legacy", [True, False])
def test_adm_attention_matches_explicit_softmax(gen, legacy):
    """The attention block equals softmax(q^T k / sqrt(ch)) v written out, in the legacy or new head layout."""
    block = AttentionBlock(8, num_head_channels=4, legacy=legacy, groups=2)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn(2, 8, 3, 3, generator=gen)
    h = x.reshape(2, 8, 9)
    qkv = block.qkv(block.norm(h))
    if legacy:
        q, k, v = qkv.reshape(2 * 2, 12, 9).split(4, dim=1)
    else:
        q, k, v = (u.reshape(4, 4, 9) for u in qkv.chunk(3, dim=1))
    w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / 2.0, dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(2, 8, 9)
    want = (h + block.proj_out(a)).reshape(x.shape)
    torch.testing.assert_close(block(x), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "name, n_params, shapes",
    [
        (
            "ffhq_10m",
            93_563_910,
            {
                "time_embed.0.weight": (512, 128),
                "input_blocks.0.0.weight": (128, 3, 3, 3),
                "out.2.weight": (6, 128, 3, 3),
                "input_blocks.1.0.in_layers.0.weight": (128,),
                "input_blocks.1.0.emb_layers.1.weight": (256, 512),
                "input_blocks.1.0.out_layers.3.weight": (128, 128, 3, 3),
                "input_blocks.9.1.qkv.weight": (1536, 512, 1),
                "input_blocks.9.1.proj_out.weight": (512, 512, 1),
                "middle_block.1.norm.weight": (512,),
                "output_blocks.0.0.skip_connection.weight": (512, 1024, 1, 1),
            },
        ),
        (
            "256x256_diffusion_uncond",
            552_814_086,
            {
                "time_embed.0.weight": (1024, 256),
                "out.2.weight": (6, 256, 3, 3),
                "input_blocks.10.1.qkv.weight": (1536, 512, 1),
                "input_blocks.16.1.qkv.weight": (3072, 1024, 1),
                "middle_block.1.qkv.weight": (3072, 1024, 1),
            },
        ),
    ],
)
def test_adm_published_layouts_on_meta(name, n_params, shapes):
    """Names and shapes of the published configs (built on the meta device: nothing is allocated)."""
    with torch.device("meta"):
        model = build_adm(**ADM_CONFIGS[name])
    state = model.state_dict()
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert sum(p.numel() for p in model.parameters()) == n_params


# ------------------------------------------------------------------------------------------------- latent
def _tiny_sd_folder(root, with_text: bool):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=0.5,
    ).float().save_pretrained(root / "vae")
    UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=4,
        norm_num_groups=4,
    ).float().save_pretrained(root / "unet")
    DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
    ).save_pretrained(root / "scheduler")
    if with_text:
        from transformers import CLIPTextConfig, CLIPTextModel

        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "b</w>": 3}
        (root / "tokenizer").mkdir()
        (root / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
        (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
        (root / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 6}))
        cfg = CLIPTextConfig(
            vocab_size=4,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=6,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
        CLIPTextModel(cfg).float().save_pretrained(root / "text_encoder")


@pytest.mark.parametrize("with_text", [False, True])
def test_latent_backbone_end_to_end(tmp_path, gen, with_text):
    from dptheory.images.backbones import LatentBackbone

    _tiny_sd_folder(tmp_path, with_text)
    emb = None if with_text else torch.randn(1, 5, 8, generator=gen)
    bb = LatentBackbone(tmp_path, prompt_embedding=emb)
    assert bb.prediction == "v" and bb.schedule.T == 1000
    if with_text:
        assert bb.prompt_embedding.shape == (1, 6, 8)
    x = torch.rand(2, 3, 16, 16, generator=gen, dtype=torch.float32) * 2 - 1
    z = bb.encode(x)
    assert z.shape == (2, 4, 8, 8)
    ab = 0.4
    step = bb.denoiser.timestep(ab)
    with torch.no_grad():
        raw = bb.unet(z, torch.full((2,), step), encoder_hidden_states=bb.prompt_embedding.expand(2, -1, -1)).sample
        want = x0_from_v(z, raw, float(bb.schedule.alpha_bar(step + 1)))
        torch.testing.assert_close(bb.denoiser(z, ab), want, rtol=0, atol=1e-5)
    zr = z.clone().requires_grad_(True)
    xr = bb.decode(zr)
    assert xr.shape == x.shape
    xr.square().sum().backward()  # the data term of LMAP-RPS differentiates through the decoder
    assert zr.grad is not None and torch.isfinite(zr.grad).all()


def test_photo_unet_spec_loads_the_committed_weights(tmp_path):
    """``photo-unet`` is the committed trained UNet: an eps-prediction network on the linear T = 1000 grid with a
    v-prediction expert for the high-noise steps, whose x0 estimate at low noise is close to the clean image (MSE
    far below the noise variance)."""
    from dptheory import NoiseLevelExperts
    from dptheory.images.backbones import load_backbone
    from dptheory.images.data import load_image

    bb = load_backbone("photo-unet")
    den = bb.denoiser
    assert not bb.latent and bb.schedule.T == 1000 and isinstance(den, NoiseLevelExperts)
    assert den.low.prediction == "eps" and den.high.prediction == "v" and 1 <= den.switch_step <= 999
    x = load_image("skimage:astronaut", 32)
    ab = float(bb.schedule.alpha_bar(51))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    x_t = ab**0.5 * x + (1 - ab) ** 0.5 * z
    with torch.no_grad():
        x0 = bb.denoiser(x_t, ab)
    assert x0.shape == x.shape and x0.dtype == torch.float32
    noise_mse = (1 - ab) / ab  # the MSE of x_t / sqrt(ab), 0.011
    assert float((x0 - x).square().mean()) < 0.6 * noise_mse  # card: 0.45x at step 50 on held-out crops
    with pytest.raises(FileNotFoundError, match="photo UNet weights"):
        load_backbone(f"photo-unet:{tmp_path / 'missing.pt'}")
