"""A denoiser wrapper that turns a NaN or Inf prediction into an error naming the step and the noise level.

:func:`dptheory.solve` wraps every user-supplied denoiser (a network) and the guided conditional denoiser built
from it in :class:`FiniteDenoiser`, so every sampler, present or future, is checked without touching its loop. The
check is one ``isfinite().all()`` reduction over the output per call, negligible next to a denoiser evaluation.
"""

from __future__ import annotations

import math

import torch

from .denoisers import Denoiser

__all__ = ["FiniteDenoiser", "NonFiniteDenoiserError"]


class NonFiniteDenoiserError(ValueError):
    """A denoiser returned NaN or Inf during sampling (a diverging network or guidance)."""


class FiniteDenoiser(Denoiser):
    """``D(x_t, alpha_bar)`` of ``denoiser``, raising :class:`NonFiniteDenoiserError` when the output holds a NaN
    or an Inf. The message gives the step ``t`` of ``schedule`` whose ``alpha_bar_t`` is the one asked for, and
    the noise level. Other attributes (``sample_x0``, ``cov``, ``condition``, ...) are those of ``denoiser``."""

    def __init__(self, denoiser, schedule, name: str = "denoiser"):
        self.denoiser, self.schedule, self.name = denoiser, schedule, name

    def __getattr__(self, attr):
        if attr in ("denoiser", "schedule", "name"):  # not set yet (e.g. during unpickling)
            raise AttributeError(attr)
        return getattr(self.denoiser, attr)

    def __call__(self, x_t, alpha_bar):
        out = self.denoiser(x_t, alpha_bar)
        if isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
            raise NonFiniteDenoiserError(self._message(out, alpha_bar))
        return out

    def _message(self, out: torch.Tensor, alpha_bar) -> str:
        ab = float(alpha_bar)
        bad = "NaN" if bool(torch.isnan(out).any()) else "Inf"
        where = f"alpha_bar = {ab:.6g}, noise std sqrt(1 - alpha_bar) = {math.sqrt(max(1.0 - ab, 0.0)):.4g}"
        abars = self.schedule.alpha_bars
        t = int((abars - ab).abs().argmin())
        if math.isclose(float(abars[t]), ab, rel_tol=1e-9, abs_tol=1e-12):
            where = f"step t = {t} of {self.schedule.T} ({where})"
        return (f"the {self.name} returned {bad} at {where}: it diverged; try fewer or smaller guidance steps "
                "(zeta), more steps, or check the network")
