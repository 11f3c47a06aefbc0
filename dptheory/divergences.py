r"""Divergences between laws: Wasserstein-2 and Kullback-Leibler, exact where a closed form exists.

- Gaussians: :func:`gaussian_w2_squared` (Bures, PSD covariances allowed), :func:`gaussian_w2`, :func:`gaussian_kl`;
- mixtures: :func:`gmm_mw2_squared` (an UPPER bound on W2^2), :func:`gelbrich_w2_squared` (a LOWER bound),
  :func:`quantile_w2_squared_1d` (1-D, by quantiles), :func:`gmm_kl_monte_carlo` (with a standard error),
  :func:`gmm_kl_variational` (NOT a bound) and :func:`gmm_kl_upper_bound` (Hershey-Olsen);
- samples: :func:`empirical_w2_squared` (exact OT, biased UPWARD for W2^2) and :func:`kl_samples_to_density`.

Inputs are :class:`~dptheory.gaussian.Gaussian` / :class:`~dptheory.mixture.GaussianMixture` objects (a Gaussian
counts as a one-component mixture); outputs are 0-d tensors in the inputs' promoted dtype, on their device (the
Monte Carlo KL gives an :class:`~dptheory.estimate.Estimate`). Pairwise component terms are batched over cached
eigendecompositions (:mod:`dptheory.linalg`), so singular covariances work; POT is imported inside the functions.
The table of what each function returns, the bounds (docs/theory §9.4) and the references cited as ``[key]`` in
the function docstrings are in docs/theory §9.5.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch

from ._checks import as_tensor, check_finite, check_int
from .estimate import Estimate
from .gaussian import Gaussian
from .linalg import SymmetricEig
from .mixture import GaussianMixture

__all__ = [
    "kozachenko_leonenko_entropy",
    "kl_samples_to_density",
    "gaussian_w2_squared",
    "gaussian_w2",
    "gaussian_kl",
    "gmm_mw2_squared",
    "empirical_w2_squared",
    "gmm_kl_monte_carlo",
    "gmm_kl_variational",
    "gmm_kl_upper_bound",
    "gelbrich_w2_squared",
    "quantile_w2_squared_1d",
    "quantile_1d",
    "quantile_w2_squared_to_samples",
]

_EMD_OPTIMAL = 1  # POT's network-simplex result code for an optimal solution


# ---------------------------------------------------------------------------------------------- helpers
class _Mix(NamedTuple):
    """A law as mixture arrays: weights ``(K,)``, means ``(K, d)``, covs ``(K, d, d)``, batched eig."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor
    eig: SymmetricEig

    def to(self, dtype: torch.dtype) -> _Mix:
        e = self.eig
        return _Mix(
            self.weights.to(dtype),
            self.means.to(dtype),
            self.covs.to(dtype),
            SymmetricEig(e.evals.to(dtype), e.evecs.to(dtype), e.tol.to(dtype)),
        )

    def nonempty(self) -> _Mix:
        """Drop zero-weight components (they do not change the law, and their log-weight is -inf)."""
        keep = self.weights > 0
        if bool(keep.all()):
            return self
        e = self.eig
        return _Mix(
            self.weights[keep],
            self.means[keep],
            self.covs[keep],
            SymmetricEig(e.evals[keep], e.evecs[keep], e.tol[keep]),
        )

    @property
    def singular(self) -> torch.Tensor:
        """``(K,)`` bool: which component covariances are rank deficient."""
        return (self.eig.evals <= self.eig.tol).any(-1)

    def law(self) -> GaussianMixture:
        return GaussianMixture._trusted(self.weights, self.means, self.covs, self.eig)


def _check_law(p, name: str, *, mixture_ok: bool = True) -> None:
    allowed = (Gaussian, GaussianMixture) if mixture_ok else (Gaussian,)
    if not isinstance(p, allowed):
        what = "a Gaussian or a GaussianMixture" if mixture_ok else "a Gaussian"
        raise TypeError(f"{name} must be {what}, got {type(p).__name__}")


def _pair(p, q, *, mixture_ok: bool = True, hint: str = "") -> torch.dtype:
    """Validate the types, dimensions and devices of ``(p, q)``; return the promoted dtype."""
    for law, name in ((p, "p"), (q, "q")):
        if not mixture_ok and isinstance(law, GaussianMixture):
            raise TypeError(f"{name} must be a Gaussian, got a GaussianMixture{hint}")
        _check_law(law, name, mixture_ok=mixture_ok)
    if p.dim != q.dim:
        raise ValueError(f"p and q must have the same dimension, got p.dim = {p.dim} and q.dim = {q.dim}")
    if p.device != q.device:
        raise ValueError(f"p and q must be on the same device, got {p.device} and {q.device}")
    return torch.promote_types(p.dtype, q.dtype)


def _as_mix(p, dtype: torch.dtype) -> _Mix:
    """A Gaussian as a one-component mixture (reusing its cached eig), or a mixture's own arrays."""
    if isinstance(p, GaussianMixture):
        mix = _Mix(p.weights, p.means, p.covs, p.eig)
    else:
        e = p.eig
        mix = _Mix(
            p.mean.new_ones(1),
            p.mean[None],
            p.cov[None],
            SymmetricEig(e.evals[None], e.evecs[None], e.tol[None]),
        )
    return mix.to(dtype)


