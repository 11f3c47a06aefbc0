"""Image inverse problems ``y = A x + N(0, sigma_y^2 I)`` and :func:`solve_image`, the image front door.

:func:`solve_image` runs the samplers of :mod:`dptheory.samplers` UNCHANGED on image batches ``(n, c, h, w)``
(float32, model units [-1, 1]); it is the image twin of :func:`dptheory.solve` and validates the knobs the same
way (the sampler's keyword-only arguments, through the same helper). What it builds for each method:

- the prior denoiser ``D(x_t, ab) -> E[x0 | x_t]`` (a network adapter or the exact empirical mixture);
- the conditional denoiser ``E[x0 | x_t, y]`` for ``posterior``, ``vsrd``, ``ddpm``, ``ddim`` and MAP-RPS's
  stage 2: the EXACT one when the backbone can condition itself (``denoiser.condition(operator, y, sigma_y)``,
  e.g. :class:`~dptheory.images.backbones.EmpiricalMixtureDenoiser`) or when one is passed as
  ``posterior_denoiser``; otherwise the DPS-guided :class:`~dptheory.samplers.DPSGuidedDenoiser` (weight ``zeta``);
- the start: ``x_T ~ N(0, I)`` for the diffusion samplers, ``A^+ y`` for the optimisation-based ones
  (``map-rps`` stage 1, ``red-diff``).

Every call of a denoiser (``D``, ``eps``, ``score`` or ``sample_x0``; a batch of particles counts once) is
counted, so the returned :class:`ImageSolution` carries the number of function evaluations (NFE) next to the
wall time. DPS back-propagates through the prior denoiser and calls it once per step; MAP-RPS calls it once per
stage-1 iteration and once per stage-2 step; RED-Diff once per step; VML-MAP ``inner_steps + 1`` times per level.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .._checks import check_alpha_bar, check_int, check_sigma
from ..conditioning import LinearGaussianUpdate
from ..denoisers import Denoiser
from ..linalg import sym_eig
from ..operators import LinearOperator
from ..samplers import DPSGuidedDenoiser, pinv_start
from ..schedules import VPSchedule, linear_schedule
from ..solver import METHOD_NAMES, sampler_for

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
        nfe: denoiser evaluations (a batched call counts once).
        seconds: wall time of the solve (conditioning and sampling).
        method: the method name.
        exact_conditional: whether an exact conditional denoiser was used (else DPS guidance, or none needed).
    """

    x: torch.Tensor
    nfe: int
    seconds: float
    method: str
    exact_conditional: bool


class _Counter:
    def __init__(self):
        self.n = 0


