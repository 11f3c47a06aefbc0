"""Claims of Gutha, Vinuesa & Azizpour, "Mode-seeking for inverse problems with diffusion models" (VML-MAP),
arXiv 2512.10524 (``paper_notes/vml_map.md``).

No public code; Proposition 2 is known from a third-party transcription (docs/theory §8.1). The algorithm run here
is the toolkit's reconstruction (:mod:`dptheory.samplers.vml_map`).

- VML-1: VML(x_t) = KL(p(x0|x_t) || p(x0|y)) has a closed form for a linear forward model; its Gaussian
  minimiser solves D_t(x_t) = mu_y (docs/theory §8.2, claim 16).
- VML-2: VML-MAP converges to a posterior mode (compared with ``problem.map(y)``) on Gaussian and GMM
  problems.
"""

from __future__ import annotations

import math

import torch

from ..denoisers import ExactDenoiser
from ..divergences import gaussian_kl, gmm_kl_monte_carlo
from ..gaussian import Gaussian
from ..mixture import GaussianMixture
from ..problem import LinearInverseProblem
from ..reference_problems import b1, g2, gmm2
from ..samplers.vml_map import vml_map
from ..schedules import linear_schedule
from ..solver import solve
from ..vml_loss import vml, vml_s, vml_s_gradient
from ._util import F64, rng, single_threaded, t64
from .result import ClaimResult

__all__ = ["CHECKS"]


def _x0_given_xt(prior: GaussianMixture, x_t: torch.Tensor, ab: float) -> GaussianMixture:
    """``p(x0 | x_t)`` for a GMM prior, written out (docs/theory §3.2): weights gamma_k(x_t), means mu_k,t(x_t),
    covariances C_k,t = S_k - sqrt(ab) K_k S_k with K_k = sqrt(ab) S_k (ab S_k + (1 - ab) I)^{-1}."""
    eye = torch.eye(prior.dim, dtype=F64)
    gamma = prior.diffuse(ab).responsibilities(x_t)
    means, covs = [], []
    for k in range(prior.n_components):
        S = prior.covs[k]
        K = math.sqrt(ab) * S @ torch.linalg.inv(ab * S + (1 - ab) * eye)
        means.append(prior.means[k] + K @ (x_t - math.sqrt(ab) * prior.means[k]))
        covs.append(S - math.sqrt(ab) * K @ S)
    return GaussianMixture(gamma, torch.stack(means), torch.stack(covs))


