"""The Gaussian mixture sum_k w_k N(m_k, S_k), with its exact VP-diffusion quantities.

With ``S_{k,t} = ab S_k + (1 - ab) I`` and ``c_k = sqrt(ab) m_k`` (docs/theory §3.2):

- diffused law         p_t = sum_k w_k N(c_k, S_{k,t})           (a GMM again)
- responsibilities     gamma_k(x) = w_k N_k(x) / sum_j w_j N_j(x)   (log-sum-exp)
- score                s_t(x) = -sum_k gamma_k S_{k,t}^{-1} (x - c_k)
- denoiser             E[x0|x_t] = sum_k gamma_k mu_k(x_t),  mu_k = m_k + sqrt(ab) S_k S_{k,t}^{-1} (x_t - c_k)
- Tweedie covariance   Cov[x0|x_t] = sum_k gamma_k (C_k + mu_k mu_k^T) - E E^T,  C_k = S_k - ab S_k S_{k,t}^{-1} S_k
- posterior given y    weights  ~ w_k N(y; A m_k, A S_k A^T + s^2 I), components = Gaussian posteriors.

Fast path: each ``S_k = V_k diag(lam_k) V_k^T`` is decomposed once, and a chunk's score and denoiser come from two
large GEMMs against the stacked eigenbases (``benchmarks/README.md``, "GMM denoiser fast path").
Sources: Carreira-Perpinan (2000) for GMM modes; Efron (2011) for Tweedie.
"""

from __future__ import annotations

import math

import torch

from ._checks import as_tensor, check_alpha_bar, check_finite, check_int, check_vector_batch, common_dtype
from .conditioning import LinearGaussianUpdate
from .gaussian import Gaussian, _measurement
from .linalg import SymmetricEig, check_covariance, sym_eig

__all__ = ["GaussianMixture"]

_CHUNK_ELEMENTS = 1 << 20  # points per chunk = this / (K d): U is a reused ~8 MB float64 buffer
_QUADRATIC_FEATURES_MAX_DIM = 8  # exact draws by quadratic features (d^2 + d + 1 columns) up to this dimension


