"""Figure ``ddpm_order``: the discretisation order of DDPM ancestral sampling with the exact denoiser (error ~ 1/T).

Claims: FND-6 (DDPM with ``sigma_t^2 = beta_tilde``, "fixedsmall", under-disperses by O(1/T)), WANG-2 (VSRD's
end covariance is lam Sigma; the "DDPM with scaled noise" kernel, variant A, is off by O(1/T)).

1-D Gaussian data N(0, Sigma), Sigma in {1e-3, 1e-2, 0.1, 1}; DDPM with the exact prior denoiser, started from
N(0, 1), on the linear schedule with T in {250, 500, 1000, 2000, 4000} steps (``dpt.linear_schedule(T)`` rescales
the betas by 1000/T, so the end noise level stays comparable). The plotted error is the relative error of the end
variance, ``Var[x_0] / Sigma - 1``, computed EXACTLY by the law recursion of :mod:`dptheory.sampler_laws`
(``sampler_law(problem, "ddpm", y=[0], conditional=False, schedule=linear_schedule(T))``, the same call as the
claim FND-6), and checked against an independent scalar recursion written here,
``v <- (c1 K_t + c2)^2 v + sigma_t^2`` with ``K_t = sqrt(ab_t) Sigma / (ab_t Sigma + 1 - ab_t)``.

Panel (a): |relative error| against T on log-log axes, with the least-squares slope of each line (the order;
-1 expected, reached for Sigma >= 0.1; small Sigma is pre-asymptotic at these T), and VSRD variant A at lam = 1 on
the 2-D anisotropic posterior G2post (the signed relative error of the largest entry of the end covariance against
the posterior's, from the exact start; the WANG-2 measure). Panel (b): the signed error: fixedsmall
under-disperses, fixedlarge (``sigma_t^2 = beta_t``) over-disperses. No randomness is involved (no seed).
"""

from __future__ import annotations

import math

import torch

import dptheory as dpt
from dptheory import plotting
from dptheory.reference_problems import g2post
from dptheory.sampler_laws import sampler_law

NAME = "ddpm_order"
CLAIMS = ("FND-6", "WANG-2")
SEED = None  # exact law recursions: nothing is random
TS = (250, 500, 1000, 2000, 4000)
SIGMAS = (1e-3, 1e-2, 0.1, 1.0)


def scalar_recursion(Sigma: float, T: int, variance: str = "small") -> float:
    """End variance of DDPM on N(0, Sigma) from N(0, 1): an independent check of :mod:`dptheory.sampler_laws`."""
    sched = dpt.linear_schedule(T)
    v = 1.0
    for t in range(T, 0, -1):
        c1, c2, beta_tilde, beta = sched.reverse_coefficients(t)
        ab = float(sched.alpha_bar(t))
        K = math.sqrt(ab) * Sigma / (ab * Sigma + 1.0 - ab)
        noise = 0.0 if t == 1 else (beta_tilde if variance == "small" else beta)
        v = (c1 * K + c2) ** 2 * v + noise
    return v


def ddpm_relative_error(Sigma: float, T: int, variance: str) -> float:
    """``Var[x_0] / Sigma - 1`` by the exact law recursion (the FND-6 call)."""
    prob = dpt.LinearInverseProblem(dpt.Gaussian([0.0], [[Sigma]]), [[1.0]], 1.0)
    law = sampler_law(prob, "ddpm", y=[0.0], conditional=False, variance=variance,
                      schedule=dpt.linear_schedule(T)).law
    return float(law.cov[0, 0]) / Sigma - 1.0


