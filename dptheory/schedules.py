"""Variance-preserving (VP) noise schedules as float64 tables.

Convention (docs/theory §0, 1-based steps): betas ``beta_t`` for ``t = 1..T``, ``alpha_t = 1 - beta_t``,
``alpha_bar_t = prod_{s <= t} alpha_s``, ``alpha_bar_0 := 1`` and ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 -
alpha_bar_t) eps``; ``SNR_t = alpha_bar_t / (1 - alpha_bar_t)``, ``sigma_t = sqrt(1 - alpha_bar_t)`` (the VP noise
std) and ``tau_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)`` (the VE std of ``x_t / sqrt(alpha_bar_t) = x0 + tau_t
z``). The reverse-step coefficients of ``q(x_{t-1} | x_t, x0) = N(c1_t x0 + c2_t x_t, beta_tilde_t I)`` (Ho et
al. 2020, eq. (7)), defined on any sub-grid of steps (respacing) through ``beta = 1 - ab_t / ab_s``, are

    c1_t = sqrt(ab_{t-1}) beta_t / (1 - ab_t),  c2_t = sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t),
    beta_tilde_t = beta_t (1 - ab_{t-1}) / (1 - ab_t).

Sources: Ho, Jain, Abbeel (2020) "Denoising Diffusion Probabilistic Models" (linear schedule, 1e-4 to 0.02,
T = 1000); Nichol & Dhariwal (2021) "Improved DDPM", eq. (17) (cosine schedule, s = 0.008, beta <= 0.999).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from ._checks import check_int

__all__ = ["VPSchedule", "linear_schedule", "cosine_schedule"]


@dataclass(frozen=True, eq=False)
class VPSchedule:
    """A VP schedule on steps ``0..T`` with float64 tables.

    Attributes:
        betas: ``(T + 1,)`` with ``betas[0] = 0`` (index = 1-based step t).
        alpha_bars: ``(T + 1,)`` with ``alpha_bars[0] = 1``.
        name: a label.

    Examples:
        >>> s = linear_schedule()
        >>> round(float(s.alpha_bar(1000)), 9), round(float(s.alpha_bar(11)), 6)
        (4.0358e-05, 0.997807)
    """

    betas: torch.Tensor
    alpha_bars: torch.Tensor
    name: str = "vp"

    def __post_init__(self):
        if self.betas.shape != self.alpha_bars.shape or self.betas.ndim != 1:
            raise ValueError("betas and alpha_bars must both have shape (T + 1,)")
        if self.alpha_bars[0] != 1.0 or self.betas[0] != 0.0:
            raise ValueError("alpha_bars[0] must be 1 and betas[0] must be 0 (step 0 is clean data)")
        b = self.betas[1:]
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas[1:] must lie in (0, 1)")

    @classmethod
    def from_betas(cls, betas, name: str = "vp") -> VPSchedule:
        """Build from ``T`` betas for steps ``1..T``."""
        b = torch.as_tensor(betas, dtype=torch.float64)
        if b.ndim != 1 or b.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {tuple(b.shape)}")
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        betas = torch.cat([b.new_zeros(1), b])
        alpha_bars = torch.cumprod(1.0 - betas, dim=0)
        return cls(betas=betas, alpha_bars=alpha_bars, name=name)

    @classmethod
    def from_alpha_bars(cls, alpha_bars, name: str = "vp") -> VPSchedule:
        """Build from ``alpha_bar_1..alpha_bar_T`` (strictly decreasing in (0, 1))."""
        ab = torch.as_tensor(alpha_bars, dtype=torch.float64)
        full = torch.cat([ab.new_ones(1), ab])
        if ab.ndim != 1 or not bool((full[1:] < full[:-1]).all()) or not bool((ab > 0).all()):
            raise ValueError("alpha_bars must be strictly decreasing values in (0, 1)")
        betas = torch.cat([ab.new_zeros(1), 1.0 - full[1:] / full[:-1]])
        return cls(betas=betas, alpha_bars=full, name=name)

    # -------------------------------------------------------------- lookups
    @property
    def T(self) -> int:
        """Number of steps."""
        return self.betas.shape[0] - 1

    def check_step(self, t, name: str = "t") -> int:
        """Validate an integer step in ``[0, T]`` and return it."""
        if isinstance(t, torch.Tensor) and t.numel() == 1 and not t.is_floating_point():
            t = int(t)
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"{name} must be an integer step in [0, {self.T}], got {t!r}")
        if not 0 <= int(t) <= self.T:
            raise ValueError(f"{name} must be an integer step in [0, {self.T}], got {t}")
        return int(t)

    def alpha_bar(self, t) -> torch.Tensor:
        """``alpha_bar_t`` (t an int or an integer tensor of steps)."""
        return self.alpha_bars[self._steps(t)]

    def beta(self, t) -> torch.Tensor:
        """``beta_t``."""
        return self.betas[self._steps(t)]

    def snr(self, t) -> torch.Tensor:
        """``SNR_t = alpha_bar_t / (1 - alpha_bar_t)`` (inf at t = 0)."""
        ab = self.alpha_bar(t)
        return ab / (1.0 - ab)

    def sigma(self, t) -> torch.Tensor:
        """VP noise std ``sqrt(1 - alpha_bar_t)``."""
        return (1.0 - self.alpha_bar(t)).sqrt()

    def tau(self, t) -> torch.Tensor:
        """Variance-exploding std ``sqrt((1 - alpha_bar_t) / alpha_bar_t)``."""
        ab = self.alpha_bar(t)
        return ((1.0 - ab) / ab).sqrt()

    def _steps(self, t):
        if isinstance(t, torch.Tensor):
            if t.is_floating_point():
                raise TypeError("steps must be integers; use step_from_alpha_bar for real noise levels")
            if bool(((t < 0) | (t > self.T)).any()):
                raise ValueError(f"steps must lie in [0, {self.T}]")
            return t.long()
        return self.check_step(t)

    def step_from_alpha_bar(self, alpha_bar) -> torch.Tensor:
        """The step whose ``alpha_bar_t`` is nearest to ``alpha_bar`` in log-SNR (integer tensor)."""
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
        if not bool(((ab > 0) & (ab <= 1)).all()):  # also rejects NaN
            raise ValueError(f"alpha_bar must lie in (0, 1], got {ab.tolist()}")
        return self.step_from_snr(ab / (1.0 - ab))

    def step_from_snr(self, snr) -> torch.Tensor:
        """The step nearest in log-SNR to ``snr`` (> 0; inf maps to step 0)."""
        s = torch.as_tensor(snr, dtype=torch.float64)
        if bool((s <= 0).any()) or bool(torch.isnan(s).any()):
            raise ValueError("snr must be > 0")
        table = self.snr(torch.arange(self.T + 1)).log()  # +inf at 0, decreasing
        diff = (table - s.log().unsqueeze(-1)).abs()
        diff = torch.where(torch.isnan(diff), torch.zeros_like(diff), diff)  # inf - inf at t = 0
        return diff.argmin(-1)

    # -------------------------------------------------------------- reverse coefficients
    def reverse_coefficients(self, t: int, s: int | None = None) -> tuple[float, float, float, float]:
        """``(c1, c2, beta_tilde, beta)`` of the forward posterior ``q(x_s | x_t, x0)`` for ``s < t``.

        ``s`` defaults to ``t - 1``. With ``beta = 1 - ab_t / ab_s``:
        ``c1 = sqrt(ab_s) beta / (1 - ab_t)``, ``c2 = sqrt(1 - beta) (1 - ab_s) / (1 - ab_t)``,
        ``beta_tilde = beta (1 - ab_s) / (1 - ab_t)``. At ``s = 0``: ``c1 = 1, c2 = 0, beta_tilde = 0``.
        """
        t = self.check_step(t)
        s = t - 1 if s is None else self.check_step(s, "s")
        if not 0 <= s < t:
            raise ValueError(f"need 0 <= s < t, got s = {s}, t = {t}")
        ab_t = float(self.alpha_bars[t])
        ab_s = float(self.alpha_bars[s])
        beta = 1.0 - ab_t / ab_s
        c1 = math.sqrt(ab_s) * beta / (1.0 - ab_t)
        c2 = math.sqrt(1.0 - beta) * (1.0 - ab_s) / (1.0 - ab_t)
        beta_tilde = beta * (1.0 - ab_s) / (1.0 - ab_t)
        return c1, c2, beta_tilde, beta

    def timesteps(self, steps: int | None = None, t_start: int | None = None) -> list[int]:
        """A descending grid ``[t_start, ..., 0]`` with ``steps`` reverse steps, evenly spaced (rounded).

        ``steps`` defaults to ``t_start`` (every step); ``t_start`` defaults to ``T``.
        """
        t_start = self.T if t_start is None else self.check_step(t_start, "t_start")
        steps = t_start if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 0 <= steps <= t_start:
            raise ValueError(f"steps must be an integer in [0, t_start = {t_start}], got {steps!r}")
        if steps == 0:
            return [t_start]
        grid = torch.linspace(t_start, 0, steps + 1, dtype=torch.float64).round().long().tolist()
        return grid


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> VPSchedule:
    """The DDPM linear schedule: ``beta_t`` linear from ``beta_start`` to ``beta_end`` over ``T`` steps (scaled
    by ``1000 / T`` when ``T != 1000``, as in Improved DDPM, so the end noise level stays comparable).

    Source: Ho et al. (2020), section 4; Nichol & Dhariwal (2021), appendix.
    """
    T = check_int(T, "T")
    scale = 1000.0 / T
    betas = torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)
    return VPSchedule.from_betas(betas, name=f"linear(T={T})")


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> VPSchedule:
    """The cosine schedule ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos^2(((t/T) + s)/(1 + s) * pi/2)``, betas
    clipped at ``max_beta`` (Nichol & Dhariwal 2021, eq. (17))."""
    T = check_int(T, "T")
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    betas = (1.0 - ab[1:] / ab[:-1]).clamp(max=max_beta)
    return VPSchedule.from_betas(betas, name=f"cosine(T={T})")
