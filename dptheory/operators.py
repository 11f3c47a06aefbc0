"""Linear forward operators ``x -> A x``: the :class:`LinearOperator` protocol every layer uses.

The protocol (vector operators act on ``(..., d)``, image operators on ``(..., c, h, w)``):

- required: ``A(x)`` and ``A_adjoint(y)``;
- optional, each announced by a flag: ``pinv(y)`` (``A^+ y``) when ``has_pinv``, ``singular_values(shape)``
  when ``has_singular_values``;
- always: ``matrix(shape)``, the dense ``(m, d)`` matrix (by default ``A`` applied to the identity).

:class:`MatrixOperator` wraps a dense matrix. :func:`as_operator` accepts a matrix or a :class:`LinearOperator`;
``op.matrix((d,))`` gives the ``(m, d)`` matrix the exact posteriors need.

Style follows deepinv's ``LinearPhysics`` (``A``, ``A_adjoint``, ``A_dagger``).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch

from ._checks import as_tensor, check_finite

__all__ = ["LinearOperator", "MatrixOperator", "as_operator"]


@runtime_checkable
class LinearOperator(Protocol):
    """A linear map ``x -> A x`` from inputs of shape ``shape`` to measurements, applied to batches.

    ``shape`` is the shape of ONE input: ``(d,)`` for a vector operator (batches ``(..., d)``), ``(c, h, w)`` for
    an image operator (batches ``(..., c, h, w)``). ``d = prod(shape)`` and ``m`` is the size of one measurement.

    Required:

    - ``A(x)``: ``x (..., *shape) -> (..., *out)``;
    - ``A_adjoint(y)``: ``A^T y``, the exact adjoint for the Euclidean inner products.

    Optional capabilities, each with ONE name and signature, announced by a class flag so that a consumer
    tests ``op.has_pinv`` (never ``hasattr``); without the capability the method raises ``NotImplementedError``
    naming the operator:

    - ``pinv(y)`` (``has_pinv``): the Moore-Penrose pseudo-inverse ``A^+ y``, ``(..., *out) -> (..., *shape)``
      (a consumer without it falls back to ``A^T y``);
    - ``singular_values(shape)`` (``has_singular_values``): float64 singular values of ``A`` on inputs of
      ``shape``. For a dense matrix the ``min(m, d)`` values of the thin SVD, in descending order; for an image
      operator the diagonal of ``A`` in its own basis (pixels, DFT frequencies, transform coefficients), zeros
      included, shaped like one input or one measurement;
    - ``transfer_function(h, w, *, dtype, device, onesided=False)`` (``has_transfer_function``): for a circular
      convolution, ``H`` with ``A x = F^-1(H F(x))`` per channel (``F`` the 2-D DFT; the ``rfft2`` half when
      ``onesided``); such an operator also sets ``tol``, the relative cutoff below which ``|H|`` counts as 0.

    Always available: ``matrix(shape, *, dtype=torch.float64, device=None)``, the dense ``(m, d)`` matrix on
    flattened inputs and measurements. The default applies ``A`` to the ``d x d`` identity (tiny sizes only).
    ``shape`` is positional (image operators call it ``image_shape``).

    Implement it by subclassing (the optional methods and ``matrix`` are inherited; set the flag to ``True`` where
    the subclass defines the method): :class:`MatrixOperator`, the image operators of
    :mod:`dptheory.images.operators` and :class:`~dptheory.images.latent_solve.LatentOperator` (nonlinear: its
    ``A_adjoint`` and ``matrix`` raise ``NotImplementedError``) do. ``isinstance(op, LinearOperator)`` also
    accepts an object that defines every member without subclassing.
    """

    has_pinv: bool = False
    has_singular_values: bool = False
    has_transfer_function: bool = False
    tol: float = 0.0

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``A x``."""
        raise NotImplementedError(f"{type(self).__name__} does not define A(x)")

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y``."""
        raise NotImplementedError(f"{type(self).__name__} does not define A_adjoint(y)")

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y`` (only when ``has_pinv``)."""
        raise NotImplementedError(f"{type(self).__name__} has no pinv(y) (has_pinv is False); use A_adjoint(y)")

    def singular_values(self, shape, /) -> torch.Tensor:
        """The singular values on inputs of ``shape`` (only when ``has_singular_values``)."""
        raise NotImplementedError(f"{type(self).__name__} has no singular_values(shape) (has_singular_values is "
                                  "False)")

    def transfer_function(self, h: int, w: int, *, dtype=torch.float64, device=None, onesided: bool = False):
        """The DFT transfer function of a circular convolution (only when ``has_transfer_function``)."""
        raise NotImplementedError(f"{type(self).__name__} has no transfer_function (has_transfer_function is "
                                  "False)")

    def matrix(self, shape, /, *, dtype=torch.float64, device=None) -> torch.Tensor:
        """Dense ``(m, d)`` matrix on flattened inputs of ``shape``, ``d = prod(shape)``: ``A`` applied to the
        identity, ``M[:, j] = A(e_j)``."""
        shape = tuple(int(s) for s in shape)
        d = math.prod(shape)
        eye = torch.eye(d, dtype=dtype, device=device).reshape(d, *shape)
        return self.A(eye).reshape(d, -1).transpose(0, 1).contiguous()


