"""Bad input raises a clear ValueError / TypeError whose message names the offending argument.

Nothing is clipped or repaired silently: e.g. weights [0.6, 0.6] raise instead of being renormalised.
"""

from __future__ import annotations

import math

import pytest
import torch
from tables import gaussian, measurement, mixture, problem

import dptheory as dpt

NAN, INF = math.nan, math.inf
G2_MEAN, G2_COV = [0.3, -0.2], [[1.0, 0.6], [0.6, 0.8]]
B1 = ([0.5, 0.5], [[-1.0], [1.0]], [[[0.05]], [[0.05]]])


# ---------------------------------------------------------------------------------------------- covariances
@pytest.mark.parametrize(
    "cov",
    [
        [[1.0, 0.0], [0.0, -0.1]],  # negative eigenvalue
        [[1.0, 2.0], [2.0, 1.0]],  # symmetric, eigenvalues 3 and -1
    ],
)
def test_non_psd_covariance(cov):
    with pytest.raises(ValueError, match="cov.*positive semidefinite"):
        dpt.Gaussian([0.0, 0.0], cov)
    with pytest.raises(ValueError, match="covs.*positive semidefinite"):
        dpt.GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [G2_COV, cov])


def test_non_symmetric_covariance():
    with pytest.raises(ValueError, match="cov must be symmetric"):
        dpt.Gaussian([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="covs must be symmetric"):
        dpt.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]])


def test_singular_gaussian_has_no_density():
    p = gaussian("g3_singular")
    with pytest.raises(ValueError, match="log_prob.*cov"):
        p.log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="score.*cov"):
        p.score(torch.zeros(3))


# ---------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "mean, cov, arg",
    [
        ([0.0, 0.0], [[1.0]], "cov"),  # mean vs cov
        ([0.0], G2_COV, "cov"),
        ([[0.0, 0.0]], G2_COV, "mean"),  # mean not a vector
        ([0.0, 0.0], [1.0, 1.0], "cov"),  # cov not a matrix
    ],
)
def test_gaussian_shape_mismatch(mean, cov, arg):
    with pytest.raises(ValueError, match=f"{arg} must have shape"):
        dpt.Gaussian(mean, cov)


@pytest.mark.parametrize(
    "weights, means, covs, arg",
    [
        ([0.5, 0.5], [[0.0]], [[[1.0]]], "weights"),  # weights vs means
        ([1.0], [[0.0]], [[[1.0]], [[1.0]]], "covs"),  # covs vs means
        ([1.0], [[0.0, 0.0]], [[[1.0]]], "covs"),  # covs dimension vs means
        ([1.0], [0.0, 0.0], [[[1.0]]], "means"),  # means not (K, d)
    ],
)
def test_mixture_shape_mismatch(weights, means, covs, arg):
    with pytest.raises(ValueError, match=f"{arg} must have shape"):
        dpt.GaussianMixture(weights, means, covs)


def test_operator_shape_mismatch():
    g = dpt.Gaussian(G2_MEAN, G2_COV)
    with pytest.raises(ValueError, match="A must have shape"):
        dpt.LinearInverseProblem(g, [[1.0, 0.5, 2.0]], 0.3)  # A is (1, 3), prior is 2-D
    with pytest.raises(ValueError, match="A must have shape"):
        g.condition([[1.0, 0.5, 2.0]], [0.7], 0.3)
    with pytest.raises(ValueError, match="A must have shape"):
        mixture("b1").condition([[1.0, 2.0]], [0.7], 0.3)


def test_measurement_shape_mismatch():
    prob = problem("G2")  # m = 1
    for call in (prob.posterior, prob.mmse, prob.map, prob.posterior_cov_trace):
        with pytest.raises(ValueError, match="y must have shape"):
            call([0.7, 0.1])
    with pytest.raises(ValueError, match="y must have shape"):
        prob.posterior([[0.7], [0.1]])  # posterior() needs one y
    with pytest.raises(ValueError, match="y must have shape"):
        gaussian("g2").condition([[1.0, 0.5]], [0.7, 0.1], 0.3)
    with pytest.raises(ValueError, match="y must have shape"):
        dpt.per_measurement_dp_curve(prob, [0.7, 0.1])


