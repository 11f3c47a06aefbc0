"""Shared tables of priors and problems, used table-driven across the test files.

Every entry is plain data (Python lists) so that the tests' independent oracles (scipy, numpy, sympy) can
read the same parameters the library does. Builders turn a table name into a dptheory object.

Problems follow docs/theory §10:
- G2: m = (0.3, -0.2), S = [[1, .6], [.6, .8]], A = [[1, .5]], sigma = 0.3, y = 0.7.
- B1: 0.5 N(-1, .05) + 0.5 N(1, .05), A = 1, with sigma = 0.5 (y = -0.6) and sigma = 0.8 (y = -0.2).
"""

from __future__ import annotations

import numpy as np
import torch

import dptheory as dpt

# ---------------------------------------------------------------------------------------------- Gaussians
# name -> (mean, cov). "singular" entries are PSD with rank < d (no density: log_prob/score raise).
GAUSSIANS: dict[str, tuple[list, list]] = {
    "g1": ([0.4], [[0.7]]),
    "g2": ([0.3, -0.2], [[1.0, 0.6], [0.6, 0.8]]),  # the G2 prior
    "g2_aniso": ([-0.5, 1.0], [[2.0, -0.3], [-0.3, 0.1]]),  # condition number ~ 40
    "g3": ([0.1, -0.3, 0.5], [[1.2, 0.3, -0.2], [0.3, 0.9, 0.25], [-0.2, 0.25, 0.5]]),
    # rank 2: B B^T with B = [[1, 0], [0.5, 1], [1.5, 1]] (the third coordinate is x1 + x2 in law)
    "g3_singular": ([0.2, 0.0, -0.1], [[1.0, 0.5, 1.5], [0.5, 1.25, 1.75], [1.5, 1.75, 3.25]]),
}
SPD_GAUSSIANS = [k for k in GAUSSIANS if "singular" not in k]
LOW_DIM_SPD_GAUSSIANS = [k for k in SPD_GAUSSIANS if len(GAUSSIANS[k][0]) <= 2]  # quadrature-friendly

# ---------------------------------------------------------------------------------------------- mixtures
# name -> (weights, means (K, d), covs (K, d, d))
MIXTURES: dict[str, tuple[list, list, list]] = {
    "b1": ([0.5, 0.5], [[-1.0], [1.0]], [[[0.05]], [[0.05]]]),  # docs/theory B1
    "gmm1_k3": ([0.2, 0.5, 0.3], [[-1.5], [0.2], [1.7]], [[[0.3]], [[0.1]], [[0.4]]]),
    "gmm1_k4": ([0.1, 0.4, 0.3, 0.2], [[-2.0], [-0.5], [0.6], [2.2]], [[[0.2]], [[0.15]], [[0.3]], [[0.05]]]),
    "gmm2_k2": (
        [0.35, 0.65],
        [[-1.0, 0.5], [1.2, -0.3]],
        [[[0.4, 0.1], [0.1, 0.2]], [[0.3, -0.12], [-0.12, 0.5]]],
    ),
    "gmm2_k3": (
        [0.3, 0.3, 0.4],
        [[-1.5, 0.0], [1.0, 1.2], [0.8, -1.1]],
        [[[0.2, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.3]], [[0.1, -0.05], [-0.05, 0.6]]],
    ),
    "gmm2_k4": (
        [0.25, 0.25, 0.3, 0.2],
        [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]],
        [
            [[0.3, 0.1], [0.1, 0.1]],
            [[0.1, 0.0], [0.0, 0.4]],
            [[0.25, -0.1], [-0.1, 0.25]],
            [[0.05, 0.02], [0.02, 0.3]],
        ],
    ),
}
MIXTURES_1D = [k for k, v in MIXTURES.items() if len(v[1][0]) == 1]
MIXTURES_2D = [k for k, v in MIXTURES.items() if len(v[1][0]) == 2]

# ---------------------------------------------------------------------------------------------- problems
# name -> (prior name, A (m, d), sigma_y, y (m,))
PROBLEMS: dict[str, tuple[str, list, float, list]] = {
    "G2": ("g2", [[1.0, 0.5]], 0.3, [0.7]),
    "B1_s05": ("b1", [[1.0]], 0.5, [-0.6]),
    "B1_s08": ("b1", [[1.0]], 0.8, [-0.2]),
    "g1_half": ("g1", [[0.5]], 0.4, [0.3]),
    "g2_aniso_full": ("g2_aniso", [[1.0, 0.0], [0.3, 1.0]], 0.5, [-0.2, 0.9]),
    "g3_two_rows": ("g3", [[1.0, 0.0, 1.0], [0.0, 1.0, -0.5]], 0.4, [0.5, -0.4]),
    "g3_singular_one_row": ("g3_singular", [[1.0, -1.0, 0.5]], 0.3, [0.8]),
    "gmm1_k3": ("gmm1_k3", [[1.3]], 0.6, [0.4]),
    "gmm2_k2_one_row": ("gmm2_k2", [[1.0, -0.4]], 0.4, [0.3]),
    "gmm2_k4_identity": ("gmm2_k4", [[1.0, 0.0], [0.0, 1.0]], 0.5, [0.4, -0.7]),
}
GAUSSIAN_PROBLEMS = [k for k, v in PROBLEMS.items() if v[0] in GAUSSIANS]
MIXTURE_PROBLEMS = [k for k, v in PROBLEMS.items() if v[0] in MIXTURES]
# problems whose posterior has a density on R^d with d <= 2 (1-D / 2-D quadrature is feasible)
QUADRATURE_PROBLEMS = [
    k for k, v in PROBLEMS.items() if v[0] in LOW_DIM_SPD_GAUSSIANS or v[0] in MIXTURES_1D + MIXTURES_2D
]


