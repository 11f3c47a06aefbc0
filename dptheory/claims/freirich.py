"""Claims of Blau & Michaeli (CVPR 2018) and Freirich, Michaeli & Meir (NeurIPS 2021): the D-P tradeoff
(``paper_notes/blau_michaeli_freirich.md``).

- BMF-1: the joint D-P curve D(P) = D* + ((W - P)_+)^2 and its geodesic estimators (docs/theory §1.5, §2.3, claim 2).
- BMF-2: posterior sampling sits at D = 2 D*, above the joint optimum D* + W^2 (docs/theory §1.4-1.5, claim 3).
- BMF-3: the per-measurement curve D_y(P) = tr Sigma_y + (sqrt(tr Sigma_y) - P)_+^2 holds for any posterior
  (docs/theory §1.6, claim 20).
- BMF-4: neither traversal (VSRD's lam, MAP-RPS's t0) reaches the joint curve except at the MMSE end
  (docs/theory §5.3, §6.3).
"""

from __future__ import annotations

import math

import torch

from ..divergences import gaussian_w2, gaussian_w2_squared
from ..divergences import quantile_w2_squared_to_samples as _quantile_w2_squared_to_samples
from ..dp_curve import joint_optimal_estimator, optimal_dp_curve, per_measurement_dp_curve
from ..estimate import Estimate
from ..mmse_law_1d import mmse_w2_squared_1d
from ..reference_problems import b1, g2, g2post
from ..solver import solve
from ._util import F64, agrees_with_quote, rng, single_threaded
from .result import ClaimResult

__all__ = ["CHECKS", "quantile_w2_squared_to_samples"]


# ---------------------------------------------------------------------------------------------- 1-D helpers
def quantile_w2_squared_to_samples(law, x: torch.Tensor) -> float:
    """``W2^2`` from 1-D samples to a known 1-D law (sorted samples against exact quantiles), as a float."""
    return float(_quantile_w2_squared_to_samples(law, x))


def _per_measurement_point_mc(problem, y, x_hat: torch.Tensor, parts: int = 5) -> list[float]:
    """Per-measurement ``[D, P, gap, gap_se]`` of 1-D outputs ``x_hat (n, 1)`` for the posterior at ``y``.

    ``D = tr Sigma_y + mean (X^ - mu_y)^2`` (X is independent of X^ given y), ``P`` by the quantile coupling
    of the sorted outputs to the exact posterior, both from the whole sample; the gap's SE from the spread
    over ``parts`` independent parts (each part's W2 is biased a little more, so this SE is conservative)."""
    post = problem.posterior(y)
    curve = per_measurement_dp_curve(problem, y)

    def point(xs):
        D = curve.mmse_error + float((xs - post.mean[0]).square().mean())
        P = math.sqrt(max(quantile_w2_squared_to_samples(post, xs), 0.0))
        return D, P, float(curve.gap(P, D))

    D, P, gap = point(x_hat[:, 0])
    per = torch.tensor([point(part)[2] for part in torch.chunk(x_hat[:, 0], parts)], dtype=F64)
    return [D, P, gap, float(per.std() / math.sqrt(parts))]


