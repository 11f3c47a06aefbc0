"""Stationary Gaussian image priors, diagonal in the 2-D DFT basis: exact posteriors and D-P curves at any size.

Each channel of ``x (c, h, w)`` is an independent stationary Gaussian on the periodic grid (no colour mixing) with
``Cov[x_c] = F^H diag(P_c) F``, ``F`` the orthonormal 2-D DFT (``torch.fft.fft2(norm="ortho")``) and
``P_c[k] = P_c[-k] >= 0`` the power spectrum. For a circulant operator with transfer function ``H`` (Blur, circular
boundary; Denoising has ``H = 1``) every matrix is diagonal in that basis (docs/theory §13.5): posterior spectrum
``Sigma = P s^2 / (|H|^2 P + s^2)``, Wiener mean ``mu = m + F^H [P conj(H) / (|H|^2 P + s^2)] F (y - A m)``,
``D* = sum_k Sigma[k]`` and ``W^2 = sum_k (sqrt(P[k]) - sqrt(P*[k]))^2``, ``P* = P - Sigma``. Every operation is
a filter ``x -> F^H diag(g) F x`` with ``g[-k] = conj(g[k])``, which maps real images to real images.

:class:`PowerLawSpectrum` is ``P(f) = A / (f0^2 + |f|^2)^(alpha/2)`` (``f`` in cycles per pixel, so one law serves
every size); :meth:`SpectralGaussianPrior.fit_power_law` fits it to periodograms of photo crops (alpha ~ 3.1-3.2
on the bundled photos, docs/theory §13.5). Shapes: images ``(..., c, h, w)``; spectra ``(c, h, w)`` in ``fft2``
order (DC at ``[.., 0, 0]``), stored in float64 and cast to the input's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_alpha_bar, check_sigma
from ..denoisers import Denoiser
from ..dp_curve import DPCurve

__all__ = [
    "PowerLawSpectrum",
    "SpectralGaussian",
    "SpectralGaussianPrior",
    "SpectralDenoiser",
    "SpectralLinearProblem",
    "SpectralOptimalEstimator",
    "periodogram",
    "frequency_radius",
    "transfer_spectrum",
]


# ---------------------------------------------------------------------------------------------- helpers
def _fft(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DFT over the last two dims."""
    return torch.fft.fft2(x, norm="ortho")


