"""Exact laws of samplers on a linear-Gaussian problem (docs/theory §4, §5.2 and §6.3).

On ``X ~ N(m, S)``, ``Y = A X + N(0, s^2 I)`` with the exact (affine) denoisers, every step of ``ddpm``, ``ddim``,
``posterior``, ``vsrd`` (both kernels), ``dps`` with ``norm="squared"`` and MAP-RPS stage 2 is affine-Gaussian:

    x_s = F x_t + H Y + h + xi,    xi ~ N(0, Q) independent of everything before,

so the output law follows exactly, without sampling, from ``(mean, C) -> (Phi mean + phi, Phi C Phi^T + Q)`` on
the augmented state ``z = (X, Y, x_t)``: per measurement (``y`` given) and jointly over ``Y ~ p(y)`` (``y=None``,
with the joint MSE and ``Cov(X, X^)``; docs/theory §4.3). The steps mirror :mod:`dptheory.samplers` line by line.
Not affine, hence not here: DPS with ``norm="l2"`` (the default), clipping, and MAP-RPS stage 1 as an optimiser
(its expected-gradient fixed point is: :func:`map_rps_stage1_fixed_point`). Closed forms to check the recursion
against: :func:`vsrd_end_law` (docs/theory §5.2), :func:`map_rps_stage2_law` (§6.3) and :attr:`SamplerLaw.gain`
``= F_1 ... F_K`` (equal to ``dE[x0 | x_K]/dx_K`` for exact kernels, §4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._checks import as_tensor, check_problem, check_schedule, check_steps, check_vector_batch
from .gaussian import Gaussian
from .sampler_laws_peers import PEER_METHODS, peer_maps
from .samplers import METHODS as _SPECS
from .samplers._common import reverse_pairs
from .samplers.map_rps import bayes_prior_weight
from .schedules import VPSchedule, linear_schedule

__all__ = ["SamplerLaw", "sampler_law", "vsrd_end_law", "map_rps_stage2_law", "map_rps_stage1_fixed_point"]

# method -> the sampler knobs its law reads (defaults and checks: the method's row, dptheory.samplers.METHODS),
# and the law's own knobs with their defaults: ``conditional`` (True: the exact conditional denoiser, as
# ``dpt.solve`` uses; False: the prior denoiser) and map-rps's stage-1 point ``x_map``.
_LAW_KNOBS = {
    "ddpm": ("variance",),
    "ddim": ("eta",),
    "posterior": (),
    "vsrd": ("lam", "kernel"),
    "dps": ("zeta", "norm", "variance"),
    "map-rps": ("t0", "stage2", "lam", "t1", "w_prior"),
    "ddrm": ("eta", "eta_b", "init"),
    "diffpir": ("lam", "zeta"),
    "pigdm": ("eta", "weight", "guidance", "init"),
    "daps": ("ode_steps", "langevin_steps", "lr", "lr_min_ratio", "tau", "r"),
}
_OWN_KNOBS = {"ddpm": {"conditional": True}, "ddim": {"conditional": True}, "posterior": {"conditional": True},
              "vsrd": {"conditional": True}, "map-rps": {"x_map": None}}
METHODS = tuple(_LAW_KNOBS)


@dataclass(frozen=True)
class SamplerLaw:
    """The exact law of a sampler's output ``X^`` on a Gaussian problem.

    Attributes:
        augmented: the joint Gaussian of ``(X, Y, X^)``, dimension ``d + m + d``. For a fixed ``y`` the
            ``Y`` block is the point mass at ``y`` (zero covariance) and ``X`` has the posterior law.
        gain: ``F_1 F_2 ... F_K``, ``(d, d)``: the derivative of ``E[X^ | x_start, Y]`` in the start point
            (for map-rps, in ``x_t0``).
        y: the measurement, or ``None`` for the joint law over ``Y ~ p(y)``.
    """

    augmented: Gaussian
    gain: torch.Tensor
    y: torch.Tensor | None

    @property
    def dim(self) -> int:
        return self.gain.shape[0]

    @property
    def law(self) -> Gaussian:
        """Law of ``X^``: given ``y``, or marginal over ``Y`` when ``y is None``."""
        d = self.dim
        return Gaussian._trusted(self.augmented.mean[-d:], self.augmented.cov[-d:, -d:])

    @property
    def cross_cov(self) -> torch.Tensor:
        """``Cov(X, X^)``, ``(d, d)`` (zero given ``y``: the sampler sees X only through Y)."""
        d = self.dim
        return self.augmented.cov[:d, -d:]

    @property
    def mse(self) -> torch.Tensor:
        """``E||X - X^||^2`` (given ``y``, or joint).

        ``= ||E X - E X^||^2 + tr Cov X + tr Cov X^ - 2 tr Cov(X, X^)``.
        """
        d, mean, cov = self.dim, self.augmented.mean, self.augmented.cov
        diff = mean[:d] - mean[-d:]
        return diff.square().sum() + torch.diagonal(cov[:d, :d] - 2 * cov[:d, -d:] + cov[-d:, -d:]).sum()


class _Affine(NamedTuple):
    """A point ``x = M Y + b + N(0, C)``, independent of X given Y; ``M (d, m)``, ``b (d,)``, ``C (d, d)``."""

    M: torch.Tensor
    b: torch.Tensor
    C: torch.Tensor

    def renoised(self, ab: float) -> _Affine:
        """``sqrt(ab) x + sqrt(1 - ab) z``."""
        eye = torch.eye(self.b.shape[0], dtype=self.b.dtype, device=self.b.device)
        return _Affine(math.sqrt(ab) * self.M, math.sqrt(ab) * self.b, ab * self.C + (1.0 - ab) * eye)


class _BaseLaw(NamedTuple):
    """The law the denoiser is exact for, ``N(c0 + L Y, Sigma0)``: the prior (``L = 0``) or the posterior.

    ``law`` carries ``Sigma0`` (and its cached eigendecomposition); its mean is not used."""

    L: torch.Tensor
    c0: torch.Tensor
    law: Gaussian

    @classmethod
    def of(cls, problem, conditional: bool) -> _BaseLaw:
        prior, upd = problem.prior, problem._update
        if not conditional:
            return cls(problem.A.new_zeros(problem.dim, problem.m), prior.mean, prior)
        L = upd.gain[0]
        post = Gaussian._trusted(prior.mean, upd.post_covs[0])
        return cls(L, prior.mean - L @ (problem.A @ prior.mean), post)

    def denoiser(self, ab: float):
        """``(K, J, b, C)``: ``E[x0 | x_t, Y] = K x_t + J Y + b``, ``Cov[x0 | x_t, Y] = C`` at ``ab < 1``.

        Per eigenvalue ``l`` of the covariance: ``K = sqrt(ab) g`` and ``C = (1 - ab) g`` with
        ``g = l / (ab l + 1 - ab)``; ``J, b = (I - sqrt(ab) K) (L, c0)`` (docs/theory §3.1).
        """
        eig = self.law.eig
        lam = eig.evals.clamp_min(0.0)
        g = lam / (ab * lam + 1.0 - ab)
        shrink = eig.matrix_function(1.0 - ab * g)  # I - sqrt(ab) K
        K, C = eig.matrix_function(math.sqrt(ab) * g), eig.matrix_function((1.0 - ab) * g)
        return K, shrink @ self.L, shrink @ self.c0, C

    def diffused(self, ab: float) -> _Affine:
        """The exact diffused law as a start: ``sqrt(ab) (c0 + L Y + N(0, Sigma0)) + sqrt(1 - ab) z``."""
        return _Affine(self.L, self.c0, self.law.cov).renoised(ab)


def sampler_law(problem, method: str, *, y=None, start="noise", schedule: VPSchedule | None = None,
                steps=None, t_start=None, **knobs) -> SamplerLaw:
    """The exact law of ``dpt.solve(problem, y, method, ...)`` with the exact denoiser, by the recursion.

    Args:
        problem: a :class:`~dptheory.LinearInverseProblem` with a Gaussian prior.
        method: ``"ddpm"``, ``"ddim"``, ``"posterior"``, ``"vsrd"``, ``"dps"``, ``"map-rps"``, ``"ddrm"``,
            ``"diffpir"``, ``"pigdm"`` or ``"daps"``.
        y: ``(m,)`` for the per-measurement law; ``None`` for the joint law over ``Y ~ p(y)`` (what ``solve``
            samples when given one measurement per particle, ``y (n, m)``).
        start: the law of ``x_{t_start}`` (not for map-rps): ``"noise"`` (N(0, I), as ``solve``),
            ``"exact"`` (the exact diffused posterior at ``t_start``; the diffused prior with
            ``conditional=False``), a :class:`~dptheory.Gaussian` (independent of X and Y), or a tuple
            ``(M, b)`` / ``(M, b, C)`` meaning ``x = M Y + b + N(0, C)``.
        schedule: VP schedule (default: linear, T = 1000); ``steps``, ``t_start``: the grid, as the samplers.
        knobs: as the samplers take them, with the same defaults:

            - ddpm: ``variance`` ("small"/"large"); ddim: ``eta``; vsrd: ``lam`` and ``kernel``
              ("exact"/"small"); ddpm, ddim, posterior and vsrd also take ``conditional`` (default True: the
              exact conditional denoiser, as in ``solve``; False: the prior denoiser);
            - dps: ``zeta``, ``variance`` and ``norm``, which must be ``"squared"`` (``"l2"``, the sampler's
              default, is not affine);
            - ddrm (``eta``, ``eta_b``, ``init``), diffpir (``lam``, ``zeta``), pigdm (``eta``, ``weight``,
              ``guidance``, ``init``) and daps (``ode_steps``, ``langevin_steps``, ``lr``, ``lr_min_ratio``, ``tau``,
              ``r``), with the prior denoiser; their default ``steps`` are the samplers' (20, 100, 100, 200);
            - map-rps: ``t0`` (required), ``stage2`` ("posterior", or "vsrd" with ``lam``) and the stage-1
              point ``x_map``: a vector ``(d,)``, a Gaussian (its law, independent of X given Y), a tuple
              ``(M, b)`` or ``(M, b, C)`` (``x_map = M Y + b + N(0, C)``; ``(pinv(A), 0)`` is ``A^+ y``), or
              ``None`` for the stage-1 fixed point :func:`map_rps_stage1_fixed_point` with knobs ``t1`` and
              ``w_prior``. Stage 2 runs every step from ``t0`` (as :func:`~dptheory.samplers.map_rps`
              does), so it takes no ``steps``.

    Returns:
        :class:`SamplerLaw` with ``law``, ``mse``, ``cross_cov``, ``augmented`` and ``gain``.

    Examples:
        >>> import dptheory as dpt
        >>> from dptheory.sampler_laws import sampler_law
        >>> prob = dpt.LinearInverseProblem(dpt.Gaussian([0.0], [[1.0]]), [[1.0]], 1.0)
        >>> out = sampler_law(prob, "posterior", y=[2.0], start="exact", steps=10)
        >>> round(float(out.law.mean), 12), round(float(out.law.cov), 12)  # the posterior N(1, 1/2)
        (1.0, 0.5)
        >>> round(float(sampler_law(prob, "posterior", start="exact", steps=10).mse), 12)  # 2 D* = 2 tr Sigma
        1.0
    """
    problem = check_problem(problem)
    steps = check_steps(steps)  # steps=0 would be the starting law
    if not problem.is_gaussian:
        raise TypeError("sampler_law needs a Gaussian prior (a GMM prior gives non-Gaussian laws: use MC)")
    schedule = check_schedule(schedule)
    kn = _law_knobs(problem, method, knobs, schedule)
    y = None if y is None else _one_y(problem, y)
    if method == "map-rps":
        method, kn, pairs, first = _map_rps_plan(problem, kn, start, steps, t_start, schedule)
    else:
        t_start = schedule.T if t_start is None else schedule.check_step(t_start, "t_start")
        steps = _SPECS[method].defaults(exact=True).get("steps") if steps is None else steps
        pairs = reverse_pairs(schedule, steps, t_start)
        first = _start_point(problem, start, float(schedule.alpha_bar(t_start)), bool(kn.get("conditional", True)))
    base = _BaseLaw.of(problem, kn.get("conditional", False))
    if method in PEER_METHODS:  # prior denoiser, own affine maps (incl. the DDRM / PiGDM start)
        maps = peer_maps(problem, base, schedule, method, kn, pairs)
    else:
        maps = (_step(problem, base, schedule, method, kn, t, s) for t, s in pairs)
    return _propagate(problem, y, first, maps)


def _law_knobs(problem, method: str, knobs: dict, schedule) -> dict:
    """The knobs of the law of ``method``, defaults filled in (from its row), checked as the sampler checks them."""
    if method not in _LAW_KNOBS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    spec, own = _SPECS[method], _OWN_KNOBS.get(method, {})
    allowed = (*_LAW_KNOBS[method], *own)
    unknown = set(knobs) - set(allowed)
    if unknown:
        raise TypeError(f"method {method!r} does not take knob(s) {sorted(unknown)}; its knobs are {sorted(allowed)}")
    missing = [k for k in spec.required if k in allowed and k not in knobs]
    if missing:
        raise ValueError(f"method {method!r} needs the knob(s) {missing}")
    sampler_kn = {**spec.defaults(exact=True), **{k: v for k, v in knobs.items() if k not in own}}
    if sampler_kn.get("variance", "small") not in ("small", "large"):
        raise ValueError(f"variance must be 'small' or 'large', got {sampler_kn['variance']!r}")
    if method == "dps" and sampler_kn["norm"] != "squared":
        raise ValueError(f"dps with norm={sampler_kn['norm']!r} is not affine in x_t (the step is a unit vector "
                         "times zeta), so it has no closed-form law: pass norm='squared', or measure "
                         "norm='l2' by Monte Carlo with dpt.solve")
    if method == "map-rps" and sampler_kn["stage2"] not in ("posterior", "vsrd"):
        raise ValueError(f"stage2 must be 'posterior' or 'vsrd' for an exact law, got {sampler_kn['stage2']!r} "
                         "(map-rps stage-2 DPS uses the unsquared norm, which is not affine)")
    spec.validate(sampler_kn, problem.sigma_y, schedule)
    return {**{k: sampler_kn[k] for k in _LAW_KNOBS[method]}, **own, **{k: knobs[k] for k in own if k in knobs}}


def _map_rps_plan(problem, kn: dict, start, steps, t_start, schedule):
    """MAP-RPS as VSRD from its re-noised stage-1 point: ``("vsrd", knobs, grid, x_t0)``."""
    if steps is not None or t_start is not None or not (isinstance(start, str) and start == "noise"):
        raise ValueError("map-rps starts from its stage-1 point x_map and runs every step from t0: pass "
                         "x_map and t0, not start/steps/t_start")
    t0 = schedule.check_step(kn["t0"], "t0")
    x_map = _stage1_point(problem, kn["x_map"], kn["t1"], kn["w_prior"], schedule)
    first = x_map.renoised(float(schedule.alpha_bar(t0)))
    vsrd_kn = {"lam": 1.0 if kn["stage2"] == "posterior" else kn["lam"], "kernel": "exact", "conditional": True}
    return "vsrd", vsrd_kn, reverse_pairs(schedule, None, t0), first


def _propagate(problem, y, first: _Affine, maps) -> SamplerLaw:
    """Push the augmented Gaussian of ``(X, Y, x)`` through the affine ``maps`` ``(F, H, h, Q)``."""
    mean, cov, gain = _initial_state(problem, y, first)
    d, m = problem.dim, problem.m
    n = 2 * d + m
    ix, iy = slice(d + m, n), slice(d, d + m)
    eye_n = torch.eye(n, dtype=mean.dtype, device=mean.device)
    for F, H, h, Q in maps:
        Phi = eye_n.clone()
        Phi[ix, iy], Phi[ix, ix] = H, F
        mean = Phi @ mean
        mean[ix] += h
        cov = Phi @ cov @ Phi.T
        cov[ix, ix] += Q
        gain = F @ gain
    return SamplerLaw(Gaussian._trusted(mean, cov), gain, y)


def _step(problem, base: _BaseLaw, schedule, method: str, kn: dict, t: int, s: int):
    """``(F, H, h, Q)`` of one step ``t -> s``, written as the sampler writes it."""
    c1, c2, beta_tilde, beta = schedule.reverse_coefficients(t, s)
    ab_t, ab_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
    K, J, b, C = base.denoiser(ab_t)
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    x0_var = 0.0  # the factor of c1^2 Cov[x0 | x_t] in Q (exact kernels draw x0 from p(x0 | x_t))
    if method in ("ddpm", "dps"):
        noise = 0.0 if s == 0 else (beta_tilde if kn["variance"] == "small" else beta)
    elif method == "ddim":  # x_s = sqrt(ab_s) x0 + e eps + sigma z, eps = (x_t - sqrt(ab_t) x0)/sqrt(1-ab_t)
        noise = float(kn["eta"]) ** 2 * beta_tilde
        e = math.sqrt(max(1.0 - ab_s - noise, 0.0))
        c1, c2 = math.sqrt(ab_s) - e * math.sqrt(ab_t / (1.0 - ab_t)), e / math.sqrt(1.0 - ab_t)
    elif method == "posterior":
        noise, x0_var = beta_tilde, 1.0
    else:  # vsrd: x0 = D + sqrt(lam) (x0~ - D) for the exact kernel; noise sqrt(lam beta_tilde) z
        lam = float(kn["lam"])
        noise, x0_var = lam * beta_tilde, (lam if kn["kernel"] == "exact" else 0.0)
    F, H, h = c1 * K + c2 * eye, c1 * J, c1 * b
    Q = noise * eye + (x0_var * c1**2) * C
    if method == "dps":  # x_s -= g grad_{x_t} ||y - A D(x_t)||^2 / (2 s^2), g = zeta beta / sqrt(alpha)
        g = float(kn["zeta"]) * beta / math.sqrt(1.0 - beta)
        A, s2 = problem.A, problem.sigma_y**2
        KtAt = K.T @ A.T
        F = F - (g / s2) * KtAt @ A @ K
        H = H + (g / s2) * KtAt
        h = h - (g / s2) * KtAt @ (A @ b)
    return F, H, h, Q


def _initial_state(problem, y, first: _Affine):
    """Mean and covariance of ``(X, Y, x_start)`` and the identity gain."""
    prior, A = problem.prior, problem.A
    d, m = problem.dim, problem.m
    if y is None:  # (X, Y) ~ joint law
        mean_xy = torch.cat([prior.mean, A @ prior.mean])
        SAt = prior.cov @ A.T
        R = A @ SAt + problem.sigma_y**2 * torch.eye(m, dtype=A.dtype, device=A.device)
        cov_xy = torch.cat([torch.cat([prior.cov, SAt], 1), torch.cat([SAt.T, R], 1)])
    else:  # X | y ~ posterior, Y = y
        post = problem.posterior(y)
        mean_xy = torch.cat([post.mean, y])
        cov_xy = torch.block_diag(post.cov, A.new_zeros(m, m))
    eye = torch.eye(d + m, dtype=A.dtype, device=A.device)
    Psi = torch.cat([eye, torch.cat([A.new_zeros(d, d), first.M], 1)])  # (X, Y) -> (X, Y, M Y)
    mean = Psi @ mean_xy
    mean[d + m:] += first.b
    cov = Psi @ cov_xy @ Psi.T
    cov[d + m:, d + m:] += first.C
    return mean, cov, torch.eye(d, dtype=A.dtype, device=A.device)


def _affine(problem, spec, what: str) -> _Affine:
    """A Gaussian, a vector or a tuple ``(M, b[, C])`` as ``x = M Y + b + N(0, C)``."""
    d, m, like = problem.dim, problem.m, problem.A
    if isinstance(spec, Gaussian):
        if spec.dim != d:
            raise ValueError(f"{what} must be a Gaussian on R^{d}, got dimension {spec.dim}")
        return _Affine(like.new_zeros(d, m), spec.mean.to(like.dtype), spec.cov.to(like.dtype))
    if isinstance(spec, tuple):
        if len(spec) not in (2, 3):
            raise ValueError(f"{what} as a tuple must be (M, b) or (M, b, C), got {len(spec)} entries")
        M = as_tensor(spec[0], f"{what} M", dtype=like.dtype)
        b = check_vector_batch(spec[1], d, f"{what} b", like=like)
        C = as_tensor(spec[2], f"{what} C", dtype=like.dtype) if len(spec) == 3 else like.new_zeros(d, d)
        if M.shape != (d, m) or b.shape != (d,) or C.shape != (d, d):
            raise ValueError(f"{what} = (M, b, C) needs shapes ({d}, {m}), ({d},), ({d}, {d}); got "
                             f"{tuple(M.shape)}, {tuple(b.shape)}, {tuple(C.shape)}")
        return _Affine(M, b, 0.5 * (C + C.T))
    b = check_vector_batch(spec, d, what, like=like)
    if b.shape != (d,):
        raise ValueError(f"{what} must be a point (d,) = ({d},), got shape {tuple(b.shape)}")
    return _Affine(like.new_zeros(d, m), b, like.new_zeros(d, d))


def _start_point(problem, start, ab: float, conditional: bool) -> _Affine:
    if isinstance(start, str):
        if start == "noise":
            A = problem.A
            return _Affine(A.new_zeros(problem.dim, problem.m), A.new_zeros(problem.dim),
                           torch.eye(problem.dim, dtype=A.dtype, device=A.device))
        if start == "exact":
            return _BaseLaw.of(problem, conditional).diffused(ab)
        raise ValueError(f"start must be 'noise', 'exact', a Gaussian or a tuple (M, b[, C]); got {start!r}")
    return _affine(problem, start, "start")


def _stage1_point(problem, x_map, t1, w_prior, schedule) -> _Affine:
    if x_map is None:
        M, b = _stage1_affine(problem, t1, schedule, w_prior)
        return _Affine(M, b, M.new_zeros(problem.dim, problem.dim))
    return _affine(problem, x_map, "x_map")


def _one_y(problem, y) -> torch.Tensor:
    y = problem.check_y(y)
    if y.ndim != 1:
        raise ValueError(f"y must have shape (m,) = ({problem.m},), or be None for the joint law; got "
                         f"{tuple(y.shape)}")
    return y


# ---------------------------------------------------------------------------------------------- closed forms
def vsrd_end_law(problem, y, *, lam: float, start="noise", schedule: VPSchedule | None = None,
                 t_start=None) -> Gaussian:
    """End law of VSRD with the exact kernel (variant B) from ``x_K ~ N(mu_K, Sigma_K)`` (docs/theory §5.2):

        mu_0 = mu_y + G (mu_K - sqrt(ab_K) mu_y),   Sigma_0 = lam Sigma + G (Sigma_K - lam Sigma_K^true) G^T,

    with ``Sigma_K^true = ab_K Sigma + (1 - ab_K) I`` and ``G = sqrt(ab_K) Sigma (Sigma_K^true)^{-1}``. It
    holds on any grid from ``t_start`` (``ab_K = alpha_bar(t_start)``), because exact kernels compose exactly.
    ``start`` as in :func:`sampler_law`, for this ``y``.
    """
    schedule = linear_schedule() if schedule is None else schedule
    t_start = schedule.T if t_start is None else schedule.check_step(t_start, "t_start")
    y = _one_y(problem, y)
    ab = float(schedule.alpha_bar(t_start))
    post = problem.posterior(y)
    first = _start_point(problem, start, ab, True)
    mu_K, Sigma_K = first.M @ y + first.b, first.C  # Y = y is fixed
    G = post.denoise_gain(ab)
    Sigma_true = post.diffuse(ab).cov
    mean = post.mean + G @ (mu_K - math.sqrt(ab) * post.mean)
    return Gaussian._trusted(mean, lam * post.cov + G @ (Sigma_K - lam * Sigma_true) @ G.T)


def map_rps_stage2_law(problem, y, t0: int, *, x_map=None, schedule: VPSchedule | None = None) -> Gaussian:
    """Law of MAP-RPS stage 2 with exact kernels, re-noised to ``t0`` from ``x_map`` (docs/theory §6.3):

        X^ | y ~ N(mu_y + U (a - mu_y), Sigma (I - U^2) + U B U),   U = ab Sigma (ab Sigma + (1 - ab) I)^{-1},

    for ``x_map ~ N(a, B)`` (a point: ``B = 0``; default ``x_map = mu_y``, giving
    ``N(mu_y, Sigma (I - U^2))``), ``ab = alpha_bar(t0)``. ``t0 = 0`` gives ``x_map`` itself.
    """
    schedule = linear_schedule() if schedule is None else schedule
    ab = float(schedule.alpha_bar(schedule.check_step(t0, "t0")))
    y = _one_y(problem, y)
    post = problem.posterior(y)
    if x_map is None:
        a, B = post.mean, torch.zeros_like(post.cov)
    elif isinstance(x_map, Gaussian):
        a, B = x_map.mean, x_map.cov
    else:
        a, B = _affine(problem, x_map, "x_map").b, torch.zeros_like(post.cov)
    U = math.sqrt(ab) * post.denoise_gain(ab)
    eye = torch.eye(problem.dim, dtype=U.dtype, device=U.device)
    return Gaussian._trusted(post.mean + U @ (a - post.mean), post.cov @ (eye - U @ U) + U @ B @ U.T)


def _stage1_affine(problem, t1: int, schedule: VPSchedule | None, w_prior):
    """``(M, b)`` with the stage-1 fixed point ``x* = M y + b`` (see :func:`map_rps_stage1_fixed_point`)."""
    if not problem.is_gaussian:
        raise TypeError("the stage-1 fixed point is affine in y only for a Gaussian prior")
    schedule = linear_schedule() if schedule is None else schedule
    ab = float(schedule.alpha_bar(schedule.check_step(t1 + 1, "t1 + 1")))
    tau = math.sqrt((1.0 - ab) / ab)
    w = bayes_prior_weight(schedule, t1, problem.sigma_y) if w_prior is None else float(w_prior)
    if not w > 0:
        why = " (sigma_y = 0 makes the Bayes weight 0)" if w_prior is None else ""
        raise ValueError(f"w_prior must be > 0 (without a prior term the fixed point may not be unique), "
                         f"got {w}{why}")
    prior, A = problem.prior, problem.A
    eye = torch.eye(problem.dim, dtype=A.dtype, device=A.device)
    P = torch.linalg.inv(prior.cov + tau**2 * eye)  # SPD for tau > 0, also when S is singular
    M = torch.linalg.solve(A.T @ A + 0.5 * w * tau * P, A.T)
    return M, prior.mean - M @ (A @ prior.mean)


def map_rps_stage1_fixed_point(problem, y, t1: int = 10, schedule: VPSchedule | None = None,
                               w_prior: float | None = None) -> torch.Tensor:
    """The point where the EXPECTED gradient of MAP-RPS stage 1 vanishes, exact denoiser (docs/theory §6.3).

    Stage 1 descends ``||y - A x||^2 + w <stopgrad eps_hat(x_t1), x>``; for a Gaussian prior
    ``E_z[eps_hat(sqrt(ab) x + sqrt(1 - ab) z)] = tau (S + tau^2 I)^{-1} (x - m)``, ``tau^2 = (1 - ab)/ab``,
    ``ab = alpha_bar(t1 + 1)`` (the official 0-based index). Setting the expected gradient to zero:

        x* = m + (A^T A + (w tau / 2) (S + tau^2 I)^{-1})^{-1} A^T (y - A m),

    the posterior mean under the prior ``N(m, (S + tau^2 I)/kappa)``, ``kappa = w tau / (2 s^2)``. With the
    default Bayes weight ``w = 2 s^2 / tau`` (kappa = 1) it is the posterior mean under ``N(m, S + tau^2 I)``,
    O(tau^2) from the MAP. Affine in ``y``; ``y (..., m)`` -> ``(..., d)``.
    """
    M, b = _stage1_affine(problem, t1, schedule, w_prior)
    return problem.check_y(y) @ M.T + b
