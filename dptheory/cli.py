"""The ``dptheory`` command line: ``reproduce``, ``check``, ``traverse``, ``restore`` and ``sweep``.

Heavy imports happen inside each command, so ``dptheory --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "build_parser"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dptheory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("reproduce", add_help=False,
                   help="run every analysis (figures + sidecars) and write the claims report; "
                   "see `dptheory reproduce --help`")

    p = sub.add_parser("restore", help="restore one image with a chosen task, backbone and solver")
    _restore_arguments(p)

    p = sub.add_parser("check", help="run every paper claim as a check and print the verdicts")
    p.add_argument("--quick", action="store_true", help="smaller grids and sample sizes (< 2 min)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument("--ids", nargs="+", help="run only these claim ids (e.g. WANG-1 MRPS-2)")
    p.add_argument("--list", action="store_true", help="list the claim ids and exit")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: the checks use small tensors, where threads only add "
                   "synchronisation)")

    p = sub.add_parser("traverse", help="measure a D-P curve for one solver knob on a worked problem")
    p.add_argument("--problem", default="G2", choices=["G2", "G2post", "Iso", "B1"])
    p.add_argument("--sigma-y", type=float, default=None, help="noise std for B1 (default 0.5)")
    p.add_argument("--y", type=float, default=None, help="measurement for B1 (default -0.6)")
    p.add_argument("--method", default="vsrd")
    p.add_argument("--knob", default="lam")
    p.add_argument("--values", type=_floats, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--n", type=int, default=2000, help="Monte Carlo size per point (GMM problems)")
    p.add_argument("--steps", type=int, default=None, help="reverse steps (respaced); default every step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("sweep", help="run a grid of solver runs from a TOML spec on Ray; one JSONL row per cell")
    _sweep_arguments(p)
    return parser


def _sweep_arguments(parser) -> None:
    from .sweep import add_arguments

    add_arguments(parser)


def _restore_arguments(parser) -> None:
    from .images.restore import add_arguments

    add_arguments(parser)


def _cmd_restore(args) -> int:
    from .images.restore import run

    return run(args)


def _cmd_check(args) -> int:
    from .claims import CLAIMS, run_claims
    from .claims.report import format_table, to_json

    if args.list:
        print("\n".join(CLAIMS))
        return 0
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        results = run_claims(args.ids, quick=args.quick, progress=not args.json)
    except ValueError as err:
        print(f"dptheory check: {err}", file=sys.stderr)
        return 2
    print(to_json(results) if args.json else format_table(results))
    return 0 if all(r.passed for r in results) else 1


def _cmd_traverse(args) -> int:
    import torch

    from .traversal import traverse
    from .worked import WORKED, b1

    if args.problem == "B1":
        prob, y = b1(0.5 if args.sigma_y is None else args.sigma_y, -0.6 if args.y is None else args.y)
    else:
        prob, y = WORKED[args.problem]()
    values = [int(v) for v in args.values] if args.knob in ("t0", "steps", "iters") else args.values
    knobs = {} if args.steps is None or args.method == "map-rps" else {"steps": args.steps}
    try:
        res = traverse(prob, args.method, args.knob, values, y=y, n=args.n, progress=not args.json,
                       generator=torch.Generator().manual_seed(args.seed), **knobs)
    except (ValueError, TypeError) as err:
        print(f"dptheory traverse: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, default=float))
        return 0
    print(f"{args.method} over {args.knob} on {args.problem} ({'exact' if res.exact else 'Monte Carlo'})")
    print(f"{args.knob:>8} | {'D_y':>9} {'W2_y':>9} {'gap_y':>9} | {'D':>9} {'W2':>9} {'gap':>9} | NFE")
    for v, pm, jt, k in zip(res.values, res.per_measurement, res.joint, res.nfe, strict=True):
        print(f"{v:>8} | {pm.distortion:9.4f} {pm.perception:9.4f} {pm.gap:9.2e} | "
              f"{jt.distortion:9.4f} {jt.perception:9.4f} {jt.gap:9.2e} | {k}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "reproduce":  # the reproduce runner owns its options (--quick, --out, --only, ...)
        from .reproduce import main as reproduce_main

        return reproduce_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "restore":
        return _cmd_restore(args)
    if args.command == "check":
        return _cmd_check(args)
    if args.command == "traverse":
        return _cmd_traverse(args)
    if args.command == "sweep":
        from .sweep import main as sweep_main

        return sweep_main(args)
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
