"""Figure ``photo_unet_training``: the model card of the trained photo UNet: loss curves and held-out denoising MSE.

Claims: none of the papers'; this is the evidence behind the default backbone of ``dptheory restore`` (issue 6).

(a) The training logs stored beside the committed weights (``photo_unet32.json`` and, for the high-noise expert,
``photo_unet32_high.json``, written by ``python -m dptheory.images.train``): the training loss (per-pixel MSE of
the network's target, v or eps as the log says, mean over 50 steps, timesteps uniform on the network's range) and
the validation loss of the EMA weights on a FIXED held-out batch (crops of astronaut and coffee, timesteps evenly
spread over the range, fixed noise), so its fall is not sampling noise.

(b) Held-out denoising MSE per pixel of ``E[x0 | x_t]`` against the true crop, at network steps ``i``
(``abar = alpha_bar(i + 1)``), on ``n`` crops of the held-out photos (the same ``x_t`` for every denoiser), for:

- the default network (:func:`~dptheory.images.backbones.load_photo_unet`): the eps network at low noise, the
  v-prediction high-noise expert at high noise, and their MSE-optimal mixture in between
  (:class:`~dptheory.NoiseLevelExperts`, weights chosen on training crops by :mod:`dptheory.images.experts`;
  ``x0 = (x_t - sqrt(1 - abar) eps_theta) / sqrt(abar)``, ``x0 = sqrt(abar) x_t - sqrt(1 - abar) v_theta``);
- the eps network alone at every step (``experts=False``), which fails at the top of the schedule;
- the EXACT denoiser of the empirical law of ``N`` training crops
  (:class:`~dptheory.images.backbones.EmpiricalMixtureDenoiser`): the Bayes denoiser if the world were those
  crops; on held-out crops at low noise it snaps to the nearest training crop and is worse than the identity;
- the exact denoiser of the Gaussian fitted to the same crops (mean, covariance + 1e-3 I;
  :class:`~dptheory.images.problem.GaussianImageDenoiser`), the best linear denoiser for that law;
- yardsticks: the identity ``x_t / sqrt(abar)`` and the constant 0.

Errors are +-1 SE over crops. (c) The networks' MSE relative to the better of the two exact denoisers.
"""

from __future__ import annotations

import torch

from dptheory import NoiseLevelExperts, plotting
from dptheory.images.backbones import EmpiricalMixtureDenoiser, load_photo_unet
from dptheory.images.backbones.photo_unet import PHOTO_UNET_WEIGHTS, photo_unet_log
from dptheory.images.experts import high_expert_path
from dptheory.images.problem import GaussianImageDenoiser
from dptheory.images.train import HELD_OUT, SCALES, PhotoCrops, denoising_mse

NAME = "photo_unet_training"
CLAIMS = ()
SEED = 20261126
WEIGHTS = None  # None: the committed weights (tests may point this elsewhere)
STEPS = [5, 20, 50, 100, 200, 300, 400, 500, 600, 700, 850, 999]
CONFIG = {True: dict(n=32, n_train=1000, gaussian=False), False: dict(n=256, n_train=20000, gaussian=True)}
# quick: no fitted Gaussian (its 3072 x 3072 eigendecomposition takes ~20 s on one core)
LINES = {  # name -> (colour, marker, label)
    "network": (plotting.COLORS["map-rps"], "o", "photo UNet (ours: eps + v high-noise expert)"),
    "eps alone": (plotting.COLORS["dps"], "x", "eps network alone"),
    "empirical": (plotting.COLORS["posterior"], "s", "exact empirical-law denoiser"),
    "gaussian": (plotting.COLORS["vsrd"], "^", "exact fitted-Gaussian denoiser"),
    "identity": ("0.55", "", "identity $x_t/\\sqrt{\\bar\\alpha}$"),
    "zero": ("0.75", "", "constant 0"),
}


def compute(quick: bool) -> dict:
    cfg = CONFIG[quick]
    log = photo_unet_log(WEIGHTS)
    den, schedule = load_photo_unet(WEIGHTS)
    size = int(log["config"]["size"])
    train_crops = PhotoCrops(log["photos"], size, SCALES).sample(cfg["n_train"], torch.Generator().manual_seed(SEED))
    x0 = PhotoCrops(HELD_OUT, size, SCALES).sample(cfg["n"], torch.Generator().manual_seed(SEED + 1))
    denoisers = {"network": den}
    high = None
    if isinstance(den, NoiseLevelExperts):
        denoisers["eps alone"] = den.low
        high = photo_unet_log(high_expert_path(WEIGHTS or PHOTO_UNET_WEIGHTS))
    denoisers["empirical"] = EmpiricalMixtureDenoiser(train_crops)
    if cfg["gaussian"]:
        denoisers["gaussian"] = GaussianImageDenoiser.fit(train_crops)
    mse = denoising_mse(denoisers, x0, schedule, STEPS, torch.Generator().manual_seed(SEED + 2), progress=True)
    exact = [name for name in ("empirical", "gaussian") if name in mse]
    ratio = {net: [[row[0], row[1] / min(mse[e][k][1] for e in exact)] for k, row in enumerate(mse[net])]
             for net in ("network", "eps alone") if net in mse}
    return {"train_loss": log["train_loss"], "val_loss": log["val_loss"], "mse": mse, "ratio_to_best_exact": ratio,
            "training": _training(log),
            "high_expert": None if high is None else {"train_loss": high["train_loss"], "val_loss": high["val_loss"],
                                                      "training": _training(high), **high["expert"]},
            "n": cfg["n"],
            "n_train": cfg["n_train"]}


