"""The stability audit: its ULP metric on hand-checked cases, its grids, its
cache, its Dask path, its reports, and that it fails a broken implementation.

The audit's machinery is tested against a small stand-in oracle
(tests/audit_stub_oracle.py) so these tests do not depend on the real oracle;
the expected ULP distances below are worked out by hand from the IEEE
formats, not taken from the code under test.
"""

import importlib.util
import json
import math

import mpmath
import numpy as np
import pytest

from fastloss.audit import core, grids, oracle, peers, report
from fastloss.audit.ulp import round_to_dtype, ulp_distance

STUB = "tests.audit_stub_oracle"
F32, F64 = np.float32, np.float64


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTLOSS_CACHE", str(tmp_path / "cache"))


def ulp(a, b, dt):
    return float(ulp_distance(np.asarray([a], dt), np.asarray([b], dt), dt)[0])


# --------------------------------------------------------------------------
# the metric


@pytest.mark.parametrize("dt", [F32, F64])
def test_ulp_adjacent_floats(dt):
    one = dt(1)
    up = np.nextafter(one, dt(2))
    down = np.nextafter(one, dt(0))
    assert ulp(one, up, dt) == 1
    assert ulp(down, one, dt) == 1  # across the binade boundary: still one step
    assert ulp(down, up, dt) == 2
    eps = np.finfo(dt).eps
    assert ulp(one, one + 4 * eps, dt) == 4
    assert ulp(-one, -(one + eps), dt) == 1


@pytest.mark.parametrize("dt", [F32, F64])
def test_ulp_signed_zeros_and_subnormals(dt):
    tiny = np.finfo(dt).smallest_subnormal
    assert ulp(0.0, -0.0, dt) == 0
    assert ulp(0.0, tiny, dt) == 1
    assert ulp(-0.0, tiny, dt) == 1
    assert ulp(-tiny, tiny, dt) == 2  # -tiny, 0, tiny
    norm = np.finfo(dt).smallest_normal
    assert ulp(np.nextafter(norm, dt(0)), norm, dt) == 1  # largest subnormal -> smallest normal
    nsub = 2 ** (np.finfo(dt).nmant) - 1  # positive subnormals
    assert ulp(0.0, np.nextafter(norm, dt(0)), dt) == nsub


@pytest.mark.parametrize("dt", [F32, F64])
def test_ulp_infinities_and_nan(dt):
    big = np.finfo(dt).max
    assert ulp(math.inf, big, dt) == 1
    assert ulp(math.inf, math.inf, dt) == 0
    assert ulp(-math.inf, -big, dt) == 1
    n_pos = 2 ** (np.finfo(dt).bits - 1) - 2 ** np.finfo(dt).nmant  # 0 .. +inf in steps
    assert ulp(-math.inf, math.inf, dt) == 2 * n_pos
    assert ulp(math.nan, math.nan, dt) == 0
    assert ulp(math.nan, 1.0, dt) == math.inf
    assert ulp(1.0, math.nan, dt) == math.inf


def test_round_to_dtype_hand_cases():
    mp = mpmath.mpf
    with mpmath.workdps(60):
        # ties to even at 1 + half an ULP (float32 ULP of 1 is 2^-23)
        assert round_to_dtype(1 + mp(2) ** -24, F32) == 1.0
        assert round_to_dtype(1 + 3 * mp(2) ** -24, F32) == 1 + 2.0**-22
        assert round_to_dtype(mp(1) / 3, F64) == 1 / 3
        assert round_to_dtype(-mp(1) / 3, F32) == float(np.float32(-1 / 3))
        # subnormals: half the smallest subnormal ties to 0 (even), 3/4 of it rounds up
        assert round_to_dtype(mp(2) ** -150, F32) == 0.0
        assert round_to_dtype(3 * mp(2) ** -151, F32) == 2.0**-149
        assert round_to_dtype(mp(2) ** -1075 * 3, F64) == 2.0**-1074 * 2
        # overflow: halfway between max and 2^128 rounds (to even) to inf; just below stays max
        assert round_to_dtype(mp(2) ** 128 * (1 - mp(2) ** -25), F32) == math.inf
        assert round_to_dtype(mp(2) ** 128 * (1 - mp(2) ** -24), F32) == float(np.finfo(F32).max)
        assert round_to_dtype(mpmath.inf, F64) == math.inf
        assert math.isnan(round_to_dtype(mpmath.nan, F32))


