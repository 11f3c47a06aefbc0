"""The distortion-perception curve with MSE distortion and KL perception, for a Gaussian posterior.

Per measurement, with the posterior ``p = N(mu, Sigma)`` (eigenvalues ``s_i``) and an estimator law ``q`` drawn
independently of X given y, ``D_KL(P) = min { tr Sigma + ||m_q - mu||^2 + tr C_q : KL <= P }`` (docs/theory §2.5).

- Reverse ``KL(q || p)`` (:class:`KLDPCurve`, what the figures plot): the optimum over ALL laws is
  ``N(mu, C(theta))``, ``c_i = s_i theta / (s_i + theta)``, with ``b_i = theta / (s_i + theta)``,
  ``P = sum_i (b_i - 1 - log b_i) / 2`` and ``D = tr Sigma + sum_i s_i b_i`` (theta = inf: posterior sampling).
- Forward ``KL(p || q)`` over GAUSSIAN laws (a stated restriction): ``c_i = (sqrt(theta^2 + 4 theta s_i) - theta)
  / 2``; the non-Gaussian optimum in 1-D is :func:`forward_kl_optimum_1d` (quadrature).
- Joint form over Y (prior ``N(m, S)``): :func:`joint_kl_dp_point_commuting` when ``S* = Cov X*`` and ``S``
  commute; otherwise a convex program over covariances, not implemented here.

Source: Blau & Michaeli (CVPR 2018)'s P-D function with d = KL; the closed forms are derived in docs/theory §2.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .gaussian import Gaussian

__all__ = [
    "KLDPCurve",
    "per_measurement_kl_dp_curve",
    "kl_optimal_covariance_eigs",
    "forward_kl_optimum_1d",
    "joint_kl_dp_point_commuting",
]

_DIRECTIONS = ("reverse", "forward")


def kl_optimal_covariance_eigs(s: torch.Tensor, theta, direction: str = "reverse") -> torch.Tensor:
    """Eigenvalues ``c_i`` of the KL-optimal covariance at the multiplier ``theta > 0`` (module docstring).

    Args:
        s: ``(d,)`` positive eigenvalues of Sigma.
        theta: ``(...)`` or a float, > 0 (``inf`` gives ``s``).
        direction: ``"reverse"`` (KL(q||p): ``s theta / (s + theta)``) or ``"forward"`` (KL(p||q) over
            Gaussians: ``(sqrt(theta^2 + 4 theta s) - theta)/2``).

    Returns:
        ``(..., d)``.
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    theta = torch.as_tensor(theta, dtype=s.dtype).unsqueeze(-1)
    if bool((theta <= 0).any()) or bool(torch.isnan(theta).any()):
        raise ValueError("theta must be > 0")
    if direction == "reverse":
        return torch.where(torch.isinf(theta), s, s / (1.0 + s / theta))
    # (sqrt(th^2 + 4 th s) - th)/2 = 2 th s / (sqrt(th^2 + 4 th s) + th): no cancellation for large theta
    return torch.where(torch.isinf(theta), s, 2.0 * s / (torch.sqrt(1.0 + 4.0 * s / theta) + 1.0))


def _kl_eigs(s: torch.Tensor, c: torch.Tensor, direction: str) -> torch.Tensor:
    """KL between ``N(0, diag c)`` and ``N(0, diag s)`` in the given direction (shared eigenbasis)."""
    r = c / s
    if direction == "reverse":  # KL(N(0,c) || N(0,s))
        return 0.5 * (r - 1.0 - torch.log(r)).sum(-1)
    return 0.5 * (1.0 / r - 1.0 + torch.log(r)).sum(-1)  # KL(N(0,s) || N(0,c))


