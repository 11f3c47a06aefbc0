"""The theorems of MAP-RPS (Zhang, Liu, Yan, Xiao & Gu, ICML 2026, arXiv 2605.28711), checked
(``paper_notes/map_rps.md``; the statements are those the available summaries transcribe, and each check says
which reading it evaluates).

- MRPS-10 (Theorem 3.2): for a mu-strongly log-concave posterior, ``||X_MAP - X_MMSE|| <= sqrt(n/mu)`` and
  ``E||X - X_MAP||^2 <= D* + n/mu``. Evaluated on strongly log-concave NON-Gaussian posteriors (hyperbolic-secant
  priors, 1-D and 2-D, exact MAP by Newton, MMSE by quadrature); the mixture B1 falls outside the assumption
  (the smallest curvature of its negative log posterior is negative).
- MRPS-11 (Theorem 3.3): ``grad log p_0(x) = ((1 - ab)/(r^2 sqrt(ab))) E_{x_t ~ q(.|x)}[grad log p_t(x_t)]``: the
  matrix form (``r^2`` -> ``Cov[x0|x_t]``) is exact for a Gaussian; the scalar form's error grows with t1.
- MRPS-12 (Theorem 3.5 / Corollary 3.6): ``W2(p_{X|y}, p_{0->t0->0}) <= ab_{t0}^{1 - L_s} sqrt(2 n/mu) + eps``.
  On a Gaussian problem the stage-2 law is exact: the bound holds, and the measured order in ab_{t0} is 2 from
  the exact MAP (1 from the stage-1 point), faster than the stated 1 - L_s <= 1.
"""

from __future__ import annotations

import math

import torch

from ..divergences import gaussian_w2
from ..reference_problems import b1, g2, g2post
from ..sampler_laws import map_rps_stage1_fixed_point, map_rps_stage2_law
from ..schedules import linear_schedule
from ._util import F64, single_threaded, t64
from .result import ClaimResult

__all__ = ["CHECKS", "SechProblem", "stage2_w2_exact"]

HALF_PI = 0.5 * math.pi


