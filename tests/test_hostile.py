"""Hostile input, faults and interrupts: every case gets a clear error (or exit code 2 with one line), never a
traceback, silent garbage, executed code or a partial file.

Tables: :data:`API_CASES` (library calls -> exception type and message), :data:`CLI_CASES` (``dptheory ...`` ->
exit code and message); then the cases that need files (malicious checkpoints, images), the numerics of
``gaussian_kl`` against a 60-digit mpmath oracle, the atomic writes and interrupts of ``reproduce``, and a
hypothesis fuzz of the command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import struct
import zlib
from pathlib import Path

import mpmath
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dptheory as dpt
from dptheory.cli import main as cli_main
from dptheory.reference_problems import WORKED

F64 = torch.float64


def _g2():
    return WORKED["G2"]()


def _nan_denoiser(bad_from_ab=0.5, value=float("nan")):
    """A 'network' that is fine at high noise and returns NaN (or Inf) once alpha_bar > bad_from_ab."""
    def den(x, ab):
        out = 0.5 * x
        return out + value if ab > bad_from_ab else out
    return den


# ---------------------------------------------------------------------------------------------- library table
def _solve(method, **kw):
    prob, y = _g2()
    kw = {"steps": 5, **kw} if method != "map-rps" else {"t0": 5, **kw}
    return lambda: dpt.solve(prob, y, method, **kw)


API_CASES = {
    # steps = 0 would return the starting noise (every method that takes steps)
    **{f"solve-{m}-steps0": (_solve(m, steps=0), ValueError, "steps must be a positive integer")
       for m in ("ddpm", "ddim", "posterior", "dps", "vsrd", "red-diff", "vml-map")},
    "solve-vsrd-steps0-lam": (_solve("vsrd", steps=0, lam=0.5), ValueError, "steps must be a positive integer"),
    "sampler_law-steps0": (lambda: dpt.sampler_law(_g2()[0], "ddpm", y=_g2()[1], steps=0), ValueError,
                           "steps must be a positive integer"),
    "traverse-steps0": (lambda: dpt.traverse(_g2()[0], "vsrd", "lam", [0.5], y=_g2()[1], steps=0), ValueError,
                        "steps must be a positive integer"),
    # unclear messages made clear: each names the argument and what is expected
    "d=0-gaussian": (lambda: dpt.Gaussian(torch.zeros(0), torch.zeros(0, 0)), ValueError, r"mean .*d >= 1"),
    "d=0-mixture": (lambda: dpt.GaussianMixture(torch.ones(1), torch.zeros(1, 0), torch.zeros(1, 0, 0)),
                    ValueError, r"means .*d >= 1"),
    "m=0-problem": (lambda: dpt.LinearInverseProblem(_g2()[0].prior, torch.zeros(0, 2), 0.3), ValueError,
                    r"A must have shape \(m, d\) with m >= 1"),
    "schedule-string": (_solve("ddpm", schedule="linear"), TypeError, r"schedule must be a VPSchedule.*'linear'"),
    "schedule-string-law": (lambda: dpt.sampler_law(_g2()[0], "ddpm", y=_g2()[1], schedule="cosine"), TypeError,
                            "schedule must be a VPSchedule"),
    "optimal_dp_curve-name": (lambda: dpt.optimal_dp_curve("G2"), TypeError,
                              r"problem must be a LinearInverseProblem.*WORKED\['G2'\]"),
    "traverse-problem-name": (lambda: dpt.traverse("G2", "vsrd", "lam", [0.5], y=[0.1]), TypeError,
                              "problem must be a LinearInverseProblem"),
    "solve-problem-name": (lambda: dpt.solve("G2", [0.1], "ddpm"), TypeError, "problem must be a LinearInverse"),
    "denoiser-string": (_solve("ddpm", denoiser="exact"), TypeError, r"denoiser must be None .*'exact'"),
    "generator-int": (_solve("ddpm", generator=42), TypeError, r"generator must be a torch.Generator.*manual_seed"),
    "generator-int-traverse": (lambda: dpt.traverse(_g2()[0], "vsrd", "lam", [0.5], y=_g2()[1], generator=42),
                               TypeError, "generator must be a torch.Generator"),
    "float16-cov": (lambda: dpt.Gaussian(torch.zeros(2, dtype=torch.float16), torch.eye(2, dtype=torch.float16)),
                    TypeError, r"float16; the exact theory needs float32 or float64"),
    "bfloat16-mixture": (lambda: dpt.GaussianMixture(torch.ones(1, dtype=torch.bfloat16),
                                                     torch.zeros(1, 2, dtype=torch.bfloat16),
                                                     torch.eye(2, dtype=torch.bfloat16)[None]),
                         TypeError, "bfloat16"),
    "traverse-n-1": (lambda: dpt.traverse(WORKED["B1"]()[0], "vsrd", "lam", [0.5], y=WORKED["B1"]()[1], n=1),
                     ValueError, r"n \(the Monte Carlo size per point\) must be an integer >= replicates = 5"),
    # memory: refused up front with the memory it would need (no chunking)
    "n_samples-1e8": (_solve("ddpm", n_samples=10**8 * 1000), ValueError, r"needs about .* GiB of memory"),
    "traverse-n-huge": (lambda: dpt.traverse(WORKED["B1"]()[0], "vsrd", "lam", [0.5], y=WORKED["B1"]()[1],
                                             n=10**14), ValueError, "GiB of memory"),
    # a diverging network: the error names the step and the noise level
    "nan-denoiser-ddpm": (_solve("ddpm", denoiser=_nan_denoiser()), ValueError,
                          r"returned NaN at step t = \d+ of 1000 \(alpha_bar = 0\.\d+, noise std"),
    "inf-denoiser-dps": (_solve("dps", denoiser=_nan_denoiser(value=float("inf"))), ValueError,
                         r"returned Inf at step t = \d+"),
    "nan-denoiser-map-rps": (_solve("map-rps", denoiser=_nan_denoiser(bad_from_ab=0.0), iters=3), ValueError,
                             r"denoiser returned NaN at step t = \d+"),
    "nan-denoiser-vsrd": (_solve("vsrd", denoiser=_nan_denoiser(), lam=0.5), ValueError, "returned NaN at step"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_case(case):
    fn, exc, pattern = API_CASES[case]
    with pytest.raises(exc, match=pattern) as info:
        fn()
    assert "\n" not in str(info.value)  # one line


def test_n_samples_1e8_refused_before_allocating(monkeypatch):
    """The issue's n_samples = 1e8 on a machine with 4 GiB free: refused at once with the memory it needs."""
    import dptheory._checks as checks

    monkeypatch.setattr(checks, "available_memory_bytes", lambda device=None: 4 * 2**30)
    prob, y = _g2()
    with pytest.raises(ValueError, match=r"100000000 samples .* needs about (\d+\.?\d*) GiB.*only 4 GiB"):
        dpt.solve(prob, y, "ddpm", steps=5, n_samples=10**8)
    dpt.solve(prob, y, "ddpm", steps=2, n_samples=1000)  # a normal call is unaffected


