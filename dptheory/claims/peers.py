"""Claims of the peer samplers on Gaussian problems (``paper_notes/peers.md``): DDRM (Kawar et al. 2022), PiGDM
(Song et al. 2023), DiffPIR (Zhu et al. 2023) and DAPS (Zhang et al. 2025).

- PEER-1 (DDRM): the variational chain has the forward marginals ``q(u_t | x0) = N(x0, sigma_t^2 I)`` for any
  ``eta, eta_b`` (what lets DDRM reuse an unconditional model).
- PEER-2 (DDRM): DDRM samples the posterior; on G2 its exact law is not the posterior.
- PEER-3 (PiGDM): ``p(x0 | x_t) ~ N(x0_hat, r_t^2 I)``, ``r_t^2 = sigma_t^2 / (1 + sigma_t^2)``, is exact for data
  ``N(m, I)``, so the guided estimate is ``E[x0 | x_t, y]``: PiGDM is DDPM with the exact conditional denoiser.
- PEER-4 (DiffPIR): the data step is the proximal (HQS) step of the Gaussian approximation; it is
  ``E[x0 | x_t, y]`` for data ``N(m, I)`` only with ``rho_t = sigma_y^2 / (1 - ab_t)``, ``1 / ab_t`` times the
  paper's ``lam = 1`` weight; the end law on G2 is close to, not at, the posterior.
- PEER-5 (DAPS): with exact inner draws the annealing keeps the exact marginals; with the Gaussian
  approximation exact (data ``N(m, I)``, ``r_t^2 = 1 - ab_t``) the end law converges to the posterior as the
  Langevin step shrinks (second order), while the official ``r_t = sigma_t`` leaves a floor.
"""

from __future__ import annotations

import math

import torch

from ..denoisers import ConditionalExactDenoiser, ExactDenoiser
from ..divergences import gaussian_kl
from ..gaussian import Gaussian
from ..problem import LinearInverseProblem
from ..reference_problems import g2
from ..sampler_laws import sampler_law
from ..samplers import ddrm
from ..samplers._svd import Spectrum
from ..samplers.diffpir import diffpir_prox_coefficients
from ..samplers.pigdm import pigdm_guided_x0
from ..schedules import linear_schedule
from ..solver import solve
from ._util import max_z_scores, rng, single_threaded
from .result import ClaimResult

__all__ = ["CHECKS"]

F64 = torch.float64
LEVELS = (0.9, 0.5, 0.1, 1e-3)  # alpha_bar values at which the one-step identities are checked


def _three_dim_problem():
    """d = 3, m = 2 (one null direction), singular values 1.18 and 0.80, sigma_y = 0.3."""
    S = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]], dtype=F64)
    A = torch.tensor([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5]], dtype=F64)
    return LinearInverseProblem(Gaussian(torch.tensor([0.2, -0.1, 0.3], dtype=F64), S), A, 0.3)


def _isotropic_g2():
    """G2's operator, noise and y with the prior N(m, I): the data PiGDM's approximation is exact for."""
    prob, y = g2()
    iso = Gaussian(prob.prior.mean, torch.eye(2, dtype=F64))
    return LinearInverseProblem(iso, prob.A, prob.sigma_y), y


