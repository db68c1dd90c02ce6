"""``fastloss audit``: the numerical-stability audit from the command line.

    fastloss audit                       # full grids -> reports/stability.{md,json,png}
    fastloss audit --quick               # CI-sized grids (under a minute) -> reports/quick/
                                         # (markdown and JSON; --plots for the PNGs too)
    fastloss audit --loss mse,huber --dtype float32 --impl fastloss-cpu,torch
    fastloss audit --quick --fail-over 2 # exit 1 if a fastloss result is off by > 2 ULP
    fastloss audit --scheduler tcp://10.0.0.5:8786   # the oracle on a Dask cluster

Exit status: 0, or 1 when ``--fail-over ULP`` is given and a fastloss
implementation (CPU or CUDA) has a result more than ULP x (the problem's
condition number, 1 where it is well conditioned) ULPs from the exact value,
the accuracy policy of DESIGN.md; a NaN or a wrong infinity always fails.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time


def _csv(s: str) -> list[str]:
    return [t.strip() for t in s.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n\n", 1)[1]
    p.add_argument("--quick", action="store_true",
                   help="CI-sized grids (under a minute); output in OUT/quick unless --out is given")
    p.add_argument("--loss", type=_csv, action="extend", metavar="NAME[,NAME]",
                   help="losses to audit (default: every loss the oracle covers)")
    p.add_argument("--dtype", type=_csv, action="extend", metavar="float32|float64",
                   help="dtypes (default: float32,float64)")
    p.add_argument("--impl", type=_csv, action="extend", metavar="IMPL[,IMPL]",
                   help="implementations: fastloss-cpu, fastloss-cuda, numpy, torch, jax, "
                        "torchvision, tensorflow, sklearn (default: all; missing libraries are "
                        "skipped)")
    p.add_argument("--fail-over", type=float, metavar="ULP",
                   help="exit 1 if a fastloss result is more than ULP x condition number ULPs "
                        "from the exact value (NaN and wrong infinities always count)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the mpmath oracle on this Dask distributed scheduler "
                        "(e.g. tcp://host:8786) instead of local processes")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local oracle worker processes (default: CPU count)")
    p.add_argument("--out", metavar="DIR", help="report directory (default: reports)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the oracle's values (cache: $FASTLOSS_CACHE or ~/.cache/fastloss)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--plots", action="store_true",
                   help="write the PNG plots with --quick too (by default --quick writes none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cuda-sample", type=int, metavar="N",
                   help="elements per grid block under the CUDA simulator (no GPU); "
                        "default 48, 12 with --quick")
    p.add_argument("--oracle", default="fastloss.reference", help=argparse.SUPPRESS)


def run(args) -> int:
    from fastloss.audit import core, report

    dtypes = args.dtype or list(core.DTYPES)
    for d in dtypes:
        if d not in core.DTYPES:
            print(f"--dtype: must be float32 or float64; got {d!r}", file=sys.stderr)
            return 2
    out = pathlib.Path(args.out) if args.out else (
        pathlib.Path("reports") / "quick" if args.quick else pathlib.Path("reports"))
    t0 = time.perf_counter()
    try:
        result = core.audit(
            losses=args.loss, dtypes=dtypes, impls=args.impl,
            size="quick" if args.quick else "full", workers=args.workers,
            scheduler=args.scheduler, oracle=args.oracle, use_cache=not args.no_cache,
            progress=not args.no_progress and sys.stderr.isatty(), cuda_sample=args.cuda_sample or (12 if args.quick else 48),
        )
    except ValueError as e:
        print(f"fastloss audit: {e}", file=sys.stderr)
        return 2
    plots = not args.no_plots and (args.plots or not args.quick)
    files = report.write_all(result, out, plots=plots)
    print(_table(result))
    print(report.headline(result))
    print(f"wrote {', '.join(str(f) for f in files)} in {time.perf_counter() - t0:.1f} s")
    if args.fail_over is not None:
        bad = result.fastloss_violations(args.fail_over)
        if bad:
            print(f"FAIL: {len(bad)} fastloss result group(s) over {args.fail_over:g} ULP "
                  "x condition:", file=sys.stderr)
            for loss, impl, dt, kind, m in bad:
                print(f"  {loss} {impl} {dt} {kind}: max {report.fmt_ulp(m)} ULP/condition",
                      file=sys.stderr)
            return 1
        print(f"OK: every fastloss result within {args.fail_over:g} ULP x condition")
    return 0


def _table(result) -> str:
    from fastloss.audit.report import fmt_ulp

    s = result.report["summary"]
    impls = list(s["overall"])
    w = max([len(n) for n in s["per_loss"]] + [4])
    lines = ["worst ULP [/ worst ULP divided by condition] (NaN/inf errors)",
             " " * w + "".join(f"{i:>22}" for i in impls)]
    for loss, row in s["per_loss"].items():
        cells = []
        for i in impls:
            c = row.get(i)
            cells.append("-" if c is None else fmt_ulp(c["max_ulp"]) + (
                f" /{fmt_ulp(c['max_ulp_cond'])}" if c["max_ulp_cond"] != c["max_ulp"] else "")
                + (f" ({c['nonfinite_errors']})" if c["nonfinite_errors"] else ""))
        lines.append(f"{loss:<{w}}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)