def gaussian(name: str) -> dpt.Gaussian:
    mean, cov = GAUSSIANS[name]
    return dpt.Gaussian(mean, cov)


def mixture(name: str) -> dpt.GaussianMixture:
    w, means, covs = MIXTURES[name]
    return dpt.GaussianMixture(w, means, covs)


def prior(name: str):
    return gaussian(name) if name in GAUSSIANS else mixture(name)


def prior_params(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights (K,), means (K, d), covs (K, d, d)) as numpy; a Gaussian is a 1-component mixture."""
    if name in GAUSSIANS:
        m, S = GAUSSIANS[name]
        return np.ones(1), np.array([m], dtype=float), np.array([S], dtype=float)
    w, m, S = MIXTURES[name]
    return np.array(w, dtype=float), np.array(m, dtype=float), np.array(S, dtype=float)


def problem(name: str) -> dpt.LinearInverseProblem:
    prior_name, A, sigma, _ = PROBLEMS[name]
    return dpt.LinearInverseProblem(prior(prior_name), A, sigma)


def measurement(name: str) -> torch.Tensor:
    """The table's y for problem ``name``, ``(m,)`` float64."""
    return torch.tensor(PROBLEMS[name][3], dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- oracles
# Independent numpy/scipy references (no dptheory code inside).


def np_mixture_logpdf(x, weights, means, covs) -> np.ndarray:
    """log sum_k w_k N(x; m_k, S_k) from scipy.stats.multivariate_normal, ``x (n, d)`` -> ``(n,)``."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    x = np.asarray(x, dtype=float).reshape(-1, np.shape(means)[1])
    comps = [
        np.log(w) + np.atleast_1d(multivariate_normal(m, S).logpdf(x))
        for w, m, S in zip(weights, means, covs, strict=True)
    ]
    return logsumexp(np.stack(comps, -1), axis=-1)


def prior_box(name: str, n_sd: float = 9.0) -> tuple[np.ndarray, np.ndarray]:
    """A box holding all of the prior's mass up to ~exp(-n_sd^2 / 2): component means +- n_sd max sd."""
    _, means, covs = prior_params(name)
    sd = np.sqrt(np.linalg.eigvalsh(covs).max())
    return means.min(0) - n_sd * sd, means.max(0) + n_sd * sd


_GRIDS: dict = {}


def _grid(lo, hi, n):
    key = (tuple(np.round(lo, 12)), tuple(np.round(hi, 12)), n)
    if key not in _GRIDS:
        axes = [np.linspace(a, b, n) for a, b in zip(lo, hi, strict=True)]
        mesh = np.meshgrid(*axes, indexing="ij")
        pts = np.stack([g.reshape(-1) for g in mesh], -1)
        vol = np.prod([(b - a) / (n - 1) for a, b in zip(lo, hi, strict=True)])
        _GRIDS[key] = (pts, vol)
    return _GRIDS[key]


_PRIOR_LOGPDF: dict = {}


def prior_logpdf_on(name: str, pts: np.ndarray) -> np.ndarray:
    """``np_mixture_logpdf`` of table prior ``name`` at ``pts``, cached per (name, grid) for quadrature."""
    key = (name, pts.shape, pts[0].tobytes(), pts[-1].tobytes())
    if key not in _PRIOR_LOGPDF:
        _PRIOR_LOGPDF[key] = np_mixture_logpdf(pts, *prior_params(name))
    return _PRIOR_LOGPDF[key]


def grid_moments(logf, lo, hi, n: int = 401, n_check: int = 281):
    """(log Z, mean, cov) of the unnormalised density exp(logf) on the box [lo, hi] (d = 1 or 2).

    Trapezoid rule on a uniform grid: for a smooth integrand that is negligible at the box edge it converges
    faster than any power of h (error ~ exp(-2 pi^2 sd^2 / h^2) for a Gaussian bump of width sd). Its error is
    *measured* here, by repeating on a coarser grid (n_check points per axis); the helper asserts that the
    two agree to 1e-11, which bounds the error of the finer grid well below that.
    """

    def moments(n_pts):
        pts, vol = _grid(lo, hi, n_pts)
        lf = logf(pts)
        mx = lf.max()
        wts = np.exp(lf - mx)
        Z = wts.sum()
        p = wts / Z
        mean = p @ pts
        c = pts - mean
        return np.log(Z * vol) + mx, mean, (c.T * p) @ c

    fine = moments(n)
    coarse = moments(n_check)
    for a, b in zip(fine, coarse, strict=True):
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) < 1e-11, "quadrature grid not converged"
    return fine


