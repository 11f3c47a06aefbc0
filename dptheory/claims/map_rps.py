"""Claims of Zhang, Liu, Yan, Xiao & Gu, MAP-RPS (ICML 2026, arXiv 2605.28711; official code weigerzan/MAP_RPS
d8d5217) (``paper_notes/map_rps.md``).

The full text was not available: the statements come from the abstract, the official code and paper notes
(docs/theory §6.1-6.2). Stage 1 = a stochastic MAP with the denoiser at level t1; stage 2 = re-noise to t0 and
posterior-sample back to 0.

- MRPS-1: the exact law of stage 2 on a Gaussian problem is N(mu_y, Sigma (I - U^2)) (claim 10).
- MRPS-2: t0 traverses the D-P plane monotonically; on the per-measurement curve only for an isotropic
  posterior, never on the joint curve (claim 11).
- MRPS-3: stage 1 targets the MAP of the prior blurred at tau_{t1} (claim 12).
- MRPS-4: MAP != MMSE for a GMM prior, increasingly with the noise (claim 13; Theorem 3.2's regime).
- MRPS-5: t0 = 0 returns the stage-1 point, the MAP = MMSE for a Gaussian problem up to the O(tau^2) offset.
- MRPS-6: at large t0 MAP-RPS samples the posterior.
"""

from __future__ import annotations

import math

import torch

from ..denoisers import ExactDenoiser
from ..divergences import gaussian_kl, gaussian_w2
from ..dp_curve import optimal_dp_curve, per_measurement_dp_curve
from ..estimate import Estimate
from ..gaussian import Gaussian
from ..problem import LinearInverseProblem
from ..reference_problems import b1, g2, g2post, iso
from ..sampler_laws import map_rps_stage1_fixed_point, map_rps_stage2_law, sampler_law
from ..samplers import OFFICIAL_PRIOR_WEIGHTS, bayes_prior_weight, map_rps, map_rps_stage1
from ..schedules import linear_schedule
from ..solver import solve
from ._util import F64, agrees_with_quote, gmm_cdf_1d, half_unit, max_abs, rng, single_threaded, t64
from .result import ClaimResult

__all__ = ["CHECKS"]


def _stage2_cov_closed_form(post: Gaussian, ab: float) -> torch.Tensor:
    """``Sigma (I - U^2)`` with ``U = ab Sigma (ab Sigma + (1 - ab) I)^{-1}`` (docs/theory §6.3), written out."""
    Sigma = post.cov
    eye = torch.eye(Sigma.shape[0], dtype=F64)
    U = ab * Sigma @ torch.linalg.inv(ab * Sigma + (1.0 - ab) * eye)
    return Sigma @ (eye - U @ U)


# ---------------------------------------------------------------------------------------------- MRPS-1
def check_mrps1(quick: bool) -> ClaimResult:
    """MRPS-1: the exact-kernel recursion of stage 2 from x_MAP = mu_y gives N(mu_y, Sigma (I - U^2))."""
    sched = linear_schedule()
    prob, y = g2post()
    post = prob.posterior(y)
    t0s = (0, 20, 100, 300) if quick else (0, 20, 60, 100, 300, 600, 1000)
    err_mean = err_cov = 0.0
    for t0 in t0s:
        law = sampler_law(prob, "map-rps", y=y, t0=t0, x_map=post.mean, schedule=sched).law
        err_mean = max(err_mean, max_abs(law.mean, post.mean))
        err_cov = max(err_cov, max_abs(law.cov, _stage2_cov_closed_form(post, float(sched.alpha_bar(t0)))))
    point_mass = float(sampler_law(prob, "map-rps", y=y, t0=0, x_map=post.mean).law.cov.abs().max())
    law_T = map_rps_stage2_law(prob, y, sched.T)  # validated against the recursion at t0 = 1000 in full mode
    ab_T = float(sched.alpha_bar(sched.T))
    dev_T = max_abs(law_T.cov, post.cov)
    bound_T = float(torch.linalg.eigvalsh(post.cov).max()) ** 3 * (ab_T / (1 - ab_T)) ** 2  # ||Sigma U^2||
    passed = err_mean <= 1e-12 and err_cov <= 1e-12 and point_mass == 0.0 and dev_T <= bound_T
    return ClaimResult(
        id="MRPS-1",
        paper="zhang2026maprps",
        statement="Stage 2 (re-noise the MAP to t0, then posterior-sample to 0) gives t0 = 0 -> the MAP and "
        "t0 = T -> plain posterior sampling; with exact kernels on a Gaussian problem its law is "
        "N(mu_y, Sigma (I - U^2)), U = ab Sigma (ab Sigma + (1 - ab) I)^{-1}.",
        measured={
            "t0s": list(t0s),
            "max_err_mean": err_mean,
            "max_err_cov_vs_closed_form": err_cov,
            "cov_at_t0=0": point_mass,
            "max|cov - Sigma| at t0=T": dev_T,
            "O(ab_T^2) bound": bound_T,
        },
        expected="the recursion equals the closed form (2e-13 in docs/theory); a point mass at t0 = 0; at t0 = T "
        "the covariance is within ||Sigma U^2|| <= lam_max^3 (ab_T / (1 - ab_T))^2 of Sigma",
        tolerance="1e-12 (recursion vs closed form); exact 0 at t0 = 0; the O(ab_T^2) bound at t0 = T",
        reason="exact affine recursions in float64 over up to 1000 steps",
        verdict="holds",
        passed=passed,
        theory="claim 10; docs/theory §6.3",
    )