class _MixturePosterior:
    """``p(x0 | x_t)`` for the prior ``sum_k w_k N(mu_k, Sig_k)`` with shared eigendecomposed covariances and
    means/log-weights that may differ per particle (broadcast over a leading batch).

    For a component, ``p(x0 | x_t, k) = N(mu_k + G_k (x_t - sqrt(ab) mu_k), C_k)`` with
    ``G_k = sqrt(ab) Sig_k (ab Sig_k + (1-ab) I)^{-1}`` and ``C_k = Sig_k (1-ab)(ab Sig_k + (1-ab) I)^{-1}``;
    the component's weight is ``w_k N(x_t; sqrt(ab) mu_k, ab Sig_k + (1-ab) I)`` (docs/theory §3.2).

    Fast path (as in :class:`~dptheory.GaussianMixture`): the rotated coordinates ``u_k = V_k^T (x - sqrt(ab) mu_k)``
    of all K components come from ONE GEMM of ``x`` against the concatenated eigenbases minus the rotated means
    (precomputed once), the mixture mean from ONE GEMM against the stacked back-projections, and a draw needs only
    the drawn component's mean (component chosen by inverse CDF from one uniform per particle).
    """

    def __init__(self, log_w: torch.Tensor, means: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor):
        self.log_w, self.means, self.evals, self.evecs = log_w, means, evals, evecs  # (.., K), (.., K, d)
        K, d = evals.shape
        self._V_cat = evecs.permute(1, 0, 2).reshape(d, K * d)  # [V_1 | ... | V_K]
        self._Vt_stack = evecs.transpose(-1, -2).reshape(K * d, d)  # [V_1^T; ...; V_K^T]
        self._rot_means = (means.unsqueeze(-2) @ evecs).squeeze(-2)  # V_k^T mu_k, (.., K, d)

    def parts(self, x: torch.Tensor, ab: float):
        """Responsibilities ``(n, K)``, rotated coordinates ``u (n, K, d)`` and ``e = ab lam + 1 - ab (K, d)``."""
        K, d = self.evals.shape
        e = ab * self.evals + (1.0 - ab)
        u = (x @ self._V_cat).view(-1, K, d) - math.sqrt(ab) * self._rot_means
        log_joint = self.log_w - 0.5 * ((u.square() / e).sum(-1) + e.log().sum(-1))
        return torch.softmax(log_joint, dim=-1), u, e

    def mean(self, x: torch.Tensor, ab: float) -> torch.Tensor:
        gamma, u, e = self.parts(x, ab)
        g = math.sqrt(ab) * self.evals / e  # gain of each component in its eigenbasis
        back = (u * g * gamma.unsqueeze(-1)).reshape(x.shape[0], -1) @ self._Vt_stack
        return (gamma.unsqueeze(-1) * self.means).sum(-2) + back

    def cov(self, x: torch.Tensor, ab: float) -> torch.Tensor:
        gamma, u, e = self.parts(x, ab)
        g = math.sqrt(ab) * self.evals / e
        mu = self.means + ((u * g).unsqueeze(-2) @ self.evecs.transpose(-1, -2)).squeeze(-2)  # (n, K, d)
        C = (self.evecs * (self.evals * (1.0 - ab) / e).unsqueeze(-2)) @ self.evecs.transpose(-1, -2)
        mean = (gamma.unsqueeze(-1) * mu).sum(-2)
        second = torch.einsum("nk,kij->nij", gamma, C) + torch.einsum("nk,nki,nkj->nij", gamma, mu, mu)
        return second - mean.unsqueeze(-1) * mean.unsqueeze(-2)

    @staticmethod
    def _draw_component(probs: torch.Tensor, generator) -> torch.Tensor:
        """One index per row of ``probs (n, K)`` by inverse CDF of a single uniform."""
        cdf = probs.cumsum(-1)
        r = torch.rand(probs.shape[0], 1, generator=generator, dtype=probs.dtype, device=probs.device)
        return torch.searchsorted(cdf, r * cdf[:, -1:]).squeeze(-1).clamp_max(probs.shape[-1] - 1)

    def sample_components(self, n: int, generator, like: torch.Tensor) -> torch.Tensor:
        """``n`` draws from the mixture itself (one per row of the batch when the weights are per particle)."""
        probs = torch.softmax(self.log_w, dim=-1).expand(n, -1)
        k = self._draw_component(probs, generator)
        means = self.means.expand(n, *self.means.shape[-2:])
        z = torch.randn(n, means.shape[-1], generator=generator, dtype=like.dtype, device=like.device)
        noise = ((z * self.evals[k].sqrt()).unsqueeze(-2) @ self.evecs[k].transpose(-1, -2)).squeeze(-2)
        return means[torch.arange(n, device=like.device), k] + noise

    def sample(self, x: torch.Tensor, ab: float, generator) -> torch.Tensor:
        if self.log_w.ndim == 1 and self.means.ndim == 2 and self.evals.shape[-1] <= _QUADRATIC_FEATURES_MAX_DIM:
            return self._sample_small_dim(x, ab, generator)
        gamma, u, e = self.parts(x, ab)
        k = self._draw_component(gamma, generator)  # (n,)
        idx = torch.arange(x.shape[0], device=x.device)
        g = math.sqrt(ab) * self.evals[k] / e[k]
        sd = (self.evals[k] * (1.0 - ab) / e[k]).sqrt()  # (n, d)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        means = self.means.expand(x.shape[0], *self.means.shape[-2:])[idx, k]
        return means + ((u[idx, k] * g + z * sd).unsqueeze(-2) @ self.evecs[k].transpose(-1, -2)).squeeze(-2)

    def _sample_small_dim(self, x: torch.Tensor, ab: float, generator) -> torch.Tensor:
        """The same draw as :meth:`sample` for shared weights and means in small dimension, in two GEMMs.

        The log-joint of component k is affine in the quadratic features ``phi(x) = [vec(x x^T), x, 1]``:
        ``log w_k - (1/2)[(x - c_k)^T P_k (x - c_k) + log det E_k]`` with ``c_k = sqrt(ab) mu_k`` and
        ``P_k = V_k diag(1/e_k) V_k^T``, so ``phi(x) @ Theta`` gives all K at once (``Theta (d^2 + d + 1, K)``).
        The draw of every component, ``mu_k + G_k (x - c_k) + L_k z`` with ``G_k = V_k diag(g_k) V_k^T`` and
        ``L_k = V_k diag(sd_k)``, is ONE GEMM of ``[x, z]`` against the stacked ``[G_k^T; L_k^T]``; the drawn
        component's row is then gathered. The uniform and the normal draws are consumed in the same order as
        :meth:`sample`, so both give the same particles up to round-off.
        """
        K, d = self.evals.shape
        n = x.shape[0]
        e = ab * self.evals + (1.0 - ab)  # (K, d)
        V = self.evecs
        P = (V / e.unsqueeze(-2)) @ V.transpose(-1, -2)  # (K, d, d)
        c = math.sqrt(ab) * self.means  # (K, d)
        Pc = (P @ c.unsqueeze(-1)).squeeze(-1)  # (K, d)
        const = self.log_w - 0.5 * ((c * Pc).sum(-1) + e.log().sum(-1))
        theta = torch.cat([-0.5 * P.reshape(K, d * d), Pc, const.unsqueeze(-1)], dim=1).T  # (d^2 + d + 1, K)
        phi = torch.cat([(x.unsqueeze(-1) * x.unsqueeze(-2)).reshape(n, d * d), x, x.new_ones(n, 1)], dim=1)
        log_joint = phi @ theta  # (n, K)
        probs = (log_joint - log_joint.amax(-1, keepdim=True)).exp_()
        k = self._draw_component(probs, generator)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        g = math.sqrt(ab) * self.evals / e
        sd = (self.evals * (1.0 - ab) / e).sqrt()
        G = (V * g.unsqueeze(-2)) @ V.transpose(-1, -2)  # (K, d, d)
        L = V * sd.unsqueeze(-2)  # (K, d, d): L L^T = C_k
        M = torch.cat([G.transpose(-1, -2), L.transpose(-1, -2)], dim=1)  # (K, 2d, d): rows act on [x, z]
        M = M.permute(1, 0, 2).reshape(2 * d, K * d)
        bias = (self.means - (G @ c.unsqueeze(-1)).squeeze(-1)).reshape(1, K * d)
        draws = torch.addmm(bias, torch.cat([x, z], dim=1), M).view(n, K, d)
        return draws.gather(1, k.view(n, 1, 1).expand(n, 1, d)).squeeze(1)


