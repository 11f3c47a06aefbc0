"""Claims of Mardani, Song, Kautz & Vahdat, "A variational perspective on solving inverse problems with
diffusion models" (RED-Diff), ICLR 2024, arXiv 2305.04391; official code NVlabs/RED-diff
(``paper_notes/red_diff.md``).

- RED-1: RED-Diff's regulariser has an exact expectation, and its fixed point is the MAP of a different,
  weaker Gaussian prior (docs/theory §7.2, claim 17).
- RED-2: where RED-Diff actually converges, compared with the posterior mode ``problem.map(y)`` on Gaussian
  and GMM problems.
"""

from __future__ import annotations

import math

import torch

from ..denoisers import ExactDenoiser
from ..gaussian import Gaussian
from ..mixture import GaussianMixture
from ..problem import LinearInverseProblem
from ..reference_problems import b1, g2
from ..samplers.red_diff import red_diff_effective_precision, red_diff_fixed_point
from ..schedules import linear_schedule
from ..solver import solve
from ._util import F64, agrees_with_quote, max_abs, rng, single_threaded, t64
from .result import ClaimResult

__all__ = ["CHECKS"]

LAM = 0.25  # the official grad_term_weight


def _regulariser_mean_z(prob, den: ExactDenoiser, sched, n: int) -> float:
    """Max |z| over coordinates and t in (20, 300, 700) of the Monte Carlo mean of ``eps_hat(x_t) - eps``,
    ``x_t = sqrt(ab) mu + sqrt(1 - ab) eps`` with ``mu = (0.9, -0.4)`` and ``n`` draws per level, against its
    exact value ``sqrt(ab (1 - ab)) S_t^{-1} (mu - m)``, ``S_t = ab S + (1 - ab) I``."""
    m, S = prob.prior.mean, prob.prior.cov
    eye = torch.eye(2, dtype=F64)
    mu = t64([0.9, -0.4])
    gen = rng(6101)
    worst_z = 0.0
    for t in (20, 300, 700):
        ab = float(sched.alpha_bar(t))
        eps = torch.randn(n, 2, generator=gen, dtype=F64)
        direction = den.eps(math.sqrt(ab) * mu + math.sqrt(1 - ab) * eps, ab) - eps
        S_t = ab * S + (1 - ab) * eye
        target = math.sqrt(ab * (1 - ab)) * torch.linalg.solve(S_t, mu - m)
        z = (direction.mean(0) - target) / (direction.std(0) / math.sqrt(n))
        worst_z = max(worst_z, float(z.abs().max()))
    return worst_z


def _effective_precision_direct(S: torch.Tensor, sched) -> torch.Tensor:
    """``P_eff = lam mean_{t=1..T} (1 - ab_t) (ab_t S + (1 - ab_t) I)^{-1}``, written out independently of
    :func:`red_diff_effective_precision`."""
    eye = torch.eye(S.shape[0], dtype=F64)
    per_level = [(1 - ab) * torch.linalg.inv(ab * S + (1 - ab) * eye) for ab in sched.alpha_bars[1:]]
    return LAM * torch.stack(per_level).mean(0)


def _expected_gradient(prob, y: torch.Tensor, den: ExactDenoiser, mu: torch.Tensor, sched) -> torch.Tensor:
    """RED-Diff's expected gradient ``A^T (A mu - y)/s^2 + mean_t lam sqrt((1-ab)/ab) E_eps[eps_hat - eps]`` at
    ``mu``; eps_hat is affine, so ``E_eps[eps_hat(x_t) - eps]`` is eps_hat at the mean ``x_t = sqrt(ab) mu``."""
    reg = torch.stack(
        [
            LAM
            * math.sqrt((1 - float(ab)) / float(ab))
            * den.eps((math.sqrt(float(ab)) * mu)[None], float(ab))[0]
            for ab in sched.alpha_bars[1:]
        ]
    ).mean(0)
    return prob.A.T @ (prob.A @ mu - y) / prob.sigma_y**2 + reg


