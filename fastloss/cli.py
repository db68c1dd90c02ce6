"""The ``fastloss`` command: ``demo``, ``audit``, ``bench`` and ``report``.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "demo": ("fastloss.demo", "print every loss on a small input, checked against mpmath"),
    "audit": ("fastloss.audit.cli", "numerical-stability audit against mpmath (reports/stability.*)"),
    "bench": ("fastloss.benchmark.cli", "throughput benchmarks and regression gate"),
    "report": ("fastloss.report", "the main job: audit + benchmark report on CPU defaults"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastloss", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (modname, help_) in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("fastloss"):
                continue  # subcommand not in this build
            raise
        modules[name] = mod
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
