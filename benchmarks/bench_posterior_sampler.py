"""Benchmark: the exact posterior sampler (docs/theory §3.3) against a plain per-step numpy/scipy reference.

Problem: a 2-D GMM prior with K = 8 components (means on a circle of radius 2, covariances rotated ellipses,
unequal weights), one linear measurement ``y = A x + N(0, sigma_y^2)`` with ``A = [[1, 0.5]]``,
``sigma_y = 0.4``, ``y = 0.9``. The posterior is an 8-component GMM with well-separated, unequally weighted
modes along the line ``x_1 + 0.5 x_2 = 0.9``.

Ours: :func:`dptheory.samplers.posterior` with :class:`~dptheory.ConditionalExactDenoiser`, every step of the
linear schedule (T = 1000), n = 10,000 particles, from the exact start ``x_T ~ p_T(. | y)``.

Reference: a straightforward numpy loop with the same math, written from docs/theory §3.2-3.3 only: the posterior
GMM by gain-form conditioning; then per step, the responsibilities of the diffused posterior components with
``scipy.stats.multivariate_normal.logpdf`` (one call per component) and log-sum-exp, a component draw by
inverse CDF, a Gaussian draw of ``x0 ~ N(mu_k + G_k (x_t - sqrt(ab) mu_k), C_k)`` (Cholesky), and the forward
posterior step ``x_s = c1 x0 + c2 x_t + sqrt(beta_tilde) z``. It uses its own numpy generator, so the check is
in distribution.

Checks (both run side by side in one process): the two outputs' means and covariances agree within 4
combined standard errors (empirical, since the law is a mixture), a two-sample KS test on a 1-D projection,
and a one-sample KS test of each against the exact projected posterior CDF (p > 1e-3 each, a 0.1% failure
rate per test under the null; seeds fixed).

Timing: wall (perf_counter) and CPU (process_time) of each sampler, the best of ``--repeat`` runs, and the
ratio reference / ours. The machine's load average is recorded, since a shared machine inflates wall times.

Profile: cProfile of one extra run of our sampler; the top functions by own time are written to the json.

Usage::

    python benchmarks/bench_posterior_sampler.py            # T = 1000, n = 10,000
    python benchmarks/bench_posterior_sampler.py --quick    # T = 1000 on a 100-step grid, n = 2,000

Writes ``benchmarks/results/posterior_sampler.json`` (parameters, seeds, times, checks and profile).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
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
sys.path.insert(0, str(ROOT))

from _machine import cpu_model, simd_flags  # noqa: E402  (benchmarks/ is the script's own folder)

import dptheory as dpt  # noqa: E402
from dptheory.samplers import posterior  # noqa: E402

SEED_TORCH, SEED_NUMPY = 20261124, 20261125
K, D = 8, 2
A_MAT, SIGMA_Y, Y_OBS = [[1.0, 0.5]], 0.4, [0.9]
PROJECTION = np.array([0.5, -1.0]) / math.sqrt(1.25)  # along the posterior's line of modes (A-orthogonal)


def prior_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (K,), means (K, 2), covariances (K, 2, 2): deterministic, no randomness."""
    angles = 2 * np.pi * np.arange(K) / K
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], -1)
    weights = np.arange(1, K + 1, dtype=float)
    weights /= weights.sum()
    covs = []
    for k, a in enumerate(angles):
        R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        covs.append(R @ np.diag([0.15 + 0.02 * k, 0.04 + 0.01 * k]) @ R.T)
    return weights, means, np.array(covs)


# ---------------------------------------------------------------------------------------------- reference
def np_posterior_gmm(weights, means, covs, A, sigma, y):
    """Exact posterior GMM (docs/theory §3.2) in numpy: weights ~ w_k N(y; A m_k, A S_k A^T + s^2 I), gain form."""
    A, y = np.asarray(A, float), np.asarray(y, float)
    log_w, mus, sigs = [], [], []
    for w, m, S in zip(weights, means, covs, strict=True):
        R = A @ S @ A.T + sigma**2 * np.eye(A.shape[0])
        G = np.linalg.solve(R, A @ S).T
        log_w.append(np.log(w) + stats.multivariate_normal(A @ m, R).logpdf(y))
        mus.append(m + G @ (y - A @ m))
        sigs.append(S - G @ A @ S)
    log_w = np.array(log_w)
    return np.exp(log_w - logsumexp(log_w)), np.array(mus), np.array(sigs)


def np_sample_gmm(n, weights, means, covs, rng):
    k = np.searchsorted(np.cumsum(weights), rng.random(n) * weights.sum()).clip(max=len(weights) - 1)
    L = np.linalg.cholesky(covs)
    return means[k] + np.einsum("nij,nj->ni", L[k], rng.standard_normal((n, means.shape[1])))