# ---------------------------------------------------------------------------------------------- MRPS-2
def _commuting_w2(p: Gaussian, q: Gaussian) -> float:
    """W2 for commuting covariances: ``sqrt(|m_p - m_q|^2 + ||S_p^{1/2} - S_q^{1/2}||_F^2)`` (docs/theory §9.2).

    Stage-2 covariances ``Sigma (I - U^2)`` commute with Sigma. This form has no cancellation, where the
    general Bures formula loses ~1e-8 in W2 when the two laws nearly coincide (the square root of a round-off
    residual).
    """
    diff = p.eig.sqrt() - q.eig.sqrt()
    return math.sqrt(float((p.mean - q.mean).square().sum() + diff.square().sum()))


def _stage2_points(prob, y, t0s, sched):
    """Per-measurement (D, P, gap) of the exact stage-2 laws on the grid ``t0s`` (closed form, MRPS-1)."""
    post = prob.posterior(y)
    curve = per_measurement_dp_curve(prob, y)
    D, P, gap = [], [], []
    for t0 in t0s:
        law = map_rps_stage2_law(prob, y, t0, schedule=sched)
        d_val = curve.mmse_error + float(torch.trace(law.cov)) + float((law.mean - post.mean).square().sum())
        p_val = _commuting_w2(law, post)
        D.append(d_val)
        P.append(p_val)
        gap.append(float(curve.gap(p_val, d_val)))
    return D, P, gap