def test_finite_denoiser_changes_nothing_for_a_finite_network():
    """The guard changes nothing for a finite network: bit-identical to the sampler run on the raw denoiser."""
    prob, y = _g2()
    den = _nan_denoiser(value=0.0)
    a = dpt.solve(prob, y, "ddpm", steps=4, denoiser=den, n_samples=3, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, generator=g, dtype=F64)
    cond = dpt.samplers.DPSGuidedDenoiser(den, prob.operator, prob.check_y(y), prob.sigma_y, 1.0)  # what solve builds
    b = dpt.samplers.ddpm(cond, x, dpt.linear_schedule(), steps=4, generator=g)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- CLI table
CLI_CASES = {
    "traverse-steps0": (["traverse", "--steps", "0"], 2, "--steps must be a positive integer"),
    "traverse-t0-1.7": (["traverse", "--method", "map-rps", "--knob", "t0", "--values", "1.7"], 2,
                        "knob t0 takes integer steps, got 1.7"),
    "traverse-sigma-neg": (["traverse", "--problem", "B1", "--sigma-y", "-1"], 2, "--sigma-y must be a finite"),
    "traverse-sigma-nan": (["traverse", "--problem", "B1", "--sigma-y", "nan"], 2, "--sigma-y must be a finite"),
    "traverse-y-inf": (["traverse", "--problem", "B1", "--y", "inf"], 2, "--y must be a finite number"),
    "traverse-sigma-G2": (["traverse", "--sigma-y", "0.3"], 2, "apply to --problem B1 only"),
    "traverse-n-1": (["traverse", "--problem", "B1", "--n", "1"], 2, r"n \(the Monte Carlo size"),
    "traverse-values-nan": (["traverse", "--values", "0.5,nan"], 2, "--values must be finite"),
    "traverse-steps-map-rps": (["traverse", "--method", "map-rps", "--knob", "t0", "--values", "3", "--steps", "5"],
                               2, "--steps does not apply to map-rps"),
    "traverse-seed-huge": (["traverse", "--seed", str(2**70)], 2, "--seed must be an integer"),
    "traverse-bad-int": (["traverse", "--steps", "x"], 2, r"invalid int value: 'x' \(see dptheory traverse --help\)"),
    "check-threads0": (["check", "--threads", "0"], 2, r"--threads must be an integer in \[1, 4096\], got 0"),
    "reproduce-threads0": (["reproduce", "--threads", "0"], 2, r"--threads must be an integer in \[1, 4096\], got 0"),
    "restore-crop-negative": (["restore", "--crop", "-1,0,10,10"], 2, "--crop must be .* with TOP and LEFT >= 0"),
    "restore-crop-three": (["restore", "--crop", "0,0,10"], 2, "four integers"),
    "restore-out-proc": (["restore", "--out", "/proc/x.png"], 2, "--out: cannot write to /proc"),
    "restore-image-dir": (["restore", "--image", "{tmp}"], 2, "is a folder; expected a PNG or JPEG file"),
    "restore-gaussian-huge": (["restore", "--backbone", "gaussian", "--size", "100000"], 2, "GiB of memory"),
    "restore-seed-negative": (["restore", "--seed", "-5"], 2, "--seed must be an integer"),
    "no-command": ([], 2, "dptheory: error: the following arguments are required"),
}


