"""The benchmark machinery: the regression gate on synthetic runs, the
derived figures, and a tiny ``fastloss bench --smoke`` run end to end (each
benchmark once, results checked; no timing is asserted: tests check results,
bench/ measures speed)."""

import copy
import json
import pathlib
import sys

import numpy as np
import pytest

from fastloss.benchmark import cases, compare, derive

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench(family, loss, impl, threads, t, *, dtype="float32", n=1 << 24, size="dram"):
    c = cases.Case(family, loss, dtype, (n,), threads, "cpu", impl, size)
    return {"name": f"test[{c.id}]", "stats": {"min": t, "median": t * 1.1},
            "extra_info": c.info()}


def _run(scale_loss=1.0, scale_triad=1.0, slower=()):
    """A synthetic run: triad at 1 and 2 threads, two losses with peers."""
    b = []
    n = 1 << 25
    for th, t in ((1, 0.10), (2, 0.06)):
        b.append(_bench("bandwidth", "triad", "triad", th, t * scale_triad, dtype="float64", n=n))
    for loss, t in (("mse", 0.020), ("huber", 0.025)):
        for th in (1, 2):
            k = 1.5 if loss in slower else 1.0
            b.append(_bench("elementwise", loss, "fastloss", th, t / th * scale_loss * k))
            b.append(_bench("elementwise", loss, "torch", th, 3 * t / th * scale_loss))
        b.append(_bench("elementwise", loss, "numpy", 1, 10 * t * scale_loss))
    return {"benchmarks": b}


def test_derived_figures():
    doc = derive.annotate(_run())
    e = {x["extra_info"]["key"]: x["extra_info"] for x in doc["benchmarks"]}
    mse2 = e["cpu/elementwise/mse/float32/16777216/t2/fastloss"]
    n = 1 << 24
    assert mse2["g_elem_s"] == pytest.approx(n / 0.010 / 1e9)
    assert mse2["gb_s"] == pytest.approx(12 * n / 0.010 / 1e9)
    triad2 = 24 * (1 << 25) / 0.06 / 1e9
    assert mse2["bandwidth_gb_s"] == pytest.approx(triad2)
    assert mse2["fraction_of_bandwidth"] == pytest.approx(mse2["gb_s"] / triad2)
    assert mse2["speedup"]["torch"] == pytest.approx(3.0)
    assert mse2["speedup"]["numpy"] == pytest.approx(20.0)  # NumPy measured once, at 1 thread
    assert e["cpu/elementwise/mse/float32/16777216/t2/torch"]["speedup"]["fastloss"] == \
        pytest.approx(1 / 3)


def test_triad_beside_the_kernel():
    """A triad timed before and after the kernel (``triad_beside_gb_s``):
    the fraction is of the higher of the two, judged in a target row of its
    own beside the run-level triad's."""
    from fastloss.benchmark import report

    doc = _run()
    for b in doc["benchmarks"]:
        if b["extra_info"]["key"] == "cpu/elementwise/mse/float32/16777216/t2/fastloss":
            b["stats"]["min"] = 0.030
            b["extra_info"]["triad_beside_gb_s"] = [20.0, 25.0]
    got = {t: (m, v) for t, m, v in report.targets(report._entries(derive.annotate(doc)))}
    gb_s = 12 * (1 << 24) / 0.030 / 1e9  # 6.7 GB/s: 27% of 25, 33% of 20
    assert got["mse float32 ≥ 70% of the triad measured beside it (2 thr)"] == \
        (f"{100 * gb_s / 25.0:.0f}%", "NOT met")
    assert not any("huber" in t and "beside" in t for t in got)  # not measured: not reported


def test_beside_triad_measures_the_cases_of_the_target():
    from fastloss.benchmark import runner

    plan = cases.plan_elementwise(cases.Options(threads=(2,), sizes=("dram", "cache")))
    beside = {(c.loss, c.impl, c.size_class) for c in plan if runner._wants_beside_triad(c)}
    assert beside == {(loss, impl, "dram") for loss in ("mse", "huber")
                      for impl in ("fastloss", "fastloss_out")}


