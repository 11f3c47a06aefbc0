"""Keep freed memory inside the process during command-line runs (glibc only).

glibc's ``malloc`` serves every block above its mmap threshold (128 KiB to start with) with a fresh ``mmap`` and
unmaps it on ``free``. A loop that allocates and frees the same large tensors at every step (a DPS step through a
tiled UNet on a 256 px photo: the activations of 121 tiles) then page-faults all of them in again at every step:
the 256 x 256 ``restore`` spent 33 of its 158 CPU seconds in the kernel (17 million minor faults), and a 512 x 512
one 543 of 1056. :func:`keep_freed_memory` raises the mmap and trim thresholds to 1 GiB (the mmap one to 32 MiB
on glibc older than 2.35, which refuses more), so freed blocks are reused: the same 256 px run made 0.5 million
faults and solved in 63 s instead of 78 s, with bit-identical output. Only the command-line entry points call it
(``dptheory``, ``python -m dptheory``, the ``reproduce`` workers), never ``import dptheory``;
``DPTHEORY_MALLOC=default`` opts out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc <malloc.h>
MMAP_THRESHOLDS = (1 << 30, 32 << 20)  # 1 GiB (glibc >= 2.35 accepts it), else the old limit HEAP_MAX_SIZE / 2
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20


def keep_freed_memory() -> bool:
    """Set glibc's ``mallopt`` thresholds (module docstring); True when all three were accepted, False elsewhere
    (not Linux, not glibc, or ``DPTHEORY_MALLOC=default``)."""
    if os.environ.get("DPTHEORY_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mmap_ok = any(mallopt(_M_MMAP_THRESHOLD, value) == 1 for value in MMAP_THRESHOLDS)
    return mmap_ok and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and mallopt(_M_TOP_PAD, TOP_PAD) == 1
