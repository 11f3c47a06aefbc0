"""Helpers the claim checks share: seeded generators, float64 conversion, error measures, z-scores against a
known law, and comparison with numbers quoted in docs/theory."""

from __future__ import annotations

import functools

import torch

from ..gaussian import Gaussian
from .result import ClaimResult

__all__ = [
    "F64",
    "agrees_with_quote",
    "cov_z_scores",
    "gmm_cdf_1d",
    "half_unit",
    "max_abs",
    "mean_cov",
    "mean_z_scores",
    "max_z_scores",
    "rng",
    "single_threaded",
    "t64",
]

F64 = torch.float64


def single_threaded(checks: dict) -> dict:
    """Wrap each check so that it runs on ONE torch intra-op thread, restoring the previous setting after.

    The checks are latency-bound: thousands of operations on tensors of a few hundred numbers. Extra
    intra-op threads only add synchronisation, and on a loaded 2-core machine two threads made
    ``dptheory check --quick`` take 3.5 min instead of 23 s (measured). Results do not depend on the thread
    count beyond round-off.
    """

    def wrap(check):
        @functools.wraps(check)
        def run(quick: bool) -> ClaimResult:
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return check(quick)
            finally:
                torch.set_num_threads(previous)

        return run

    return {cid: wrap(check) for cid, check in checks.items()}


def rng(seed: int) -> torch.Generator:
    """A seeded CPU generator (every check owns its seeds; nothing global is touched)."""
    return torch.Generator().manual_seed(seed)


def t64(x) -> torch.Tensor:
    """``x`` as a float64 tensor."""
    return torch.as_tensor(x, dtype=F64)


def max_abs(a, b) -> float:
    """``max |a - b|`` over all entries."""
    return float((t64(a) - t64(b)).abs().max())


def half_unit(quoted: str) -> float:
    """Half a unit in the last quoted digit of a decimal string: ``"1.07e-2"`` -> 5e-5, ``"0.0811"`` -> 5e-5.

    docs/theory quotes rounded numbers; a measured value agrees with a quote when it is within this of it.
    """
    from decimal import Decimal

    return 0.5 * 10.0 ** Decimal(quoted).as_tuple().exponent


def agrees_with_quote(measured: float, quoted: str, units: float = 0.5) -> bool:
    """``|measured - float(quoted)| <= units x (one unit in the last quoted digit)`` (default: half a unit,
    i.e. the quote is the correct rounding of the measurement)."""
    return abs(measured - float(quoted)) <= 2.0 * units * half_unit(quoted) * (1 + 1e-9)


def mean_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean ``(d,)`` and unbiased sample covariance ``(d, d)`` of ``x (n, d)``."""
    m = x.mean(0)
    xc = x - m
    return m, xc.T @ xc / (x.shape[0] - 1)


def mean_z_scores(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """``(sample mean - mean) / SE`` per coordinate, with the SE from the TRUE covariance: ``sqrt(diag cov /
    n)``."""
    n = x.shape[0]
    return (x.mean(0) - mean) / (torch.diagonal(cov) / n).sqrt()


def cov_z_scores(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """``(sample cov - cov) / SE`` entrywise, with ``SE_ij = sqrt((C_ii C_jj + C_ij^2) / n)`` (Gaussian data,
    the delta method; the sample covariance is taken about the TRUE mean)."""
    n = x.shape[0]
    xc = x - mean
    S = xc.T @ xc / n
    d = torch.diagonal(cov)
    se = ((d.unsqueeze(0) * d.unsqueeze(1) + cov.square()) / n).sqrt()
    return (S - cov) / se


def max_z_scores(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[float, float]:
    """``(max |z| of the mean, max |z| of the covariance)`` of samples ``x (n, d)`` against the law ``N(mean,
    cov)``: the largest entries of :func:`mean_z_scores` and :func:`cov_z_scores` in absolute value."""
    return float(mean_z_scores(x, mean, cov).abs().max()), float(cov_z_scores(x, mean, cov).abs().max())


def gmm_cdf_1d(law, x: torch.Tensor) -> torch.Tensor:
    """CDF of a 1-D Gaussian or GMM at ``x (n,)``."""
    if isinstance(law, Gaussian):
        return torch.special.ndtr((x - law.mean[0]) / law.cov[0, 0].sqrt())
    w, m, s = law.weights, law.means[:, 0], law.covs[:, 0, 0].sqrt()
    return torch.special.ndtr((x.unsqueeze(-1) - m) / s) @ w
