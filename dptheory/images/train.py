"""Train the project's default image backbone: a small ADM UNet (VP linear schedule, T = 1000) on 32 x 32 colour
crops of the photos that ship inside scikit-image, scikit-learn and matplotlib.

    python -m dptheory.images.train --prediction eps --photos bundled --threads 2   # the committed (eps) weights
    python -m dptheory.images.train --steps 200 --out /tmp/unet   # a short run

Objective: the MSE of the network's target at ``i`` uniform on ``0..T-1``, ``abar_i = schedule.alpha_bar(i + 1)``,
``x_i = sqrt(abar_i) x0 + sqrt(1 - abar_i) eps``: ``prediction="v"`` (default; Salimans & Ho 2022) or ``"eps"``
(Ho et al. 2020, Algorithm 1). AdamW with warm-up and cosine decay, gradient clipping and an EMA of the weights
(what is saved; the parametrisation is logged beside them). Data (:class:`PhotoCrops`): the bundled photos except
the held-out astronaut and coffee, at :data:`SCALES`, a uniform 32 x 32 window, a random flip. Determinism: one
seed for the initial weights and one ``torch.Generator`` for every draw, bit-for-bit repeatable for a torch version
and thread count (``--init FILE`` fine-tunes; its sha256 is logged). Held-out evaluation: :func:`denoising_mse`
against the exact empirical-law denoiser. Objective and data in detail: ``paper_notes/images.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .._safeload import load_state_dict_into
from ..schedules import VPSchedule, linear_schedule
from .backbones.adm import build_adm

__all__ = [
    "PHOTO_UNET_CONFIG",
    "SCALES",
    "HELD_OUT",
    "TRAIN_PHOTOS",
    "training_photos",
    "TrainConfig",
    "PhotoCrops",
    "LOSS_WEIGHTS",
    "diffusion_loss",
    "ema_update",
    "learning_rate",
    "train",
    "denoising_mse",
    "main",
]

PHOTO_UNET_CONFIG: dict = dict(
    image_size=32,
    num_channels=32,
    num_res_blocks=1,
    channel_mult=(1, 2, 4),
    attention_resolutions="8",
    num_head_channels=32,
    use_scale_shift_norm=True,
    resblock_updown=False,
    learn_sigma=False,
    dropout=0.0,
    norm_groups=16,
)
"""The ADM config of the default backbone: widths 32 / 64 / 128 at 32 / 16 / 8 px, one ResBlock per level,
attention (4 heads of 32) at 8 px, scale-shift norm; 2.86 M parameters (11.5 MB in float32)."""

SCALES: tuple = (32, 48, 64, 96, 128, 192, 256, None)
"""Short sides (px) the training photos are resized to before cropping; ``None`` keeps the native size."""

HELD_OUT: tuple = ("skimage:astronaut", "skimage:coffee")
"""Photos never seen in training: the test photos of ``dptheory restore`` and of the image analyses."""

TRAIN_PHOTOS: tuple = (
    "skimage:camera", "skimage:chelsea", "skimage:rocket", "skimage:hubble_deep_field",
    "skimage:immunohistochemistry", "skimage:moon", "skimage:coins", "skimage:motorcycle_left",
    "skimage:motorcycle_right", "skimage:retina", "skimage:cell", "skimage:microaneurysms", "skimage:brick",
    "skimage:grass", "skimage:gravel", "skimage:page", "skimage:text",
    "sklearn:china.jpg", "sklearn:flower.jpg",
    "matplotlib:grace_hopper.jpg",
)
"""Every photograph bundled in the scikit-image, scikit-learn and matplotlib wheels, minus :data:`HELD_OUT`.
Left out: drawings and synthetic images (skimage chessboard, color, horse, logo, phantom; matplotlib logos), the
synthetically motion-blurred ``clock_motion``, the 25 x 25 ``lfw_subset`` faces and sklearn's 8 x 8 digits (smaller
than a crop), and matplotlib's MRI slice ``s1045.ima`` (a raw scan, not a photo)."""


def training_photos() -> tuple:
    """The entries of :data:`TRAIN_PHOTOS` whose files are installed (a missing package drops its photos)."""
    from .data import _spec_file

    return tuple(s for s in TRAIN_PHOTOS if (f := _spec_file(s)) is not None and f.is_file())


