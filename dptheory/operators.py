"""Linear forward operators ``x -> A x`` with the protocol every layer uses.

An operator is any object with

- ``A(x)``: apply the forward map to a batch, ``(..., d) -> (..., m)`` for vectors (images use their own
  shapes);
- ``A_adjoint(y)``: apply ``A^T``, ``(..., m) -> (..., d)``;
- optionally ``matrix()`` (a dense ``(m, d)`` matrix), ``svd()`` and ``pinv(y)`` (``A^+ y``).

:class:`MatrixOperator` wraps a dense matrix. :func:`as_operator` accepts a matrix or an operator object, and
:func:`dense_matrix` recovers the ``(m, d)`` matrix of any operator on vectors (by applying it to the identity
when the object has no ``matrix()``), which the exact posteriors need.

Style follows deepinv's ``LinearPhysics`` (``A``, ``A_adjoint``, ``A_dagger``).
"""

from __future__ import annotations

import torch

from ._checks import as_tensor, check_finite

__all__ = ["MatrixOperator", "as_operator", "dense_matrix"]


class MatrixOperator:
    """The operator ``x -> M x`` of a dense matrix ``M`` of shape ``(m, d)``; acts on batches ``(..., d)``.

    Examples:
        >>> import torch
        >>> op = MatrixOperator(torch.tensor([[1.0, 0.5]], dtype=torch.float64))
        >>> op.A(torch.tensor([2.0, 2.0], dtype=torch.float64)).tolist()
        [3.0]
    """

    def __init__(self, M):
        M = check_finite(as_tensor(M, "A"), "A")
        if M.ndim == 1:
            M = M.unsqueeze(0)
        if M.ndim != 2:
            raise ValueError(f"A must be a matrix of shape (m, d), got shape {tuple(M.shape)}")
        self.M = M
        self._svd = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, d)``."""
        return tuple(self.M.shape)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for ``x (..., d)`` -> ``(..., m)``."""
        return x @ self.M.transpose(-1, -2).to(x.dtype)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y`` for ``y (..., m)`` -> ``(..., d)``."""
        return y @ self.M.to(y.dtype)

    def matrix(self) -> torch.Tensor:
        """The dense ``(m, d)`` matrix."""
        return self.M

    def svd(self):
        """Thin SVD ``A = U diag(s) V^T``, returned as ``(U (m, r), s (r,), V (d, r))``, cached."""
        if self._svd is None:
            U, s, Vh = torch.linalg.svd(self.M, full_matrices=False)
            self._svd = (U, s, Vh.transpose(-1, -2))
        return self._svd

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y`` (Moore-Penrose) for ``y (..., m)`` -> ``(..., d)``, singular values below
        ``max(m, d) * eps * s_max`` treated as zero."""
        U, s, V = self.svd()
        tol = max(self.M.shape) * torch.finfo(s.dtype).eps * (s.max() if s.numel() else 0.0)
        s_inv = torch.where(s > tol, 1.0 / torch.where(s > tol, s, torch.ones_like(s)), torch.zeros_like(s))
        return ((y.to(U.dtype) @ U) * s_inv) @ V.transpose(-1, -2)


def as_operator(A):
    """Return ``A`` unchanged if it has ``A``/``A_adjoint`` methods, else wrap it as a :class:`MatrixOperator`."""
    if callable(getattr(A, "A", None)) and callable(getattr(A, "A_adjoint", None)):
        return A
    return MatrixOperator(A)


def dense_matrix(op, d: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The ``(m, d)`` matrix of an operator on vectors: ``op.matrix()`` if available, else ``A(I)^T``."""
    if callable(getattr(op, "matrix", None)):
        return op.matrix()
    eye = torch.eye(d, dtype=dtype, device=device)
    M = op.A(eye).transpose(-1, -2)
    if M.ndim != 2 or M.shape[1] != d:
        raise ValueError(f"A maps (d,) = ({d},) vectors to shape {tuple(M.shape[:-1])}; expected (m,)")
    return M.contiguous()