def _bures_squared_matrix(f: _Mix, g: _Mix) -> torch.Tensor:
    """``C[k, l] = W2^2(f_k, g_l)`` for all component pairs, ``(K, L)``, clipped at 0.

    ``tr (S^{1/2} T S^{1/2})^{1/2} = ||S^{1/2} T^{1/2}||_*`` (nuclear norm: the singular values of
    ``A = S^{1/2} T^{1/2}`` are the square roots of the eigenvalues of ``A A^T = S^{1/2} T S^{1/2}``). The SVD
    gets small singular values to absolute accuracy ``eps ||A||``, where the square root of an eigenvalue
    of ``A A^T`` only gets ``sqrt(eps) ||A||``: this matters for singular covariances.
    """
    sqrt_f = f.eig.sqrt()  # (K, d, d), from the cached eigendecomposition
    sqrt_g = g.eig.sqrt()  # (L, d, d)
    cross = torch.linalg.svdvals(sqrt_f.unsqueeze(1) @ sqrt_g.unsqueeze(0)).sum(-1)  # (K, L)
    mean_term = (f.means.unsqueeze(1) - g.means.unsqueeze(0)).square().sum(-1)
    tr_f = f.eig.evals.sum(-1)  # round-off negatives already set to 0 by sym_eig
    tr_g = g.eig.evals.sum(-1)
    return (mean_term + tr_f.unsqueeze(1) + tr_g.unsqueeze(0) - 2.0 * cross).clamp_min(0.0)


def _require_spd(g: _Mix, what: str, name: str) -> None:
    if bool(g.singular.any()):
        k = int(torch.nonzero(g.singular)[0])
        raise ValueError(
            f"{what} needs every covariance of {name} to be nonsingular (SPD), but component {k} has "
            f"smallest eigenvalue {g.eig.evals[k].min().item():.3g}"
        )


def _kl_matrix(f: _Mix, g: _Mix) -> torch.Tensor:
    """``KL[k, l] = KL(f_k || g_l)`` for all component pairs, ``(K, L)``; ``+inf`` where ``f_k`` is singular.

    ``g`` must have SPD components (checked by the callers).
    """
    d = f.means.shape[-1]
    ev_g, V_g = g.eig.evals, g.eig.evecs  # (L, d), (L, d, d)
    prec_g = g.eig.matrix_function(1.0 / ev_g)  # S_l^{-1}, (L, d, d)
    trace = torch.einsum("lij,kji->kl", prec_g, f.covs)  # tr(S_l^{-1} S_k)
    u = torch.einsum("kli,lij->klj", g.means.unsqueeze(0) - f.means.unsqueeze(1), V_g)  # V_l^T (m_l - m_k)
    mahalanobis = (u.square() / ev_g).sum(-1)
    logdet_g = ev_g.log().sum(-1)  # (L,)
    singular_f = f.singular
    logdet_f = torch.where(
        singular_f, 0.0, f.eig.evals.clamp_min(torch.finfo(f.means.dtype).tiny).log().sum(-1)
    )
    kl = 0.5 * (trace + mahalanobis - d + logdet_g.unsqueeze(0) - logdet_f.unsqueeze(1))
    return torch.where(singular_f.unsqueeze(1), torch.inf, kl)


# ---------------------------------------------------------------------------------------------- Gaussian
def gaussian_w2_squared(p: Gaussian, q: Gaussian) -> torch.Tensor:
    r"""Squared 2-Wasserstein distance between two Gaussians (the Bures formula).

    .. math::
        W_2^2(\mathcal N(m_1, S_1), \mathcal N(m_2, S_2)) = \|m_1 - m_2\|^2 + \operatorname{tr} S_1
            + \operatorname{tr} S_2 - 2 \operatorname{tr}\big(S_1^{1/2} S_2 S_1^{1/2}\big)^{1/2}

    Valid for positive *semi*\ definite covariances (a Dirac point is ``N(x, 0)``). Square roots come from
    the eigendecompositions (``p``'s and ``q``'s cached ``.eig``, round-off negative eigenvalues set to 0);
    the last trace is computed as the nuclear norm ``||S_1^{1/2} S_2^{1/2}||_*`` (same number, better
    accuracy for singular matrices). The result is clipped at 0: round-off can make it slightly negative
    when ``p`` and ``q`` nearly coincide (docs/theory §9.2), and it is then ``~ 1e-16 (tr S_1 + tr S_2)``.

    Args:
        p: Gaussian on R^d, mean ``(d,)``, cov ``(d, d)`` PSD.
        q: Gaussian on R^d.

    Returns:
        0-d tensor (promoted dtype of ``p`` and ``q``).

    Source: [dowson1982]; Peyre & Cuturi (2019), Remark 2.31 (POT's ``ot.gaussian.bures_wasserstein_distance``
    returns the square root of this).

    Examples:
        >>> import dptheory as dpt
        >>> w2 = dpt.gaussian_w2_squared(dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([10.0], [[1.0]]))
        >>> w2.shape, w2.dtype, round(float(w2), 12)
        (torch.Size([]), torch.float64, 100.0)
        >>> dirac = dpt.Gaussian([0.0, 0.0], [[0.0, 0.0], [0.0, 0.0]])  # W2^2 to a Dirac = E||X||^2
        >>> round(float(dpt.gaussian_w2_squared(dirac, dpt.Gaussian([1.0, 0.0], [[2.0, 0.0], [0.0, 3.0]]))), 12)
        6.0
    """
    dtype = _pair(
        p, q, mixture_ok=False, hint="; use gmm_mw2_squared, gelbrich_w2_squared or empirical_w2_squared"
    )
    return _bures_squared_matrix(_as_mix(p, dtype), _as_mix(q, dtype))[0, 0]


