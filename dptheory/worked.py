"""The worked problems of THEORY section 10, used by the claims, the tests, the analyses and the CLI.

- ``G2``: prior N((0.3, -0.2), [[1, .6], [.6, .8]]), A = [[1, .5]], sigma_y = 0.3, y = 0.7.
- ``G2post``: a problem whose posterior is N((1, -.5), [[.30, .12], [.12, .08]]) (anisotropic).
- ``Iso``: a problem whose posterior is N((1, -.5), 0.2 I) (isotropic).
- ``B1``: the 1-D prior 0.5 N(-1, .05) + 0.5 N(1, .05), A = 1 (denoising), with a chosen sigma_y and y.

A problem "whose posterior is N(mu, Sigma)" is built with A = I, sigma_y = 1, prior N(0, (Sigma^{-1} - I)^{-1}) and
``y = Sigma^{-1} mu``, which needs ``Sigma^{-1} - I`` to be SPD (true for G2post and Iso).
"""

from __future__ import annotations

import torch

from .gaussian import Gaussian
from .mixture import GaussianMixture
from .problem import LinearInverseProblem

__all__ = ["WORKED", "g2", "g2post", "iso", "b1", "problem_with_posterior"]


def g2() -> tuple[LinearInverseProblem, torch.Tensor]:
    """G2 and its measurement y = (0.7,)."""
    prior = Gaussian([0.3, -0.2], [[1.0, 0.6], [0.6, 0.8]])
    return LinearInverseProblem(prior, [[1.0, 0.5]], 0.3), torch.tensor([0.7], dtype=torch.float64)


def problem_with_posterior(mu, Sigma) -> tuple[LinearInverseProblem, torch.Tensor]:
    """A linear-Gaussian problem and a y whose posterior is exactly N(mu, Sigma) (see module docstring)."""
    mu = torch.as_tensor(mu, dtype=torch.float64)
    Sigma = torch.as_tensor(Sigma, dtype=torch.float64)
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
    return problem_with_posterior([1.0, -0.5], [[0.2, 0.0], [0.0, 0.2]])


def b1(sigma_y: float = 0.5, y: float = -0.6, delta: float = 1.0, var: float = 0.05):
    """B1: prior 0.5 N(-delta, var) + 0.5 N(delta, var), A = 1; defaults sigma_y = 0.5, y = -0.6."""
    prior = GaussianMixture([0.5, 0.5], [[-delta], [delta]], [[[var]], [[var]]])
    return LinearInverseProblem(prior, [[1.0]], sigma_y), torch.tensor([float(y)], dtype=torch.float64)


WORKED = {"G2": g2, "G2post": g2post, "Iso": iso, "B1": b1}
"""Name -> constructor returning ``(problem, y)``."""
