"""Choose DPS's guidance step ``zeta`` for the photo UNet on crops of its TRAINING photos; check it on held-out crops.

    python benchmarks/bench_photo_unet_dps_zeta.py sweep --tasks sr4 inpaint-box ... --out /tmp/z1.json
    python benchmarks/bench_photo_unet_dps_zeta.py sweep --tasks cs denoise ... --out /tmp/z2.json
    python benchmarks/bench_photo_unet_dps_zeta.py native --size 64 --zetas 1 3 6 12 24 48 --out /tmp/n64.json
    python benchmarks/bench_photo_unet_dps_zeta.py native --size 128 --zetas 1 3 6 12 24 48 --out /tmp/n128.json
    python benchmarks/bench_photo_unet_dps_zeta.py combine /tmp/z1.json /tmp/z2.json --native /tmp/n64.json \\
        /tmp/n128.json --out benchmarks/results/photo_unet_dps_zeta.json

DPS (Chung et al. 2023, Alg. 1, the unsquared norm: ``x_{t-1} <- x'_{t-1} - zeta grad_{x_t} ||y - A x0_hat(x_t)||``;
the paper's ``zeta' / ||y - A x0_hat||`` on the squared norm is ``zeta = 2 zeta'``) with the default photo
UNet (the eps network and its high-noise v expert), 100 respaced steps, one particle per crop. Validation crops:
``n`` 32 x 32 crops of :func:`~dptheory.images.train.training_photos` (the held-out astronaut and coffee are never
looked at, so the choice does not see the test crops of ``analyses/image_dp_photo_unet.py``), each task's operator,
``sigma_y`` and noise from a generator seeded by the task. The chosen step is the grid point of highest mean PSNR.
Per-crop PSNRs are stored, so ``combine`` reports each zeta's paired difference to the chosen one with its SE.
``native`` checks the size and step scaling of :func:`~dptheory.images.backbones.photo_unet.photo_unet_dps_zeta`:
``dptheory restore --task sr4 --method dps --steps 50`` on square boxes of three training photos.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ZETAS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
SEED = 20261203
SIZE = 32
SCALES = (64, 96, 128, 192)  # the resize range of the figure's test crops
STEPS = 100


def _mean_se(v) -> tuple[float, float]:
    """Mean and SE over crops of a list of per-crop values (:meth:`dptheory.estimate.Estimate.from_samples`)."""
    from dptheory.estimate import Estimate

    return Estimate.from_samples(torch.tensor(v, dtype=torch.float64)).as_pair()


def sweep(tasks, zetas, n: int, experts: bool = True) -> dict:
    from tqdm.auto import tqdm

    from dptheory.images.backbones import load_photo_unet
    from dptheory.images.metrics import psnr, swd
    from dptheory.images.operators import TASKS, make_task
    from dptheory.images.problem import ImageInverseProblem, solve_image
    from dptheory.images.train import PhotoCrops, training_photos

    den, schedule = load_photo_unet(experts=experts)
    x = PhotoCrops(training_photos(), SIZE, SCALES).sample(n, torch.Generator().manual_seed(SEED))
    out = {}
    with tqdm(total=len(tasks) * len(zetas), desc="dps zeta", unit="run") as bar:
        for task in tasks:
            k = sorted(TASKS).index(task)
            gen = torch.Generator().manual_seed(SEED + 101 * k)
            op, sigma_y = make_task(task, tuple(x.shape[1:]), gen)
            problem = ImageInverseProblem(op, sigma_y)
            y = problem.measure(x, gen)
            row = {"sigma_y": sigma_y, "A^+ y": psnr(problem.pinv(y), x).tolist(), "zeta": {}}
            for zeta in zetas:
                t0 = time.perf_counter()
                sol = solve_image(problem, y, "dps", den, schedule=schedule, steps=STEPS, zeta=zeta,
                                  generator=torch.Generator().manual_seed(SEED + 1000 + k))
                ok = bool(torch.isfinite(sol.x).all())
                row["zeta"][f"{zeta:g}"] = {
                    "psnr_db": psnr(sol.x, x).tolist() if ok else None,
                    "swd": float(swd(sol.x, x, generator=torch.Generator().manual_seed(1), patches_per_image=32,
                                     n_projections=256)) if ok else None,
                    "seconds": time.perf_counter() - t0}
                bar.update(1)
            out[task] = row
    return {"tasks": out, "n": n, "steps": STEPS, "experts": experts, "seed": SEED}


NATIVE_BOXES = (("skimage:chelsea", 60, 150), ("sklearn:china.jpg", 150, 200),
                ("matplotlib:grace_hopper.jpg", 150, 150))
"""(photo, top, left) of the ``native`` boxes: training photos, so the check never sees the held-out ones."""


def native(size: int, steps: int, zetas) -> dict:
    import contextlib
    import io
    import tempfile

    from dptheory.cli import restore_main
    from dptheory.images.backbones.photo_unet import photo_unet_dps_zeta

    out = {}
    for photo, top, left in NATIVE_BOXES:
        for zeta in zetas:
            buf = io.StringIO()
            with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(buf):
                code = restore_main(["--task", "sr4", "--image", photo, "--crop", f"{top},{left},{size},{size}",
                                     "--method", "dps", "--zeta", str(zeta), "--steps", str(steps), "--json",
                                     "--no-progress", "--out", tmp])
            r = json.loads(buf.getvalue()) if code == 0 else None
            out.setdefault(photo, {})[f"{zeta:g}"] = None if r is None else {
                k: r[k] for k in ("psnr", "ssim", "psnr_baseline", "psnr_bicubic", "seconds")}
            print(photo, zeta, out[photo][f"{zeta:g}"], flush=True)
    return {"size": size, "steps": steps, "zetas": list(zetas), "boxes": NATIVE_BOXES, "results": out,
            "photo_unet_dps_zeta": photo_unet_dps_zeta(size, size, steps)}


def combine(parts: list[dict], natives: list[dict] = ()) -> dict:
    tasks = {}
    for p in parts:
        tasks.update(p["tasks"])
    table = {}
    for task, row in tasks.items():
        ok = {z: r["psnr_db"] for z, r in row["zeta"].items() if r["psnr_db"] is not None}
        best = max(ok, key=lambda z: _mean_se(ok[z])[0])
        table[task] = {
            "chosen_zeta": float(best), "A^+ y": _mean_se(row["A^+ y"]),
            "psnr_db": {z: _mean_se(v) for z, v in ok.items()},
            "minus_chosen_db": {z: _mean_se([a - b for a, b in zip(v, ok[best], strict=True)]) for z, v in ok.items()},
            "swd": {z: r["swd"] for z, r in row["zeta"].items()},
            "diverged": [z for z, r in row["zeta"].items() if r["psnr_db"] is None]}
    return {"what": __doc__.splitlines()[0], "n": parts[0]["n"], "steps": parts[0]["steps"], "seed": parts[0]["seed"],
            "tasks": table, "native": list(natives), "raw": tasks}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sweep", help="PSNR and SWD of DPS over the zeta grid, on validation crops")
    s.add_argument("--tasks", nargs="+", required=True)
    s.add_argument("--zetas", nargs="+", type=float, default=list(ZETAS))
    s.add_argument("--n", type=int, default=16, help="validation crops (default 16, as the figure)")
    s.add_argument("--eps-only", action="store_true", help="the eps network alone, without the high-noise expert")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", type=Path, required=True)
    nat = sub.add_parser("native", help="restore --method dps on training-photo boxes over a zeta grid")
    nat.add_argument("--size", type=int, required=True)
    nat.add_argument("--steps", type=int, default=50)
    nat.add_argument("--zetas", nargs="+", type=float, required=True)
    nat.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("combine", help="merge sweeps and choose each task's zeta")
    c.add_argument("parts", nargs="+", type=Path)
    c.add_argument("--native", nargs="*", type=Path, default=[])
    c.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.cmd == "sweep":
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        res = sweep(args.tasks, args.zetas, args.n, experts=not args.eps_only)
        res["seconds"] = time.perf_counter() - t0
    elif args.cmd == "native":
        res = native(args.size, args.steps, args.zetas)
    else:
        res = combine([json.loads(f.read_text()) for f in args.parts],
                      [json.loads(f.read_text()) for f in args.native])
        for task, r in res["tasks"].items():
            curve = "  ".join(f"{z}: {m:.2f}" for z, (m, _) in r["psnr_db"].items())
            print(f"{task:<15} A^+y {r['A^+ y'][0]:.2f} | {curve} | zeta* {r['chosen_zeta']:g}")
    from dptheory._atomic import write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(res, indent=1) + "\n")  # a temporary file renamed into place
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