def gaussian_w2(p: Gaussian, q: Gaussian) -> torch.Tensor:
    r"""2-Wasserstein distance between two Gaussians (NOT squared): ``sqrt(gaussian_w2_squared(p, q))``.

    The square root is taken after clipping at 0 (docs/theory §9.2), so it is never NaN. Near ``p == q`` the
    round-off in W2^2 (~1e-16 relative) becomes ~1e-8 relative in W2.

    Args:
        p, q: Gaussians on R^d. Returns a 0-d tensor.

    Source: [dowson1982]; equals POT's ``ot.gaussian.bures_wasserstein_distance(m1, m2, S1, S2)``.

    Examples:
        >>> import dptheory as dpt
        >>> round(float(dpt.gaussian_w2(dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([10.0], [[1.0]]))), 12)
        10.0
    """
    return gaussian_w2_squared(p, q).sqrt()


def gaussian_kl(p: Gaussian, q: Gaussian) -> torch.Tensor:
    r"""Kullback-Leibler divergence KL(p || q) between two Gaussians.

    .. math::
        \mathrm{KL}(\mathcal N(m_1, S_1) \| \mathcal N(m_2, S_2))
            = \tfrac12\Big[\operatorname{tr}(S_2^{-1} S_1) + (m_2 - m_1)^\top S_2^{-1} (m_2 - m_1) - d
            + \ln\det S_2 - \ln\det S_1\Big]
            = \tfrac12\Big[\sum_i (\mu_i - 1 - \ln \mu_i) + \|L^{-1}(m_2 - m_1)\|^2\Big]

    with ``S_2 = L L^T`` (Cholesky) and ``mu_i`` the eigenvalues of ``L^{-1} S_1 L^{-T}`` (the generalized
    eigenvalues of ``(S_1, S_2)``). Computed in the second form, by triangular solves and no explicit inverse:
    every term ``mu - 1 - ln mu`` is ``>= 0``, so the result is ``>= 0`` (each term is evaluated as
    ``delta - log1p(delta)``, ``delta = mu - 1``, and a round-off negative term is set to its true lower bound 0),
    and it is finite for any SPD pair, whatever the condition number (``KL(p || p)`` at condition 1e12 is
    ``~1e-9``, not ``-1.4e-6``; ``KL(p || p + 1e-6 I)`` with eigenvalues down to 1e-12 is 16.89, not ``inf``).

    ``q``'s covariance must be SPD: ``ValueError`` (giving its smallest eigenvalue, as computed, not clipped) when
    it is numerically singular, i.e. its Cholesky factorisation fails or its smallest eigenvalue is at most
    ``d eps`` times its largest. If ``p``'s covariance is singular in the same sense (or a generalized eigenvalue
    is ``<= 0``) while ``q``'s is SPD, ``p`` is not absolutely continuous with respect to ``q`` and the result is
    ``+inf`` (returned, not raised).

    Args:
        p: Gaussian on R^d (PSD covariance).
        q: Gaussian on R^d (SPD covariance).

    Returns:
        0-d tensor, in nats.

    Source: docs/theory §9.1; the standard closed form (e.g. Duchi, "Derivations for linear algebra and
    optimization", Section 9; Pardo (2006), "Statistical inference based on divergence measures").

    Examples:
        >>> import dptheory as dpt
        >>> round(float(dpt.gaussian_kl(dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([1.0], [[1.0]]))), 12)  # |dm|^2/2
        0.5
        >>> float(dpt.gaussian_kl(dpt.Gaussian([0.0], [[0.0]]), dpt.Gaussian([0.0], [[1.0]])))  # a Dirac
        inf
    """
    dtype = _pair(
        p, q, mixture_ok=False, hint="; use gmm_kl_monte_carlo, gmm_kl_variational or gmm_kl_upper_bound"
    )
    S1, S2 = p.cov.to(dtype), q.cov.to(dtype)
    d = S2.shape[-1]
    eps = torch.finfo(dtype).eps
    L, info = torch.linalg.cholesky_ex(S2)
    ev_q = torch.linalg.eigvalsh(S2)  # as computed (the cached eig sets tiny eigenvalues to 0)
    if int(info) != 0 or bool(ev_q.min() <= d * eps * ev_q.max()):
        raise ValueError(
            "gaussian_kl needs q.cov to be nonsingular (SPD): q has no density otherwise; smallest eigenvalue of "
            f"q.cov is {ev_q.min().item():.3g} (largest {ev_q.max().item():.3g})"
        )
    ev_p = torch.linalg.eigvalsh(S1)
    if bool(ev_p.min() <= d * eps * ev_p.max()):  # p is (numerically) singular: no density w.r.t. q
        return S1.new_tensor(math.inf)
    # M = L^{-1} S_1 L^{-T}, by two triangular solves
    half = torch.linalg.solve_triangular(L, S1, upper=False)  # L^{-1} S_1
    M = torch.linalg.solve_triangular(L, half.transpose(-1, -2), upper=False)  # L^{-1} (L^{-1} S_1)^T
    mu = torch.linalg.eigvalsh(0.5 * (M + M.transpose(-1, -2)))
    if bool(mu.min() <= 0):
        return S1.new_tensor(math.inf)
    delta = mu - 1.0
    terms = (delta - torch.log1p(delta)).clamp_min(0.0)  # each term's exact value is >= 0
    z = torch.linalg.solve_triangular(L, (q.mean.to(dtype) - p.mean.to(dtype)).unsqueeze(-1), upper=False)
    return 0.5 * (terms.sum() + z.square().sum())