def test_out_variant_planned_and_judged_separately():
    """mse/mae/huber are also measured with out= a reused buffer; the report
    judges the 70%-of-triad target on both calls, each from its own time."""
    from fastloss.benchmark import report

    plan = cases.plan_elementwise(cases.Options(threads=(2,), sizes=("dram",)))
    outs = {(c.loss, c.dtype) for c in plan if c.impl == "fastloss_out"}
    assert outs == {("mse", "float32"), ("huber", "float32")}  # the default losses that have one
    doc = _run()
    for b in doc["benchmarks"]:
        if b["extra_info"]["key"] == "cpu/elementwise/mse/float32/16777216/t2/fastloss":
            b["stats"]["min"] = 0.030
    doc["benchmarks"].append(_bench("elementwise", "mse", "fastloss_out", 2, 0.018))
    got = {t: (m, v) for t, m, v in report.targets(report._entries(derive.annotate(doc)))}
    triad2 = 24 * (1 << 25) / 0.06
    new = 12 * (1 << 24) / 0.030 / triad2  # 0.5 of triad
    out = 12 * (1 << 24) / 0.018 / triad2  # 0.83
    assert got["mse float32 ≥ 70% of triad (2 thr)"] == (f"{100 * new:.0f}%", "NOT met")
    assert got["mse float32 ≥ 70% of triad, out= a reused buffer (2 thr)"] == \
        (f"{100 * out:.0f}%", "met")
    assert not any("huber" in t and "out=" in t for t in got)  # not measured: not reported


def test_option_variants_planned_under_their_own_key():
    """BCE with logits is also measured with a last-axis pos_weight and a
    weight (``cases.ELEMENTWISE_VARIANTS``) when selected or with --full,
    never in the default run: rows of VARIANT_C, the option an array of
    VARIANT_C values in the data's dtype, keys of their own, beside
    PyTorch only; speed-ups pair each with its own peer, and the issue
    targets judge the defaults only."""
    from fastloss.benchmark import report

    name = "binary_cross_entropy_with_logits"
    assert not [c for c in cases.plan("elementwise", cases.Options(threads=(2,))) if c.variant]
    sel = cases.Options(threads=(2,), sizes=("dram",), losses=(name,), dtypes=("float64",))
    got = {(c.variant, c.impl): c for c in cases.plan("elementwise", sel)}
    assert set(got) == {("", "fastloss"), ("", "torch"), ("", "numpy"),
                        ("pos_weight", "fastloss"), ("pos_weight", "torch"),
                        ("weight", "fastloss"), ("weight", "torch")}
    base, pw = got["", "fastloss"], got["pos_weight", "fastloss"]
    assert base.key == f"cpu/elementwise/{name}/float64/{base.shape[0]}/t2/fastloss"
    assert pw.key == (f"cpu/elementwise/{name}[pos_weight]/float64/"
                      f"{base.shape[0] // cases.VARIANT_C}x{cases.VARIANT_C}/t2/fastloss")
    x, y = cases.make_data(pw)
    kw = cases.variant_kwargs(pw)
    assert x.shape == y.shape == pw.shape and x.dtype == np.float64
    assert set(kw) == {"pos_weight"} and kw["pos_weight"].shape == (cases.VARIANT_C,)
    assert kw["pos_weight"].dtype == np.float64 and np.all(kw["pos_weight"] > 0)
    assert cases.variant_kwargs(base) == {}
    times = {("", "fastloss"): 0.010, ("", "torch"): 0.050, ("pos_weight", "fastloss"): 0.020,
             ("pos_weight", "torch"): 0.030}
    doc = {"benchmarks": [{"name": got[k].id, "stats": {"min": t, "median": t},
                           "extra_info": got[k].info()} for k, t in times.items()]}
    e = {x["extra_info"]["key"]: x["extra_info"] for x in derive.annotate(doc)["benchmarks"]}
    assert e[base.key]["speedup"]["torch"] == pytest.approx(5.0)
    assert e[pw.key]["speedup"]["torch"] == pytest.approx(1.5)
    tg = {t: (m, v) for t, m, v in report.targets(report._entries(doc))}
    assert tg[f"{name} float64 ≥ 2× PyTorch (2 thr)"] == ("5.00×", "met")
    assert not any("pos_weight" in t for t in tg)


