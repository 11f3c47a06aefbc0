"""Tiled denoising (``dptheory.images.tiling``) and the thread-count helper (``dptheory.threads``).

Oracles: a denoiser acting pixel by pixel gives the same result tiled and whole (the fusion weights sum to one
at every pixel), in value and in gradient; window starts are checked against their definition by enumeration.
"""

from __future__ import annotations

import math

import pytest
import torch

from dptheory.images.tiling import TiledDenoiser, tile_starts, tile_weights
from dptheory.threads import SINGLE_THREAD_PIXELS, choose_threads, torch_threads


@pytest.mark.parametrize(("length", "tile", "overlap"), [(100, 40, 8), (64, 32, 0), (33, 32, 4), (256, 64, 16),
                                                        (12, 32, 8)])
def test_tile_starts_cover_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    covered = torch.zeros(length, dtype=torch.long)
    for s in starts:
        assert 0 <= s <= length - size
        covered[s : s + size] += 1
    assert bool((covered >= 1).all()) and starts[0] == 0 and starts[-1] + size == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))  # neighbours share >= overlap


def test_tile_weights_are_positive_trapezoids():
    w = tile_weights(10, 8, 40, 3, dtype=torch.float64)
    torch.testing.assert_close(w, torch.tensor([0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25], dtype=torch.float64))
    assert torch.equal(tile_weights(0, 8, 8, 3), torch.ones(8))  # one window: the image border on both sides


class _Pointwise:
    """A denoiser that acts pixel by pixel (a nonlinear function of each pixel and of alpha_bar)."""

    calls = 0

    def __call__(self, x, ab):
        type(self).calls += 1
        return torch.tanh(x) * math.sqrt(ab) + 0.1 * x.square()


@pytest.mark.parametrize(("h", "w", "tile", "overlap", "batch"), [(40, 52, 16, 4, None), (32, 32, 8, 0, 3),
                                                                  (20, 70, 32, 8, 1)])
def test_tiled_pointwise_denoiser_equals_the_whole(h, w, tile, overlap, batch):
    """Normalised weights: ``sum_k w_k D(x)[p] / sum_k w_k = D(x)[p]`` when ``D`` is pointwise; only float64
    round-off of the weighted average remains (hence 1e-12)."""
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    den = _Pointwise()
    tiled = TiledDenoiser(den, tile, overlap, batch=batch)
    out = tiled(x, 0.3)
    torch.testing.assert_close(out, den(x, 0.3), rtol=1e-12, atol=1e-12)
    # differentiable: the gradient of a scalar through the tiles equals the whole-image gradient
    g_tiled, = torch.autograd.grad(out.square().sum(), x)
    g_whole, = torch.autograd.grad(den(x, 0.3).square().sum(), x)
    torch.testing.assert_close(g_tiled, g_whole, rtol=1e-12, atol=1e-12)
    # eps is derived from the fused x0 (Denoiser base class)
    torch.testing.assert_close(tiled.eps(x, 0.3), (x - math.sqrt(0.3) * den(x, 0.3)) / math.sqrt(0.7))


def test_tiled_batches_the_windows():
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    _Pointwise.calls = 0
    TiledDenoiser(_Pointwise(), 32, 8)(x, 0.5)  # 3 x 3 windows, one call
    assert _Pointwise.calls == 1
    TiledDenoiser(_Pointwise(), 32, 8, batch=4)(x, 0.5)  # 9 windows in chunks of 4
    assert _Pointwise.calls == 1 + 3
    assert len(TiledDenoiser(_Pointwise(), 32, 8).windows(64, 64)) == 9


def test_tiled_network_is_close_to_the_whole_away_from_seams():
    """A 3 x 3 convolution (receptive field 1 px): with overlap 8 the trapezoid gives weight 1 / 9 or less to
    the contaminated outer pixel of each interior window edge, so the fused result differs from the whole-image
    convolution only near seams, and by a bounded amount."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1, dtype=torch.float64)

    def den(x, ab):
        return conv(x)

    x = torch.randn(1, 3, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole, tiled = den(x, 0.5), TiledDenoiser(den, 24, 8)(x, 0.5)
        err = (tiled - whole).abs()
    # windows start at 0, 16 and 24: rows/cols 15-16, 23-24, 39-40 border interior edges; elsewhere exact
    mask = torch.ones(48, dtype=torch.bool)
    mask[[15, 16, 23, 24, 39, 40]] = False
    assert float(err[..., mask, :][..., mask].max()) < 1e-12
    assert float(err.max()) < 0.5 * float(whole.abs().max())


@pytest.mark.parametrize(("kw", "match"), [(dict(tile=8, overlap=8), "overlap"), (dict(tile=0, overlap=0), "tile"),
                                           (dict(tile=8, overlap=2, batch=0), "batch")])
def test_tiled_rejects_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        TiledDenoiser(_Pointwise(), **kw)
    with pytest.raises(ValueError, match="x_t must be"):
        TiledDenoiser(_Pointwise(), 8, 2)(torch.zeros(3, 8, 8), 0.5)


# ---------------------------------------------------------------------------------------------- threads
def test_choose_threads_small_work_is_single_threaded():
    assert choose_threads(1 * 32 * 32) == 1 and choose_threads(64 * 64) == 1
    assert choose_threads(SINGLE_THREAD_PIXELS - 1) == 1
    assert 1 <= choose_threads(512 * 512) <= max(1, len(__import__("os").sched_getaffinity(0)))
    assert choose_threads(32 * 32, requested=2) == 2 and choose_threads(10**6, "auto") >= 1
    for bad in (0, -1, 1.5, True, "two"):
        with pytest.raises(ValueError, match="threads"):
            choose_threads(100, requested=bad)


def test_torch_threads_restores_the_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with torch_threads(0):
            pass


def test_own_spinning_threads_are_not_other_work(monkeypatch):
    """A thread of this process that keeps running (as OpenMP workers spin after a parallel region) is counted
    among this process's runnable threads, not as a busy core of another process."""
    import threading
    import time

    from dptheory import threads as th

    if not __import__("os").path.isdir("/proc/self/task"):
        pytest.skip("needs Linux /proc")
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    try:
        time.sleep(0.05)
        own = [th._own_running_threads() for _ in range(20)]
    finally:
        stop.set()
        worker.join()
    assert max(own) >= 2  # this thread (reading /proc) and the spinning one: seen running at least once
    monkeypatch.setattr(th.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(th, "_own_running_threads", lambda: 3)
    real_open = open

    def fake_open(path, *a, **k):
        if path == "/proc/loadavg":
            import io

            return io.StringIO("0.00 0.00 0.00 3/200 12345\n")
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    assert th.busy_cores() == 0  # three runnable tasks, all of them ours
    monkeypatch.setattr(th, "_own_running_threads", lambda: 1)
    assert th.busy_cores() == 2
