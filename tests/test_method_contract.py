"""Contract of every method row (:data:`dptheory.samplers.METHODS`): each front door (``dpt.solve``,
``solve_image``, ``sampler_law``) takes the row's defaults, rejects unknown knobs with ``TypeError`` listing the
valid ones and out-of-range knobs with ``ValueError`` naming the knob, and the counted NFE is the recorded one.
A new sampler is one file plus one row: a sampler function in ``dptheory/samplers/`` without a row fails here.
"""

import dataclasses
import functools
import importlib
import inspect
import pkgutil

import pytest
import torch
from test_image_solvers import FAST_KNOBS

import dptheory as dpt
import dptheory.samplers as samplers_pkg
from dptheory.images.operators import Denoising
from dptheory.images.problem import GaussianImageDenoiser, ImageInverseProblem, solve_image
from dptheory.sampler_laws import METHODS as LAW_METHODS
from dptheory.sampler_laws import sampler_law
from dptheory.samplers import METHODS
from dptheory.traversal import nfe

STAGES = {"map_rps_stage1"}  # sampler-shaped functions that are a stage of a method, not a method

FAST = FAST_KNOBS  # cheap knobs per method, shared with the image-solver tests
BAD = {  # one out-of-range knob per method
    "posterior": ("steps", 0),
    "ddpm": ("variance", "huge"),
    "ddim": ("eta", 2.0),
    "dps": ("zeta", -1.0),
    "vsrd": ("lam", 1.5),
    "map-rps": ("t0", 5000),
    "red-diff": ("lr", -1.0),
    "vml-map": ("inner_steps", -1),
    "ddrm": ("eta", 2.0),
    "diffpir": ("zeta", 2.0),
    "pigdm": ("eta", -0.5),
    "daps": ("lr_min_ratio", 0.0),
}


def _sampler_functions():
    """Every public function in dptheory/samplers/ shaped as a sampler: (denoiser, x, schedule, *, ..., callback,
    progress_bar)."""
    found = {}
    for info in pkgutil.iter_modules(samplers_pkg.__path__):
        mod = importlib.import_module(f"dptheory.samplers.{info.name}")
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            params = inspect.signature(fn).parameters
            if (not name.startswith("_") and list(params)[:3] == ["denoiser", "x", "schedule"]
                    and {"callback", "progress_bar"} <= set(params)):
                found[name] = fn
    return found


def test_every_sampler_function_has_a_row():
    rows = {spec.sampler for spec in METHODS.values()}
    missing = sorted(n for n, fn in _sampler_functions().items() if fn not in rows and n not in STAGES)
    assert not missing, f"sampler functions without a row in dptheory.samplers.METHODS: {missing}"
    assert set(FAST) == set(METHODS) == set(BAD)


def _problem():
    return dpt.LinearInverseProblem(dpt.Gaussian([0.0, 1.0], [[1.0, 0.3], [0.3, 0.5]]), [[1.0, 0.5]], 0.5)


def _spy(monkeypatch, method):
    """Replace the row's sampler by a wrapper (same signature) that records the keyword arguments it received."""
    spec, seen = METHODS[method], {}

    @functools.wraps(spec.sampler)
    def spy(*args, **kwargs):
        seen.update(kwargs)
        return spec.sampler(*args, **kwargs)

    monkeypatch.setitem(METHODS, method, dataclasses.replace(spec, sampler=spy))
    return seen


def _received(method, seen):
    """The knob values the sampler ran with: those passed, else its signature's defaults."""
    params = inspect.signature(METHODS[method].sampler).parameters
    return {k: seen.get(k, p.default) for k, p in params.items() if k in METHODS[method].knobs}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_solve_passes_the_row_defaults(method, monkeypatch):
    seen = _spy(monkeypatch, method)
    x = dpt.solve(_problem(), [0.3], method, n_samples=2, generator=torch.Generator().manual_seed(0),
                  **FAST[method])
    assert x.shape == (2, 2) and bool(torch.isfinite(x).all())
    spec = METHODS[method]
    expected = {**spec.defaults(exact=True), **FAST[method]}
    assert {k: _received(method, seen)[k] for k in expected} == expected


@pytest.mark.parametrize("method", sorted(METHODS))
def test_unknown_and_out_of_range_knobs(method):
    prob = _problem()
    with pytest.raises(TypeError, match="its knobs are") as info:
        dpt.solve(prob, [0.3], method, not_a_knob=1, **FAST[method])
    assert all(k in str(info.value) for k in METHODS[method].knobs)
    knob, value = BAD[method]
    with pytest.raises(ValueError, match=knob):
        dpt.solve(prob, [0.3], method, **{**FAST[method], knob: value})


@pytest.fixture(scope="module")
def image_setup():
    g = torch.Generator().manual_seed(1)
    cov = torch.eye(16, dtype=torch.float64) * 0.5 + 0.1
    den = GaussianImageDenoiser(0.1 * torch.randn(1, 4, 4, generator=g, dtype=torch.float64), cov)
    prob = ImageInverseProblem(Denoising(), 0.3)
    y = prob.measure(torch.zeros(1, 1, 4, 4, dtype=torch.float64), generator=g)
    return den, prob, y


@pytest.mark.parametrize("method", sorted(METHODS))
def test_solve_image_defaults_errors_and_nfe(method, image_setup, monkeypatch):
    den, prob, y = image_setup
    sol = solve_image(prob, y, method, den, generator=torch.Generator().manual_seed(2), **FAST[method])
    assert sol.x.shape == (1, 1, 4, 4) and sol.exact_conditional == (METHODS[method].denoiser == "conditional"
                                                                      or method == "map-rps")
    assert sol.nfe == nfe(method, FAST[method], dpt.linear_schedule())  # counted here = recorded by traverse
    seen = _spy(monkeypatch, method)
    solve_image(prob, y, method, den, generator=torch.Generator().manual_seed(2), **FAST[method])
    expected = {**METHODS[method].defaults(exact=True), **FAST[method]}
    assert {k: _received(method, seen)[k] for k in expected} == expected
    with pytest.raises(TypeError, match="its knobs are"):
        solve_image(prob, y, method, den, not_a_knob=1, **FAST[method])
    knob, value = BAD[method]
    with pytest.raises(ValueError, match=knob):
        solve_image(prob, y, method, den, **{**FAST[method], knob: value})


@pytest.mark.parametrize("method", sorted(LAW_METHODS))
def test_sampler_law_takes_the_row(method):
    prob = _problem()
    spec = METHODS[method]
    assert set(LAW_METHODS) <= set(METHODS)
    kn = {k: v for k, v in FAST[method].items() if k not in ("steps", "iters")}
    if method == "dps":
        kn["norm"] = "squared"
    steps = None if method == "map-rps" else 4
    law = sampler_law(prob, method, y=[0.3], steps=steps, **kn)
    assert law.law.dim == 2
    with pytest.raises(TypeError, match="its knobs are"):
        sampler_law(prob, method, y=[0.3], not_a_knob=1, **kn)
    knob, value = BAD[method]
    if knob in spec.knobs and knob != "steps":
        with pytest.raises(ValueError, match=knob.split("_")[0]):
            sampler_law(prob, method, y=[0.3], steps=steps, **{**kn, knob: value})