def np_gaussian_condition(m, S, A, sigma, y):
    """Posterior N(mu, Sigma) of x ~ N(m, S) given y = A x + N(0, sigma^2 I), gain form, plain numpy."""
    m, S, A, y = (np.asarray(v, dtype=float) for v in (m, S, A, y))
    R = A @ S @ A.T + sigma**2 * np.eye(A.shape[0])
    G = np.linalg.solve(R, A @ S).T  # S A^T R^{-1} (R symmetric)
    return m + G @ (y - A @ m), S - G @ A @ S


def bures_w2_squared(m1, S1, m2, S2) -> float:
    """W2^2 between N(m1, S1) and N(m2, S2) with scipy.linalg.sqrtm (the docs/theory §9.2 reference).

    SPD S1, S2 only: sqrtm warns on singular input, and a square root amplifies round-off eigenvalues ~1e-16
    to ~1e-8.
    """
    from scipy.linalg import sqrtm

    S1, S2 = np.asarray(S1, dtype=float), np.asarray(S2, dtype=float)
    r1 = np.real(sqrtm(S1))
    cross = np.real(sqrtm(r1 @ S2 @ r1))
    return float(np.sum((np.asarray(m1) - np.asarray(m2)) ** 2) + np.trace(S1) + np.trace(S2) - 2 * np.trace(cross))


def psd_factor(S, rank: int) -> np.ndarray:
    """A factor L (d, rank) with L L^T = S for a PSD S whose rank is known from the problem's structure."""
    lam, V = np.linalg.eigh(np.asarray(S, dtype=float))
    lam, V = lam[::-1][:rank], V[:, ::-1][:, :rank]
    assert np.all(lam > 1e-10), f"S has rank < {rank}"
    return V * np.sqrt(lam)


def bures_w2_squared_factors(m1, L1, m2, L2) -> float:
    """W2^2 between N(m1, L1 L1^T) and N(m2, L2 L2^T) from factors: tr (S1^1/2 S2 S1^1/2)^1/2 = ||L2^T L1||_*
    (nuclear norm, numpy SVD). Exact-rank factors avoid taking square roots of round-off eigenvalues, so this
    reference is accurate to ~1e-15 for singular covariances too."""
    L1, L2 = np.asarray(L1, dtype=float), np.asarray(L2, dtype=float)
    nuc = np.linalg.svd(L2.T @ L1, compute_uv=False).sum()
    dm = np.asarray(m1, dtype=float) - np.asarray(m2, dtype=float)
    return float(dm @ dm + np.sum(L1**2) + np.sum(L2**2) - 2 * nuc)


# ---------------------------------------------------------------------------------------------- strategies
# hypothesis strategies for random small problems (dimension 1..3, SPD covariances bounded away from 0)


def spd_matrices(d: int):
    """Strategy: ``B B^T + 0.1 I`` with entries of B in [-1.5, 1.5], as a float64 tensor."""
    from hypothesis import strategies as st

    entries = st.floats(-1.5, 1.5, allow_nan=False, allow_infinity=False)
    return st.lists(entries, min_size=d * d, max_size=d * d).map(
        lambda v: (lambda B: B @ B.T + 0.1 * torch.eye(d, dtype=torch.float64))(
            torch.tensor(v, dtype=torch.float64).reshape(d, d)
        )
    )


def vectors(d: int, bound: float = 2.0):
    """Strategy: a float64 tensor of shape (d,) with entries in [-bound, bound]."""
    from hypothesis import strategies as st

    entries = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    return st.lists(entries, min_size=d, max_size=d).map(lambda v: torch.tensor(v, dtype=torch.float64))


def matrices(rows: int, cols: int, bound: float = 1.5):
    """Strategy: a float64 tensor of shape (rows, cols) with entries in [-bound, bound]."""
    from hypothesis import strategies as st

    entries = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    return st.lists(entries, min_size=rows * cols, max_size=rows * cols).map(
        lambda v: torch.tensor(v, dtype=torch.float64).reshape(rows, cols)
    )


# ---------------------------------------------------------------------------------------------- image-shaped helpers
class MaskImage(dpt.LinearOperator):
    """Inpainting on ``(n, c, h, w)`` images: ``A x`` = the pixels where ``mask (h, w)`` is True, ``(n, c m)``;
    no pinv, no singular values (only the required part of the operator protocol)."""

    def __init__(self, mask, channels=1):
        self.mask, self.channels = mask, channels

    def A(self, x):
        return x[:, :, self.mask].reshape(x.shape[0], -1)

    def A_adjoint(self, y):
        out = y.new_zeros(y.shape[0], self.channels, *self.mask.shape)
        out[:, :, self.mask] = y.reshape(y.shape[0], self.channels, -1)
        return out
