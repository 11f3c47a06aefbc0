"""The variational mode-seeking loss (VML) of Gutha, Vinuesa & Azizpour (arXiv 2512.10524), in VP form.

``VML(x_t) := KL(p(x0 | x_t) || p(x0 | y))``. For a linear forward model it is analytic for ANY prior: only
``D = E[x0 | x_t]`` and ``C = Cov[x0 | x_t]`` enter, because ``log p(x0)`` cancels (docs/theory §8.2, [D, V]):

    VML(x_t) = -(d/2) log(2 pi (1 - ab)) - (||x_t - sqrt(ab) D||^2 + ab tr C) / (2 (1 - ab)) - log p_t(x_t)
               + (m/2) log(2 pi sigma_y^2) + (||y - A D||^2 + tr(A C A^T)) / (2 sigma_y^2) + log p(y).

The practical loss VML_S drops the two trace terms; with Tweedie's ``x_t - sqrt(ab) D = -(1 - ab) s_t(x_t)``,
``grad_{x_t} VML_S = J_D^T [A^T (A D - y) / sigma_y^2 - sqrt(ab) s_t(x_t)]``, ``J_D = dD/dx_t``: one
vector-Jacobian product. For a Gaussian prior ``VML_S = VML + const``, minimised where ``D_t(x_t*) = mu_y``.
:func:`vml` and :func:`vml_s` need an exact prior (a :class:`~dptheory.LinearInverseProblem`); :func:`vml_s_gradient`
needs only a denoiser and the operator protocol, so it runs on images. Source: [gutha2025vml] (the VE form of
their Proposition 2, as transcribed in docs/theory §8.1); VP form derived in §8.2.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_alpha_bar, check_sigma, check_vector_batch
from .denoisers import ExactDenoiser, score_from_x0

__all__ = ["vml", "vml_s", "vml_trace_terms", "vml_s_gradient"]


def _level(alpha_bar) -> float:
    ab = check_alpha_bar(alpha_bar)
    if ab == 1.0:
        raise ValueError(
            "alpha_bar must be < 1: at alpha_bar = 1 p(x0 | x_t) is a point mass and VML is infinite"
        )
    return ab


def _parts(problem, y, x_t, alpha_bar):
    """Shared pieces: ``(ab, x_t, y, D, C)`` with ``D (..., d)`` and ``C (..., d, d)``."""
    ab = _level(alpha_bar)
    if check_sigma(problem.sigma_y) == 0.0:
        raise ValueError("vml needs sigma_y > 0 (p(y | x0) has no density at sigma_y = 0)")
    x_t = check_vector_batch(x_t, problem.dim, "x_t", like=problem.A)
    y = problem.check_y(y)
    den = ExactDenoiser(problem.prior)
    return ab, x_t, y, den(x_t, ab), den.cov(x_t, ab)


def vml_trace_terms(problem, y, x_t, alpha_bar) -> torch.Tensor:
    """The two trace terms that VML_S drops: ``-ab tr C / (2 (1 - ab)) + tr(A C A^T) / (2 sigma_y^2)``.

    ``VML = VML_S + vml_trace_terms``. Shapes: ``x_t (..., d)`` -> ``(...)``.
    """
    ab, x_t, y, _, C = _parts(problem, y, x_t, alpha_bar)
    return _trace_terms(problem, ab, C)


def _trace_terms(problem, ab, C):
    A = problem.A.to(C.dtype)
    tr_C = torch.diagonal(C, dim1=-2, dim2=-1).sum(-1)
    tr_ACA = torch.einsum("ij,...jk,ik->...", A, C, A)
    return -ab * tr_C / (2.0 * (1.0 - ab)) + tr_ACA / (2.0 * problem.sigma_y**2)


def _vml_s(problem, ab, x_t, y, D):
    d, m, s2 = problem.dim, problem.m, problem.sigma_y**2
    r_t = x_t - math.sqrt(ab) * D
    r_y = y - D @ problem.A.T.to(D.dtype)
    log_pt = problem.prior.diffuse(ab).log_prob(x_t)
    log_py = problem.evidence().log_prob(y)
    return (
        -0.5 * d * math.log(2 * math.pi * (1.0 - ab))
        - r_t.square().sum(-1) / (2.0 * (1.0 - ab))
        - log_pt
        + 0.5 * m * math.log(2 * math.pi * s2)
        + r_y.square().sum(-1) / (2.0 * s2)
        + log_py
    )


def vml(problem, y, x_t, alpha_bar) -> torch.Tensor:
    r"""``VML(x_t) = KL(p(x0 | x_t) || p(x0 | y))`` in closed form, exact for a Gaussian or GMM prior.

    .. math::
        \mathrm{VML} = -\tfrac d2 \log 2\pi(1-\bar\alpha) - \frac{\|x_t - \sqrt{\bar\alpha} D\|^2
            + \bar\alpha \operatorname{tr} C}{2(1-\bar\alpha)} - \log p_t(x_t) + \tfrac m2 \log 2\pi\sigma_y^2
            + \frac{\|y - A D\|^2 + \operatorname{tr}(A C A^\top)}{2\sigma_y^2} + \log p(y)

    with ``D = E[x0 | x_t]`` and ``C = Cov[x0 | x_t]`` (exact, :class:`~dptheory.ExactDenoiser`),
    ``log p_t = prior.diffuse(ab).log_prob`` and ``log p(y) = problem.evidence().log_prob(y)``.

    Args:
        problem: a :class:`~dptheory.LinearInverseProblem` with ``sigma_y > 0``.
        y: ``(m,)`` (or ``(..., m)`` broadcasting against ``x_t``'s batch).
        x_t: ``(..., d)``.
        alpha_bar: the level, in (0, 1).

    Returns:
        ``(...)``, in nats (>= 0 up to round-off).

    Source: [gutha2025vml] Proposition 2 (VE form); docs/theory §8.2 (VP form, [D, V]).

    Examples:
        >>> import dptheory as dpt
        >>> prob = dpt.LinearInverseProblem(dpt.Gaussian([0.0], [[1.0]]), [[1.0]], 1.0)
        >>> x_star = 2 ** 0.5 * 0.5  # D_t(x) = x / sqrt(2) at ab = 1/2 equals mu_y = y / 2 = 0.5 at y = 1
        >>> round(float(vml(prob, [1.0], [x_star], 0.5)), 12)  # KL(N(.5, .5) || N(.5, .5)) = 0
        0.0
    """
    ab, x_t, y, D, C = _parts(problem, y, x_t, alpha_bar)
    return _vml_s(problem, ab, x_t, y, D) + _trace_terms(problem, ab, C)


def vml_s(problem, y, x_t, alpha_bar) -> torch.Tensor:
    """``VML_S = VML - vml_trace_terms``: the loss VML-MAP descends (same arguments as :func:`vml`).

    Its gradient is :func:`vml_s_gradient`. For a Gaussian prior it differs from :func:`vml` by a constant.
    """
    ab, x_t, y, D, _ = _parts(problem, y, x_t, alpha_bar)
    return _vml_s(problem, ab, x_t, y, D)


def vml_s_gradient_and_x0(denoiser, x_t, alpha_bar, operator, y, sigma_y):
    """``(grad VML_S, D(x_t))`` from ONE denoiser call (a forward with autograd and one vector-Jacobian
    product)."""
    ab = _level(alpha_bar)
    with torch.enable_grad():
        xg = x_t.detach().requires_grad_(True)
        x0 = denoiser(xg, ab)
        x0_d = x0.detach()
        score = score_from_x0(x_t.detach(), x0_d, ab)  # Tweedie, from the same call
        bracket = operator.A_adjoint(operator.A(x0_d) - y) / sigma_y**2 - math.sqrt(ab) * score
        (grad,) = torch.autograd.grad(x0, xg, grad_outputs=bracket)
    return grad, x0_d


def vml_s_gradient(denoiser, x_t, alpha_bar, operator, y, sigma_y) -> torch.Tensor:
    r"""``grad_{x_t} VML_S = J_D^T [A^T (A D - y) / sigma_y^2 - sqrt(ab) s_t(x_t)]`` (one vector-Jacobian
    product).

    ``D = denoiser(x_t, ab)`` is differentiated with torch autograd and ``s_t`` comes from the same call by
    Tweedie (``s_t = (sqrt(ab) D - x_t) / (1 - ab)``), so any differentiable denoiser works, on vectors or
    images.
    Each particle (leading index of ``x_t``) gets its own gradient (the objective is summed over particles).

    Args:
        denoiser: ``D(x_t, alpha_bar)``, differentiable in ``x_t``.
        x_t: ``(n, ...)``.
        alpha_bar: in (0, 1).
        operator: an object with ``A`` and ``A_adjoint``.
        y: the measurement, shared or one per particle.
        sigma_y: > 0.

    Returns:
        the gradient, shaped like ``x_t``.

    Source: docs/theory §8.2 (derived there; checked against finite differences of
    :func:`vml_s` in ``tests/test_vml_map.py``).
    """
    sigma_y = check_sigma(sigma_y)
    if sigma_y == 0.0:
        raise ValueError("vml_s_gradient needs sigma_y > 0 (the data term is ||y - A D||^2 / (2 sigma_y^2))")
    return vml_s_gradient_and_x0(denoiser, x_t, alpha_bar, operator, y, sigma_y)[0]