# ---------------------------------------------------------------------------------------------- BMF-1
def check_bmf1(quick: bool) -> ClaimResult:
    """BMF-1: the geodesic estimators X^_P attain the joint curve exactly (W2 = P and MSE = D(P))."""
    problems = {"G2 (S* singular)": g2()[0], "G2post (S* SPD)": g2post()[0]}
    err_P = err_D = 0.0
    worst_order = -math.inf  # max of W^2 - D* and D(0) - 2 D* (both must be <= 0)
    for prob in problems.values():
        curve = optimal_dp_curve(prob)
        worst_order = max(
            worst_order, curve.w**2 - curve.mmse_error, float(curve.distortion(0.0)) - 2.0 * curve.mmse_error
        )
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            P = frac * curve.w
            est = joint_optimal_estimator(prob, P)
            err_P = max(err_P, abs(float(gaussian_w2_squared(prob.prior, est.law())) - P**2))
            err_D = max(err_D, abs(est.distortion() - float(curve.distortion(P))))
    # Monte Carlo: the estimator applied to measurements, at P = W/2 on G2
    prob = problems["G2 (S* singular)"]
    curve = optimal_dp_curve(prob)
    n = 20_000 if quick else 200_000
    gen = rng(1101)
    x, y = prob.sample_joint(n, generator=gen)
    est = joint_optimal_estimator(prob, curve.w / 2)
    mse = Estimate.from_samples((x - est(y, generator=gen)).square().sum(-1))
    z = (mse.value - float(curve.distortion(curve.w / 2))) / mse.stderr
    passed = err_P <= 1e-10 and err_D <= 1e-10 and worst_order <= 0.0 and abs(z) <= 4.0
    return ClaimResult(
        id="BMF-1",
        paper="freirich2021theory",
        statement="With MSE and W2, the D-P function is D(P) = D* + ((W - P)_+)^2 for every distribution, "
        "and the optimal estimators lie on the W2 geodesic X^_P = (P/W) X* + (1 - P/W) X^_0.",
        measured={
            "max_err_W2sq_minus_P^2": err_P,
            "max_err_mse_minus_curve": err_D,
            "max(W^2 - D*, D(0) - 2D*)": worst_order,
            "mc_mse_at_W/2": mse.value,
            "mc_se": mse.stderr,
            "curve_at_W/2": float(curve.distortion(curve.w / 2)),
            "z": z,
            "n": n,
        },
        expected="W2(p_X, p_X^P) = P and MSE = D(P) exactly at P in {0, W/4, W/2, 3W/4, W} on G2 (rank-1 S*, "
        "noise in range(Q)) and G2post (SPD S*, Q = 0); W^2 <= D*; D(0) <= 2 D*; the MC MSE of the estimator "
        "applied to simulated measurements equals the curve",
        tolerance="1e-10 (closed forms); |z| <= 4 (MC)",
        reason="exact Gaussian algebra (Bures formula, PSD square roots) in float64, compared as W2^2 - P^2 "
        "(W2 itself is the square root of a round-off-level number at P = 0); a 4-SE band fails by chance "
        "with probability 6e-5",
        verdict="holds",
        passed=passed,
        theory="claim 2; docs/theory §1.5, §2.3",
    )


# ---------------------------------------------------------------------------------------------- BMF-2
def check_bmf2(quick: bool) -> ClaimResult:
    """BMF-2: posterior sampling has MSE 2 D* and perfect perception, above the joint optimum D* + W^2."""
    prob, _ = g2()
    curve = optimal_dp_curve(prob)
    gap = curve.mmse_error - curve.w**2  # 2 D* - (D* + W^2)
    n = 20_000 if quick else 200_000
    gen = rng(1201)
    x, y = prob.sample_joint(n, generator=gen)
    post_cov = prob.posterior(y[0]).cov  # Sigma does not depend on y
    L = torch.linalg.cholesky(post_cov)
    x_tilde = prob.mmse(y) + torch.randn(n, 2, generator=gen, dtype=F64) @ L.T
    mse = Estimate.from_samples((x - x_tilde).square().sum(-1))
    z = (mse.value - 2.0 * curve.mmse_error) / mse.stderr
    # the same on a GMM (B1, sigma = 0.5): D* by Monte Carlo (Rao-Blackwellised), W^2 exactly (quantile formula;
    # the MMSE map is monotone in 1-D)
    gprob, _ = b1(sigma_y=0.5)
    n_g = 20_000 if quick else 100_000
    d_star = gprob.mmse_error(n_g, generator=gen)
    w2sq = Estimate.of_exact(mmse_w2_squared_1d(gprob))
    gmm_gap = d_star.value - w2sq.value
    gmm_gap_se = d_star.stderr
    passed = gap > 0 and abs(gap - 0.0811) <= 1e-4 and abs(z) <= 4.0 and gmm_gap > 4.0 * gmm_gap_se
    return ClaimResult(
        id="BMF-2",
        paper="blau2018perception",
        statement="Sampling from the posterior has perfect perception and MSE exactly 2 D*; it is not on the "
        "joint D-P curve, whose value at P = 0 is D* + W^2 <= 2 D* (Blau & Michaeli; Freirich et al.).",
        measured={
            "G2_gap_2D*-(D*+W^2)": gap,
            "G2_D*": curve.mmse_error,
            "G2_W^2": curve.w**2,
            "mc_mse_posterior_sampling": mse.value,
            "mc_se": mse.stderr,
            "z_vs_2D*": z,
            "B1_D*": d_star.value,
            "B1_W^2": w2sq.value,
            "B1_gap": gmm_gap,
            "B1_gap_se": gmm_gap_se,
        },
        expected="G2: gap D* - W^2 = 0.0811 > 0 and MC MSE of posterior sampling = 2 D* = 0.7534; B1 (GMM, "
        "sigma = 0.5): gap > 0 by more than 4 SE",
        tolerance="1e-4 on 0.0811 (docs/theory's rounding); |z| <= 4 (MC); gap > 4 SE (GMM)",
        reason="the Gaussian gap is a closed form (docs/theory quotes 4 digits); Monte Carlo quantities get 4-SE "
        "bands; the B1 W^2 is exact up to the midpoint rule (~1e-5 relative, far below D*'s SE)",
        verdict="holds",
        passed=passed,
        theory="claim 3; docs/theory §1.4, §1.5, §2.3",
    )


