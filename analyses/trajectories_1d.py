"""Figure ``trajectories_1d``: variance-scaled reverse-diffusion trajectories x_T -> x_0 in the 1-D mixture setting.

Claims: WANG-1 (lam = 0 ends at the MMSE: true for a Gaussian posterior, FALSE here), WANG-5 (lam = 1 samples the
posterior, at about twice the MMSE's distortion).

Setting of ``posterior_1d``: the B1 prior ``0.5 N(-1, 0.05) + 0.5 N(1, 0.05)`` (a stand-in for Wang et al.'s
unknown prior), ``y = x + N(0, 0.5^2)``, ``y = -0.6``. VSRD (Wang et al.) runs with the EXACT conditional denoiser
``E[x0 | x_t, y]`` of the GMM posterior and the exact kernel (variant B of docs/theory §5.2) for
``lam = 0, 0.3, 0.8, 1``: ``dpt.solve(problem, y, "vsrd", lam=lam, callback=...)``. The callback
``callback(i, t, x, x0)`` records every particle after every step.

Each panel shows a few dozen trajectories against the diffusion step (reverse time runs left to right). The
right margin shows the exact posterior density, a histogram of the end points of a larger run (``n_end``
particles, same sampler), the MMSE and the MAP. With ``lam = 0`` every particle falls into the dominant mode at
-0.932 (near the MAP -0.933), not onto the MMSE -0.903 (docs/theory §5.3: "lam = 0 -> MMSE" is Gaussian-only); with
``lam = 1`` the end points are posterior samples.

The sidecar holds the trajectories (subsampled to at most 101 time points), the end points and, per lam, the
per-measurement MSE ``E[||X - X^||^2 | y] = tr Cov[X|y] + mean ||X^ - E[X|y]||^2`` with its standard error.
"""

from __future__ import annotations

import torch

import dptheory as dpt
from dptheory import plotting
from dptheory.reference_problems import b1
from dptheory.samplers import vsrd

NAME = "trajectories_1d"
CLAIMS = ("WANG-1", "WANG-5")
SEED = 20250301
LAMS = (0.0, 0.3, 0.8, 1.0)
SIGMA_Y, Y_OBS = 0.5, -0.6


def run_trajectories(prob, y, lam: float, n: int, steps, generator) -> dict:
    """VSRD from ``x_T ~ N(0, 1)`` with a recording callback: times ``(S+1,)`` and paths ``(S+1, n)``.

    Calls the sampler function itself (what ``dpt.solve`` does for ``"vsrd"`` with the exact denoiser), so that
    the start ``x_T`` is ours to record.
    """
    schedule = dpt.linear_schedule()
    grid = schedule.timesteps(steps)
    x_T = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    paths = [x_T[:, 0].clone()]

    def record(i, t, x, x0):
        paths.append(x[:, 0].clone())

    vsrd(dpt.ConditionalExactDenoiser(prob, y), x_T, schedule, lam=lam, kernel="exact", steps=steps,
         generator=generator, callback=record)
    return {"t": torch.tensor(grid), "paths": torch.stack(paths)}


def compute(quick: bool) -> dict:
    prob, y = b1(sigma_y=SIGMA_Y, y=Y_OBS)
    n_paths, n_end = (24, 500) if quick else (40, 4000)
    steps = 200 if quick else None  # None: every step of the T = 1000 linear schedule
    gen = torch.Generator().manual_seed(SEED)
    post = prob.posterior(y)
    mu = float(prob.mmse(y))
    tr = float(prob.posterior_cov_trace(y))
    x_grid = torch.linspace(-3.0, 3.0, 801, dtype=torch.float64)
    out = {"lams": list(LAMS), "mmse": mu, "map": float(prob.map(y)), "posterior_cov_trace": tr,
           "posterior_grid": x_grid, "posterior_pdf": post.log_prob(x_grid.unsqueeze(-1)).exp(), "runs": []}
    for lam in LAMS:
        tr_run = run_trajectories(prob, y, lam, n_paths, steps, gen)
        ends = dpt.solve(prob, y, "vsrd", lam=lam, n_samples=n_end, steps=steps, generator=gen)[:, 0]
        sq = (ends - mu).square()
        mse = dpt.Estimate.from_samples(tr + sq)
        keep = torch.unique(torch.linspace(0, len(tr_run["t"]) - 1, 101).round().long())
        out["runs"].append({
            "lam": lam, "t": tr_run["t"][keep], "paths": tr_run["paths"][keep].T,  # (n_paths, <=101)
            "end_points": ends, "end_mean": float(ends.mean()), "end_std": float(ends.std()),
            "mse_y": mse.value, "mse_y_stderr": mse.stderr, "mse_y_over_trace": mse.value / tr,
        })
    return out


ZOOM = (-1.55, -0.25)


