"""Latent diffusion (Stable Diffusion style) behind the one denoiser interface, for LMAP-RPS.

A :class:`LatentBackbone` holds the VAE (diffusers ``AutoencoderKL``; ``encode(x) = (E(x) - shift) *
scaling_factor``, the posterior mean or a draw, and ``decode(z) = D(z / scaling_factor + shift)``, both
differentiable; images in model units [-1, 1]), the latent UNet (``UNet2DConditionModel``) evaluated with the
EMPTY prompt (its text-encoder output, padded to the tokenizer's ``model_max_length`` and computed once) or a given
``prompt_embedding``, ``.denoiser`` (a :class:`~dptheory.NetworkDenoiser` in latent space, eps or v per the
scheduler config) and ``.schedule`` (the training betas, e.g. ``scaled_linear`` 0.00085..0.012, T = 1000 for SD
1.5). Nothing is downloaded (``local_files_only=True``). With a local diffusers-format SD 1.5 folder (``vae/``,
``unet/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``), or ``dptheory restore --backbone sd:/models/sd15``::

    bb = LatentBackbone("/models/sd15", device="cuda", dtype=torch.float16)
    z = bb.encode(x)                      # (n, 4, H/8, W/8)
    x_hat = bb.decode(bb.denoiser(z_t, alpha_bar))   # E[z0 | z_t] for the empty prompt, decoded
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...denoisers import NetworkDenoiser
from .diffusers_unet import TorchNet, _read_json, _resolve_model_dir, schedule_from_scheduler_config

__all__ = ["LatentBackbone", "empty_prompt_embedding"]


def empty_prompt_embedding(path, *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The CLIP text-encoder output for the empty prompt, ``(1, L, D)``, from ``path/tokenizer`` and
    ``path/text_encoder`` (``local_files_only=True``); ``L`` is the tokenizer's ``model_max_length`` (77 for
    SD 1.x), padded as the diffusers pipelines do for the unconditional branch."""
    root = Path(path).expanduser()
    for sub in ("tokenizer", "text_encoder"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(
                f"expected a CLIP {sub} folder at {root / sub} (or pass prompt_embedding=tensor of shape (1, L, D))"
            )
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(str(root / "text_encoder"), local_files_only=True).eval()
    ids = tokenizer(
        [""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        emb = encoder(ids)[0]
    return emb.to(device=device, dtype=dtype)


class _CFGNet:
    """``net(x, t) = u(x, t) + s (c(x, t) - u(x, t))``: classifier-free guidance of two network callables."""

    def __init__(self, cond, uncond, scale: float):
        self.cond, self.uncond, self.scale = cond, uncond, scale

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        u = self.uncond(x, t)
        return u + self.scale * (self.cond(x, t) - u)


class LatentBackbone:
    """VAE + latent UNet of a local Stable Diffusion style folder (module docstring).

    Args:
        path: folder with ``vae/``, ``unet/`` and ``scheduler/`` (and ``text_encoder/`` + ``tokenizer/`` unless
            ``prompt_embedding`` is given).
        prompt_embedding: optional precomputed conditioning ``(1, L, cross_attention_dim)`` used for every call
            (e.g. an image's caption encoded by the CLIP text encoder, as the official LMAP-RPS COCO runs do).
        guidance_scale: classifier-free guidance ``s`` (Ho & Salimans 2022): the network output is
            ``out_u + s (out_c - out_u)``, ``out_c`` with ``prompt_embedding`` and ``out_u`` with
            ``uncond_embedding``. 1.0 (default) is the conditional output alone (one UNet call); the official
            LMAP-RPS SD 1.5 runs use 1.5 with the COCO caption (``third_party/sd15/sd15.py``). With ``s != 1`` a
            denoiser call costs TWO UNet evaluations (counted as one NFE).
        uncond_embedding: the unconditional embedding for CFG (default: the empty prompt from the folder's text
            encoder).
        device, dtype: where and in which precision the networks run (inputs are cast; outputs come back in
            the input's dtype).
        sample_latent: ``encode`` draws from the VAE posterior instead of taking its mean.

    Attributes:
        denoiser: :class:`~dptheory.NetworkDenoiser` on latents ``(n, C_z, h, w)``.
        schedule: the UNet's training :class:`~dptheory.VPSchedule`.
        scaling_factor, shift_factor: the VAE's latent normalisation.
        latent: ``True`` (``PixelBackbone.latent`` is ``False``); the solvers go through
            :func:`dptheory.images.latent_solve.solve_latent`.
    """

    latent = True

    def __init__(self, path, *, prompt_embedding: torch.Tensor | None = None, device=None,
                 dtype: torch.dtype = torch.float32, sample_latent: bool = False, guidance_scale: float = 1.0,
                 uncond_embedding: torch.Tensor | None = None):  # fmt: skip
        from diffusers import AutoencoderKL, UNet2DConditionModel

        root = Path(path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"expected a Stable Diffusion folder (vae/, unet/, scheduler/, text_encoder/, tokenizer/) at {root}"
            )
        vae_dir = _resolve_model_dir(root, "vae", "AutoencoderKL")
        unet_dir = _resolve_model_dir(root, "unet", "UNet2DConditionModel")
        sched = root / "scheduler" / "scheduler_config.json"
        if not sched.is_file():
            raise FileNotFoundError(f"expected the scheduler config at {sched}")
        self.vae = AutoencoderKL.from_pretrained(str(vae_dir), local_files_only=True)
        self.vae = self.vae.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.unet = UNet2DConditionModel.from_pretrained(str(unet_dir), local_files_only=True)
        self.unet = self.unet.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.schedule, self.prediction = schedule_from_scheduler_config(_read_json(sched))
        if prompt_embedding is None:
            prompt_embedding = empty_prompt_embedding(root, device=device, dtype=dtype)
        prompt_embedding = torch.as_tensor(prompt_embedding).to(device=device, dtype=dtype)
        if prompt_embedding.ndim == 2:
            prompt_embedding = prompt_embedding.unsqueeze(0)
        cad = self.unet.config.cross_attention_dim
        if prompt_embedding.ndim != 3 or prompt_embedding.shape[0] != 1 or prompt_embedding.shape[-1] != cad:
            raise ValueError(f"prompt_embedding must have shape (1, L, {cad}), got {tuple(prompt_embedding.shape)}")
        self.prompt_embedding = prompt_embedding
        cfg = self.vae.config
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.sample_latent = sample_latent
        if not (isinstance(guidance_scale, (int, float)) and not isinstance(guidance_scale, bool)
                and guidance_scale >= 0 and guidance_scale < float("inf")):
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        self.guidance_scale = float(guidance_scale)
        net = TorchNet(self.unet, encoder_hidden_states=prompt_embedding)
        if self.guidance_scale != 1.0:
            if uncond_embedding is None:
                uncond_embedding = empty_prompt_embedding(root, device=device, dtype=dtype)
            uncond_embedding = torch.as_tensor(uncond_embedding).to(device=device, dtype=dtype)
            if uncond_embedding.ndim == 2:
                uncond_embedding = uncond_embedding.unsqueeze(0)
            if tuple(uncond_embedding.shape) != tuple(prompt_embedding.shape):
                raise ValueError(f"uncond_embedding must have the shape of prompt_embedding "
                                 f"{tuple(prompt_embedding.shape)}, got {tuple(uncond_embedding.shape)}")
            net = _CFGNet(net, TorchNet(self.unet, encoder_hidden_states=uncond_embedding), self.guidance_scale)
        self.denoiser = NetworkDenoiser(net, self.schedule, prediction=self.prediction)

    @property
    def latent_channels(self) -> int:
        """Channels of the latent space."""
        return int(self.vae.config.latent_channels)

    def _vae_in(self, x: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        return x.to(device=p.device, dtype=p.dtype)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = (E(x) - shift) * scaling_factor`` for images ``x (n, 3, H, W)`` in [-1, 1]."""
        dist = self.vae.encode(self._vae_in(x)).latent_dist
        z = dist.sample(generator=generator) if self.sample_latent else dist.mean
        return ((z - self.shift_factor) * self.scaling_factor).to(device=x.device, dtype=x.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``x = D(z / scaling_factor + shift)``, differentiable in ``z``."""
        x = self.vae.decode(self._vae_in(z / self.scaling_factor + self.shift_factor)).sample
        return x.to(device=z.device, dtype=z.dtype)