def check_red1(quick: bool) -> ClaimResult:
    """RED-1: E[eps_hat - eps] = sqrt(ab (1 - ab)) S_t^{-1} (mu - m) (MC); the t ~ U fixed point is the
    posterior mean under N(m, P_eff^{-1}), P_eff = lam mean_t (1 - ab_t) S_t^{-1}, and it is not the MAP."""
    sched = linear_schedule()
    prob, y = g2()
    m, S = prob.prior.mean, prob.prior.cov
    den = ExactDenoiser(prob.prior)
    n = 20_000 if quick else 200_000
    worst_z = _regulariser_mean_z(prob, den, sched, n)
    # the fixed point for t ~ U{1..T}: zero of A^T (A mu - y)/s^2 + mean_t lam_t E[eps_hat - eps]
    fp = red_diff_fixed_point(prob, y, LAM, sched)
    P_eff = _effective_precision_direct(S, sched)
    err_peff = max_abs(P_eff, red_diff_effective_precision(prob.prior, LAM, sched))
    weaker = LinearInverseProblem(Gaussian(m, torch.linalg.inv(P_eff)), prob.A, prob.sigma_y).mmse(y)
    err_fp = max_abs(fp, weaker)
    grad = _expected_gradient(prob, y, den, fp, sched)
    map_ = prob.map(y)
    eig_peff = [float(v) for v in torch.linalg.eigvalsh(P_eff)]
    eig_sinv = [float(v) for v in torch.linalg.eigvalsh(torch.linalg.inv(S))]
    quotes = (
        all(agrees_with_quote(float(v), q) for v, q in zip(fp, ("0.688", "0.012"), strict=True))
        and all(agrees_with_quote(float(v), q) for v, q in zip(map_, ("0.644", "0.065"), strict=True))
        and all(agrees_with_quote(v, q) for v, q in zip(eig_peff, ("0.17", "0.20"), strict=True))
    )
    passed = (
        worst_z <= 4.0
        and err_peff <= 1e-12
        and err_fp <= 1e-10
        and float(grad.abs().max()) <= 1e-10
        and quotes
    )
    return ClaimResult(
        id="RED-1",
        paper="mardani2024reddiff",
        statement="RED-Diff fits q = N(mu, s^2 I) to the posterior by minimising KL(q || p(x|y)); as s -> 0 "
        "the denoisers at all levels act as a regulariser and mu is a MAP estimate. Verdict (the same finding "
        "as RED-2, one label): fails for the posterior's MAP; mu is the MAP under the weaker prior "
        "N(m, P_eff^{-1}), the mechanism measured here (RED-2 measures where the runs end).",
        measured={
            "max|z| E[eps_hat - eps] (t=20,300,700)": worst_z,
            "P_eff_vs_library": err_peff,
            "fixed_point_vs_weaker_prior_posterior_mean": err_fp,
            "expected_grad_at_fixed_point": float(grad.abs().max()),
            "fixed_point": [float(v) for v in fp],
            "MAP": [float(v) for v in map_],
            "|fixed_point - MAP|": float((fp - map_).norm()),
            "eig P_eff": eig_peff,
            "eig S^-1": eig_sinv,
            "n": n,
        },
        expected="the Monte Carlo mean of eps_hat - eps matches the closed form; the fixed point for t ~ U "
        "is the posterior mean under N(m, P_eff^{-1}) (P_eff eigenvalues 0.17, 0.20 vs S^{-1}'s 0.66, 3.43): "
        "(0.688, 0.012) against the MAP (0.644, 0.065) on G2 with lam = 0.25",
        tolerance="|z| <= 4 (MC); 1e-10 (closed forms and the expected gradient at the fixed point); half a "
        "unit in the quoted digits",
        reason="the fixed point and P_eff are exact linear algebra; the expectation over eps is checked by "
        "Monte Carlo with a 4-SE band",
        verdict="fails",
        passed=passed,
        theory="claim 17; docs/theory §7.2",
    )


def _reddiff_expected_gradient_1d(prior: GaussianMixture, y: float, sigma: float, lam: float, schedule):
    """``G(mu) = (mu - y)/s^2 + mean_t lam_t E_eps[eps_hat_t(sqrt(ab) mu + sqrt(1-ab) eps) - eps]``.

    For a 1-D GMM prior and A = 1, with the expectation by 60-node Gauss-Hermite quadrature and eps_hat
    written out from docs/theory §3.2 (vectorised over all levels; independent of the library's denoiser)."""
    import numpy as np

    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    z, wq = t64(nodes), t64(weights / weights.sum())
    ab = schedule.alpha_bars[1:].unsqueeze(-1)  # (T, 1)
    w, m, v = prior.weights, prior.means[:, 0], prior.covs[:, 0, 0]
    lam_t = lam * ((1 - ab) / ab).sqrt()

    def G(mu: float) -> float:
        x = ab.sqrt() * mu + (1 - ab).sqrt() * z  # (T, Q)
        var = ab.unsqueeze(-1) * v + (1 - ab).unsqueeze(-1)  # (T, 1, K)
        diff = x.unsqueeze(-1) - ab.sqrt().unsqueeze(-1) * m  # (T, Q, K)
        log_r = w.log() - 0.5 * (diff.square() / var + var.log())
        gamma = torch.softmax(log_r, -1)
        mu_k = m + ab.sqrt().unsqueeze(-1) * v / var * diff
        D = (gamma * mu_k).sum(-1)
        eps_hat = (x - ab.sqrt() * D) / (1 - ab).sqrt()
        reg = (lam_t * ((eps_hat - z) @ wq).unsqueeze(-1)).mean()
        return (mu - y) / sigma**2 + float(reg)

    return G


