"""pytest-benchmark suites of fastloss (run them with ``fastloss bench``).

Everything these suites need lives in ``fastloss.benchmark``; this file adds
the selection options, parametrises each suite from the catalogue, shows one
line of progress per benchmark (count, elapsed time, throughput) and writes
the derived figures and the machine description into the JSON
(``--benchmark-json``).

    python -m pytest bench/ --benchmark-json=out.json            # default selection
    python -m pytest bench/ --benchmark-disable --fl-smoke -q    # smoke: once each, checked
    python -m pytest bench/ --fl-loss=mse,huber --fl-threads=1,2 --fl-dtype=float32
    python -m pytest bench/ --fl-full --benchmark-json=out.json   # everything, longer timing

Kernels are cached where the library puts them (``fastloss._config``: a
directory keyed by a hash of fastloss' sources and the vector width), so they
compile once per source version and never come from a stale cache.
"""

import pytest


def pytest_addoption(parser):
    g = parser.getgroup("fastloss", "fastloss benchmark selection")
    g.addoption("--fl-loss", default=None, help="comma-separated losses (default: a "
                "representative subset, fastloss.benchmark.cases.DEFAULT_*; --fl-full: every loss)")
    g.addoption("--fl-dtype", default=None, help="comma-separated dtypes (default: float32 in "
                "the default selection; float32,float64 with --fl-full, --fl-loss or --fl-smoke)")
    g.addoption("--fl-threads", default=None,
                help="comma-separated CPU thread counts (default: 1, 2, 4, ..., cores)")
    g.addoption("--fl-backend", default=None, help="cpu,cuda (default: cpu, and cuda on a GPU)")
    g.addoption("--fl-size", default="cache,dram", help="size classes: cache,dram")
    g.addoption("--fl-peers", default="torch,numpy", help="peers to measure: torch,numpy or none")
    g.addoption("--fl-full", action="store_true",
                help="every loss, both dtypes, every shape and thread count 1..cores")
    g.addoption("--fl-smoke", action="store_true", help="tiny sizes (with --benchmark-disable)")
    g.addoption("--fl-budget", type=float, default=None,
                help="timed seconds per benchmark (default 0.25; 2 with --fl-full)")
    g.addoption("--fl-min-rounds", type=int, default=None,
                help="fewest timed rounds per benchmark (default 2; 5 with --fl-full)")


def _options(config):
    from fastloss.benchmark.cases import options_from_config

    return options_from_config(config)


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        from fastloss.benchmark.cases import plan

        family = metafunc.module.FAMILY
        cases = plan(family, _options(metafunc.config))
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def budget(pytestconfig):
    from fastloss.benchmark.runner import Budget

    full = pytestconfig.getoption("--fl-full")
    b = pytestconfig.getoption("--fl-budget")
    r = pytestconfig.getoption("--fl-min-rounds")
    return Budget(seconds=b if b is not None else (2.0 if full else 0.25),
                  min_rounds=r if r is not None else (5 if full else 2))


_progress = {"n": 0, "total": 0, "t0": None}


def pytest_collection_modifyitems(session, config, items):
    import time

    _progress["total"] = len(items)
    _progress["t0"] = time.perf_counter()


def _elapsed() -> str:
    import time

    if _progress["t0"] is None:
        return ""
    s = int(time.perf_counter() - _progress["t0"])
    return f" {s // 60:d}:{s % 60:02d}"


@pytest.fixture
def progress(request, pytestconfig):
    """Prints one line per benchmark: its throughput, or that it ran (disabled)."""
    _progress["n"] += 1
    yield
    tr = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    bench = request.node.funcargs.get("benchmark")
    case = request.node.funcargs.get("case")
    if tr is None or bench is None or case is None:
        return
    st = getattr(bench, "stats", None)
    head = f"[{_progress['n']:>4}/{_progress['total']}{_elapsed()}] {case.id}"
    if st is None:
        line = f"{head}: ran once (timing disabled)"
    else:
        t = st.stats.min
        line = (f"{head}: {t * 1e3:9.3f} ms  {case.elements / t / 1e9:7.3f} G elem/s  "
                f"{case.compulsory_bytes / t / 1e9:7.2f} GB/s")
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        tr.write("\n" + line)


def pytest_benchmark_update_machine_info(config, machine_info):
    from fastloss.benchmark import machine

    machine_info["fastloss"] = machine.info()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    from fastloss.benchmark.derive import annotate

    output_json["fastloss_options"] = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(_options(config)).items()
    }
    annotate(output_json)
