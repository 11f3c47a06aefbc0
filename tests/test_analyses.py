"""Smoke tests of the gallery (``analyses/``), the shared style module and ``dptheory reproduce``.

Each analysis runs with ``--quick`` into a temporary folder; the test checks the PNG, the PDF and the JSON
sidecar (``params``, ``seed``, ``version``, ``data``) and a few of the plotted numbers against the values the
claims report measures (docs/theory's quotes, with the claims' tolerances). Only ``posterior_1d`` (~2 s) and
``image_dp_photo_unet`` (~25 s; it carries issue 6's acceptance on held-out crops) run in the default suite; the
others take 5-15 s each and are marked ``slow`` (``pytest -m slow``).

The figures are built on :class:`matplotlib.figure.Figure` without pyplot, so no GUI backend is involved; Agg is
forced anyway for any code path that touches pyplot.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from dptheory import plotting, reproduce  # noqa: E402

SCRIPTS = {p.stem: p for p in reproduce.find_analyses()}
FAST = {"posterior_1d", "image_dp_photo_unet"}  # the second carries issue 6's acceptance checks (~25 s)
EXPECTED = {"posterior_1d", "trajectories_1d", "dp_curves_lambda", "pinwheel", "map_rps_dp_plane", "map_vs_mmse",
            "ddpm_order", "image_dp_traversal", "image_dp_photo_unet", "photo_unet_training", "image_dp_exact_scale"}


def _run(name: str, out: Path) -> dict:
    """Run one analysis with --quick into ``out``; check its three files and return the sidecar."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("seaborn")
    reproduce.run_analysis(SCRIPTS[name], quick=True, out=out)
    for ext in ("png", "pdf", "json"):
        path = out / f"{name}.{ext}"
        assert path.is_file() and path.stat().st_size > 1000, f"{path} missing or empty"
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    side = json.loads((out / f"{name}.json").read_text())
    import dptheory

    assert side["figure"] == name
    assert side["version"] == dptheory.__version__
    assert side["quick"] is True
    for key in ("params", "seed", "data", "claims", "title"):
        assert key in side, f"sidecar of {name} lacks {key!r}"
    assert side["params"] and side["data"] and isinstance(side["claims"], list)
    return side


def _checks(name: str, side: dict) -> None:
    """Numbers the figure shares with the claims report, at the claims' tolerances."""
    d = side["data"]
    if name == "posterior_1d":  # FND-1-style oracle (brute-force Bayes) and MRPS-4's MAP != MMSE
        assert d["max_abs_err_posterior_pdf_vs_quadrature"] < 1e-10
        assert abs(d["mmse"] + 0.9034) < 1e-4 and abs(d["map"] + 0.9333) < 1e-4
    elif name == "trajectories_1d":  # WANG-5: lam = 0 falls into the mode, not onto the MMSE
        lam0 = d["runs"][0]
        assert lam0["lam"] == 0.0 and abs(lam0["end_mean"] + 0.932) < 2e-3 and lam0["end_std"] < 1e-2
    elif name == "map_vs_mmse":  # MRPS-4: docs/theory §6.4 table to +-0.02
        assert d["max_abs_diff_vs_theory"] <= 0.02
    elif name == "ddpm_order":  # FND-6: order -1 for Sigma in {0.1, 1}; docs/theory §3.3's -0.89% at Sigma = 1, T =
    # 1000
        for S in ("0.1", "1"):
            assert abs(d["slope_T=250,1000,4000"][f"fixedsmall Sigma={S}"] + 1.0) <= 0.15
        assert abs(d["fixedsmall_rel_err"]["Sigma=1"][d["T"].index(1000)] + 0.0089) < 1e-4
    elif name == "dp_curves_lambda":  # WANG-4: joint gaps of VSRD on G2
        gaps = d["joint_gaps_G2"]
        for lam, want in (("0.25", 0.0209), ("0.5", 0.0413), ("0.75", 0.0614), ("1", 0.0811)):
            assert abs(gaps[f"lam={lam}"] - want) <= 1e-4
    elif name == "map_rps_dp_plane":  # BMF-4 / MRPS-2 joint gaps; DPS-1's KL
        gaps = d["G2_map_rps_joint_gaps"]
        assert abs(gaps["t0=20"] - 0.0104) <= 5e-5 and abs(gaps["t0=100"] - 0.064) <= 5e-4
        assert abs(gaps["t0=300"] - 0.081) <= 5e-4 and abs(gaps["t0=0"]) <= 1e-12
        assert abs(d["G2_dps_KL_to_posterior"]["zeta=1"] - 0.10) <= 5e-3
    elif name == "image_dp_photo_unet":  # issue 6 acceptance, also on the quick grid
        sr4 = d["tasks"]["sr4"]["checks"]
        assert sr4["map_psnr_minus_baseline_db"] > 0 and sr4["swd_falls_along_t0"], sr4
        peers = d["tasks"]["sr4"]["methods"]  # the peer samplers' points (finite PSNR, their NFE)
        assert all(math.isfinite(peers[m][0]["psnr_db"][0]) for m in ("ddrm", "diffpir", "pigdm", "daps"))
    elif name == "photo_unet_training":  # the network beats the identity everywhere and the empirical law at low noise
        net, ident, emp = d["mse"]["network"], d["mse"]["identity"], d["mse"]["empirical"]
        assert all(a[1] < b[1] for a, b in zip(net, ident, strict=True))
        assert all(a[1] < b[1] for a, b in zip(net, emp, strict=True) if a[0] <= 100)
    elif name == "image_dp_exact_scale":  # IMG-1: the sidecar's peak gaps are the claim's numbers (same call)
        from dptheory.claims.image_scale import check_img1

        peaks = check_img1(True).measured["peak_gap_over_Dstar"]
        for task, by_size in d["tasks"].items():
            for size, res in by_size.items():
                got = max(r["per_measurement"]["gap"] for r in res["map_rps"]) / res["curves"]["per_measurement"][
                    "D_star"]
                assert abs(got - peaks[task][f"{size}px"]) <= 1e-6  # the claim rounds to 6 digits
        assert all(abs(r["z"]) <= 4 for r in d["monte_carlo"]["rows"])  # MC within 4 SE of the exact laws
    elif name == "pinwheel":  # MC: lam = 1 samples the prior, so its KL is 0 within a few SE
        pts = d["traversal"]["joint"]
        assert d["traversal"]["values"][-1] == 1.0
        assert abs(pts[-1]["kl"]) <= 4 * pts[-1]["kl_stderr"] + 0.05


