"""The small-dimension exact draw from p(x0 | x_t) (quadratic features, two GEMMs) against the general path.

Oracle: the general per-component path of ``_MixturePosterior.sample`` (rotated coordinates and gathers), which
consumes the same uniform and normal draws; agreement to 1e-12 (round-off of two different contractions).
The sampler that uses it is checked in distribution elsewhere (KS against the exact posterior, claim FND-7).
"""

from __future__ import annotations

import pytest
import torch

from dptheory import mixture


def _random_mixture(K, d, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, d, d, generator=g, dtype=torch.float64)
    covs = A @ A.transpose(-1, -2) / d + 0.05 * torch.eye(d, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(covs)
    means = 2 * torch.randn(K, d, generator=g, dtype=torch.float64)
    log_w = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    return mixture._MixturePosterior(log_w, means, evals, evecs)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("ab", [0.999, 0.5, 1e-3])
def test_small_dimension_draw_matches_the_general_path(d, ab, monkeypatch):
    post = _random_mixture(6, d, seed=d)
    x = 2 * torch.randn(4000, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fast = post.sample(x, ab, torch.Generator().manual_seed(2))
    monkeypatch.setattr(mixture, "_QUADRATIC_FEATURES_MAX_DIM", 0)
    general = post.sample(x, ab, torch.Generator().manual_seed(2))
    # a component flip needs a uniform within ~1e-15 of a CDF boundary: none among 4000 draws
    assert float((fast - general).abs().max()) <= 1e-12


def test_general_path_is_used_for_per_particle_weights():
    post = _random_mixture(3, 2, seed=0)
    batched = mixture._MixturePosterior(post.log_w.expand(5, 3), post.means.expand(5, 3, 2), post.evals,
                                        post.evecs)
    x = torch.randn(5, 2, dtype=torch.float64)
    out = batched.sample(x, 0.5, torch.Generator().manual_seed(0))
    ref = post._sample_small_dim(x, 0.5, torch.Generator().manual_seed(0))
    assert float((out - ref).abs().max()) <= 1e-12
