"""Figure ``image_dp_exact_scale``: exact D-P traversals on held-out photo crops at 32-256 px, with no Monte Carlo.

Claims: IMG-1 (MAP-RPS's t0 traverses from the MAP to posterior sampling, above the per-measurement optimal curve,
with a per-pixel gap that does not depend on the resolution), WANG-3 (VSRD's lambda lies on the per-measurement
curve) and BMF-4 (neither reaches the joint curve except at the MMSE end), at image scale.

Setting. A stationary Gaussian prior (power law fitted to 64 px crops of every bundled photo except the held-out
astronaut and coffee), the held-out astronaut box ``(64, 128, 256, 256)`` cropped at its own resolution to 32, 64,
128 and 256 px (RGB), and the tasks blur-gauss, blur-motion, sr4 (4 x 4 average pooling) and denoise of the image
task table. Every operator is block-diagonal in the 2-D DFT, so the exact laws of VSRD (exact kernel, ``N(0, I)``
start) over lambda and MAP-RPS (stage-1 fixed point, exact posterior kernels) over t0 follow in closed form
(:mod:`dptheory.images.spectral_laws`), as do both optimal curves. Left: the per-measurement plane at the largest
size; middle: the joint plane (largest size only); right: MAP-RPS's per-measurement gap ``D - D_y(P)`` over ``D*_y``
against t0, one line per resolution (the numbers of claim IMG-1, from the same call). The extra panel checks the
exact laws against Monte Carlo runs of the actual samplers (VSRD and posterior sampling through ``solve_image`` with
the exact spectral denoiser) at 64 px, with +-1 SE. Per pixel: MSE / d and W2 / sqrt(d) in model units [-1, 1].
"""

from __future__ import annotations

import math
import resource
import time

import torch
from matplotlib.ticker import MaxNLocator

from dptheory import plotting
from dptheory.claims.image_scale import HELD_OUT, LAMS, SEED, T0S, fit_photo_prior, held_out_crop, scale_study
from dptheory.images.operators import make_task
from dptheory.images.problem import ImageInverseProblem, solve_image
from dptheory.images.spectral import SpectralDenoiser
from dptheory.images.spectral_laws import BlockSpectralProblem

NAME = "image_dp_exact_scale"
CLAIMS = ("IMG-1", "WANG-3", "BMF-4")
MC = {True: dict(size=32, n=128, steps=50), False: dict(size=64, n=256, steps=100)}
SIZE_COLORS = {32: "#bdd7e7", 64: "#6baed6", 128: "#3182bd", 256: "#08519c"}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def monte_carlo_check(quick: bool) -> dict:
    """VSRD (lam = 0.25, 1) and posterior sampling run by ``solve_image`` against their exact per-measurement laws."""
    cfg = MC[quick]
    size = cfg["size"]
    prior = fit_photo_prior().at_size(size, size)
    op, sigma_y = make_task("blur-gauss", (3, size, size), torch.Generator().manual_seed(SEED))
    bp = BlockSpectralProblem(prior, op, sigma_y)
    x = held_out_crop(size)
    y = op.A(x[None])[0] + sigma_y * torch.randn(bp.out_shape, generator=torch.Generator().manual_seed(SEED + 1),
                                                 dtype=torch.float64)
    mu, d = bp.mmse(y), bp.dim
    problem, den = ImageInverseProblem(op, sigma_y), SpectralDenoiser(prior)
    rows = []
    for method, knobs, law in (("vsrd", {"lam": 0.25}, bp.vsrd_law(0.25, y=y)),
                               ("vsrd", {"lam": 1.0}, bp.vsrd_law(1.0, y=y)),
                               ("posterior", {}, bp.posterior_law(y))):
        out = solve_image(problem, y[None], method, den, n_samples=cfg["n"], steps=cfg["steps"],
                          generator=torch.Generator().manual_seed(SEED + 2), **knobs).x
        dev = (out - mu).square().flatten(1).sum(1) / d + bp.mmse_error() / d
        mean, se = float(dev.mean()), float(dev.std() / math.sqrt(dev.numel()))
        exact = law.mse() / d
        rows.append({"method": method, **knobs, "D_y_mc": mean, "D_y_mc_stderr": se, "D_y_exact": exact,
                     "z": (mean - exact) / se, "P_y_exact": law.w2() / math.sqrt(d)})
    return {"size": size, "n": cfg["n"], "steps": cfg["steps"], "task": "blur-gauss", "rows": rows,
            "curve": {"D_star": bp.mmse_error() / d, "W": math.sqrt(bp.mmse_error() / d)}}


