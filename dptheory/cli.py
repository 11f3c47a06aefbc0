"""The ``dptheory`` command line: ``reproduce``, ``check``, ``traverse``, ``restore`` and ``sweep``.

Heavy imports happen inside each command, so ``dptheory --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "build_parser", "restore_parser", "restore_main"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


TRAVERSE_LEGEND = (
    "Columns: D_y = E[||X - X^||^2 | y], the mean squared error at the fixed measurement y; W2_y = the Wasserstein-2 "
    "distance from the law of the output X^ given y to the posterior p(x | y); gap_y = D_y - D*_y(W2_y), the height "
    "above the optimal per-measurement D-P curve at the same W2 (0 = on the curve). D, W2 and gap: the same over "
    "the joint law (y drawn from p(y); W2 to the prior, the joint optimal curve). NFE: denoiser calls per sample. "
    "Monte Carlo values carry +- one standard error."
)


def build_parser() -> argparse.ArgumentParser:
    from ._argparse import ArgumentParser
    from ._plain_text import plain

    parser = ArgumentParser(prog="dptheory", description=plain(__doc__.splitlines()[0]))
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("reproduce", add_help=False,
                   help="run every analysis (figures + sidecars) and write the claims report; "
                   "see: dptheory reproduce --help")

    p = sub.add_parser("restore", help="restore one image with a chosen task, backbone and solver")
    _restore_arguments(p)

    p = sub.add_parser("check", help="run every paper claim as a check and print the verdicts")
    p.add_argument("--quick", action="store_true", help="smaller grids and sample sizes (< 2 min)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument("--ids", nargs="+", help="run only these claim ids (e.g. WANG-1 MRPS-2)")
    p.add_argument("--list", action="store_true", help="list the claim ids and exit")
    p.add_argument("--verbose", action="store_true",
                   help="show the measured values in full, with each expectation and tolerance")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: the checks use small tensors, where threads only add "
                   "synchronisation)")

    p = sub.add_parser("traverse", help="measure a D-P curve for one solver knob on a worked problem",
                       description="Measure the distortion-perception point of a solver at each value of one knob, "
                       "on a worked problem: exact laws on the Gaussian problems (G2, G2post, Iso), Monte Carlo "
                       "with standard errors on the mixture B1.",
                       epilog=TRAVERSE_LEGEND + " Example: dptheory traverse --problem G2 --method map-rps "
                       "--knob t0 --values 0,50,200,1000")
    p.add_argument("--problem", default="G2", choices=["G2", "G2post", "Iso", "B1"],
                   help="worked problem: G2 (2-D Gaussian prior, A = [1, .5], sigma_y = .3, y = .7), G2post / Iso "
                   "(anisotropic / isotropic Gaussian posteriors), B1 (1-D two-mode mixture, denoising; Monte "
                   "Carlo) (default G2)")
    p.add_argument("--sigma-y", type=float, default=None, help="noise std for B1 (default 0.5)")
    p.add_argument("--y", type=float, default=None, help="measurement for B1 (default -0.6)")
    p.add_argument("--method", default="vsrd",
                   help="solver, as in dpt.solve: vsrd, map-rps, dps, ddpm, ddim, posterior, red-diff, vml-map "
                   "(default vsrd)")
    p.add_argument("--knob", default="lam",
                   help="the solver's keyword argument to sweep: lam (vsrd's variance scale in [0, 1]), t0 "
                   "(map-rps's re-noising step in [0, 1000]), zeta (dps's step size), eta (ddim), steps; "
                   "integer knobs (t0, steps, iters) are rounded (default lam)")
    p.add_argument("--values", type=_floats, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="comma-separated knob values, one D-P point each (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--norm", choices=["l2", "squared"], default=None,
                   help="dps only: l2 (the official unsquared norm; no closed-form law, so measured by Monte "
                   "Carlo) or squared (affine, exact law on Gaussian problems). Default: squared on the Gaussian "
                   "problems, l2 on B1")
    p.add_argument("--n", type=int, default=2000, help="Monte Carlo size per point (GMM problems)")
    p.add_argument("--steps", type=int, default=None, help="reverse steps (respaced); default every step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: the worked problems are small)")

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


def restore_parser() -> argparse.ArgumentParser:
    """The parser of ``dptheory restore`` on its own (``prog`` and description of the command)."""
    from ._argparse import ArgumentParser
    from ._plain_text import plain
    from .images import restore

    parser = ArgumentParser(prog="dptheory restore", description=plain(restore.__doc__.splitlines()[0]))
    return restore.add_arguments(parser)


def restore_main(argv=None) -> int:
    """``dptheory restore`` with ``argv`` (the arguments after ``restore``); argparse errors return exit code 2."""
    try:
        args = restore_parser().parse_args(argv)
    except SystemExit as err:
        return int(err.code or 0)
    return _cmd_restore(args)


def _cmd_check(args) -> int:
    from .claims import CLAIMS, run_claims
    from .claims.report import format_table, to_json

    if args.list:
        print("\n".join(CLAIMS))
        return 0
    import torch

    if not 1 <= args.threads <= 4096:  # as `dptheory reproduce`
        print(f"dptheory check: --threads must be an integer in [1, 4096], got {args.threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        results = run_claims(args.ids, quick=args.quick, progress=not args.json)
    except ValueError as err:
        print(f"dptheory check: {err}", file=sys.stderr)
        return 2
    print(to_json(results) if args.json else format_table(results, verbose=args.verbose))
    return 0 if all(r.passed for r in results) else 1


_INTEGER_KNOBS = ("t0", "t1", "steps", "iters", "inner_steps", "final_steps")


def _check_traverse_args(args) -> None:
    """Refuse what `traverse` would otherwise ignore or round silently (ValueError, one line)."""
    import math

    if args.problem != "B1" and (args.sigma_y is not None or args.y is not None):
        raise ValueError(f"--sigma-y and --y apply to --problem B1 only; {args.problem} fixes its own")
    if args.sigma_y is not None and not (math.isfinite(args.sigma_y) and args.sigma_y > 0):
        raise ValueError(f"--sigma-y must be a finite number > 0, got {args.sigma_y}")
    if args.y is not None and not math.isfinite(args.y):
        raise ValueError(f"--y must be a finite number, got {args.y}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be a positive integer (reverse steps), got {args.steps}")
    if args.steps is not None and args.method == "map-rps":
        raise ValueError("--steps does not apply to map-rps (its stage 2 runs every step from t0); sweep --knob t0")
    if args.knob in _INTEGER_KNOBS:
        bad = [v for v in args.values if not (math.isfinite(v) and v == int(v))]
        if bad:
            raise ValueError(f"--values: knob {args.knob} takes integer steps, got {bad[0]:g}")
    bad = [v for v in args.values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"--values must be finite numbers, got {bad[0]}")
    if not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be an integer in [0, 2^63), got {args.seed}")


def _cmd_traverse(args) -> int:
    import torch

    from .reference_problems import WORKED, b1
    from .traversal import traverse

    exact, note = None, None
    try:
        _check_traverse_args(args)
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        if args.problem == "B1":
            prob, y = b1(0.5 if args.sigma_y is None else args.sigma_y, -0.6 if args.y is None else args.y)
        else:
            prob, y = WORKED[args.problem]()
        values = [int(v) for v in args.values] if args.knob in _INTEGER_KNOBS else args.values
        knobs = {} if args.steps is None else {"steps": args.steps}
        if args.norm is not None and args.method != "dps":
            raise ValueError(f"--norm applies to --method dps only, not {args.method}")
        if args.method == "dps":
            knobs["norm"] = args.norm or ("squared" if prob.is_gaussian else "l2")
            if knobs["norm"] == "l2" and prob.is_gaussian:
                exact = False
                note = "dps with norm l2 has no closed-form law: measured by Monte Carlo (--norm squared is exact)"
            elif args.norm is None and prob.is_gaussian:
                note = ("dps with norm squared (its law is exact on a Gaussian problem); --norm l2, the official "
                        "unsquared form, is measured by Monte Carlo")
        res = traverse(prob, args.method, args.knob, values, y=y, n=args.n, progress=not args.json, exact=exact,
                       generator=torch.Generator().manual_seed(args.seed), **knobs)
    except (ValueError, TypeError) as err:
        print(f"dptheory traverse: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, default=float))
        return 0
    print(_traverse_table(res, args, note))
    return 0


def _traverse_table(res, args, note) -> str:
    """The ``traverse`` table: per knob value the per-measurement and joint points (+- one standard error when
    measured by Monte Carlo), then the column legend."""
    import textwrap

    def cell(value, se, fmt):
        return f"{value:{fmt}}" + (f"+-{se:<7.1e}" if not res.exact else "")

    w = 9 if res.exact else 18
    lines = [f"{args.method} over {args.knob} on {args.problem} ({'exact' if res.exact else 'Monte Carlo'}"
             + (f", n = {args.n} per point)" if not res.exact else ")")]
    if note:
        lines.append(note)
    lines.append(f"{args.knob:>8} | {'D_y':>{w}} {'W2_y':>{w}} {'gap_y':>9} | {'D':>{w}} {'W2':>{w}} {'gap':>9} | NFE")
    for v, pm, jt, k in zip(res.values, res.per_measurement, res.joint, res.nfe, strict=True):
        lines.append(
            f"{v:>8} | {cell(pm.distortion, pm.distortion_stderr, '9.4f')} "
            f"{cell(pm.perception, pm.perception_stderr, '9.4f')} {pm.gap:9.2e} | "
            f"{cell(jt.distortion, jt.distortion_stderr, '9.4f')} {cell(jt.perception, jt.perception_stderr, '9.4f')} "
            f"{jt.gap:9.2e} | {k}")
    lines.extend(textwrap.wrap(TRAVERSE_LEGEND, 110))
    return "\n".join(lines)


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


def console_main() -> int:
    """The ``dptheory`` console script and ``python -m dptheory``: :func:`main` with freed memory kept in the
    process (:func:`dptheory._malloc.keep_freed_memory`)."""
    from ._malloc import keep_freed_memory

    keep_freed_memory()
    return main()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(console_main())
