"""``dptheory restore``: restore one image with any sampler and write measurement | restoration | ground truth.

    dptheory restore --task sr4 --image skimage:astronaut                       # the defaults
    dptheory restore --task inpaint-box --image photo.png --method dps --steps 100 --out out/

The image is cut to ``--crop`` (``--size S`` downscales it), ``y = A x + sigma_y z`` is drawn with the ``--seed``
generator, the image is restored with :func:`dptheory.images.problem.solve_image`, and three PNGs and
``restore.json`` (PSNR and SSIM against the ``A^+ y`` and bicubic baselines, NFE, wall time, peak memory) are
written, each to a temporary file then renamed. Backbones: ``photo-unet`` (default; tiled above 128 px,
:mod:`dptheory.images.tiling`), ``gaussian`` and ``empirical`` (exact priors fitted to held-out photo crops), or
any :func:`~dptheory.images.backbones.load_backbone` spec. A network gives only the prior denoiser, so ``vsrd``
runs as ``dps(lam=...)`` (:data:`NETWORK_AS_DPS`) and methods needing ``E[x0 | x_t, y]`` are refused
(:data:`NETWORK_REFUSALS`). Errors print one line and exit with 2; torch is imported only when the command runs.
Options, defaults and measured results: ``paper_notes/images.md`` and ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "run", "RestoreError", "DEFAULTS", "PHOTO_SCALE"]

FITTED_BACKBONES = ("gaussian", "empirical")
DEFAULTS = dict(
    task="sr4",
    image="skimage:astronaut",
    backbone="photo-unet",
    method="map-rps",
    size=24,
    n_crops=1000,
    t0=20,
    map_rps_iters=300,
    steps=50,
    seed=0,
)
"""Defaults of the command (module docstring); ``size`` applies to the fitted priors only."""

_STEP_METHODS = ("posterior", "ddpm", "ddim", "dps", "vsrd", "red-diff", "vml-map", "ddrm", "diffpir", "pigdm", "daps")
_COND_TAIL = (
    "needs the conditional denoiser E[x0 | x_t, y]. A network has only the prior one; its DPS-guided "
    "conditional (squared norm) multiplies the network's Jacobian error by (1 - ab) / (ab sigma_y^2) at high "
    "noise: NaN or under 5 dB with the eps network alone for every zeta >= 0.1, and with the default pair far "
    "more sensitive to zeta than DPS (sr4: 19.9 dB at zeta 0.1, 4.6 at 1, against 20.9 for --method dps)"
)
NETWORK_REFUSALS = {
    "posterior": "the exact posterior sampler needs an exact conditional denoiser with exact x0 draws, which a "
                 "network does not have; use --backbone gaussian or empirical, or --method dps, vsrd or map-rps",
    "ddpm": f"conditional DDPM {_COND_TAIL}; DDPM with DPS guidance (unsquared norm) is --method dps",
    "ddim": f"conditional DDIM {_COND_TAIL}; use --method dps, or vsrd --lam 0 for a deterministic guided path",
}
"""Methods ``restore`` refuses up front with a network backbone (photo-unet, diffusers, ADM, latent), and why."""
NETWORK_AS_DPS = ("vsrd",)
"""Methods that run with a network as ``dps(lam=...)``: VSRD's variance scale with the unsquared-norm DPS
guidance (Wang et al.'s Algorithm 1 with the small kernel), the form that stays finite on a trained network."""
_CROP_SEED = 0
PHOTO_SCALE = 2
"""Photos are resized to ``PHOTO_SCALE * size`` before cropping. Exact MMSE PSNR (dB) of the Gaussian prior on
astronaut 24 px, scale 1.5 / 2 / 4 (``A^+ y`` in brackets): sr4 15.2 / 16.5 / 16.4 (15.7), denoise 23.8 / 25.8 /
25.1 (25.8), inpaint-box 15.4 / 17.1 / 17.5 (17.5), blur-gauss 15.7 / 16.2 / 15.8 (15.0), cs 12.0 / 13.3 / 9.8
(12.8)."""


class RestoreError(ValueError):
    """A user error of ``dptheory restore`` (exit code 2)."""


# ---------------------------------------------------------------------------------------------- parser
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``restore`` options to ``parser`` (a top-level parser or a ``dptheory`` subparser)."""
    D = DEFAULTS
    parser.add_argument("--task", default=D["task"],
                        help="sr4, inpaint-box, inpaint-random, blur-gauss, blur-motion, cs or denoise "
                             f"(default {D['task']})")
    parser.add_argument("--image", default=D["image"], help=f"PATH or skimage:NAME (default {D['image']})")
    parser.add_argument("--crop", default=None,
                        help="TOP,LEFT,HEIGHT,WIDTH box in the photo's native pixels, cut before any resizing "
                             "(default: the whole photo for photo-unet, else the largest centred square)")
    parser.add_argument("--backbone", default=D["backbone"],
                        help="photo-unet (the project's trained 32 px UNet), gaussian | empirical (exact priors "
                             "fitted to held-out photo crops) or a network spec for load_backbone (default "
                             f"{D['backbone']})")
    parser.add_argument("--method", default=D["method"],
                        help=f"map-rps, dps, vsrd, red-diff, vml-map, ddpm, ddim, posterior, ddrm, diffpir, pigdm or "
                             f"daps (default {D['method']}). With a network backbone vsrd runs as DPS with variance "
                             "scale lam (the unsquared-norm guidance), and posterior, ddpm and ddim are refused with "
                             "the reason (they need the exact conditional denoiser)")
    parser.add_argument("--t0", type=int, default=None, help=f"MAP-RPS re-noising step in [0, T] (default {D['t0']})")
    parser.add_argument("--t1", type=int, default=None,
                        help="MAP-RPS stage-1 noise index, 0-based (default: 50 for photo-unet, else the official 10)")
    parser.add_argument("--lam", type=float, default=None,
                        help="vsrd variance scale / red-diff weight / map-rps stage-2 vsrd, in [0, 1] (default: "
                             "vsrd 0, red-diff 0.25)")
    parser.add_argument("--zeta", type=float, default=None,
                        help="DPS step size (default 1; with photo-unet, dps and vsrd take the network's measured "
                        "step 3 sqrt(H W) / 32 x 100 / max(steps, 25): photo_unet_dps_zeta)")
    parser.add_argument("--weighting", choices=("bayes", "official"), default="bayes",
                        help="MAP-RPS stage-1 prior weight: bayes (2 sigma_y^2 / tau, AdamW decay 0; default) or "
                             "official (the official scripts' per-task w_prior, AdamW decay 0.01)")
    parser.add_argument("--w-prior", type=float, default=None,
                        help="MAP-RPS w_prior with --weighting official (default: the official weight of the task: "
                             "sr4 0.25, inpaint-* 0.7, blur-* 0.01, denoise 2.0; cs has none, give it)")
    parser.add_argument("--seed", type=int, default=D["seed"], help="task, noise and sampler seed")
    parser.add_argument("--size", type=int, default=None,
                        help="downscale to SIZE x SIZE (the --crop box, else the largest centred square); default: "
                             f"the image's own resolution for photo-unet, {D['size']} for the fitted priors, the "
                             "network's size for other networks")
    parser.add_argument("--tile", type=int, default=None,
                        help="denoise in TILE x TILE windows (0: the whole image at once; default: whole up to "
                             "128 x 128, tiles above; photo-unet only)")
    parser.add_argument("--overlap", type=int, default=None, help="pixels shared by neighbouring tiles (default "
                        "a quarter of the tile)")
    parser.add_argument("--threads", default="auto",
                        help="torch CPU threads, or auto (default: 1 for images up to 128 x 128, else the free cores)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--dtype", default="float32",
                        help="network dtype: float32, bfloat16 or float16 (default float32; images and samplers stay "
                             "float32)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"reverse steps (default {D['steps']}); for map-rps the stage-1 iterations (default "
                             f"{D['map_rps_iters']}; 100 with photo-unet)")
    parser.add_argument("--sigma-y", type=float, default=None, help="noise std in model units (default: the task's)")
    parser.add_argument("--n-crops", type=int, default=D["n_crops"],
                        help=f"crops the fitted priors are built from (default {D['n_crops']})")
    parser.add_argument("--out", default="restore_out", help="output folder, or a .png path for the restoration")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    return parser


# ---------------------------------------------------------------------------------------------- pieces
def _output_paths(out: str) -> dict[str, Path]:
    p = Path(out).expanduser()
    if p.suffix.lower() == ".png":
        if p.is_dir():
            raise RestoreError(f"--out {out} is a folder; a .png output must be a file path")
        if not p.parent.is_dir():
            raise RestoreError(f"--out: folder {p.parent} does not exist")
        stem = p.with_suffix("")
        return {"restoration": p, "measurement": Path(f"{stem}_measurement.png"),
                "side_by_side": Path(f"{stem}_side_by_side.png"), "json": Path(f"{stem}.json")}
    if p.exists() and not p.is_dir():
        raise RestoreError(f"--out {out} exists and is not a folder (give a folder or a .png path)")
    return {k: p / f"{k}.png" for k in ("restoration", "measurement", "side_by_side")} | {"json": p / "restore.json"}


def _check_knobs(args, T: int) -> None:
    if args.t0 is not None and not 0 <= args.t0 <= T:
        raise RestoreError(f"--t0 must be an integer step in [0, {T}], got {args.t0}")
    if args.t1 is not None and not 0 <= args.t1 < T:
        raise RestoreError(f"--t1 must be an integer step in [0, {T - 1}], got {args.t1}")
    if args.lam is not None and not 0.0 <= args.lam <= 1.0:
        raise RestoreError(f"--lam must lie in [0, 1], got {args.lam}")
    if args.steps is not None and args.steps < 1:
        raise RestoreError(f"--steps must be a positive integer, got {args.steps}")
    if args.steps is not None and args.method in _STEP_METHODS and args.method != "red-diff" and args.steps > T:
        raise RestoreError(f"--steps must be at most T = {T}, got {args.steps}")
    if args.sigma_y is not None and not (args.sigma_y >= 0 and math.isfinite(args.sigma_y)):
        raise RestoreError(f"--sigma-y must be a finite number >= 0, got {args.sigma_y}")
    if args.zeta is not None and not (args.zeta >= 0 and math.isfinite(args.zeta)):
        raise RestoreError(f"--zeta must be a finite number >= 0, got {args.zeta}")
    if getattr(args, "w_prior", None) is not None and not (args.w_prior >= 0 and math.isfinite(args.w_prior)):
        raise RestoreError(f"--w-prior must be a finite number >= 0, got {args.w_prior}")
    if getattr(args, "w_prior", None) is not None and getattr(args, "weighting", "bayes") != "official":
        raise RestoreError("--w-prior needs --weighting official (the bayes weight is 2 sigma_y^2 / tau)")
    if args.n_crops < 2:
        raise RestoreError(f"--n-crops must be at least 2, got {args.n_crops}")


def _knobs(args) -> dict:
    m = args.method
    knobs: dict = {}
    if m == "map-rps":
        knobs["t0"] = DEFAULTS["t0"] if args.t0 is None else args.t0
        knobs["iters"] = DEFAULTS["map_rps_iters"] if args.steps is None else args.steps
        if args.steps is None and args.backbone.partition(":")[0] == "photo-unet":
            from .backbones.photo_unet import PHOTO_UNET_MAP_ITERS

            knobs["iters"] = PHOTO_UNET_MAP_ITERS
        if args.t1 is not None:
            knobs["t1"] = args.t1
        elif args.backbone.partition(":")[0] == "photo-unet":
            from .backbones.photo_unet import PHOTO_UNET_MAP_T1

            knobs["t1"] = PHOTO_UNET_MAP_T1
        if args.lam is not None:
            knobs["lam"] = args.lam
            knobs["stage2"] = "vsrd"
        if getattr(args, "weighting", "bayes") == "official":
            knobs.update(_official_weighting(args))
    else:
        knobs["steps"] = DEFAULTS["steps"] if args.steps is None else args.steps
    if m == "vsrd":
        knobs["lam"] = 0.0 if args.lam is None else args.lam
    if m == "red-diff" and args.lam is not None:
        knobs["lam"] = args.lam
    return knobs


OFFICIAL_TASK = {"sr4": "sr4", "inpaint-box": "inp", "inpaint-random": "inp", "blur-gauss": "deblur",
                 "blur-motion": "deblur", "denoise": "denoise"}
"""The official MAP-RPS script whose ``w_prior`` each restore task takes with ``--weighting official``."""


def _official_weighting(args) -> dict:
    from ..samplers import OFFICIAL_PRIOR_WEIGHTS

    w = args.w_prior
    if w is None:
        if args.task not in OFFICIAL_TASK:
            raise RestoreError(f"--weighting official has no official w_prior for task {args.task!r}; give --w-prior")
        w = OFFICIAL_PRIOR_WEIGHTS[OFFICIAL_TASK[args.task]]
    return {"weighting": "official", "w_prior": w}


def _network_method(args, network: bool) -> str:
    """The sampler to run for ``args.method``: refuse (``RestoreError``) what cannot work with a network, and run
    :data:`NETWORK_AS_DPS` methods as ``dps`` with their ``lam``."""
    if not network:
        return args.method
    if args.method in NETWORK_REFUSALS:
        raise RestoreError(f"--method {args.method} does not work with the network backbone {args.backbone!r}: "
                           f"{NETWORK_REFUSALS[args.method]}")
    if args.method == "map-rps" and args.lam is not None:
        raise RestoreError("--lam with map-rps selects a vsrd stage 2, which needs an exact conditional denoiser; "
                           f"with the network backbone {args.backbone!r} stage 2 is DPS (knob --zeta)")
    return "dps" if args.method in NETWORK_AS_DPS else args.method


def _exclude(image: str) -> tuple[str, ...]:
    return (image,) if ":" in image else ()


def _check_fit_memory(backbone: str, size: int, n_crops: int) -> None:
    """Refuse a fitted prior that cannot fit in memory: the crops (float64 copies) and, for the Gaussian, about
    six ``d x d`` float64 matrices (covariance, eigenvectors, posterior), ``d = 3 size^2``."""
    from .._checks import check_memory

    d = 3 * size * size
    need = 16.0 * n_crops * d + (48.0 * d * d if backbone == "gaussian" else 0.0)
    try:
        check_memory(need, f"--backbone {backbone} at --size {size} (d = {d}) with --n-crops {n_crops}")
    except ValueError as err:
        raise RestoreError(str(err).replace("use fewer samples (or split the call into chunks)",
                                            "use a smaller --size or fewer --n-crops")) from None


def _load_backbone(args, size: int, device=None, dtype=None):
    """``(denoiser, schedule, description)``; a network's weights on ``device`` in ``dtype`` (default float32)."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    from ..schedules import linear_schedule
    from .data import photo_patches

    if args.backbone in FITTED_BACKBONES:
        try:
            crops = photo_patches(size, args.n_crops, torch.Generator().manual_seed(_CROP_SEED),
                                  exclude=_exclude(args.image), photo_size=PHOTO_SCALE * size)
        except ValueError as err:
            raise RestoreError(f"--size {size} does not fit backbone {args.backbone!r}: {err}") from err
        crops = crops.to(device) if device is not None else crops
        if args.backbone == "gaussian":
            from .problem import GaussianImageDenoiser

            den = GaussianImageDenoiser.fit(crops)
        else:
            from .backbones import EmpiricalMixtureDenoiser

            den = EmpiricalMixtureDenoiser(crops)
        return den, linear_schedule(), f"{args.backbone} prior of {args.n_crops} held-out {size}px photo crops"
    from .backbones import load_backbone

    try:
        bb = load_backbone(args.backbone, device=device, dtype=dtype)
    except (FileNotFoundError, ValueError, TypeError, OSError, ImportError) as err:
        raise RestoreError(f"cannot load backbone {args.backbone!r}: {err}") from err
    if getattr(bb, "latent", False):  # the solve runs in latent space with the decoder in the data term
        return bb, bb.schedule, f"latent network {args.backbone}"
    return bb.denoiser, bb.schedule, f"network {args.backbone}"


def _crop_box(crop: str | None):
    """``"TOP,LEFT,HEIGHT,WIDTH"`` -> a box for :func:`~dptheory.images.data.load_image` (``None``: centred)."""
    if crop is None:
        return None
    try:
        box = tuple(int(v) for v in crop.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise RestoreError(f"--crop must be TOP,LEFT,HEIGHT,WIDTH (four integers), got {crop!r}")
    if min(box[:2]) < 0:
        raise RestoreError(f"--crop must be TOP,LEFT,HEIGHT,WIDTH with TOP and LEFT >= 0 (pixels from the top-left), "
                           f"got {crop!r}")
    if min(box[2:]) <= 0:
        raise RestoreError(f"--crop must be TOP,LEFT,HEIGHT,WIDTH with positive HEIGHT and WIDTH, got {crop!r}")
    return box


def _ssim(ssim, x, ref):
    """SSIM, or ``None`` below its 11 x 11 window."""
    return float(ssim(x, ref)[0]) if min(x.shape[-2:]) >= 11 else None


def _fmt(v) -> str:
    return "n/a (< 11 px)" if v is None else f"{v:.3f}"


def _backbone_size(denoiser) -> int | None:
    """The image size a backbone was built for, when it says so (an image set, a diffusers config)."""
    import torch

    images = getattr(denoiser, "images", None)
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return int(images.shape[-1])
    size = getattr(getattr(getattr(denoiser, "net", None), "model", None), "image_size", None)
    if isinstance(size, int):
        return size
    size = getattr(getattr(getattr(denoiser, "net", None), "config", None), "sample_size", None)
    return int(size) if isinstance(size, int) else None


def _bicubic_baseline(y, x):
    """Bicubic upsampling of a low-resolution ``y (1, c, h, w)`` to ``x``'s size when ``x`` is an integer factor
    larger on both axes (super-resolution tasks), clamped to [-1, 1]; ``None`` otherwise."""
    import torch

    (h, w), (H, W) = y.shape[-2:], x.shape[-2:]
    if y.ndim != 4 or y.shape[1] != x.shape[1] or (h, w) == (H, W) or H % h or W % w or H // h != W // w:
        return None
    return torch.nn.functional.interpolate(y, size=(H, W), mode="bicubic", align_corners=False).clamp(-1, 1)


def _measurement_image(problem, y, x, x_pinv):
    return y if tuple(y.shape) == tuple(x.shape) else x_pinv


def _side_by_side(*images):
    import torch

    gap = images[0].new_ones(*images[0].shape[:-1], 2)
    parts = []
    for i, im in enumerate(images):
        parts += [im] if i == 0 else [gap, im]
    return torch.cat(parts, dim=-1)


def _check_writable(paths: dict[str, Path]) -> None:
    """Refuse an output place that cannot be written, before the solve: each output's folder (or the nearest
    existing folder above it, which the run would create it in) must take a new file."""
    from .._atomic import discard, reserve_temp

    for folder in {p.parent for p in paths.values()}:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise RestoreError(f"--out: cannot write to {folder} ({probe} is not a folder)")
        try:
            discard(reserve_temp(probe / "restore-probe"))
        except OSError as err:
            raise RestoreError(f"--out: cannot write to {folder} ({err.strerror or err})") from None


def _labelled_side_by_side(panels):
    """``[(label, image (c, h, w)), ...]`` -> a PIL image: the panels side by side, each magnified (nearest
    neighbour) to at least 128 px wide, with its label in a white band above it."""
    from PIL import Image, ImageDraw

    from .data import to_uint8

    h, w = panels[0][1].shape[-2:]
    k = max(1, math.ceil(128 / w))
    band, gap = 14, 4
    canvas = Image.new("RGB", (len(panels) * w * k + (len(panels) - 1) * gap, h * k + band), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, im) in enumerate(panels):
        u = to_uint8(im)
        pil = Image.fromarray(u[..., 0] if u.shape[-1] == 1 else u).convert("RGB")
        left = i * (w * k + gap)
        canvas.paste(pil.resize((w * k, h * k), Image.NEAREST), (left, band))
        draw.text((left + 2, 1), label, fill="black")
    return canvas


def _write_all(files: dict[Path, object]) -> None:
    """Write every output to a temporary file first, then rename them all (no partial output)."""
    from .._atomic import reserve_temp
    from .data import save_png

    staged = []
    try:
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = reserve_temp(path)  # mode 0o666 less the umask (mkstemp would give 0o600)
            staged.append((Path(tmp), path))
            if isinstance(content, str):
                Path(tmp).write_text(content)
            elif hasattr(content, "save"):  # a PIL image
                content.save(tmp, format="PNG")
            else:
                save_png(content, tmp)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()


# ---------------------------------------------------------------------------------------------- run
def run(args) -> int:
    """Run ``restore`` for parsed ``args`` (from :func:`add_arguments`); returns the exit code."""
    try:
        return _run(args)
    except RestoreError as err:
        print(f"dptheory restore: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch

    from ..samplers import METHODS
    from ..schedules import linear_schedule
    from ..threads import choose_threads, torch_threads
    from .data import load_image
    from .devices import resolve_device, resolve_dtype
    from .operators import TASKS, make_task
    from .tiling import trim_to_multiple

    t_begin = time.perf_counter()
    try:
        device = resolve_device(getattr(args, "device", "cpu"))
        net_dtype = resolve_dtype(getattr(args, "dtype", "float32"))
    except (ValueError, TypeError) as err:
        raise RestoreError(f"--device/--dtype: {err}") from err
    threads_arg = getattr(args, "threads", "auto")
    if threads_arg != "auto":
        try:
            threads_arg = choose_threads(0, int(threads_arg))
        except ValueError as err:
            raise RestoreError(f"--threads must be a positive integer or auto, got {args.threads!r}") from err
    tile, overlap = getattr(args, "tile", None), getattr(args, "overlap", None)
    if tile is not None and (tile < 0 or (tile > 0 and tile % 4)):
        raise RestoreError(f"--tile must be 0 (whole image) or a positive multiple of 4, got {tile}")
    if overlap is not None and (overlap < 0 or (tile and overlap >= tile)):
        raise RestoreError(f"--overlap must lie in [0, tile), got {overlap}")
    if args.task not in TASKS:
        raise RestoreError(f"unknown task {args.task!r}; choose from {', '.join(TASKS)}")
    if args.method not in METHODS:
        raise RestoreError(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}")
    fitted = args.backbone in FITTED_BACKBONES
    if args.size is not None and args.size < 4:
        raise RestoreError(f"--size must be at least 4 pixels, got {args.size}")
    paths = _output_paths(args.out)
    _check_writable(paths)  # before the solve, not after it
    if not 0 <= args.seed < 2**63:
        raise RestoreError(f"--seed must be an integer in [0, 2^63), got {args.seed}")
    denoiser = None
    photo_unet = args.backbone.partition(":")[0] == "photo-unet"  # convolutional: the image's own resolution
    if fitted and net_dtype != torch.float32:
        raise RestoreError(f"--dtype {args.dtype} applies to networks; the exact prior {args.backbone!r} is float32")
    if fitted:
        size = DEFAULTS["size"] if args.size is None else args.size
        _check_fit_memory(args.backbone, size, args.n_crops)
    else:  # a network or a saved image set: its own size
        denoiser, schedule, described = _load_backbone(args, None, device, net_dtype)
        latent_bb = getattr(denoiser, "latent", False)  # VAE + UNet are convolutional: any multiple of 8
        native = None if latent_bb or photo_unet else _backbone_size(denoiser)
        if args.size is not None and native is not None and args.size != native:
            raise RestoreError(f"--size {args.size} does not fit backbone {args.backbone!r} (its size is {native})")
        size = args.size if args.size is not None else (native or (512 if latent_bb else 256))  # SD 1.5 / ADM
        if photo_unet and args.size is None:
            size = None
    box = _crop_box(args.crop)
    try:
        x = load_image(args.image, size, crop=box)
    except (FileNotFoundError, ValueError, TypeError, OSError) as err:
        raise RestoreError(f"cannot load image {args.image!r}: {err}") from err
    if photo_unet:  # the UNet halves the resolution twice: trim the bottom/right rows and columns beyond 4 k
        x = trim_to_multiple(x, 4)
        if min(x.shape[-2:]) < 4:
            raise RestoreError(f"image {args.image!r} is smaller than 4 x 4 pixels after --crop")
    shape = tuple(x.shape[1:])
    size = size if size is not None else list(shape[1:])
    gen = torch.Generator().manual_seed(args.seed)
    try:
        operator, task_sigma = make_task(args.task, shape, gen)
    except ValueError as err:
        raise RestoreError(f"--task {args.task} does not fit --size {size}: {err}") from err
    sigma_y = task_sigma if args.sigma_y is None else args.sigma_y
    _check_knobs(args, (linear_schedule() if denoiser is None else schedule).T)  # fitted priors: linear T=1000
    if fitted and not sigma_y > 0:
        raise RestoreError("--sigma-y must be > 0 with an exact prior (its posterior needs noise)")
    n_threads = choose_threads(shape[1] * shape[2], threads_arg)
    with torch_threads(n_threads):
        return _restore(args, x, operator, sigma_y, gen, denoiser, schedule if denoiser is not None else None,
                        described if denoiser is not None else None, size, paths, t_begin, device, net_dtype,
                        n_threads, tile, overlap, photo_unet)


def _tiled_if_needed(denoiser, shape, tile, overlap, photo_unet: bool):
    """The photo UNet wrapped in a :class:`~dptheory.images.tiling.TiledDenoiser` when the image ``shape (C, H,
    W)`` calls for tiles (``auto_tile``); returns ``(denoiser, tiling)`` with ``tiling = dict(tile, overlap)`` or
    None."""
    if not photo_unet:
        return denoiser, None
    from .tiling import auto_tile

    tile, overlap = auto_tile(shape[1], shape[2], tile, overlap)
    if not tile:
        return denoiser, None
    from .tiling import TiledDenoiser

    return TiledDenoiser(denoiser, tile, overlap), dict(tile=tile, overlap=overlap)


def _check_backbone_fits(args, denoiser, x, size, latent: bool) -> None:
    """One call of the denoiser (through the VAE for a latent backbone) on a zero image of ``x``'s shape; a
    RestoreError naming ``--size`` when it raises or returns another shape."""
    import torch

    shape = tuple(x.shape[1:])
    try:
        if latent:
            with torch.no_grad():
                probe = denoiser.decode(denoiser.denoiser(denoiser.encode(x.new_zeros(1, *shape)), 0.5))
        else:
            probe = denoiser(x.new_zeros(1, *shape), 0.5)
    except (ValueError, RuntimeError) as err:
        raise RestoreError(f"--size {size} does not fit backbone {args.backbone!r}: {err}") from err
    if tuple(probe.shape) != (1, *shape):
        raise RestoreError(f"--size {size} does not fit backbone {args.backbone!r} (output {tuple(probe.shape)})")


def _solve(args, problem, y, solver_method: str, denoiser, schedule, gen, latent: bool, knobs: dict):
    """The restoration: :func:`solve_latent` for a latent backbone, :func:`solve_image` otherwise; a solver's
    ValueError/TypeError becomes a RestoreError."""
    from .problem import solve_image

    try:
        if latent:
            from .latent_solve import solve_latent

            return solve_latent(problem, y, solver_method, denoiser, schedule=schedule, generator=gen,
                                progress=not args.no_progress, **knobs)
        return solve_image(problem, y, solver_method, denoiser, schedule=schedule, generator=gen,
                           progress=not args.no_progress, **knobs)
    except (ValueError, TypeError) as err:
        raise RestoreError(str(err)) from err


def _quality(x_hat, x) -> dict:
    """``psnr`` and ``ssim`` of ``x_hat (1, C, H, W)`` against the truth ``x``."""
    from .metrics import psnr, ssim

    return dict(psnr=float(psnr(x_hat, x)[0]), ssim=_ssim(ssim, x_hat, x))


def _print_summary(args, report: dict, shape, described: str, device, n_threads: int, tiling, sol, seconds: float,
                   bicubic, solver_method: str, knobs: dict, paths: dict) -> None:
    """The human-readable summary of a restoration (without ``--json``)."""
    where = f"{device}, {n_threads} thread{'s' * (n_threads > 1)}" + (
        f", tiles {tiling['tile']} px / overlap {tiling['overlap']}" if tiling else "")
    print(f"{args.task} on {args.image} ({shape[1]}x{shape[2]} px), {args.method} with the {described} ({where})")
    print(f"  PSNR {report['psnr']:.2f} dB  SSIM {_fmt(report['ssim'])}   "
          f"(A^+ y baseline: PSNR {report['psnr_baseline']:.2f} dB  SSIM {_fmt(report['ssim_baseline'])})")
    if bicubic is not None:
        print(f"  (bicubic upsampling of y: PSNR {report['psnr_bicubic']:.2f} dB  SSIM "
              f"{_fmt(report['ssim_bicubic'])})")
    print(f"  NFE {sol.nfe}  wall {seconds:.1f} s (solve {sol.seconds:.1f} s)  peak RSS "
          f"{report['peak_memory_mib']['rss']:.0f} MiB")
    if solver_method != args.method:
        print(f"  note: with a network, {args.method} runs as {solver_method}(lam={knobs['lam']:g}) "
              f"(unsquared-norm DPS guidance, zeta {knobs.get('zeta', 1.0):.3g})" + (
                  "; lam < 1 carries less noise than the states the network was trained on, and restores less "
                  "well than lam = 1 on most tasks" if knobs["lam"] < 1 else ""))
    print(f"  wrote {paths['measurement']}, {paths['restoration']}, {paths['side_by_side']}, {paths['json']}")


def _restore(args, x, operator, sigma_y, gen, denoiser, schedule, described, size, paths, t_begin, device,
             net_dtype, n_threads, tile, overlap, photo_unet) -> int:
    import torch

    from .devices import peak_memory_mib
    from .problem import ImageInverseProblem

    shape = tuple(x.shape[1:])
    fitted = args.backbone in FITTED_BACKBONES
    if denoiser is None:
        denoiser, schedule, described = _load_backbone(args, size, device)
    denoiser, tiling = _tiled_if_needed(denoiser, shape, tile, overlap, photo_unet)
    latent = getattr(denoiser, "latent", False)
    _check_backbone_fits(args, denoiser, x, size, latent)

    network = not (fitted or callable(getattr(getattr(denoiser, "denoiser", denoiser), "condition", None)))
    solver_method = _network_method(args, network)
    problem = ImageInverseProblem(operator, sigma_y)
    y = problem.measure(x, gen)
    if device.type != "cpu":  # the task and y are drawn on the CPU (same numbers as a CPU run); the solve runs there
        y, gen = y.to(device), torch.Generator(device).manual_seed(args.seed)
    x_pinv = problem.pinv(y).cpu()
    knobs = _knobs(args)
    if args.zeta is not None:
        knobs["zeta"] = args.zeta
    elif photo_unet and solver_method == "dps":  # the network's measured step, scaled to this size and step count
        from .backbones.photo_unet import photo_unet_dps_zeta

        knobs["zeta"] = photo_unet_dps_zeta(shape[1], shape[2], knobs["steps"])
    sol = _solve(args, problem, y, solver_method, denoiser, schedule, gen, latent, knobs)
    if not bool(torch.isfinite(sol.x).all()):
        print("dptheory restore: the restoration is not finite (diverged); try fewer guidance or more steps",
              file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t_begin
    x_hat = sol.x[:1].to(device="cpu", dtype=x.dtype)
    meas = _measurement_image(problem, y.cpu(), x, x_pinv).to(x.dtype)
    baseline = _quality(x_pinv, x)
    report = dict(
        task=args.task, image=args.image, crop=args.crop, size=size, backbone=described, method=args.method,
        sigma_y=sigma_y, seed=args.seed, knobs=knobs, sampler=solver_method, exact_conditional=sol.exact_conditional,
        device=str(device), dtype=str(net_dtype).removeprefix("torch.") if not fitted else "float32",
        threads=n_threads, tiling=tiling, peak_memory_mib=peak_memory_mib(device),
        peak_memory_source="resource.getrusage(RUSAGE_SELF).ru_maxrss (process peak RSS)"
                           + ("; torch.cuda.max_memory_allocated" if device.type == "cuda" else ""),
        **_quality(x_hat, x), psnr_baseline=baseline["psnr"], ssim_baseline=baseline["ssim"],
        nfe=sol.nfe, seconds=seconds, solve_seconds=sol.seconds,
        files={k: str(v) for k, v in paths.items()},
    )
    bicubic = _bicubic_baseline(y.cpu().to(x.dtype), x)
    if bicubic is not None:  # super-resolution: the classical baseline next to A^+ y
        classical = _quality(bicubic, x)
        report.update(psnr_bicubic=classical["psnr"], ssim_bicubic=classical["ssim"])
    meas_label = "measurement y" if tuple(y.shape) == tuple(x.shape) else "measurement (A^+ y)"
    try:
        _write_all({paths["measurement"]: meas[0], paths["restoration"]: x_hat[0],
                    paths["side_by_side"]: _labelled_side_by_side(
                        [(meas_label, meas[0]), (f"restoration ({args.method})", x_hat[0]), ("truth", x[0])]),
                    paths["json"]: json.dumps(report, indent=2)})
    except OSError as err:  # e.g. a full disk: nothing partial is left (_write_all)
        raise RestoreError(f"cannot write the outputs to {paths['restoration'].parent}: {err}") from None
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_summary(args, report, shape, described, device, n_threads, tiling, sol, seconds, bicubic,
                       solver_method, knobs, paths)
    return 0