def test_error_stats_counts():
    c = np.array([np.nan, np.inf, 1.0, 5.0, -np.inf, 2.0, np.nan])
    e = np.array([1.0, 2.0, np.inf, 5.0, np.inf, np.nextafter(2.0, 3.0), np.nan])
    s, u = core.error_stats(c, e, F64)
    assert s["n"] == 7
    assert s["nan"] == 1  # the last NaN is right (exact NaN)
    assert s["wrong_inf"] == 2  # inf for 2.0, -inf for +inf
    assert s["finite_for_inf"] == 1
    assert s["max_ulp"] == "inf"
    assert list(u[[3, 5, 6]]) == [0, 1, 0]
    # sorted: 0, 0, 1, then three wrong infinities (~1e18 ULP), then NaN (inf)
    assert s["median_ulp"] > 1e18 and s["p99_ulp"] == "inf"


def test_error_stats_ill_conditioned_counts_ulps_of_the_exact_value():
    """Where the condition number k > 1, the ÷cond statistic counts the error
    in ULPs of the exact value (|c - e| / spacing(e)) when that is fewer
    steps than the representable numbers in between: 0 against the exact
    -4.638093627692599e-17 (kl_div's value at x = fl(log 1/4), t = 1/4,
    k = 5.98e16) is 4.4e18 steps (every binade down to 0) but 7.5e15 ULPs of
    the exact value, 0.126 x k. Rows with k = 1 keep the plain distance."""
    e = np.array([-4.638093627692599e-17, 1.0, 1.0])
    c = np.array([0.0, 1.0 + 2 * np.finfo(F64).eps, 1.0 + 2 * np.finfo(F64).eps])
    k = np.array([5.9778627703535896e16, 1.0, 3.0])
    s, u = core.error_stats(c, e, F64, k)
    assert u[0] > 4e18  # the plain distance, reported as max_ulp
    assert s["max_ulp"] == u[0]
    rel0 = abs(e[0]) / np.spacing(abs(e[0]))  # ~7.5e15
    assert 7e15 < rel0 < 8e15
    assert s["max_ulp_cond"] == 2  # row 1 (k = 1, 2 ULP); row 2: 2 ULP / 3
    s0, _ = core.error_stats(c[:1], e[:1], F64, k[:1])
    assert s0["max_ulp_cond"] == pytest.approx(rel0 / k[0], rel=1e-12)  # 0.126, was 73
    # NaN and infinities are never excused
    s, _ = core.error_stats(np.array([np.nan, np.inf]), np.array([1.0, 1.0]), F64,
                            np.array([1e300, 1e300]))
    assert s["max_ulp_cond"] == "inf"


def test_kl_div_value_condition_reaches_the_audit_with_minus_inf_entries():
    """kl_div rows whose zero targets meet -inf log-probabilities (0 log 0 = 0:
    they contribute nothing) still get their value's condition number, the
    cancellation ratio sum_j (|t_j log t_j| + |t_j x_j|) / |sum_j t_j (log t_j
    - x_j)| over t_j > 0: here log 1/2 - fl(log 1/2) against terms of size
    log 2, about 6e16. It was 1 (the oracle gave up on any non-finite entry),
    so the audit's ÷cond column showed 4.4e18 ULP for kl_div."""
    lg = math.log(0.5)
    rows = [((-math.inf, lg, -math.inf, lg), (0.0, 0.5, 0.0, 0.5), False),
            ((-math.inf, lg, -math.inf, lg), (-math.inf, np.nextafter(lg, 0.0), -math.inf, lg),
             True)]
    for x, t, log_target in rows:
        task = oracle.Task("fastloss.reference", "kl_div", "rows", (("log_target", log_target),),
                           (x,), (t,), None, "float64")
        vals, grads, ok, err, cv, cg = oracle.evaluate_chunk(task)
        assert ok[0], err
        with mpmath.workdps(80):
            p = [mpmath.exp(v) if log_target else mpmath.mpf(v) for v in t]
            terms = []
            for pj, xj in zip(p, x):
                if pj != 0:
                    terms += [pj * mpmath.log(pj), -pj * mpmath.mpf(xj)]
            want = float(mpmath.fsum(abs(v) for v in terms) / abs(mpmath.fsum(terms)))
        assert want > 1e16
        assert cv[0] == pytest.approx(want, rel=1e-9), (log_target, cv[0], want)
        assert np.all(cg[0] == 1.0)  # the gradient -t_j does not cancel


