"""Image inverse problems ``y = A x + N(0, sigma_y^2 I)`` and :func:`solve_image`, the image front door.

:func:`solve_image` runs the samplers of :mod:`dptheory.samplers` UNCHANGED on image batches ``(n, c, h, w)``
(float32, model units [-1, 1]); it is the image twin of :func:`dptheory.solve` and validates the knobs the same way.
It builds the prior denoiser ``D(x_t, ab) -> E[x0 | x_t]`` (a network adapter or the exact empirical mixture); the
conditional denoiser ``E[x0 | x_t, y]`` for ``posterior``, ``vsrd``, ``ddpm``, ``ddim`` and MAP-RPS's stage 2 (the
EXACT one when the backbone can condition itself, ``denoiser.condition(operator, y, sigma_y)``, or when one is
passed as ``posterior_denoiser``; otherwise the DPS-guided :class:`~dptheory.samplers.DPSGuidedDenoiser`, weight
``zeta``); and the start (``x_T ~ N(0, I)``, or ``A^+ y`` for ``map-rps`` stage 1 and ``red-diff``).

Every denoiser call (``D``, ``eps``, ``score`` or ``sample_x0``; a batch of particles counts once) is counted, so
:class:`ImageSolution` carries the NFE next to the wall time: DPS calls once per step; MAP-RPS once per stage-1
iteration and stage-2 step; RED-Diff once per step; VML-MAP ``inner_steps + 1`` times per level.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .._checks import check_alpha_bar, check_int, check_sigma
from ..denoisers import CountingDenoiser, Denoiser, ExactDenoiser, _Counter
from ..gaussian import Gaussian
from ..linalg import SymmetricEig
from ..operators import LinearOperator
from ..samplers import METHODS, DPSGuidedDenoiser, pinv_start
from ..samplers.spec import check_method, run_method
from ..schedules import VPSchedule, linear_schedule
from ..solver import METHOD_NAMES

__all__ = [
    "ImageInverseProblem",
    "ImageSolution",
    "CountingDenoiser",
    "GaussianImageDenoiser",
    "solve_image",
    "METHOD_NAMES",
]


class ImageInverseProblem:
    """``Y = A X + N(0, sigma_y^2 I)`` for images ``X (n, c, h, w)``.

    Args:
        operator: an image :class:`~dptheory.operators.LinearOperator` (:mod:`dptheory.images.operators`;
            without ``has_pinv`` the start is ``A^T y``).
        sigma_y: noise std >= 0, in model units (images in [-1, 1]).
    """

    def __init__(self, operator, sigma_y):
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a dptheory.LinearOperator (A and A_adjoint methods), got "
                            f"{type(operator).__name__}")
        self.operator = operator
        self.sigma_y = check_sigma(sigma_y, "sigma_y")

    def __repr__(self) -> str:
        return f"ImageInverseProblem({type(self.operator).__name__}, sigma_y={self.sigma_y:g})"

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``y = A x + sigma_y z`` with ``z ~ N(0, I)`` drawn from ``generator``; ``x (n, c, h, w)``."""
        Ax = self.operator.A(x)
        if self.sigma_y == 0.0:
            return Ax
        return Ax + self.sigma_y * torch.randn(Ax.shape, generator=generator, dtype=Ax.dtype, device=Ax.device)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y`` (``A^T y`` for an operator without ``pinv``): the naive baseline and the MAP-RPS start."""
        return pinv_start(self.operator, y)


@dataclass
class ImageSolution:
    """What :func:`solve_image` returns.

    Attributes:
        x: the restorations ``(n, c, h, w)``, detached.
        nfe: network evaluations (a batched call counts once; a call that mixes two networks,
            :class:`~dptheory.NoiseLevelExperts`, counts two).
        seconds: wall time of the solve (conditioning and sampling).
        method: the method name.
        exact_conditional: whether an exact conditional denoiser was used (else DPS guidance, or none needed).
    """

    x: torch.Tensor
    nfe: int
    seconds: float
    method: str
    exact_conditional: bool


# ---------------------------------------------------------------------------------------------- Gaussian prior
class GaussianImageDenoiser(Denoiser):
    """The exact denoiser of a Gaussian prior ``N(m, S)`` on images: a view of ``ExactDenoiser(Gaussian(m, S))``
    on images ``(n, c, h, w)`` flattened to vectors ``(n, d)``, ``d = c h w``.

    With ``S = V diag(l) V^T`` (the :class:`~dptheory.Gaussian`'s one eigendecomposition) and
    ``e = ab l + (1 - ab)``:

        E[x0 | x_t]   = m + V diag(sqrt(ab) l / e) V^T (x_t - sqrt(ab) m),
        Cov[x0 | x_t] = V diag(l (1 - ab) / e) V^T,

    so each call is two ``(n, d) x (d, d)`` products and ``sample_x0`` draws exactly from ``p(x0 | x_t)``
    (docs/theory §3.1), in the input's dtype and device. :meth:`condition` returns the same class for the exact
    posterior ``N(mu_y, Sigma_y)`` (:meth:`dptheory.Gaussian.condition`, in the prior's dtype, with the dense
    ``A`` of the operator).

    Args:
        mean: ``(c, h, w)``.
        cov: ``(d, d)`` symmetric PSD.
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        mean = torch.as_tensor(mean).to(torch.float64)
        prior = Gaussian(mean.reshape(-1), torch.as_tensor(cov).to(torch.float64))  # rejects non-PSD by name
        self._view(prior, tuple(mean.shape))

    @classmethod
    def of_gaussian(cls, prior: Gaussian, shape) -> GaussianImageDenoiser:
        """The image view of a vector prior ``prior`` (a :class:`~dptheory.Gaussian` on ``R^d``) for images of
        ``shape = (c, h, w)`` with ``c h w = d``."""
        if not isinstance(prior, Gaussian):
            raise TypeError(f"prior must be a Gaussian, got {type(prior).__name__}")
        shape = tuple(int(s) for s in shape)
        if math.prod(shape) != prior.dim:
            raise ValueError(f"shape must hold d = {prior.dim} values, got {shape}")
        self = cls.__new__(cls)
        self._view(prior, shape)
        return self

    def _view(self, prior: Gaussian, shape: tuple) -> None:
        self.prior, self.shape = prior, shape
        self._exact: dict = {}

    @classmethod
    def fit(cls, images: torch.Tensor, shrinkage: float = 1e-3) -> GaussianImageDenoiser:
        """Mean and covariance (``+ shrinkage I``) of ``images (N, c, h, w)``."""
        X = images.reshape(images.shape[0], -1).to(torch.float64)
        m = X.mean(0)
        Xc = X - m
        cov = Xc.T @ Xc / max(X.shape[0] - 1, 1)
        cov.diagonal().add_(float(shrinkage))
        return cls(m.reshape(images.shape[1:]), cov)

    @property
    def mean(self) -> torch.Tensor:
        """``E[x0]`` (image-shaped, the prior's dtype); for a conditioned denoiser ``E[x0 | y]``."""
        return self.prior.mean.reshape(self.shape)

    @property
    def total_variance(self) -> torch.Tensor:
        """``tr Cov[x0]``; for a conditioned denoiser the exact MMSE error given ``y``."""
        return self.prior.eig.evals.sum()

    def _denoiser(self, like: torch.Tensor) -> ExactDenoiser:
        """``ExactDenoiser`` of the prior cast to ``like``'s dtype and device (cast once, reusing the eigenbasis)."""
        key = (like.dtype, like.device)
        if key not in self._exact:
            p, eig = self.prior, self.prior.eig
            cast = [t.to(dtype=like.dtype, device=like.device) for t in (p.mean, p.cov, eig.evals, eig.evecs, eig.tol)]
            self._exact[key] = ExactDenoiser(Gaussian._trusted(*cast[:2], SymmetricEig(*cast[2:])))
        return self._exact[key]

    def _flat(self, x_t: torch.Tensor) -> torch.Tensor:
        if tuple(x_t.shape[1:]) != self.shape:
            raise ValueError(f"x_t must have shape (n, {', '.join(map(str, self.shape))}), got {tuple(x_t.shape)}")
        return x_t.reshape(x_t.shape[0], -1)

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        return self._denoiser(x_t)(self._flat(x_t), alpha_bar).reshape(x_t.shape)

    def sample_x0(self, x_t: torch.Tensor, alpha_bar: float, generator=None) -> torch.Tensor:
        """One exact draw from ``p(x0 | x_t)`` per row: ``E[x0 | x_t]`` plus a draw of
        :meth:`dptheory.Gaussian.denoise_error_law` (``n d`` normals in ``x_t``'s dtype)."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            return x_t.clone()
        error = self._denoiser(x_t).prior.denoise_error_law(ab).sample(x_t.shape[0], generator=generator)
        return self(x_t, ab) + error.reshape(x_t.shape)

    def _posterior(self, operator, y, sigma_y) -> Gaussian:
        p = self.prior
        A = operator.matrix(self.shape, dtype=p.dtype)
        y = torch.as_tensor(y).to(p.dtype).reshape(-1)
        if y.numel() != A.shape[0]:
            raise ValueError(f"y must hold one measurement of {A.shape[0]} values, got shape {tuple(y.shape)}")
        return p.condition(A, y, sigma_y)

    def condition(self, operator, y: torch.Tensor, sigma_y: float) -> GaussianImageDenoiser:
        """The exact conditional denoiser ``E[x0 | x_t, y]`` (the denoiser of the posterior ``N(mu_y, Sigma_y)``)
        for one measurement ``y`` (shape ``A`` of one image, with or without the batch axis of 1)."""
        return GaussianImageDenoiser.of_gaussian(self._posterior(operator, y, sigma_y), self.shape)

    def posterior_mean(self, operator, y: torch.Tensor, sigma_y: float) -> torch.Tensor:
        """``E[x0 | y]``, image-shaped (the prior's dtype)."""
        return self._posterior(operator, y, sigma_y).mean.reshape(self.shape)


def _is_exact(den) -> bool:
    return callable(getattr(den, "sample_x0", None))


def solve_image(problem: ImageInverseProblem, y: torch.Tensor, method: str, denoiser, *,
                schedule: VPSchedule | None = None, n_samples: int = 1, generator: torch.Generator | None = None,
                progress: bool = False, callback=None, posterior_denoiser=None, zeta: float | None = None,
                **knobs) -> ImageSolution:
    """Restore images from ``y`` with ``method``; the image twin of :func:`dptheory.solve`.

    Args:
        problem: an :class:`ImageInverseProblem`.
        y: the measurement with a leading batch axis: ``(1, ...)`` shared by ``n_samples`` particles, or
            ``(n, ...)`` with one restoration per measurement (then ``n_samples`` must be 1).
        method: one of ``"posterior"``, ``"ddpm"``, ``"ddim"``, ``"dps"``, ``"vsrd"``, ``"map-rps"``,
            ``"red-diff"``, ``"vml-map"``, ``"ddrm"``, ``"diffpir"``, ``"pigdm"``, ``"daps"``.
        denoiser: the PRIOR denoiser ``D(x_t, ab)``, differentiable in ``x_t`` (a network adapter, a latent
            backbone or the exact empirical mixture).
        schedule: the VP schedule of the sampler (default: linear, T = 1000; a network's own schedule for a
            network).
        n_samples: particles per measurement.
        posterior_denoiser: the conditional denoiser ``E[x0 | x_t, y]``: ``None`` (default) builds the exact one
            with ``denoiser.condition(operator, y, sigma_y)`` when the backbone offers it, else DPS guidance;
            ``"dps"`` forces DPS guidance (:class:`~dptheory.samplers.DPSGuidedDenoiser`, weight ``zeta``,
            needs ``sigma_y > 0``); ``"pigdm"`` the same guidance with the PiGDM likelihood variance
            ``sigma_y^2 + 1 - ab`` (stable at high noise with a network); or pass a conditional denoiser (exact
            when it has ``sample_x0``).
        zeta: (default 1) the DPS weight of the guided conditional denoiser, and the default ``zeta`` of ``dps``
            and of MAP-RPS's ``dps`` stage 2; for ``"diffpir"``, DiffPIR's own noise fraction (default 0.3).
        progress: tqdm progress bars.
        callback: ``callback(i, t, x, x0_hat)`` forwarded to the sampler.
        knobs: the sampler's own keyword arguments (``t0``, ``lam``, ``steps``, ``iters``, ``eta``, ...).
            Defaults that differ from the sampler's: MAP-RPS ``stage2`` is ``"posterior"`` with an exact
            conditional denoiser and ``"dps"`` otherwise; vsrd ``kernel`` is ``"exact"`` with an exact
            conditional denoiser and ``"small"`` otherwise.

    Returns:
        :class:`ImageSolution` with ``x (n, c, h, w)``, the NFE and the wall time.

    Raises:
        ValueError: unknown method, a knob out of range (``lam`` outside [0, 1], ``t0`` outside [0, T], ...), bad
            ``y`` or ``n_samples``, or ``"posterior"`` without an exact conditional denoiser.
        TypeError: a knob the method does not take.
    """
    spec = check_method(METHODS, method, knobs)
    _check_image_call(problem, y, n_samples, posterior_denoiser)
    schedule = linear_schedule() if schedule is None else schedule
    start_time = time.perf_counter()
    n = n_samples if y.shape[0] == 1 else y.shape[0]
    x_pinv = problem.pinv(y)
    x_pinv = x_pinv.expand(n, *x_pinv.shape[1:]).clone()

    counter = _Counter()
    prior = CountingDenoiser(denoiser, counter)
    needs_cond = spec.denoiser == "conditional" or (
        method == "map-rps" and knobs.get("stage2") != "dps" and knobs["t0"] != 0  # t0 = 0: no stage 2
    )
    cond = _conditional(spec, problem, y, denoiser, prior, posterior_denoiser, zeta, counter) if needs_cond else None
    exact = _is_exact(cond)
    if spec.needs_exact and not exact:
        raise ValueError(
            f"method {method!r} needs an exact conditional denoiser with sample_x0 (a backbone with .condition, "
            "or posterior_denoiser=...); with a network use dps, vsrd or map-rps"
        )
    if spec.start == "pinv":
        x_init = x_pinv
    else:
        x_init = torch.randn(x_pinv.shape, generator=generator, dtype=x_pinv.dtype, device=x_pinv.device)
    x = run_method(spec, x_init, schedule, prior=prior, conditional=cond, exact=exact, operator=problem.operator,
                   y=y, sigma_y=problem.sigma_y, zeta=zeta, knobs=knobs, generator=generator, callback=callback,
                   progress=progress)
    seconds = time.perf_counter() - start_time
    return ImageSolution(x=x.detach(), nfe=counter.n, seconds=seconds, method=method, exact_conditional=exact)


def _check_image_call(problem, y, n_samples, posterior_denoiser) -> None:
    """The arguments of :func:`solve_image` other than the method and its knobs."""
    if not isinstance(problem, ImageInverseProblem):
        raise TypeError(f"problem must be an ImageInverseProblem, got {type(problem).__name__}")
    n_samples = check_int(n_samples, "n_samples")
    if not isinstance(y, torch.Tensor) or y.ndim < 2:
        raise ValueError("y must be a tensor with a leading batch axis, (1, ...) or (n, ...)")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y must be finite")
    if y.shape[0] != 1 and n_samples != 1:
        raise ValueError("with a batch of measurements y (n, ...), n_samples must be 1 (one draw per measurement)")
    if isinstance(posterior_denoiser, str) and posterior_denoiser not in ("dps", "pigdm"):
        raise ValueError(f"posterior_denoiser must be None, 'dps', 'pigdm' or a denoiser, got {posterior_denoiser!r}")


def _conditional(spec, problem, y, denoiser, prior, posterior_denoiser, zeta, counter):
    """The conditional denoiser ``E[x0 | x_t, y]`` (see :func:`solve_image`), counted with ``counter``; ``None``
    for map-rps without an exact one (it falls back to its own ``"dps"`` stage 2)."""
    op, sigma_y = problem.operator, problem.sigma_y
    zeta = 1.0 if zeta is None else zeta
    if isinstance(posterior_denoiser, str):  # "dps" or "pigdm"
        likelihood = "plugin" if posterior_denoiser == "dps" else "pigdm"
        return DPSGuidedDenoiser(prior, op, y, sigma_y, zeta, likelihood=likelihood)
    if posterior_denoiser is not None:
        return CountingDenoiser(posterior_denoiser, counter)
    if callable(getattr(denoiser, "condition", None)):
        return CountingDenoiser(denoiser.condition(op, y, sigma_y), counter)
    if spec.denoiser == "conditional":
        return DPSGuidedDenoiser(prior, op, y, sigma_y, zeta)
    return None
