"""Every ``dptheory restore --method`` on the default backbone (the trained photo UNet, at 32 px) at a tiny step
count: each either restores (exit code 0, a finite restoration, the four files) or is refused up front (exit
code 2, the method's reason from :data:`~dptheory.images.restore.NETWORK_REFUSALS`, nothing written).

The method list is read from :data:`dptheory.samplers.METHODS`, the list ``restore`` accepts, so a method added
there is covered without editing this file.
"""

from __future__ import annotations

import json
import math

import pytest

from dptheory.cli import restore_main as main
from dptheory.images.restore import DEFAULTS, NETWORK_REFUSALS
from dptheory.samplers import METHODS

# a few steps keep each run to about a second; map-rps: 3 stage-1 iterations, then 2 reverse steps
_EXTRA = {"map-rps": ["--t0", "2", "--steps", "3"]}


def test_default_backbone_is_the_network():
    assert DEFAULTS["backbone"] == "photo-unet"


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_or_is_refused_on_the_default_backbone(method, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--method", method, "--out", str(out), "--no-progress", "--json", "--size", "32",
                 *_EXTRA.get(method, ["--steps", "3"])])
    captured = capsys.readouterr()
    if method in NETWORK_REFUSALS:
        assert code == 2, captured.err
        assert NETWORK_REFUSALS[method] in captured.err
        assert not out.exists()
        return
    assert code == 0, f"restore --method {method} failed with exit code {code}: {captured.err}"
    report = json.loads(captured.out)
    assert math.isfinite(report["psnr"]) and report["nfe"] > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "measurement.png", "restoration.png", "restore.json", "side_by_side.png"]


def test_vsrd_on_a_network_runs_as_dps_with_lam(tmp_path, capsys):
    """The squared-norm guided denoiser gave NaN here; the CLI now runs VSRD's lam with DPS guidance."""
    code = main(["--method", "vsrd", "--lam", "1", "--steps", "3", "--size", "32", "--out", str(tmp_path),
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "runs as dps(lam=1)" in printed and "restore.json" in printed
    report = json.loads((tmp_path / "restore.json").read_text())
    assert report["sampler"] == "dps" and report["knobs"]["lam"] == 1.0


def test_map_rps_lam_refused_with_a_network(tmp_path, capsys):
    code = main(["--method", "map-rps", "--lam", "0.5", "--size", "32", "--out", str(tmp_path / "o"),
                 "--no-progress"])
    assert code == 2 and "stage 2 is DPS" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