def check_peer1(quick: bool) -> ClaimResult:
    """PEER-1: run DDRM with an oracle denoiser that returns the true x0 (the variational chain q) over
    y ~ N(A x0, sigma_y^2 I) and test u_t = x_t / sqrt(ab_t) ~ N(x0, sigma_t^2 I) at every level."""
    prob = _three_dim_problem()
    sched = linear_schedule()
    n = 4000 if quick else 40_000
    g = rng(5101)
    x0 = torch.tensor([0.4, -0.3, 0.8], dtype=F64)
    ys = x0 @ prob.A.T + prob.sigma_y * torch.randn(n, prob.m, generator=g, dtype=F64)
    levels = []

    def record(i, t, x, _):
        ab = float(sched.alpha_bar(sched.timesteps(20)[i + 1]))
        if ab < 1.0:
            levels.append((ab, x / math.sqrt(ab)))

    z = torch.randn(n, 3, generator=g, dtype=F64)
    ddrm(lambda x, ab: x0.expand_as(x), z, sched, operator=prob.operator, y=ys, sigma_y=prob.sigma_y, eta=0.85,
         eta_b=0.6, steps=20, generator=g, callback=record)
    zm, zc = 0.0, 0.0
    for ab, u in levels:
        law_cov = (1.0 - ab) / ab * torch.eye(3, dtype=F64)
        zm_t, zc_t = max_z_scores(u, x0, law_cov)
        zm, zc = max(zm, zm_t), max(zc, zc_t)
    passed = zm <= 5.0 and zc <= 5.5 and len(levels) == 19
    return ClaimResult(
        id="PEER-1",
        paper="kawar2022ddrm",
        statement="DDRM's variational distribution conditioned on y has the forward marginals q(x_t | x0) = "
        "N(x0, sigma_t^2 I) in every spectral direction, whatever eta and eta_b, which is what lets DDRM use a "
        "model trained unconditionally.",
        measured={"levels": len(levels), "max|z_mean|": zm, "max|z_cov|": zc, "n": n},
        expected="at all 19 noisy levels of a 20-step grid (d = 3 with a null direction, both 'noisier' and "
        "'less noisy than y' directions, eta = 0.85, eta_b = 0.6), u_t has mean x0 and covariance sigma_t^2 I",
        tolerance="|z| <= 5 (means: 57 comparisons) and <= 5.5 (covariances: 114 entries)",
        reason="Monte Carlo of the sampler itself with an oracle x0; the bands give a family-wise false-alarm "
        "rate below 1e-4",
        verdict="holds",
        passed=passed,
        theory="DDRM eqs. (7)-(8): each case keeps variance sigma_t^2 (eta_b^2 sigma_y^2/s^2 + the rest)",
    )


def check_peer2(quick: bool) -> ClaimResult:
    """PEER-2: the exact law of DDRM on G2 (100 steps) against the posterior, with a Monte Carlo check."""
    prob, y = g2()
    post = prob.posterior(y)
    law = sampler_law(prob, "ddrm", y=y, steps=100).law
    law_11 = sampler_law(prob, "ddrm", y=y, steps=100, eta=1.0, eta_b=1.0).law
    kl, kl_11 = float(gaussian_kl(law, post)), float(gaussian_kl(law_11, post))
    n = 4000 if quick else 40_000
    x = solve(prob, y, "ddrm", n_samples=n, generator=rng(5201), steps=100)
    zm, zc = max_z_scores(x, law.mean, law.cov)
    diag, post_diag = torch.diagonal(law.cov), torch.diagonal(post.cov)
    passed = zm <= 4.5 and zc <= 5.0 and kl > 0.1 and kl_11 > 0.1 and bool((diag < post_diag).all())
    return ClaimResult(
        id="PEER-2",
        paper="kawar2022ddrm",
        statement="DDRM is an efficient, unsupervised posterior sampling method for linear inverse problems.",
        measured={"KL_default(eta=0.85, eta_b=1)": kl, "KL(eta=1, eta_b=1)": kl_11,
                  "cov_diag_default": [float(v) for v in diag], "post_cov_diag": [float(v) for v in post_diag],
                  "cov_diag_eta1": [float(v) for v in torch.diagonal(law_11.cov)],
                  "mean_err_default": float((law.mean - post.mean).norm()), "mc_max|z_mean|": zm,
                  "mc_max|z_cov|": zc, "n": n},
        expected="on G2 with the exact prior denoiser and 100 steps the exact law of DDRM is NOT the posterior: "
        "KL(DDRM || post) ~ 0.26 at the defaults (under-dispersed: variances 0.054, 0.187 against 0.106, 0.271) "
        "and ~ 0.33 at eta = eta_b = 1 (variances 0.128, 0.161: too wide in one direction, too narrow in the "
        "other); the Monte Carlo of the sampler matches its exact law",
        tolerance="KL > 0.1 for both settings; default variances below the posterior's; MC |z| <= 4.5 (mean) and "
        "<= 5 (covariance)",
        reason="the laws are exact (affine recursion); the KL threshold is 40x the O(1/T) error of an exact "
        "ancestral sampler on this grid; MC bands at false-alarm ~1e-4",
        verdict="approximate",
        passed=passed,
        theory="exact law by dptheory.sampler_laws_peers; DDRM's q is variational, not the posterior",
    )