# ---------------------------------------------------------------------------------------------- BMF-3
def check_bmf3(quick: bool) -> ClaimResult:
    """BMF-3: shrunk posterior samples are on D_y(P) for a GMM posterior; VSRD (variant A) is above it."""
    from ..divergences import quantile_w2_squared_1d
    from ..mixture import GaussianMixture

    prob, y = b1(sigma_y=0.8, y=-0.2)
    post = prob.posterior(y)
    curve = per_measurement_dp_curve(prob, y)
    mu = post.mean
    max_gap_shrunk = 0.0
    for c in (0.0, 0.25, 0.5, 0.75, 1.0):
        # law of mu + c (X~ - mu): a GMM with means mu + c (mu_k - mu) and covariances c^2 Sigma_k
        shrunk = GaussianMixture._trusted(post.weights, mu + c * (post.means - mu), c**2 * post.covs)
        D = curve.mmse_error + c**2 * curve.mmse_error  # X independent of X^ given y
        P = math.sqrt(max(float(quantile_w2_squared_1d(post, shrunk)), 0.0))
        max_gap_shrunk = max(max_gap_shrunk, abs(float(curve.gap(P, D))))
    n = 2000 if quick else 10_000
    gen = rng(1301)
    vsrd = {}
    for lam in (0.0, 0.25, 1.0):
        x_hat = solve(prob, y, "vsrd", n_samples=n, generator=gen, lam=lam, kernel="small")
        vsrd[f"lam={lam:g}"] = _per_measurement_point_mc(prob, y, x_hat)
    # asserted: docs/theory claim 20's two values; lam = 1 (docs/theory §5.3: 0.069) is reported only, because there P
    # is
    # small and the sample-based W2 is dominated by its upward bias
    ok_vsrd = all(
        abs(vsrd[k][2] - want) <= 0.02 and vsrd[k][2] > 4.0 * vsrd[k][3]
        for k, want in (("lam=0", 0.39), ("lam=0.25", 0.48))
    )
    passed = max_gap_shrunk <= 1e-6 and ok_vsrd
    return ClaimResult(
        id="BMF-3",
        paper="freirich2021theory",
        statement="For a fixed y the per-measurement D-P function is D_y(P) = tr Sigma_y + ((sqrt(tr "
        "Sigma_y) - P)_+)^2 for ANY posterior (Gaussian or not), attained by shrunk posterior samples mu_y + "
        "c (X~ - mu_y).",
        measured={
            "max_gap_shrunk_samples": max_gap_shrunk,
            "tr_Sigma_y": curve.mmse_error,
            "vsrd_A [D, P, gap, gap_se]": vsrd,
            "n": n,
        },
        expected="shrunk samples on the curve (gap ~0 up to quadrature); VSRD variant A above it on this GMM "
        "posterior: gaps 0.39 (lam = 0) and 0.48 (lam = .25); docs/theory §5.3's 0.069 at lam = 1 is reported, not "
        "asserted (near P = 0 the sample W2's upward bias dominates)",
        tolerance="1e-6 (quantile quadrature with 2e5 midpoints); +-0.02 and > 4 SE for the VSRD gaps",
        reason="the shrunk laws are exact GMMs and W2 is the exact 1-D quantile integral up to the midpoint "
        "rule (~1e-6 on W2); VSRD's outputs are Monte Carlo, W2 by the sorted-sample coupling (5 parts for "
        "the SE)",
        verdict="holds",
        passed=passed,
        theory="claim 20; docs/theory §1.6, §5.3",
    )


