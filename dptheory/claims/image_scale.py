"""Claims at image scale: exact laws of MAP-RPS on stationary Gaussian priors fitted to photos, 32 to 256 px.

The prior is a power law fitted to crops of every bundled photo except the held-out ``astronaut`` and
``coffee``; the measurement is a held-out astronaut crop at its own resolution. Every number is exact
(:mod:`dptheory.images.spectral_laws`), per pixel. The figure ``image_dp_exact_scale`` plots the same call.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .result import ClaimResult

__all__ = ["CHECKS", "HELD_OUT", "BOX", "fit_photo_prior", "scale_study", "check_img1"]

HELD_OUT = ("skimage:astronaut", "skimage:coffee")
BOX = (64, 128, 256, 256)  # the held-out 256 px box of the astronaut (top, left, h, w)
SEED = 20261203
RESOLUTIONS = {True: (32, 64), False: (32, 64, 128, 256)}
TASKS = {True: ("blur-gauss", "sr4"), False: ("blur-gauss", "blur-motion", "sr4", "denoise")}
T0S = (0, 10, 20, 50, 100, 200, 400, 1000)
LAMS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


@lru_cache(maxsize=2)
def fit_photo_prior(n_fit: int = 400, size: int = 64):
    """The power-law :class:`~dptheory.images.spectral.SpectralGaussianPrior` fitted to ``n_fit`` random
    ``size`` px RGB crops of the bundled photos, the held-out ones excluded (seeded: deterministic)."""
    from ..images.data import photo_patches
    from ..images.spectral import SpectralGaussianPrior

    crops = photo_patches(size, n_fit, torch.Generator().manual_seed(SEED), exclude=HELD_OUT)
    return SpectralGaussianPrior.fit_power_law(crops.to(torch.float64))


def held_out_crop(size: int) -> torch.Tensor:
    """The centred ``size x size`` crop of the held-out astronaut box, native resolution, ``(3, size, size)``."""
    from ..images.data import load_image

    x = load_image(HELD_OUT[0], crop=BOX)[0].to(torch.float64)
    o = (BOX[2] - size) // 2
    return x[:, o : o + size, o : o + size]


def scale_study(quick: bool, *, joint: bool = False, kl: bool = False, t0s=T0S, lams=LAMS,
                resolutions=None, tasks=None, progress=None) -> dict:
    """Exact traversals (:func:`~dptheory.images.spectral_laws.exact_traversal`) for each task and resolution.

    The per-measurement form at every size; with ``joint=True`` also the joint form at the largest size.
    Returns ``{task: {size: traversal dict + "seconds"}}``; ``progress`` (optional) is called once per cell."""
    import time

    from ..images.operators import make_task
    from ..images.spectral_laws import BlockSpectralProblem, exact_traversal

    prior = fit_photo_prior()
    resolutions = RESOLUTIONS[quick] if resolutions is None else resolutions
    tasks = TASKS[quick] if tasks is None else tasks
    out = {}
    for task in tasks:
        out[task] = {}
        for size in resolutions:
            start = time.perf_counter()
            op, sigma_y = make_task(task, (3, size, size), torch.Generator().manual_seed(SEED))
            prob = BlockSpectralProblem(prior.at_size(size, size), op, sigma_y)
            x = held_out_crop(size)
            noise = torch.randn(prob.out_shape, generator=torch.Generator().manual_seed(SEED + size),
                                dtype=torch.float64)
            y = op.A(x[None])[0] + sigma_y * noise
            forms = ("per_measurement", "joint") if joint and size == max(resolutions) else ("per_measurement",)
            res = exact_traversal(prob, y, lams=lams, t0s=t0s, forms=forms, kl=kl)
            res["seconds"] = time.perf_counter() - start
            res["sigma_y"] = sigma_y
            out[task][size] = res
            if progress is not None:
                progress()
    return out


RESOLVED = ("blur-gauss", "sr4")  # operators that are the same operator at every size (no wrap-around)


def check_img1(quick: bool) -> ClaimResult:
    """IMG-1: MAP-RPS's t0 traverses from the MAP to posterior sampling above the per-measurement optimal curve,
    at every resolution; the per-pixel gap is an intensive quantity (measured against the resolution)."""
    study = scale_study(quick)
    peaks, stage1, monotone, end_ok, inner_pos = {}, {}, True, True, True
    for task, by_size in study.items():
        peaks[task], stage1[task] = {}, {}
        for size, res in by_size.items():
            rows = res["map_rps"]
            D = [r["per_measurement"]["distortion"] for r in rows]
            P = [r["per_measurement"]["perception"] for r in rows]
            dstar = res["curves"]["per_measurement"]["D_star"]
            gaps = [r["per_measurement"]["gap"] / dstar for r in rows]
            monotone &= all(b >= a - 1e-12 for a, b in zip(D, D[1:], strict=False))
            monotone &= all(b <= a + 1e-12 for a, b in zip(P, P[1:], strict=False))
            end_ok &= abs(gaps[-1]) <= 1e-6  # t0 = T: posterior sampling, on the curve
            inner_pos &= all(g > 1e-6 for g in gaps[1:-1])
            peaks[task][f"{size}px"] = round(max(gaps), 6)
            stage1[task][f"{size}px"] = round(gaps[0], 6)  # t0 = 0: the stage-1 fixed point's offset
    sizes = [f"{s}px" for s in RESOLUTIONS[quick]]
    drift = {t: round(abs(v[sizes[-1]] - v[sizes[-2]]) / v[sizes[-1]], 5) for t, v in peaks.items()}
    resolved_ok = all(drift[t] <= 0.01 for t in RESOLVED if t in drift)
    passed = monotone and end_ok and inner_pos and resolved_ok
    lo = min(min(v.values()) for v in peaks.values())
    hi = max(max(v.values()) for v in peaks.values())
    return ClaimResult(
        id="IMG-1",
        paper="zhang2026maprps",
        statement="Re-noising the MAP to t0 and sampling the posterior down to 0 traverses the D-P plane from the "
        "MAP (t0 = 0) to posterior sampling (t0 = T); checked exactly on real-photo Gaussian priors at "
        f"{', '.join(sizes)}.",
        measured={"peak_gap_over_Dstar": peaks, "t0_0_gap_over_Dstar": stage1,
                  f"relative_change_{sizes[-2]}_to_{sizes[-1]}": drift, "monotone": monotone,
                  "t0_T_on_curve": end_ok, "inner_points_above_curve": inner_pos},
        expected="D_y(t0) non-decreasing and W2_y(t0) non-increasing; at t0 = T the point is on D_y(P); for "
        f"0 < t0 < T it lies strictly above, by at most {lo:.3f}-{hi:.3f} D*_y per task and size (peak near "
        "t0 = 20), never on the curve (the posterior is anisotropic); at t0 = 0 the gap is the stage-1 fixed "
        "point's offset from the MMSE. The gap per pixel is intensive: for the operators that are the same at "
        "every size (blur-gauss, sr4) it changes by < 1% between the two largest sizes; denoising drifts with the "
        "stage-1 offset and the 61 px motion blur is under-resolved below 256 px (both reported, not asserted).",
        tolerance="monotone to 1e-12; t0 = T gap <= 1e-6 D*; inner gaps > 1e-6 D*; drift <= 1% (blur-gauss, sr4)",
        reason="exact closed-form laws in float64 (round-off ~1e-12 relative); the 1% drift bound covers the DC and "
        "lowest frequencies, whose share of the spectrum changes with the grid spacing",
        verdict="holds",
        passed=bool(passed),
        theory="image scale, exact",
    )


CHECKS = {"IMG-1": check_img1}