def check_peer3(quick: bool) -> ClaimResult:
    """PEER-3: PiGDM's guided x0 against E[x0 | x_t, y] (N(m, I) data and G2), and PiGDM = DDPM with the exact
    conditional denoiser as exact laws."""
    iso, y = _isotropic_g2()
    prob, _ = g2()
    g = rng(5301)
    x = torch.randn(64, 2, generator=g, dtype=F64)
    errs, errs_g2 = [], []
    for p, out in ((iso, errs), (prob, errs_g2)):
        spec = Spectrum(p.operator, x)
        exact = ConditionalExactDenoiser(p, y)
        for ab in LEVELS:
            guided, _ = pigdm_guided_x0(ExactDenoiser(p.prior), x, ab, spec, p.operator, y, p.sigma_y)
            truth = exact(x, ab)
            out.append(float((guided - truth).abs().max() / truth.abs().max()))
    steps = 50 if quick else 200
    lp = sampler_law(iso, "pigdm", y=y, steps=steps, guidance="bayes", init="given").law
    ld = sampler_law(iso, "ddpm", y=y, steps=steps, conditional=True).law
    law_diff = max(float((lp.mean - ld.mean).abs().max()), float((lp.cov - ld.cov).abs().max()))
    kl_iso = float(gaussian_kl(lp, iso.posterior(y)))
    kl_g2 = float(gaussian_kl(sampler_law(prob, "pigdm", y=y, steps=steps, guidance="bayes").law,
                              prob.posterior(y)))
    passed = max(errs) <= 1e-10 and min(errs_g2) > 1e-3 and law_diff <= 1e-10
    return ClaimResult(
        id="PEER-3",
        paper="song2023pigdm",
        statement="PiGDM approximates p(x0 | x_t) by N(x0_hat, r_t^2 I) with r_t^2 = sigma_t^2 / (1 + sigma_t^2), "
        "the exact value when the data are standard normal, and guides with the resulting p_t(y | x_t).",
        measured={"max_rel_err_isotropic": max(errs), "rel_err_G2_by_level": errs_g2,
                  "law_diff_pigdm_vs_exact_ddpm": law_diff, "KL_isotropic": kl_iso, "KL_G2": kl_g2,
                  "steps": steps},
        expected="for data N(m, I) the guided estimate x0_hat + ((1-ab)/sqrt(ab)) grad log p_t(y|x_t) equals the "
        "exact E[x0 | x_t, y] at every level (to round-off), and PiGDM (Bayes guidance, eta = 1) has exactly "
        "the law of DDPM with the exact conditional denoiser (its remaining KL is DDPM's O(1/T) error); for "
        "G2's correlated prior the estimate is off by > 1e-3 (relative)",
        tolerance="1e-10 relative / absolute",
        reason="both sides are closed forms evaluated in float64 (one backward pass, one linear solve)",
        verdict="holds",
        passed=passed,
        theory="PiGDM eqs. (7)-(8); exact laws by dptheory.sampler_laws_peers",
    )


def check_peer4(quick: bool) -> ClaimResult:
    """PEER-4: DiffPIR's data step against E[x0 | x_t, y] for N(m, I) data; end-law KL on G2."""
    iso, y = _isotropic_g2()
    x = torch.randn(64, 2, generator=rng(5401), dtype=F64)
    spec = Spectrum(iso.operator, x)
    den, exact = ExactDenoiser(iso.prior), ConditionalExactDenoiser(iso, y)
    aty = iso.operator.A_adjoint(y)
    errs, gaps = [], []
    for ab in LEVELS:
        x0 = den(x, ab)
        truth = exact(x, ab)
        for rho, out in ((iso.sigma_y**2 / (1.0 - ab), errs), (iso.sigma_y**2 * ab / (1.0 - ab), gaps)):
            c_aty, c_x0 = diffpir_prox_coefficients(spec.s, rho)
            prox = spec.filter(c_aty, aty) + spec.filter(c_x0, x0)
            out.append(float((prox - truth).abs().max()))
    prob, _ = g2()
    post = prob.posterior(y)
    kl = {f"zeta={z:g}": float(gaussian_kl(sampler_law(prob, "diffpir", y=y, zeta=z).law, post)) for z in (0.3, 1.0)}
    law = sampler_law(prob, "diffpir", y=y).law
    n = 4000 if quick else 40_000
    xs = solve(prob, y, "diffpir", n_samples=n, generator=rng(5402))
    zm, zc = max_z_scores(xs, law.mean, law.cov)
    passed = max(errs) <= 1e-10 and gaps[0] > 1e-3 and zm <= 4.5 and zc <= 5.0 and 1e-3 < kl["zeta=0.3"] < 0.1
    return ClaimResult(
        id="PEER-4",
        paper="zhu2023diffpir",
        statement="DiffPIR's data subproblem, argmin ||y - Ax||^2 + rho_t ||x - x0(x_t)||^2 with "
        "rho_t = lam sigma_n^2 / sigma_t^2, is the proximal (half-quadratic splitting) step that makes x0 "
        "consistent with y; the sampler approximates posterior sampling.",
        measured={"max_abs_err_rho_exact": max(errs), "abs_err_rho_lam1_by_level": gaps, **{"KL_" + k: v for k, v
                  in kl.items()}, "mc_max|z_mean|": zm, "mc_max|z_cov|": zc, "n": n},
        expected="for data N(m, I) the data step returns exactly E[x0 | x_t, y] when rho_t = sigma_y^2 / (1 - ab_t) "
        "(the Gaussian approximation with the exact r_t^2 = 1 - ab_t), which is 1/ab_t times the paper's lam = 1 "
        "weight (r_t = sigma_t); with lam = 1 it is off at high noise; on G2 (100 steps) the exact end law has "
        "KL ~ 0.019 to the posterior at zeta = 0.3 and ~ 0.26 at zeta = 1",
        tolerance="1e-10 for the exact weight; KL in (1e-3, 0.1) at zeta = 0.3; MC |z| <= 4.5 / 5",
        reason="closed forms in float64; the KL band brackets the measured value by > 5x either way; MC bands at "
        "false-alarm ~1e-4",
        verdict="approximate",
        passed=passed,
        theory="DiffPIR Algorithm 1; exact laws by dptheory.sampler_laws_peers",
    )