def vsrd_variant_a_error(T: int) -> float:
    """WANG-2's measure: signed relative error of the largest entry of VSRD variant A's end covariance
    (lam = 1, exact start) against the posterior covariance of G2post."""
    prob, y = g2post()
    post = prob.posterior(y)
    cov = sampler_law(prob, "vsrd", y=y, lam=1.0, kernel="small", start="exact",
                      schedule=dpt.linear_schedule(T)).law.cov
    rel = ((cov - post.cov) / post.cov.abs().max()).reshape(-1)
    return float(rel[rel.abs().argmax()])


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of ``log|y|`` against ``log x``."""
    X = torch.stack([torch.ones(len(xs), dtype=torch.float64), torch.log(torch.tensor(xs, dtype=torch.float64))], 1)
    Y = torch.log(torch.tensor(ys, dtype=torch.float64).abs()).unsqueeze(1)
    return float(torch.linalg.lstsq(X, Y).solution[1, 0])


def compute(quick: bool) -> dict:
    Ts = TS
    sigmas = SIGMAS[1:] if quick else SIGMAS
    small, large, check = {}, {}, {}
    for S in sigmas:
        small[S] = [ddpm_relative_error(S, T, "small") for T in Ts]
        large[S] = [ddpm_relative_error(S, T, "large") for T in Ts]
        if not quick:
            check[S] = max(abs((scalar_recursion(S, T) / S - 1.0) - e) for T, e in zip(Ts, small[S], strict=True))
    vsrd_a = [vsrd_variant_a_error(T) for T in Ts]
    claim_Ts = (250, 1000, 4000)  # the T's of the FND-6 / WANG-2 fits
    sub = [Ts.index(T) for T in claim_Ts]
    return {
        "T": list(Ts), "sigmas": list(sigmas),
        "fixedsmall_rel_err": {f"Sigma={S:g}": v for S, v in small.items()},
        "fixedlarge_rel_err": {f"Sigma={S:g}": v for S, v in large.items()},
        "vsrd_variant_a_rel_err_G2post_lam1": vsrd_a,
        "slope_all_T": {**{f"fixedsmall Sigma={S:g}": loglog_slope(Ts, v) for S, v in small.items()},
                        **{f"fixedlarge Sigma={S:g}": loglog_slope(Ts, v) for S, v in large.items()},
                        "vsrd variant A (G2post)": loglog_slope(Ts, vsrd_a)},
        "slope_T=250,1000,4000": {**{f"fixedsmall Sigma={S:g}": loglog_slope(claim_Ts, [v[i] for i in sub])
                                     for S, v in small.items()},
                                  "vsrd variant A (G2post)": loglog_slope(claim_Ts, [vsrd_a[i] for i in sub])},
        "max_abs_diff_laws_vs_scalar_recursion": max(check.values()) if check else "not run (--quick)",
    }


def plot(d: dict):
    import matplotlib

    fig, (ax_a, ax_b) = plotting.figure(1, 2, figsize=(12.5, 5.2))
    Ts = d["T"]
    cmap = matplotlib.colormaps["viridis"]
    n = len(d["sigmas"])
    for k, S in enumerate(d["sigmas"]):
        color = cmap(k / max(n - 1, 1) * 0.85)
        key = f"Sigma={S:g}"
        small = d["fixedsmall_rel_err"][key]
        slope = d["slope_all_T"][f"fixedsmall {key}"]
        ax_a.loglog(Ts, [abs(v) for v in small], marker="o", color=color,
                    label=f"DDPM fixedsmall, $\\Sigma$ = {S:g} (slope {slope:.2f})")
        ax_b.semilogx(Ts, [100 * v for v in small], marker="o", color=color,
                      label=f"fixedsmall ($\\tilde\\beta_t$), $\\Sigma$ = {S:g}")
        ax_b.semilogx(Ts, [100 * v for v in d["fixedlarge_rel_err"][key]], marker="s", linestyle="--",
                      color=color, label=f"fixedlarge ($\\beta_t$), $\\Sigma$ = {S:g}")
    va = d["vsrd_variant_a_rel_err_G2post_lam1"]
    ax_a.loglog(Ts, [abs(v) for v in va], marker="^", color="#d55e00", linestyle="-.",
                label=f"VSRD variant A, $\\lambda$=1, G2post (slope {d['slope_all_T']['vsrd variant A (G2post)']:.2f})")
    # reference slope -1 through the Sigma = 1 line at T = 1000
    ref_y = abs(d["fixedsmall_rel_err"][f"Sigma={d['sigmas'][-1]:g}"][Ts.index(1000)])
    ax_a.loglog(Ts, [ref_y * 1000 / T for T in Ts], color="k", linestyle=":", linewidth=1.5,
                label="reference slope $-1$ (error $\\propto 1/T$)")
    ax_a.set(xlabel="number of steps $T$ (betas rescaled by 1000/T)",
             ylabel="|relative error of the end variance| (dimensionless)",
             title="(a) order of convergence: error against $T$", ylim=(3e-4, 0.8))
    ax_a.legend(loc="lower left", fontsize=8)
    ax_b.axhline(0.0, color="k", linewidth=0.8)
    ax_b.set(xlabel="number of steps $T$ (betas rescaled by 1000/T)",
             ylabel="relative error of the end variance (%)",
             title="(b) fixedsmall under-disperses, fixedlarge over-disperses")
    ax_b.legend(loc="lower right", fontsize=7.5, ncols=2)
    for ax in (ax_a, ax_b):
        ax.set_xticks(Ts, [str(T) for T in Ts])
        ax.minorticks_off()
    return fig


def _params(data: dict, quick: bool) -> dict:
    """The sidecar's parameters."""
    params = {"data": "1-D N(0, Sigma), exact prior denoiser, start N(0, 1)", "Sigmas": data["sigmas"],
              "T": data["T"], "schedule": "dpt.linear_schedule(T) (betas 1e-4..0.02 rescaled by 1000/T)",
              "error": "Var[x_0]/Sigma - 1 (exact law recursion, dptheory.sampler_laws.sampler_law)",
              "vsrd_variant_a": "G2post, lam = 1, kernel='small', start='exact'; signed relative error of "
                                "the largest-magnitude entry of (Sigma_0 - Sigma_y) / max|Sigma_y|"}
    return params


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
