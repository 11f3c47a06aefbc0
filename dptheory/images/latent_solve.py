"""Latent-space solvers: LMAP-RPS and the other samplers in a VAE latent space, the decoder inside the data term.

Source: Zhang, Liu, Yan, Xiao & Gu, ICML 2026 (arXiv 2605.28711), LMAP-RPS; official code weigerzan/MAP_RPS
d8d5217 (``lmap_rps``); docs/theory §6.1-6.2. With a latent backbone (encoder ``E``, decoder ``D``, latent
denoiser ``E[z0 | z_t]``) the pixel problem ``y = A x + N(0, sigma_y^2 I)`` becomes the NONLINEAR latent problem

    y = A(D(z)) + N(0, sigma_y^2 I),     z (n, C_z, h, w),  x = D(z) (n, 3, H, W),  H = 8 h for SD 1.5.

:class:`LatentOperator` gives it the operator protocol: ``A(z)`` differentiable through the decoder and ``pinv(y)
= E(A^+ y)`` (the official start); ``A_adjoint`` raises (``A o D`` is nonlinear), so vml-map needs the knob
``A_norm_squared``. :func:`solve_latent` calls :func:`~dptheory.images.problem.solve_image` UNCHANGED with the
latent denoiser and schedule, then decodes (``map-rps``, ``dps``, ``red-diff``, ``vml-map``, ``ddpm``, ``ddim``,
``vsrd``; not ``posterior``). NFE counts latent-UNet calls; ``LatentSolution.decoder_calls`` counts the decodes.
What each method does in latent space, the official SD 1.5 settings and an example: ``paper_notes/map_rps.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..operators import LinearOperator
from ..samplers import METHODS, pinv_start
from .problem import ImageInverseProblem, solve_image

__all__ = ["LatentOperator", "LatentSolution", "solve_latent", "LATENT_T1"]

LATENT_T1 = 50
"""Default stage-1 noise index of LMAP-RPS (0-based, ``alpha_bar(51)``): the official latent setting."""


class LatentOperator(LinearOperator):
    """The nonlinear operator ``z -> A(D(z))`` of a pixel operator ``A`` composed with a backbone's decoder.

    It takes the place of a :class:`~dptheory.operators.LinearOperator` in the samplers: ``A`` and ``pinv``
    (``has_pinv``), while ``A_adjoint`` and ``matrix`` raise ``NotImplementedError`` (no linear map to give).

    Args:
        operator: a pixel-space :class:`~dptheory.operators.LinearOperator` (``A``; ``pinv`` or ``A_adjoint`` for
            the start).
        backbone: anything with differentiable ``decode(z)`` and ``encode(x)`` (a
            :class:`~dptheory.images.backbones.LatentBackbone`, or a ``PixelBackbone`` for the identity).

    Attributes:
        decoder_calls: number of ``A`` evaluations (each decodes once).
    """

    has_pinv = True

    def __init__(self, operator, backbone, *, clamp_pixels: bool = False, counter=None):
        if not isinstance(clamp_pixels, bool):
            raise ValueError(f"clamp_pixels must be True or False, got {clamp_pixels!r}")
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a dptheory.LinearOperator (an A method), got {type(operator).__name__}")
        for name in ("encode", "decode"):
            if not callable(getattr(backbone, name, None)):
                raise TypeError(f"backbone must have {name}(), got {type(backbone).__name__}")
        self.operator, self.backbone, self.clamp_pixels = operator, backbone, clamp_pixels
        self._calls = [0] if counter is None else counter  # shared by the stage-2 twin of map-rps

    @property
    def decoder_calls(self) -> int:
        """Decoder evaluations through ``A`` (shared with a :meth:`with_clamped_pixels` twin)."""
        return self._calls[0]

    def with_clamped_pixels(self) -> LatentOperator:
        """The same operator with the decoded pixels clamped to [-1, 1] (``A(clamp(D(z)))``), sharing the count."""
        return LatentOperator(self.operator, self.backbone, clamp_pixels=True, counter=self._calls)

    def __repr__(self) -> str:
        return f"LatentOperator({type(self.operator).__name__} o decode)"

    def A(self, z: torch.Tensor) -> torch.Tensor:
        """``A(D(z))`` (``A(clamp(D(z), -1, 1))`` with ``clamp_pixels``), differentiable in ``z``; ``z (n, C_z, h,
        w)`` -> the pixel measurement shape."""
        self._calls[0] += 1
        x = self.backbone.decode(z)
        return self.operator.A(x.clamp(-1.0, 1.0) if self.clamp_pixels else x)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``E(A^+ y)`` (``E(A^T y)`` for an operator without ``pinv``): the LMAP-RPS start, detached."""
        with torch.no_grad():
            return self.backbone.encode(pinv_start(self.operator, y))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Not defined: ``A o D`` is nonlinear (use autograd vector-Jacobian products instead)."""
        raise NotImplementedError(
            "LatentOperator is nonlinear (A o decoder) and has no adjoint; the latent samplers (map-rps, dps, "
            "red-diff, DPS-guided ddpm/ddim/vsrd) differentiate ||y - A(D(z))|| with autograd; vml-map needs the "
            "knob A_norm_squared"
        )

    def matrix(self, shape, *, dtype=torch.float64, device=None) -> torch.Tensor:
        """Not defined: ``A o D`` is nonlinear, so it has no matrix."""
        raise NotImplementedError("LatentOperator is nonlinear (A o decoder) and has no matrix")


@dataclass
class LatentSolution:
    """What :func:`solve_latent` returns.

    Attributes:
        x: the decoded restorations ``(n, 3, H, W)``, detached.
        z: the latents ``(n, C_z, h, w)``, detached.
        nfe: latent-denoiser evaluations.
        decoder_calls: decoder evaluations (data-term evaluations plus the final decode).
        seconds: wall time, final decode included.
        method: the method name.
        exact_conditional: always ``False`` for a network backbone.
    """

    x: torch.Tensor
    z: torch.Tensor
    nfe: int
    decoder_calls: int
    seconds: float
    method: str
    exact_conditional: bool


def solve_latent(problem: ImageInverseProblem, y: torch.Tensor, method: str, backbone, *, schedule=None,
                 n_samples: int = 1, generator: torch.Generator | None = None, progress: bool = False,
                 callback=None, zeta: float = 1.0, clamp_pixels: bool = False, **knobs) -> LatentSolution:  # fmt: skip
    """Solve a PIXEL-space image problem in the backbone's latent space (module docstring).

    Args:
        problem: the pixel :class:`~dptheory.images.problem.ImageInverseProblem` (operator and ``sigma_y``).
        y: the pixel measurement with a leading batch axis (as for :func:`solve_image`).
        method: ``"map-rps"`` (LMAP-RPS), ``"dps"``, ``"red-diff"``, ``"vml-map"`` (needs ``A_norm_squared``),
            or ``"ddpm"`` / ``"ddim"`` / ``"vsrd"`` (DPS-guided).
        backbone: a latent backbone with ``.denoiser`` (latent), ``.schedule``, ``.encode`` and ``.decode``.
        schedule: default ``backbone.schedule``.
        zeta: DPS step (``dps`` and the map-rps stage 2) / DPS-guidance weight.
        callback: forwarded to the sampler; it sees LATENTS.
        clamp_pixels: clamp the decoded pixels to [-1, 1] inside the data term, as the official SD 1.5 code
            (``lmap_rps_t2i``) does in its DPS stage 2: for ``map-rps`` in stage 2 only (stage 1 unclamped, as
            there), for the other methods in every data-term evaluation.
        knobs: the sampler's knobs; map-rps needs ``t0`` and defaults ``t1`` to :data:`LATENT_T1` (50).

    Returns:
        :class:`LatentSolution` (decoded ``x``, latent ``z``, NFE, decoder calls, wall time).

    Raises:
        ValueError: ``posterior`` (no exact conditional), vml-map without ``A_norm_squared``, and everything
            :func:`solve_image` rejects.
    """
    if not isinstance(problem, ImageInverseProblem):
        raise TypeError(f"problem must be an ImageInverseProblem, got {type(problem).__name__}")
    if METHODS.get(method) is not None and METHODS[method].needs_exact:
        raise ValueError(f"method {method!r} needs an exact conditional denoiser; with a latent network use "
                         "map-rps, dps, red-diff or vsrd")  # fmt: skip
    if method == "vml-map" and knobs.get("A_norm_squared") is None:
        raise ValueError("vml-map in latent space needs A_norm_squared (a bound on the squared Lipschitz constant "
                         "of z -> A(D(z))); the operator A o decoder has no adjoint for power iteration")  # fmt: skip
    if method == "map-rps":
        knobs.setdefault("t1", LATENT_T1)
    start = time.perf_counter()
    op = LatentOperator(problem.operator, backbone, clamp_pixels=bool(clamp_pixels) and method != "map-rps")
    if clamp_pixels and method == "map-rps":
        knobs.setdefault("stage2_operator", op.with_clamped_pixels())
    latent_problem = ImageInverseProblem(op, problem.sigma_y)
    schedule = backbone.schedule if schedule is None else schedule
    sol = solve_image(latent_problem, y, method, backbone.denoiser, schedule=schedule, n_samples=n_samples,
                      generator=generator, progress=progress, callback=callback, zeta=zeta, **knobs)  # fmt: skip
    z = sol.x
    with torch.no_grad():
        x = backbone.decode(z)
    return LatentSolution(x=x.detach(), z=z, nfe=sol.nfe, decoder_calls=op.decoder_calls + 1,
                          seconds=time.perf_counter() - start, method=method,
                          exact_conditional=sol.exact_conditional)  # fmt: skip