def _training(log: dict) -> dict:
    return {k: log[k] for k in ("n_params", "seconds", "threads", "torch", "machine", "photos") if k in log} | {
        "steps": log["config"]["steps"], "batch": log["config"]["batch"],
        "prediction": log["config"].get("prediction", "eps"), "init_sha256": log.get("init_sha256"),
        "min_step": log["config"].get("min_step", 0)}


def plot(d: dict):
    fig, axes = plotting.figure(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    t, high = d["training"], d.get("high_expert")
    pred = t.get("prediction", "eps")
    for log, color, what in ((d, plotting.COLORS["map-rps"], f"{pred} network"),
                             (high, plotting.COLORS["per-measurement"], "v expert")):
        if log is None:
            continue
        s, v = zip(*log["train_loss"], strict=True)
        ax.plot(s, v, color=color, lw=1.0, label=f"{what}: training loss (mean of 50 steps)")
        s, v = zip(*log["val_loss"], strict=True)
        ax.plot(s, v, color=color, marker="o", ms=4, lw=1.6, mec="k",
                label=f"{what}: held-out validation loss (EMA, fixed batch)")
    tuned = " (fine-tuned)" if t.get("init_sha256") else ""
    title = (f"(a) {pred}-prediction{tuned}: {t['n_params'] / 1e6:.2f} M params, {t['steps']} x {t['batch']} crops, "
             f"{t['seconds'] / 60:.0f} min on {t['threads']} CPU thread{'s' * (t['threads'] > 1)}")
    if high is not None:
        h = high["training"]
        title += (f"\nv expert: steps {h['min_step']}..999, last fine-tune {h['steps']} x {h['batch']} crops, "
                  f"{h['seconds'] / 60:.0f} min")
    ax.set(yscale="log", xlabel="optimiser step", ylabel="MSE per pixel of the network's target (eps or v)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    for name, (color, marker, label) in LINES.items():
        if name not in d["mse"]:
            continue
        rows = d["mse"][name]
        ax.errorbar([r[0] for r in rows], [r[1] for r in rows], yerr=[r[2] for r in rows], color=color,
                    marker=marker or None, ms=4, lw=1.2, capsize=2, label=label,
                    linestyle="--" if not marker or name == "eps alone" else "-")
    ax.set(xscale="log", yscale="log", xlabel="network step $i$ (noise level)",
           ylabel="MSE per pixel of $E[x_0\\mid x_t]$ (model units$^2$)",
           title=f"(b) held-out denoising MSE,\n{d['n']} crops of astronaut and coffee")
    ax = axes[2]
    ratios = d["ratio_to_best_exact"]
    if isinstance(ratios, list):  # sidecars written before the high-noise expert
        ratios = {"network": ratios}
    for name, rows in ratios.items():
        color, marker, label = LINES[name]
        s, r = zip(*rows, strict=True)
        ax.plot(s, r, color=color, marker=marker, ms=4, label=label, ls="--" if name == "eps alone" else "-")
    ax.axhline(1.0, color="0.5", ls=":")
    if high is not None:
        start, stop = high["knots"][0][0], high["switch_step"]
        for a in axes[1:]:
            if start < stop:
                a.axvspan(start, stop, color="0.85", zorder=0, label=f"steps {start}-{stop - 1}: both networks, mixed")
            a.axvline(stop, color="0.4", ls="-.", lw=0.9, label=f"v expert alone from step {stop}")
    axes[1].legend(fontsize=7)
    ax.legend(fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="network step $i$", ylabel="network MSE / best exact MSE",
           title=f"(c) network / better exact denoiser\n(exact laws of {d['n_train']} training crops)")
    return fig


def _params(data: dict, quick: bool) -> dict:
    return {**CONFIG[quick], "steps": STEPS, "held_out_photos": list(HELD_OUT), "scales": [str(s) for s in SCALES],
            "weights": "committed photo_unet32.pt" if WEIGHTS is None else str(WEIGHTS)}


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