def _ifft_real(u: torch.Tensor) -> torch.Tensor:
    """Inverse orthonormal 2-D DFT, real part (the spectra used here are Hermitian: see the module doc)."""
    return torch.fft.ifft2(u, norm="ortho").real


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` cast to ``x``'s dtype (real, or the matching complex dtype when ``t`` is complex) and device."""
    if t.is_complex():
        dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    else:
        dtype = x.dtype
    return t.to(dtype=dtype, device=x.device)


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``F^H diag(g) F x`` for ``x (..., c, h, w)`` and a Hermitian spectrum ``g (c, h, w)``."""
    return _ifft_real(_fft(x) * _like(g, x))


def _neg(g: torch.Tensor) -> torch.Tensor:
    """``g[-k]``: the spectrum at the negated frequency (index ``-k mod n`` in both dims)."""
    return torch.roll(torch.flip(g, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def frequency_radius(h: int, w: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """``|f|`` in cycles per pixel on the ``fft2`` grid, ``(h, w)``: ``sqrt(fy^2 + fx^2)``, ``fy = fftfreq(h)``."""
    fy = torch.fft.fftfreq(h, dtype=dtype, device=device)
    fx = torch.fft.fftfreq(w, dtype=dtype, device=device)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def periodogram(images: torch.Tensor, mean=None) -> torch.Tensor:
    """Averaged periodogram ``mean_i |F(x_i - m)|^2`` of ``images (n, c, h, w)``, ``(c, h, w)`` float64.

    With the orthonormal DFT this is an unbiased estimate of the power spectrum ``P`` of a stationary periodic
    Gaussian (each term has mean ``P[k]``); ``mean`` (``(c,)``, default the per-channel pixel mean) is removed.
    """
    x = torch.as_tensor(images).to(torch.float64)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w), got {tuple(x.shape)}")
    m = x.mean(dim=(0, 2, 3)) if mean is None else torch.as_tensor(mean, dtype=torch.float64)
    u = _fft(x - m[:, None, None])
    return (u.real**2 + u.imag**2).mean(0)


# ---------------------------------------------------------------------------------------------- power law
@dataclass(frozen=True)
class PowerLawSpectrum:
    """``P_c(f) = A_c / (f0_c^2 + |f|^2)^(alpha_c / 2)``, ``f`` in cycles per pixel; one law per channel.

    Attributes:
        amplitude: ``A (c,)``, > 0.
        f0: ``(c,)``, > 0: the low-frequency roll-off (keeps ``P(0)`` finite).
        alpha: ``(c,)``: the spectral slope (about 2 for natural images; Field 1987, van der Schaaf & van
            Hateren 1996).
    """

    amplitude: torch.Tensor
    f0: torch.Tensor
    alpha: torch.Tensor

    def __post_init__(self):
        for name in ("amplitude", "f0", "alpha"):
            v = torch.as_tensor(getattr(self, name), dtype=torch.float64).reshape(-1)
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"{name} must be finite")
            object.__setattr__(self, name, v)
        if not (self.amplitude.shape == self.f0.shape == self.alpha.shape):
            raise ValueError("amplitude, f0 and alpha must have the same shape (c,)")
        if bool((self.amplitude <= 0).any()) or bool((self.f0 <= 0).any()):
            raise ValueError("amplitude and f0 must be > 0")

    @property
    def channels(self) -> int:
        return self.alpha.shape[0]

    def power(self, h: int, w: int) -> torch.Tensor:
        """The power spectrum on the ``h x w`` ``fft2`` grid, ``(c, h, w)`` float64."""
        r2 = frequency_radius(int(h), int(w)) ** 2
        A, f0, a = (t[:, None, None] for t in (self.amplitude, self.f0, self.alpha))
        return A / (f0**2 + r2) ** (a / 2)


def _fit_power_law_1d(r2, logI, f0_bounds):
    """Least squares of ``log I = log A - (alpha/2) log(f0^2 + r^2)`` over (log A, alpha, f0) (numpy).

    For fixed ``f0`` the problem is linear in ``(log A, alpha)``; ``f0`` is found by a log-grid search refined
    with a bounded scalar minimiser.
    """
    import numpy as np
    from scipy.optimize import minimize_scalar

    def solve(log_f0):
        X = np.stack([np.ones_like(r2), -0.5 * np.log(np.exp(2 * log_f0) + r2)], 1)
        coef, *_ = np.linalg.lstsq(X, logI, rcond=None)
        res = logI - X @ coef
        return float(res @ res), coef

    lo, hi = np.log(f0_bounds[0]), np.log(f0_bounds[1])
    grid = np.linspace(lo, hi, 121)
    sse = [solve(g)[0] for g in grid]
    i = int(np.argmin(sse))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    opt = minimize_scalar(lambda g: solve(g)[0], bounds=(a, b), method="bounded", options={"xatol": 1e-10})
    best = opt.x if opt.fun <= sse[i] else grid[i]
    _, (logA, alpha) = solve(best)
    return math.exp(logA), math.exp(best), float(alpha)


# ---------------------------------------------------------------------------------------------- the law
class SpectralGaussian:
    """A Gaussian on images ``(c, h, w)`` whose covariance is diagonal in the orthonormal 2-D DFT basis.

    ``x = mean + F^H diag(sqrt(power)) F z`` with ``z ~ N(0, I)`` real: covariance ``F^H diag(power) F`` per
    channel, channels independent (see the module doc for the real/complex bookkeeping).

    Args:
        mean: ``(c,)`` (a constant per channel: stationary), ``(c, h, w)`` (e.g. a posterior mean) or
            ``(n, c, h, w)`` (one mean per particle, e.g. posteriors for a batch of measurements; ``sample`` then
            needs ``n`` draws and the denoiser row ``i`` of ``x_t``).
        power: ``(c, h, w)``, >= 0, with ``power[k] = power[-k]`` (checked to 1e-12 relative; else the covariance
            would not be real).
    """

    def __init__(self, mean, power):
        P = torch.as_tensor(power).to(torch.float64)
        if P.ndim != 3:
            raise ValueError(f"power must have shape (c, h, w), got {tuple(P.shape)}")
        if not bool(torch.isfinite(P).all()) or bool((P < 0).any()):
            raise ValueError("power must be finite and >= 0")
        scale = float(P.abs().max()) if P.numel() else 0.0
        if float((P - _neg(P)).abs().max()) > 1e-12 * max(scale, 1e-300):
            raise ValueError("power must satisfy power[k] = power[-k] (a real stationary covariance)")
        self.power = 0.5 * (P + _neg(P))
        c, h, w = P.shape
        m = torch.as_tensor(mean).to(torch.float64)
        if not bool(torch.isfinite(m).all()):
            raise ValueError("mean must be finite")
        if m.ndim == 1:
            m = m[:, None, None]
        ok = (
            m.ndim in (3, 4)
            and m.shape[-3] == c
            and all(a in (1, b) for a, b in zip(m.shape[-2:], (h, w), strict=True))
        )
        if not ok:
            raise ValueError(
                f"mean must have shape (c,), (c, h, w) or (n, c, h, w) with (c, h, w) = {(c, h, w)}, "
                f"got {tuple(m.shape)}"
            )
        self._mean = m

    # ------------------------------------------------------------------ shapes
    @property
    def shape(self) -> tuple[int, int, int]:
        """``(c, h, w)``."""
        return tuple(self.power.shape)

    @property
    def dim(self) -> int:
        return self.power.numel()

    @property
    def mean(self) -> torch.Tensor:
        """``E[x]``: ``(c, h, w)``, or ``(n, c, h, w)`` for per-particle means (float64)."""
        return self._mean.expand(*self._mean.shape[:-2], *self.shape[-2:]).clone()

    @property
    def total_variance(self) -> float:
        """``tr Cov = sum_k power[k]``."""
        return float(self.power.sum())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape})"

    def _check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 3 or tuple(x.shape[-3:]) != self.shape:
            shape = None if not isinstance(x, torch.Tensor) else tuple(x.shape)
            raise ValueError(f"{name} must be a tensor of shape (..., {', '.join(map(str, self.shape))}), got {shape}")
        return x

    def cov_matrix(self) -> torch.Tensor:
        """The dense covariance ``(d, d)`` on flattened images (the covariance filter applied to the identity).
        For tiny sizes only."""
        d = self.dim
        eye = torch.eye(d, dtype=torch.float64).reshape(d, *self.shape)
        return _filter(eye, self.power).reshape(d, d)

    # ------------------------------------------------------------------ density and draws
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; m, C) = -1/2 (sum_k |u_k|^2 / P[k] + sum_k log P[k] + d log 2 pi)``, ``u = F(x - m)``.

        ``x (..., c, h, w) -> (...)``; needs ``power > 0`` everywhere.
        """
        x = self._check(x, "x")
        if bool((self.power <= 0).any()):
            raise ValueError("log_prob needs power > 0 at every frequency (the covariance is singular)")
        u = _fft(x - _like(self._mean, x))
        quad = ((u.real**2 + u.imag**2) / _like(self.power, x)).sum(dim=(-3, -2, -1))
        return -0.5 * (quad + float(self.power.log().sum()) + self.dim * math.log(2 * math.pi))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``grad log p(x) = -F^H diag(1/P) F (x - m)``; needs ``power > 0``."""
        x = self._check(x, "x")
        if bool((self.power <= 0).any()):
            raise ValueError("score needs power > 0 at every frequency")
        return -_filter(x - _like(self._mean, x), 1.0 / self.power)

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
        """``n`` exact draws ``(n, c, h, w)``: ``m + F^H diag(sqrt(P)) F z``, ``z ~ N(0, I)`` real white noise."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        z = torch.randn(n, *self.shape, generator=generator, dtype=dtype)
        return _like(self._mean, z) + _filter(z, self.power.sqrt())

    # ------------------------------------------------------------------ diffusion
    def diffuse(self, alpha_bar) -> SpectralGaussian:
        """Law of ``sqrt(ab) x0 + sqrt(1 - ab) eps``: mean ``sqrt(ab) m``, power ``ab P + 1 - ab``."""
        ab = check_alpha_bar(alpha_bar)
        return SpectralGaussian(math.sqrt(ab) * self._mean, ab * self.power + (1.0 - ab))

    def denoise_gain(self, alpha_bar) -> torch.Tensor:
        """Spectrum of ``K_t = dE[x0|x_t]/dx_t``: ``sqrt(ab) P / (ab P + 1 - ab)``, ``(c, h, w)``."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            return torch.ones_like(self.power)
        return math.sqrt(ab) * self.power / (ab * self.power + (1.0 - ab))

    def denoise(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """Exact Tweedie ``E[x0 | x_t] = m + F^H diag(K) F (x_t - sqrt(ab) m)`` for ``x_t (..., c, h, w)``."""
        ab = check_alpha_bar(alpha_bar)
        x_t = self._check(x_t, "x_t")
        if ab == 1.0:
            return x_t.clone()
        m = _like(self._mean, x_t)
        return m + _filter(x_t - math.sqrt(ab) * m, self.denoise_gain(ab))

    def denoise_cov(self, alpha_bar) -> torch.Tensor:
        """``Cov[x0 | x_t]`` (constant in ``x_t``), as its spectrum ``P (1 - ab) / (ab P + 1 - ab)``, ``(c, h, w)``."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            return torch.zeros_like(self.power)
        return self.power * (1.0 - ab) / (ab * self.power + (1.0 - ab))

    def sample_x0(self, x_t: torch.Tensor, alpha_bar, *, generator=None) -> torch.Tensor:
        """One exact draw from ``p(x0 | x_t)`` per image of ``x_t (n, c, h, w)``:
        ``E[x0|x_t] + F^H diag(sqrt(V)) F z`` with ``V`` = :meth:`denoise_cov`."""
        ab = check_alpha_bar(alpha_bar)
        x_t = self._check(x_t, "x_t")
        if ab == 1.0:
            return x_t.clone()
        z = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)
        return self.denoise(x_t, ab) + _filter(z, self.denoise_cov(ab).sqrt())


class SpectralGaussianPrior(SpectralGaussian):
    """A stationary Gaussian image prior: constant mean per channel, power spectrum ``P`` (see the module doc).

    Args:
        mean: ``(c,)``.
        power: a ``(c, h, w)`` spectrum, or a :class:`PowerLawSpectrum` (then ``size=(h, w)`` is required).
        size: ``(h, w)`` when ``power`` is a law.
        mean_var: optional ``(c,)``: the variance of an image's spatial mean ``mean_{ij} x_c[i, j]``. It sets the DC
            power ``P[0] = h w mean_var`` (the orthonormal DC coefficient is ``sqrt(h w)`` times the spatial
            mean); otherwise ``P[0]`` is the law's ``A / f0^alpha`` (or the given spectrum's). Photo crops have a
            much larger DC variance than a power law fitted to the other frequencies predicts (the brightness of
            crops varies across photos); :meth:`fit_power_law` therefore keeps the empirical one. :meth:`at_size`
            keeps ``mean_var`` fixed, an approximation (for a true 1/f^2 field it decays slowly with the size).

    Examples:
        >>> import torch
        >>> law = PowerLawSpectrum([1e-3], [0.01], [2.0])
        >>> prior = SpectralGaussianPrior([0.0], law, size=(8, 8))
        >>> prior.sample(2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, mean, power, *, size=None, mean_var=None):
        self.law = None
        self.mean_var = None
        if isinstance(power, PowerLawSpectrum):
            if size is None:
                raise ValueError("size=(h, w) is required when power is a PowerLawSpectrum")
            h, w = (int(s) for s in size)
            self.law = power
            power = power.power(h, w)
        m = torch.as_tensor(mean).to(torch.float64)
        if m.ndim != 1:
            raise ValueError(f"a stationary prior has a constant mean per channel, shape (c,); got {tuple(m.shape)}")
        if mean_var is not None:
            power = torch.as_tensor(power).to(torch.float64).clone()
            v = torch.as_tensor(mean_var, dtype=torch.float64).reshape(-1)
            if v.shape != (power.shape[0],) or not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
                raise ValueError(f"mean_var must be (c,) finite and >= 0, got {tuple(v.shape)}")
            power[:, 0, 0] = power.shape[-2] * power.shape[-1] * v
            self.mean_var = v
        super().__init__(m, power)

    def at_size(self, h: int, w: int) -> SpectralGaussianPrior:
        """The same power-law prior on ``h x w`` images (needs a law)."""
        if self.law is None:
            raise ValueError("at_size needs a prior built from a PowerLawSpectrum")
        return SpectralGaussianPrior(self._mean.reshape(-1), self.law, size=(h, w), mean_var=self.mean_var)

    @classmethod
    def fit_power_law(cls, images, size=None, *, f0_bounds=(1e-3, 0.5), dc: str = "empirical") -> SpectralGaussianPrior:
        """Fit ``P(f) = A / (f0^2 + |f|^2)^(alpha/2)`` per channel to the periodogram of ``images (n, c, h, w)``.

        The mean is the per-channel pixel mean; the periodogram is :func:`periodogram` (orthonormal DFT, mean
        removed, averaged over images); ``(log A, alpha, f0)`` minimise ``sum_{k != 0} (log I[k] - log P(f_k))^2``
        over the non-DC frequencies (least squares in log space). The DC term holds the mean and is not fitted:
        with ``dc="empirical"`` (default) its variance is the empirical variance of the crops' spatial means
        (``mean_var``), with ``dc="law"`` the law's ``A / f0^alpha``. Crops are not periodic, so edge leakage adds
        some high-frequency power along the axes; no window is applied (the circulant model's own maximum
        likelihood spectrum is the plain periodogram).

        Args:
            images: ``(n, c, h, w)`` crops, e.g. :func:`~dptheory.images.data.photo_patches`.
            size: ``(h, w)`` of the returned prior (default: the crops' size); the law is size-free.
            f0_bounds: search interval of ``f0`` in cycles per pixel.
            dc: ``"empirical"`` or ``"law"`` (see above).

        Source: the power-law model of van der Schaaf & van Hateren (1996); Simoncelli & Olshausen (2001).
        """
        import numpy as np

        if dc not in ("empirical", "law"):
            raise ValueError(f"dc must be 'empirical' or 'law', got {dc!r}")
        x = torch.as_tensor(images).to(torch.float64)
        if x.ndim != 4 or x.shape[0] < 1:
            raise ValueError(f"images must have shape (n, c, h, w), got {tuple(x.shape)}")
        _, c, h, w = x.shape
        mean = x.mean(dim=(0, 2, 3))
        I_ = periodogram(x, mean)
        r2 = (frequency_radius(h, w) ** 2).reshape(-1).numpy()
        keep = r2 > 0
        amps, f0s, alphas = [], [], []
        for ch in range(c):
            Ic = I_[ch].reshape(-1).numpy()
            sel = keep & (Ic > 0)
            A, f0, alpha = _fit_power_law_1d(r2[sel], np.log(Ic[sel]), f0_bounds)
            amps.append(A)
            f0s.append(f0)
            alphas.append(alpha)
        law = PowerLawSpectrum(amps, f0s, alphas)
        mean_var = None
        if dc == "empirical":
            mean_var = (x.mean(dim=(2, 3)) - mean).square().mean(0)
        return cls(mean, law, size=(h, w) if size is None else size, mean_var=mean_var)


# ---------------------------------------------------------------------------------------------- denoiser
class SpectralDenoiser(Denoiser):
    """The exact Tweedie denoiser of a :class:`SpectralGaussian` (prior or posterior), for ``(n, c, h, w)``.

    ``__call__`` is ``E[x0 | x_t]``, ``score`` the exact diffused score, ``cov_spectrum`` the spectrum of
    ``Cov[x0 | x_t]`` and ``sample_x0`` an exact draw from ``p(x0 | x_t)`` drawn per Fourier coefficient (no
    dense covariance), so the exact ``posterior`` sampler and VSRD's exact kernel run unchanged. For a prior,
    :meth:`condition` returns the exact conditional denoiser of a circulant problem (used by ``solve_image``).
    """

    def __init__(self, law: SpectralGaussian):
        if not isinstance(law, SpectralGaussian):
            raise TypeError(f"law must be a SpectralGaussian, got {type(law).__name__}")
        self.law = law

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        return self.law.denoise(x_t, alpha_bar)

    def score(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """Exact diffused score (direct, accurate near ``ab = 1``)."""
        return self.law.diffuse(alpha_bar).score(x_t)

    def cov_spectrum(self, alpha_bar: float) -> torch.Tensor:
        """``Cov[x0 | x_t] = F^H diag(V) F``; returns ``V (c, h, w)``."""
        return self.law.denoise_cov(alpha_bar)

    def sample_x0(self, x_t: torch.Tensor, alpha_bar: float, generator=None) -> torch.Tensor:
        """One exact draw from ``p(x0 | x_t)`` per row of ``x_t (n, c, h, w)``."""
        return self.law.sample_x0(x_t, alpha_bar, generator=generator)

    def condition(self, operator, y: torch.Tensor, sigma_y: float) -> SpectralDenoiser:
        """``E[x0 | x_t, y]``: the denoiser of the exact posterior (``y (1, c, h, w)`` shared or ``(n, ...)``)."""
        return SpectralLinearProblem(self.law, operator, sigma_y).conditional_denoiser(y)


# ---------------------------------------------------------------------------------------------- problems
def transfer_spectrum(operator, shape) -> torch.Tensor:
    """The transfer function ``H`` (``F(A x) = H * F(x)``), complex ``(c, h, w)``, of a circulant operator:
    :class:`~dptheory.images.operators.Blur` (circular boundary) or
    :class:`~dptheory.images.operators.Denoising` (``H = 1``)."""
    from .operators import Blur, Denoising

    c, h, w = shape
    if isinstance(operator, Denoising):
        return torch.ones(c, h, w, dtype=torch.complex128)
    if isinstance(operator, Blur):
        if operator.boundary != "circular":
            raise ValueError("only a Blur with a circular boundary is circulant")
        # the unnormalised DFT of the kernel is the eigenvalue of the circulant for both DFT normalisations
        return operator.transfer_function(h, w, dtype=torch.float64).expand(c, h, w).clone()
    raise TypeError(f"operator must be a circulant Blur or Denoising, got {type(operator).__name__}")


class SpectralLinearProblem:
    """``X ~ prior`` (a :class:`SpectralGaussian`), ``Y = A X + N(0, sigma_y^2 I)`` with a circulant ``A``.

    Everything is exact and diagonal in the DFT basis (module doc; docs/theory §2.1-2.4). ``P``, ``H`` and the
    spectra below are ``(c, h, w)``.

    Args:
        prior: a :class:`SpectralGaussian` with a mean that is shared (not per particle).
        operator: :class:`~dptheory.images.operators.Blur` (circular) or ``Denoising``.
        sigma_y: noise std >= 0 (0 allowed; coefficients with ``|H|^2 P = 0`` then keep the prior variance).
    """

    #: coefficients whose explained fraction ``P*/P`` is below this are treated as unobserved (``P* = 0``) by
    #: the joint-optimal estimator; their cross term ``sqrt(P P*)`` is then below ``1e-6 P``.
    null_rtol = 1e-12

    def __init__(self, prior: SpectralGaussian, operator, sigma_y):
        if not isinstance(prior, SpectralGaussian):
            raise TypeError(f"prior must be a SpectralGaussian, got {type(prior).__name__}")
        if prior._mean.ndim == 4:
            raise ValueError("the prior must have one shared mean, not one per particle")
        self.prior, self.operator = prior, operator
        self.sigma_y = check_sigma(sigma_y, "sigma_y")
        self.H = transfer_spectrum(operator, prior.shape)
        P, s2 = prior.power, self.sigma_y**2
        H2 = self.H.real**2 + self.H.imag**2
        denom = H2 * P + s2
        safe = torch.where(denom > 0, denom, torch.ones_like(denom))
        self._gain = torch.where(denom > 0, P * self.H.conj() / safe, torch.zeros_like(self.H))  # Wiener filter
        self.post_power = torch.where(denom > 0, P * s2 / safe, P).clamp_min(0.0)  # 1/(1/P + |H|^2/s^2)
        # P* = P - Sigma, computed without the cancellation (a coefficient with |H| ~ 1e-17 must give P* ~ 1e-34 P,
        # not a round-off 1e-16 P, whose square root would enter W at 1e-8)
        self.mmse_power = torch.where(denom > 0, P * P * H2 / safe, torch.zeros_like(P))

    @property
    def shape(self):
        return self.prior.shape

    def measure(self, x: torch.Tensor, *, generator=None) -> torch.Tensor:
        """``y = A x + sigma_y z`` for ``x (n, c, h, w)``."""
        Ax = self.operator.A(x)
        return Ax + self.sigma_y * torch.randn(Ax.shape, generator=generator, dtype=Ax.dtype, device=Ax.device)

    def sample_joint(self, n: int, *, generator=None):
        """``n`` draws of ``(X, Y)``, each ``(n, c, h, w)``."""
        x = self.prior.sample(n, generator=generator)
        return x, self.measure(x, generator=generator)

    def mmse(self, y: torch.Tensor) -> torch.Tensor:
        """``E[X | y] = m + F^H [P conj(H) / (|H|^2 P + s^2)] F (y - A m)`` for ``y (..., c, h, w)``."""
        y = self.prior._check(y, "y")
        m = _like(self.prior._mean, y)
        Am = _filter(m.expand(*m.shape[:-2], *y.shape[-2:]), self.H)
        return m + _filter(y - Am, self._gain)

    def posterior(self, y: torch.Tensor) -> SpectralGaussian:
        """The exact posterior: mean :meth:`mmse` (``(c, h, w)``, or ``(n, c, h, w)`` for a batch of ``y``),
        power ``Sigma = P s^2 / (|H|^2 P + s^2)``. ``y (c, h, w)`` or ``(1, c, h, w)``: one measurement."""
        y = self.prior._check(y, "y").to(torch.float64)
        mu = self.mmse(y)
        if mu.ndim == 4 and mu.shape[0] == 1:
            mu = mu[0]
        return SpectralGaussian(mu, self.post_power)

    def conditional_denoiser(self, y: torch.Tensor) -> SpectralDenoiser:
        """The exact conditional denoiser ``E[x0 | x_t, y]`` (the :class:`SpectralDenoiser` of the posterior)."""
        return SpectralDenoiser(self.posterior(y))

    def mmse_error(self) -> float:
        """``D* = E||X - E[X|Y]||^2 = tr Sigma = sum_k Sigma[k]`` (exact)."""
        return float(self.post_power.sum())

    def mmse_law(self) -> SpectralGaussian:
        """Law of ``X* = E[X|Y]``: ``N(m, F^H diag(P*) F)``, ``P* = P - Sigma``."""
        return SpectralGaussian(self.prior._mean, self.mmse_power)

    def mmse_w2_squared(self) -> float:
        """``W^2 = W2^2(p_X, p_{X*}) = sum_k (sqrt(P) - sqrt(P*))^2`` (commuting covariances: Bures reduces to
        a Frobenius distance of square roots)."""
        return float((self.prior.power.sqrt() - self.mmse_power.sqrt()).square().sum())

    def optimal_dp_curve(self) -> DPCurve:
        """The exact joint optimal curve ``D(P) = D* + ((W - P)_+)^2`` (Freirich et al. 2021, docs/theory §2.3)."""
        return DPCurve(self.mmse_error(), math.sqrt(self.mmse_w2_squared()), "joint", note="exact (spectral)")

    def per_measurement_dp_curve(self) -> DPCurve:
        """``D_y(P) = tr Sigma + ((sqrt(tr Sigma) - P)_+)^2``, the same for every ``y`` (docs/theory §2.4)."""
        d = self.mmse_error()
        return DPCurve(d, math.sqrt(d), "per-measurement", note="exact (spectral)")

    def shrunk_posterior_samples(self, y: torch.Tensor, P: float, n: int, *, generator=None) -> torch.Tensor:
        """Per-measurement optimal estimator at perception ``P``: draws of ``N(mu_y, c^2 Sigma)``,
        ``c = (1 - P / sqrt(tr Sigma))_+`` (docs/theory §1.6). Returns ``(n, c, h, w)``."""
        P = float(P)
        if not P >= 0.0:
            raise ValueError(f"P must be >= 0, got {P}")
        w = math.sqrt(self.mmse_error())
        cc = max(0.0, 1.0 - P / w) if w > 0 else 0.0
        post = self.posterior(y)
        mu = post.mean
        return mu + cc * (post.sample(n, generator=generator) - mu)

    def joint_optimal_estimator(self, P: float) -> SpectralOptimalEstimator:
        """The joint-optimal estimator at perception ``P`` (Freirich et al. 2021; docs/theory §2.3), diagonal in DFT:
        ``X^ = m + F^H diag((1 - c) + c T) F (X* - m) + c W0``, ``T = sqrt(P / P*)`` where ``P* > 0``,
        ``W0`` with spectrum ``Q = P`` where ``P* = 0`` (relative to :attr:`null_rtol`), ``c = (1 - P / W)_+``."""
        P = float(P)
        if not P >= 0.0:
            raise ValueError(f"P must be >= 0, got {P}")
        W = math.sqrt(self.mmse_w2_squared())
        c = max(0.0, 1.0 - P / W) if W > 0 else 0.0
        Pp, Ps = self.prior.power, self.mmse_power
        seen = Ps > self.null_rtol * Pp
        T = torch.where(seen, (Pp / torch.where(seen, Ps, torch.ones_like(Ps))).sqrt(), torch.zeros_like(Pp))
        Q = torch.where(seen, torch.zeros_like(Pp), Pp)
        return SpectralOptimalEstimator(self, P, c, (1.0 - c) + c * T, c**2 * Q)


@dataclass(frozen=True)
class SpectralOptimalEstimator:
    """``X^_P = m + F^H diag(t) F (X* - m) + W0``, ``W0 ~ N(0, F^H diag(q) F)`` (docs/theory §2.3, in the DFT basis).

    Attributes:
        problem: the :class:`SpectralLinearProblem`.
        P: target perception ``W2(p_X, p_X^)``.
        c: ``(1 - P / W)_+``.
        transform: ``t = (1 - c) + c T``, ``(c, h, w)``.
        noise_power: ``q = c^2 Q``, ``(c, h, w)``.
    """

    problem: SpectralLinearProblem
    P: float
    c: float
    transform: torch.Tensor
    noise_power: torch.Tensor

    def __call__(self, y: torch.Tensor, *, generator=None) -> torch.Tensor:
        """Apply to measurements ``y (n, c, h, w)`` -> ``(n, c, h, w)``."""
        m = _like(self.problem.prior._mean, y)
        out = m + _filter(self.problem.mmse(y) - m, self.transform)
        if bool((self.noise_power > 0).any()):
            z = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device)
            out = out + _filter(z, self.noise_power.sqrt())
        return out

    def law(self) -> SpectralGaussian:
        """``N(m, F^H diag(t^2 P* + q) F)``: the exact law of the estimate."""
        prob = self.problem
        return SpectralGaussian(prob.prior._mean, self.transform**2 * prob.mmse_power + self.noise_power)

    def distortion(self) -> float:
        """Exact MSE from the law of ``(X, X^)``: ``sum_k P + t^2 P* + q - 2 t P*`` (``Cov(X, X*) = S*``)."""
        t, Ps = self.transform, self.problem.mmse_power
        return float((self.problem.prior.power + t**2 * Ps + self.noise_power - 2 * t * Ps).sum())
