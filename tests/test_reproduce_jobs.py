"""``dptheory reproduce --jobs N``: figures, figure parts and the claims run in N spawned processes.

Oracle: the same scripts run in this process one after the other (``--jobs 1``): the split figure's sidecar data
must be the same, and the record must list the same figures in script order, with the parts' seconds.
"""

from __future__ import annotations

import json

import pytest

from dptheory import reproduce

pytest.importorskip("matplotlib")

_PLAIN = '''
from dptheory.plotting import run_analysis, figure
def _plot(data):
    fig, ax = figure()
    ax.plot([0, 1], [0, 1])
    return fig
def main(argv=None):
    return run_analysis("Plain.", argv, name="{name}", claims=[], seed=0, compute=lambda q: {{"v": 1.0}},
                        plot=_plot, params=lambda d, q: {{}})
'''
_SPLIT = '''
import os
import torch
from dptheory.plotting import run_analysis, figure
def parts(quick):
    return ["x", "y", "z"]
def compute_part(quick, part):
    if part == os.environ.get("BAD_PART"):
        raise ValueError("part " + part + " broke")
    g = torch.Generator().manual_seed(ord(part))
    return {"draw": torch.randn(3, generator=g, dtype=torch.float64).tolist(), "pid": os.getpid()}
def combine(quick, results):
    pids = sorted({r["pid"] for r in results.values()})
    return {"parts": {p: results[p]["draw"] for p in parts(quick)}, "pids": pids}
def compute(quick):
    return combine(quick, {p: compute_part(quick, p) for p in parts(quick)})
def _plot(data):
    fig, ax = figure()
    ax.plot(data["parts"]["x"])
    return fig
def main(argv=None, *, data=None, seconds=0.0):
    return run_analysis("Split.", argv, name="b_split", claims=[], seed=0, compute=compute, plot=_plot,
                        params=lambda d, q: {}, sidecar_data=lambda d: d["parts"], data=data, seconds=seconds)
'''
_INTERRUPT = "def main(argv=None):\n    raise KeyboardInterrupt\n"


@pytest.fixture
def scripts(analyses_folder):
    return analyses_folder({"a_plain": _PLAIN.format(name="a_plain"), "b_split": _SPLIT,
                            "c_plain": _PLAIN.format(name="c_plain")})


def _run(out, jobs: int) -> tuple[int, dict]:
    rc = reproduce.main(["--quick", "--no-claims", "--jobs", str(jobs), "--out", str(out)])
    return rc, json.loads((out / "reproduce.json").read_text())


def test_pool_matches_one_process(scripts, tmp_path, capsys):
    rc1, rec1 = _run(tmp_path / "one", 1)
    rc2, rec2 = _run(tmp_path / "pool", 2)
    assert rc1 == rc2 == 0 and rec1["status"] == rec2["status"] == "ok"
    assert rec1["completed"] == rec2["completed"] == ["a_plain", "b_split", "c_plain"]
    assert rec2["jobs"] == 2 and list(rec2["analyses"]) == ["a_plain", "b_split", "c_plain"]
    assert set(rec2["analyses"]["b_split"]["parts"]) == {"x", "y", "z"}
    side1 = json.loads((tmp_path / "one" / "b_split.json").read_text())
    side2 = json.loads((tmp_path / "pool" / "b_split.json").read_text())
    assert side1["data"] == side2["data"]  # the same draws, whichever process made them
    for name in ("a_plain", "b_split", "c_plain"):
        for f, digest in rec2["analyses"][name]["sha256"].items():
            assert reproduce.sha256_file(tmp_path / "pool" / f) == digest
    assert "2 jobs" in capsys.readouterr().out


def test_parts_run_in_worker_processes(scripts, tmp_path, monkeypatch):
    import os

    seen = []
    real = reproduce.run_analysis

    def spy(script, **kw):
        seen.append(kw.get("parts"))
        return real(script, **kw)

    monkeypatch.setattr(reproduce, "run_analysis", spy)
    rc, _ = _run(tmp_path / "pool", 2)
    assert rc == 0
    parts = [p for p in seen if p is not None]
    pids = {r["pid"] for r in parts[0].values()} if parts else set()
    assert len(parts) == 1 and os.getpid() not in pids  # computed elsewhere, drawn here