def check_peer5(quick: bool) -> ClaimResult:
    """PEER-5: the exact law of DAPS on N(m, I) data with the exact Gaussian approximation, as the Langevin step
    shrinks, against the posterior; the official r_t = sigma_t for comparison."""
    iso, y = _isotropic_g2()
    post = iso.posterior(y)
    lrs = (0.04, 0.02) if quick else (0.02, 0.01, 0.005)
    kls, kls_sigma = [], []
    for lr in lrs:
        common = dict(y=y, steps=10, ode_steps=1, langevin_steps=int(round(20 / lr)), lr=lr, lr_min_ratio=1.0)
        kls.append(float(gaussian_kl(sampler_law(iso, "daps", r="pigdm", **common).law, post)))
        kls_sigma.append(float(gaussian_kl(sampler_law(iso, "daps", r="sigma", **common).law, post)))
    ratios = [a / b for a, b in zip(kls[:-1], kls[1:], strict=True)]
    passed = all(r >= 3.0 for r in ratios) and kls[-1] < 0.015 and min(kls_sigma) > 0.05
    return ClaimResult(
        id="PEER-5",
        paper="zhang2025daps",
        statement="If x0 is drawn exactly from p(x0 | x_t, y) and re-noised, the decoupled annealing keeps the "
        "exact noisy posterior marginals at every level; DAPS approximates the draw by Langevin dynamics on "
        "N(x0; x0_hat, r_t^2 I) p(y | x0).",
        measured={"lr": list(lrs), "KL_r_pigdm": kls, "KL_ratio_per_halving": ratios,
                  "KL_r_sigma(official)": kls_sigma},
        expected="for data N(m, I), one-step Tweedie and r_t^2 = 1 - ab_t (the approximation exact), KL(DAPS || post) "
        "falls ~4x per halving of the Langevin step (the O(lr) bias of unadjusted Langevin: 0.011, 0.0022, "
        "0.0005 at lr = 0.02, 0.01, 0.005, 10 levels, 20/lr steps each; quick: lr = 0.04, 0.02); the official "
        "r_t = sigma_t leaves a floor ~0.08",
        tolerance="ratio >= 3 per halving; KL < 0.015 at the smallest step; official floor > 0.05",
        reason="exact laws (affine recursion), no sampling error; the thresholds sit between the measured "
        "second-order decay (ratio ~4.5) and first order (2)",
        verdict="holds",
        passed=passed,
        theory="DAPS Algorithm 1; exact laws by dptheory.sampler_laws_peers",
    )


CHECKS = single_threaded({
    "PEER-1": check_peer1,
    "PEER-2": check_peer2,
    "PEER-3": check_peer3,
    "PEER-4": check_peer4,
    "PEER-5": check_peer5,
})
