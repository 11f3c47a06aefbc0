"""``dptheory reproduce [--quick] [--out DIR]``: every figure of ``analyses/`` and the claims report, in one run.

The analyses are gallery-style scripts in the repository's ``analyses/`` folder, next to the package
(``Path(dptheory.__file__).resolve().parent.parent / "analyses"``); they are not part of an installed wheel, so
this command needs a source checkout (``pip install -e .``). Each script exposes ``main(argv) -> int`` and is
run IN-PROCESS (loaded with importlib, called with ``--out DIR`` and, with ``--quick``, ``--quick``), so the heavy
imports happen once. A failing script is reported and the others still run.

Then the claims are run (:func:`dptheory.claims.run_claims`) and written as ``<out>/claims.md`` and
``<out>/claims.json``; ``<out>/reproduce.json`` records what ran, the time of each step and the claim summary,
plus what makes the run identifiable (:func:`run_identity`): one run id, the package version, the git commit, the
machine, the threads and the load, and the SHA-256 of every file the run wrote, so a test can check that the
committed figures all come from this one run.
The exit status is 0 when every analysis ran and every claim check met the toolkit's expectation, 1 otherwise,
and 2 when the ``analyses/`` folder cannot be found.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

__all__ = ["main", "build_parser", "analyses_dir", "find_analyses", "run_analysis"]


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


def run_analysis(script: Path, *, quick: bool, out: Path) -> float:
    """Import ``script`` as a module and call its ``main([--quick] --out out)``; returns the wall time (s).

    Raises whatever the script raises, and ``RuntimeError`` if its ``main`` returns a non-zero status.
    """
    name = f"dptheory_analysis_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    start = time.perf_counter()
    sys.modules[name] = module  # dataclasses and pickling need the module registered while it runs
    try:
        spec.loader.exec_module(module)
        if not callable(getattr(module, "main", None)):
            raise AttributeError(f"{script.name} has no main(argv) function")
        status = module.main([*(["--quick"] if quick else []), "--out", str(out)])
    finally:
        sys.modules.pop(name, None)
    if status:
        raise RuntimeError(f"{script.name}: main() returned {status}")
    return time.perf_counter() - start


def sha256_file(path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_identity(threads: int) -> dict:
    """What identifies a ``reproduce`` run: a run id (UTC start time + random suffix), dptheory's and torch's
    versions, the git commit of the checkout (``None`` outside git; ``dirty`` when tracked files differ), Python,
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
    status = git("status", "--porcelain", "--untracked-files=no")
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
    from ._help import plain

    parser = argparse.ArgumentParser(prog="dptheory reproduce", description=plain(__doc__.splitlines()[0]))
    parser.add_argument("--quick", action="store_true",
                        help="smaller grids and samples for the figures and the claims (~2 min instead of ~27)")
    parser.add_argument("--out", default=Path("figures"), type=Path, help="output directory (default: figures/)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these analyses (script names)")
    parser.add_argument("--no-claims", action="store_true", help="skip the claims report")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads during the run (default 1: every problem here is tiny, and "
                        "extra threads only add synchronisation; 2 threads made a loaded 2-core machine ~6x slower)")
    return parser


def _progress(items, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="fig")


def main(argv=None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"dptheory reproduce: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _reproduce(args)
    finally:
        torch.set_num_threads(threads)  # in-process callers get their setting back


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
    out.mkdir(parents=True, exist_ok=True)

    record = {"quick": args.quick, "out": str(out), "threads": args.threads,
              "only": sorted(s.stem for s in scripts) if args.only else None,
              **run_identity(args.threads), "analyses": {}, "claims": None}
    bar = _progress(scripts, "analyses")
    for script in bar:
        bar.set_postfix_str(script.stem)
        try:
            seconds = run_analysis(script, quick=args.quick, out=out)
            files = [str(out / f"{script.stem}.{ext}") for ext in ("png", "pdf", "json")]
            record["analyses"][script.stem] = {"ok": True, "seconds": seconds,
                                               "files": [f for f in files if Path(f).exists()],
                                               "sha256": {Path(f).name: sha256_file(f) for f in files
                                                          if Path(f).exists()}}
        except Exception as err:  # noqa: BLE001 - report and go on with the other figures
            record["analyses"][script.stem] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            bar.write(f"FAILED {script.stem}:\n{traceback.format_exc()}")
    analyses_seconds = time.perf_counter() - start

    results = []
    if not args.no_claims:
        from .claims import run_claims
        from .claims.report import to_json, to_markdown

        t_claims = time.perf_counter()
        results = run_claims(quick=args.quick, progress=True)
        (out / "claims.md").write_text(to_markdown(results) + "\n")
        (out / "claims.json").write_text(to_json(results) + "\n")
        record["claims"] = {
            "seconds": time.perf_counter() - t_claims,
            "passed": sum(r.passed for r in results), "total": len(results),
            "verdicts": dict(Counter(r.verdict for r in results)),
            "failed": [r.id for r in results if not r.passed],
            "sha256": {name: sha256_file(out / name) for name in ("claims.md", "claims.json")},
        }
    record["analyses_seconds"] = analyses_seconds
    record["seconds"] = time.perf_counter() - start
    import os

    record["machine"]["load_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    (out / "reproduce.json").write_text(json.dumps(record, indent=1) + "\n")

    ok = [k for k, v in record["analyses"].items() if v["ok"]]
    bad = [k for k, v in record["analyses"].items() if not v["ok"]]
    print()
    print(f"figures: {len(ok)}/{len(scripts)} analyses written to {out}/ ({analyses_seconds:.0f} s)")
    for name in ok:
        print(f"  {name:<20} {record['analyses'][name]['seconds']:6.1f} s  {name}.png .pdf .json")
    for name in bad:
        print(f"  {name:<20} FAILED: {record['analyses'][name]['error']}")
    if record["claims"] is not None:
        c = record["claims"]
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(c["verdicts"].items()))
        print(f"claims: {c['passed']}/{c['total']} checks met the toolkit's expectation; paper verdicts: {verdicts} "
              f"({c['seconds']:.0f} s; {out}/claims.md, {out}/claims.json)")
        if c["failed"]:
            print(f"  checks not met: {', '.join(c['failed'])}")
    print(f"wall time: {record['seconds']:.0f} s ({'quick' if args.quick else 'full'} run)")
    claims_ok = record["claims"] is None or not record["claims"]["failed"]
    return 0 if not bad and claims_ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
