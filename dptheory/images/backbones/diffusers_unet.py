"""Pixel-space diffusers ``UNet2DModel`` checkpoints behind the one denoiser interface.

A checkpoint is a local folder written by ``save_pretrained`` (``config.json`` and
``diffusion_pytorch_model.safetensors``): the UNet folder itself or a pipeline folder with ``unet/`` and
``scheduler/`` (e.g. a ``DDPMPipeline`` such as ``google/ddpm-celebahq-256`` downloaded beforehand). Nothing is
downloaded: every ``from_pretrained`` call passes ``local_files_only=True``.

The training schedule comes from the scheduler config (``scheduler/scheduler_config.json`` of a pipeline, a
``scheduler`` folder next to the UNet folder, or a ``scheduler_config.json`` inside it); the betas are rebuilt in
float64 with the diffusers formulas of ``linear``, ``scaled_linear``, ``squaredcos_cap_v2`` (Nichol & Dhariwal
2021, eq. (17)), ``sigmoid`` and ``trained_betas`` (listed in ``paper_notes/images.md``). Without a scheduler config
the DDPM default is used (linear, 1e-4 to 0.02, T = 1000, eps-prediction) with a ``UserWarning``. diffusers
computes its tables in float32, so ``alpha_bar`` agrees with its ``alphas_cumprod`` to about 1e-6, not bit for bit.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch

from ...denoisers import NetworkDenoiser
from ...schedules import VPSchedule, cosine_schedule

__all__ = ["load_diffusers_unet", "schedule_from_scheduler_config", "find_scheduler_config", "TorchNet"]

PREDICTIONS = {"epsilon": "eps", "eps": "eps", "v_prediction": "v", "v": "v", "sample": "x0", "x0": "x0"}
DEFAULT_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
}


def schedule_from_scheduler_config(config: dict) -> tuple[VPSchedule, str]:
    """``(VPSchedule, prediction)`` from a diffusers scheduler config dict (module docstring for the formulas).

    ``prediction`` is ``"eps"``, ``"v"`` or ``"x0"`` (diffusers' ``epsilon``, ``v_prediction``, ``sample``).

    Examples:
        >>> s, p = schedule_from_scheduler_config({"beta_schedule": "scaled_linear", "beta_start": 0.00085,
        ...                                        "beta_end": 0.012, "num_train_timesteps": 1000})
        >>> p, s.T, round(float(s.alpha_bar(1000)), 6)
        ('eps', 1000, 0.00466)
    """
    cfg = {**DEFAULT_SCHEDULER_CONFIG, **{k: v for k, v in config.items() if v is not None}}
    pred = cfg["prediction_type"]
    if pred not in PREDICTIONS:
        raise ValueError(f"unsupported prediction_type {pred!r}; expected one of {sorted(PREDICTIONS)}")
    if cfg.get("rescale_betas_zero_snr"):
        raise ValueError("rescale_betas_zero_snr gives alpha_bar_T = 0, which a VPSchedule cannot represent")
    T = int(cfg["num_train_timesteps"])
    b0, b1, kind = float(cfg["beta_start"]), float(cfg["beta_end"]), cfg["beta_schedule"]
    if cfg.get("trained_betas") is not None:
        betas = torch.as_tensor(cfg["trained_betas"], dtype=torch.float64)
        name = "trained_betas"
    elif kind == "linear":
        betas = torch.linspace(b0, b1, T, dtype=torch.float64)
        name = f"linear(T={T}, {b0:g}..{b1:g})"
    elif kind == "scaled_linear":
        betas = torch.linspace(math.sqrt(b0), math.sqrt(b1), T, dtype=torch.float64) ** 2
        name = f"scaled_linear(T={T}, {b0:g}..{b1:g})"
    elif kind == "squaredcos_cap_v2":
        return cosine_schedule(T), PREDICTIONS[pred]
    elif kind == "sigmoid":
        betas = torch.sigmoid(torch.linspace(-6.0, 6.0, T, dtype=torch.float64)) * (b1 - b0) + b0
        name = f"sigmoid(T={T})"
    else:
        raise ValueError(
            f"unsupported beta_schedule {kind!r}; expected linear, scaled_linear, squaredcos_cap_v2 or sigmoid"
        )
    return VPSchedule.from_betas(betas, name=name), PREDICTIONS[pred]


def find_scheduler_config(unet_dir: Path) -> Path | None:
    """The scheduler config that belongs to a UNet folder, or ``None``.

    Looks, in order, at ``unet_dir/scheduler/scheduler_config.json``, ``unet_dir/../scheduler/...`` (the UNet is
    the ``unet/`` subfolder of a pipeline) and ``unet_dir/scheduler_config.json``.
    """
    for cand in (
        unet_dir / "scheduler" / "scheduler_config.json",
        unet_dir.parent / "scheduler" / "scheduler_config.json",
        unet_dir / "scheduler_config.json",
    ):
        if cand.is_file():
            return cand
    return None


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def _has_weights(folder: Path, stem: str) -> bool:
    return any((folder / f"{stem}{ext}").is_file() for ext in (".safetensors", ".bin"))


def _resolve_model_dir(path, subfolder: str, what: str) -> Path:
    """The folder holding ``config.json`` + weights: ``path`` itself or ``path/subfolder``; else a clear error."""
    root = Path(path).expanduser()
    expected = (
        f"expected a diffusers {what} folder with config.json and diffusion_pytorch_model.safetensors at {root} "
        f"(or a pipeline folder with a {subfolder}/ subfolder holding them)"
    )
    if not root.exists():
        raise FileNotFoundError(f"{expected}; the path does not exist")
    for folder in (root / subfolder, root):
        if (folder / "config.json").is_file() and _has_weights(folder, "diffusion_pytorch_model"):
            return folder
    raise FileNotFoundError(f"{expected}; found {sorted(p.name for p in root.iterdir()) if root.is_dir() else []}")


class TorchNet:
    """``net(x, t)`` for a diffusers model: casts ``x`` to the model's dtype/device, returns ``.sample`` in
    ``x``'s dtype. ``extra`` keyword arguments (e.g. ``encoder_hidden_states``) are passed on each call, expanded
    along the batch when they have a batch axis of 1."""

    def __init__(self, model, **extra):
        self.model, self.extra = model, extra
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kwargs = {}
        for k, v in self.extra.items():
            if isinstance(v, torch.Tensor) and v.shape[0] == 1 and x.shape[0] != 1:
                v = v.expand(x.shape[0], *v.shape[1:])
            kwargs[k] = v
        out = self.model(x.to(device=self.device, dtype=self.dtype), t.to(self.device), **kwargs, return_dict=False)
        return out[0].to(device=x.device, dtype=x.dtype)


def load_diffusers_unet(path, *, device=None, dtype: torch.dtype = torch.float32) -> tuple[NetworkDenoiser, VPSchedule]:
    """Load a local diffusers ``UNet2DModel`` (pixel space) as ``(NetworkDenoiser, VPSchedule)``.

    Args:
        path: a UNet folder (``config.json`` + ``diffusion_pytorch_model.safetensors``) or a pipeline folder with
            ``unet/`` and ``scheduler/`` subfolders. Read with ``local_files_only=True``.
        device, dtype: where and in which precision the network runs (inputs are cast; outputs come back in
            the input's dtype).

    The prediction type (``epsilon``, ``v_prediction`` or ``sample``) and the betas come from the scheduler
    config (:func:`find_scheduler_config`); without one the DDPM default (linear, T = 1000, eps) is assumed
    and a ``UserWarning`` is issued. The model is put in eval mode with gradients off for its parameters
    (gradients still flow to the input, as DPS needs).
    """
    unet_dir = _resolve_model_dir(path, "unet", "UNet2DModel")
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(str(unet_dir), local_files_only=True)
    unet = unet.to(device=device, dtype=dtype).eval().requires_grad_(False)
    sched_path = find_scheduler_config(unet_dir)
    if sched_path is None:
        warnings.warn(
            f"no scheduler config found for {unet_dir} (looked for scheduler/scheduler_config.json and "
            "scheduler_config.json); assuming the DDPM default: linear betas 1e-4..0.02, T = 1000, eps-prediction",
            UserWarning,
            stacklevel=2,
        )
        cfg = dict(DEFAULT_SCHEDULER_CONFIG)
    else:
        cfg = _read_json(sched_path)
    schedule, prediction = schedule_from_scheduler_config(cfg)
    c_in, c_out = unet.config.in_channels, unet.config.out_channels
    channels = c_in if c_out != c_in else None  # learned-variance ports output (prediction, variance)
    return NetworkDenoiser(TorchNet(unet), schedule, prediction=prediction, channels=channels,
                           data_range=(-1.0, 1.0)), schedule
