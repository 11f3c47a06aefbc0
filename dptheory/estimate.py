"""A Monte Carlo (or exact) scalar estimate that carries its standard error."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Estimate"]


@dataclass(frozen=True)
class Estimate:
    """``value ± stderr`` from ``n`` draws; ``stderr == 0`` and ``n is None`` mark an exact value.

    The standard error is ``std / sqrt(n)`` of the i.i.d. summands (sample std with ``n - 1``).
    """

    value: float
    stderr: float
    n: int | None = None

    @property
    def exact(self) -> bool:
        """True when the value is a closed form, not a Monte Carlo mean."""
        return self.n is None

    @classmethod
    def of_exact(cls, value) -> Estimate:
        """Wrap a closed-form value."""
        return cls(float(value), 0.0, None)

    @classmethod
    def from_samples(cls, samples: torch.Tensor, *, dtype: torch.dtype | None = torch.float64) -> Estimate:
        """Mean and standard error ``std / sqrt(n)`` (sample std with ``n - 1``) of i.i.d. summands ``samples``
        (any shape, flattened to ``n >= 2`` values).

        ``dtype``: the precision of the mean and std (default float64); ``None`` keeps the samples' own dtype
        (float32 samples then give float32 round-off, as ``float(v.mean()), float(v.std() / sqrt(n))`` would).
        """
        s = samples.reshape(-1) if dtype is None else samples.reshape(-1).to(dtype)
        n = s.numel()
        if n < 2:
            raise ValueError(f"samples must hold at least 2 values for a standard error, got {n}")
        return cls(float(s.mean()), float(s.std(unbiased=True) / n**0.5), n)

    def as_pair(self) -> tuple[float, float]:
        """``(value, stderr)``, e.g. for a JSON sidecar."""
        return self.value, self.stderr

    def __float__(self) -> float:
        return self.value

    def within(self, target: float, k: float = 4.0) -> bool:
        """True if ``|value - target| <= k * stderr`` (for exact values: to 1e-10 relative)."""
        if self.exact:
            return abs(self.value - target) <= 1e-10 * max(1.0, abs(target))
        return abs(self.value - target) <= k * self.stderr

    def __str__(self) -> str:
        return f"{self.value:.6g}" if self.exact else f"{self.value:.6g} ± {self.stderr:.2g} (n={self.n})"