def compute(quick: bool) -> dict:
    from tqdm.auto import tqdm

    from dptheory.claims.image_scale import RESOLUTIONS, TASKS

    n_cells = len(RESOLUTIONS[quick]) * len(TASKS[quick])
    bar = tqdm(total=n_cells, desc=f"{NAME}: task x size", leave=False)
    start = time.perf_counter()
    study = scale_study(quick, joint=True, kl=True, progress=bar.update)
    bar.close()
    seconds = time.perf_counter() - start
    mc = monte_carlo_check(quick)
    cost = {task: {str(size): {"seconds": res.pop("seconds"), "points": len(LAMS) + len(T0S) + 1}
                   for size, res in by_size.items()} for task, by_size in study.items()}
    return {"tasks": {t: {str(s): r for s, r in v.items()} for t, v in study.items()}, "monte_carlo": mc,
            "cost": cost, "seconds_study": seconds, "max_rss_mb": _max_rss_mb()}


def _plane(ax, res: dict, form: str) -> None:
    curve = res["curves"][form]
    W = curve["W"]
    P = torch.linspace(0, 1.15 * max(W, max(r[form]["perception"] for r in res["vsrd"])), 200)
    D = curve["D_star"] + (W - P).clamp_min(0).square()
    ax.plot(D, P, color="k", lw=1.6, label="optimal curve (exact)")
    for method, key, sym in (("vsrd", "lam", "$\\lambda$"), ("map_rps", "t0", "$t_0$")):
        rows = res[method]
        color = plotting.COLORS["vsrd" if method == "vsrd" else "map-rps"]
        ax.plot([r[form]["distortion"] for r in rows], [r[form]["perception"] for r in rows],
                marker="o" if method == "vsrd" else "s", ms=4, lw=1.2, color=color,
                label=("VSRD over " if method == "vsrd" else "MAP-RPS over ") + sym + " (exact law)")
        for r in (rows[0], rows[-1]):
            ax.annotate(f"{sym}={r[key]:g}", (r[form]["distortion"], r[form]["perception"]), fontsize=7,
                        xytext=(4, 3 if method == "vsrd" else -9), textcoords="offset points", color=color)
    post = res["posterior"][form]
    ax.plot(post["distortion"], post["perception"], "*", ms=10, color=plotting.COLORS["posterior"],
            label="posterior sampling")
    ax.set_xlabel("MSE per pixel")
    ax.xaxis.set_major_locator(MaxNLocator(5))  # small MSEs have long tick labels
    ax.set_ylabel("W2 per $\\sqrt{\\mathrm{pixel}}$")


SIZE_STYLES = {32: ("o", "-"), 64: ("s", "--"), 128: ("^", "-."), 256: ("D", ":")}


def _gap_panel(ax, by_size: dict) -> None:
    for size, res in by_size.items():
        dstar = res["curves"]["per_measurement"]["D_star"]
        rows = res["map_rps"][1:]  # t0 = 0 on a log axis is left out (its gap is the stage-1 offset)
        marker, ls = SIZE_STYLES.get(int(size), (".", "-"))
        ax.plot([r["t0"] for r in rows], [r["per_measurement"]["gap"] / dstar for r in rows], marker=marker,
                ls=ls, ms=5, mfc="none", color=SIZE_COLORS.get(int(size), "0.4"), label=f"{size} px")
    ax.set_xscale("log")
    ax.set_xlabel("$t_0$ (MAP-RPS re-noising step)")
    ax.set_ylabel("gap $(D - D_y(P)) / D^*_y$")
    ax.legend(fontsize=7, loc="upper right", title="resolution", title_fontsize=7)


def _mc_panel(ax, mc: dict) -> None:
    c = mc["curve"]
    P = torch.linspace(0, 1.1 * c["W"], 100)
    ax.plot(c["D_star"] + (c["W"] - P).clamp_min(0).square(), P, color="k", lw=1.4, label="per-measurement curve")
    for r in mc["rows"]:
        color = plotting.COLORS["vsrd" if r["method"] == "vsrd" else "posterior"]
        lab = f"{r['method']}" + (f" $\\lambda$={r['lam']:g}" if "lam" in r else "")
        ax.plot(r["D_y_exact"], r["P_y_exact"], "o", mfc="none", color=color, ms=9)
        ax.errorbar(r["D_y_mc"], r["P_y_exact"], xerr=r["D_y_mc_stderr"], fmt="x", color=color,
                    label=f"{lab}: MC z = {r['z']:+.1f}")
    ax.set_xlabel("MSE per pixel")
    ax.xaxis.set_major_locator(MaxNLocator(5))  # small MSEs have long tick labels
    ax.set_ylabel("W2 per $\\sqrt{\\mathrm{pixel}}$ (exact)")
    ax.legend(fontsize=7, loc="upper right")


