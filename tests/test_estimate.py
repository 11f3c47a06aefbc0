"""Estimate.from_samples: the mean and ``std / sqrt(n)`` (n - 1 in the std), in float64 or the samples' dtype."""

from __future__ import annotations

import math

import pytest
import torch

from dptheory.estimate import Estimate


def test_from_samples_matches_mean_and_unbiased_se():
    v = torch.randn(37, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    e = Estimate.from_samples(v)
    assert e.n == 37 and not e.exact
    assert e.as_pair() == (float(v.mean()), float(v.std() / 37**0.5))
    ddof1 = math.sqrt(float(((v - v.mean()) ** 2).sum()) / 36) / math.sqrt(37)
    assert e.stderr == pytest.approx(ddof1, rel=1e-14)


def test_dtype_none_keeps_float32_round_off():
    """``dtype=None`` reproduces ``float(v.mean()), float(v.std() / sqrt(n))`` of float32 values to the bit."""
    v = torch.rand(2, 50, generator=torch.Generator().manual_seed(1)) * 30 + 10  # float32, 2-D: flattened
    assert Estimate.from_samples(v, dtype=None).as_pair() == (float(v.mean()), float(v.std() / math.sqrt(100)))
    e64 = Estimate.from_samples(v)
    assert e64.value == pytest.approx(float(v.double().mean()), rel=1e-15)


def test_from_samples_needs_two_values():
    with pytest.raises(ValueError, match="at least 2"):
        Estimate.from_samples(torch.ones(1))
