"""Denoisers for images behind the one interface ``D(x_t, alpha_bar) -> E[x0 | x_t]``.

- :class:`EmpiricalMixtureDenoiser`: the exact denoiser of a finite image set (and its exact conditioning);
- :func:`load_diffusers_unet`: a local diffusers ``UNet2DModel`` folder (pixel space);
- :func:`load_photo_unet`: the project's own UNet trained on 32 x 32 crops of the bundled photos (the default);
- :func:`load_adm` / :func:`build_adm`: ADM / guided-diffusion checkpoints (DPS's ``ffhq_10m.pt``), loaded strictly;
- :class:`LatentBackbone`: VAE + latent UNet of a local Stable Diffusion folder (LMAP-RPS);
- :func:`load_backbone`: one spec string to a backbone with ``.denoiser``, ``.schedule``, ``.encode``,
  ``.decode`` and ``.latent``.

diffusers and transformers are imported inside the loaders only, so importing dptheory stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...schedules import VPSchedule, linear_schedule
from .adm import ADM_CONFIGS, ADMUNet, build_adm, load_adm
from .diffusers_unet import load_diffusers_unet, schedule_from_scheduler_config
from .empirical import EmpiricalMixtureDenoiser
from .latent import LatentBackbone, empty_prompt_embedding
from .photo_unet import PHOTO_UNET_WEIGHTS, load_photo_unet

__all__ = [
    "EmpiricalMixtureDenoiser",
    "load_diffusers_unet",
    "schedule_from_scheduler_config",
    "ADM_CONFIGS",
    "ADMUNet",
    "build_adm",
    "load_adm",
    "PHOTO_UNET_WEIGHTS",
    "load_photo_unet",
    "LatentBackbone",
    "empty_prompt_embedding",
    "PixelBackbone",
    "load_backbone",
]


@dataclass
class PixelBackbone:
    """A pixel-space backbone: ``encode`` and ``decode`` are the identity, so code written for latent backbones
    (``x -> z -> denoise -> x``) runs unchanged."""

    denoiser: object
    schedule: VPSchedule
    name: str = ""
    latent: bool = False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The identity (pixel space is the model space)."""
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The identity (pixel space is the model space)."""
        return z


_SPEC_HELP = (
    "backbone spec must be 'photo-unet' (the project's trained 32 px UNet) or 'photo-unet:FILE.pt', an image "
    "tensor (N, c, h, w) (exact empirical prior), 'empirical:FILE.pt' (a saved "
    "image tensor), 'empirical:photo_patches' (dptheory.images.data.photo_patches), 'adm:CONFIG:FILE.pt' (CONFIG "
    f"in {sorted(ADM_CONFIGS)}), a FILE.pt (ADM, config ffhq_10m), 'diffusers:DIR' or a DIR (diffusers "
    "UNet2DModel or pipeline folder), or 'sd:DIR' (Stable Diffusion folder, latent)"
)


def _empirical_images(arg: str, kwargs: dict) -> torch.Tensor:
    if arg.endswith((".pt", ".pth")):
        p = Path(arg).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"expected a saved image tensor (N, c, h, w) at {p}")
        from ..._safeload import load_tensors

        images = load_tensors(p, "saved image tensor")
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"{p} holds a {type(images).__name__}; expected an image tensor (N, c, h, w)")
        return images
    try:
        from .. import data
    except ImportError as err:
        raise ValueError(f"'empirical:{arg}' needs dptheory.images.data, which is not available") from err
    fn = getattr(data, arg, None)
    if not callable(fn):
        raise ValueError(f"dptheory.images.data has no function {arg!r}; {_SPEC_HELP}")
    return fn(**kwargs)


def load_backbone(spec, *, device=None, dtype: torch.dtype = torch.float32, **kwargs):
    """Map a spec to a backbone with ``.denoiser``, ``.schedule``, ``.encode``, ``.decode`` and ``.latent``.

    Specs: ``photo-unet`` (the committed :func:`load_photo_unet` weights) or ``photo-unet:FILE.pt``; an image
    tensor or ``empirical:FILE.pt`` / ``empirical:NAME`` (a function of
    :mod:`dptheory.images.data` called with ``**kwargs``) give the exact :class:`EmpiricalMixtureDenoiser` (on the
    default linear T = 1000 grid; it is exact at any ``alpha_bar``); ``adm:CONFIG:FILE.pt`` or ``FILE.pt`` an ADM
    checkpoint; ``diffusers:DIR`` or an existing directory a diffusers ``UNet2DModel``; ``sd:DIR`` a
    :class:`LatentBackbone` (``**kwargs`` go to it, e.g. ``prompt_embedding``). Anything else raises
    ``ValueError`` listing the accepted forms.
    """
    if isinstance(spec, torch.Tensor):
        return PixelBackbone(
            EmpiricalMixtureDenoiser(spec.to(device=device, dtype=dtype)), linear_schedule(), "empirical"
        )
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"{_SPEC_HELP}; got {type(spec).__name__}")
    spec = str(spec)
    kind, _, rest = spec.partition(":")
    if kind == "photo-unet":
        return PixelBackbone(*load_photo_unet(rest or None, device=device, dtype=dtype), spec)
    if kind == "empirical" and rest:
        images = _empirical_images(rest, kwargs).to(device=device, dtype=dtype)
        return PixelBackbone(EmpiricalMixtureDenoiser(images), linear_schedule(), spec)
    if kind == "adm" and rest:
        config, _, path = rest.partition(":")
        if not path:
            config, path = "ffhq_10m", rest
        den, sched = load_adm(path, config, device=device, dtype=dtype)
        return PixelBackbone(den, sched, spec)
    if kind == "sd" and rest:
        return LatentBackbone(rest, device=device, dtype=dtype, **kwargs)
    if kind == "diffusers" and rest:
        return PixelBackbone(*load_diffusers_unet(rest, device=device, dtype=dtype), spec)
    if spec.endswith((".pt", ".pth")):
        den, sched = load_adm(spec, "ffhq_10m", device=device, dtype=dtype)
        return PixelBackbone(den, sched, spec)
    if Path(spec).expanduser().is_dir():
        return PixelBackbone(*load_diffusers_unet(spec, device=device, dtype=dtype), spec)
    raise ValueError(f"unknown backbone {spec!r}: {_SPEC_HELP}")