def test_cross_entropy_probability_targets_planned_under_their_own_key():
    """cross_entropy is measured with labels and with probability targets
    (both beside PyTorch) when selected; the two never share a key, so each
    speed-up divides times of the same kind of target, and the labels' key
    is the one earlier runs used (the gate matches on it)."""
    from fastloss.benchmark import report

    sel = cases.Options(threads=(2,), sizes=("dram",), losses=("cross_entropy",),
                        dtypes=("float32",), peers=("torch",))
    plan = [c for c in cases.plan("multiclass", sel) if c.shape == (8192, 1000)]
    got = {(c.target, c.impl): c for c in plan}
    assert set(got) == {("labels", "fastloss"), ("labels", "torch"),
                        ("probs", "fastloss"), ("probs", "torch")}
    assert got["labels", "fastloss"].key == \
        "cpu/multiclass/cross_entropy/float32/8192x1000/t2/fastloss"
    assert got["probs", "fastloss"].key == \
        "cpu/multiclass/cross_entropy(probs)/float32/8192x1000/t2/fastloss"
    # the default run keeps to labels
    assert {c.target for c in cases.plan("multiclass", cases.Options(threads=(2,)))} == {"labels"}
    # speed-ups pair each target with its own peer
    times = {("labels", "fastloss"): 0.01, ("labels", "torch"): 0.05,
             ("probs", "fastloss"): 0.02, ("probs", "torch"): 0.03}
    doc = {"benchmarks": [{"name": c.id, "stats": {"min": times[k], "median": times[k]},
                           "extra_info": c.info()} for k, c in got.items()]}
    e = {x["extra_info"]["key"]: x["extra_info"] for x in derive.annotate(doc)["benchmarks"]}
    assert e[got["labels", "fastloss"].key]["speedup"]["torch"] == pytest.approx(5.0)
    assert e[got["probs", "fastloss"].key]["speedup"]["torch"] == pytest.approx(1.5)
    tg = {t: (m, v) for t, m, v in report.targets(report._entries(doc))}
    assert tg["cross_entropy(probs) float32 8192×1000 ≥ 2× PyTorch (2 thr)"] == ("1.50×", "NOT met")
    assert tg["cross_entropy f32 8192×1000 ≥ 4× F.cross_entropy (2 thr)"] == ("5.00×", "met")


def test_row_wise_run_plots_rows_against_threads(tmp_path):
    """A run of row-wise losses only plots their throughput against threads
    (one line per loss and shape), and no empty elementwise figure."""
    pytest.importorskip("matplotlib")
    from fastloss.benchmark import report

    sel = cases.Options(threads=(1, 2), sizes=("dram",), losses=("cross_entropy",),
                        dtypes=("float32",), peers=("torch",))
    plan = [c for c in cases.plan("multiclass", sel) if c.shape == (8192, 1000)]
    doc = {"benchmarks": [{"name": c.id, "stats": {"min": 0.01 / c.threads, "median": 0.01},
                           "extra_info": c.info()} for c in plan]}
    files, why = report.plot(doc, tmp_path, "run")
    assert why is None
    assert files == ["run-rows-threads.png", "run-vs-torch.png"]
    assert all((tmp_path / f).stat().st_size > 1000 for f in files)


