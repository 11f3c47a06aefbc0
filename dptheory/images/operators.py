"""Image forward operators ``y = A x`` with the vector protocol, and the task table.

Every operator acts on image batches ``x (..., c, h, w)`` (leading dims are flattened and restored, so a single
image ``(c, h, w)`` or a shared measurement with leading dim 1 also works) and provides ``A(x)``, ``A_adjoint(y)``
(the exact adjoint for the Euclidean inner products), ``pinv(y)`` (the Moore-Penrose ``A^+ y``; the
:class:`~dptheory.operators.LinearOperator` protocol), ``in_shape`` /
``out_shape`` of one ``(c, h, w)`` image, ``singular_values(image_shape)`` in the operator's diagonal basis
(pixels, DFT frequencies, transform coefficients) and ``matrix(image_shape)``, the dense ``(m, d)`` matrix (tiny
sizes). dtype and device follow the input (buffers are float64, cast on use); randomness (random masks, motion
kernels, compressed-sensing subsets) is drawn only from a ``torch.Generator`` argument.

Task table: :data:`TASKS` maps ``sr4``, ``inpaint-box``, ``inpaint-random``, ``blur-gauss``, ``blur-motion``,
``cs`` and ``denoise`` to a :class:`Task`; :func:`make_task` returns ``(operator, sigma_y)``.
Style follows deepinv's ``LinearPhysics`` (``A``, ``A_adjoint``, ``A_dagger``) and ``DecomposablePhysics``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import as_tensor, check_finite
from ..operators import LinearOperator

__all__ = [
    "ImageOperator",
    "Inpainting",
    "SuperResolution",
    "Blur",
    "CompressedSensing",
    "Denoising",
    "box_mask",
    "random_mask",
    "gaussian_kernel",
    "motion_kernel",
    "dct_matrix",
    "hadamard_matrix",
    "Task",
    "TASKS",
    "make_task",
]


# ---------------------------------------------------------------------------------------------- helpers
def _image_shape(image_shape, name: str = "image_shape") -> tuple[int, int, int]:
    """Validate ``(c, h, w)`` (a leading batch entry of a 4-tuple is dropped)."""
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError as err:
        raise TypeError(f"{name} must be a tuple (c, h, w) of ints, got {image_shape!r}") from err
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ValueError(f"{name} must be (c, h, w) with positive sizes, got {tuple(image_shape)}")
    return shape


def _batch(t, name: str, trailing: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Validate a finite floating tensor with ``trailing`` core dims; return it flattened to one batch dim."""
    t = check_finite(as_tensor(t, name), name)
    if t.ndim < trailing:
        raise ValueError(f"{name} must have at least {trailing} dims, got shape {tuple(t.shape)}")
    lead = tuple(t.shape[: t.ndim - trailing])
    return t.reshape((-1, *t.shape[t.ndim - trailing :])), lead


def _cast(buf: torch.Tensor, like: torch.Tensor, cache: dict | None = None, key=None) -> torch.Tensor:
    """``buf`` with ``like``'s real dtype (or the complex dtype matching it) and device.

    With ``cache`` and ``key``, the cast copy is kept per ``(key, dtype, device)``, so a buffer moves to an
    accelerator once rather than at every call.
    """
    dtype = like.dtype
    if buf.is_complex():
        dtype = torch.complex128 if like.dtype == torch.float64 else torch.complex64
    if cache is None:
        return buf.to(dtype=dtype, device=like.device)
    k = (key, dtype, str(like.device))
    if k not in cache:
        cache[k] = buf.to(dtype=dtype, device=like.device)
    return cache[k]