def test_a_failing_part_fails_its_figure_only(scripts, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BAD_PART", "y")
    rc, rec = _run(tmp_path / "pool", 2)
    assert rc == 1 and rec["status"] == "failed"
    assert rec["completed"] == ["a_plain", "c_plain"]
    assert "part y broke" in rec["analyses"]["b_split"]["error"]
    captured = capsys.readouterr()
    assert "FAILED b_split[y]" in captured.out + captured.err


def test_an_interrupt_in_a_worker_stops_the_run(scripts, tmp_path, capsys):
    (scripts / "b_split.py").write_text(_INTERRUPT)
    rc, rec = _run(tmp_path / "pool", 2)
    assert rc == 130 and rec["status"] == "interrupted" and "b_split" not in rec["completed"]
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["0", "-1", "2000"])
def test_jobs_out_of_range(jobs, tmp_path, capsys):
    assert reproduce.main(["--no-claims", "--jobs", jobs, "--out", str(tmp_path)]) == 2
    assert "--jobs must be an integer in [1, 1024]" in capsys.readouterr().err


def test_default_jobs_is_the_usable_cores(scripts, tmp_path):
    import os

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rc = reproduce.main(["--quick", "--no-claims", "--only", "a_plain", "--out", str(tmp_path / "out")])
    record = json.loads((tmp_path / "out" / "reproduce.json").read_text())
    assert rc == 0 and record["jobs"] == expected >= 1


def test_the_longest_units_go_first(scripts, tmp_path):
    """The pool's queue is ordered by the last run's seconds (a part without its own time: its figure's time over
    the parts), so the slowest work starts first and the run ends when the cores run out of work together."""
    import argparse

    from dptheory import _reproduce_pool

    out = tmp_path / "out"
    out.mkdir()
    old = {"analyses": {"a_plain": {"ok": True, "seconds": 1.0}, "b_split": {"ok": True, "seconds": 30.0},
                        "c_plain": {"ok": True, "seconds": 12.0}}, "claims": {"seconds": 5.0}}
    (out / "reproduce.json").write_text(json.dumps(old))
    previous = reproduce._previous_seconds(out)
    assert previous == {"a_plain": 1.0, "b_split": 30.0, "c_plain": 12.0, "claims": 5.0}
    args = argparse.Namespace(quick=True, resume=False, no_claims=False)
    record = {"analyses": {}, "completed": []}
    units, parts = _reproduce_pool._plan(args, reproduce.find_analyses(), out, record, previous)
    assert parts == {"b_split": ["x", "y", "z"]}
    assert [u.label for u in units] == ["c_plain", "b_split[x]", "b_split[y]", "b_split[z]", "claims", "a_plain"]
    old["analyses"]["b_split"]["parts"] = {"x": 20.0, "y": 2.0, "z": 0.5}  # measured per part: used as is
    (out / "reproduce.json").write_text(json.dumps(old))
    units, _ = _reproduce_pool._plan(args, reproduce.find_analyses(), out, record, reproduce._previous_seconds(out))
    assert [u.label for u in units] == ["b_split[x]", "c_plain", "claims", "b_split[y]", "a_plain", "b_split[z]"]


def test_a_worker_ends_when_its_parent_is_killed(tmp_path):
    """A ``reproduce`` killed with SIGKILL (or SIGTERM) cannot terminate its pool; each worker watches its parent
    (``exit_with_parent``, started by ``init_worker``) and ends once it is re-parented. Here a parent process starts
    one child running the watch, the parent is SIGKILLed, and the child must be gone (or a zombie) within 10 s; a
    child without the watch would sleep on for 60 s."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    child = ("import os, sys; from dptheory._reproduce_pool import exit_with_parent; "
             "open(sys.argv[1], 'w').write(str(os.getpid())); exit_with_parent(os.getppid(), 0.1)")
    parent = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}, {str(pid_file)!r}]); "
              "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())

        def alive() -> bool:
            try:
                state = open(f"/proc/{child_pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                return False
            return state != "Z"

        assert alive()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(), "the child outlived its killed parent"
    finally:
        proc.kill()
        if pid_file.exists() and pid_file.read_text():
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