def test_cuda_run_plots_its_targets(tmp_path):
    """A GPU-only run (no CPU case) still gets a figure: the speed-up over
    PyTorch and the fraction of the copy bandwidth of each dram case, from
    the run's own numbers."""
    pytest.importorskip("matplotlib")
    from fastloss.benchmark import report

    opts = cases.Options(backends=("cuda",), sizes=("dram",), peers=("torch",),
                         losses=("mse", "cross_entropy"))
    plan = [c for fam in ("bandwidth", "elementwise", "multiclass")
            for c in cases.plan(fam, opts)]
    assert {c.backend for c in plan} == {"cuda"}
    doc = {"benchmarks": [{"name": c.id, "stats": {"min": 1e-3, "median": 1e-3},
                           "extra_info": c.info()} for c in plan]}
    files, why = report.plot(doc, tmp_path, "gpu")
    assert why is None and files == ["gpu-cuda.png"]
    assert (tmp_path / files[0]).stat().st_size > 1000
    # and without any GPU case, no such figure
    cpu = [b for b in doc["benchmarks"] if b["extra_info"]["backend"] == "cpu"]
    assert report.plot({"benchmarks": cpu}, tmp_path, "none")[0] == []


def test_cuda_plan_has_issue_5_sizes():
    """A GPU run measures issue 5's sizes: 2^28 elements, cross_entropy
    (65536, 1000) and (16384, 131072), beside the device copy; no out=
    variant (CPU only)."""
    opts = cases.Options(backends=("cuda",), sizes=("dram",), peers=())
    ew = cases.plan_elementwise(opts)
    assert {c.shape for c in ew} == {(1 << 28,)} and {c.impl for c in ew} == {"fastloss"}
    mc = cases.plan_multiclass(opts)
    assert {c.shape for c in mc if c.loss == "cross_entropy"} == {(65536, 1000), (16384, 131072)}


def test_gate_fails_on_a_regression_and_names_it():
    base = _run()
    cur = _run(slower=("huber",))  # huber 1.5x slower: -33% throughput, triad unchanged
    res = compare.compare(base, cur, compare.parse_fraction("10%"))
    assert not res.ok
    keys = {c.key for c in res.regressions}
    assert keys == {"cpu/elementwise/huber/float32/16777216/t1/fastloss",
                    "cpu/elementwise/huber/float32/16777216/t2/fastloss"}
    assert "huber" in res.text() and "FAIL" in res.text()


def test_gate_20_percent_regression_fails_at_10_percent():
    base = _run()
    cur = copy.deepcopy(base)
    for b in cur["benchmarks"]:
        if b["extra_info"]["key"] == "cpu/elementwise/mse/float32/16777216/t2/fastloss":
            b["stats"]["min"] /= 0.8  # 20% less throughput
    res = compare.compare(base, cur, 0.10)
    assert [c.key for c in res.regressions] == ["cpu/elementwise/mse/float32/16777216/t2/fastloss"]
    assert res.regressions[0].ratio == pytest.approx(0.8)


def test_gate_passes_a_uniformly_slower_machine():
    base = _run()
    cur = _run(scale_loss=1.7, scale_triad=1.7)  # everything 1.7x slower, bandwidth too
    res = compare.compare(base, cur, 0.10)
    assert res.ok, res.text()
    assert len(res.unchanged) == 4 and "PASS" in res.text()


def test_gate_ignores_peers_and_reports_missing():
    base = _run()
    cur = _run()
    cur["benchmarks"] = [b for b in cur["benchmarks"]
                         if b["extra_info"]["loss"] != "huber" or b["extra_info"]["impl"] != "fastloss"]
    for b in cur["benchmarks"]:
        if b["extra_info"]["impl"] == "torch":
            b["stats"]["min"] *= 5  # a slower peer is no regression of fastloss
    res = compare.compare(base, cur, 0.10)
    assert res.ok and len(res.missing) == 2


def test_parse_fraction():
    assert compare.parse_fraction("10%") == pytest.approx(0.10)
    assert compare.parse_fraction("0.25") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="fail-over"):
        compare.parse_fraction("150%")


def test_cli_gate_on_json_files(tmp_path, capsys):
    from fastloss.cli import main

    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    base.write_text(json.dumps(_run()))
    cur.write_text(json.dumps(_run(slower=("mse",))))
    rc = main(["bench", "--input", str(cur), "--compare", str(base), "--fail-over", "10%",
               "--no-report"])
    out = capsys.readouterr().out
    assert rc == 1 and "cpu/elementwise/mse/float32/16777216/t1/fastloss" in out
    cur.write_text(json.dumps(_run(scale_loss=0.5, scale_triad=0.5)))
    assert main(["bench", "--input", str(cur), "--compare", str(base), "--no-report"]) == 0


