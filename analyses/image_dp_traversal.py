"""Figure ``image_dp_traversal``: the D-P traversals of MAP-RPS, VSRD, DPS and posterior sampling on photo-sized images.

Claims (image-scale analogues): MRPS-2 (MAP-RPS's t0 moves from the MAP towards posterior sampling), WANG-3 (VSRD's
lam traverses the per-measurement curve for a Gaussian posterior), BMF-4 (neither traversal reaches the JOINT
optimal curve except at the MMSE end).

Setting. The prior is the stationary Gaussian of :class:`~dptheory.images.spectral.SpectralGaussianPrior`, a power
law fitted (``fit_power_law``) to random crops of the bundled photos EXCEPT ``skimage:astronaut``, whose crop is
the held-out image of the bottom row. Full: 32 x 32 RGB crops; quick: 16 x 16 grey. Tasks: ``blur-gauss`` (a
Gaussian kernel 11 x 11, sigma 2 px, circular boundary) and ``denoise`` (A = I), both with sigma_y = 0.05 in
model units [-1, 1]. The circulant operators make every law exact and diagonal in the 2-D DFT
(:class:`~dptheory.images.spectral.SpectralLinearProblem`): D*, W, the joint curve ``D(P) = D* + ((W - P)_+)^2``,
the per-measurement curve ``D_y(P) = D*_y + ((sqrt(D*_y) - P)_+)^2`` and the joint-optimal estimator.

Each method point runs :func:`~dptheory.images.problem.solve_image` with the EXACT prior denoiser
(:class:`~dptheory.images.spectral.SpectralDenoiser`; ``solve_image`` builds the exact conditional denoiser with
``.condition``, which takes one measurement per particle) twice:

- joint form: ``n`` joint draws ``x ~ prior``, ``y = A x + noise``, ONE particle per ``y``;
  D = mean ``||x^ - x||^2`` per pixel (+-1 SE over particles), P = W2(law of x^, prior);
- per-measurement form: the held-out crop's ``y``, ``n`` particles; D = ``D*_y + mean ||x^ - mu_y||^2`` per pixel
  (exact identity: X | y is independent of X^ | y), P = W2(law of x^ | y, posterior).

W2 is a DIAGONAL FRECHET ESTIMATE: the output covariance of a stationary (translation-equivariant) solver is
diagonal in the DFT, so per-coefficient variances ``v^[k]`` are estimated from the samples and the commuting
Gaussian formula ``W2^2 = ||m^ - m||^2 + sum_k (sqrt(v^[k]) - sqrt(v[k]))^2`` is used. Joint form: the target's
``m, v`` are the SAME estimates on the paired ground truths ``x`` (per-channel means), which cancels most of the
sampling noise of the well-observed coefficients (against the exact prior spectrum the DC coefficient alone, with
the brightness spread of the photos, gave a floor of ~0.05 at n = 96, half of W); per-measurement form: the exact
posterior ``N(mu_y, Sigma)``, with the mean term bias-corrected by ``- tr Cov^ / n``. The estimate ignores
non-Gaussianity (MAP-RPS's AdamW and DPS are nonlinear) and is biased UPWARD for small ``n`` (about
``sqrt(tr v / 4n)``); the grey band is this floor (the same estimator on exact posterior draws, 3 replicates),
where exact samplers land. Errors on P are +-1 bootstrap SE (particles, or pairs, resampled). Gaps to the
curves (``D - D_curve(P)``, MSE per pixel at equal P) are reported both with the raw P and with the floor removed
(``P_debiased = sqrt((P^2 - floor^2)_+)``). W2 is per sqrt(pixel) (W2 / sqrt(d)) and MSE per pixel, so both are
in model units.

Methods: MAP-RPS over t0 (stage 1: AdamW with the Bayes weight; stage 2: exact posterior kernels for t0 steps),
VSRD over lam (exact kernel, respaced steps), DPS (unsquared l2 norm, respaced; zeta in {1, 3},
quick {1}: at 100 steps a smaller zeta under-guides, e.g. zeta = 0.3 gave a joint MSE 2.5-25x D*) and posterior sampling
(exact kernels, respaced steps; exact for any respacing), which must land at (2 D*_y, ~0) per measurement: the
sidecar records ``posterior_check`` and the test asserts it within 4 SE. Right column: SWD (Karras et al.'s
sliced Wasserstein on Laplacian-pyramid patches, against held-out prior draws: a weight-free perception proxy)
against PSNR (dB, data range 2) of the joint runs. Its grey band is the SWD of ``n`` fresh EXACT prior draws to
the same held-out set (mean +- 1 SD over ``SWD_REPLICATES`` fresh sets, drawn with a separate generator so the
other numbers do not move): what a perfect sampler would score, and the band's width is the sampling noise of one
point (each point's SWD comes from one set of ``n`` outputs). It is a reference level, NOT a floor: the SWD
estimate (a finite number of patches and projections) is no proper divergence at this ``n``, and a set of outputs
can sit closer to the reference set than exact draws do, so points can fall below the band (in the full run,
MAP-RPS's t0 = 20, 50, 200 on blur-gauss, 2-3.5 band-SDs below; with 5 draws the SD itself is uncertain by about
a third) without being "better than exact sampling". Points inside the band are indistinguishable from exact
sampling; only points well above it (the MAP ends t0 = 0 and lam = 0 on blur-gauss, about 9 SDs above) are
measurably worse in SWD; the zig-zag of the curves is at the band's scale, i.e. noise and this bias, not a trend.
Bottom row: the held-out crop, its blurred measurement, the MAP-RPS traversal from the MAP (t0 = 0) to posterior
sampling, and the optimal estimators at the P of MAP-RPS's middle t0 (per-measurement:
shrunk posterior sample; joint: Freirich et al.'s estimator).
"""

