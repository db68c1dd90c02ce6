"""The CUDA row-wise (multiclass) kernels (``fastloss.cuda.rowwise``) against
the CPU row kernels: values and gradients, every loss and option, both
dtypes and all reductions; bitwise-identical sums and gradients across
launch configurations; the CPU's validation errors found on the device;
``out=`` and in place.

Under the simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1) the
kernel runs the same CPU-compiled row formula, so per-row values and
gradients must be *bitwise* the CPU's; the loss sums are the CPU's chunk
partition summed in another compensated order (within 2 ULP). With
FASTLOSS_TEST_GPU=1 the same tests run on a real device with larger inputs,
where libdevice's exp/log allow 2 ULP (fma contraction is off in fastloss
kernels: ``fastloss.cuda.jit``).

``test_kernels_compile_to_ptx_for_sm90`` compiles every row kernel for sm_90
in a fresh process without the simulator, through its dispatcher as for a
launch, and checks that no multiply or add is left for contraction; it
needs libNVVM (a CUDA toolkit,
or pip's ``nvidia-nvvm`` + ``nvidia-cuda-nvrtc`` with ``CUDA_HOME`` pointing
at their ``nvidia/cu13``) and is skipped without it.
"""

import math
import os
import re
import textwrap
import warnings

import numpy as np
import pytest

import fastloss as fl
from tests.test_cuda import (
    CONFIGS,
    PTX_PRELUDE,
    assert_ulp,
    dev,
    float32_lanes_close,
    host,
    run_ptx_script,
    scalar_close,
)

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
cuda = pytest.importorskip("numba.cuda")
if not SIM and not cuda.is_available():  # pragma: no cover - real-GPU runs only
    pytest.skip("FASTLOSS_TEST_GPU=1 but no CUDA device", allow_module_level=True)

from fastloss.cuda import config  # noqa: E402
from fastloss.cuda.arrays import is_device_array  # noqa: E402

#: +-inf losses of extreme rows in float32, log(0) of zero probabilities: as on the CPU
pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")]

DTYPES = [np.float32, np.float64]
#: rows x classes of the agreement tests (one chunk in the simulator)
N, C = (9, 12) if SIM else (3001, 37)
#: per-row values and gradients: the same compiled formula under the simulator
BOUND = 0 if SIM else 2


def _logits(n, c, dtype, rng):
    """Rows spanning the dtype's range (tests/test_multiclass.extreme_logits),
    repeated to n rows."""
    big = float(np.finfo(dtype).max) / 4
    rows = [
        rng.standard_normal(c),
        rng.standard_normal(c) * 30,
        rng.standard_normal(c) * 1e3,
        rng.standard_normal(c) * 1e-30,
        np.r_[50.0, rng.standard_normal(c - 1)],
        np.r_[rng.standard_normal(c - 1) * 1e-3, 0.0],
        np.r_[big, -big, rng.standard_normal(c - 2)],
        np.r_[-np.inf, rng.standard_normal(c - 1)],
        np.r_[1e4, 1e4 - 1e-3, rng.standard_normal(c - 2) + 1e4],
    ]
    return np.array([rows[i % len(rows)] for i in range(n)]).astype(dtype)


def _probs(n, c, dtype, rng):
    p = rng.dirichlet(np.full(c, 0.5), n)
    p[1, 2] = 0.0  # a zero target / probability (0 log 0 = 0)
    p[1] /= p[1].sum()
    return p.astype(dtype)


