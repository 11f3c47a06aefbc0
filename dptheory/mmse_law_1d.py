"""The law of the MMSE estimate ``X* = E[X | Y]`` for a scalar signal (d = 1), and ``W = W2(p_X, p_X*)`` exactly.

For ``Y = a X + sigma_y N`` (``a`` an ``(m, 1)`` column) the likelihood depends on ``y`` only through ``s = a^T y``,
so ``E[X | y] = g(s)`` with ``g'(s) = Var[X | s] / sigma_y^2 >= 0``: ``g`` is non-decreasing for ANY prior, and the
law of ``X*`` has the quantile function ``Q_X*(u) = g(Q_s(u))``, where ``s`` is a 1-D mixture with components
``N(|a|^2 m_k, |a|^4 S_k + |a|^2 sigma_y^2)`` (quantiles by :func:`dptheory.quantile_1d`, to round-off). The
monotone coupling is optimal in 1-D, so (derivation: docs/theory §2.2)

    W^2 = W2^2(p_X, p_X*) = int_0^1 (Q_X(u) - g(Q_s(u)))^2 du,

by the midpoint rule with ``N`` levels ``u_i = (i - 1/2) / N``; no sampling and no OT solver. The only error is the
midpoint rule's, slightly LOW (it misses the outermost tails; for two Gaussians ``-1.3 (s_f - s_g)^2 / N``, see
:func:`dptheory.quantile_w2_squared_1d`). Source: Tweedie's second-order identity (Efron 2011, "Tweedie's formula
and selection bias", eq. (2.8)); the quantile form of W2 on the line: Villani (2003), Chapter 2.
"""

from __future__ import annotations

import torch

from ._checks import check_int

__all__ = ["mmse_quantile_1d", "mmse_w2_squared_1d"]


def _statistic(problem):
    """``(a, |a|^2, law of s = a^T Y)`` for a problem with d = 1."""
    from .gaussian import Gaussian
    from .mixture import GaussianMixture

    if problem.dim != 1:
        raise ValueError(f"the 1-D MMSE law needs a scalar signal (problem.dim = 1), got dim = {problem.dim}")
    a = problem.A[:, 0]
    a2 = float(a @ a)
    if a2 == 0.0:
        raise ValueError("A is zero: Y carries no information and X* = E[X] is a point")
    s2 = problem.sigma_y**2
    prior = problem.prior
    if isinstance(prior, Gaussian):
        means, covs, weights = prior.mean[None], prior.cov[None], prior.mean.new_ones(1)
    else:
        means, covs, weights = prior.means, prior.covs, prior.weights
    law = GaussianMixture._trusted(weights, a2 * means, a2**2 * covs + a2 * s2)
    return a, a2, law


def mmse_quantile_1d(problem, u) -> torch.Tensor:
    """``Q_X*(u) = g(Q_s(u))``: quantiles of ``X* = E[X | Y]`` for a problem with d = 1, ``u (N,)`` in (0, 1).

    ``g(s)`` is evaluated as ``problem.mmse(a s / |a|^2)`` (a measurement whose statistic ``a^T y`` is ``s``).
    Returns ``(N,)``.
    """
    from .divergences import quantile_1d

    a, a2, law = _statistic(problem)
    s = quantile_1d(law, u)
    return problem.mmse(s[:, None] * (a / a2)[None, :])[:, 0]


def mmse_w2_squared_1d(problem, n_quantiles: int = 200_000) -> torch.Tensor:
    """``W^2 = W2^2(p_X, p_X*)`` for a problem with d = 1 (Gaussian or GMM prior), by the quantile formula.

    Args:
        problem: a :class:`~dptheory.LinearInverseProblem` with ``dim = 1`` and ``sigma_y > 0``.
        n_quantiles: N, the midpoint levels. The error is the midpoint rule's (the result is low) and decays
            a little slower than 1/N on mixtures: on B1 (sigma_y = 0.5, W^2 = 0.014452) refining N from 2e3 to
            2e4, 2e5 and 2e6 changes W^2 by 3.6e-6, 8.4e-7 and 1.0e-7, so the default 2e5 is ~1e-5 relative
            (``tests/test_mmse_law_1d.py``).

    Returns:
        0-d tensor (squared).

    Examples:
        >>> import dptheory as dpt
        >>> prob = dpt.LinearInverseProblem(dpt.Gaussian([0.0], [[1.0]]), [[1.0]], 1.0)
        >>> # Gaussian: X* ~ N(0, 1/2), W^2 = (1 - sqrt(1/2))^2 = 0.0857864...
        >>> round(float(mmse_w2_squared_1d(prob)), 5)
        0.08579
    """
    from .divergences import quantile_1d

    if problem.sigma_y <= 0:
        raise ValueError("mmse_w2_squared_1d needs sigma_y > 0 (at sigma_y = 0, X* = X and W = 0)")
    n = check_int(n_quantiles, "n_quantiles")
    _statistic(problem)  # validates dim and A before any work
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    q_x = quantile_1d(problem.prior, u)
    return (q_x - mmse_quantile_1d(problem, u)).square().mean()