from __future__ import annotations

import math

import torch

from dptheory import plotting
from dptheory.dp_curve import DPCurve
from dptheory.estimate import Estimate
from dptheory.images.data import photo_patches
from dptheory.images.metrics import frechet_diag_squared, psnr, swd
from dptheory.images.operators import Blur, Denoising, gaussian_kernel
from dptheory.images.problem import ImageInverseProblem, solve_image
from dptheory.images.spectral import SpectralDenoiser, SpectralGaussianPrior, SpectralLinearProblem

NAME = "image_dp_traversal"
CLAIMS = ("MRPS-2", "WANG-3", "BMF-4")
SEED = 20261124
HELD_OUT = "skimage:astronaut"
SIGMA_Y = 0.05
KERNEL = (11, 2.0)  # Gaussian blur: size (px), sigma (px)

CONFIG = {
    True: dict(size=16, channels=1, n=192, n_fit=400, steps=25, iters=100, t0s=[0, 50], lams=[0.0, 1.0],
               zetas=[1.0], boot=20, tasks=("blur-gauss", "denoise")),
    False: dict(size=32, channels=3, n=128, n_fit=2000, steps=100, iters=150, t0s=[0, 20, 50, 100, 200],
                lams=[0.0, 0.25, 0.5, 1.0], zetas=[1.0, 3.0], boot=40, tasks=("blur-gauss", "denoise")),
}
SWD_KW = dict(patches_per_image=16, n_projections=128)  # SWD cost: a sort of (n * patches) x projections
SWD_REPLICATES = 5  # fresh sets of exact prior draws for the SWD reference band
STYLE = {  # method -> (colour, marker, label)
    "map-rps": (plotting.COLORS["map-rps"], "s", "MAP-RPS over $t_0$"),
    "vsrd": (plotting.COLORS["vsrd"], "o", "VSRD over $\\lambda$"),
    "dps": (plotting.COLORS["dps"], "^", "DPS over $\\zeta$"),
    "posterior": (plotting.COLORS["posterior"], "*", "posterior sampling"),
}
KNOB = {"map-rps": "t0", "vsrd": "lam", "dps": "zeta", "posterior": "steps"}
SYMBOL = {"map-rps": "$t_0$", "vsrd": "$\\lambda$", "dps": "$\\zeta$"}


