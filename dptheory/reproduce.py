"""``dptheory reproduce [--quick] [--out DIR]``: every figure of ``analyses/`` and the claims report, in one run.

The analyses live in ``analyses/`` next to the package (a source checkout, ``pip install -e .``); each exposes
``main(argv) -> int``. ``--jobs 1`` runs them in this process one after the other; more (default: the usable cores)
run figures, figure parts and the claims in worker processes, longest first (:mod:`dptheory._reproduce_pool`).
A failing script is reported and the others still run. :func:`dptheory.claims.run_claims` writes ``<out>/claims.md``
and ``claims.json``; ``<out>/reproduce.json`` records what ran, the time of each step, the claim summary and the
run's identity (:func:`run_identity`: run id, version, git commit, machine, threads, load and the SHA-256 of every
file written, so a test can check that the committed figures come from one run).

Exit status: 0 when every analysis ran and every claim met the toolkit's expectation, 1 otherwise, 2 without
``analyses/`` or with an invalid option, 130 after Ctrl-C (also when a library swallowed the ``KeyboardInterrupt``).
Files are written atomically; ``reproduce.json`` at the start (``"status": "running"``), after every figure, and at
the end (``"ok"``, ``"failed"`` or ``"interrupted"``). ``--resume`` skips figures already written by this version.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

from .threads import usable_cores

__all__ = ["main", "build_parser", "analyses_dir", "find_analyses", "load_analysis", "run_analysis"]


def analyses_dir() -> Path:
    """The ``analyses/`` folder of the source checkout this package was imported from."""
    import dptheory

    return Path(dptheory.__file__).resolve().parent.parent / "analyses"


def find_analyses(folder: Path | None = None) -> list[Path]:
    """The analysis scripts: every ``*.py`` in ``folder`` not starting with ``_``, sorted by name.

    Raises:
        FileNotFoundError: the folder is missing or holds no script (e.g. a non-editable install).
    """
    folder = analyses_dir() if folder is None else Path(folder)
    scripts = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_")) if folder.is_dir() else []
    if not scripts:
        raise FileNotFoundError(
            f"no analysis scripts found in {folder}. 'dptheory reproduce' runs the scripts of the repository's "
            "analyses/ folder, which an installed wheel does not contain: clone the repository and install it "
            "with 'pip install -e .[figures]', then run 'dptheory reproduce' again."
        )
    return scripts


@contextlib.contextmanager
def load_analysis(script: Path):
    """Import ``script`` as a module, registered in ``sys.modules`` while the ``with`` block runs (dataclasses and
    pickling need it)."""
    name = f"dptheory_analysis_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def run_analysis(script: Path, *, quick: bool, out: Path, parts: dict | None = None, seconds: float = 0.0) -> float:
    """Import ``script`` as a module and call its ``main([--quick] --out out)``; returns the wall time (s).

    ``parts`` (``{part: compute_part(quick, part)}``, computed elsewhere, e.g. by the ``--jobs`` pool, in
    ``seconds``): the figure is drawn from ``combine(quick, parts)`` instead of being computed.
    Raises whatever the script raises, and ``RuntimeError`` if its ``main`` returns a non-zero status.
    """
    start = time.perf_counter()
    with load_analysis(script) as module:
        if not callable(getattr(module, "main", None)):
            raise AttributeError(f"{script.name} has no main(argv) function")
        argv = [*(["--quick"] if quick else []), "--out", str(out)]
        if parts is None:
            status = module.main(argv)
        else:
            status = module.main(argv, data=module.combine(quick, parts), seconds=seconds)
    if status:
        raise RuntimeError(f"{script.name}: main() returned {status}")
    return time.perf_counter() - start


def sha256_file(path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_identity(threads: int, out: Path | None = None) -> dict:
    """What identifies a ``reproduce`` run: a run id (UTC start time + random suffix), dptheory's and torch's
    versions, the git commit of the checkout (``None`` outside git; ``dirty`` when tracked files other than the
    run's own outputs under ``out`` differ), Python,
    the machine (platform, CPU count), the torch threads and the 1-minute load average at the start."""
    import os
    import platform
    import subprocess
    import uuid
    from datetime import datetime, timezone

    import torch

    import dptheory

    root = analyses_dir().parent

    def git(*cmd):
        try:
            return subprocess.run(["git", "-C", str(root), *cmd], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    # the code's state, not the outputs: files under ``out`` (figures/ by default) are this run's own products
    exclude = []
    if out is not None:
        try:
            exclude = [f":(exclude){Path(out).resolve().relative_to(root.resolve()).as_posix()}"]
        except ValueError:  # out lies outside the checkout
            exclude = []
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *exclude)
    return {
        "run_id": f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}",
        "version": dptheory.__version__,
        "torch": torch.__version__,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                    "threads": threads,
                    "load_1min_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
    }


def build_parser() -> argparse.ArgumentParser:
    from ._argparse import ArgumentParser
    from ._plain_text import plain

    parser = ArgumentParser(prog="dptheory reproduce", description=plain(__doc__.splitlines()[0]))
    parser.add_argument("--quick", action="store_true",
                        help="smaller grids and samples for the figures and the claims (~2 min instead of ~13 on 2 "
                        "cores)")
    parser.add_argument("--out", default=Path("figures"), type=Path, help="output directory (default: figures/)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these analyses (script names)")
    parser.add_argument("--no-claims", action="store_true", help="skip the claims report")
    parser.add_argument("--resume", action="store_true",
                        help="skip figures whose .png, .pdf and .json sidecar exist from the same version and --quick "
                        "setting (e.g. after an interrupted run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads of each job (default 1: every problem here is tiny, and "
                        "extra threads only add synchronisation; 2 threads made a loaded 2-core machine ~6x slower)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="figures (and parts of the slowest figure, and the claims report) run at once in "
                        "separate processes, longest first (default: the usable CPU cores, here "
                        f"{usable_cores()}; 1 runs everything in this process, one after the other)")
    return parser


def _progress(items, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="fig")


def main(argv=None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    if not 1 <= args.threads <= 4096:
        print(f"dptheory reproduce: --threads must be an integer in [1, 4096], got {args.threads}", file=sys.stderr)
        return 2
    if args.jobs is None:
        args.jobs = usable_cores()
    if not 1 <= args.jobs <= 1024:
        print(f"dptheory reproduce: --jobs must be an integer in [1, 1024], got {args.jobs}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _reproduce(args)
    finally:
        torch.set_num_threads(threads)  # in-process callers get their setting back


def _resumable(out: Path, stem: str, quick: bool) -> bool:
    """Whether ``--resume`` may skip figure ``stem``: its three files exist and its sidecar is from this version
    with the same ``--quick`` setting."""
    import dptheory

    files = [out / f"{stem}.{ext}" for ext in ("png", "pdf", "json")]
    if not all(f.is_file() for f in files):
        return False
    try:
        side = json.loads(files[2].read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(side, dict) and side.get("figure") == stem and side.get("version") == dptheory.__version__
            and side.get("quick") == bool(quick))


class _InterruptFlag:
    """A SIGINT handler that records the interrupt before raising ``KeyboardInterrupt``, so that an interrupt a
    library swallowed (e.g. in a weakref callback, which only prints it) is still seen: :meth:`check` re-raises."""

    def __init__(self):
        self.hit = False
        self._previous = None

    def _handler(self, signum, frame):
        self.hit = True
        raise KeyboardInterrupt

    def __enter__(self):
        try:
            if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # e.g. under nohup: leave it ignored
                self._previous = None
            else:
                self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: signals cannot be handled here
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def check(self):
        if self.hit:
            raise KeyboardInterrupt


def write_record(out: Path, record: dict) -> None:
    from ._atomic import write_text

    write_text(out / "reproduce.json", json.dumps(record, indent=1) + "\n")


def _reproduce(args) -> int:
    start = time.perf_counter()
    try:
        scripts = find_analyses()
    except FileNotFoundError as err:
        print(f"dptheory reproduce: {err}", file=sys.stderr)
        return 2
    if args.only:
        wanted = {n.removesuffix(".py") for n in args.only}
        unknown = wanted - {s.stem for s in scripts}
        if unknown:
            print(f"dptheory reproduce: unknown analyses {sorted(unknown)}; known: "
                  f"{', '.join(s.stem for s in scripts)}", file=sys.stderr)
            return 2
        scripts = [s for s in scripts if s.stem in wanted]
    out = args.out
    # the longest units go first in the pool: times from the last run into ``out``, else the committed run's
    previous = _previous_seconds(out) or _previous_seconds(analyses_dir().parent / "figures")
    try:
        out.mkdir(parents=True, exist_ok=True)
        record = {"status": "running", "quick": args.quick, "out": str(out), "threads": args.threads, "jobs": args.jobs,
                  "resume": bool(getattr(args, "resume", False)), "completed": [], "analyses": {}, "claims": None}
        write_record(out, record)  # replaces an old record at once: a re-run never shows the old "ok"
    except OSError as err:
        print(f"dptheory reproduce: cannot write to --out {out}: {err}", file=sys.stderr)
        return 2
    with _InterruptFlag() as flag:
        try:
            if args.jobs > 1:
                from ._reproduce_pool import run_all_in_pool

                return run_all_in_pool(args, scripts, out, record, start, flag, previous)
            return _run_all(args, scripts, out, record, start, flag)
        except KeyboardInterrupt:
            record["status"] = "interrupted"
            record["seconds"] = time.perf_counter() - start
            write_record(out, record)
            print(f"\ndptheory reproduce: interrupted; {len(record['completed'])}/{len(scripts)} figures completed "
                  f"(recorded in {out / 'reproduce.json'}; rerun with --resume to skip them)", file=sys.stderr)
            return 130
        except BaseException as err:
            record["status"] = "failed"
            record["error"] = f"{type(err).__name__}: {err}"
            record["seconds"] = time.perf_counter() - start
            try:
                write_record(out, record)
            except OSError:
                pass
            raise


def _run_all(args, scripts, out: Path, record: dict, start: float, flag: _InterruptFlag) -> int:
    record.update(_identity(args, scripts, out))
    bar = _progress(scripts, "analyses")
    for script in bar:
        bar.set_postfix_str(script.stem)
        if getattr(args, "resume", False) and _resumable(out, script.stem, args.quick):
            resumed(record, out, script.stem)
            write_record(out, record)
            continue
        try:
            seconds = run_analysis(script, quick=args.quick, out=out)
            record_figure(record, out, script.stem, seconds)
        except Exception as err:  # noqa: BLE001 - report and go on with the other figures
            record["analyses"][script.stem] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            bar.write(f"FAILED {script.stem}:\n{traceback.format_exc()}")
        flag.check()  # an interrupt swallowed inside the analysis still stops the run
        write_record(out, record)
    analyses_seconds = time.perf_counter() - start
    if not args.no_claims:
        from .claims import run_claims

        t_claims = time.perf_counter()
        results = run_claims(quick=args.quick, progress=True)
        flag.check()
        record_claims(record, out, results, time.perf_counter() - t_claims)
    return finish(args, scripts, out, record, start, analyses_seconds)


def _identity(args, scripts, out: Path) -> dict:
    return {"only": sorted(s.stem for s in scripts) if getattr(args, "only", None) else None,
            **run_identity(args.threads, out)}


def resumed(record: dict, out: Path, stem: str) -> None:
    """Record figure ``stem`` as skipped by ``--resume``."""
    record["analyses"][stem] = {"ok": True, "resumed": True, "seconds": 0.0,
                                "files": [str(out / f"{stem}.{e}") for e in ("png", "pdf", "json")]}
    record["completed"].append(stem)


def record_figure(record: dict, out: Path, stem: str, seconds: float, **extra) -> None:
    """Record figure ``stem`` as written, with the SHA-256 of its files."""
    files = [str(out / f"{stem}.{ext}") for ext in ("png", "pdf", "json")]
    record["analyses"][stem] = {"ok": True, "seconds": seconds, **extra,
                                "files": [f for f in files if Path(f).exists()],
                                "sha256": {Path(f).name: sha256_file(f) for f in files if Path(f).exists()}}
    record["completed"].append(stem)


def record_claims(record: dict, out: Path, results, seconds: float) -> None:
    """Write ``claims.md`` and ``claims.json`` and record their summary."""
    from ._atomic import write_text
    from .claims.report import to_json, to_markdown

    write_text(out / "claims.md", to_markdown(results) + "\n")
    write_text(out / "claims.json", to_json(results) + "\n")
    record["claims"] = {
        "seconds": seconds,
        "passed": sum(r.passed for r in results), "total": len(results),
        "verdicts": dict(Counter(r.verdict for r in results)),
        "failed": [r.id for r in results if not r.passed],
        "sha256": {name: sha256_file(out / name) for name in ("claims.md", "claims.json")},
    }


def finish(args, scripts, out: Path, record: dict, start: float, analyses_seconds: float) -> int:
    """Close the record (status, times, load) and print the summary; the exit status."""
    record["analyses_seconds"] = analyses_seconds
    record["seconds"] = time.perf_counter() - start
    record["machine"]["load_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    ok = [k for k, v in record["analyses"].items() if v["ok"]]
    bad = [k for k, v in record["analyses"].items() if not v["ok"]]
    claims_ok = record["claims"] is None or not record["claims"]["failed"]
    record["status"] = "ok" if not bad and claims_ok else "failed"
    write_record(out, record)

    print()
    print(f"figures: {len(ok)}/{len(scripts)} analyses written to {out}/ ({analyses_seconds:.0f} s)")
    for name in ok:
        resumed = " (resumed)" if record["analyses"][name].get("resumed") else ""
        print(f"  {name:<20} {record['analyses'][name]['seconds']:6.1f} s  {name}.png .pdf .json{resumed}")
    for name in bad:
        print(f"  {name:<20} FAILED: {record['analyses'][name]['error']}")
    if record["claims"] is not None:
        c = record["claims"]
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(c["verdicts"].items()))
        print(f"claims: {c['passed']}/{c['total']} checks met the toolkit's expectation; paper verdicts: {verdicts} "
              f"({c['seconds']:.0f} s; {out}/claims.md, {out}/claims.json)")
        if c["failed"]:
            print(f"  checks not met: {', '.join(c['failed'])}")
    jobs = f", {args.jobs} jobs" if getattr(args, "jobs", 1) > 1 else ""
    print(f"wall time: {record['seconds']:.0f} s ({'quick' if args.quick else 'full'} run{jobs})")
    return 0 if not bad and claims_ok else 1


def _previous_seconds(out: Path) -> dict:
    """Seconds per figure, per figure part and for the claims in the last ``reproduce.json`` under ``out`` (the
    pool runs the longest units first); ``{}`` without one."""
    try:
        old = json.loads((Path(out) / "reproduce.json").read_text())
        times = {k: float(v["seconds"]) for k, v in old["analyses"].items() if v.get("ok") and not v.get("resumed")}
        for k, v in old["analyses"].items():
            for part, sec in (v.get("parts") or {}).items():
                times[f"{k}[{part}]"] = float(sec)
        if old.get("claims"):
            times["claims"] = float(old["claims"]["seconds"])
        return times
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
