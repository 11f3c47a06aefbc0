"""The multivariate Gaussian N(mean, cov), with its exact VP-diffusion quantities.

With ``S = cov``, ``m = mean`` and ``S_t = ab S + (1 - ab) I`` (docs/theory §3.1):

- diffused marginal          p_t = N(sqrt(ab) m, S_t)
- score                      grad log p(x) = -S^{-1} (x - m)
- Tweedie denoiser           E[x0 | x_t] = m + K_t (x_t - sqrt(ab) m),   K_t = sqrt(ab) S S_t^{-1}
- Tweedie covariance         Cov[x0 | x_t] = C_t = S - ab S S_t^{-1} S   (constant in x_t)

All algebra comes from one cached eigendecomposition ``S = V diag(lam) V^T`` (:mod:`dptheory.linalg`), reused by
the diffused law (``S_t = V diag(ab lam + 1 - ab) V^T``). Singular (PSD) covariances are allowed for sampling,
diffusion, denoising and conditioning; ``log_prob`` and ``score`` need an SPD covariance and say so.

Sources: Efron (2011), "Tweedie's formula and selection bias"; Ho et al. (2020), DDPM, eq. (4).
"""

from __future__ import annotations

import math

import torch

from ._checks import (
    as_tensor,
    check_alpha_bar,
    check_finite,
    check_int,
    check_sigma,
    check_vector_batch,
    common_dtype,
)
from .conditioning import LinearGaussianUpdate
from .linalg import SymmetricEig, check_covariance, sym_eig
from .operators import as_operator

__all__ = ["Gaussian"]