class GaussianMixture:
    """A Gaussian mixture sum_k w_k N(m_k, S_k) on R^d.

    Args:
        weights: ``(K,)`` non-negative, summing to 1 (to 1e-8; then renormalised exactly).
        means: ``(K, d)``.
        covs: ``(K, d, d)`` symmetric PSD. Components may be singular for sampling, diffusion at
            ``alpha_bar < 1``, denoising and conditioning; ``log_prob`` and ``score`` need them SPD.

    Examples:
        >>> import dptheory as dpt
        >>> q = dpt.GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.05]], [[0.05]]])
        >>> q.mean.tolist(), round(float(q.cov), 12)
        ([0.0], 1.05)
    """

    def __init__(self, weights, means, covs):
        w = check_finite(as_tensor(weights, "weights"), "weights")
        means = check_finite(as_tensor(means, "means", device=w.device), "means")
        if means.ndim != 2 or 0 in means.shape:
            raise ValueError(f"means must have shape (K, d) with K >= 1 and d >= 1, got shape {tuple(means.shape)}")
        K, d = means.shape
        if w.ndim != 1 or w.shape[0] != K:
            raise ValueError(f"weights must have shape (K,) = ({K},) to match means, got {tuple(w.shape)}")
        if bool((w < 0).any()):
            raise ValueError(f"weights must be non-negative, got min {w.min().item():.3g}")
        total = float(w.sum())
        if abs(total - 1.0) > 1e-8:
            raise ValueError(f"weights must sum to 1, got sum {total!r}")
        covs_t = as_tensor(covs, "covs", device=w.device)
        dtype = common_dtype(w, means, covs_t)
        self._weights = (w / w.sum()).to(dtype)
        self._means = means.to(dtype)
        self._covs = check_covariance(covs_t.to(dtype), "covs", d, batch=(K,))
        self._eig: SymmetricEig | None = None
        _ = self.eig

    @classmethod
    def _trusted(cls, weights, means, covs, eig: SymmetricEig | None = None) -> GaussianMixture:
        self = cls.__new__(cls)
        self._weights, self._means = weights, means
        self._covs, self._eig = 0.5 * (covs + covs.transpose(-1, -2)), eig
        return self

    # ------------------------------------------------------------------ properties
    @property
    def weights(self) -> torch.Tensor:
        """``(K,)``."""
        return self._weights

    @property
    def means(self) -> torch.Tensor:
        """``(K, d)``."""
        return self._means

    @property
    def covs(self) -> torch.Tensor:
        """``(K, d, d)``."""
        return self._covs

    @property
    def n_components(self) -> int:
        return self._means.shape[0]

    @property
    def dim(self) -> int:
        return self._means.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self._means.dtype

    @property
    def device(self) -> torch.device:
        return self._means.device

    @property
    def eig(self) -> SymmetricEig:
        """Cached batched eigendecomposition of the component covariances, ``(K, d)`` and ``(K, d, d)``."""
        if self._eig is None:
            self._eig = sym_eig(self._covs, "covs")
        return self._eig

    @property
    def mean(self) -> torch.Tensor:
        """Mixture mean ``sum_k w_k m_k``, ``(d,)``."""
        return self._weights @ self._means

    @property
    def cov(self) -> torch.Tensor:
        """Mixture covariance ``sum_k w_k (S_k + m_k m_k^T) - mean mean^T``, ``(d, d)``."""
        dm = self._means - self.mean
        return torch.einsum("k,kij->ij", self._weights, self._covs) + (dm.T * self._weights) @ dm

    def component(self, k: int) -> Gaussian:
        """The k-th component as a :class:`Gaussian`."""
        return Gaussian._trusted(self._means[k], self._covs[k])

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, d={self.dim}, dtype={self.dtype})"

    # ------------------------------------------------------------------ density
    def component_log_probs(self, x) -> torch.Tensor:
        """``log w_k + log N(x; m_k, S_k)`` for ``x (..., d)`` -> ``(..., K)``. Needs SPD components."""
        x = check_vector_batch(x, self.dim, "x", like=self._means)
        eig = self.eig
        eig.require_nonsingular("log_prob", "covs")
        u = ((x.unsqueeze(-2) - self._means).unsqueeze(-2) @ eig.evecs).squeeze(-2)  # (..., K, d)
        quad = (u.square() / eig.evals).sum(-1)
        return self._weights.log() - 0.5 * (quad + eig.evals.log().sum(-1) + self.dim * math.log(2 * math.pi))

    def log_prob(self, x) -> torch.Tensor:
        """``log sum_k w_k N(x; m_k, S_k)`` (log-sum-exp) for ``x (..., d)`` -> ``(...)``."""
        return torch.logsumexp(self.component_log_probs(x), dim=-1)

    def responsibilities(self, x) -> torch.Tensor:
        """``gamma_k(x) = p(k | x)`` for ``x (..., d)`` -> ``(..., K)`` (softmax of the log-joint)."""
        return torch.softmax(self.component_log_probs(x), dim=-1)

    def score(self, x) -> torch.Tensor:
        """``grad log p(x) = -sum_k gamma_k S_k^{-1}(x - m_k)`` for ``x (..., d)``. Needs SPD components."""
        self.eig.require_nonsingular("score", "covs")
        x = check_vector_batch(x, self.dim, "x", like=self._means)
        return self._score_and_denoise(x, 1.0)[0]

    def sample(self, n: int, *, generator: torch.Generator | None = None, return_labels: bool = False):
        """``n`` i.i.d. draws ``(n, d)``: a component index from ``weights``, then a Gaussian draw.

        With ``return_labels=True`` also returns the component indices ``(n,)``.
        """
        n = check_int(n, "n")
        k = torch.multinomial(self._weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        eig = self.eig
        x = self._means[k] + ((z * eig.evals[k].sqrt()).unsqueeze(-2) @ eig.evecs[k].transpose(-1, -2)).squeeze(-2)
        return (x, k) if return_labels else x

    # ------------------------------------------------------------------ diffusion
    def diffuse(self, alpha_bar) -> GaussianMixture:
        """Law of ``sqrt(ab) x0 + sqrt(1 - ab) eps``: ``sum_k w_k N(sqrt(ab) m_k, ab S_k + (1 - ab) I)``."""
        ab = check_alpha_bar(alpha_bar)
        eig = self.eig
        evals = ab * eig.evals + (1.0 - ab)
        new_eig = SymmetricEig(evals=evals, evecs=eig.evecs, tol=eig.tol * ab)
        return GaussianMixture._trusted(
            self._weights, math.sqrt(ab) * self._means, eig.matrix_function(evals), new_eig
        )

    def denoise(self, x_t, alpha_bar) -> torch.Tensor:
        """Exact Tweedie denoiser ``E[x0|x_t] = sum_k gamma_k(x_t) mu_k(x_t)`` for ``x_t (..., d)``.

        Responsibilities are those of the diffused mixture. At ``alpha_bar = 1`` it is the identity.
        """
        ab = check_alpha_bar(alpha_bar)
        x_t = check_vector_batch(x_t, self.dim, "x_t", like=self._means)
        if ab == 1.0:
            return x_t.clone()
        return self._score_and_denoise(x_t, ab)[1]

    def score_and_denoise(self, x_t, alpha_bar) -> tuple[torch.Tensor, torch.Tensor]:
        """Both the diffused score ``grad log p_t(x_t)`` and ``E[x0|x_t]``, in one chunked pass.

        ``x_t (..., d)`` -> two ``(..., d)`` tensors. Needs ``alpha_bar < 1`` or SPD components.
        """
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            self.eig.require_nonsingular("score at alpha_bar = 1", "covs")
        x_t = check_vector_batch(x_t, self.dim, "x_t", like=self._means)
        return self._score_and_denoise(x_t, ab)

    def _score_and_denoise(self, x: torch.Tensor, ab: float) -> tuple[torch.Tensor, torch.Tensor]:
        K, d = self._means.shape
        eig = self.eig
        e = ab * eig.evals + (1.0 - ab)  # (K, d) eigenvalues of S_{k,t}
        r = e.rsqrt()
        # The whitening diag(e_k^{-1/2}) is folded into the bases, so U holds whitened coordinates (quad is a
        # plain squared norm) and the back-projections carry the other e_k^{-1/2}: the products are those of
        # benchmarks/README.md ("GMM denoiser fast path"), with the same two GEMMs and flops.
        W = eig.evecs * r.unsqueeze(-2)  # V_k diag(e_k^{-1/2}), (K, d, d)
        centers = math.sqrt(ab) * self._means  # (K, d)
        # [V_1 .. V_K] with the row -b appended: [x, 1] V_aug = U, the centring done inside the GEMM
        bias = (centers.unsqueeze(-2) @ W).reshape(1, K * d)
        V_aug = torch.cat([W.permute(1, 0, 2).reshape(d, K * d), -bias])  # (d + 1, K d)
        back_score = -W.transpose(-1, -2).reshape(K * d, d)  # -diag(e^{-1/2}) V_k^T (the score's sign)
        g = math.sqrt(ab) * eig.evals * r  # sqrt(ab) lam_k / e_k, times the e_k^{1/2} taken out of U
        back_den = (eig.evecs.transpose(-1, -2) * g.unsqueeze(-1)).reshape(K * d, d)  # diag(g_k) V_k^T
        # transposed, (2 d, K d): the back-projection runs as back^T U^T, whose wide output (2 d, m) MKL blocks
        # 1.3-1.5x better than the narrow (m, 2 d) of U back (benchmarks/README.md, "GMM denoiser fast path")
        back_t = torch.cat([back_score, back_den], dim=1).t().contiguous()
        log_const = self._weights.log() - 0.5 * (e.log().sum(-1) + d * math.log(2 * math.pi))  # (K,)

        batch_shape = x.shape[:-1]
        flat = x.reshape(-1, d)
        n = flat.shape[0]
        score = flat.new_empty(n, d)
        den = flat.new_empty(n, d)
        chunk = max(1, min(n, _CHUNK_ELEMENTS // (K * d)))
        params = (flat, V_aug, back_t, log_const, self._means)
        # One kernel for both routes. Without a graph to record, the large intermediates live in buffers
        # allocated once and reused per chunk (out= and in place); a differentiable call (DPS back-propagates
        # through the denoiser) runs the same operations with fresh tensors, which autograd can save.
        reuse = not (torch.is_grad_enabled() and any(t.requires_grad for t in params))
        bufs = {"xa": (d + 1,), "U": (K * d,), "quad": (K,)} if reuse else {}
        bufs = {name: flat.new_empty(chunk, *shape) for name, shape in bufs.items()}
        out_t_buf = flat.new_empty(2 * d, chunk) if reuse else None
        ones = flat.new_ones(chunk, 1)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            m = stop - start
            into = {name: buf[:m] for name, buf in bufs.items()}
            xa = torch.cat([flat[start:stop], ones[:m]], dim=1, out=into.get("xa"))
            U = torch.mm(xa, V_aug, out=into.get("U")).view(m, K, d)  # whitened V_k^T (x - c_k), all k at once
            quad = torch.square(torch.linalg.vector_norm(U, dim=-1, out=into.get("quad")), out=into.get("quad"))
            gamma = torch.softmax(torch.add(log_const, quad, alpha=-0.5, out=into.get("quad")), dim=-1)  # (m, K)
            U = torch.mul(U, gamma.unsqueeze(-1), out=U if reuse else None)
            # [score | denoiser - sum_k gamma_k m_k]^T, (2 d, m)
            out_t = torch.mm(back_t, U.view(m, K * d).t(), out=None if out_t_buf is None else out_t_buf[:, :m])
            score[start:stop] = out_t[:d].t()
            den[start:stop] = torch.addmm(out_t[d:].t(), gamma, self._means)
        return score.reshape(*batch_shape, d), den.reshape(*batch_shape, d)

    def denoise_cov(self, x_t, alpha_bar) -> torch.Tensor:
        """Exact ``Cov[x0|x_t] = sum_k gamma_k (C_k + mu_k mu_k^T) - E E^T`` for ``x_t (..., d)`` -> ``(..., d, d)``."""
        ab = check_alpha_bar(alpha_bar)
        x_t = check_vector_batch(x_t, self.dim, "x_t", like=self._means)
        if ab == 1.0:
            return x_t.new_zeros(*x_t.shape, self.dim)
        eig = self.eig
        post = _MixturePosterior(self._weights.log(), self._means, eig.evals, eig.evecs)
        return post.cov(x_t.reshape(-1, self.dim), ab).reshape(*x_t.shape, self.dim)

    # ------------------------------------------------------------------ conditioning
    def condition(self, A, y, sigma_y) -> GaussianMixture:
        """Exact posterior given ``y = A x + N(0, sigma_y^2 I)``: a GMM with
        weights ``~ w_k N(y; A m_k, A S_k A^T + s^2 I)`` and Gaussian-posterior components (docs/theory §3.2)."""
        A_mat, y, sigma_y = _measurement(A, y, sigma_y, self)
        upd = LinearGaussianUpdate(self._means, self._covs, A_mat, sigma_y)
        log_w = self._weights.log() + upd.log_evidence(y)
        return GaussianMixture._trusted(torch.softmax(log_w, -1), upd.post_means(y), upd.post_covs)
