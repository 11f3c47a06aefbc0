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


_QUICK_CLAIMS: dict = {}


@pytest.fixture(scope="session")
def quick_claim():
    """``cid -> dptheory.claims.CLAIMS[cid](True)``, computed once per session: ``test_claims.py`` and the
    round-off guard (``test_claims_roundoff.py``) share the unperturbed one-thread run."""
    from dptheory.claims import CLAIMS

    def get(cid):
        if cid not in _QUICK_CLAIMS:
            _QUICK_CLAIMS[cid] = CLAIMS[cid](True)
        return _QUICK_CLAIMS[cid]

    return get
