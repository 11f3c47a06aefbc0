"""Helpers shared by the samplers: the reverse grid, noise draws, progress and callbacks."""

from __future__ import annotations

import torch

__all__ = ["reverse_pairs", "progress", "randn_like", "pinv_start", "apply_A", "clip_range", "clip_x0"]


def reverse_pairs(schedule, steps: int | None = None, t_start: int | None = None) -> list[tuple[int, int]]:
    """Consecutive ``(t, s)`` pairs, ``t > s``, of the descending grid ``schedule.timesteps(steps, t_start)``."""
    grid = schedule.timesteps(steps, t_start)
    return list(zip(grid[:-1], grid[1:], strict=True))


def progress(iterable, enabled: bool, desc: str, total: int | None = None):
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` (tqdm imported only then)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise with the shape, dtype and device of ``x``, drawn from ``generator``."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def apply_A(operator, x: torch.Tensor) -> torch.Tensor:
    """``A x`` through the operator protocol."""
    return operator.A(x)


def pinv_start(operator, y: torch.Tensor) -> torch.Tensor:
    """``A^+ y`` if ``operator.has_pinv``; otherwise ``A^T y`` (documented fallback)."""
    if operator.has_pinv:
        return operator.pinv(y)
    return operator.A_adjoint(y)


def clip_range(denoiser, clip_denoised) -> tuple[float, float] | None:
    """The ``[lo, hi]`` box the x0 estimate is clamped to, or ``None`` for no clamp.

    ``clip_denoised``: ``None`` (auto: clamp exactly when the denoiser declares the range of its data in a
    ``data_range`` attribute, as the pixel networks in [-1, 1] do; exact priors declare none), ``True`` (clamp to
    the declared range, else to [-1, 1], the ``clip_denoised=True`` of the official DPS / guided-diffusion and
    MAP-RPS code) or ``False`` (never).
    """
    if clip_denoised is not None and not isinstance(clip_denoised, bool):
        raise ValueError(f"clip_denoised must be None (auto), True or False, got {clip_denoised!r}")
    declared = getattr(denoiser, "data_range", None)
    if clip_denoised is False or (clip_denoised is None and declared is None):
        return None
    lo, hi = (-1.0, 1.0) if declared is None else (float(declared[0]), float(declared[1]))
    return lo, hi


def clip_x0(x0: torch.Tensor, box: tuple[float, float] | None) -> torch.Tensor:
    """``x0.clamp(lo, hi)`` (differentiable: zero gradient where clamped), or ``x0`` for ``box = None``."""
    return x0 if box is None else x0.clamp(box[0], box[1])
