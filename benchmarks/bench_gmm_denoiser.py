"""Time the GMM score + Tweedie denoiser against a plain scipy reference and the machine's dgemm floor.

``GaussianMixture.score_and_denoise(x_t, alpha_bar)`` for n points (default 100,000), K = 16 components,
d = 64, float64, alpha_bar = 0.5, side by side in ONE run with

- reference: numpy float64, a loop over the components with ``scipy.stats.multivariate_normal.logpdf``
  (responsibilities, by log-sum-exp) and ``np.linalg.solve`` (``S_{k,t}^{-1} (x - c_k)``, which gives the
  score term and the posterior mean ``m_k + sqrt(ab) S_k S_{k,t}^{-1} (x - c_k)``). Its output is checked
  against dptheory's (max abs difference printed; relative difference asserted below 1e-8);
- dgemm floor: torch float64 matmul with exactly our nominal flop count 6 n K d^2, in two forms:
  "chunked" (the same two GEMM shapes per chunk as the fast path, ``(m, d) @ (d, K d)`` then
  ``(m, K d) @ (K d, 2 d)``, into preallocated outputs) and "square" (one square-ish GEMM of the same
  flops into a preallocated output, its time scaled by 6 n K d^2 / its exact flops). The floor is the faster
  of the two.

The three are timed in interleaved rounds (ours, floors, then the reference in the first rounds) so that
they see the same machine conditions; the reported statistic is the BEST of the rounds (medians are
printed and stored too). torch and the numpy BLAS both use as many threads as there are cores available.
The JSON result goes to ``benchmarks/results/gmm_denoiser.json`` (``gmm_denoiser_quick.json`` with
``--quick``), with the load average at the start and end: on a shared machine other processes make every
OpenMP barrier wait (one busy process made the square GEMM 5x and ours 5x slower here), so only runs on an
idle machine give meaningful numbers.

Run from the repository root:

    .venv/bin/python benchmarks/bench_gmm_denoiser.py            # full run, n = 100,000
    .venv/bin/python benchmarks/bench_gmm_denoiser.py --quick    # smoke run, n = 5,000
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import torch
from scipy import stats
from scipy.special import logsumexp

ROOT = Path(__file__).resolve().parents[1]
try:
    import dptheory as dpt
except ModuleNotFoundError:  # run from a checkout without an install
    sys.path.insert(0, str(ROOT))
    import dptheory as dpt
from _machine import simd_flags  # noqa: E402  (benchmarks/ is the script's own folder)

_mixture = importlib.import_module("dptheory.mixture")  # the module whose _CHUNK_ELEMENTS the fast path uses

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ModuleNotFoundError:  # optional: without it numpy's BLAS keeps its own default thread count
    threadpool_info = threadpool_limits = None

TARGET_SPEEDUP = 8.0  # reference / ours, at least
TARGET_FLOOR_RATIO = 1.3  # ours / floor, at most
REL_TOL = 1e-8  # agreement with the reference, relative to the largest output entry
AVX2_ENV = {  # the code paths an AVX2-only x86 CPU takes, forced on a CPU that also has AVX-512
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's dispatch (torch's GEMMs)
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's vectorised elementwise kernels
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's OpenBLAS (the reference)
}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_problem(n: int, K: int, d: int, alpha_bar: float, seed: int):
    """A seeded GMM with random well-conditioned SPD covariances and n points drawn from the diffused law."""
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    weights = torch.rand(K, generator=g, dtype=f64) + 0.5
    weights = weights / weights.sum()
    means = torch.randn(K, d, generator=g, dtype=f64)
    Q, _ = torch.linalg.qr(torch.randn(K, d, d, generator=g, dtype=f64))
    evals = 0.25 + 0.75 * torch.rand(K, d, generator=g, dtype=f64)  # spectrum in [0.25, 1]: condition <= 4
    covs = (Q * evals.unsqueeze(-2)) @ Q.mT
    covs = 0.5 * (covs + covs.mT)
    gmm = dpt.GaussianMixture(weights, means, covs)
    x0 = gmm.sample(n, generator=g)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1.0 - alpha_bar) * torch.randn(n, d, generator=g, dtype=f64)
    return gmm, x_t


def reference_score_and_denoise(weights, means, covs, x, alpha_bar):
    """Plain numpy/scipy float64: a loop over components with multivariate_normal and np.linalg.solve."""
    n, d = x.shape
    K = len(weights)
    sab = math.sqrt(alpha_bar)
    eye = np.eye(d)
    log_joint = np.empty((n, K))
    for k in range(K):
        S_t = alpha_bar * covs[k] + (1.0 - alpha_bar) * eye
        log_joint[:, k] = np.log(weights[k]) + stats.multivariate_normal(sab * means[k], S_t).logpdf(x)
    gamma = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    score = np.zeros((n, d))
    den = np.zeros((n, d))
    for k in range(K):
        S_t = alpha_bar * covs[k] + (1.0 - alpha_bar) * eye
        z = np.linalg.solve(S_t, (x - sab * means[k]).T).T  # S_{k,t}^{-1} (x - c_k), (n, d)
        mu = means[k] + sab * z @ covs[k]  # posterior mean of component k (S_k symmetric)
        g = gamma[:, k : k + 1]
        score -= g * z
        den += g * mu
    return score, den


def gemm_chunked(n: int, K: int, d: int, chunk: int):
    """The fast path's two GEMM shapes per chunk into preallocated outputs: exactly 6 n K d^2 flops."""
    f64 = torch.float64
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=g, dtype=f64)
    V = torch.randn(d, K * d, generator=g, dtype=f64)
    B_t = torch.randn(2 * d, K * d, generator=g, dtype=f64)
    U = torch.empty(chunk, K * d, dtype=f64)
    out_t = torch.empty(2 * d, chunk, dtype=f64)

    def run():  # the back-projection transposed, as the fast path runs it: (2 d, K d) @ (K d, m)
        for start in range(0, n, chunk):
            m = min(start + chunk, n) - start
            torch.mm(x[start : start + m], V, out=U[:m])
            torch.mm(B_t, U[:m].t(), out=out_t[:, :m])

    return run, 6.0 * n * K * d * d


