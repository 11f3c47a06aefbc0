"""How many torch intra-op threads a job should use, chosen from its work size and the machine's load.

Small tensors gain nothing from OpenMP threads: a batch-1 UNet call on a 32-64 px image is a few milliseconds of
work, and splitting it across threads adds a barrier per operator. On a shared machine it is worse: a thread
that waits at a barrier for a core held by another process stalls the whole call (a 32 px ``restore`` took
299 s at 2 threads next to other jobs on a 2-core machine, and 19 s at 1 thread). Hence:

- work below :data:`SINGLE_THREAD_PIXELS` pixels per call (batch x height x width) runs on one thread;
- larger work uses the cores that are free now: the usable cores minus the other runnable tasks (the larger of
  the 1-minute load average and the instantaneous count of running tasks in ``/proc/loadavg`` less this
  process's own), at least 1;
- an explicit request always wins.

:func:`torch_threads` sets the count for a block and restores the caller's setting afterwards.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["SINGLE_THREAD_PIXELS", "usable_cores", "busy_cores", "choose_threads", "torch_threads"]

SINGLE_THREAD_PIXELS = 128 * 128
"""Below this many pixels per network call (batch x H x W) one thread is used: it covers batch-1 images up to
128 px (a 32 px UNet call is ~15 ms on one core; 64 px ~33 ms)."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _own_running_threads() -> int:
    """This process's threads that are runnable now (state ``R`` in ``/proc/self/task/*/stat``), at least 1: its
    OpenMP workers spin for a while after a parallel region, and they are not other work."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # pragma: no cover - not Linux
        return 1
    running = 0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                running += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):  # the thread ended meanwhile
            pass
    return max(1, running)


def busy_cores() -> int:
    """Cores other processes keep busy now: ``max(round(loadavg_1min), running - own)``, where ``running`` is the
    instantaneous count of runnable tasks in ``/proc/loadavg`` and ``own`` this process's runnable threads
    (:func:`_own_running_threads`); 0 where the OS does not say."""
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return 0
    running = 1
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    return max(round(load1), running - _own_running_threads(), 0)


def choose_threads(pixels: int, requested: int | str | None = None) -> int:
    """The torch thread count for work of ``pixels`` pixels per call (batch x height x width).

    ``requested``: a positive int is returned as is; ``None`` or ``"auto"`` chooses (module docstring): 1 below
    :data:`SINGLE_THREAD_PIXELS`, else ``max(1, usable_cores() - busy_cores())``.

    Examples:
        >>> choose_threads(32 * 32)
        1
        >>> choose_threads(10**6, requested=3)
        3
    """
    if requested is not None and requested != "auto":
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads must be a positive int or 'auto', got {requested!r}")
        return requested
    if not isinstance(pixels, int) or pixels < 0:
        raise ValueError(f"pixels must be a non-negative int, got {pixels!r}")
    if pixels < SINGLE_THREAD_PIXELS:
        return 1
    return max(1, usable_cores() - busy_cores())


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with ``torch.set_num_threads(n)`` and restore the previous count; ``None`` changes nothing."""
    import torch

    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive int, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
