"""Figure ``map_vs_mmse``: the MSE of the MAP (MAP-RPS's stage 1) against the MMSE's, over noise and mode separation.

Claim: MRPS-4 (Theorem 3.2 of MAP-RPS: for a strongly log-concave posterior the MAP is close to the MMSE, so it is
a cheap low-distortion anchor).

Prior: the B1-type mixture ``0.5 N(-delta, 0.05) + 0.5 N(delta, 0.05)`` (0.05 is each component's VARIANCE);
observation ``y = x + N(0, sigma^2)``
(A = 1). For each (sigma, delta) the joint MSE of the MAP estimator against the MMSE error D*:

    MSE(MAP) / D* = 1 + E_y[(MAP(y) - MMSE(y))^2] / E_y[tr Cov(X | y)],

by the trapezoid rule over y, with the batched exact mode finder ``problem.map(y)``, ``problem.mmse(y)``,
``problem.posterior_cov_trace(y)`` and the evidence ``problem.evidence()``. This is the same library call as the
claim MRPS-4 (``dptheory.claims.map_rps.map_mse_ratio``), so the table cells of the sidecar are the claims
report's numbers.

Panel (a) is a heat map of the ratio, with the region where "the MAP approaches the MMSE" (ratio < 1.05) hatched
and the docs/theory §6.4 table cells marked. Panel (b) shows cuts at delta = 0.5 and 1 against sigma, with docs/theory
§6.4's
values (1.005, 1.17, 1.29, 1.44 and 1.000, 1.04, 1.21, 1.37 at sigma = 0.1, 0.3, 0.5, 1). The ratio is near 1 only
at low noise, where the posterior is unimodal; it reaches 1.3-1.45 at the table's sigma = 0.5-1 when the posterior
is bimodal (the log-concavity of Theorem 3.2 fails), and 1.58 at the largest sigma of the full figure
(delta = 0.5). Everything is deterministic quadrature (no seed).
"""

from __future__ import annotations

import math

import torch

from dptheory import plotting
from dptheory.claims.map_rps import map_mse_ratio  # the claim's own computation

NAME = "map_vs_mmse"
CLAIMS = ("MRPS-4",)
SEED = None  # quadrature: nothing is random
QUOTED_TABLE = {(0.5, 0.1): 1.005, (0.5, 0.3): 1.17, (0.5, 0.5): 1.29, (0.5, 1.0): 1.44,
                (1.0, 0.1): 1.000, (1.0, 0.3): 1.04, (1.0, 0.5): 1.21, (1.0, 1.0): 1.37}
"""(delta, sigma) -> MSE(MAP)/D*, docs/theory §6.4."""
THRESHOLD = 1.05


def compute(quick: bool) -> dict:
    n_quad = 401 if quick else 1601  # quadrature points over y for the map and the cuts
    n_table = 801 if quick else 3201  # as the claim MRPS-4 (quick / full), so the numbers agree exactly
    sigmas = torch.logspace(math.log10(0.04), math.log10(2.0), 11 if quick else 22, dtype=torch.float64)
    deltas = torch.linspace(0.2, 2.0, 9 if quick else 19, dtype=torch.float64)
    from tqdm.auto import tqdm

    rows = tqdm(deltas, desc=f"{NAME}: delta rows", leave=False)
    ratio = torch.tensor([[map_mse_ratio(float(dl), float(s), n_quad)[0] for s in sigmas] for dl in rows],
                         dtype=torch.float64)
    cut_sigmas = torch.logspace(math.log10(0.04), math.log10(2.0), 14 if quick else 36, dtype=torch.float64)
    cuts = {dl: [map_mse_ratio(dl, float(s), n_quad)[0] for s in cut_sigmas] for dl in (0.5, 1.0)}
    table = []
    for (dl, s), ref in QUOTED_TABLE.items():
        r, d_star = map_mse_ratio(dl, s, n_table)
        table.append({"delta": dl, "sigma": s, "ratio": r, "theory": ref, "D_star": d_star,
                      "abs_diff": abs(r - ref)})
    return {"sigmas": sigmas, "deltas": deltas, "ratio": ratio, "cut_sigmas": cut_sigmas,
            "cuts": {f"delta={k:g}": v for k, v in cuts.items()}, "table": table, "threshold": THRESHOLD,
            "max_abs_diff_vs_theory": max(row["abs_diff"] for row in table), "n_quad": n_quad, "n_table": n_table}


