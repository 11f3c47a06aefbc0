"""Claims of Wang, Bi, Zhang & Yuan, "variance-scaled reverse diffusion" (VSRD), CVPR 2025, arXiv 2503.20297
(``paper_notes/wang2025_vsrd.md``).

The paper's text was not available; its statements come from the abstract and a third-party note (docs/theory §5.1).
``lam`` is the VARIANCE factor of the reverse kernel (docs/theory §5.1's reading; the only one under which the end
covariance is linear in lam). Variant B = exact kernel x lam; variant A = DDPM fixedsmall with noise
sqrt(lam).

- WANG-1: lam = 0 ends at the MMSE for a Gaussian posterior, up to the O(ab_T) start residual (claim 6).
- WANG-2: the end covariance is linear in lam; variant A is off by O(1/T) (claim 7).
- WANG-3: VSRD is on the per-measurement D-P curve for a Gaussian posterior, anisotropic included (claim 8).
- WANG-4: VSRD is not on the joint D-P curve for lam > 0 (claim 9).
- WANG-5: "lam = 0 -> MMSE" is Gaussian-only: on a GMM posterior the deterministic chain falls into a mode
  (claim 14).
"""

from __future__ import annotations

import math

import torch

from ..denoisers import ConditionalExactDenoiser
from ..divergences import gaussian_w2, gaussian_w2_squared
from ..dp_curve import optimal_dp_curve, per_measurement_dp_curve
from ..reference_problems import b1, g2, g2post, iso
from ..sampler_laws import sampler_law, vsrd_end_law
from ..samplers import vsrd
from ..schedules import linear_schedule
from ._util import F64, max_abs, rng, single_threaded
from .result import ClaimResult

__all__ = ["CHECKS"]


def _residual_gain(post, ab_T: float) -> torch.Tensor:
    """``G = sqrt(ab_T) Sigma (ab_T Sigma + (1 - ab_T) I)^{-1}``: how much of the start survives (docs/theory
    §5.2)."""
    return post.denoise_gain(ab_T)


# ---------------------------------------------------------------------------------------------- WANG-1
def check_wang1(quick: bool) -> ClaimResult:
    """WANG-1: VSRD with lam = 0 ends at mu_y (exact start) or at the predicted O(ab_T) residual (N(0, I)
    start)."""
    sched = linear_schedule()
    prob, y = g2post()
    post = prob.posterior(y)
    ab_T = float(sched.alpha_bar(sched.T))
    G = _residual_gain(post, ab_T)
    # exact start: the end law is N(mu_y + 0, G Sigma_T^true G^T) -> mean exactly mu_y
    exact = sampler_law(prob, "vsrd", y=y, lam=0.0, start="exact")
    err_mean_exact = max_abs(exact.law.mean, post.mean)
    # N(0, I) start: mean residual G (0 - sqrt(ab_T) mu_y), covariance G G^T
    noise = sampler_law(prob, "vsrd", y=y, lam=0.0)
    pred_mean = post.mean + G @ (-math.sqrt(ab_T) * post.mean)
    err_mean_vs_pred = max_abs(noise.law.mean, pred_mean)
    err_cov_vs_pred = max_abs(noise.law.cov, G @ G.T)
    residual_mean = float((noise.law.mean - post.mean).norm())
    residual_cov = float(noise.law.cov.abs().max())
    # the sampler code itself: lam = 0 is deterministic and affine in x_T: x_0 = mean_0 + gain x_T
    n = 16 if quick else 64
    x_T = torch.randn(n, 2, generator=rng(2101), dtype=F64)
    out = vsrd(ConditionalExactDenoiser(prob, y), x_T, sched, lam=0.0)
    err_sampler = max_abs(out, noise.law.mean + x_T @ noise.gain.T)
    passed = (
        err_mean_exact <= 1e-10
        and err_mean_vs_pred <= 1e-12
        and err_cov_vs_pred <= 1e-12
        and (err_sampler <= 1e-10)
    )
    return ClaimResult(
        id="WANG-1",
        paper="wang2025vsrd",
        statement="With lam = 0 (deterministic) VSRD on a Gaussian posterior ends at the MMSE E[X0|y] "
        "(Theorem 1: as ab_K -> 0 the end mean tends to E[X0|y], independent of lam).",
        measured={
            "err_mean_exact_start": err_mean_exact,
            "mean_residual_noise_start": residual_mean,
            "max_cov_noise_start": residual_cov,
            "err_mean_vs_prediction": err_mean_vs_pred,
            "err_cov_vs_GG^T": err_cov_vs_pred,
            "sampler_vs_law": err_sampler,
        },
        expected="exact start: end mean = mu_y; N(0, I) start at T = 1000: the mean misses mu_y by exactly "
        "G(0 - sqrt(ab_T) mu_y) (~1e-5) and the covariance is exactly G G^T (~4e-6), both O(ab_T); the "
        "sampler code reproduces the law's affine map x_T -> x_0",
        tolerance="1e-10 (exact start); 1e-12 against the predicted residuals; 1e-10 sampler vs law",
        reason="exact affine recursions over 1000 steps (round-off ~1e-14); do NOT assert 1e-8 against mu_y "
        "from an N(0, I) start: the residual is a real O(ab_T) effect, not an error",
        verdict="holds",
        passed=passed,
        theory="claim 6; docs/theory §5.2",
    )


