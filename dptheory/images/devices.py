"""Where an image command runs: ``--device`` (cpu, cuda, cuda:N) and the network's ``--dtype``, checked up front.

Images, operators and samplers stay in float32 on the chosen device; ``--dtype`` sets the NETWORK's weights and
activations only (its adapter casts inputs to the network's dtype and the outputs back to float32), so bfloat16 or
float16 halve the network's memory while every sampler update keeps float32 arithmetic.
"""

from __future__ import annotations

import resource
import sys

import torch

__all__ = ["DEVICES", "NETWORK_DTYPES", "resolve_device", "resolve_dtype", "peak_memory_mib"]

DEVICES = ("cpu", "cuda")
"""Device kinds an image command accepts (``cuda:N`` picks a GPU)."""

NETWORK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""``--dtype`` names and the network dtype they select."""


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a :class:`torch.device`; ``ValueError`` naming the problem when
    the string is not one of these or no CUDA device is available."""
    if not isinstance(name, str):
        raise TypeError(f"device must be a string (cpu, cuda, cuda:N), got {type(name).__name__}")
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {name!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValueError(f"device {name!r} asked for, but no CUDA device is available (torch {torch.__version__}"
                             f", {build}); use --device cpu")
        n = torch.cuda.device_count()
        if index and int(index) >= n:
            raise ValueError(f"device {name!r} asked for, but only {n} CUDA device(s) exist (cuda:0..cuda:{n - 1})")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    """A :data:`NETWORK_DTYPES` name as a torch dtype; ``ValueError`` listing the names otherwise."""
    if name not in NETWORK_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(NETWORK_DTYPES)}, got {name!r}")
    return NETWORK_DTYPES[name]


def peak_memory_mib(device: torch.device | None = None) -> dict:
    """Peak memory of this process so far, in MiB: ``rss`` is the peak resident set size from
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux, bytes on macOS; it includes the Python runtime,
    torch and the weights); on a CUDA device also ``cuda`` from ``torch.cuda.max_memory_allocated``."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"rss": rss / (2**20 if sys.platform == "darwin" else 2**10)}
    if device is not None and torch.device(device).type == "cuda":
        out["cuda"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out
