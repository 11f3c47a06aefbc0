"""Exact laws of samplers on stationary Gaussian image problems, block-diagonal in the 2-D DFT: any image size.

``X ~ N(m, F^H diag(P) F)`` per channel (:class:`~dptheory.images.spectral.SpectralGaussian`) and
``Y = A X + N(0, s^2 I)`` with ``A`` block-diagonal in the orthonormal DFT: a circulant blur or denoising (blocks
of one frequency) or ``f x f`` average pooling (blocks of the ``f^2`` high-resolution frequencies
``k + (j1 h/f, j2 w/f)`` it folds onto one). Every Gaussian identity then holds block by block with ``b x b``
Hermitian matrices, so posteriors, W2, KL and the exact laws of VSRD (exact kernel, from ``x_T ~ N(0, I)``) and
MAP-RPS (stage-1 fixed point, exact kernels from ``t0``) cost ``O(d b^2)`` instead of ``O(d^3)``; block sums of
traces, Bures and KL terms equal the dense ones because ``F`` is unitary. The formulas are in docs/theory §13.5;
over ``Y`` both laws are ``X^ = m + r + M (Y - A m) + xi`` with ``Cov(X, X^) = S A^H M^H``.

These equal :func:`dptheory.sampler_law` on the dense problem (tested at 8 x 8); this module only exploits the
block structure. Shapes: blocks ``(B, b)`` / ``(B, b, b)`` complex128; images ``(c, h, w)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_sigma
from ..dp_curve import DPCurve
from ..schedules import VPSchedule, linear_schedule
from .spectral import SpectralGaussian, _fft, _ifft_real, transfer_spectrum

__all__ = ["BlockSpectralProblem", "BlockLaw", "block_bures_squared", "block_gaussian_kl", "exact_traversal"]


# ---------------------------------------------------------------------------------------------- block algebra
def _herm(M: torch.Tensor) -> torch.Tensor:
    return M.transpose(-1, -2).conj()


def _eig_fn(evals: torch.Tensor, evecs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``V diag(values) V^H`` for a batch of Hermitian eigendecompositions."""
    return (evecs * values.to(evecs.dtype)[..., None, :]) @ _herm(evecs)


def _psd_sqrt(C: torch.Tensor) -> torch.Tensor:
    ev, V = torch.linalg.eigh(C)
    return _eig_fn(ev, V, ev.clamp_min(0.0).sqrt())


