"""Figure ``image_dp_photo_unet``: MAP-RPS over t0, VSRD over lam and DPS with the trained photo UNet on held-out crops.

Claims (image-scale, network backbone): MRPS-2 (MAP-RPS's t0 moves the output from the MAP, sharp in distortion,
towards posterior sampling, sharp in perception), MRPS-1 (the MAP stage beats the ``A^+ y`` baseline), WANG-3
(VSRD's lam traverses the plane between its lam = 0 and lam = 1 ends).

Setting. Backbone: the project's UNet (:func:`~dptheory.images.backbones.load_photo_unet`: eps-prediction with a
v-prediction expert for the high-noise steps, VP linear T = 1000, trained on 32 x 32 crops of the bundled photos
WITHOUT astronaut and coffee). MAP-RPS's stage 1 (t1 = 50) and its t0 sweep stay below the expert's switch step, so
only DPS, VSRD and the peers meet the expert. Test images: ``n``
32 x 32 crops of the two held-out photos (resized so the short side is 64-192 px, as in training; seeded).
Tasks (:func:`~dptheory.images.operators.make_task`, one operator shared by the crops): ``sr4`` (4 x 4 average
pooling), ``inpaint-random`` (70 % of the pixels missing), ``blur-gauss`` (61 x 61 Gaussian, sigma 3 px, circular)
and ``cs`` (25 % of the orthonormal DCT coefficients), all with sigma_y = 0.05 in model units [-1, 1].

Methods (:func:`~dptheory.images.problem.solve_image`, one particle per crop): MAP-RPS over t0 (stage 1: AdamW with
the Bayes prior weight at ``t1 = 50`` (:data:`~dptheory.images.backbones.photo_unet.PHOTO_UNET_MAP_T1`), ``iters``
steps; stage 2: DPS with zeta = 1, the official stage-2 step for sr4 and inpainting, from t0 down to 0 at every
step, which is already 3.3 times DPS's guidance per unit of t below). Stage 1 does not depend on t0, so it runs ONCE
per task and every t0 re-noises the same MAP (:func:`map_rps_sweep`, a transcription of
:func:`~dptheory.samplers.map_rps`'s stage 2); each point still reports the NFE and time of a full MAP-RPS run
(stage 1 + its stage 2), and the t0 points differ only by their stage 2 (a paired comparison). VSRD over lam (VSRD's
small kernel with the DPS conditional score, unsquared norm: ``dps(..., lam=lam)``, the ancestral noise variance
scaled by lam; respaced), with the network's DPS step
(:func:`~dptheory.images.backbones.photo_unet.photo_unet_dps_zeta`: zeta = 3 at 32 px and 100 steps, chosen on crops
of the training photos; zeta = 1 under-guides this network). lam = 1 IS DPS. The squared-norm guided conditional
denoiser inside ``vsrd`` (plug-in or PiGDM likelihood) multiplies the network's Jacobian error by ``(1 - ab) / (ab
sigma_y^2)`` at high noise: NaN or under 5 dB with the eps network alone for every zeta >= 0.1, finite with the pair
but far more sensitive to zeta than DPS (model card, "Guidance"). With a network no sampler is an exact posterior
sampler; DPS is the usual stand-in. The exact-prior figure ``image_dp_traversal`` places the same solvers against
exact D-P curves. At lam = 0 the path carries no noise, its ``x_t`` leave the network's training distribution and
the output degrades (higher SWD and lower PSNR than lam = 0.5; below ``A^+ y`` on sr4): VSRD's lam sweep needs lam >
0 on a network.

Axes. Distortion: PSNR (dB, data range 2) and MSE per pixel against the ground truth, mean +- 1 SE over crops.
Perception: SWD (Karras et al.'s sliced Wasserstein on Laplacian-pyramid patches, fixed projections) between
the restorations and their ground-truth crops (the same crops, so a perfect restoration scores 0; two DISJOINT
sets of held-out crops of this size score far higher, e.g. 0.24 for n = 6, so no "floor" applies), errors
+- 1 bootstrap SE (crops resampled in both sets together). The sidecar's ``checks`` give SWD(t0) - SWD(MAP) with
a PAIRED bootstrap SE (all sets resampled together), which is what decides whether SWD falls along t0. No exact
W2 exists for a network prior, so the MSE-W2 plane is left to the exact figure. Every point shows its NFE
(network calls; a batch counts once). The wall time per image (the batch time divided by ``n``) is recorded in
the sidecar only (``seconds_per_image``, with the torch thread count in ``params``), so the figure itself does not
change from machine to machine.

Row 1 zooms on MAP-RPS's t0 sweep (the ``A^+ y`` baseline is drawn there only when it falls near the sweep;
otherwise its numbers are written in the panel's corner). Row 2 shows both sweeps and the baseline; the clumped
MAP-RPS points carry labels only at their two ends.

Peers (:data:`CONFIG` ``peers``): DDRM, DiffPIR, PiGDM and DAPS with the same network as the prior denoiser, one
point each at their default knobs (DDRM at the paper's 20 NFE), drawn on the "all" panels.

Bottom rows: one crop per task: the truth, ``A^+ y``, MAP-RPS from the MAP (t0 = 0) to the largest t0, VSRD at
lam = 0 and lam = 1 (DPS).
"""