def _sgd_stationary_mean(problem, y, *, steps: int, lr: float, n: int, seeds, average_last: int):
    """Stationary mean of RED-Diff with ``t ~ U{1..T}`` and plain SGD, over INDEPENDENT runs.

    Each run (its own seed) averages its particle-mean over its last ``average_last`` iterations. The level t
    of an iteration is shared by all particles of a run and its large-t draws kick the iterate hard (weight
    lam sqrt((1 - ab)/ab) up to ~40), so the SE comes from the spread of the per-run averages, not from the
    particles or the trace. Returns ``(mean (d,), se (d,), runs)``."""
    per_run = []
    for seed in seeds:
        trace = []

        def callback(i, t, mu, _, trace=trace):
            if i >= steps - average_last:
                trace.append(mu.mean(0))

        solve(
            problem,
            y,
            "red-diff",
            n_samples=n,
            generator=rng(seed),
            t_order="random",
            optimizer="sgd",
            lr=lr,
            steps=steps,
            callback=callback,
        )
        per_run.append(torch.stack(trace).mean(0))
    runs = torch.stack(per_run)
    return runs.mean(0), runs.std(0) / math.sqrt(len(seeds)), len(seeds)


def _g2_sgd_vs_fixed_point(sched, R: int, n: int, steps: int, last: int, lr: float) -> dict:
    """G2 in the theory's setting (t ~ U, plain SGD): the time average over the last ``last`` of ``steps``
    iterations of ``R`` independent runs, its SE, and its exact expectation.

    Every step is affine in mu with expected matrix ``H = A^T A / s^2 + P_eff``, so ``E[mu_k] = fp + (I - lr
    H)^k (mu_0 - fp)`` EXACTLY: the expectation is the fixed point plus the known decaying transient."""
    prob, y = g2()
    fp = red_diff_fixed_point(prob, y, LAM, sched)
    avg, se, _ = _sgd_stationary_mean(
        prob, y, steps=steps, lr=lr, n=n, seeds=range(6201, 6201 + R), average_last=last
    )
    H = prob.A.T @ prob.A / prob.sigma_y**2 + red_diff_effective_precision(prob.prior, LAM, sched)
    step = torch.eye(2, dtype=F64) - lr * H
    mu0 = prob.operator.pinv(y)
    powers = [torch.linalg.matrix_power(step, k + 1) for k in range(steps - last, steps)]
    expected = fp + torch.stack([P @ (mu0 - fp) for P in powers]).mean(0)
    return {"fp": fp, "avg": avg, "se": se, "expected": expected}


def _b1_zero_vs_sgd(sched, R: int, n: int, steps: int, last: int) -> dict:
    """B1 (sigma = .5, y = -.6): the zero of the expected gradient (Gauss-Hermite quadrature, brentq to 1e-9)
    and the SGD (t ~ U, lr 0.005) time average over ``R`` runs with its SE."""
    from scipy.optimize import brentq

    gprob, gy = b1(sigma_y=0.5, y=-0.6)
    G = _reddiff_expected_gradient_1d(gprob.prior, float(gy[0]), gprob.sigma_y, LAM, sched)
    root = brentq(G, -1.5, 0.5, xtol=1e-9)
    g_avg, g_se, _ = _sgd_stationary_mean(
        gprob, gy, steps=steps, lr=0.005, n=n, seeds=range(6301, 6301 + R), average_last=last
    )
    return {"problem": gprob, "y": gy, "root": root, "avg": float(g_avg[0]), "se": float(g_se[0])}


