"""Samplers: short functions with an explicit loop and one shared signature,
``sampler(denoiser, x, schedule, *, generator=None, callback=None, progress_bar=False, **knobs)``.

``METHODS`` maps the public method names (as used by :func:`dptheory.solve` and the CLI) to their
:class:`~dptheory.samplers.spec.MethodSpec` rows (the function, its denoiser, start, defaults and knob check).
"""

from types import MappingProxyType as _Frozen

from ._common import pinv_start
from .daps import _check_knobs as _check_daps
from .daps import daps
from .ddpm import _check_ddim, _check_ddpm, ddim, ddpm
from .ddrm import _check_knobs as _check_ddrm
from .ddrm import ddrm
from .diffpir import _check_knobs as _check_diffpir
from .diffpir import diffpir
from .dps import DPSGuidedDenoiser, dps
from .dps import _check_knobs as _check_dps
from .map_rps import OFFICIAL_PRIOR_WEIGHTS, bayes_prior_weight, map_rps, map_rps_stage1
from .map_rps import _check_knobs as _check_map_rps
from .pigdm import _check_knobs as _check_pigdm
from .pigdm import pigdm
from .posterior import posterior
from .red_diff import _check_knobs as _check_red_diff
from .red_diff import red_diff, red_diff_effective_precision, red_diff_fixed_point
from .spec import MethodSpec
from .vml_map import _check_knobs as _check_vml_map
from .vml_map import vml_map
from .vsrd import _check_knobs as _check_vsrd
from .vsrd import vsrd

_ROWS = (
    MethodSpec("posterior", posterior, "conditional", "noise", needs_exact=True),
    MethodSpec("ddpm", ddpm, "conditional", "noise", check=lambda k, s, sch: _check_ddpm(k["variance"])),
    MethodSpec("ddim", ddim, "conditional", "noise", check=lambda k, s, sch: _check_ddim(k["eta"])),
    MethodSpec("dps", dps, "prior", "noise", check=lambda k, s, sch: _check_dps(
        k["norm"], s, k["zeta"], k["lam"], k["variance"], k["mean"], k["zeta_scale"], k["final_noise"])),
    MethodSpec("vsrd", vsrd, "conditional", "noise", _Frozen({"kernel": ("exact", "small")}),
               check=lambda k, s, sch: _check_vsrd(k["lam"], k["kernel"])),
    MethodSpec("map-rps", map_rps, "prior", "pinv", _Frozen({"stage2": ("posterior", "dps")}),
               check=lambda k, s, sch: _check_map_rps(k, sch)),
    MethodSpec("red-diff", red_diff, "prior", "pinv", check=lambda k, s, sch: _check_red_diff(
        s, k["lam"], k["lr"], k["betas"], k["t_order"], k["obs_weight"], k["optimizer"])),
    MethodSpec("vml-map", vml_map, "prior", "noise", check=lambda k, s, sch: _check_vml_map(
        s, k["inner_steps"], k["final_steps"], k["step_size"], k["step_rule"], k["A_norm_squared"])),
    MethodSpec("ddrm", ddrm, "prior", "noise",
               check=lambda k, s, sch: _check_ddrm(s, k["eta"], k["eta_b"], k["init"])),
    MethodSpec("diffpir", diffpir, "prior", "noise", check=lambda k, s, sch: _check_diffpir(s, k["lam"], k["zeta"])),
    MethodSpec("pigdm", pigdm, "prior", "noise",
               check=lambda k, s, sch: _check_pigdm(s, k["eta"], k["weight"], k["init"], k["guidance"])),
    MethodSpec("daps", daps, "prior", "noise",
               check=lambda k, s, sch: _check_daps(s, k["tau"], k["lr"], k["lr_min_ratio"], k["r"])),
)
METHODS = {row.name: row for row in _ROWS}
"""Method name -> :class:`~dptheory.samplers.spec.MethodSpec`; a new sampler is one file plus one row."""

__all__ = [
    "METHODS",
    "MethodSpec",
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
