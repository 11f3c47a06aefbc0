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
Gaussian formula ``W2^2 = ||m^ - m||^2 + sum_k (sqrt(v^[k]) - sqrt(v[k]))^2`` is used (joint: per-channel means;
per-measurement: the mean term is bias-corrected by ``- tr Cov^ / n``). It ignores non-Gaussianity (MAP-RPS's
AdamW and DPS are nonlinear) and is biased UPWARD for small ``n`` (about ``sqrt(tr v / 4n)``); the grey band is
this floor (the estimator on exact target draws of the same size), where exact samplers land. Errors on P are
+-1 bootstrap SE. Gaps to the curves are reported both with the raw P and with the floor removed
(``P_debiased = sqrt((P^2 - floor^2)_+)``). W2 is per sqrt(pixel) (W2 / sqrt(d)) and MSE per pixel, so both are
in model units.

Methods: MAP-RPS over t0 (stage 1: AdamW with the Bayes weight; stage 2: exact posterior kernels for t0 steps),
VSRD over lam (exact kernel, respaced steps), DPS (unsquared l2 norm, small zeta, respaced) and posterior sampling
(exact kernels, respaced steps; exact for any respacing), which must land at (2 D*_y, ~0) per measurement: the
sidecar records ``posterior_check`` and the test asserts it within 4 SE. Right column: SWD (Karras et al.'s
sliced Wasserstein on Laplacian-pyramid patches, against held-out prior draws: a weight-free perception proxy)
against PSNR (dB, data range 2) of the joint runs. Bottom row: the held-out crop, its blurred measurement, the
MAP-RPS traversal from the MAP (t0 = 0) to posterior sampling, and the optimal estimators at the P of MAP-RPS's
middle t0 (per-measurement: shrunk posterior sample; joint: Freirich et al.'s estimator).
"""

from __future__ import annotations

import math

import torch

from dptheory import plotting
from dptheory.dp_curve import DPCurve
from dptheory.images.data import photo_patches
from dptheory.images.metrics import psnr, swd
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
    True: dict(size=16, channels=1, n=96, n_fit=400, steps=25, iters=100, t0s=[0, 50], lams=[0.0, 1.0],
               zetas=[0.3], boot=20, tasks=("blur-gauss", "denoise")),
    False: dict(size=32, channels=3, n=256, n_fit=2000, steps=100, iters=300, t0s=[0, 20, 50, 100, 200],
                lams=[0.0, 0.25, 0.5, 1.0], zetas=[0.1, 0.3], boot=40, tasks=("blur-gauss", "denoise")),
}
STYLE = {  # method -> (colour, marker, label)
    "map-rps": (plotting.COLORS["map-rps"], "s", "MAP-RPS over $t_0$"),
    "vsrd": (plotting.COLORS["vsrd"], "o", "VSRD over $\\lambda$"),
    "dps": (plotting.COLORS["dps"], "^", "DPS over $\\zeta$"),
    "posterior": (plotting.COLORS["posterior"], "*", "posterior sampling"),
}
KNOB = {"map-rps": "t0", "vsrd": "lam", "dps": "zeta", "posterior": "steps"}
SYMBOL = {"map-rps": "$t_0$", "vsrd": "$\\lambda$", "dps": "$\\zeta$"}


# ---------------------------------------------------------------------------------------------- estimators
def _fft(x):
    return torch.fft.fft2(x, norm="ortho")


def frechet_diag_squared(x: torch.Tensor, mean: torch.Tensor, power: torch.Tensor, *, stationary: bool) -> float:
    """Diagonal Fréchet estimate of ``W2^2(law of x, N(mean, F^H diag(power) F))`` from ``x (n, c, h, w)``.

    ``v^[k] = sum_i |F(x_i - m^)_k|^2 / (n - 1)``; ``W2^2 = mean term + sum_k (sqrt(v^[k]) - sqrt(power[k]))^2``.
    ``stationary``: ``m^`` is the per-channel pooled mean and the mean term ``h w sum_c (m^_c - m_c)^2``;
    otherwise ``m^`` is the sample mean image and the mean term ``||m^ - mean||^2 - tr Cov^ / n`` (unbiased).
    """
    n, c, h, w = x.shape
    if stationary:
        m_hat = x.mean(dim=(0, 2, 3)).reshape(c, 1, 1)
        mean_sq = float(h * w * (m_hat - mean.reshape(c, 1, 1)).square().sum())
    else:
        m_hat = x.mean(0)
    u = _fft(x - m_hat)
    v = (u.real.square() + u.imag.square()).sum(0) / (n - 1)
    if not stationary:
        mean_sq = float((m_hat - mean).square().sum()) - float(v.sum()) / n
    return mean_sq + float((v.sqrt() - power.to(v.dtype).sqrt()).square().sum())


def w2_estimate(x, mean, power, *, stationary: bool, boot: int, gen) -> dict:
    """:func:`frechet_diag_squared` as W2 per sqrt(pixel), with a bootstrap SE over the particles."""
    d = x[0].numel()
    est = math.sqrt(max(frechet_diag_squared(x, mean, power, stationary=stationary), 0.0) / d)
    reps = []
    for _ in range(boot):
        idx = torch.randint(x.shape[0], (x.shape[0],), generator=gen)
        reps.append(math.sqrt(max(frechet_diag_squared(x[idx], mean, power, stationary=stationary), 0.0) / d))
    return {"value": est, "stderr": float(torch.tensor(reps).std()) if boot > 1 else 0.0}


def mean_se(v: torch.Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


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


def run_task(task: str, prior, x_show, cfg: dict, gen) -> dict:
    op = make_operator(task)
    lin = SpectralLinearProblem(prior, op, SIGMA_Y)
    problem = ImageInverseProblem(op, SIGMA_Y)
    den = SpectralDenoiser(prior)
    n, d = cfg["n"], prior.dim
    joint_curve = DPCurve(lin.mmse_error() / d, math.sqrt(lin.w_squared() / d), "joint", note="exact (spectral)")
    pm_curve = DPCurve(lin.mmse_error() / d, math.sqrt(lin.mmse_error() / d), "per-measurement",
                       note="exact (spectral)")
    y_show = lin.measure(x_show, gen)
    post = lin.posterior(y_show)
    mu_y = post.mean
    # floors of the W2 estimator: the same estimate on exact target draws of the same size (3 replicates)
    floor_j = [w2_estimate(prior.sample(n, gen), prior._mean, prior.power, stationary=True, boot=0, gen=gen)["value"]
               for _ in range(3)]
    floor_y = [w2_estimate(post.sample(n, gen), mu_y, post.power, stationary=False, boot=0, gen=gen)["value"]
               for _ in range(3)]
    floors = {"joint": mean_se(torch.tensor(floor_j)), "per_measurement": mean_se(torch.tensor(floor_y))}
    ref = prior.sample(n, gen)  # held-out prior draws for the SWD
    swd_floor = float(swd(prior.sample(n, gen), ref, generator=torch.Generator().manual_seed(1)))

    sweeps = {"map-rps": cfg["t0s"], "vsrd": cfg["lams"], "dps": cfg["zetas"], "posterior": [cfg["steps"]]}
    out = {"methods": {}, "images": {}}
    for method, values in sweeps.items():
        rows = []
        for v in values:
            x, yj = lin.sample_joint(n, gen)
            sj = _solve(problem, yj, method, den, v, cfg, gen)
            err = (sj.x - x).square().flatten(1).mean(1)
            Dj, Dj_se = mean_se(err)
            Pj = w2_estimate(sj.x, prior._mean, prior.power, stationary=True, boot=cfg["boot"], gen=gen)
            sy = _solve(problem, y_show, method, den, v, cfg, gen, n_samples=n)
            dev = (sy.x - mu_y).square().flatten(1).mean(1)
            Dy, Dy_se = mean_se(dev)
            Dy += lin.mmse_error() / d
            Py = w2_estimate(sy.x, mu_y, post.power, stationary=False, boot=cfg["boot"], gen=gen)
            row = {KNOB[method]: v,
                   "joint": {"distortion": Dj, "distortion_stderr": Dj_se, "perception": Pj["value"],
                             "perception_stderr": Pj["stderr"]},
                   "per_measurement": {"distortion": Dy, "distortion_stderr": Dy_se, "perception": Py["value"],
                                       "perception_stderr": Py["stderr"]},
                   "psnr_db": mean_se(psnr(sj.x, x)),
                   "swd": float(swd(sj.x, ref, generator=torch.Generator().manual_seed(1))),
                   "nfe": sj.nfe, "seconds_joint": sj.seconds, "seconds_per_measurement": sy.seconds}
            for form, curve in (("joint", joint_curve), ("per_measurement", pm_curve)):
                p = row[form]
                fl = floors[form][0]
                p_deb = math.sqrt(max(p["perception"] ** 2 - fl**2, 0.0))
                p["perception_debiased"] = p_deb
                p["gap"] = p["distortion"] - float(curve.distortion(torch.tensor(p["perception"])))
                p["gap_debiased"] = p["distortion"] - float(curve.distortion(torch.tensor(p_deb)))
            rows.append(row)
            if method in ("map-rps", "posterior"):
                out["images"][f"{method} {KNOB[method]}={v}"] = sy.x[0]
        out["methods"][method] = rows

    # the optimal estimators at the P of MAP-RPS's middle t0 (joint and per-measurement forms)
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
    out["images"]["joint-optimal"] = opt_j(y_show, gen)[0]
    out["images"]["per-measurement optimal"] = lin.shrunk_posterior_samples(y_show, Py, 1, gen)[0]
    out["images"]["x"] = x_show[0]
    out["images"]["y"] = y_show[0]

    pt = out["methods"]["posterior"][0]["per_measurement"]
    two_d = 2 * lin.mmse_error() / d
    out["posterior_check"] = {
        "D_y": pt["distortion"], "D_y_stderr": pt["distortion_stderr"], "2D*_y": two_d,
        "z": (pt["distortion"] - two_d) / pt["distortion_stderr"],
        "P_y": pt["perception"], "P_y_stderr": pt["perception_stderr"], "P_floor": floors["per_measurement"][0],
        "D_joint": out["methods"]["posterior"][0]["joint"]["distortion"],
        "D_joint_stderr": out["methods"]["posterior"][0]["joint"]["distortion_stderr"], "2D*_joint": two_d,
    }
    out.update(curve_joint={"D_star": joint_curve.mmse_error, "W": joint_curve.w},
               curve_per_measurement={"D_star": pm_curve.mmse_error, "W": pm_curve.w},
               w2_floor={k: {"value": v[0], "stderr": v[1]} for k, v in floors.items()}, swd_floor=swd_floor,
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
def _dp_panel(ax, res: dict, form: str):
    curve = DPCurve(res[f"curve_{form}"]["D_star"], res[f"curve_{form}"]["W"], form.replace("_", "-"))
    p_top = curve.w
    for method, (color, marker, label) in STYLE.items():
        rows = res["methods"][method]
        pts = [r[form] for r in rows]
        D = [p["distortion"] for p in pts]
        P = [p["perception"] for p in pts]
        ax.errorbar(D, P, xerr=[p["distortion_stderr"] for p in pts], yerr=[p["perception_stderr"] for p in pts],
                    color=color, marker=marker, markersize=12 if marker == "*" else 5, linewidth=1.2, capsize=2,
                    label=label, zorder=3)
        p_top = max(p_top, *P)
        if method in SYMBOL:
            for r, x, y in zip(rows, D, P, strict=True):
                ax.annotate(f"{SYMBOL[method]}={r[KNOB[method]]:g}", (x, y), textcoords="offset points",
                            xytext=(5, 3), fontsize=6.5, color=color)
    other = "per_measurement" if form == "joint" else "joint"
    oc = DPCurve(res[f"curve_{other}"]["D_star"], res[f"curve_{other}"]["W"], other.replace("_", "-"))
    plotting.draw_dp_curve(ax, curve, p_max=1.15 * p_top, label=f"optimal {form.replace('_', '-')} curve")
    plotting.draw_dp_curve(ax, oc, p_max=1.15 * p_top, label=f"optimal {other.replace('_', '-')} curve (ref.)",
                           alpha=0.35)
    fl = res["w2_floor"][form]
    ax.axhspan(0, fl["value"] + fl["stderr"], color="0.8", alpha=0.6, zorder=0, label="floor of the W2 estimate")
    opt = res["optimal_at_map_rps"][form]
    ax.plot([opt["distortion"]], [opt["perception"]], marker="P", color="k", markersize=8, linestyle="none",
            zorder=4, label=f"optimal estimator at P of $t_0$={res['optimal_at_map_rps']['t0']} (debiased)")
    target = "$p(x\\mid y)$" if form == "per_measurement" else "$p_X$"
    xl = "MSE per pixel $E[\\|X-\\hat X\\|^2\\mid y]/d$" if form == "per_measurement" else \
        "MSE per pixel $E\\|X-\\hat X\\|^2/d$"
    ax.set(xlabel=xl + " (model units$^2$)", ylabel=f"W2 to {target} / $\\sqrt{{d}}$ (model units)", ylim=(0, None))
    ax.legend(loc="upper right", fontsize=6.5)


def _swd_panel(ax, res: dict):
    for method, (color, marker, label) in STYLE.items():
        rows = res["methods"][method]
        ps = [r["psnr_db"][0] for r in rows]
        ax.errorbar(ps, [r["swd"] for r in rows], xerr=[r["psnr_db"][1] for r in rows], color=color,
                    marker=marker, markersize=12 if marker == "*" else 5, linewidth=1.2, capsize=2, label=label)
    ax.axhline(res["swd_floor"], color="0.5", linestyle=":", label="SWD of exact prior draws (floor)")
    ax.set(xlabel="PSNR to $x$ (dB, joint draws)", ylabel="SWD to held-out prior draws (a.u.)")
    ax.legend(loc="best", fontsize=6.5)


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
    fig, _ = plotting.figure(0, figsize=(15.5, 4.6 * len(tasks) + 2.6))
    gs = fig.add_gridspec(len(tasks) + 1, 3, height_ratios=[4.6] * len(tasks) + [2.2])
    panel = iter("abcdefghij")
    for r, task in enumerate(tasks):
        res = d["tasks"][task]
        for k, form in enumerate(("per_measurement", "joint")):
            ax = fig.add_subplot(gs[r, k])
            _dp_panel(ax, res, form)
            ax.set_title(f"({next(panel)}) {task}: {form.replace('_', '-')} D-P plane", fontsize=10.5)
        ax = fig.add_subplot(gs[r, 2])
        _swd_panel(ax, res)
        ax.set_title(f"({next(panel)}) {task}: SWD vs PSNR (joint)", fontsize=10.5)
    _image_row(fig, gs[len(tasks), :], d["tasks"][tasks[0]], tasks[0])
    return fig


def _strip_images(d: dict) -> dict:
    """The sidecar keeps the numbers, not the images."""
    return {**d, "tasks": {t: {k: v for k, v in r.items() if k != "images"} for t, r in d["tasks"].items()}}


def main(argv=None) -> int:
    args = plotting.parse_args(__doc__, argv)
    timer = plotting.Timer()
    data = compute(args.quick)
    cfg = CONFIG[args.quick]
    with plotting.style():
        fig = plot(data)
        params = {**{k: v for k, v in cfg.items()}, "sigma_y": SIGMA_Y, "held_out_photo": HELD_OUT,
                  "blur": f"gaussian_kernel({KERNEL[0]}, {KERNEL[1]}), circular, pinv tol 0.1",
                  "schedule": "linear, T = 1000", "prior": "SpectralGaussianPrior.fit_power_law, DC empirical",
                  "map-rps": "stage 1 AdamW (Bayes weight, t1 = 10, lr 0.5); stage 2 exact posterior kernels, every "
                             "step from t0",
                  "vsrd": "exact kernel, N(0, I) start, respaced", "dps": "norm l2, small variance, respaced",
                  "W2": "diagonal Frechet estimate per DFT coefficient, per sqrt(pixel); bootstrap SE",
                  "D": "per pixel; per-measurement D = D*_y + mean ||x^ - mu_y||^2"}
        plotting.save_figure(fig, NAME, args.out, title=__doc__.splitlines()[0], claims=CLAIMS, params=params,
                             seed=SEED, data=_strip_images(data), quick=args.quick, seconds=timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
