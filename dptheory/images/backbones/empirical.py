"""The exact denoiser of a finite image set: the diffused empirical law (docs/theory §13.4).

For images ``x_1..x_N`` with weights ``w_i`` (uniform by default) the prior ``sum_i w_i delta_{x_i}`` diffuses to
the mixture ``sum_i w_i N(sqrt(ab) x_i, (1 - ab) I)``, whose Tweedie denoiser is the weighted average

    E[x0 | x_t] = sum_i r_i(x_t) x_i,   r_i(x_t) = softmax_i(log w_i - ||x_t - sqrt(ab) x_i||^2 / (2 (1 - ab))).

``p(x0 | x_t)`` is the discrete law ``r(x_t)`` on the images, so exact draws (``sample_x0``) and the exact
covariance are available; conditioning on ``y = A x + N(0, sigma_y^2 I)`` (:meth:`condition`) reweights the images
by ``N(y; A x_i, sigma_y^2 I)``, which gives an exact MMSE reference at image scale. The logits are formed in
float64 whatever the input dtype (at small noise they reach ``||x||^2 / (1 - ab)``, about 1e9 for a 256x256 photo),
one matrix product per chunk of ``chunk_size`` images (default: as many as fit in 2^24 numbers), each chunk moved
to ``x_t``'s device when used; the expansion used is in docs/theory §13.4.
"""

from __future__ import annotations

import math

import torch

from ..._checks import check_alpha_bar
from ...denoisers import Denoiser
from ...operators import LinearOperator

__all__ = ["EmpiricalMixtureDenoiser"]


def _apply_operator(operator, x: torch.Tensor) -> torch.Tensor:
    """``A x`` for a :class:`~dptheory.operators.LinearOperator`, a callable, or a dense ``(m, d)`` matrix on
    flattened images."""
    if isinstance(operator, LinearOperator):
        return operator.A(x)
    if isinstance(operator, torch.Tensor):
        return x.flatten(1) @ operator.to(x).transpose(-1, -2)
    if callable(operator):
        return operator(x)
    raise TypeError(f"operator must be a LinearOperator, be callable or be a (m, d) matrix, got {type(operator)}")


