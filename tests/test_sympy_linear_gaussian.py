"""The 1-D linear-Gaussian model, derived symbolically with sympy and compared numerically with dptheory.

Model (docs/theory §2): X ~ N(m, s), Y = a X + N(0, sigma^2). Derived here from scratch:
- the posterior (completing the square in log p(x) + log p(y|x)): mean and variance;
- the evidence (integrating the joint density over x);
- D* = E[(X - mu(Y))^2] (expanding in independent standard normals), the law of the MMSE estimate and
  W = W2(p_X, p_{X*});
- the D-P curve, by minimising the MSE of the estimators m + k (X* - m) under W2(p_X, p_{X^}) <= P.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

import dptheory as dpt

x, y, m, a = sp.symbols("x y m a", real=True)
s, sigma = sp.symbols("s sigma", positive=True)


def _standard_normal_moment(k: int):
    """E[Z^k] for Z ~ N(0, 1), by integrating against the density."""
    z = sp.Symbol("z", real=True)
    return sp.integrate(z**k * sp.exp(-(z**2) / 2), (z, -sp.oo, sp.oo)) / sp.sqrt(2 * sp.pi)


def _expect(expr, z1, z2):
    """E[expr] for a polynomial in independent standard normals z1, z2 (expand, then use the moments)."""
    poly = sp.Poly(sp.expand(expr), z1, z2)
    mom = {k: _standard_normal_moment(k) for k in range(poly.total_degree() + 1)}
    return sp.simplify(sum(c * mom[i] * mom[j] for (i, j), c in poly.terms()))


@pytest.fixture(scope="module")
def derived():
    """Symbolic closed forms (computed once per module; a few seconds)."""
    log_joint = -((x - m) ** 2) / (2 * s) - (y - a * x) ** 2 / (2 * sigma**2)
    # posterior: the stationary point of the (quadratic) log joint is the mean, -1 / (d^2/dx^2) the variance
    post_mean = sp.solve(sp.diff(log_joint, x), x)[0]
    post_var = sp.simplify(-1 / sp.diff(log_joint, x, 2))
    # evidence: complete the square, log_joint = -p (x - x0)^2 + c (checked), then integrate exp(-p u^2)
    A2, B, C = sp.Poly(sp.expand(log_joint), x).all_coeffs()
    p, x0 = -A2, B / (-2 * A2)
    c = C + B**2 / (4 * p)
    assert sp.simplify(sp.expand(-p * (x - x0) ** 2 + c - log_joint)) == 0
    u, q = sp.Symbol("u", real=True), sp.Symbol("q", positive=True)
    gauss = sp.integrate(sp.exp(-q * u**2), (u, -sp.oo, sp.oo))
    evidence = gauss.subs(q, p) * sp.exp(c) / (2 * sp.pi * sp.sqrt(s) * sigma)
    # D* = E[(X - mu(Y))^2] and the MMSE law, with X = m + sqrt(s) z1 and N = sigma z2 independent
    z1, z2 = sp.symbols("z1 z2", real=True)
    X = m + sp.sqrt(s) * z1
    X_star = post_mean.subs(y, a * X + sigma * z2)
    d_star = _expect((X - X_star) ** 2, z1, z2)
    s_star = _expect((X_star - _expect(X_star, z1, z2)) ** 2, z1, z2)
    cov_x_xstar = _expect((X - m) * (X_star - m), z1, z2)
    return dict(
        post_mean=post_mean,
        post_var=post_var,
        evidence=evidence,
        d_star=d_star,
        s_star=s_star,
        cov_x_xstar=cov_x_xstar,
    )


def test_symbolic_identities(derived):
    """D* = posterior variance; S* = s - D*; Cov(X, X*) = Var(X*) (orthogonality of the MMSE error)."""
    assert sp.simplify(derived["d_star"] - derived["post_var"]) == 0
    assert sp.simplify(derived["s_star"] - (s - derived["post_var"])) == 0
    assert sp.simplify(derived["cov_x_xstar"] - derived["s_star"]) == 0
    # the evidence is the N(a m, a^2 s + sigma^2) density
    ref = sp.exp(-((y - a * m) ** 2) / (2 * (a**2 * s + sigma**2))) / sp.sqrt(2 * sp.pi * (a**2 * s + sigma**2))
    assert sp.simplify(derived["evidence"] / ref) == 1


def test_symbolic_dp_curve(derived):
    """Among X^ = m + k (X* - m) (k >= 0): W2(p_X, p_X^) = |sqrt(s) - k sqrt(S*)|, and the MSE is quadratic
    in k. The constraint W2 <= P is active for P < W, giving k = (sqrt(s) - P) / sqrt(S*) and
    MSE = D* + (W - P)^2."""
    k, P = sp.symbols("k P", nonnegative=True)
    s_star, d_star, cxs = derived["s_star"], derived["d_star"], derived["cov_x_xstar"]
    mse = s - 2 * k * cxs + k**2 * s_star  # E[(X - m - k (X* - m))^2]
    k_mmse = sp.solve(sp.diff(mse, k), k)[0]
    assert sp.simplify(k_mmse - 1) == 0  # unconstrained optimum is the MMSE estimator itself
    W = sp.sqrt(s) - sp.sqrt(s_star)  # 1-D W2 between N(m, s) and N(m, S*), S* <= s
    k_P = (sp.sqrt(s) - P) / sp.sqrt(s_star)  # the W2 constraint with equality, k <= 1 iff P <= W
    curve = d_star + (W - P) ** 2
    assert sp.simplify(sp.expand(mse.subs(k, k_P) - curve)) == 0


CASES = [
    # (m, s, a, sigma, y)
    (0.4, 0.7, 0.5, 0.4, 0.3),
    (-1.0, 2.0, 1.0, 0.1, -0.5),
    (0.0, 0.05, 3.0, 1.5, 2.0),
]


@pytest.mark.parametrize("m_, s_, a_, sigma_, y_", CASES)
def test_library_matches_sympy(derived, m_, s_, a_, sigma_, y_):
    vals = {m: m_, s: s_, a: a_, sigma: sigma_, y: y_}
    num = lambda expr: float(expr.subs(vals).evalf(30))
    prob = dpt.LinearInverseProblem(dpt.Gaussian([m_], [[s_]]), [[a_]], sigma_)
    post = prob.posterior([y_])
    # float64 evaluation of exact rational expressions: round-off ~1e-16 relative; 1e-12 leaves room
    assert float(post.mean[0]) == pytest.approx(num(derived["post_mean"]), rel=1e-12, abs=1e-14)
    assert float(post.cov[0, 0]) == pytest.approx(num(derived["post_var"]), rel=1e-12)
    assert float(prob.evidence().log_prob([y_]).exp()) == pytest.approx(num(derived["evidence"]), rel=1e-12)
    assert prob.mmse_error().value == pytest.approx(num(derived["d_star"]), rel=1e-12)
    assert float(prob.mmse_law().cov[0, 0]) == pytest.approx(num(derived["s_star"]), rel=1e-12)
    W = math.sqrt(s_) - math.sqrt(num(derived["s_star"]))
    curve = dpt.optimal_dp_curve(prob)
    assert curve.w == pytest.approx(W, rel=1e-10, abs=1e-12)  # Bures via eigendecomposition, sqrt round-off
    assert curve.mmse_error == pytest.approx(num(derived["d_star"]), rel=1e-12)
    for frac in [0.0, 0.3, 0.8, 1.0, 1.5]:
        P = frac * W
        want = num(derived["d_star"]) + max(W - P, 0.0) ** 2
        assert float(curve.distortion(P)) == pytest.approx(want, rel=1e-10)
        est = dpt.joint_optimal_estimator(prob, P)
        assert est.distortion() == pytest.approx(want, rel=1e-10)
        # the optimal estimator is the linear one derived above, k = (sqrt(s) - P) / sqrt(S*) (for P <= W)
        k = (math.sqrt(s_) - min(P, W)) / math.sqrt(num(derived["s_star"]))
        assert float(est.transform[0, 0]) == pytest.approx(k, rel=1e-10)
        assert float(est.noise_cov.abs().max()) == 0.0  # S* > 0 in 1-D (a != 0): no extra noise, Q = 0
    assert torch.is_tensor(curve.distortion(0.0))