def check_red2(quick: bool) -> ClaimResult:
    """RED-2: where RED-Diff converges vs problem.map(y): Gaussian (G2) and GMM (B1)."""
    from scipy.stats import t as student_t

    sched = linear_schedule()
    # relaxation times ~1/(lr h): h ~ 0.19 (P_eff, the direction A does not see) on G2 -> lr 0.05, 1/(lr h) ~
    # 105 steps (stable: lr h_max = 0.05 x 13.9 < 2); h ~ 1/sigma^2 = 4 on B1 -> lr 0.005, ~50 steps. Each run
    # burns in for > 3 relaxation times (the G2 transient is subtracted exactly) and averages its last
    # 400 (full: 500) iterations.
    R = 6 if quick else 24
    n = 8
    t_crit = float(student_t.ppf(1 - 1e-4 / 2, R - 1))  # two-sided, 1e-4 false alarms per coordinate
    prob, y = g2()
    map_g = prob.map(y)
    steps, last, lr = (600, 400, 0.05) if quick else (800, 500, 0.05)
    g2_run = _g2_sgd_vs_fixed_point(sched, R, n, steps, last, lr)
    fp, avg, se, expected = g2_run["fp"], g2_run["avg"], g2_run["se"], g2_run["expected"]
    z_fp = float(((avg - expected) / se).abs().max())
    # the official setting (descending t, Adam lr 0.1)
    n_off = 32 if quick else 512
    x_off = solve(prob, y, "red-diff", n_samples=n_off, generator=rng(6202))
    off_rms = float((x_off - map_g).square().sum(-1).mean().sqrt())
    # GMM: B1 (sigma = .5, y = -.6) -- the zero of the expected gradient (quadrature) vs the SGD time average
    b1_run = _b1_zero_vs_sgd(sched, R, n, steps, last)
    gprob, gy, root, g_avg, g_se = b1_run["problem"], b1_run["y"], b1_run["root"], b1_run["avg"], b1_run["se"]
    xg_off = solve(gprob, gy, "red-diff", n_samples=n_off, generator=rng(6204))[:, 0]
    map_b1, mmse_b1 = float(gprob.map(gy)[0]), float(gprob.mmse(gy)[0])
    passed = (
        z_fp <= t_crit
        and float((fp - map_g).norm()) > 10 * float(se.norm())
        and abs(g_avg - root) <= t_crit * g_se + 1e-3
        and abs(root - map_b1) > 0.1
        and abs(float(xg_off.mean()) - map_b1) > 0.1
    )
    return ClaimResult(
        id="RED-2",
        paper="mardani2024reddiff",
        statement="RED-Diff's optimisation converges to a mode of the posterior (its variational "
        "distribution collapses to a point: a MAP-type estimate).",
        measured={
            "G2 fixed point (t~U)": [float(v) for v in fp],
            "G2 sgd time-average": [float(v) for v in avg],
            "G2 sgd se": [float(v) for v in se],
            "G2 transient in the expected average": float((expected - fp).abs().max()),
            "G2 max|t| vs fixed point": z_fp,
            "runs": R,
            "G2 MAP": [float(v) for v in map_g],
            "G2 |fixed point - MAP|": float((fp - map_g).norm()),
            "G2 official (desc, Adam) mean": [float(v) for v in x_off.mean(0)],
            "G2 official per-particle rms to MAP": off_rms,
            "B1 expected-gradient zero": root,
            "B1 sgd time-average": g_avg,
            "B1 sgd se": g_se,
            "B1 official mean": float(xg_off.mean()),
            "B1 official sd": float(xg_off.std()),
            "B1 MAP": map_b1,
            "B1 MMSE": mmse_b1,
            "B1 y": float(gy[0]),
        },
        expected="RED-Diff converges to the zero of its EXPECTED gradient, which is not the posterior mode: "
        "on G2 the t ~ U SGD average is the P_eff fixed point (0.688, 0.012), 0.069 from the MAP; on the "
        "bimodal B1 posterior (lam = 0.25) the regulariser is so weak that the estimate stays near A^+ y = y "
        "= -0.6 (the quadrature zero -0.577), 0.36 from the MAP -0.933. The official descending-Adam runs "
        "are reported: on G2 their mean lands near the MAP but each particle keeps an rms error ~0.17 "
        "(constant lr 0.1)",
        tolerance=f"|t| <= {t_crit:.2f} (Student t, R - 1 = {R - 1} dof, 1e-4 two-sided false alarms) for "
        "the G2 SGD mean vs the fixed point; the same band + 1e-3 for B1 (the 1e-3 for the O(lr) bias of "
        "constant-step SGD on a nonlinear gradient, measured 3e-4 at lr = 2.5e-3); distances to the MAP > "
        "10 SE (G2) and > 0.1 (B1)",
        reason="the Gaussian fixed point is exact in mean for SGD with t ~ U (affine steps); for the GMM the "
        "expected gradient is computed by 60-node Gauss-Hermite quadrature over eps at all 1000 levels. The "
        "SEs come from R independent runs: within a run the level t is shared by all particles and its rare "
        "large-t draws make the trace heavy-tailed, so particle or autocorrelation SEs were measured to be "
        "~2x too small",
        verdict="fails",
        passed=passed,
        theory="docs/theory §7.1, §7.2",
    )


CHECKS = single_threaded({"RED-1": check_red1, "RED-2": check_red2})