def check_mrps2(quick: bool) -> ClaimResult:
    """MRPS-2: D(t0) non-decreasing, W2(t0) non-increasing; gap 0 iff isotropic; gaps at t0 = 20, 60."""
    sched = linear_schedule()
    step = 50 if quick else 10
    t0s = sorted(set(range(0, sched.T + 1, step)) | {20, 60})
    prob, y = g2post()
    D, P, gap = _stage2_points(prob, y, t0s, sched)
    monotone_D = all(b >= a - 1e-14 for a, b in zip(D, D[1:], strict=False))
    monotone_P = all(b <= a + 1e-14 for a, b in zip(P, P[1:], strict=False))
    g20, g60 = gap[t0s.index(20)], gap[t0s.index(60)]
    # the recursion at the two reference points (independent of the closed form)
    rec = {}
    for t0 in (20, 60):
        res = sampler_law(prob, "map-rps", y=y, t0=t0, x_map=prob.posterior(y).mean, schedule=sched)
        p_val = float(gaussian_w2(res.law, prob.posterior(y)))  # general Bures: independent of the above
        rec[t0] = float(per_measurement_dp_curve(prob, y).gap(p_val, float(res.mse)))
    iso_prob, iso_y = iso()
    _, _, gap_iso = _stage2_points(iso_prob, iso_y, t0s, sched)
    worst_iso = max(abs(g) for g in gap_iso)
    # the joint curve (G2): strictly above for t0 > 0
    g2prob, _ = g2()
    curve_j = optimal_dp_curve(g2prob)
    M, b = g2prob._update.gain[0], g2prob.prior.mean - g2prob._update.gain[0] @ (g2prob.A @ g2prob.prior.mean)
    joint = []
    for t0 in (20, 100, 300):
        res = sampler_law(g2prob, "map-rps", t0=t0, x_map=(M, b), schedule=sched)  # x_MAP = mu(Y) exactly
        joint.append(float(curve_j.gap(float(gaussian_w2(res.law, g2prob.prior)), float(res.mse))))
    quotes_ok = agrees_with_quote(g20, "4.75e-3") and agrees_with_quote(g60, "1.07e-2")
    joint_ok = all(agrees_with_quote(g, q) for g, q in zip(joint, ("0.0104", "0.064", "0.081"), strict=True))
    passed = (
        monotone_D
        and monotone_P
        and worst_iso <= 1e-12
        and quotes_ok
        and joint_ok
        and max(abs(rec[20] - g20), abs(rec[60] - g60)) <= 1e-10
        and all(g > 0 for g in gap[1:])
    )
    return ClaimResult(
        id="MRPS-2",
        paper="zhang2026maprps",
        statement="t0 is the single D-P knob: increasing t0 trades distortion for perception, from the MAP "
        "(t0 = 0) to posterior sampling (t0 = T), motivated by Freirich et al.'s optimal interpolation.",
        measured={
            "grid": f"0..{sched.T} step {step}",
            "D_nondecreasing": monotone_D,
            "W2_nonincreasing": monotone_P,
            "G2post_gap_t0=20": g20,
            "G2post_gap_t0=60": g60,
            "recursion_gap_t0=20,60": [rec[20], rec[60]],
            "G2post_max_gap": max(gap),
            "Iso_max|gap|": worst_iso,
            "G2_joint_gaps_t0=20,100,300": joint,
        },
        expected="monotone in t0; per-measurement gap <= 1e-12 for the isotropic posterior but > 0 for the "
        "anisotropic G2post (4.75e-3 at t0 = 20, 1.07e-2 at t0 = 60); joint gaps > 0 (0.0104, 0.064, 0.081 "
        "on G2)",
        tolerance="1e-14 slack on monotonicity; 1e-12 on the isotropic gap; 1e-10 recursion (general Bures) "
        "vs closed form (commuting W2); half a unit in the last quoted digit of each reference gap (5e-6 for "
        "4.75e-3, 5e-5 for 1.07e-2)",
        reason="exact laws; W2 of commuting Gaussians without cancellation. docs/theory quotes rounded values: "
        "the measured 1.0668e-2 at t0 = 60 is 3.2e-5 from the quoted 1.07e-2, so a 1e-5 band around the "
        "quote would test the rounding, not the claim",
        verdict="one-formulation",
        passed=passed,
        theory="claim 11; docs/theory §6.3",
    )


