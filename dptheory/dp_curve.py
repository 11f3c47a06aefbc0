"""Optimal distortion-perception (D-P) curves with MSE distortion and W2 perception.

Joint form (Blau & Michaeli, CVPR 2018; Freirich, Michaeli & Meir, NeurIPS 2021; docs/theory §1.5 and §2.3):

    D(P) = D* + ((W - P)_+)^2,    D* = E||X - X*||^2,  X* = E[X|Y],  W = W2(p_X, p_{X*}).

Per-measurement form for a fixed y (docs/theory §1.6; Wang et al.'s Theorem 2), attained by the shrunk posterior
samples ``mu_y + c (X~ - mu_y)``, ``c = 1 - P / sqrt(tr Sigma_y)``:

    D_y(P) = tr Sigma_y + ((sqrt(tr Sigma_y) - P)_+)^2,  Sigma_y = Cov[X | y].

For a Gaussian prior the joint-optimal estimator at P <= W is explicit (docs/theory §2.3, with ``T`` and ``Q`` of
the pseudo-inverse form, valid for a singular S*): ``X^_P = m + [(1 - c) I + c T](X* - m) + c W0``,
``W0 ~ N(0, Q)``, ``c = 1 - P / W``, with law ``N(m, T_P S* T_P + c^2 Q)``, MSE ``D* + c^2 W^2`` and W2 to p_X = P.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import check_generator, check_int, check_problem
from .gaussian import Gaussian
from .linalg import sym_eig

__all__ = [
    "DPCurve",
    "optimal_dp_curve",
    "per_measurement_dp_curve",
    "GaussianOptimalEstimator",
    "joint_optimal_estimator",
    "shrunk_posterior_samples",
]


@dataclass(frozen=True)
class DPCurve:
    """The optimal curve ``D(P) = D* + ((W - P)_+)^2``.

    Attributes:
        mmse_error: D* (an exact value or a Monte Carlo estimate).
        w: W, the perception of the MMSE estimator (W2 from p_X to p_{X*}; for the per-measurement form
            ``sqrt(tr Sigma_y)``).
        form: ``"joint"`` or ``"per-measurement"``.
        mmse_error_stderr, w_stderr: standard errors (0 when exact).
        note: how the numbers were obtained.
    """

    mmse_error: float
    w: float
    form: str
    mmse_error_stderr: float = 0.0
    w_stderr: float = 0.0
    note: str = "exact"

    @property
    def exact(self) -> bool:
        return self.mmse_error_stderr == 0.0 and self.w_stderr == 0.0

    def distortion(self, P) -> torch.Tensor:
        """``D(P) = D* + ((W - P)_+)^2`` for ``P >= 0`` (tensor or float, any shape)."""
        P = torch.as_tensor(P, dtype=torch.float64)
        if bool((P < 0).any()) or bool(torch.isnan(P).any()):
            raise ValueError("P (a W2 perception value) must be >= 0")
        return self.mmse_error + torch.clamp(self.w - P, min=0.0).square()

    def perception(self, D) -> torch.Tensor:
        """Inverse on the sloped part: ``P(D) = (W - sqrt(D - D*))_+`` for ``D >= D*``."""
        D = torch.as_tensor(D, dtype=torch.float64)
        if bool((D < self.mmse_error - 1e-12 * max(1.0, self.mmse_error)).any()):
            raise ValueError(f"D must be >= D* = {self.mmse_error}; no estimator has a lower MSE")
        return torch.clamp(self.w - torch.clamp(D - self.mmse_error, min=0.0).sqrt(), min=0.0)

    def gap(self, P, D) -> torch.Tensor:
        """Distance above the curve ``D - D(P)`` of a measured point (P, D); >= 0 for any estimator."""
        return torch.as_tensor(D, dtype=torch.float64) - self.distortion(P)

    @property
    def posterior_sampling_point(self) -> tuple[float, float]:
        """``(P, D) = (0, 2 D*)`` for the joint form: sampling the posterior (Blau & Michaeli 2018)."""
        return 0.0, 2.0 * self.mmse_error


def optimal_dp_curve(problem, *, n: int = 20000, generator: torch.Generator | None = None) -> DPCurve:
    """The joint optimal D-P curve of ``problem`` (MSE distortion, W2 perception).

    Gaussian prior: exact, ``D* = tr Sigma`` and ``W = W2(N(m, S), N(m, S - Sigma))`` (Bures).

    GMM prior: D* by :meth:`LinearInverseProblem.mmse_error` (Monte Carlo, with stderr). W: for a scalar
    signal (d = 1) exactly, by the quantile formula of :func:`dptheory.mmse_w2_squared_1d` (the MMSE map is
    monotone in 1-D; midpoint rule, ~1e-5 relative); otherwise by exact optimal transport between ``n`` draws
    of X and ``n`` of X* (``ot.emd2``, capped at 3000 draws), an estimate biased upward (docs/theory §9.4): the
    note says so. (The 1-D curve used the sorted two-sample estimate before; on B1 with sigma_y = 0.5 and
    n = 20000 it was biased up by ~+1e-3 in W, see ``paper_notes/blau_michaeli_freirich.md``.)
    """
    from .divergences import empirical_w2_squared, gaussian_w2  # local: divergences imports POT lazily

    problem = check_problem(problem)
    generator = check_generator(generator)
    if problem.is_gaussian:
        d_star = problem.mmse_error()
        return DPCurve(d_star.value, float(gaussian_w2(problem.prior, problem.mmse_law())), "joint")
    n = check_int(n, "n")
    d_star = problem.mmse_error(n, generator=generator)
    if problem.dim == 1:
        from .mmse_law_1d import mmse_w2_squared_1d

        w = math.sqrt(max(float(mmse_w2_squared_1d(problem)), 0.0))
        note = f"D*: Rao-Blackwellised MC (n={n}); W: exact quantile formula (2e5 midpoints, ~1e-5 relative)"
        return DPCurve(d_star.value, w, "joint", d_star.stderr, 0.0, note)
    n_ot = n if problem.dim == 1 else min(n, 3000)
    x = problem.prior.sample(n_ot, generator=generator)
    _, y = problem.sample_joint(n_ot, generator=generator)
    x_star = problem.mmse(y)
    w = math.sqrt(max(float(empirical_w2_squared(x, x_star)), 0.0))
    note = f"D*: Rao-Blackwellised MC (n={n}); W: empirical OT between {n_ot} + {n_ot} draws (biased upward)"
    return DPCurve(d_star.value, w, "joint", d_star.stderr, float("nan"), note)


def per_measurement_dp_curve(problem, y) -> DPCurve:
    """The per-measurement optimal curve for one ``y (m,)``: ``D_y* = tr Cov[X|y]``, ``W_y = sqrt(D_y*)``.

    Exact for any posterior (Gaussian or GMM), docs/theory §1.6.
    """
    tr = float(problem.posterior_cov_trace(y).reshape(()))
    return DPCurve(tr, math.sqrt(max(tr, 0.0)), "per-measurement")


def shrunk_posterior_samples(problem, y, P: float, n: int, *, generator=None) -> torch.Tensor:
    """Per-measurement optimal estimator at perception P: ``mu_y + c (X~ - mu_y)``, ``X~ ~ p(x|y)``,
    ``c = (1 - P / sqrt(tr Sigma_y))_+`` (docs/theory §1.6). Returns ``(n, d)``."""
    post = problem.posterior(y)
    curve = per_measurement_dp_curve(problem, y)
    if P < 0:
        raise ValueError(f"P must be >= 0, got {P}")
    c = max(0.0, 1.0 - P / curve.w) if curve.w > 0 else 0.0
    mu = post.mean
    return mu + c * (post.sample(check_int(n, "n"), generator=generator) - mu)


@dataclass(frozen=True)
class GaussianOptimalEstimator:
    """The joint-optimal estimator ``X^_P = m + T_P (X* - m) + c W0`` of a Gaussian problem (docs/theory §2.3).

    Attributes:
        P: target perception W2(p_X, p_{X^}).
        c: ``(1 - P / W)_+``.
        transform: ``T_P = (1 - c) I + c T``, ``(d, d)``.
        noise_cov: ``c^2 Q``, ``(d, d)``: covariance of the independent noise (zero when S* is SPD).
    """

    problem: object
    P: float
    c: float
    transform: torch.Tensor
    noise_cov: torch.Tensor

    def __call__(self, y, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply to measurements ``y (n, m)`` -> ``(n, d)``."""
        m = self.problem.prior.mean
        x_star = self.problem.mmse(y)
        out = m + (x_star - m) @ self.transform.T
        if bool((self.noise_cov.abs() > 0).any()):
            w0 = Gaussian._trusted(torch.zeros_like(m), self.noise_cov)
            out = out + w0.sample(out.reshape(-1, out.shape[-1]).shape[0], generator=generator).reshape(out.shape)
        return out

    def law(self) -> Gaussian:
        """``N(m, T_P S* T_P^T + c^2 Q)``: the exact law of the estimate."""
        S_star = self.problem.mmse_law().cov
        cov = self.transform @ S_star @ self.transform.T + self.noise_cov
        return Gaussian._trusted(self.problem.prior.mean, cov)

    def distortion(self) -> float:
        """Exact MSE ``D* + c^2 W^2``, computed from the law of (X, X^) (not from the curve)."""
        prob = self.problem
        S = prob.prior.cov
        S_star = prob.mmse_law().cov
        # E||X - X^||^2 with Cov(X, X^) = Cov(X, X*) T_P^T = S* T_P^T (X - X* is independent of X*)
        cross = torch.trace(S_star @ self.transform.T)
        return float(torch.trace(S) + torch.trace(self.law().cov) - 2.0 * cross)


def joint_optimal_estimator(problem, P: float) -> GaussianOptimalEstimator:
    """The joint-optimal estimator at perception ``P`` for a Gaussian problem (Freirich et al. 2021)."""
    if not problem.is_gaussian:
        raise TypeError("joint_optimal_estimator is closed-form only for a Gaussian prior")
    P = float(P)
    if not P >= 0.0:
        raise ValueError(f"P must be >= 0, got {P}")
    curve = optimal_dp_curve(problem)
    S = problem.prior.cov
    d = S.shape[0]
    eye = torch.eye(d, dtype=S.dtype, device=S.device)
    c = max(0.0, 1.0 - P / curve.w) if curve.w > 0 else 0.0
    S_half = problem.prior.eig.sqrt()
    M = S_half @ problem.mmse_law().cov @ S_half
    M_eig = sym_eig(0.5 * (M + M.T), "S^1/2 S* S^1/2")
    T = S_half @ M_eig.pinv_sqrt() @ S_half
    Q = S_half @ M_eig.null_projector() @ S_half  # exactly 0 when S* is SPD
    return GaussianOptimalEstimator(problem, P, c, (1.0 - c) * eye + c * T, c**2 * 0.5 * (Q + Q.T))
