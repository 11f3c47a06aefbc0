"""Claims that earlier checks left out: DPS's Jensen gap, Wang et al.'s "MSE doubles", and the P-D tradeoff under
an L1 distortion (``paper_notes/dps.md``, ``paper_notes/wang2025_vsrd.md``,
``paper_notes/blau_michaeli_freirich.md``).

- DPS-10: the Jensen gap of DPS's plug-in likelihood, ``log E[p(y|x0) | x_t] - log p(y | E[x0|x_t])``, averaged over
  ``x_t ~ p_t(x_t | y)``, against t, on G2 and on the mixture B1.
- WANG-10: "MSE at lam = 1 is about twice the MSE at lam = 0", measured on B1 (per measurement and jointly).
- BMF-10: the perception-distortion tradeoff with the L1 distortion ``E|X - X^|`` and W1 perception, on B1.
"""

from __future__ import annotations

import math

import torch

from ..denoisers import ConditionalExactDenoiser
from ..divergences import quantile_1d
from ..estimate import Estimate
from ..reference_problems import b1, g2, g2post
from ..sampler_laws import vsrd_end_law
from ..samplers import vsrd
from ..schedules import linear_schedule
from ._util import F64, rng, single_threaded
from .result import ClaimResult

__all__ = ["CHECKS", "jensen_gap_log", "posterior_abs_error", "l1_tradeoff_b1"]

_LOG_2PI = math.log(2 * math.pi)


def _log_normal_1d(y, mean, var):
    return -0.5 * ((y - mean).square() / var + torch.log(var) + _LOG_2PI)


def jensen_gap_log(problem, y, x_t: torch.Tensor, ab: float) -> torch.Tensor:
    """``log p_t(y | x_t) - log p(y | x0_hat(x_t))`` for a 1-measurement problem (m = 1), ``x_t (n, d)`` -> ``(n,)``.

    ``p_t(y | x_t) = E[p(y | x0) | x_t]`` is exact: ``p(x0 | x_t)`` is a mixture of Gaussians
    ``N(mu_k(x_t), C_k)`` with the diffused prior's responsibilities ``gamma_k(x_t)``, so
    ``p_t(y|x_t) = sum_k gamma_k N(y; A mu_k, A C_k A^T + sigma^2)`` (the exact mixture likelihood); DPS plugs in
    ``x0_hat = sum_k gamma_k mu_k``: ``p(y | x0_hat) = N(y; A x0_hat, sigma^2)``. A Gaussian prior is one component.
    """
    if problem.m != 1:
        raise ValueError("jensen_gap_log is written for one measurement (m = 1)")
    prior = problem.prior
    if problem.is_gaussian:
        weights, means, covs = torch.ones(1, dtype=F64), prior.mean.unsqueeze(0), prior.cov.unsqueeze(0)
    else:
        weights, means, covs = prior.weights, prior.means, prior.covs
    A, s2 = problem.A, problem.sigma_y**2
    d = problem.dim
    eye = torch.eye(d, dtype=F64)
    log_g, comp_mean, comp_var = [], [], []
    for w, m, S in zip(weights, means, covs, strict=True):
        St = ab * S + (1 - ab) * eye
        K = math.sqrt(ab) * S @ torch.linalg.inv(St)
        C = S - math.sqrt(ab) * K @ S
        r = x_t - math.sqrt(ab) * m
        quad = (r @ torch.linalg.inv(St) * r).sum(-1)
        log_g.append(math.log(float(w)) - 0.5 * (quad + torch.logdet(St) + d * _LOG_2PI))
        mu = m + r @ K.T
        comp_mean.append((mu @ A.T)[:, 0])
        comp_var.append((A @ C @ A.T)[0, 0])
    log_g = torch.stack(log_g, -1)
    gamma = torch.softmax(log_g, -1)
    cm = torch.stack(comp_mean, -1)
    cv = torch.stack(comp_var)
    yv = y.reshape(())
    exact = torch.logsumexp(torch.log(gamma) + _log_normal_1d(yv, cm, cv + s2), -1)
    plug = _log_normal_1d(yv, (gamma * cm).sum(-1), torch.tensor(s2, dtype=F64))
    return exact - plug


