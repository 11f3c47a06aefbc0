"""Input validation shared by every layer.

Each helper raises a ``ValueError`` or ``TypeError`` that names the argument and says what was expected.
Nothing is clipped or repaired silently.
"""

from __future__ import annotations

import numbers

import torch

__all__ = [
    "as_tensor",
    "check_finite",
    "check_alpha_bar",
    "check_vector_batch",
    "check_sigma",
    "check_int",
    "common_dtype",
]


def common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The promoted floating dtype of ``tensors`` (float64 when none is floating)."""
    dtype = None
    for t in tensors:
        if t is None:
            continue
        d = t.dtype if t.is_floating_point() else torch.float64
        dtype = d if dtype is None else torch.promote_types(dtype, d)
    return torch.float64 if dtype is None else dtype


def as_tensor(x, name: str, *, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Convert ``x`` to a floating tensor.

    Tensors keep their dtype and device unless ``dtype``/``device`` are given; integer tensors become
    float64. numpy arrays keep a floating dtype; Python numbers and lists become float64.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        keeps_dtype = type(x).__module__ == "numpy"  # numpy arrays/scalars say their dtype; lists do not
        try:
            t = torch.as_tensor(x)
            if not keeps_dtype and t.is_floating_point():
                t = torch.as_tensor(x, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a tensor or array-like of numbers, got {type(x).__name__}") from err
    if t.is_complex():
        raise TypeError(f"{name} must be real, got a complex tensor")
    if dtype is None:
        dtype = t.dtype if t.is_floating_point() else torch.float64
    return t.to(dtype=dtype, device=device if device is not None else t.device)


def check_finite(t: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``t`` holds a NaN or an Inf."""
    if not bool(torch.isfinite(t).all()):
        bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
        raise ValueError(f"{name} contains {bad}; expected finite values")
    return t


def check_vector_batch(x, d: int, name: str, *, like: torch.Tensor | None = None) -> torch.Tensor:
    """Validate a point or batch of points of shape ``(..., d)``; finite values required.

    When ``like`` is given and ``x`` is not a tensor, ``x`` takes ``like``'s dtype and device.
    """
    if like is not None and not isinstance(x, torch.Tensor):
        t = as_tensor(x, name, dtype=like.dtype, device=like.device)
    else:
        t = as_tensor(x, name)
    if t.ndim == 0 or t.shape[-1] != d:
        raise ValueError(f"{name} must have shape (d,) or (n, d) with d = {d}, got shape {tuple(t.shape)}")
    return check_finite(t, name)


def check_alpha_bar(alpha_bar, name: str = "alpha_bar") -> float:
    """Validate a noise level ``alpha_bar`` in (0, 1] and return it as a Python float."""
    if isinstance(alpha_bar, torch.Tensor):
        if alpha_bar.numel() != 1:
            raise ValueError(f"{name} must be a scalar in (0, 1], got shape {tuple(alpha_bar.shape)}")
        alpha_bar = float(alpha_bar)
    if not isinstance(alpha_bar, numbers.Real):
        raise TypeError(f"{name} must be a real number in (0, 1], got {type(alpha_bar).__name__}")
    ab = float(alpha_bar)
    if not (0.0 < ab <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must lie in (0, 1], got {ab}")
    return ab


def check_sigma(sigma, name: str = "sigma_y") -> float:
    """Validate a noise standard deviation (finite, >= 0) and return it as a Python float."""
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"{name} must be a scalar >= 0, got shape {tuple(sigma.shape)}")
        sigma = float(sigma)
    if not isinstance(sigma, numbers.Real):
        raise TypeError(f"{name} must be a real number >= 0, got {type(sigma).__name__}")
    s = float(sigma)
    if not (s >= 0.0) or s == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {s}")
    return s


def check_int(value, name: str, minimum: int = 1) -> int:
    """Validate an integer count ``>= minimum`` (bools rejected) and return it as a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)