def check_vml1(quick: bool) -> ClaimResult:
    """VML-1: the closed-form VML equals the Gaussian KL and the Monte Carlo GMM KL; its Gaussian
    minimiser."""
    from scipy.optimize import minimize

    sched = linear_schedule()
    prob, y = g2()
    post = prob.posterior(y)
    den = ExactDenoiser(prob.prior)
    gen = rng(7101)
    err_gauss = 0.0
    for t in (50, 300, 800):
        ab = float(sched.alpha_bar(t))
        x = prob.prior.diffuse(ab).sample(8, generator=gen)
        v = vml(prob, y, x, ab)
        C = den.cov(x[:1], ab)[0]
        kl = torch.stack([gaussian_kl(Gaussian(d, C), post) for d in den(x, ab)])
        err_gauss = max(err_gauss, float(((v - kl).abs() / kl.abs().clamp_min(1.0)).max()))
    # GMM prior: VML is an exact KL between two GMMs; compare with Monte Carlo
    prior2 = gmm2()
    gprob = LinearInverseProblem(prior2, [[1.0, 0.5]], 0.3)
    gy = t64([0.4])
    gpost = gprob.posterior(gy)
    n = 20_000 if quick else 200_000
    worst_z = 0.0
    gmm_rows = []
    for t, x in ((100, t64([0.3, -0.2])), (400, t64([-0.8, 0.5]))):
        ab = float(sched.alpha_bar(t))
        v = float(vml(gprob, gy, x, ab))
        mc = gmm_kl_monte_carlo(_x0_given_xt(prior2, x, ab), gpost, n, generator=gen)
        worst_z = max(worst_z, abs(v - mc.value) / mc.stderr)
        gmm_rows.append([v, mc.value, mc.stderr])
    # the Gaussian minimiser: D_t(x*) = mu_y, x* = sqrt(ab) m + K_t^{-1} (mu_y - m)
    err_min = grad_at_min = 0.0
    for t in (100, 500):
        ab = float(sched.alpha_bar(t))
        K = prob.prior.denoise_gain(ab)
        x_star = math.sqrt(ab) * prob.prior.mean + torch.linalg.solve(K, post.mean - prob.prior.mean)

        def f(xv, ab=ab):
            xt = t64(xv).requires_grad_(True)
            val = vml(prob, y, xt, ab)
            (g,) = torch.autograd.grad(val, xt)
            return float(val.detach()), g.numpy()

        res = minimize(f, x0=[0.0, 0.0], jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 500})
        err_min = max(err_min, float((t64(res.x) - x_star).abs().max()))
        g = vml_s_gradient(den, x_star[None], ab, prob.operator, y, prob.sigma_y)
        grad_at_min = max(grad_at_min, float(g.abs().max()))
    passed = err_gauss <= 1e-12 and worst_z <= 3.0 and err_min <= 1e-6 and grad_at_min <= 1e-10
    return ClaimResult(
        id="VML-1",
        paper="gutha2025vml",
        statement="Proposition 2: for a linear forward model VML(x_t) = KL(p(x0|x_t) || p(x0|y)) is "
        "analytic, needing only the denoiser's mean and covariance; minimising it drives x_t toward "
        "high-posterior regions.",
        measured={
            "max_rel_err_vs_gaussian_KL": err_gauss,
            "GMM [vml, mc, se]": gmm_rows,
            "max|z| GMM": worst_z,
            "argmin_err_vs_D^-1(mu_y)": err_min,
            "vml_s_gradient_at_argmin": grad_at_min,
            "n": n,
        },
        expected="the VP form of Proposition 2 equals the Gaussian closed-form KL (6e-14 in docs/theory) and, for "
        "a GMM prior, the Monte Carlo KL between the two GMMs; the Gaussian minimiser solves D_t(x_t) = "
        "mu_y, where the VML_S gradient (one vector-Jacobian product) vanishes",
        tolerance="1e-12 relative (Gaussian KL); |z| <= 3 (MC KL); 1e-6 (BFGS minimiser); 1e-10 (gradient)",
        reason="closed forms in float64; a 3-SE band for the Monte Carlo KL (2 comparisons); BFGS stops at a "
        "gradient of 1e-11, i.e. ~1e-9 in x for this conditioning, well inside 1e-6",
        verdict="holds",
        passed=passed,
        theory="claim 16; docs/theory §8.2",
    )


def _posterior_grad_hess(problem, x: torch.Tensor, y: torch.Tensor):
    """Gradient and Hessian of ``log p(x | y)`` at each row of ``x`` (autograd on the exact posterior
    density)."""
    post = problem.posterior(y)
    grads, hess = [], []
    for xi in x:
        xg = xi.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(post.log_prob(xg), xg)
        grads.append(g)
        hess.append(torch.autograd.functional.hessian(post.log_prob, xi))
    return torch.stack(grads), torch.stack(hess)


def _odd_part(denoiser):
    """``(D(x) - D(-x)) / 2``: equal to ``D`` for a prior symmetric under ``x -> -x`` (exact arithmetic) and odd
    in floating point too, so a run started at 0 stays at exactly 0 whatever the round-off."""
    return lambda x, ab: 0.5 * (denoiser(x, ab) - denoiser(-x, ab))


def _random_starts_at_650(den, sched, steps, n: int, gen: torch.Generator, kw: dict) -> float:
    """``max |x_t|`` at t = 650 (or the first grid level below it) of VML-MAP from ``n`` random starts."""
    at_650 = []

    def record(i, t, x_s, x0_hat):
        if t == 650 or (not at_650 and t < 650):
            at_650.append(float(x_s.abs().max()))

    vml_map(den, torch.randn(n, 1, generator=gen, dtype=F64), sched, steps=steps, callback=record, **kw)
    return at_650[0]


