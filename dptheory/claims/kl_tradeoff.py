"""The distortion-perception tradeoff with KL perception (``paper_notes/blau_michaeli_freirich.md``).

Blau & Michaeli define the P-D function for any divergence; Wang et al. prove VSRD optimal for W2 and plot KL.
:mod:`dptheory.dp_curve_kl` derives the KL curve of a Gaussian posterior in closed form.

- KLDP-1: the closed-form KL-optimal curves (reverse KL over all laws; forward KL over Gaussian laws) equal a
  brute-force optimisation over Gaussian laws; the forward direction's true optimum is non-Gaussian; the joint
  reverse-KL curve in the commuting case equals brute force too.
- KLDP-2: VSRD (``N(mu, lam Sigma)``) and MAP-RPS (``N(mu, Sigma (I - U^2))``) are ON the KL curve for an
  isotropic posterior and strictly above it for an anisotropic one: VSRD is W2-optimal but not KL-optimal.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..divergences import gaussian_kl
from ..dp_curve import per_measurement_dp_curve
from ..dp_curve_kl import KLDPCurve, forward_kl_optimum_1d, joint_kl_dp_point_commuting
from ..gaussian import Gaussian
from ..reference_problems import g2post, iso
from ..sampler_laws import map_rps_stage2_law
from ..schedules import linear_schedule
from ._util import single_threaded
from .result import ClaimResult

__all__ = ["CHECKS", "brute_force_kl_dp", "kl_eigs"]


def kl_eigs(c, s, direction: str) -> float:
    """KL between commuting zero-mean Gaussians with eigenvalues c (estimator) and s (posterior)."""
    c, s = np.asarray(c, float), np.asarray(s, float)
    r = c / s
    if direction == "reverse":
        return float(0.5 * np.sum(r - 1 - np.log(r)))
    return float(0.5 * np.sum(1 / r - 1 + np.log(r)))


def _kl_np(m1, C1, m2, C2) -> float:
    """KL(N(m1, C1) || N(m2, C2)), numpy (the brute force's own formula)."""
    d = len(m1)
    (s1, ld1), (s2, ld2) = np.linalg.slogdet(C1), np.linalg.slogdet(C2)
    if s1 <= 0 or s2 <= 0 or not np.isfinite(ld1 + ld2):
        return 1e30  # a trial point of the optimiser with a singular law: infeasible, never the answer
    try:
        inv = np.linalg.inv(C2)
    except np.linalg.LinAlgError:
        return 1e30
    dm = m2 - m1
    return float(0.5 * (np.trace(inv @ C1) + dm @ inv @ dm - d + ld2 - ld1))


def brute_force_kl_dp(mu, Sigma, P: float, direction: str, starts: int = 4, seed: int = 0) -> float:
    """``min tr Sigma + ||m - mu||^2 + tr C`` over Gaussian ``N(m, C)`` with KL <= P, by SLSQP over
    ``(m, Cholesky(C))`` from several random starts (an oracle independent of the closed form)."""
    from scipy.optimize import minimize

    mu, Sigma = np.asarray(mu, float), np.asarray(Sigma, float)
    d = len(mu)
    il = np.tril_indices(d)
    diag = [k for k, (i, j) in enumerate(zip(*il, strict=True)) if i == j]

    def unpack(z):
        L = np.zeros((d, d))
        v = z[d:].copy()
        v[diag] = np.exp(np.clip(v[diag], -60.0, 60.0))  # a bounded search space: no overflow on wild steps
        L[il] = v
        return mu + z[:d], L @ L.T

    def dist(z):
        m, C = unpack(z)
        return np.trace(Sigma) + np.sum((m - mu) ** 2) + np.trace(C)

    def kl(z):
        m, C = unpack(z)
        return _kl_np(m, C, mu, Sigma) if direction == "reverse" else _kl_np(mu, Sigma, m, C)

    rs = np.random.default_rng(seed)
    best = math.inf
    for _ in range(starts):
        z0 = np.concatenate([0.05 * rs.standard_normal(d), 0.2 * rs.standard_normal(len(il[0]))])
        z0[d:][diag] += 0.5 * np.log(np.diag(Sigma)) - 0.3
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # wild trial steps; answer checked below
            res = minimize(dist, z0, method="SLSQP", constraints=[{"type": "ineq", "fun": lambda z: P - kl(z)}],
                           options={"ftol": 1e-14, "maxiter": 2000})
        if kl(res.x) <= P + 1e-9:  # feasible (checked on the answer, not on the solver's flag)
            best = min(best, float(dist(res.x)))
    return best


# ---------------------------------------------------------------------------------------------- KLDP-1
def check_kldp1(quick: bool) -> ClaimResult:
    """KLDP-1: closed-form KL curves vs brute force; the forward-KL non-Gaussian optimum; the joint form."""
    Ps = (0.05, 0.5) if quick else (0.02, 0.1, 0.5, 1.5)
    worst = 0.0
    table = {}
    for name, make in (("G2post", g2post), ("Iso", iso)):
        prob, y = make()
        post = prob.posterior(y)
        for direction in ("reverse", "forward"):
            curve = KLDPCurve(post, direction)
            for P in Ps:
                closed = float(curve.distortion(P))
                brute = brute_force_kl_dp(post.mean.numpy(), post.cov.numpy(), P, direction,
                                          starts=2 if quick else 5, seed=11)
                table[f"{name} {direction} P={P:g}"] = [closed, brute]
                worst = max(worst, abs(closed - brute) / closed)
    # forward KL: the non-Gaussian optimum q ∝ p / (1 + a x^2) beats the best Gaussian (1-D, s = 0.3)
    s = 0.3
    a = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    P_ng, D_ng = forward_kl_optimum_1d(s, a)
    curve_1d = KLDPCurve(Gaussian([0.0], [[s]]), "forward")
    D_gauss = curve_1d.distortion(P_ng)
    saving = (D_gauss - D_ng).tolist()
    # joint reverse-KL curve, commuting case: S = diag(1, .5), A = I, sigma = .5 -> S* = S^2/(S + .25)
    S = torch.tensor([1.0, 0.5], dtype=torch.float64)
    S_star = S.square() / (S + 0.25)
    joint = {}
    worst_joint = 0.0
    for nu in (0.1, 1.0):
        P_j, E_j = joint_kl_dp_point_commuting(S, S_star, nu)
        brute = _joint_brute(S.numpy(), S_star.numpy(), P_j, starts=2 if quick else 5)
        joint[f"nu={nu:g}"] = {"P": P_j, "closed": E_j, "brute": brute}
        worst_joint = max(worst_joint, abs(E_j - brute) / max(E_j, 1e-3))
    passed = worst <= 1e-8 and worst_joint <= 1e-8 and min(saving) > 0
    return ClaimResult(
        id="KLDP-1",
        paper="blau2018perception",
        statement="The perception-distortion function exists for any divergence (here KL) and is non-increasing "
        "and convex; for a Gaussian posterior it has a closed form (derived here): reverse KL(q||p) -> optimal "
        "law N(mu, (Sigma^-1 + I/theta)^-1) over all laws; forward KL(p||q) over Gaussian laws -> "
        "c_i = (sqrt(theta^2 + 4 theta s_i) - theta)/2.",
        measured={
            "max rel |closed - brute force| (per-measurement)": worst,
            "D at P: [closed, brute]": table,
            "forward KL, 1-D s=.3: D(best Gaussian) - D(q ∝ p/(1+a x^2)) at a=1,10,100": saving,
            "forward KL, 1-D: P at a=1,10,100": P_ng.tolist(),
            "joint reverse KL (commuting S=diag(1,.5), A=I, sigma=.5): E||X*-X^||^2": joint,
            "max rel |closed - brute| (joint)": worst_joint,
        },
        expected="the closed forms equal SLSQP over Gaussian laws (mean and full covariance free) on G2post "
        "and Iso, both directions; the forward-KL optimum over all laws is non-Gaussian and strictly lower "
        "than the best Gaussian; the commuting joint form equals brute force over full covariances",
        tolerance="1e-8 relative (per measurement and joint); saving > 0",
        reason="SLSQP at ftol 1e-14 on smooth convex problems (7e-14 and 2e-12 measured); feasibility is "
        "checked on the answer (KL <= P + 1e-9), not on the solver's success flag; the 1-D quadrature is "
        "exact to ~1e-15 for these integrands, far below the savings (>= 1.7e-3)",
        verdict="holds",
        passed=passed,
        theory="Blau & Michaeli P-D function with d = KL; closed forms derived in dptheory.dp_curve_kl",
    )


def _joint_brute(S, S_star, P: float, starts: int) -> float:
    """min Bures^2(diag S_star, C) s.t. KL(N(0,C) || N(0, diag S)) <= P over full 2x2 C (SLSQP)."""
    from scipy.linalg import sqrtm
    from scipy.optimize import minimize

    A = np.diag(np.sqrt(S_star))

    def unpack(z):
        L = np.array([[math.exp(min(max(z[0], -60.0), 60.0)), 0.0], [z[1], math.exp(min(max(z[2], -60.0), 60.0))]])
        return L @ L.T

    def bures(z):
        C = unpack(z)
        return float(np.sum(S_star) + np.trace(C) - 2 * np.real(np.trace(sqrtm(A @ C @ A))))

    def kl(z):
        return _kl_np(np.zeros(2), unpack(z), np.zeros(2), np.diag(S))

    rs = np.random.default_rng(5)
    best = math.inf
    for _ in range(starts):
        z0 = np.array([0.5 * math.log(S[0]), 0.0, 0.5 * math.log(S[1])]) + 0.2 * rs.standard_normal(3)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # wild trial steps; answer checked below
            res = minimize(bures, z0, method="SLSQP", constraints=[{"type": "ineq", "fun": lambda z: P - kl(z)}],
                           options={"ftol": 1e-14, "maxiter": 2000})
        if kl(res.x) <= P + 1e-9:
            best = min(best, bures(res.x))
    return best


# ---------------------------------------------------------------------------------------------- KLDP-2
def _kl_points(post: Gaussian, laws: dict, direction: str):
    """``{name: (P, D, gap)}`` of Gaussian laws ``N(mu, C)`` against the KL curve of ``post``."""
    curve = KLDPCurve(post, direction)
    out = {}
    for key, law in laws.items():
        kl = float(gaussian_kl(law, post) if direction == "reverse" else gaussian_kl(post, law))
        D = curve.mmse_error + float(torch.trace(law.cov)) + float((law.mean - post.mean).square().sum())
        out[key] = (kl, D, float(curve.gap(kl, D)))
    return out


def check_kldp2(quick: bool) -> ClaimResult:
    """KLDP-2: VSRD and MAP-RPS against the KL curve: on it if isotropic, above it if anisotropic."""
    sched = linear_schedule()
    lams = (0.1, 0.25, 0.5, 0.75, 0.9) if quick else (0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.95)
    t0s = (20, 60, 150, 300) if quick else (10, 20, 40, 60, 100, 150, 200, 300, 400)
    res = {}
    for name, make in (("Iso", iso), ("G2post", g2post)):
        prob, y = make()
        post = prob.posterior(y)
        laws = {f"vsrd lam={lam:g}": Gaussian(post.mean, lam * post.cov) for lam in lams}
        laws.update({f"map-rps t0={t0}": map_rps_stage2_law(prob, y, t0, schedule=sched) for t0 in t0s})
        w2 = per_measurement_dp_curve(prob, y)
        w2_gap = max(abs(float(w2.gap((1 - math.sqrt(lam)) * w2.w, (1 + lam) * w2.mmse_error))) for lam in lams)
        res[name] = {d: _kl_points(post, laws, d) for d in ("reverse", "forward")}
        res[name]["w2_gap_vsrd"] = w2_gap
    iso_worst = max(abs(g) for d in ("reverse", "forward") for (_, _, g) in res["Iso"][d].values())
    ani = res["G2post"]
    vsrd_rev = {k: v[2] for k, v in ani["reverse"].items() if k.startswith("vsrd")}
    mrps_rev = {k: v[2] for k, v in ani["reverse"].items() if k.startswith("map")}
    vsrd_fwd = {k: v[2] for k, v in ani["forward"].items() if k.startswith("vsrd")}
    mrps_fwd = {k: v[2] for k, v in ani["forward"].items() if k.startswith("map")}
    rel = {k: ani["reverse"][k][2] / ani["reverse"][k][1] for k in vsrd_rev}
    passed = (
        iso_worst <= 1e-12
        and min(vsrd_rev.values()) > 1e-3
        and min(mrps_rev.values()) > 1e-9
        and min(vsrd_fwd.values()) > 1e-3
        and min(mrps_fwd.values()) > 1e-9
        and res["G2post"]["w2_gap_vsrd"] <= 1e-12
    )
    return ClaimResult(
        id="KLDP-2",
        paper="wang2025vsrd",
        statement="VSRD (law N(mu_y, lam Sigma_y)) attains the optimal per-measurement D-P tradeoff for a "
        "Gaussian posterior (Theorem 2, stated for W2; the paper also plots KL against MSE).",
        measured={
            "Iso: max |gap| to the KL curves (VSRD and MAP-RPS, both directions)": iso_worst,
            "G2post: VSRD W2 gap (max |.|)": res["G2post"]["w2_gap_vsrd"],
            "G2post: VSRD reverse-KL gap": vsrd_rev,
            "G2post: VSRD reverse-KL gap / D": rel,
            "G2post: MAP-RPS reverse-KL gap": mrps_rev,
            "G2post: VSRD forward-KL gap (Gaussian-restricted curve)": vsrd_fwd,
            "G2post: MAP-RPS forward-KL gap": mrps_fwd,
            "G2post (P, D) reverse": {k: [v[0], v[1]] for k, v in ani["reverse"].items()},
        },
        expected="isotropic posterior: every N(mu, c Sigma) is KL-optimal, gap 0; anisotropic G2post: VSRD is "
        "on the W2 curve (gap ~1e-16) but strictly above the KL curves (the KL-optimal law shrinks the "
        "high-variance direction more), by 1.6e-2 to 3.8e-2 in D (4-7%) in reverse KL; MAP-RPS, which also "
        "re-randomises low-variance directions more slowly, is above the KL curves too but 20-100x closer",
        tolerance="1e-12 on the isotropic gaps and on the W2 gap (closed forms; the KL curve inverts P(theta) by "
        "bisection to float64 resolution; 6e-14 measured); anisotropic gaps > 1e-3 (VSRD) and > 1e-9 "
        "(MAP-RPS, whose gap falls to 8e-7 at t0 = 10 and 5e-6 at t0 = 400, the two ends), far above that "
        "resolution",
        reason="exact laws and closed-form curves",
        verdict="one-formulation",
        passed=passed,
        theory="KL of N(mu, lam Sigma) and of N(mu, Sigma (I - U^2)); KL curve derived in dptheory.dp_curve_kl",
    )


CHECKS = single_threaded({"KLDP-1": check_kldp1, "KLDP-2": check_kldp2})