def reference_sampler(post, alpha_bars: np.ndarray, grid: list[int], n: int, rng) -> np.ndarray:
    """The per-step numpy loop (module docstring), from the exact start at grid[0]."""
    w, mus, sigs = post
    d = mus.shape[1]
    eye = np.eye(d)
    ab_T = alpha_bars[grid[0]]
    x = math.sqrt(ab_T) * np_sample_gmm(n, w, mus, sigs, rng) + math.sqrt(1 - ab_T) * rng.standard_normal((n, d))
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        ab_t, ab_s = alpha_bars[t], alpha_bars[s]
        beta = 1 - ab_t / ab_s
        c1 = math.sqrt(ab_s) * beta / (1 - ab_t)
        c2 = math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t)
        beta_tilde = beta * (1 - ab_s) / (1 - ab_t)
        # responsibilities under the diffused components N(sqrt(ab) mu_k, ab Sig_k + (1 - ab) I)
        log_r = np.stack(
            [
                np.log(w[k])
                + stats.multivariate_normal.logpdf(x, math.sqrt(ab_t) * mus[k], ab_t * sigs[k] + (1 - ab_t) * eye)
                for k in range(len(w))
            ],
            -1,
        )
        r = np.exp(log_r - logsumexp(log_r, axis=1, keepdims=True))
        u = rng.random((n, 1))
        k = (np.cumsum(r, axis=1) < u).sum(1).clip(max=len(w) - 1)  # inverse-CDF component draw
        # per-component posterior of x0 given x_t: N(mu_k + G_k (x - sqrt(ab) mu_k), C_k)
        G = np.stack([math.sqrt(ab_t) * S @ np.linalg.inv(ab_t * S + (1 - ab_t) * eye) for S in sigs])
        C = np.stack([S - math.sqrt(ab_t) * Gk @ S for S, Gk in zip(sigs, G, strict=True)])
        L = np.linalg.cholesky(C)
        mean = mus[k] + np.einsum("nij,nj->ni", G[k], x - math.sqrt(ab_t) * mus[k])
        x0 = mean + np.einsum("nij,nj->ni", L[k], rng.standard_normal((n, d)))
        x = c1 * x0 + c2 * x
        if beta_tilde > 0:
            x = x + math.sqrt(beta_tilde) * rng.standard_normal((n, d))
    return x


# ---------------------------------------------------------------------------------------------- ours
def ours_sampler(prob, y, schedule, steps, n, generator) -> torch.Tensor:
    """dptheory: exact start (as ``solve(..., start="exact")``) then ``posterior``."""
    den = dpt.ConditionalExactDenoiser(prob, y)
    ab_T = float(schedule.alpha_bar(schedule.T))
    x0 = den.sample_posterior(n, generator)
    x_T = math.sqrt(ab_T) * x0 + math.sqrt(1 - ab_T) * torch.randn(x0.shape, generator=generator)
    return posterior(den, x_T, schedule, steps=steps, generator=generator)


# ---------------------------------------------------------------------------------------------- checks
def compare(a: np.ndarray, b: np.ndarray, post) -> dict:
    """Two-sample moment checks (4 combined empirical SE) and KS tests on the 1-D projection."""
    n_a, n_b = len(a), len(b)
    se_mean = np.sqrt(a.var(0, ddof=1) / n_a + b.var(0, ddof=1) / n_b)

    def cov_se(x):
        c = x - x.mean(0)
        prods = c[:, :, None] * c[:, None, :]
        return np.cov(x.T), prods.var(0, ddof=1) / len(x)

    cov_a, var_a = cov_se(a)
    cov_b, var_b = cov_se(b)
    se_cov = np.sqrt(var_a + var_b)
    w, mus, sigs = post
    exact_mean = w @ mus
    exact_cov = np.einsum("k,kij->ij", w, sigs) + np.einsum("k,ki,kj->ij", w, mus - exact_mean, mus - exact_mean)
    proj_m, proj_s = mus @ PROJECTION, np.sqrt(np.einsum("i,kij,j->k", PROJECTION, sigs, PROJECTION))

    def cdf(t):
        return sum(wk * stats.norm.cdf(t, mk, sk) for wk, mk, sk in zip(w, proj_m, proj_s, strict=True))

    pa, pb = a @ PROJECTION, b @ PROJECTION
    out = {
        "exact_mean": exact_mean.tolist(),
        "exact_cov": exact_cov.tolist(),
        "ours_mean": a.mean(0).tolist(),
        "reference_mean": b.mean(0).tolist(),
        "mean_diff_in_se": ((a.mean(0) - b.mean(0)) / se_mean).tolist(),
        "ours_cov": cov_a.tolist(),
        "reference_cov": cov_b.tolist(),
        "cov_diff_in_se": ((cov_a - cov_b) / se_cov).tolist(),
        "ks_two_sample_p": float(stats.ks_2samp(pa, pb).pvalue),
        "ks_ours_vs_exact_p": float(stats.kstest(pa, cdf).pvalue),
        "ks_reference_vs_exact_p": float(stats.kstest(pb, cdf).pvalue),
    }
    out["agree"] = bool(
        np.all(np.abs(out["mean_diff_in_se"]) <= 4)
        and np.all(np.abs(out["cov_diff_in_se"]) <= 4)
        and min(out["ks_two_sample_p"], out["ks_ours_vs_exact_p"], out["ks_reference_vs_exact_p"]) > 1e-3
    )
    return out