# (id, loss, target kind, params); "W" is a (C,) weight vector, "D" the same
# as a device array; "ignore": some labels are ignore_index
CASES = [
    ("ce", "cross_entropy", "labels", {}),
    ("ce-ignore", "cross_entropy", "labels+ignore", {}),
    ("ce-weight", "cross_entropy", "labels", {"weight": "W"}),
    ("ce-smooth", "cross_entropy", "labels", {"label_smoothing": 0.1}),
    ("ce-zloss", "cross_entropy", "labels", {"z_loss": 1e-3}),
    ("ce-all", "cross_entropy", "labels+ignore",
     {"weight": "D", "label_smoothing": 0.2, "z_loss": 1e-2, "ignore_index": 3}),
    ("ce-probs", "cross_entropy", "probs", {}),
    ("ce-probs-all", "cross_entropy", "probs", {"weight": "W", "label_smoothing": 0.1,
                                                "z_loss": 1e-3}),
    ("nll", "nll", "labels", {}),
    ("nll-weight-ignore", "nll", "labels+ignore", {"weight": "D"}),
    ("cce", "categorical_cross_entropy", "cce", {}),
    ("kl", "kl_div", "kl", {}),
    ("kl-log", "kl_div", "kl", {"log_target": True}),
    ("focal", "softmax_focal", "labels", {}),
    ("focal-alpha", "softmax_focal", "labels", {"gamma": 0.5, "alpha": "W"}),
    ("margin", "multi_margin", "labels", {}),
    ("margin-p2", "multi_margin", "labels", {"p": 2, "margin": 0.5, "weight": "D"}),
]


def _case(kind, params, dtype, n=N, c=C, seed=0):
    """(x, target, CPU params, device params) of one case."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 2.0, c).astype(dtype)
    cpu = {k: (w if v in ("W", "D") else v) for k, v in params.items()}
    gpu = {k: (dev(w) if v == "D" else cpu[k]) for k, v in params.items()}
    if kind.startswith("labels"):
        x = _logits(n, c, dtype, rng)
        t = rng.integers(0, c, n)
        if kind.endswith("ignore"):
            t[::4] = params.get("ignore_index", -100)
    elif kind == "probs":
        x, t = _logits(n, c, dtype, rng), _probs(n, c, dtype, rng)
    elif kind == "cce":
        x, t = _probs(n, c, dtype, rng), _probs(n, c, dtype, rng)
    else:
        x, t = np.log(_probs(n, c, np.float64, rng)).astype(dtype), _probs(n, c, dtype, rng)
        if params.get("log_target"):
            with np.errstate(divide="ignore"):
                t = np.log(t)
    return x, t, cpu, gpu


def _cpu_lanes(name, kind, params, dtype):
    """Whether the CPU computes this case's rows on float32 lanes (float32
    cross_entropy: with labels, with or without smoothing and z-loss,
    ``fastloss.cpu.rowtiles`` below 256 classes; with probability targets,
    ``rowtiles.lane_probs`` below 64), not by the row formula that the
    thread-per-row kernel runs: then the two agree within the lanes'
    accuracy (2 ULP each way; with smoothing, z-loss or probability targets
    2 ULP x the condition number of a gradient entry), not bitwise.
    Per-element results are then checked against ``_reference``."""
    return dtype == np.float32 and name == "cross_entropy"


def _reference(name, x, t, kc, lanes, **kw):
    """The CPU's (values, gradient) to compare the GPU's with: for a lanes
    case (``_cpu_lanes``) the CPU's float64 row formula on the upcast data,
    rounded to float32 -- what the thread-per-row kernel computes (the row
    formula in float64, rounded once), so within 1 ULP whatever the
    condition number (on an H200, gradients with smoothing 0.2 and z-loss
    were 1439 ULP from the CPU's float32 lanes: cancelling entries)."""
    if not lanes:
        return fl.value_and_grad(name, x, t, **kc, **kw)
    kc64 = {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in kc.items()}
    t64 = t.astype(np.float64) if t.dtype.kind == "f" else t  # probability targets
    v, g = fl.value_and_grad(name, x.astype(np.float64), t64, **kc64, **kw)
    return (v.astype(np.float32) if isinstance(v, np.ndarray) else v), g.astype(np.float32)


def _same_bits(got, want, dtype, what, lanes=False):
    assert_ulp(got, want, dtype, bound=1 if lanes else BOUND, what=what)
    if SIM and not lanes:
        it = np.int32 if np.dtype(dtype) == np.float32 else np.int64
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(got), nan), what
        assert np.array_equal(got[~nan].view(it), want[~nan].view(it)), what


