"""``fastloss bench``: run the pytest-benchmark suites, write the reports,
and optionally gate against a baseline.

    fastloss bench                          # default selection (a representative subset, float32)
    python -m fastloss.cli bench            # the same, with this interpreter
    fastloss bench --full                   # every loss, dtype, shape, thread count; longer timing
    fastloss bench --loss mse,huber --dtype float32 --threads 1,2 --backend cpu
    fastloss bench --compare reports/baseline-<machine>.json --fail-over 10%
    fastloss bench --input run.json --compare BASELINE.json   # gate an existing run
    fastloss bench --smoke                  # each benchmark once at tiny sizes, results checked

The suites are in the repository's ``bench/`` directory (not in the installed
package): run the command from the repository root, or give ``--bench-dir``.
They run in a fresh ``python -m pytest`` process (so that Numba's cache and
thread settings are chosen before numba is imported), which writes a
pytest-benchmark JSON; the derived figures are in each benchmark's
``extra_info`` (``fastloss.benchmark.derive``).
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time


def add_arguments(p) -> None:
    sel = p.add_argument_group("selection")
    sel.add_argument("--full", action="store_true",
                     help="every loss of every family, both dtypes, every shape and thread count "
                          "1..cores, 2 s per benchmark")
    sel.add_argument("--loss", action="append", default=None, metavar="NAMES",
                     help="comma-separated losses (repeatable; default: a representative subset: "
                          "mse, huber, binary_cross_entropy(_with_logits), cross_entropy, "
                          "iou_loss, ciou_loss)")
    sel.add_argument("--dtype", default=None, help="float32, float64 or both (default: float32; "
                     "both with --full, --loss or --smoke)")
    sel.add_argument("--threads", default=None,
                     help="CPU thread counts, e.g. 1,2 or 1-4 (default: 1, 2, 4, ..., cores)")
    sel.add_argument("--backend", default=None, help="cpu, cuda or cpu,cuda (default: cpu, and "
                     "cuda when a GPU is present)")
    sel.add_argument("--size", default="cache,dram", help="size classes: cache, dram or both")
    sel.add_argument("--peers", default="torch,numpy", help="torch,numpy (default), or none")
    sel.add_argument("--suite", default=None,
                     help="comma-separated suites of bench/ (test_<suite>.py; default: all); "
                          "the bandwidth suite always runs")
    sel.add_argument("--smoke", action="store_true",
                     help="tiny sizes, each benchmark once (--benchmark-disable), results checked")
    sel.add_argument("--budget", type=float, default=None,
                     help="timed seconds per benchmark (default 0.25; --full: 2)")
    out = p.add_argument_group("output")
    out.add_argument("--out-dir", default="reports", help="where reports go (default: reports)")
    out.add_argument("--machine", default=None,
                     help="machine name in file names (default: from the CPU model and cores)")
    out.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    out.add_argument("--no-report", action="store_true", help="write no report files")
    out.add_argument("--save-baseline", action="store_true",
                     help="also write <out-dir>/baseline-<machine>.json for later --compare")
    out.add_argument("--note", action="append", default=[], help="a line for the report's notes")
    gate = p.add_argument_group("regression gate")
    gate.add_argument("--compare", metavar="BASELINE.json", default=None,
                      help="compare with a baseline JSON; exit 1 naming what regressed")
    gate.add_argument("--fail-over", default="10%",
                      help="allowed drop of bandwidth-normalised throughput (default 10%%)")
    gate.add_argument("--input", metavar="RUN.json", default=None,
                      help="use this pytest-benchmark JSON instead of running the suites")
    p.add_argument("--bench-dir", default=None, help="the bench/ directory (default: ./bench, "
                   "else the one beside the fastloss sources)")
    p.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")


def find_bench_dir(given: str | None) -> pathlib.Path | None:
    cands = [pathlib.Path(given)] if given else [
        pathlib.Path.cwd() / "bench",
        pathlib.Path(__file__).resolve().parents[2] / "bench",
    ]
    for c in cands:
        if (c / "conftest.py").is_file():
            return c.resolve()
    return None


def _threads_arg(s: str | None) -> str | None:
    if not s:
        return None
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return ",".join(map(str, out))


def pytest_command(args, bench: pathlib.Path, json_path: str) -> list[str]:
    files = [str(bench)]
    if args.suite:
        names = ["bandwidth"] + [s.strip() for s in args.suite.split(",") if s.strip()]
        files = [str(bench / f"test_{n}.py") for n in dict.fromkeys(names)]
    cmd = [sys.executable, "-m", "pytest", *files, "-p", "no:cacheprovider", "-q", "-rfEs",
           f"--rootdir={bench.parent}", f"--benchmark-json={json_path}",
           "--benchmark-columns=min,median,rounds,iterations", "--benchmark-sort=name",
           f"--fl-size={args.size}", f"--fl-peers={args.peers}"]
    if args.dtype:
        cmd.append(f"--fl-dtype={args.dtype}")
    if args.loss:
        cmd.append("--fl-loss=" + ",".join(x for s in args.loss for x in s.split(",")))
    t = _threads_arg(args.threads)
    if t:
        cmd.append(f"--fl-threads={t}")
    if args.backend:
        cmd.append(f"--fl-backend={args.backend}")
    if args.full:
        cmd.append("--fl-full")
    if args.smoke:
        cmd += ["--fl-smoke", "--benchmark-disable"]
    if args.budget is not None:
        cmd.append(f"--fl-budget={args.budget}")
    return cmd + list(args.pytest_args)


def slim(doc: dict) -> dict:
    """What the gate needs of a run (a small baseline file): the machine, and
    per benchmark its name, the time statistics and the extra_info."""
    keep = ("min", "median", "mean", "max", "stddev", "rounds", "iterations")
    return {
        "machine_info": doc.get("machine_info", {}),
        "datetime": doc.get("datetime"),
        "fastloss_run": doc.get("fastloss_run", {}),
        "benchmarks": [{"name": b["name"],
                        "stats": {k: b["stats"][k] for k in keep if k in b.get("stats", {})},
                        "extra_info": b.get("extra_info", {})}
                       for b in doc.get("benchmarks", [])],
    }


def _loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return None


def run(args) -> int:
    from fastloss.benchmark import machine, report
    from fastloss.benchmark.compare import compare, parse_fraction

    fail_over = parse_fraction(args.fail_over)  # a bad value fails before an hour of benchmarks
    rc = 0
    if args.input:
        doc = json.loads(pathlib.Path(args.input).read_text())
    else:
        bench = find_bench_dir(args.bench_dir)
        if bench is None:
            print("fastloss bench: no bench/ directory found. The benchmark suites live in the "
                  "fastloss repository (bench/), not in the installed package: run this command "
                  "from the repository root or pass --bench-dir.", file=sys.stderr)
            return 2
        try:
            import pytest_benchmark  # noqa: F401
        except ImportError:
            print("fastloss bench: pytest-benchmark is not installed "
                  "(pip install -e '.[bench]')", file=sys.stderr)
            return 2
        from fastloss.benchmark import peers

        if "torch" in args.peers and peers.torch_missing():
            print(f"fastloss bench: {peers.torch_missing()}", flush=True)
        with tempfile.TemporaryDirectory() as td:
            jp = os.path.join(td, "run.json")
            cmd = pytest_command(args, bench, jp)
            print("fastloss bench: " + shlex.join(cmd[1:]), flush=True)
            load0, t0 = _loadavg(), time.perf_counter()
            rc = subprocess.run(cmd, cwd=bench.parent).returncode
            wall = time.perf_counter() - t0
            if args.smoke:  # --benchmark-disable writes no JSON: the checks are the result
                print(f"fastloss bench: smoke run {'passed' if rc == 0 else 'FAILED'} "
                      f"in {wall:.0f} s")
                return rc
            if not os.path.exists(jp):
                print(f"fastloss bench: pytest exited with {rc} and wrote no results",
                      file=sys.stderr)
                return rc or 1
            doc = json.loads(pathlib.Path(jp).read_text())
        argv = sys.argv[sys.argv.index("bench"):] if "bench" in sys.argv else ["bench"]
        doc["fastloss_run"] = {"command": shlex.join(["fastloss", *argv]), "wall_s": wall,
                               "pytest_exit": rc,
                               "loadavg_before": load0, "loadavg_after": _loadavg()}
        print(f"fastloss bench: suites ran in {wall:.0f} s (pytest exit status {rc})")

    mi = doc.get("machine_info", {}).get("fastloss")
    name = args.machine or machine.slug(mi)
    notes = list(args.note)
    run_info = doc.get("fastloss_run", {})
    la = run_info.get("loadavg_before"), run_info.get("loadavg_after")
    cores = (mi or {}).get("cores") or machine.cores()
    if any(x is not None and x > 0.5 * cores for x in la):
        notes.append(f"The machine was shared and busy during the run (load average "
                     f"{' / '.join(f'{x:.1f}' for x in la if x is not None)} on {cores} cores): "
                     "absolute figures are noisy; ratios measured side by side are less so.")
    if not args.no_report:
        paths = report.write(doc, args.out_dir, name, notes, plots=not args.no_plots)
        print("fastloss bench: wrote " + ", ".join(map(str, paths)))
        if args.save_baseline:
            bp = pathlib.Path(args.out_dir) / f"baseline-{name}.json"
            bp.write_text(json.dumps(slim(doc), indent=0) + "\n")
            print(f"fastloss bench: wrote baseline {bp}")
    if args.compare:
        base = json.loads(pathlib.Path(args.compare).read_text())
        res = compare(base, doc, fail_over)
        print(res.text())
        if not res.ok:
            return 1
    return rc