# ---------------------------------------------------------------------------------------------- W2 for GMMs
def gmm_mw2_squared(p, q) -> torch.Tensor:
    r"""Squared mixture-Wasserstein distance MW2^2 of Delon & Desolneux: an UPPER BOUND on W2^2, NOT W2.

    .. math::
        MW_2^2(f, g) = \min_{w \in \Pi(\pi, \omega)} \sum_{k,l} w_{kl}\, W_2^2(f_k, g_l)
            \;\ge\; W_2^2(f, g)

    for ``f = sum_k pi_k f_k`` and ``g = sum_l omega_l g_l``: exact OT restricted to couplings that are
    themselves GMMs, i.e. a K x L discrete OT problem on the mixture weights whose costs are the Gaussian
    W2^2 (Bures) between components. It is a metric on GMMs, equal to W2^2 when both are single Gaussians,
    and generally *strictly above* W2^2. Take ``sqrt`` yourself for MW2 (still an upper bound on W2).

    The cost matrix is computed here (the Bures formula of :func:`gaussian_w2_squared`, PSD-safe) and the
    discrete problem is solved exactly by ``ot.emd2``. That is what POT's ``ot.gmm.gmm_ot_loss(m_s, m_t,
    C_s, C_t, w_s, w_t)`` does (``emd2(w_s, w_t, dist_bures_squared(...))``), and the two agree to ~1e-15 on
    SPD components; POT 0.9.7's ``dist_bures_squared`` takes ``sqrt`` of round-off-negative eigenvalues,
    and it returns NaN (then raises) on rank-deficient components, which this function accepts.

    Args:
        p: GaussianMixture (weights ``(K,)``, means ``(K, d)``, covs ``(K, d, d)``) or Gaussian (K = 1).
        q: GaussianMixture (``(L,)``, ``(L, d)``, ``(L, d, d)``) or Gaussian (L = 1).

    Returns:
        0-d tensor, MW2^2 (squared).

    Source: [delon2020], Section 4 (definition; ``MW2 >= W2`` because GMM couplings are a subset of all
    couplings); docs/theory §9.4.

    Examples:
        >>> import dptheory as dpt
        >>> f = dpt.GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.1]], [[0.1]]])
        >>> g = dpt.GaussianMixture([0.5, 0.5], [[-1.0], [2.0]], [[[0.1]], [[0.1]]])
        >>> round(float(dpt.gmm_mw2_squared(f, g)), 12)  # half the mass moves by 1
        0.5
    """
    import numpy as np

    dtype = _pair(p, q)
    f, g = _as_mix(p, dtype), _as_mix(q, dtype)
    cost = _bures_squared_matrix(f, g)
    a, b, M = (t.detach().cpu().to(torch.float64).numpy() for t in (f.weights, g.weights, cost))
    value = _emd2(a, b, np.ascontiguousarray(M), 10_000_000, "gmm_mw2_squared")
    return torch.as_tensor(value, dtype=dtype, device=f.means.device)


def gelbrich_w2_squared(p, q) -> torch.Tensor:
    r"""Gelbrich LOWER bound on W2^2, from the first two moments of the whole laws.

    .. math::
        W_2^2(f, g) \;\ge\; \|m_f - m_g\|^2 + \operatorname{tr}\Sigma_f + \operatorname{tr}\Sigma_g
            - 2 \operatorname{tr}\big(\Sigma_f^{1/2} \Sigma_g \Sigma_f^{1/2}\big)^{1/2}

    where ``m_f, Sigma_f`` are the mean and covariance of the whole mixture ``f`` (not of its components).
    The right side is the W2^2 between the Gaussians with the same moments; equality holds when ``f`` and
    ``g`` are Gaussian (then this equals :func:`gaussian_w2_squared`).

    Args:
        p, q: Gaussian or GaussianMixture on R^d.

    Returns:
        0-d tensor, a lower bound on W2^2 (squared).

    Source: [gelbrich1990]; docs/theory §9.4.

    Examples:
        >>> import dptheory as dpt
        >>> f = dpt.GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.0]], [[0.0]]])  # two Diracs
        >>> abs(float(dpt.gelbrich_w2_squared(f, dpt.Gaussian([0.0], [[1.0]])))) < 1e-12  # same mean and variance
        True
    """
    dtype = _pair(p, q)
    moments = [Gaussian._trusted(law.mean.to(dtype), law.cov.to(dtype)) for law in (p, q)]
    return gaussian_w2_squared(*moments)