# --- agreement with the CPU kernels -------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_agrees_with_cpu(case, dtype):
    """The thread-per-row kernels run the CPU's row formula: the same bits
    (``rows="thread"``: the warp- and block-per-row kernels of eligible
    calls sum in another order, tested in test_cuda_rowwarp/rowblock)."""
    with config.launch(rows="thread"):
        _agrees_with_cpu(case, dtype)


def _agrees_with_cpu(case, dtype):
    _, name, kind, params = case
    x, t, kc, kg = _case(kind, params, dtype)
    lanes = _cpu_lanes(name, kind, params, dtype)
    close = float32_lanes_close if lanes else scalar_close
    xd, td = dev(x), dev(t)
    v, g = fl.value_and_grad(name, xd, td, reduction="none", **kg)
    vc, gc = _reference(name, x, t, kc, lanes, reduction="none")
    assert is_device_array(v) and is_device_array(g)
    assert v.shape == (x.shape[0],) and v.dtype == x.dtype
    assert g.shape == x.shape and g.dtype == x.dtype
    _same_bits(host(v), vc, dtype, f"{name} values", lanes)
    _same_bits(host(g), gc, dtype, f"{name} grad of the sum", lanes)
    # the mean's (or batchmean's) gradient divisor; "sum" has the gradient of
    # "none" (checked above), so its value only (no gradient written)
    for red in ("mean", "batchmean") if name == "kl_div" else ("mean",):
        m, gm = fl.value_and_grad(name, xd, td, reduction=red, **kg)
        mc = fl.value_and_grad(name, x, t, reduction=red, **kc)[0]
        close(m, mc)
        _same_bits(host(gm), _reference(name, x, t, kc, lanes, reduction=red)[1], dtype,
                   f"{name} {red} grad", lanes)
    close(getattr(fl, name)(xd, td, reduction="sum", **kg),
          fl.value_and_grad(name, x, t, reduction="sum", **kc)[0])


def test_int32_labels_and_ignored_rows():
    x, t, kc, kg = _case("labels+ignore", {"weight": "W", "label_smoothing": 0.1}, np.float64)
    v, g = fl.value_and_grad("cross_entropy", dev(x), dev(t.astype(np.int32)), **kg)
    vc, gc = fl.value_and_grad("cross_entropy", x, t, **kc)
    scalar_close(v, vc)
    _same_bits(host(g), gc, np.float64, "int32 labels")
    assert np.all(host(g)[t == -100] == 0.0)
    vals = host(fl.cross_entropy(dev(x), dev(t), reduction="none", **kg))
    assert np.all(vals[t == -100] == 0.0)


def test_nan_propagates_as_on_the_cpu():
    """NaN in the data is not an error: it reaches the rows it touches (each
    loss in one dtype, alternating: the simulator is slow)."""
    for k, (name, kind, params) in enumerate([("cross_entropy", "labels", {"label_smoothing": 0.1}),
                                              ("cross_entropy", "probs", {}),
                                              ("softmax_focal", "labels", {}),
                                              ("multi_margin", "labels", {"p": 2}),
                                              ("kl_div", "kl", {})]):
        dtype = DTYPES[k % 2]
        x, t, kc, kg = _case(kind, params, dtype, seed=9)
        x[2, 3] = np.nan
        if kind != "labels":
            t[4, 1] = np.nan
        v, g = fl.value_and_grad(name, dev(x), dev(t), reduction="none", **kg)
        lanes = _cpu_lanes(name, kind, params, dtype)
        vc, gc = _reference(name, x, t, kc, lanes, reduction="none")
        assert np.isnan(vc[2])
        _same_bits(host(v), vc, dtype, f"{name} NaN values", lanes)
        _same_bits(host(g), gc, dtype, f"{name} NaN grad", lanes)
        assert math.isnan(getattr(fl, name)(dev(x), dev(t), **kg))


# --- determinism ------------------------------------------------------------------