from __future__ import annotations

import math

import torch

from dptheory import plotting
from dptheory.estimate import Estimate
from dptheory.images.backbones import load_photo_unet
from dptheory.images.backbones.photo_unet import PHOTO_UNET_MAP_T1, photo_unet_dps_zeta
from dptheory.images.metrics import psnr, swd
from dptheory.images.operators import make_task
from dptheory.images.problem import ImageInverseProblem, solve_image
from dptheory.images.train import HELD_OUT, PhotoCrops

NAME = "image_dp_photo_unet"
CLAIMS = ("MRPS-1", "MRPS-2", "WANG-3")
SEED = 20261125
SIGMA_Y = 0.05
SIZE = 32
TEST_SCALES = (64, 96, 128, 192)
ALL_TASKS = ("sr4", "inpaint-random", "blur-gauss", "cs")  # task k draws from generator SEED + 101 k
WEIGHTS = None  # None: the committed weights (tests may point this elsewhere)

CONFIG = {
    True: dict(n=6, iters=60, t0s=[0, 100], lams=[0.0, 1.0], steps=50, boot=10, tasks=("sr4",),
               peers={"ddrm": dict(steps=10), "diffpir": dict(steps=10), "pigdm": dict(steps=10),
                      "daps": dict(steps=5, ode_steps=2, langevin_steps=50)}),
    False: dict(n=16, iters=150, t0s=[0, 50, 100, 250], lams=[0.0, 0.5, 1.0], steps=100, boot=30,
                tasks=("sr4", "inpaint-random", "blur-gauss", "cs"),
                peers={"ddrm": dict(steps=20), "diffpir": dict(steps=100), "pigdm": dict(steps=100),
                       "daps": dict(steps=100, ode_steps=2, langevin_steps=100)}),
}
"""``peers``: one point each for DDRM (the paper's 20 NFE, eta 0.85, eta_b 1), DiffPIR (lam 1, zeta 0.3), PiGDM
(reference-code guidance, eta 1) and DAPS (Langevin lr 1e-4 decayed to 1e-6, r_t = sigma_t), all with their
default knobs apart from the grid."""
SWD_KW = dict(patches_per_image=32, n_projections=256)
STYLE = {  # method -> (colour, marker, label)
    "map-rps": (plotting.COLORS["map-rps"], "s", "MAP-RPS over $t_0$ (stage 2: DPS)"),
    "vsrd": (plotting.COLORS["vsrd"], "o", "VSRD over $\\lambda$ with DPS guidance ($\\lambda$=1: DPS)"),
    "ddrm": ("tab:brown", "v", "DDRM"),
    "diffpir": ("tab:pink", "D", "DiffPIR"),
    "pigdm": ("tab:olive", "P", "PiGDM"),
    "daps": ("tab:cyan", "X", "DAPS"),
}
KNOB = {"map-rps": "t0", "vsrd": "lam", "ddrm": "steps", "diffpir": "steps", "pigdm": "steps", "daps": "steps"}
SYMBOL = {"map-rps": "$t_0$", "vsrd": "$\\lambda$", "ddrm": "steps", "diffpir": "steps", "pigdm": "steps",
          "daps": "levels"}


