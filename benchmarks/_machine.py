"""What the benchmarks record about the machine: the CPU model and its SIMD flags (from /proc/cpuinfo)."""

from __future__ import annotations

import platform


def _cpuinfo_field(name: str) -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith(name)), "")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name, or ``platform.processor()`` where /proc/cpuinfo cannot be read."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def simd_flags() -> list[str]:
    """The CPU's SIMD flags (``avx*``, ``fma``, ``amx*``); empty where /proc/cpuinfo cannot be read."""
    return sorted({f for f in _cpuinfo_field("flags").split() if f.startswith(("avx", "fma", "amx"))})
