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
    "check_linalg_dtype",
    "check_generator",
    "check_schedule",
    "check_denoiser",
    "check_problem",
    "check_steps",
    "check_memory",
    "available_memory_bytes",
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


def check_linalg_dtype(t: torch.Tensor, name: str) -> torch.Tensor:
    """Refuse half precision (float16, bfloat16) for the exact theory: its eigendecompositions and solves need
    float32 or float64 (torch has no half-precision ``eigh``, and 3 digits would not be exact anyway)."""
    if t.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"{name} has dtype {t.dtype}; the exact theory needs float32 or float64 (no half-precision "
                        f"eigendecomposition): convert it with .double()")
    return t


def check_generator(generator, name: str = "generator"):
    """``None`` or a ``torch.Generator``; an int seed is refused with the way to make a generator from it."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    hint = f" (e.g. torch.Generator().manual_seed({generator}))" if isinstance(generator, numbers.Integral) else ""
    raise TypeError(f"{name} must be a torch.Generator or None{hint}, got {type(generator).__name__} {generator!r}")


def check_schedule(schedule, name: str = "schedule"):
    """``None`` (the default linear schedule, T = 1000) or a :class:`~dptheory.VPSchedule`; returns the schedule."""
    from .schedules import VPSchedule, linear_schedule

    if schedule is None:
        return linear_schedule()
    if isinstance(schedule, VPSchedule):
        return schedule
    what = f"the string {schedule!r}" if isinstance(schedule, str) else type(schedule).__name__
    raise TypeError(f"{name} must be a VPSchedule, e.g. dptheory.linear_schedule() or dptheory.cosine_schedule(), "
                    f"or None for the default linear schedule; got {what}")


def check_denoiser(denoiser, name: str = "denoiser"):
    """``None`` (the exact denoiser) or a callable ``D(x_t, alpha_bar) -> E[x0 | x_t]``."""
    if denoiser is None or callable(denoiser):
        return denoiser
    what = f"the string {denoiser!r}" if isinstance(denoiser, str) else type(denoiser).__name__
    raise TypeError(f"{name} must be None (the exact denoiser of the prior) or a callable D(x_t, alpha_bar) -> "
                    f"E[x0 | x_t] (e.g. a NetworkDenoiser); got {what}")


def check_problem(problem, name: str = "problem"):
    """A :class:`~dptheory.LinearInverseProblem`; anything else (a worked-problem name, say) is refused."""
    from .problem import LinearInverseProblem

    if isinstance(problem, LinearInverseProblem):
        return problem
    hint = (f"; for the worked problem {problem!r} use dptheory.reference_problems.WORKED[{problem!r}]()[0]"
            if isinstance(problem, str) else "")
    raise TypeError(f"{name} must be a LinearInverseProblem, got {type(problem).__name__}{hint}")


def check_steps(steps, name: str = "steps"):
    """``None`` (every step) or a positive integer number of reverse steps; 0 is refused (no step would run and
    the sampler would return its starting noise)."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"{name} must be a positive integer (the number of reverse steps) or None, got {steps!r}")
    return int(steps)


def available_memory_bytes(device=None) -> int | None:
    """Memory the process can still allocate on ``device``: free GPU memory on CUDA; on the CPU
    ``MemAvailable`` of ``/proc/meminfo``, less where a cgroup limit is lower. ``None`` when unknown."""
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used) if avail is not None else int(limit) - used
    except (OSError, ValueError):
        pass
    return avail


def check_memory(n_bytes: float, what: str, device=None) -> None:
    """Refuse up front (``ValueError``) a computation estimated to need ``n_bytes`` when less is available,
    instead of allocating until the machine runs out of memory. Requests under 64 MiB are not checked (no file
    is read for them)."""
    if n_bytes < 2**26:
        return
    avail = available_memory_bytes(device)
    if avail is not None and n_bytes > avail:
        raise ValueError(f"{what} needs about {n_bytes / 2**30:.3g} GiB of memory, but only {avail / 2**30:.3g} GiB "
                         "is available; use fewer samples (or split the call into chunks)")