@dataclass(frozen=True)
class KLDPCurve:
    """The per-measurement KL D-P curve of a Gaussian posterior ``N(mu, Sigma)`` (docs/theory §2.5).

    Attributes:
        posterior: the Gaussian posterior (SPD covariance).
        direction: ``"reverse"`` (KL(q || p), optimal over all laws) or ``"forward"`` (KL(p || q), optimal over
            Gaussian laws only).

    Examples:
        >>> import math
        >>> import dptheory as dpt
        >>> curve = dpt.KLDPCurve(dpt.Gaussian([0.0], [[1.0]]))  # reverse KL, posterior N(0, 1)
        >>> P, D = curve.point(1.0)  # theta = 1: optimal variance 1/2, D = 1 + 1/2
        >>> round(float(P), 12) == round(0.5 * (0.5 - 1 - math.log(0.5)), 12), float(D)
        (True, 1.5)
        >>> round(float(curve.distortion(float(P))), 12)  # the inverse by bisection
        1.5
        >>> float(curve.distortion(0.0))  # P = 0: posterior sampling, 2 tr Sigma
        2.0
    """

    posterior: Gaussian
    direction: str = "reverse"

    def __post_init__(self):
        if self.direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {self.direction!r}")
        self.posterior.eig.require_nonsingular("KLDPCurve")

    @property
    def eigs(self) -> torch.Tensor:
        return self.posterior.eig.evals

    @property
    def mmse_error(self) -> float:
        """``tr Sigma``: the distortion as P -> inf."""
        return float(self.eigs.sum())

    def point(self, theta) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, D)`` at the multiplier ``theta`` (tensor or float; ``inf`` is posterior sampling)."""
        c = kl_optimal_covariance_eigs(self.eigs, theta, self.direction)
        return _kl_eigs(self.eigs, c, self.direction), self.mmse_error + c.sum(-1)

    def theta(self, P) -> torch.Tensor:
        """The multiplier with ``P(theta) = P`` (``P > 0``; P is decreasing in theta), by bisection in log theta.

        200 halvings of a bracket of width 120 in ``log theta`` reach float64 resolution.
        """
        P = torch.as_tensor(P, dtype=torch.float64)
        if bool((P <= 0).any()) or bool(torch.isnan(P).any()):
            raise ValueError("P (a KL perception value) must be > 0 here; P = 0 is posterior sampling")
        lo = torch.full_like(P, -60.0)  # log theta: P(lo) is huge
        hi = torch.full_like(P, 60.0)  # P(hi) ~ 0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            above = self.point(mid.exp())[0] > P
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (0.5 * (lo + hi)).exp()

    def distortion(self, P) -> torch.Tensor:
        """``D_KL(P)``: ``2 tr Sigma`` at ``P = 0``, decreasing to ``tr Sigma`` as ``P -> inf``."""
        P = torch.as_tensor(P, dtype=torch.float64)
        if bool((P < 0).any()) or bool(torch.isnan(P).any()):
            raise ValueError("P (a KL perception value) must be >= 0")
        pos = P > 0
        out = torch.full_like(P, 2.0 * self.mmse_error)
        if bool(pos.any()):
            out[pos] = self.point(self.theta(P[pos]))[1]
        return out

    def gap(self, P, D) -> torch.Tensor:
        """``D - D_KL(P)`` of a measured point; >= 0 for any Gaussian estimator law (any law for "reverse")."""
        return torch.as_tensor(D, dtype=torch.float64) - self.distortion(P)

    def optimal_law(self, P: float) -> Gaussian:
        """The optimal law ``N(mu, V diag(c) V^T)`` at perception ``P`` (``P = 0``: the posterior itself)."""
        eig = self.posterior.eig
        theta = math.inf if float(P) == 0.0 else self.theta(float(P))
        c = kl_optimal_covariance_eigs(eig.evals, theta, self.direction)
        c = c.reshape(-1)
        cov = (eig.evecs * c) @ eig.evecs.T
        return Gaussian(self.posterior.mean, 0.5 * (cov + cov.T))


def per_measurement_kl_dp_curve(problem, y, direction: str = "reverse") -> KLDPCurve:
    """The KL D-P curve of ``problem`` at measurement ``y`` (needs a Gaussian prior: the posterior is Gaussian)."""
    if not problem.is_gaussian:
        raise TypeError("per_measurement_kl_dp_curve needs a Gaussian prior (a Gaussian posterior)")
    return KLDPCurve(problem.posterior(y), direction)


def forward_kl_optimum_1d(s: float, a, n_nodes: int = 4001, half_width: float = 12.0):
    """The forward-KL optimum over ALL laws, 1-D posterior ``N(0, s)``: ``q_a ∝ p / (1 + a x^2)``.

    Stationarity of ``KL(p || q) + nu E_q x^2`` over densities gives ``q = p / (kappa + nu x^2)``; with
    ``a = nu / kappa >= 0``, ``q_a = p / (g(a) (1 + a x^2))``, ``g(a) = E_p[1 / (1 + a X^2)]``, and

        KL(p || q_a) = log g(a) + E_p log(1 + a X^2),   D = s + E_p[X^2 / (1 + a X^2)] / g(a).

    In 1-D (and 2-D) this covers every D in (s, 2s]. The expectations are trapezoid sums over
    ``x in [-half_width sqrt(s), half_width sqrt(s)]`` (the Gaussian tail beyond 12 sd is below 1e-31).

    Args:
        s: the posterior variance, > 0.
        a: ``(k,)`` values >= 0.

    Returns:
        ``(P, D)``, two ``(k,)`` tensors.
    """
    if not s > 0:
        raise ValueError(f"s (the posterior variance) must be > 0, got {s}")
    a = torch.as_tensor(a, dtype=torch.float64).reshape(-1, 1)
    if bool((a < 0).any()):
        raise ValueError("a must be >= 0")
    x = torch.linspace(-half_width, half_width, n_nodes, dtype=torch.float64) * math.sqrt(s)
    w = torch.exp(-0.5 * x.square() / s) / math.sqrt(2 * math.pi * s)
    den = 1.0 + a * x.square()
    g = torch.trapezoid(w / den, x, dim=-1)
    P = torch.log(g) + torch.trapezoid(w * torch.log(den), x, dim=-1)
    D = s + torch.trapezoid(w * x.square() / den, x, dim=-1) / g
    return P, D


def joint_kl_dp_point_commuting(s_prior: torch.Tensor, s_star: torch.Tensor, nu: float):
    """A point of the JOINT reverse-KL curve when ``S`` and ``S* = Cov E[X|Y]`` commute (shared eigenbasis).

    Per eigen-direction (prior variance ``s``, MMSE-estimate variance ``r``) minimise
    ``(sqrt(r) - sqrt(c))^2 + nu (c/s - 1 - log(c/s)) / 2`` over ``c > 0``; with ``v = sqrt(c)`` the stationarity
    ``v^2 (1 + nu/(2 s)) - sqrt(r) v - nu/2 = 0`` has one positive root

        v = (sqrt(r) + sqrt(r + 2 nu (1 + nu/(2 s)))) / (2 (1 + nu/(2 s))).

    Returns ``(P, E||X* - X^||^2)``: add ``D*`` for the distortion. ``nu -> inf`` gives ``c = s`` (P = 0),
    ``nu -> 0`` gives ``c = r`` (the MMSE estimator; P = inf when some r = 0).
    """
    s_prior = torch.as_tensor(s_prior, dtype=torch.float64)
    s_star = torch.as_tensor(s_star, dtype=torch.float64)
    if not nu > 0:
        raise ValueError(f"nu must be > 0, got {nu}")
    k = 1.0 + nu / (2.0 * s_prior)
    v = (s_star.sqrt() + torch.sqrt(s_star + 2.0 * nu * k)) / (2.0 * k)
    c = v.square()
    P = 0.5 * (c / s_prior - 1.0 - torch.log(c / s_prior)).sum()
    return float(P), float((s_star.sqrt() - v).square().sum())
