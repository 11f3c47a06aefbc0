"""Divergences between laws (docs/theory §9), each checked against an independent oracle.

Oracles: scipy.linalg.sqrtm and POT (Gaussian W2), numpy closed forms and scipy quadrature (KL),
POT's ``gmm_ot_loss`` and scipy's HiGHS ``linprog`` (mixture W2), ``linear_sum_assignment`` (empirical OT),
``brentq`` (1-D quantiles), and closed forms (commuting covariances, rank-1 and Dirac laws).
Tolerances: 1e-10 (relative to the scale of the quantity) for exact float64 identities; k standard errors
for Monte Carlo; the measured midpoint-rule rate for the quantile quadrature.
"""

import math

import numpy as np
import ot
import ot.gaussian
import ot.gmm
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import integrate

import dptheory as dpt
from dptheory.divergences import (
    empirical_w2_squared,
    gaussian_kl,
    gaussian_w2,
    gaussian_w2_squared,
    gelbrich_w2_squared,
    gmm_kl_monte_carlo,
    gmm_kl_upper_bound,
    gmm_kl_variational,
    gmm_mw2_squared,
    quantile_w2_squared_1d,
)

EXACT = 1e-10  # float64 identities computed by two different routes (eigh/SVD vs Schur sqrtm, LU solves)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Run this module's tests on one intra-op thread, then restore the setting.

    On the shared 2-core test machine under load, elementwise float64 kernels (ndtr, exp) ran ~25x slower with
    2 threads than with 1 (230 vs 9 ns per element, measured), which made the quantile tests take minutes.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- builders
def random_spd(d, gen, *, rank=None, floor=0.1):
    """``B B^T + floor I`` (SPD) or, with ``rank``, a rank-``rank`` PSD matrix ``B B^T`` (B is d x rank)."""
    r = d if rank is None else rank
    B = torch.randn(d, r, generator=gen)
    return B @ B.T + (floor * torch.eye(d) if rank is None else 0.0)


def random_gaussian(d, gen, *, rank=None):
    return dpt.Gaussian(2.0 * torch.randn(d, generator=gen), random_spd(d, gen, rank=rank))


def random_gmm(K, d, gen, *, spread=3.0):
    w = torch.rand(K, generator=gen) + 0.2
    means = spread * torch.randn(K, d, generator=gen)
    covs = torch.stack([random_spd(d, gen, floor=0.2) for _ in range(K)])
    return dpt.GaussianMixture(w / w.sum(), means, covs)


def np_(t):
    return t.detach().numpy()


# ---------------------------------------------------------------------------------------------- references
def bures_w2_squared_ref(m1, S1, m2, S2):
    """Bures formula with scipy's Schur-based sqrtm (an algorithm independent of our eigh/SVD route)."""
    r1 = scipy.linalg.sqrtm(S1)
    cross = scipy.linalg.sqrtm(r1 @ S2 @ r1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(S1) + np.trace(S2) - 2.0 * np.trace(cross).real)


def kl_ref(m1, S1, m2, S2):
    """docs/theory §9.1 in numpy with LU solves and slogdet."""
    d = len(m1)
    dm = m2 - m1
    _, ld1 = np.linalg.slogdet(S1)
    _, ld2 = np.linalg.slogdet(S2)
    return 0.5 * (np.trace(np.linalg.solve(S2, S1)) + dm @ np.linalg.solve(S2, dm) - d + ld2 - ld1)


def gmm_logpdf_1d(law, x):
    """log density of a 1-D GMM with scipy.stats (independent of dptheory's log_prob)."""
    w, m, s = np_(law.weights), np_(law.means[:, 0]), np.sqrt(np_(law.covs[:, 0, 0]))
    return scipy.special.logsumexp(np.log(w) + scipy.stats.norm.logpdf(np.asarray(x)[..., None], m, s), axis=-1)


def kl_quad_1d(f, g):
    """KL(f || g) for 1-D GMMs by adaptive quadrature over a range holding all but ~1e-30 of f's mass."""
    m, s = np_(f.means[:, 0]), np.sqrt(np_(f.covs[:, 0, 0]))
    lo, hi = float((m - 12 * s).min()), float((m + 12 * s).max())

    def integrand(x):
        lf = gmm_logpdf_1d(f, x)
        return math.exp(lf) * (lf - gmm_logpdf_1d(g, x))

    points = sorted(set(np.round(m, 6)))
    value, err = integrate.quad(integrand, lo, hi, points=points, epsabs=1e-13, epsrel=1e-12, limit=500)
    assert err < 1e-9
    return value