def check_dps10(quick: bool) -> ClaimResult:
    """DPS-10: the Jensen gap against t on G2 (Gaussian) and B1 (mixture), averaged over x_t ~ p_t(x_t|y)."""
    sched = linear_schedule()
    ts = (10, 100, 300, 600, 1000) if quick else (1, 10, 50, 100, 200, 300, 400, 600, 800, 1000)
    n = 4000 if quick else 40000
    out = {}
    for name, (prob, y) in (("G2", g2()), ("B1", b1(sigma_y=0.5, y=-0.6))):
        gen = rng(1010)
        post = prob.posterior(y)
        rows = {}
        for t in ts:
            ab = float(sched.alpha_bar(t))
            x0 = post.sample(n, generator=gen)
            xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(x0.shape, generator=gen, dtype=F64)
            gap = jensen_gap_log(prob, y, xt, ab)
            e = Estimate.from_samples(gap)
            rows[f"t={t}"] = [e.value, e.stderr, float(gap.abs().mean())]
        out[name] = rows
    # the gradient form on G2 (exact, constant in x_t): |grad log p_t(y|x_t)|_DPS / |.|_exact = (A C A^T + s^2)/s^2
    prob, _ = g2()
    grad_ratio = {}
    for t in (100, 400, 1000):
        ab = float(sched.alpha_bar(t))
        C = prob.prior.denoise_cov(torch.zeros(1, 2, dtype=F64), ab)[0]
        grad_ratio[f"t={t}"] = float((prob.A @ C @ prob.A.T)[0, 0] / prob.sigma_y**2 + 1.0)
    first, last = ts[0], ts[-1]
    small = all(abs(out[k][f"t={first}"][0]) <= 0.02 for k in out)
    large = all(max(abs(v[0]) for v in out[k].values()) >= 0.3 for k in out)
    passed = small and large
    return ClaimResult(
        id="DPS-10",
        paper="chung2023dps",
        statement="DPS replaces p_t(y|x_t) = E[p(y|x0) | x_t] by p(y | E[x0|x_t]); the error is a Jensen gap, "
        "bounded and small when p(x0|x_t) is concentrated (small t).",
        measured={
            "G2: E[log gap], SE, E|log gap| by t": out["G2"],
            "B1 (sigma=.5, y=-.6): E[log gap], SE, E|log gap| by t": out["B1"],
            "G2: gradient-form ratio |grad|_DPS/|grad|_exact": grad_ratio,
            "n per t": n,
        },
        expected="the log-form gap, averaged over x_t ~ p_t(x_t|y), is ~0 at small t (|.| <= 0.02 at t = "
        f"{first}) and grows to O(1) nats at large t (max over t of |.| >= 0.3; t up to {last}) on both the "
        "Gaussian and the mixture; the "
        "gradient DPS uses is too large by (A C_t A^T + s^2)/s^2 on G2",
        tolerance="|E gap| <= 0.02 at the smallest t and >= 0.3 at some t; the SEs (reported) are below 1e-2",
        reason="the gap is exact per x_t (mixture likelihood in closed form); only the average over x_t is Monte "
        "Carlo, with its SE",
        verdict="approximate",
        passed=passed,
        theory="DPS likelihood approximation p(y|x_t) ~ p(y|x0_hat); exact GMM likelihood of p(x0|x_t)",
    )


# ---------------------------------------------------------------------------------------------- WANG-10
def _ratio(a: torch.Tensor, b: torch.Tensor, paired: bool) -> tuple[float, float]:
    """``mean(a) / mean(b)`` and its delta-method SE (paired draws, or independent samples)."""
    R = float(a.mean() / b.mean())
    if paired:
        var = (a - R * b).var() / a.numel()
    else:
        var = a.var() / a.numel() + R**2 * b.var() / b.numel()
    return R, float(var.sqrt() / b.mean())