def _bifurcation_level(prob, y0: torch.Tensor, sched, grid: list) -> int:
    """``t_bif``: going up from the last level of ``grid``, the highest level before the first where the second
    difference (step 1e-4) of ``VML_S`` at x = 0 is positive (VML_S is concave at 0 from there down)."""
    h = 1e-4
    t_bif = None
    for t in reversed(grid[:-1]):  # from the last level up
        ab = float(sched.alpha_bar(t))
        v = vml_s(prob, y0, t64([[-h], [0.0], [h]]), ab)
        if float(v[0] - 2 * v[1] + v[2]) > 0:
            break
        t_bif = t
    if t_bif is None:
        raise RuntimeError("VML_S is convex at 0 at every level: no bifurcation on this grid")
    return t_bif


def _linearised_gain(den, sched, t_bif: int, sub_steps: int, kw: dict) -> float:
    """The output of VML-MAP from 1 at ``t_bif`` with the denoiser linearised at 0, ``D'(0) x``: the gain of an
    offset from the symmetric branch."""

    def slope(ab):
        x = torch.zeros(1, 1, dtype=F64, requires_grad=True)
        (g,) = torch.autograd.grad(den(x, ab).sum(), x)
        return float(g)

    linear = lambda x, ab: slope(ab) * x
    ones = torch.ones(1, 1, dtype=F64)
    return float(vml_map(linear, ones, sched, t_start=t_bif, steps=sub_steps, **kw).abs()[0, 0])


def _near_symmetric_errors(prob, den, sched, steps, n: int, gen: torch.Generator, kw: dict) -> float:
    """``max |x - MAP|`` of VML-MAP from ``n`` random starts at the nearly symmetric measurements y = +-1e-6."""
    err_near = 0.0
    for yy in (1e-6, -1e-6):
        gy = t64([yy])
        out = vml_map(den, torch.randn(n, 1, generator=gen, dtype=F64), sched, steps=steps, **dict(kw, y=gy))
        err_near = max(err_near, float((out - prob.map(gy)).abs().max()))
    return err_near


def _symmetric_measurement(tol_mode: float, steps, n: int, gen: torch.Generator) -> dict:
    """VML-MAP on B1 at y = 0 (two equally likely modes +-0.8333), measured without help from round-off.

    The prior and ``y = 0`` are symmetric under ``x -> -x``, so the algorithm is odd and ``x_t = 0`` (the
    "symmetric branch") is invariant; it ends at x = 0, where ``log p(x | y)`` has positive curvature (a
    density minimum). While ``VML_S`` is convex at 0 (levels above ``t_bif``, where its curvature at 0 changes
    sign) the branch attracts every start: a BB step on a 1-D quadratic is the Newton step, so the inner
    descent converges superlinearly onto it. Below ``t_bif`` the branch is unstable, with a linearised gain
    ``G`` to the end; a start that is ``> 1/G`` off it there ends on the mode of its side. Measured:

    - the branch itself, run with the exactly odd denoiser :func:`_odd_part` from ``x_T = 0`` (exactly 0);
    - ``max |x_t|`` of ``n`` random starts at t = 650 (the plain algorithm), far above ``t_bif``;
    - ``t_bif`` (first level of the grid where the second difference of VML_S at 0 is negative) and the
      linearised gain from it (the run with the denoiser ``D'(0) x`` from 1);
    - the branch perturbed by +-1e-6 at ``t_bif``, and the measurements ``y = +-1e-6``.

    In float64 the random starts reach ``|x_t| ~ 1e-16`` (round-off) before ``t_bif``, times G ~ 1e80 the
    plain run ends at 0 or at a mode depending on the machine's round-off; in exact arithmetic they are far
    closer to the branch (superlinear convergence) and end at 0. So the plain run's output is not reported.
    """
    sched = linear_schedule()
    prob, y0 = b1(sigma_y=0.5, y=0.0)
    den = ExactDenoiser(prob.prior)
    kw = dict(operator=prob.operator, y=y0, sigma_y=prob.sigma_y, A_norm_squared=1.0)
    grid = sched.timesteps(steps)
    # (1) the branch, exactly
    branch = float(vml_map(_odd_part(den), torch.zeros(1, 1, dtype=F64), sched, steps=steps, **kw).abs().max())
    post = prob.posterior(y0)
    curv_at_0 = float(torch.autograd.functional.hessian(lambda x: post.log_prob(x), torch.zeros(1, dtype=F64)))
    mode = float(prob.map(y0).abs()[0])
    # (2) random starts are on the branch by t = 650
    at_650 = _random_starts_at_650(den, sched, steps, n, gen, kw)
    # (3) where the branch turns unstable, and the linearised gain from there
    t_bif = _bifurcation_level(prob, y0, sched, grid)
    sub_steps = len(grid) - 1 - grid.index(t_bif)
    gain = _linearised_gain(den, sched, t_bif, sub_steps, kw)
    # (4) perturbed starts below t_bif, and nearly symmetric measurements
    side = torch.tensor([[1e-6], [-1e-6]], dtype=F64)
    off = vml_map(den, side, sched, t_start=t_bif, steps=sub_steps, **kw)[:, 0]
    err_off = max(abs(float(off[0]) - mode), abs(float(off[1]) + mode))
    err_near = _near_symmetric_errors(prob, den, sched, steps, n, gen, kw)
    passed = (
        branch == 0.0 and curv_at_0 > 0 and at_650 <= 1e-8 and err_off <= tol_mode and err_near <= tol_mode
    )
    return {
        "passed": passed,
        "measured": {
            "B1 y=0 modes +-": mode,
            "B1 y=0 branch output (odd denoiser, x_T = 0)": branch,
            "B1 y=0 d2/dx2 log p(x|y) at 0 (> 0: minimum)": curv_at_0,
            "B1 y=0 random starts max|x_t| at t=650": at_650,
            "B1 y=0 t_bif (VML_S concave at 0 below)": t_bif,
            "B1 y=0 linearised gain from t_bif": gain,
            "B1 y=0 branch +-1e-6 at t_bif: outputs": [float(v) for v in off],
            "B1 y=0 branch +-1e-6 at t_bif: max|x - mode|": err_off,
            "B1 y=+-1e-6 max|x - MAP|": err_near,
        },
    }


