"""``fastloss report``: the main job on CPU defaults.

Runs the numerical-stability audit (``fastloss audit``) and then the
throughput benchmarks (``fastloss bench``), both with their default settings,
leaving ``reports/stability.*`` and ``reports/throughput-<machine>.*``.
Each step is the same code as its own subcommand; ``--quick`` passes
``--quick`` to the audit and ``--smoke`` to the benchmarks.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized: quick audit grid and one-shot benchmarks")
    parser.add_argument("--out", default="reports",
                        help="report directory (default: reports; e.g. a temporary directory "
                             "to leave the committed reports untouched)")


def run(args) -> int:
    from fastloss.audit import cli as audit_cli
    from fastloss.benchmark import cli as bench_cli

    status = 0
    start = time.perf_counter()
    for title, mod, argv in (
        ("audit", audit_cli, ["--out", args.out] + (["--quick"] if args.quick else [])),
        ("bench", bench_cli, ["--out-dir", args.out] + (["--smoke"] if args.quick else [])),
    ):
        p = argparse.ArgumentParser(prog=f"fastloss {title}")
        mod.add_arguments(p)
        t0 = time.perf_counter()
        print(f"== fastloss {title} {' '.join(argv)}", flush=True)
        rc = int(mod.run(p.parse_args(argv)) or 0)
        print(f"== fastloss {title}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        status = status or rc
    print(f"== fastloss report: done in {time.perf_counter() - start:.0f} s (exit {status}); "
          f"reports in {args.out}/", flush=True)
    return status