# ---------------------------------------------------------------------------------------------- estimators
def w2_estimate(x, *, boot: int, gen, ref=None, mean=None, power=None) -> dict:
    """:func:`frechet_diag_squared` as W2 per sqrt(pixel), with a bootstrap SE (pairs resampled together)."""
    d = x[0].numel()

    def one(idx):
        r = None if ref is None else ref[idx]
        return math.sqrt(max(frechet_diag_squared(x[idx], ref=r, mean=mean, power=power), 0.0) / d)

    est = one(slice(None))
    reps = [one(torch.randint(x.shape[0], (x.shape[0],), generator=gen)) for _ in range(boot)]
    return {"value": est, "stderr": float(torch.tensor(reps).std()) if boot > 1 else 0.0}


def _swd(a, b) -> float:
    """:func:`~dptheory.images.metrics.swd` with fixed projections and patch positions (seeded generator)."""
    return float(swd(a, b, generator=torch.Generator().manual_seed(1), **SWD_KW))


# ---------------------------------------------------------------------------------------------- setting
def make_operator(task: str):
    if task == "blur-gauss":
        return Blur(gaussian_kernel(*KERNEL), "circular", tol=0.1)
    if task == "denoise":
        return Denoising()
    raise ValueError(task)


def fit_prior(cfg: dict, gen) -> tuple[SpectralGaussianPrior, torch.Tensor]:
    """The power-law prior fitted to crops of every bundled photo but :data:`HELD_OUT`, and one held-out crop."""
    crops = photo_patches(cfg["size"], cfg["n_fit"], gen, exclude=(HELD_OUT,), channels=cfg["channels"])
    prior = SpectralGaussianPrior.fit_power_law(crops.to(torch.float64))
    show = photo_patches(cfg["size"], 1, torch.Generator().manual_seed(3), photos=(HELD_OUT,),
                         channels=cfg["channels"])
    return prior, show.to(torch.float64)


def _solve(problem, y, method, den, value, cfg, gen, n_samples=1):
    knobs = {"steps": cfg["steps"]}
    if method == "map-rps":
        knobs = {"t0": int(value), "iters": cfg["iters"]}
    elif method == "vsrd":
        knobs["lam"] = float(value)
    elif method == "dps":
        knobs["zeta"] = float(value)
    return solve_image(problem, y, method, den, n_samples=n_samples, generator=gen, **knobs)


def _w2_floors(lin, post, mu_y, n: int, gen) -> dict:
    """Floors of the W2 estimator: the same estimate on exact target draws of the same size (3 replicates)."""
    floor_j, floor_y = [], []
    for _ in range(3):
        x, yj = lin.sample_joint(n, generator=gen)
        floor_j.append(w2_estimate(lin.posterior(yj).sample(n, generator=gen), ref=x, boot=0, gen=gen)["value"])
        draws = post.sample(n, generator=gen)
        floor_y.append(w2_estimate(draws, mean=mu_y, power=post.power, boot=0, gen=gen)["value"])
    return {"joint": Estimate.from_samples(torch.tensor(floor_j), dtype=None).as_pair(),
            "per_measurement": Estimate.from_samples(torch.tensor(floor_y), dtype=None).as_pair()}