def plot(d: dict):
    import matplotlib

    c = plotting.COLORS
    cmap = matplotlib.colormaps["viridis"]
    fig, _ = plotting.figure(0, figsize=(13.5, 8.0))
    gs = fig.add_gridspec(2, 4, width_ratios=[4, 1.25, 4, 1.25])
    post_max = float(d["posterior_pdf"].max())
    bins = torch.linspace(ZOOM[0], ZOOM[1], 66).numpy()
    grid = d["posterior_grid"].numpy()
    first = None
    y_lim = max(3.0, 1.05 * max(float(run["paths"].abs().max()) for run in d["runs"]))  # no path leaves the axes
    for k, run in enumerate(d["runs"]):
        r, col = k // 2, 2 * (k % 2)
        ax = fig.add_subplot(gs[r, col], sharey=first)
        first = first or ax
        ax_m = fig.add_subplot(gs[r, col + 1])
        color = cmap(0.9 * run["lam"])
        t = run["t"].numpy()
        for path in run["paths"]:
            ax.plot(t, path.numpy(), color=color, linewidth=0.7, alpha=0.55, rasterized=True)
        ax.axhline(d["mmse"], color=c["mmse"], linewidth=1.2, linestyle="--", label=f"MMSE = {d['mmse']:.3f}")
        ax.axhline(d["map"], color=c["map"], linewidth=1.0, linestyle=":", label=f"MAP = {d['map']:.3f}")
        ax.axhspan(*ZOOM, color="0.85", alpha=0.35, zorder=0, label="range of the zoom (right)")
        ax.set_xlim(t.max(), 0)
        ax.set(title=f"$\\lambda$ = {run['lam']:g}: end mean {run['end_mean']:.3f}, "
                     f"MSE$_y$/tr$\\Sigma_y$ = {run['mse_y_over_trace']:.2f}",
               xlabel="diffusion step $t$ (reverse time runs left to right)", ylim=(-y_lim, y_lim),
               ylabel="$x_t$ (a.u.)")

        ax_m.fill_betweenx(grid, d["posterior_pdf"].numpy(), color=c["posterior"], alpha=0.35,
                           label="exact posterior")
        heights, _, _ = ax_m.hist(run["end_points"].numpy(), bins=bins, density=True, orientation="horizontal",
                                  color=color, alpha=0.75, label=f"end points $x_0$\n(n={len(run['end_points'])})")
        top = float(heights.max())
        x_max = 1.1 * max(post_max, top) if top <= 3 * post_max else 1.5 * post_max
        if top > x_max:  # a spike (lam = 0: every end point in one bin) would flatten the posterior: cut, and say so
            ax_m.annotate(f"bar cut:\ndensity {top:.0f}", (x_max, float(run["end_mean"])), xytext=(0.55, 0.2),
                          textcoords="axes fraction", fontsize=7, ha="center",
                          arrowprops=dict(arrowstyle="->", lw=0.6, color="0.2"))
        ax_m.axhline(d["mmse"], color=c["mmse"], linewidth=1.2, linestyle="--")
        ax_m.axhline(d["map"], color=c["map"], linewidth=1.0, linestyle=":")
        ax_m.set(xlim=(0, x_max), ylim=ZOOM, xlabel="density (1/a.u.)", title="zoom at $t = 0$")
        ax_m.yaxis.tick_right()
        ax_m.yaxis.set_label_position("right")
        ax_m.set_ylabel("$x_0$ (a.u.)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=cmap(0.45), linewidth=1,
                      label=f"{len(d['runs'][0]['paths'])} VSRD trajectories (colour: $\\lambda$)"),
               Patch(color="0.85", alpha=0.6, label="range of the zoom (right of each panel)"),
               Patch(color=c["posterior"], alpha=0.35, label="exact posterior $p(x\\mid y)$"),
               Patch(color=cmap(0.45), alpha=0.75,
                     label=f"histogram of {len(d['runs'][0]['end_points'])} end points $x_0$"),
               Line2D([], [], color=c["mmse"], linestyle="--", label=f"MMSE $E[X\\mid y]$ = {d['mmse']:.3f}"),
               Line2D([], [], color=c["map"], linestyle=":", label=f"MAP = {d['map']:.3f}")]
    fig.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=8.5)
    fig.suptitle(f"VSRD with the exact GMM conditional denoiser, B1 prior (stand-in) "
                 f"$\\frac{{1}}{{2}}\\mathcal{{N}}(\\pm 1, \\mathrm{{var}}\\ 0.05)$, $y = {Y_OBS}$, "
                 f"$\\sigma = {SIGMA_Y}$ (noise std)", fontsize=12)
    return fig


def _params(data: dict, quick: bool) -> dict:
    """The sidecar's parameters."""
    params = {"prior": "0.5 N(-1, 0.05) + 0.5 N(1, 0.05) (B1; stand-in for Wang et al.'s unknown prior)",
              "A": 1.0, "sigma_y": SIGMA_Y, "y": Y_OBS, "lams": list(LAMS), "method": "vsrd",
              "kernel": "exact (variant B)", "denoiser": "exact GMM conditional denoiser",
              "schedule": "linear, T = 1000", "steps": 200 if quick else 1000,
              "start": "x_T ~ N(0, 1)", "n_paths": len(data["runs"][0]["paths"]),
              "n_end": len(data["runs"][0]["end_points"])}
    return params


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
