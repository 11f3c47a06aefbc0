"""dptheory: exact theory and executable checks for diffusion inverse-problem solvers and the D-P tradeoff.

Public names are re-exported here explicitly. They are loaded on first access (PEP 562) so that
``import dptheory`` stays fast: torch alone takes about a second to import on the reference machine, and it
is imported only when a name that needs it is used.

>>> import dptheory as dpt
>>> p = dpt.Gaussian([0.0], [[1.0]])
>>> round(float(dpt.gaussian_w2(p, dpt.Gaussian([3.0], [[1.0]]))), 12)
3.0
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it (explicit; keep in sync with __all__)
_EXPORTS = {
    # distributions
    "Gaussian": "gaussian",
    "GaussianMixture": "mixture",
    "Estimate": "estimate",
    # operators and problems
    "LinearOperator": "operators",
    "MatrixOperator": "operators",
    "as_operator": "operators",
    "LinearInverseProblem": "problem",
    # schedules
    "VPSchedule": "schedules",
    "linear_schedule": "schedules",
    "cosine_schedule": "schedules",
    # divergences
    "gaussian_w2": "divergences",
    "gaussian_w2_squared": "divergences",
    "gaussian_kl": "divergences",
    "gmm_mw2_squared": "divergences",
    "empirical_w2_squared": "divergences",
    "gmm_kl_monte_carlo": "divergences",
    "gmm_kl_variational": "divergences",
    "gmm_kl_upper_bound": "divergences",
    "gelbrich_w2_squared": "divergences",
    "quantile_w2_squared_1d": "divergences",
    "quantile_1d": "divergences",
    "quantile_w2_squared_to_samples": "divergences",
    # optimal D-P curves
    "DPCurve": "dp_curve",
    "optimal_dp_curve": "dp_curve",
    "per_measurement_dp_curve": "dp_curve",
    "GaussianOptimalEstimator": "dp_curve",
    "joint_optimal_estimator": "dp_curve",
    "shrunk_posterior_samples": "dp_curve",
    "mmse_w2_squared_1d": "mmse_law_1d",
    "mmse_quantile_1d": "mmse_law_1d",
    "KLDPCurve": "dp_curve_kl",
    "per_measurement_kl_dp_curve": "dp_curve_kl",
    # denoisers and solvers
    "Denoiser": "denoisers",
    "ExactDenoiser": "denoisers",
    "ConditionalExactDenoiser": "denoisers",
    "NetworkDenoiser": "denoisers",
    "NoiseLevelExperts": "denoisers",
    "DPSGuidedDenoiser": "samplers",
    "solve": "solver",
    "METHOD_NAMES": "solver",
    "traverse": "traversal",
    "Traversal": "traversal",
    "DPPoint": "traversal",
    # exact laws of samplers on Gaussian problems
    "SamplerLaw": "sampler_laws",
    "sampler_law": "sampler_laws",
    "vsrd_end_law": "sampler_laws",
    "map_rps_stage2_law": "sampler_laws",
    "map_rps_stage1_fixed_point": "sampler_laws",
    # the VML objective (VML-MAP)
    "vml": "vml_loss",
    "vml_s": "vml_loss",
    "vml_s_gradient": "vml_loss",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dptheory' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