class ImageOperator(LinearOperator):
    """Base class of the image operators: a :class:`~dptheory.operators.LinearOperator` on ``(c, h, w)`` images.

    Subclasses implement ``A``, ``A_adjoint``, ``pinv``, ``singular_values``, ``in_shape`` and ``out_shape``.
    """

    has_pinv = True
    has_singular_values = True

    def in_shape(self, image_shape) -> tuple[int, ...]:
        """Shape of one input image, ``(c, h, w)``, after checking that it fits the operator."""
        return _image_shape(image_shape)

    def out_shape(self, image_shape) -> tuple[int, ...]:  # pragma: no cover - overridden
        raise NotImplementedError

    def matrix(self, image_shape, *, dtype=torch.float64, device=None) -> torch.Tensor:
        """Dense ``(m, d)`` matrix on flattened images of ``image_shape`` (``A`` applied to the identity);
        ``d = c h w``, ``m = prod(out_shape)``. For tiny sizes (tests, exact small problems)."""
        return super().matrix(self.in_shape(image_shape), dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------- inpainting
def box_mask(h: int, w: int, box=None) -> torch.Tensor:
    """Observation mask ``(h, w)`` (bool, ``True`` = observed) with a missing centred box.

    ``box`` is ``None`` (a centred ``h//2 x w//2`` box: 128 x 128 in a 256 x 256 image, the DPS / DDRM box
    task, scaled to the image size), an int ``b`` (a centred ``b x b`` box) or ``(top, left, bh, bw)``.
    """
    h, w = _image_shape((1, h, w), "(h, w)")[1:]
    if box is None:
        bh, bw = h // 2, w // 2
        top, left = (h - bh) // 2, (w - bw) // 2
    elif isinstance(box, numbers.Integral):
        bh = bw = int(box)
        top, left = (h - bh) // 2, (w - bw) // 2
    else:
        try:
            top, left, bh, bw = (int(v) for v in box)
        except (TypeError, ValueError) as err:
            raise TypeError(f"box must be None, an int or (top, left, bh, bw), got {box!r}") from err
    if bh <= 0 or bw <= 0 or top < 0 or left < 0 or top + bh > h or left + bw > w:
        raise ValueError(f"box (top={top}, left={left}, bh={bh}, bw={bw}) does not fit an image of size {h}x{w}")
    mask = torch.ones(h, w, dtype=torch.bool)
    mask[top : top + bh, left : left + bw] = False
    return mask


def random_mask(shape, drop_rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random observation mask ``(h, w)`` (bool, ``True`` = observed), shared across channels.

    Each pixel is dropped independently with probability ``drop_rate`` in [0, 1):
    ``mask = U >= drop_rate`` with ``U ~ Uniform[0, 1)`` drawn from ``generator``. ``shape`` is ``(h, w)``
    or an image shape ``(c, h, w)`` / ``(n, c, h, w)`` (its last two sizes are used).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s <= 0 for s in shape):
        raise ValueError(f"shape must end with (h, w) positive sizes, got {shape}")
    rate = float(drop_rate)
    if not (0.0 <= rate < 1.0):  # also rejects NaN
        raise ValueError(f"drop_rate must lie in [0, 1), got {drop_rate}")
    u = torch.rand(shape[-2:], generator=generator, dtype=torch.float64)
    return u >= rate


class Inpainting(ImageOperator):
    """Inpainting: keep the observed pixels, ``A x = M * x`` (y has the image shape, zeros where missing).

    ``M`` is a 0/1 mask of shape ``(h, w)``, ``(1, h, w)`` or ``(c, h, w)``. ``A`` is an orthogonal
    projection (diagonal in the pixel basis, singular values ``M``), so ``A^T = A`` and ``A^+ = A``.

    Args:
        mask: bool or 0/1 tensor; see :func:`box_mask` and :func:`random_mask`.

    Source: the inpainting tasks of DDRM (Kawar et al. 2022) and DPS [chung2023dps].

    Examples:
        >>> import torch
        >>> op = Inpainting(torch.tensor([[True, False]]))
        >>> op.A(torch.ones(1, 1, 1, 2, dtype=torch.float64)).tolist()
        [[[[1.0, 0.0]]]]
    """

    def __init__(self, mask):
        m = as_tensor(mask, "mask")
        if m.ndim == 4 and m.shape[0] == 1:
            m = m[0]
        if m.ndim == 2:
            m = m.unsqueeze(0)
        if m.ndim != 3:
            raise ValueError(f"mask must have shape (h, w), (1, h, w) or (c, h, w), got {tuple(m.shape)}")
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask must hold only 0/1 (or bool) values")
        self.mask = m.to(torch.float64)
        self._cache: dict = {}

    def in_shape(self, image_shape):
        c, h, w = _image_shape(image_shape)
        mc, mh, mw = self.mask.shape
        if (h, w) != (mh, mw) or mc not in (1, c):
            raise ValueError(f"image shape {(c, h, w)} does not fit the mask of shape {tuple(self.mask.shape)}")
        return (c, h, w)

    def out_shape(self, image_shape):
        return self.in_shape(image_shape)

    def _apply(self, x, name):
        xb, lead = _batch(x, name, 3)
        self.in_shape(xb.shape[1:])
        return (xb * _cast(self.mask, xb, self._cache, "mask")).reshape(*lead, *xb.shape[1:])

    def A(self, x):
        """``M * x``: ``(n, c, h, w) -> (n, c, h, w)``."""
        return self._apply(x, "x")

    def A_adjoint(self, y):
        """``A^T y = M * y`` (``A`` is symmetric)."""
        return self._apply(y, "y")

    def pinv(self, y):
        """``A^+ y = M * y`` (``A`` is an orthogonal projection)."""
        return self._apply(y, "y")

    def singular_values(self, image_shape):
        """The mask broadcast to ``(c, h, w)`` (pixel basis)."""
        return self.mask.expand(*self.in_shape(image_shape)).clone()


# ---------------------------------------------------------------------------------------------- SR
class SuperResolution(ImageOperator):
    """Super-resolution by average pooling over ``factor x factor`` blocks.

    ``(A x)[i, j] = f^-2 sum_{a, b < f} x[f i + a, f j + b]``: ``(n, c, h, w) -> (n, c, h/f, w/f)``.
    ``A^T y`` is the nearest-neighbour upsampling divided by ``f^2``; since ``A A^T = I / f^2``,
    ``A^+ = A^T (A A^T)^{-1} = f^2 A^T`` (plain nearest upsampling). All nonzero singular values are ``1/f``.

    Source: the ``sr4`` task of DDRM (Kawar et al. 2022) and DPS [chung2023dps]; this is the average-pooling
    version (exact SVD structure), not the bicubic kernel.

    Examples:
        >>> import torch
        >>> SuperResolution(2).A(torch.arange(4.0).reshape(1, 1, 2, 2)).tolist()
        [[[[1.5]]]]
    """

    def __init__(self, factor: int = 4):
        if not isinstance(factor, numbers.Integral) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"factor must be a positive int, got {factor!r}")
        self.factor = int(factor)

    def in_shape(self, image_shape):
        c, h, w = _image_shape(image_shape)
        f = self.factor
        if h % f or w % f:
            raise ValueError(f"image size {h}x{w} is not divisible by the SR factor {f}")
        return (c, h, w)

    def out_shape(self, image_shape):
        c, h, w = self.in_shape(image_shape)
        return (c, h // self.factor, w // self.factor)

    def A(self, x):
        """Average pooling ``(n, c, h, w) -> (n, c, h/f, w/f)``."""
        xb, lead = _batch(x, "x", 3)
        self.in_shape(xb.shape[1:])
        out = torch.nn.functional.avg_pool2d(xb, self.factor)
        return out.reshape(*lead, *out.shape[1:])

    def _up(self, y):
        yb, lead = _batch(y, "y", 3)
        out = yb.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)
        return out.reshape(*lead, *out.shape[1:])

    def A_adjoint(self, y):
        """``A^T y``: nearest upsampling divided by ``f^2``, ``(n, c, h/f, w/f) -> (n, c, h, w)``."""
        return self._up(y) / self.factor**2

    def pinv(self, y):
        """``A^+ y = f^2 A^T y``: nearest upsampling."""
        return self._up(y)

    def singular_values(self, image_shape):
        """``1/f`` for each output pixel, shape ``out_shape``."""
        return torch.full(self.out_shape(image_shape), 1.0 / self.factor, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- blur
def _odd_size(size, name="size") -> int:
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1 or size % 2 == 0:
        raise ValueError(f"{name} must be a positive odd int (the kernel is centred), got {size!r}")
    return int(size)


def gaussian_kernel(size: int = 61, sigma: float = 3.0) -> torch.Tensor:
    """Isotropic Gaussian blur kernel ``(size, size)``, float64, normalised to sum 1.

    ``k[i, j] ∝ exp(-((i - r)^2 + (j - r)^2) / (2 sigma^2))``, ``r = size // 2``. The defaults (61, 3.0) are
    the DPS Gaussian-deblur kernel [chung2023dps].
    """
    size = _odd_size(size)
    sigma = float(sigma)
    if not (sigma > 0.0) or math.isinf(sigma):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def motion_kernel(
    size: int = 61,
    generator: torch.Generator | None = None,
    *,
    intensity: float = 0.5,
    extent: float = 0.5,
    steps: int | None = None,
) -> torch.Tensor:
    """Random motion-blur kernel ``(size, size)``, float64, sum 1: a smooth random trajectory, rasterised.

    Our own construction. The camera heading is a Gaussian random walk,
    ``theta_k = theta_0 + intensity * pi * sum_{j <= k} g_j / sqrt(steps)`` with ``theta_0 ~ U[0, 2 pi)`` and
    ``g_j ~ N(0, 1)`` from ``generator``; the path ``p_k = sum_{j <= k} (cos theta_j, sin theta_j)`` is
    centred on its bounding box and scaled so its longest side spans ``extent * (size - 3)`` pixels (``extent``
    in (0, 1]; 0.5 gives a ~29 px trajectory in a 61 x 61 kernel), then splatted
    bilinearly on the grid (centre ``size // 2``) and normalised. ``intensity`` in [0, 1]: 0 gives a straight
    line, 1 a strongly curved trajectory. (DPS [chung2023dps] uses 61 x 61 motion kernels of intensity 0.5 from
    an external generator; this is a stand-in with the same role, not the same law.)
    """
    size = _odd_size(size)
    if size < 5:
        raise ValueError(f"size must be >= 5 for a motion kernel, got {size}")
    intensity = float(intensity)
    if not (0.0 <= intensity <= 1.0):
        raise ValueError(f"intensity must lie in [0, 1], got {intensity}")
    extent = float(extent)
    if not (0.0 < extent <= 1.0):
        raise ValueError(f"extent must lie in (0, 1], got {extent}")
    steps = 4 * size if steps is None else int(steps)
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    theta0 = 2 * math.pi * torch.rand((), generator=generator, dtype=torch.float64)
    g = torch.randn(steps, generator=generator, dtype=torch.float64)
    theta = theta0 + intensity * math.pi * torch.cumsum(g, 0) / math.sqrt(steps)
    p = torch.cumsum(torch.stack([torch.cos(theta), torch.sin(theta)], -1), 0)
    lo, hi = p.min(0).values, p.max(0).values
    p = (p - (lo + hi) / 2) * (extent * (size - 3) / (hi - lo).max().clamp_min(1e-12)) + size // 2
    k = torch.zeros(size * size, dtype=torch.float64)
    i0 = p.floor().long()
    fr = p - i0
    for di in (0, 1):
        for dj in (0, 1):
            wgt = (fr[:, 0] if di else 1 - fr[:, 0]) * (fr[:, 1] if dj else 1 - fr[:, 1])
            k.index_add_(0, (i0[:, 0] + di) * size + (i0[:, 1] + dj), wgt)
    k = k.reshape(size, size)
    return k / k.sum()


class Blur(ImageOperator):
    """Blur with a centred kernel under a circular (periodic) boundary, applied per channel by FFT.

    ``(A x)[i, j] = sum_{a, b} k[a, b] x[(i - a + r_h) mod h, (j - b + r_w) mod w]`` with ``r = size // 2``
    (the same as ``scipy.ndimage.convolve(x, k, mode="wrap")``). ``A`` is circulant, so the 2-D DFT
    diagonalises it exactly: ``F(A x) = H * F(x)`` with the transfer function ``H = F(k0)``, ``k0`` the kernel
    wrapped onto the ``h x w`` grid with its centre at ``(0, 0)`` (kernels larger than the image wrap too).
    ``A^T`` is the correlation (spectrum ``conj(H)``) and
    ``A^+`` has spectrum ``conj(H) / |H|^2`` where ``|H| > tol * max|H|`` and 0 elsewhere.
    The singular values are ``|H|`` (DFT basis).

    Args:
        kernel: ``(kh, kw)`` real kernel, odd sizes (see :func:`gaussian_kernel`, :func:`motion_kernel`).
        boundary: only ``"circular"`` (periodic) is implemented.
        tol: relative cut-off of the pseudo-inverse. The default ``1e-6`` treats frequencies with
            ``|H| <= 1e-6 max|H|`` as the null space; ``pinv`` is then the exact Moore-Penrose inverse of the
            operator whose spectrum is truncated there (truncated SVD); ``A^+ A A^+ = A^+`` holds exactly and
            ``||A A^+ A x - A x|| <= tol max|H| ||x||``. A larger ``tol`` (the tasks use ``0.1``) limits noise
            amplification to ``1 / tol``; ``tol = 0`` keeps every frequency with ``H != 0`` (round-off included).

    Source: circulant/DFT diagonalisation, e.g. Hansen, Nagy and O'Leary 2006, "Deblurring Images", ch. 4;
    deepinv ``BlurFFT``.
    """

    has_transfer_function = True

    def __init__(self, kernel, boundary: str = "circular", *, tol: float = 1e-6):
        if boundary not in ("circular", "periodic"):
            raise ValueError(f"boundary must be 'circular' (periodic), got {boundary!r}")
        k = check_finite(as_tensor(kernel, "kernel", dtype=torch.float64), "kernel")
        if k.ndim != 2:
            raise ValueError(f"kernel must have shape (kh, kw), got {tuple(k.shape)}")
        _odd_size(k.shape[0], "kernel height")
        _odd_size(k.shape[1], "kernel width")
        tol = float(tol)
        if not (0.0 <= tol < 1.0):
            raise ValueError(f"tol must lie in [0, 1), got {tol}")
        self.kernel, self.boundary, self.tol = k.cpu(), "circular", tol
        self._cache: dict = {}

    def out_shape(self, image_shape):
        return self.in_shape(image_shape)

    def transfer_function(self, h: int, w: int, *, dtype=torch.float64, device=None, onesided: bool = False):
        """``H = F(k0)``, complex ``(h, w)`` (``(h, w // 2 + 1)`` if ``onesided``, the ``rfft2`` half).

        ``F`` is the unnormalised 2-D DFT (``torch.fft.fft2``); ``A x = F^-1(H * F(x))`` per channel.
        """
        key = (h, w, onesided)
        if key not in self._cache:
            kh, kw = self.kernel.shape
            rows = (torch.arange(kh) - kh // 2) % h
            cols = (torch.arange(kw) - kw // 2) % w
            k0 = torch.zeros(h * w, dtype=torch.float64)
            k0.index_add_(0, (rows[:, None] * w + cols[None, :]).reshape(-1), self.kernel.reshape(-1))
            k0 = k0.reshape(h, w)
            self._cache[key] = torch.fft.rfft2(k0) if onesided else torch.fft.fft2(k0)
        ctype = torch.complex128 if dtype == torch.float64 else torch.complex64
        kc = (key, ctype, str(device))  # cast copies kept per dtype and device
        if kc not in self._cache:
            self._cache[kc] = self._cache[key].to(dtype=ctype, device=device)
        return self._cache[kc]

    def _filter(self, t, name, which):
        xb, lead = _batch(t, name, 3)
        h, w = xb.shape[-2:]
        H = self.transfer_function(h, w, dtype=xb.dtype, device=xb.device, onesided=True)
        if which == "A":
            G = H
        elif which == "AT":
            G = H.conj()
        else:
            mag2 = H.real**2 + H.imag**2
            keep = mag2 > (self.tol**2) * mag2.max()  # |H| > tol max|H| (the half spectrum holds every |H|)
            G = torch.where(keep, H.conj() / torch.where(keep, mag2, torch.ones_like(mag2)), torch.zeros_like(H))
        out = torch.fft.irfft2(torch.fft.rfft2(xb) * G, s=(h, w))
        return out.reshape(*lead, *xb.shape[1:])

    def A(self, x):
        """Circular convolution with the kernel, ``(n, c, h, w) -> (n, c, h, w)``."""
        return self._filter(x, "x", "A")

    def A_adjoint(self, y):
        """``A^T y``: circular correlation (spectrum ``conj(H)``)."""
        return self._filter(y, "y", "AT")

    def pinv(self, y):
        """``A^+ y``: spectrum ``conj(H) / |H|^2`` on ``|H| > tol max|H|``, 0 elsewhere."""
        return self._filter(y, "y", "pinv")

    def singular_values(self, image_shape):
        """``|H|`` broadcast to ``(c, h, w)`` (DFT basis)."""
        c, h, w = self.in_shape(image_shape)
        return self.transfer_function(h, w).abs().expand(c, h, w).clone()


# ---------------------------------------------------------------------------------------------- CS
def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``(n, n)``, float64: ``D[k, i] = s_k cos(pi (2 i + 1) k / (2 n))`` with
    ``s_0 = sqrt(1/n)``, ``s_k = sqrt(2/n)``; ``D D^T = I``. Equals ``scipy.fft.dct(I, norm="ortho", axis=0)``.
    """
    n = int(n)
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    D = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    D[0] = D[0] / math.sqrt(2.0)
    return D


def hadamard_matrix(n: int) -> torch.Tensor:
    """Orthonormal Walsh-Hadamard matrix ``(n, n)`` (Sylvester / natural order, ``/ sqrt(n)``), ``n = 2^k``."""
    n = int(n)
    if n < 1 or n & (n - 1):
        raise ValueError(f"the Walsh-Hadamard transform needs a power-of-two size, got {n}")
    Hm = torch.ones(1, 1, dtype=torch.float64)
    while Hm.shape[0] < n:
        Hm = torch.cat([torch.cat([Hm, Hm], 1), torch.cat([Hm, -Hm], 1)], 0)
    return Hm / math.sqrt(n)


class CompressedSensing(ImageOperator):
    """Compressed sensing: a random subset of the coefficients of an orthonormal 2-D transform.

    ``A x = P T(s * x)``, with ``T(x)_c = D_h x_c D_w^T`` per channel (``D`` the orthonormal DCT-II matrix or
    the Walsh-Hadamard matrix), ``s`` a random +-1 sign pattern (only if ``sign_flip``; otherwise ``s = 1``)
    and ``P`` the selection of ``m = ceil(ratio * c h w)`` coefficients (a uniformly random subset, drawn from
    ``generator``, kept in increasing flat-index order). ``y`` has shape ``(n, m)``. Rows of ``A`` are
    orthonormal: ``A A^T = I``, so ``A^+ = A^T = T^T(P^T y) * s``. Singular values: ``m`` ones.

    Args:
        ratio: sampling ratio in (0, 1].
        shape: the image shape ``(c, h, w)``.
        generator: draws the subset (and the signs).
        transform: ``"dct"`` or ``"walsh"`` (power-of-two ``h`` and ``w``).
        sign_flip: apply the random sign pattern before the transform (spreads the energy of smooth
            images over all coefficients, as in structurally random matrices).

    Source: subsampled orthonormal transforms, e.g. Candes, Romberg and Tao 2006; "structurally random
    matrices" (Do et al. 2012, IEEE TSP).
    """

    def __init__(self, ratio, shape, generator=None, transform: str = "dct", *, sign_flip: bool = False):
        ratio = float(ratio)
        if not (0.0 < ratio <= 1.0):
            raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
        c, h, w = _image_shape(shape, "shape")
        if transform == "dct":
            self.Dh, self.Dw = dct_matrix(h), dct_matrix(w)
        elif transform == "walsh":
            self.Dh, self.Dw = hadamard_matrix(h), hadamard_matrix(w)
        else:
            raise ValueError(f"transform must be 'dct' or 'walsh', got {transform!r}")
        N = c * h * w
        self.m = math.ceil(ratio * N - 1e-9)  # guard against ratio * N = k + round-off
        self.ratio, self.shape, self.transform = ratio, (c, h, w), transform
        self.indices = torch.sort(torch.randperm(N, generator=generator)[: self.m]).values
        if sign_flip:
            self.signs = torch.randint(0, 2, (c, h, w), generator=generator).to(torch.float64) * 2 - 1
        else:
            self.signs = None
        self._cache: dict = {}

    def _indices(self, device):
        k = ("idx", str(device))
        if k not in self._cache:
            self._cache[k] = self.indices.to(device)
        return self._cache[k]

    def in_shape(self, image_shape):
        shape = _image_shape(image_shape)
        if shape != self.shape:
            raise ValueError(f"image shape {shape} does not match the operator's shape {self.shape}")
        return shape

    def out_shape(self, image_shape):
        self.in_shape(image_shape)
        return (self.m,)

    def A(self, x):
        """``P T(s x)``: ``(n, c, h, w) -> (n, m)``."""
        xb, lead = _batch(x, "x", 3)
        self.in_shape(xb.shape[1:])
        if self.signs is not None:
            xb = xb * _cast(self.signs, xb, self._cache, "s")
        z = _cast(self.Dh, xb, self._cache, "Dh") @ xb @ _cast(self.Dw, xb, self._cache, "Dw").transpose(0, 1)
        return z.reshape(z.shape[0], -1)[:, self._indices(xb.device)].reshape(*lead, self.m)

    def _AT(self, y):
        yb, lead = _batch(y, "y", 1)
        if yb.shape[-1] != self.m:
            raise ValueError(f"y must have shape (n, m) with m = {self.m}, got {tuple(y.shape)}")
        z = yb.new_zeros(yb.shape[0], math.prod(self.shape))
        z[:, self._indices(yb.device)] = yb
        Dh, Dw = _cast(self.Dh, yb, self._cache, "Dh"), _cast(self.Dw, yb, self._cache, "Dw")
        x = Dh.transpose(0, 1) @ z.reshape(-1, *self.shape) @ Dw
        if self.signs is not None:
            x = x * _cast(self.signs, x, self._cache, "s")
        return x.reshape(*lead, *self.shape)

    def A_adjoint(self, y):
        """``A^T y = s T^T(P^T y)``: ``(n, m) -> (n, c, h, w)``."""
        return self._AT(y)

    def pinv(self, y):
        """``A^+ y = A^T y`` (orthonormal rows)."""
        return self._AT(y)

    def singular_values(self, image_shape):
        """``m`` ones."""
        return torch.ones(self.out_shape(image_shape), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- denoising
class Denoising(ImageOperator):
    """Denoising: ``A = I`` (``A^T = A^+ = I``, singular values 1)."""

    def out_shape(self, image_shape):
        return self.in_shape(image_shape)

    def _id(self, t, name):
        tb, lead = _batch(t, name, 3)
        return tb.reshape(*lead, *tb.shape[1:])

    def A(self, x):
        """``x``."""
        return self._id(x, "x")

    def A_adjoint(self, y):
        """``y``."""
        return self._id(y, "y")

    def pinv(self, y):
        """``y``."""
        return self._id(y, "y")

    def singular_values(self, image_shape):
        """Ones of shape ``(c, h, w)``."""
        return torch.ones(self.in_shape(image_shape), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """One restoration task: ``make(image_shape (c, h, w), generator) -> operator`` and its default ``sigma_y``
    (model units, images in [-1, 1])."""

    make: Callable
    sigma_y: float
    description: str


# pinv cut-off of the blur tasks (our choice): noise amplification of A^+ at most 10x. On astronaut 256 px with
# sigma_y = 0.05 the RMS error of A^+ y is 0.16 (Gaussian) / 0.23 (motion) at 0.1, vs 0.48 / 1.56 at 1e-2.
TASK_BLUR_TOL = 0.1
TASK_INPAINT_DROP = 0.7  # drop rate of inpaint-random (our choice)
TASK_CS_RATIO = 0.25  # sampling ratio of cs (our choice)


def _make_sr4(shape, g):
    op = SuperResolution(4)
    op.in_shape(shape)
    return op


TASKS: dict[str, Task] = {
    "sr4": Task(_make_sr4, 0.05, "4x super-resolution by 4x4 average pooling (h, w divisible by 4)"),
    "inpaint-box": Task(
        lambda s, g: Inpainting(box_mask(s[1], s[2])), 0.05, "centred box of half the image size missing"
    ),
    "inpaint-random": Task(
        lambda s, g: Inpainting(random_mask(s, TASK_INPAINT_DROP, g)),
        0.05,
        f"{TASK_INPAINT_DROP:.0%} of the pixels missing at random (shared across channels)",
    ),
    "blur-gauss": Task(
        lambda s, g: Blur(gaussian_kernel(61, 3.0), tol=TASK_BLUR_TOL),
        0.05,
        "61x61 Gaussian blur, sigma 3 px, circular boundary",
    ),
    "blur-motion": Task(
        lambda s, g: Blur(motion_kernel(61, g, intensity=0.5), tol=TASK_BLUR_TOL),
        0.05,
        "61x61 random-trajectory motion blur, intensity 0.5, circular boundary",
    ),
    "cs": Task(
        lambda s, g: CompressedSensing(TASK_CS_RATIO, s, g, "dct"),
        0.05,
        f"compressed sensing: {TASK_CS_RATIO:.0%} random orthonormal DCT-II coefficients",
    ),
    "denoise": Task(lambda s, g: Denoising(), 0.1, "denoising (A = I); sigma_y 0.1 (our choice)"),
}


def make_task(name: str, image_shape, generator: torch.Generator | None = None):
    """``(operator, sigma_y)`` for task ``name`` on images of shape ``(c, h, w)``.

    ``generator`` draws the random parts (mask, motion kernel, CS subset); ``None`` uses a fresh generator
    seeded with 0, so the default task is deterministic. Raises ``ValueError`` for an unknown name or a size
    that does not fit (e.g. ``sr4`` needs ``h`` and ``w`` divisible by 4).

    Examples:
        >>> op, sigma_y = make_task("sr4", (3, 8, 8))
        >>> op.out_shape((3, 8, 8)), sigma_y
        ((3, 2, 2), 0.05)
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    shape = _image_shape(image_shape)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    task = TASKS[name]
    op = task.make(shape, generator)
    op.in_shape(shape)
    return op, task.sigma_y
