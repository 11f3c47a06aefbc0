"""The stationary spectral Gaussian prior (dptheory.images.spectral) against dense, independent oracles.

The oracle covariance is built from an explicit unitary DFT matrix in numpy (``F = kron(F_h, F_w)``,
``C = F^H diag(P) F``), not from torch.fft; the operators' dense matrices come from ``ImageOperator.matrix``
(the operator applied to the identity). Everything dense then goes through the vector code of dptheory
(``Gaussian``, ``LinearInverseProblem``, ``optimal_dp_curve``, ``joint_optimal_estimator``) and scipy.stats.

Tolerances: exact float64 identities at 1e-10 (the dense side does eigendecompositions of matrices with
condition numbers up to ~1e3, round-off ~1e-13); Monte Carlo at 5 standard errors, stated in each test.
"""

import math

import numpy as np
import pytest
import scipy.stats
import torch

import dptheory as dpt
from dptheory.images.operators import Blur, Denoising, gaussian_kernel
from dptheory.images.problem import ImageInverseProblem, solve_image
from dptheory.images.spectral import (
    PowerLawSpectrum,
    SpectralDenoiser,
    SpectralGaussian,
    SpectralGaussianPrior,
    SpectralLinearProblem,
    periodogram,
)
from dptheory.samplers import posterior as posterior_sampler
from dptheory.schedules import linear_schedule

EXACT = 1e-10


# ---------------------------------------------------------------------------------------------- oracles
def dft_matrix(n):
    k = np.arange(n)
    return np.exp(-2j * np.pi * np.outer(k, k) / n) / np.sqrt(n)


def dense_cov(power):
    """Block-diagonal ``(d, d)`` covariance ``F^H diag(P_c) F`` per channel, from explicit DFT matrices."""
    P = np.asarray(power, dtype=np.float64)
    c, h, w = P.shape
    F = np.kron(dft_matrix(h), dft_matrix(w))
    blocks = []
    for ch in range(c):
        C = F.conj().T @ np.diag(P[ch].reshape(-1)) @ F
        assert np.abs(C.imag).max() < 1e-12  # a symmetric spectrum gives a real covariance
        blocks.append(C.real)
    out = np.zeros((c * h * w,) * 2)
    for ch, B in enumerate(blocks):
        out[ch * h * w : (ch + 1) * h * w, ch * h * w : (ch + 1) * h * w] = B
    return torch.from_numpy(0.5 * (out + out.T))


def symmetric_random_power(shape, gen):
    """A random spectrum with ``P[k] = P[-k]``, in [0.1, 1.1] (numpy index arithmetic, independent of the module)."""
    c, h, w = shape
    P = 0.1 + torch.rand(shape, generator=gen)
    ih, iw = (-np.arange(h)) % h, (-np.arange(w)) % w
    return 0.5 * (P + P[:, ih][:, :, iw])


def make_prior(kind, shape, gen):
    c, h, w = shape
    mean = torch.randn(c, generator=gen)
    if kind == "random":
        return SpectralGaussian(mean, symmetric_random_power(shape, gen))
    law = PowerLawSpectrum([0.01] * c, [0.05 + 0.02 * i for i in range(c)], [2.0 - 0.2 * i for i in range(c)])
    return SpectralGaussianPrior(mean, law, size=(h, w))


SHAPES = [(1, 4, 4), (2, 5, 6), (3, 4, 5)]
PRIORS = ["random", "power-law"]
OPERATORS = {
    "denoise": lambda: Denoising(),
    "blur-gauss": lambda: Blur(gaussian_kernel(3, 0.8)),
    # H = (1 + e^{2 pi i f_x}) / 2 vanishes at the Nyquist column (even w): P* = 0 there (the noise branch of T)
    "blur-null": lambda: Blur(torch.tensor([[0.5, 0.5, 0.0]])),
}


def dense_problem(prior, op, sigma_y):
    A = op.matrix(prior.shape)
    return dpt.LinearInverseProblem(dpt.Gaussian(prior.mean.reshape(-1), dense_cov(prior.power)), A, sigma_y)


def close(a, b, tol=EXACT):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    scale = max(1.0, float(b.abs().max()))
    err = float((a - b).abs().max())
    assert err <= tol * scale, f"max error {err:.3e} > {tol:g} * {scale:.3g}"


