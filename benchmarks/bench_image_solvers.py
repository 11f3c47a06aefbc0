"""Benchmark: MAP-RPS against DPS on the same image backbone, side by side: NFE, wall time and PSNR.

Problem: ``skimage:astronaut`` resized to ``size`` px, task ``sr4`` (4x4 average pooling, sigma_y = 0.05 in model
units [-1, 1]), one measurement per seed. Backbone: the default prior of ``dptheory restore``, the exact
Gaussian fitted to 1000 held-out photo crops (photos resized to ``PHOTO_SCALE * size``, astronaut excluded;
:class:`dptheory.images.problem.GaussianImageDenoiser`), shared by every method. References: the ``A^+ y``
baseline and the exact MMSE ``E[x0 | y]`` (the best PSNR any estimator can reach in expectation under this
prior).

Methods (all through :func:`dptheory.images.problem.solve_image`, the same code path as ``dptheory restore``):

- ``map-rps`` with its exact stage 2 (the posterior sampler with the exact conditional denoiser), ``t0`` in
  {0, 20, 100}, 300 stage-1 iterations;
- ``map-rps`` with the network-style ``dps`` stage 2 (``posterior_denoiser="dps"``, zeta = 1), ``t0`` = 20;
- ``dps`` (Chung et al. 2023, unsquared norm, zeta = 1) on 100 and 1000 steps.

NFE is counted by the denoiser wrapper of ``solve_image`` (DPS: one forward + backward per step). Wall time is
``perf_counter`` and CPU time ``process_time`` (less sensitive to other jobs; up to 2 threads) around
``solve_image``, conditioning included, after one untimed warm-up call, on a shared machine (load average
recorded).
PSNR is averaged over ``--seeds`` seeds (task noise and sampler noise), with its standard error; times are the
median over seeds (the first timed call can still pay seconds of one-off overhead, e.g. lazy imports behind
the first optimiser step, on a loaded machine).

Usage::

    python benchmarks/bench_image_solvers.py            # 24 px, 3 seeds
    python benchmarks/bench_image_solvers.py --quick    # 16 px, 2 seeds, shorter runs

Writes ``benchmarks/results/image_solvers.json`` (``image_solvers_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dptheory.images.data import load_image, photo_patches  # noqa: E402
from dptheory.images.metrics import psnr  # noqa: E402
from dptheory.images.operators import make_task  # noqa: E402
from dptheory.images.problem import GaussianImageDenoiser, ImageInverseProblem, solve_image  # noqa: E402
from dptheory.images.restore import PHOTO_SCALE  # noqa: E402
from dptheory.schedules import linear_schedule  # noqa: E402


def configs(quick: bool) -> list[dict]:
    iters = 100 if quick else 300
    runs = [dict(label=f"map-rps t0={t0} (exact stage 2)", method="map-rps", t0=t0, iters=iters) for t0 in (0, 20, 100)]
    runs.append(dict(label="map-rps t0=20 (dps stage 2)", method="map-rps", t0=20, iters=iters,
                     posterior_denoiser="dps"))
    runs += [dict(label=f"dps {s} steps", method="dps", steps=s) for s in ((50, 200) if quick else (100, 1000))]
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    size = args.size or (16 if args.quick else 24)
    seeds = args.seeds or (2 if args.quick else 3)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    t = time.perf_counter()
    crops = photo_patches(size, 1000, torch.Generator().manual_seed(0), exclude=("skimage:astronaut",),
                          photo_size=PHOTO_SCALE * size)
    prior = GaussianImageDenoiser.fit(crops)
    build_seconds = time.perf_counter() - t
    x = load_image("skimage:astronaut", size)
    schedule = linear_schedule()

    # warm-up (untimed): first-call overheads (lazy imports, allocator, dtype casts of the prior's tables)
    g = torch.Generator().manual_seed(12345)
    op, sigma_y = make_task("sr4", tuple(x.shape[1:]), g)
    prob = ImageInverseProblem(op, sigma_y)
    for method, knobs in (("map-rps", dict(t0=2, iters=2)), ("dps", dict(steps=2))):
        solve_image(prob, prob.measure(x, g), method, prior, schedule=schedule, generator=g, **knobs)

    per_seed = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        op, sigma_y = make_task("sr4", tuple(x.shape[1:]), g)
        prob = ImageInverseProblem(op, sigma_y)
        y = prob.measure(x, g)
        t = time.perf_counter()
        mmse = prior.posterior_mean(op, y, sigma_y).to(x.dtype).unsqueeze(0)
        cond_seconds = time.perf_counter() - t
        row = dict(seed=seed, baseline=float(psnr(prob.pinv(y), x)[0]), mmse=float(psnr(mmse, x)[0]),
                   condition_seconds=cond_seconds, runs={})
        for cfg in configs(args.quick):
            knobs = {k: v for k, v in cfg.items() if k not in ("label", "method")}
            cpu = time.process_time()
            sol = solve_image(prob, y, cfg["method"], prior, schedule=schedule, generator=g, **knobs)
            cpu = time.process_time() - cpu
            ok = bool(torch.isfinite(sol.x).all())
            row["runs"][cfg["label"]] = dict(psnr=float(psnr(sol.x, x)[0]) if ok else float("nan"), nfe=sol.nfe,
                                             seconds=sol.seconds, cpu_seconds=cpu, finite=ok)
            print(f"seed {seed} {cfg['label']:32s} PSNR {row['runs'][cfg['label']]['psnr']:6.2f}  NFE {sol.nfe:5d}"
                  f"  {sol.seconds:6.1f} s wall  {cpu:6.1f} s cpu", flush=True)
        per_seed.append(row)

    def mean_se(values):
        v = torch.tensor(values, dtype=torch.float64)
        return float(v.mean()), float(v.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")

    summary = {"baseline A^+ y": dict(zip(("psnr", "psnr_se"), mean_se([r["baseline"] for r in per_seed]),
                                          strict=True)),
               "exact MMSE": dict(zip(("psnr", "psnr_se"), mean_se([r["mmse"] for r in per_seed]), strict=True))}
    for cfg in configs(args.quick):
        runs = [r["runs"][cfg["label"]] for r in per_seed]
        m, se = mean_se([r["psnr"] for r in runs])
        summary[cfg["label"]] = dict(psnr=m, psnr_se=se, nfe=runs[0]["nfe"],
                                     seconds=statistics.median(r["seconds"] for r in runs),
                                     cpu_seconds=statistics.median(r["cpu_seconds"] for r in runs))
    print(f"\nsr4, astronaut {size}px, Gaussian prior of 1000 crops; mean over {seeds} seeds")
    print(f"{'method':34s} {'PSNR (dB)':>16s} {'NFE':>6s} {'wall (s)':>9s} {'cpu (s)':>8s}  (times: median)")
    for label, s in summary.items():
        extra = f" {s['nfe']:6d} {s['seconds']:9.2f} {s['cpu_seconds']:8.2f}" if "nfe" in s else ""
        print(f"{label:34s} {s['psnr']:9.2f} +- {s['psnr_se']:.2f}{extra}")

    result = dict(
        benchmark="image_solvers", quick=args.quick, task="sr4", image="skimage:astronaut", size=size,
        sigma_y=0.05, backbone="gaussian prior of 1000 held-out photo crops (photo_patches seed 0)",
        schedule="linear T=1000", seeds=list(range(seeds)), backbone_build_seconds=build_seconds,
        summary=summary, per_seed=per_seed,
        machine=dict(platform=platform.platform(), torch=torch.__version__, threads=torch.get_num_threads(),
                     loadavg=os.getloadavg()),
    )
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "image_solvers_quick.json" if args.quick else "image_solvers.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