# ---------------------------------------------------------------------------------------------- BMF-4
def _joint_point_mc(prior, x_star: torch.Tensor, x_hat: torch.Tensor, d_star: float, w: float) -> dict:
    """Joint D-P point of 1-D outputs ``x_hat (n, 1)`` from measurements whose MMSE estimates are ``x_star``.

    - ``D - D* = E(X^ - X*)^2`` (X - X* is orthogonal to every function of Y and of independent noise), so D -
      D* is estimated with low variance by the mean of ``(x_hat - x_star)^2``, with its SE;
    - ``P_plugin``: the quantile coupling of the sorted outputs to the exact prior. It is biased UPWARD,
      strongly for a bimodal prior (the sample's share of each mode fluctuates by ~1/sqrt(n) and must be moved
      across the gap), which would make the plug-in gap look larger than it is;
    - ``P_gelbrich``: the Gelbrich bound from the first two moments, a LOWER bound on W2 (docs/theory §9.4);
    - ``gap_lower = (D - D*) - (W - P_gelbrich)_+^2 <= the true gap`` (D(P) decreases in P, and W is exact:
      :func:`dptheory.mmse_w2_squared_1d`), so ``gap_lower > 3 SE`` shows the point is above the curve.
    """
    from ..divergences import gelbrich_w2_squared
    from ..gaussian import Gaussian

    xh = x_hat[:, 0]
    excess = (xh - x_star[:, 0]).square()
    d_minus = Estimate.from_samples(excess)
    p_plugin = math.sqrt(max(quantile_w2_squared_to_samples(prior, xh), 0.0))
    moments = Gaussian(xh.mean().reshape(1), xh.var().reshape(1, 1))
    p_gel = math.sqrt(max(float(gelbrich_w2_squared(moments, prior)), 0.0))
    return {
        "D": d_star + d_minus.value,
        "D_se": d_minus.stderr,
        "P_plugin": p_plugin,
        "P_gelbrich": p_gel,
        "gap_plugin": d_minus.value - max(w - p_plugin, 0.0) ** 2,
        "gap_lower": d_minus.value - max(w - p_gel, 0.0) ** 2,
        "gap_lower_se": d_minus.stderr,
    }


def _traversal_joint_gaps_gaussian() -> tuple[dict, dict]:
    """Exact joint-curve gaps ``(gap, P)`` on G2 of VSRD (lam in 0, .25, .5, .75, 1; exact start) and of MAP-RPS
    (t0 in 0, 20, 100, 300; x_MAP = mu(Y), the affine map ``gain y + m - gain A m``), keyed by lam and t0."""
    from ..sampler_laws import sampler_law

    prob, _ = g2()
    curve = optimal_dp_curve(prob)

    def joint_gap(res):
        P = float(gaussian_w2(res.law, prob.prior))
        return float(curve.gap(P, float(res.mse))), P

    vsrd_gaps = {
        lam: joint_gap(sampler_law(prob, "vsrd", lam=lam, start="exact"))
        for lam in (0.0, 0.25, 0.5, 0.75, 1.0)
    }
    upd = prob._update
    x_map = (upd.gain[0], prob.prior.mean - upd.gain[0] @ (prob.A @ prob.prior.mean))  # MAP = MMSE = mu(Y)
    mrps_gaps = {t0: joint_gap(sampler_law(prob, "map-rps", t0=t0, x_map=x_map)) for t0 in (0, 20, 100, 300)}
    return vsrd_gaps, mrps_gaps


def _map_rps_output_gmm(gprob, y: torch.Tensor, x_map: torch.Tensor, t0: int, gen: torch.Generator):
    """MAP-RPS on a GMM problem: ``x_MAP`` re-noised to level ``t0`` and denoised by the exact conditional
    posterior sampler (``x_MAP`` itself at ``t0 = 0``)."""
    from ..denoisers import ConditionalExactDenoiser
    from ..samplers import posterior as posterior_sampler
    from ..schedules import linear_schedule

    if t0 == 0:
        return x_map
    sched = linear_schedule()
    ab = float(sched.alpha_bar(t0))
    x_t0 = math.sqrt(ab) * x_map + math.sqrt(1 - ab) * torch.randn(x_map.shape, generator=gen, dtype=F64)
    return posterior_sampler(ConditionalExactDenoiser(gprob, y), x_t0, sched, t_start=t0, generator=gen)