def ot_linprog(a, b, C):
    """Discrete OT by scipy's HiGHS linear program (an LP solver independent of POT's network simplex)."""
    K, L = C.shape
    A_eq = np.vstack([np.kron(np.eye(K), np.ones(L)), np.kron(np.ones(K), np.eye(L))])
    b_eq = np.concatenate([a, b])
    res = scipy.optimize.linprog(C.ravel(), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    # an optimality certificate instead of the solver's status flag: primal feasibility, dual feasibility
    # (A^T u <= c) and a zero duality gap, each to 1e-9 (HiGHS's default feasibility tolerance is 1e-7 on
    # unscaled data; the inputs here are O(1) and it lands at round-off in practice)
    x, u = res.x, res.eqlin.marginals
    scale = max(1.0, float(np.abs(C).max()))
    assert np.abs(A_eq @ x - b_eq).max() <= 1e-9 and x.min() >= -1e-9, "linprog: primal infeasible"
    assert (A_eq.T @ u - C.ravel()).max() <= 1e-9 * scale, "linprog: dual infeasible"
    assert abs(C.ravel() @ x - b_eq @ u) <= 1e-9 * scale, "linprog: duality gap"
    return res.fun


def as_gmm(p):
    return dpt.GaussianMixture([1.0], p.mean[None], p.cov[None]) if isinstance(p, dpt.Gaussian) else p


# ---------------------------------------------------------------------------------------------- Gaussian W2
@pytest.mark.parametrize("d", [1, 2, 3, 5, 8])
def test_gaussian_w2_matches_scipy_sqrtm_and_pot(d, gen):
    for _ in range(3):
        p, q = random_gaussian(d, gen), random_gaussian(d, gen)
        ours = float(gaussian_w2_squared(p, q))
        ref = bures_w2_squared_ref(np_(p.mean), np_(p.cov), np_(q.mean), np_(q.cov))
        assert ours == pytest.approx(ref, rel=EXACT, abs=EXACT)
        pot = float(ot.gaussian.bures_wasserstein_distance(np_(p.mean), np_(q.mean), np_(p.cov), np_(q.cov)))
        assert float(gaussian_w2(p, q)) == pytest.approx(pot, rel=EXACT, abs=EXACT)  # POT returns W2, not W2^2


def test_gaussian_w2_closed_example():
    # W2(N(0,1), N(10,1)) = 10 (POT's test): only the mean moves. Exact in float64 (1 + 1 - 2 sqrt(1) = 0).
    w = gaussian_w2(dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([10.0], [[1.0]]))
    assert w.ndim == 0 and w.dtype == torch.float64
    assert float(w) == pytest.approx(10.0, abs=1e-12)
    assert float(gaussian_w2_squared(dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([10.0], [[1.0]]))) == pytest.approx(
        100.0
    )


def test_gaussian_w2_commuting_case(gen):
    # docs/theory §9.2: with a common eigenbasis, W2^2 = ||m1 - m2||^2 + ||S1^{1/2} - S2^{1/2}||_F^2.
    d = 4
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
    a, b = torch.rand(d, generator=gen) * 3, torch.rand(d, generator=gen) * 3
    a[0] = 0.0  # a singular one too
    m1, m2 = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
    p, q = dpt.Gaussian(m1, V @ torch.diag(a) @ V.T), dpt.Gaussian(m2, V @ torch.diag(b) @ V.T)
    expected = float((m1 - m2).square().sum() + (a.sqrt() - b.sqrt()).square().sum())
    assert float(gaussian_w2_squared(p, q)) == pytest.approx(expected, rel=EXACT, abs=EXACT)


def test_gaussian_w2_singular_covariances():
    # Dirac to Gaussian: W2^2 = ||x - m||^2 + tr S (every coupling is the product one).
    dirac = dpt.Gaussian([1.0, -1.0], torch.zeros(2, 2))
    q = dpt.Gaussian([0.0, 2.0], [[2.0, 0.3], [0.3, 1.0]])
    assert float(gaussian_w2_squared(dirac, q)) == pytest.approx(1.0 + 9.0 + 3.0, rel=EXACT)
    assert float(gaussian_w2_squared(q, dirac)) == pytest.approx(13.0, rel=EXACT)
    # Two Diracs: the squared distance between the points.
    assert float(gaussian_w2(dirac, dpt.Gaussian([4.0, 3.0], torch.zeros(2, 2)))) == pytest.approx(5.0, rel=EXACT)
    # Two rank-1 laws a uu^T and b vv^T: W2^2 = a + b - 2 sqrt(a b) |u.v|   (here |u.v| = cos 60 deg = 1/2).
    u = torch.tensor([1.0, 0.0])
    v = torch.tensor([math.cos(math.pi / 3), math.sin(math.pi / 3)])
    p, q = (
        dpt.Gaussian([0.0, 0.0], 2.0 * torch.outer(u, u)),
        dpt.Gaussian([0.0, 0.0], 3.0 * torch.outer(v, v)),
    )
    assert float(gaussian_w2_squared(p, q)) == pytest.approx(5.0 - math.sqrt(6.0), rel=EXACT)


def test_gaussian_w2_never_nan_near_equal_laws(gen):
    # docs/theory §9.2: round-off made W2^2 slightly negative and W2 NaN; clipping at 0 must prevent it, and the
    # leftover is round-off: W2^2 <= 1e-12 of the scale, so W2 <= 1e-6 of sqrt(scale).
    for d, rank in [(2, None), (6, None), (6, 2), (3, 1)]:
        p = random_gaussian(d, gen, rank=rank)
        scale = 1.0 + float(p.cov.trace())
        same = dpt.Gaussian(p.mean.clone(), p.cov.clone())
        w2 = gaussian_w2_squared(p, same)
        assert 0.0 <= float(w2) <= 1e-12 * scale
        assert math.isfinite(float(gaussian_w2(p, same)))
        near = dpt.Gaussian(p.mean + 1e-9, p.cov)  # W2 = 1e-9 sqrt(d) exactly; squared, below round-off
        assert float(gaussian_w2(p, near)) <= 1e-6 * math.sqrt(scale)


def test_gaussian_w2_dtype_follows_inputs():
    p32 = dpt.Gaussian(torch.zeros(2, dtype=torch.float32), torch.eye(2, dtype=torch.float32))
    q32 = dpt.Gaussian(torch.ones(2, dtype=torch.float32), 4 * torch.eye(2, dtype=torch.float32))
    w = gaussian_w2_squared(p32, q32)
    assert w.dtype == torch.float32 and w.ndim == 0
    assert float(w) == pytest.approx(2.0 + 2.0, rel=1e-6)  # float32 round-off
    q64 = dpt.Gaussian([1.0, 1.0], 4 * torch.eye(2))
    assert gaussian_w2_squared(p32, q64).dtype == torch.float64  # promoted


# ---------------------------------------------------------------------------------------------- Gaussian KL
@pytest.mark.parametrize("d", [1, 2, 4, 7])
def test_gaussian_kl_matches_numpy_reference(d, gen):
    for _ in range(3):
        p, q = random_gaussian(d, gen), random_gaussian(d, gen)
        ref = kl_ref(np_(p.mean), np_(p.cov), np_(q.mean), np_(q.cov))
        kl = gaussian_kl(p, q)
        assert kl.ndim == 0
        assert float(kl) == pytest.approx(ref, rel=EXACT, abs=EXACT)


def test_gaussian_kl_matches_quadrature_in_1d():
    # quad with epsabs 1e-13 on +-12 sd (mass outside ~1e-32); agreement limited by quad, hence 1e-9.
    for (m1, v1), (m2, v2) in [((0.0, 1.0), (1.0, 1.0)), ((0.3, 0.5), (-1.0, 2.0)), ((2.0, 3.0), (0.0, 0.2))]:
        p, q = dpt.Gaussian([m1], [[v1]]), dpt.Gaussian([m2], [[v2]])
        assert float(gaussian_kl(p, q)) == pytest.approx(kl_quad_1d(as_gmm(p), as_gmm(q)), abs=1e-9)


def test_gaussian_kl_zero_iff_equal_and_singular_cases(gen):
    p = random_gaussian(3, gen)
    assert abs(float(gaussian_kl(p, dpt.Gaussian(p.mean, p.cov)))) <= 1e-13  # round-off only
    assert float(gaussian_kl(p, dpt.Gaussian(p.mean + 0.1, p.cov))) > 0
    singular = random_gaussian(3, gen, rank=2)
    assert float(gaussian_kl(singular, p)) == math.inf  # p not absolutely continuous w.r.t. q
    with pytest.raises(ValueError, match="q.cov to be nonsingular"):
        gaussian_kl(p, singular)


def test_monte_carlo_kl_matches_gaussian_closed_form(gen):
    # Unbiased MC: within 4 standard errors (two-sided failure rate 6e-5 for a fresh seed; the seed is fixed).
    for d in (1, 3):
        p, q = random_gaussian(d, gen), random_gaussian(d, gen)
        est = gmm_kl_monte_carlo(p, q, 20_000, generator=gen)
        assert est.n == 20_000 and est.stderr > 0
        assert est.within(float(gaussian_kl(p, q)), k=4.0)


def test_monte_carlo_kl_is_reproducible_and_inf_for_singular_p(gen):
    p, q = random_gmm(2, 2, gen), random_gmm(3, 2, gen)
    a = gmm_kl_monte_carlo(p, q, 500, generator=torch.Generator().manual_seed(1))
    b = gmm_kl_monte_carlo(p, q, 500, generator=torch.Generator().manual_seed(1))
    assert a == b
    dirac = dpt.GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], torch.stack([torch.eye(2), torch.zeros(2, 2)]))
    assert gmm_kl_monte_carlo(dirac, q, 100, generator=gen).value == math.inf