def empirical_w2_squared(x, y, a=None, b=None, *, num_iter_max: int = 10_000_000) -> torch.Tensor:
    r"""Exact squared W2 between two weighted point clouds (discrete OT), biased UPWARD as an estimate.

    .. math::
        W_2^2(\mu_n, \nu_m) = \min_{P \in \Pi(a, b)} \sum_{ij} P_{ij} \|x_i - y_j\|^2

    solved exactly with POT: ``ot.emd2(a, b, ot.dist(x, y))`` (network simplex, squared Euclidean cost);
    in 1-D with ``ot.emd2_1d`` (the sorted, monotone coupling; O(n log n)). As an estimate of the population
    W2^2 between the laws the samples came from it is **biased upward**: W2^2 is jointly convex, so
    ``E[W2^2(mu_n, nu_n)] >= W2^2(mu, nu)``, and the bias decays slowly (``E W2^2(mu_n, mu) ~ n^{-2/d}`` for
    d >= 5 [fournier2015]). Report
    ``n`` and use a fixed seed. Memory is ``8 n m`` bytes for the cost matrix (200 MB at n = m = 5000, where
    one solve takes ~5 s).

    Args:
        x: ``(n, d)`` samples.
        y: ``(m, d)`` samples.
        a: ``(n,)`` non-negative weights summing to 1; uniform ``1/n`` if None.
        b: ``(m,)`` non-negative weights summing to 1; uniform ``1/m`` if None.
        num_iter_max: network-simplex iteration cap (``numItermax``); the default is ample for n = m = 5000
            (about 1e6 needed). A ``RuntimeError`` is raised if it is reached before optimality.

    Returns:
        0-d tensor (dtype and device of ``x``), squared.

    Source: [flamary2021] (``ot.emd2``); Peyre & Cuturi (2019), Chapter 3 (network simplex); [fournier2015]
    (rates); docs/theory §9.4.

    Examples:
        >>> import torch, dptheory as dpt
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        >>> round(float(dpt.empirical_w2_squared(x, x + torch.tensor([0.0, 2.0]))), 6)  # every point moves by 2
        4.0
    """
    import numpy as np
    import ot

    x = _samples(x, "x")
    y = _samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension d, got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    num_iter_max = check_int(num_iter_max, "num_iter_max", 1)
    a_np = _ot_weights(a, x.shape[0], "a", "x")
    b_np = _ot_weights(b, y.shape[0], "b", "y")
    x_np = x.detach().cpu().to(torch.float64).numpy()
    y_np = y.detach().cpu().to(torch.float64).numpy()
    if x.shape[1] == 1:
        value = float(ot.emd2_1d(x_np[:, 0], y_np[:, 0], a_np, b_np, metric="sqeuclidean"))
    else:
        M = np.ascontiguousarray(ot.dist(x_np, y_np, metric="sqeuclidean"))
        value = _emd2(a_np, b_np, M, num_iter_max, "empirical_w2_squared")
    return torch.as_tensor(max(value, 0.0), dtype=x.dtype, device=x.device)


def _samples(x, name: str) -> torch.Tensor:
    t = as_tensor(x, name)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1, got shape {tuple(t.shape)}")
    return check_finite(t, name)


def _ot_weights(w, n: int, name: str, of: str):
    """Validate OT marginal weights of shape ``(n,)``: finite, >= 0, sum 1 (to 1e-8); float64 numpy."""
    import numpy as np

    if w is None:
        return np.full(n, 1.0 / n)
    t = check_finite(as_tensor(w, name), name).detach().cpu().to(torch.float64)
    if t.shape != (n,):
        raise ValueError(f"{name} must have shape (n,) = ({n},) to match {of}, got {tuple(t.shape)}")
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be non-negative, got min {t.min().item():.3g}")
    total = float(t.sum())
    if abs(total - 1.0) > 1e-8:
        raise ValueError(f"{name} must sum to 1, got sum {total!r}")
    return (t / t.sum()).numpy()


def _emd2(a, b, M, num_iter_max: int, caller: str) -> float:
    """``ot.emd2`` that raises (instead of warning and returning a wrong value) unless it is optimal."""
    import ot

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # POT warns on failure; the result code is checked below
        value, log = ot.emd2(a, b, M, numItermax=num_iter_max, log=True)
    if log["result_code"] != _EMD_OPTIMAL:
        hint = " (raise num_iter_max)" if "numItermax" in str(log["warning"]) else ""
        raise RuntimeError(
            f"{caller}: ot.emd2 did not reach an optimal transport plan: {log['warning']}{hint}"
        )
    return float(value)


def quantile_w2_squared_1d(p, q, n_quantiles: int = 200_000) -> torch.Tensor:
    r"""W2^2 between two laws on the real line, from their quantile functions (exact up to quadrature).

    .. math::
        W_2^2(f, g) = \int_0^1 \big(F^{-1}(u) - G^{-1}(u)\big)^2\, du
            \;\approx\; \frac1N \sum_{i=1}^{N} \big(F^{-1}(u_i) - G^{-1}(u_i)\big)^2,
            \quad u_i = \frac{i - 1/2}{N}

    The monotone (quantile) coupling is optimal in 1-D for any laws, so this has no sampling error and no
    OT solver. ``F(x) = sum_k w_k Phi((x - m_k) / s_k)`` is inverted by vectorised bisection (64 halvings of
    a bracket containing every quantile, so each quantile is exact to ``2^-64`` of the bracket width). A
    zero-variance component is a Dirac point (its CDF is the step ``1[x >= m_k]``), and the generalised
    inverse ``F^{-1}(u) = inf{x : F(x) >= u}`` handles the atoms.

    Accuracy: the quantiles are exact to round-off (``|F(x) - u| ~ 1e-15``); the only error is the midpoint
    rule, which misses the tails where the quantile functions diverge, so the result is slightly LOW. For
    two Gaussians it is ``-1.3 (s_f - s_g)^2 / N`` (measured for N(0, 1) vs N(1, 4), true value 2: -1.3e-3,
    -6.6e-5 and -6.7e-6 at N = 1e3, 2e4 and 2e5; docs/theory §9.2 reports 1e-5 at N = 2e5), and 0 to round-off
    for equal variances (constant integrand). A run at N = 2e5 takes ~0.02 s for Gaussians and ~0.5 s for a
    three-component mixture with an atom (one CPU thread).

    Args:
        p, q: Gaussian or GaussianMixture with d = 1 (variances may be 0: Dirac points).
        n_quantiles: N, the number of midpoint quantiles (memory ``~ 8 N K`` bytes per bisection step).

    Returns:
        0-d tensor, squared.

    Source: Villani (2003), "Topics in Optimal Transportation", Chapter 2 (the real line); Peyre &
    Cuturi (2019), Section 2.6 (special cases: 1-D); docs/theory §9.2.

    Examples:
        >>> import dptheory as dpt
        >>> f = dpt.GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.0]], [[0.0]]])  # two Diracs
        >>> round(float(dpt.quantile_w2_squared_1d(f, dpt.Gaussian([0.0], [[0.0]]), n_quantiles=1000)), 12)
        1.0
        >>> p, q = dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([3.0], [[1.0]])
        >>> round(float(dpt.quantile_w2_squared_1d(p, q, n_quantiles=1000)), 10)  # equal variances: exact
        9.0
    """
    dtype = _pair(p, q)
    if p.dim != 1:
        raise ValueError(f"p and q must be laws on the real line (d = 1), got d = {p.dim}")
    n = check_int(n_quantiles, "n_quantiles", 1)
    f, g = _as_mix(p, dtype), _as_mix(q, dtype)
    u = (torch.arange(n, dtype=dtype, device=f.means.device) + 0.5) / n
    return (_quantile_1d(f, u) - _quantile_1d(g, u)).square().mean()


