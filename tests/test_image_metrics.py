"""Image metrics against independent oracles: skimage.metrics (PSNR, SSIM), POT (1-D and sliced W),
scipy.ndimage (the pyramid filter) and a numpy re-implementation of the SWD pipeline.

Tolerances: PSNR/SSIM in float64 at 1e-10 (same formula, different filtering order: round-off only; the
brief's 1e-4 would hide a wrong window or covariance convention, which move SSIM by > 1e-3); SSIM in float32
at 1e-4 (eps 1e-7 amplified by the variance cancellation ``E[x^2] - E[x]^2``); POT comparisons at 1e-10
(exact sort-based formulas in float64).
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
import scipy.ndimage
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dptheory.images import metrics as M


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _pair(shape=(2, 3, 24, 20), noise=0.3, seed=0):
    g = _g(seed)
    x = torch.rand(*shape, generator=g) * 2 - 1
    return x, (x + noise * torch.randn(*shape, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("shape", [(2, 3, 24, 20), (1, 1, 11, 11), (3, 1, 16, 33)])
@pytest.mark.parametrize("noise", [0.05, 0.5])
def test_psnr_ssim_match_skimage(shape, noise):
    x, ref = _pair(shape, noise)
    p, s = M.psnr(x, ref), M.ssim(x, ref)
    assert p.shape == s.shape == (shape[0],)
    for i in range(shape[0]):
        a, b = ref[i].numpy(), x[i].numpy()
        assert float(p[i]) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=2.0), rel=1e-12)
        s_ref = structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2.0, channel_axis=0
        )
        assert float(s[i]) == pytest.approx(s_ref, abs=1e-10)


def test_metrics_float32_broadcast_and_identity():
    x, ref = _pair()
    s32 = M.ssim(x.float(), ref.float())
    assert s32.dtype == torch.float32
    assert torch.allclose(s32.double(), M.ssim(x, ref), atol=1e-4)
    assert torch.allclose(M.ssim(x, x), torch.ones(2), atol=1e-12)
    assert bool(torch.isinf(M.psnr(x, x)).all())
    assert torch.allclose(M.psnr(x, ref[:1]), M.psnr(x, ref[:1].expand_as(x)))  # shared reference
    assert float(M.psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.2))) == pytest.approx(20.0)


def test_metric_errors():
    x, ref = _pair()
    with pytest.raises(ValueError, match="ref must have shape"):
        M.psnr(x, ref[..., :-1])
    with pytest.raises(ValueError, match="h, w >= 11"):
        M.ssim(x[..., :10, :10], ref[..., :10, :10])
    with pytest.raises(ValueError, match="x contains NaN"):
        M.ssim(torch.full_like(x, float("nan")), ref)
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(x, ref, data_range=0)
    with pytest.raises(ValueError, match="never downloads"):
        M.lpips(x, ref)
    with pytest.raises(ValueError, match="never downloads"):
        M.fid(x, ref)
    with pytest.raises(FileNotFoundError):
        M.lpips(x, ref, weights="/nonexistent/lpips.pt")


# ---------------------------------------------------------------------------------------------- SWD pieces
@pytest.mark.parametrize("sizes", [(40, 40), (25, 17), (1, 9)])
def test_wasserstein_1d_matches_pot(sizes):
    g = _g(1)
    a, b = torch.randn(sizes[0], generator=g), torch.randn(sizes[1], generator=g) * 2 + 0.3
    ref = ot.emd2_1d(a.numpy(), b.numpy(), metric="minkowski", p=1)
    assert float(M.wasserstein_1d(a, b)) == pytest.approx(ref, rel=1e-10, abs=1e-12)


def test_wasserstein_1d_exact_values():
    # W1(delta_0, delta_3) = 3; a shift by c moves W1 by |c|; W1({0, 1}, {0}) = 1/2
    assert float(M.wasserstein_1d(torch.zeros(4), torch.full((4,), 3.0))) == 3.0
    a = torch.randn(50, generator=_g(2))
    assert float(M.wasserstein_1d(a, a + 0.7)) == pytest.approx(0.7, abs=1e-14)
    assert float(M.wasserstein_1d(torch.tensor([0.0, 1.0]), torch.tensor([0.0]))) == pytest.approx(0.5)


@pytest.mark.parametrize("n_b", [30, 21])
def test_sliced_wasserstein_matches_pot(n_b):
    g = _g(3)
    a, b = torch.randn(30, 6, generator=g), torch.randn(n_b, 6, generator=g) * 1.5 + 0.2
    P = torch.randn(6, 50, generator=g)
    P = P / P.norm(dim=0)
    ref = ot.sliced_wasserstein_distance(a.numpy(), b.numpy(), projections=P.numpy(), p=1)
    assert float(M.sliced_wasserstein(a, b, P)) == pytest.approx(float(ref), rel=1e-10)


def test_pyramid_filter_matches_scipy_and_reconstructs():
    x = torch.randn(2, 3, 16, 24, generator=_g(4))
    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
    down = M._pyr_down(x)
    for i in range(2):
        for c in range(3):
            ref = scipy.ndimage.convolve(x[i, c].numpy(), k, mode="mirror")[::2, ::2]
            np.testing.assert_allclose(down[i, c].numpy(), ref, atol=1e-13)
    pyr = M.laplacian_pyramid(x, 3)
    assert [tuple(p.shape[-2:]) for p in pyr] == [(16, 24), (8, 12), (4, 6)]
    g = pyr[-1]
    for lap in reversed(pyr[:-1]):
        g = lap + M._pyr_up(g)
    assert torch.allclose(g, x, atol=1e-13)


def _swd_numpy(x, y, levels, patch, seed, n_proj):
    """Independent re-implementation: scipy pyramid, sliding-window patches, POT sliced W1."""
    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0

    def conv(a, gain=1.0):
        return scipy.ndimage.convolve(a, gain * k[None, None], mode="mirror")

    def pyramid(a):
        out = []
        for _ in range(levels - 1):
            nxt = conv(a)[..., ::2, ::2]
            up = np.zeros_like(a)
            up[..., ::2, ::2] = nxt
            out.append(a - conv(up, 4.0))
            a = nxt
        return out + [a]

    def desc(level):
        w = np.lib.stride_tricks.sliding_window_view(level, (patch, patch), axis=(2, 3))  # n c H W p p
        d = w.transpose(0, 2, 3, 1, 4, 5).reshape(-1, level.shape[1], patch * patch)
        d = (d - d.mean(axis=(0, 2), keepdims=True)) / d.std(axis=(0, 2), keepdims=True)
        return d.reshape(d.shape[0], -1)

    g = torch.Generator().manual_seed(seed)
    out = []
    for lx, ly in zip(pyramid(x), pyramid(y), strict=True):
        dx, dy = desc(lx), desc(ly)
        P = torch.randn(dx.shape[1], n_proj, generator=g, dtype=torch.float64).numpy()
        P = P / np.linalg.norm(P, axis=0, keepdims=True)
        out.append(ot.sliced_wasserstein_distance(dx, dy, projections=P, p=1))
    return np.array(out)


def test_swd_matches_independent_pipeline():
    g = _g(5)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    y = (torch.rand(3, 3, 16, 16, generator=g) * 2 - 1) * 0.5
    got = M.swd_per_level(x, y, levels=2, patch=3, patches_per_image=None, n_projections=64, generator=_g(9))
    ref = _swd_numpy(x.numpy(), y.numpy(), 2, 3, 9, 64)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


def test_swd_properties():
    g = _g(6)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    y = torch.rand(3, 3, 32, 32, generator=g) ** 3 * 2 - 1
    kw = dict(patches_per_image=None, n_projections=32)
    assert torch.allclose(M.swd_per_level(x, x, generator=_g(1), **kw), torch.zeros(2), atol=1e-12)
    base = M.swd(x, y, generator=_g(1), **kw)
    assert float(base) > 0.05
    # per-channel standardisation: invariant to a positive affine map of the intensities
    assert float(M.swd(0.5 * x + 0.2, y, generator=_g(1), **kw)) == pytest.approx(float(base), rel=1e-9)
    assert float(M.swd(y, x, generator=_g(1), **kw)) == pytest.approx(float(base), rel=1e-12)
    # random patches (default 128 per image) are deterministic given the generator
    assert torch.equal(M.swd_per_level(x, y, generator=_g(2)), M.swd_per_level(x, y, generator=_g(2)))
    assert M.swd_per_level(x, y, generator=_g(2)).shape == (2,)  # 32 px: levels 32, 16
    with pytest.raises(ValueError, match="patch 7 exceeds"):
        M.swd(x, y, levels=4, generator=_g(1))


def test_lpips_fid_with_local_networks(tmp_path):
    class Dist(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, a, b):
            return self.scale * (a - b).pow(2).mean(dim=(1, 2, 3))

    class Feat(torch.nn.Module):
        def forward(self, a):
            return a.mean(dim=(2, 3))

    x, ref = _pair((4, 3, 12, 12))
    want = (x - ref).pow(2).mean(dim=(1, 2, 3))
    assert torch.allclose(M.lpips(x, ref, weights=Dist()), want)  # a module
    trained = Dist()
    with torch.no_grad():
        trained.scale.fill_(3.0)
    pl = tmp_path / "lpips.pt"
    torch.save(trained.state_dict(), pl)
    assert torch.allclose(M.lpips(x, ref, weights=(Dist(), pl)), 3.0 * want)  # a state dict loaded into a module
    pf = Feat()
    assert float(M.fid(x, x, weights=pf)) == pytest.approx(0.0, abs=1e-10)
    fx, fy = x.mean(dim=(2, 3)), (x + 1.0).mean(dim=(2, 3))
    assert float(M.fid(x, x + 1.0, weights=pf)) == pytest.approx(float(((fx.mean(0) - fy.mean(0)) ** 2).sum()))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="refused"):  # a bare path: tensors only, no network to build
        M.lpips(x, ref, weights=bad)
    with pytest.raises(ValueError, match="not a readable tensor checkpoint"):
        M.lpips(x, ref, weights=(Dist(), bad))


# ---------------------------------------------------------------------------------------------- diagonal Frechet W2
def _dft_matrix(h: int, w: int) -> np.ndarray:
    """The orthonormal 2-D DFT of an ``h x w`` image (row-major flattening) as a dense unitary matrix."""

    def one(m):
        j = np.arange(m)
        return np.exp(-2j * np.pi * np.outer(j, j) / m) / np.sqrt(m)

    return np.kron(one(h), one(w))


def _stationary_cov(power: np.ndarray) -> np.ndarray:
    """``F^H diag(power) F`` (real: the spectrum is symmetric under k -> -k)."""
    F = _dft_matrix(*power.shape)
    C = F.conj().T @ np.diag(power.reshape(-1)) @ F
    assert np.abs(C.imag).max() < 1e-12
    return C.real


def _spectrum(h: int, w: int, scale: float, slope: float) -> np.ndarray:
    """A symmetric power-law spectrum ``scale / (1 + |f|^2)^slope`` on the DFT grid (f folded to [0, n/2])."""
    fy, fx = (np.minimum(np.arange(n), n - np.arange(n)) for n in (h, w))
    return scale / (1.0 + fy[:, None] ** 2 + fx[None, :] ** 2) ** slope


def _bures_squared(m1, C1, m2, C2) -> float:
    """Exact ``W2^2`` between ``N(m1, C1)`` and ``N(m2, C2)`` (dense matrices, scipy's sqrtm)."""
    from scipy.linalg import sqrtm

    r = sqrtm(C1).real
    return float(((m1 - m2) ** 2).sum() + np.trace(C1) + np.trace(C2) - 2 * np.trace(sqrtm(r @ C2 @ r).real))


def test_frechet_diag_matches_exact_gaussian_w2():
    """Against the dense Bures formula (scipy) for two stationary Gaussians on 6 x 6 images, for both targets.

    Draws come from a dense square root of the covariance (numpy, no FFT). Tolerance: the estimator's upward
    bias, at most ``tr C_x / (2 (n - 1))`` (a real DFT coefficient: ``v^`` has ``n - 1`` degrees of freedom;
    half that bias for the complex ones), plus 4 delta-method SDs: the spectral sum's SD is at most
    ``sqrt(2 / (n - 1)) sum_k |sqrt(v_k) - sqrt(t_k)|`` (each term's SD, added linearly: the terms of k and -k
    are the same number), the mean term's ``sqrt(4 delta^T C_x delta / n + 2 tr C_x^2 / n^2)``; with ``ref``
    (estimated target) both sides' contributions add. At n = 20000 this is 3% (5% with ref) of W2^2: a missing
    square root, a wrong DFT normalisation or a dropped mean correction move the estimate by far more.
    """
    h, w, n = 6, 6, 20_000
    rng = np.random.default_rng(7)
    Px, Pt = _spectrum(h, w, 1.0, 1.0), _spectrum(h, w, 0.5, 0.6)
    Cx, Ct = _stationary_cov(Px), _stationary_cov(Pt)
    mx = 0.3 + 0.1 * rng.standard_normal(h * w)  # a non-constant mean: the per-measurement form
    mt = np.full(h * w, -0.2)
    x = mx + rng.standard_normal((n, h * w)) @ np.linalg.cholesky(Cx).T
    exact = _bures_squared(mx, Cx, mt, Ct)
    spec_sd = np.sqrt(2 / (n - 1)) * np.abs(np.sqrt(Px) - np.sqrt(Pt)).sum()
    delta = mx - mt
    mean_sd = np.sqrt(4 * delta @ Cx @ delta / n + 2 * np.trace(Cx @ Cx) / n**2)
    tol = np.trace(Cx) / (2 * (n - 1)) + 4 * (spec_sd + mean_sd)
    est = M.frechet_diag_squared(torch.from_numpy(x).reshape(n, 1, h, w), mean=torch.from_numpy(mt).reshape(1, h, w),
                                 power=torch.from_numpy(Pt).reshape(1, h, w))
    assert abs(est - exact) <= tol and tol <= 0.1 * exact, (est, exact, tol)
    # ref form: a stationary x (constant mean) against independent draws of the target
    mx_c = np.full(h * w, 0.3)
    xs = mx_c + rng.standard_normal((n, h * w)) @ np.linalg.cholesky(Cx).T
    ref = mt + rng.standard_normal((n, h * w)) @ np.linalg.cholesky(Ct).T
    exact_c = _bures_squared(mx_c, Cx, mt, Ct)
    spec_sd_ref = np.sqrt(2 / (n - 1)) * 2 * np.abs(np.sqrt(Px) - np.sqrt(Pt)).sum()
    tol_c = (np.trace(Cx) + np.trace(Ct)) / (2 * (n - 1)) + 4 * (spec_sd_ref + 2 * mean_sd)
    est_c = M.frechet_diag_squared(torch.from_numpy(xs).reshape(n, 1, h, w),
                                   ref=torch.from_numpy(ref).reshape(n, 1, h, w))
    assert abs(est_c - exact_c) <= tol_c and tol_c <= 0.15 * exact_c, (est_c, exact_c, tol_c)


def test_frechet_diag_is_exact_for_known_spectra(gen):
    """With the exact target spectrum and many draws of a law with the spectrum scaled by 4 (std x 2), W2^2 ->
    sum_k (2 - 1)^2 P[k] = tr P (to a few percent)."""
    from dptheory.images.spectral import PowerLawSpectrum, SpectralGaussian

    P = PowerLawSpectrum([1e-3], [0.05], [2.0]).power(8, 8)
    x = SpectralGaussian(torch.zeros(1, 8, 8), 4 * P).sample(4000, generator=gen)
    w2_sq = M.frechet_diag_squared(x, mean=torch.zeros(1, 8, 8), power=P)
    assert abs(w2_sq / float(P.sum()) - 1.0) < 0.05  # sampling error ~ 1/sqrt(n) per coefficient, averaged


def test_frechet_diag_rejects_bad_targets():
    x = torch.zeros(4, 1, 6, 6).normal_(generator=_g())
    with pytest.raises(ValueError, match="got neither"):
        M.frechet_diag_squared(x)
    with pytest.raises(ValueError, match="not both"):
        M.frechet_diag_squared(x, ref=x, mean=torch.zeros(1, 6, 6), power=torch.ones(1, 6, 6))
    with pytest.raises(ValueError, match="power must have shape"):
        M.frechet_diag_squared(x, mean=torch.zeros(1, 6, 6), power=torch.ones(6, 6))
    with pytest.raises(ValueError, match="x must have shape"):
        M.frechet_diag_squared(x[:1], mean=torch.zeros(1, 6, 6), power=torch.ones(1, 6, 6))
