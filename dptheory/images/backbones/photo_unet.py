"""The project's own default backbone: a 2.86 M-parameter ADM UNet trained on 32 x 32 crops of the bundled photos
by :mod:`dptheory.images.train` (eps-prediction, VP linear schedule, T = 1000), paired with a v-prediction expert of
the same architecture for the high-noise steps (:mod:`dptheory.images.experts`; model card:
``dptheory/images/backbones/weights/README.md``).

The weights ship with the package: ``weights/photo_unet32.pt`` (the eps network's EMA state dict, float32, 11.5 MB)
and ``weights/photo_unet32_high.pt`` (the expert, float16, 5.8 MB); the training logs, configs and the expert's
mixing weights sit beside them in ``.json`` files. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..._safeload import CheckpointError, load_state_dict_into
from ...denoisers import NetworkDenoiser, NoiseLevelExperts
from ...schedules import linear_schedule
from ..experts import high_expert_path
from .adm import _ADMNet, build_adm

__all__ = ["PHOTO_UNET_WEIGHTS", "PHOTO_UNET_MAP_T1", "PHOTO_UNET_MAP_ITERS", "PHOTO_UNET_DPS_ZETA",
           "photo_unet_dps_zeta", "load_photo_unet", "photo_unet_log"]

PHOTO_UNET_WEIGHTS = Path(__file__).parent / "weights" / "photo_unet32.pt"
"""The committed eps network (made by ``python -m dptheory.images.train``); its high-noise expert lies beside it."""

PHOTO_UNET_MAP_T1 = 50
"""MAP-RPS stage-1 noise index (0-based, ``alpha_bar(51) = 0.989``) for this network, used by ``dptheory restore``
and the image analyses instead of the official pixel-model 10. Measured on 16 held-out 32 px crops, sigma_y =
0.05, 300 AdamW steps with the Bayes weight (mean PSNR, dB; ``A^+ y`` first): sr4 20.39 | t1 = 10: 18.46,
50: 21.61, 100: 21.58, 200: 20.54; inpaint-random 11.81 | 22.52, 23.35, 22.22, 19.76; blur-gauss 19.94 | 19.01,
21.71, 21.83, 21.01; cs 10.78 | 10.67, 11.61, 12.06, 11.53. At t1 = 10 the network's noise prediction at
noise std 0.04 carries too little prior signal, and more iterations make it worse (sr4: 20.11 at 100 steps,
18.46 at 300); from t1 = 200 the MAP of the blurred prior is over-smoothed."""


PHOTO_UNET_MAP_ITERS = 100
"""MAP-RPS stage-1 iterations of ``dptheory restore`` with this network (the official range is 60-500). At the
image's own resolution more iterations over-fit the MAP objective: sr4 on the 64 px held-out box
``--crop 160,224,64,64`` of the astronaut, t0 = 20, seed 0 (PSNR dB / SSIM; ``A^+ y`` 22.75 / 0.601, bicubic
25.07 / 0.739): 30 iterations 26.05 / 0.734, 100: 25.87 / 0.768, 300: 21.79 / 0.700 (the eps network, which is
the pair below step 400: MAP-RPS at t1 = 50 and t0 = 20 never meets the expert); 100 is also 3x cheaper than
300, which keeps the 256 px box within minutes on a 2-core CPU."""


PHOTO_UNET_DPS_ZETA = 3.0
"""DPS guidance step (unsquared norm) of this network for 100 respaced steps on a 32 x 32 image; other sizes and
step counts scale it by :func:`photo_unet_dps_zeta`. Chosen on 16 crops of the TRAINING photos (never the held-out
ones; ``benchmarks/bench_photo_unet_dps_zeta.py``, ``benchmarks/results/photo_unet_dps_zeta.json``), mean PSNR (dB)
over the grid 0.5, 1, 2, 3, 4, 6, 8: zeta = 3 is best on sr4 (25.71; 23.85 at zeta = 1), denoise and blur-gauss and
within 0.04 dB of the best on inpaint-random (28.64; 26.47 at 1); 4 is best on inpaint-box and cs by less than 1.2
paired SE, and 6 falls off a cliff on blur-gauss (-5 dB). The patch SWD falls from zeta = 1 to 3 as well (sr4 0.119
to 0.085), so zeta = 1 was under-guided, not a different point of the D-P tradeoff. blur-motion is the exception:
DPS stays below ``A^+ y`` there at every zeta (best 0.5, within 1 SE of 1-2)."""


def photo_unet_dps_zeta(height: int, width: int, steps: int) -> float:
    """The DPS step for an ``height x width`` image and ``steps`` reverse steps:

        zeta = PHOTO_UNET_DPS_ZETA * sqrt(height width) / 32 * 100 / max(steps, 25).

    The unsquared-norm step ``zeta grad ||y - A x0_hat||`` moves every pixel by about ``zeta / sqrt(m)`` (``m`` =
    the number of measurements, proportional to ``height width``), and the guidance of a run adds up over its
    steps, so this keeps the per-pixel guidance of the whole run that was tuned at 32 px and 100 steps. Measured
    with ``dptheory restore --method dps --steps 50`` (sr4, PSNR on 64 x 64 boxes of three training photos) the best
    of zeta = 1, 3, 6, 12, 24, 48 is 12, the value this gives. Below 25 steps the step stays at its 25-step value:
    DPS restores badly there at any step (3 steps at 32 px: 9-13 dB for zeta from 1 to 100), and the law's
    100 / steps would push a 3-step run to zeta = 100, the worst of those.
    """
    for name, v in (("height", height), ("width", width), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return PHOTO_UNET_DPS_ZETA * (height * width) ** 0.5 / 32.0 * 100.0 / max(steps, 25)


def photo_unet_log(path=None) -> dict:
    """The training config and log stored beside the weights (``photo_unet32.json``)."""
    path = Path(path or PHOTO_UNET_WEIGHTS).expanduser().with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"expected the training log {path} beside the weights")
    try:
        log = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"the training log {path} beside the weights is not valid JSON: {err}") from None
    if not isinstance(log, dict):
        raise ValueError(f"the training log {path} must hold a JSON object, got {type(log).__name__}")
    return log


def _load_network(path, *, log=None, device=None, dtype: torch.dtype = torch.float32):
    """ONE network: ``(NetworkDenoiser, VPSchedule)`` from a state dict and its training log (``log``, default the
    ``.json`` beside ``path``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"expected photo UNet weights (a state dict .pt) at {path}; make them with "
                                "python -m dptheory.images.train")
    log = photo_unet_log(path) if log is None else log
    try:
        model = build_adm(**log["config"]["model"])
        size, T = int(log["config"]["size"]), int(log["config"]["T"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"the training log {path.with_suffix('.json')} lacks a valid config.model / config.size / "
                         f"config.T ({type(err).__name__}: {err})") from None
    try:
        load_state_dict_into(model, path, "photo UNet weights")
    except CheckpointError as err:
        raise CheckpointError(f"{err} (model config from {path.with_suffix('.json')})") from None
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    model.image_size = size
    schedule = linear_schedule(T)
    prediction = log["config"].get("prediction", "eps")  # logs written before v-prediction have no field: eps
    return NetworkDenoiser(_ADMNet(model), schedule, prediction=prediction, data_range=(-1.0, 1.0)), schedule


def load_photo_unet(path=None, *, device=None, dtype: torch.dtype = torch.float32, experts: bool = True):
    """Load the trained photo UNet as ``(denoiser, VPSchedule)``.

    Args:
        path: a state dict written by :func:`dptheory.images.train.main` (default: the committed
            :data:`PHOTO_UNET_WEIGHTS`); its model config is read from the ``.json`` log beside it.
        device, dtype: where the network runs (float32 by default; float64 works for tests).
        experts: when a high-noise expert ``<stem>_high.pt`` lies beside ``path`` (written by
            :mod:`dptheory.images.experts`; the committed weights have one), return the pair as a
            :class:`~dptheory.denoisers.NoiseLevelExperts` that mixes in the expert with the weights of its log
            (``expert.knots``); ``False``: the single network at ``path``.

    Each network converts its output with the parametrisation stored in its log (``config.prediction``,
    ``eps`` when absent): ``x0 = sqrt(abar_i) x_t - sqrt(1 - abar_i) v_theta(x_t, i)`` for ``v``,
    ``x0 = (x_t - sqrt(1 - abar_i) eps_theta(x_t, i)) / sqrt(abar_i)`` for ``eps``, at the network
    step ``i`` nearest in log-SNR (:class:`~dptheory.denoisers.NetworkDenoiser`); the input is RGB in model units
    [-1, 1], of any size divisible by 4 (the UNet is convolutional; it was trained on 32 x 32 crops).
    """
    path = Path(path or PHOTO_UNET_WEIGHTS).expanduser()
    low, schedule = _load_network(path, device=device, dtype=dtype)
    high_path = high_expert_path(path)
    if not experts or not high_path.is_file():
        return low, schedule
    log = photo_unet_log(high_path)
    info = log.get("expert")
    knots = info.get("knots") if isinstance(info, dict) else None
    if not isinstance(knots, list) or not knots:
        raise ValueError(f"the high-noise expert's log {high_path.with_suffix('.json')} lacks expert.knots "
                         "(write it with python -m dptheory.images.experts)")
    want = info.get("low_sha256")
    if want is not None and hashlib.sha256(path.read_bytes()).hexdigest() != want:
        raise ValueError(f"the high-noise expert {high_path} was paired with other low-noise weights than {path} "
                         "(sha256 differs); re-pair it with python -m dptheory.images.experts, or pass "
                         "experts=False")
    high, _ = _load_network(high_path, log=log, device=device, dtype=dtype)
    try:
        return NoiseLevelExperts(low, high, knots), schedule
    except (TypeError, ValueError) as err:
        raise ValueError(f"the high-noise expert's log {high_path.with_suffix('.json')} has invalid expert.knots: "
                         f"{err}") from None
