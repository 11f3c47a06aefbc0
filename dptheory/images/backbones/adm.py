"""The ADM UNet (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs"), written so that guided-diffusion
checkpoints load with ``load_state_dict(strict=True)``.

The module tree reproduces the parameter names of openai/guided-diffusion ``guided_diffusion/unet.py``
(``UNetModel``), which DPS (Chung et al. 2023) ships unchanged: ``time_embed``, ``input_blocks``, ``middle_block``,
``output_blocks`` and ``out``, with guided-diffusion's ResBlock (scale-shift norm), AttentionBlock (legacy head
order) and float32 GroupNorm (32 groups); the full layout is in ``paper_notes/images.md``.

Configs (:data:`ADM_CONFIGS`, ``create_model`` argument names): ``ffhq_10m`` (DPS ``configs/model_config.yaml``;
checkpoint ``ffhq_10m.pt`` from the DPS README) and ``256x256_diffusion_uncond`` (guided-diffusion README; same as
DPS ``configs/imagenet_model_config.yaml``). Both were trained with ``diffusion_steps 1000`` and ``noise_schedule
linear`` (betas 1e-4..0.02), eps-prediction with learned variance; timesteps are passed unscaled
(``rescale_timesteps False``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ...denoisers import NetworkDenoiser
from ...schedules import VPSchedule, linear_schedule

__all__ = ["ADM_CONFIGS", "ADMUNet", "build_adm", "load_adm", "adm_config", "timestep_embedding"]

_COMMON = dict(
    channel_mult="",
    learn_sigma=True,
    class_cond=False,
    num_heads=4,
    num_head_channels=64,
    num_heads_upsample=-1,
    use_scale_shift_norm=True,
    dropout=0.0,
    resblock_updown=True,
    use_fp16=False,
    use_new_attention_order=False,
)
ADM_CONFIGS: dict[str, dict] = {
    "ffhq_10m": dict(_COMMON, image_size=256, num_channels=128, num_res_blocks=1, attention_resolutions="16"),
    "256x256_diffusion_uncond": dict(
        _COMMON, image_size=256, num_channels=256, num_res_blocks=2, attention_resolutions="32,16,8"
    ),
}
_DEFAULT_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t f_k), sin(t f_k)]`` with ``f_k = max_period^(-k / (dim // 2))``, ``(n, dim)``
    (zero-padded when ``dim`` is odd), as in guided-diffusion ``nn.timestep_embedding``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in at least float32 (then cast back), as ADM does for its fp16 torso."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.promote_types(x.dtype, torch.float32)
        w, b = self.weight.to(dt), self.bias.to(dt)
        return F.group_norm(x.to(dt), self.num_groups, w, b, self.eps).to(x.dtype)


class EmbedSequential(nn.Sequential):
    """A sequence whose ResBlocks also receive the timestep embedding (guided-diffusion TimestepEmbedSequential)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Downsample(nn.Module):
    """Halve the resolution: a stride-2 3x3 conv (``op``) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double the resolution (nearest neighbour), then an optional 3x3 conv (``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding, optionally resampling (``up`` / ``down``)."""

    def __init__(
        self, channels, emb_channels, dropout, out_channels=None, *, scale_shift=False, up=False, down=False, groups=32
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(
            GroupNorm32(groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, (2 if scale_shift else 1) * out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(groups, out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[2](self.h_upd(self.in_layers[:2](x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the spatial positions with a residual connection (``norm``, ``qkv``, ``proj_out``)."""

    def __init__(
        self, channels: int, num_heads: int = 1, num_head_channels: int = -1, *, legacy: bool = True, groups: int = 32
    ):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.legacy = legacy
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # (b, 3c, L)
        heads, L = self.num_heads, x.shape[-1]
        ch = c // heads
        if self.legacy:  # heads first: (b * heads, 3 ch, L), then q | k | v
            q, k, v = qkv.reshape(b * heads, 3 * ch, L).split(ch, dim=1)
        else:  # q | k | v first, then heads
            q, k, v = (u.reshape(b * heads, ch, L) for u in qkv.chunk(3, dim=1))
        # softmax(q^T k / sqrt(ch)) v over positions; (B, L, ch) layout for scaled_dot_product_attention
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = self.proj_out(a.transpose(1, 2).reshape(b, c, L))
        return (x + h).reshape(b, c, *spatial)


def adm_config(config) -> dict:
    """A full config dict from a name in :data:`ADM_CONFIGS` or a (partial) dict of ``create_model`` arguments."""
    if isinstance(config, str):
        if config not in ADM_CONFIGS:
            raise ValueError(f"unknown ADM config {config!r}; known: {sorted(ADM_CONFIGS)} (or pass a dict)")
        return dict(ADM_CONFIGS[config])
    if not isinstance(config, dict):
        raise TypeError(f"config must be a name or a dict, got {type(config).__name__}")
    return dict(_COMMON, **config)


class ADMUNet(nn.Module):
    """The guided-diffusion ``UNetModel`` (module docstring), built from ``create_model``-style arguments.

    Args:
        image_size, num_channels, num_res_blocks: resolution, base width, ResBlocks per level.
        channel_mult: ``""`` (the guided-diffusion default for the image size), a comma string or a tuple.
        attention_resolutions: resolutions with attention, ``"32,16,8"`` or a tuple of ints (resolutions, not
            downsampling rates).
        learn_sigma: 6 output channels (eps, variance interpolation) instead of 3.
        class_cond: adds ``label_emb`` (1000 classes); ``forward`` then needs ``y``.
        norm_groups: GroupNorm groups (32 in every published model; smaller only for tiny test models).
        in_channels: input channels (3).
        use_fp16: ignored (precision is chosen by the ``dtype`` the model is moved to).
    """

    def __init__(
        self,
        image_size,
        num_channels,
        num_res_blocks,
        channel_mult="",
        learn_sigma=False,
        class_cond=False,
        attention_resolutions="16",
        num_heads=1,
        num_head_channels=-1,
        num_heads_upsample=-1,
        use_scale_shift_norm=False,
        dropout=0.0,
        resblock_updown=False,
        use_fp16=False,
        use_new_attention_order=False,
        norm_groups=32,
        in_channels=3,
        num_classes=1000,
        use_checkpoint=False,
        model_path=None,
    ):
        super().__init__()
        if channel_mult in ("", None):
            if image_size not in _DEFAULT_MULT:
                raise ValueError(f"no default channel_mult for image_size {image_size}; pass channel_mult")
            channel_mult = _DEFAULT_MULT[image_size]
        elif isinstance(channel_mult, str):
            channel_mult = tuple(int(m) for m in channel_mult.split(","))
        if isinstance(attention_resolutions, (int, str)):
            attention_resolutions = [int(r) for r in str(attention_resolutions).split(",")]
        attn_ds = {image_size // int(r) for r in attention_resolutions}
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample
        C, E, g = num_channels, 4 * num_channels, norm_groups
        self.model_channels, self.out_channels = C, (2 if learn_sigma else 1) * in_channels

        def res(cin, cout=None, **kw):
            return ResBlock(cin, E, dropout, cout, scale_shift=use_scale_shift_norm, groups=g, **kw)

        def attn(ch, heads):
            return AttentionBlock(ch, heads, num_head_channels, legacy=not use_new_attention_order, groups=g)

        self.time_embed = nn.Sequential(nn.Linear(C, E), nn.SiLU(), nn.Linear(E, E))
        if class_cond:
            self.label_emb = nn.Embedding(num_classes, E)
        ch = input_ch = int(channel_mult[0] * C)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, int(mult * C))]
                ch = int(mult * C)
                if ds in attn_ds:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, True, ch)
                self.input_blocks.append(EmbedSequential(down))
                skips.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(res(ch), attn(ch, num_heads), res(ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skips.pop(), int(C * mult))]
                ch = int(C * mult)
                if ds in attn_ds:
                    layers.append(attn(ch, heads_up))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, True, ch))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(g, ch), nn.SiLU(), nn.Conv2d(input_ch, self.out_channels, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, in_channels, H, W), (n,) -> (n, out_channels, H, W)``; timesteps unscaled (0..T-1)."""
        if (y is None) == hasattr(self, "label_emb"):
            raise ValueError("pass class labels y if and only if the model is class-conditional")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        if y is not None:
            emb = emb + self.label_emb(y)
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def build_adm(**config) -> ADMUNet:
    """An :class:`ADMUNet` from ``create_model``-style keyword arguments (see :data:`ADM_CONFIGS`).

    To count parameters without allocating, build under ``with torch.device("meta"):``.
    """
    return ADMUNet(**config)


class _ADMNet:
    """``net(x, t)`` for the denoiser adapter: cast to the model's dtype/device and back."""

    def __init__(self, model: ADMUNet):
        self.model = model
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.model(x.to(device=self.device, dtype=self.dtype), t.to(self.device))
        return out.to(device=x.device, dtype=x.dtype)


def load_adm(path, config="ffhq_10m", *, device=None, dtype: torch.dtype = torch.float32):
    """Load a guided-diffusion / DPS ``.pt`` state dict strictly into :class:`ADMUNet`.

    Args:
        path: the checkpoint (e.g. ``ffhq_10m.pt`` from the DPS README, ``256x256_diffusion_uncond.pt`` from the
            guided-diffusion README), loaded with ``torch.load(..., weights_only=True)``.
        config: a name in :data:`ADM_CONFIGS` or a dict of ``create_model`` arguments.

    Returns:
        ``(NetworkDenoiser, VPSchedule)``: eps-prediction on the linear schedule with T = 1000, keeping the first
        3 output channels when ``learn_sigma`` (the others parametrise the learned variance).
    """
    cfg = adm_config(config)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"expected an ADM / guided-diffusion state dict (.pt) at {path}; e.g. put DPS's ffhq_10m.pt there "
            "(DPS2022/diffusion-posterior-sampling README) and use the config 'ffhq_10m'"
        )
    from ..._safeload import CheckpointError, load_state_dict_into

    model = build_adm(**cfg)
    try:
        load_state_dict_into(model, path, "ADM checkpoint")  # tensors only (weights_only=True / safetensors)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; expected a state dict for the ADM config {config!r}") from None
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    schedule: VPSchedule = linear_schedule(1000)
    channels = cfg.get("in_channels", 3) if cfg.get("learn_sigma") else None
    return NetworkDenoiser(_ADMNet(model), schedule, prediction="eps", channels=channels,
                           data_range=(-1.0, 1.0)), schedule
