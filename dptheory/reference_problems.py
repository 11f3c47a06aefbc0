"""The worked problems of docs/theory §10, used by the claims, the tests, the analyses and the CLI.

- ``G2``: prior N((0.3, -0.2), [[1, .6], [.6, .8]]), A = [[1, .5]], sigma_y = 0.3, y = 0.7.
- ``G2post``: a problem whose posterior is N((1, -.5), [[.30, .12], [.12, .08]]) (anisotropic).
- ``Iso``: a problem whose posterior is N((1, -.5), 0.2 I) (isotropic).
- ``B1``: the 1-D prior 0.5 N(-1, .05) + 0.5 N(1, .05), A = 1 (denoising), with a chosen sigma_y and y.

A problem "whose posterior is N(mu, Sigma)" has A = I, sigma_y = 1, prior N(0, (Sigma^{-1} - I)^{-1}) and
``y = Sigma^{-1} mu``, which needs ``Sigma^{-1} - I`` SPD (true for G2post and Iso).

**Perturbed data (round-off guard).** Inside ``with perturbed(rel):`` every constructor here multiplies each of its
defining numbers ``v`` by ``1 + rel * u``, ``u`` uniform in [-1, 1] from a generator seeded by ``seed`` and the
number's name (which numbers, and what stays fixed: docs/theory §10). A verdict that changes under ``rel = 1e-12``
depends on round-off (``tests/test_claims_roundoff.py``). Outside the block nothing is touched.
"""

from __future__ import annotations

import contextlib
import math
import zlib

import torch

from .gaussian import Gaussian
from .mixture import GaussianMixture
from .problem import LinearInverseProblem

__all__ = ["WORKED", "g2", "g2post", "iso", "b1", "gmm2", "problem_with_posterior", "perturbed"]

_PERTURBATION = {"rel": 0.0, "seed": 0}
"""The active relative perturbation of the worked problems' data (set only by :func:`perturbed`)."""


@contextlib.contextmanager
def perturbed(rel: float, *, seed: int = 0):
    """Within the block, the constructors of this module perturb their defining numbers by a relative
    ``rel * u``, ``u ~ U[-1, 1]`` fixed by ``(seed, name of the number)`` (module docstring). Restores the previous
    setting on exit; ``rel = 0`` is the unperturbed default.

    Examples:
        >>> with perturbed(1e-12, seed=1):
        ...     p, y = g2()
        >>> 0 < abs(p.sigma_y - 0.3) <= 0.3e-12, g2()[0].sigma_y == 0.3
        (True, True)
    """
    rel = float(rel)
    if not (math.isfinite(rel) and 0.0 <= rel < 1e-3):
        raise ValueError(f"rel must be a relative perturbation in [0, 1e-3), got {rel!r}")
    previous = dict(_PERTURBATION)
    _PERTURBATION.update(rel=rel, seed=int(seed))
    try:
        yield
    finally:
        _PERTURBATION.update(previous)


def _data(name: str, values, *, symmetric: bool = False) -> torch.Tensor:
    """``values`` as float64, times ``1 + rel u`` under :func:`perturbed` (``u`` symmetric when ``symmetric``)."""
    x = torch.as_tensor(values, dtype=torch.float64)
    rel = _PERTURBATION["rel"]
    if rel == 0.0:
        return x
    gen = torch.Generator().manual_seed(1_000_003 * _PERTURBATION["seed"] + zlib.crc32(name.encode()))
    u = 2.0 * torch.rand(x.shape, generator=gen, dtype=torch.float64) - 1.0
    if symmetric:
        u = 0.5 * (u + u.transpose(-2, -1))
    return x * (1.0 + rel * u)


def _number(name: str, value: float) -> float:
    return float(_data(name, float(value)))


def g2() -> tuple[LinearInverseProblem, torch.Tensor]:
    """G2 and its measurement y = (0.7,)."""
    prior = Gaussian(_data("g2.mean", [0.3, -0.2]), _data("g2.cov", [[1.0, 0.6], [0.6, 0.8]], symmetric=True))
    return LinearInverseProblem(prior, _data("g2.A", [[1.0, 0.5]]), _number("g2.sigma_y", 0.3)), _data("g2.y", [0.7])


def problem_with_posterior(mu, Sigma) -> tuple[LinearInverseProblem, torch.Tensor]:
    """A linear-Gaussian problem and a y whose posterior is exactly N(mu, Sigma) (see module docstring)."""
    mu = _data("posterior.mu", mu)
    Sigma = _data("posterior.Sigma", Sigma, symmetric=True)
    d = mu.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    prec = torch.linalg.inv(Sigma)
    if bool((torch.linalg.eigvalsh(prec - eye) <= 0).any()):
        raise ValueError("Sigma^{-1} - I must be SPD (every eigenvalue of Sigma below 1)")
    S = torch.linalg.inv(prec - eye)
    prob = LinearInverseProblem(Gaussian(torch.zeros(d, dtype=torch.float64), 0.5 * (S + S.T)), eye, 1.0)
    return prob, prec @ mu


def g2post() -> tuple[LinearInverseProblem, torch.Tensor]:
    """Posterior N((1, -.5), [[.30, .12], [.12, .08]])."""
    return problem_with_posterior([1.0, -0.5], [[0.30, 0.12], [0.12, 0.08]])


def iso() -> tuple[LinearInverseProblem, torch.Tensor]:
    """Posterior N((1, -.5), 0.2 I)."""
    mu, var = _data("iso.mu", [1.0, -0.5]), _number("iso.var", 0.2)
    with perturbed(0.0):  # Iso's defining numbers are mu and the scalar variance: keep Sigma = var I isotropic
        return problem_with_posterior(mu, [[var, 0.0], [0.0, var]])


def b1(sigma_y: float = 0.5, y: float = -0.6, delta: float = 1.0, var: float = 0.05):
    """B1: prior 0.5 N(-delta, var) + 0.5 N(delta, var), A = 1; defaults sigma_y = 0.5, y = -0.6."""
    delta, var = _number("b1.delta", delta), _number("b1.var", var)
    prior = GaussianMixture([0.5, 0.5], [[-delta], [delta]], [[[var]], [[var]]])
    return LinearInverseProblem(prior, [[1.0]], _number("b1.sigma_y", sigma_y)), _data("b1.y", [float(y)])


def gmm2() -> GaussianMixture:
    """The 2-D, 3-component prior of the Tweedie, conditional-score and VML checks (``gmm2_k3`` of the tests):
    weights (.3, .3, .4), means (-1.5, 0), (1, 1.2), (.8, -1.1). Under :func:`perturbed` its weights (then
    renormalised), means and covariances (symmetrically) are perturbed."""
    w = _data("gmm2.weights", [0.3, 0.3, 0.4])
    means = _data("gmm2.means", [[-1.5, 0.0], [1.0, 1.2], [0.8, -1.1]])
    covs = _data(
        "gmm2.covs",
        [[[0.2, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.3]], [[0.1, -0.05], [-0.05, 0.6]]],
        symmetric=True,
    )
    if _PERTURBATION["rel"]:
        w = w / w.sum()
    return GaussianMixture(w, means, covs)


WORKED = {"G2": g2, "G2post": g2post, "Iso": iso, "B1": b1}
"""Name -> constructor returning ``(problem, y)``."""