def test_every_figure_has_a_script():
    assert EXPECTED <= set(SCRIPTS), f"missing analyses: {EXPECTED - set(SCRIPTS)}"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_structure(name):
    """Title docstring naming the figure and its claim ids, fixed NAME/CLAIMS/SEED and a main(argv)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_analysis_{name}", SCRIPTS[name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.__doc__.strip().splitlines()[0]
    assert first.startswith(f"Figure ``{name}``"), first
    assert module.NAME == name
    if module.CLAIMS:
        assert all(c in module.__doc__ for c in module.CLAIMS)
    else:  # a figure outside the papers' claims (the model card) says so
        assert "Claims: none" in module.__doc__
    assert hasattr(module, "SEED") and callable(module.main)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in sorted(SCRIPTS)]
)
def test_analysis_quick(name, tmp_path):
    side = _run(name, tmp_path)
    _checks(name, side)


def test_reproduce_runs_selected_analyses(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    status = reproduce.main(["--quick", "--out", str(tmp_path), "--only", "posterior_1d", "--no-claims"])
    assert status == 0
    record = json.loads((tmp_path / "reproduce.json").read_text())
    assert record["analyses"]["posterior_1d"]["ok"] and record["claims"] is None
    assert record["only"] == ["posterior_1d"] and record["run_id"] and record["machine"]["threads"] == 1
    digest = record["analyses"]["posterior_1d"]["sha256"]["posterior_1d.json"]
    assert digest == reproduce.sha256_file(tmp_path / "posterior_1d.json")
    assert (tmp_path / "posterior_1d.png").is_file()
    assert "1/1 analyses" in capsys.readouterr().out


def test_reproduce_unknown_analysis(tmp_path, capsys):
    assert reproduce.main(["--out", str(tmp_path), "--only", "no_such_figure", "--no-claims"]) == 2
    assert "unknown analyses" in capsys.readouterr().err


def test_reproduce_without_analyses_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "analyses_dir", lambda: tmp_path / "analyses")
    assert reproduce.main(["--out", str(tmp_path / "out"), "--no-claims"]) == 2
    assert "pip install -e" in capsys.readouterr().err


def test_failing_analysis_is_reported(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "analyses"
    folder.mkdir()
    script = '"""Figure ``broken``."""\n\n\ndef main(argv=None):\n    raise ValueError("boom")\n'
    (folder / "broken.py").write_text(script)
    monkeypatch.setattr(reproduce, "analyses_dir", lambda: folder)
    assert reproduce.main(["--out", str(tmp_path / "out"), "--no-claims"]) == 1
    out = capsys.readouterr()
    assert "FAILED" in out.out + out.err and "boom" in out.out + out.err


def test_json_conversion():
    import torch

    data = {"t": torch.tensor([1.0, float("inf")]), "n": 3, "x": float("nan"), "nested": [{"a": -math.inf}]}
    conv = plotting.to_jsonable(data)
    assert conv == {"t": [1.0, "inf"], "n": 3, "x": "nan", "nested": [{"a": "-inf"}]}
    assert json.loads(plotting.dumps(conv)) == conv
    assert json.loads(plotting.dumps({"m": [[1, 2], [3, 4]], "e": {}})) == {"m": [[1, 2], [3, 4]], "e": {}}


def test_importing_plotting_does_not_import_matplotlib():
    code = "import sys, dptheory, dptheory.plotting, dptheory.reproduce; sys.exit('matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root).returncode == 0