def test_plan_covers_the_catalogue():
    from fastloss import catalog

    opts = cases.Options(threads=(1, 2), peers=(), smoke=True)
    ew = {c.loss for c in cases.plan("elementwise", opts)}
    assert ew == {s.name for s in catalog.SPECS if s.family in ("regression", "binary")}
    mc = cases.plan("multiclass", cases.Options(threads=(1,), peers=(), smoke=True, full=True))
    assert {c.loss for c in mc} == {s.name for s in catalog.SPECS if s.family == "multiclass"}
    for c in cases.plan("elementwise", opts):
        x, y = cases.make_data(c)
        assert x.shape == c.shape and x.dtype == c.dtype


def test_default_selection_is_a_subset_and_full_covers_everything():
    """The default run (no --full, no --loss) is a representative float32
    subset; --full measures every loss, dtype, shape and box loss."""
    from fastloss import catalog

    ew_names = {s.name for s in catalog.SPECS if s.family in ("regression", "binary")}
    default = cases.Options(threads=(1, 2))
    ew = cases.plan("elementwise", default)
    assert {c.loss for c in ew} == set(cases.DEFAULT_ELEMENTWISE) & ew_names
    assert {c.dtype for c in ew} == {"float32"} and {c.size_class for c in ew} == {"cache", "dram"}
    mc = cases.plan("multiclass", default)
    assert {c.shape for c in mc} == set(cases.MULTICLASS_CACHE) | set(cases.DEFAULT_MULTICLASS_DRAM)
    assert cases.box_selection(default)[:2] == (cases.DEFAULT_BOXES, ("float32",))

    full = cases.Options(threads=(1, 2), full=True)
    ew = cases.plan("elementwise", full)
    assert {c.loss for c in ew} == ew_names and {c.dtype for c in ew} == {"float32", "float64"}
    mc = cases.plan("multiclass", full)
    assert {c.shape for c in mc} == set(cases.MULTICLASS_CACHE) | set(cases.MULTICLASS_DRAM)
    boxes, dtypes, _ = cases.box_selection(full)
    assert set(boxes) == {s.name for s in catalog.SPECS if s.family == "box"}
    assert dtypes == ("float32", "float64")
    # an explicit selection is taken as given
    sel = cases.Options(threads=(1,), losses=("mse",), dtypes=("float64",))
    assert {(c.loss, c.dtype) for c in cases.plan("elementwise", sel)} == {("mse", "float64")}
    # --dtype both (the CLI's spelling) is both dtypes, in every suite; a typo is an error
    both = cases.Options(threads=(1,), losses=("mse", "iou_loss"), dtypes=("both",))
    assert {c.dtype for c in cases.plan("elementwise", both)} == {"float32", "float64"}
    assert cases.box_selection(both)[1] == ("float32", "float64")
    with pytest.raises(ValueError, match="float33"):
        cases.selected_dtypes(cases.Options(dtypes=("float33",)))


def test_smoke_run_end_to_end(tmp_path):
    """A tiny `fastloss bench --smoke`: each benchmark once, results checked."""
    import subprocess

    cmd = [sys.executable, "-m", "fastloss.cli", "bench", "--smoke", "--threads", "1",
           "--loss", "mse,cross_entropy", "--dtype", "float32", "--size", "cache",
           "--suite", "elementwise,multiclass", "--bench-dir", str(ROOT / "bench"),
           "--out-dir", str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "passed" in r.stdout and "failed" not in r.stdout
    assert "smoke run passed" in r.stdout
    assert "cpu-mse-float32-1024-t1-fastloss" in r.stdout
    assert "cpu-cross_entropy(probs)-float32-16x10-t1-fastloss" in r.stdout
