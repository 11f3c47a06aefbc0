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


@pytest.fixture
def analyses_folder(tmp_path, monkeypatch):
    """``write({stem: source})`` puts analysis scripts in ``tmp_path / "analyses"`` and returns that folder;
    ``dptheory reproduce`` runs them instead of the repository's ``analyses/`` (``find_analyses`` patched)."""
    from dptheory import reproduce

    folder = tmp_path / "analyses"
    monkeypatch.setattr(reproduce, "find_analyses", lambda folder_=None: sorted(folder.glob("*.py")))

    def write(sources: dict):
        folder.mkdir(exist_ok=True)
        for stem, source in sources.items():
            (folder / f"{stem}.py").write_text(source)
        return folder

    return write
