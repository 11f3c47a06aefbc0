"""Helpers shared by the samplers: the reverse grid, noise draws, progress and callbacks."""

from __future__ import annotations

import torch

__all__ = ["reverse_pairs", "progress", "randn_like", "pinv_start", "apply_A"]


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
    """``A^+ y`` if the operator has ``pinv``; otherwise ``A^T y`` (documented fallback)."""
    if callable(getattr(operator, "pinv", None)):
        return operator.pinv(y)
    return operator.A_adjoint(y)
