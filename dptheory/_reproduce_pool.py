"""The worker pool of ``dptheory reproduce --jobs N``: every figure (or figure part) and the claims report run as
units in ``N`` spawned processes, each at ``--threads`` torch threads, longest first.

A unit is ``("figure", script)`` (the script's ``main``), ``("part", script, part)`` (the script's
``compute_part(quick, part)``, for an analysis that defines ``parts(quick)``; the parent then calls
``combine(quick, results)`` and ``main(argv, data=..., seconds=...)`` to draw it) or ``("claims",)``. Each unit's
stdout and stderr (its progress bars) go to a log file; the parent shows one bar over units with the last line of
every running unit's log. Workers ignore SIGINT: the parent catches Ctrl-C and terminates the pool. A worker whose
parent dies without that chance (SIGTERM, SIGKILL) ends itself within a second, so no stray worker keeps computing
and writing into the logs and figures of a later run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import NamedTuple

__all__ = ["Unit", "init_worker", "run_unit", "log_tail", "run_all_in_pool"]


class Unit(NamedTuple):
    """One unit of work: ``kind`` in ``figure``, ``part``, ``claims``; ``script`` a path (``None`` for the claims);
    ``part`` the part of a split figure."""

    kind: str
    script: str | None = None
    part: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "claims":
            return "claims"
        stem = Path(self.script).stem
        return stem if self.part is None else f"{stem}[{self.part}]"


def init_worker(threads: int) -> None:
    """Pool initializer: ignore SIGINT (the parent stops the pool), keep freed memory in the process
    (:mod:`dptheory._malloc`) and set torch's intra-op threads."""
    import torch

    from ._malloc import keep_freed_memory

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True, name="exit-with-parent").start()
    keep_freed_memory()
    torch.set_num_threads(threads)


