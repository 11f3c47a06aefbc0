"""Denoisers: parameterisation conversions, the derived score, exact Cov/sampling of p(x0 | x_t), the batched
conditional denoiser and the network adapter.

Oracles: the docs/theory §0 conversion formulas written out here, autograd of an independent
``torch.distributions`` log-density of the diffused prior (score), central finite differences of that score
(second-order Tweedie), Monte Carlo moments with standard errors, the per-measurement (unbatched) conditional
denoiser, and a toy "network" that evaluates the closed-form Gaussian eps / x0 / v with torch.linalg.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tables import (
    GAUSSIANS,
    gaussian,
    prior,
    prior_params,
    problem,
)

import dptheory as dpt
from dptheory.denoisers import eps_from_x0, score_from_x0, x0_from_eps, x0_from_v

ALPHA_BARS = [0.97, 0.6, 0.05]
PRIORS = ["g2", "g3", "b1", "gmm2_k3"]  # Gaussians and GMMs, d = 1..3


def _points(name: str, n: int, gen: torch.Generator, ab: float) -> torch.Tensor:
    """x_t spread over the diffused prior: sqrt(ab) * (prior draw) + sqrt(1 - ab) * noise, plus jitter."""
    x0 = prior(name).sample(n, generator=gen)
    return math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(x0.shape, generator=gen)


def _diffused_log_prob(name: str, ab: float):
    """Independent log p_t: a torch.distributions mixture of N(sqrt(ab) m_k, ab S_k + (1 - ab) I)."""
    w, means, covs = (torch.from_numpy(a) for a in prior_params(name))
    d = means.shape[1]
    comps = torch.distributions.MultivariateNormal(math.sqrt(ab) * means, ab * covs + (1 - ab) * torch.eye(d))

    def log_p(x):
        return torch.logsumexp(w.log() + comps.log_prob(x.unsqueeze(-2)), dim=-1)

    return log_p


def _autograd_score(log_p, x: torch.Tensor) -> torch.Tensor:
    xg = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(log_p(xg).sum(), xg)
    return g


# ---------------------------------------------------------------------------------------------- conversions
@pytest.mark.parametrize("ab", [0.999, *ALPHA_BARS, 1e-3])
def test_conversions_round_trip(ab, gen):
    """docs/theory §0: eps <-> x0 <-> v <-> score are exact inverses of one another."""
    x_t = torch.randn(7, 3, generator=gen)
    x0 = torch.randn(7, 3, generator=gen)
    eps = eps_from_x0(x_t, x0, ab)
    # written-out oracle: eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab), v = sqrt(ab) eps - sqrt(1 - ab) x0
    torch.testing.assert_close(eps, (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab), rtol=0, atol=1e-12)
    v = math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0
    # round-off only: |x| ~ 3 and the divisions by sqrt(ab), sqrt(1 - ab) amplify by at most ~32
    torch.testing.assert_close(x0_from_eps(x_t, eps, ab), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(x0_from_v(x_t, v, ab), x0, rtol=0, atol=1e-12)
    # score = -eps / sqrt(1 - ab) (docs/theory §0); relative round-off since the score is O(1 / sqrt(1 - ab))
    torch.testing.assert_close(score_from_x0(x_t, x0, ab), -eps / math.sqrt(1 - ab), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ab", ALPHA_BARS)
@pytest.mark.parametrize("name", PRIORS)
def test_derived_score_and_eps_equal_autograd_of_diffused_log_prob(name, ab, gen):
    """Denoiser.score (Tweedie, derived once in the base class) == grad log p_t from autograd."""
    den = dpt.ExactDenoiser(prior(name))
    x = _points(name, 6, gen, ab)
    ref = _autograd_score(_diffused_log_prob(name, ab), x)
    derived = dpt.Denoiser.score(den, x, ab)  # the base-class derivation, not ExactDenoiser's direct override
    # round-off of (sqrt(ab) D - x) / (1 - ab): ~1e-16 |x| / (1 - ab) <= 1e-14 here
    torch.testing.assert_close(derived, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(den.score(x, ab), ref, rtol=0, atol=1e-10)  # the direct override as well
    # eps = -sqrt(1 - ab) score (docs/theory §0)
    torch.testing.assert_close(den.eps(x, ab), -math.sqrt(1 - ab) * ref, rtol=0, atol=1e-10)


def test_score_and_eps_reject_alpha_bar_one():
    den = dpt.ExactDenoiser(gaussian("g2"))
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="alpha_bar"):
        dpt.Denoiser.eps(den, x, 1.0)
    with pytest.raises(ValueError, match="alpha_bar"):
        den.eps(x, 1.5)


# ---------------------------------------------------------------------------------------------- Cov[x0 | x_t]
@pytest.mark.parametrize("ab", ALPHA_BARS)
@pytest.mark.parametrize("name", PRIORS)
def test_cov_equals_second_order_tweedie_by_finite_differences(name, ab, gen):
    """Cov[x0|x_t] = ((1 - ab)/ab) (I + (1 - ab) Hess log p_t), the Hessian by central differences of the
    autograd score of the independent log-density."""
    den = dpt.ExactDenoiser(prior(name))
    x = _points(name, 4, gen, ab)
    d = x.shape[1]
    log_p = _diffused_log_prob(name, ab)
    h = 1e-5
    hess = torch.stack(
        [(_autograd_score(log_p, x + h * e) - _autograd_score(log_p, x - h * e)) / (2 * h) for e in torch.eye(d)],
        dim=-1,
    )
    tweedie = (1 - ab) / ab * (torch.eye(d) + (1 - ab) * hess)
    cov = den.cov(x, ab)
    assert cov.shape == (4, d, d)
    # central differences: truncation h^2 |d^3 log p| / 6 <~ 1e-9 and round-off 1e-16 |s| / h ~ 1e-10, times
    # (1 - ab)^2 / ab <= 19 at ab = 0.05; docs/theory claim 4 allows 1e-7 for finite differences
    torch.testing.assert_close(cov, tweedie, rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------------------- sample_x0
@pytest.mark.parametrize("ab", [0.9, 0.3])
@pytest.mark.parametrize("name", PRIORS)
def test_sample_x0_moments_match_denoiser_mean_and_cov(name, ab, gen):
    """Draws from p(x0 | x_t) at fixed x_t: mean within 4 SE of D(x_t) and covariance within 4.5 SE of cov.

    SEs are empirical (the GMM posterior is not Gaussian, so the fourth moments are estimated); each of the
    ~3 x (d + d(d+1)/2) comparisons fails with probability <~ 6e-5 under the null (fixed seed)."""
    den = dpt.ExactDenoiser(prior(name))
    n = 20000
    for x_point in _points(name, 3, gen, ab):
        x_t = x_point.expand(n, -1).clone()
        draws = den.sample_x0(x_t, ab, gen).numpy()
        assert draws.shape == x_t.shape
        mean = den(x_point.unsqueeze(0), ab)[0].numpy()
        cov = den.cov(x_point.unsqueeze(0), ab)[0].numpy()
        se_mean = draws.std(0, ddof=1) / math.sqrt(n)
        assert np.all(np.abs(draws.mean(0) - mean) <= 4 * se_mean), (draws.mean(0), mean)
        c = draws - draws.mean(0)
        prods = c[:, :, None] * c[:, None, :]  # (n, d, d); the sample covariance is their mean
        se_cov = prods.std(0, ddof=1) / math.sqrt(n)
        assert np.all(np.abs(prods.mean(0) * n / (n - 1) - cov) <= 4.5 * se_cov), (np.cov(draws.T), cov)


def test_sample_x0_at_alpha_bar_one_returns_x_t(gen):
    den = dpt.ExactDenoiser(prior("gmm2_k3"))
    x = torch.randn(5, 2, generator=gen)
    assert torch.equal(den.sample_x0(x, 1.0, gen), x)


def test_exact_denoiser_rejects_non_prior():
    with pytest.raises(TypeError, match="Gaussian or GaussianMixture"):
        dpt.ExactDenoiser("not a prior")


# ---------------------------------------------------------------------------------------------- conditional
@pytest.mark.parametrize("name", ["G2", "B1_s08", "gmm2_k2_one_row", "gmm2_k4_identity", "g3_two_rows"])
def test_batched_conditional_denoiser_equals_per_measurement(name, gen):
    """ConditionalExactDenoiser(problem, y (n, m)) at row i == ConditionalExactDenoiser(problem, y[i])."""
    prob = problem(name)
    n = 6
    _, y = prob.sample_joint(n, generator=gen)
    batched = dpt.ConditionalExactDenoiser(prob, y)
    for ab in ALPHA_BARS:
        x = torch.randn(n, prob.dim, generator=gen)
        D, C, s = batched(x, ab), batched.cov(x, ab), batched.score(x, ab)
        assert D.shape == (n, prob.dim) and C.shape == (n, prob.dim, prob.dim)
        for i in range(n):
            single = dpt.ConditionalExactDenoiser(prob, y[i])
            xi = x[i : i + 1]
            # two code paths for the same closed forms (GMM posterior vs per-particle mixture): round-off
            torch.testing.assert_close(D[i], single(xi, ab)[0], rtol=0, atol=1e-12)
            torch.testing.assert_close(C[i], single.cov(xi, ab)[0], rtol=0, atol=1e-12)
            # the score divides by (1 - ab) >= 0.03 and goes through Tweedie in the batched path
            torch.testing.assert_close(s[i], single.score(xi, ab)[0], rtol=0, atol=1e-11)


def test_batched_conditional_denoiser_checks_batch_size(gen):
    prob = problem("B1_s05")
    den = dpt.ConditionalExactDenoiser(prob, torch.tensor([[0.1], [0.2], [0.3]]))
    with pytest.raises(ValueError, match="n = 3"):
        den(torch.zeros(2, 1), 0.5)
    with pytest.raises(ValueError, match="n must equal"):
        den.sample_posterior(5, gen)


def test_batched_sample_posterior_rows_follow_their_own_y(gen):
    """One row per measurement: rows with y = -0.6 / +0.6 (B1, sigma .5) have means -+0.9034 (MC, 4 SE)."""
    prob = problem("B1_s05")
    n = 20000
    y = torch.tensor([[-0.6], [0.6]]).repeat(n // 2, 1)
    x = dpt.ConditionalExactDenoiser(prob, y).sample_posterior(n, gen)
    for sign, rows in ((-1, x[0::2, 0]), (1, x[1::2, 0])):
        post = prob.posterior([sign * 0.6])
        sd = float(post.cov[0, 0].sqrt())
        assert abs(float(rows.mean()) - float(post.mean[0])) <= 4 * sd / math.sqrt(n // 2)


# ---------------------------------------------------------------------------------------------- networks
class _SecretlyExactNet(torch.nn.Module):
    """A "network" ``net(x_t, t)`` for the Gaussian prior g2 that outputs the exact eps / x0 / v at its own
    schedule's ``alpha_bar(t + 1)`` (0-based t, as ADM), written with torch.linalg (no dptheory code).

    ``extra`` appends that many garbage output channels (like ADM's learned-variance channels)."""

    def __init__(self, schedule, prediction: str, extra: int = 0):
        super().__init__()
        m, S = GAUSSIANS["g2"]
        self.m, self.S = torch.tensor(m), torch.tensor(S)
        self.schedule, self.prediction, self.extra = schedule, prediction, extra
        self.calls: list[torch.Tensor] = []

    def forward(self, x, t):
        self.calls.append(t)
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        ab = float(self.schedule.alpha_bars[int(t[0]) + 1])
        S_t = ab * self.S + (1 - ab) * torch.eye(2)
        r = x - math.sqrt(ab) * self.m
        eps = math.sqrt(1 - ab) * torch.linalg.solve(S_t, r.T).T
        x0 = self.m + math.sqrt(ab) * (self.S @ torch.linalg.solve(S_t, r.T)).T
        out = {"eps": eps, "x0": x0, "v": math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0}[self.prediction]
        return torch.cat([out, torch.full((x.shape[0], self.extra), 1e6)], dim=1) if self.extra else out


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_network_adapter_is_exact_on_its_own_grid(prediction, gen):
    net_schedule = dpt.cosine_schedule(60)
    net = _SecretlyExactNet(net_schedule, prediction)
    adapter = dpt.NetworkDenoiser(net, net_schedule, prediction=prediction)
    exact = dpt.ExactDenoiser(gaussian("g2"))
    x = torch.randn(5, 2, generator=gen)
    for t in range(1, net_schedule.T + 1):
        ab = float(net_schedule.alpha_bar(t))
        assert adapter.timestep(ab) == t - 1
        # closed forms on both sides; the conversion divides by sqrt(ab) >= ~0.02 at the last cosine steps
        torch.testing.assert_close(adapter(x, ab), exact(x, ab), rtol=0, atol=1e-12)
        assert int(net.calls[-1][0]) == t - 1
        if t < net_schedule.T:  # the derived eps/score (Denoiser base class) also agree away from ab -> 0
            torch.testing.assert_close(adapter.eps(x, ab), exact.eps(x, ab), rtol=0, atol=1e-10)


def test_network_adapter_keeps_first_channels(gen):
    sch = dpt.linear_schedule(100)
    adapter = dpt.NetworkDenoiser(_SecretlyExactNet(sch, "eps", extra=2), sch, prediction="eps", channels=2)
    x = torch.randn(4, 2, generator=gen)
    ab = float(sch.alpha_bar(37))
    torch.testing.assert_close(adapter(x, ab), dpt.ExactDenoiser(gaussian("g2"))(x, ab), rtol=0, atol=1e-12)


def test_network_adapter_maps_alpha_bar_to_nearest_step_in_log_snr(gen):
    """Off-grid alpha_bar: the network is called at the 0-based step nearest in log-SNR (numpy argmin oracle)
    and its prediction is converted with the network's own alpha_bar at that step."""
    net_schedule = dpt.linear_schedule(50)
    net = _SecretlyExactNet(net_schedule, "eps")
    adapter = dpt.NetworkDenoiser(net, net_schedule, prediction="eps")
    table = net_schedule.alpha_bars.numpy()[1:]  # ab_1..ab_T
    log_snr = np.log(table / (1 - table))
    queries = dpt.cosine_schedule(200).alpha_bars.numpy()[1:-1]  # a different grid, off the network's
    queries = np.concatenate([queries, [1 - 1e-9, 1e-6]])  # beyond both ends of the table
    x = torch.randn(3, 2, generator=gen)
    exact = dpt.ExactDenoiser(gaussian("g2"))
    for q in queries:
        expected = int(np.argmin(np.abs(log_snr - np.log(q / (1 - q)))))  # 0-based
        assert adapter.timestep(float(q)) == expected, q
        out = adapter(x, float(q))
        assert int(net.calls[-1][0]) == expected
        # converted with the network's alpha_bar: the exact denoiser at the snapped level, not at q
        torch.testing.assert_close(out, exact(x, float(table[expected])), rtol=0, atol=1e-12)


def test_network_adapter_rejects_bad_prediction():
    with pytest.raises(ValueError, match="prediction"):
        dpt.NetworkDenoiser(lambda x, t: x, dpt.linear_schedule(100), prediction="score")