def _traversal_joint_points_gmm(n: int) -> tuple[dict, object, float]:
    """Monte Carlo joint (D, P) points (:func:`_joint_point_mc`) on B1 (sigma = 0.5) of VSRD (lam = 0, .5, 1)
    and MAP-RPS (t0 = 0, 100, 1000) over ``n`` (X, Y) pairs; with the Monte Carlo D* and the exact W."""
    gprob, _ = b1(sigma_y=0.5)
    gen = rng(1401)
    d_star = gprob.mmse_error(4 * n, generator=gen)
    w = math.sqrt(float(mmse_w2_squared_1d(gprob)))  # exact (quantile formula)
    _, y = gprob.sample_joint(n, generator=gen)
    x_star = gprob.mmse(y)
    gmm = {}
    for lam in (0.0, 0.5, 1.0):
        x_hat = solve(gprob, y, "vsrd", lam=lam, generator=gen)
        gmm[f"vsrd lam={lam:g}"] = _joint_point_mc(gprob.prior, x_star, x_hat, d_star.value, w)
    x_map_g = gprob.map(y)
    for t0 in (0, 100, 1000):
        x_hat = _map_rps_output_gmm(gprob, y, x_map_g, t0, gen)
        gmm[f"map-rps t0={t0}"] = _joint_point_mc(gprob.prior, x_star, x_hat, d_star.value, w)
    return gmm, d_star, w


def check_bmf4(quick: bool) -> ClaimResult:
    """BMF-4: VSRD's lam and MAP-RPS's t0 both leave the joint curve except at the MMSE end (Gaussian exact;
    GMM by Monte Carlo)."""
    vsrd_gaps, mrps_gaps = _traversal_joint_gaps_gaussian()
    quotes_vsrd = all(
        agrees_with_quote(vsrd_gaps[lam][0], q)
        for lam, q in ((0.25, "0.021"), (0.5, "0.041"), (0.75, "0.061"), (1.0, "0.081"))
    )
    quotes_mrps = all(
        agrees_with_quote(mrps_gaps[t0][0], q) for t0, q in ((20, "0.0104"), (100, "0.064"), (300, "0.081"))
    )
    gauss_ok = (
        quotes_vsrd and quotes_mrps and abs(mrps_gaps[0][0]) <= 1e-12 and abs(vsrd_gaps[0.0][0]) <= 1e-5
    )
    # GMM (B1, sigma = 0.5) by Monte Carlo: the same samplers over (X, Y) pairs
    n = 2000 if quick else 10_000
    gmm, d_star, w = _traversal_joint_points_gmm(n)
    gmm_ok = all(v["gap_lower"] > 3.0 * v["gap_lower_se"] for v in gmm.values())
    passed = gauss_ok and gmm_ok
    return ClaimResult(
        id="BMF-4",
        paper="freirich2021theory",
        statement="(Freirich's theory applied to the two traversals.) The joint-optimal estimators transport "
        "X* deterministically along a W2 geodesic; VSRD (lam) and MAP-RPS (t0) instead add Y-independent "
        "noise, so they are on the joint curve only at the MMSE end.",
        measured={
            "G2 vsrd gaps lam=0,.25,.5,.75,1": [v[0] for v in vsrd_gaps.values()],
            "G2 vsrd P": [v[1] for v in vsrd_gaps.values()],
            "G2 map-rps gaps t0=0,20,100,300": [v[0] for v in mrps_gaps.values()],
            "G2 map-rps P": [v[1] for v in mrps_gaps.values()],
            "B1 D*": d_star.value,
            "B1 W (exact, quantile formula)": w,
            "B1 points": gmm,
            "n": n,
        },
        expected="G2 (exact): VSRD gaps .021, .041, .061, .081 (lam = .25..1), MAP-RPS .0104 (t0 = 20), .064 "
        "(100), .081 (300), both 0 at the MMSE end; near equal P MAP-RPS is further from the curve (.064 at "
        "P = .170 vs .041 at P = .160); B1 GMM (MC): every point strictly above the joint curve, the lam = 0 "
        "and t0 = 0 ends included, since on a GMM neither is the MMSE (WANG-5, MRPS-4)",
        tolerance="half a unit in docs/theory's quoted digits; 1e-12 (t0 = 0, x_MAP = mu(Y)); ab_T-size residual "
        "at lam = 0 (1e-5); GMM: a LOWER bound on each gap > 3 SE",
        reason="exact joint laws for the Gaussian. For the GMM the sample W2 to a bimodal prior is biased "
        "upward by ~0.1 at n = 2000 (the plug-in gaps are reported but would overstate the claim); the "
        "asserted lower bound uses the Gelbrich (moment) lower bound on P and the Rao-Blackwellised D - D* = "
        "E(X^ - X*)^2",
        verdict="holds",
        passed=passed,
        theory="docs/theory §2.3, §5.3, §6.3, §6.4",
    )