class MatrixOperator(LinearOperator):
    """The operator ``x -> M x`` of a dense matrix ``M`` of shape ``(m, d)``; acts on batches ``(..., d)``.

    Examples:
        >>> import torch
        >>> op = MatrixOperator(torch.tensor([[1.0, 0.5]], dtype=torch.float64))
        >>> op.A(torch.tensor([2.0, 2.0], dtype=torch.float64)).tolist()
        [3.0]
    """

    has_pinv = True
    has_singular_values = True

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

    def _check_shape(self, shape) -> None:
        """Raise ``ValueError`` unless ``shape`` is ``(d,)``."""
        if tuple(int(s) for s in shape) != (self.M.shape[1],):
            raise ValueError(f"A must have shape (m, d) with d = {math.prod(shape)} for inputs of shape "
                             f"{tuple(shape)}, got {tuple(self.M.shape)}")

    def matrix(self, shape, *, dtype=torch.float64, device=None) -> torch.Tensor:
        """``M`` as ``dtype`` (on ``device``, default its own); ``shape`` must be ``(d,)``."""
        self._check_shape(shape)
        return self.M.to(dtype=dtype, device=self.M.device if device is None else device)

    def svd(self):
        """Thin SVD ``A = U diag(s) V^T``, returned as ``(U (m, r), s (r,), V (d, r))``, cached."""
        if self._svd is None:
            U, s, Vh = torch.linalg.svd(self.M, full_matrices=False)
            self._svd = (U, s, Vh.transpose(-1, -2))
        return self._svd

    def singular_values(self, shape) -> torch.Tensor:
        """The ``r = min(m, d)`` singular values ``s`` of :meth:`svd`, descending; ``shape`` must be ``(d,)``."""
        self._check_shape(shape)
        return self.svd()[1]

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y`` (Moore-Penrose) for ``y (..., m)`` -> ``(..., d)``, singular values below
        ``max(m, d) * eps * s_max`` treated as zero."""
        U, s, V = self.svd()
        tol = max(self.M.shape) * torch.finfo(s.dtype).eps * (s.max() if s.numel() else 0.0)
        s_inv = torch.where(s > tol, 1.0 / torch.where(s > tol, s, torch.ones_like(s)), torch.zeros_like(s))
        return ((y.to(U.dtype) @ U) * s_inv) @ V.transpose(-1, -2)


def as_operator(A) -> LinearOperator:
    """Return ``A`` unchanged if it is a :class:`LinearOperator`, else wrap the matrix ``A (m, d)`` as a
    :class:`MatrixOperator`; anything else raises ``TypeError`` naming ``A``."""
    if isinstance(A, LinearOperator):
        return A
    try:
        return MatrixOperator(A)
    except TypeError as err:
        raise TypeError(f"A must be a matrix (m, d) or a dptheory.LinearOperator (A(x), A_adjoint(y); subclass it), "
                        f"got {type(A).__name__}") from err