# ---------------------------------------------------------------------------------------------- GMM KL
def test_hershey_olsen_exact_for_single_gaussians(gen):
    for d in (1, 3):
        p, q = random_gaussian(d, gen), random_gaussian(d, gen)
        kl = float(gaussian_kl(p, q))
        assert float(gmm_kl_variational(p, q)) == pytest.approx(kl, rel=EXACT, abs=EXACT)
        assert float(gmm_kl_upper_bound(p, q)) == pytest.approx(kl, rel=EXACT, abs=EXACT)
        assert float(gmm_kl_upper_bound(as_gmm(p), as_gmm(q), iters=0)) == pytest.approx(kl, rel=EXACT, abs=EXACT)


def test_hershey_olsen_zero_for_equal_mixtures(gen):
    f = random_gmm(3, 2, gen)
    assert abs(float(gmm_kl_variational(f, f))) <= 1e-12
    # the bound is >= 0 and, once tightened, close to 0 (the optimal phi, psi make each pair identical)
    assert 0.0 <= float(gmm_kl_upper_bound(f, f, iters=500)) <= 1e-2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hershey_olsen_bound_vs_quadrature_in_1d(seed):
    # In 1-D the true KL is available by quadrature (abs error < 1e-9), so the bound is checked exactly.
    gen = torch.Generator().manual_seed(seed)
    f, g = random_gmm(3, 1, gen, spread=2.0), random_gmm(2, 1, gen, spread=2.0)
    kl = kl_quad_1d(f, g)
    bounds = [float(gmm_kl_upper_bound(f, g, iters=i)) for i in (0, 1, 3, 10, 100)]
    assert all(b >= kl - 1e-9 for b in bounds)
    assert all(b1 >= b0 - 1e-12 for b0, b1 in zip(bounds[1:], bounds[:-1], strict=True))  # never increases with iters
    assert bounds[0] > bounds[-1]  # the updates do tighten it
    est = gmm_kl_monte_carlo(f, g, 20_000, generator=gen)
    assert est.within(kl, k=4.0)  # MC against quadrature, 4 standard errors
    assert math.isfinite(float(gmm_kl_variational(f, g)))  # an approximation: no ordering is claimed


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_hershey_olsen_bound_above_monte_carlo(seed):
    # docs/theory §9.3: the bound held in 4 of 4 trials. Here: bound >= MC - 3 SE (one-sided rate 1.3e-3 per pair).
    gen = torch.Generator().manual_seed(seed)
    f, g = random_gmm(3, 2, gen), random_gmm(2, 2, gen)
    est = gmm_kl_monte_carlo(f, g, 20_000, generator=gen)
    assert float(gmm_kl_upper_bound(f, g)) >= est.value - 3.0 * est.stderr


