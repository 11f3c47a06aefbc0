"""The cached MAP-RPS sweep of ``analyses/image_dp_photo_unet.py``: one stage 1 serves every t0.

Oracle: MAP-RPS itself (:func:`dptheory.images.problem.solve_image`). Stage 1 draws its noise first and stage 2
after it, so a sweep started from a generator in the same state must return, at each t0, EXACTLY what a full
MAP-RPS run at that t0 returns (same operations on the same draws; only the stage-2 draws of the other t0 values
are skipped), with the NFE of a full run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dptheory.images.operators import make_task
from dptheory.images.problem import GaussianImageDenoiser, ImageInverseProblem, solve_image
from dptheory.schedules import linear_schedule

ROOT = Path(__file__).resolve().parents[1]


def _analysis():
    spec = importlib.util.spec_from_file_location("_image_dp_photo_unet", ROOT / "analyses" / "image_dp_photo_unet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("t0", [30, 120])
def test_sweep_equals_a_full_map_rps_run_at_each_t0(t0):
    mod = _analysis()
    g = torch.Generator().manual_seed(0)
    data = torch.rand(300, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    den, schedule = GaussianImageDenoiser.fit(data), linear_schedule(1000)
    op, _ = make_task("sr4", (3, 4, 4), g)
    problem = ImageInverseProblem(op, 0.05)
    x = data[:3]
    y = problem.measure(x, g)
    cfg = {"iters": 7, "t0s": [0, t0]}
    sweep = mod.map_rps_sweep(problem, y, den, schedule, cfg, torch.Generator().manual_seed(5))
    for t in cfg["t0s"]:
        full = solve_image(problem, y, "map-rps", den, schedule=schedule, generator=torch.Generator().manual_seed(5),
                           stage2="dps", **mod._knobs("map-rps", t, cfg))  # the network path: DPS stage 2
        assert torch.equal(sweep[t].x, full.x), t
        assert sweep[t].nfe == full.nfe  # stage 1 (7) + stage 2 (t DPS steps)
    assert sweep[t0].nfe == 7 + t0 and sweep[0].nfe == 7
