"""``dptheory restore`` quiet and next to one busy process, side by side.

    python benchmarks/bench_restore_load.py [--repeat 2] [--threads auto 2] [--crop 192,192,64,64] [--steps 100]

Each round runs the same restore command (a fresh ``python -m dptheory restore`` subprocess, ``--json``) once
without and once with a BUSY process (a pure-Python spin loop pinned to no core, started 2 s before and killed
after), for each ``--threads`` setting, alternating so slow drifts of the machine's load hit both alike. The
ratio loaded / quiet of the median wall times is the result: under one busy process it must stay within 2x
(``auto`` picks one thread for a 64 px image; ``2`` shows what a fixed 2-thread OpenMP pool does). Results go to
``benchmarks/results/restore_load.json`` with the load average before each run (the machine may be shared: the
"quiet" runs are quiet only with respect to the added busy process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIN = "import time\nwhile True:\n    pass\n"


def _restore(args, threads: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "dptheory", "restore", "--task", "sr4", "--crop", args.crop, "--steps",
           str(args.steps), "--threads", threads, "--out", str(out), "--json", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)  # let --threads decide, as a user's shell would
    load = os.getloadavg()[0]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t
    rep = json.loads(res.stdout[res.stdout.index("{"):])
    return {"wall_s": wall, "solve_s": rep["solve_seconds"], "threads": rep["threads"], "psnr": rep["psnr"],
            "load_avg_before": load}


def _settle(below: float, limit: float = 300.0) -> float:
    """Wait until the 1-minute load average is below ``below`` (at most ``limit`` s); the seconds waited."""
    start = time.perf_counter()
    while below > 0 and os.getloadavg()[0] >= below and time.perf_counter() - start < limit:
        time.sleep(5.0)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=2, help="rounds (default 2)")
    p.add_argument("--threads", nargs="+", default=["auto", "2"], help="--threads settings (default auto 2)")
    p.add_argument("--crop", default="192,192,64,64", help="restore box (default a 64 px box of the astronaut)")
    p.add_argument("--steps", type=int, default=100, help="MAP-RPS stage-1 iterations (default 100)")
    p.add_argument("--settle", type=float, default=0.0, metavar="LOAD",
                   help="before each quiet run, wait (up to 5 min) until the 1-minute load average is below LOAD, "
                   "so that --threads auto, which reads it, sees the machine quiet (default 0: do not wait)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "restore_load.json"))
    args = p.parse_args(argv)
    tmp = Path("/tmp") / f"bench_restore_load_{os.getpid()}"
    runs: dict = {th: {"quiet": [], "busy": []} for th in args.threads}
    for r in range(args.repeat):
        for th in args.threads:
            waited = _settle(args.settle)
            runs[th]["quiet"].append({**_restore(args, th, tmp), "settle_wait_s": waited})
            spin = subprocess.Popen([sys.executable, "-c", SPIN])
            try:
                time.sleep(2.0)
                runs[th]["busy"].append(_restore(args, th, tmp))
            finally:
                spin.kill()
                spin.wait()
            print(f"round {r + 1}/{args.repeat} threads={th}: quiet {runs[th]['quiet'][-1]['wall_s']:.1f} s, "
                  f"busy {runs[th]['busy'][-1]['wall_s']:.1f} s", file=sys.stderr)
    summary = {}
    for th, d in runs.items():
        q = statistics.median(x["solve_s"] for x in d["quiet"])
        b = statistics.median(x["solve_s"] for x in d["busy"])
        summary[th] = {"quiet_solve_s": q, "busy_solve_s": b, "ratio": b / q,
                       "threads_used": sorted({x["threads"] for x in d["quiet"] + d["busy"]})}
    record = {"command": f"dptheory restore --task sr4 --crop {args.crop} --steps {args.steps} --threads T",
              "settle_below_load": args.settle,
              "cpus": os.cpu_count(), "repeat": args.repeat, "summary": summary, "runs": runs,
              "note": "solve_s is the solve's wall time (restore.json solve_seconds); wall_s includes start-up"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    for th, s in summary.items():
        print(f"threads={th} (used {s['threads_used']}): quiet {s['quiet_solve_s']:.1f} s, next to a busy process "
              f"{s['busy_solve_s']:.1f} s, ratio {s['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