# ---------------------------------------------------------------------------------------------- BMF-5
def _affine_point_gaussian(prob, B: torch.Tensor, c: torch.Tensor, R: torch.Tensor) -> tuple[float, float]:
    """Exact ``(D, P)`` of ``X^ = B Y + c + W``, ``W ~ N(0, R)`` independent, on a Gaussian problem.

    ``Y = A X + N``: ``E Y = A m``, ``Cov Y = A S A^T + s^2 I``, ``Cov(X, Y) = S A^T``; so ``X^ ~ N(B A m + c,
    B Cov(Y) B^T + R)`` and ``D = E||X - X^||^2 = ||m - E X^||^2 + tr S + tr Cov X^ - 2 tr(S A^T B^T)``;
    ``P = W2(p_X, p_X^)`` by the Bures formula. Nothing of the D-P curve is used."""
    from ..gaussian import Gaussian

    m, S, A = prob.prior.mean, prob.prior.cov, prob.A
    cov_y = A @ S @ A.T + prob.sigma_y**2 * torch.eye(prob.m, dtype=F64)
    mean_hat = B @ (A @ m) + c
    cov_hat = B @ cov_y @ B.T + R
    cov_hat = 0.5 * (cov_hat + cov_hat.T)
    D = float((m - mean_hat).square().sum() + torch.trace(S) + torch.trace(cov_hat) - 2 * torch.trace(S @ A.T @ B.T))
    P = math.sqrt(max(float(gaussian_w2_squared(prob.prior, Gaussian(mean_hat, cov_hat))), 0.0))
    return D, P


def _random_affine_estimators(prob, count: int, gen: torch.Generator):
    """``count`` random (B, c, R): around 0, around the MMSE gain K, and tiny perturbations of the joint-optimal
    estimators X^_P (the hardest cases: within ~1e-3 of the curve, where a curve that is too high would show)."""
    d, m_dim = prob.dim, prob.m
    post_cov = prob.posterior(torch.zeros(m_dim, dtype=F64)).cov
    # the MMSE map mu(y) = K y + k (affine for a Gaussian prior)
    k0 = prob.mmse(torch.zeros(m_dim, dtype=F64))
    K = torch.stack([prob.mmse(e) - k0 for e in torch.eye(m_dim, dtype=F64)], 1)
    curve = optimal_dp_curve(prob)
    out = []
    for i in range(count):
        kind = i % 4
        scale = float(torch.rand((), generator=gen, dtype=F64)) * 1.5
        G = torch.randn(d, d, generator=gen, dtype=F64)
        R = G @ G.T * float(torch.rand((), generator=gen, dtype=F64)) ** 2 * 0.5
        if kind == 0:  # anything: random gain, offset and noise
            B = scale * torch.randn(d, m_dim, generator=gen, dtype=F64)
            c = torch.randn(d, generator=gen, dtype=F64)
        elif kind == 1:  # shrunk posterior samples mu(Y) + s (X~ - mu(Y)), s in [0, 1.5]
            B, c, R = K, k0, scale**2 * post_cov
        elif kind == 2:  # the MMSE gain, perturbed, plus noise
            B = K + 0.2 * scale * torch.randn(d, m_dim, generator=gen, dtype=F64)
            c = k0 + 0.1 * torch.randn(d, generator=gen, dtype=F64)
        else:  # a joint-optimal estimator X^_P, perturbed by 1e-3 (as an affine map of Y: T_P K, offset, noise)
            est = joint_optimal_estimator(prob, float(torch.rand((), generator=gen, dtype=F64)) * curve.w)
            m = prob.prior.mean
            B = est.transform @ K + 1e-3 * torch.randn(d, m_dim, generator=gen, dtype=F64)
            c = m + est.transform @ (k0 - m)
            R = est.noise_cov + 1e-3 * R
        out.append((B, c, R))
    return out