def _swd(a, b) -> float:
    """SWD with fixed projections and patch positions (seeded generator)."""
    return float(swd(a, b, generator=torch.Generator().manual_seed(1), **SWD_KW))


def _bootstrap(stat, n: int, *, boot: int, gen) -> dict:
    """``stat(all crops)`` with the std of ``stat(idx)`` over ``boot`` resamples ``idx`` of the ``n`` crops."""
    reps = [stat(torch.randint(n, (n,), generator=gen)) for _ in range(boot)]
    return {"value": stat(slice(None)), "stderr": float(torch.tensor(reps).std()) if boot > 1 else 0.0}


def swd_estimate(x, ref, *, boot: int, gen) -> dict:
    """:func:`_swd` of ``x`` to ``ref`` with a bootstrap SE (the same crops resampled in both sets)."""
    return _bootstrap(lambda i: _swd(x[i], ref[i]), x.shape[0], boot=boot, gen=gen)


def swd_difference(a, b, ref, *, boot: int, gen) -> dict:
    """``SWD(a, ref) - SWD(b, ref)`` with a PAIRED bootstrap SE (the same crops resampled in all three sets), which
    removes the crop-to-crop spread the two SWDs share."""
    return _bootstrap(lambda i: _swd(a[i], ref[i]) - _swd(b[i], ref[i]), ref.shape[0], boot=boot, gen=gen)


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    """Mean and SE of per-image values in their own dtype (:meth:`Estimate.from_samples`)."""
    return Estimate.from_samples(v, dtype=None).as_pair()


def held_out_crops(n: int, seed: int) -> torch.Tensor:
    """``n`` 32 x 32 crops of the held-out photos (:data:`~dptheory.images.train.HELD_OUT`)."""
    return PhotoCrops(HELD_OUT, SIZE, TEST_SCALES).sample(n, torch.Generator().manual_seed(seed))


def _knobs(method: str, value, cfg: dict) -> dict:
    if method == "map-rps":
        return {"t0": int(value), "iters": cfg["iters"], "t1": PHOTO_UNET_MAP_T1}
    return {"lam": float(value), "steps": cfg["steps"], "zeta": dps_zeta(cfg["steps"])}  # VSRD, DPS guidance


def dps_zeta(steps: int) -> float:
    """DPS's guidance step for this network, crop size and step count (3 at 32 px and 100 steps; 6 at 50)."""
    return photo_unet_dps_zeta(SIZE, SIZE, steps)


def _point(sol, x, cfg, gen) -> dict:
    err = (sol.x - x).square().flatten(1).mean(1)
    return {"psnr_db": _mean_se(psnr(sol.x, x)), "mse": _mean_se(err), "swd": swd_estimate(sol.x, x, boot=cfg["boot"],
            gen=gen), "nfe": sol.nfe, "seconds_per_image": sol.seconds / x.shape[0], "seconds_batch": sol.seconds}


