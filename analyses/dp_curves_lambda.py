"""Figure ``dp_curves_lambda``: the distortion-perception curves traversed by VSRD's lam, W2 and KL against MSE.

Claims: WANG-3 (VSRD is on the per-measurement D-P curve for a Gaussian posterior), WANG-4 (it is NOT on the
joint curve for lam > 0), BMF-3 (the per-measurement curve ``D_y(P) = tr Sigma_y + ((sqrt(tr Sigma_y) - P)_+)^2``
holds for any posterior), BMF-4 (neither traversal reaches the joint curve except at the MMSE end).

Top row, EXACT (Gaussian prior G2: m = (.3, -.2), S = [[1, .6], [.6, .8]], A = [1, .5], sigma = .3, y = .7):
``dpt.traverse(problem, "vsrd", "lam", lams, y=y, start="exact")`` computes the output laws by the recursions of
:mod:`dptheory.sampler_laws`, so every point is a closed form (W2 by the Bures formula, KL in closed form). The start is
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
exact (quantile formula) and D* Monte Carlo). lam = 0 gives a point mass per measurement (KL = inf, not drawn).

The G2 KL panels overlay the KL-OPTIMAL curves (perception KL(p_X^ || p_X), the direction plotted):
per measurement the closed form of :mod:`dptheory.dp_curve_kl` (optimal law ``N(mu, (Sigma^-1 + I/theta)^-1)``);
jointly the convex program ``D* + min {W2^2(p_X*, q) : KL(q || p_X) <= P}`` over Gaussian q (optimal; no closed
form because Cov X* and the prior covariance do not commute), solved here by SLSQP. The W2-optimal estimators
(which VSRD's laws coincide with per measurement) and, per measurement, MAP-RPS's exact stage-2 laws are drawn
for comparison: VSRD is W2-optimal but not KL-optimal for this anisotropic posterior (claim KLDP-2).

The B1 posterior is not Gaussian, so its KL panels have no closed-form KL curve: (f) shows the KL of the W2-optimal
shrunk posterior samples (Monte Carlo). KL of samples is estimated by the Kozachenko-Leonenko nearest-neighbour
entropy (``dptheory.divergences``), which is only asymptotically unbiased: an estimate below 0 (the true KL is >= 0) is
estimator noise, and is labelled with its standard error. Panel (g) replaces the joint W2 plane of B1 (whose
sample-W2 values all lie inside the estimator's floor, data kept in the sidecar) by the MSE against lam, per
measurement and jointly, with the ratio MSE(1)/MSE(0) that Wang et al. put at about 2 (claim WANG-10).
"""

from __future__ import annotations

import math

import torch

import dptheory as dpt
from dptheory import plotting
from dptheory.reference_problems import b1, g2

NAME = "dp_curves_lambda"
CLAIMS = ("WANG-3", "WANG-4", "BMF-3", "BMF-4", "KLDP-2", "WANG-10")
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


def joint_kl_curve(prob, nus) -> dict:
    """The joint KL-optimal curve ``D(P) = D* + min {W2^2(N(m, S*), N(m, C)) : KL(N(m, C) || N(m, S)) <= P}``.

    The optimum over all laws is Gaussian (moment matching lowers both terms: Gelbrich's bound and the entropy
    argument of :mod:`dptheory.dp_curve_kl`) with the prior's mean; the program is convex in C (the Bures term
    is convex, -log det is convex) but has no closed form when S* and S do not commute. Each multiplier ``nu``
    gives one point: minimise ``W2^2 + nu KL`` over the Cholesky factor of C (L-BFGS, smooth: the Bures trace is
    taken on range(S*), where ``D^{1/2} U^T C U D^{1/2}`` is SPD), then ``P = KL`` and ``D = D* + W2^2`` there.
    """
    import numpy as np
    from scipy.optimize import minimize

    S = prob.prior.cov.numpy()
    S_star = prob.mmse_law().cov.numpy()
    ev, V = np.linalg.eigh(S_star)
    keep = ev > 1e-12 * ev.max()
    B = V[:, keep] * np.sqrt(ev[keep])  # S* = B B^T, B (d, r)
    d = S.shape[0]
    il = np.tril_indices(d)
    S_inv, logdet_S = np.linalg.inv(S), np.linalg.slogdet(S)[1]
    d_star = float(torch.trace(prob.posterior(torch.zeros(prob.m, dtype=torch.float64)).cov))

    def unpack(z):
        L = np.zeros((d, d))
        L[il] = z
        return L @ L.T

    def bures(C):
        return float(np.trace(S_star) + np.trace(C) - 2 * np.sqrt(np.linalg.eigvalsh(B.T @ C @ B)).sum())

    def kl(C):
        return 0.5 * float(np.trace(S_inv @ C) - d + logdet_S - np.linalg.slogdet(C)[1])

    out = {"nu": [], "P": [], "D": []}
    z = np.linalg.cholesky(S)[il]
    for nu in sorted(nus, reverse=True):  # from P ~ 0 (C ~ S) towards the MMSE end, warm-started
        res = minimize(lambda z, nu=nu: bures(unpack(z)) + nu * kl(unpack(z)), z, method="L-BFGS-B",
                       options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 5000})
        z = res.x
        C = unpack(z)
        out["nu"].append(float(nu))
        out["P"].append(kl(C))
        out["D"].append(d_star + bures(C))
    return out