def quantile_1d(law, u) -> torch.Tensor:
    """Quantile function ``F^{-1}(u)`` of a 1-D Gaussian or Gaussian mixture (atoms allowed), ``u (N,)`` in (0, 1).

    Exact to round-off (safeguarded Newton on the mixture CDF; see :func:`quantile_w2_squared_1d`).
    """
    _check_law(law, "law")
    if law.dim != 1:
        raise ValueError(f"law must be a law on the real line (d = 1), got d = {law.dim}")
    u = torch.as_tensor(u, dtype=law.dtype)
    if u.ndim != 1 or not bool(((u > 0) & (u < 1)).all()):
        raise ValueError("u must be a 1-D tensor of levels in (0, 1)")
    return _quantile_1d(_as_mix(law, law.dtype), u)


def quantile_w2_squared_to_samples(law, x) -> torch.Tensor:
    """``W2^2`` between the empirical law of 1-D samples ``x (n,)`` or ``(n, 1)`` and a known 1-D law.

    The monotone coupling of the sorted samples with the law's midpoint quantiles ``F^{-1}((i - 1/2)/n)``: no OT
    solver, and only ONE sample's noise (two-sample OT adds both samples' noise and is biased upward more).
    Consistent as n grows; returns a 0-d tensor (squared). Source: Villani (2003), Chapter 2.
    """
    x = as_tensor(x, "x")
    x = _samples(x.reshape(-1, 1) if x.ndim == 1 else x, "x")
    if x.shape[1] != 1:
        raise ValueError(f"x must hold 1-D samples, shape (n,) or (n, 1), got {tuple(x.shape)}")
    n = x.shape[0]
    u = (torch.arange(n, dtype=x.dtype, device=x.device) + 0.5) / n
    return (x[:, 0].sort().values - quantile_1d(law, u).to(x.dtype)).square().mean()


