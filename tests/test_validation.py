"""Every bad input of issue 2 / DESIGN.md gives a ValueError or TypeError
whose message names the argument and what is wrong."""

import math

import numpy as np
import pytest

import fastloss as fl
from fastloss._config import CHUNK

X = np.array([0.2, 0.5, 0.9])
Y = np.array([0.0, 1.0, 0.5])


def raises(exc, match, name, x=X, y=Y, **kw):
    with pytest.raises(exc, match=match):
        fl.value_and_grad(name, x, y, **kw)


def test_unknown_loss():
    raises(ValueError, r"name: unknown loss 'nope'", "nope")


def test_unknown_reduction():
    raises(ValueError, r"reduction: mse takes 'mean', 'sum', 'none'; got 'avg'", "mse",
           reduction="avg")
    raises(ValueError, "reduction", "mse", reduction=None)


def test_unknown_parameter():
    raises(ValueError, r"delt: unknown parameter\(s\) of huber; its parameters: delta", "huber",
           delt=1.0)
    raises(ValueError, r"delta: unknown parameter\(s\) of mse; its parameters: none", "mse",
           delta=1.0)


@pytest.mark.parametrize("name,param,value,msg", [
    ("huber", "delta", -1.0, "delta: must be > 0"),
    ("huber", "delta", 0.0, "delta: must be > 0"),
    ("pseudo_huber", "delta", -0.5, "delta: must be > 0"),
    ("smooth_l1", "beta", -1e-9, "beta: must be >= 0"),
    ("sigmoid_focal", "gamma", -2.0, "gamma: must be >= 0"),
    ("sigmoid_focal", "alpha", 1.5, r"alpha: must be in \[0, 1\]"),
    ("quantile", "tau", 0.0, r"tau: must be in \(0, 1\)"),
    ("quantile", "tau", 1.0, r"tau: must be in \(0, 1\)"),
    ("binary_cross_entropy_with_logits", "label_smoothing", 1.5, "label_smoothing: must be in"),
    ("huber", "delta", float("nan"), "delta: must be finite"),
    ("huber", "delta", float("inf"), "delta: must be finite"),
])
def test_parameter_domains(name, param, value, msg):
    raises(ValueError, msg, name, **{param: value})


def test_parameter_types():
    raises(TypeError, "delta: must be a real number", "huber", delta="1")
    raises(TypeError, "delta: must be a real number", "huber", delta=True)
    raises(TypeError, "log_input: must be True or False", "poisson_nll", log_input=1)


@pytest.mark.parametrize("bad,exc,msg", [
    ([0.1, 0.2, 0.3], TypeError, "input: must be a NumPy array"),
    (0.5, TypeError, "input: must be a NumPy array"),
    (np.array([1, 2, 3]), TypeError, "input: dtype must be float32 or float64; got int64"),
    (np.array([True, False, True]), TypeError, "input: dtype must be float32 or float64; got bool"),
    (np.array([1j, 2j, 3j]), TypeError, "got complex128"),
    (np.array([1, 2, 3], np.float16), TypeError, "got float16"),
    (np.array(0.5), ValueError, "input: must have at least one dimension"),
])
def test_bad_input_arrays(bad, exc, msg):
    raises(exc, msg, "mse", x=bad, y=Y)


def test_bad_target_arrays():
    raises(TypeError, "target: dtype must be float32 or float64; got int64", "mse",
           y=np.array([0, 1, 2]))
    raises(ValueError, r"target: shape \(2,\) must equal input's shape \(3,\)", "mse",
           y=np.array([0.0, 1.0]))
    raises(ValueError, r"target: shape \(1, 3\) must equal input's shape \(3,\)", "mse",
           y=Y.reshape(1, 3))


def test_mixed_float_dtypes_are_refused():
    raises(TypeError, "target: dtype float32 differs from input's float64", "mse",
           y=Y.astype(np.float32))
    raises(TypeError, "weight: dtype float32 differs from input's float64",
           "binary_cross_entropy_with_logits", weight=np.ones(3, np.float32))


def test_weight_shapes():
    raises(ValueError, r"pos_weight: shape \(2,\) does not broadcast to the input's shape \(3,\)",
           "binary_cross_entropy_with_logits", pos_weight=np.ones(2))
    raises(ValueError, r"weight: shape \(4,\) does not broadcast", "sigmoid_focal",
           weight=np.ones(4))