@dataclass
class TrainConfig:
    """Every setting of a training run (stored with the weights)."""

    steps: int = 6000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    size: int = 32
    T: int = 1000
    prediction: str = "v"
    loss_weight: str = "simple"
    min_step: int = 0
    init: str | None = None
    held_out: tuple = HELD_OUT
    scales: tuple = SCALES
    model: dict = field(default_factory=lambda: dict(PHOTO_UNET_CONFIG))
    log_every: int = 50
    eval_every: int = 500
    n_eval: int = 256

    def __post_init__(self):
        for name in ("steps", "batch", "size", "T", "log_every", "eval_every", "n_eval"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.prediction not in ("v", "eps"):
            raise ValueError(f"prediction must be 'v' or 'eps', got {self.prediction!r}")
        if self.loss_weight not in LOSS_WEIGHTS:
            raise ValueError(f"loss_weight must be one of {LOSS_WEIGHTS}, got {self.loss_weight!r}")
        if not isinstance(self.min_step, int) or isinstance(self.min_step, bool) or not 0 <= self.min_step < self.T:
            raise ValueError(f"min_step must be an int in [0, T - 1] = [0, {self.T - 1}], got {self.min_step!r}")
        if self.warmup < 0 or self.grad_clip <= 0:
            raise ValueError(f"need warmup >= 0 and grad_clip > 0, got {self.warmup}, {self.grad_clip}")


class PhotoCrops:
    """A stream of random ``size x size`` colour crops of a photo pyramid (module docstring), in [-1, 1].

    Args:
        photos: specs for :func:`~dptheory.images.data.load_image`.
        size: crop size in pixels.
        scales: short sides the photos are resized to (``None``: native); a scale below ``size`` is skipped.
    """

    def __init__(self, photos, size: int = 32, scales=SCALES):
        from .data import load_image

        photos = tuple(photos)
        if not photos:
            raise ValueError("photos must name at least one photo")
        self.size, self.levels = int(size), []
        for spec in photos:
            native = load_image(spec)[0]
            h, w = native.shape[-2:]
            for s in scales:
                if s is None:
                    self.levels.append(native)
                    continue
                if s < size:
                    continue
                hw = (s, round(w * s / h)) if h <= w else (round(h * s / w), s)
                self.levels.append(load_image(spec, hw)[0])
        self.photos = photos

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``(n, 3, size, size)`` float32 crops: uniform level, uniform window, flip with probability 1/2."""
        which = torch.randint(len(self.levels), (n,), generator=generator)
        flips = torch.rand(n, generator=generator, dtype=torch.float32) < 0.5  # float32 draws whatever the default
        out = torch.empty(n, 3, self.size, self.size, dtype=self.levels[0].dtype)
        for k in range(n):
            im = self.levels[int(which[k])]
            top = int(torch.randint(im.shape[-2] - self.size + 1, (), generator=generator))
            left = int(torch.randint(im.shape[-1] - self.size + 1, (), generator=generator))
            crop = im[:, top : top + self.size, left : left + self.size]
            out[k] = crop.flip(-1) if flips[k] else crop
        return out


LOSS_WEIGHTS: tuple = ("simple", "truncated-snr")
"""Loss weightings of :func:`diffusion_loss`, as the weight on the squared ``x0`` error at ``SNR = abar / (1 -
abar)``: ``"simple"`` is the unweighted loss of the target (``SNR`` for eps, ``1 + SNR`` for v);
``"truncated-snr"`` is ``max(SNR, 1)`` (Salimans and Ho 2022, Sec. 4): eps's weight at low noise, v's at high."""


def diffusion_loss(model, x0: torch.Tensor, schedule: VPSchedule, generator: torch.Generator, steps=None,
                   prediction: str = "eps", loss_weight: str = "simple"):
    """The diffusion loss ``mean_n w_n || target - net(x_i, i) ||^2 / (c h w)``, a scalar: ``target = eps`` (the
    simple DDPM loss, Ho et al. 2020, Alg. 1) or ``target = v = sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans
    and Ho 2022). ``||v - v_theta||^2 = (1 + SNR) ||x0 - x0_theta||^2`` and ``||eps - eps_theta||^2 = SNR ||x0 -
    x0_theta||^2``, so ``loss_weight="truncated-snr"`` takes ``w_n = max(SNR, 1) / (1 + SNR)`` (v) or
    ``max(SNR, 1) / SNR`` (eps); ``"simple"`` takes ``w_n = 1`` (:data:`LOSS_WEIGHTS`).

    ``x0 (n, c, h, w)``; ``steps`` (``(n,)`` long, 0-based) defaults to uniform draws from ``generator``;
    ``x_i = sqrt(abar) x0 + sqrt(1 - abar) eps`` with ``abar = schedule.alpha_bar(i + 1)``.
    """
    if prediction not in ("eps", "v"):
        raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
    if loss_weight not in LOSS_WEIGHTS:
        raise ValueError(f"loss_weight must be one of {LOSS_WEIGHTS}, got {loss_weight!r}")
    n = x0.shape[0]
    if steps is None:
        steps = torch.randint(schedule.T, (n,), generator=generator)
    abar = schedule.alpha_bar(steps + 1).to(x0.dtype).view(n, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    target = eps if prediction == "eps" else abar.sqrt() * eps - (1 - abar).sqrt() * x0
    sq = (model(x_t, steps) - target).pow(2)
    if loss_weight == "simple":
        return sq.mean()
    snr = abar / (1 - abar)
    w = snr.clamp(min=1) / (1 + snr if prediction == "v" else snr)
    return (w * sq).mean()


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine decay from ``cfg.lr`` to ``cfg.min_lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(frac, 1.0)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``ema <- decay ema + (1 - decay) model``, parameter by parameter."""
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1 - decay)


