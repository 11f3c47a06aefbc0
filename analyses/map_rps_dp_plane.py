"""Figure ``map_rps_dp_plane``: MAP-RPS's t0 sweep against VSRD's lam, DPS and posterior sampling on the D-P plane.

Claims: MRPS-2 (t0 is a D-P knob from the MAP to posterior sampling), MRPS-6 (t0 = T is posterior sampling),
BMF-4 (neither traversal reaches the joint curve except at the MMSE end), DPS-1 (DPS is biased even on a Gaussian
problem).

Every point comes from ``dpt.traverse(problem, method, knob, values, y=y, ...)`` (MSE on the x-axis, W2 to the
target law on the y-axis):

- MAP-RPS over ``t0`` (stage 2 with the exact posterior kernels);
- VSRD over ``lam`` (exact kernel, started from the exact diffused posterior);
- DPS over the step size ``zeta`` (``norm="squared"``: the Bayes-consistent "ideal DPS" of docs/theory §4, whose law is
  affine on a Gaussian problem; ``zeta = 1`` uses the plug-in likelihood at face value);
- posterior sampling (exact kernels from the exact start), which lands at ``(2 D*, 0)``;
- the peer samplers with the prior denoiser (:data:`PEERS`): DDRM over ``eta``, DiffPIR over ``zeta``, PiGDM
  (Bayes guidance) over its DDIM ``eta`` and DAPS over its Langevin steps (claims PEER-2, PEER-4).

Top row, EXACT (the Gaussian G2 of docs/theory §10; laws by :mod:`dptheory.sampler_laws`): MAP-RPS's stage-1 point is
the MAP, which equals the MMSE ``mu(Y)`` here (``x_map = (M, b)``, the affine map ``y -> mu(y)``), as in the claims
MRPS-2 and BMF-4, so the joint gaps at t0 = 20, 100, 300 (0.0104, 0.064, 0.081) are the claims report's numbers; DPS
with ``zeta = 1`` is the DPS-1 law (KL to the posterior 0.10). Bottom row, MONTE CARLO (the mixture B1, sigma = 0.5, y
= -0.6; the real solvers, MAP-RPS's stage 1 by AdamW with the exact GMM denoiser): error bars +-1 SE; the grey band is
the floor of the sample W2 (two independent target samples of the part size), where exact samplers land.

Left: per-measurement plane with ``D_y(P) = tr Sigma_y + ((sqrt(tr Sigma_y) - P)_+)^2``; right: joint plane with
``D(P) = D* + ((W - P)_+)^2``. On the anisotropic G2 posterior MAP-RPS lies above the per-measurement curve while
VSRD lies on it; on the joint plane both lie above the curve for every knob value except the MMSE end, and near
equal P MAP-RPS is further from it than VSRD.
"""

from __future__ import annotations

import torch

import dptheory as dpt
from dptheory import plotting
from dptheory.reference_problems import b1, g2

NAME = "map_rps_dp_plane"
CLAIMS = ("MRPS-2", "MRPS-6", "BMF-4", "DPS-1", "PEER-2", "PEER-4")
SEED = 20250304
STYLE = {  # method -> (colour, marker, label)
    "map-rps": (plotting.COLORS["map-rps"], "s", "MAP-RPS over $t_0$"),
    "vsrd": (plotting.COLORS["vsrd"], "o", "VSRD over $\\lambda$"),
    "dps": (plotting.COLORS["dps"], "^", "DPS (squared norm) over $\\zeta$"),
    "posterior": (plotting.COLORS["posterior"], "*", "posterior sampling"),
    "ddrm": ("tab:brown", "v", "DDRM over $\\eta$ ($\\eta_b$ = 1)"),
    "diffpir": ("tab:pink", "D", "DiffPIR over $\\zeta$ ($\\lambda$ = 1)"),
    "pigdm": ("tab:olive", "P", "PiGDM (Bayes guidance) over DDIM $\\eta$"),
    "daps": ("tab:cyan", "X", "DAPS over Langevin steps"),
}
PEERS = {  # the peer samplers: method -> (knob, exact values, Monte Carlo values, fixed knobs)
    "ddrm": ("eta", [0.25, 0.5, 0.85, 1.0], [0.85], dict(steps=100)),
    "diffpir": ("zeta", [0.0, 0.3, 0.6, 1.0], [0.3], dict(steps=100)),
    "pigdm": ("eta", [0.0, 0.5, 1.0], [1.0], dict(steps=100, guidance="bayes")),
    "daps": ("langevin_steps", [5, 20, 100, 400], [50], dict(steps=20, ode_steps=1, lr=1e-3)),
}


