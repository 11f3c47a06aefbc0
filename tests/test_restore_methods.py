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


def test_photo_unet_dps_zeta_scales_with_size_and_steps():
    """3 at the tuned setting (32 px, 100 steps), proportional to the image side and to 100 / steps, held at its
    25-step value below 25 steps; bad sizes and step counts are refused by name."""
    from dptheory.images.backbones.photo_unet import PHOTO_UNET_DPS_ZETA, photo_unet_dps_zeta

    assert photo_unet_dps_zeta(32, 32, 100) == PHOTO_UNET_DPS_ZETA == 3.0
    assert photo_unet_dps_zeta(64, 64, 50) == pytest.approx(12.0, rel=1e-12)
    assert photo_unet_dps_zeta(128, 32, 100) == pytest.approx(6.0, rel=1e-12)  # sqrt(128 * 32) / 32 = 2
    assert photo_unet_dps_zeta(32, 32, 3) == photo_unet_dps_zeta(32, 32, 25) == pytest.approx(12.0, rel=1e-12)
    for bad in ({"height": 0}, {"width": 2.5}, {"steps": True}):
        kw = {"height": 32, "width": 32, "steps": 100, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            photo_unet_dps_zeta(**kw)


@pytest.mark.parametrize("method, extra", [("dps", []), ("vsrd", ["--lam", "0.5"])])
def test_photo_unet_dps_takes_the_networks_step_unless_told(method, extra, tmp_path, capsys):
    """Without --zeta, DPS (and VSRD, which runs as DPS) on the photo UNet records the measured step for its size
    and step count; --zeta overrides it; map-rps keeps its own stage-2 step (the official lr, default 1)."""
    from dptheory.images.backbones.photo_unet import photo_unet_dps_zeta

    for zeta, want in ((None, photo_unet_dps_zeta(32, 32, 4)), ("0.7", 0.7)):
        code = main(["--method", method, *extra, "--steps", "4", "--size", "32", "--out", str(tmp_path / str(zeta)),
                     "--no-progress", "--json", *(["--zeta", zeta] if zeta else [])])
        assert code == 0
        assert json.loads(capsys.readouterr().out)["knobs"]["zeta"] == pytest.approx(want, rel=1e-12)
    code = main(["--method", "map-rps", "--t0", "2", "--steps", "3", "--size", "32", "--out", str(tmp_path / "m"),
                 "--no-progress", "--json"])
    assert code == 0 and "zeta" not in json.loads(capsys.readouterr().out)["knobs"]


def test_photo_unet_dps_zeta_matches_its_committed_measurement():
    """The constant and the size/step law are what the committed benchmark measured: zeta = 3 is the best grid point
    on sr4, denoise and blur-gauss (training crops), and the law's value is the best of its grid on every native
    box. Changing either without measuring again fails here."""
    from pathlib import Path

    from dptheory.images.backbones.photo_unet import PHOTO_UNET_DPS_ZETA, photo_unet_dps_zeta

    doc = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                      / "photo_unet_dps_zeta.json").read_text())
    for task in ("sr4", "denoise", "blur-gauss"):
        curve = doc["tasks"][task]["psnr_db"]
        assert float(max(curve, key=lambda z: curve[z][0])) == PHOTO_UNET_DPS_ZETA, task
    assert len(doc["native"]) >= 2
    for run in doc["native"]:
        want = photo_unet_dps_zeta(run["size"], run["size"], run["steps"])
        for photo, by_zeta in run["results"].items():
            assert float(max(by_zeta, key=lambda z: by_zeta[z]["psnr"])) == want, (run["size"], photo)