def test_hershey_olsen_bound_below_pairing_bound_and_survives_underflow():
    # Far-apart matched components: KL between unmatched ones is ~1e6, so exp(-KL) underflows to 0 in linear
    # space (docs/theory §9.3). The log-space bound stays finite and, being a minimum over (phi, psi), is at most
    # the simple pairing bound KL(pi || omega) + sum_a pi_a KL(f_a || g_a), a feasible point of that problem.
    pi, omega = torch.tensor([0.3, 0.7]), torch.tensor([0.4, 0.6])
    f = dpt.GaussianMixture(pi, [[-100.0], [100.0]], [[[0.01]], [[0.02]]])
    g = dpt.GaussianMixture(omega, [[-100.5], [100.2]], [[[0.015]], [[0.02]]])
    pairing = float((pi * (pi / omega).log()).sum()) + sum(
        float(pi[a]) * float(gaussian_kl(f.component(a), g.component(a))) for a in range(2)
    )
    bound = float(gmm_kl_upper_bound(f, g, iters=50))
    assert math.isfinite(bound)
    assert bound <= pairing + 1e-12
    assert bound >= kl_quad_1d(f, g) - 1e-9


def test_kl_functions_reject_singular_q_and_return_inf_for_singular_p(gen):
    f = random_gmm(2, 2, gen)
    g = dpt.GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], torch.stack([torch.eye(2), torch.zeros(2, 2)]))
    for fn in (gmm_kl_variational, gmm_kl_upper_bound):
        with pytest.raises(ValueError, match="every covariance of q"):
            fn(f, g)
        assert float(fn(g, f)) == math.inf
    with pytest.raises(ValueError, match="every covariance of q"):
        gmm_kl_monte_carlo(f, g, 10, generator=gen)