def _pass_bits(fid, x, lab, t, w, p, rpc, want_grad, **launch):
    """(loss sum, gradient) from ``row_pass`` with a given rows-per-chunk
    (test hook) and launch configuration."""
    from fastloss.cuda.rowwise import row_pass

    stream = cuda.default_stream()
    g = cuda.device_array(x.shape, x.dtype) if want_grad else None
    with config.launch(**launch):
        tot = row_pass(fid, dev(x), None if lab is None else dev(lab),
                       None if t is None else dev(t), dev(w), p, -100, fid in (0, 2), 1.0, g,
                       None, stream, rpc=rpc)
    return float(tot.copy_to_host()[0]), None if g is None else host(g)


_CE_ALL = {"weight": "W", "label_smoothing": 0.1, "z_loss": 1e-3}
#: launch configurations of the row kernels: under the simulator (a Python
#: thread per GPU thread) fewer threads than test_cuda's CONFIGS, still one
#: thread, fewer threads than rows in flight, and more threads than rows
#: (rows per chunk 4 below), over one, two and five blocks
ROW_CONFIGS = [dict(threads=1, blocks=1), dict(threads=3, blocks=2),
               dict(threads=12, blocks=5)] if SIM else CONFIGS


@pytest.mark.parametrize("fid,kind,params,dtype", [
    (0, "labels+ignore", _CE_ALL, np.float32),
    (0, "labels+ignore", _CE_ALL, np.float64),
    (1, "probs", {}, np.float32),
    (5, "labels", {"gamma": 0.5, "alpha": "W"}, np.float64),
    (6, "labels", {"p": 2, "margin": 0.5, "weight": "W"}, np.float64),
], ids=["ce-f32", "ce-f64", "ce-probs-f32", "focal-f64", "margin-f64"])
def test_bitwise_across_launch_configurations(fid, kind, params, dtype):
    """Many chunks (a small rows-per-chunk through the test hook, a ragged
    tail): every launch configuration, run after run, gives the same loss
    and gradient bits; the sum agrees with the CPU's."""
    from fastloss.cpu.rowwise import sum_dd
    from fastloss.rows import FIDS

    name = {0: "cross_entropy", 1: "cross_entropy", 5: "softmax_focal", 6: "multi_margin"}[fid]
    n, c, rpc = (37, 10, 4) if SIM else (5003, 37, 64)
    x, t, kc, _ = _case(kind, params, dtype, n=n, c=c, seed=3)
    assert fid in FIDS[name]
    # finite losses of very different magnitudes (an inf sum would hide the bits)
    x = (np.random.default_rng(8).standard_normal((n, c)) * 4).astype(dtype)
    x[::7] *= 1e3
    w = kc.get("weight", kc.get("alpha"))
    lab = t if kind.startswith("labels") else None
    tt = None if lab is not None else t
    if fid == 0:
        hi, lo = sum_dd(w)
        p = (0.1, 1e-3, lo, hi)
    elif fid == 5:
        p = (0.5, 0.0, 0.0, 0.0)
    elif fid == 6:
        p = (0.5, 2.0, 0.0, 0.0)
    else:
        p = (0.0, 0.0, 0.0, 0.0)
        w = np.ones(c, dtype)
    ref = None
    for cfg in ROW_CONFIGS + ROW_CONFIGS[:1]:
        tot, g = _pass_bits(fid, x, lab, tt, w, p, rpc, True, **cfg)
        if ref is None:
            ref = (tot, g)
            close = float32_lanes_close if _cpu_lanes(name, kind, params, dtype) else scalar_close
            close(tot, fl.value_and_grad(name, x, t, reduction="sum", **kc)[0])
        else:
            assert tot == ref[0], cfg
            np.testing.assert_array_equal(g, ref[1])
    with config.launch(atomic=True, threads=8, blocks=3):
        tot, _ = _pass_bits(fid, x, lab, tt, w, p, rpc, False)
    assert tot == pytest.approx(ref[0], rel=1e-13)