# ---------------------------------------------------------------------------------------------- WANG-2
def _relative_signed_error(cov: torch.Tensor, target: torch.Tensor) -> float:
    """The entry of ``(cov - target) / max|target|`` with the largest magnitude (signed)."""
    rel = ((cov - target) / target.abs().max()).reshape(-1)
    return float(rel[rel.abs().argmax()])


def check_wang2(quick: bool) -> ClaimResult:
    """WANG-2: the end covariance is linear in lam (variant B, exact); variant A is off by O(1/T)."""
    sched = linear_schedule()
    prob, y = g2post()
    post = prob.posterior(y)
    lams = (0.0, 0.25, 0.5, 0.75, 1.0)
    steps = 100 if quick else None  # variant B is exact on any grid (exact kernels compose)
    covs = {lam: sampler_law(prob, "vsrd", y=y, lam=lam, steps=steps).law.cov for lam in lams}
    err_closed = max(max_abs(covs[lam], vsrd_end_law(prob, y, lam=lam, schedule=sched).cov) for lam in lams)
    err_linear = max(max_abs(covs[lam], (1 - lam) * covs[0.0] + lam * covs[1.0]) for lam in lams)
    err_lam_sigma = max(max_abs(covs[lam], lam * post.cov) for lam in lams)  # the O(ab_T) residual
    # variant A at lam = 1 from the exact start: discretisation error against T
    Ts = (250, 1000, 4000)
    rel = [
        _relative_signed_error(
            sampler_law(
                prob, "vsrd", y=y, lam=1.0, kernel="small", start="exact", schedule=linear_schedule(T)
            ).law.cov,
            post.cov,
        )
        for T in Ts
    ]
    slope = float(
        torch.linalg.lstsq(
            torch.stack([torch.ones(3, dtype=F64), torch.log(torch.tensor(Ts, dtype=F64))], 1),
            torch.log(torch.tensor(rel, dtype=F64).abs()).unsqueeze(1),
        ).solution[1, 0]
    )
    passed = (
        err_closed <= 1e-12
        and err_linear <= 1e-12
        and abs(rel[1] + 0.014) <= 0.001
        and abs(slope + 1) <= 0.15
    )
    return ClaimResult(
        id="WANG-2",
        paper="wang2025vsrd",
        statement="Theorem 1: with a Gaussian posterior every marginal of VSRD is Gaussian and, as ab_K -> "
        "0, the end covariance tends to lam Cov[X0|y].",
        measured={
            "err_recursion_vs_closed_form": err_closed,
            "err_linearity_in_lam": err_linear,
            "max|Sigma_0 - lam Sigma| (N(0,I) start)": err_lam_sigma,
            "variantA_rel_err_lam1 (T=250,1000,4000)": rel,
            "variantA_loglog_slope": slope,
        },
        expected="variant B (exact kernel x lam): Sigma_0 = lam Sigma + G (Sigma_K - lam Sigma_K^true) G^T, "
        "exactly linear in lam, within O(ab_T) ~ 4e-6 of lam Sigma; variant A (DDPM fixedsmall): -1.4% of "
        "max|Sigma| at lam = 1, T = 1000, shrinking like 1/T",
        tolerance="1e-12 (exact identities); -1.4% +- 0.1% at T = 1000; slope -1 +- 0.15",
        reason="exact recursions in float64; the variant-A error is a deterministic discretisation error "
        "whose order is fitted by least squares on log|err| vs log T (pre-asymptotic curvature: +-0.15)",
        verdict="holds",
        passed=passed,
        theory="claim 7; docs/theory §3.3, §5.2",
    )


# ---------------------------------------------------------------------------------------------- WANG-3
def _per_measurement_gap(prob, y, res) -> tuple[float, float, float]:
    """``(D, P, D - D_y(P))`` of an exact output law given y."""
    post = prob.posterior(y)
    D, P = float(res.mse), float(gaussian_w2(res.law, post))
    return D, P, float(per_measurement_dp_curve(prob, y).gap(P, D))