# ---------------------------------------------------------------------------------------------- GMM W2
@pytest.mark.parametrize("K, L, d", [(1, 1, 2), (2, 3, 2), (3, 2, 4), (4, 4, 1)])
def test_mw2_matches_pot_gmm_ot_loss_and_an_independent_lp(K, L, d, gen):
    f, g = random_gmm(K, d, gen), random_gmm(L, d, gen)
    ours = float(gmm_mw2_squared(f, g))
    pot = float(
        ot.gmm.gmm_ot_loss(np_(f.means), np_(g.means), np_(f.covs), np_(g.covs), np_(f.weights), np_(g.weights))
    )
    assert ours == pytest.approx(pot, rel=EXACT, abs=EXACT)
    # cost matrix from scipy sqrtm, solved by POT's emd2 and (independently) by HiGHS
    C = np.array(
        [
            [bures_w2_squared_ref(np_(f.means[k]), np_(f.covs[k]), np_(g.means[l]), np_(g.covs[l])) for l in range(L)]
            for k in range(K)
        ]
    )
    assert ours == pytest.approx(float(ot.emd2(np_(f.weights), np_(g.weights), C)), rel=EXACT, abs=EXACT)
    assert ours == pytest.approx(ot_linprog(np_(f.weights), np_(g.weights), C), rel=1e-8, abs=1e-8)  # HiGHS tol


def test_mw2_of_single_gaussians_is_w2_and_of_diracs_is_discrete_ot(gen):
    p, q = random_gaussian(3, gen), random_gaussian(3, gen)
    assert float(gmm_mw2_squared(p, q)) == pytest.approx(float(gaussian_w2_squared(p, q)), rel=EXACT, abs=EXACT)
    # Mixtures of Diracs (singular components, where POT 0.9.7's gmm_ot_loss gives NaN): MW2^2 = W2^2 of the
    # weighted point sets, computed here by HiGHS on the squared distances.
    x, y = torch.randn(3, 2, generator=gen), torch.randn(4, 2, generator=gen)
    a, b = torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.1, 0.4, 0.25, 0.25])
    f, g = dpt.GaussianMixture(a, x, torch.zeros(3, 2, 2)), dpt.GaussianMixture(b, y, torch.zeros(4, 2, 2))
    ref = ot_linprog(np_(a), np_(b), np_(torch.cdist(x, y).square()))
    assert float(gmm_mw2_squared(f, g)) == pytest.approx(ref, rel=1e-8, abs=1e-8)
    assert float(empirical_w2_squared(x, y, a, b)) == pytest.approx(ref, rel=1e-8, abs=1e-8)


def test_mw2_with_rank_one_components_matches_a_closed_form_cost(gen):
    # Rank-1 source components S_k = a_k u_k u_k^T, where POT 0.9.7's gmm_ot_loss failed in 97 of 100 random
    # 3-D draws (sqrt of a round-off-negative eigenvalue, then LinAlgError). Closed form of the Bures cost:
    # S^{1/2} T S^{1/2} = a (u^T T u) u u^T, so W2^2 = ||dm||^2 + a + tr T - 2 sqrt(a u^T T u).
    K, L, d = 3, 2, 3
    u = torch.nn.functional.normalize(torch.randn(K, d, generator=gen), dim=-1)
    a = 0.5 + torch.rand(K, generator=gen)
    f = dpt.GaussianMixture(
        torch.tensor([0.2, 0.3, 0.5]),
        torch.randn(K, d, generator=gen),
        a[:, None, None] * (u[:, :, None] * u[:, None, :]),
    )
    g = random_gmm(L, d, gen)
    C = torch.empty(K, L)
    for k in range(K):
        for l in range(L):
            T = g.covs[l]
            C[k, l] = (f.means[k] - g.means[l]).square().sum() + a[k] + T.trace() - 2 * (a[k] * u[k] @ T @ u[k]).sqrt()
    ours = float(gmm_mw2_squared(f, g))
    assert ours == pytest.approx(float(ot.emd2(np_(f.weights), np_(g.weights), np_(C))), rel=EXACT, abs=EXACT)
    assert ours == pytest.approx(ot_linprog(np_(f.weights), np_(g.weights), np_(C)), rel=1e-8, abs=1e-8)


