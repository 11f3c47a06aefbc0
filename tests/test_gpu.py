"""Devices: ``--device``/``--dtype`` checks on any machine, and ``gpu``-marked runs that need a CUDA device.

The ``gpu`` tests are deselected by default (``-m 'not slow and not gpu'``) and skip cleanly without CUDA when
selected (``pytest -m gpu``). Oracle on a GPU: the CPU run of the same command (same task, same measurement: y is
drawn on the CPU in both), within the float32 round-off of a different device, and the float32 network against
bfloat16 within bfloat16's resolution.
"""

from __future__ import annotations

import json

import pytest
import torch

from dptheory.cli import restore_main as main
from dptheory.images.devices import peak_memory_mib, resolve_device, resolve_dtype

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")


def test_resolve_device_and_dtype():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype("float16") is torch.float16
    for bad in ("gpu", "cuda:x", "cpu:0", ""):
        with pytest.raises(ValueError, match="device must be"):
            resolve_device(bad)
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("float64")
    mem = peak_memory_mib()
    assert mem["rss"] > 10 and "cuda" not in mem  # a Python process with torch holds far more than 10 MiB


@pytest.mark.skipif(HAS_CUDA, reason="checks the message shown WITHOUT a CUDA device")
def test_cuda_request_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="no CUDA device is available"):
        resolve_device("cuda")
    assert main(["--device", "cuda", "--crop", "192,192,16,16", "--steps", "2", "--out", str(tmp_path)]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


def test_bfloat16_network_runs_on_cpu(tmp_path, capsys):
    """The network in bfloat16, images and sampler in float32: a finite restoration of the right size."""
    code = main(["--crop", "192,192,16,16", "--steps", "3", "--t0", "0", "--dtype", "bfloat16", "--out",
                 str(tmp_path), "--json", "--no-progress"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["dtype"] == "bfloat16" and rep["size"] == [16, 16] and rep["device"] == "cpu"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_restore_on_cuda_matches_the_cpu(dtype, tmp_path, capsys):
    argv = ["--crop", "160,224,32,32", "--steps", "20", "--t0", "0", "--json", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "cpu")]) == 0
    cpu = json.loads(capsys.readouterr().out)
    assert main([*argv, "--device", "cuda", "--dtype", dtype, "--out", str(tmp_path / "gpu")]) == 0
    gpu = json.loads(capsys.readouterr().out)
    assert gpu["device"].startswith("cuda") and gpu["dtype"] == dtype and "cuda" in gpu["peak_memory_mib"]
    assert gpu["psnr_baseline"] == pytest.approx(cpu["psnr_baseline"], abs=1e-3)  # same y, drawn on the CPU
    # stage 1 draws its noise on the GPU's own generator, so the runs differ by more than round-off; 20 MAP steps
    # from the same start land within 1 dB of each other (a half-precision network adds its own error)
    assert abs(gpu["psnr"] - cpu["psnr"]) < 1.0, (gpu["psnr"], cpu["psnr"])