# ---------------------------------------------------------------------------------------------- MRPS-3
def check_mrps3(quick: bool) -> ClaimResult:
    """MRPS-3: the expected-gradient fixed point of stage 1 (Bayes weight) is the posterior mean under the
    blurred prior N(m, S + tau^2 I); its distance to the MAP is O(tau^2); an AdamW run reaches it."""
    sched = linear_schedule()
    prob, y = g2()
    mu = prob.mmse(y)
    den = ExactDenoiser(prob.prior)
    A, S, m, s = prob.A, prob.prior.cov, prob.prior.mean, prob.sigma_y
    eye = torch.eye(2, dtype=F64)
    err_blurred = grad_at_fp = 0.0
    dist = {}
    for t1 in (10, 50):
        ab = float(sched.alpha_bar(t1 + 1))  # the official 0-based index
        tau2 = (1.0 - ab) / ab
        x_star = map_rps_stage1_fixed_point(prob, y, t1=t1, schedule=sched)
        blurred = LinearInverseProblem(Gaussian(m, S + tau2 * eye), A, s).mmse(y)
        err_blurred = max(err_blurred, max_abs(x_star, blurred))
        # the expected stage-1 gradient at x_star, from the denoiser itself: eps_hat is affine for a Gaussian
        # prior, so E_z[eps_hat(sqrt(ab) x + sqrt(1 - ab) z)] = eps_hat(sqrt(ab) x)
        w = bayes_prior_weight(sched, t1, s)
        g = 2 * A.T @ (A @ x_star - y) + w * den.eps((math.sqrt(ab) * x_star).unsqueeze(0), ab)[0]
        grad_at_fp = max(grad_at_fp, float(g.abs().max()))
        dist[t1] = float((x_star - mu).norm())
    official = {
        task: float((map_rps_stage1_fixed_point(prob, y, t1=10, w_prior=w) - mu).norm())
        for task, w in OFFICIAL_PRIOR_WEIGHTS.items()
    }
    # an actual run: AdamW + cosine LR, Bayes weight, weight decay 0, one particle per row
    n = 128 if quick else 512
    x0 = prob.operator.pinv(y).expand(n, 2).clone()
    out = map_rps_stage1(
        den, x0, sched, operator=prob.operator, y=y, sigma_y=s, t1=10, iters=500, generator=rng(3301)
    )
    x_star = map_rps_stage1_fixed_point(prob, y, t1=10, schedule=sched)
    z = ((out.mean(0) - x_star) / (out.std(0) / math.sqrt(n))).abs().max()
    rms = float((out - x_star).square().sum(-1).mean().sqrt())
    passed = (
        err_blurred <= 1e-12
        and grad_at_fp <= 1e-12
        and agrees_with_quote(dist[10], "1.24e-4")
        and agrees_with_quote(dist[50], "1.72e-3")
        and float(z) <= 4.0
    )
    return ClaimResult(
        id="MRPS-3",
        paper="zhang2026maprps",
        statement="Stage 1 computes the MAP estimate, using the prior score written through the denoiser at "
        "a small level t1 (Theorem 3.3: grad log p_X = ((1-ab)/(r^2 sqrt(ab))) E[grad log p_t1]).",
        measured={
            "fixed_point_vs_blurred_posterior_mean": err_blurred,
            "expected_grad_at_fixed_point": grad_at_fp,
            "dist_to_MAP_t1=10": dist[10],
            "dist_to_MAP_t1=50": dist[50],
            "official_weights_dist_to_MAP (t1=10)": official,
            "adamw_run_max_z": float(z),
            "adamw_run_rms_to_fixed_point": rms,
            "n": n,
        },
        expected="with w_Bayes = 2 sigma^2 sqrt(ab/(1-ab)) the fixed point is the posterior mean under "
        "N(m, S + tau^2 I); 1.24e-4 (t1 = 10) and 1.72e-3 (t1 = 50) from the MAP on G2; the AdamW run's mean "
        "is at the fixed point; the official fixed weights give ~1e-2 offsets (reported, not asserted)",
        tolerance="1e-12 (closed forms); half a unit in the last quoted digit of the two distances (5e-7, "
        "5e-6); |z| <= 4 for the run's mean",
        reason="exact linear algebra. docs/theory quotes 3 digits: the measured 1.7169e-3 at t1 = 50 is 3.1e-6 "
        "from the quoted 1.72e-3, so a 1e-6 band would test the rounding. The run is stochastic (fresh z "
        "each iteration): its per-particle spread is measured and its mean tested with a 4-SE band",
        verdict="approximate",
        passed=passed,
        theory="claim 12; docs/theory §6.1, §6.3",
    )


# ---------------------------------------------------------------------------------------------- MRPS-4
def map_mse_ratio(delta: float, sigma: float, n_grid: int) -> tuple[float, float]:
    """``MSE(MAP) / D*`` for the prior 0.5 N(+-delta, .05), A = 1, by trapezoid quadrature over y; also D*."""
    prob, _ = b1(sigma_y=sigma, delta=delta)
    sy = math.sqrt(0.05 + sigma**2)
    yg = torch.linspace(-delta - 8 * sy, delta + 8 * sy, n_grid, dtype=F64).unsqueeze(-1)
    py = prob.evidence().log_prob(yg).exp()
    d_star = torch.trapezoid(py * prob.posterior_cov_trace(yg), yg[:, 0])
    extra = torch.trapezoid(py * (prob.map(yg) - prob.mmse(yg))[:, 0].square(), yg[:, 0])
    return float(1.0 + extra / d_star), float(d_star)