def _gmm_estimator_points(prob, n: int, parts: int, gen: torch.Generator) -> dict:
    """B1 (1-D GMM): ``(D, P)`` of non-optimal estimators and their gap to the joint curve, with SEs.

    - affine ``b Y + c + r N``: the law is a GMM (the evidence mapped, plus independent noise), so P is the exact
      1-D quantile W2 (:func:`dptheory.quantile_w2_squared_1d`) and D is exact:
      ``E(X - X^)^2 = (1 - b)^2 E X^2 - 2 c (1 - b) E X + c^2 + b^2 s^2 + r^2`` (A = 1);
    - shrunk posterior samples ``X* + s (X~ - X*)`` and the coin mixture "X* with probability p, else X~",
      run on simulated pairs (X, Y): D is the Monte Carlo mean of ``(X - X^)^2`` (with its SE), P the sorted
      outputs against the prior's exact quantiles, bias-corrected with ``parts`` parts (the one-sample estimate
      is biased up by O(1/n); the jackknife removes the first order), with an SE from the parts' spread.

    The curve: D* by Rao-Blackwellised Monte Carlo (its SE enters every gap), W exact.
    """
    from ..divergences import quantile_w2_squared_1d
    from ..mixture import GaussianMixture

    d_star = prob.mmse_error(4 * n, generator=gen)
    w = math.sqrt(float(mmse_w2_squared_1d(prob)))
    prior, s2 = prob.prior, prob.sigma_y**2
    ex = float((prior.weights * prior.means[:, 0]).sum())
    ex2 = float((prior.weights * (prior.means[:, 0].square() + prior.covs[:, 0, 0])).sum())
    evidence = prob.evidence()
    rows = {}
    for b, c, r in ((0.5, 0.0, 0.0), (1.0, 0.0, 0.0), (0.8, 0.1, 0.3), (0.3, -0.2, 0.6), (1.2, 0.0, 0.1)):
        law = GaussianMixture(evidence.weights, b * evidence.means + c, b**2 * evidence.covs + r**2)
        P = math.sqrt(max(float(quantile_w2_squared_1d(prior, law)), 0.0))
        D = (1 - b) ** 2 * ex2 - 2 * c * (1 - b) * ex + c**2 + b**2 * s2 + r**2
        rows[f"affine b={b:g} c={c:g} r={r:g}"] = (D, P, d_star.stderr, 0.0)
    x, y = prob.sample_joint(n, generator=gen)
    x, x_star = x[:, 0], prob.mmse(y)[:, 0]
    x_tilde = _posterior_draws(prob, y, gen)

    def p_estimate(xh):
        full = quantile_w2_squared_to_samples(prior, xh)
        part = torch.tensor([quantile_w2_squared_to_samples(prior, q) for q in torch.chunk(xh, parts)], dtype=F64)
        w2 = full - (float(part.mean()) - full) / (parts - 1)
        se_w2 = 1.3 * float(part.std()) / math.sqrt(parts)
        P = math.sqrt(max(w2, 0.0))
        # delta method se(W2^2) / (2 P) away from 0; near 0 (P below sqrt(se)) P is known only to ~sqrt(se)
        return P, (se_w2 / (2 * P) if P > math.sqrt(se_w2) else math.sqrt(se_w2))

    coin = torch.rand(n, generator=gen, dtype=F64)
    outputs = {f"shrunk s={s:g}": x_star + s * (x_tilde - x_star) for s in (0.3, 0.7, 1.0, 1.3)}
    outputs.update({f"mixed p={p:g}": torch.where(coin < p, x_star, x_tilde) for p in (0.25, 0.5, 0.75)})
    for key, xh in outputs.items():
        mse = Estimate.from_samples((x - xh).square())
        P, se_p = p_estimate(xh)
        rows[key] = (mse.value, P, math.hypot(mse.stderr, d_star.stderr), se_p)
    out = {}
    for key, (D, P, se_d, se_p) in rows.items():
        gap = D - (d_star.value + max(w - P, 0.0) ** 2)
        # SE: D's and the curve's D* (independent draws), and P's through the curve's slope -2 (W - P)_+
        out[key] = [D, P, gap, math.hypot(se_d, 2 * max(w - P, 0.0) * se_p)]
    return {"D*": d_star.value, "D*_se": d_star.stderr, "W": w, "points": out}