def check_wang10(quick: bool) -> ClaimResult:
    """WANG-10: MSE(lam = 1) / MSE(lam = 0) of VSRD on B1 (exact GMM conditional denoiser) and on G2post."""
    sched = linear_schedule()
    n = 400 if quick else 2000
    n_joint = 2000 if quick else 6000
    steps = 200 if quick else None
    per, semi = {}, {}
    for s, yv in ((0.5, -0.6), (0.8, -0.2), (0.5, 0.0)):
        prob, y = b1(sigma_y=s, y=yv)
        den = ConditionalExactDenoiser(prob, y)
        mu, tr = float(prob.mmse(y)[0]), float(prob.posterior_cov_trace(y))
        d = {}
        for lam, seed in ((0.0, 1101), (1.0, 1102)):  # lam = 0 first: its outputs give the semi-exact ratio
            gen = rng(seed)
            x = vsrd(den, torch.randn(n, 1, generator=gen, dtype=F64), sched, lam=lam, steps=steps, generator=gen)
            d[lam] = tr + (x[:, 0] - mu).square()  # E[(X - x^)^2 | y] per output (X independent of x^ given y)
        key = f"sigma={s:g},y={yv:g}"
        per[key] = _ratio(d[1.0], d[0.0], paired=False)
        # lam = 1 with exact kernels is posterior sampling (FND-5, MRPS-6): MSE(1) = 2 tr Sigma_y exactly
        e0 = Estimate.from_samples(d[0.0])
        semi[key] = [2 * tr / e0.value, 2 * tr * e0.stderr / e0.value**2]
    # jointly over (X, Y) for B1, sigma = .5: one measurement per particle
    prob, _ = b1(sigma_y=0.5)
    gen = rng(1103)
    xs, ys = prob.sample_joint(n_joint, generator=gen)
    den = ConditionalExactDenoiser(prob, ys)
    start = torch.randn(n_joint, 1, generator=gen, dtype=F64)
    e0 = vsrd(den, start, sched, lam=0.0, steps=steps, generator=gen)
    e1 = vsrd(den, start, sched, lam=1.0, steps=steps, generator=gen)
    joint = _ratio((xs - e1)[:, 0].square(), (xs - e0)[:, 0].square(), paired=True)
    tr_y, mu_y = prob.posterior_cov_trace(ys), prob.mmse(ys)[:, 0]
    joint_semi = _ratio(2 * tr_y, tr_y + (e0[:, 0] - mu_y).square(), paired=True)
    # Gaussian reference: exact laws (ratio exactly 2 up to the O(ab_T) start residual)
    gprob, gy = g2post()
    D = {lam: float(torch.trace(vsrd_end_law(gprob, gy, lam=lam, start="exact").cov)) for lam in (0.0, 1.0)}
    tr_g = float(torch.trace(gprob.posterior(gy).cov))
    gauss = (tr_g + D[1.0]) / (tr_g + D[0.0])
    r_main = semi["sigma=0.5,y=-0.6"]
    r_bimodal = semi["sigma=0.8,y=-0.2"]
    consistent = all(abs(per[k][0] - semi[k][0]) <= 4 * math.hypot(per[k][1], semi[k][1]) for k in per)
    consistent = consistent and abs(joint[0] - joint_semi[0]) <= 4 * math.hypot(joint[1], joint_semi[1])
    passed = (
        abs(gauss - 2.0) <= 1e-4
        and abs(r_main[0] - 2.0) <= 0.1
        and r_bimodal[0] + 4 * r_bimodal[1] < 1.7
        and consistent
    )
    return ClaimResult(
        id="WANG-10",
        paper="wang2025vsrd",
        statement="lam = 1 (posterior sampling) has about twice the MSE of lam = 0 (the MMSE end), as in the 2-D "
        "mixture experiment.",
        measured={
            "G2post exact: MSE(1)/MSE(0)": gauss,
            "B1 per measurement, MC both ends: [ratio, SE]": per,
            "B1 per measurement, 2 tr Sigma_y / MC MSE(0): [ratio, SE]": semi,
            "B1 joint (sigma=.5), MC both ends: [ratio, SE]": list(joint),
            "B1 joint, 2 E tr Sigma_Y / MSE(0): [ratio, SE]": list(joint_semi),
            "n": n,
            "n_joint": n_joint,
            "steps": 1000 if steps is None else steps,
        },
        expected="exactly 2 for a Gaussian posterior; on B1 close to 2 where the posterior is nearly unimodal "
        "(sigma = .5, y = -.6: lam = 0 ends near the mode, 0.03 from the MMSE) but well below 2 where it is "
        "bimodal (sigma = .8, y = -.2: lam = 0 ends in a mode 0.62 from the MMSE, raising MSE(0)); the joint "
        "ratio is reported",
        tolerance="1e-4 for the Gaussian (the O(ab_T) residual G Sigma_T G^T of lam = 0); |ratio - 2| <= 0.1 at "
        "(sigma, y) = (.5, -.6) and ratio + 4 SE < 1.7 at (.8, -.2), using MSE(1) = 2 tr Sigma_y; the all-MC "
        "ratio within 4 SE of it",
        reason="MC over the sampler's outputs (the per-measurement MSE is exact given each output); 0.1 "
        "allows the measured departure of a non-Gaussian posterior from the Gaussian value",
        verdict="one-formulation",
        passed=passed,
        theory="posterior sampling has MSE 2 D* (Blau & Michaeli); lam = 0 ends in a mode for a GMM (WANG-5)",
    )


