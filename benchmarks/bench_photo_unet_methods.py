"""Benchmark: every image method on the trained photo UNet at equal NFE, side by side: PSNR, SSIM, SWD, NFE, s/image.

Setting (as the figure ``image_dp_photo_unet``): the project's photo UNet (:func:`load_photo_unet`, trained without
astronaut and coffee), ``--n`` 32 x 32 crops of those two held-out photos (``PhotoCrops(HELD_OUT, 32, (64, 96,
128, 192))``, seed 20261125), tasks ``sr4``, ``inpaint-random``, ``blur-gauss`` and ``cs`` with sigma_y = 0.05 in
model units (one operator per task, shared by the crops, from :func:`make_task`). All crops of a task are solved
in ONE batched call of :func:`solve_image` (one particle per crop), so a network call serves 16 images and
seconds per image is the batch's wall time divided by ``n``.

Methods: every name in :data:`dptheory.METHOD_NAMES` (new samplers are picked up automatically), except
``posterior`` (it needs an exact conditional denoiser; none exists for a network). Budgets: 20 and 100 NFE
(network calls; a batched call counts once, a forward + backward counts once) and the paper's default
(:data:`PAPER_NFE`). How each method spends a budget ``N`` (:func:`knobs_for`):

- ``map-rps``: ``iters = N - t0`` stage-1 AdamW steps at ``t1 = 50`` (the photo UNet's setting), Bayes weight,
  stage 2 DPS from ``t0 = N // 5`` (paper: the official per-task iterations, sr4 300 / inp 400 / deblur 200 (cs:
  300), with ``t0 = 100``);
- ``vml-map``: ``inner_steps = 1`` (2 calls per level), ``final_steps = 0``, ``N // 2`` levels;
- ``ddpm``, ``ddim``, ``vsrd``: the conditional denoiser is DPS guidance with the PiGDM likelihood variance
  (``posterior_denoiser="pigdm"``; the plug-in one diverges on this network), ``vsrd`` at ``lam = 0.5``;
- ``dps``: ``steps = N`` with the network's step ``zeta = photo_unet_dps_zeta(32, 32, N)`` (3 at 100 steps, 12
  at 20, 0.3 at 1000);
- every other method: ``steps = N`` (RED-Diff, and any sampler with a ``steps`` knob). The NFE column is
  the COUNTED number, so a sampler that spends more calls per step shows it.

Metrics: PSNR and SSIM per crop (data range 2), mean +- SE over crops; SWD (Laplacian-pyramid patches, 32
patches per image, 256 fixed projections) between the restorations and their true crops; NFE; seconds per image.
Non-finite outputs are reported as diverged.

Usage::

    python benchmarks/bench_photo_unet_methods.py                       # 20 and 100 NFE, all tasks (~15 min here)
    python benchmarks/bench_photo_unet_methods.py --nfe paper --tasks sr4
    python benchmarks/bench_photo_unet_methods.py --quick               # 4 crops, sr4, 20 NFE: a smoke run
    python benchmarks/bench_photo_unet_methods.py --table benchmarks/results/photo_unet_methods.json

Writes ``benchmarks/results/photo_unet_methods.json`` (``--out`` to change; ``--quick`` writes ``..._quick.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dptheory.images.backbones import load_photo_unet  # noqa: E402
from dptheory.images.backbones.photo_unet import PHOTO_UNET_MAP_T1, photo_unet_dps_zeta  # noqa: E402
from dptheory.images.metrics import psnr, ssim, swd  # noqa: E402
from dptheory.images.operators import make_task  # noqa: E402
from dptheory.images.problem import ImageInverseProblem, solve_image  # noqa: E402
from dptheory.images.train import HELD_OUT, PhotoCrops  # noqa: E402
from dptheory.solver import METHOD_NAMES  # noqa: E402

SEED = 20261125
SIGMA_Y = 0.05
TASKS = ("sr4", "inpaint-random", "blur-gauss", "cs")
SWD_KW = dict(patches_per_image=32, n_projections=256)

PAPER_NFE = {
    "ddpm": (1000, "Ho et al. 2020: T = 1000 ancestral steps"),
    "ddim": (100, "Song et al. 2021: 100-step DDIM, the usual setting"),
    "dps": (1000, "Chung et al. 2023 / official config: 1000 steps"),
    "vsrd": (1000, "Wang et al. 2025: 1000-step DDPM with a variance scale"),
    "map-rps": (None, "official scripts: task iterations (sr4 300, inp 400, deblur 200; cs 300) + t0 = 100"),
    "red-diff": (1000, "Mardani et al. 2024: 1000 steps (official README example: 100)"),
    "vml-map": (None, "no public code; the schedule is not recoverable (skipped)"),
    "ddrm": (20, "Kawar et al. 2022: 20 steps"),
    "diffpir": (100, "Zhu et al. 2023: 100 steps"),
    "pigdm": (100, "Song et al. 2023: 100 steps"),
    "daps": (1000, "Zhang et al. 2024: DAPS-1K"),
}
"""The paper's default NFE per method (``None``: per task, or none). Unknown methods use 100."""