def _b1_modes(n: int, gen: torch.Generator, steps) -> tuple[dict, float]:
    """VML-MAP on B1 at (sigma, y) = (.5, -.6) and (.8, -.2): per case ``[mean output, MAP, MMSE, max|x - MAP|]``,
    and the largest ``max|x - MAP|``."""
    rows = {}
    worst_map = 0.0
    for sigma, yy in ((0.5, -0.6), (0.8, -0.2)):
        gprob, gy = b1(sigma_y=sigma, y=yy)
        xg = solve(gprob, gy, "vml-map", n_samples=n, generator=gen, steps=steps)
        e = float((xg - gprob.map(gy)).abs().max())
        worst_map = max(worst_map, e)
        rows[f"B1 sigma={sigma:g} y={yy:g}"] = [
            float(xg.mean()),
            float(gprob.map(gy)[0]),
            float(gprob.mmse(gy)[0]),
            e,
        ]
    return rows, worst_map


def _gmm2_stationary_points(n: int, gen: torch.Generator, steps, tol_mode: float) -> dict:
    """VML-MAP on the 2-D GMM posterior (A = [1, .5], sigma = .3, y = .4): ``max |grad log p(x|y)|`` at the
    outputs, whether all are local maxima (Hessian negative definite), their distances to the global MAP and
    the fraction within ``tol_mode`` of it."""
    g2prob = LinearInverseProblem(gmm2(), [[1.0, 0.5]], 0.3)
    g2y = t64([0.4])
    x2 = solve(g2prob, g2y, "vml-map", n_samples=n, generator=gen, steps=steps)
    grad, hess = _posterior_grad_hess(g2prob, x2, g2y)
    dist_map = (x2 - g2prob.map(g2y)).norm(dim=-1)
    return {
        "max_grad": float(grad.abs().max()),
        "local_max": bool((torch.linalg.eigvalsh(hess).amax(-1) < 0).all()),
        "dist_map": dist_map,
        "at_map": float((dist_map <= tol_mode).double().mean()),
    }