def map_rps_sweep(problem, y, den, schedule, cfg: dict, gen) -> dict:
    """MAP-RPS at every ``cfg["t0s"]`` from ONE stage-1 MAP: ``{t0: ImageSolution}``.

    Stage 2 is :func:`~dptheory.samplers.map_rps`'s: ``x_t0 = sqrt(abar(t0)) x_MAP + sqrt(1 - abar(t0)) z`` and DPS
    (unsquared norm, zeta 1, every step) from t0 to 0. NFE and seconds of each entry are stage 1's plus its own
    stage 2's, the cost of a full MAP-RPS run at that t0.
    """
    import time

    from dptheory.images.problem import CountingDenoiser, ImageSolution
    from dptheory.samplers import dps

    first = solve_image(problem, y, "map-rps", den, schedule=schedule, generator=gen, **_knobs("map-rps", 0, cfg))
    out = {}
    for t0 in cfg["t0s"]:
        if t0 == 0:
            out[t0] = first
            continue
        start, counted = time.perf_counter(), CountingDenoiser(den)
        ab0 = float(schedule.alpha_bar(t0))
        x_t0 = math.sqrt(ab0) * first.x + math.sqrt(1.0 - ab0) * torch.randn(first.x.shape, generator=gen,
                                                                              dtype=first.x.dtype)
        x = dps(counted, x_t0, schedule, operator=problem.operator, y=y, sigma_y=problem.sigma_y, zeta=1.0,
                norm="l2", t_start=t0, generator=gen).detach()
        out[t0] = ImageSolution(x=x, nfe=first.nfe + counted.counter.n,
                                seconds=first.seconds + time.perf_counter() - start, method="map-rps",
                                exact_conditional=False)
    return out


def run_task(task: str, x: torch.Tensor, den, schedule, cfg: dict, gen, bar=None) -> dict:
    op, _ = make_task(task, tuple(x.shape[1:]), gen)
    problem = ImageInverseProblem(op, SIGMA_Y)
    y = problem.measure(x, gen)
    x_pinv = problem.pinv(y)
    out = {"baseline": {"psnr_db": _mean_se(psnr(x_pinv, x)), "mse": _mean_se((x_pinv - x).square().flatten(1).mean(1)),
                        "swd": swd_estimate(x_pinv, x, boot=cfg["boot"], gen=gen)},
           "methods": {}, "images": {"x": x[0], "A^+ y": x_pinv[0]}}
    sweeps = {"map-rps": cfg["t0s"], "vsrd": cfg["lams"]}
    outputs = {}
    for method, values in sweeps.items():
        rows = []
        sweep = map_rps_sweep(problem, y, den, schedule, cfg, gen) if method == "map-rps" else {}
        if bar is not None and method == "map-rps":
            bar.update(1)
        for v in values:
            if method == "map-rps":
                sol = sweep[v]
            else:
                sol = solve_image(problem, y, "dps", den, schedule=schedule, generator=gen, **_knobs(method, v, cfg))
                if bar is not None:
                    bar.update(1)
            outputs[method, v] = sol.x
            rows.append({KNOB[method]: v, **_point(sol, x, cfg, gen)})
            if method == "map-rps" or v in (values[0], values[-1]):
                out["images"][f"{method} {KNOB[method]}={v:g}"] = sol.x[0]
        out["methods"][method] = rows
    for method, knobs in cfg["peers"].items():  # one point per peer sampler, prior denoiser, default knobs
        sol = solve_image(problem, y, method, den, schedule=schedule, generator=gen, **knobs)
        out["methods"][method] = [{"steps": knobs["steps"], **_point(sol, x, cfg, gen)}]
    t0 = out["methods"]["map-rps"]
    out["checks"] = {
        "map_psnr_minus_baseline_db": t0[0]["psnr_db"][0] - out["baseline"]["psnr_db"][0],
        "swd_map": t0[0]["swd"]["value"], "swd_largest_t0": t0[-1]["swd"]["value"],
        "swd_falls_along_t0": t0[-1]["swd"]["value"] < t0[0]["swd"]["value"],
        # SWD(t0) - SWD(MAP) for every t0 > 0, with the paired bootstrap SE
        "swd_minus_map": {str(v): swd_difference(outputs["map-rps", v], outputs["map-rps", cfg["t0s"][0]], x,
                                                 boot=cfg["boot"], gen=gen) for v in cfg["t0s"][1:]},
    }
    return out


def parts(quick: bool) -> list:
    """The tasks, computed independently (each with its own generator), so ``dptheory reproduce --jobs`` runs
    them in parallel."""
    return list(CONFIG[quick]["tasks"])


