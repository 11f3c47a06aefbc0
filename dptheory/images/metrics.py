"""Image metrics in model units ([-1, 1], so ``data_range = 2``): PSNR, SSIM, SWD; LPIPS/FID from local weights.

- :func:`psnr`, :func:`ssim`: per image, ``(n,)``; written in torch, checked against ``skimage.metrics``.
- :func:`swd`, :func:`swd_per_level`: sliced Wasserstein distance between Laplacian-pyramid patch sets
  (Karras et al. 2018, progressive GAN's ``metrics/sliced_wasserstein.py``); :func:`sliced_wasserstein` and
  :func:`wasserstein_1d` are the exact pieces it uses, checked against POT.
- :func:`lpips`, :func:`fid`: need pretrained networks; they run only from a network given by the user, or a local
  state dict loaded into it as tensors only (nothing is downloaded, no pickle or ``.pt2`` code ever runs), and
  raise a clear error otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .._checks import as_tensor, check_finite

__all__ = [
    "psnr",
    "ssim",
    "wasserstein_1d",
    "sliced_wasserstein",
    "laplacian_pyramid",
    "swd",
    "swd_per_level",
    "frechet_diag_squared",
    "lpips",
    "fid",
]


def _pair(x, ref, name_x="x", name_ref="ref"):
    x = check_finite(as_tensor(x, name_x), name_x)
    ref = check_finite(as_tensor(ref, name_ref, dtype=x.dtype, device=x.device), name_ref)
    if x.ndim != 4:
        raise ValueError(f"{name_x} must have shape (n, c, h, w), got {tuple(x.shape)}")
    if ref.ndim != 4 or ref.shape[1:] != x.shape[1:] or ref.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"{name_ref} must have shape (n or 1, c, h, w) = {tuple(x.shape)}, got {tuple(ref.shape)}")
    return x, ref


def _data_range(data_range) -> float:
    r = float(data_range)
    if not (r > 0) or math.isinf(r):
        raise ValueError(f"data_range must be a finite number > 0, got {data_range}")
    return r


def psnr(x, ref, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(R^2 / mse)`` with ``mse`` over ``(c, h, w)``.

    ``x (n, c, h, w)``, ``ref (n or 1, c, h, w)`` -> ``(n,)`` in dB (``inf`` where ``x == ref``). ``R`` is the
    data range: 2 for model units [-1, 1]. Same as ``skimage.metrics.peak_signal_noise_ratio``.
    """
    x, ref = _pair(x, ref)
    R = _data_range(data_range)
    mse = (x - ref).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(R**2 / mse)


def _gaussian_window(sigma: float, radius: int, like: torch.Tensor) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x, ref, data_range: float = 2.0, *, sigma: float = 1.5, K1: float = 0.01, K2: float = 0.03) -> torch.Tensor:
    r"""Structural similarity per image (Wang et al. 2004), mean over channels and positions: ``(n,)``.

    .. math::
        \mathrm{SSIM} = \frac{(2 \mu_x \mu_y + C_1)(2 \sigma_{xy} + C_2)}
            {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},\quad C_1 = (K_1 R)^2,\ C_2 = (K_2 R)^2,

    with local moments from an 11 x 11 Gaussian window (``sigma`` 1.5, radius ``int(3.5 sigma + 0.5) = 5``),
    population (not sample) covariances, and only windows fully inside the image (a "valid" filter). This
    equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R, channel_axis=...)``, which filters the whole image and then
    crops the 5-pixel border. ``h, w >= 11``.

    Source: Wang, Bovik, Sheikh and Simoncelli 2004 (IEEE TIP 13(4)) eq. (13) and sec. III-C.
    """
    x, ref = _pair(x, ref)
    R = _data_range(data_range)
    radius = int(3.5 * sigma + 0.5)
    if min(x.shape[-2:]) < 2 * radius + 1:
        raise ValueError(f"ssim needs h, w >= {2 * radius + 1}, got {tuple(x.shape[-2:])}")
    ref = ref.expand_as(x)
    n, c = x.shape[:2]
    g = _gaussian_window(sigma, radius, x)
    stack = torch.stack([x, ref, x * x, ref * ref, x * ref], 1).reshape(n * 5 * c, 1, *x.shape[-2:])
    f = F.conv2d(F.conv2d(stack, g.reshape(1, 1, -1, 1)), g.reshape(1, 1, 1, -1))
    mx, my, mxx, myy, mxy = f.reshape(n, 5, c, *f.shape[-2:]).unbind(1)
    vx, vy, vxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    C1, C2 = (K1 * R) ** 2, (K2 * R) ** 2
    S = (2 * mx * my + C1) * (2 * vxy + C2) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    return S.flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------- SWD
