"""Compare two sets of photo-UNet weights on the SAME draws: held-out denoising MSE and restoration PSNR.

    python benchmarks/bench_photo_unet_weights.py --weights committed-eps --out /tmp/old.json   # eps net alone
    python benchmarks/bench_photo_unet_weights.py --weights committed --out /tmp/pair.json      # + v expert
    python benchmarks/bench_photo_unet_weights.py --weights new/photo_unet32.pt --out /tmp/new.json
    python benchmarks/bench_photo_unet_weights.py --compare /tmp/old.json /tmp/new.json \\
        --out benchmarks/results/photo_unet_weights.json

(1) Held-out denoising MSE per pixel of ``E[x0 | x_t]`` at the steps of ``analyses/photo_unet_training.py``, with
its crops and its noise (the same ``x_t`` for every weight file). (2) Restoration on the crops, operators and
noise of ``analyses/image_dp_photo_unet.py`` (its four tasks, sigma_y = 0.05): MAP-RPS's MAP (t0 = 0, stage 1 of
``iters`` steps at t1 = ``PHOTO_UNET_MAP_T1``), MAP-RPS at t0 = 100 from that MAP, and DPS (``lam = 1``, 100
steps) and VSRD (DPS with ``lam`` = 0.5 and 0), each method from a generator seeded by (task, method), so two
weight files see the same draws. Per-crop PSNRs are stored, so ``--compare`` gives PAIRED differences (new - old)
with their standard errors.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _analysis(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "analyses" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(weights):
    """``committed`` (the default: the eps network and its high-noise expert), ``committed-eps`` (the eps network
    alone) or a ``photo_unet32.pt`` (with the expert beside it, if any)."""
    from dptheory.images.backbones import load_photo_unet

    return load_photo_unet(None if weights in (None, "committed", "committed-eps") else weights,
                           experts=weights != "committed-eps")


def denoising(weights) -> dict:
    from dptheory.images.train import HELD_OUT, SCALES, PhotoCrops, denoising_mse

    tr = _analysis("photo_unet_training")
    den, schedule = _load(weights)
    n = tr.CONFIG[False]["n"]
    x0 = PhotoCrops(HELD_OUT, 32, SCALES).sample(n, torch.Generator().manual_seed(tr.SEED + 1))
    mse = denoising_mse({"network": den}, x0, schedule, tr.STEPS, torch.Generator().manual_seed(tr.SEED + 2),
                        progress=True)
    return {"steps": tr.STEPS, "mse": mse["network"], "n": n}


def restoration(weights, iters: int, n: int, t1=None, map_only: bool = False, zeta: float | None = None,
                dps_seeds=None, tasks=None) -> dict:
    """Per-crop PSNRs of every method on every task (``tasks``: a subset of the figure's). ``dps_seeds``: DPS only,
    once per generator seed (``seed + task index``), for paired comparisons over more draws."""
    from tqdm.auto import tqdm

    from dptheory.images.backbones.photo_unet import PHOTO_UNET_MAP_T1
    from dptheory.images.metrics import psnr
    from dptheory.images.operators import make_task
    from dptheory.images.problem import ImageInverseProblem, solve_image

    pu = _analysis("image_dp_photo_unet")
    zeta = pu.dps_zeta(100) if zeta is None else zeta
    if t1 is not None:  # the stage-1 noise index the figure's MAP-RPS reads (its module global)
        pu.PHOTO_UNET_MAP_T1 = t1
    den, schedule = _load(weights)
    x = pu.held_out_crops(n, pu.SEED)
    out = {}
    for k, task in enumerate(tqdm(pu.ALL_TASKS, desc="tasks")):
        if tasks and task not in tasks:
            continue
        gen = torch.Generator().manual_seed(pu.SEED + 101 * k)
        op, _ = make_task(task, tuple(x.shape[1:]), gen)
        problem = ImageInverseProblem(op, pu.SIGMA_Y)
        y = problem.measure(x, gen)
        row = {"A^+ y": psnr(problem.pinv(y), x).tolist()}
        if dps_seeds:
            for seed in dps_seeds:
                sol = solve_image(problem, y, "dps", den, schedule=schedule, steps=100, zeta=zeta,
                                  generator=torch.Generator().manual_seed(seed + k))
                row[f"dps seed={seed}"] = psnr(sol.x, x).tolist()
            out[task] = row
            continue
        cfg = {"t0s": [0] if map_only else [0, 100], "iters": iters}
        sweep = pu.map_rps_sweep(problem, y, den, schedule, cfg, torch.Generator().manual_seed(1000 + k))
        row["map (t0=0)"] = psnr(sweep[0].x, x).tolist()
        if not map_only:
            row["map-rps t0=100"] = psnr(sweep[100].x, x).tolist()
            for lam, name, seed in ((1.0, "dps", 2000), (0.5, "vsrd lam=0.5", 3000), (0.0, "vsrd lam=0", 4000)):
                sol = solve_image(problem, y, "dps", den, schedule=schedule,
                                  generator=torch.Generator().manual_seed(seed + k), lam=lam, steps=100,
                                  zeta=zeta)
                row[name] = psnr(sol.x, x).tolist()
        out[task] = row
    return {"tasks": out, "n": n, "iters": iters, "t1": pu.PHOTO_UNET_MAP_T1 if t1 is None else t1,
            "default_t1": PHOTO_UNET_MAP_T1, "dps_zeta": zeta}


def _mean_se(v) -> tuple[float, float]:
    t = torch.tensor(v, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(t))) if len(t) > 1 else 0.0


def compare(old: dict, new: dict) -> dict:
    """Paired differences new - old of the per-crop PSNRs, and the ratio new / old of the denoising MSEs."""
    rows = {}
    for task, methods in new["restoration"]["tasks"].items():
        for method, v in methods.items():
            if method not in old["restoration"]["tasks"][task]:
                continue
            o = old["restoration"]["tasks"][task][method]
            diff = [a - b for a, b in zip(v, o, strict=True)]
            rows[f"{task} {method}"] = {"old": _mean_se(o), "new": _mean_se(v), "new_minus_old": _mean_se(diff)}
    mse = [{"step": a[0], "old": a[1:], "new": b[1:], "ratio": b[1] / a[1]}
           for a, b in zip(old["denoising"]["mse"], new["denoising"]["mse"], strict=True)] \
        if old.get("denoising") and new.get("denoising") else []
    return {"old": old["weights"], "new": new["weights"], "psnr_db": rows, "denoising_mse": mse}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="a photo_unet32.pt (its .json log beside it, and its high-noise expert if "
                   "any), 'committed' (the default pair) or 'committed-eps' (the eps network alone)")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="two JSONs of this script")
    p.add_argument("--iters", type=int, default=150, help="MAP stage-1 steps (default 150, as the figure)")
    p.add_argument("--n", type=int, default=16, help="held-out crops for the restoration (default 16, as the figure)")
    p.add_argument("--t1", type=int, default=None, help="MAP stage-1 noise index (default PHOTO_UNET_MAP_T1)")
    p.add_argument("--zeta", type=float, default=None,
                   help="DPS and VSRD guidance step (default: the figure's, 3 at 32 px and 100 steps)")
    p.add_argument("--dps-seeds", nargs="+", type=int, help="DPS only, once per generator seed")
    p.add_argument("--tasks", nargs="+", help="a subset of the figure's tasks (default all four)")
    p.add_argument("--map-only", action="store_true", help="restoration: the MAP (t0 = 0) only")
    p.add_argument("--no-denoising", action="store_true", help="skip the denoising MSE")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.compare:
        res = compare(*(json.loads(Path(f).read_text()) for f in args.compare))
        for k, r in res["psnr_db"].items():
            print(f"{k:<34} old {r['old'][0]:6.2f}  new {r['new'][0]:6.2f}  new - old {r['new_minus_old'][0]:+.2f} "
                  f"+- {r['new_minus_old'][1]:.2f} dB")
        for r in res["denoising_mse"]:
            print(f"step {r['step']:>4}: old {r['old'][0]:.4g}  new {r['new'][0]:.4g}  ratio {r['ratio']:.3f}")
    else:
        weights = args.weights or "committed"
        t0 = time.perf_counter()
        res = {"weights": weights,
               "denoising": None if args.no_denoising else denoising(weights),
               "restoration": restoration(weights, args.iters, args.n, args.t1, args.map_only, args.zeta,
                                      args.dps_seeds, args.tasks),
               "threads": args.threads}
        res["seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