def check_vml2(quick: bool) -> ClaimResult:
    """VML-2: VML-MAP's outputs are posterior modes: MAP = MMSE on G2; the MAP (or another mode) on GMMs; but at a
    symmetric measurement the deterministic annealing ends at the symmetric stationary point, a density minimum
    (:func:`_symmetric_measurement`)."""
    steps = 100 if quick else None  # levels of the reconstructed algorithm (default: all 1000)
    n = 8 if quick else 32
    gen = rng(7201)
    sched = linear_schedule()
    t_last = sched.timesteps(steps)[-2]  # the last level, where the final gradient steps are taken
    # at the last level the stationarity condition is the MAP condition up to O(1 - ab_last) (vml_map
    # docstring); the measured offset is ~5e-3 (1 - ab_last) on the 2-D GMM below, so allow 0.1 (1 - ab_last)
    tol_mode = 0.1 * (1.0 - float(sched.alpha_bar(t_last)))
    prob, y = g2()
    x = solve(prob, y, "vml-map", n_samples=n, generator=gen, steps=steps)
    err_gauss = float((x - prob.map(y)).abs().max())
    rows, worst_map = _b1_modes(n, gen, steps)
    sym = _symmetric_measurement(tol_mode, steps, n, gen)
    gmm2_run = _gmm2_stationary_points(n, gen, steps, tol_mode)
    max_grad, local_max, dist_map, at_map = (gmm2_run[k] for k in ("max_grad", "local_max", "dist_map", "at_map"))
    passed = (
        err_gauss <= 1e-4
        and worst_map <= tol_mode
        and sym["passed"]
        and local_max
        and float(dist_map.max()) <= tol_mode
    )
    return ClaimResult(
        id="VML-2",
        paper="gutha2025vml",
        statement="VML-MAP (minimise VML at every level while descending) converges to a posterior mode, "
        "i.e. a MAP estimate, without posterior sampling. Verdict: it does for every measurement that is not "
        "symmetric (here: the global MAP); at a symmetric measurement (B1, y = 0) the deterministic annealing "
        "draws every start onto the symmetric branch x_t = 0 while that is VML_S's only stationary point, and "
        "in exact arithmetic follows it to x = 0, the density minimum between the modes: a side is picked only "
        "by an asymmetry (a start off the branch below t_bif, any y != 0, or round-off).",
        measured={
            "G2 max|x - MAP|": err_gauss,
            "B1 [mean, MAP, MMSE, max|x - MAP|]": rows,
            **sym["measured"],
            "GMM2 max|grad log p(x|y)|": max_grad,
            "GMM2 all local maxima": local_max,
            "GMM2 max|x - MAP|": float(dist_map.max()),
            "GMM2 fraction at the global MAP": at_map,
            "levels": steps or 1000,
            "tol_mode": tol_mode,
            "n": n,
        },
        expected="G2: the output is mu_y = MAP = MMSE up to the optimiser's residual; B1: every particle at "
        "the global MAP (-0.9333, -0.9420), not the MMSE; 2-D GMM (A = [1, .5]): every output at a local "
        "maximum of p(x|y), here the global MAP. B1 at the symmetric measurement y = 0 (modes +-0.8333): the "
        "branch x_t = 0 is invariant and ends at x = 0, a density MINIMUM; random starts are on it (|x_t| <= "
        "1e-8) by t = 650, while it is the unique stationary point of VML_S (t > t_bif); started 1e-6 off it at "
        "t_bif, VML-MAP ends on the mode of that side; at y = +-1e-6 every particle ends on the global MAP",
        tolerance="1e-4 (G2: the inner gradient descent's residual); 0.1 (1 - ab_last) for the GMM modes "
        "(2e-4 with 100 levels, 1e-5 with 1000)",
        reason="deterministic algorithm; the tolerances bound the measured residual of the inner gradient "
        "descent at the last level (the toolkit's reconstruction, not the paper's unknown schedule). The "
        "symmetric case is measured with an exactly odd denoiser (D(x) - D(-x)) / 2 started on the branch, so "
        "no round-off can pick a side; 1e-8 is 8 orders above round-off and 8 below the modes",
        verdict="one-formulation",
        passed=passed,
        theory="docs/theory §8.1, §8.2",
    )


CHECKS = single_threaded({"VML-1": check_vml1, "VML-2": check_vml2})