def _floor_1d(sample, n_part: int, parts: int, generator) -> dict:
    """W2 between two independent samples of ``n_part`` points of one 1-D law (the sample-W2 floor)."""
    vals = []
    for _ in range(parts):
        a = sample(n_part, generator=generator)[:, 0].sort().values
        b = sample(n_part, generator=generator)[:, 0].sort().values
        vals.append(float((a - b).square().mean().sqrt()))
    est = dpt.Estimate.from_samples(torch.tensor(vals, dtype=torch.float64))
    return {"value": est.value, "stderr": est.stderr}


def gaussian_sweeps(quick: bool) -> dict:
    prob, y = g2()
    upd = prob._update  # the MMSE map y -> mu(y) = M y + b (MAP = MMSE for a Gaussian prior)
    M = upd.gain[0]
    x_map = (M, prob.prior.mean - M @ (prob.A @ prob.prior.mean))
    t0s = [0, 10, 20, 50, 100, 200, 300, 1000] if quick else \
        [0, 5, 10, 20, 30, 45, 60, 80, 100, 130, 160, 200, 250, 300, 400, 500, 700, 1000]
    lams = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0] if quick else [0.0, 0.05, 0.1, 0.2, 0.25, 0.35, 0.5, 0.65, 0.75, 0.9, 1.0]
    zetas = [0.5, 1.0, 2.0] if quick else [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    return {
        "map-rps": dpt.traverse(prob, "map-rps", "t0", t0s, y=y, x_map=x_map).to_dict(),
        "vsrd": dpt.traverse(prob, "vsrd", "lam", lams, y=y, start="exact").to_dict(),
        "dps": dpt.traverse(prob, "dps", "zeta", zetas, y=y, norm="squared").to_dict(),
        "posterior": dpt.traverse(prob, "posterior", "steps", [None], y=y, start="exact").to_dict(),
        **{m: dpt.traverse(prob, m, knob, vals, y=y, **kn).to_dict() for m, (knob, vals, _, kn) in PEERS.items()},
        "y": float(y[0]),
    }


def mixture_sweeps(quick: bool, gen: torch.Generator) -> dict:
    prob, y = b1(sigma_y=0.5, y=-0.6)
    n, parts = (1200, 3) if quick else (8000, 4)
    steps = 200 if quick else None  # the diffusion samplers' grid (None: every step of T = 1000)
    iters = 200 if quick else 500  # MAP-RPS stage-1 AdamW iterations
    t0s = [0, 20, 100, 300, 1000] if quick else [0, 10, 20, 50, 100, 200, 300, 500, 1000]
    lams = [0.0, 0.5, 1.0] if quick else [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
    zetas = [0.5, 1.0] if quick else [0.5, 1.0, 2.0]
    mc = dict(y=y, n=n, replicates=parts, generator=gen, progress=True)  # a bar per sweep (minutes each)
    out = {
        "map-rps": dpt.traverse(prob, "map-rps", "t0", t0s, iters=iters, **mc).to_dict(),
        "vsrd": dpt.traverse(prob, "vsrd", "lam", lams, start="exact", steps=steps, **mc).to_dict(),
        "dps": dpt.traverse(prob, "dps", "zeta", zetas, norm="squared", steps=steps, **mc).to_dict(),
        "posterior": dpt.traverse(prob, "posterior", "steps", [steps], start="exact", **mc).to_dict(),
        **{m: dpt.traverse(prob, m, knob, vals, **kn, **mc).to_dict() for m, (knob, _, vals, kn) in PEERS.items()},
        "y": float(y[0]), "n": n, "parts": parts, "steps": 1000 if steps is None else steps, "iters": iters,
    }
    out["w2_floor"] = {"per-measurement": _floor_1d(prob.posterior(y).sample, n // parts, parts, gen),
                       "joint": _floor_1d(prob.prior.sample, n // parts, parts, gen)}
    return out


def compute(quick: bool) -> dict:
    gen = torch.Generator().manual_seed(SEED)
    g = gaussian_sweeps(quick)
    g2_joint = {f"t0={v}": p["gap"] for v, p in zip(g["map-rps"]["values"], g["map-rps"]["joint"], strict=True)}
    dps_kl = {f"zeta={v:g}": p["kl"] for v, p in zip(g["dps"]["values"], g["dps"]["per_measurement"], strict=True)}
    return {"G2": g, "B1": mixture_sweeps(quick, gen), "G2_map_rps_joint_gaps": g2_joint,
            "G2_dps_KL_to_posterior": dps_kl}


LABELLED = {"map-rps": (20, 50, 100, 300), "vsrd": (0.25, 0.5, 0.75), "dps": (0.25, 1.0, 2.0)}
"""Knob values annotated on the plot; the ends are left out: t0 = 0 and lam = 0 are both the MMSE point, and
t0 = T and lam = 1 both coincide with posterior sampling."""


def _label_values(ax, method: str, values, D, P) -> list:
    """The :data:`LABELLED` knob values as label requests for :func:`dptheory.plotting.place_labels`, which places
    them without overlaps (DPS's points bunch up)."""
    if method not in LABELLED:
        return []
    name = {"map-rps": "$t_0$", "vsrd": "$\\lambda$", "dps": "$\\zeta$"}[method]
    return [(ax, x, y, f"{name}={v:g}", STYLE[method][0])
            for v, x, y in zip(values, D, P, strict=True) if v in LABELLED[method]]


X_RANGE = (0.85, 2.5)
"""The D axis spans ``X_RANGE * D*`` (posterior sampling sits at 2 D*): points further right are listed in a box,
so that one far point (DAPS with few Langevin steps, say) does not squeeze the rest into a corner."""


def _off_panel_note(ax, off: list) -> None:
    if off:
        lines = [f"{STYLE[m][2].split(' over ')[0].split(' (')[0]} {v}: ({x:.2f}, {y:.2f})" for m, v, x, y in off]
        ax.text(0.98, 0.97, "off the panel (D, P):\n" + "\n".join(lines), transform=ax.transAxes, ha="right",
                va="top", fontsize=6.5, color="0.3", bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))


def _panel(ax, sweeps: dict, form: str, floor=None) -> list:
    key = "per_measurement" if form == "per-measurement" else "joint"
    curve = dpt.DPCurve(**sweeps["vsrd"][f"curve_{key}"])
    x_lo, x_hi = X_RANGE[0] * curve.mmse_error, X_RANGE[1] * curve.mmse_error
    p_top, labels, off = 0.0, [], []
    for method, (color, marker, label) in STYLE.items():
        tr = sweeps[method]
        pts = tr[key]
        D = [p["distortion"] for p in pts]
        P = [p["perception"] for p in pts]
        mc = any(p["distortion_stderr"] > 0 for p in pts)
        size = 13 if marker == "*" else 5
        ax.errorbar(D, P, xerr=[p["distortion_stderr"] for p in pts] if mc else None,
                    yerr=[p["perception_stderr"] for p in pts] if mc else None, color=color, marker=marker,
                    markersize=size, linewidth=1.2, capsize=2, label=label,
                    zorder=3, clip_on=True)
        inside = [i for i, x in enumerate(D) if x <= x_hi]
        off += [(method, f"{tr['knob']}={tr['values'][i]}", D[i], P[i]) for i in range(len(D)) if i not in inside]
        p_top = max([p_top] + [P[i] + pts[i]["perception_stderr"] for i in inside])
        labels += _label_values(ax, method, [tr["values"][i] for i in inside], [D[i] for i in inside],
                                [P[i] for i in inside])
    plotting.draw_dp_curve(ax, curve, p_max=1.1 * max(p_top, curve.w),
                           label=f"optimal {form} curve" + ("" if curve.exact else " (MC)"))
    if floor is not None:
        ax.axhspan(0, floor["value"] + floor["stderr"], color="0.8", alpha=0.6, zorder=0,
                   label="floor of the sample W2")
    target = "$p(x\\mid y)$" if form == "per-measurement" else "$p_X$"
    x_label = "MSE $E[\\|X-\\hat X\\|^2\\mid y]$" if form == "per-measurement" else "MSE $E\\|X-\\hat X\\|^2$"
    ax.set(xlabel=x_label + " (a.u.$^2$)", ylabel=f"W2 to {target} (a.u.)", xlim=(x_lo, x_hi),
           ylim=(0, 1.08 * max(p_top, 0.6 * curve.w)))
    _off_panel_note(ax, off)
    return labels


def plot(d: dict):
    fig, axes = plotting.figure(2, 2, figsize=(13.0, 10.5))
    rows = (("G2", "Gaussian G2, exact laws", "$y$ = 0.7"),
            ("B1", "mixture B1 ($\\sigma$ = 0.5), Monte Carlo", "$y$ = -0.6"))
    labels = []
    for r, (name, what, y_fixed) in enumerate(rows):
        for k, form in enumerate(("per-measurement", "joint")):
            floor = d[name].get("w2_floor", {}).get(form)
            labels += _panel(axes[r, k], d[name], form, floor)
            given = y_fixed if form == "per-measurement" else "$y \\sim p(y)$"
            axes[r, k].set_title(f"({'abcd'[2 * r + k]}) {what}: {form}, {given}", fontsize=10.5)
    handles: dict = {}
    for ax in (axes[0, 0], axes[0, 1], axes[1, 0]):  # methods and the exact curves, the MC curve, the floor
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=5, fontsize=8,
               title="error bars: $\\pm$1 SE (Monte Carlo row); labels: knob values", title_fontsize=8)
    plotting.place_labels(fig, labels, fontsize=7)
    return fig


def _params(data: dict, quick: bool) -> dict:
    """The sidecar's parameters."""
    b = data["B1"]
    params = {"schedule": "linear, T = 1000",
              "G2": "prior N((.3,-.2), [[1,.6],[.6,.8]]), A = [1, .5], sigma = .3, y = .7; exact laws",
              "G2 map-rps": "stage 2 exact kernels from x_map = mu(Y) (MAP = MMSE)",
              "B1": "0.5 N(-1, .05) + 0.5 N(1, .05), A = 1, sigma = .5, y = -.6; Monte Carlo",
              "B1 map-rps": f"stage 1 AdamW, {b['iters']} iterations, Bayes weight, t1 = 10; stage 2 exact "
                            "posterior kernels",
              "vsrd": "exact kernel, start from the exact diffused posterior",
              "dps": "norm='squared' (ideal DPS), DDPM fixedsmall, start N(0, I)",
              "B1_n": b["n"], "B1_parts": b["parts"], "B1_steps": b["steps"],
              "peers": {m: f"{knob} in {vals} (B1: {mc_vals}), {kn}" for m, (knob, vals, mc_vals, kn) in PEERS.items()}}
    return params


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