def check_wang3(quick: bool) -> ClaimResult:
    """WANG-3: VSRD's end law is on the per-measurement D-P curve (anisotropic G2post and isotropic Iso)."""
    lams = (0.1, 0.3, 0.6, 0.9)
    # exact kernels compose exactly, so variant B's end law is the same on any grid (quick: 100 steps)
    steps = 100 if quick else None
    gaps_exact, gaps_noise = {}, {}
    for name, ctor in (("G2post", g2post), ("Iso", iso)):
        prob, y = ctor()
        gaps_exact[name] = [
            _per_measurement_gap(
                prob, y, sampler_law(prob, "vsrd", y=y, lam=lam, start="exact", steps=steps)
            )[2]
            for lam in lams
        ]
        gaps_noise[name] = [
            _per_measurement_gap(prob, y, sampler_law(prob, "vsrd", y=y, lam=lam, steps=steps))[2]
            for lam in (*lams, 0.25, 0.5, 1.0)
        ]
    prob, y = g2post()  # variant A depends on the grid: every step of T = 1000
    lams_a = (0.3, 1.0) if quick else (*lams, 1.0)
    gaps_a = [
        _per_measurement_gap(prob, y, sampler_law(prob, "vsrd", y=y, lam=lam, kernel="small"))[2]
        for lam in lams_a
    ]
    worst_exact = max(abs(g) for v in gaps_exact.values() for g in v)
    worst_noise = max(abs(g) for v in gaps_noise.values() for g in v)
    worst_a = max(abs(g) for g in gaps_a)
    passed = worst_exact <= 1e-9 and worst_noise <= 1e-4 and worst_a <= 1e-3
    return ClaimResult(
        id="WANG-3",
        paper="wang2025vsrd",
        statement="Theorem 2: for p(x|y) = N(mu_y, Sigma_y), with MSE and W2, the optimal per-measurement "
        "D-P function is D(P) = tr Sigma + (sqrt(tr Sigma) - P)^2 and VSRD attains it for every lam.",
        measured={
            "max|gap| exact start": worst_exact,
            "max|gap| N(0,I) start": worst_noise,
            "max|gap| variant A": worst_a,
            "G2post gaps N(0,I) lam=.1,.3,.6,.9,.25,.5,1": gaps_noise["G2post"],
            f"G2post gaps variant A lam={','.join(f'{v:g}' for v in lams_a)}": gaps_a,
        },
        expected="on the curve for every SPD Sigma_y (isotropic or not): exactly from the exact start; "
        "O(ab_T) from N(0, I) (1.3e-5 at lam = 1, where the curve is steep); variant A slides slightly along "
        "it (7.5e-4 at lam = 1)",
        tolerance="1e-9 exact start; 1e-4 N(0, I) start at T = 1000; 1e-3 variant A",
        reason="closed-form W2 and exact laws (3e-15 in docs/theory from the exact start; here ~1e-11, the "
        "general Bures formula's round-off at nearly equal covariances); the other two tolerances bound the "
        "known O(ab_T) and O(1/T) effects measured in WANG-1 and WANG-2",
        verdict="holds",
        passed=passed,
        theory="claim 8; docs/theory §1.6, §5.3",
    )