def compute_part(quick: bool, task: str) -> dict:
    """One task's sweeps: the same held-out crops for every task, a generator seeded from the task."""
    from tqdm.auto import tqdm

    cfg = CONFIG[quick]
    den, schedule = load_photo_unet(WEIGHTS)
    x = held_out_crops(cfg["n"], SEED)
    gen = torch.Generator().manual_seed(SEED + 101 * ALL_TASKS.index(task))
    with tqdm(total=1 + len(cfg["lams"]), desc=f"{NAME} {task}", unit="sweep", leave=False) as bar:
        return run_task(task, x, den, schedule, cfg, gen, bar)


def combine(quick: bool, results: dict) -> dict:
    """The figure's data from ``{task: compute_part(quick, task)}``, in the order of :func:`parts`."""
    return {"n": CONFIG[quick]["n"], "tasks": {t: results[t] for t in parts(quick)}}


def compute(quick: bool) -> dict:
    return combine(quick, {t: compute_part(quick, t) for t in parts(quick)})


# ---------------------------------------------------------------------------------------------- plot
def _extent(rows) -> tuple[float, float, float, float]:
    """``(x_lo, x_hi, y_lo, y_hi)`` of points with their error bars."""
    xs = [r["psnr_db"][0] + sgn * r["psnr_db"][1] for r in rows for sgn in (-1, 1)]
    ys = [r["swd"]["value"] + sgn * r["swd"]["stderr"] for r in rows for sgn in (-1, 1)]
    return min(xs), max(xs), min(ys), max(ys)


def _plane(ax, res: dict, methods=tuple(STYLE), zoom: bool = False):
    rows_all = [r for m in methods for r in res["methods"][m]]
    b = res["baseline"]
    x_lo, x_hi, y_lo, y_hi = _extent(rows_all)
    bx, by = b["psnr_db"][0], b["swd"]["value"]
    near = (x_lo - (x_hi - x_lo) <= bx <= x_hi + (x_hi - x_lo)) and (y_lo - (y_hi - y_lo) <= by <= y_hi + (y_hi - y_lo))
    show_baseline = not zoom or near
    if show_baseline:
        bl, bh, cl, ch = _extent([b])
        x_lo, x_hi, y_lo, y_hi = min(x_lo, bl), max(x_hi, bh), min(y_lo, cl), max(y_hi, ch)
    points = []
    for method in methods:
        color, marker, label = STYLE[method]
        rows = res["methods"][method]
        ps = [r["psnr_db"][0] for r in rows]
        sw = [r["swd"]["value"] for r in rows]
        peer = method not in ("map-rps", "vsrd")
        if peer:  # one point per peer: its budget goes into the legend instead of a label in every panel
            label = f"{label} ({SYMBOL[method]}={rows[0][KNOB[method]]:g}, {rows[0]['nfe']} NFE)"
        ax.errorbar(ps, sw, xerr=[r["psnr_db"][1] for r in rows], yerr=[r["swd"]["stderr"] for r in rows],
                    color=color, marker=marker, markersize=5, capsize=2, linewidth=1.2, label=label)
        for i, (r, px, s) in enumerate(zip(rows, ps, sw, strict=True)):
            if zoom or (not peer and (method != "map-rps" or i in (0, len(rows) - 1))):  # row 2: MAP-RPS's ends
                points.append((ax, px, s, f"{SYMBOL[method]}={r[KNOB[method]]:g} ({r['nfe']} NFE)", color))
    ax.errorbar([bx], [by], xerr=[b["psnr_db"][1]], yerr=[b["swd"]["stderr"]], color="0.3", marker="x",
                markersize=6, linestyle="none", label="$A^+y$ baseline")
    if not show_baseline:
        ax.text(0.02, 0.98, f"$A^+y$ off the axes:\n{bx:.2f} dB, SWD {by:.3f}", transform=ax.transAxes, ha="left",
                va="top", fontsize=7, color="0.3")
    dx, dy = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0
    ax.set_xlim(x_lo - 0.3 * dx, x_hi + 0.3 * dx)
    ax.set_ylim(y_lo - 0.15 * dy, y_hi + 0.2 * dy)
    ax.set(xlabel="PSNR to $x$ (dB)  [right is better]", ylabel="SWD to the true crops  [lower is better]")
    return points