# --------------------------------------------------------------------------
# grids


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy", "sigmoid_focal", "msle",
                                  "poisson_nll", "hinge"])
@pytest.mark.parametrize("dt", [F32, F64])
def test_grids_deterministic_and_in_domain(name, dt):
    from fastloss import catalog, validate

    a = grids.elementwise_grid(name, dt, "quick")
    b = grids.elementwise_grid(name, dt, "quick")
    assert a and grids.grid_hash(a) == grids.grid_hash(b)
    assert grids.grid_hash(a) != grids.grid_hash(grids.elementwise_grid(name, dt, "full"))
    for blk in a:
        assert blk.x.dtype == dt and blk.y.dtype == dt and len(blk.mag) == len(blk)
        p = dict(blk.params)
        if blk.q is not None:
            p["pos_weight"] = blk.q
        validate.prepare(catalog.get(name), blk.x, blk.y, "none", p)  # accepted as valid input


def test_grid_covers_extremes():
    x = np.concatenate([b.x for b in grids.elementwise_grid("binary_cross_entropy_with_logits",
                                                            F32, "quick")])
    fi = np.finfo(F32)
    for v in (np.inf, -np.inf, fi.max, -fi.max, fi.smallest_subnormal, 0.0, -120.0):
        assert np.any(x == F32(v)), v
    p = np.concatenate([b.x for b in grids.elementwise_grid("binary_cross_entropy", F64, "quick")])
    assert 0.0 in p and 1.0 in p and np.nextafter(1.0, 0) in p
    assert np.finfo(F64).smallest_subnormal in p


# --------------------------------------------------------------------------
# the audit end to end (stand-in oracle)


def test_audit_quick_measures_and_caches():
    has_torch = importlib.util.find_spec("torch") is not None
    kw = dict(losses=["mse", "binary_cross_entropy_with_logits", "binary_cross_entropy"],
              impls=["fastloss-cpu", "numpy"] + (["torch"] if has_torch else []),
              dtypes=["float64"], size="quick",
              oracle=STUB, workers=1, log=lambda s: None)
    r1 = core.audit(**kw)
    rep = r1.report
    assert rep["meta"]["oracle_computed_elements"] > 0
    mse = rep["losses"]["mse"]["results"]["fastloss-cpu"]["dtypes"]
    for dt in ("float64",):
        for kind in ("value", "grad"):
            st = mse[dt][kind]
            assert st["n"] > 100 and st["nan"] == 0 and st["wrong_inf"] == 0
            assert float(st["max_ulp"]) <= 2
    # the textbook formula of BCE with logits overflows: NaN / inf where the exact value is finite
    npv = rep["losses"]["binary_cross_entropy_with_logits"]["results"]["numpy"]["dtypes"]
    assert npv["float64"]["value"]["nan"] + npv["float64"]["value"]["wrong_inf"] > 0
    # PyTorch's BCE clamps the log at -100: finite where the exact value is +inf
    if has_torch:
        tv = rep["losses"]["binary_cross_entropy"]["results"]["torch"]["dtypes"]["float64"]["value"]
        assert tv["finite_for_inf"] > 0
    # second run: everything from the cache, the same numbers
    r2 = core.audit(**kw)
    assert r2.report["meta"]["oracle_computed_elements"] == 0
    assert r2.report["losses"] == rep["losses"]


class _BrokenFastloss(peers.NumpyTextbook):
    """The naive formulas, posing as a fastloss implementation."""

    key = "broken"
    label = "naive posing as fastloss"
    is_fastloss = True