def _eval_batch(cfg: TrainConfig):
    """A fixed held-out batch (crops of the held-out photos, timesteps spread over the grid, fixed noise) for
    the validation loss, drawn from its own generator so it does not perturb the training stream."""
    g = torch.Generator().manual_seed(cfg.seed + 10_000)
    x0 = PhotoCrops(cfg.held_out, cfg.size, cfg.scales).sample(cfg.n_eval, g)
    steps = torch.linspace(cfg.min_step, cfg.T - 1, cfg.n_eval, dtype=torch.float32).round().long()
    return x0, steps, g.get_state()


def train(cfg: TrainConfig | None = None, *, progress: bool = True, photos=None):
    """Train the UNet of ``cfg.model`` (module docstring) and return ``(ema_model, log)``.

    ``log`` holds the config, the mean training loss every ``log_every`` steps, the held-out validation loss
    (EMA weights, fixed batch) every ``eval_every`` steps and at the end, the wall time and the thread count.
    ``photos`` overrides the training photos (default: :func:`training_photos` minus ``cfg.held_out``).
    """
    import copy

    from tqdm.auto import tqdm

    cfg = cfg or TrainConfig()
    schedule = linear_schedule(cfg.T)
    held = set(cfg.held_out)
    photos = tuple(p for p in training_photos() if p not in held) if photos is None else tuple(photos)
    if held & set(photos):
        raise ValueError(f"training photos {sorted(held & set(photos))} are also held out")
    data = PhotoCrops(photos, cfg.size, cfg.scales)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_adm(**cfg.model).float()  # float32 whatever the default dtype
    init_sha256 = None
    if cfg.init is not None:  # warm start (fine-tuning): every tensor of the architecture, strictly
        import hashlib

        init = Path(cfg.init).expanduser()
        if not init.is_file():
            raise FileNotFoundError(f"init weights {init} not found (a state dict .pt of the same architecture)")
        init_sha256 = hashlib.sha256(init.read_bytes()).hexdigest()
        load_state_dict_into(model, init, "init weights")
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_val, steps_val, noise_state = _eval_batch(cfg)

    def val_loss() -> float:
        g = torch.Generator()
        g.set_state(noise_state)
        with torch.no_grad():
            return float(diffusion_loss(ema, x_val, schedule, g, steps_val, cfg.prediction, cfg.loss_weight))

    log = dict(config=asdict(cfg), photos=list(photos), n_params=sum(p.numel() for p in model.parameters()),
               train_loss=[], val_loss=[], threads=torch.get_num_threads(), torch=torch.__version__,
               init_sha256=init_sha256,
               machine=platform.processor() or platform.machine())
    t_start, running = time.perf_counter(), []
    bar = tqdm(range(cfg.steps), desc="train photo UNet", disable=not progress, mininterval=2.0)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        x0 = data.sample(cfg.batch, gen)
        steps = torch.randint(cfg.min_step, cfg.T, (cfg.batch,), generator=gen)  # randint(T) when min_step = 0
        loss = diffusion_loss(model, x0, schedule, gen, steps, prediction=cfg.prediction, loss_weight=cfg.loss_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        running.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            log["train_loss"].append([step + 1, sum(running) / len(running)])
            bar.set_postfix(loss=f"{log['train_loss'][-1][1]:.4f}", refresh=False)
            running = []
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            log["val_loss"].append([step + 1, val_loss()])
            bar.set_postfix(loss=f"{log['train_loss'][-1][1]:.4f}", val=f"{log['val_loss'][-1][1]:.4f}")
    log["seconds"] = time.perf_counter() - t_start
    return ema.eval(), log


@torch.no_grad()
def denoising_mse(denoisers: dict, x0: torch.Tensor, schedule: VPSchedule, steps, generator: torch.Generator,
                  chunk: int = 64, progress: bool = False) -> dict:
    """Per-pixel MSE ``mean (D(x_t, abar) - x0)^2`` of each denoiser at each 0-based step (same ``x_t`` for all).

    ``denoisers``: name -> ``D(x_t, alpha_bar)``; ``x0 (n, c, h, w)``. Returns name -> list of
    ``[step, mse, standard error over images]``, and ``"identity"`` (the MSE of ``x_t / sqrt(abar)``) and
    ``"zero"`` (the MSE of predicting 0) as yardsticks. ``progress``: a tqdm bar over the steps.
    """
    out: dict = {name: [] for name in (*denoisers, "identity", "zero")}
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="denoising MSE per noise level", leave=False)
    for i in steps:
        abar = float(schedule.alpha_bar(int(i) + 1))
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x_t = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
        preds = {name: torch.cat([D(x_t[k : k + chunk], abar) for k in range(0, len(x0), chunk)])
                 for name, D in denoisers.items()}
        preds["identity"], preds["zero"] = x_t / math.sqrt(abar), torch.zeros_like(x0)
        for name, p in preds.items():
            per_image = (p - x0).pow(2).flatten(1).mean(1)
            se = float(per_image.std() / math.sqrt(len(per_image)))
            out[name].append([int(i), float(per_image.mean()), se])
    return out


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m dptheory.images.train", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"crops per step (default {d.batch})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of weights, crops and noise (default {d.seed})")
    p.add_argument("--prediction", choices=("v", "eps"), default=d.prediction,
                   help=f"network target (default {d.prediction}; eps made the previous weights)")
    p.add_argument("--loss-weight", choices=LOSS_WEIGHTS, default=d.loss_weight,
                   help=f"weight of each timestep's loss (default {d.loss_weight}; truncated-snr: max(SNR, 1) on the "
                   "x0 error, Salimans and Ho 2022)")
    p.add_argument("--min-step", type=int, default=d.min_step,
                   help=f"train on the 0-based timesteps min_step..T-1 only (default {d.min_step}: all); a "
                   "high-noise expert (dptheory.images.experts)")
    p.add_argument("--photos", choices=("all", "bundled"), default="all",
                   help="training photos: all = TRAIN_PHOTOS (every bundled photo of scikit-image, scikit-learn and "
                   "matplotlib; default), bundled = dptheory.images.data.bundled_photos() (the 9 photos of the eps "
                   "weights); the held-out photos are left out of both")
    p.add_argument("--init", default=None, help="start from these weights (a state dict of the same architecture, "
                   "e.g. earlier eps weights) instead of the random initialisation; its sha256 is logged")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help=f"EMA decay (default {d.ema_decay})")
    p.add_argument("--size", type=int, default=d.size, help=f"crop size in px (default {d.size})")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"warm-up steps (default {d.warmup})")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; bit-for-bit repeatable "
                   "for a given thread count)")
    p.add_argument("--out", default=str(Path(__file__).parent / "backbones" / "weights"),
                   help="folder for photo_unet32.pt and photo_unet32.json (default: the package's weights folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    """Train and write ``photo_unet32.pt`` (EMA state dict) and ``photo_unet32.json`` (config and log)."""
    parser = _parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, prediction=args.prediction,
                          loss_weight=args.loss_weight, min_step=args.min_step, size=args.size, warmup=args.warmup,
                          init=args.init, ema_decay=args.ema_decay)  # any size: the UNet is convolutional
    except ValueError as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = None
    if args.photos == "bundled":
        from .data import bundled_photos

        photos = tuple(p for p in bundled_photos() if p not in cfg.held_out)
    try:
        model, log = train(cfg, progress=not args.no_progress, photos=photos)
    except (FileNotFoundError, ValueError) as err:  # a missing --init, a held-out training photo, a bad checkpoint
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 2
    from .._atomic import atomic_named_path, write_text

    with atomic_named_path(out / "photo_unet32.pt") as tmp:  # torch.save names its archive after the file
        torch.save(model.state_dict(), tmp)
    write_text(out / "photo_unet32.json", json.dumps(log, indent=1) + "\n")
    print(f"wrote {out / 'photo_unet32.pt'} ({log['n_params'] / 1e6:.2f} M parameters) after {cfg.steps} steps in "
          f"{log['seconds'] / 60:.1f} min; final validation loss {log['val_loss'][-1][1]:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
