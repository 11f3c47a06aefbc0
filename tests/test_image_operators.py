"""Image operators: one table, every property over every operator (float64, tiny images).

Oracles: the dense matrix (``torch.linalg.pinv`` / ``lstsq`` / ``svdvals``), ``scipy.ndimage.convolve`` with
``mode="wrap"`` (blur), ``skimage.transform.downscale_local_mean`` (SR) and ``scipy.fft.dct`` (DCT).
Tolerances: exact identities in float64 at 1e-12 (adjointness: two inner products of O(1) terms) or 1e-10
(compositions through FFTs and pseudo-inverses whose largest gain is < 1e3 here); float32 at 1e-5 (eps 1e-7
times the gain).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage
import torch

from dptheory.images import operators as ops
from dptheory.samplers import pinv_start

SHAPE = (2, 8, 8)  # (c, h, w): d = 128, dense matrices stay tiny


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# name -> (builder, image shape); builders are called fresh in each test
OPERATORS = {
    "inpaint-box": (lambda: ops.Inpainting(ops.box_mask(8, 8)), SHAPE),
    "inpaint-random": (lambda: ops.Inpainting(ops.random_mask((8, 8), 0.5, _g(1))), SHAPE),
    "inpaint-per-channel": (lambda: ops.Inpainting(torch.rand(2, 8, 8, generator=_g(2)) > 0.3), SHAPE),
    "sr2": (lambda: ops.SuperResolution(2), SHAPE),
    "sr4": (lambda: ops.SuperResolution(4), SHAPE),
    "blur-gauss": (lambda: ops.Blur(ops.gaussian_kernel(5, 1.0)), SHAPE),
    "blur-gauss-wide": (lambda: ops.Blur(ops.gaussian_kernel(11, 0.8)), SHAPE),  # kernel larger than image
    "blur-motion": (lambda: ops.Blur(ops.motion_kernel(7, _g(3), intensity=0.5), tol=1e-3), SHAPE),
    "blur-nullspace": (lambda: ops.Blur(torch.tensor([[0.5, 0.0, 0.5]])), SHAPE),  # H = cos(2 pi f / 8): zeros
    "cs-dct": (lambda: ops.CompressedSensing(0.3, SHAPE, _g(4), "dct"), SHAPE),
    "cs-walsh-signs": (lambda: ops.CompressedSensing(0.5, SHAPE, _g(5), "walsh", sign_flip=True), SHAPE),
    "denoise": (lambda: ops.Denoising(), SHAPE),
    "rect-blur": (lambda: ops.Blur(ops.gaussian_kernel(3, 0.7)), (1, 6, 10)),
    "rect-cs": (lambda: ops.CompressedSensing(1.0, (1, 6, 10), _g(6)), (1, 6, 10)),
}
NAMES = list(OPERATORS)


def _setup(name, n=3, seed=7):
    build, shape = OPERATORS[name]
    op = build()
    g = _g(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randn(n, *op.out_shape(shape), generator=g)
    return op, shape, x, y


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("name", NAMES)
def test_adjointness(name):
    op, _, x, y = _setup(name)
    lhs = (op.A(x) * y).flatten(1).sum(1)
    rhs = (x * op.A_adjoint(y)).flatten(1).sum(1)
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * float(x.norm() * y.norm()) / x.shape[0])


@pytest.mark.parametrize("name", NAMES)
def test_penrose_identities(name):
    op, _, x, y = _setup(name)
    Ax = op.A(x)
    assert _rel(op.A(op.pinv(Ax)), Ax) < 1e-10  # A A^+ A = A
    py = op.pinv(y)
    assert _rel(op.pinv(op.A(py)), py) < 1e-10  # A^+ A A^+ = A^+


@pytest.mark.parametrize("name", NAMES)
def test_dense_matrix_equivalence(name):
    op, shape, x, y = _setup(name)
    M = op.matrix(shape)
    d = math.prod(shape)
    assert M.shape == (math.prod(op.out_shape(shape)), d)
    assert _rel(op.A(x).flatten(1), x.flatten(1) @ M.T) < 1e-12
    assert _rel(op.A_adjoint(y).flatten(1), y.flatten(1) @ M) < 1e-12
    assert _rel(op.pinv(y).flatten(1), y.flatten(1) @ torch.linalg.pinv(M).T) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_pinv_is_min_norm_least_squares(name):
    op, shape, _, y = _setup(name)
    M = op.matrix(shape)
    ls = torch.linalg.lstsq(M, y.flatten(1).T, driver="gelsd").solution.T  # minimum-norm LS (SVD-based)
    assert _rel(op.pinv(y).flatten(1), ls) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_singular_values_match_dense_svd(name):
    op, shape, _, _ = _setup(name)
    M = op.matrix(shape)
    s_ref = torch.linalg.svdvals(M)
    s = op.singular_values(shape).flatten().sort(descending=True).values[: s_ref.numel()]
    assert torch.allclose(s, s_ref, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_float64(name):
    op, _, x, y = _setup(name)
    for f in (op.A, op.A_adjoint, op.pinv):
        arg = x if f == op.A else y
        out32 = f(arg.float())
        assert out32.dtype == torch.float32
        assert _rel(out32.double(), f(arg)) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_batching_and_broadcast_measurement(name):
    op, shape, x, y = _setup(name)
    Ax = op.A(x)
    assert torch.equal(op.A(x[1:2]), Ax[1:2]) or _rel(op.A(x[1:2]), Ax[1:2]) < 1e-14
    assert _rel(op.A(x[1]), Ax[1]) < 1e-14  # a single image without batch dim
    y1 = y[:1]  # one measurement shared by a batch of particles
    assert op.pinv(y1).shape == (1, *shape)
    assert pinv_start(op, y1).shape == (1, *shape)
    r = (y1 - op.A(x)).reshape(x.shape[0], -1)  # DPS's residual, per particle
    assert r.shape == (x.shape[0], math.prod(op.out_shape(shape)))
    assert torch.allclose(r[2], (y1 - op.A(x[2:3])).flatten())
    x5 = x.reshape(1, *x.shape)  # extra leading dims are flattened and restored
    assert op.A(x5).shape == (1, *Ax.shape)


@pytest.mark.parametrize("name", NAMES)
def test_autograd_gradient_is_adjoint(name):
    """DPS differentiates through ``A``: grad of 0.5 ||A x - y||^2 must be A^T (A x - y)."""
    op, _, x, y = _setup(name)
    x = x.clone().requires_grad_(True)
    (0.5 * (op.A(x) - y).pow(2).sum()).backward()
    assert _rel(x.grad, op.A_adjoint(op.A(x.detach()) - y)) < 1e-12


# ---------------------------------------------------------------------------------------------- oracles
@pytest.mark.parametrize(
    "kernel",
    [
        ops.gaussian_kernel(5, 1.2),
        ops.motion_kernel(9, _g(8)),
        torch.rand(3, 7, generator=_g(9)),  # asymmetric, non-normalised
        torch.rand(15, 13, generator=_g(10)),  # larger than the 9 x 12 image: wraps
    ],
)
def test_blur_matches_scipy_convolve_wrap(kernel):
    x = torch.randn(2, 2, 9, 12, generator=_g(11))
    y = ops.Blur(kernel).A(x)
    for i in range(2):
        for c in range(2):
            ref = scipy.ndimage.convolve(x[i, c].numpy(), kernel.numpy(), mode="wrap")
            np.testing.assert_allclose(y[i, c].numpy(), ref, atol=1e-12)


def test_blur_truncated_pinv():
    """tol > 0: pinv is the truncated-SVD inverse; A^+ A A^+ = A^+ exactly, A A^+ A = A up to tol ||x||."""
    op = ops.Blur(ops.gaussian_kernel(61, 3.0), tol=1e-2)
    x = torch.randn(1, 1, 16, 16, generator=_g(12))
    py = op.pinv(x)
    assert _rel(op.pinv(op.A(py)), py) < 1e-10
    H = op.transfer_function(16, 16).abs()
    assert (H <= 1e-2).any()  # the cut-off is active here
    assert float((op.A(op.pinv(op.A(x))) - op.A(x)).norm()) <= 1e-2 * float(x.norm())
    assert float(H.max()) == pytest.approx(1.0, abs=1e-12)  # kernel sums to 1: H(0) = 1


def test_sr_matches_skimage_downscale_local_mean():
    skt = pytest.importorskip("skimage.transform")
    x = torch.randn(2, 3, 8, 12, generator=_g(13))
    y = ops.SuperResolution(4).A(x)
    ref = skt.downscale_local_mean(x.numpy(), (1, 1, 4, 4))
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-14)


@pytest.mark.parametrize("n", [1, 5, 8, 16])
def test_dct_matrix_orthonormal_and_matches_scipy(n):
    D = ops.dct_matrix(n)
    assert torch.allclose(D @ D.T, torch.eye(n), atol=1e-13)
    np.testing.assert_allclose(D.numpy(), scipy.fft.dct(np.eye(n), norm="ortho", axis=0), atol=1e-13)


def test_hadamard_orthonormal_and_needs_power_of_two():
    Hm = ops.hadamard_matrix(8)
    assert torch.allclose(Hm @ Hm.T, torch.eye(8), atol=1e-14)
    with pytest.raises(ValueError, match="power-of-two"):
        ops.CompressedSensing(0.5, (1, 6, 8), _g(), "walsh")


@pytest.mark.parametrize("name", ["cs-dct", "cs-walsh-signs", "rect-cs"])
def test_cs_rows_orthonormal(name):
    op, shape, _, _ = _setup(name)
    M = op.matrix(shape)
    assert torch.allclose(M @ M.T, torch.eye(M.shape[0]), atol=1e-13)
    assert op.m == math.ceil(op.ratio * math.prod(shape))


def test_kernels_sum_to_one_and_are_seeded():
    assert float(ops.gaussian_kernel().sum()) == pytest.approx(1.0, abs=1e-14)
    assert ops.gaussian_kernel().shape == (61, 61)
    k1 = ops.motion_kernel(61, _g(1))
    assert float(k1.sum()) == pytest.approx(1.0, abs=1e-14) and bool((k1 >= 0).all())
    assert torch.equal(k1, ops.motion_kernel(61, _g(1)))
    assert not torch.equal(k1, ops.motion_kernel(61, _g(2)))
    straight = ops.motion_kernel(15, _g(3), intensity=0.0)
    assert float(straight.sum()) == pytest.approx(1.0, abs=1e-14)


def test_masks():
    m = ops.box_mask(256, 256)
    assert int((~m).sum()) == 128 * 128 and not bool(m[64:192, 64:192].any()) and bool(m[:64].all())
    assert int((~ops.box_mask(16, 16, (1, 2, 3, 4))).sum()) == 12
    r = ops.random_mask((3, 64, 64), 0.7, _g(1))
    assert r.shape == (64, 64)
    n = r.numel()
    # fraction observed ~ Binomial(n, 0.3) / n: 5 standard errors (failure rate < 1e-6)
    assert abs(float(r.double().mean()) - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    assert torch.equal(r, ops.random_mask((64, 64), 0.7, _g(1)))
    assert bool(ops.random_mask((8, 8), 0.0, _g(1)).all())


@pytest.mark.parametrize("name", sorted(ops.TASKS))
def test_tasks(name):
    op, sigma_y = ops.make_task(name, (3, 16, 16), _g(1))
    assert sigma_y == ops.TASKS[name].sigma_y > 0
    x = torch.randn(2, 3, 16, 16, generator=_g(2))
    y = torch.randn(2, *op.out_shape((3, 16, 16)), generator=_g(3))
    assert torch.allclose((op.A(x) * y).sum(), (x * op.A_adjoint(y)).sum(), rtol=1e-12)
    assert op.pinv(op.A(x.float())).dtype == torch.float32


def test_tasks_are_deterministic_by_default():
    a, _ = ops.make_task("cs", (1, 8, 8))
    b, _ = ops.make_task("cs", (1, 8, 8))
    assert torch.equal(a.indices, b.indices)


# ---------------------------------------------------------------------------------------------- bad input
def test_errors():
    g = _g()
    with pytest.raises(ValueError, match="unknown task"):
        ops.make_task("sr3", (3, 16, 16))
    with pytest.raises(ValueError, match="not divisible by the SR factor 4"):
        ops.make_task("sr4", (3, 18, 16))
    with pytest.raises(ValueError, match="not divisible"):
        ops.SuperResolution(4).A(torch.zeros(1, 1, 6, 8))
    for rate in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="drop_rate"):
            ops.random_mask((8, 8), rate, g)
    for ratio in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            ops.CompressedSensing(ratio, (1, 8, 8), g)
    with pytest.raises(ValueError, match="x contains NaN"):
        ops.Blur(ops.gaussian_kernel(3, 1.0)).A(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="does not fit the mask"):
        ops.Inpainting(ops.box_mask(8, 8)).A(torch.zeros(1, 1, 8, 6))
    with pytest.raises(ValueError, match="y must have shape"):
        ops.CompressedSensing(0.5, (1, 4, 4), g).A_adjoint(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="does not match"):
        ops.CompressedSensing(0.5, (1, 4, 4), g).A(torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="odd"):
        ops.gaussian_kernel(4)
    with pytest.raises(ValueError, match="kernel height"):
        ops.Blur(torch.ones(2, 3))
    with pytest.raises(ValueError, match="0/1"):
        ops.Inpainting(torch.full((4, 4), 0.5))
    with pytest.raises(TypeError, match="x must be real"):
        ops.Denoising().A(torch.zeros(1, 1, 2, 2, dtype=torch.complex128))
    with pytest.raises(ValueError, match="x must have at least 3 dims"):
        ops.Denoising().A(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="box"):
        ops.box_mask(8, 8, 9)
    with pytest.raises(ValueError, match="boundary"):
        ops.Blur(ops.gaussian_kernel(3, 1.0), boundary="reflect")