def check_mrps4(quick: bool) -> ClaimResult:
    """MRPS-4: MSE(MAP)/D* over noise level and mode separation; at y = 0 the MMSE is 0, the MAPs +-0.8333."""
    n_grid = 801 if quick else 3201
    expected = {
        (0.5, 0.1): "1.005",
        (0.5, 0.3): "1.17",
        (0.5, 0.5): "1.29",
        (0.5, 1.0): "1.44",
        (1.0, 0.1): "1.000",
        (1.0, 0.3): "1.04",
        (1.0, 0.5): "1.21",
        (1.0, 1.0): "1.37",
    }
    # the quadrature error, estimated by halving the step: the trapezoid rule converges as O(h^2) here (the
    # differences between 801, 1601 and 3201 points shrink by 4.0), so the fine value's error is ~|c - f| / 3;
    # the tolerance allows |c - f| (3x that estimate) on top of half a unit in docs/theory's quoted digits
    table, quad_err, worst_excess = {}, {}, -math.inf
    for (d, s), quote in expected.items():
        coarse, fine = map_mse_ratio(d, s, n_grid)[0], map_mse_ratio(d, s, 2 * n_grid - 1)[0]
        key = f"delta={d:g},sigma={s:g}"
        table[key], quad_err[key] = fine, abs(coarse - fine) / 3.0
        worst_excess = max(worst_excess, abs(fine - float(quote)) - (half_unit(quote) + abs(coarse - fine)))
    worst = max(abs(table[f"delta={d:g},sigma={s:g}"] - float(v)) for (d, s), v in expected.items())
    prob, y0 = b1(sigma_y=0.5, y=0.0)
    mmse0, map0 = float(prob.mmse(y0)[0]), float(prob.map(y0)[0])
    post = prob.posterior(y0)
    other = -map0  # the mirror point is the other MAP (symmetric posterior)
    same_density = abs(float(post.log_prob(t64([[map0]]))[0] - post.log_prob(t64([[other]]))[0]))
    passed = (
        worst_excess <= 0.0 and abs(mmse0) <= 1e-12 and abs(abs(map0) - 0.8333) <= 1e-3 and same_density <= 1e-10
    )
    return ClaimResult(
        id="MRPS-4",
        paper="zhang2026maprps",
        statement="Theorem 3.2: for a mu-strongly log-concave posterior E||X_MAP - X_MMSE|| <= sqrt(n/mu), "
        "so the MAP is a cheap stand-in for the MMSE (the low-distortion anchor).",
        measured={
            "MSE(MAP)/D*": table,
            "max|ratio - quoted|": worst,
            "quadrature error estimate (|coarse - fine| / 3)": quad_err,
            "max excess over tolerance": worst_excess,
            "y=0: mmse": mmse0,
            "y=0: map": map0,
            "y=0: |log p(map) - log p(-map)|": same_density,
            "grid": n_grid,
        },
        expected="ratio ~1.00 at sigma = 0.1 (MAP ~ MMSE: a unimodal, log-concave posterior) but 1.29-1.44 "
        "at sigma >= 0.5 (bimodal posterior: log-concavity fails); at y = 0 the MMSE is 0 while the two MAPs "
        "are +-0.8333 (sigma = .5, delta = 1), equally likely",
        tolerance="half a unit in docs/theory's quoted digits plus |ratio(n) - ratio(2n - 1)| (3x the quadrature "
        "error estimate) on each ratio; 1e-3 on the MAP at y = 0",
        reason="trapezoid quadrature over y with the exact posterior moments and a converged mode finder "
        "(Carreira-Perpinan + Newton); its error is estimated by halving the step (O(h^2): the differences "
        "shrink by 4 per halving; <= 4e-5 at 1601 points) and docs/theory quotes 2-4 digits",
        verdict="approximate",
        passed=passed,
        theory="claim 13; docs/theory §6.1, §6.4",
    )


# ---------------------------------------------------------------------------------------------- MRPS-5
def check_mrps5(quick: bool) -> ClaimResult:
    """MRPS-5: t0 = 0 returns the stage-1 point unchanged; for a Gaussian problem that is MAP = MMSE within
    the optimiser's accuracy and the O(tau^2) smoothing offset."""
    sched = linear_schedule()
    prob, y = g2()
    mu = prob.mmse(y)
    n = 64 if quick else 256
    out = solve(prob, y, "map-rps", t0=0, n_samples=n, generator=rng(3501))
    # the same run through the sampler functions: t0 = 0 is exactly stage 1 (same seed, same noise)
    den = ExactDenoiser(prob.prior)
    x0 = prob.operator.pinv(y).expand(n, 2).clone()
    kw = dict(operator=prob.operator, y=y, sigma_y=prob.sigma_y)
    s1 = map_rps_stage1(den, x0, sched, generator=rng(3502), **kw)
    full = map_rps(den, x0, sched, t0=0, stage2="dps", generator=rng(3502), **kw)
    identical = bool(torch.equal(s1, full))
    x_star = map_rps_stage1_fixed_point(prob, y, t1=10, schedule=sched)
    offset = float((x_star - mu).norm())
    se = out.std(0) / math.sqrt(n)
    z_fp = float(((out.mean(0) - x_star) / se).abs().max())
    err_mean = float((out.mean(0) - mu).norm())
    rms = float((out - mu).square().sum(-1).mean().sqrt())
    passed = identical and z_fp <= 4.0 and err_mean <= offset + 4.0 * float(se.norm())
    return ClaimResult(
        id="MRPS-5",
        paper="zhang2026maprps",
        statement="MAP-RPS with t0 = 0 returns the MAP estimate (the low-distortion end of the traversal).",
        measured={
            "t0=0_output_is_stage1_point": identical,
            "|mean - mu_y|": err_mean,
            "smoothing_offset_|x*-mu_y|": offset,
            "max_z_vs_fixed_point": z_fp,
            "rms_per_particle": rms,
            "n": n,
        },
        expected="t0 = 0 returns the stage-1 point bit for bit; on G2 the particles' mean is at the "
        "blurred-prior fixed point x* (1.24e-4 from MAP = MMSE); each particle is within the optimiser's "
        "accuracy (rms, reported) of it",
        tolerance="exact equality; |z| <= 4 against x*; |mean - mu_y| <= |x* - mu_y| + 4 SE",
        reason="stage 1 is stochastic (fresh noise per iteration): its mean carries MC error, measured by "
        "the particles' spread",
        verdict="approximate",
        passed=passed,
        theory="docs/theory §0.4, §6.2, §6.3 (t0 counts reverse steps)",
    )