def _trace(C: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(C, dim1=-2, dim2=-1).real.sum(-1)


def block_bures_squared(C1: torch.Tensor, C2: torch.Tensor, *, left_diagonal: bool = False) -> torch.Tensor:
    """Per block ``tr C1 + tr C2 - 2 tr (C1^{1/2} C2 C1^{1/2})^{1/2}`` for Hermitian PSD ``(B, b, b)``; ``(B,)``.

    The Bures term of W2 between two Gaussians (Dowson & Landau 1982); clipped at 0 against round-off.
    ``left_diagonal=True`` promises that ``C1`` is diagonal (its square root is then elementwise)."""
    if left_diagonal:
        r = torch.diagonal(C1, dim1=-2, dim2=-1).real.clamp_min(0.0).sqrt()
        inner = C2 * (r.unsqueeze(-1) * r.unsqueeze(-2)).to(C2.dtype)
    else:
        R = _psd_sqrt(C1)
        inner = R @ C2 @ R
    mid = torch.linalg.eigvalsh(inner).clamp_min(0.0).sqrt().sum(-1)
    return (_trace(C1) + _trace(C2) - 2.0 * mid).clamp_min(0.0)


def block_gaussian_kl(mean_diff: torch.Tensor, C1: torch.Tensor, C2: torch.Tensor) -> torch.Tensor:
    """Per block ``KL(N(m1, C1) || N(m2, C2))`` for the complex-coefficient bookkeeping of this module, ``(B,)``.

    ``1/2 [tr(C2^{-1} C1) + d^H C2^{-1} d - b + ln det C2 - ln det C1]`` with ``d = m2 - m1``; summed over all
    blocks it equals the real KL of the two image laws. Computed through the Cholesky factor of ``C2`` and the
    eigenvalues of ``L^{-1} C1 L^{-H}`` (so it is >= 0 up to round-off); ``inf`` where ``C1`` is singular."""
    L = torch.linalg.cholesky(C2)
    W = torch.linalg.solve_triangular(L, C1, upper=False)
    W = torch.linalg.solve_triangular(L, _herm(W), upper=False)  # L^{-1} C1 L^{-H}
    lam = torch.linalg.eigvalsh(0.5 * (W + _herm(W)))
    z = torch.linalg.solve_triangular(L, mean_diff[..., None], upper=False)[..., 0]
    with torch.no_grad():
        logterm = torch.where(lam > 0, lam.clamp_min(1e-300).log(), torch.full_like(lam, -math.inf))
    kl = 0.5 * ((lam - 1.0 - logterm).sum(-1) + z.abs().square().sum(-1))
    return kl


# ---------------------------------------------------------------------------------------------- the problem
def _pooling_blocks(c: int, h: int, w: int, f: int):
    """Aliasing blocks of ``f x f`` average pooling: flat indices ``(B, f^2)`` into ``(c, h, w)``, the
    measurement row ``(B, 1, f^2)`` and flat output indices ``(B,)`` into ``(c, h/f, w/f)``.

    1-D, orthonormal DFTs, ``N = f M``: ``Y^[q] = f^{-3/2} sum_j X^[q + j M] sum_{a<f} exp(2 pi i (q + j M) a / N)``
    (pooling ``y[i] = f^-1 sum_a x[f i + a]``); in 2-D the row is the product of the two 1-D rows."""
    hm, wm = h // f, w // f

    def row(n, m):
        q = torch.arange(m)[:, None]
        j = torch.arange(f)[None, :]
        k = q + j * m  # (m, f) aliased frequencies
        a = torch.arange(f, dtype=torch.float64)
        ph = torch.exp(2j * math.pi * k[..., None].to(torch.float64) * a / n).sum(-1)
        return k, ph * f**-1.5

    ky, ay = row(h, hm)
    kx, ax = row(w, wm)
    # blocks over (channel, qy, qx), members over (jy, jx)
    kk = (ky[:, None, :, None] * w + kx[None, :, None, :]).reshape(hm, wm, f * f)
    aa = (ay[:, None, :, None] * ax[None, :, None, :]).reshape(hm, wm, f * f)
    ch = torch.arange(c)[:, None, None, None]
    idx = (ch * h * w + kk[None]).reshape(-1, f * f)
    rows = aa[None].expand(c, hm, wm, f * f).reshape(-1, 1, f * f)
    out = torch.arange(c * hm * wm)
    return idx, rows.to(torch.complex128), out


class BlockSpectralProblem:
    """``X ~ prior`` (stationary :class:`SpectralGaussian`), ``Y = A X + N(0, s^2 I)``, ``A`` block-diagonal in DFT.

    Args:
        prior: a :class:`~dptheory.images.spectral.SpectralGaussian` with one shared mean ``(c,)``.
        operator: a circulant :class:`~dptheory.images.operators.Blur`, ``Denoising``, or
            :class:`~dptheory.images.operators.SuperResolution` (average pooling).
        sigma_y: noise std > 0.

    Attributes (blocks): ``P (B, b)`` prior power, ``rows (B, 1, b)`` the measurement map, ``post_cov (B, b, b)``
    the posterior covariance ``S - S a^H (a S a^H + s^2)^{-1} a S`` and ``gain (B, b, 1)`` its Kalman gain.
    """

    def __init__(self, prior: SpectralGaussian, operator, sigma_y):
        from .operators import SuperResolution

        if not isinstance(prior, SpectralGaussian):
            raise TypeError(f"prior must be a SpectralGaussian, got {type(prior).__name__}")
        if prior._mean.ndim == 4 or prior._mean.shape[-2:] != (1, 1):
            raise ValueError("the prior must be stationary: one constant mean per channel, shape (c,)")
        self.sigma_y = check_sigma(sigma_y, "sigma_y")
        if self.sigma_y <= 0:
            raise ValueError(f"sigma_y must be > 0 for the block laws, got {self.sigma_y}")
        self.prior, self.operator = prior, operator
        c, h, w = prior.shape
        if isinstance(operator, SuperResolution):
            f = operator.factor
            operator.in_shape((c, h, w))
            self.idx, self.rows, self.out_idx = _pooling_blocks(c, h, w, f)
            self.out_shape = (c, h // f, w // f)
        else:
            H = transfer_spectrum(operator, prior.shape).reshape(-1)
            self.idx = torch.arange(c * h * w)[:, None]
            self.rows = H[:, None, None].to(torch.complex128)
            self.out_idx = torch.arange(c * h * w)
            self.out_shape = (c, h, w)
        P = prior.power.reshape(-1)[self.idx]
        self.P = P
        S = torch.diag_embed(P.to(torch.complex128))
        s2 = self.sigma_y**2
        v = S @ _herm(self.rows)  # (B, b, 1)
        denom = (self.rows @ v).real + s2  # (B, 1, 1)
        self.gain = v / denom
        post = S - v @ _herm(v) / denom
        self.post_cov = 0.5 * (post + _herm(post))
        self._S = S
        self._evals, self._evecs = torch.linalg.eigh(self.post_cov)
        self._evals = self._evals.clamp_min(0.0)

    # ------------------------------------------------------------------ bookkeeping
    @property
    def dim(self) -> int:
        return self.prior.dim

    def _blocks(self, image: torch.Tensor) -> torch.Tensor:
        """DFT coefficients of an image ``(c, h, w)`` gathered into blocks ``(B, b)``."""
        return _fft(image.to(torch.float64)).reshape(-1)[self.idx]

    def _out_coeffs(self, y: torch.Tensor) -> torch.Tensor:
        return _fft(y.to(torch.float64)).reshape(-1)[self.out_idx]

    def _image(self, blocks: torch.Tensor) -> torch.Tensor:
        u = torch.zeros(self.dim, dtype=torch.complex128)
        u[self.idx.reshape(-1)] = blocks.reshape(-1)
        return _ifft_real(u.reshape(self.prior.shape))

    def _mean_image(self) -> torch.Tensor:
        return self.prior._mean.expand(self.prior.shape)

    def _check_y(self, y) -> torch.Tensor:
        y = torch.as_tensor(y)
        if tuple(y.shape) != self.out_shape:
            raise ValueError(f"y must have shape {self.out_shape}, got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("y contains NaN or Inf")
        return y

    def _mean_blocks_and_innovation(self, y):
        m = self._blocks(self._mean_image())
        Am = (self.rows @ m[..., None])[..., 0, 0]
        return m, self._out_coeffs(self._check_y(y)) - Am

    def mmse(self, y) -> torch.Tensor:
        """``E[X | y]`` as an image ``(c, h, w)``."""
        m, innov = self._mean_blocks_and_innovation(y)
        return self._image(m + self.gain[..., 0] * innov[:, None])

    def mmse_error(self) -> float:
        """``D* = tr Sigma`` (sum over blocks)."""
        return float(self._evals.sum())

    def mmse_w2_squared(self) -> float:
        """``W^2 = W2^2(p_X, p_{X*})``: Bures between ``S`` and ``S* = S - Sigma``, block by block."""
        return float(block_bures_squared(self._S, self._S - self.post_cov).sum())

    def optimal_dp_curve(self) -> DPCurve:
        """The exact joint optimal curve ``D(P) = D* + ((W - P)_+)^2`` (Freirich et al. 2021)."""
        return DPCurve(self.mmse_error(), math.sqrt(self.mmse_w2_squared()), "joint", note="exact (DFT blocks)")

    def per_measurement_dp_curve(self) -> DPCurve:
        """``D_y(P) = tr Sigma + ((sqrt(tr Sigma) - P)_+)^2`` (the same for every ``y``)."""
        d = self.mmse_error()
        return DPCurve(d, math.sqrt(d), "per-measurement", note="exact (DFT blocks)")

    def _fn(self, values: torch.Tensor) -> torch.Tensor:
        return _eig_fn(self._evals, self._evecs, values)

    # ------------------------------------------------------------------ sampler laws
    def vsrd_law(self, lam: float, schedule: VPSchedule | None = None, y=None) -> BlockLaw:
        """Exact law of VSRD (exact kernel, ``x_T ~ N(0, I)``) at variance factor ``lam in [0, 1]``.

        ``y`` given: the law of ``X^ | y``; ``y=None``: the joint law over ``Y``."""
        lam = float(lam)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        schedule = linear_schedule() if schedule is None else schedule
        abT = float(schedule.alpha_bar(schedule.T))
        sig = self._evals
        sT = abT * sig + (1.0 - abT)
        g = math.sqrt(abT) * sig / sT
        cov = lam * sig + g * g * (1.0 - lam * sT)
        R = self._fn(1.0 - math.sqrt(abT) * g)  # X^ = R mu(Y) + noise
        m = self._blocks(self._mean_image())
        r = (R @ m[..., None])[..., 0] - m
        return self._law(R @ self.gain, r, cov, y)

    def map_rps_law(self, t0: int, schedule: VPSchedule | None = None, y=None, *, t1: int = 10) -> BlockLaw:
        """Exact law of MAP-RPS: stage 1 at its expected-gradient fixed point with the Bayes weight (noise level
        ``alpha_bar(t1 + 1)``, the official 0-based index), stage 2 re-noised to ``t0`` and exact posterior
        kernels down to 0. ``t0 = 0`` is the stage-1 point."""
        schedule = linear_schedule() if schedule is None else schedule
        if isinstance(t0, bool) or int(t0) != t0 or not 0 <= int(t0) <= schedule.T:
            raise ValueError(f"t0 must be an integer step in [0, {schedule.T}], got {t0!r}")
        t0 = int(t0)
        ab1 = float(schedule.alpha_bar(int(t1) + 1))
        tau2 = (1.0 - ab1) / ab1
        S1 = self._S + tau2 * torch.eye(self._S.shape[-1], dtype=self._S.dtype)
        v1 = S1 @ _herm(self.rows)
        L1 = v1 / ((self.rows @ v1).real + self.sigma_y**2)
        sig = self._evals
        if t0 == 0:  # the stage-1 point itself: X^ = x1(Y), no spread
            return self._law(L1, self._no_offset(), torch.zeros_like(sig), y)
        ab = float(schedule.alpha_bar(t0))
        u = ab * sig / (ab * sig + (1.0 - ab))
        U = self._fn(u)
        M = self.gain + U @ (L1 - self.gain)  # (I - U) L + U L1
        return self._law(M, self._no_offset(), sig * (1.0 - u * u), y)

    def posterior_law(self, y=None) -> BlockLaw:
        """Exact posterior sampling: ``X^ | y ~ N(mu_y, Sigma)``."""
        return self._law(self.gain, self._no_offset(), self._evals, y)

    def _no_offset(self) -> torch.Tensor:
        """A zero mean offset ``r (B, b)``."""
        return torch.zeros(self.P.shape, dtype=torch.complex128)

    def _law(self, M: torch.Tensor, r: torch.Tensor, cov_eigvals: torch.Tensor, y) -> BlockLaw:
        """``X^ = m + r + M (Y - A m) + xi``, ``xi ~ N(0, V diag(cov_eigvals) V^H)`` (``V``: the eigenvectors of
        the posterior covariance): the law given ``y`` (kept in that eigenbasis), or joint."""
        if y is not None:
            m, innov = self._mean_blocks_and_innovation(y)
            mu = m + self.gain[..., 0] * innov[:, None]
            mean = m + r + M[..., 0] * innov[:, None]
            return BlockLaw(self, mean - mu, None, None, y_given=True, eigvals=cov_eigvals)
        cY = (self.rows @ self._S @ _herm(self.rows)).real + self.sigma_y**2  # (B, 1, 1)
        cov = M @ _herm(M) * cY + self._fn(cov_eigvals)
        cross = self._S @ _herm(self.rows) @ _herm(M)  # Cov(X, X^)
        return BlockLaw(self, r, 0.5 * (cov + _herm(cov)), cross, y_given=False)


@dataclass(frozen=True)
class BlockLaw:
    """A Gaussian law of an estimate ``X^`` in DFT blocks, given ``y`` (against the posterior) or joint (against
    the prior).

    Given ``y`` the estimate's covariance commutes with the posterior's: it is kept as its eigenvalues
    ``eigvals (B, b)`` in the posterior's eigenbasis, and W2 and KL reduce to sums of scalars.

    Attributes:
        mean_offset: ``E[X^|y] - mu_y`` (given y) or ``E X^ - m`` (joint), ``(B, b)``.
        cov: ``Cov X^`` (joint), ``(B, b, b)``; ``None`` given ``y`` (see ``eigvals``).
        cross: ``Cov(X, X^)`` (joint only; given ``y`` the two are independent).
        eigvals: ``Cov[X^ | y]`` in the posterior's eigenbasis (given ``y`` only).
    """

    problem: BlockSpectralProblem
    mean_offset: torch.Tensor
    cov: torch.Tensor | None
    cross: torch.Tensor | None
    y_given: bool
    eigvals: torch.Tensor | None = None

    def mse(self) -> float:
        """``E[||X - X^||^2 | y]`` or ``E||X - X^||^2`` (exact)."""
        off = float(self.mean_offset.abs().square().sum())
        if self.y_given:
            return self.problem.mmse_error() + off + float(self.eigvals.sum())
        cross = torch.diagonal(self.cross, dim1=-2, dim2=-1).real.sum()
        return off + float(_trace(self.problem._S).sum() + _trace(self.cov).sum() - 2.0 * cross)

    def w2(self) -> float:
        """``W2`` to the posterior (given y) or to the prior (joint): mean term plus (block) Bures."""
        off = float(self.mean_offset.abs().square().sum())
        if self.y_given:
            bures = (self.problem._evals.sqrt() - self.eigvals.clamp_min(0.0).sqrt()).square().sum()
        else:
            bures = block_bures_squared(self.problem._S, self.cov, left_diagonal=True).sum()
        return math.sqrt(off + float(bures))

    def kl(self, direction: str = "target||estimate") -> float:
        """Gaussian KL between the target law (posterior given y, prior jointly) and the estimate's law.

        ``direction`` is ``"target||estimate"`` or ``"estimate||target"``; ``inf`` when the side in the
        denominator, or the side whose density is integrated, is singular (relative eigenvalue < 1e-13)."""
        if direction not in ("target||estimate", "estimate||target"):
            raise ValueError("direction must be 'target||estimate' or 'estimate||target'")
        prob = self.problem
        if self.y_given:
            sig, est = prob._evals, self.eigvals
            scale = float(sig.max())
            if float(est.min()) <= 1e-13 * scale or float(sig.min()) <= 1e-13 * scale:
                return math.inf
            z2 = (_herm(prob._evecs) @ self.mean_offset[..., None])[..., 0].abs().square()
            a, b = (sig, est) if direction == "target||estimate" else (est, sig)
            r = a / b
            return float(0.5 * (r - 1.0 - r.log() + z2 / b).sum())
        C1, C2 = (prob._S, self.cov) if direction == "target||estimate" else (self.cov, prob._S)
        scale = float(prob.P.max())
        if float(torch.linalg.eigvalsh(self.cov).min()) <= 1e-13 * scale:
            return math.inf  # the estimate has no density (e.g. MAP-RPS at t0 = 0)
        return float(block_gaussian_kl(self.mean_offset, C1, C2).sum())


def exact_traversal(problem: BlockSpectralProblem, y, *, lams=(0.0, 0.25, 0.5, 0.75, 1.0),
                    t0s=(0, 10, 20, 50, 100, 200, 400, 1000), schedule: VPSchedule | None = None,
                    kl: bool = True, forms=("per_measurement", "joint")) -> dict:
    """The exact D-P points of VSRD over ``lam``, MAP-RPS over ``t0`` and posterior sampling, both forms.

    Every number is per pixel (MSE / d, W2 / sqrt(d), KL / d), with its gap ``D - D(P)`` to the exact optimal
    curve of its form: per measurement (given ``y``: against ``D_y(P)``) and joint (over ``Y``: against
    Freirich et al.'s ``D(P)``). ``kl=True`` adds the per-measurement ``KL(posterior || estimate)`` (``inf`` at
    singular laws; O(1) per point, since the laws commute given ``y``); the joint KL is :meth:`BlockLaw.kl`.
    ``forms`` selects the forms (the joint one costs a block Bures per point).
    Returns a JSON-ready dict with ``curves``, ``vsrd``, ``map_rps`` and ``posterior``.
    """
    forms = tuple(forms)
    if not forms or any(f not in ("per_measurement", "joint") for f in forms):
        raise ValueError(f"forms must be a non-empty subset of ('per_measurement', 'joint'), got {forms!r}")
    d = problem.dim
    curves = {"per_measurement": problem.per_measurement_dp_curve()}
    if "joint" in forms:
        curves["joint"] = problem.optimal_dp_curve()

    def point(method, knob) -> dict:
        out = {}
        for form in forms:
            law = method(knob, y=y if form == "per_measurement" else None)
            D, P = law.mse() / d, law.w2() / math.sqrt(d)
            curve = curves[form]
            gap = D - (curve.mmse_error + max(curve.w - P * math.sqrt(d), 0.0) ** 2) / d
            row = {"distortion": D, "perception": P, "gap": gap}
            if kl and form == "per_measurement":
                row["kl"] = law.kl() / d
            out[form] = row
        return out

    rows_v = [{"lam": float(v), **point(lambda k, y: problem.vsrd_law(k, schedule, y), v)} for v in lams]
    rows_m = [{"t0": int(t), **point(lambda k, y: problem.map_rps_law(k, schedule, y), t)} for t in t0s]
    post = point(lambda k, y: problem.posterior_law(y), None)
    return {
        "curves": {f: {"D_star": curves[f].mmse_error / d, "W": curves[f].w / math.sqrt(d)} for f in forms},
        "vsrd": rows_v,
        "map_rps": rows_m,
        "posterior": post,
    }