def test_fail_over_gate(tmp_path, monkeypatch, capsys):
    from fastloss.cli import main

    monkeypatch.setitem(peers.IMPLS, "broken", _BrokenFastloss)
    common = ["audit", "--quick", "--oracle", STUB, "--workers", "1", "--no-plots",
              "--no-progress", "--fail-over", "2", "--out", str(tmp_path / "r")]
    # the naive formulas fail the gate: the audit can fail
    assert main(common + ["--loss", "binary_cross_entropy_with_logits,soft_margin",
                          "--impl", "broken"]) == 1
    err = capsys.readouterr().err
    assert "FAIL" in err and "soft_margin broken" in err
    # fastloss passes it where it is accurate
    assert main(common + ["--loss", "mse,soft_margin", "--impl", "fastloss-cpu,numpy",
                          "--dtype", "float64"]) == 0
    data = json.loads((tmp_path / "r" / "stability.json").read_text())
    assert set(data["losses"]) == {"mse", "soft_margin"}
    md = (tmp_path / "r" / "stability.md").read_text()
    assert "## `soft_margin`" in md and "NumPy textbook" in md


def test_unknown_loss_and_impl_are_errors(tmp_path):
    from fastloss.cli import main

    base = ["audit", "--quick", "--oracle", STUB, "--no-plots", "--out", str(tmp_path)]
    assert main(base + ["--loss", "nope"]) == 2
    assert main(base + ["--impl", "nope"]) == 2