def gemm_square(flops: float):
    """One square-ish (s x s) @ (s x t) GEMM with 2 s^2 t as close as possible to ``flops``."""
    s = max(1, round((flops / 2.0) ** (1.0 / 3.0)))
    t = max(1, round(flops / (2.0 * s * s)))
    g = torch.Generator().manual_seed(2)
    a = torch.randn(s, s, generator=g, dtype=torch.float64)
    b = torch.randn(s, t, generator=g, dtype=torch.float64)
    c = torch.empty(s, t, dtype=torch.float64)
    return (lambda: torch.mm(a, b, out=c)), 2.0 * s * s * t, (s, s, t)


def output_first_touch(n: int, d: int):
    """Two fresh ``(n, d)`` float64 tensors written once, as the fast path's outputs are, and the same write
    into reused ones: the difference is the page-fault (first-touch) cost that the floor does not pay."""
    reused = [torch.empty(n, d, dtype=torch.float64) for _ in range(2)]

    def fresh():
        for t in (torch.empty(n, d, dtype=torch.float64), torch.empty(n, d, dtype=torch.float64)):
            t.fill_(1.0)

    def again():
        for t in reused:
            t.fill_(1.0)

    return fresh, again


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def machine_info(threads: int) -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores_available": available_cores(),
        "os_cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "niceness": os.nice(0) if hasattr(os, "nice") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch_blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": simd_flags(),
        "isa_env": {k: os.environ.get(k) for k in AVX2_ENV},  # set: an AVX2-only CPU emulated (--emulate-avx2)
    }
    if threadpool_info is not None:
        info["numpy_blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: n = 5,000 and fewer repeats")
    parser.add_argument("--n", type=int, default=None, help="number of points (default 100,000; 5,000 quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds for ours and the floor (9)")
    parser.add_argument("--ref-repeats", type=int, default=None, help="timed rounds for the reference (3)")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    parser.add_argument("--threads", type=int, default=None, help="torch and BLAS threads (default: all cores)")
    parser.add_argument("--chunk-elements", type=int, default=None,
                        help="override dptheory.mixture._CHUNK_ELEMENTS (points per chunk = this / (K d))")
    parser.add_argument("--emulate-avx2", action="store_true",
                        help="run as on an AVX2-only CPU: re-execute with MKL, ATen and OpenBLAS limited to AVX2 "
                        "kernels (AVX2_ENV; they must be set before torch loads); default JSON gmm_denoiser_avx2.json")
    args = parser.parse_args(argv)
    if args.emulate_avx2 and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})
    if args.emulate_avx2 and torch.backends.cpu.get_cpu_capability() != "AVX2":
        raise SystemExit(f"--emulate-avx2: torch reports {torch.backends.cpu.get_cpu_capability()}, not AVX2")

    n = args.n or (5_000 if args.quick else 100_000)
    repeats = args.repeats or (3 if args.quick else 9)
    ref_repeats = min(repeats, args.ref_repeats or (1 if args.quick else 3))
    K, d, alpha_bar = 16, 64, 0.5
    stem = "gmm_denoiser_quick" if args.quick else "gmm_denoiser_avx2" if args.emulate_avx2 else "gmm_denoiser"
    out_path = args.out or ROOT / "benchmarks" / "results" / f"{stem}.json"

    if args.chunk_elements:
        _mixture._CHUNK_ELEMENTS = args.chunk_elements
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    if threadpool_limits is not None:
        threadpool_limits(limits=threads, user_api="blas")

    gmm, x_t = make_problem(n, K, d, alpha_bar, args.seed)
    w_np, m_np, c_np, x_np = (t.numpy() for t in (gmm.weights, gmm.means, gmm.covs, x_t))
    flops = 6.0 * n * K * d * d  # the algorithm's nominal count: two GEMMs, 2 n K d^2 + 4 n K d^2
    chunk = max(1, min(n, _mixture._CHUNK_ELEMENTS // (K * d)))
    floor_chunked, chunked_flops = gemm_chunked(n, K, d, chunk)
    floor_square, square_flops, square_shape = gemm_square(flops)
    outputs_fresh, outputs_reused = output_first_touch(n, d)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    def ours():
        return gmm.score_and_denoise(x_t, alpha_bar)

    def reference():
        return reference_score_and_denoise(w_np, m_np, c_np, x_np, alpha_bar)

    print(
        f"GMM score + denoiser: n={n:,} K={K} d={d} float64 alpha_bar={alpha_bar}, {threads} threads, "
        f"chunk={chunk} points ({_mixture._CHUNK_ELEMENTS} elements), {repeats} rounds",
        flush=True,
    )

    # warm-up (first-call costs: thread pools, allocator, eigendecomposition already cached at construction)
    score, den = ours()
    floor_chunked()
    floor_square()
    outputs_fresh()
    outputs_reused()

    times = {"ours": [], "reference": [], "floor_chunked": [], "floor_square": []}
    touch = {"fresh": [], "reused": []}
    ref_out = None
    for r in range(repeats):
        times["ours"].append(timed(ours)[0])
        times["floor_chunked"].append(timed(floor_chunked)[0])
        times["floor_square"].append(timed(floor_square)[0] * flops / square_flops)  # scaled to our flops
        touch["fresh"].append(timed(outputs_fresh)[0])
        touch["reused"].append(timed(outputs_reused)[0])
        if r < ref_repeats:
            dt, ref_out = timed(reference)
            times["reference"].append(dt)
        print(
            f"  round {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items() if v), flush=True
        )

    # agreement with the reference
    ref_score, ref_den = ref_out
    diff_score = float(np.abs(score.numpy() - ref_score).max())
    diff_den = float(np.abs(den.numpy() - ref_den).max())
    rel_score = diff_score / float(np.abs(ref_score).max())
    rel_den = diff_den / float(np.abs(ref_den).max())
    print(
        f"agreement with the reference: max|score diff| = {diff_score:.2e} (relative {rel_score:.2e}), "
        f"max|denoiser diff| = {diff_den:.2e} (relative {rel_den:.2e})"
    )
    assert rel_score < REL_TOL and rel_den < REL_TOL, "dptheory disagrees with the scipy reference"

    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    floor_key = min(("floor_chunked", "floor_square"), key=best.__getitem__)
    t_floor = best[floor_key]
    speedup = best["reference"] / best["ours"]
    floor_ratio = best["ours"] / t_floor
    gflops = {k: flops / best[k] / 1e9 for k in ("ours", "floor_chunked", "floor_square")}

    print(f"\nbest of {repeats} rounds ({ref_repeats} for the reference); median in brackets")
    print(f"  {'':<34}{'time [s]':>18}{'GFLOP/s':>10}")
    rows = [
        ("dptheory score_and_denoise", "ours"),
        ("reference (scipy loop over K)", "reference"),
        ("dgemm floor, chunked (same shapes)", "floor_chunked"),
        (f"dgemm floor, square {square_shape[0]}x{square_shape[1]}x{square_shape[2]}", "floor_square"),
    ]
    for label, k in rows:
        rate = f"{gflops[k]:10.1f}" if k in gflops else f"{'-':>10}"
        print(f"  {label:<34}{best[k]:>8.3f} ({median[k]:.3f}){rate}")
    ok_speedup = speedup >= TARGET_SPEEDUP
    ok_floor = floor_ratio <= TARGET_FLOOR_RATIO
    first_touch = max(0.0, min(touch["fresh"]) - min(touch["reused"]))
    print(f"  nominal flops 6 n K d^2 = {flops / 1e9:.2f} GFLOP per call (the floor's times are for this count)")
    print(f"  of ours, first touch of the two fresh ({n:,}, {d}) outputs ~ {first_touch:.3f} s (not in the floor)")
    print(f"reference / ours = {speedup:.1f}x (target >= {TARGET_SPEEDUP:g}x: {'met' if ok_speedup else 'MISSED'})")
    print(
        f"ours / floor     = {floor_ratio:.2f}x (floor = {floor_key}; target <= {TARGET_FLOOR_RATIO:g}x: "
        f"{'met' if ok_floor else 'MISSED'})"
    )

    result = {
        "benchmark": "GaussianMixture.score_and_denoise",
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {
            "n": n,
            "K": K,
            "d": d,
            "dtype": "float64",
            "alpha_bar": alpha_bar,
            "seed": args.seed,
            "repeats": repeats,
            "ref_repeats": ref_repeats,
            "chunk_points": chunk,
            "chunk_elements": _mixture._CHUNK_ELEMENTS,
            "statistic": "best of rounds (min)",
            "square_gemm_shape": list(square_shape),
            "square_gemm_flops": square_flops,
            "chunked_gemm_flops": chunked_flops,
        },
        "machine": machine_info(threads),
        "flops_per_call": flops,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "output_first_touch_s": {
            "fresh_best": min(touch["fresh"]),
            "reused_best": min(touch["reused"]),
            "difference": first_touch,
        },
        "best_s": best,
        "median_s": median,
        "all_s": times,
        "gflops": gflops,
        "floor": floor_key,
        "ratios": {
            "reference_over_ours": speedup,
            "ours_over_floor": floor_ratio,
            "reference_over_ours_median": median["reference"] / median["ours"],
            "ours_over_floor_median": median["ours"] / median[floor_key],
        },
        "targets": {
            "reference_over_ours_min": TARGET_SPEEDUP,
            "ours_over_floor_max": TARGET_FLOOR_RATIO,
            "met": bool(ok_speedup and ok_floor),
        },
        "agreement": {
            "max_abs_diff_score": diff_score,
            "max_abs_diff_denoiser": diff_den,
            "rel_diff_score": rel_score,
            "rel_diff_denoiser": rel_den,
            "rel_tol": REL_TOL,
        },
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