def profile_ours(prob, y, schedule, steps, n, top: int = 15) -> dict:
    prof = cProfile.Profile()
    g = torch.Generator().manual_seed(SEED_TORCH + 1)
    prof.enable()
    ours_sampler(prob, y, schedule, steps, n, g)
    prof.disable()
    st = pstats.Stats(prof)
    total = st.total_tt
    rows = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in st.stats.items():
        where = f"{Path(file).name}:{line}({func})" if file != "~" else func
        rows.append({"function": where, "ncalls": ncalls, "tottime_s": tottime, "cumtime_s": cumtime})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    return {"total_s": total, "top_by_own_time": rows[:top], "pstats_text": text.getvalue()}


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100-step grid, n = 2000 (a smoke run)")
    parser.add_argument("--n", type=int, default=None, help="particles (default 10,000; quick 2,000)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each sampler; the best is kept")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "posterior_sampler.json")
    args = parser.parse_args(argv)

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.threads)
    n = args.n or (2000 if args.quick else 10_000)
    schedule = dpt.linear_schedule(1000)
    steps = 100 if args.quick else None  # None: every one of the T = 1000 steps
    grid = schedule.timesteps(steps)
    weights, means, covs = prior_params()
    prob = dpt.LinearInverseProblem(dpt.GaussianMixture(weights, means, covs), A_MAT, SIGMA_Y)
    y = torch.tensor(Y_OBS)
    post_np = np_posterior_gmm(weights, means, covs, A_MAT, SIGMA_Y, Y_OBS)
    post_lib = prob.posterior(y)
    assert np.allclose(post_lib.weights.numpy(), post_np[0], atol=1e-12)  # two posterior computations agree
    alpha_bars = schedule.alpha_bars.numpy()
    load_before = os.getloadavg()

    t_ours, t_ref, cpu_ours, cpu_ref = [], [], [], []
    for r in range(args.repeat):
        g = torch.Generator().manual_seed(SEED_TORCH + 17 * r)
        c0, w0 = time.process_time(), time.perf_counter()
        x_ours = ours_sampler(prob, y, schedule, steps, n, g).numpy()
        t_ours.append(time.perf_counter() - w0)
        cpu_ours.append(time.process_time() - c0)
        rng = np.random.default_rng(SEED_NUMPY + 17 * r)
        c0, w0 = time.process_time(), time.perf_counter()
        x_ref = reference_sampler(post_np, alpha_bars, grid, n, rng)
        t_ref.append(time.perf_counter() - w0)
        cpu_ref.append(time.process_time() - c0)
        print(f"run {r}: ours {t_ours[-1]:.2f} s wall / {cpu_ours[-1]:.2f} s cpu, "
              f"reference {t_ref[-1]:.2f} s wall / {cpu_ref[-1]:.2f} s cpu")  # fmt: skip

    checks = compare(x_ours, x_ref, post_np)
    result = {
        "benchmark": "posterior_sampler",
        "description": __doc__.splitlines()[0],
        "params": {
            "T": schedule.T,
            "reverse_steps": len(grid) - 1,
            "n": n,
            "K": K,
            "d": D,
            "A": A_MAT,
            "sigma_y": SIGMA_Y,
            "y": Y_OBS,
            "prior_weights": weights.tolist(),
            "prior_means": means.tolist(),
            "prior_covs": covs.tolist(),
            "quick": args.quick,
            "torch_threads": args.threads,
            "repeat": args.repeat,
            "seed_torch": SEED_TORCH,
            "seed_numpy": SEED_NUMPY,
        },  # fmt: skip
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "cpu_flags": simd_flags(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },  # fmt: skip
        "times_s": {
            "ours_wall": min(t_ours),
            "reference_wall": min(t_ref),
            "ours_cpu": min(cpu_ours),
            "reference_cpu": min(cpu_ref),
            "median_ours_wall": statistics.median(t_ours),
            "median_reference_wall": statistics.median(t_ref),
            "all_ours_wall": t_ours,
            "all_reference_wall": t_ref,
            "ours_per_step_ms": 1e3 * min(t_ours) / (len(grid) - 1),
            "reference_per_step_ms": 1e3 * min(t_ref) / (len(grid) - 1),
        },  # fmt: skip
        "ratio_reference_over_ours_wall": min(t_ref) / min(t_ours),
        "ratio_reference_over_ours_cpu": min(cpu_ref) / min(cpu_ours),
        "checks": checks,
    }
    if not args.no_profile:
        prof = profile_ours(prob, y, schedule, steps, n)
        result["profile_ours"] = {k: v for k, v in prof.items() if k != "pstats_text"}
        print(prof["pstats_text"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("times_s", "ratio_reference_over_ours_wall")}, indent=2))
    print("distribution checks:", "agree" if checks["agree"] else "DISAGREE", {
        k: checks[k] for k in ("mean_diff_in_se", "cov_diff_in_se", "ks_two_sample_p", "ks_ours_vs_exact_p",
                               "ks_reference_vs_exact_p")})  # fmt: skip
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    res = main()
    sys.exit(0 if res["checks"]["agree"] else 1)