# ---------------------------------------------------------------------------------------------- WANG-4
def check_wang4(quick: bool) -> ClaimResult:
    """WANG-4: over Y, VSRD's points are strictly above the joint D-P curve for lam > 0."""
    prob, _ = g2()
    curve = optimal_dp_curve(prob)
    lams = (0.0, 0.25, 0.5, 0.75, 1.0)
    gaps, points = [], []
    for lam in lams:
        res = sampler_law(prob, "vsrd", lam=lam, start="exact")  # joint law over Y ~ p(y)
        D, P = float(res.mse), float(gaussian_w2(res.law, prob.prior))
        gaps.append(float(curve.gap(P, D)))
        points.append([P, D])
        if lam == 1.0:
            w2sq_at_1 = float(gaussian_w2_squared(res.law, prob.prior))
    expected = ("0.0209", "0.0413", "0.0614", "0.0811")
    d_minus_w2 = curve.mmse_error - curve.w**2
    values_ok = all(abs(g - float(e)) <= 1e-4 for g, e in zip(gaps[1:], expected, strict=True))
    increasing = all(b > a for a, b in zip(gaps, gaps[1:], strict=False))
    ab_T = float(linear_schedule().alpha_bar(1000))
    # at lam = 1 the law is exactly p_X: W2^2 is round-off (~1e-16 tr S), but P = sqrt(W2^2) is ~1e-8 and moves
    # the gap by 2 W P; so W2^2 itself is checked (1e-14 tr S), and the gap to 2 W sqrt(1e-14 tr S) + 1e-12
    tr_S = float(torch.trace(prob.prior.cov))
    tol_gap_1 = 2.0 * curve.w * math.sqrt(1e-14 * tr_S) + 1e-12
    passed = (
        values_ok
        and increasing
        and abs(w2sq_at_1) <= 1e-14 * tr_S
        and abs(gaps[-1] - d_minus_w2) <= tol_gap_1
        and abs(gaps[0]) <= ab_T
    )
    return ClaimResult(
        id="WANG-4",
        paper="wang2025vsrd",
        statement="(Implicit in calling VSRD 'optimal for the D-P tradeoff'.) Over Y, VSRD's (P, D) points "
        "are on the joint D-P curve of Blau-Michaeli/Freirich.",
        measured={"joint_gaps lam=0,.25,.5,.75,1": gaps, "D*-W^2": d_minus_w2, "(P, D)": points,
                  "W2^2(law, p_X) at lam=1": w2sq_at_1},
        expected="gaps 0.0209, 0.0413, 0.0614, 0.0811 at lam = .25, .5, .75, 1 (G2), strictly increasing, "
        "equal to D* - W^2 at lam = 1 and 0 at lam = 0 (the MMSE end)",
        tolerance="1e-4 on the values (docs/theory claim 9; note the measured 0.061348 rounds to 0.0613, not the "
        "quoted 0.0614); exact sign and monotonicity; at lam = 1 W2^2 <= 1e-14 tr S and the gap to "
        "2 W sqrt(1e-14 tr S) (7.5e-8; P is the square root of round-off); ab_T = 4e-5 at lam = 0",
        reason="exact joint laws from the exact start. At lam = 0 the output keeps the O(ab_T) residual "
        "G Sigma_T G^T of the start (WANG-1), which puts the point 4.5e-7 off the MMSE; at lam = 1 the exact "
        "start makes the law exactly p_X",
        verdict="one-formulation",
        passed=passed,
        theory="claim 9; docs/theory §2.3, §5.3",
    )


# ---------------------------------------------------------------------------------------------- WANG-5
def check_wang5(quick: bool) -> ClaimResult:
    """WANG-5: on the B1 GMM posterior (y = -0.2, sigma = 0.8) the lam = 0 end point is near the mode."""
    sched = linear_schedule()
    prob, y = b1(sigma_y=0.8, y=-0.2)
    den = ConditionalExactDenoiser(prob, y)
    end_zero = float(vsrd(den, torch.zeros(1, 1, dtype=F64), sched, lam=0.0)[0, 0])
    n = 32 if quick else 256
    ends = vsrd(den, torch.randn(n, 1, generator=rng(2501), dtype=F64), sched, lam=0.0)[:, 0]
    mmse, mode = float(prob.mmse(y)[0]), float(prob.map(y)[0])
    passed = abs(end_zero + 0.9007) <= 1e-3 and abs(mmse + 0.2761) <= 1e-4 and abs(mode + 0.9420) <= 1e-4
    return ClaimResult(
        id="WANG-5",
        paper="wang2025vsrd",
        statement="Theorem 1 / the 2-D mixture experiment: lam = 0 converges to the MMSE point E[X0|y]. "
        "Judged here on a mixture prior (the paper's experiment; the Gaussian case is WANG-1, which holds): "
        "fails.",
        measured={
            "lam0_end_from_xT=0": end_zero,
            "lam0_ends_from_N(0,1): min": float(ends.min()),
            "max": float(ends.max()),
            "mmse": mmse,
            "map": mode,
            "n_starts": n,
        },
        expected="with the exact GMM conditional denoiser on B1 (y = -0.2, sigma = 0.8) the deterministic "
        "chain ends at -0.9007, far from the MMSE -0.2761 and near the dominant mode -0.9420: the claim "
        "holds for a Gaussian posterior (WANG-1) but not for a GMM",
        tolerance="1e-3 on the end point; 1e-4 on the MMSE and the mode",
        reason="a deterministic 1000-step recursion (the start's influence is O(sqrt(ab_T)) ~ 6e-3 times a "
        "contraction); docs/theory quotes 4 digits",
        verdict="fails",
        passed=passed,
        theory="claim 14; docs/theory §5.3",
    )


CHECKS = single_threaded(
    {
        "WANG-1": check_wang1,
        "WANG-2": check_wang2,
        "WANG-3": check_wang3,
        "WANG-4": check_wang4,
        "WANG-5": check_wang5,
    }
)