@pytest.mark.parametrize("name,x,y,msg", [
    ("binary_cross_entropy", [0.5, 1.5, 0.2], Y, r"input: values must be in \[0, 1\]; element 1 is 1.5"),
    ("binary_cross_entropy", [0.5, -1e-300, 0.2], Y, "input: values must be in .* element 1"),
    ("binary_cross_entropy", X, [0.0, 2.0, 0.5], r"target: values must be in \[0, 1\]; element 1"),
    ("binary_cross_entropy_with_logits", X, [0.0, -0.1, 0.5], "target: values must be in"),
    ("sigmoid_focal", X, [1.1, 0.0, 0.5], "target: values must be in .* element 0"),
    ("msle", [0.5, -1.0, 0.2], Y, r"input: values must be in \(-1, inf\]; element 1 is -1.0"),
    ("msle", X, [0.0, -3.0, 0.5], r"target: values must be in \(-1, inf\]; element 1"),
    ("hinge", X, [1.0, 0.5, -1.0], r"target: values must be in \{-1, 0, 1\}; element 1 is 0.5"),
    ("squared_hinge", X, [1.0, 2.0, -1.0], r"target: values must be in \{-1, 0, 1\}"),
    ("soft_margin", X, [1.0, -2.0, -1.0], r"target: values must be in \{-1, 0, 1\}"),
    ("poisson_nll", X, [0.0, -1.0, 0.5], r"target: values must be in \[0, inf\]; element 1"),
])
def test_data_domains(name, x, y, msg):
    raises(ValueError, msg, name, x=np.asarray(x, float), y=np.asarray(y, float))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,bad", [
    ("binary_cross_entropy_with_logits", {"y": [(2 * CHUNK + 7, 1.5), (3 * CHUNK, -2.0)]}),
    ("binary_cross_entropy", {"x": [(3 * CHUNK + 1, -1e-30)], "y": [(CHUNK + 3, 1.25)]}),
    ("msle", {"x": [(CHUNK - 1, -1.0)], "y": [(7, -1.5)]}),
    ("sigmoid_focal", {"y": [(3 * CHUNK + 4, np.inf)]}),
])
def test_data_domains_in_the_kernel(name, bad, dtype):
    """Without out=, the interval checks ride in the kernel (``fused``'s
    ``bad`` flags) and a flagged call raises the full check's error; with
    out=, the checks run before the kernel. Both give the same message
    (input before target, the first offender, several chunks), the
    returned values and the caller's out are untouched, and data at the
    interval's edges passes (msle's open -1: its next value passes)."""
    n = 4 * CHUNK + 9
    rng = np.random.default_rng(3)
    base = {"binary_cross_entropy_with_logits": (rng.normal(size=n), rng.random(n)),
            "binary_cross_entropy": (rng.random(n), rng.random(n)),
            "msle": (rng.random(n) * 3, rng.random(n)),
            "sigmoid_focal": (rng.normal(size=n), rng.random(n))}[name]
    x, y = (a.astype(dtype) for a in base)
    if name == "msle":
        x[:5] = np.nextafter(dtype(-1), dtype(0))  # inside the open interval
    else:
        y[:2] = [0.0, 1.0]
    fl.value_and_grad(name, x, y)  # the edges pass
    for arg, points in bad.items():
        a = x if arg == "x" else y
        for i, v in points:
            a[i] = v
    with pytest.raises(ValueError) as before:
        out = np.full_like(x, 7.0)
        fl.value_and_grad(name, x, y, out=out)
    assert np.all(out == 7.0)
    first = ("input" if "x" in bad else "target")
    assert before.value.args[0].startswith(first)
    for call in (lambda: fl.value_and_grad(name, x, y), lambda: getattr(fl, name)(x, y),
                 lambda: fl.value_and_grad(name, x, y, reduction="none")):
        with pytest.raises(ValueError) as fused:
            call()
        assert fused.value.args[0] == before.value.args[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lo,hi,lo_open,hi_open", [
    (0.1, 0.3, False, False), (0.1, 0.3, True, True), (-1.0, 2.0**-130, True, False),
    (1.0, 1.0 + 2.0**-30, False, True), (-math.inf, 5.0, False, True), (0.0, math.inf, True, False),
])
def test_interval_bounds_are_the_dtype_edges(lo, hi, lo_open, hi_open, dtype):
    """``validate.interval_bounds``: an element of the data's dtype lies
    outside the interval (compared exactly, in float64 against the float64
    ends) iff it lies beyond the dtype bounds given to the kernel; checked
    on the dtype's values around both ends."""
    from fastloss.catalog import Interval, LossSpec
    from fastloss.validate import interval_bounds

    dom = Interval(lo, hi, lo_open, hi_open)
    spec = LossSpec("t", "regression", None, "t", target_domain=dom)
    b = interval_bounds(spec, np.dtype(dtype))
    assert b.dtype == dtype and b[0] == -np.inf and b[1] == np.inf
    for end in (lo, hi):
        if not math.isfinite(end):
            continue
        c = dtype(end)
        vals = [c]
        for direction in (np.inf, -np.inf):
            v = c
            for _ in range(3):
                v = np.nextafter(v, dtype(direction))
                vals.append(v)
        for v in vals:
            w = float(v)
            outside = (w < lo or w > hi or (lo_open and w == lo) or (hi_open and w == hi))
            assert outside == bool(v < b[2] or v > b[3]), (v, b)