# ---------------------------------------------------------------------------------------------- BMF-10
def posterior_abs_error(weights, means, s: float, a) -> torch.Tensor:
    """``E|X - a|`` for ``X ~ sum_k w_k N(m_k, s^2)`` (rows), closed form: ``sum_k w_k s (2 phi(z) + z (2 Phi(z)
    - 1))``, ``z = (a - m_k)/s``. ``weights, means (n, K)``, ``a (n,)``."""
    z = (a.unsqueeze(-1) - means) / s
    phi = torch.exp(-0.5 * z.square()) / math.sqrt(2 * math.pi)
    Phi = 0.5 * torch.erfc(-z / math.sqrt(2))
    return (weights * s * (2 * phi + z * (2 * Phi - 1))).sum(-1)


def _mix_cdf(weights, means, s, x):
    return (weights * 0.5 * torch.erfc(-(x.unsqueeze(-1) - means) / (s * math.sqrt(2)))).sum(-1)


def l1_tradeoff_b1(cs, sigma_y: float = 0.5, n_grid: int = 4001) -> dict:
    """The L1 distortion and W1 perception along ``X^_c = (1 - c) M(Y) + c G(Y)`` on B1 (A = 1), by quadrature over y.

    ``M(y)`` is the posterior median (the L1-optimal estimate); ``G(y) = F_X^{-1}(F_Y(y))`` transports the law of
    Y (hence of M(Y), a monotone function of y) onto p_X. Both are increasing in y, so ``X^_c = h_c(Y)`` is
    increasing and its quantile is ``h_c(F_Y^{-1}(u))``: ``W1(p_X, p_X^_c) = E|G(Y) - h_c(Y)| = (1 - c) W1(p_X,
    p_M)`` exactly. ``D(c) = E|X - h_c(Y)| = int p(y) E[|X - h_c(y)| | y] dy``. Also the posterior-sampling point
    (P = 0), ``E|X - X~|`` with X, X~ i.i.d. from p(x|y), and the MMSE estimator's L1 error.
    """
    prob, _ = b1(sigma_y=sigma_y)
    ev = prob.evidence()
    sy = math.sqrt(0.05 + sigma_y**2)
    yg = torch.linspace(-1 - 7 * sy, 1 + 7 * sy, n_grid, dtype=F64)  # symmetric grid: yg[::-1] = -yg
    py = ev.log_prob(yg.unsqueeze(-1)).exp()
    W = prob._post_weights(yg.unsqueeze(-1))  # (n, 2)
    Mn = prob._update.post_means(yg.unsqueeze(-1))[..., 0]  # (n, 2)
    s = math.sqrt(float(prob._update.post_covs[0, 0, 0]))
    lo, hi = Mn.min(-1).values - 10 * s, Mn.max(-1).values + 10 * s
    for _ in range(80):  # bisection for the median: F(lo) < 1/2 <= F(hi)
        mid = 0.5 * (lo + hi)
        below = _mix_cdf(W, Mn, s, mid) < 0.5
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    med = 0.5 * (lo + hi)
    # G on y <= 0 from the lower tail (F_Y computed by erfc, no 1 - F cancellation), mirrored: the prior and the
    # evidence are symmetric, so G(-y) = -G(y)
    half = (n_grid + 1) // 2
    Fy = _mix_cdf(ev.weights.unsqueeze(0), ev.means[:, 0].unsqueeze(0), math.sqrt(float(ev.covs[0, 0, 0])),
                  yg[:half])
    G_low = quantile_1d(prob.prior, Fy)
    G = torch.cat([G_low, -G_low[: n_grid - half].flip(0)])
    monotone = bool((med.diff() > 0).all()) and bool((G.diff() >= 0).all())
    D, P = [], []
    for c in cs:
        h = (1 - c) * med + c * G
        D.append(float(torch.trapezoid(py * posterior_abs_error(W, Mn, s, h), yg)))
        P.append(float(torch.trapezoid(py * (G - h).abs(), yg)))
    mmse = (W * Mn).sum(-1)
    d_mmse = float(torch.trapezoid(py * posterior_abs_error(W, Mn, s, mmse), yg))
    # E|X - X~| for i.i.d. draws: sum_jk w_j w_k E|N(m_j - m_k, 2 s^2)|
    tau = math.sqrt(2) * s
    diff = Mn.unsqueeze(-1) - Mn.unsqueeze(-2)
    z = diff / tau
    e_abs = tau * (2 * torch.exp(-0.5 * z.square()) / math.sqrt(2 * math.pi) + z * torch.erf(z / math.sqrt(2)))
    d_ps = float(torch.trapezoid(py * (W.unsqueeze(-1) * W.unsqueeze(-2) * e_abs).sum((-1, -2)), yg))
    return {"c": list(cs), "D": D, "P": P, "D_mmse": d_mmse, "D_posterior_sampling": d_ps,
            "monotone": monotone, "mass": float(torch.trapezoid(py, yg))}


