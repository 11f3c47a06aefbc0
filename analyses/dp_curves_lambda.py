"""Figure ``dp_curves_lambda``: the distortion-perception curves traversed by VSRD's lam, W2 and KL against MSE.

Claims: WANG-3 (VSRD is on the per-measurement D-P curve for a Gaussian posterior), WANG-4 (it is NOT on the
joint curve for lam > 0), BMF-3 (the per-measurement curve ``D_y(P) = tr Sigma_y + ((sqrt(tr Sigma_y) - P)_+)^2``
holds for any posterior), BMF-4 (neither traversal reaches the joint curve except at the MMSE end).

Top row, EXACT (Gaussian prior G2: m = (.3, -.2), S = [[1, .6], [.6, .8]], A = [1, .5], sigma = .3, y = .7):
``dpt.traverse(problem, "vsrd", "lam", lams, y=y, start="exact")`` computes the output laws by the recursions of
:mod:`dptheory.laws`, so every point is a closed form (W2 by the Bures formula, KL in closed form). The start is
the exact diffused posterior at T (as in the claims WANG-4 and BMF-4, so the joint gaps 0.0209, 0.0413, 0.0614,
0.0811 at lam = .25, .5, .75, 1 are the claims report's numbers).

Bottom row, MONTE CARLO (the 1-D mixture B1, 0.5 N(+-1, .05), sigma = .5, y = -.6, Wang et al.'s 1-D setting
with a stand-in prior): the same call runs the sampler code (the exact GMM conditional denoiser) on ``n``
particles; error bars are +-1 standard error (MSE: over particles; W2 and KL: over independent parts). The W2 of a
sample is biased upward; the grey band is the W2 between two independent samples of the target of the same size
(the estimator's floor), which is where exact samplers (lam = 1) land.

Columns: the per-measurement plane (W2 and KL of ``p(x^ | y)`` to ``p(x | y)`` against ``E[||X - X^||^2 | y]``)
and the joint plane (``p_X^`` to ``p_X`` against ``E||X - X^||^2``), with the optimal curves
(``dpt.per_measurement_dp_curve``: exact for any posterior; ``dpt.optimal_dp_curve``: exact for G2; for B1 W is
exact (quantile formula) and D* Monte Carlo). The KL panels show, as a reference, the KL of the W2-optimal
estimators (shrunk posterior samples ``mu_y + c (X~ - mu_y)``; Freirich et al.'s geodesic estimators for the
joint Gaussian form). lam = 0 gives a point mass per measurement (KL = inf, not drawn).
"""

from __future__ import annotations

import math

import torch

import dptheory as dpt
from dptheory import plotting
from dptheory.worked import b1, g2

NAME = "dp_curves_lambda"
CLAIMS = ("WANG-3", "WANG-4", "BMF-3", "BMF-4")
SEED = 20250303


def _w2_floor_1d(sample, n_part: int, parts: int, generator) -> dpt.Estimate:
    """W2 between two independent samples of ``n_part`` points of one 1-D law (sorted coupling), over ``parts``
    pairs: the floor of the sample-based W2 used by ``traverse``."""
    vals = []
    for _ in range(parts):
        a = sample(n_part, generator=generator)[:, 0].sort().values
        b = sample(n_part, generator=generator)[:, 0].sort().values
        vals.append(float((a - b).square().mean().sqrt()))
    return dpt.Estimate.from_samples(torch.tensor(vals, dtype=torch.float64))


def gaussian_references(prob, y, n: int = 60) -> dict:
    """KL of the W2-optimal estimators, exact: per-measurement N(mu_y, c^2 Sigma); joint: the geodesic ones."""
    post = prob.posterior(y)
    tr = float(torch.trace(post.cov))
    cs = torch.linspace(0.05, 1.0, n, dtype=torch.float64)
    pm = {"D": [(1 + float(c) ** 2) * tr for c in cs],
          "kl": [float(dpt.gaussian_kl(dpt.Gaussian(post.mean, float(c) ** 2 * post.cov), post)) for c in cs]}
    curve = dpt.optimal_dp_curve(prob)
    jt = {"D": [], "kl": []}
    for P in torch.linspace(0.0, 0.95 * curve.w, n, dtype=torch.float64):
        est = dpt.joint_optimal_estimator(prob, float(P))
        jt["D"].append(est.distortion())
        jt["kl"].append(float(dpt.gaussian_kl(est.law(), prob.prior)))
    return {"per-measurement": pm, "joint": jt}