def test_ordering_gelbrich_empirical_mw2_in_2d():
    # docs/theory §9.4: Gelbrich <= W2^2 <= E[empirical W2^2] (upward bias), and W2^2 <= MW2^2. Here the gaps are
    # wide (measured: 3.08, 3.53 +- 0.11 at n = 2000, 6.03), so a 3-seed mean at n = 700 with 3 standard
    # errors of slack on each side cannot blur them.
    f = dpt.GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], 0.5 * torch.eye(2).expand(2, 2, 2))
    g = dpt.GaussianMixture([0.3, 0.7], [[0.0, -1.5], [0.5, 1.5]], [[[1.5, 0.5], [0.5, 0.4]], [[0.3, 0.0], [0.0, 1.0]]])
    gelbrich, mw2 = float(gelbrich_w2_squared(f, g)), float(gmm_mw2_squared(f, g))
    vals = []
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        vals.append(float(empirical_w2_squared(f.sample(700, generator=gen), g.sample(700, generator=gen))))
    mean, se = float(np.mean(vals)), float(np.std(vals, ddof=1) / math.sqrt(len(vals)))
    assert gelbrich <= mean + 3 * se
    assert mean - 3 * se <= mw2
    assert gelbrich < mw2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ordering_is_exact_in_1d_with_quantiles(seed):
    # In 1-D W2^2 itself is available (quantiles), so Gelbrich <= W2^2 <= MW2^2 is checked without sampling.
    # The midpoint rule is low by <= ~1.3 (s_f - s_g)^2 / N (measured); 1e-4 covers it at N = 2e4.
    gen = torch.Generator().manual_seed(seed)
    f, g = random_gmm(3, 1, gen), random_gmm(2, 1, gen)
    w2 = float(quantile_w2_squared_1d(f, g, n_quantiles=20_000))
    assert float(gelbrich_w2_squared(f, g)) <= w2 + 1e-4
    assert w2 <= float(gmm_mw2_squared(f, g)) + 1e-4


def test_gelbrich_is_w2_for_gaussians_and_uses_whole_mixture_moments(gen):
    p, q = random_gaussian(3, gen), random_gaussian(3, gen)
    assert float(gelbrich_w2_squared(p, q)) == pytest.approx(float(gaussian_w2_squared(p, q)), rel=EXACT)
    f, g = random_gmm(3, 2, gen), random_gmm(2, 2, gen)
    ref = bures_w2_squared_ref(np_(f.mean), np_(f.cov), np_(g.mean), np_(g.cov))
    assert float(gelbrich_w2_squared(f, g)) == pytest.approx(ref, rel=EXACT, abs=EXACT)


# ---------------------------------------------------------------------------------------------- empirical OT
def test_empirical_w2_is_an_assignment_for_uniform_equal_sizes(gen):
    # n = m and uniform weights: an optimal plan is a permutation (Birkhoff); the Hungarian method finds it.
    x, y = torch.randn(40, 3, generator=gen), torch.randn(40, 3, generator=gen) + 1.0
    C = np_(torch.cdist(x, y).square())
    r, c = scipy.optimize.linear_sum_assignment(C)
    assert float(empirical_w2_squared(x, y)) == pytest.approx(C[r, c].mean(), rel=EXACT)


def test_empirical_w2_in_1d_sorts(gen):
    x, y = torch.randn(500, 1, generator=gen), 2.0 * torch.randn(500, 1, generator=gen) + 1.0
    sorted_ref = float((x[:, 0].sort().values - y[:, 0].sort().values).square().mean())
    assert float(empirical_w2_squared(x, y)) == pytest.approx(sorted_ref, rel=EXACT)
    # unequal sizes and weights: against HiGHS
    a = torch.rand(30, generator=gen)
    a /= a.sum()
    ref = ot_linprog(np_(a), np.full(20, 1 / 20), np_(torch.cdist(x[:30], y[:20]).square()))
    assert float(empirical_w2_squared(x[:30], y[:20], a=a)) == pytest.approx(ref, rel=1e-8, abs=1e-8)


def test_empirical_w2_is_biased_upward_but_consistent(gen):
    # Two samples of the SAME law: W2^2 = 0, but every empirical value is > 0 (the upward bias), and the bias
    # shrinks with n (1-D, so the exact sorted coupling is cheap; 5 draws per n).
    p = dpt.Gaussian([0.0], [[1.0]])
    small = [float(empirical_w2_squared(p.sample(200, generator=gen), p.sample(200, generator=gen))) for _ in range(5)]
    large = [
        float(empirical_w2_squared(p.sample(5000, generator=gen), p.sample(5000, generator=gen))) for _ in range(5)
    ]
    assert min(small + large) > 0.0
    assert np.mean(large) < np.mean(small)
    # Different laws: the mean of 5 draws at n = 20000 is within 4 of its standard errors of W2^2 = 2
    # (the bias, ~1.6e-3 by simulation, is well below the MC spread ~0.04 / sqrt(5) there).
    q = dpt.Gaussian([1.0], [[4.0]])
    vals = [
        float(empirical_w2_squared(p.sample(20_000, generator=gen), q.sample(20_000, generator=gen))) for _ in range(5)
    ]
    assert abs(np.mean(vals) - float(gaussian_w2_squared(p, q))) <= 4 * np.std(vals, ddof=1) / math.sqrt(5)