def test_public_path_bitwise_across_launches():
    x, t, kc, kg = _case("labels+ignore", {"weight": "D", "label_smoothing": 0.1}, np.float32,
                         n=2 * N + 1, seed=4)
    xd, td = dev(x), dev(t)
    seen, grads = set(), []
    t1 = 8 if SIM else 256
    for cfg in (dict(threads=t1, blocks=1), dict(threads=5, blocks=3), dict(threads=t1, blocks=1)):
        with config.launch(**cfg):
            v, g = fl.value_and_grad("cross_entropy", xd, td, reduction="sum", **kg)
        seen.add(v)
        grads.append(host(g))
    assert len(seen) == 1
    for g in grads[1:]:
        np.testing.assert_array_equal(g, grads[0])
    scalar_close(seen.pop(), fl.cross_entropy(x, t, reduction="sum", **kc))


# --- validation on the device -----------------------------------------------------


def _both_raise(name, x, t, **kw):
    """The CPU's and the GPU's error for the same call: same type, same text."""
    with pytest.raises((ValueError, TypeError)) as cpu:
        fl.value_and_grad(name, x, t, **kw)
    kg = {k: (dev(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    with pytest.raises(cpu.type) as gpu:
        fl.value_and_grad(name, dev(x), dev(t), **kg)
    assert str(gpu.value) == str(cpu.value)
    if any(isinstance(v, np.ndarray) for v in kw.values()):  # NumPy parameters on the GPU path
        with pytest.raises(cpu.type) as gpu2:
            fl.value_and_grad(name, dev(x), dev(t), **kw)
        assert str(gpu2.value) == str(cpu.value)
    return str(cpu.value)


X = np.random.default_rng(5).standard_normal((3, 4))
Y = np.array([0, 1, 3])
P = np.full((3, 4), 0.25)


@pytest.mark.parametrize("name,x,t,kw,match", [
    ("cross_entropy", X, np.array([0, -1, 2]), {}, "label -1 at row 1 .*ignore_index"),
    ("cross_entropy", X, np.array([0, 7, -5]), {}, "label 7 at row 1"),
    ("nll", X, np.array([0, 9, 2]), {"ignore_index": 9}, None),  # 9 ignored: no error
    ("nll", X, np.array([4, 9, 2]), {}, "label 4 at row 0"),
    ("multi_margin", X, np.array([0, -100, 2]), {}, r"label -100 at row 1 is outside \[0, 4\)$"),
    ("softmax_focal", X, np.array([0, 1, 4]), {}, "label 4 at row 2"),
    ("cross_entropy", X, Y.astype(np.float64), {}, "labels"),
    ("cross_entropy", X, Y.astype(np.int16), {}, "int32 or int64"),
    ("cross_entropy", X, np.array([0, 1, 3, 0]), {}, r"shape \(3,\)"),
    ("cross_entropy", X, Y, {"weight": np.ones(3)}, "weight.*shape"),
    ("cross_entropy", X, Y, {"weight": np.r_[1.0, -1.0, 1.0, -2.0]}, r"weight.*element 1 is -1"),
    ("cross_entropy", X, Y, {"weight": np.r_[1.0, 1.0, np.inf, 1.0]}, r"weight.*element 2 is inf"),
    ("softmax_focal", X, Y, {"alpha": np.ones(4, np.float32)}, "alpha: dtype"),
    ("cross_entropy", X, Y, {"label_smoothing": 1.5}, "label_smoothing"),
    ("cross_entropy", X, Y, {"ignore_index": 1.5}, "ignore_index"),
    ("cross_entropy", X, -P, {}, r"target: .*element \(0, 0\)"),
    ("cross_entropy", X, P[:2], {}, "input's shape"),
    ("cross_entropy", X, P.astype(np.float32), {}, "differs from input's"),
    ("kl_div", X, np.where(P > 0, -1.0, 0.0), {}, "target"),
    ("kl_div", X, np.full((3, 4), np.inf), {}, "target"),
    ("kl_div", X, np.full((3, 4), np.inf), {"log_target": True}, "target"),
    ("categorical_cross_entropy", P + 1, P, {}, r"input: .*\[0, 1\]"),
    ("categorical_cross_entropy", P, Y, {}, "target: dtype"),
    ("multi_margin", X, Y, {"p": 3}, "p"),
    ("kl_div", X, P, {"reduction": "avg"}, "reduction"),
    ("cross_entropy", X, Y, {"reduction": "batchmean"}, "reduction"),
    ("cross_entropy", X[0], Y, {}, "2-D"),
    ("cross_entropy", X[:, :0], Y, {}, "at least one class"),
    ("cross_entropy", np.r_[X[:1], np.full((2, 4), -np.inf)], Y, {}, "row 1 has all logits -inf"),
    ("cross_entropy", np.r_[X[:1], np.full((2, 4), -np.inf)], P, {}, "row 1 has all logits"),
    ("softmax_focal", np.r_[X[:2], np.full((1, 4), -np.inf)], Y, {}, "row 2 has all logits"),
    ("multi_margin", np.array([[0.0, 1, 2, 3], [-np.inf, 0.0, -np.inf, 0.0], [np.inf] * 4]),
     np.array([0, 0, 1]), {}, r"row 1 .*x\[1, 0\] = -inf .*undefined"),
])
def test_errors_match_cpu(name, x, t, kw, match):
    if match is None:
        fl.value_and_grad(name, dev(x), dev(t), **kw)
        return
    msg = _both_raise(name, x, t, **kw)
    assert re.search(match, msg), msg


def test_device_only_errors():
    with pytest.raises(TypeError, match="target: must be a GPU array"):
        fl.cross_entropy(dev(X), Y)
    with pytest.raises(TypeError, match="out: must be a GPU array"):
        fl.value_and_grad("cross_entropy", dev(X), dev(Y), out=np.empty_like(X))


def test_all_neg_inf_row_allowed_when_ignored():
    x = X.copy()
    x[1] = -np.inf
    y = np.array([0, -100, 2])
    v, g = fl.value_and_grad("cross_entropy", dev(x), dev(y))
    vc, gc = fl.value_and_grad("cross_entropy", x, y)
    assert math.isfinite(v) and np.all(host(g)[1] == 0)
    scalar_close(v, vc)


# --- out= and in place --------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in (
    "ce-all", "ce-probs-all", "focal-alpha", "margin-p2", "kl", "nll-weight-ignore")],
    ids=lambda c: c[0])
