"""Benchmark: the same 32-cell ``dptheory sweep`` grid run serially in one process and on a local Ray, side by side.

Grid: B1 (the 1-D bimodal prior, sigma_y = 0.5, y = -0.6; Monte Carlo cells) x VSRD at 8 values of ``lam`` x 4 seeds,
``steps = 100``, ``n = 1000`` samples per cell: 32 independent cells of about 0.6 s each on one core. Both runs
use :func:`dptheory.sweep.run_sweep` with one torch thread per cell; the serial run goes first (one cell is run
before its timer, to pay the imports). Ray is started with ``--num-cpus`` CPUs and each worker
runs one warm-up cell before the timer (start-up and warm-up times are reported separately, and in a second
ratio). Rows must agree: the same cells give the same numbers.

    python benchmarks/bench_sweep.py [--num-cpus 2] [--cells 32]

Writes ``benchmarks/results/sweep.json`` with both wall times, the ratio, the Ray start-up time and the load
average before and after (the development machine is shared, so the load is part of the result).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAMS = [0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0]


def grid(n_cells: int) -> dict:
    seeds = list(range(max(1, n_cells // len(LAMS))))
    return {"name": "bench", "grid": {"problem": ["B1"], "method": ["vsrd"], "seed": seeds,
                                      "knobs": {"vsrd": {"lam": LAMS}}},
            "fixed": {"n": 1000, "knobs": {"vsrd": {"steps": 100}}}}


def _warm(cell):
    """A Ray warm-up task: import everything a cell needs and run one (the worker then stays up)."""
    from dptheory import sweep

    time.sleep(1.0)  # long enough that the scheduler gives each warm-up its own worker
    return sweep.run_cell(cell)["status"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--cells", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/sweep.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from dptheory import sweep

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        serial_spec = sweep.spec_from_dict(grid(args.cells), base=tmp, stem="serial")
        ray_spec = sweep.spec_from_dict(grid(args.cells), base=tmp, stem="ray")
        n = len(sweep.expand_cells(serial_spec))

        warm_cell = sweep.expand_cells(sweep.spec_from_dict(grid(1), base=tmp, stem="warm"))[0]
        t = time.perf_counter()
        sweep.run_cell(warm_cell)  # imports and first-call costs, outside the timer (as for the Ray workers)
        serial_warmup_s = time.perf_counter() - t
        t = time.perf_counter()
        sweep.run_sweep(serial_spec, serial=True, progress=False)
        serial_s = time.perf_counter() - t

        t = time.perf_counter()
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_start_s = time.perf_counter() - t
        t = time.perf_counter()
        warm = ray.remote(num_cpus=1)(_warm)
        ray.get([warm.remote(warm_cell) for _ in range(args.num_cpus)])  # one warm-up cell per worker
        ray_warmup_s = time.perf_counter() - t
        t = time.perf_counter()
        sweep.run_sweep(ray_spec, progress=False)
        ray_s = time.perf_counter() - t
        ray.shutdown()

        a = {r["cell_id"]: r for r in sweep.read_results(serial_spec.out)}
        b = {r["cell_id"]: r for r in sweep.read_results(ray_spec.out)}
        same = a.keys() == b.keys() and all(a[k]["D_y"] == b[k]["D_y"] for k in a)
        failed = sum(r["status"] != "ok" for r in list(a.values()) + list(b.values()))
        cell_s = sorted(r["seconds"] for r in a.values())
    load_after = os.getloadavg()
    result = {
        "benchmark": "dptheory sweep: serial vs local Ray",
        "cells": n, "num_cpus": args.num_cpus,
        "serial_wall_s": round(serial_s, 2), "ray_wall_s": round(ray_s, 2), "ray_start_s": round(ray_start_s, 2),
        "serial_warmup_s": round(serial_warmup_s, 2), "ray_warmup_s": round(ray_warmup_s, 2),
        "ratio_serial_over_ray": round(serial_s / ray_s, 2),
        "ratio_including_start_and_warmup": round((serial_s + serial_warmup_s)
                                                  / (ray_s + ray_start_s + ray_warmup_s), 2),
        "median_cell_s_serial": round(cell_s[len(cell_s) // 2], 3),
        "rows_agree": same, "failed_rows": failed,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if same and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