def _run_cli(argv, capsys):
    """``dptheory argv`` in-process: (exit code, stderr). A traceback (any exception) fails the test."""
    try:
        rc = cli_main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def _last_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "\r" not in ln and "it/s]" not in ln]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_case(case, capsys, tmp_path):
    argv, code, pattern = CLI_CASES[case]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv and argv[0] == "restore":
        argv += ["--no-progress", *([] if "--out" in argv else ["--out", str(tmp_path / "out")])]
    rc, err = _run_cli(argv, capsys)
    assert rc == code, err
    import re

    assert re.search(pattern, _last_line(err)), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written


# ---------------------------------------------------------------------------------------------- code execution
class _Payload:
    """Unpickling this writes a marker file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def _malicious_pt(path: Path, marker: Path) -> Path:
    torch.save({"weight": torch.ones(2), "evil": _Payload(marker)}, path)
    return path


def _malicious_pt2(path: Path, marker: Path) -> Path:
    """A torch.export-style archive whose entries are pickles carrying the payload."""
    import zipfile

    blob = pickle.dumps(_Payload(marker))
    with zipfile.ZipFile(path, "w") as z:
        for name in ("archive/version", "archive/data.pkl", "archive/models/model.json",
                     "archive/data/constants/model_constants_config.json", "archive/data/weights/model.pt"):
            z.writestr(name, blob if name.endswith((".pkl", ".pt")) else b"1")
        z.writestr("archive/serialized_exported_program.json", blob)
    return path


def test_malicious_checkpoints_never_run(tmp_path, capsys):
    from dptheory.images import metrics as M

    marker = tmp_path / "PWNED"
    pt2, pt = _malicious_pt2(tmp_path / "lpips.pt2", marker), _malicious_pt(tmp_path / "lpips.pt", marker)
    x = torch.zeros(1, 3, 12, 12)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(2))

        def forward(self, a, b=None):
            return a.mean(dim=(1, 2, 3))

    for weights, pattern in ((pt2, "refused"), (pt, "refused"), ((Net(), pt), "holds Python objects"),
                             ((Net(), pt2), r"\.pt2\) archives are refused")):
        with pytest.raises(ValueError, match=pattern):
            M.lpips(x, x, weights=weights)
        with pytest.raises(ValueError, match=pattern):
            M.fid(x.expand(2, -1, -1, -1), x.expand(2, -1, -1, -1), weights=weights)
    assert not marker.exists()
    # the restore command with the same file as the photo UNet weights: one line, exit 2, no torch advice
    (tmp_path / "lpips.json").write_text(Path(dpt.__file__).parent.joinpath(
        "images/backbones/weights/photo_unet32.json").read_text())
    rc, err = _run_cli(["restore", "--backbone", f"photo-unet:{pt}", "--out", str(tmp_path / "o"), "--no-progress"],
                       capsys)
    assert rc == 2 and "holds Python objects other than tensors" in err
    assert "weights_only" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


WEIGHTS = Path(dpt.__file__).parent / "images" / "backbones" / "weights" / "photo_unet32.pt"


@pytest.mark.parametrize("fault", ["truncated", "garbage", "empty", "tensor", "folder", "bad-json", "json-array",
                                   "json-no-config", "mismatch"])
def test_restore_corrupt_checkpoint_one_line(fault, tmp_path, capsys):
    w = tmp_path / "w.pt"
    log = WEIGHTS.with_suffix(".json").read_text()
    data = WEIGHTS.read_bytes()
    w.write_bytes({"truncated": data[: len(data) // 3], "garbage": b"\x80\x04garbage" * 100, "empty": b""}
                  .get(fault, data))
    if fault == "tensor":
        torch.save(torch.ones(3), w)
    if fault == "mismatch":
        torch.save({"bogus": torch.ones(3)}, w)
    if fault == "folder":
        w.unlink()
        w.mkdir()
    (tmp_path / "w.json").write_text({"bad-json": "{bad", "json-array": "[1, 2]",
                                      "json-no-config": '{"config": {}}'}.get(fault, log))
    rc, err = _run_cli(["restore", "--backbone", f"photo-unet:{w}", "--out", str(tmp_path / "o"), "--no-progress"],
                       capsys)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "weights_only" not in err
    if fault.startswith("json") or fault == "bad-json":
        assert str(tmp_path / "w.json") in err  # the malformed file is named
    else:
        assert str(w) in err or fault == "folder"


@pytest.mark.parametrize("fault", ["truncated", "garbage", "bad-json", "no-switch", "other-low"])
def test_restore_corrupt_high_noise_expert_one_line(fault, tmp_path, capsys):
    """The high-noise expert beside the weights (``<stem>_high.pt`` / ``.json``) is checked like the weights: a
    broken file, a log without the mixing knots, or an expert paired with other weights is one line, exit 2."""
    w = tmp_path / "w.pt"
    w.write_bytes(WEIGHTS.read_bytes())
    w.with_suffix(".json").write_text(WEIGHTS.with_suffix(".json").read_text())
    high = WEIGHTS.with_name("photo_unet32_high.pt")
    data, log = high.read_bytes(), json.loads(high.with_suffix(".json").read_text())
    if fault == "no-switch":
        del log["expert"]["knots"]
    if fault == "other-low":
        log["expert"]["low_sha256"] = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    (tmp_path / "w_high.pt").write_bytes({"truncated": data[: len(data) // 3], "garbage": b"\x80\x04garbage" * 100}
                                         .get(fault, data))
    (tmp_path / "w_high.json").write_text("{bad" if fault == "bad-json" else json.dumps(log))
    if fault == "other-low":  # a weights file that differs from the one the expert was paired with
        torch.save(torch.load(WEIGHTS, weights_only=True), w)
    rc, err = _run_cli(["restore", "--backbone", f"photo-unet:{w}", "--out", str(tmp_path / "o"), "--no-progress"],
                       capsys)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "weights_only" not in err
    assert "w_high" in err, err
    assert {"truncated": "photo UNet weights", "garbage": "photo UNet weights", "bad-json": "not valid JSON",
            "no-switch": "lacks expert.knots", "other-low": "paired with other low-noise weights"}[fault] in err


# ---------------------------------------------------------------------------------------------- images
def _png(path: Path, w: int, h: int, row: bytes | None = None) -> Path:
    """A hand-made RGB PNG (fast for huge sizes: one repeated row, zlib-streamed)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    body = b""
    if row is not None:
        c = zlib.compressobj(1)
        body = b"".join(c.compress(row) for _ in range(h)) + c.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind", ["bomb", "over-cap", "truncated", "not-an-image", "folder"])