def wasserstein_1d(a, b) -> torch.Tensor:
    r"""Exact 1-Wasserstein distance between empirical distributions on the line (uniform weights).

    ``W_1 = \int |F_a(t) - F_b(t)| dt`` over the merged sorted support. ``a (..., N)``, ``b (..., M)`` ->
    ``(...)`` (batched over leading dims). For ``N = M`` it equals ``mean |sort(a) - sort(b)|``.
    Source: e.g. [peyre2019computational] remark 2.30; POT's ``ot.wasserstein_1d``/``ot.emd2_1d`` (metric cityblock).
    """
    a, b = as_tensor(a, "a"), as_tensor(b, "b")
    N, M = a.shape[-1], b.shape[-1]
    if N == 0 or M == 0:
        raise ValueError("a and b must hold at least one point each")
    if N == M:
        return (a.sort(-1).values - b.sort(-1).values).abs().mean(-1)
    a, b = torch.broadcast_tensors(a[..., :, None], b[..., None, :])
    a, b = a[..., 0], b[..., 0, :]
    allv = torch.cat([a, b], -1).sort(-1).values
    Fa = torch.searchsorted(a.sort(-1).values.contiguous(), allv.contiguous(), right=True) / N
    Fb = torch.searchsorted(b.sort(-1).values.contiguous(), allv.contiguous(), right=True) / M
    return ((Fa - Fb).abs()[..., :-1] * allv.diff(dim=-1)).sum(-1)


def sliced_wasserstein(a, b, projections) -> torch.Tensor:
    r"""Sliced 1-Wasserstein distance ``mean_k W_1(<a, theta_k>, <b, theta_k>)`` for given unit directions.

    ``a (N, d)``, ``b (M, d)``, ``projections (d, K)`` (columns ``theta_k``) -> 0-d tensor. Equals POT's
    ``ot.sliced_wasserstein_distance(a, b, projections=projections, p=1)``.
    Source: Rabin et al. 2011; the form used by Karras et al. 2018 (``sliced_wasserstein``).
    """
    a, b = as_tensor(a, "a"), as_tensor(b, "b")
    P = as_tensor(projections, "projections", dtype=a.dtype, device=a.device)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or P.ndim != 2 or P.shape[0] != a.shape[1]:
        raise ValueError(
            f"expected a (N, d), b (M, d), projections (d, K); got {tuple(a.shape)}, {tuple(b.shape)}, {tuple(P.shape)}"
        )
    return wasserstein_1d((a @ P).T, (b.to(a.dtype) @ P).T).mean()