MAP_RPS_PAPER_ITERS = {"sr4": 300, "inpaint-random": 400, "blur-gauss": 200, "cs": 300}
COND_METHODS = ("ddpm", "ddim", "vsrd")


def held_out_crops(n: int) -> torch.Tensor:
    return PhotoCrops(HELD_OUT, 32, (64, 96, 128, 192)).sample(n, torch.Generator().manual_seed(SEED))


def paper_nfe(method: str, task: str) -> int | None:
    if method == "map-rps":
        return MAP_RPS_PAPER_ITERS[task] + 100
    return PAPER_NFE.get(method, (100, "unknown: 100"))[0]


def knobs_for(method: str, budget: int, task: str, paper: bool) -> dict:
    """The knobs that spend ``budget`` network calls (module docstring)."""
    if method == "map-rps":
        t0 = 100 if paper else budget // 5
        return dict(t0=t0, iters=budget - t0, t1=PHOTO_UNET_MAP_T1)
    if method == "vml-map":
        return dict(steps=max(budget // 2, 1), inner_steps=1, final_steps=0)
    if method == "daps" and paper:  # DAPS-1K: the sampler's defaults, 200 levels x 5 ODE calls
        return {}
    knobs: dict = dict(steps=budget)
    if method in COND_METHODS:
        knobs["posterior_denoiser"] = "pigdm"
    if method == "vsrd":
        knobs["lam"] = 0.5
    if method == "dps":
        knobs["zeta"] = photo_unet_dps_zeta(32, 32, budget)
    return knobs


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.to(torch.float64)
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def _metrics(xh: torch.Tensor, x: torch.Tensor) -> dict:
    if not bool(torch.isfinite(xh).all()):
        return dict(finite=False)
    xh = xh.clamp(-1, 1)  # metrics on displayable images
    return dict(finite=True, psnr=_mean_se(psnr(xh, x)), ssim=_mean_se(ssim(xh, x)),
                swd=float(swd(xh, x, generator=torch.Generator().manual_seed(1), **SWD_KW)))


def run(tasks, methods, budgets, n, device, checkpoint=None) -> dict:
    """Every task x method x budget; ``checkpoint(results)`` is called after each task (partial results on disk)."""
    den, schedule = load_photo_unet(device=device)
    x = held_out_crops(n).to(device)
    out = {}
    for task in tasks:
        task_start = time.perf_counter()
        gen = torch.Generator(device=device).manual_seed(SEED)
        op, _ = make_task(task, tuple(x.shape[1:]), torch.Generator().manual_seed(SEED))
        problem = ImageInverseProblem(op, SIGMA_Y)
        y = problem.measure(x, gen)
        row = {"baseline A^+ y": _metrics(problem.pinv(y), x), "methods": {}}
        print(f"[{task}] A^+ y: PSNR {row['baseline A^+ y']['psnr'][0]:.2f}", flush=True)
        for method in methods:
            res = {}
            for b in budgets:
                paper = b == "paper"
                budget = paper_nfe(method, task) if paper else int(b)
                if budget is None:
                    res[str(b)] = dict(skipped=PAPER_NFE[method][1])
                    continue
                knobs = knobs_for(method, budget, task, paper)
                g = torch.Generator(device=device).manual_seed(SEED + 1)
                pd = knobs.pop("posterior_denoiser", None)
                try:
                    sol = solve_image(problem, y, method, den, schedule=schedule, generator=g,
                                      posterior_denoiser=pd, **knobs)
                except (ValueError, TypeError) as err:
                    res[str(b)] = dict(error=str(err))
                    print(f"[{task}] {method:9s} {b}: error {err}", flush=True)
                    continue
                m = _metrics(sol.x, x) | dict(nfe=sol.nfe, seconds_per_image=sol.seconds / n,
                                              knobs=knobs | ({"posterior_denoiser": pd} if pd else {}))
                res[str(b)] = m
                shown = (f"PSNR {m['psnr'][0]:6.2f} SSIM {m['ssim'][0]:.3f} SWD {m['swd']:.3f}" if m["finite"]
                         else "diverged")
                print(f"[{task}] {method:9s} {str(b):5s} NFE {sol.nfe:5d} {shown}  {m['seconds_per_image']:.3f} s/img",
                      flush=True)
            row["methods"][method] = res
        row["seconds"] = time.perf_counter() - task_start
        out[task] = row
        if checkpoint is not None:
            checkpoint(out)
    return out


def markdown_table(doc: dict) -> str:
    """The results as one markdown table: a row per task x method x budget (PSNR and SSIM mean +- SE over crops)."""
    lines = ["| task | method | budget | PSNR (dB) | SSIM | SWD | NFE | s / image |",
             "|---|---|---|---|---|---|---|---|"]
    for task, row in doc["results"].items():
        b = row["baseline A^+ y"]
        lines.append(f"| {task} | A^+ y | - | {b['psnr'][0]:.2f} | {b['ssim'][0]:.3f} | {b['swd']:.3f} | 0 | - |")
        for method, res in row["methods"].items():
            for budget, m in res.items():
                if "skipped" in m or "error" in m:
                    why = m.get("skipped") or ("diverged (NaN)" if "NaN" in m["error"] else m["error"])
                    lines.append(f"| {task} | {method} | {budget} | {why} | | | | |")
                elif not m["finite"]:
                    lines.append(f"| {task} | {method} | {budget} | diverged | | | {m['nfe']} | |")
                else:
                    lines.append(f"| {task} | {method} | {budget} | {m['psnr'][0]:.2f} +- {m['psnr'][1]:.2f} | "
                                 f"{m['ssim'][0]:.3f} +- {m['ssim'][1]:.3f} | {m['swd']:.3f} | {m['nfe']} | "
                                 f"{m['seconds_per_image']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 crops, sr4, 20 NFE")
    parser.add_argument("--n", type=int, default=16, help="crops (default 16)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method but posterior")
    parser.add_argument("--nfe", nargs="+", default=["20", "100"], help="budgets: integers and/or 'paper'")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--table", default=None, metavar="JSON", help="print a results file as a markdown table")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return 0
    if args.quick:
        args.n, args.tasks, args.nfe = 4, ["sr4"], ["20"]
    methods = args.methods or [m for m in METHOD_NAMES if m != "posterior"]
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    t = time.perf_counter()
    name = "photo_unet_methods_quick.json" if args.quick else "photo_unet_methods.json"
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    loads = []

    def write(results, complete=False):
        loads.append(os.getloadavg())
        doc = dict(benchmark="photo_unet_methods", complete=complete, n_crops=args.n, sigma_y=SIGMA_Y,
                   tasks=args.tasks, methods=methods, budgets=args.nfe,
                   paper_nfe={k: v[1] for k, v in PAPER_NFE.items()}, results=results,
                   duration_seconds=time.perf_counter() - t,
                   machine=dict(platform=platform.platform(), torch=torch.__version__,
                                threads=torch.get_num_threads(), device=args.device, loadavg_start=load_start,
                                loadavg_after_each_task=loads))
        out.write_text(json.dumps(doc, indent=1))

    results = run(args.tasks, methods, args.nfe, args.n, args.device, checkpoint=write)
    write(results, complete=True)
    print(f"wrote {out} ({time.perf_counter() - t:.0f} s, load average {load_start} -> {os.getloadavg()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