def _measure_point(method, v, lin, problem, den, y_show, post, ref, cfg, gen):
    """One knob value: the joint point (fresh (x, y) pairs) and the per-measurement point (``n`` draws for
    ``y_show``), per pixel; returns ``(row, per-measurement draws)``."""
    d, mu_y = lin.prior.dim, post.mean
    x, yj = lin.sample_joint(cfg["n"], generator=gen)
    sj = _solve(problem, yj, method, den, v, cfg, gen)
    err = (sj.x - x).square().flatten(1).mean(1)
    Dj, Dj_se = Estimate.from_samples(err, dtype=None).as_pair()
    Pj = w2_estimate(sj.x, ref=x, boot=cfg["boot"], gen=gen)
    sy = _solve(problem, y_show, method, den, v, cfg, gen, n_samples=cfg["n"])
    dev = (sy.x - mu_y).square().flatten(1).mean(1)
    Dy, Dy_se = Estimate.from_samples(dev, dtype=None).as_pair()
    Dy += lin.mmse_error() / d
    Py = w2_estimate(sy.x, mean=mu_y, power=post.power, boot=cfg["boot"], gen=gen)
    row = {KNOB[method]: v,
           "joint": {"distortion": Dj, "distortion_stderr": Dj_se, "perception": Pj["value"],
                     "perception_stderr": Pj["stderr"]},
           "per_measurement": {"distortion": Dy, "distortion_stderr": Dy_se, "perception": Py["value"],
                               "perception_stderr": Py["stderr"]},
           "psnr_db": Estimate.from_samples(psnr(sj.x, x), dtype=None).as_pair(),
           "swd": _swd(sj.x, ref),
           "nfe": sj.nfe, "seconds_joint": sj.seconds, "seconds_per_measurement": sy.seconds}
    return row, sy.x


def _add_gaps(row: dict, curves: dict, floors: dict) -> None:
    """The gap to each curve, raw and with the estimator's floor removed in quadrature."""
    for form, curve in curves.items():
        p = row[form]
        p_deb = math.sqrt(max(p["perception"] ** 2 - floors[form][0] ** 2, 0.0))
        p["perception_debiased"] = p_deb
        p["gap"] = p["distortion"] - float(curve.distortion(torch.tensor(p["perception"])))
        p["gap_debiased"] = p["distortion"] - float(curve.distortion(torch.tensor(p_deb)))