def kl_optimal_references(prob, y, t0s=(10, 20, 40, 60, 100, 150, 200, 300)) -> dict:
    """Per measurement: the closed-form reverse-KL curve and MAP-RPS's exact stage-2 points; jointly: the
    numerical KL-optimal curve."""
    from dptheory.dp_curve_kl import KLDPCurve

    post = prob.posterior(y)
    curve = KLDPCurve(post, "reverse")
    theta = torch.logspace(-3, 3, 120, dtype=torch.float64)
    P, D = curve.point(theta)
    pm = {"P": P.tolist(), "D": D.tolist()}
    mrps = {"t0": list(t0s), "P": [], "D": [], "gap": []}
    for t0 in t0s:
        law = dpt.map_rps_stage2_law(prob, y, t0)
        kl = float(dpt.gaussian_kl(law, post))
        d_val = curve.mmse_error + float(torch.trace(law.cov))
        mrps["P"].append(kl)
        mrps["D"].append(d_val)
        mrps["gap"].append(float(curve.gap(kl, d_val)))
    nus = [float(v) for v in torch.logspace(-3, 2, 51, dtype=torch.float64)]
    return {"per-measurement": pm, "map-rps": mrps, "joint": joint_kl_curve(prob, nus)}


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
                        start="exact", steps=steps, progress=True)
    floors = {"per-measurement": _w2_floor_1d(prob_b.posterior(y_b).sample, n // parts, parts, gen),
              "joint": _w2_floor_1d(prob_b.prior.sample, n // parts, parts, gen)}
    from dptheory.dp_curve_kl import KLDPCurve

    kl_curve = KLDPCurve(prob_g.posterior(y_g), "reverse")
    vsrd_kl_gap = {f"lam={lam:g}": float(kl_curve.gap(p.kl, p.distortion))
                   for lam, p in zip(lams_g, tr_g.per_measurement, strict=True) if lam > 0}
    return {
        "G2": {"traversal": tr_g.to_dict(), "references": gaussian_references(prob_g, y_g),
               "kl_optimal": kl_optimal_references(prob_g, y_g), "vsrd_kl_gap": vsrd_kl_gap,
               "y": float(y_g[0])},
        "B1": {"traversal": tr_b.to_dict(), "y": float(y_b[0]), "sigma_y": 0.5, "n": n, "parts": parts,
               "steps": 1000 if steps is None else steps,
               "w2_floor": {k: {"value": v.value, "stderr": v.stderr} for k, v in floors.items()},
               "references": {"per-measurement": mixture_reference(prob_b, y_b, 2000 if quick else 20000, gen,
                                                                   n=12 if quick else 25)}},
        "joint_gaps_G2": {f"lam={lam:g}": p.gap for lam, p in zip(lams_g, tr_g.joint, strict=True)},
    }


def _negative_kl_notes(ax, D, y, yerr, ok):
    """Label KL estimates below 0 (impossible for the true KL) as estimator noise, with their SE."""
    for i in ok:
        if y[i] < 0:
            ax.annotate(f"{y[i]:.3f} $\\pm$ {yerr[i]:.3f}: below 0 by\nestimator noise (true KL $\\geq$ 0)",
                        (D[i], y[i]), xytext=(-8, -4), textcoords="offset points", ha="right", va="top",
                        fontsize=7)


def _panel(ax, trav: dict, form: str, measure: str, cmap, ref=None, floor=None, kl_opt=None):
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
        if kl_opt is not None:
            ax.plot(kl_opt["D"], kl_opt["P"], color=c[form], linestyle="-", linewidth=2.0, zorder=1,
                    label="KL-optimal curve" + (" (closed form)" if form == "per-measurement" else
                                                " (convex program)"))
        if ref is not None:
            ax.plot(ref["D"], ref["kl"], color=c[form] if kl_opt is None else "0.45",
                    linestyle="--", linewidth=1.2 if kl_opt is not None else 1.5, zorder=1,
                    label="W2-optimal estimators" + (" (MC)" if "kl_stderr" in ref else ""))
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.axvline(2 * mmse, color=c["posterior"], linestyle=":", linewidth=1.2,
                   label="$2D^*$ (posterior sampling, KL = 0)")
        finite = [y[i] + yerr[i] for i in ok]
        top = max(finite + [0.3])
        bottom = min([y[i] - yerr[i] for i in ok] + [0.0])
        ax.set_ylim(bottom - 0.08 * top - 0.02, 1.15 * top)
        _negative_kl_notes(ax, D, y, yerr, ok)
        missing = [lams[i] for i in range(len(y)) if i not in ok]
        if missing:
            what = "point mass" if form == "per-measurement" else "singular law"
            inf_at = [v for v in missing if v > 0]
            text = f"$\\lambda$ = 0: {what}, KL = $\\infty$" if 0.0 in missing else ""
            if inf_at:
                text += ("; " if text else "") + f"KL est. $\\infty$ at $\\lambda$ = {inf_at}"
            ax.plot([], [], linestyle="none", label=text)
        pair = "$p(\\hat x\\mid y)\\,\\|\\,p(x\\mid y)$" if form == "per-measurement" else "$p_{\\hat X}\\,\\|\\,p_X$"
        ax.set_ylabel(f"KL({pair}) (nats)")
    x_label = "MSE $E[\\|X-\\hat X\\|^2\\mid y]$" if form == "per-measurement" else "MSE $E\\|X-\\hat X\\|^2$"
    ax.set_xlabel(x_label + " (a.u.$^2$)")
    ax.legend(loc="upper right", fontsize=7.5)


def _mse_panel(ax, data: dict):
    """MSE against lam for B1, per measurement and jointly, with D* and 2 D* and the ratio MSE(1)/MSE(0)."""
    trav = data["traversal"]
    lams = trav["values"]
    styles = (("per_measurement", "per-measurement", "o"), ("joint", "joint", "s"))
    ratios = []
    for key, form, marker in styles:
        pts = trav[key]
        D = [p["distortion"] for p in pts]
        err = [p["distortion_stderr"] for p in pts]
        col = plotting.COLORS[form]
        ax.errorbar(lams, D, yerr=err, marker=marker, color=col, markeredgecolor="k", markeredgewidth=0.5,
                    capsize=2, linewidth=1.0, label=f"VSRD, {form} MSE $\\pm$1 SE")
        d_star = trav[f"curve_{key}"]["mmse_error"]
        ax.axhline(d_star, color=col, linestyle=":", linewidth=1.0)
        ax.axhline(2 * d_star, color=col, linestyle="--", linewidth=1.0)
        i0, i1 = lams.index(0.0), lams.index(1.0)
        ratio = D[i1] / D[i0]
        se = ratio * math.hypot(err[i1] / D[i1], err[i0] / D[i0])
        ratios.append(f"{form}: {ratio:.2f} $\\pm$ {se:.2f}")
    ax.text(0.03, 0.62, "MSE(1)/MSE(0) (Gaussian: 2)\n" + "\n".join(ratios), transform=ax.transAxes, ha="left",
            va="center", fontsize=8, bbox=dict(facecolor="white", edgecolor="0.7", alpha=0.9))
    ax.plot([], [], color="0.3", linestyle=":", label="$D^*$ (MMSE)")
    ax.plot([], [], color="0.3", linestyle="--", label="$2D^*$ (posterior sampling)")
    ax.set_xlabel("$\\lambda$ (variance scale of VSRD)")
    ax.set_ylabel("MSE (a.u.$^2$)")
    top = max(2 * trav["curve_joint"]["mmse_error"], max(p["distortion"] + p["distortion_stderr"]
                                                        for p in trav["joint"]))
    ax.set_ylim(top=1.25 * top)
    ax.legend(loc="upper left", fontsize=7.5, ncol=2)


def plot(d: dict):
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    fig, axes = plotting.figure(2, 4, figsize=(17.5, 8.6))
    rows = (("G2", "Gaussian G2 (exact)"), ("B1", "mixture B1 (MC)"))
    for r, (name, what) in enumerate(rows):
        trav = d[name]["traversal"]
        refs = d[name]["references"]
        floors = d[name].get("w2_floor", {})
        kl_opt = d[name].get("kl_optimal")
        for k, (form, measure) in enumerate((("per-measurement", "W2"), ("per-measurement", "KL"),
                                             ("joint", "W2"), ("joint", "KL"))):
            ax = axes[r, k]
            letter = "abcdefgh"[4 * r + k]
            if name == "B1" and form == "joint" and measure == "W2":
                _mse_panel(ax, d[name])
                ax.set_title(f"({letter}) {what}: MSE against $\\lambda$", fontsize=10)
                continue
            _panel(ax, trav, form, measure, cmap, ref=refs.get(form) if measure == "KL" else None,
                   floor=floors.get(form) if measure == "W2" else None,
                   kl_opt=kl_opt.get(form) if (kl_opt and measure == "KL") else None)
            if kl_opt and measure == "KL" and form == "per-measurement":
                m = kl_opt["map-rps"]
                ax.plot(m["D"], m["P"], marker="s", markersize=5, linestyle="none", color=plotting.COLORS["map-rps"],
                        markeredgecolor="k", markeredgewidth=0.4, zorder=3,
                        label=f"MAP-RPS, $t_0$ = {m['t0'][0]}..{m['t0'][-1]} (exact)")
                gaps = list(d[name]["vsrd_kl_gap"].values())
                ax.text(0.97, 0.45, f"D above the KL curve:\nVSRD up to {max(gaps):.1e} (0 at $\\lambda$ = 1)\n"
                        f"MAP-RPS up to {max(m['gap']):.1e}", transform=ax.transAxes, ha="right",
                        va="center", fontsize=7.5, bbox=dict(facecolor="white", edgecolor="0.7", alpha=0.9))
                ax.legend(loc="upper right", fontsize=7.5)
            ax.set_title(f"({letter}) {what}: {form}, {measure}", fontsize=10)
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