class Gaussian:
    """A Gaussian law N(mean, cov) on R^d.

    Args:
        mean: ``(d,)``.
        cov: ``(d, d)`` symmetric positive semidefinite.

    dtype and device follow the inputs (the promoted floating dtype; float64 for Python numbers).

    Examples:
        >>> import torch, dptheory as dpt
        >>> p = dpt.Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 4.0]])
        >>> round(p.log_prob(torch.zeros(2, dtype=torch.float64)).item(), 12)  # -log(2 pi) - log(2)
        -2.531024246969
        >>> p.diffuse(0.5).cov.tolist()
        [[1.0, 0.0], [0.0, 2.5]]
    """

    def __init__(self, mean, cov):
        mean = check_finite(as_tensor(mean, "mean"), "mean")
        if mean.ndim != 1 or mean.shape[0] == 0:
            raise ValueError(f"mean must have shape (d,) with d >= 1, got shape {tuple(mean.shape)}")
        cov_t = as_tensor(cov, "cov", device=mean.device)
        dtype = common_dtype(mean, cov_t)
        mean = mean.to(dtype)
        cov = check_covariance(cov_t.to(dtype), "cov", mean.shape[0])
        self._mean = mean
        self._cov = cov
        self._eig: SymmetricEig | None = None
        _ = self.eig  # validate PSD now, not at first use

    @classmethod
    def _trusted(cls, mean: torch.Tensor, cov: torch.Tensor, eig: SymmetricEig | None = None) -> Gaussian:
        """Build without validation (internal: inputs produced by exact algebra)."""
        self = cls.__new__(cls)
        self._mean, self._cov, self._eig = mean, 0.5 * (cov + cov.transpose(-1, -2)), eig
        return self

    # ------------------------------------------------------------------ basic properties
    @property
    def mean(self) -> torch.Tensor:
        """``(d,)``."""
        return self._mean

    @property
    def cov(self) -> torch.Tensor:
        """``(d, d)``."""
        return self._cov

    @property
    def dim(self) -> int:
        """The dimension d."""
        return self._mean.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self._mean.dtype

    @property
    def device(self) -> torch.device:
        return self._mean.device

    @property
    def eig(self) -> SymmetricEig:
        """Cached eigendecomposition of ``cov``."""
        if self._eig is None:
            self._eig = sym_eig(self._cov, "cov")
        return self._eig

    def __repr__(self) -> str:
        return f"Gaussian(d={self.dim}, dtype={self.dtype})"

    # ------------------------------------------------------------------ density
    def log_prob(self, x) -> torch.Tensor:
        """``log N(x; m, S)`` for ``x (..., d)`` -> ``(...)``. Needs an SPD covariance."""
        x = check_vector_batch(x, self.dim, "x", like=self._mean)
        eig = self.eig
        eig.require_nonsingular("log_prob")
        u = (x - self._mean) @ eig.evecs
        quad = (u.square() / eig.evals).sum(-1)
        return -0.5 * (quad + eig.evals.log().sum() + self.dim * math.log(2 * math.pi))

    def score(self, x) -> torch.Tensor:
        """``grad_x log N(x; m, S) = -S^{-1}(x - m)`` for ``x (..., d)``. Needs an SPD covariance."""
        x = check_vector_batch(x, self.dim, "x", like=self._mean)
        eig = self.eig
        eig.require_nonsingular("score")
        u = (x - self._mean) @ eig.evecs
        return -(u / eig.evals) @ eig.evecs.transpose(-1, -2)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` i.i.d. draws, ``(n, d)``: ``m + V diag(sqrt(lam)) z`` with ``z ~ N(0, I)`` (works when singular)."""
        n = check_int(n, "n")
        z = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        eig = self.eig
        return self._mean + (z * eig.evals.sqrt()) @ eig.evecs.transpose(-1, -2)

    # ------------------------------------------------------------------ diffusion
    def diffuse(self, alpha_bar) -> Gaussian:
        """Law of ``sqrt(ab) x0 + sqrt(1 - ab) eps``: ``N(sqrt(ab) m, ab S + (1 - ab) I)``."""
        ab = check_alpha_bar(alpha_bar)
        eig = self.eig
        evals = ab * eig.evals + (1.0 - ab)
        new_eig = SymmetricEig(evals=evals, evecs=eig.evecs, tol=eig.tol * ab)
        cov = eig.matrix_function(evals)
        return Gaussian._trusted(math.sqrt(ab) * self._mean, cov, new_eig)

    def denoise_gain(self, alpha_bar) -> torch.Tensor:
        """``K_t = dE[x0|x_t]/dx_t = sqrt(ab) S (ab S + (1 - ab) I)^{-1}``, ``(d, d)``."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            return torch.eye(self.dim, dtype=self.dtype, device=self.device)
        eig = self.eig
        return eig.matrix_function(math.sqrt(ab) * eig.evals / (ab * eig.evals + 1.0 - ab))

    def denoise(self, x_t, alpha_bar) -> torch.Tensor:
        """Exact Tweedie denoiser ``E[x0 | x_t] = m + K_t (x_t - sqrt(ab) m)`` for ``x_t (..., d)``.

        At ``alpha_bar = 1`` this is the identity.
        """
        ab = check_alpha_bar(alpha_bar)
        x_t = check_vector_batch(x_t, self.dim, "x_t", like=self._mean)
        if ab == 1.0:
            return x_t.clone()
        eig = self.eig
        g = math.sqrt(ab) * eig.evals / (ab * eig.evals + 1.0 - ab)
        u = (x_t - math.sqrt(ab) * self._mean) @ eig.evecs
        return self._mean + (u * g) @ eig.evecs.transpose(-1, -2)

    def denoise_cov(self, x_t, alpha_bar) -> torch.Tensor:
        """Exact ``Cov[x0 | x_t] = S - ab S S_t^{-1} S = V diag(lam (1-ab) / (ab lam + 1 - ab)) V^T``.

        Constant in ``x_t``; returned broadcast to ``x_t.shape[:-1] + (d, d)``.
        """
        ab = check_alpha_bar(alpha_bar)
        x_t = check_vector_batch(x_t, self.dim, "x_t", like=self._mean)
        if ab == 1.0:
            C = torch.zeros_like(self._cov)
        else:
            C = self.eig.matrix_function(self._denoise_cov_evals(ab))
        return C.expand(*x_t.shape[:-1], self.dim, self.dim)

    def _denoise_cov_evals(self, ab: float) -> torch.Tensor:
        """Eigenvalues ``lam (1 - ab) / (ab lam + 1 - ab)`` of ``Cov[x0 | x_t]`` in the prior's eigenbasis, ``(d,)``."""
        evals = self.eig.evals
        return evals * (1.0 - ab) / (ab * evals + 1.0 - ab)

    def denoise_error_law(self, alpha_bar) -> Gaussian:
        """Law of the Tweedie error ``x0 - E[x0 | x_t]``: ``N(0, C_t)`` with ``C_t`` as in :meth:`denoise_cov`.

        It keeps the prior's eigenbasis ``V``, so a draw is ``V diag(sqrt(lam (1-ab) / (ab lam + 1 - ab))) z``
        with ``z ~ N(0, I)`` (``d`` normals in this Gaussian's dtype); ``E[x0 | x_t]`` plus a draw is an exact
        draw from ``p(x0 | x_t)``.
        """
        ab = check_alpha_bar(alpha_bar)
        eig = self.eig
        evals = self._denoise_cov_evals(ab)
        error_eig = SymmetricEig(evals=evals, evecs=eig.evecs, tol=eig.tol)
        return Gaussian._trusted(torch.zeros_like(self._mean), eig.matrix_function(evals), error_eig)

    # ------------------------------------------------------------------ conditioning
    def condition(self, A, y, sigma_y) -> Gaussian:
        """Posterior of x given ``y = A x + N(0, sigma_y^2 I)``: exact, gain form (see :mod:`dptheory.conditioning`).

        Args:
            A: ``(m, d)`` matrix or an operator object on vectors.
            y: ``(m,)``.
            sigma_y: >= 0 (0 allowed when ``A S A^T`` is invertible).
        """
        A_mat, y, sigma_y = _measurement(A, y, sigma_y, self)
        upd = LinearGaussianUpdate(self._mean.unsqueeze(0), self._cov.unsqueeze(0), A_mat, sigma_y)
        return Gaussian._trusted(upd.post_means(y)[0], upd.post_covs[0])

    def linear_map(self, F, h=None) -> Gaussian:
        """Law of ``F x + h``: ``N(F m + h, F S F^T)``; ``F (k, d)``, ``h (k,)``."""
        F = check_finite(as_tensor(F, "F", dtype=self.dtype, device=self.device), "F")
        if F.ndim != 2 or F.shape[1] != self.dim:
            raise ValueError(f"F must have shape (k, d) with d = {self.dim}, got {tuple(F.shape)}")
        mean = F @ self._mean
        if h is not None:
            mean = mean + check_vector_batch(h, F.shape[0], "h", like=self._mean)
        return Gaussian._trusted(mean, F @ self._cov @ F.transpose(-1, -2))


def _measurement(A, y, sigma_y, dist):
    """Validate (A, y, sigma_y) against a distribution of dimension ``dist.dim``; returns the dense A."""
    sigma_y = check_sigma(sigma_y)
    A_mat = as_operator(A).matrix((dist.dim,), dtype=dist.dtype, device=dist.device).to(dist.dtype)
    if A_mat.ndim != 2 or A_mat.shape[1] != dist.dim:
        raise ValueError(f"A must have shape (m, d) with d = {dist.dim}, got {tuple(A_mat.shape)}")
    y = check_vector_batch(y, A_mat.shape[0], "y", like=dist.mean)
    if y.ndim != 1:
        raise ValueError(f"y must have shape (m,) = ({A_mat.shape[0]},), got {tuple(y.shape)}")
    return A_mat, y.to(dist.dtype), sigma_y