_BINOMIAL5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def _binomial_filter(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Separable 5 x 5 binomial filter ``[1 4 6 4 1]^T [1 4 6 4 1] / 256`` with mirror boundary (per channel)."""
    n, c, h, w = x.shape
    k = x.new_tensor(_BINOMIAL5) / 16
    y = F.pad(x.reshape(n * c, 1, h, w), (2, 2, 2, 2), mode="reflect")
    y = F.conv2d(F.conv2d(y, k.reshape(1, 1, -1, 1)), k.reshape(1, 1, 1, -1))
    return (gain * y).reshape(n, c, h, w)


def _pyr_down(x):
    return _binomial_filter(x)[..., ::2, ::2]


def _pyr_up(x):
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    return _binomial_filter(up, gain=4.0)


def laplacian_pyramid(x, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid ``[L_0, ..., L_{levels-1}]`` of ``x (n, c, h, w)``, finest first.

    ``G_0 = x``, ``G_{i+1} = down(G_i)``, ``L_i = G_i - up(G_{i+1})`` for ``i < levels - 1`` and
    ``L_{levels-1} = G_{levels-1}``; ``down`` = 5 x 5 binomial filter then every other pixel, ``up`` = zero
    insertion then 4 x the filter, mirror boundaries (``scipy.ndimage`` mode ``"mirror"``). Reconstruction is
    exact: ``G_i = L_i + up(G_{i+1})``. ``h, w`` must be divisible by ``2^(levels-1)`` (and ``>= 3``).
    Source: Burt and Adelson 1983; Karras et al. 2018 ``generate_laplacian_pyramid``.
    """
    x = as_tensor(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, c, h, w), got {tuple(x.shape)}")
    levels = int(levels)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    f = 2 ** (levels - 1)
    if x.shape[-1] % f or x.shape[-2] % f or min(x.shape[-2:]) // f < 3:
        raise ValueError(f"image size {tuple(x.shape[-2:])} must be divisible by 2^(levels-1) = {f}, >= 3 after")
    pyr, g = [], x
    for _ in range(levels - 1):
        g_next = _pyr_down(g)
        pyr.append(g - _pyr_up(g_next))
        g = g_next
    pyr.append(g)
    return pyr


def _patches(level, patch, per_image, generator):
    """``(N, c * patch^2)`` patches of ``level (n, c, h, w)``: ``per_image`` random ones, or all if None."""
    n, c, h, w = level.shape
    if patch > h or patch > w:
        raise ValueError(f"patch {patch} exceeds the pyramid level size {h}x{w}; use fewer levels")
    if per_image is None:
        P = F.unfold(level, patch)  # (n, c * patch^2, L), all positions
        return P.transpose(1, 2).reshape(-1, c * patch * patch)
    top = torch.randint(h - patch + 1, (n, per_image), generator=generator).to(level.device)
    left = torch.randint(w - patch + 1, (n, per_image), generator=generator).to(level.device)
    ar = torch.arange(patch, device=level.device)
    rows = (top[..., None] + ar)[..., :, None]  # (n, k, p, 1)
    cols = (left[..., None] + ar)[..., None, :]  # (n, k, 1, p)
    b = torch.arange(n, device=level.device).reshape(n, 1, 1, 1)
    P = level.permute(0, 2, 3, 1)[b, rows, cols]  # (n, k, p, p, c)
    return P.permute(0, 1, 4, 2, 3).reshape(n * per_image, c * patch * patch)


def _normalise(desc, c, patch):
    """Per-channel standardisation over all patches and positions (Karras et al. ``finalize_descriptors``)."""
    d = desc.reshape(-1, c, patch * patch)
    mean = d.mean(dim=(0, 2), keepdim=True)
    std = d.std(dim=(0, 2), keepdim=True, unbiased=False)
    return ((d - mean) / std.clamp_min(1e-12)).reshape(desc.shape)


def swd_per_level(
    x_set,
    y_set,
    *,
    levels: int | None = None,
    patch: int = 7,
    patches_per_image: int | None = 128,
    n_projections: int = 512,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced Wasserstein distance per Laplacian-pyramid level, ``(levels,)``, finest first.

    For each level: ``patch x patch x c`` neighbourhoods at ``patches_per_image`` random positions per image
    (all positions if ``None``), standardised per channel within each set, then
    :func:`sliced_wasserstein` with ``n_projections`` random unit directions (drawn per level from
    ``generator``, shared by the two sets). ``levels`` defaults to the number of levels down to 16 px
    (``1 + log2(min(h, w) / 16)``, at least 1). ``x_set (n, c, h, w)``, ``y_set (m, c, h, w)``; sets of
    different sizes are compared exactly (:func:`wasserstein_1d`). Karras et al. report ``1e3 x`` these
    numbers; we do not rescale.
    Source: Karras et al. 2018 (progressive GAN), appendix D and ``metrics/sliced_wasserstein.py``.
    """
    x = check_finite(as_tensor(x_set, "x_set"), "x_set")
    y = check_finite(as_tensor(y_set, "y_set", dtype=x.dtype, device=x.device), "y_set")
    if x.ndim != 4 or y.ndim != 4 or x.shape[1:] != y.shape[1:]:
        raise ValueError(f"x_set and y_set must have shape (n, c, h, w) alike, got {tuple(x.shape)}, {tuple(y.shape)}")
    c, h, w = x.shape[1:]
    if levels is None:
        levels = 1 + max(0, int(math.floor(math.log2(min(h, w) / 16)))) if min(h, w) >= 16 else 1
    patch = int(patch)
    if patch < 1 or int(n_projections) < 1:
        raise ValueError(f"patch and n_projections must be >= 1, got {patch}, {n_projections}")
    px, py = laplacian_pyramid(x, levels), laplacian_pyramid(y, levels)
    out = []
    d = c * patch * patch
    for lx, ly in zip(px, py, strict=True):
        dx = _normalise(_patches(lx, patch, patches_per_image, generator), c, patch)
        dy = _normalise(_patches(ly, patch, patches_per_image, generator), c, patch)
        P = torch.randn(d, int(n_projections), generator=generator, dtype=x.dtype).to(x.device)
        P = P / P.norm(dim=0, keepdim=True)
        out.append(sliced_wasserstein(dx, dy, P))
    return torch.stack(out)


def swd(x_set, y_set, **kwargs) -> torch.Tensor:
    """Average over levels of :func:`swd_per_level` (same arguments), a 0-d tensor."""
    return swd_per_level(x_set, y_set, **kwargs).mean()


# ---------------------------------------------------------------------------------------------- LPIPS / FID
def _dft_moments(x: torch.Tensor, *, stationary: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m^, v^)`` of ``x (n, c, h, w)``: the mean (per-channel pooled, ``(c, 1, 1)``, if ``stationary``; else
    the sample mean image ``(c, h, w)``) and the per-coefficient variances of the orthonormal 2-D DFT,
    ``v^[k] = sum_i |F(x_i - m^)_k|^2 / (n - 1)``, ``(c, h, w)``."""
    n, c = x.shape[:2]
    m_hat = x.mean(dim=(0, 2, 3)).reshape(c, 1, 1) if stationary else x.mean(0)
    u = torch.fft.fft2(x - m_hat, norm="ortho")
    return m_hat, (u.real.square() + u.imag.square()).sum(0) / (n - 1)


def frechet_diag_squared(x, *, ref=None, mean=None, power=None) -> float:
    """Diagonal Frechet estimate of ``W2^2`` between the law of the images ``x (n, c, h, w)`` and a target law.

    Formula: ``W2^2 = mean term + sum_k (sqrt(v^[k]) - sqrt(v[k]))^2``, the Frechet (Bures) distance of two
    Gaussians whose covariances are diagonal in the orthonormal 2-D DFT ``F`` (per channel), with ``v^[k]`` the
    sample variance of DFT coefficient ``k`` of ``x`` (``n - 1`` denominator) and ``v[k]`` the target's. Two
    targets:

    - ``ref (m, c, h, w)``: draws of a STATIONARY target (e.g. the ground truths paired with ``x``). Both sides
      use per-channel means; mean term ``h w sum_c (m^_c - m^ref_c)^2``. Pairing ``ref`` with ``x`` cancels
      most of the sampling noise of the well-observed coefficients.
    - ``mean (c, h, w)`` and ``power (c, h, w)``: the exact target ``N(mean, F^H diag(power) F)``; mean term
      ``||m^ - mean||^2 - tr Cov^ / n``, unbiased for ``||E x - mean||^2``.

    What it estimates: ``W2^2`` between the Gaussians with the same means and the DFT-diagonal parts of the
    covariances; that is the exact ``W2^2`` when both laws are stationary (circulant covariance) Gaussians,
    and it ignores non-Gaussianity and any covariance off the DFT diagonal otherwise. Bias: the plug-in
    ``sqrt(v^[k])`` is noisy, so at ``v = v^``'s expectation each term averages about ``v[k] / (4 (n - 1))``
    (a complex coefficient: ``v^`` has ``2 (n - 1)`` degrees of freedom; twice that for a real one, e.g. the DC
    coefficient), and the estimate is biased UPWARD by about ``tr v / (4 n)`` (twice that with ``ref``, whose
    variances are estimated too); it is consistent as ``n -> inf``. Source: the Frechet distance of Dowson &
    Landau (1982) with commuting covariances. Returns a float (it can be slightly negative at ``W2 ~ 0``
    through the mean-term correction).
    """
    x = check_finite(as_tensor(x, "x"), "x")
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, c, h, w) with n >= 2, got {tuple(x.shape)}")
    n, c, h, w = x.shape
    if ref is not None:
        if mean is not None or power is not None:
            raise ValueError("give either ref or (mean, power), not both")
        ref = check_finite(as_tensor(ref, "ref", dtype=x.dtype, device=x.device), "ref")
        if ref.ndim != 4 or ref.shape[1:] != x.shape[1:] or ref.shape[0] < 2:
            raise ValueError(f"ref must have shape (m, {c}, {h}, {w}) with m >= 2, got {tuple(ref.shape)}")
        m_hat, v = _dft_moments(x, stationary=True)
        m_ref, v_ref = _dft_moments(ref, stationary=True)
        return float(h * w * (m_hat - m_ref).square().sum() + (v.sqrt() - v_ref.sqrt()).square().sum())
    if mean is None or power is None:
        raise ValueError("give the target as ref (draws) or as both mean and power (exact), got neither")
    mean, power = as_tensor(mean, "mean", device=x.device), as_tensor(power, "power", device=x.device)
    for name, t in (("mean", mean), ("power", power)):
        if t.shape not in (x.shape[1:], (1, *x.shape[1:])):
            raise ValueError(f"{name} must have shape {tuple(x.shape[1:])}, got {tuple(t.shape)}")
    m_hat, v = _dft_moments(x, stationary=False)
    mean_sq = float((m_hat - mean).square().sum()) - float(v.sum()) / n
    return mean_sq + float((v.sqrt() - power.to(v.dtype).sqrt()).square().sum())


def _load_network(weights, what: str, example: str):
    """A callable network: ``weights`` itself if callable, or ``(module, PATH)``: the state dict at ``PATH``
    (``.safetensors``, or ``.pt``/``.pth`` read with ``torch.load(weights_only=True)``) loaded strictly into
    ``module``. Tensors only: a bare path (``.pt2`` included: loading a ``torch.export`` archive can run code) is
    refused, since a file of tensors does not say which network to build."""
    if weights is None:
        raise ValueError(
            f"{what} needs pretrained network weights, which dptheory never downloads. Pass weights=MODULE (a "
            f"network you built from local files, {example}, e.g. with the lpips / torchvision packages: pip install "
            "lpips torchvision) or weights=(MODULE, PATH) to load a local state dict (.safetensors or .pt) into it. "
            "Without weights, use psnr, ssim or swd."
        )
    if isinstance(weights, tuple) and len(weights) == 2 and callable(weights[0]):
        from .._safeload import load_state_dict_into

        module, path = weights
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"{what}: weights=(MODULE, PATH) needs a torch.nn.Module, got {type(module).__name__}")
        return load_state_dict_into(module, path, f"{what} weights")
    if callable(weights):
        return weights
    if isinstance(weights, (str, Path)):
        path = Path(weights).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{what} weights file not found: {str(path)!r}")
        raise ValueError(
            f"{what}: weights={str(path)!r} is a path, which is refused: dptheory loads checkpoints as tensors only "
            "(a torch.export .pt2 or a pickled module can run code when loaded). Build the network and pass "
            "weights=MODULE, or weights=(MODULE, PATH) with a state dict (.safetensors or .pt)"
        )
    raise TypeError(f"{what}: weights must be a network, (MODULE, PATH) or None, got {type(weights).__name__}")