def test_bad_images_one_line(kind, tmp_path, capsys):
    p = tmp_path / "x.png"
    if kind == "bomb":
        _png(p, 200_000, 200_000)  # 40 gigapixels declared in a 60-byte file
    elif kind == "over-cap":
        _png(p, 11_000, 10_000)  # above dptheory's 100 MP cap, below PIL's own bomb limit
    elif kind == "truncated":
        _png(p, 64, 64, b"\x00" + bytes(range(192)))
        p.write_bytes(p.read_bytes()[:80])
    elif kind == "not-an-image":
        p.write_text("hello")
    else:
        p.mkdir()
    rc, err = _run_cli(["restore", "--image", str(p), "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(p) in err
    assert not (tmp_path / "o").exists()


def test_large_png_is_reduced_by_pil_first(tmp_path, monkeypatch):
    """A 9000 x 9000 PNG loads in seconds through PIL's reduce; the reduced path agrees with the full path."""
    import time

    from dptheory.images import data

    row = b"\x00" + bytes(v % 251 for v in range(27000))  # a horizontal ramp pattern, 3 channels
    big = _png(tmp_path / "big.png", 9000, 9000, row)
    t = time.perf_counter()
    x = data.load_image(str(big), 32)
    assert x.shape == (1, 3, 32, 32) and bool(torch.isfinite(x).all())
    assert time.perf_counter() - t < 60  # minutes before the fix (a 14-minute anti-aliased resize); generous bound
    # reduced vs full path on a smaller file (threshold lowered): same picture up to the box filter's difference
    mid = tmp_path / "mid.png"
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 4, 5, generator=g) * 255  # smooth at the target scale: 4 x 5 cells over 600 x 800 px
    img = torch.nn.functional.interpolate(img, size=(600, 800), mode="bilinear").to(torch.uint8)
    Image.fromarray(img[0].permute(1, 2, 0).numpy()).save(mid)
    full = data.load_image(str(mid), 24)
    monkeypatch.setattr(data, "_REDUCE_ABOVE", 1000)
    reduced = data.load_image(str(mid), 24)
    assert float((full - reduced).abs().mean()) < 0.02  # a smooth image: box pre-filter ~ Gaussian anti-aliasing
    box = data.load_image(str(mid), 16, crop=(10, 20, 400, 300))
    assert box.shape == (1, 3, 16, 16)
    monkeypatch.setattr(data, "_REDUCE_ABOVE", 10**9)
    assert float((box - data.load_image(str(mid), 16, crop=(10, 20, 400, 300))).abs().mean()) < 0.02


def test_written_pngs_follow_umask(tmp_path):
    from dptheory.images.data import save_png
    from dptheory.images.restore import _write_all

    old = os.umask(0o022)
    try:
        save_png(torch.zeros(3, 4, 4), tmp_path / "a.png")
        _write_all({tmp_path / "b.png": torch.zeros(3, 4, 4), tmp_path / "b.json": "{}"})
    finally:
        os.umask(old)
    for name in ("a.png", "b.png", "b.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------- gaussian_kl
def _kl_oracle(p, q) -> float:
    """KL by the textbook formula in 60-digit arithmetic on the same float64 matrices (mpmath)."""
    with mpmath.workdps(60):
        S1, S2 = mpmath.matrix(p.cov.tolist()), mpmath.matrix(q.cov.tolist())
        dm = mpmath.matrix((q.mean - p.mean).tolist())
        S2i = S2**-1
        d = S1.rows
        tr = sum((S2i * S1)[i, i] for i in range(d))
        maha = (dm.T * S2i * dm)[0, 0]
        return float(0.5 * (tr + maha - d + mpmath.log(mpmath.det(S2)) - mpmath.log(mpmath.det(S1))))


def _spd(d, lo, seed):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    S = Q @ torch.diag(torch.logspace(0, lo, d, dtype=F64)) @ Q.T
    return 0.5 * (S + S.T)


@pytest.mark.parametrize("d", [2, 5, 10])
def test_gaussian_kl_self_at_condition_1e12_is_nonnegative(d):
    """KL(p || p) = 0; at condition 1e12 round-off may leave a small POSITIVE value, never a negative one.

    Bound: the generalized eigenvalues are 1 up to gamma = 4 d eps kappa (triangular solves and eigh, normwise),
    and each term mu - 1 - ln mu ~ (mu - 1)^2 / 2, so 0 <= KL <= d gamma^2 / 4."""
    p = dpt.Gaussian(torch.zeros(d, dtype=F64), _spd(d, -12, d))
    kl = float(dpt.gaussian_kl(p, p))
    gamma = 4 * d * torch.finfo(F64).eps * 1e12
    assert 0.0 <= kl <= d * gamma**2 / 4
    assert abs(_kl_oracle(p, p)) < 1e-40  # the oracle's own zero


def test_gaussian_kl_tiny_ridge_is_finite():
    """The issue's case: KL(p || p + 1e-6 I) at d = 10 with eigenvalues 1 .. 1e-12 is 16.89, not inf.

    Tolerance: a first-order bound, 0.5 sum_i |1 - 1/mu_i| gamma with gamma = 4 d eps ||L^-1||^2 ||S_1|| the
    normwise error of the generalized eigenvalues mu_i (L the Cholesky factor of q's covariance)."""
    d = 10
    S = _spd(d, -12, 0)
    p = dpt.Gaussian(torch.zeros(d, dtype=F64), S)
    q = dpt.Gaussian(torch.zeros(d, dtype=F64), S + 1e-6 * torch.eye(d, dtype=F64))
    kl, want = float(dpt.gaussian_kl(p, q)), _kl_oracle(p, q)
    assert round(want, 2) == 16.89
    mu = torch.linalg.eigvalsh(torch.linalg.solve(q.cov, p.cov)).clamp_min(1e-300)  # for the bound only
    gamma = 4 * d * torch.finfo(F64).eps / float(torch.linalg.eigvalsh(q.cov).min()) * float(S.norm(2))
    assert abs(kl - want) <= 0.5 * float((1 - 1 / mu).abs().sum()) * gamma


@pytest.mark.parametrize("seed", range(4))
def test_gaussian_kl_matches_oracle_well_conditioned(seed):
    """Random SPD pairs with condition <= 1e3 and shifted means: relative error <= 1e-9 (a d * kappa^2 * eps
    bound of the solves, 10 * 1e6 * 2.2e-16 = 2e-9)."""
    g = torch.Generator().manual_seed(seed)
    d = 2 + seed
    p = dpt.Gaussian(torch.randn(d, generator=g, dtype=F64), _spd(d, -3, 10 + seed))
    q = dpt.Gaussian(torch.randn(d, generator=g, dtype=F64), 2.0 * _spd(d, -2, 20 + seed))
    assert float(dpt.gaussian_kl(p, q)) == pytest.approx(_kl_oracle(p, q), rel=2e-9)


def test_gaussian_kl_singular_arguments():
    """q singular is refused with its computed smallest eigenvalue; p singular gives +inf (no density)."""
    v = torch.tensor([[1.0], [1.0]], dtype=F64) / 2**0.5
    sing = v @ v.T  # rank 1
    ok = dpt.Gaussian(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    bad = dpt.Gaussian(torch.zeros(2, dtype=F64), sing)
    real_min = float(torch.linalg.eigvalsh(sing).min())
    with pytest.raises(ValueError, match=f"smallest eigenvalue of q.cov is {real_min:.3g}"):
        dpt.gaussian_kl(ok, bad)
    assert float(dpt.gaussian_kl(bad, ok)) == float("inf")


# ---------------------------------------------------------------------------------------------- reproduce
_SCRIPT_OK = '''
from dptheory.plotting import run_analysis, figure
def main(argv=None):
    def plot(data):
        fig, ax = figure()
        ax.plot([0, 1], [0, data["v"]])
        return fig
    return run_analysis("A tiny figure.", argv, name="{name}", claims=[], seed=0, compute=lambda q: {{"v": 1.0}},
                        plot=plot, params=lambda d, q: {{"quick": q}})
'''
_SCRIPT_INTERRUPT = '''
import os
def main(argv=None):
    if os.environ.get("HOSTILE_OK"):
        from dptheory.plotting import run_analysis, figure
        def plot(data):
            fig, ax = figure()
            return fig
        return run_analysis("B.", argv, name="b_second", claims=[], seed=0, compute=lambda q: {}, plot=plot,
                            params=lambda d, q: {})
    raise KeyboardInterrupt
'''
_SCRIPT_SWALLOW = '''
import os, signal
def main(argv=None):
    try:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, caught and swallowed by a careless library
    except KeyboardInterrupt:
        pass
    return 0
'''


def _scripts(analyses_folder, second):
    from dptheory import reproduce

    analyses_folder({"a_first": _SCRIPT_OK.format(name="a_first"), "b_second": second,
                     "c_third": _SCRIPT_OK.format(name="c_third")})
    return reproduce


@pytest.mark.parametrize("second", ["interrupt", "swallowed"])
def test_reproduce_interrupt_is_recorded_and_resumable(second, tmp_path, monkeypatch, capsys, analyses_folder):
    reproduce = _scripts(analyses_folder, _SCRIPT_INTERRUPT if second == "interrupt" else _SCRIPT_SWALLOW)
    out = tmp_path / "figs"
    out.mkdir()
    (out / "reproduce.json").write_text(json.dumps({"status": "ok"}))  # an old successful record
    before = signal.getsignal(signal.SIGINT)
    rc = reproduce.main(["--quick", "--no-claims", "--jobs", "1", "--out", str(out)])
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
    rec = json.loads((out / "reproduce.json").read_text())
    assert rc == 130 and rec["status"] == "interrupted"
    assert rec["completed"] == (["a_first"] if second == "interrupt" else ["a_first", "b_second"])
    assert "interrupted" in capsys.readouterr().err
    assert (out / "a_first.png").is_file() and not (out / "c_third.png").exists()
    assert not list(out.glob(".*.tmp"))
    a_mtime = (out / "a_first.json").stat().st_mtime_ns
    if second == "interrupt":
        monkeypatch.setenv("HOSTILE_OK", "1")
    else:
        (tmp_path / "analyses" / "b_second.py").write_text(_SCRIPT_INTERRUPT)
        monkeypatch.setenv("HOSTILE_OK", "1")
    rc = reproduce.main(["--quick", "--no-claims", "--jobs", "1", "--resume", "--out", str(out)])
    rec = json.loads((out / "reproduce.json").read_text())
    assert rc == 0 and rec["status"] == "ok" and rec["completed"] == ["a_first", "b_second", "c_third"]
    assert rec["analyses"]["a_first"].get("resumed") and not rec["analyses"]["c_third"].get("resumed")
    assert (out / "a_first.json").stat().st_mtime_ns == a_mtime  # skipped, not rewritten
    # a different --quick setting does not match the sidecars: everything runs again
    rc = reproduce.main(["--no-claims", "--jobs", "1", "--resume", "--only", "a_first", "--out", str(out)])
    rec = json.loads((out / "reproduce.json").read_text())
    assert rc == 0 and rec["completed"] == ["a_first"] and not rec["analyses"]["a_first"].get("resumed")


def test_reproduce_failure_recorded(tmp_path, capsys, analyses_folder):
    reproduce = _scripts(analyses_folder, "def main(argv=None):\n    raise OSError(28, 'No space left')\n")
    out = tmp_path / "figs"
    rc = reproduce.main(["--quick", "--no-claims", "--jobs", "1", "--out", str(out)])
    rec = json.loads((out / "reproduce.json").read_text())
    assert rc == 1 and rec["status"] == "failed" and rec["completed"] == ["a_first", "c_third"]
    assert "No space left" in rec["analyses"]["b_second"]["error"]


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    """A failure while writing the PDF (e.g. a full disk) leaves the previous three files and no temporary file."""
    from dptheory import plotting

    kw = dict(title="t", claims=[], params={}, seed=0, data={"v": 1}, quick=True)
    fig, _ = plotting.figure()
    plotting.save_figure(fig, "f", tmp_path, **kw)
    old = {e: (tmp_path / f"f.{e}").read_bytes() for e in ("png", "pdf", "json")}
    real = fig.savefig

    def failing(path, format=None, **k):
        if format == "pdf":
            Path(path).write_bytes(b"%PDF-trunc")
            raise OSError(28, "No space left on device")
        return real(path, format=format, **k)

    monkeypatch.setattr(fig, "savefig", failing)
    with pytest.raises(OSError, match="No space"):
        plotting.save_figure(fig, "f", tmp_path, **{**kw, "data": {"v": 2}})
    assert {e: (tmp_path / f"f.{e}").read_bytes() for e in ("png", "pdf", "json")} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "f.pdf", "f.png"]


def test_atomic_write_interrupted(tmp_path):
    from dptheory import _atomic

    target = tmp_path / "r.json"
    _atomic.write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), _atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_atomic_named_write_keeps_torch_save_bytes_and_cleans_up(tmp_path):
    """``torch.save`` names its zip archive after the file: through ``atomic_named_path`` the bytes equal those of a
    direct save (through a randomly named temporary file they would not), and an interrupt leaves the old file and
    no temporary folder."""
    from dptheory import _atomic

    state = {"w": torch.arange(6.0).reshape(2, 3)}
    direct, target = tmp_path / "a" / "w.pt", tmp_path / "b" / "w.pt"
    direct.parent.mkdir()
    target.parent.mkdir()
    torch.save(state, direct)
    with _atomic.atomic_named_path(target) as tmp:
        assert tmp.name == "w.pt" and tmp.parent != target.parent
        torch.save(state, tmp)
    assert target.read_bytes() == direct.read_bytes()
    torch.save(state, tmp_path / "a" / "x.pt")
    with _atomic.atomic_path(tmp_path / "b" / "x.pt") as tmp:
        torch.save(state, tmp)
    # through a randomly named temporary file the archive carries the temporary name
    assert (tmp_path / "b" / "x.pt").read_bytes() != (tmp_path / "a" / "x.pt").read_bytes()
    with pytest.raises(KeyboardInterrupt), _atomic.atomic_named_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == direct.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["w.pt", "x.pt"]


# ---------------------------------------------------------------------------------------------- fuzz
_HOSTILE = ["-1", "0", "1", "2", "1.7", "nan", "inf", "-inf", "1e308", "abc", "", "3,4", "-1,0,10,10", "0.5,nan",
            str(2**70), "/proc/x.png", "0,0,8,8"]
_OPTIONS = {
    "traverse": {"--problem": ["G2", "B1", "Iso", "X"], "--sigma-y": _HOSTILE, "--y": _HOSTILE,
                 "--method": ["vsrd", "ddpm", "map-rps", "dps", "posterior", "nope"],
                 "--knob": ["lam", "t0", "steps", "zeta", "eta", "nope"], "--values": _HOSTILE, "--n": _HOSTILE,
                 "--steps": _HOSTILE, "--seed": _HOSTILE},
    "restore": {"--task": ["sr4", "denoise", "nope"], "--crop": _HOSTILE, "--method": ["map-rps", "dps", "nope"],
                "--t0": _HOSTILE, "--t1": _HOSTILE, "--lam": _HOSTILE, "--zeta": _HOSTILE, "--size": _HOSTILE,
                "--steps": _HOSTILE, "--sigma-y": _HOSTILE, "--n-crops": _HOSTILE, "--seed": _HOSTILE,
                "--image": ["/nonexistent.png", "skimage:nope", "/", "sklearn:digits:99999"],
                "--backbone": ["gaussian", "photo-unet:/nonexistent.pt", "adm:nope:x.pt", "/"]},
    "check": {"--threads": _HOSTILE, "--ids": ["NOPE-1", "", "-1"]},
}
_BASE = {"traverse": ["--steps", "2", "--values", "0.5", "--n", "10", "--json"],
         "restore": ["--backbone", "gaussian", "--size", "8", "--n-crops", "20", "--steps", "2", "--t0", "1",
                     "--no-progress"],
         "check": ["--ids", "NOPE-1"]}


@st.composite
def _argv(draw):
    cmd = draw(st.sampled_from(sorted(_OPTIONS)))
    opts = draw(st.lists(st.sampled_from(sorted(_OPTIONS[cmd])), min_size=1, max_size=3, unique=True))
    argv = [cmd, *_BASE[cmd]]
    for o in opts:
        argv += [o, draw(st.sampled_from(_OPTIONS[cmd][o]))]
    return argv


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=_argv())
def test_cli_fuzz_no_traceback(argv, capsys, tmp_path):
    if argv[0] == "restore" and "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "fuzz_out")]
    rc, err = _run_cli(argv, capsys)
    assert rc in (0, 1, 2), (argv, rc, err)
    assert "Traceback" not in err, (argv, err)
    if rc == 2:
        assert _last_line(err).startswith("dptheory"), (argv, err)
        assert "\n" not in _last_line(err)
