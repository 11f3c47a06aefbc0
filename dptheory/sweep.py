"""``dptheory sweep SPEC.toml``: run a grid of solver runs (cells) on Ray and collect one results file.

A spec (:class:`SweepSpec`, which shows the TOML layout) sets a ``kind`` (``"vector"``: the worked problems;
``"image"``: photos), a ``[grid]`` whose lists multiply into cells (problem or task, method, seed, knobs per method)
and ``[fixed]`` settings. A vector cell measures one D-P point with :func:`dptheory.traverse`: ``D_y, P_y, KL_y,
gap_y`` and ``D, P, KL, gap`` with standard errors and the curve constants; an image cell restores a photo with
:func:`dptheory.images.problem.solve_image` and records PSNR, SSIM and MSE (and those of ``A^+ y``). Each cell runs
with one torch thread. Rows are flat JSON objects, one per line (``pandas.read_json(path, lines=True)``).

Only the driver writes, one whole line per row with ``fsync`` (:class:`ResultsFile`; a torn last line is cut on
open). Re-running skips the cells that have a row (``--resume``), ``--retry-failed`` re-runs error rows (the newest
row of a cell wins), ``--no-resume`` starts a new file (the old one kept as ``<out>.<timestamp>.bak``); a failing
cell gives an error row. Ray runs locally by default (``--num-cpus``), ``--address`` joins a cluster, ``--serial``
runs in-process (Ray is imported only inside the command). At the end: a table and a D-P plot (``<out>.png``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SweepSpec", "load_spec", "expand_cells", "run_cell", "ResultsFile", "read_results", "run_sweep",
           "add_arguments", "main"]

KINDS = ("vector", "image")
VECTOR_METRICS = ("per-measurement", "joint")
IMAGE_METRICS = ("psnr", "ssim", "mse")
_VECTOR_AXES = ("problem", "method", "seed", "y", "sigma_y")
_IMAGE_AXES = ("task", "image", "method", "seed")
_FIXED_VECTOR = {"n", "replicates", "delay", "knobs"}
_FIXED_IMAGE = {"backbone", "size", "n_crops", "sigma_y", "crop", "delay", "knobs"}


class SpecError(ValueError):
    """A spec that cannot be run; the message names the key."""


@dataclass
class SweepSpec:
    """A parsed, validated spec. The TOML layout (all keys but ``grid`` optional)::

        name = "vsrd-vs-map-rps"          # recorded in every row (default: the file's stem)
        kind = "vector"                   # "vector" (the worked problems) or "image" (photos)
        out = "vsrd-vs-map-rps.jsonl"     # results file, relative to the spec (default: <stem>.jsonl)
        metrics = ["per-measurement", "joint"]   # vector: D-P forms; image: any of "psnr", "ssim", "mse"

        [grid]                            # the cells are the product of these lists
        problem = ["G2", "G2post"]        # vector: G2, G2post, Iso, B1        (image: task = ["sr4", ...])
        method = ["vsrd", "map-rps"]      # any dpt.solve method
        seed = [0, 1]
        # y = [-0.6, -0.2]                # vector, B1 only: measurements (default -0.6); sigma_y = [0.5] likewise
        # image = ["skimage:astronaut"]   # image only: the photos

        [grid.knobs.vsrd]                 # per method: knob -> values; the product of the lists is swept
        lam = [0.0, 0.5, 1.0]             # the FIRST knob listed is the one the D-P plot follows
        [grid.knobs.map-rps]
        t0 = [0, 20, 100]

        [fixed]                           # the same for every cell
        n = 2000                          # vector: Monte Carlo size per cell (GMM problems; exact ones ignore it)
        # replicates = 5                  # vector: parts for the Monte Carlo standard errors
        # backbone = "gaussian"; size = 16; n_crops = 200; sigma_y = 0.05   # image: as in `dptheory restore`
        # delay = 0.0                     # seconds each cell sleeps first (to test interruptions)
        [fixed.knobs.vsrd]                # fixed knobs per method
        steps = 100

    A row holds the cell's parameters (``problem``/``task``, ``method``, ``seed``, ``y``, ``image``, ``knob``,
    ``value`` and one column per knob), its metrics, ``status`` (``"ok"`` or ``"error"``), ``error`` (the exception,
    one line), ``seconds``, ``host``, ``version`` (dptheory), ``torch``, ``finished`` (UTC), ``sweep``, ``kind`` and
    ``cell_id`` (a hash of the parameters). A vector cell also records the curve constants ``Dstar_y, W_y, Dstar,
    W``; a Ray worker that dies is retried by Ray (``max_retries``).
    """

    name: str
    kind: str
    out: Path
    metrics: tuple
    grid: dict
    knobs: dict
    fixed: dict = field(default_factory=dict)
    fixed_knobs: dict = field(default_factory=dict)


def _as_list(value, key: str) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SpecError(f"{key} must be a non-empty list")
    return values


def load_spec(path) -> SweepSpec:
    """Read and validate a spec file; raises :class:`SpecError` naming the offending key."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SpecError(f"spec file {str(path)!r} not found") from err
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"spec {str(path)!r} is not valid TOML: {err}") from err
    return spec_from_dict(raw, base=path.parent, stem=path.stem)


