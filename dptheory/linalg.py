"""Symmetric positive-semidefinite algebra from one eigendecomposition.

Every function of a covariance that dptheory needs (square root, inverse, pseudo-inverse, log-determinant,
rank, whitening) is read off a single ``torch.linalg.eigh`` so that the pieces agree with each other. The
decomposition is computed once per covariance and cached by the owning distribution.

Eigenvalues within the round-off tolerance ``tol = 1000 * d * eps * max|lambda|`` of zero are treated as
zero (this is how rank deficiency is detected); an eigenvalue below ``-tol`` means the matrix is not PSD and
is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import as_tensor, check_finite, check_linalg_dtype

__all__ = ["SymmetricEig", "sym_eig", "check_covariance", "psd_sqrt"]


def _tolerance(evals: torch.Tensor, d: int) -> torch.Tensor:
    eps = torch.finfo(evals.dtype).eps
    scale = evals.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(evals.dtype).tiny)
    return 1000.0 * max(d, 1) * eps * scale


@dataclass(frozen=True)
class SymmetricEig:
    """``S = V diag(lam) V^T`` for a (batch of) symmetric PSD matrix, shapes ``(..., d)`` and ``(..., d, d)``.

    ``lam`` has round-off negatives set to exactly 0; ``tol`` is the threshold under which an eigenvalue
    counts as zero.
    """

    evals: torch.Tensor
    evecs: torch.Tensor
    tol: torch.Tensor

    @property
    def rank(self) -> torch.Tensor:
        """Number of eigenvalues above ``tol``, shape ``(...)``."""
        return (self.evals > self.tol).sum(-1)

    @property
    def is_singular(self) -> bool:
        """True if any matrix in the batch is rank deficient."""
        return bool((self.evals <= self.tol).any())

    def matrix_function(self, f_evals: torch.Tensor) -> torch.Tensor:
        """``V diag(f(lam)) V^T`` for precomputed ``f(lam)``, shape ``(..., d, d)``."""
        return (self.evecs * f_evals.unsqueeze(-2)) @ self.evecs.transpose(-1, -2)

    def sqrt(self) -> torch.Tensor:
        """``S^{1/2}`` (PSD square root)."""
        return self.matrix_function(self.evals.sqrt())

    def pinv(self) -> torch.Tensor:
        """Moore-Penrose pseudo-inverse ``S^+``."""
        keep = self.evals > self.tol
        inv = torch.where(keep, 1.0 / torch.where(keep, self.evals, torch.ones_like(self.evals)), 0.0)
        return self.matrix_function(inv)

    def pinv_sqrt(self) -> torch.Tensor:
        """``(S^+)^{1/2}``."""
        keep = self.evals > self.tol
        inv = torch.where(keep, torch.where(keep, self.evals, torch.ones_like(self.evals)).rsqrt(), 0.0)
        return self.matrix_function(inv)

    def range_projector(self) -> torch.Tensor:
        """Orthogonal projector onto ``range(S)``."""
        return self.matrix_function((self.evals > self.tol).to(self.evals.dtype))

    def null_projector(self) -> torch.Tensor:
        """Orthogonal projector onto the null space of ``S`` (exactly zero when ``S`` is nonsingular)."""
        return self.matrix_function((self.evals <= self.tol).to(self.evals.dtype))

    def require_nonsingular(self, what: str, name: str = "cov") -> None:
        """Raise ``ValueError`` if the matrix is singular, saying that ``what`` needs it to be SPD."""
        if self.is_singular:
            d = self.evals.shape[-1]
            raise ValueError(
                f"{what} needs a nonsingular (SPD) {name}, but {name} has rank "
                f"{self.rank.min().item()} < d = {d} (smallest eigenvalue {self.evals.min().item():.3g})"
            )

    def inv(self) -> torch.Tensor:
        """``S^{-1}``; raises if singular."""
        self.require_nonsingular("the inverse")
        return self.matrix_function(1.0 / self.evals)

    def logdet(self) -> torch.Tensor:
        """``log det S``, shape ``(...)``; raises if singular."""
        self.require_nonsingular("log det")
        return self.evals.log().sum(-1)


def sym_eig(S: torch.Tensor, name: str = "cov") -> SymmetricEig:
    """Eigendecomposition of a symmetric PSD matrix (or batch), rejecting non-PSD input by name.

    Args:
        S: ``(..., d, d)`` symmetric PSD.
        name: the argument name used in error messages.
    """
    d = S.shape[-1]
    evals, evecs = torch.linalg.eigh(S)
    tol = _tolerance(evals, d)
    if bool((evals < -tol).any()):
        raise ValueError(
            f"{name} must be symmetric positive semidefinite, but it has a negative eigenvalue "
            f"{evals.min().item():.3g}"
        )
    evals = torch.where(evals.abs() <= tol, torch.zeros_like(evals), evals)
    return SymmetricEig(evals=evals, evecs=evecs, tol=tol)


def check_covariance(S, name: str, d: int | None = None, *, batch: tuple[int, ...] = ()) -> torch.Tensor:
    """Validate a covariance of shape ``batch + (d, d)``: finite, symmetric (to round-off), returns it symmetrised.

    PSD-ness is checked by :func:`sym_eig` when the decomposition is formed.
    """
    t = check_linalg_dtype(check_finite(as_tensor(S, name), name), name)
    want = batch + ((d, d) if d is not None else (t.shape[-1], t.shape[-1]))
    if t.ndim != len(batch) + 2 or tuple(t.shape) != want or t.shape[-1] != t.shape[-2]:
        shape = "(" + ", ".join([*map(str, batch), "d", "d"]) + ")"
        raise ValueError(f"{name} must have shape {shape}{f' with d = {d}' if d else ''}, got {tuple(t.shape)}")
    asym = (t - t.transpose(-1, -2)).abs().amax()
    scale = t.abs().amax().clamp_min(torch.finfo(t.dtype).tiny)
    if asym > 1e3 * torch.finfo(t.dtype).eps * scale * t.shape[-1]:
        raise ValueError(f"{name} must be symmetric, but max|{name} - {name}^T| = {asym.item():.3g}")
    return 0.5 * (t + t.transpose(-1, -2))


def psd_sqrt(S: torch.Tensor) -> torch.Tensor:
    """PSD square root of a symmetric PSD matrix (batch), from its eigendecomposition."""
    return sym_eig(S, "matrix").sqrt()