# ---------------------------------------------------------------------------------------------- the law
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", PRIORS)
def test_cov_matrix_and_log_prob_match_dense(kind, shape, gen):
    prior = make_prior(kind, shape, gen)
    C = dense_cov(prior.power)
    close(prior.cov_matrix(), C, 1e-12)
    x = prior.sample(5, generator=gen)
    ref = scipy.stats.multivariate_normal(prior.mean.reshape(-1).numpy(), C.numpy()).logpdf(x.reshape(5, -1).numpy())
    close(prior.log_prob(x), torch.from_numpy(ref))
    # the score against the dense Gaussian's score
    close(prior.score(x).reshape(5, -1), dpt.Gaussian(prior.mean.reshape(-1), C).score(x.reshape(5, -1)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", PRIORS)
@pytest.mark.parametrize("ab", [0.05, 0.6, 0.99])
def test_denoiser_matches_dense_gaussian(kind, shape, ab, gen):
    prior = make_prior(kind, shape, gen)
    dense = dpt.Gaussian(prior.mean.reshape(-1), dense_cov(prior.power))
    x_t = prior.diffuse(ab).sample(4, generator=gen)
    den = SpectralDenoiser(prior)
    close(den(x_t, ab).reshape(4, -1), dense.denoise(x_t.reshape(4, -1), ab))
    close(dense_cov(den.cov_spectrum(ab)), dense.denoise_cov(x_t.reshape(4, -1)[:1], ab)[0])
    close(den.score(x_t, ab).reshape(4, -1), dense.diffuse(ab).score(x_t.reshape(4, -1)))
    close(dense_cov(prior.diffuse(ab).power), dense.diffuse(ab).cov)


def test_sample_covariance_within_monte_carlo_error(gen):
    """n = 20000 draws on 4x4 (d = 16) and 2x3x5 (odd width, d = 30). Each entry of the sample covariance has
    SE sqrt((C_ii C_jj + C_ij^2) / n); every entry (up to 465) must be within 5 SE (a false alarm needs a
    5-sigma event: p ~ 6e-7 per entry, < 3e-4 over all). The mean is checked the same way (SE sqrt(C_ii / n))."""
    n = 20000
    for shape in [(1, 4, 4), (2, 3, 5)]:
        prior = make_prior("power-law", shape, gen)
        C = dense_cov(prior.power)
        x = prior.sample(n, generator=gen).reshape(n, -1)
        assert x.dtype == torch.float64 and not x.is_complex()
        S = torch.cov(x.T)
        dg = C.diagonal()
        se = ((dg[:, None] * dg[None, :] + C**2) / n).sqrt()
        z = ((S - C).abs() / se).max()
        assert z < 5, f"sample covariance off by {z:.2f} SE"
        zm = ((x.mean(0) - prior.mean.reshape(-1)).abs() / (dg / n).sqrt()).max()
        assert zm < 5


def test_sample_covariance_test_can_fail(gen):
    """The same check rejects a spectrum doubled at one frequency pair (the diagonal moves by 2 P / d, ~ 15 SE)."""
    n = 20000
    prior = make_prior("random", (1, 4, 4), gen)
    P = prior.power.clone()
    P[0, 1, 1] *= 2.0
    P[0, 3, 3] *= 2.0  # keep the symmetry
    C_wrong = dense_cov(P)
    x = prior.sample(n, generator=gen).reshape(n, -1)
    dg = C_wrong.diagonal()
    se = ((dg[:, None] * dg[None, :] + C_wrong**2) / n).sqrt()
    assert ((torch.cov(x.T) - C_wrong).abs() / se).max() > 5


def test_real_and_imaginary_parts_have_variance_half_P(gen):
    """Re u_k and Im u_k have variance P/2 each, except at self-conjugate frequencies (Re: P, Im: 0).
    n = 40000: SE of a variance v is v sqrt(2/n) = 0.7% of v; checked within 5 SE."""
    n, h, w = 40000, 4, 6
    prior = make_prior("random", (1, h, w), gen)
    u = torch.fft.fft2(prior.sample(n, generator=gen) - prior.mean, norm="ortho")[:, 0]
    P = prior.power[0]
    for k in [(0, 1), (1, 2), (2, 3), (0, 0), (2, 0), (0, 3)]:
        selfconj = (2 * k[0]) % h == 0 and (2 * k[1]) % w == 0
        vr, vi = u[:, k[0], k[1]].real.var(), u[:, k[0], k[1]].imag.var()
        er, ei = (P[k], 0.0) if selfconj else (P[k] / 2, P[k] / 2)
        assert abs(vr - er) < 5 * er * math.sqrt(2 / n), (k, vr, er)
        assert abs(vi - ei) < 5 * max(ei, 1e-30) * math.sqrt(2 / n) + (1e-25 if selfconj else 0.0), (k, vi, ei)


def test_bad_inputs():
    with pytest.raises(ValueError, match="power\\[-k\\]"):
        SpectralGaussian([0.0], torch.arange(16.0).reshape(1, 4, 4) + 1)
    with pytest.raises(ValueError, match=">= 0"):
        SpectralGaussian([0.0], -torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="size"):
        SpectralGaussianPrior([0.0], PowerLawSpectrum([1.0], [0.1], [2.0]))
    prior = SpectralGaussian([0.0], torch.ones(1, 4, 4))
    with pytest.raises(TypeError, match="circulant"):
        SpectralLinearProblem(prior, object(), 0.1)
    with pytest.raises(ValueError, match="shape"):
        prior.log_prob(torch.zeros(2, 1, 4, 5))


# ---------------------------------------------------------------------------------------------- problems
CASES = [
    ("random", (1, 4, 4), "denoise", 0.3),
    ("power-law", (2, 5, 6), "blur-gauss", 0.05),
    ("random", (3, 4, 6), "blur-null", 0.1),
    ("power-law", (1, 6, 6), "blur-null", 0.02),
]


@pytest.mark.parametrize("kind, shape, op_name, sigma_y", CASES)
def test_posterior_matches_dense_linear_inverse_problem(kind, shape, op_name, sigma_y, gen):
    prior = make_prior(kind, shape, gen)
    op = OPERATORS[op_name]()
    prob = SpectralLinearProblem(prior, op, sigma_y)
    dense = dense_problem(prior, op, sigma_y)
    x, y = prob.sample_joint(3, generator=gen)
    post = dense.posterior(y[0].reshape(-1))
    mine = prob.posterior(y[:1])
    close(mine.mean.reshape(-1), post.mean)
    close(dense_cov(mine.power), post.cov)
    close(prob.mmse(y).reshape(3, -1), dense.mmse(y.reshape(3, -1)))
    close(dense_cov(prob.mmse_law().power), dense.mmse_law().cov)
    # measure is the operator's A (dense A times x, noise aside)
    close(op.A(x).reshape(3, -1), x.reshape(3, -1) @ dense.A.T)


@pytest.mark.parametrize("kind, shape, op_name, sigma_y", CASES)
def test_dp_curves_match_dense(kind, shape, op_name, sigma_y, gen):
    prior = make_prior(kind, shape, gen)
    op = OPERATORS[op_name]()
    prob = SpectralLinearProblem(prior, op, sigma_y)
    dense = dense_problem(prior, op, sigma_y)
    ref = dpt.optimal_dp_curve(dense)
    curve = prob.optimal_dp_curve()
    close(curve.mmse_error, ref.mmse_error)
    close(curve.w, ref.w)
    assert curve.w**2 <= curve.mmse_error + 1e-12  # W^2 <= D* (docs/theory §2.2)
    _, y = prob.sample_joint(1, generator=gen)
    ref_y = dpt.per_measurement_dp_curve(dense, y[0].reshape(-1))
    close(prob.per_measurement_dp_curve().mmse_error, ref_y.mmse_error)
    close(prob.per_measurement_dp_curve().w, ref_y.w)


@pytest.mark.parametrize("kind, shape, op_name, sigma_y", CASES)
def test_joint_optimal_estimator_matches_dense(kind, shape, op_name, sigma_y, gen):
    prior = make_prior(kind, shape, gen)
    op = OPERATORS[op_name]()
    prob = SpectralLinearProblem(prior, op, sigma_y)
    dense = dense_problem(prior, op, sigma_y)
    W = prob.optimal_dp_curve().w
    _, y = prob.sample_joint(3, generator=gen)
    for P in [0.0, 0.3 * W, W, 2 * W]:
        est, ref = prob.joint_optimal_estimator(P), dpt.joint_optimal_estimator(dense, P)
        law, ref_law = est.law(), ref.law()
        close(law.mean.reshape(-1), ref_law.mean)
        close(dense_cov(law.power), ref_law.cov)
        close(est.distortion(), ref.distortion())
        close(est.distortion(), float(prob.optimal_dp_curve().distortion(P)))
        # W2 of the estimator's law to the prior is P (commuting covariances), capped at W
        w2 = float((law.power.sqrt() - prior.power.sqrt()).square().sum()) ** 0.5
        close(w2, min(P, W))
        if not bool((est.noise_power > 0).any()):  # deterministic in y: the same map as the dense estimator
            close(est(y).reshape(3, -1), ref(y.reshape(3, -1)))
    assert op_name != "blur-null" or bool((prob.joint_optimal_estimator(0.0).noise_power > 0).any())


def test_shrunk_posterior_samples_law(gen):
    """N(mu_y, c^2 Sigma): the sample variance of coefficient sums within 5 SE (n = 20000, SE of a variance
    v sqrt(2/n))."""
    prior = make_prior("random", (1, 4, 4), gen)
    prob = SpectralLinearProblem(prior, Blur(gaussian_kernel(3, 0.8)), 0.1)
    _, y = prob.sample_joint(1, generator=gen)
    curve = prob.per_measurement_dp_curve()
    P = 0.5 * curve.w
    n = 20000
    x = prob.shrunk_posterior_samples(y, P, n, generator=gen)
    mu = prob.mmse(y)
    mse = ((x - mu) ** 2).sum(dim=(1, 2, 3))
    expected = 0.25 * curve.mmse_error  # E||X^ - mu||^2 = c^2 tr Sigma, c = 1/2
    assert abs(float(mse.mean()) - expected) < 5 * float(mse.std()) / math.sqrt(n)


def test_batched_conditional_denoiser_matches_one_by_one(gen):
    prior = make_prior("power-law", (2, 4, 4), gen)
    prob = SpectralLinearProblem(prior, Blur(gaussian_kernel(3, 0.8)), 0.05)
    _, y = prob.sample_joint(3, generator=gen)
    x_t = prior.diffuse(0.4).sample(3, generator=gen)
    batched = prob.conditional_denoiser(y)(x_t, 0.4)
    for i in range(3):
        close(batched[i], prob.conditional_denoiser(y[i : i + 1])(x_t[i : i + 1], 0.4)[0], 1e-13)


def test_posterior_sampler_reproduces_the_posterior(gen):
    """The exact ``posterior`` sampler with the conditional SpectralDenoiser on a 4x4 blur problem, started
    from the exact diffused posterior at t = 1000 and run on a 50-step respaced grid (exact on any grid).
    n = 4000 chains; for five Fourier coefficients, the mean of Re u_k within 5 SE (sqrt(v / n)) and the
    variance within 5 SE (v sqrt(2 / n)), with v = Sigma_k / 2 (Sigma_k at self-conjugate k)."""
    n, h, w = 4000, 4, 4
    prior = make_prior("power-law", (1, h, w), gen)
    prob = SpectralLinearProblem(prior, Blur(gaussian_kernel(3, 0.8)), 0.05)
    _, y = prob.sample_joint(1, generator=gen)
    den = prob.conditional_denoiser(y)
    sched = linear_schedule()
    x_T = den.law.diffuse(float(sched.alpha_bar(sched.T))).sample(n, generator=gen)
    x0 = posterior_sampler(den, x_T, sched, steps=50, generator=gen)
    u = torch.fft.fft2(x0, norm="ortho")[:, 0]
    mu_u = torch.fft.fft2(den.law.mean, norm="ortho")[0]
    Sig = prob.post_power[0]
    for k in [(0, 0), (0, 1), (1, 1), (2, 2), (1, 3)]:
        selfconj = (2 * k[0]) % h == 0 and (2 * k[1]) % w == 0
        v = float(Sig[k]) if selfconj else float(Sig[k]) / 2
        re = u[:, k[0], k[1]].real
        assert abs(float(re.mean()) - float(mu_u[k].real)) < 5 * math.sqrt(v / n), k
        assert abs(float(re.var()) - v) < 5 * v * math.sqrt(2 / n), k


def test_solve_image_posterior_uses_the_exact_conditional(gen):
    prior = make_prior("power-law", (1, 4, 4), gen)
    op = Blur(gaussian_kernel(3, 0.8))
    problem = ImageInverseProblem(op, 0.05)
    y = problem.measure(prior.sample(1, generator=gen), gen)
    sol = solve_image(problem, y, "posterior", SpectralDenoiser(prior), n_samples=3, generator=gen, steps=20)
    assert sol.exact_conditional and sol.x.shape == (3, 1, 4, 4) and bool(torch.isfinite(sol.x).all())


# ---------------------------------------------------------------------------------------------- the fit
@pytest.mark.parametrize("alpha, f0", [(2.0, 0.02), (1.6, 0.05)])
def test_fit_recovers_the_power_law(alpha, f0, gen):
    """Synthesised 32x32 draws (n = 200) from a known law. The periodogram at each frequency is a mean of 200
    exponential variables (relative SE 7%), and ~1000 frequencies enter the log-space fit, so alpha is
    recovered to ~0.01; we allow 0.05. The DC-free fit also recovers A within 20% and the mean within 5 SE."""
    law = PowerLawSpectrum([1e-3, 2e-3], [f0, f0], [alpha, alpha])
    prior = SpectralGaussianPrior([0.1, -0.2], law, size=(32, 32))
    x = prior.sample(200, generator=gen)
    fit = SpectralGaussianPrior.fit_power_law(x)
    assert torch.allclose(fit.law.alpha, law.alpha, atol=0.05), fit.law
    assert torch.allclose(fit.law.amplitude, law.amplitude, rtol=0.2), fit.law
    se_mean = (prior.power[:, 0, 0] / (200 * 32 * 32)).sqrt()
    assert bool(((fit.mean[:, 0, 0] - prior.mean[:, 0, 0]).abs() < 5 * se_mean).all())
    # the DC power is h w times the empirical variance of the crops' spatial means (dc="empirical"), exactly
    crop_means = x.mean(dim=(2, 3))
    close(fit.power[:, 0, 0], 32 * 32 * (crop_means - crop_means.mean(0)).square().mean(0), 1e-12)
    law_dc = SpectralGaussianPrior.fit_power_law(x, dc="law")
    close(law_dc.power, law_dc.law.power(32, 32), 1e-12)
    small = fit.at_size(8, 6)
    expected = fit.law.power(8, 6)
    expected[:, 0, 0] = 8 * 6 * fit.mean_var
    close(small.power, expected, 1e-12)
    # the fit can fail: a white spectrum gives alpha ~ 0, far from the truth
    white = SpectralGaussian([0.0, 0.0], torch.full((2, 32, 32), 0.01)).sample(50, generator=gen)
    assert float(SpectralGaussianPrior.fit_power_law(white).law.alpha.abs().max()) < 0.2


def test_periodogram_is_unbiased_for_the_power(gen):
    """Mean of n = 4000 periodograms with the true mean removed: each entry has mean P[k] and SE at most
    P[k] sqrt(2 / n) (exponential, or chi^2_1 at self-conjugate k); within 5 such SE everywhere."""
    prior = make_prior("random", (1, 4, 4), gen)
    n = 4000
    Ihat = periodogram(prior.sample(n, generator=gen), mean=prior.mean[:, 0, 0])
    assert bool(((Ihat - prior.power).abs() < 5 * prior.power * math.sqrt(2 / n)).all())


def test_float32_and_autograd_follow_the_input(gen):
    """dtype follows the input (the image samplers run in float32), and the denoiser is differentiable in x_t
    (DPS back-propagates through it): the vector-Jacobian product with v is F^H diag(K) F v (K is symmetric)."""
    prior = make_prior("power-law", (2, 4, 6), gen)
    den = SpectralDenoiser(prior)
    x_t = prior.diffuse(0.5).sample(2, generator=gen).float().requires_grad_(True)
    out = den(x_t, 0.5)
    assert out.dtype == torch.float32 and den.sample_x0(x_t.detach(), 0.5, gen).dtype == torch.float32
    v = torch.randn(out.shape, generator=gen)
    (out * v.float()).sum().backward()
    ref = SpectralGaussian(torch.zeros(2), prior.denoise_gain(0.5)).cov_matrix() @ v.reshape(2, -1).T
    close(x_t.grad.double().reshape(2, -1), ref.T, 1e-6)  # float32 round-off