def test_point_shape_mismatch():
    g, q = gaussian("g2"), mixture("gmm2_k2")
    for dist in (g, q):
        with pytest.raises(ValueError, match="x must have shape"):
            dist.log_prob(torch.zeros(3))
        with pytest.raises(ValueError, match="x must have shape"):
            dist.score(torch.zeros(4, 1))
        with pytest.raises(ValueError, match="x_t must have shape"):
            dist.denoise(torch.zeros(3), 0.5)
        with pytest.raises(ValueError, match="x_t must have shape"):
            dist.denoise_cov(torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="x must have shape"):
        problem("G2").measure(torch.zeros(3))
    with pytest.raises(ValueError, match="x must have shape"):
        problem("B1_s05").log_posterior(torch.zeros(2, 2), measurement("B1_s05"))


# ---------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize(
    "weights, what",
    [
        ([0.6, 0.6], "sum to 1"),  # must raise, not be renormalised
        ([0.3, 0.3], "sum to 1"),
        ([1.5, -0.5], "non-negative"),
        ([-0.0001, 1.0001], "non-negative"),
    ],
)
def test_bad_weights(weights, what):
    with pytest.raises(ValueError, match=f"weights must .*{what}"):
        dpt.GaussianMixture(weights, B1[1], B1[2])


# ---------------------------------------------------------------------------------------------- noise level
@pytest.mark.parametrize("sigma_y", [-0.1, -1e-12, INF, NAN])
def test_bad_sigma_y(sigma_y):
    with pytest.raises(ValueError, match="sigma_y"):
        dpt.LinearInverseProblem(gaussian("g2"), [[1.0, 0.5]], sigma_y)
    with pytest.raises(ValueError, match="sigma_y"):
        gaussian("g2").condition([[1.0, 0.5]], [0.7], sigma_y)
    with pytest.raises(ValueError, match="sigma_y"):
        mixture("b1").condition([[1.0]], [0.7], sigma_y)


def test_sigma_y_wrong_type():
    with pytest.raises(TypeError, match="sigma_y"):
        dpt.LinearInverseProblem(gaussian("g2"), [[1.0, 0.5]], "0.3")


@pytest.mark.parametrize(
    "prior_name, A",
    [
        ("g2", [[1.0, 0.5], [2.0, 1.0]]),  # A S A^T rank 1 < m = 2 (dependent rows)
        ("g3_singular", [[1.0, 1.0, -1.0]]),  # A kills the singular prior's support: A S A^T = 0
        ("b1", [[1.0], [1.0]]),  # GMM: two copies of the same measurement
    ],
)
def test_sigma_zero_without_a_posterior_density(prior_name, A):
    """sigma_y = 0 with A S A^T singular: the posterior does not exist as a density; name sigma_y."""
    from tables import prior

    with pytest.raises(ValueError, match="posterior does not exist.*sigma_y"):
        dpt.LinearInverseProblem(prior(prior_name), A, 0.0)
    with pytest.raises(ValueError, match="posterior does not exist.*sigma_y"):
        prior(prior_name).condition(A, [0.0] * len(A), 0.0)


# ---------------------------------------------------------------------------------------------- non-finite
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_non_finite_values(bad):
    with pytest.raises(ValueError, match="mean contains"):
        dpt.Gaussian([0.0, bad], G2_COV)
    with pytest.raises(ValueError, match="cov contains"):
        dpt.Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, bad]])
    with pytest.raises(ValueError, match="means contains"):
        dpt.GaussianMixture(B1[0], [[-1.0], [bad]], B1[2])
    with pytest.raises(ValueError, match="weights contains"):
        dpt.GaussianMixture([0.5, bad], B1[1], B1[2])
    with pytest.raises(ValueError, match="A contains"):
        dpt.LinearInverseProblem(gaussian("g2"), [[1.0, bad]], 0.3)
    prob = problem("G2")
    for call in (prob.posterior, prob.mmse, prob.map, prob.posterior_cov_trace):
        with pytest.raises(ValueError, match="y contains"):
            call([bad])
    with pytest.raises(ValueError, match="y contains"):
        problem("B1_s05").map([bad])
    for dist in (gaussian("g2"), mixture("gmm2_k2")):
        with pytest.raises(ValueError, match="x contains"):
            dist.log_prob([0.0, bad])
        with pytest.raises(ValueError, match="x contains"):
            dist.score([bad, 0.0])
        with pytest.raises(ValueError, match="x_t contains"):
            dist.denoise([bad, 0.0], 0.5)
        with pytest.raises(ValueError, match="y contains"):
            dist.condition([[1.0, 0.0]], [bad], 0.3)
    with pytest.raises(ValueError, match="x contains"):
        prob.measure([0.0, bad])


