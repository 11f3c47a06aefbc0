"""One denoiser interface joins theory and practice: ``D(x_t, alpha_bar) -> E[x0 | x_t]``.

The noise level is passed as its ``alpha_bar_t`` (a float in (0, 1]), so one denoiser serves every schedule and
every respaced grid; a network adapter maps it to its own training timestep. Score and noise prediction are derived
from the denoiser in ONE place (docs/theory §0):

    score(x_t) = (sqrt(ab) D - x_t) / (1 - ab)          eps(x_t) = (x_t - sqrt(ab) D) / sqrt(1 - ab)
    D = (x_t - sqrt(1 - ab) eps) / sqrt(ab)              D = sqrt(ab) x_t - sqrt(1 - ab) v   (v-prediction)

Implementations: :class:`ExactDenoiser` of a Gaussian or GMM prior (exact Tweedie, ``Cov[x0|x_t]`` and draws from
``p(x0 | x_t)``: the exact reverse kernels of docs/theory §3.3); :class:`ConditionalExactDenoiser`,
``E[x0 | x_t, y]`` from the exact posterior of a :class:`~dptheory.LinearInverseProblem` (one ``y`` or one per
particle); :class:`NetworkDenoiser`, a network predicting ``eps``, ``x0`` or ``v`` on its own discrete schedule;
:class:`NoiseLevelExperts`, two networks that share the noise levels. All are differentiable in ``x_t`` (DPS).
"""

from __future__ import annotations

import math

import torch

from ._checks import check_alpha_bar
from .gaussian import Gaussian
from .linalg import sym_eig
from .mixture import GaussianMixture, _MixturePosterior

__all__ = [
    "Denoiser",
    "ExactDenoiser",
    "ConditionalExactDenoiser",
    "NetworkDenoiser",
    "NoiseLevelExperts",
    "CountingDenoiser",
    "network_passes",
    "score_from_x0",
    "eps_from_x0",
    "x0_from_eps",
    "x0_from_v",
]