def spec_from_dict(raw: dict, base=".", stem: str = "sweep") -> SweepSpec:
    """Validate a spec given as a dict (the parsed TOML); ``out`` is resolved against ``base``."""
    from .solver import METHOD_NAMES

    unknown = set(raw) - {"name", "kind", "out", "metrics", "grid", "fixed"}
    if unknown:
        raise SpecError(f"unknown top-level key(s) {sorted(unknown)}")
    kind = raw.get("kind", "vector")
    if kind not in KINDS:
        raise SpecError(f"kind must be one of {KINDS}, got {kind!r}")
    grid_raw = dict(raw.get("grid") or {})
    if not grid_raw:
        raise SpecError("the spec needs a [grid] table")
    knobs_raw = grid_raw.pop("knobs", {}) or {}
    axes = _VECTOR_AXES if kind == "vector" else _IMAGE_AXES
    unknown = set(grid_raw) - set(axes)
    if unknown:
        raise SpecError(f"unknown grid key(s) {sorted(unknown)} for kind {kind!r}; expected some of {axes} "
                        "and [grid.knobs.METHOD] tables")
    required = ("problem", "method") if kind == "vector" else ("task", "method")
    for key in required:
        if key not in grid_raw:
            raise SpecError(f"grid.{key} is required for kind {kind!r}")
    grid = {k: _as_list(v, f"grid.{k}") for k, v in grid_raw.items()}
    grid.setdefault("seed", [0])
    for m in grid["method"]:
        if m not in METHOD_NAMES:
            raise SpecError(f"grid.method: unknown method {m!r}; expected one of {', '.join(METHOD_NAMES)}")
    if kind == "vector":
        from .reference_problems import WORKED

        for p in grid["problem"]:
            if p not in WORKED:
                raise SpecError(f"grid.problem: unknown problem {p!r}; expected one of {', '.join(WORKED)}")
        if ("y" in grid or "sigma_y" in grid) and grid["problem"] != ["B1"]:
            raise SpecError("grid.y and grid.sigma_y apply to problem B1 only (the other problems fix their y)")
    else:
        from .images.operators import TASKS

        for t in grid["task"]:
            if t not in TASKS:
                raise SpecError(f"grid.task: unknown task {t!r}; expected one of {', '.join(TASKS)}")
        grid.setdefault("image", ["skimage:astronaut"])
    for s in grid["seed"]:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise SpecError(f"grid.seed: seeds must be non-negative integers, got {s!r}")
    knobs = {}
    for m, table in knobs_raw.items():
        if m not in grid["method"]:
            raise SpecError(f"grid.knobs.{m}: {m!r} is not in grid.method")
        if not isinstance(table, dict) or not table:
            raise SpecError(f"grid.knobs.{m} must be a table of knob = [values]")
        knobs[m] = {k: _as_list(v, f"grid.knobs.{m}.{k}") for k, v in table.items()}
    fixed = dict(raw.get("fixed") or {})
    fixed_knobs = fixed.pop("knobs", {}) or {}
    allowed = _FIXED_VECTOR if kind == "vector" else _FIXED_IMAGE
    unknown = set(fixed) - allowed
    if unknown:
        raise SpecError(f"unknown fixed key(s) {sorted(unknown)} for kind {kind!r}; expected some of "
                        f"{sorted(allowed - {'knobs'})}")
    for m in fixed_knobs:
        if m not in grid["method"]:
            raise SpecError(f"fixed.knobs.{m}: {m!r} is not in grid.method")
    metrics = tuple(raw.get("metrics") or (VECTOR_METRICS if kind == "vector" else IMAGE_METRICS))
    allowed_metrics = VECTOR_METRICS if kind == "vector" else IMAGE_METRICS
    bad = [m for m in metrics if m not in allowed_metrics]
    if bad:
        raise SpecError(f"metrics: unknown {bad} for kind {kind!r}; expected some of {allowed_metrics}")
    name = str(raw.get("name", stem))
    out = Path(base) / raw.get("out", f"{stem}.jsonl")
    return SweepSpec(name, kind, out, metrics, grid, knobs, fixed, fixed_knobs)