# ---------------------------------------------------------------------------------------------- noise levels
@pytest.mark.parametrize("alpha_bar", [0.0, -0.1, 1.5, NAN, INF, torch.tensor(0.0), torch.tensor([0.5, 0.5])])
def test_alpha_bar_outside_unit_interval(alpha_bar):
    for dist in (gaussian("g2"), mixture("gmm2_k2")):
        x = torch.zeros(2)
        with pytest.raises(ValueError, match="alpha_bar"):
            dist.diffuse(alpha_bar)
        with pytest.raises(ValueError, match="alpha_bar"):
            dist.denoise(x, alpha_bar)
        with pytest.raises(ValueError, match="alpha_bar"):
            dist.denoise_cov(x, alpha_bar)
    with pytest.raises(ValueError, match="alpha_bar"):
        gaussian("g2").denoise_gain(alpha_bar)
    with pytest.raises(ValueError, match="alpha_bar"):
        mixture("b1").score_and_denoise(torch.zeros(1), alpha_bar)


def test_alpha_bar_wrong_type():
    with pytest.raises(TypeError, match="alpha_bar"):
        gaussian("g2").diffuse("0.5")


@pytest.mark.parametrize("alpha_bar", [0.0, -0.1, 1.5, NAN])
def test_schedule_lookup_alpha_bar_outside_unit_interval(alpha_bar):
    with pytest.raises(ValueError, match="alpha_bar"):
        dpt.linear_schedule().step_from_alpha_bar(alpha_bar)


# ---------------------------------------------------------------------------------------------- steps
@pytest.mark.parametrize("t", [-1, 1001, 10**6])
def test_step_outside_the_grid(t):
    s = dpt.linear_schedule()
    for call in (s.alpha_bar, s.beta, s.snr, s.sigma, s.tau, s.reverse_coefficients):
        with pytest.raises(ValueError, match=r"t must be an integer step in \[0, 1000\]"):
            call(t)
    with pytest.raises(ValueError, match="t_start"):
        s.timesteps(10, t)


@pytest.mark.parametrize("t", [2.5, 3.0, "10", None])
def test_step_not_an_integer(t):
    s = dpt.linear_schedule()
    with pytest.raises(TypeError, match="t must be an integer step"):
        s.alpha_bar(t)


def test_reverse_step_order():
    s = dpt.linear_schedule()
    with pytest.raises(ValueError, match="t"):
        s.reverse_coefficients(0)  # no step below t = 0
    with pytest.raises(ValueError, match="s < t"):
        s.reverse_coefficients(10, 10)
    with pytest.raises(ValueError, match="s must be an integer step"):
        s.reverse_coefficients(10, -1)
    with pytest.raises(ValueError, match="steps"):
        s.timesteps(11, 10)


def test_tensor_steps_outside_the_grid():
    s = dpt.linear_schedule()
    with pytest.raises(ValueError, match=r"\[0, 1000\]"):
        s.alpha_bar(torch.tensor([5, 1001]))
    with pytest.raises(TypeError, match="integer"):
        s.alpha_bar(torch.tensor([5.0]))


@pytest.mark.parametrize("T", [0, -5, 2.5, True])
def test_schedule_length(T):
    with pytest.raises(ValueError, match="T must be a positive integer"):
        dpt.linear_schedule(T)
    with pytest.raises(ValueError, match="T must be a positive integer"):
        dpt.cosine_schedule(T)


# ------------------------------------------------------------------------------------------------ other args
@pytest.mark.parametrize("n", [0, -3, 2.0, True])
def test_sample_count(n):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        gaussian("g2").sample(n)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        mixture("b1").sample(n)


def test_prior_type():
    with pytest.raises(TypeError, match="prior"):
        dpt.LinearInverseProblem(object(), [[1.0]], 0.3)


def test_dp_arguments():
    prob = problem("G2")
    with pytest.raises(ValueError, match="P"):
        dpt.joint_optimal_estimator(prob, -0.1)
    with pytest.raises(ValueError, match="P"):
        dpt.joint_optimal_estimator(prob, NAN)
    with pytest.raises(TypeError, match="Gaussian prior"):
        dpt.joint_optimal_estimator(problem("B1_s05"), 0.1)
    with pytest.raises(ValueError, match="P"):
        dpt.shrunk_posterior_samples(prob, measurement("G2"), -0.1, 10)
    with pytest.raises(TypeError, match="Gaussian prior"):
        problem("B1_s05").mmse_law()