def exit_with_parent(parent: int, every: float = 0.5) -> None:
    """Poll ``os.getppid()`` every ``every`` seconds and end the process (``os._exit(1)``) once it is no longer
    ``parent``: a dead parent's children are re-parented, so a killed ``reproduce`` leaves no worker behind."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


@contextlib.contextmanager
def _logged(log: Path):
    """Send ``sys.stdout`` and ``sys.stderr`` to ``log`` (line-buffered) for the duration."""
    with open(log, "w", buffering=1, encoding="utf-8") as fh:
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        try:
            yield
        finally:
            sys.stdout, sys.stderr = old


def run_unit(unit: Unit, quick: bool, out: str, log: str) -> dict:
    """Run one unit in a worker; returns ``{"ok", "seconds", ...}``, never raises (an exception, including
    ``KeyboardInterrupt`` from the unit itself, comes back as ``error`` / ``interrupted`` with its traceback)."""
    from .reproduce import load_analysis, run_analysis

    start = time.perf_counter()
    try:
        with _logged(Path(log)):
            if unit.kind == "figure":
                run_analysis(Path(unit.script), quick=quick, out=Path(out))
                return {"ok": True, "seconds": time.perf_counter() - start}
            if unit.kind == "part":
                with load_analysis(Path(unit.script)) as module:
                    data = module.compute_part(quick, unit.part)
                return {"ok": True, "seconds": time.perf_counter() - start, "data": data}
            from .claims import run_claims

            results = run_claims(quick=quick, progress=True)
            return {"ok": True, "seconds": time.perf_counter() - start, "results": results}
    except KeyboardInterrupt:
        return {"ok": False, "interrupted": True, "seconds": time.perf_counter() - start,
                "error": "KeyboardInterrupt", "traceback": traceback.format_exc()}
    except Exception as err:  # noqa: BLE001 - reported by the parent, the other units go on
        return {"ok": False, "seconds": time.perf_counter() - start, "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()}


def log_tail(log: Path) -> str:
    """The state of a running unit from its log: the percentage and count of its last progress bar (bars redraw
    with ``\\r``), or ``""``."""
    import re

    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 400))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [s for s in text.replace("\r", "\n").split("\n") if s.strip()]
    match = re.search(r"(\d+)%\|.*?\| *(\d+/\d+)", lines[-1]) if lines else None
    return f"{match.group(1)}% ({match.group(2)})" if match else ""


def _cost(unit: Unit, previous: dict, n_parts: dict) -> float:
    """The expected seconds of ``unit`` from the last run (a part without a record: its figure's time over the
    parts; never seen: parts first, as only the slowest figures are split)."""
    if unit.label in previous:
        return previous[unit.label]
    if unit.kind == "part":
        stem = Path(unit.script).stem
        return previous[stem] / n_parts[stem] if stem in previous else float("inf")
    return 0.0


def _plan(args, scripts, out: Path, record: dict, previous: dict) -> tuple[list, dict]:
    """The units to run, longest first, and ``{stem: [parts]}`` of the split figures (resumed figures are
    recorded here; a script whose ``parts`` fails is recorded as failed)."""
    from .reproduce import _resumable, load_analysis, resumed

    units, parts = [], {}
    for script in scripts:
        if getattr(args, "resume", False) and _resumable(out, script.stem, args.quick):
            resumed(record, out, script.stem)
            continue
        try:
            with load_analysis(script) as module:
                split = list(module.parts(args.quick)) if callable(getattr(module, "parts", None)) else []
        except Exception as err:  # noqa: BLE001 - report it, run the others
            record["analyses"][script.stem] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            continue
        if split:
            parts[script.stem] = split
            units += [Unit("part", str(script), p) for p in split]
        else:
            units.append(Unit("figure", str(script)))
    if not args.no_claims:
        units.append(Unit("claims"))
    n_parts = {k: len(v) for k, v in parts.items()}
    return sorted(units, key=lambda u: -_cost(u, previous, n_parts)), parts


def _draw(args, script: Path, out: Path, record: dict, results: dict, split: list) -> None:
    """Combine the parts of a split figure in this process and draw it (:func:`~dptheory.reproduce.run_analysis`
    with the parts' data)."""
    from .reproduce import record_figure, run_analysis

    seconds = {p: results[p]["seconds"] for p in split}
    total = sum(seconds.values())
    drawn = run_analysis(script, quick=args.quick, out=out, parts={p: results[p]["data"] for p in split},
                         seconds=total)
    record_figure(record, out, script.stem, total + drawn, parts=seconds)


def run_all_in_pool(args, scripts, out: Path, record: dict, start: float, flag, previous: dict) -> int:
    """``dptheory reproduce`` with ``--jobs`` > 1 (module docstring); the record and summary as in the
    one-process run, with ``completed`` in script order and each split figure's ``parts`` seconds."""
    import multiprocessing
    import shutil
    import tempfile

    from tqdm.auto import tqdm

    from .reproduce import _identity, finish, record_claims, record_figure, write_record

    record.update(_identity(args, scripts, out))
    units, parts = _plan(args, scripts, out, record, previous)
    write_record(out, record)
    by_stem = {s.stem: s for s in scripts}
    part_results: dict = {stem: {} for stem in parts}
    logs = Path(tempfile.mkdtemp(prefix="dptheory-reproduce-"))
    analyses_done = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    with ctx.Pool(max(1, min(args.jobs, len(units))), initializer=init_worker, initargs=(args.threads,)) as pool, \
            tqdm(total=len(units), desc=f"analyses ({args.jobs} jobs)", unit="unit") as bar:
        running, shown, drawn = {}, None, 0.0
        for i, unit in enumerate(units):
            log = logs / f"{i:02d}-{unit.label}.log"
            running[unit] = (pool.apply_async(run_unit, (unit, args.quick, str(out), str(log))), log)
        while running:
            flag.check()
            finished = [u for u, (res, _) in running.items() if res.ready()]
            for unit in finished:
                res, log = running.pop(unit)
                result = res.get()
                bar.update(1)
                if result.get("interrupted"):
                    raise KeyboardInterrupt
                if not result["ok"]:
                    bar.write(f"FAILED {unit.label}:\n{result['traceback']}(log: {log})")
                if unit.kind == "claims":
                    if result["ok"]:
                        record_claims(record, out, result["results"], result["seconds"])
                    else:
                        raise RuntimeError(f"the claims report failed: {result['error']}")
                    continue
                stem = Path(unit.script).stem
                if unit.kind == "figure":
                    if result["ok"]:
                        record_figure(record, out, stem, result["seconds"])
                    else:
                        record["analyses"][stem] = {"ok": False, "error": result["error"]}
                else:
                    part_results[stem][unit.part] = result
                    if len(part_results[stem]) == len(parts[stem]):
                        bad = [r["error"] for r in part_results[stem].values() if not r["ok"]]
                        try:
                            if bad:
                                raise RuntimeError(f"part failed: {bad[0]}")
                            _draw(args, by_stem[stem], out, record, part_results.pop(stem), parts[stem])
                        except Exception as err:  # noqa: BLE001 - report it, the others go on
                            record["analyses"][stem] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
                            if not bad:
                                bar.write(f"FAILED {stem}:\n{traceback.format_exc()}")
                analyses_done = time.perf_counter()  # the last figure's end (the claims may still run)
                write_record(out, record)
            if finished:
                continue
            state = ", ".join(f"{u.label} {log_tail(log)}".strip() for u, (res, log) in running.items() if log.exists())
            if state != shown or time.perf_counter() - drawn > 10:  # redraw on news, else every 10 s (elapsed)
                bar.set_postfix_str(state, refresh=True)
                shown, drawn = state, time.perf_counter()
            time.sleep(0.5)
        pool.close()
        pool.join()
    order = {s.stem: i for i, s in enumerate(scripts)}
    record["completed"].sort(key=order.get)
    record["analyses"] = dict(sorted(record["analyses"].items(), key=lambda kv: order.get(kv[0], len(order))))
    if all(v["ok"] for v in record["analyses"].values()):
        shutil.rmtree(logs, ignore_errors=True)  # kept after a failure: the FAILED message names the log
    return finish(args, scripts, out, record, start, analyses_done - start)