def test_out_and_in_place_same_bits(case, dtype):
    _, name, kind, params = case
    x, t, kc, kg = _case(kind, params, dtype, seed=6)
    vc, gc = fl.value_and_grad(name, x, t, **kc)
    xd, td = dev(x), dev(t)
    v1, g1 = fl.value_and_grad(name, xd, td, **kg)
    buf = cuda.device_array(x.shape, x.dtype)
    v2, g2 = fl.value_and_grad(name, xd, td, out=buf, **kg)
    assert g2 is buf
    v3, g3 = fl.value_and_grad(name, xd, td, out=xd, **kg)  # in place over the logits
    assert g3 is xd
    assert v1 == v2 == v3
    lanes = _cpu_lanes(name, kind, params, dtype)
    (float32_lanes_close if lanes else scalar_close)(v1, vc)
    for g in (g1, g2, g3):
        np.testing.assert_array_equal(host(g), host(g1))
    _same_bits(host(g1), _reference(name, x, t, kc, lanes)[1], dtype, f"{name} out", lanes)


def test_out_checks_and_failed_call_leaves_out_untouched():
    xd, yd = dev(X), dev(Y)
    with pytest.raises(TypeError, match="out: dtype"):
        fl.value_and_grad("cross_entropy", xd, yd, out=cuda.device_array((3, 4), np.float32))
    with pytest.raises(ValueError, match="out: shape"):
        fl.value_and_grad("cross_entropy", xd, yd, out=cuda.device_array((4, 3)))
    pd = dev(P)
    with pytest.raises(ValueError, match="overlaps the target"):
        fl.value_and_grad("cross_entropy", xd, pd, out=pd)
    with pytest.raises(ValueError, match="label 4 at row 1"):
        fl.value_and_grad("cross_entropy", xd, dev(np.array([0, 4, 1])), out=xd)
    np.testing.assert_array_equal(host(xd), X)


