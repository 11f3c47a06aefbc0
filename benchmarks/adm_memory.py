"""Peak CPU memory of the 256x256 ADM (DPS's ``ffhq_10m`` config, random weights, float32, batch 1).

Two measurements, each in a FRESH subprocess (so the peak resident set size of one does not leak into the other):

- ``forward``: one forward pass under ``torch.no_grad()`` (what a stage-1 MAP-RPS / RED-Diff iteration costs);
- ``dps``: one DPS step: forward with autograd through the network, ``x0_hat`` from the eps output, the
  unsquared residual norm of a 4x box-average SR operator, and ``torch.autograd.grad`` back to ``x_t``.

The worker records ``ru_maxrss`` (peak RSS, KiB on Linux) after building the model and after the operation; the
activation peak is the difference (the model weights are already resident before the operation). Parameter
memory is ``numel * 4`` bytes. ``tracemalloc`` does not see torch's allocator, so it is not used.

Usage::

    python benchmarks/adm_memory.py [--sizes 256 128 64] [--threads 2] [--out benchmarks/results/adm_memory.json]

On a GPU the same numbers come from ``torch.cuda.reset_peak_memory_stats()`` / ``torch.cuda.max_memory_allocated()``
around the operation (no GPU was used for the recorded results).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_now_mib() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # /proc fallback (Linux)
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker(mode: str, size: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from dptheory.images.backbones.adm import ADM_CONFIGS, build_adm

    torch.manual_seed(0)
    model = build_adm(**ADM_CONFIGS["ffhq_10m"]).float().eval().requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, size, size)
    t = torch.full((1,), 500, dtype=torch.long)
    ab = 0.05
    y = torch.nn.functional.avg_pool2d(torch.randn(1, 3, size, size), 4)
    import gc

    gc.collect()
    rss_before = _rss_now_mib()
    peak_before = _peak_mib()
    t0 = time.perf_counter()
    if mode == "forward":
        with torch.no_grad():
            out = model(x, t)
        assert torch.isfinite(out).all()
    else:
        xg = x.clone().requires_grad_(True)
        eps = model(xg, t)[:, :3]
        x0 = (xg - (1 - ab) ** 0.5 * eps) / ab**0.5
        loss = (y - torch.nn.functional.avg_pool2d(x0, 4)).flatten().norm()
        (grad,) = torch.autograd.grad(loss, xg)
        assert torch.isfinite(grad).all()
    seconds = time.perf_counter() - t0
    peak_after = _peak_mib()
    return dict(
        mode=mode,
        size=size,
        threads=threads,
        seconds=seconds,
        params=n_params,
        param_mib=n_params * 4 / 2**20,
        rss_before_op_mib=rss_before,
        peak_rss_before_op_mib=peak_before,
        peak_rss_after_op_mib=peak_after,
        op_peak_increase_mib=peak_after - max(rss_before, 0.0),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 128, 64])
    p.add_argument("--modes", nargs="+", default=["forward", "dps"], choices=["forward", "dps"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per subprocess")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adm_memory.json"))
    p.add_argument("--worker", nargs=2, metavar=("MODE", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.threads)))
        return
    rows = []
    for size in args.sizes:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--worker", mode, str(size), "--threads", str(args.threads)]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
            except subprocess.TimeoutExpired:
                rows.append(dict(mode=mode, size=size, error=f"timeout after {args.timeout} s"))
                print(rows[-1], flush=True)
                continue
            if res.returncode != 0:
                rows.append(dict(mode=mode, size=size, error=res.stderr[-2000:]))
            else:
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    try:
        load = list(__import__("os").getloadavg())
    except OSError:
        load = None
    result = dict(
        model="ADM ffhq_10m (build_adm(**ADM_CONFIGS['ffhq_10m'])), random weights, float32, batch 1, CPU",
        measure="ru_maxrss peak after the op minus RSS before it (fresh subprocess per row)",
        python=platform.python_version(),
        load_average=load,
        rows=rows,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