def _optimal_at_map_rps(out: dict, lin, pm_curve, y_show, cfg, gen) -> None:
    """The optimal estimators at the P of MAP-RPS's middle t0 (joint and per-measurement forms)."""
    d = lin.prior.dim
    t_mid = cfg["t0s"][len(cfg["t0s"]) // 2]
    mid = next(r for r in out["methods"]["map-rps"] if r["t0"] == t_mid)
    Pj = mid["joint"]["perception_debiased"] * math.sqrt(d)
    Py = mid["per_measurement"]["perception_debiased"] * math.sqrt(d)
    opt_j = lin.joint_optimal_estimator(Pj)
    out["optimal_at_map_rps"] = {
        "t0": t_mid,
        "joint": {"perception": Pj / math.sqrt(d), "distortion": opt_j.distortion() / d,
                  "map_rps_distortion": mid["joint"]["distortion"]},
        "per_measurement": {"perception": Py / math.sqrt(d),
                            "distortion": float(pm_curve.distortion(torch.tensor(Py / math.sqrt(d)))),
                            "map_rps_distortion": mid["per_measurement"]["distortion"]},
    }
    out["images"]["joint-optimal"] = opt_j(y_show, generator=gen)[0]
    out["images"]["per-measurement optimal"] = lin.shrunk_posterior_samples(y_show, Py, 1, generator=gen)[0]


def _posterior_check(out: dict, lin, floors: dict) -> dict:
    """Posterior sampling must land at (2 D*, ~floor) in both forms."""
    pt = out["methods"]["posterior"][0]["per_measurement"]
    two_d = 2 * lin.mmse_error() / lin.prior.dim
    return {
        "D_y": pt["distortion"], "D_y_stderr": pt["distortion_stderr"], "2D*_y": two_d,
        "z": (pt["distortion"] - two_d) / pt["distortion_stderr"],
        "P_y": pt["perception"], "P_y_stderr": pt["perception_stderr"], "P_floor": floors["per_measurement"][0],
        "D_joint": out["methods"]["posterior"][0]["joint"]["distortion"],
        "D_joint_stderr": out["methods"]["posterior"][0]["joint"]["distortion_stderr"], "2D*_joint": two_d,
    }


def run_task(task: str, prior, x_show, cfg: dict, gen) -> dict:
    from tqdm.auto import tqdm

    op = make_operator(task)
    lin = SpectralLinearProblem(prior, op, SIGMA_Y)
    problem = ImageInverseProblem(op, SIGMA_Y)
    den = SpectralDenoiser(prior)
    n, d = cfg["n"], prior.dim
    joint_curve = DPCurve(lin.mmse_error() / d, math.sqrt(lin.mmse_w2_squared() / d), "joint", note="exact (spectral)")
    pm_curve = DPCurve(lin.mmse_error() / d, math.sqrt(lin.mmse_error() / d), "per-measurement",
                       note="exact (spectral)")
    y_show = lin.measure(x_show, generator=gen)
    post = lin.posterior(y_show)
    floors = _w2_floors(lin, post, post.mean, n, gen)
    ref = prior.sample(n, generator=gen)  # held-out prior draws for the SWD
    swd_floor = float(_swd(prior.sample(n, generator=gen), ref))
    gen_ref = torch.Generator().manual_seed(SEED + 1)  # separate stream: the numbers above and below stay put
    swd_ref = torch.tensor([_swd(prior.sample(n, generator=gen_ref), ref) for _ in range(SWD_REPLICATES)])

    sweeps = {"map-rps": cfg["t0s"], "vsrd": cfg["lams"], "dps": cfg["zetas"], "posterior": [cfg["steps"]]}
    out = {"methods": {}, "images": {}}
    curves = {"joint": joint_curve, "per_measurement": pm_curve}
    bar = tqdm(total=sum(map(len, sweeps.values())), desc=f"{NAME} {task}: knob values", leave=False)
    for method, values in sweeps.items():
        rows = []
        for v in values:
            row, x_y = _measure_point(method, v, lin, problem, den, y_show, post, ref, cfg, gen)
            _add_gaps(row, curves, floors)
            rows.append(row)
            if method in ("map-rps", "posterior"):
                out["images"][f"{method} {KNOB[method]}={v}"] = x_y[0]
            bar.update()
        out["methods"][method] = rows
    bar.close()
    _optimal_at_map_rps(out, lin, pm_curve, y_show, cfg, gen)
    out["images"]["x"] = x_show[0]
    out["images"]["y"] = y_show[0]
    out["posterior_check"] = _posterior_check(out, lin, floors)
    out.update(curve_joint={"D_star": joint_curve.mmse_error, "W": joint_curve.w},
               curve_per_measurement={"D_star": pm_curve.mmse_error, "W": pm_curve.w},
               w2_floor={k: {"value": v[0], "stderr": v[1]} for k, v in floors.items()}, swd_floor=swd_floor,
               swd_exact_draws={"mean": float(swd_ref.mean()), "sd": float(swd_ref.std()), "values": swd_ref},
               d=d)
    return out


def compute(quick: bool) -> dict:
    cfg = CONFIG[quick]
    gen = torch.Generator().manual_seed(SEED)
    prior, x_show = fit_prior(cfg, gen)
    law = prior.law
    data = {"prior": {"alpha": law.alpha, "f0": law.f0, "amplitude": law.amplitude, "mean": prior._mean.reshape(-1),
                      "mean_var": prior.mean_var},
            "tasks": {t: run_task(t, prior, x_show, cfg, gen) for t in cfg["tasks"]}}
    return data


# ---------------------------------------------------------------------------------------------- plot
def _dp_panel(ax, res: dict, form: str) -> list:
    """One D-P plane. The axes frame the curves and the non-DPS points; DPS points outside are listed in a note
    (with few steps DPS can land far from everything else)."""
    curve = DPCurve(res[f"curve_{form}"]["D_star"], res[f"curve_{form}"]["W"], form.replace("_", "-"))
    other = "per_measurement" if form == "joint" else "joint"
    oc = DPCurve(res[f"curve_{other}"]["D_star"], res[f"curve_{other}"]["W"], other.replace("_", "-"))
    framed = [r[form] for m, rows in res["methods"].items() if m != "dps" for r in rows]
    d_max = 1.2 * max(max(p["distortion"] + p["distortion_stderr"] for p in framed), 2 * curve.mmse_error)
    p_max = 1.12 * max(max(p["perception"] + p["perception_stderr"] for p in framed), curve.w)
    outside, labels = [], []
    for method, (color, marker, label) in STYLE.items():
        rows = res["methods"][method]
        pts = [r[form] for r in rows]
        D = [p["distortion"] for p in pts]
        P = [p["perception"] for p in pts]
        ax.errorbar(D, P, xerr=[p["distortion_stderr"] for p in pts], yerr=[p["perception_stderr"] for p in pts],
                    color=color, marker=marker, markersize=12 if marker == "*" else 5, capsize=2, label=label, zorder=3,
                    linewidth=1.2, linestyle="none" if method == "dps" else "-")  # zeta is no D-P knob: no line
        for r, x, y in zip(rows, D, P, strict=True):
            if x > d_max or y > p_max:
                outside.append(f"DPS $\\zeta$={r['zeta']:g}: ({x:.4f}, {y:.3f})")
            elif method in SYMBOL:
                labels.append((ax, x, y, f"{SYMBOL[method]}={r[KNOB[method]]:g}", color))
    plotting.draw_dp_curve(ax, curve, p_max=p_max, label=f"optimal {form.replace('_', '-')} curve")
    plotting.draw_dp_curve(ax, oc, p_max=p_max, label=f"optimal {other.replace('_', '-')} curve", alpha=0.35)
    fl = res["w2_floor"][form]
    ax.axhspan(0, fl["value"] + fl["stderr"], color="0.8", alpha=0.6, zorder=0, label="floor of the W2 estimate")
    opt = res["optimal_at_map_rps"][form]
    ax.plot([opt["distortion"]], [opt["perception"]], marker="P", color="k", markersize=8, linestyle="none",
            zorder=4, label=f"optimal estimator (of the panel's form) at the P of MAP-RPS "
                                f"$t_0$={res['optimal_at_map_rps']['t0']} (floor removed)")
    if outside:
        ax.text(0.98, 0.6, "off the panel (D, P):\n" + "\n".join(outside), transform=ax.transAxes, ha="right",
                va="center", fontsize=7, color=STYLE["dps"][0])
    target = "$p(x\\mid y)$" if form == "per_measurement" else "$p_X$"
    xl = "MSE per pixel $E[\\|X-\\hat X\\|^2\\mid y]/d$" if form == "per_measurement" else \
        "MSE per pixel $E\\|X-\\hat X\\|^2/d$"
    ax.set(xlabel=xl + " (model units$^2$)", ylabel=f"W2 to {target} / $\\sqrt{{d}}$ (model units)",
           xlim=(0.9 * curve.mmse_error, d_max), ylim=(0, p_max))
    return labels


def _swd_panel(ax, res: dict):
    for method, (color, marker, label) in STYLE.items():
        rows = res["methods"][method]
        ps = [r["psnr_db"][0] for r in rows]
        ax.errorbar(ps, [r["swd"] for r in rows], xerr=[r["psnr_db"][1] for r in rows], color=color,
                    marker=marker, markersize=12 if marker == "*" else 5, linewidth=1.2, capsize=2, label=label)
    ref = res.get("swd_exact_draws")
    if ref is None:  # an older sidecar: one pair only
        h = ax.axhline(res["swd_floor"], color="0.5", linestyle=":", label="SWD of exact prior draws")
    else:
        h = ax.axhspan(ref["mean"] - ref["sd"], ref["mean"] + ref["sd"], color="0.8", alpha=0.6, zorder=0,
                       label=f"SWD of exact prior draws to the same set\n(mean +-1 SD over {len(ref['values'])} "
                             "draws): the noise level,\nnot a lower bound")
    ax.set(xlabel="PSNR to $x$ (dB, joint draws)", ylabel="SWD to held-out prior draws (a.u.)")
    ax.legend(handles=[h], loc="best", fontsize=7)


def _to_img(t: torch.Tensor):
    a = ((t.detach().to(torch.float64).clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def _image_row(fig, spec, res: dict, task: str):
    imgs = res["images"]
    order = [("x", "held-out $x$"), ("y", f"$y$ ({task})")]
    order += [(k, k.replace("map-rps t0=", "MAP-RPS $t_0$=").replace("=0", "=0 (MAP)") if k.endswith("=0") else
               k.replace("map-rps t0=", "MAP-RPS $t_0$="))
              for k in imgs if k.startswith("map-rps")]
    order += [(k, "posterior sample") for k in imgs if k.startswith("posterior")]
    t = res["optimal_at_map_rps"]["t0"]
    order += [("per-measurement optimal", f"per-meas. optimal\nat P($t_0$={t})"),
              ("joint-optimal", f"joint optimal\nat P($t_0$={t})")]
    sub = spec.subgridspec(1, len(order), wspace=0.05)
    for i, (k, title) in enumerate(order):
        ax = fig.add_subplot(sub[0, i])
        ax.imshow(_to_img(imgs[k]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8, fontweight="normal")
        ax.set_axis_off()


def plot(d: dict):
    tasks = list(d["tasks"])
    fig, _ = plotting.figure(0, figsize=(15.5, 4.6 * len(tasks) + 3.2))
    gs = fig.add_gridspec(len(tasks) + 1, 3, height_ratios=[4.6] * len(tasks) + [2.2])
    panel = iter("abcdefghij")
    point_labels = []
    for r, task in enumerate(tasks):
        res = d["tasks"][task]
        for k, form in enumerate(("per_measurement", "joint")):
            ax = fig.add_subplot(gs[r, k])
            point_labels += _dp_panel(ax, res, form)
            if r == 0 and k == 0:
                handles, labels = ax.get_legend_handles_labels()
            ax.set_title(f"({next(panel)}) {task}: {form.replace('_', '-')} D-P plane", fontsize=10.5)
        ax = fig.add_subplot(gs[r, 2])
        _swd_panel(ax, res)
        ax.set_title(f"({next(panel)}) {task}: SWD vs PSNR (joint)", fontsize=10.5)
    _image_row(fig, gs[len(tasks), :], d["tasks"][tasks[0]], tasks[0])
    fig.legend(handles, labels, loc="outside upper center", ncol=5, fontsize=8.5,
               title="D-P planes: the panel's own curve is opaque, the other form's is faded; error bars +-1 SE",
               title_fontsize=8.5)
    plotting.place_labels(fig, point_labels)
    return fig


def _strip_images(d: dict) -> dict:
    """The sidecar keeps the numbers, not the images."""
    return {**d, "tasks": {t: {k: v for k, v in r.items() if k != "images"} for t, r in d["tasks"].items()}}


def _params(data: dict, quick: bool) -> dict:
    """The sidecar's parameters."""
    cfg = CONFIG[quick]
    params = {**{k: v for k, v in cfg.items()}, "sigma_y": SIGMA_Y, "held_out_photo": HELD_OUT,
              "blur": f"gaussian_kernel({KERNEL[0]}, {KERNEL[1]}), circular, pinv tol 0.1",
              "schedule": "linear, T = 1000", "prior": "SpectralGaussianPrior.fit_power_law, DC empirical",
              "map-rps": "stage 1 AdamW (Bayes weight, t1 = 10, lr 0.5); stage 2 exact posterior kernels, every "
                         "step from t0",
              "vsrd": "exact kernel, N(0, I) start, respaced", "dps": "norm l2, small variance, respaced",
              "W2": "diagonal Frechet estimate per DFT coefficient, per sqrt(pixel); bootstrap SE",
              "D": "per pixel; per-measurement D = D*_y + mean ||x^ - mu_y||^2"}
    return params


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params, sidecar_data=_strip_images)


if __name__ == "__main__":
    raise SystemExit(main())