# ---------------------------------------------------------------------------------------------- MRPS-10
class SechProblem:
    """Prior ``p(x) = prod_j (1/2) sech(pi x_j / 2)`` (the hyperbolic-secant law, variance 1 per coordinate),
    ``y = A x + N(0, sigma^2 I)``.

    ``-log p(x | y) = sum_j log cosh(pi x_j / 2) + ||y - A x||^2 / (2 sigma^2) + const`` has Hessian
    ``diag((pi/2)^2 sech^2(pi x_j / 2)) + A^T A / sigma^2``, so the posterior is mu-strongly log-concave with
    ``mu = lambda_min(A^T A) / sigma^2`` (the infimum, approached as |x| -> inf), and not Gaussian.
    """

    def __init__(self, A, sigma: float):
        self.A = t64(A)
        self.sigma = float(sigma)
        self.d = self.A.shape[1]
        self.mu = float(torch.linalg.eigvalsh(self.A.T @ self.A).min()) / self.sigma**2

    def neg_log_post(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` -> ``(...)``, up to a constant (log cosh written stably)."""
        u = HALF_PI * x
        logcosh = (u.abs() + torch.log1p(torch.exp(-2 * u.abs())) - math.log(2.0)).sum(-1)
        r = y - x @ self.A.T
        return logcosh + 0.5 * r.square().sum(-1) / self.sigma**2

    def map(self, y: torch.Tensor, iters: int = 60) -> torch.Tensor:
        """The MAP by Newton's method from the least-squares point (strongly convex objective)."""
        x = torch.linalg.lstsq(self.A, y.unsqueeze(-1)).solution[:, 0]
        AtA = self.A.T @ self.A / self.sigma**2
        for _ in range(iters):
            g = self.gradient(x, y)
            H = torch.diag(HALF_PI**2 / torch.cosh(HALF_PI * x).square()) + AtA
            x = x - torch.linalg.solve(H, g)
        return x

    def gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return HALF_PI * torch.tanh(HALF_PI * x) - self.A.T @ (y - self.A @ x) / self.sigma**2

    def moments(self, y: torch.Tensor, center: torch.Tensor, n: int, width: float):
        """Posterior mean, ``E[||X - center||^2 | y]`` and ``tr Cov`` by a tensor trapezoid rule over a box of
        half-width ``width`` posterior-sds (``1/sqrt(mu)`` bounds every sd) around ``center``."""
        h = width / math.sqrt(self.mu)
        axes = [torch.linspace(float(c) - h, float(c) + h, n, dtype=F64) for c in center]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, self.d)
        f = self.neg_log_post(grid, y)
        w = torch.exp(-(f - f.min()))
        w = w / w.sum()  # uniform spacing: the trapezoid weights' edge halving is below exp(-width^2/2)
        mean = (w.unsqueeze(-1) * grid).sum(0)
        to_center = (w * (grid - center).square().sum(-1)).sum()
        tr = (w * (grid - mean).square().sum(-1)).sum()
        return mean, float(to_center), float(tr)


def _min_curvature_b1(sigma_y: float, y: float) -> float:
    """``min_x -(d^2/dx^2) log p(x | y)`` over x in [-3, 3] for B1, by autograd on the exact GMM posterior."""
    prob, yy = b1(sigma_y=sigma_y, y=y)
    post = prob.posterior(yy)
    x = torch.linspace(-3, 3, 1201, dtype=F64).unsqueeze(-1).requires_grad_(True)
    (g,) = torch.autograd.grad(post.log_prob(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    return float(-h.max())


def _map_mmse_1d(one: SechProblem, ny: int) -> dict:
    """The 1-D sech problem on a grid of ``ny`` measurements y in [-6, 6]: per y, ``|MAP - MMSE|`` and
    ``E[|X - MAP|^2 | y] - tr Cov = |MAP - MMSE|^2``; their averages over ``Y ~ p(y)`` (trapezoid in y, with
    ``p(y)`` itself by quadrature over x in [-14, 14]) and the quadrature mass of ``p(y)``."""
    ys = torch.linspace(-6.0, 6.0, ny, dtype=F64)
    dist, excess, py = [], [], []
    xs = torch.linspace(-14, 14, 2801, dtype=F64)
    prior_pdf = 0.5 / torch.cosh(HALF_PI * xs)
    for yv in ys:
        y = yv.reshape(1)
        x_map = one.map(y)
        mean, to_map, tr = one.moments(y, x_map, 4001, 14.0)
        dist.append(float((mean - x_map).norm()))
        excess.append(to_map - tr)  # E[|X - MAP|^2 | y] - tr Cov = |MAP - MMSE|^2
        lik = torch.exp(-0.5 * (yv - xs).square() / one.sigma**2) / math.sqrt(2 * math.pi * one.sigma**2)
        py.append(float(torch.trapezoid(prior_pdf * lik, xs)))
    py_t, dist_t = t64(py), t64(dist)
    mass = float(torch.trapezoid(py_t, ys))
    return {
        "max_dist": max(dist),
        "e_dist": float(torch.trapezoid(py_t * dist_t, ys)) / mass,
        "e_excess": float(torch.trapezoid(py_t * t64(excess), ys)) / mass,
        "mass": mass,
    }


def _map_mmse_2d(two: SechProblem, vals: tuple[float, ...], n_grid: int) -> dict:
    """The 2-D sech problem on the measurement grid ``vals x vals``: max over y of ``||MAP - MMSE||``, of
    ``E[||X - MAP||^2 | y] - tr Cov`` and of the gradient residual at the Newton MAP (tensor trapezoid rule
    with ``n_grid`` points per axis over +-12 posterior sds)."""
    dist2, excess2, resid = [], [], 0.0
    for a in vals:
        for b in vals:
            y = t64([a, b])
            x_map = two.map(y)
            resid = max(resid, float(two.gradient(x_map, y).abs().max()))
            mean, to_map, tr = two.moments(y, x_map, n_grid, 12.0)
            dist2.append(float((mean - x_map).norm()))
            excess2.append(to_map - tr)
    return {"max_dist": max(dist2), "max_excess": max(excess2), "resid": resid}


def check_mrps10(quick: bool) -> ClaimResult:
    """MRPS-10: Theorem 3.2 evaluated on strongly log-concave non-Gaussian posteriors; B1 is outside it."""
    # 1-D: per-y and averaged over Y ~ p(y) (quadrature over a y grid)
    one = SechProblem([[1.0]], 0.5)
    one_d = _map_mmse_1d(one, 61 if quick else 241)
    bound1 = math.sqrt(1 / one.mu)
    # 2-D: a grid of measurements
    two = SechProblem([[1.0, 0.5], [0.3, 1.0]], 0.5)
    vals = (-3.0, 0.0, 1.5, 3.0) if quick else (-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0)
    two_d = _map_mmse_2d(two, vals, 161 if quick else 321)
    bound2 = math.sqrt(2 / two.mu)
    # the mixture B1 (0.5 N(+-1, .05), A = 1): the smallest curvature of -log p(x | y)
    curv = {f"sigma={s:g},y={y:g}": _min_curvature_b1(s, y) for s, y in ((0.5, 0.0), (0.5, -0.6), (0.1, -0.6))}
    analytic = 1 / 0.5**2 + 1 / 0.05 - 1 / 0.05**2  # 1/sigma^2 + 1/v - delta^2/v^2 at the midpoint x = 0
    passed = (
        one_d["max_dist"] <= bound1
        and one_d["e_excess"] <= 1 / one.mu
        and two_d["max_dist"] <= bound2
        and two_d["max_excess"] <= 2 / two.mu
        and two_d["resid"] <= 1e-10
        and all(v < 0 for v in curv.values())
        and abs(curv["sigma=0.5,y=0"] - analytic) <= 1e-6 * abs(analytic)
    )
    return ClaimResult(
        id="MRPS-10",
        paper="zhang2026maprps",
        statement="Theorem 3.2: if the posterior is mu-strongly log-concave, E||X_MAP - X_MMSE|| <= sqrt(n/mu) and "
        "E||X - X_MAP||^2 <= D* + n/mu, so the MAP is a cheap stand-in for the MMSE.",
        measured={
            "1-D sech prior, sigma=.5 (mu=4): max_y |MAP-MMSE|": one_d["max_dist"],
            "1-D: E_Y |MAP-MMSE|": one_d["e_dist"],
            "1-D: bound sqrt(1/mu)": bound1,
            "1-D: E||X-MAP||^2 - D*": one_d["e_excess"],
            "1-D: bound 1/mu": 1 / one.mu,
            "1-D: quadrature mass of p(y)": one_d["mass"],
            "2-D sech prior, A=[[1,.5],[.3,1]], sigma=.5: mu": two.mu,
            "2-D: max_y ||MAP-MMSE||": two_d["max_dist"],
            "2-D: bound sqrt(2/mu)": bound2,
            "2-D: max_y E[||X-MAP||^2|y] - tr Cov": two_d["max_excess"],
            "2-D: bound 2/mu": 2 / two.mu,
            "2-D: max |grad| at the MAP": two_d["resid"],
            "B1 min_x -d2 log p(x|y) (negative: not log-concave)": curv,
            "B1 analytic at x=0, sigma=.5, y=0": analytic,
        },
        expected="on the strongly log-concave sech posteriors the bounds hold, with a wide margin (the MAP-MMSE "
        "distance is a few percent of sqrt(n/mu)); B1's negative log posterior has negative curvature "
        "(1/sigma^2 + 1/v - 1/v^2 = -376 at x = 0 for sigma = .5), so Theorem 3.2 does not apply to the mixture "
        "problems, even at sigma = .1 where the posterior at y = -.6 is effectively unimodal",
        tolerance="the bounds themselves (inequalities); gradient residual <= 1e-10 at the Newton MAP; the B1 "
        "curvature at x = 0 to 1e-6 relative",
        reason="Newton on a strongly convex objective (residual checked, not a solver flag); trapezoid "
        "quadrature over +-14 (1-D) / +-12 (2-D) posterior sds of a smooth integrand: its error (< 1e-8, "
        "test_claims_theorems) is far below the margins",
        verdict="holds",
        passed=passed,
        theory="MAP-RPS Theorem 3.2 as transcribed; strong log-concavity",
    )


# ---------------------------------------------------------------------------------------------- MRPS-11
def _gauss_hermite(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the probabilists' Gauss-Hermite rule: ``E f(Z) ~ sum w_i f(z_i)``, Z ~ N(0, 1)."""
    from numpy.polynomial.hermite_e import hermegauss

    z, w = hermegauss(n)
    return t64(z), t64(w / w.sum())


def prior_score_identity(prior, x: torch.Tensor, ab: float, n_nodes: int = 40):
    """``E_{x_t ~ N(sqrt(ab) x, (1-ab) I)}[s_t(x_t)]`` and ``E[Cov[x0 | x_t]]`` by tensor Gauss-Hermite.

    ``x (k, d)`` with d <= 2 -> ``(k, d)`` and ``(k, d, d)``.
    """
    z, w = _gauss_hermite(n_nodes)
    d = x.shape[-1]
    if d == 1:
        Z, W = z.unsqueeze(-1), w
    else:
        Z = torch.stack(torch.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2)
        W = (w.unsqueeze(1) * w.unsqueeze(0)).reshape(-1)
    xt = math.sqrt(ab) * x.unsqueeze(1) + math.sqrt(1 - ab) * Z.unsqueeze(0)  # (k, q, d)
    diffused = prior.diffuse(ab)
    score = (W.unsqueeze(-1) * diffused.score(xt)).sum(1)
    cov = (W.reshape(1, -1, 1, 1) * prior.denoise_cov(xt, ab)).sum(1)
    return score, cov


def check_mrps11(quick: bool) -> ClaimResult:
    """MRPS-11: Theorem 3.3, matrix form exact for a Gaussian; scalar-form error against t1."""
    sched = linear_schedule()
    t1s = (1, 10, 50, 200) if quick else (1, 5, 10, 25, 50, 100, 200, 400)
    gen = torch.Generator().manual_seed(3311)
    # anisotropic Gaussian prior (G2's prior)
    prior, _ = g2()
    prior = prior.prior
    xg = prior.sample(32 if quick else 128, generator=gen)
    truth_g = prior.score(xg)
    matrix_err, scalar_g = 0.0, {}
    for t1 in t1s:
        ab = float(sched.alpha_bar(t1))
        es, ec = prior_score_identity(prior, xg, ab, 8)
        matrix = (1 - ab) / math.sqrt(ab) * torch.linalg.solve(ec, es.unsqueeze(-1))[..., 0]
        matrix_err = max(matrix_err, float(((matrix - truth_g).norm(dim=-1) / truth_g.norm(dim=-1)).max()))
        r2 = torch.diagonal(ec, dim1=-2, dim2=-1).mean(-1, keepdim=True)  # reading: r^2 = tr Cov[x0|x_t] / d
        scalar = (1 - ab) / (r2 * math.sqrt(ab)) * es
        scalar_g[f"t1={t1}"] = float((scalar - truth_g).norm(dim=-1).square().mean().sqrt()
                                     / truth_g.norm(dim=-1).square().mean().sqrt())
    # B1's 1-D GMM prior: scalar form with r^2 = E[Var[x0 | x_t]] (exact, averaged over the same x_t)
    prob_b, _ = b1()
    gmm = prob_b.prior
    xb = gmm.sample(64 if quick else 256, generator=gen)
    truth_b = gmm.score(xb)
    scalar_b, scalar_b_comp = {}, {}
    for t1 in t1s:
        ab = float(sched.alpha_bar(t1))
        es, ec = prior_score_identity(gmm, xb, ab, 60 if quick else 120)
        est = (1 - ab) / (ec[..., 0] * math.sqrt(ab)) * es
        r2c = 1.0 / (1 / 0.05 + ab / (1 - ab))  # the other reading: a component's Var[x0 | x_t]
        est_c = (1 - ab) / (r2c * math.sqrt(ab)) * es
        norm = truth_b.square().mean().sqrt()
        scalar_b[f"t1={t1}"] = float((est - truth_b).square().mean().sqrt() / norm)
        scalar_b_comp[f"t1={t1}"] = float((est_c - truth_b).square().mean().sqrt() / norm)
    g_vals, b_vals = list(scalar_g.values()), list(scalar_b.values())
    increasing = all(b > a for a, b in zip(g_vals, g_vals[1:], strict=False)) and all(
        b > a for a, b in zip(b_vals, b_vals[1:], strict=False))
    passed = matrix_err <= 1e-12 and increasing and g_vals[0] <= 1e-3 and b_vals[0] <= 1e-3
    return ClaimResult(
        id="MRPS-11",
        paper="zhang2026maprps",
        statement="Theorem 3.3: the prior score through the denoiser at level t1: grad log p_X(x) = "
        "((1 - ab)/(r^2 sqrt(ab))) E_{x_t1 ~ q(.|x0 = x)}[grad log p_t1(x_t1)].",
        measured={
            "Gaussian (G2 prior): matrix form max rel error": matrix_err,
            "Gaussian: scalar form rel RMS error (r^2 = tr Cov/d)": scalar_g,
            "B1 prior: scalar form rel RMS error (r^2 = E Var[x0|x_t])": scalar_b,
            "B1 prior: scalar form rel RMS error (r^2 = component Var)": scalar_b_comp,
            "ab(t1)": {f"t1={t}": float(sched.alpha_bar(t)) for t in t1s},
        },
        expected="matrix form (r^2 -> Cov[x0|x_t], exact for a Gaussian prior) to 1e-12; the scalar form is an "
        "approximation whose error is O(1 - ab) small at t1 = 1 (< 1e-3) and grows with t1, on the anisotropic "
        "Gaussian and on B1",
        tolerance="1e-12 relative for the matrix form; the scalar-form errors must increase with t1 and be "
        "< 1e-3 at t1 = 1",
        reason="Gauss-Hermite quadrature over x_t (exact for the Gaussian's linear score; 60-120 nodes for the "
        "smooth GMM score, cross-checked against Monte Carlo with SE in test_claims_theorems)",
        verdict="approximate",
        passed=passed,
        theory="MAP-RPS Theorem 3.3 as transcribed; the Gaussian prior-gradient identity",
    )


# ---------------------------------------------------------------------------------------------- MRPS-12
def stage2_w2_exact(Sigma: torch.Tensor, ab: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """W2 between the exact stage-2 law ``N(mu + U a, Sigma (I - U^2))`` and ``N(mu, Sigma)``, without
    cancellation: ``sqrt(||U a||^2 + sum_i s_i (u_i^2 / (1 + sqrt(1 - u_i^2)))^2)``, ``u_i = ab s_i /
    (ab s_i + 1 - ab)`` in Sigma's eigenbasis (``a`` the stage-1 point's offset from mu, default 0)."""
    s, V = torch.linalg.eigh(Sigma)
    ab = torch.as_tensor(ab, dtype=F64).unsqueeze(-1)
    u = ab * s / (ab * s + 1 - ab)
    cov_part = (s * (u.square() / (1 + torch.sqrt(1 - u.square()))).square()).sum(-1)
    mean_part = 0.0 if offset is None else (u * (V.T @ offset)).square().sum(-1)
    return torch.sqrt(cov_part + mean_part)


def _slope(ab: torch.Tensor, w: torch.Tensor) -> float:
    """Least-squares slope of log w against log ab."""
    la, lw = ab.log(), w.log()
    la0 = la - la.mean()
    return float((la0 * (lw - lw.mean())).sum() / la0.square().sum())


def check_mrps12(quick: bool) -> ClaimResult:
    """MRPS-12: the stage-2 W2 against ab(t0): the bound holds; its order is 2 (from the MAP), not 1 - L_s."""
    sched = linear_schedule()
    step = 20 if quick else 5
    t0s = torch.arange(step, sched.T + 1, step)
    ab = torch.stack([sched.alpha_bar(int(t)) for t in t0s]).to(F64)
    prob, y = g2post()
    post = prob.posterior(y)
    W = stage2_w2_exact(post.cov, ab)
    # cross-check against the library's stage-2 law and the general Bures formula where it has no cancellation
    check_err = 0.0
    for t0 in (20, 100, 300):
        law = map_rps_stage2_law(prob, y, t0, schedule=sched)
        k = int(t0 // step) - 1 if t0 % step == 0 else None
        if k is not None:
            check_err = max(check_err, abs(float(gaussian_w2(law, post)) - float(W[k])))
    n, mu = 2, 1.0 / float(torch.linalg.eigvalsh(post.cov).max())
    bound = ab * math.sqrt(2 * n / mu)  # L_s = 0: the smallest bound of the family (exponent 1 - L_s <= 1)
    small = ab <= 0.03  # t0 >= ~600: the asymptotic regime
    mid = (ab >= 0.1) & (ab <= 0.5)
    slope_small, slope_mid = _slope(ab[small], W[small]), _slope(ab[mid], W[mid])
    # from the stage-1 fixed point (t1 = 10, Bayes weight) on G2: a mean offset, order 1
    prob2, y2 = g2()
    post2 = prob2.posterior(y2)
    a = map_rps_stage1_fixed_point(prob2, y2, t1=10, schedule=sched) - post2.mean
    W1 = stage2_w2_exact(post2.cov, ab, a)
    tiny = ab <= 3e-4  # t0 >= ~880: below the crossover ab ~ 2e-3 where the O(ab) mean offset takes over
    slope1_small = _slope(ab[tiny], W1[tiny])
    slope1_mid = _slope(ab[small], W1[small])
    mu2 = 1.0 / float(torch.linalg.eigvalsh(post2.cov).max())
    bound1 = ab * math.sqrt(2 * n / mu2)
    worst_ratio = float(torch.maximum(W / bound, W1 / bound1).max())
    passed = (
        worst_ratio < 1.0
        and abs(slope_small - 2.0) <= 0.02
        and abs(slope1_small - 1.0) <= 0.05
        and check_err <= 1e-7
    )
    return ClaimResult(
        id="MRPS-12",
        paper="zhang2026maprps",
        statement="Theorem 3.5 / Corollary 3.6: W2(p_X|y, p_{0->t0->0}) <= ab_t0^(1 - L_s) sqrt(2 n/mu) + "
        "eps_score, decreasing in t0 when the score's Lipschitz constant L_s < 1.",
        measured={
            "G2post from the exact MAP: W2 at t0=20,100,300,600": [float(stage2_w2_exact(post.cov, sched.alpha_bar(t)))
                                                                  for t in (20, 100, 300, 600)],
            "log-log slope in ab, ab <= 0.03": slope_small,
            "log-log slope in ab, 0.1 <= ab <= 0.5": slope_mid,
            "G2 from the stage-1 point (t1=10): slope, ab <= 3e-4": slope1_small,
            "G2 from the stage-1 point: slope, ab <= 0.03 (crossover)": slope1_mid,
            "max W2 / bound (L_s = 0, eps = 0)": worst_ratio,
            "|stable W2 - Bures W2| at t0 = 20,100,300": check_err,
            "grid": f"t0 = {step}..{sched.T} step {step}",
        },
        expected="with exact scores (eps_score = 0) the bound holds at every t0 even with L_s = 0 (its smallest "
        "member); from the exact MAP, W2 = ||Sigma^(1/2)(I - (I - U^2)^(1/2))||_F ~ ab^2 ||Sigma^(5/2)||/2 as ab "
        "-> 0: order 2, faster than the stated order 1 - L_s <= 1; from the stage-1 point (O(tau^2) from the MAP) "
        "the mean offset U a is O(ab) and takes over below ab ~ 2e-3: order 1 there (1.48 over ab <= 0.03)",
        tolerance="W2 < bound at every t0; slopes 2 +- 0.02 (ab <= 0.03) and 1 +- 0.05 (ab <= 3e-4); 1e-7 between "
        "the stable "
        "closed form and the Bures formula",
        reason="exact laws; the slope over ab <= 0.03 carries O(ab) curvature (measured within 0.01 of the "
        "limit); the general Bures formula loses ~1e-8 to its square root of a near-zero residual",
        verdict="holds",
        passed=passed,
        theory="MAP-RPS Theorem 3.5 / Corollary 3.6 as transcribed; exact stage-2 law",
    )


CHECKS = single_threaded({"MRPS-10": check_mrps10, "MRPS-11": check_mrps11, "MRPS-12": check_mrps12})
