"""Samplers: short functions with an explicit loop and one shared signature,
``sampler(denoiser, x, schedule, *, generator=None, callback=None, progress_bar=False, **knobs)``.

``METHODS`` maps the public method names (as used by :func:`dptheory.solve` and the CLI) to the functions.
"""

from ._common import pinv_start
from .daps import daps
from .ddpm import ddim, ddpm
from .ddrm import ddrm
from .diffpir import diffpir
from .dps import DPSGuidedDenoiser, dps
from .map_rps import OFFICIAL_PRIOR_WEIGHTS, bayes_prior_weight, map_rps, map_rps_stage1
from .pigdm import pigdm
from .posterior import posterior
from .red_diff import red_diff, red_diff_effective_precision, red_diff_fixed_point
from .vml_map import vml_map
from .vsrd import vsrd

METHODS = {
    "posterior": posterior,
    "ddpm": ddpm,
    "ddim": ddim,
    "dps": dps,
    "vsrd": vsrd,
    "map-rps": map_rps,
    "red-diff": red_diff,
    "vml-map": vml_map,
    "ddrm": ddrm,
    "diffpir": diffpir,
    "pigdm": pigdm,
    "daps": daps,
}

__all__ = [
    "METHODS",
    "DPSGuidedDenoiser",
    "OFFICIAL_PRIOR_WEIGHTS",
    "bayes_prior_weight",
    "daps",
    "ddrm",
    "diffpir",
    "pigdm",
    "pinv_start",
    "ddim",
    "ddpm",
    "dps",
    "map_rps",
    "map_rps_stage1",
    "posterior",
    "red_diff",
    "red_diff_effective_precision",
    "red_diff_fixed_point",
    "vml_map",
    "vsrd",
]