def lpips(x, ref, *, weights=None) -> torch.Tensor:
    """LPIPS distance per image, ``(n,)``, from a user-supplied network (nothing is downloaded).

    ``weights``: a network ``net(x, ref) -> (n, ...)`` taking images in [-1, 1] (e.g. ``lpips.LPIPS(net="alex")``
    built from local files), or ``(module, PATH)`` with a local state dict (``.safetensors`` or ``.pt``, loaded as
    tensors only) for ``module``. Raises ``ValueError`` without it, and for a bare path (a ``.pt2`` archive can run
    code when loaded).
    Source: Zhang et al. 2018 (LPIPS) (the metric itself lives in the user's network).
    """
    net = _load_network(weights, "lpips", "e.g. an lpips.LPIPS(net='alex') model")
    x, ref = _pair(x, ref)
    with torch.no_grad():
        d = net(x, ref.expand_as(x))
    return d.reshape(x.shape[0], -1).mean(1)


def fid(x_set, y_set, *, weights=None) -> torch.Tensor:
    """Frechet distance of network features: ``||mu_x - mu_y||^2 + tr(S_x + S_y - 2 (S_x^1/2 S_y S_x^1/2)^1/2)``.

    FID is squared by its standard definition: it is ``gaussian_w2_squared`` between the Gaussians fitted
    (sample mean, unbiased covariance) to the features ``net(x) -> (n, d)`` of each set. ``weights``: a feature
    extractor (e.g. Inception-v3 pool3), or ``(module, PATH)`` with a local state dict for it (tensors only, as in
    :func:`lpips`); nothing is downloaded.
    Source: Heusel et al. 2017 (FID).
    """
    from ..divergences import gaussian_w2_squared
    from ..gaussian import Gaussian

    net = _load_network(weights, "fid", "e.g. an Inception-v3 pool3 feature extractor")
    feats = []
    for name, s in (("x_set", x_set), ("y_set", y_set)):
        t = check_finite(as_tensor(s, name), name)
        with torch.no_grad():
            f = net(t).reshape(t.shape[0], -1).double()
        if f.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 images to fit a covariance")
        feats.append(Gaussian(f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])))
    return gaussian_w2_squared(*feats)
