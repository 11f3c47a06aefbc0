"""Figure ``pinwheel``: variance-scaled reverse diffusion on a 2-D pinwheel, with the joint D-P curve it traverses.

Claims: WANG-3 (VSRD traverses the D-P tradeoff with one knob, lam), BMF-4 (the joint D-P curve: posterior
sampling, lam = 1, sits at twice the MMSE error and above the optimal curve).

Data: the pinwheel of Johnson et al. (2016, "Composing graphical models with neural networks", the SVAE code):
5 arms, radial std 0.3, tangential std 0.05, rate 0.25, drawn here with a fixed numpy generator. It is not a
GMM, so we fit one with many components (scikit-learn ``GaussianMixture``, full covariances, fixed seed) and
treat the fit as the exact prior: its scores, denoisers and posteriors are then exact
(``dpt.GaussianMixture(weights, means, covs)``).

Problem: ``Y = a X + N(0, sigma^2 I)`` with ``a = 1`` and ``sigma = 0.4``. Reconstructions: VSRD with the exact
conditional GMM denoiser and the exact kernel, one reconstruction per measurement
(``dpt.solve(problem, Y, "vsrd", lam=lam, steps=...)`` with ``Y`` of shape ``(n, 2)``), for lam = 0, 0.3, 0.8, 1.

D-P curve: ``dpt.traverse(problem, "vsrd", "lam", lams, forms=("joint",), ...)`` (Monte Carlo: the MSE with its
standard error; W2 by exact OT between equal-size parts of the outputs and of prior samples, with the spread over
parts; KL by the nearest-neighbour estimator against the exact prior density) and the optimal joint curve
``D(P) = D* + ((W - P)_+)^2`` (``dpt.optimal_dp_curve``, Monte Carlo). Empirical W2 in 2-D is biased UPWARD: the
grey band is the W2 between two independent prior samples of the same size (the estimator's floor), which is
where posterior sampling (lam = 1, exactly P = 0) lands. The KL panel has no such floor problem.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

import dptheory as dpt
from dptheory import plotting

NAME = "pinwheel"
CLAIMS = ("WANG-3", "BMF-4")
SEED = 20250302
SIGMA_Y, A_SCALE = 0.4, 1.0
LAMS_SHOWN = (0.0, 0.3, 0.8, 1.0)


def pinwheel(n: int, rng: np.random.Generator, radial_std=0.3, tangential_std=0.05, num_classes=5, rate=0.25):
    """``n`` pinwheel points ``(n, 2)`` and their arm labels (Johnson et al. 2016, the SVAE code's generator)."""
    rads = np.linspace(0.0, 2.0 * np.pi, num_classes, endpoint=False)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = rng.integers(num_classes, size=n)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    rotations = np.stack([c, -s, s, c], axis=-1).reshape(-1, 2, 2)
    return np.einsum("ti,tij->tj", features, rotations), labels


def fit_gmm(x: np.ndarray, n_components: int, seed: int):
    """A full-covariance GMM fitted by EM (scikit-learn), returned as an exact :class:`dptheory.GaussianMixture`."""
    from sklearn.mixture import GaussianMixture as SkGMM

    with warnings.catch_warnings():
        # sklearn warns (ConvergenceWarning) if EM stops at max_iter; we record converged_ instead of failing
        warnings.simplefilter("ignore", category=UserWarning)
        sk = SkGMM(n_components, covariance_type="full", random_state=seed, max_iter=1000, reg_covar=1e-5).fit(x)
    w = torch.as_tensor(sk.weights_, dtype=torch.float64)
    prior = dpt.GaussianMixture(w / w.sum(), torch.as_tensor(sk.means_, dtype=torch.float64),
                                torch.as_tensor(sk.covariances_, dtype=torch.float64))
    return prior, {"converged": bool(sk.converged_), "n_iter": int(sk.n_iter_),
                   "mean_log_likelihood_train": float(sk.score(x))}


def w2_floor(prior, n_part: int, parts: int, generator) -> dpt.Estimate:
    """W2 between two independent prior samples of ``n_part`` points each (the empirical-OT floor), over ``parts``
    independent pairs."""
    vals = [math.sqrt(max(float(dpt.empirical_w2_squared(prior.sample(n_part, generator=generator),
                                                         prior.sample(n_part, generator=generator))), 0.0))
            for _ in range(parts)]
    return dpt.Estimate.from_samples(torch.tensor(vals, dtype=torch.float64))


def compute(quick: bool) -> dict:
    rng = np.random.default_rng(SEED)
    n_train, K = (3000, 24) if quick else (8000, 36)
    x_train, labels = pinwheel(n_train, rng)
    prior, fit_info = fit_gmm(x_train, K, SEED)
    prob = dpt.LinearInverseProblem(prior, A_SCALE * torch.eye(2, dtype=torch.float64), SIGMA_Y)
    gen = torch.Generator().manual_seed(SEED)
    steps = 100
    n_show = 500 if quick else 1500
    x, y = prob.sample_joint(n_show, generator=gen)
    recon = {lam: dpt.solve(prob, y, "vsrd", lam=lam, steps=steps, generator=gen) for lam in LAMS_SHOWN}
    lams = (0.0, 0.3, 0.8, 1.0) if quick else (0.0, 0.1, 0.3, 0.5, 0.8, 1.0)
    n_mc, parts = (900, 3) if quick else (4500, 3)
    trav = dpt.traverse(prob, "vsrd", "lam", lams, forms=("joint",), n=n_mc, replicates=parts, generator=gen,
                        steps=steps)
    floor = w2_floor(prior, n_mc // parts, parts, gen)
    return {
        "train": torch.as_tensor(x_train[:2000]), "train_labels": torch.as_tensor(labels[:2000]),
        "gmm": {"weights": prior.weights, "means": prior.means, "covs": prior.covs, **fit_info},
        "x": x, "y": y, "reconstructions": {f"lam={lam:g}": r for lam, r in recon.items()},
        "traversal": trav.to_dict(), "w2_floor": floor.value, "w2_floor_stderr": floor.stderr,
        "posterior_sampling_point": list(trav.curve_joint.posterior_sampling_point),
        "steps": steps, "n_mc": n_mc, "parts": parts, "n_train": n_train, "n_components": K,
    }


def _ellipses(ax, gmm: dict, color: str):
    from matplotlib.patches import Ellipse

    for w, m, C in zip(gmm["weights"], gmm["means"], gmm["covs"], strict=True):
        evals, evecs = torch.linalg.eigh(C)
        angle = math.degrees(math.atan2(float(evecs[1, 1]), float(evecs[0, 1])))
        width, height = 4 * float(evals[1].sqrt()), 4 * float(evals[0].sqrt())  # 2 sd along each axis
        ax.add_patch(Ellipse(m.tolist(), width, height, angle=angle, fill=False, color=color,
                             linewidth=0.5 + 12 * float(w), alpha=0.9))


def plot(d: dict):
    c = plotting.COLORS
    fig, axes = plotting.figure(2, 4, figsize=(15.5, 8.2))
    lim = (-2.5, 2.5)
    ax = axes[0, 0]
    ax.scatter(*d["train"].T.numpy(), s=2, c=d["train_labels"].numpy(), cmap="tab10", vmin=0, vmax=9,
               alpha=0.6, rasterized=True)
    _ellipses(ax, d["gmm"], "k")
    ax.plot([], [], color="k", linewidth=0.8, label=f"{d['n_components']}-component GMM (2 sd ellipses)")
    ax.scatter([], [], s=6, color="#0173b2", label="pinwheel samples (colour: arm)")
    ax.set(title="(a) data and the fitted GMM prior")
    ax.legend(loc="lower left", fontsize=7.5)
    ax = axes[0, 1]
    ax.scatter(*d["y"].T.numpy(), s=3, color=c["observation"], alpha=0.6, rasterized=True,
               label=f"$Y = {A_SCALE:g}X + N$, $\\sigma = {SIGMA_Y}$")
    ax.scatter(*d["x"].T.numpy(), s=1, color=c["data"], alpha=0.5, rasterized=True, label="$X$ (prior draws)")
    outside = int((d["y"].abs() > lim[1]).any(-1).sum())
    ax.set(title="(b) noisy observations")
    if outside:
        ax.text(0.98, 0.98, f"{outside} of {len(d['y'])} $Y$ outside the window", transform=ax.transAxes,
                ha="right", va="top", fontsize=7.5, bbox=dict(facecolor="white", alpha=0.8, linewidth=0))
    ax.legend(loc="lower left", fontsize=7.5, markerscale=3)
    slots = [axes[0, 2], axes[0, 3], axes[1, 0], axes[1, 1]]
    for k, (key, r) in enumerate(d["reconstructions"].items()):
        ax = slots[k]
        ax.scatter(*d["x"].T.numpy(), s=1, color=c["data"], alpha=0.35, rasterized=True, label="$X$ (truth)")
        ax.scatter(*r.T.numpy(), s=3, color=c["vsrd"], alpha=0.7, rasterized=True, label="VSRD reconstruction")
        lam = float(key.split("=")[1])
        mse = float((r - d["x"]).square().sum(-1).mean())
        ax.set(title=f"({'cdef'[k]}) $\\lambda$ = {lam:g}: MSE = {mse:.3f}")
        ax.legend(loc="lower left", fontsize=7.5, markerscale=3)
    for ax in [axes[0, 0], axes[0, 1], *slots]:
        ax.set(xlim=lim, ylim=lim, xlabel="$x_1$ (a.u.)", ylabel="$x_2$ (a.u.)", aspect="equal")

    tr = d["traversal"]
    lams = tr["values"]
    pts = tr["joint"]
    D = [p["distortion"] for p in pts]
    Derr = [p["distortion_stderr"] for p in pts]
    ax_w, ax_k = axes[1, 2], axes[1, 3]
    curve = dpt.DPCurve(**tr["curve_joint"])
    p_max = 1.15 * max(max(p["perception"] + p["perception_stderr"] for p in pts), curve.w)
    plotting.draw_dp_curve(ax_w, curve, p_max=p_max,
                           label="optimal joint $D(P)$ (MC: $D^*$, and $W$ by OT, biased up)")
    ax_w.axhspan(d["w2_floor"] - d["w2_floor_stderr"], d["w2_floor"] + d["w2_floor_stderr"], color="0.75",
                 alpha=0.5, label="empirical-W2 floor (two prior samples)")
    ax_w.errorbar(D, [p["perception"] for p in pts], xerr=Derr, yerr=[p["perception_stderr"] for p in pts],
                  color=c["vsrd"], marker="o", capsize=2, label="VSRD over $\\lambda$ (MC, $\\pm$1 SE)")
    ps = d["posterior_sampling_point"]
    ax_w.plot(ps[1], ps[0], marker="*", markersize=12, color=c["posterior"], linestyle="none", clip_on=False,
              label="posterior sampling: $(2D^*, 0)$")
    labels = [(ax_w, x_, y_, f"$\\lambda$={lams[i]:g}", "0.15")
              for i, (x_, y_) in enumerate(zip(D, [p["perception"] for p in pts], strict=True))]
    ax_w.set(xlabel="MSE $E\\|X-\\hat X\\|^2$ (a.u.$^2$)", ylabel="W2$(p_{\\hat X}, p_X)$ (a.u.)",
             title="(g) joint D-P plane: W2 against MSE", ylim=(0, None))
    ax_w.legend(loc="lower right", bbox_to_anchor=(1.0, 0.06), fontsize=7)
    kl = [p["kl"] for p in pts]
    ok = [i for i, v in enumerate(kl) if math.isfinite(v)]
    ax_k.errorbar([D[i] for i in ok], [kl[i] for i in ok], xerr=[Derr[i] for i in ok],
                  yerr=[pts[i]["kl_stderr"] for i in ok], color=c["vsrd"], marker="o", capsize=2,
                  label="VSRD over $\\lambda$ (MC, $\\pm$1 SE)")
    ax_k.plot(ps[1], 0.0, marker="*", markersize=12, color=c["posterior"], linestyle="none", clip_on=False,
              label="posterior sampling: KL = 0")
    labels += [(ax_k, D[i], kl[i], f"$\\lambda$={lams[i]:g}", "0.15") for i in ok]
    ax_k.axhline(0.0, color="k", linewidth=0.8)
    ax_k.set(xlabel="MSE $E\\|X-\\hat X\\|^2$ (a.u.$^2$)", ylabel="KL$(p_{\\hat X} \\| p_X)$ (nats)",
             title="(h) joint D-P plane: KL against MSE",
             ylim=(-0.08 * max(kl[i] for i in ok), 1.15 * max(kl[i] + pts[i]["kl_stderr"] for i in ok)))
    ax_k.legend(loc="upper right", fontsize=7)
    d_lo = min(x - e for x, e in zip(D, Derr, strict=True))
    d_hi = max([x + e for x, e in zip(D, Derr, strict=True)] + [ps[1]])
    for ax in (ax_w, ax_k):  # room for the posterior-sampling star at the right
        ax.set_xlim(min(d_lo, curve.mmse_error) - 0.05 * (d_hi - d_lo), d_hi + 0.12 * (d_hi - d_lo))
    plotting.place_labels(fig, labels, fontsize=7.5)
    return fig


def _params(data: dict, quick: bool) -> dict:
    """The sidecar's parameters."""
    params = {"data": "pinwheel (5 arms, radial std 0.3, tangential std 0.05, rate 0.25)",
              "n_train": data["n_train"], "gmm": f"sklearn GaussianMixture, {data['n_components']} full "
              "components, reg_covar 1e-5, random_state = seed", "A": f"{A_SCALE:g} I", "sigma_y": SIGMA_Y,
              "method": "vsrd, exact GMM conditional denoiser, exact kernel", "steps": data["steps"],
              "schedule": "linear, T = 1000, respaced", "lams_shown": list(LAMS_SHOWN),
              "n_mc": data["n_mc"], "parts": data["parts"]}
    return params


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