class CountingDenoiser(Denoiser):
    """Wrap a denoiser and count its evaluations (``__call__``, ``eps``, ``score`` and ``sample_x0``).

    ``sample_x0`` exists on the wrapper only if the wrapped denoiser has it, so the samplers' capability checks
    (``callable(getattr(d, "sample_x0", None))``) see through the wrapper. Several wrappers may share one
    ``counter`` (the prior and the conditional denoiser of one solve).
    """

    def __init__(self, denoiser, counter: _Counter | None = None):
        self.denoiser = denoiser
        self.counter = _Counter() if counter is None else counter

    @property
    def nfe(self) -> int:
        return self.counter.n

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        self.counter.n += 1
        return self.denoiser(x_t, alpha_bar)

    def eps(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        self.counter.n += 1
        inner = getattr(self.denoiser, "eps", None)
        return inner(x_t, alpha_bar) if callable(inner) else Denoiser.eps(_Uncounted(self.denoiser), x_t, alpha_bar)

    def score(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        self.counter.n += 1
        inner = getattr(self.denoiser, "score", None)
        if callable(inner):
            return inner(x_t, alpha_bar)
        return Denoiser.score(_Uncounted(self.denoiser), x_t, alpha_bar)

    @property
    def data_range(self):
        """The wrapped denoiser's ``data_range`` (``None`` if it declares none): drives ``clip_denoised=None``."""
        return getattr(self.denoiser, "data_range", None)

    @property
    def x0_and_variance_values(self):
        """The wrapped network's ``(x0, variance values)`` call, counted; absent if it has none."""
        inner = getattr(self.denoiser, "x0_and_variance_values", None)
        if not callable(inner):
            raise AttributeError(f"{type(self.denoiser).__name__} has no x0_and_variance_values")

        def counted(x_t, alpha_bar):
            self.counter.n += 1
            return inner(x_t, alpha_bar)

        return counted

    @property
    def sample_x0(self):
        inner = getattr(self.denoiser, "sample_x0", None)
        if not callable(inner):
            raise AttributeError(f"{type(self.denoiser).__name__} has no sample_x0")

        def counted(x_t, alpha_bar, generator=None):
            self.counter.n += 1
            return inner(x_t, alpha_bar, generator)

        return counted


class _Uncounted(Denoiser):
    """A plain callable seen as a :class:`Denoiser` (for ``eps``/``score`` of a bare function)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x_t, alpha_bar):
        return self.fn(x_t, alpha_bar)


# ---------------------------------------------------------------------------------------------- Gaussian prior
class GaussianImageDenoiser(Denoiser):
    """The exact denoiser of a Gaussian prior ``N(m, S)`` on images (flattened to ``d = c h w``).

    With ``S = V diag(l) V^T`` (one eigendecomposition) and ``e = ab l + (1 - ab)``:

        E[x0 | x_t]   = m + V diag(sqrt(ab) l / e) V^T (x_t - sqrt(ab) m),
        Cov[x0 | x_t] = V diag(l (1 - ab) / e) V^T,

    so each call is two ``(n, d) x (d, d)`` products and ``sample_x0`` draws exactly from ``p(x0 | x_t)``
    (docs/theory §3.1). :meth:`condition` returns the same class for the exact posterior
    ``N(mu_y, Sigma_y)``, ``Sigma_y = S - S A^T (A S A^T + s^2 I)^{-1} A S``, ``mu_y = m + S A^T (A S A^T +
    s^2 I)^{-1} (y - A m)``, computed in float64 with the dense ``A`` of the operator.

    Args:
        mean: ``(c, h, w)``.
        cov: ``(d, d)`` symmetric PSD.
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor | None = None, *, eig=None):
        self.shape = tuple(mean.shape)
        self.m = mean.reshape(-1).to(torch.float64)
        if eig is None:
            dec = sym_eig(0.5 * (cov.to(torch.float64) + cov.to(torch.float64).T), "cov")  # rejects non-PSD by name
            evals, evecs = dec.evals, dec.evecs
        else:
            evals, evecs = eig
        self.evals, self.evecs = evals, evecs
        self._cast: dict = {}

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
        """``E[x0]`` (image-shaped, float64); for a conditioned denoiser ``E[x0 | y]``."""
        return self.m.reshape(self.shape)

    @property
    def total_variance(self) -> torch.Tensor:
        """``tr Cov[x0]``; for a conditioned denoiser the exact MMSE error given ``y``."""
        return self.evals.sum()

    def _tables(self, like: torch.Tensor):
        key = (like.dtype, like.device)
        if key not in self._cast:
            self._cast[key] = tuple(t.to(dtype=like.dtype, device=like.device) for t in (self.m, self.evals,
                                                                                          self.evecs))
        return self._cast[key]

    def _flat(self, x_t: torch.Tensor) -> torch.Tensor:
        if tuple(x_t.shape[1:]) != self.shape:
            raise ValueError(f"x_t must have shape (n, {', '.join(map(str, self.shape))}), got {tuple(x_t.shape)}")
        return x_t.reshape(x_t.shape[0], -1)

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        ab = check_alpha_bar(alpha_bar)
        x = self._flat(x_t)
        if ab == 1.0:
            return x_t.clone()
        m, l, V = self._tables(x_t)
        g = math.sqrt(ab) * l / (ab * l + (1.0 - ab))
        return (m + ((x - math.sqrt(ab) * m) @ V * g) @ V.T).reshape(x_t.shape)

    def sample_x0(self, x_t: torch.Tensor, alpha_bar: float, generator=None) -> torch.Tensor:
        """One exact draw from ``p(x0 | x_t)`` per row."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            return x_t.clone()
        _, l, V = self._tables(x_t)
        sd = (l * (1.0 - ab) / (ab * l + (1.0 - ab))).sqrt()
        z = torch.randn(x_t.shape[0], V.shape[0], generator=generator, dtype=x_t.dtype, device=x_t.device)
        return self(x_t, ab) + ((z * sd) @ V.T).reshape(x_t.shape)

    def _posterior(self, operator, y, sigma_y):
        A = operator.matrix(self.shape, dtype=torch.float64)
        y = torch.as_tensor(y).to(torch.float64).reshape(-1)
        if y.numel() != A.shape[0]:
            raise ValueError(f"y must hold one measurement of {A.shape[0]} values, got shape {tuple(y.shape)}")
        S = (self.evecs * self.evals) @ self.evecs.T
        upd = LinearGaussianUpdate(self.m.unsqueeze(0), S.unsqueeze(0), A, check_sigma(sigma_y))
        return upd.post_means(y)[0], upd.post_covs[0]

    def condition(self, operator, y: torch.Tensor, sigma_y: float) -> GaussianImageDenoiser:
        """The exact conditional denoiser ``E[x0 | x_t, y]`` (the denoiser of the posterior ``N(mu_y, Sigma_y)``)
        for one measurement ``y`` (shape ``A`` of one image, with or without the batch axis of 1)."""
        mu, Sigma = self._posterior(operator, y, sigma_y)
        return GaussianImageDenoiser(mu.reshape(self.shape), Sigma)

    def posterior_mean(self, operator, y: torch.Tensor, sigma_y: float) -> torch.Tensor:
        """``E[x0 | y]``, image-shaped (float64)."""
        return self._posterior(operator, y, sigma_y)[0].reshape(self.shape)


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
    fn = sampler_for(method, knobs)
    if method == "diffpir" and zeta is not None:  # DiffPIR's own zeta (noise fraction), not the DPS weight
        knobs["zeta"] = zeta
    zeta = 1.0 if zeta is None else zeta
    if not isinstance(problem, ImageInverseProblem):
        raise TypeError(f"problem must be an ImageInverseProblem, got {type(problem).__name__}")
    schedule = linear_schedule() if schedule is None else schedule
    n_samples = check_int(n_samples, "n_samples")
    if not isinstance(y, torch.Tensor) or y.ndim < 2:
        raise ValueError("y must be a tensor with a leading batch axis, (1, ...) or (n, ...)")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y must be finite")
    if y.shape[0] != 1 and n_samples != 1:
        raise ValueError("with a batch of measurements y (n, ...), n_samples must be 1 (one draw per measurement)")
    if method == "map-rps" and "t0" not in knobs:
        raise ValueError(f"method 'map-rps' needs the knob t0 (an integer step in [0, {schedule.T}])")
    if isinstance(posterior_denoiser, str) and posterior_denoiser not in ("dps", "pigdm"):
        raise ValueError(f"posterior_denoiser must be None, 'dps', 'pigdm' or a denoiser, got {posterior_denoiser!r}")

    start_time = time.perf_counter()
    op, sigma_y = problem.operator, problem.sigma_y
    n = n_samples if y.shape[0] == 1 else y.shape[0]
    x_pinv = problem.pinv(y)
    x_pinv = x_pinv.expand(n, *x_pinv.shape[1:]).clone()

    counter = _Counter()
    prior = CountingDenoiser(denoiser, counter)
    needs_cond = method in ("posterior", "ddpm", "ddim", "vsrd") or (
        method == "map-rps" and knobs.get("stage2") != "dps" and knobs["t0"] != 0  # t0 = 0: no stage 2
    )
    cond = None
    if needs_cond:
        if isinstance(posterior_denoiser, str):  # "dps" or "pigdm"
            likelihood = "plugin" if posterior_denoiser == "dps" else "pigdm"
            cond = DPSGuidedDenoiser(prior, op, y, sigma_y, zeta, likelihood=likelihood)
        elif posterior_denoiser is not None:
            cond = CountingDenoiser(posterior_denoiser, counter)
        elif callable(getattr(denoiser, "condition", None)):
            cond = CountingDenoiser(denoiser.condition(op, y, sigma_y), counter)
        elif method != "map-rps":  # MAP-RPS falls back to its own "dps" stage 2 instead
            cond = DPSGuidedDenoiser(prior, op, y, sigma_y, zeta)
    exact = _is_exact(cond)
    if method == "posterior" and not exact:
        raise ValueError(
            "method 'posterior' needs an exact conditional denoiser with sample_x0 (a backbone with .condition, "
            "or posterior_denoiser=...); with a network use dps, vsrd or map-rps"
        )

    common = dict(generator=generator, callback=callback, progress_bar=progress)
    cond_kw = dict(operator=op, y=y, sigma_y=sigma_y)
    if method in ("map-rps", "red-diff"):
        x_init = x_pinv
    else:
        x_init = torch.randn(x_pinv.shape, generator=generator, dtype=x_pinv.dtype, device=x_pinv.device)

    if method in ("posterior", "ddpm", "ddim"):
        x = fn(cond, x_init, schedule, **common, **knobs)
    elif method == "vsrd":
        knobs.setdefault("kernel", "exact" if exact else "small")
        x = fn(cond, x_init, schedule, **common, **knobs)
    elif method == "dps":
        x = fn(prior, x_init, schedule, **cond_kw, zeta=knobs.pop("zeta", zeta), **common, **knobs)
    elif method == "map-rps":
        knobs.setdefault("stage2", "posterior" if exact else "dps")
        knobs.setdefault("zeta", zeta)
        post = cond if knobs["stage2"] in ("posterior", "vsrd") else None
        x = fn(prior, x_init, schedule, **cond_kw, posterior_denoiser=post, **common, **knobs)
    else:
        x = fn(prior, x_init, schedule, **cond_kw, **common, **knobs)
    seconds = time.perf_counter() - start_time
    return ImageSolution(x=x.detach(), nfe=counter.n, seconds=seconds, method=method, exact_conditional=exact)
