"""A high-noise expert for the photo UNet: where it takes over, how it is mixed in, and the files that ship it.

The eps-parametrised UNet is the better denoiser at low noise but fails at the top of the schedule
(``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)`` multiplies its error by up to 160); a v-parametrised network
trained on the high-noise steps only (``python -m dptheory.images.train --min-step``) stays bounded there.
:func:`mixing_knots` measures, on crops of the photos both networks were trained on (never the held-out ones),
the MSE-optimal weight of the expert at each step of a grid; :func:`pack_high_expert` stores the expert beside
the low weights as ``<stem>_high.pt`` (float16, half the size) with its log and the knots in ``<stem>_high.json``;
:func:`~dptheory.images.backbones.load_photo_unet` returns the pair as a :class:`~dptheory.NoiseLevelExperts`.

    python -m dptheory.images.experts HIGH/photo_unet32.pt    # beside the package's weights
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

__all__ = ["HIGH_SUFFIX", "MIX_GRID", "MIX_SNAP", "high_expert_path", "mixing_knots", "pack_high_expert", "main"]

HIGH_SUFFIX = "_high"
"""``<stem>_high.pt`` / ``<stem>_high.json`` beside ``<stem>.pt`` hold the high-noise expert."""

MIX_GRID = 25
"""Spacing (network steps) of the grid on which :func:`mixing_knots` compares the two experts."""

MIX_SNAP = 0.9
"""A mixing weight ``>= MIX_SNAP`` becomes 1 (the high expert alone) and one ``<= 1 - MIX_SNAP`` becomes 0."""


def high_expert_path(low_path) -> Path:
    """The high-noise expert's weights beside ``low_path``: ``<stem>_high.pt``."""
    low_path = Path(low_path)
    return low_path.with_name(low_path.stem + HIGH_SUFFIX + ".pt")


def mixing_knots(low, high, schedule, x0: torch.Tensor, generator: torch.Generator, *, min_step: int = 0,
                 grid: int = MIX_GRID, snap: float = MIX_SNAP, mix: bool = True, chunk: int = 64) -> tuple[list, list]:
    """The knots ``[(step, weight), ...]`` of :class:`~dptheory.NoiseLevelExperts` for ``low`` and ``high``, and the
    table ``[[step, mse_low, mse_high, w_star, mse_mix, se_mix_minus_low], ...]`` they come from.

    At each step of the grid ``min_step, min_step + grid, ..., T - 1`` both denoisers see the same ``x_t =
    sqrt(abar) x0 + sqrt(1 - abar) eps`` (``abar = alpha_bar(step + 1)``, ``eps`` from ``generator``), with errors
    ``e_low``, ``e_high`` against ``x0``. The weight of ``high`` that minimises the MSE of the convex combination,

        ``w* = clip(sum e_low . (e_low - e_high) / sum |e_low - e_high|^2, 0, 1)``   (sums over all pixels),

    is the knot's weight; where ``w* <= 1 - snap`` the step is left to ``low`` alone, and from the first step after
    which ``w* >= snap`` everywhere ``high`` runs alone (weight 1), so both networks run only where mixing pays.
    ``mix=False`` keeps only that hand-over: ``[(step, 1.0)]``, one network per evaluation everywhere.
    ``mse_mix`` is the MSE at ``w*`` and ``se_mix_minus_low`` the standard error of the paired per-image difference.
    ``x0 (n, c, h, w)`` with ``n >= 2``. Raises ``ValueError`` when ``w* < snap`` at ``T - 1``.
    """
    from tqdm.auto import tqdm

    T = schedule.T
    if not isinstance(grid, int) or grid < 1 or not 0 <= min_step < T:
        raise ValueError(f"need grid >= 1 and 0 <= min_step < T = {T}, got grid={grid!r}, min_step={min_step!r}")
    if not 0.5 < snap <= 1:
        raise ValueError(f"snap must lie in (0.5, 1], got {snap!r}")
    if x0.ndim != 4 or x0.shape[0] < 2:
        raise ValueError(f"x0 must have shape (n, c, h, w) with n >= 2, got {tuple(x0.shape)}")
    table = []
    for step in tqdm(sorted(set(range(min_step, T, grid)) | {T - 1}), desc="mixing weights", leave=False):
        abar = float(schedule.alpha_bar(step + 1))
        x_t = abar**0.5 * x0 + (1 - abar) ** 0.5 * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        with torch.no_grad():
            e_lo, e_hi = (torch.cat([D(x_t[k : k + chunk], abar) for k in range(0, len(x0), chunk)]) - x0
                          for D in (low, high))
        diff = e_lo - e_hi
        w = min(max(float((e_lo * diff).sum() / diff.square().sum().clamp_min(1e-30)), 0.0), 1.0)
        per_image = [e.square().flatten(1).mean(1) for e in (e_lo, e_hi, torch.lerp(e_lo, e_hi, w))]
        d = per_image[2] - per_image[0]
        table.append([step, *(float(m.mean()) for m in per_image[:2]), w, float(per_image[2].mean()),
                      float(d.std() / len(d) ** 0.5)])
    if table[-1][3] < snap:
        raise ValueError(f"the high expert is not better than the low one at the top step {table[-1][0]}: its "
                         f"MSE-optimal weight is {table[-1][3]:.3f} < snap = {snap} (MSE {table[-1][2]:.4g} "
                         f"against {table[-1][1]:.4g})")
    alone = len(table) - 1
    while alone > 0 and table[alone - 1][3] >= snap:
        alone -= 1
    knots = [(row[0], row[3]) for row in table[:alone] if row[3] > 1 - snap] if mix else []
    return knots + [(max(table[alone][0], 1), 1.0)], table