# ---------------------------------------------------------------------------------------------- conversions
def score_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """Tweedie inverted: ``grad log p_t(x_t) = (sqrt(ab) x0_hat - x_t) / (1 - ab)`` (needs ``ab < 1``)."""
    return (math.sqrt(alpha_bar) * x0 - x_t) / (1.0 - alpha_bar)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """``eps_hat = (x_t - sqrt(ab) x0_hat) / sqrt(1 - ab)`` (needs ``ab < 1``)."""
    return (x_t - math.sqrt(alpha_bar) * x0) / math.sqrt(1.0 - alpha_bar)


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """``x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab)``."""
    return (x_t - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """``x0_hat = sqrt(ab) x_t - sqrt(1 - ab) v_hat`` (Salimans & Ho 2022, v = sqrt(ab) eps - sqrt(1-ab) x0)."""
    return math.sqrt(alpha_bar) * x_t - math.sqrt(1.0 - alpha_bar) * v


class Denoiser:
    """Base class: subclasses implement ``__call__(x_t, alpha_bar) -> E[x0 | x_t]``.

    ``score`` and ``eps`` are derived here, once. Exact denoisers also provide ``cov`` and ``sample_x0``.
    """

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """``grad log p_t(x_t)`` from Tweedie's formula, for ``alpha_bar < 1``."""
        ab = _level(alpha_bar)
        return score_from_x0(x_t, self(x_t, ab), ab)

    def eps(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """Noise prediction ``eps_hat(x_t)``, for ``alpha_bar < 1``."""
        ab = _level(alpha_bar)
        return eps_from_x0(x_t, self(x_t, ab), ab)


def _level(alpha_bar) -> float:
    ab = check_alpha_bar(alpha_bar)
    if ab == 1.0:
        raise ValueError("alpha_bar must be < 1 for a score or eps prediction (no noise at alpha_bar = 1)")
    return ab


# ---------------------------------------------------------------------------------------------- exact
class ExactDenoiser(Denoiser):
    """The exact Tweedie denoiser ``E[x0 | x_t]`` of a Gaussian or GMM prior (docs/theory §3.1-3.2).

    Also exact: ``cov(x_t, ab) = Cov[x0 | x_t]`` and ``sample_x0(x_t, ab, generator)``, a draw from
    ``p(x0 | x_t)``, which turns any ancestral loop into an exact sampler (docs/theory §3.3).

    Args:
        prior: a :class:`~dptheory.Gaussian` or :class:`~dptheory.GaussianMixture`.
    """

    def __init__(self, prior):
        if not isinstance(prior, (Gaussian, GaussianMixture)):
            raise TypeError(f"prior must be a Gaussian or GaussianMixture, got {type(prior).__name__}")
        self.prior = prior

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        return self.prior.denoise(x_t, alpha_bar)

    def score(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """Exact diffused score (computed directly, not through Tweedie, so it is accurate near ab = 1)."""
        ab = check_alpha_bar(alpha_bar)
        return self.prior.diffuse(ab).score(x_t)

    def cov(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """``Cov[x0 | x_t]``, ``(n, d, d)``."""
        return self.prior.denoise_cov(x_t, alpha_bar)

    def sample_x0(self, x_t: torch.Tensor, alpha_bar: float, generator=None) -> torch.Tensor:
        """One exact draw from ``p(x0 | x_t)`` per row of ``x_t (n, d)``."""
        ab = check_alpha_bar(alpha_bar)
        if ab == 1.0:
            return x_t.clone()
        p = self.prior
        if isinstance(p, Gaussian):
            C = p.denoise_cov(x_t[:1], ab)[0]
            noise = Gaussian._trusted(torch.zeros_like(p.mean), C).sample(x_t.shape[0], generator=generator)
            return p.denoise(x_t, ab) + noise
        return _MixturePosterior(p.weights.log(), p.means, p.eig.evals, p.eig.evecs).sample(x_t, ab, generator)


class ConditionalExactDenoiser(ExactDenoiser):
    """The exact conditional denoiser ``E[x0 | x_t, y]`` of a linear inverse problem (docs/theory §3.1-3.2).

    Args:
        problem: a :class:`~dptheory.LinearInverseProblem`.
        y: ``(m,)`` for one measurement shared by all particles, or ``(n, m)`` with one measurement per particle
            (row i of ``x_t`` is conditioned on ``y[i]``); the latter is how joint (over Y) laws are sampled.
    """

    def __init__(self, problem, y):
        self.problem = problem
        y = problem.check_y(y)
        self.y = y
        if y.ndim == 1:
            super().__init__(problem.posterior(y))
            self._batched = None
            return
        if y.ndim != 2:
            raise ValueError(f"y must have shape (m,) or (n, m), got {tuple(y.shape)}")
        upd = problem._update
        log_w = torch.log(problem._post_weights(y))  # (n, K)
        eig = sym_eig(upd.post_covs, "posterior covs")
        self.prior = None
        self._batched = _MixturePosterior(log_w, upd.post_means(y), eig.evals, eig.evecs)

    def _check_batch(self, x_t: torch.Tensor) -> None:
        if x_t.ndim != 2 or x_t.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"x_t must have shape (n, d) with n = {self.y.shape[0]} (one row per measurement), "
                f"got {tuple(x_t.shape)}"
            )

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        if self._batched is None:
            return super().__call__(x_t, alpha_bar)
        ab = check_alpha_bar(alpha_bar)
        self._check_batch(x_t)
        return x_t.clone() if ab == 1.0 else self._batched.mean(x_t, ab)

    def score(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        if self._batched is None:
            return super().score(x_t, alpha_bar)
        return Denoiser.score(self, x_t, alpha_bar)

    def cov(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        if self._batched is None:
            return super().cov(x_t, alpha_bar)
        ab = check_alpha_bar(alpha_bar)
        self._check_batch(x_t)
        return x_t.new_zeros(*x_t.shape, x_t.shape[-1]) if ab == 1.0 else self._batched.cov(x_t, ab)

    def sample_posterior(self, n: int, generator=None) -> torch.Tensor:
        """Draws from ``p(x0 | y)``: ``n`` of them for one ``y``, or one per row for ``y (n, m)``."""
        if self._batched is None:
            return self.prior.sample(n, generator=generator)
        if n != self.y.shape[0]:
            raise ValueError(f"n must equal the number of measurements {self.y.shape[0]}, got {n}")
        return self._batched.sample_components(n, generator, self.y)

    def sample_x0(self, x_t: torch.Tensor, alpha_bar: float, generator=None) -> torch.Tensor:
        if self._batched is None:
            return super().sample_x0(x_t, alpha_bar, generator)
        ab = check_alpha_bar(alpha_bar)
        self._check_batch(x_t)
        return x_t.clone() if ab == 1.0 else self._batched.sample(x_t, ab, generator)


# ---------------------------------------------------------------------------------------------- networks
class NetworkDenoiser(Denoiser):
    """Adapter: a network ``net(x_t, t) -> prediction`` trained on its own discrete VP schedule.

    Args:
        net: a callable ``(x_t, t)`` with ``t`` a ``(n,)`` long tensor of timesteps (0-based, as in DDPM/ADM
            code: index ``i`` means ``alpha_bar = schedule.alpha_bar(i + 1)``).
        schedule: the network's training schedule (:class:`~dptheory.VPSchedule`).
        prediction: ``"eps"``, ``"x0"`` or ``"v"``.
        channels: if set, keep only the first ``channels`` output channels (learned-variance ADM models output
            6 channels: eps and the variance interpolation, available through :meth:`x0_and_variance_values`).
        data_range: ``(lo, hi)`` of the data the network was trained on (``(-1, 1)`` for the pixel networks), or
            ``None``. When set, DPS and MAP-RPS clamp their x0 estimate to it by default (``clip_denoised``).

    ``alpha_bar`` is mapped to the network timestep nearest in log-SNR; the prediction is converted with the
    *network's* ``alpha_bar`` at that step, so the adapter is exact on the network's own grid.
    """

    def __init__(self, net, schedule, prediction: str = "eps", channels: int | None = None, data_range=None):
        if prediction not in ("eps", "x0", "v"):
            raise ValueError(f"prediction must be 'eps', 'x0' or 'v', got {prediction!r}")
        if data_range is not None and not (len(data_range) == 2 and float(data_range[0]) < float(data_range[1])):
            raise ValueError(f"data_range must be None or a pair (lo, hi) with lo < hi, got {data_range!r}")
        self.net, self.schedule, self.prediction, self.channels = net, schedule, prediction, channels
        self.data_range = None if data_range is None else (float(data_range[0]), float(data_range[1]))

    def timestep(self, alpha_bar: float) -> int:
        """The 0-based network timestep for ``alpha_bar``."""
        return int(self.schedule.step_from_alpha_bar(alpha_bar)) - 1

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        return self.x0_and_variance_values(x_t, alpha_bar)[0]

    def x0_and_variance_values(self, x_t: torch.Tensor, alpha_bar: float):
        """``(x0_hat, v)`` from ONE network call: ``v`` is the output beyond the first ``channels`` (an ADM's
        learned-range variance values, about [-1, 1]), ``None`` when the network predicts no variance."""
        ab = _level(alpha_bar)
        step = max(self.timestep(ab), 0)
        ab_net = float(self.schedule.alpha_bar(step + 1))
        t = torch.full((x_t.shape[0],), step, dtype=torch.long, device=x_t.device)
        out = self.net(x_t, t)
        v = None
        if self.channels is not None:
            out, v = out[:, : self.channels], out[:, self.channels :]
            v = v if v.shape[1] else None
        return self._x0(x_t, out, ab_net), v

    def _x0(self, x_t, out, ab_net):
        if self.prediction == "eps":
            return x0_from_eps(x_t, out, ab_net)
        if self.prediction == "v":
            return x0_from_v(x_t, out, ab_net)
        return out


class NoiseLevelExperts(Denoiser):
    """Two networks that share the noise levels of one schedule (the expert denoisers of eDiff-I, Balaji et al.
    2022, Sec. 4.1), mixed where neither is clearly the better one:

        ``D(x_t, ab) = (1 - w_i) low(x_t, ab) + w_i high(x_t, ab)``,   ``i`` = the network step of ``ab``,

    with ``w_i = 0`` below the first knot, ``w`` linear in ``i`` between knots ``(step, weight)`` and the last knot's
    weight, 1, from the last knot on. Where ``w_i`` is 0 or 1 ONE network runs; in between both run (two network
    passes, :meth:`network_passes`). A convex combination of two estimators of ``E[x0 | x_t]`` has the MSE
    ``(1 - w)^2 m_low + w^2 m_high + 2 w (1 - w) c``, below both MSEs near ``w* = E[e_low . (e_low - e_high)] /
    E|e_low - e_high|^2`` when the errors ``e`` are not fully correlated (:func:`dptheory.images.experts.mixing_knots`).

    Args:
        low, high: :class:`NetworkDenoiser` s trained on the same schedule (equal ``alpha_bar`` grids) with the
            same declared ``data_range``; each may have its own parametrisation (e.g. eps below, v above).
        knots: ``[(step, weight), ...]`` with 0-based steps increasing in ``1..T-1``, weights in [0, 1] and the
            last weight 1; ``[(s, 1.0)]`` is a hard switch to ``high`` at step ``s``.
    """

    def __init__(self, low: NetworkDenoiser, high: NetworkDenoiser, knots):
        for name, d in (("low", low), ("high", high)):
            if not isinstance(d, NetworkDenoiser):
                raise TypeError(f"{name} must be a NetworkDenoiser, got {type(d).__name__}")
        a, b = low.schedule.alpha_bars, high.schedule.alpha_bars
        if a.shape != b.shape or not torch.allclose(a, b.to(a.dtype), rtol=1e-12, atol=0.0):
            raise ValueError(f"low and high must share one schedule, got T = {low.schedule.T} and "
                             f"{high.schedule.T} with different alpha_bar grids")
        if low.data_range != high.data_range:
            raise ValueError(f"low and high must declare the same data_range, got {low.data_range} and "
                             f"{high.data_range}")
        T = low.schedule.T
        try:
            knots = [(k[0], float(k[1])) for k in knots]
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"knots must be a list of (step, weight) pairs, got {knots!r}") from None
        steps = [k[0] for k in knots]
        if (not knots or any(not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= T - 1 for s in steps)
                or any(b <= a for a, b in zip(steps, steps[1:], strict=False))):
            raise ValueError(f"knots need int steps increasing in [1, T - 1] = [1, {T - 1}], got steps {steps}")
        if any(not 0.0 <= w <= 1.0 for _, w in knots) or knots[-1][1] != 1.0:
            raise ValueError(f"knot weights must lie in [0, 1] and the last must be 1, got {[w for _, w in knots]}")
        self.low, self.high, self.knots = low, high, knots
        self.schedule, self.data_range = low.schedule, low.data_range

    @property
    def switch_step(self) -> int:
        """The first network step that ``high`` handles alone (the last knot)."""
        return self.knots[-1][0]

    def timestep(self, alpha_bar: float) -> int:
        """The 0-based network timestep for ``alpha_bar`` (the two experts share it)."""
        return self.low.timestep(alpha_bar)

    def weight(self, alpha_bar: float) -> float:
        """``w_i``, the weight of ``high`` at the network step of ``alpha_bar``."""
        i = self.timestep(_level(alpha_bar))
        if i < self.knots[0][0]:
            return 0.0
        for (s0, w0), (s1, w1) in zip(self.knots, self.knots[1:], strict=False):
            if s0 <= i < s1:
                return w0 + (w1 - w0) * (i - s0) / (s1 - s0)
        return 1.0

    def network_passes(self, alpha_bar: float) -> int:
        """Networks run by one evaluation at ``alpha_bar``: 1, or 2 where the two are mixed."""
        return 1 if self.weight(alpha_bar) in (0.0, 1.0) else 2

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        return self.x0_and_variance_values(x_t, alpha_bar)[0]

    def x0_and_variance_values(self, x_t: torch.Tensor, alpha_bar: float):
        """``(x0_hat, v)``: the mixture of the two networks' :meth:`NetworkDenoiser.x0_and_variance_values`
        (``v`` mixed too when both predict one, else ``None``)."""
        w = self.weight(alpha_bar)
        if w == 0.0:
            return self.low.x0_and_variance_values(x_t, alpha_bar)
        if w == 1.0:
            return self.high.x0_and_variance_values(x_t, alpha_bar)
        (xl, vl), (xh, vh) = (d.x0_and_variance_values(x_t, alpha_bar) for d in (self.low, self.high))
        v = None if vl is None or vh is None else torch.lerp(vl, vh, w)
        return torch.lerp(xl, xh, w), v


def network_passes(denoiser, alpha_bar: float) -> int:
    """Networks one evaluation of ``denoiser`` at ``alpha_bar`` runs: its ``network_passes(alpha_bar)`` when it
    has one (:class:`NoiseLevelExperts`, and wrappers that pass it through), else 1."""
    passes = getattr(denoiser, "network_passes", None)
    return passes(alpha_bar) if callable(passes) else 1


class _Counter:
    """The count shared by the :class:`CountingDenoiser` wrappers of one solve."""

    def __init__(self):
        self.n = 0


class CountingDenoiser(Denoiser):
    """Wrap a denoiser and count its evaluations (``__call__``, ``eps``, ``score`` and ``sample_x0``): one each, or
    the wrapped denoiser's ``network_passes(alpha_bar)`` when it has one (:class:`NoiseLevelExperts`).

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

    def _count(self, alpha_bar) -> None:
        self.counter.n += network_passes(self.denoiser, alpha_bar)

    def __call__(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        self._count(alpha_bar)
        return self.denoiser(x_t, alpha_bar)

    def eps(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        self._count(alpha_bar)
        inner = getattr(self.denoiser, "eps", None)
        return inner(x_t, alpha_bar) if callable(inner) else Denoiser.eps(_Uncounted(self.denoiser), x_t, alpha_bar)

    def score(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        self._count(alpha_bar)
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
            self._count(alpha_bar)
            return inner(x_t, alpha_bar)

        return counted

    @property
    def sample_x0(self):
        inner = getattr(self.denoiser, "sample_x0", None)
        if not callable(inner):
            raise AttributeError(f"{type(self.denoiser).__name__} has no sample_x0")

        def counted(x_t, alpha_bar, generator=None):
            self._count(alpha_bar)
            return inner(x_t, alpha_bar, generator)

        return counted


class _Uncounted(Denoiser):
    """A plain callable seen as a :class:`Denoiser` (for ``eps``/``score`` of a bare function)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x_t, alpha_bar):
        return self.fn(x_t, alpha_bar)
