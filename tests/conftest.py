"""Test configuration: float64 everywhere, deterministic hypothesis profile."""

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)  # xdist runs one worker per core; BLAS threads would oversubscribe

settings.register_profile(
    "dptheory",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("dptheory")


@pytest.fixture
def gen():
    """A seeded torch.Generator (each test gets a fresh one)."""
    return torch.Generator().manual_seed(20261124)