def check_bmf10(quick: bool) -> ClaimResult:
    """BMF-10: under L1 distortion and W1 perception the tradeoff persists: perfect perception costs distortion."""
    cs = [i / 10 for i in range(11)] if quick else [i / 40 for i in range(41)]
    r = l1_tradeoff_b1(cs, n_grid=2001 if quick else 8001)
    D, P = r["D"], r["P"]
    d_min, d_perfect = D[0], D[-1]
    nondecreasing_D = all(b >= a - 1e-12 for a, b in zip(D, D[1:], strict=False))
    nonincreasing_P = all(b <= a + 1e-12 for a, b in zip(P, P[1:], strict=False))
    passed = (
        r["monotone"]
        and nondecreasing_D
        and nonincreasing_P
        and P[0] > 1e-3
        and d_perfect - d_min > 1e-3
        and r["D_posterior_sampling"] > d_perfect
        and d_min <= r["D_mmse"]
        and abs(r["mass"] - 1) <= 1e-10
    )
    return ClaimResult(
        id="BMF-10",
        paper="blau2018perception",
        statement="The perception-distortion tradeoff holds for any distortion measure: with the L1 distortion the "
        "best perception-0 estimator still has a strictly higher distortion than the best estimator.",
        measured={
            "D_L1 at c = 0 (posterior median, the L1 optimum)": d_min,
            "W1(p_X, p_median)": P[0],
            "D_L1 at c = 1 (transport of the median's law onto p_X, P = 0)": d_perfect,
            "D_L1 posterior sampling (P = 0)": r["D_posterior_sampling"],
            "D_L1 of the MMSE (posterior mean)": r["D_mmse"],
            "ratio D(P=0, transport) / D_min": d_perfect / d_min,
            "ratio D(posterior sampling) / D_min": r["D_posterior_sampling"] / d_min,
            "curve (c, W1, D_L1)": [[c, p, d] for c, p, d in zip(cs, P, D, strict=True)][:: 2 if quick else 8],
        },
        expected="on B1 (A = 1, sigma = .5), along the geodesic from the posterior median M(Y) to its transport "
        "onto p_X, W1 falls linearly to 0 while the L1 distortion rises monotonically; the perfect-perception "
        "end costs strictly more than the L1 optimum (whose law is not p_X: W1 > 0), and posterior sampling, "
        "also at P = 0, costs more still",
        tolerance="exact monotonicity (1e-12 slack); gaps > 1e-3; quadrature mass 1 to 1e-10",
        reason="closed-form conditional L1 errors integrated over y by the trapezoid rule on +-7 sd of p(y) (the "
        "quadrature mass checks the grid); a monotone h gives the exact W1 by quantiles",
        verdict="holds",
        passed=passed,
        theory="Blau & Michaeli: the P-D tradeoff holds for any distortion measure",
    )


CHECKS = single_threaded({"DPS-10": check_dps10, "WANG-10": check_wang10, "BMF-10": check_bmf10})
