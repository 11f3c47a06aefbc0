"""Conditioning Gaussian components on a linear measurement ``y = A x + N(0, sigma_y^2 I)``.

For each component N(m_k, S_k) (gain form, valid for singular S_k and for sigma_y = 0 when A S_k A^T is
invertible; docs/theory §2.1 and §3.2):

    R_k   = A S_k A^T + sigma_y^2 I                       (innovation covariance, m x m)
    G_k   = S_k A^T R_k^{-1}                              (gain, d x m)
    mu_k  = m_k + G_k (y - A m_k)                         (posterior mean)
    Sig_k = (I - G_k A) S_k (I - G_k A)^T + sigma_y^2 G_k G_k^T   (Joseph form of S_k - G_k A S_k)
    log p(y | k) = log N(y; A m_k, R_k)                   (evidence)

The Joseph form equals ``S - G A S`` exactly and stays PSD in floating point. The posterior covariance does not
depend on y, so it is computed once and the means and evidences are evaluated for any batch of measurements.
Source: standard Gaussian conditioning (Kalman gain); Bishop, PRML, eqs. (2.113)-(2.117).
"""

from __future__ import annotations

import math

import torch

from .linalg import sym_eig

__all__ = ["LinearGaussianUpdate"]


class LinearGaussianUpdate:
    """Exact update of K Gaussian components by one linear-Gaussian measurement.

    Args:
        means: ``(K, d)`` component means.
        covs: ``(K, d, d)`` component covariances (PSD, possibly singular).
        A: ``(m, d)`` measurement matrix.
        sigma_y: noise standard deviation, >= 0.

    Raises:
        ValueError: if some ``R_k = A S_k A^T + sigma_y^2 I`` is singular (the posterior does not exist as a
            conditional density: sigma_y = 0 with A S_k A^T rank deficient).
    """

    def __init__(self, means: torch.Tensor, covs: torch.Tensor, A: torch.Tensor, sigma_y: float):
        m = A.shape[0]
        self.A = A
        self.sigma_y = sigma_y
        SAt = covs @ A.transpose(-1, -2)  # (K, d, m)
        eye_m = torch.eye(m, dtype=A.dtype, device=A.device)
        R = A @ SAt + sigma_y**2 * eye_m  # (K, m, m)
        R = 0.5 * (R + R.transpose(-1, -2))
        eig = sym_eig(R, "A cov A^T + sigma_y^2 I")
        if eig.is_singular:
            raise ValueError(
                "the posterior does not exist: sigma_y = 0 and A cov A^T is singular "
                f"(rank {eig.rank.min().item()} < m = {m}); use sigma_y > 0 or an A of full row rank on the "
                "prior's support"
            )
        R_inv = eig.matrix_function(1.0 / eig.evals)
        self.gain = SAt @ R_inv  # (K, d, m)
        d = means.shape[-1]
        I_GA = torch.eye(d, dtype=A.dtype, device=A.device) - self.gain @ A
        cov = I_GA @ covs @ I_GA.transpose(-1, -2) + sigma_y**2 * self.gain @ self.gain.transpose(-1, -2)
        self.post_covs = 0.5 * (cov + cov.transpose(-1, -2))
        self.pred_means = means @ A.transpose(-1, -2)  # (K, m)
        self.means = means
        self._R_evals = eig.evals  # (K, m)
        self._R_evecs = eig.evecs  # (K, m, m)
        self._log_norm = -0.5 * (eig.evals.log().sum(-1) + m * math.log(2 * math.pi))  # (K,)

    def post_means(self, y: torch.Tensor) -> torch.Tensor:
        """Posterior means ``m_k + G_k (y - A m_k)``; ``y (..., m)`` -> ``(..., K, d)``."""
        r = y.unsqueeze(-2) - self.pred_means  # (..., K, m)
        return self.means + (self.gain @ r.unsqueeze(-1)).squeeze(-1)

    def log_evidence(self, y: torch.Tensor) -> torch.Tensor:
        """``log N(y; A m_k, R_k)``; ``y (..., m)`` -> ``(..., K)``."""
        r = y.unsqueeze(-2) - self.pred_means  # (..., K, m)
        u = (r.unsqueeze(-2) @ self._R_evecs).squeeze(-2)  # (..., K, m)
        return self._log_norm - 0.5 * (u.square() / self._R_evals).sum(-1)