def plot(d: dict):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, (ax_a, ax_b) = plotting.figure(1, 2, figsize=(12.5, 5.0), gridspec_kw={"width_ratios": [1.25, 1]})
    S, Dl = d["sigmas"].numpy(), d["deltas"].numpy()
    R = d["ratio"].numpy()
    mesh = ax_a.pcolormesh(S, Dl, R, shading="gouraud", cmap="rocket_r", vmin=1.0, rasterized=True)
    fig.colorbar(mesh, ax=ax_a, label="MSE(MAP) / $D^*$ (dimensionless)")
    import matplotlib

    with matplotlib.rc_context({"hatch.color": "0.45", "hatch.linewidth": 0.8}):
        ax_a.contourf(S, Dl, R, levels=[0.0, d["threshold"]], colors="none", hatches=["//"])
    cs = ax_a.contour(S, Dl, R, levels=[d["threshold"]], colors="k", linewidths=1.6)
    ax_a.clabel(cs, fmt={d["threshold"]: f"{d['threshold']:g}"}, fontsize=8)
    for row in d["table"]:
        ax_a.plot(row["sigma"], row["delta"], marker="o", markersize=6, markerfacecolor="#56b4e9",
                  markeredgecolor="k", linestyle="none")
    ax_a.set_xscale("log")
    ax_a.set(xlabel="noise level $\\sigma$ (a.u.)", ylabel="mode separation $\\delta$ (a.u.)",
             title="(a) MSE(MAP) / $D^*$; prior $\\frac{1}{2}\\mathcal{N}(\\pm\\delta, \\mathrm{var}\\ 0.05)$, $A = 1$")
    ax_a.grid(False)
    ax_a.legend(handles=[Patch(facecolor="none", edgecolor="k", hatch="//",
                               label=f"MAP $\\approx$ MMSE (ratio < {d['threshold']:g})"),
                         Line2D([], [], color="k", linewidth=1.6, label=f"ratio = {d['threshold']:g}"),
                         Line2D([], [], marker="o", markerfacecolor="#56b4e9", markeredgecolor="k",
                                linestyle="none",
                                label="docs/theory §6.4 table cells")],
                loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=3, fontsize=8.5)  # below: off the hatching

    cs_ = d["cut_sigmas"].numpy()
    colors = {"delta=0.5": "#0173b2", "delta=1": "#d55e00"}
    for key, vals in d["cuts"].items():
        dl = float(key.split("=")[1])
        ax_b.plot(cs_, vals, color=colors[key], linewidth=1.8, label=f"$\\delta$ = {dl:g} (quadrature)")
        rows = [r for r in d["table"] if r["delta"] == dl]
        ax_b.plot([r["sigma"] for r in rows], [r["theory"] for r in rows], linestyle="none", marker="x",
                  markersize=8, color=colors[key], label=f"$\\delta$ = {dl:g}: docs/theory §6.4 table")
    ax_b.axhline(d["threshold"], color="k", linestyle=":", linewidth=1.2,
                 label=f"threshold {d['threshold']:g} (MAP $\\approx$ MMSE below)")
    ax_b.axhline(1.0, color="0.5", linewidth=0.8)
    ax_b.set_xscale("log")
    ax_b.set(xlabel="noise level $\\sigma$ (a.u.)", ylabel="MSE(MAP) / $D^*$ (dimensionless)",
             title="(b) cuts at fixed mode separation")
    ax_b.legend(loc="upper left")
    return fig


def _params(data: dict, quick: bool) -> dict:
    """The sidecar's parameters."""
    params = {"prior": "0.5 N(-delta, 0.05) + 0.5 N(delta, 0.05)", "A": 1.0,
              "quadrature": "trapezoid over y on [-delta - 8 s_y, delta + 8 s_y], s_y^2 = 0.05 + sigma^2",
              "n_quad": data["n_quad"], "n_table": data["n_table"], "threshold": THRESHOLD}
    return params


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