def test_dask_gives_identical_values():
    distributed = pytest.importorskip("distributed")
    jobs = [(n, "float32", grids.elementwise_grid(n, F32, "quick"))
            for n in ("binary_cross_entropy_with_logits", "soft_margin")]
    local, _ = oracle.exact_values(jobs, module=STUB, workers=1, use_cache=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        remote, info = oracle.exact_values(jobs, module=STUB, scheduler=cluster.scheduler_address,
                                           use_cache=False)
    assert info["computed_elements"] == sum(len(b) for _, _, bl in jobs for b in bl)
    for key in local:
        for a, b in zip(local[key], remote[key], strict=True):
            np.testing.assert_array_equal(a.value, b.value)
            np.testing.assert_array_equal(a.grad, b.grad)
            np.testing.assert_array_equal(a.ok, b.ok)


def test_oracle_failure_is_reported_not_hidden():
    blk = grids.Block("mse", {}, np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    bad = grids.Block("no_such_loss", {}, np.array([1.0]), np.array([0.0]))
    out, _ = oracle.exact_values([("mse", "float64", [blk]), ("no_such_loss", "float64", [bad])],
                                 module=STUB, workers=1, use_cache=False)
    assert out[("mse", "float64")][0].ok.all()
    e = out[("no_such_loss", "float64")][0]
    assert not e.ok.any() and "KeyError" in e.error


def test_plots_written(tmp_path):
    pytest.importorskip("matplotlib")
    r = core.audit(losses=["mse", "soft_margin"], impls=["fastloss-cpu", "numpy"],
                   dtypes=["float64"], size="quick", oracle=STUB, workers=1, log=lambda s: None)
    files = report.write_all(r, tmp_path)
    pngs = [f for f in files if f.suffix == ".png"]
    assert {p.name for p in pngs} == {"stability_regression_float64.png",
                                      "stability_binary_float64.png"}
    assert all(p.stat().st_size < 500_000 for p in pngs)


def test_cuda_simulator_impl():
    pytest.importorskip("fastloss.cuda.api")
    impl = peers.FastlossCUDA(sample=8, simulator=True)
    blocks = grids.elementwise_grid("soft_margin", F64, "quick")
    res = impl.evaluate_many(blocks)
    for b, r in zip(blocks, res, strict=True):
        assert not isinstance(r, Exception), r
        v, g, idx = r
        cv, cg = peers.FastlossCPU().evaluate(b)
        assert np.all(ulp_distance(v, cv[idx], F64) <= 2)
        assert np.all(ulp_distance(g, cg[idx], F64) <= 2)


# --------------------------------------------------------------------------
# row-wise and box grids, value-only and missing peers


@pytest.mark.parametrize("name", ["kl_div", "categorical_cross_entropy", "iou_loss", "ciou_loss"])
@pytest.mark.parametrize("dt", [F32, F64])
def test_row_and_box_grids(name, dt):
    from fastloss import catalog, validate

    def make(size):
        return grids.multiclass_grid(name, dt, size) or grids.box_grid(name, dt, size)

    a, b = make("quick"), make("quick")
    assert a and grids.grid_hash(a) == grids.grid_hash(b)
    assert grids.grid_hash(a) != grids.grid_hash(make("full"))
    for blk in a:
        assert blk.x.dtype == dt and len(blk.mag) == len(blk) and len(blk) > 0
        if name == "kl_div" and blk.params.get("log_target"):
            continue  # log-probability targets: their domain is checked by fastloss.rows
        validate.prepare(catalog.get(name), blk.x, blk.y, "none", dict(blk.params))
    if name.endswith("iou_loss"):
        x, y = a[0].x, a[0].y
        assert np.any(np.all(x == y, axis=1))  # identical boxes
        assert np.any(x[:, 2] == x[:, 0])  # degenerate (zero width) predictions


def test_sklearn_adapter_values_only():
    pytest.importorskip("sklearn")
    impl = peers.Sklearn()
    assert impl.unavailable() is None
    x = np.array([0.5, -3.0, 2.0], F64)
    y = np.array([0.0, 1.0, 2.0], F64)
    mse = grids.Block("mse", {}, x, y)
    (v, g, idx), = impl.evaluate_many([mse])
    assert g is None and idx is None
    np.testing.assert_array_equal(v, (x - y) ** 2)
    # hinge: one element at a time, the right sign for y = +1
    h = grids.Block("hinge", {}, np.array([-3.0, 0.5], F64), np.array([1.0, -1.0], F64))
    (v, g, idx), = impl.evaluate_many([h])
    np.testing.assert_array_equal(v, [4.0, 1.5])
    # log_loss clips p to [eps, 1 - eps]: finite where the exact BCE is +inf; soft targets skipped
    b = grids.Block("binary_cross_entropy", {}, np.array([0.0, 0.5, 0.5], F32),
                    np.array([1.0, 0.0, 0.3], F32))
    assert impl.supports(b)
    (v, g, idx), = impl.evaluate_many([b])
    assert list(idx) == [0, 1] and np.isfinite(v[0]) and v.dtype == F32
    assert not impl.supports(grids.Block("huber", {"delta": 1.0}, x, y))


def _ordinary(seed):
    """Ordinary float64 inputs for the peer-agreement tests below: residuals
    x, r; hard (0/1) and soft targets, hard ones as +-1 (pm); logits off
    the hinge's kink (xh); (16, 5) logits with labels and probability rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, 64)
    r = rng.normal(0.0, 3.0, 64)
    hard = (rng.random(64) < 0.5).astype(F64)
    soft = rng.random(64)
    pm = 2.0 * hard - 1.0
    xh = np.where(np.abs(1.0 - pm * x) < 0.01, x + 0.05, x)
    logits = rng.normal(0.0, 2.0, (16, 5))
    labels = rng.integers(0, 5, 16)
    probs = rng.random((16, 5))
    probs /= probs.sum(axis=1, keepdims=True)
    return x, r, hard, soft, pm, xh, logits, labels, probs


def _agrees(impl, blocks, rtol_v, rtol_g, atol_g, fix=None):
    """Every block is supported by the peer ``impl`` and its values and
    gradients agree with fastloss' (``fix(block, v)``: a known constant
    difference of the peer's taken out of its values first)."""
    fc = peers.FastlossCPU()
    for b in blocks:
        assert impl.supports(b), (b.loss, b.params)
        v, g = impl.evaluate(b)
        fv, fg = fc.evaluate(b)
        if fix is not None:
            v = fix(b, v)
        what = f"{b.loss} {b.params}"
        np.testing.assert_allclose(v, fv, rtol=rtol_v, atol=1e-300, err_msg=what)
        np.testing.assert_allclose(g, fg, rtol=rtol_g, atol=atol_g, err_msg=what)


def test_keras_adapter_agrees_on_ordinary_inputs():
    """The TensorFlow/Keras adapter (``keras.losses`` by Keras 3's names or
    TensorFlow's short aliases, gradients by GradientTape) on ordinary
    float64 inputs away from kinks and from Keras' probability clipping
    (1e-7): every loss it maps agrees with fastloss to 1e-9 (Keras' focal
    forms 1 - p_t by subtraction; its poisson adds 1e-7 to the rate, up to
    3e-7 here, compared to 1e-6; its log_cosh subtracts log 2 rounded to
    float32, a constant taken out), so the audit compares like with like. A wrong
    mapping (argument order, huber's delta, the hinge's 0 targets, focal's
    alpha) is off by O(1) at these points. What Keras lacks is declined."""
    pytest.importorskip("tensorflow")
    impl = peers.Keras()
    assert impl.unavailable() is None
    x, r, hard, soft, pm, xh, logits, labels, probs = _ordinary(9)
    rng = np.random.default_rng(10)
    prob = rng.uniform(0.05, 0.95, 64)
    rate = rng.uniform(0.5, 4.0, 64)
    blocks = [
        grids.Block("mse", {}, x, r),
        grids.Block("mae", {}, x, r),
        grids.Block("msle", {}, np.abs(x), np.abs(r)),
        grids.Block("log_cosh", {}, x, r),
        grids.Block("huber", {"delta": 1.5}, x, r),
        grids.Block("hinge", {}, xh, pm),
        grids.Block("hinge", {}, xh, hard),  # 0 read as -1 by both
        grids.Block("squared_hinge", {}, xh, pm),
        grids.Block("binary_cross_entropy", {}, prob, soft),
        grids.Block("binary_cross_entropy_with_logits", {"label_smoothing": 0.0}, x, soft),
        grids.Block("sigmoid_focal", {"alpha": 0.25, "gamma": 2.0}, x / 2, hard),
        grids.Block("sigmoid_focal", {"alpha": None, "gamma": 0.5}, x / 2, soft),
        grids.Block("cross_entropy", {}, logits, labels, kind="rows"),
        grids.Block("cross_entropy", {}, logits, probs, kind="rows"),
    ]

    def ln2_f32(b, v):
        # Keras' log_cosh is x + softplus(-2x) - log(2) with log(2) a float32
        # constant: 1.9e-9 too small in float64 (what the audit measures)
        return v + (float(np.float32(math.log(2.0))) - math.log(2.0)) if b.loss == "log_cosh" else v

    _agrees(impl, blocks, 1e-9, 1e-9, 1e-12, fix=ln2_f32)
    # Keras' poisson: y_pred - y_true log(y_pred + 1e-7), off by ~y 1e-7 / x
    poisson = grids.Block("poisson_nll", {"log_input": False}, rate, np.round(rate * 2))
    v, g = impl.evaluate(poisson)
    fv, fg = peers.FastlossCPU().evaluate(poisson)
    np.testing.assert_allclose(v, fv, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(g, fg, rtol=1e-9, atol=1e-6)
    assert not impl.supports(grids.Block("poisson_nll", {"log_input": True}, x, rate))
    assert not impl.supports(grids.Block("binary_cross_entropy_with_logits",
                                         {"label_smoothing": 0.1}, x, soft))
    assert not impl.supports(grids.Block("quantile", {"q": 0.5}, x, r))


def test_a_failing_peer_adapter_is_skipped(monkeypatch):
    """A peer whose adapter raises (a library version whose names moved, as
    TensorFlow 2.16+'s ``tf.keras.losses`` did) is skipped with the reason,
    as an uninstalled one is, and the audit goes on."""
    def broken(self, block):
        raise AttributeError("module has no attribute 'mean_squared_error'")

    monkeypatch.setattr(peers.NumpyTextbook, "unavailable", lambda self: None)
    monkeypatch.setattr(peers.NumpyTextbook, "supports", broken)
    lines = []
    r = core.audit(losses=["mse"], impls=["numpy", "fastloss-cpu"], dtypes=["float64"],
                   size="quick", oracle=STUB, workers=1, log=lines.append)
    why = r.report["meta"]["skipped_implementations"]["numpy"]
    assert "mean_squared_error" in why
    assert any(line.startswith("skip numpy:") for line in lines)
    assert "fastloss-cpu" in r.report["losses"]["mse"]["results"]


def test_torchvision_focal_adapter_agrees_on_ordinary_inputs():
    """The torchvision adapter's focal loss (``torchvision.ops.
    sigmoid_focal_loss``, or its source file where the wheel cannot be
    imported; alpha=None mapped to torchvision's -1) on ordinary float64
    logits, hard and soft targets: it agrees with fastloss to 1e-9 in value
    and gradient (torchvision forms 1 - p_t by subtraction, which loses
    relative accuracy where p_t ~ 1: 5e-13 here), so the audit compares
    like with like. A wrong
    mapping (alpha=None read as alpha = 0 or 1, gamma dropped) is off by
    O(1) at these points. PyTorch's own adapter declines the loss (it is
    torchvision's, not ``torch.nn.functional``'s)."""
    pytest.importorskip("torch")
    if peers.torchvision_losses() is None:
        pytest.skip("torchvision is not installed")
    impl = peers.Torchvision()
    x, _, hard, soft, *_ = _ordinary(8)
    blocks = [
        grids.Block("sigmoid_focal", {"alpha": 0.25, "gamma": 2.0}, x, hard),
        grids.Block("sigmoid_focal", {"alpha": None, "gamma": 0.5}, x, soft),
        grids.Block("sigmoid_focal", {"alpha": 0.75, "gamma": 3.0}, x, 1.0 - soft),
    ]
    assert not any(peers.Torch().supports(b) for b in blocks)
    _agrees(impl, blocks, 1e-9, 1e-9, 1e-15)
    assert not impl.supports(grids.Block("mse", {}, x, soft))


def test_jax_adapter_agrees_on_ordinary_inputs():
    """The JAX/optax adapter (optax.losses under jax_enable_x64, gradients by
    jax.vjp) on ordinary float64 inputs away from kinks: every loss it maps
    agrees with fastloss to ~1e-13 in value and gradient, so the audit
    compares like with like. A wrong mapping (huber's delta, the hinge's 0
    targets, focal's alpha, integer against probability targets) is off by
    O(1) at these points."""
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    impl = peers.Optax()
    x, r, hard, soft, pm, xh, logits, labels, probs = _ordinary(7)
    blocks = [
        grids.Block("mse", {}, x, r),
        grids.Block("log_cosh", {}, x, r),
        grids.Block("huber", {"delta": 1.5}, x, r),
        grids.Block("hinge", {}, xh, pm),
        grids.Block("hinge", {}, xh, hard),  # 0 read as -1, as fastloss does
        grids.Block("binary_cross_entropy_with_logits", {"label_smoothing": 0.0}, x, soft,
                    q=np.ones(64)),
        grids.Block("sigmoid_focal", {"alpha": 0.25, "gamma": 2.0}, x, hard),
        grids.Block("sigmoid_focal", {"alpha": None, "gamma": 0.5}, x, soft),
        grids.Block("cross_entropy", {}, logits, labels, kind="rows"),
        grids.Block("cross_entropy", {}, logits, probs, kind="rows"),
    ]
    _agrees(impl, blocks, 1e-13, 1e-12, 1e-15)
    # what optax does not have is declined, not approximated
    assert not impl.supports(grids.Block("binary_cross_entropy_with_logits",
                                         {"label_smoothing": 0.1}, x, soft, q=np.ones(64)))
    assert not impl.supports(grids.Block("binary_cross_entropy_with_logits",
                                         {"label_smoothing": 0.0}, x, soft, q=np.full(64, 4.0)))
    assert not impl.supports(grids.Block("cross_entropy", {"label_smoothing": 0.1}, logits,
                                         labels, kind="rows"))
    assert not impl.supports(grids.Block("quantile", {"q": 0.5}, x, r))


def test_missing_peers_are_skipped_with_a_line():
    lines = []
    r = core.audit(losses=["mse"], impls=["numpy", "tensorflow", "torchvision", "jax"],
                   dtypes=["float64"], size="quick", oracle=STUB, workers=1, log=lines.append)
    skipped = r.report["meta"]["skipped_implementations"]
    for key, mod in (("tensorflow", "tensorflow"), ("torchvision", "torchvision"), ("jax", "optax")):
        if importlib.util.find_spec(mod) is None:
            assert key in skipped and "not installed" in skipped[key]
            assert any(s.startswith(f"skip {key}:") for s in lines)
    assert "numpy" in r.report["losses"]["mse"]["results"]