# --- reductions and empty input ---------------------------------------------------


def test_reductions_and_empty():
    x, t, _, _ = _case("labels", {}, np.float64, seed=7)
    xd, td = dev(x), dev(t)
    none = host(fl.cross_entropy(xd, td, reduction="none"))
    assert fl.cross_entropy(xd, td, reduction="sum") == pytest.approx(none.sum())
    assert fl.cross_entropy(xd, td) == pytest.approx(none.mean())
    p = _probs(N, C, np.float64, np.random.default_rng(0))
    lp = np.log(_probs(N, C, np.float64, np.random.default_rng(1)))
    assert fl.kl_div(dev(lp), dev(p)) * C == pytest.approx(fl.kl_div(dev(lp), dev(p),
                                                                     reduction="batchmean"))
    # every row ignored: the mean is 0/0, the gradient zero
    v, g = fl.value_and_grad("cross_entropy", xd, dev(np.full(N, -100)))
    assert math.isnan(v) and not host(g).any()
    e, el = dev(np.zeros((0, 3))), dev(np.zeros(0, np.int64))
    assert fl.cross_entropy(e, el, reduction="sum") == 0.0
    assert host(fl.cross_entropy(e, el, reduction="none")).shape == (0,)
    with pytest.warns(RuntimeWarning, match="empty"):
        assert math.isnan(fl.cross_entropy(e, el))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v, g = fl.value_and_grad("kl_div", e, dev(np.zeros((0, 3))), reduction="batchmean")
    assert host(g).shape == (0, 3)


# --- real-GPU code generation (no GPU needed, libNVVM needed) ---------------------

_PTX_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    from fastloss.cuda import checks, rowwise
    from fastloss.cuda.config import SIMULATOR
    assert not SIMULATOR
    f64, i64, b1 = numba.float64, numba.int64, numba.boolean
    bad = []

    def check(what, kern, sig):
        try:
            ptx = ptx_of(kern, sig)
            assert ".target sm_90" in ptx
            # fastloss.cuda.jit: every multiply and add rounded as written
            assert not BARE.findall(ptx), BARE.findall(ptx)[:5]
            print("OK", what, len(ptx))
        except Exception as e:
            bad.append((what, repr(e)[:2000]))

    for dt in (numba.float32, numba.float64):
        a2, a1 = dt[:, ::1], dt[::1]
        for fid in range(7):
            for lab in ((i64[::1], numba.int32[::1]) if fid == 0 else (i64[::1],)):
                sig = (a2, lab, b1, a2, a1, f64, f64, f64, f64, i64, b1, f64, a2, a1,
                       f64[:, ::1], i64, i64, f64[::1], f64[::1], b1, b1)
                check((fid, str(dt), str(lab)), rowwise.make_row_kernel(fid), sig)
        for kern, sig in (
            (checks._first_dead_row, (a2, i64[::1], b1, i64, b1, i64[::1])),
            (checks._first_undefined_hinge, (a2, i64[::1], i64[::1])),
            (rowwise._label_weight_kernel, (i64[::1], a1, b1, i64, b1, f64[::1], f64[::1])),
        ):
            check((kern.py_func.__name__, str(dt)), kern, sig)
    check("_first_bad_label", checks._first_bad_label, (i64[::1], i64, i64, b1, i64[::1]))
    print("FAILED", bad)
    sys.exit(1 if bad else 0)
""")


def test_kernels_compile_to_ptx_for_sm90():
    """Every row formula's kernel (float32 and float64, int64 labels; int32
    for cross_entropy) and the row checks compile to PTX for sm_90 through
    their dispatchers, as for a launch: the formulas are valid CUDA device
    code, not only simulator Python, and no multiply or add is left for
    contraction (``fastloss.cuda.jit``)."""
    run_ptx_script(_PTX_SCRIPT)