def plot(d: dict):
    tasks = list(d["tasks"])
    fig, _ = plotting.figure(0, figsize=(15, 3.9 * len(tasks) + 4.2))
    gs = fig.add_gridspec(len(tasks) + 1, 3)
    panel = iter("abcdefghijklmnop")
    handles = labels = None
    for r, task in enumerate(tasks):
        by_size = d["tasks"][task]
        big = max(by_size, key=int)
        for k, form in enumerate(("per_measurement", "joint")):
            ax = fig.add_subplot(gs[r, k])
            _plane(ax, by_size[big], form)
            if handles is None:
                handles, labels = ax.get_legend_handles_labels()
            ax.set_title(f"({next(panel)}) {task}, {big} px: {form.replace('_', '-')} plane", fontsize=10)
        ax = fig.add_subplot(gs[r, 2])
        _gap_panel(ax, by_size)
        ax.set_title(f"({next(panel)}) {task}: MAP-RPS gap vs $t_0$ per resolution", fontsize=10)
    ax = fig.add_subplot(gs[len(tasks), 0])
    mc = d["monte_carlo"]
    _mc_panel(ax, mc)
    ax.set_title(f"({next(panel)}) check: exact law (o) vs Monte Carlo (x, $\\pm$1 SE), {mc['task']} "
                 f"{mc['size']} px, n = {mc['n']}", fontsize=9)
    ax = fig.add_subplot(gs[len(tasks), 1])
    _kl_panel(ax, d["tasks"][tasks[0]])
    ax.set_title(f"({next(panel)}) {tasks[0]}: KL(posterior $\\|$ estimate) per pixel, exact", fontsize=9)
    ax = fig.add_subplot(gs[len(tasks), 2])
    _scaling_panel(ax, d["tasks"])
    ax.set_title(f"({next(panel)}) peak MAP-RPS gap over $D^*_y$ against resolution", fontsize=9)
    fig.legend(handles, labels, loc="outside upper center", ncol=4, fontsize=8.5)
    return fig


def _kl_panel(ax, by_size: dict) -> None:
    big = max(by_size, key=int)
    res = by_size[big]
    for method, sym in (("vsrd", "$\\lambda$"), ("map_rps", "$t_0$")):
        rows = [r for r in res[method] if math.isfinite(r["per_measurement"]["kl"])]
        color = plotting.COLORS["vsrd" if method == "vsrd" else "map-rps"]
        ax.plot([r["per_measurement"]["distortion"] for r in rows], [r["per_measurement"]["kl"] for r in rows],
                marker="o" if method == "vsrd" else "s", ms=4, color=color,
                label=("VSRD over " if method == "vsrd" else "MAP-RPS over ") + sym + f" ({big} px)")
    ax.set_yscale("log")
    ax.set_ylim(1e-8, None)
    ax.set_xlabel("MSE per pixel")
    ax.xaxis.set_major_locator(MaxNLocator(5))  # small MSEs have long tick labels
    ax.set_ylabel("KL per pixel (nats)")
    ax.legend(fontsize=7, title="t0 = 0 is a point mass (KL = inf); lam = 0 keeps an O(abar_T) spread",
              title_fontsize=6.5)


def _scaling_panel(ax, tasks: dict) -> None:
    for task, by_size in tasks.items():
        sizes = sorted(by_size, key=int)
        peaks = [max(r["per_measurement"]["gap"] for r in by_size[s]["map_rps"])
                 / by_size[s]["curves"]["per_measurement"]["D_star"] for s in sizes]
        ax.plot([int(s) for s in sizes], peaks, marker="o", label=task)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("crop size (px)")
    ax.set_ylabel("max over $t_0$ of gap / $D^*_y$")
    ax.set_ylim(0, 1.25 * ax.get_ylim()[1])
    ax.legend(fontsize=7, loc="lower right")


def _params(data: dict, quick: bool) -> dict:
    return {"held_out": list(HELD_OUT), "crop": "astronaut box (64, 128, 256, 256), centred sub-crops, native "
            "resolution", "prior": "SpectralGaussianPrior.fit_power_law on 400 64 px crops of the other photos",
            "t0s": list(T0S), "lams": list(LAMS), "schedule": "linear, T = 1000",
            "vsrd": "exact kernel, N(0, I) start (closed-form end law)",
            "map-rps": "stage-1 expected-gradient fixed point (Bayes weight, t1 = 10), exact posterior kernels",
            "kl": "per-measurement KL(posterior || estimate) per pixel; inf at singular laws",
            "monte_carlo": MC[quick]}


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