# ---------------------------------------------------------------------------------------------- MRPS-6
def check_mrps6(quick: bool) -> ClaimResult:
    """MRPS-6: at t0 = T MAP-RPS samples the posterior (exact law on G2post; MC on the B1 GMM)."""
    from scipy.stats import kstest

    sched = linear_schedule()
    prob, y = g2post()
    post = prob.posterior(y)
    law = sampler_law(prob, "map-rps", y=y, t0=sched.T, x_map=post.mean, schedule=sched).law
    ab_T = float(sched.alpha_bar(sched.T))
    dev = max_abs(law.cov, post.cov)
    bound = float(torch.linalg.eigvalsh(post.cov).max()) ** 3 * (ab_T / (1 - ab_T)) ** 2
    kl = float(gaussian_kl(law, post))
    # GMM: the actual solver (stage 1 by AdamW with the exact GMM denoiser, stage 2 exact kernels)
    gprob, gy = b1(sigma_y=0.5, y=-0.6)
    gpost = gprob.posterior(gy)
    n = 2000 if quick else 10_000
    out = solve(gprob, gy, "map-rps", t0=sched.T, n_samples=n, generator=rng(3601), iters=200)[:, 0]
    ks = kstest(out.numpy(), lambda v: gmm_cdf_1d(gpost, t64(v)).numpy())
    curve = per_measurement_dp_curve(gprob, gy)
    D = Estimate.from_samples((out - gpost.mean[0]).square() + curve.mmse_error)
    z_D = (D.value - 2 * curve.mmse_error) / D.stderr
    passed = dev <= bound and ks.pvalue > 1e-3 and abs(z_D) <= 4.0
    return ClaimResult(
        id="MRPS-6",
        paper="zhang2026maprps",
        statement="At t0 = T MAP-RPS is plain posterior sampling (the high-perception end of the traversal).",
        measured={
            "G2post max|cov - Sigma|": dev,
            "O(ab_T^2) bound": bound,
            "KL(law||post)": kl,
            "B1 ks_pvalue": float(ks.pvalue),
            "B1 D_y": D.value,
            "B1 D_y se": D.stderr,
            "B1 2 tr Sigma_y": 2 * curve.mmse_error,
            "z_D": z_D,
            "n": n,
        },
        expected="Gaussian: covariance within ||Sigma U_T^2|| = O(ab_T^2) of Sigma; GMM (B1, y = -0.6, sigma "
        "= .5): the outputs pass a KS test against the exact posterior and their per-measurement MSE is 2 tr "
        "Sigma_y",
        tolerance="the O(ab_T^2) bound; KS p > 1e-3 (0.1% false alarms); |z| <= 4",
        reason="exact law for the Gaussian; Monte Carlo with a goodness-of-fit test and a 4-SE band for the "
        "GMM",
        verdict="holds",
        passed=passed,
        theory="claim 10; docs/theory §6.3, §6.4",
    )


CHECKS = single_threaded(
    {
        "MRPS-1": check_mrps1,
        "MRPS-2": check_mrps2,
        "MRPS-3": check_mrps3,
        "MRPS-4": check_mrps4,
        "MRPS-5": check_mrps5,
        "MRPS-6": check_mrps6,
    }
)