def _quantile_1d(f: _Mix, u: torch.Tensor) -> torch.Tensor:
    """``F^{-1}(u) = inf{x : F(x) >= u}`` for a 1-D mixture, ``u (N,)`` in (0, 1) -> ``(N,)``.

    Safeguarded Newton: since ``F = sum_k w_k F_k`` averages the component CDFs, ``F^{-1}(u)`` lies between
    the smallest and largest component quantile ``Q_k(u) = m_k + s_k Phi^{-1}(u)`` (``m_k`` for an atom).
    Every evaluation of ``F`` shrinks that bracket; a Newton step ``x - (F(x) - u) / F'(x)`` is taken when it
    lands inside it, a bisection step otherwise (at the atoms, where ``F`` jumps). A point stops when
    ``F(x) = u`` to round-off (``4 eps u``), or its step or bracket is below ``eps`` times the problem scale.
    """
    eps = torch.finfo(u.dtype).eps
    w, m = f.weights, f.means[:, 0]
    s = f.eig.evals[:, 0].sqrt()  # round-off negatives already 0
    atom = (s == 0).unsqueeze(1)
    s_safe = torch.where(s == 0, torch.ones_like(s), s).unsqueeze(1)
    m_col = m.unsqueeze(1)
    w_density = torch.where(s == 0, 0.0, w / s_safe[:, 0]) / math.sqrt(2.0 * math.pi)  # atoms: no density

    def cdf_and_pdf(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (x - m_col) / s_safe  # (K, n): component axis first keeps the rows contiguous
        F = w @ torch.where(atom, (z >= 0).to(x.dtype), torch.special.ndtr(z))
        return F, w_density @ torch.exp(-0.5 * z.square())

    q = m_col + s.unsqueeze(1) * torch.special.ndtri(u)  # (K, N) component quantiles
    lo, hi = q.amin(0), q.amax(0)
    x = w @ q  # a start inside the bracket
    tol = eps * float((m.abs() + s).max() + 1.0)
    active = torch.nonzero(hi - lo > tol).squeeze(1)  # one component (or all quantiles equal): done
    for _ in range(200):  # Newton needs < 10 steps, bisection ~55 (at atoms); the cap is a guard
        if active.numel() == 0:
            break
        xa, ua, la, ha = x[active], u[active], lo[active], hi[active]
        F, pdf = cdf_and_pdf(xa)
        at_floor = (F - ua).abs() <= 4.0 * eps * ua  # F(x) = u to round-off: keep x
        below = F < ua  # then F^{-1}(u) > x
        la = torch.where(below, xa, la)
        ha = torch.where(below, ha, xa)
        newton = xa - (F - ua) / pdf
        inside = torch.isfinite(newton) & (newton > la) & (newton < ha)
        x_new = torch.where(at_floor, xa, torch.where(inside, newton, 0.5 * (la + ha)))
        x[active], lo[active], hi[active] = x_new, la, ha
        done = at_floor | ((x_new - xa).abs() <= tol) | (ha - la <= tol)
        active = active[~done]
    return x


# ---------------------------------------------------------------------------------------------- KL for GMMs
def gmm_kl_monte_carlo(p, q, n: int, *, generator: torch.Generator | None) -> Estimate:
    r"""Monte Carlo estimate of KL(p || q) for Gaussians or GMMs (either side), with its standard error.

    .. math::
        \mathrm{KL}(f \| g) \approx \frac1n \sum_{i=1}^n \big[\log f(X_i) - \log g(X_i)\big],
            \qquad X_i \sim f

    Unbiased; the standard error is ``std / sqrt(n)`` of the summands (log-sum-exp densities). ``q`` needs
    SPD components (``ValueError`` otherwise). If a component of ``p`` with positive weight is singular, ``p``
    is not absolutely continuous with respect to ``q`` and the exact value ``+inf`` is returned (as an exact
    :class:`Estimate`, no sampling).

    Args:
        p: Gaussian or GaussianMixture on R^d (the law sampled).
        q: Gaussian or GaussianMixture on R^d.
        n: number of draws, >= 2.
        generator: the ``torch.Generator`` for the draws (pass one; ``None`` uses torch's global RNG).

    Returns:
        :class:`Estimate` ``(value, stderr, n)``, in nats.

    Source: [hershey2007], Section 2 (Monte Carlo sampling); docs/theory §9.3.

    Examples:
        >>> import torch, dptheory as dpt
        >>> p, q = dpt.Gaussian([0.0], [[1.0]]), dpt.Gaussian([1.0], [[1.0]])
        >>> est = dpt.gmm_kl_monte_carlo(p, q, 10_000, generator=torch.Generator().manual_seed(0))
        >>> est.within(0.5, k=4)  # the closed form is 1/2
        True
    """
    dtype = _pair(p, q)
    n = check_int(n, "n", 2)
    f, g = _as_mix(p, dtype).nonempty(), _as_mix(q, dtype).nonempty()
    _require_spd(g, "gmm_kl_monte_carlo", "q")
    if bool(f.singular.any()):
        return Estimate.of_exact(math.inf)
    x = p.sample(n, generator=generator).to(dtype)
    log_f, log_g = f.law(), g.law()
    chunk = max(1, (1 << 20) // (max(f.weights.shape[0], g.weights.shape[0]) * f.means.shape[1]))
    terms = torch.cat([log_f.log_prob(xc) - log_g.log_prob(xc) for xc in x.split(chunk)])
    return Estimate.from_samples(terms)


def _kl_pair_mixtures(p, q, what: str) -> tuple[_Mix, _Mix] | None:
    """Validate for the Hershey-Olsen functions; None means the KL is +inf (a singular component of p)."""
    dtype = _pair(p, q)
    f, g = _as_mix(p, dtype).nonempty(), _as_mix(q, dtype).nonempty()
    _require_spd(g, what, "q")
    if bool(f.singular.any()):
        return None
    return f, g


def gmm_kl_variational(p, q) -> torch.Tensor:
    r"""Hershey-Olsen variational APPROXIMATION of KL(f || g) between GMMs. It is NOT a bound.

    .. math::
        D_{var}(f \| g) = \sum_a \pi_a \log \frac{\sum_{a'} \pi_{a'} e^{-\mathrm{KL}(f_a \| f_{a'})}}
            {\sum_b \omega_b e^{-\mathrm{KL}(f_a \| g_b)}}

    with the closed-form Gaussian KLs between components (computed in log space, log-sum-exp). It is exact
    when both laws are single Gaussians and zero when ``f == g``, but it can fall on either side of the true
    KL (docs/theory §9.3: 6.77 against a Monte Carlo 6.99), so never use it as a bound; use
    :func:`gmm_kl_upper_bound` for that.

    Both ``p`` and ``q`` need SPD components (``ValueError`` naming ``q``), except that a singular component
    of ``p`` makes the true KL ``+inf``, which is returned.

    Args:
        p: GaussianMixture (``(K,)``, ``(K, d)``, ``(K, d, d)``) or Gaussian.
        q: GaussianMixture (``(L,)``, ``(L, d)``, ``(L, d, d)``) or Gaussian.

    Returns:
        0-d tensor, in nats.

    Source: [hershey2007] ("variational approximation"); docs/theory §9.3.

    Examples:
        >>> import dptheory as dpt
        >>> f = dpt.GaussianMixture([0.3, 0.7], [[-1.0], [1.0]], [[[0.5]], [[0.5]]])
        >>> abs(float(dpt.gmm_kl_variational(f, f))) < 1e-15
        True
    """
    pair = _kl_pair_mixtures(p, q, "gmm_kl_variational")
    if pair is None:
        return torch.tensor(math.inf, dtype=torch.promote_types(p.dtype, q.dtype), device=p.device)
    f, g = pair
    log_pi, log_omega = f.weights.log(), g.weights.log()
    log_num = torch.logsumexp(log_pi - _kl_matrix(f, f), dim=1)  # (K,)
    log_den = torch.logsumexp(log_omega - _kl_matrix(f, g), dim=1)  # (K,)
    return f.weights @ (log_num - log_den)


def gmm_kl_upper_bound(p, q, iters: int = 100) -> torch.Tensor:
    r"""Hershey-Olsen variational UPPER BOUND on KL(f || g) between GMMs, tightened by alternating updates.

    For any ``phi_ab, psi_ab >= 0`` with ``sum_b phi_ab = pi_a`` and ``sum_a psi_ab = omega_b``,

    .. math::
        \mathrm{KL}(f \| g) \le \sum_{a,b} \phi_{ab}\Big[\log\frac{\phi_{ab}}{\psi_{ab}}
            + \mathrm{KL}(f_a \| g_b)\Big]

    (joint convexity of KL after splitting each component). Starting from ``phi = psi = pi omega^T`` (which
    gives the convexity bound ``sum_ab pi_a omega_b KL_ab``), each iteration minimises exactly over one
    block, so the bound never increases:

    .. math::
        \psi_{ab} = \frac{\omega_b \phi_{ab}}{\sum_{a'} \phi_{a'b}}, \qquad
        \phi_{ab} = \frac{\pi_a \psi_{ab} e^{-\mathrm{KL}_{ab}}}{\sum_{b'} \psi_{ab'} e^{-\mathrm{KL}_{ab'}}}

    The updates run on ``log phi`` and ``log psi`` with log-sum-exp (docs/theory §9.3: the linear-space version
    underflowed to NaN). The value is a valid bound after any number of iterations, ``iters = 0`` included;
    it equals the Gaussian KL when both laws are single Gaussians.

    ``q`` needs SPD components (``ValueError``); a singular component of ``p`` makes the KL ``+inf``, which is
    returned.

    Args:
        p: GaussianMixture (``(K,)``, ``(K, d)``, ``(K, d, d)``) or Gaussian.
        q: GaussianMixture (``(L,)``, ``(L, d)``, ``(L, d, d)``) or Gaussian.
        iters: number of (psi, phi) update pairs, >= 0.

    Returns:
        0-d tensor, an upper bound on KL(p || q), in nats.

    Source: [hershey2007] ("variational upper bound", with its fixed-point updates);
    docs/theory §9.3.

    Examples:
        >>> import dptheory as dpt
        >>> f = dpt.GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [[[1.0]], [[1.0]]])
        >>> g = dpt.GaussianMixture([0.5, 0.5], [[-2.0], [3.0]], [[[1.0]], [[1.0]]])
        >>> round(float(dpt.gmm_kl_upper_bound(f, g)), 10)  # pairing bound: sum_a (1/2) KL(f_a || g_a)
        0.25
    """
    iters = check_int(iters, "iters", 0)
    pair = _kl_pair_mixtures(p, q, "gmm_kl_upper_bound")
    if pair is None:
        return torch.tensor(math.inf, dtype=torch.promote_types(p.dtype, q.dtype), device=p.device)
    f, g = pair
    kl = _kl_matrix(f, g)  # (K, L), finite
    log_pi, log_omega = f.weights.log().unsqueeze(1), g.weights.log().unsqueeze(0)
    log_phi = log_pi + log_omega
    log_psi = log_phi.clone()
    for _ in range(iters):
        log_psi = log_omega + log_phi - torch.logsumexp(log_phi, dim=0, keepdim=True)
        a = log_psi - kl
        log_phi = log_pi + a - torch.logsumexp(a, dim=1, keepdim=True)
    phi = log_phi.exp()
    terms = torch.where(phi > 0, phi * (log_phi - log_psi + kl), 0.0)  # 0 log 0 = 0
    return terms.sum()


# ---------------------------------------------------------------- KL from samples to a known density
def kozachenko_leonenko_entropy(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour differential entropy estimate (nats) of samples ``x (n, d)``, n >= 2."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, d) with n >= 2, got {tuple(x.shape)}")
    n, d = x.shape
    r = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    chunk = max(1, 2**22 // n)
    for start in range(0, n, chunk):
        # the direct difference form: torch's default matrix-product form (|a|^2 + |b|^2 - 2 a.b) loses the
        # distance of close points to cancellation, down to r = 0 for distinct points ~1e-8 apart (then H = -inf)
        dist = torch.cdist(x[start : start + chunk], x, compute_mode="donot_use_mm_for_euclid_dist")
        idx = torch.arange(start, min(start + chunk, n), device=x.device)
        dist[idx - start, idx] = float("inf")
        r[start : start + chunk] = dist.amin(dim=1)
    if bool((r == 0).any()):
        return x.new_tensor(float("-inf"))
    log_vd = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)
    psi = torch.special.digamma(x.new_tensor([float(n), 1.0]))
    return psi[0] - psi[1] + log_vd + d * r.log().mean()


def kl_samples_to_density(x: torch.Tensor, log_prob, *, replicates: int = 5) -> Estimate:
    """``KL(q || p)`` from samples ``x (n, d) ~ q`` and a callable ``log_prob`` of p, as an :class:`Estimate`.

    The sample is split into ``replicates`` independent parts; the value is the mean of the per-part estimates
    and the standard error their spread / sqrt(replicates) (each part has n / replicates points, so the
    estimate is that of the smaller sample size).
    """
    if replicates < 2:
        raise ValueError(f"replicates must be >= 2, got {replicates}")
    parts = torch.chunk(x, replicates, dim=0)
    vals = []
    for part in parts:
        h = kozachenko_leonenko_entropy(part)
        if torch.isinf(h):
            return Estimate(float("inf"), 0.0, x.shape[0])
        vals.append(-h - log_prob(part).mean())
    return Estimate.from_samples(torch.stack(vals))
