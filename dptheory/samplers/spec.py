"""What a method IS, as plain data: one :class:`MethodSpec` row per sampler, and :func:`run_method`, the wiring
that every front door (:func:`dptheory.solve`, :func:`~dptheory.images.problem.solve_image` and, through it,
:func:`~dptheory.images.latent_solve.solve_latent`) calls.

A row says which denoiser the sampler takes (the PRIOR ``E[x0 | x_t]`` or the CONDITIONAL ``E[x0 | x_t, y]``),
where it starts (``"noise"``: ``x_T ~ N(0, I)``, or the exact diffused posterior with ``start="exact"``;
``"pinv"``: ``A^+ y``), the defaults the front doors choose differently from the sampler's signature (a pair
``(with an exact conditional denoiser, without)``), and the check of its knobs. Every other default and the list
of knobs are read from the sampler's own keyword-only parameters, so they are written once, in the sampler.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .._checks import check_steps

__all__ = ["MethodSpec", "SUPPLIED", "check_method", "run_method"]

SUPPLIED = frozenset({"operator", "y", "sigma_y", "generator", "callback", "progress_bar", "posterior_denoiser"})
"""Keyword arguments the front doors fill in themselves (not knobs a user passes)."""


@dataclass(frozen=True)
class MethodSpec:
    """One method: its sampler function and how a front door calls it.

    Attributes:
        name: the public method name (``dpt.solve(..., method=name)``).
        sampler: ``sampler(denoiser, x, schedule, *, ..., generator, callback, progress_bar, **knobs)``.
        denoiser: ``"prior"`` or ``"conditional"`` (the denoiser passed as the first argument).
        start: ``"noise"`` (``x_T ~ N(0, I)``; ``start="exact"`` allowed) or ``"pinv"`` (``A^+ y``).
        exact_defaults: ``knob -> (default with an exact conditional denoiser, default without)``.
        check: ``check(knobs, sigma_y, schedule)`` raising ``ValueError`` naming the bad knob; ``knobs`` holds
            every knob, defaults filled in.
        needs_exact: the method needs an exact conditional denoiser (one with ``sample_x0``).
    """

    name: str
    sampler: Callable
    denoiser: str
    start: str
    exact_defaults: Mapping = field(default_factory=lambda: MappingProxyType({}))
    check: Callable | None = None
    needs_exact: bool = False

    def __post_init__(self):
        if self.denoiser not in ("prior", "conditional"):
            raise ValueError(f"denoiser must be 'prior' or 'conditional', got {self.denoiser!r}")
        if self.start not in ("noise", "pinv"):
            raise ValueError(f"start must be 'noise' or 'pinv', got {self.start!r}")
        unknown = set(self.exact_defaults) - set(self.knobs)
        if unknown:
            raise ValueError(f"exact_defaults of {self.name!r} name knobs the sampler does not take: {unknown}")

    def _params(self):
        params = inspect.signature(self.sampler).parameters.values()
        return [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in SUPPLIED]

    @property
    def knobs(self) -> tuple[str, ...]:
        """The knobs a user may pass (the sampler's keyword-only parameters, less :data:`SUPPLIED`)."""
        return tuple(p.name for p in self._params())

    @property
    def required(self) -> tuple[str, ...]:
        """The knobs without a default (``t0`` of map-rps, ``lam`` of vsrd)."""
        return tuple(p.name for p in self._params() if p.default is inspect.Parameter.empty)

    @property
    def conditioned(self) -> bool:
        """Whether the sampler takes the measurement itself (``operator``, ``y``, ``sigma_y``)."""
        return "operator" in inspect.signature(self.sampler).parameters

    def validate(self, knobs: Mapping, sigma_y: float, schedule) -> None:
        """Run :attr:`check` on ``knobs`` (every knob, defaults filled in); ``ValueError`` names the bad knob."""
        if self.check is not None:
            self.check(knobs, sigma_y, schedule)

    def defaults(self, exact: bool) -> dict:
        """Every knob with a default: the sampler's own, with :attr:`exact_defaults` applied."""
        out = {p.name: p.default for p in self._params() if p.default is not inspect.Parameter.empty}
        out.update({k: pair[0 if exact else 1] for k, pair in self.exact_defaults.items()})
        return out


def check_method(methods: Mapping, method: str, knobs: Mapping) -> MethodSpec:
    """The row of ``method``, after checking the knob names, the required knobs and ``steps``.

    Raises:
        ValueError: an unknown method, a required knob missing, or ``steps`` not a positive integer.
        TypeError: a knob the method does not take (the message lists its knobs).
    """
    if method not in methods:
        raise ValueError(f"method must be one of {', '.join(methods)}; got {method!r}")
    spec = methods[method]
    unknown = set(knobs) - set(spec.knobs)
    if unknown:
        raise TypeError(f"method {method!r} does not take knob(s) {sorted(unknown)}; its knobs are "
                        f"{sorted(spec.knobs)}")
    check_steps(knobs.get("steps"))  # steps=0 would return the starting point
    missing = [k for k in spec.required if k not in knobs]
    if missing:
        raise ValueError(f"method {method!r} needs the knob {', '.join(missing)}")
    return spec


def run_method(spec: MethodSpec, x, schedule, *, prior, conditional, exact: bool, operator, y, sigma_y: float,
               zeta: float | None, knobs: dict, generator=None, callback=None, progress: bool = False):
    """Call ``spec.sampler`` from the start ``x``: the one wiring of every front door.

    The knobs get the row's defaults for ``exact`` (whether ``conditional`` is an exact conditional denoiser);
    a sampler with a ``zeta`` knob gets the front door's ``zeta`` when one is given; then the row checks them.
    The first argument is ``prior`` or ``conditional`` as the row says; a sampler that takes the measurement
    gets ``operator, y, sigma_y``, and one with a ``posterior_denoiser`` (map-rps stage 2) gets
    ``conditional`` when its ``stage2`` uses one.
    """
    kn = dict(knobs)
    for k, pair in spec.exact_defaults.items():
        kn.setdefault(k, pair[0 if exact else 1])
    if zeta is not None and "zeta" in spec.knobs:
        kn["zeta"] = zeta
    spec.validate({**spec.defaults(exact), **kn}, sigma_y, schedule)
    kw = dict(generator=generator, callback=callback, progress_bar=progress)
    if spec.conditioned:
        kw.update(operator=operator, y=y, sigma_y=sigma_y)
    if "posterior_denoiser" in inspect.signature(spec.sampler).parameters:
        kw["posterior_denoiser"] = conditional if kn.get("stage2") in ("posterior", "vsrd") else None
    den = conditional if spec.denoiser == "conditional" else prior
    return spec.sampler(den, x, schedule, **kw, **kn)