def test_empirical_w2_raises_when_the_solver_stops_early(gen):
    x, y = torch.randn(100, 2, generator=gen), torch.randn(100, 2, generator=gen)
    with pytest.raises(RuntimeError, match="num_iter_max"):
        empirical_w2_squared(x, y, num_iter_max=10)


def test_empirical_w2_dtype_and_validation():
    x = torch.zeros(3, 2, dtype=torch.float32)
    assert empirical_w2_squared(x, x + 1).dtype == torch.float32
    with pytest.raises(ValueError, match="x contains NaN"):
        empirical_w2_squared(torch.tensor([[0.0, float("nan")]]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="y contains NaN"):
        empirical_w2_squared(torch.zeros(2, 2), torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="same dimension"):
        empirical_w2_squared(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\)"):
        empirical_w2_squared(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="a must sum to 1"):
        empirical_w2_squared(torch.zeros(2, 2), torch.zeros(2, 2), a=[0.5, 0.6])
    with pytest.raises(ValueError, match=r"b must have shape \(n,\) = \(2,\)"):
        empirical_w2_squared(torch.zeros(2, 2), torch.zeros(2, 2), b=[1.0])
    with pytest.raises(TypeError, match="x must be a tensor"):
        empirical_w2_squared("points", torch.zeros(2, 2))


# ---------------------------------------------------------------------------------------------- 1-D quantiles
@pytest.mark.parametrize("m1, v1, m2, v2", [(0.0, 1.0, 1.0, 4.0), (-1.0, 0.3, 2.0, 0.05), (0.5, 2.0, 0.5, 2.0)])
def test_quantile_w2_matches_gaussian_formula(m1, v1, m2, v2):
    # The midpoint rule misses the tails, so it is LOW by ~1.3 (s1 - s2)^2 / N (measured); allow 2x that.
    N = 20_000
    p, q = dpt.Gaussian([m1], [[v1]]), dpt.Gaussian([m2], [[v2]])
    err = float(quantile_w2_squared_1d(p, q, n_quantiles=N)) - float(gaussian_w2_squared(p, q))
    ds2 = (math.sqrt(v1) - math.sqrt(v2)) ** 2
    assert -2.6 * ds2 / N - 1e-12 <= err <= 1e-12


def test_quantile_w2_with_diracs_and_mixtures():
    f = dpt.GaussianMixture([0.2, 0.5, 0.3], [[-1.0], [0.5], [3.0]], [[[0.4]], [[0.0]], [[1.0]]])  # an atom
    dirac = dpt.Gaussian([0.7], [[0.0]])
    # W2^2 to a Dirac at c = E (X - c)^2 = sum_k w_k ((m_k - c)^2 + s_k^2); midpoint rule low by O(s^2 / N)
    exact = sum(w * ((m - 0.7) ** 2 + v) for w, m, v in [(0.2, -1.0, 0.4), (0.5, 0.5, 0.0), (0.3, 3.0, 1.0)])
    assert float(quantile_w2_squared_1d(f, dirac, n_quantiles=20_000)) == pytest.approx(exact, abs=2e-4)
    # two Dirac mixtures: the sorted coupling, exact
    a = dpt.GaussianMixture([0.5, 0.5], [[0.0], [2.0]], torch.zeros(2, 1, 1))
    b = dpt.GaussianMixture([0.25, 0.75], [[1.0], [5.0]], torch.zeros(2, 1, 1))
    # quantile coupling: mass 1/4: 0 -> 1, 1/4: 0 -> 5, 1/2: 2 -> 5
    assert float(quantile_w2_squared_1d(a, b, n_quantiles=1000)) == pytest.approx(
        0.25 * 1 + 0.25 * 25 + 0.5 * 9, abs=1e-12
    )


def test_quantile_w2_matches_a_brentq_reference_on_the_same_midpoints(gen):
    # Same quadrature nodes, quantiles by scipy's brentq on scipy.stats CDFs: the inversion itself is exact.
    f, g = random_gmm(3, 1, gen), random_gmm(2, 1, gen)
    N = 40
    u = (np.arange(N) + 0.5) / N

    def quantiles(law):
        w, m, s = np_(law.weights), np_(law.means[:, 0]), np.sqrt(np_(law.covs[:, 0, 0]))

        def root(ui):
            return scipy.optimize.brentq(
                lambda x: float(w @ scipy.stats.norm.cdf(x, m, s)) - ui, -100, 100, xtol=1e-14, rtol=1e-15
            )

        return np.array([root(ui) for ui in u])

    ref = float(np.mean((quantiles(f) - quantiles(g)) ** 2))
    assert float(quantile_w2_squared_1d(f, g, n_quantiles=N)) == pytest.approx(ref, rel=EXACT, abs=EXACT)


@pytest.mark.slow
def test_quantile_w2_theory_claim_at_2e5_midpoints():
    # docs/theory §9.2: matched the Gaussian formula to 1e-5 with 2e5 midpoints (measured here: -6.7e-6).
    p, q = dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([1.0], [[4.0]])
    assert float(quantile_w2_squared_1d(p, q)) == pytest.approx(2.0, abs=1e-5)


def test_quantile_w2_validation():
    p2 = dpt.Gaussian([0.0, 0.0], torch.eye(2))
    with pytest.raises(ValueError, match="real line"):
        quantile_w2_squared_1d(p2, p2)
    with pytest.raises(ValueError, match="n_quantiles"):
        quantile_w2_squared_1d(dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([0.0], [[1.0]]), n_quantiles=0)


# ---------------------------------------------------------------------------------------------- validation
def test_dimension_and_type_errors_name_the_argument():
    p1, p2 = dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([0.0, 0.0], torch.eye(2))
    f = dpt.GaussianMixture([1.0], [[0.0]], [[[1.0]]])
    for fn in (
        gaussian_w2_squared,
        gaussian_w2,
        gaussian_kl,
        gmm_mw2_squared,
        gelbrich_w2_squared,
        gmm_kl_variational,
        gmm_kl_upper_bound,
    ):
        with pytest.raises(ValueError, match=r"p.dim = 1 and q.dim = 2"):
            fn(p1, p2)
        with pytest.raises(TypeError, match="q must be"):
            fn(p1, torch.zeros(1))
        with pytest.raises(TypeError, match="p must be"):
            fn("N(0, 1)", p1)
    for fn in (gaussian_w2_squared, gaussian_kl):
        with pytest.raises(TypeError, match="q must be a Gaussian, got a GaussianMixture; use gmm_"):
            fn(p1, f)
    with pytest.raises(ValueError, match="same dimension"):
        gmm_kl_monte_carlo(p1, p2, 10, generator=None)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        gmm_kl_monte_carlo(p1, p1, 1, generator=None)
    with pytest.raises(ValueError, match="iters must be an integer >= 0"):
        gmm_kl_upper_bound(f, f, iters=-1)


# ---------------------------------------------------------------------------------------------- properties
@st.composite
def gaussians(draw, d, *, spd=False):
    """A Gaussian on R^d with cov = B B^T (+ floor I when spd): entries in [-2, 2], so scales stay O(10)."""
    mean = draw(arrays(np.float64, (d,), elements=st.floats(-3, 3)))
    r = d if spd else draw(st.integers(1, d))  # PSD draws include rank-deficient (and rank-0-like) ones
    B = draw(arrays(np.float64, (d, r), elements=st.floats(-2, 2)))
    floor = draw(st.floats(0.05, 1.0)) if spd else 0.0
    return dpt.Gaussian(torch.as_tensor(mean), torch.as_tensor(B @ B.T + floor * np.eye(d)))


def _scale(*laws):
    return 1.0 + sum(float(p.cov.trace() + p.mean.square().sum()) for p in laws)


@given(st.data(), st.integers(1, 4))
def test_property_w2_symmetric_zero_on_diagonal_and_triangle(data, d):
    p, q, r = (data.draw(gaussians(d)) for _ in range(3))
    s = _scale(p, q, r)
    # symmetric: both routes see the same matrices in a different order, round-off 1e-10 of the scale
    assert float(gaussian_w2_squared(p, q)) == pytest.approx(float(gaussian_w2_squared(q, p)), abs=1e-10 * s)
    # W2(p, p) = 0 up to round-off in W2^2
    assert float(gaussian_w2_squared(p, dpt.Gaussian(p.mean, p.cov))) <= 1e-11 * s
    # triangle inequality (W2 is a metric); slack: sqrt of the W2^2 round-off
    assert float(gaussian_w2(p, r)) <= float(gaussian_w2(p, q)) + float(gaussian_w2(q, r)) + 1e-5 * math.sqrt(s)


@given(st.data(), st.integers(1, 4))
def test_property_kl_nonnegative(data, d):
    p, q = data.draw(gaussians(d, spd=True)), data.draw(gaussians(d, spd=True))
    kl = float(gaussian_kl(p, q))
    assert kl >= -1e-12 * d  # round-off only
    assert abs(float(gaussian_kl(p, dpt.Gaussian(p.mean, p.cov)))) <= 1e-11 * d
    # W2^2 and the Gelbrich bound agree for Gaussians, and MW2^2 of 1-component mixtures is W2^2
    assert float(gmm_mw2_squared(p, q)) == pytest.approx(float(gaussian_w2_squared(p, q)), abs=1e-10 * _scale(p, q))
