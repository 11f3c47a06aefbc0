"""Smoke test of ``analyses/image_dp_traversal.py`` (claims MRPS-2, WANG-3, BMF-4 at image scale).

Runs the script's ``main`` with ``--quick`` (16 x 16 grey crops, ~12 s on one core) and checks its three files and the
posterior-sampling oracle: exact posterior sampling has ``E[||X - X^||^2 | y] = 2 D*_y`` (D*_y = tr Sigma_y,
exact from the spectral problem), so the measured per-measurement D must lie within 4 Monte Carlo SE of it
(a 4-SE band: a Gaussian failure rate of 6e-5 per task; the seed is fixed, so the test is deterministic).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

SCRIPT = Path(__file__).resolve().parent.parent / "analyses" / "image_dp_traversal.py"


def _load():
    spec = importlib.util.spec_from_file_location("_analysis_image_dp_traversal", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_dp_traversal_quick(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("seaborn")
    mod = _load()
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    for ext in ("png", "pdf", "json"):
        path = tmp_path / f"image_dp_traversal.{ext}"
        assert path.is_file() and path.stat().st_size > 1000
    side = json.loads((tmp_path / "image_dp_traversal.json").read_text())
    assert side["figure"] == "image_dp_traversal" and side["quick"] is True
    assert set(side["claims"]) == {"MRPS-2", "WANG-3", "BMF-4"}
    for task, res in side["data"]["tasks"].items():
        chk = res["posterior_check"]
        assert abs(chk["D_y"] - chk["2D*_y"]) <= 4 * chk["D_y_stderr"], (task, chk)
        assert abs(chk["D_joint"] - chk["2D*_joint"]) <= 4 * chk["D_joint_stderr"], (task, chk)
        # P ~ 0: the posterior point's W2 lies within 4 SE of the estimator's floor (exact draws of the same size)
        assert chk["P_y"] <= chk["P_floor"] + 4 * chk["P_y_stderr"], (task, chk)