def _to_img(t: torch.Tensor):
    return ((t.detach().to(torch.float64).clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def _label(key: str) -> str:
    if key.startswith("map-rps"):
        t0 = key.split("=")[1]
        return f"MAP-RPS $t_0$={t0}" + (" (MAP)" if t0 == "0" else "")
    if key.startswith("vsrd"):
        lam = key.split("=")[1]
        return "VSRD $\\lambda$=" + lam + (" (DPS)" if lam == "1" else "")
    return {"x": "truth $x$", "A^+ y": "$A^+y$"}[key]


def plot(d: dict):
    tasks = list(d["tasks"])
    n_img = len(d["tasks"][tasks[0]]["images"])
    fig, _ = plotting.figure(0, figsize=(max(4.2 * len(tasks), 1.25 * n_img), 8.4 + 1.45 * len(tasks)))
    gs = fig.add_gridspec(2 + len(tasks), len(tasks), height_ratios=[4.0, 4.0] + [1.45] * len(tasks))
    panel = iter("abcdefghijkl")
    labels_to_place = []
    for row, (methods, what) in enumerate(((("map-rps",), "MAP-RPS over $t_0$"), (tuple(STYLE), "all"))):
        for k, task in enumerate(tasks):
            ax = fig.add_subplot(gs[row, k])
            labels_to_place += _plane(ax, d["tasks"][task], methods, zoom=row == 0)
            ax.set_title(f"({next(panel)}) {task}: {what}", fontsize=10)
            if row == 1 and k == 0:
                handles, labels = ax.get_legend_handles_labels()
    for r, task in enumerate(tasks):
        imgs = d["tasks"][task]["images"]
        sub = gs[2 + r, :].subgridspec(1, len(imgs), wspace=0.04)
        for i, (key, im) in enumerate(imgs.items()):
            ax = fig.add_subplot(sub[0, i])
            ax.imshow(_to_img(im), interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(_label(key) if r == 0 else "", fontsize=7.5, fontweight="normal")
            if i == 0:
                ax.text(-0.08, 0.5, task, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=8)
    fig.legend(handles, labels, loc="outside upper center", ncol=4 if len(tasks) > 2 else 2, fontsize=8.5,
               title=f"trained photo UNet, {d['n']} held-out 32x32 crops (astronaut, coffee), $\\sigma_y$={SIGMA_Y}; "
                     "+-1 SE",
               title_fontsize=8.5)
    plotting.place_labels(fig, labels_to_place)
    return fig


def _strip_images(d: dict) -> dict:
    """The sidecar keeps the numbers, not the images."""
    return {**d, "tasks": {t: {k: v for k, v in r.items() if k != "images"} for t, r in d["tasks"].items()}}


def _params(data: dict, quick: bool) -> dict:
    return {**CONFIG[quick], "sigma_y": SIGMA_Y, "size": SIZE, "held_out_photos": list(HELD_OUT),
            "test_scales": list(TEST_SCALES), "swd": SWD_KW, "backbone": "photo-unet (committed weights)",
            "map-rps": f"stage 1 AdamW, Bayes weight, t1 = {PHOTO_UNET_MAP_T1}, lr 0.5; stage 2 DPS zeta 1, every "
                       "step from t0",
            "vsrd": f"dps(lam=...): small kernel, noise variance x lam, DPS guidance norm l2 zeta "
                    f"{dps_zeta(CONFIG[quick]['steps']):g} (photo_unet_dps_zeta), respaced",
            "threads": torch.get_num_threads()}


def main(argv=None, *, data=None, seconds: float = 0.0) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params, sidecar_data=_strip_images, data=data, seconds=seconds)


if __name__ == "__main__":
    raise SystemExit(main())