def test_poisson_input_domain_depends_on_log_input():
    x = np.array([-1.0, 0.5, 2.0])
    fl.poisson_nll(x, Y)  # log-rate input: any real x
    with pytest.raises(ValueError, match=r"input: values must be in \[0, inf\]; element 0"):
        fl.poisson_nll(x, Y, log_input=False)


def test_nan_is_not_a_domain_error():
    x = np.array([0.5, np.nan, 0.2])
    y = np.array([np.nan, 1.0, 0.0])
    for name in ("binary_cross_entropy", "msle", "poisson_nll"):
        v = fl.value_and_grad(name, x, y, reduction="none")[0]
        assert np.isnan(v[:2]).all() and np.isfinite(v[2])
    s = np.array([1.0, np.nan, -1.0])
    assert np.isnan(fl.hinge(X, s, reduction="none")[1])


def test_metric_style_refusal_of_grad_is_clear():
    # every elementwise loss has a gradient; metrics (later) refuse value_and_grad
    for name in fl.names():
        spec = __import__("fastloss.catalog", fromlist=["get"]).get(name)
        if not spec.has_grad:
            with pytest.raises(ValueError, match="has no gradient"):
                fl.value_and_grad(name, X, Y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_domain_checks_find_the_first_offender_across_blocks(dtype):
    """The blocked (vectorized) domain checks return the same first index as
    a NumPy reference, for offenders at block edges, in later blocks, and
    several per block; NaN passes."""
    from fastloss.cpu.checks import CHECK_BLOCK, first_not_in, first_outside

    rng = np.random.default_rng(7)
    n = 3 * CHECK_BLOCK + 5
    spots = [0, 1, CHECK_BLOCK - 1, CHECK_BLOCK, 2 * CHECK_BLOCK + 3, n - 1]
    for _trial in range(40):
        a = rng.random(n).astype(dtype)
        a[rng.integers(0, n, 3)] = np.nan
        bad_at = sorted(rng.choice(spots, size=int(rng.integers(0, 3)), replace=False))
        for i in bad_at:
            a[i] = rng.choice([-0.25, 1.5, 0.0, 1.0])
        for lo_open in (False, True):
            for hi_open in (False, True):
                bad = (a < 0) | (a > 1) | (lo_open & (a == 0)) | (hi_open & (a == 1))
                want = int(np.argmax(bad)) if bad.any() else -1
                assert first_outside(a, 0.0, 1.0, lo_open, hi_open) == want
        for values in ([-1.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0]):
            v = np.asarray(values)
            b = rng.choice(v, n).astype(dtype)
            b[rng.integers(0, n, 2)] = np.nan
            for i in bad_at:
                b[i] = 0.5
            bad = ~(np.isnan(b) | np.isin(b, v))
            want = int(np.argmax(bad)) if bad.any() else -1
            assert first_not_in(b, v) == want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_domain_check_parallel_path(dtype):
    """Arrays of at least PARALLEL_MIN elements are flagged block by block in
    parallel: the same first offender as NumPy (first block, a later block,
    several, none; NaN passes), for bounds that are float32 values (float32
    comparisons) and bounds that are not."""
    from fastloss.cpu.checks import PARALLEL_MIN, first_outside

    rng = np.random.default_rng(11)
    n = PARALLEL_MIN + 12345
    base = rng.random(n).astype(dtype)
    base[rng.integers(0, n, 5)] = np.nan
    lo2 = 0.1 if dtype == np.float32 else 0.0  # 0.1: not a float32 value
    for spots in ([], [n - 1], [7, n - 100], [PARALLEL_MIN // 2, PARALLEL_MIN // 2 + 1]):
        a = base.copy()
        for i in spots:
            a[i] = 1.5
        for lo, lo_open in ((0.0, False), (0.0, True), (lo2, False)):
            bad = (a < lo) | (a > 1) | (lo_open & (a == lo))
            want = int(np.argmax(bad)) if bad.any() else -1
            assert first_outside(a, lo, 1.0, lo_open, False) == want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_set_check_parallel_path(dtype):
    """first_not_in flags blocks in parallel too (sets of up to 4 values):
    the same first offender as NumPy; NaN passes; a set of 5 values takes
    the element-by-element path."""
    from fastloss.cpu.checks import PARALLEL_MIN, first_not_in

    rng = np.random.default_rng(12)
    n = PARALLEL_MIN + 777
    base = rng.choice(np.array([-1.0, 0.0, 1.0], dtype=dtype), n)
    base[rng.integers(0, n, 5)] = np.nan
    for spots in ([], [n - 1], [3, n - 50], [PARALLEL_MIN // 2, PARALLEL_MIN // 2 + 1]):
        a = base.copy()
        for i in spots:
            a[i] = 0.5
        for values in ([-1.0, 0.0, 1.0], [-1.0, 1.0], [-1.0, 0.0, 1.0, 2.0, 3.0]):
            bad = ~(np.isin(a, values) | np.isnan(a))
            want = int(np.argmax(bad)) if bad.any() else -1
            assert first_not_in(a, np.asarray(values)) == want