class EmpiricalMixtureDenoiser(Denoiser):
    """Exact Tweedie denoiser of the empirical law of ``images`` (module docstring for the formulas).

    Args:
        images: ``(N, c, h, w)`` image batch (or ``(N, d)`` vectors), the atoms ``x_i``.
        log_weights: optional ``(N,)`` log-weights (need not be normalised), or ``(k, N)``: one row per particle,
            used by :meth:`condition` with one measurement per particle. Uniform when ``None``.
        chunk_size: images per matrix product; default ``max(1, 2**24 // d)`` (bounds memory and device transfers).

    Examples:
        >>> import torch
        >>> D = EmpiricalMixtureDenoiser(torch.tensor([[-1.0], [1.0]], dtype=torch.float64))
        >>> round(float(D(torch.tensor([[0.5]], dtype=torch.float64), 0.5)), 6)  # tanh(sqrt(ab) x / (1 - ab))
        0.608859
    """

    def __init__(self, images: torch.Tensor, log_weights: torch.Tensor | None = None, *, chunk_size: int | None = None):
        if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim < 2:
            raise TypeError("images must be a floating tensor of shape (N, c, h, w) or (N, d)")
        if images.shape[0] < 1:
            raise ValueError("images must hold at least one image")
        if not bool(torch.isfinite(images).all()):
            raise ValueError("images must be finite")
        if chunk_size is None:
            chunk_size = max(1, 2**24 // max(1, images[0].numel()))
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.images = images
        self.flat = images.reshape(images.shape[0], -1)
        self.sq_norms = self.flat.double().square().sum(-1)  # (N,), float64
        self.chunk_size = int(chunk_size)
        if log_weights is not None:
            log_weights = torch.as_tensor(log_weights, dtype=torch.float64, device=images.device)
            if log_weights.shape[-1] != images.shape[0] or log_weights.ndim not in (1, 2):
                raise ValueError(f"log_weights must have shape (N,) or (k, N) with N = {images.shape[0]}")
            log_weights = log_weights - torch.logsumexp(log_weights, dim=-1, keepdim=True)
        self.log_weights = log_weights

    # ------------------------------------------------------------------------------------------ basics
    @property
    def N(self) -> int:
        """Number of images."""
        return self.images.shape[0]

    @property
    def weights(self) -> torch.Tensor:
        """The normalised weights ``w_i``, ``(N,)`` or ``(k, N)``, float64."""
        if self.log_weights is None:
            return torch.full((self.N,), 1.0 / self.N, dtype=torch.float64, device=self.images.device)
        return self.log_weights.exp()

    def _chunks(self, like: torch.Tensor, dtype: torch.dtype | None = None):
        for start in range(0, self.N, self.chunk_size):
            stop = min(start + self.chunk_size, self.N)
            xs = self.flat[start:stop].to(device=like.device, dtype=dtype or like.dtype)
            yield start, stop, xs

    def responsibilities(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """``r_i(x_t)``, ``(n, N)`` in ``x_t``'s dtype: the exact law of the image index given ``x_t (n, ...)``."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            raise ValueError("responsibilities need alpha_bar < 1 (at alpha_bar = 1 the law is a point mass)")
        x = self._check_x(x_t).double()
        parts = []
        for start, stop, xs in self._chunks(x):
            norms = self.sq_norms[start:stop].to(device=x.device)
            parts.append((math.sqrt(ab) * (x @ xs.T) - 0.5 * ab * norms) / (1.0 - ab))
        logits = torch.cat(parts, dim=-1)
        if self.log_weights is not None:
            logits = logits + self.log_weights.to(device=x.device, dtype=torch.float64)
        return torch.softmax(logits, dim=-1).to(x_t.dtype)

    def _check_x(self, x_t: torch.Tensor) -> torch.Tensor:
        if tuple(x_t.shape[1:]) != tuple(self.images.shape[1:]):
            raise ValueError(
                f"x_t must have shape (n, {', '.join(map(str, self.images.shape[1:]))}), got {tuple(x_t.shape)}"
            )
        if self.log_weights is not None and self.log_weights.ndim == 2 and x_t.shape[0] != self.log_weights.shape[0]:
            raise ValueError(f"x_t must have one row per measurement ({self.log_weights.shape[0]}), got {x_t.shape[0]}")
        return x_t.reshape(x_t.shape[0], -1)

    def _average(self, r: torch.Tensor, like: torch.Tensor, square: bool = False) -> torch.Tensor:
        """``sum_i r_i x_i`` (or ``x_i^2``), ``(n, d)``, chunk by chunk."""
        out = None
        for start, stop, xs in self._chunks(like):
            term = r[:, start:stop] @ (xs.square() if square else xs)
            out = term if out is None else out + term
        return out

    # ------------------------------------------------------------------------------------------ denoiser
    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            self._check_x(x_t)
            return x_t.clone()
        r = self.responsibilities(x_t, ab)
        return self._average(r, x_t).reshape(x_t.shape)

    def variance(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """Per-pixel ``Var[x0 | x_t]`` (the diagonal of :meth:`cov`), shaped like ``x_t``."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            return torch.zeros_like(x_t)
        r = self.responsibilities(x_t, ab)
        mean = self._average(r, x_t)
        return (self._average(r, x_t, square=True) - mean.square()).clamp_min(0.0).reshape(x_t.shape)

    def cov(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """``Cov[x0 | x_t] = sum_i r_i x_i x_i^T - mean mean^T``, ``(n, d, d)`` on flattened images (small d only)."""
        ab = check_alpha_bar(alpha_bar)
        d = self.flat.shape[1]
        if d > 4096:
            raise ValueError(f"cov builds (n, d, d) matrices; d = {d} is too large (use variance())")
        if ab == 1.0:
            return x_t.new_zeros(x_t.shape[0], d, d)
        r = self.responsibilities(x_t, ab)
        xs = self.flat.to(device=x_t.device, dtype=x_t.dtype)
        mean = r @ xs
        second = torch.einsum("ni,ij,ik->njk", r, xs, xs)
        return second - mean.unsqueeze(-1) * mean.unsqueeze(-2)

    def sample_x0(self, x_t: torch.Tensor, alpha_bar: float, generator=None) -> torch.Tensor:
        """One exact draw from ``p(x0 | x_t)`` per row: an image drawn with probabilities ``r(x_t)``."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            return x_t.clone()
        r = self.responsibilities(x_t, ab)
        idx = torch.multinomial(r.detach().to(torch.float64).cpu(), 1, generator=generator).squeeze(-1)
        return self.images[idx].to(device=x_t.device, dtype=x_t.dtype)

    def sample(self, n: int, generator=None) -> torch.Tensor:
        """``n`` draws from the (weighted) empirical law itself (one per row when the weights are per particle)."""
        w = self.weights.detach().to(torch.float64).cpu()
        if w.ndim == 1:
            idx = torch.multinomial(w, n, replacement=True, generator=generator)
        else:
            if n != w.shape[0]:
                raise ValueError(f"n must equal the number of measurements {w.shape[0]}, got {n}")
            idx = torch.multinomial(w, 1, generator=generator).squeeze(-1)
        return self.images[idx]

    def sample_posterior(self, n: int, generator=None) -> torch.Tensor:
        """Exact draws from ``p(x0 | y)`` for a conditioned denoiser (same interface as
        :class:`~dptheory.ConditionalExactDenoiser`): :meth:`sample` of the reweighted law."""
        return self.sample(n, generator)

    @property
    def mean(self) -> torch.Tensor:
        """``E[x0] = sum_i w_i x_i``: image-shaped, or ``(k, ...)`` for per-particle weights."""
        w = self.weights.to(self.flat.dtype)
        out = (w if w.ndim == 2 else w.unsqueeze(0)) @ self.flat
        shape = self.images.shape[1:]
        return out.reshape(-1, *shape) if w.ndim == 2 else out.reshape(shape)

    @property
    def total_variance(self) -> torch.Tensor:
        """``E||x0 - E x0||^2 = sum_i w_i ||x_i||^2 - ||E x0||^2`` (scalar, or ``(k,)``); for a conditioned
        denoiser this is the exact MMSE error given ``y``; float64."""
        w = self.weights
        mean_sq = self.mean.reshape(*w.shape[:-1], -1).double().square().sum(-1)
        return (w @ self.sq_norms - mean_sq).clamp_min(0.0)

    # ------------------------------------------------------------------------------------------ conditioning
    def log_likelihood(self, operator, y: torch.Tensor, sigma_y: float) -> torch.Tensor:
        """``log N(y; A x_i, sigma_y^2 I)`` up to a constant in ``i``: ``-||y - A x_i||^2 / (2 sigma_y^2)`` (computed
        without the ``||y||^2`` term, which cancels in every normalised weight).

        ``y`` is one measurement (shaped like ``A`` of one image, with or without the batch axis of 1) or a
        batch ``(k, ...)`` of them; returns ``(N,)`` or ``(k, N)``.
        """
        sigma_y = float(sigma_y)
        if not sigma_y > 0:
            raise ValueError(f"sigma_y must be > 0 for an exact posterior, got {sigma_y}")
        parts = []
        single = None
        y = torch.as_tensor(y)
        for start in range(0, self.N, self.chunk_size):
            ax = _apply_operator(operator, self.images[start : start + self.chunk_size])
            if single is None:
                single = tuple(ax.shape[1:])
                if tuple(y.shape) == single:
                    y = y.unsqueeze(0)
                if tuple(y.shape[1:]) != single:
                    raise ValueError(f"y must have shape {single} or (k, {single}), got {tuple(y.shape)}")
                y = y.to(device=ax.device, dtype=torch.float64).reshape(y.shape[0], -1)
            ax = ax.to(torch.float64).reshape(ax.shape[0], -1)
            parts.append(-(ax.square().sum(-1) - 2.0 * (y @ ax.T)) / (2.0 * sigma_y**2))  # (k, Nc)
        ll = torch.cat(parts, dim=-1).to(device=self.images.device)
        return ll[0] if ll.shape[0] == 1 else ll

    def condition(self, operator, y: torch.Tensor, sigma_y: float) -> EmpiricalMixtureDenoiser:
        """The exact conditional denoiser ``E[x0 | x_t, y]`` for ``y = A x0 + N(0, sigma_y^2 I)``.

        Returns an :class:`EmpiricalMixtureDenoiser` on the same images with weights ``w_i N(y; A x_i, s^2 I)``;
        its :attr:`mean` is ``E[x0 | y]`` and its :attr:`total_variance` the exact MMSE error given ``y``. For a
        batch ``y (k, ...)`` the weights are per particle (row ``j`` of ``x_t`` is conditioned on ``y[j]``).
        """
        ll = self.log_likelihood(operator, y, sigma_y)
        log_w = ll if self.log_weights is None else ll + self.log_weights
        return EmpiricalMixtureDenoiser(self.images, log_w, chunk_size=self.chunk_size)

    def posterior_mean(self, operator, y: torch.Tensor, sigma_y: float) -> torch.Tensor:
        """``E[x0 | y] = sum_i softmax_i(log w_i - ||y - A x_i||^2 / (2 sigma_y^2)) x_i`` (the exact MMSE)."""
        return self.condition(operator, y, sigma_y).mean
