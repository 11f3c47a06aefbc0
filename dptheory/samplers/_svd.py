"""Spectral filters of a linear operator: ``g(A^T A) x = V diag(g(s)) V^T x`` for ``A = U diag(s) V^T``.

DDRM, DiffPIR and PiGDM act on each right singular direction of ``A`` separately, with a coefficient that depends
only on its singular value ``s`` (``s = 0`` on the null space), so they need only :meth:`Spectrum.filter`, never
``V``. A filter applied to white noise ``z`` gives independent noise of standard deviation ``g(s_i)`` in direction
``i``, as the papers write it. Supported operators (anything else raises ``TypeError`` naming the operator):

- vector operators (``x (n, d)``): the full SVD of the dense matrix ``operator.matrix((d,))``, ``V`` of size
  ``(d, d)`` with ``s`` padded by zeros;
- circulant blurs with ``transfer_function`` (:class:`~dptheory.images.operators.Blur`): ``V`` is the 2-D DFT,
  ``s = |H|``, with ``|H| <= tol max|H|`` treated as 0, the same truncation as the operator's ``pinv``;
- image operators whose nonzero singular values are all equal (inpainting, average pooling, orthonormal compressed
  sensing, denoising): ``g(A^T A) = g(s_1) P + g(0) (I - P)`` with ``P = A^+ A``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Spectrum"]


class Spectrum:
    """The right singular structure of ``operator`` for inputs shaped like ``like`` (``(n, d)`` or images).

    Attributes:
        kind: ``"dense"``, ``"fft"`` or ``"projection"``.
    """

    def __init__(self, operator, like: torch.Tensor):
        self.operator = operator
        self.dtype, self.device = like.dtype, like.device
        if operator.has_transfer_function and like.ndim >= 3:
            h, w = like.shape[-2:]
            H = operator.transfer_function(h, w, dtype=like.dtype, device=like.device, onesided=True)
            mag = H.abs()
            tol = float(operator.tol)
            self.s = torch.where(mag > tol * mag.max(), mag, torch.zeros_like(mag))
            self.kind, self.hw = "fft", (h, w)
        elif like.ndim == 2:
            d = like.shape[-1]
            M = operator.matrix((d,), dtype=like.dtype, device=like.device)
            _, s, Vh = torch.linalg.svd(M, full_matrices=True)
            tol = max(M.shape) * torch.finfo(s.dtype).eps * (float(s.max()) if s.numel() else 0.0)
            s_full = torch.zeros(d, dtype=like.dtype, device=like.device)
            s_full[: s.numel()] = torch.where(s > tol, s, torch.zeros_like(s))
            self.s, self.V, self.kind = s_full, Vh.transpose(-1, -2), "dense"
        elif operator.has_singular_values:
            sv = operator.singular_values(tuple(like.shape[1:])).reshape(-1)
            nonzero = sv[sv > 0]
            if nonzero.numel() and not bool(torch.allclose(nonzero, nonzero[0].expand_as(nonzero), rtol=1e-12,
                                                           atol=0.0)):
                raise TypeError(
                    f"{type(operator).__name__}: unequal nonzero singular values without a known basis; DDRM, "
                    "DiffPIR and PiGDM need a dense, DFT-diagonal or projection-type operator"
                )
            s1 = float(nonzero[0]) if nonzero.numel() else 0.0
            self.s = torch.tensor([s1, 0.0], dtype=like.dtype, device=like.device)
            self.kind = "projection"
        else:
            raise TypeError(
                f"{type(operator).__name__} has no SVD this module can use (a dense matrix, a transfer_function "
                "or singular_values); DDRM, DiffPIR and PiGDM need one"
            )

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y`` with the singular values this spectrum keeps (``s = 0`` directions get 0)."""
        if self.kind == "projection":
            return self.operator.pinv(y)
        return self.filter(lambda s: _safe_inv(s) ** 2, self.operator.A_adjoint(y))  # V S^-2 V^T A^T y

    def filter(self, g, x: torch.Tensor) -> torch.Tensor:
        """``V diag(g(s)) V^T x``: ``g`` maps a tensor of singular values to coefficients of the same shape, or
        is those coefficients (a tensor shaped like :attr:`s`)."""
        c = g if isinstance(g, torch.Tensor) else g(self.s)
        if self.kind == "dense":
            return ((x @ self.V) * c) @ self.V.transpose(-1, -2)
        if self.kind == "fft":
            h, w = self.hw
            return torch.fft.irfft2(torch.fft.rfft2(x) * c.to(x.dtype), s=(h, w))
        c1, c0 = float(c[0]), float(c[1])
        px = self.operator.pinv(self.operator.A(x)) if self.s[0] > 0 else torch.zeros_like(x)
        if c0 == 0.0:
            return c1 * px
        return c1 * px + c0 * (x - px)


def _safe_inv(s: torch.Tensor) -> torch.Tensor:
    """``1/s`` where ``s > 0``, else 0."""
    return torch.where(s > 0, 1.0 / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))


def safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a / b`` where ``b > 0``, else 0 (elementwise, no NaN)."""
    return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))


def ve_sigma(alpha_bar: float) -> float:
    """``sigma = sqrt((1 - ab) / ab)``: the variance-exploding level of ``x_t / sqrt(ab) = x0 + sigma eps``."""
    return math.sqrt((1.0 - alpha_bar) / alpha_bar)