# ------------------------------------------------------------------------------------------------- cells
def cell_id(params: dict) -> str:
    """A stable hash of a cell's parameters (order-independent)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def expand_cells(spec: SweepSpec) -> list[dict]:
    """The cells of a spec, in a deterministic order. Each is a flat dict of parameters plus ``cell_id``."""
    axes = [a for a in (_VECTOR_AXES if spec.kind == "vector" else _IMAGE_AXES) if a in spec.grid and a != "method"]
    cells = []
    for method in spec.grid["method"]:
        table = spec.knobs.get(method, {})
        names = list(table)
        for combo in itertools.product(*(spec.grid[a] for a in axes)):
            for values in itertools.product(*(table[k] for k in names)) if names else [()]:
                params = dict(zip(axes, combo, strict=True))
                params["method"] = method
                params["knob"] = names[0] if names else None
                params["value"] = values[0] if names else None
                params["knobs"] = {**spec.fixed_knobs.get(method, {}), **dict(zip(names, values, strict=True))}
                params["fixed"] = {k: v for k, v in spec.fixed.items() if k != "delay"}
                params["kind"] = spec.kind
                params["metrics"] = list(spec.metrics)
                params["cell_id"] = cell_id(params)
                params["delay"] = float(spec.fixed.get("delay", 0.0))
                cells.append(params)
    return cells


def _vector_metrics(cell: dict) -> dict:
    import torch

    from .reference_problems import WORKED, b1
    from .traversal import traverse

    if cell["problem"] == "B1":
        prob, y = b1(cell.get("sigma_y", 0.5), cell.get("y", -0.6))
    else:
        prob, y = WORKED[cell["problem"]]()
    fixed = cell["fixed"]
    knobs = dict(cell["knobs"])
    knob = cell["knob"]
    if knob is None:
        raise ValueError(f"method {cell['method']!r} needs at least one knob in [grid.knobs.{cell['method']}]")
    value = knobs.pop(knob)
    if knob in ("t0", "steps", "iters", "t1", "inner_steps", "final_steps"):
        value = int(value)
    gen = torch.Generator().manual_seed(int(cell["seed"]))
    res = traverse(prob, cell["method"], knob, [value], y=y, forms=tuple(cell["metrics"]),
                   n=int(fixed.get("n", 2000)), replicates=int(fixed.get("replicates", 5)), generator=gen, **knobs)
    out = {"nfe": res.nfe[0], "exact": res.exact}
    for form, suffix, curve in (("per-measurement", "_y", res.curve_per_measurement), ("joint", "",
                                                                                     res.curve_joint)):
        if form not in cell["metrics"]:
            continue
        pt = (res.per_measurement if form == "per-measurement" else res.joint)[0]
        out.update({f"D{suffix}": pt.distortion, f"P{suffix}": pt.perception, f"KL{suffix}": pt.kl,
                    f"gap{suffix}": pt.gap, f"D{suffix}_stderr": pt.distortion_stderr,
                    f"P{suffix}_stderr": pt.perception_stderr, f"KL{suffix}_stderr": pt.kl_stderr,
                    f"Dstar{suffix}": curve.mmse_error, f"W{suffix}": curve.w})
    return out


_BACKBONES: dict = {}  # per worker process: (backbone, size, n_crops, image) -> (denoiser, schedule)


def _image_metrics(cell: dict) -> dict:
    import types

    import torch

    from .images.data import load_image
    from .images.metrics import psnr, ssim
    from .images.operators import make_task
    from .images.problem import ImageInverseProblem, solve_image
    from .images.restore import DEFAULTS, _load_backbone

    fixed = cell["fixed"]
    backbone = fixed.get("backbone", "gaussian")
    size = int(fixed.get("size", 16))
    n_crops = int(fixed.get("n_crops", 200))
    key = (backbone, size, n_crops, cell["image"])
    if key not in _BACKBONES:
        args = types.SimpleNamespace(backbone=backbone, n_crops=n_crops, image=cell["image"])
        den, schedule, _ = _load_backbone(args, size)
        _BACKBONES[key] = (den, schedule)
    den, schedule = _BACKBONES[key]
    x = load_image(cell["image"], size)
    gen = torch.Generator().manual_seed(int(cell["seed"]))
    operator, task_sigma = make_task(cell["task"], tuple(x.shape[1:]), gen)
    sigma_y = float(fixed.get("sigma_y", task_sigma))
    problem = ImageInverseProblem(operator, sigma_y)
    y = problem.measure(x, gen)
    knobs = dict(cell["knobs"])
    for k in ("t0", "steps", "iters", "t1"):
        if k in knobs:
            knobs[k] = int(knobs[k])
    if cell["method"] == "map-rps":
        knobs.setdefault("t0", DEFAULTS["t0"])
    sol = solve_image(problem, y, cell["method"], den, schedule=schedule, generator=gen, **knobs)
    x_hat = sol.x[:1].to(x.dtype)
    x_pinv = problem.pinv(y).to(x.dtype)
    out = {"nfe": sol.nfe, "sigma_y": sigma_y, "size": size, "backbone": backbone}
    for name, img, suffix in ((None, x_hat, ""), (None, x_pinv, "_baseline")):
        del name
        if "psnr" in cell["metrics"]:
            out["psnr" + suffix] = float(psnr(img, x)[0])
        if "ssim" in cell["metrics"]:
            out["ssim" + suffix] = float(ssim(img, x)[0])
        if "mse" in cell["metrics"]:
            out["mse" + suffix] = float(((img - x) ** 2).mean())
    if not bool(torch.isfinite(sol.x).all()):
        raise FloatingPointError("the restoration is not finite (diverged)")
    return out


def run_cell(cell: dict) -> dict:
    """Run one cell and return its row (never raises: a failure gives ``status = "error"`` and the message).

    Sets torch to one thread: cells are the unit of parallelism.
    """
    import torch

    from . import __version__

    torch.set_num_threads(1)
    start = time.perf_counter()
    row = {k: v for k, v in cell.items() if k not in ("delay",)}
    row.update(status="ok", error=None)
    try:
        if cell.get("delay"):
            time.sleep(float(cell["delay"]))
        metrics = _vector_metrics(cell) if cell["kind"] == "vector" else _image_metrics(cell)
        row.update(metrics)
    except Exception as err:  # a failed cell is recorded, never fatal
        last = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
        where = f" [{Path(last.filename).name}:{last.lineno}]" if last else ""
        row.update(status="error", error=f"{type(err).__name__}: {err}".replace("\n", " ") + where)
    row.update(seconds=time.perf_counter() - start, host=socket.gethostname(), pid=os.getpid(),
               version=__version__, torch=torch.__version__,
               finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for k, v in row.pop("knobs").items():  # one column per knob
        row[k] = v
    row["knobs"] = json.dumps({k: cell["knobs"][k] for k in sorted(cell["knobs"])})
    row["fixed"] = json.dumps(cell["fixed"], sort_keys=True)
    row["metrics"] = ",".join(cell["metrics"])
    return row


# ------------------------------------------------------------------------------------------- results file
def _json_default(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


class ResultsFile:
    """An append-only JSONL file of rows, written by one process at a time (an exclusive lock).

    Opening it cuts a torn last line left by a crash; :meth:`append` writes one whole line with a single
    ``os.write`` and ``fsync``, so earlier rows are never touched and a row is either fully there or absent.
    """

    def __init__(self, path):
        import fcntl

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(self.fd)
            raise RuntimeError(f"{self.path} is being written by another sweep (locked)") from err
        self._repair()

    def _repair(self) -> None:
        size = os.fstat(self.fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            data = f.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1  # 0 when the only line is torn
        os.ftruncate(self.fd, keep)
        os.fsync(self.fd)

    def append(self, row: dict) -> None:
        line = (json.dumps(row, default=_json_default, allow_nan=False) + "\n").encode()
        written = os.write(self.fd, line)
        if written != len(line):  # pragma: no cover - a full disk; cut the partial line at once
            os.ftruncate(self.fd, os.fstat(self.fd).st_size - written)
            raise OSError(f"short write to {self.path}")
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _finite(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def read_rows(path) -> list[dict]:
    """Every complete row of a results file, in file order (a torn last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        rows.append(json.loads(line))
    return rows


def read_results(path) -> list[dict]:
    """The newest row of each cell (a retried failure is replaced by its retry), in file order."""
    latest = {}
    for row in read_rows(path):
        latest.pop(row["cell_id"], None)
        latest[row["cell_id"]] = row
    return list(latest.values())


# ------------------------------------------------------------------------------------------------- running
def _run_cell_task(cell: dict) -> dict:  # the Ray task (a module-level function, so workers import it)
    return run_cell(cell)


def _ray_rows(cells, address, num_cpus, max_retries):
    """Yield rows as the cells finish on Ray (a generator, so the caller writes each row at once)."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        # workers inherit this environment (a runtime_env would start a separate worker pool)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs = dict(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        if address is None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    task = ray.remote(num_cpus=1, max_retries=max_retries)(_run_cell_task)
    pending = {task.remote(cell): cell for cell in cells}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            cell = pending.pop(ref)
            try:
                yield ray.get(ref)
            except Exception as err:  # the task itself failed (a worker died more than max_retries times)
                row = run_cell_failed(cell, err)
                yield row
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def run_cell_failed(cell: dict, err: BaseException) -> dict:
    """The error row of a cell whose task could not run at all (e.g. its worker kept dying)."""
    from . import __version__

    row = {k: v for k, v in cell.items() if k not in ("delay", "knobs")}
    row.update({k: v for k, v in cell["knobs"].items()})
    row.update(status="error", error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
               seconds=None, host=socket.gethostname(), pid=None, version=__version__, torch=None,
               finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               knobs=json.dumps({k: cell["knobs"][k] for k in sorted(cell["knobs"])}),
               fixed=json.dumps(cell["fixed"], sort_keys=True), metrics=",".join(cell["metrics"]))
    return row


def run_sweep(spec: SweepSpec, *, address=None, num_cpus=None, serial=False, resume=True, retry_failed=False,
              max_retries=3, progress=True) -> dict:
    """Run the cells of ``spec`` that have no row yet and append their rows to ``spec.out``.

    Returns ``{"cells": total, "skipped": already done, "ran": run now, "failed": errors among them}``.
    """
    cells = expand_cells(spec)
    ids = [c["cell_id"] for c in cells]
    if len(set(ids)) != len(ids):
        raise SpecError("the grid has duplicate cells (a value listed twice?)")
    if not resume and spec.out.exists() and spec.out.stat().st_size:
        backup = spec.out.with_name(f"{spec.out.name}.{time.strftime('%Y%m%dT%H%M%S')}.bak")
        spec.out.rename(backup)
    with ResultsFile(spec.out) as results:
        done = {}
        for row in read_rows(spec.out):
            done[row["cell_id"]] = row["status"]
        todo = [c for c in cells if c["cell_id"] not in done or (retry_failed and done[c["cell_id"]] != "ok")]
        summary = {"cells": len(cells), "skipped": len(cells) - len(todo), "ran": 0, "failed": 0}
        if not todo:
            return summary
        rows = (run_cell(c) for c in todo) if serial else _ray_rows(todo, address, num_cpus, max_retries)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"sweep {spec.name}", unit="cell")
        try:
            for row in rows:
                row["sweep"] = spec.name
                results.append(_finite(row))
                summary["ran"] += 1
                summary["failed"] += row["status"] != "ok"
                if bar is not None:
                    bar.update(1)
                    if summary["failed"]:
                        bar.set_postfix(failed=summary["failed"])
        finally:
            if bar is not None:
                bar.close()
            close = getattr(rows, "close", None)
            if close is not None:
                close()
    return summary


# ------------------------------------------------------------------------------------------------- summary
def _series_key(row: dict) -> str:
    where = row.get("problem") or row.get("task")
    extra = f" y={row['y']}" if row.get("y") is not None else ""
    return f"{where}{extra} {row['method']}"


def format_table(rows: list[dict], kind: str) -> str:
    """A plain-text table of the rows (one line per cell)."""
    if kind == "vector":
        cols = [("where", 8), ("method", 8), ("knob", 6), ("value", 7), ("seed", 4), ("D_y", 9), ("P_y", 9),
                ("gap_y", 9), ("D", 9), ("P", 9), ("gap", 9), ("s", 6), ("status", 6)]
    else:
        cols = [("where", 14), ("method", 8), ("knob", 6), ("value", 7), ("seed", 4), ("psnr", 7), ("ssim", 6),
                ("psnr_baseline", 13), ("nfe", 5), ("s", 6), ("status", 6)]
    lines = [" ".join(f"{name:>{w}}" for name, w in cols)]
    for r in rows:
        cells = []
        for name, w in cols:
            if name == "where":
                v = r.get("problem") or f"{r.get('task')}"
            elif name == "s":
                v = r.get("seconds")
            else:
                v = r.get(name)
            if isinstance(v, float):
                text = f"{v:.4g}" if name != "s" else f"{v:.2f}"
            else:
                text = "" if v is None else str(v)
            cells.append(f"{text[:w]:>{w}}")
        lines.append(" ".join(cells))
        if r.get("status") != "ok":
            lines.append(f"    error: {r.get('error')}")
    return "\n".join(lines)


def plot_dp(rows: list[dict], kind: str, path) -> Path | None:
    """The sweep on the D-P plane (vector: per-measurement D_y against P_y, with the optimal curve; image: MSE
    against the knob). Returns the PNG's path, or None when no row has the numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    if kind == "vector":
        xk, yk = ("P_y", "D_y") if any(r.get("P_y") is not None for r in ok) else ("P", "D")
        ok = [r for r in ok if r.get(xk) is not None and r.get(yk) is not None]
    else:
        xk, yk = "value", "mse"
        ok = [r for r in ok if r.get(yk) is not None and isinstance(r.get(xk), (int, float))]
    if not ok:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    series: dict = {}
    for r in ok:
        series.setdefault(_series_key(r), []).append(r)
    for key, rs in series.items():
        rs.sort(key=lambda r: (r["seed"], r.get("value") if isinstance(r.get("value"), (int, float)) else 0))
        ax.plot([r[xk] for r in rs], [r[yk] for r in rs], "o-", ms=4, lw=1, label=key)
        for r in rs:
            if r.get("value") is not None and kind == "vector":
                ax.annotate(f"{r['knob']}={r['value']:g}", (r[xk], r[yk]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    if kind == "vector":
        import numpy as np

        dstar, w = ("Dstar_y", "W_y") if xk == "P_y" else ("Dstar", "W")
        curves = {(r[dstar], r[w]) for r in ok if r.get(dstar) is not None and r.get(w) is not None}
        for i, (ds, ww) in enumerate(sorted(curves)):
            p = np.linspace(0, max(ww, max(r[xk] for r in ok)) * 1.05, 200)
            ax.plot(p, ds + np.clip(ww - p, 0, None) ** 2, "k--", lw=0.8, label="optimal curve" if i == 0 else None)
        ax.set_xlabel("perception " + ("$P_y = W_2(p_{\\hat X|y}, p_{X|y})$" if xk == "P_y" else "$W_2$"))
        ax.set_ylabel("distortion " + ("$D_y$ (MSE given y)" if yk == "D_y" else "$D$ (MSE)"))
    else:
        ax.set_xlabel("knob value")
        ax.set_ylabel("MSE")
    ax.legend(fontsize=7)
    ax.set_title("dptheory sweep", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``dptheory sweep`` (used by :func:`dptheory.cli.build_parser`)."""
    parser.add_argument("spec", help="the grid spec, a TOML file (see `dptheory.sweep` for the layout)")
    parser.add_argument("--out", default=None, help="results file (default: the spec's `out`, else SPEC.jsonl)")
    parser.add_argument("--address", default=None,
                        help="join a running Ray cluster (HOST:PORT or 'auto'); default: start Ray on this machine")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs for the local Ray (default: all); each cell uses one")
    parser.add_argument("--serial", action="store_true", help="run the cells one by one in this process (no Ray)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="skip cells that already have a row (default); --no-resume starts a new file")
    parser.add_argument("--retry-failed", action="store_true", help="re-run cells whose row is an error")
    parser.add_argument("--max-retries", type=int, default=3, help="Ray retries of a cell whose worker died")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plot", action="store_true", help="skip the D-P plot of the summary")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    return parser


def main(args) -> int:
    """Run ``dptheory sweep`` with parsed ``args``; returns the exit code (2 for a bad spec, 1 if a cell failed)."""
    try:
        spec = load_spec(args.spec)
        if args.out is not None:
            spec.out = Path(args.out)
        if args.num_cpus is not None and args.num_cpus < 1:
            raise SpecError(f"--num-cpus must be at least 1, got {args.num_cpus}")
        if args.dry_run:
            for c in expand_cells(spec):
                print(c["cell_id"], json.dumps({k: v for k, v in c.items() if k not in ("cell_id", "kind",
                                                                                      "metrics", "delay")}))
            return 0
        summary = run_sweep(spec, address=args.address, num_cpus=args.num_cpus, serial=args.serial,
                            resume=args.resume, retry_failed=args.retry_failed, max_retries=args.max_retries,
                            progress=not args.no_progress)
    except (SpecError, RuntimeError) as err:
        print(f"dptheory sweep: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        if err.name != "ray":
            raise
        print("dptheory sweep: Ray is not installed (pip install -e '.[sweep]'), or run the cells here with "
              "--serial", file=sys.stderr)
        return 2
    rows = read_results(spec.out)
    print(format_table(rows, spec.kind))
    print(f"{summary['cells']} cells: {summary['skipped']} already done, {summary['ran']} run now "
          f"({summary['failed']} failed); results in {spec.out}")
    if not args.no_plot:
        png = plot_dp(rows, spec.kind, spec.out.with_suffix(".png"))
        if png is not None:
            print(f"D-P plot: {png}")
    return 1 if any(r.get("status") != "ok" for r in rows) else 0