def pack_high_expert(high_weights, low_weights=None, *, n: int = 256, seed: int = 0, grid: int = MIX_GRID,
                     mix: bool = True, dtype: torch.dtype = torch.float16) -> Path:
    """Store ``high_weights`` (a ``photo_unet32.pt`` of :mod:`dptheory.images.train`, its log beside it) as the
    high-noise expert of ``low_weights`` (default: the package's weights) and return the written ``.pt`` path.

    The weights are rounded to ``dtype`` first, and the mixing knots are chosen for the ROUNDED network
    (:func:`mixing_knots` with ``mix``: ``True`` mixes the two networks below the hand-over, ``False`` hands over
    at one step) on ``n`` crops of the photos BOTH networks were trained on (seed ``seed``): a
    photo only one of them saw would favour that one, and the held-out photos stay out of the choice. The
    ``.json`` is the high expert's training log plus ``expert``: the knots, the table they were chosen from,
    the stored dtype and the sha256 of the low weights it pairs with.
    """
    from .._atomic import atomic_named_path, write_text
    from .._safeload import CheckpointError, load_tensors
    from .backbones.photo_unet import PHOTO_UNET_WEIGHTS, _load_network, photo_unet_log
    from .train import PhotoCrops

    low_weights = Path(low_weights or PHOTO_UNET_WEIGHTS).expanduser()
    high_weights = Path(high_weights).expanduser()
    log = photo_unet_log(high_weights)
    state = load_tensors(high_weights, "high-noise expert weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"high-noise expert weights {str(high_weights)!r} are not a state dict of tensors")
    out = high_expert_path(low_weights)
    # the rounded weights are evaluated from the file that will ship; it keeps its name (torch.save names its
    # archive after the file, so the bytes stay repeatable) and is renamed into place only on success
    with atomic_named_path(out) as staged:
        torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, staged)
        low, schedule = _load_network(low_weights)
        high, _ = _load_network(staged, log=log)
        cfg = log["config"]
        low_photos = set(photo_unet_log(low_weights).get("photos", ()))
        photos = tuple(p for p in log["photos"] if p in low_photos)
        if not photos:
            raise ValueError(f"{high_weights} and {low_weights} were trained on no common photo, so there are no "
                             "crops to choose the mixing weights on")
        crops = PhotoCrops(photos, int(cfg["size"]), tuple(cfg["scales"]))
        x0 = crops.sample(n, torch.Generator().manual_seed(seed))
        knots, table = mixing_knots(low, high, schedule, x0, torch.Generator().manual_seed(seed + 1),
                                    min_step=int(cfg.get("min_step", 0)), grid=grid, mix=mix)
        log["expert"] = dict(knots=[list(k) for k in knots], switch_step=knots[-1][0],
                             stored_dtype=str(dtype).removeprefix("torch."),
                             low_sha256=hashlib.sha256(low_weights.read_bytes()).hexdigest(), low=low_weights.name,
                             source_sha256=hashlib.sha256(high_weights.read_bytes()).hexdigest(),
                             selection=dict(n=n, seed=seed, grid=grid, snap=MIX_SNAP, mix=mix, photos=list(photos),
                                            table=table,
                                            columns=["step", "mse_low", "mse_high", "w_star", "mse_mix",
                                                     "se_mix_minus_low"]))
    write_text(out.with_suffix(".json"), json.dumps(log, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dptheory.images.experts", description=__doc__.splitlines()[0])
    p.add_argument("high", help="the high-noise expert's photo_unet32.pt (written by dptheory.images.train "
                   "--min-step), its .json log beside it")
    p.add_argument("--low", default=None, help="the low-noise weights it pairs with (default: the package's); the "
                   "expert is written beside them as <stem>_high.pt and <stem>_high.json")
    p.add_argument("--n", type=int, default=256, help="training crops the mixing knots are chosen on (default 256)")
    p.add_argument("--no-mix", action="store_true", help="hand over at one step only, without the band where both "
                   "networks run and are mixed with their MSE-optimal weights (one network pass per evaluation "
                   "everywhere; higher denoising MSE in the band)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        out = pack_high_expert(args.high, args.low, n=args.n, mix=not args.no_mix)
    except (OSError, ValueError) as err:  # a missing or broken file, a log without a config, a losing expert
        print(f"{p.prog}: {err}", file=sys.stderr)
        return 2
    info = json.loads(out.with_suffix(".json").read_text())["expert"]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); knots (step, weight of the expert): "
          + ", ".join(f"({k}, {w:.3f})" for k, w in info["knots"]), file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
