"""``dptheory restore``: restore one image with any sampler and write measurement | restoration | ground truth.

    dptheory restore --task sr4 --image skimage:astronaut                       # defaults below
    dptheory restore --task sr4 --crop 64,128,256,256 --t0 100 --out out/      # a box of the photo, more texture
    dptheory restore --task inpaint-box --image photo.png --method dps --steps 100 --out out/
    dptheory restore --task sr4 --backbone gaussian --method posterior --steps 50 --out sr4.png

The image is loaded, cut to ``--crop`` (default: the largest centred square) and resized to ``--size``, the task is
built and ``y = A x + sigma_y z`` is drawn with the ``--seed`` generator, the image is restored with
:func:`dptheory.images.problem.solve_image`, and three PNGs are written (the measurement: ``y`` itself when it has
the image's shape, else ``A^+ y``; the restoration; and the three side by side, magnified and labelled
"measurement | restoration | truth") with ``restore.json`` (the numbers). PSNR and SSIM of the restoration and of
the ``A^+ y`` baseline, the NFE and the wall time are printed.

**Methods with a network backbone** (photo-unet, a diffusers or ADM checkpoint, a latent model): a network gives
only the PRIOR denoiser. ``vsrd`` then runs as ``dps(lam=...)``, VSRD's variance scale with the unsquared-norm DPS
guidance (:data:`NETWORK_AS_DPS`): the squared-norm guided conditional denoiser multiplies the network's Jacobian
error by ``(1 - ab) / (ab sigma_y^2)`` at high noise and gives NaN. ``posterior``, ``ddpm`` and ``ddim`` need the
conditional denoiser ``E[x0 | x_t, y]`` and are refused before anything runs, with the reason
(:data:`NETWORK_REFUSALS`); so is ``map-rps --lam`` (its vsrd stage 2).

**Backbones** (``--backbone``).

- ``photo-unet`` (default): the project's UNet trained on 32 x 32 crops of the bundled photos WITHOUT astronaut
  and coffee (:mod:`dptheory.images.train`, :func:`~dptheory.images.backbones.load_photo_unet`); images are
  restored at 32 px. Conditional samplers use DPS guidance, MAP-RPS's stage 2 is DPS, and MAP-RPS's stage 1
  runs at ``t1 = 50`` (:data:`~dptheory.images.backbones.photo_unet.PHOTO_UNET_MAP_T1`; ``--t1`` overrides).

The two EXACT priors are fitted to ``--n-crops`` held-out crops of the bundled photos
(:func:`dptheory.images.data.photo_patches`, the test image excluded, photos resized to
``PHOTO_SCALE x size = 2 x size`` first, crops drawn with a fixed seed so the prior does not depend on ``--seed``):

- ``gaussian``: the Gaussian with the crops' mean and covariance (plus ``1e-3 I``), see
  :class:`~dptheory.images.problem.GaussianImageDenoiser`. Exact Tweedie denoiser, exact ``p(x0 | x_t)`` draws
  and exact conditioning (one eigendecomposition each of the prior and of the posterior covariance, ``O(d^3)``,
  ``d = 3 size^2``).
- ``empirical``: the empirical law of the crops (:class:`~dptheory.images.backbones.EmpiricalMixtureDenoiser`),
  exact too. It MEMORISES: its posterior is a reweighting of the crops, and at every size we tried (8 to 64 px,
  up to 20000 crops, sr4 with sigma_y = 0.05) one crop carries all the weight (effective sample size 1.0), so
  its exact MMSE is 2-4 dB BELOW the ``A^+ y`` baseline (astronaut 24 px: 11.9 dB with 1000 crops, 12.2 dB
  with 5000, vs 15.7 dB). It is the exact reference of the theory, not a usable image prior, hence not the
  default (a deliberate departure from the first plan, which made it the default).
- anything else is passed to :func:`dptheory.images.backbones.load_backbone` (``adm:CONFIG:FILE.pt``,
  ``diffusers:DIR``, a directory, ``empirical:FILE.pt``, ...) and used at its own size: a network (conditional
  samplers then use DPS guidance and MAP-RPS's stage 2 is ``dps``) or a saved image set (exact, as above).

With an exact backbone MAP-RPS's stage 2 is the exact posterior sampler (its ``.condition``).

**Defaults**: ``--backbone photo-unet`` at 32 px, ``--method map-rps --t0 20`` (``--steps`` = stage-1
iterations, default 300; ``--t1 50`` with this backbone), 50 reverse steps for the diffusion samplers. ``sr4`` on
the whole astronaut (held out of training) takes about 5 s on this 2-core CPU (320 NFE) and beats ``A^+ y``
(seed 0: PSNR 16.45 vs 16.18 dB, SSIM 0.458 vs 0.392); on the box ``--crop 64,128,256,256`` with ``--t0 0``:
18.94 vs 17.30 dB. With ``--backbone gaussian`` the size defaults to 24 (sr4: 16.35 vs 15.68 dB, 3 s). The
Gaussian prior is misspecified for the test photo, so on some tasks its exact MMSE itself is at or below ``A^+ y``
in PSNR (denoise, inpaint-box; see :data:`PHOTO_SCALE`).

Errors (a bad image, an unknown task or method, a size that does not fit, a knob out of range) print one line
and return exit code 2; everything is validated before anything is written, and each file is written to a
temporary file and renamed, so no partial output is ever left.

Importing this module is cheap (torch is imported when the command runs), so ``dptheory --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["add_arguments", "run", "main", "build_parser", "RestoreError", "DEFAULTS", "PHOTO_SCALE"]

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

_STEP_METHODS = ("posterior", "ddpm", "ddim", "dps", "vsrd", "red-diff", "vml-map")
_COND_TAIL = (
    "needs the conditional denoiser E[x0 | x_t, y]. A network has only the prior one; its DPS-guided "
    "conditional (squared norm) multiplies the network's Jacobian error by (1 - ab) / (ab sigma_y^2) at high "
    "noise and diverges (NaN on the photo UNet for every zeta >= 0.1)"
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
                        help="TOP,LEFT,HEIGHT,WIDTH box in the photo's native pixels, cut before resizing to --size "
                             "(default: the largest centred square)")
    parser.add_argument("--backbone", default=D["backbone"],
                        help="photo-unet (the project's trained 32 px UNet), gaussian | empirical (exact priors "
                             "fitted to held-out photo crops) or a network spec for load_backbone (default "
                             f"{D['backbone']})")
    parser.add_argument("--method", default=D["method"],
                        help=f"map-rps, dps, vsrd, red-diff, vml-map, ddpm, ddim or posterior (default "
                             f"{D['method']}). With a network backbone vsrd runs as DPS with variance scale lam "
                             "(the unsquared-norm guidance), and posterior, ddpm and ddim are refused with the "
                             "reason (they need the exact conditional denoiser)")
    parser.add_argument("--t0", type=int, default=None, help=f"MAP-RPS re-noising step in [0, T] (default {D['t0']})")
    parser.add_argument("--t1", type=int, default=None,
                        help="MAP-RPS stage-1 noise index, 0-based (default: 50 for photo-unet, else the official 10)")
    parser.add_argument("--lam", type=float, default=None,
                        help="vsrd variance scale / red-diff weight / map-rps stage-2 vsrd, in [0, 1] (default: "
                             "vsrd 0, red-diff 0.25)")
    parser.add_argument("--zeta", type=float, default=None, help="DPS step size (default 1)")
    parser.add_argument("--seed", type=int, default=D["seed"], help="task, noise and sampler seed")
    parser.add_argument("--size", type=int, default=None,
                        help=f"image size in pixels (default {D['size']} for the fitted priors)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"reverse steps (default {D['steps']}); for map-rps the stage-1 iterations (default "
                             f"{D['map_rps_iters']})")
    parser.add_argument("--sigma-y", type=float, default=None, help="noise std in model units (default: the task's)")
    parser.add_argument("--n-crops", type=int, default=D["n_crops"],
                        help=f"crops the fitted priors are built from (default {D['n_crops']})")
    parser.add_argument("--out", default="restore_out", help="output folder, or a .png path for the restoration")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    return parser


def build_parser() -> argparse.ArgumentParser:
    from .._help import plain

    parser = argparse.ArgumentParser(prog="dptheory restore", description=plain(__doc__.splitlines()[0]))
    return add_arguments(parser)


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
    if args.n_crops < 2:
        raise RestoreError(f"--n-crops must be at least 2, got {args.n_crops}")


def _knobs(args) -> dict:
    m = args.method
    knobs: dict = {}
    if m == "map-rps":
        knobs["t0"] = DEFAULTS["t0"] if args.t0 is None else args.t0
        knobs["iters"] = DEFAULTS["map_rps_iters"] if args.steps is None else args.steps
        if args.t1 is not None:
            knobs["t1"] = args.t1
        elif args.backbone.partition(":")[0] == "photo-unet":
            from .backbones.photo_unet import PHOTO_UNET_MAP_T1

            knobs["t1"] = PHOTO_UNET_MAP_T1
        if args.lam is not None:
            knobs["lam"] = args.lam
            knobs["stage2"] = "vsrd"
    else:
        knobs["steps"] = DEFAULTS["steps"] if args.steps is None else args.steps
    if m == "vsrd":
        knobs["lam"] = 0.0 if args.lam is None else args.lam
    if m == "red-diff" and args.lam is not None:
        knobs["lam"] = args.lam
    return knobs


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


def _load_backbone(args, size: int):
    """``(denoiser, schedule, description)``."""
    import torch

    from ..schedules import linear_schedule
    from .data import photo_patches

    if args.backbone in FITTED_BACKBONES:
        try:
            crops = photo_patches(size, args.n_crops, torch.Generator().manual_seed(_CROP_SEED),
                                  exclude=_exclude(args.image), photo_size=PHOTO_SCALE * size)
        except ValueError as err:
            raise RestoreError(f"--size {size} does not fit backbone {args.backbone!r}: {err}") from err
        if args.backbone == "gaussian":
            from .problem import GaussianImageDenoiser

            den = GaussianImageDenoiser.fit(crops)
        else:
            from .backbones import EmpiricalMixtureDenoiser

            den = EmpiricalMixtureDenoiser(crops)
        return den, linear_schedule(), f"{args.backbone} prior of {args.n_crops} held-out {size}px photo crops"
    from .backbones import load_backbone

    try:
        bb = load_backbone(args.backbone)
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
    if len(box) != 4 or min(box[2:]) <= 0 or min(box[:2]) < 0:
        raise RestoreError(f"--crop must be TOP,LEFT,HEIGHT,WIDTH (integers, positive sizes), got {crop!r}")
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


def _measurement_image(problem, y, x, x_pinv):
    return y if tuple(y.shape) == tuple(x.shape) else x_pinv


def _side_by_side(*images):
    import torch

    gap = images[0].new_ones(*images[0].shape[:-1], 2)
    parts = []
    for i, im in enumerate(images):
        parts += [im] if i == 0 else [gap, im]
    return torch.cat(parts, dim=-1)


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
    from .data import save_png

    staged = []
    try:
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
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
    from .data import load_image
    from .metrics import psnr, ssim
    from .operators import TASKS, make_task
    from .problem import ImageInverseProblem, solve_image

    t_begin = time.perf_counter()
    if args.task not in TASKS:
        raise RestoreError(f"unknown task {args.task!r}; choose from {', '.join(TASKS)}")
    if args.method not in METHODS:
        raise RestoreError(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}")
    fitted = args.backbone in FITTED_BACKBONES
    if args.size is not None and args.size < 4:
        raise RestoreError(f"--size must be at least 4 pixels, got {args.size}")
    paths = _output_paths(args.out)
    denoiser = None
    if fitted:
        size = DEFAULTS["size"] if args.size is None else args.size
    else:  # a network or a saved image set: its own size
        denoiser, schedule, described = _load_backbone(args, None)
        latent_bb = getattr(denoiser, "latent", False)  # VAE + UNet are convolutional: any multiple of 8
        native = None if latent_bb else _backbone_size(denoiser)
        if args.size is not None and native is not None and args.size != native:
            raise RestoreError(f"--size {args.size} does not fit backbone {args.backbone!r} (its size is {native})")
        size = args.size if args.size is not None else (native or (512 if latent_bb else 256))  # SD 1.5 / ADM
    try:
        x = load_image(args.image, size, crop=_crop_box(args.crop))
    except (FileNotFoundError, ValueError, TypeError, OSError) as err:
        raise RestoreError(f"cannot load image {args.image!r}: {err}") from err
    shape = tuple(x.shape[1:])
    gen = torch.Generator().manual_seed(args.seed)
    try:
        operator, task_sigma = make_task(args.task, shape, gen)
    except ValueError as err:
        raise RestoreError(f"--task {args.task} does not fit --size {size}: {err}") from err
    sigma_y = task_sigma if args.sigma_y is None else args.sigma_y
    _check_knobs(args, (linear_schedule() if denoiser is None else schedule).T)  # fitted priors: linear T=1000
    if fitted and not sigma_y > 0:
        raise RestoreError("--sigma-y must be > 0 with an exact prior (its posterior needs noise)")
    if denoiser is None:
        denoiser, schedule, described = _load_backbone(args, size)
    latent = getattr(denoiser, "latent", False)
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

    network = not (fitted or callable(getattr(getattr(denoiser, "denoiser", denoiser), "condition", None)))
    solver_method = _network_method(args, network)
    problem = ImageInverseProblem(operator, sigma_y)
    y = problem.measure(x, gen)
    x_pinv = problem.pinv(y)
    knobs = _knobs(args)
    if args.zeta is not None:
        knobs["zeta"] = args.zeta
    try:
        if latent:
            from .latent import solve_latent

            sol = solve_latent(problem, y, solver_method, denoiser, schedule=schedule, generator=gen,
                               progress=not args.no_progress, **knobs)
        else:
            sol = solve_image(problem, y, solver_method, denoiser, schedule=schedule, generator=gen,
                              progress=not args.no_progress, **knobs)
    except (ValueError, TypeError) as err:
        raise RestoreError(str(err)) from err
    if not bool(torch.isfinite(sol.x).all()):
        print("dptheory restore: the restoration is not finite (diverged); try fewer guidance or more steps",
              file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t_begin
    x_hat = sol.x[:1].to(x.dtype)
    meas = _measurement_image(problem, y, x, x_pinv).to(x.dtype)
    report = dict(
        task=args.task, image=args.image, crop=args.crop, size=size, backbone=described, method=args.method,
        sigma_y=sigma_y, seed=args.seed, knobs=knobs, sampler=solver_method,
        exact_conditional=sol.exact_conditional,
        psnr=float(psnr(x_hat, x)[0]), ssim=_ssim(ssim, x_hat, x),
        psnr_baseline=float(psnr(x_pinv, x)[0]), ssim_baseline=_ssim(ssim, x_pinv, x),
        nfe=sol.nfe, seconds=seconds, solve_seconds=sol.seconds,
        files={k: str(v) for k, v in paths.items()},
    )
    meas_label = "measurement y" if tuple(y.shape) == tuple(x.shape) else "measurement (A^+ y)"
    _write_all({paths["measurement"]: meas[0], paths["restoration"]: x_hat[0],
                paths["side_by_side"]: _labelled_side_by_side(
                    [(meas_label, meas[0]), (f"restoration ({args.method})", x_hat[0]), ("truth", x[0])]),
                paths["json"]: json.dumps(report, indent=2)})
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.task} on {args.image} ({size}px), {args.method} with the {described}")
        print(f"  PSNR {report['psnr']:.2f} dB  SSIM {_fmt(report['ssim'])}   "
              f"(A^+ y baseline: PSNR {report['psnr_baseline']:.2f} dB  SSIM {_fmt(report['ssim_baseline'])})")
        print(f"  NFE {sol.nfe}  wall {seconds:.1f} s (solve {sol.seconds:.1f} s)")
        if solver_method != args.method:
            print(f"  note: with a network, {args.method} runs as {solver_method}(lam={knobs['lam']:g}) "
                  "(unsquared-norm DPS guidance)" + ("; lam < 1 leaves the network's training distribution "
                                                     "(grey images)" if knobs["lam"] < 1 else ""))
        print(f"  wrote {paths['measurement']}, {paths['restoration']}, {paths['side_by_side']}, {paths['json']}")
    return 0


def main(argv=None) -> int:
    """``python -m dptheory.images.restore ...``; argparse errors return exit code 2."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as err:
        return int(err.code or 0)
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