def mixture_reference(prob, y, n_mc: int, generator, n: int = 25) -> dict:
    """KL of the shrunk posterior samples ``mu_y + c (X~ - mu_y)`` (a GMM) to the posterior, by Monte Carlo."""
    post = prob.posterior(y)
    tr = float(prob.posterior_cov_trace(y))
    mu = post.mean
    out = {"D": [], "kl": [], "kl_stderr": []}
    for c in torch.linspace(0.15, 1.0, n, dtype=torch.float64):
        c = float(c)
        shrunk = dpt.GaussianMixture(post.weights, mu + c * (post.means - mu), c**2 * post.covs)
        kl = dpt.gmm_kl_monte_carlo(shrunk, post, n_mc, generator=generator)
        out["D"].append((1 + c**2) * tr)
        out["kl"].append(kl.value)
        out["kl_stderr"].append(kl.stderr)
    return out


def compute(quick: bool) -> dict:
    gen = torch.Generator().manual_seed(SEED)
    # ---- exact: G2
    prob_g, y_g = g2()
    lams_g = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0] if quick else \
        [0.0, 0.02, 0.05, 0.1, 0.15, 0.25, 0.35, 0.5, 0.6, 0.75, 0.9, 1.0]
    tr_g = dpt.traverse(prob_g, "vsrd", "lam", lams_g, y=y_g, start="exact")
    # ---- Monte Carlo: B1
    prob_b, y_b = b1(sigma_y=0.5, y=-0.6)
    lams_b = [0.0, 0.25, 0.5, 1.0] if quick else [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
    n, parts = (1200, 3) if quick else (10000, 4)  # parts of 400 / 2500 points for the sample W2 and KL
    steps = 200 if quick else None
    tr_b = dpt.traverse(prob_b, "vsrd", "lam", lams_b, y=y_b, n=n, replicates=parts, generator=gen,
                        start="exact", steps=steps)
    floors = {"per-measurement": _w2_floor_1d(prob_b.posterior(y_b).sample, n // parts, parts, gen),
              "joint": _w2_floor_1d(prob_b.prior.sample, n // parts, parts, gen)}
    return {
        "G2": {"traversal": tr_g.to_dict(), "references": gaussian_references(prob_g, y_g),
               "y": float(y_g[0])},
        "B1": {"traversal": tr_b.to_dict(), "y": float(y_b[0]), "sigma_y": 0.5, "n": n, "parts": parts,
               "steps": 1000 if steps is None else steps,
               "w2_floor": {k: {"value": v.value, "stderr": v.stderr} for k, v in floors.items()},
               "references": {"per-measurement": mixture_reference(prob_b, y_b, 2000 if quick else 20000, gen,
                                                                   n=12 if quick else 25)}},
        "joint_gaps_G2": {f"lam={lam:g}": p.gap for lam, p in zip(lams_g, tr_g.joint, strict=True)},
    }


def _panel(ax, trav: dict, form: str, measure: str, cmap, ref=None, floor=None):
    """One D-P panel: VSRD points coloured by lam (with error bars), the optimal curve or a reference."""
    c = plotting.COLORS
    key = "per_measurement" if form == "per-measurement" else "joint"
    pts, lams = trav[key], trav["values"]
    curve = dpt.DPCurve(**trav[f"curve_{key}"])
    D = [p["distortion"] for p in pts]
    y = [p["perception"] if measure == "W2" else p["kl"] for p in pts]
    yerr = [p["perception_stderr"] if measure == "W2" else p["kl_stderr"] for p in pts]
    # lam = 0 has a singular law whenever the MMSE estimate does: a point mass per measurement, and N(m, S*) with
    # rank S* <= m < d jointly for G2 (KL = inf; with start="exact" a near-singular law, KL ~ 5-10): not drawn
    singular_at_0 = form == "per-measurement" or curve.exact
    ok = [i for i, v in enumerate(y) if math.isfinite(v) and (measure == "W2" or lams[i] > 0 or not singular_at_0)]
    ax.plot([D[i] for i in ok], [y[i] for i in ok], color="0.6", linewidth=0.8, zorder=2)
    for i in ok:
        ax.errorbar(D[i], y[i], xerr=pts[i]["distortion_stderr"], yerr=yerr[i], marker="o", markersize=6,
                    color=cmap(lams[i]), markeredgecolor="k", markeredgewidth=0.5, capsize=2, zorder=3)
    ax.plot([], [], marker="o", color=cmap(0.5), markeredgecolor="k", linestyle="none",
            label="VSRD (colour: $\\lambda$)" + ("" if curve.exact and floor is None else ", $\\pm$1 SE"))
    mmse = curve.mmse_error
    if measure == "W2":
        p_max = 1.12 * max(max(v + e for v, e in zip(y, yerr, strict=True)), curve.w)
        plotting.draw_dp_curve(ax, curve, p_max=p_max,
                               label=f"optimal {form} curve" + ("" if curve.exact else " (MC)"))
        ax.plot([2 * mmse], [0.0], marker="*", markersize=15, markerfacecolor="none", markeredgewidth=1.3,
                color=c["posterior"], linestyle="none", label="posterior sampling $(2D^*, 0)$", zorder=4,
                clip_on=False)
        if floor is not None:
            ax.axhspan(0, floor["value"] + floor["stderr"], color="0.8", alpha=0.6, zorder=0,
                       label="floor of the sample W2")
        target = "$p(x\\mid y)$" if form == "per-measurement" else "$p_X$"
        ax.set_ylabel(f"W2 to {target} (a.u.)")
        ax.set_ylim(bottom=0)
    else:
        if ref is not None:
            ax.plot(ref["D"], ref["kl"], color=c[form], linestyle="--", linewidth=1.5, zorder=1,
                    label="W2-optimal estimators" + (" (MC)" if "kl_stderr" in ref else ""))
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.axvline(2 * mmse, color=c["posterior"], linestyle=":", linewidth=1.2,
                   label="$2D^*$ (posterior sampling, KL = 0)")
        top = max([y[i] + yerr[i] for i in ok] + [0.5])
        ax.set_ylim(-0.05 * top - 0.05, 1.15 * top)
        if len(ok) < len(y):
            what = "point mass" if form == "per-measurement" else "singular law"
            ax.plot([], [], linestyle="none", label=f"$\\lambda$ = 0 ({what}, KL $\\approx\\infty$) not drawn")
        pair = "$p(\\hat x\\mid y)\\,\\|\\,p(x\\mid y)$" if form == "per-measurement" else "$p_{\\hat X}\\,\\|\\,p_X$"
        ax.set_ylabel(f"KL({pair}) (nats)")
    x_label = "MSE $E[\\|X-\\hat X\\|^2\\mid y]$" if form == "per-measurement" else "MSE $E\\|X-\\hat X\\|^2$"
    ax.set_xlabel(x_label + " (a.u.$^2$)")
    ax.legend(loc="upper right", fontsize=7.5)


def plot(d: dict):
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    fig, axes = plotting.figure(2, 4, figsize=(17.5, 8.6))
    rows = (("G2", "Gaussian G2, exact laws"), ("B1", "mixture B1, Monte Carlo"))
    for r, (name, what) in enumerate(rows):
        trav = d[name]["traversal"]
        refs = d[name]["references"]
        floors = d[name].get("w2_floor", {})
        for k, (form, measure) in enumerate((("per-measurement", "W2"), ("per-measurement", "KL"),
                                             ("joint", "W2"), ("joint", "KL"))):
            ax = axes[r, k]
            _panel(ax, trav, form, measure, cmap, ref=refs.get(form) if measure == "KL" else None,
                   floor=floors.get(form) if measure == "W2" else None)
            ax.set_title(f"({'abcdefgh'[4 * r + k]}) {what}: {form}, {measure}", fontsize=10)
    sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, 1))
    fig.colorbar(sm, ax=axes, label="$\\lambda$ (variance scale of VSRD)", shrink=0.6, pad=0.01)
    return fig


def _params(data: dict, quick: bool) -> dict:
    """The sidecar's parameters."""
    params = {"method": "vsrd (exact kernel, variant B), exact conditional denoiser, start='exact'",
              "schedule": "linear, T = 1000",
              "G2": "prior N((.3,-.2), [[1,.6],[.6,.8]]), A = [1, .5], sigma = .3, y = .7; exact laws",
              "B1": "prior 0.5 N(-1, .05) + 0.5 N(1, .05) (stand-in for Wang et al.'s), A = 1, sigma = .5, "
                    "y = -.6; Monte Carlo",
              "B1_n": data["B1"]["n"], "B1_parts": data["B1"]["parts"], "B1_steps": data["B1"]["steps"]}
    return params


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