def _posterior_draws(prob, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One draw of ``X~ ~ p(x | y_i)`` per measurement (1-D GMM posterior: component by its weight, then its
    Gaussian), ``y (n, 1)`` -> ``(n,)``."""
    upd = prob._update
    w = prob._post_weights(y)  # (n, K)
    means = upd.post_means(y)[..., 0]  # (n, K)
    sd = upd.post_covs[:, 0, 0].sqrt()  # (K,)
    k = torch.multinomial(w, 1, generator=gen)[:, 0]
    z = torch.randn(y.shape[0], generator=gen, dtype=F64)
    return means.gather(1, k[:, None])[:, 0] + sd[k] * z


def check_bmf5(quick: bool) -> ClaimResult:
    """BMF-5: the joint curve is a LOWER bound: no estimator, optimal or not, falls below it."""
    gen = rng(1501)
    count = 200 if quick else 2000
    gauss = {}
    worst_gauss = math.inf
    for name, (prob, _) in (("G2 (S* singular)", g2()), ("G2post (S* SPD)", g2post())):
        curve = optimal_dp_curve(prob)
        gaps = []
        for B, c, R in _random_affine_estimators(prob, count, gen):
            D, P = _affine_point_gaussian(prob, B, c, R)
            gaps.append(float(curve.gap(P, D)))
        g = torch.tensor(gaps, dtype=F64)
        near = g[3::4]  # the perturbed joint-optimal estimators
        gauss[name] = {"min gap": float(g.min()), "min gap (near-optimal)": float(near.min()),
                       "max gap (near-optimal)": float(near.max()), "count": count}
        worst_gauss = min(worst_gauss, float(g.min()))
    gprob, _ = b1(sigma_y=0.5)
    n = 20_000 if quick else 200_000
    gmm = _gmm_estimator_points(gprob, n, 5, gen)
    worst_z = min(gap / se for _, _, gap, se in gmm["points"].values())
    passed = worst_gauss >= -1e-10 and worst_z >= -4.0
    return ClaimResult(
        id="BMF-5",
        paper="freirich2021theory",
        statement="The joint D-P curve D(P) = D* + ((W - P)_+)^2 is a lower bound: every estimator X^ of X from "
        "Y (with any independent randomness) has E||X - X^||^2 >= D(W2(p_X, p_X^)) (Freirich et al. 2021, "
        "Theorem 4; Blau & Michaeli 2018).",
        measured={
            "Gaussian (exact (D, P))": gauss,
            "min gap Gaussian": worst_gauss,
            "B1 sigma=0.5 D*, se, W": [gmm["D*"], gmm["D*_se"], gmm["W"]],
            "B1 [D, P, gap, se]": gmm["points"],
            "B1 min gap / se": worst_z,
            "n (B1)": n,
        },
        expected="on G2 and G2post, random affine estimators B Y + c + N(0, R) (any gain, shrunk posterior "
        "samples, perturbed MMSE gains, and joint-optimal estimators perturbed by 1e-3) all have gap D - D(P) "
        ">= 0, the perturbed optimal ones by O(1e-6); on B1 (GMM) affine estimators (exact D, P), shrunk and "
        "coin-mixed posterior samples (P by Monte Carlo) all lie above the curve within 4 SE",
        tolerance="1e-10 (Gaussian: exact laws in float64); gap >= -4 SE (GMM)",
        reason="Gaussian (D, P) are closed forms (Bures), so only round-off can make a gap negative; for B1 the "
        "SE combines D*'s Monte Carlo error and P's (parts), and a 4-SE one-sided band over 12 points fails "
        "by chance with probability ~4e-4",
        verdict="holds",
        passed=passed,
        theory="claim 2; docs/theory §1.5, §2.3",
    )


CHECKS = single_threaded(
    {
        "BMF-1": check_bmf1,
        "BMF-2": check_bmf2,
        "BMF-3": check_bmf3,
        "BMF-4": check_bmf4,
        "BMF-5": check_bmf5,
    }
)
