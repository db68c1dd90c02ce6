"""The block-per-row cross_entropy kernel (``fastloss.cuda.rowblock``):
values and gradients against the mpmath oracle (<= 2 ULP), bitwise the same
for every launch configuration, agreement with the CPU kernel and with the
thread-per-row kernel, ignored rows, float32 class weights, ``out=`` in place,
and which calls take it.

Under the simulator (tests/conftest.py) the shapes are tiny; with
FASTLOSS_TEST_GPU=1 the same tests run on a device. ``rows="block"`` forces
the kernel for rows narrower than ``rowblock.MIN_C``.
"""

import os
import textwrap

import numpy as np
import pytest

import fastloss as fl
from fastloss.reference.multiclass import row_value_and_grad
from tests.test_cuda import (
    PTX_PRELUDE,
    dev,
    float32_lanes_close,
    float32_rows_close,
    host,
    run_ptx_script,
)
from tests.test_multiclass import extreme_logits, round_to_dtype, ulps

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
cuda = pytest.importorskip("numba.cuda")
if not SIM and not cuda.is_available():  # pragma: no cover - real-GPU runs only
    pytest.skip("FASTLOSS_TEST_GPU=1 but no CUDA device", allow_module_level=True)

from fastloss.cuda import config, rowblock  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]


def _block(x, y, reduction="none", **kw):
    with config.launch(rows="block"):
        v, g = fl.value_and_grad("cross_entropy", dev(x), dev(y), reduction=reduction, **kw)
    return (host(v) if reduction == "none" else v), host(g)


def test_against_the_oracle(monkeypatch):
    """The extreme rows of test_multiclass (huge, tiny, -inf, near-ties,
    one dominant logit; its generator reseeded, so the rows do not depend on
    which tests ran before) at C = 12, and three rows of C = 300 > ROW_LANES
    (lanes take two elements): values and gradients within 2 ULP of mpmath."""
    import tests.test_multiclass as tm

    monkeypatch.setattr(tm, "RNG", np.random.default_rng(11))
    dtype = np.float32
    for x, y in ((extreme_logits(9, 12, dtype), np.array([0, 3, 5, 7, 0, 11, 0, 4, 1])),
                 (extreme_logits(3, 300, dtype), np.array([299, 0, 257]))):
        v, g = _block(x, y)
        for r in range(x.shape[0]):
            ev, eg = row_value_and_grad("cross_entropy", x[r], int(y[r]))
            assert ulps([v[r]], [round_to_dtype(ev, dtype)], dtype).max() <= 2, r
            gu = ulps(g[r], [round_to_dtype(e, dtype) for e in eg], dtype)
            assert gu.max() <= 2, (r, int(np.argmax(gu)), gu.max())


def test_bitwise_across_launches_and_close_to_the_cpu():
    """Every launch configuration (one thread, fewer threads than lanes, a
    count that divides nothing, several blocks): the same values, gradient
    and loss bits. Against the CPU kernel: values and gradients within 4 ULP
    (each is within 2 ULP of the oracle, test_against_the_oracle and
    test_multiclass; they sum the exponentials in other orders), the loss
    to ~1e-15."""
    rng = np.random.default_rng(5)
    dtype = np.float32
    n, c = (5, 70) if SIM else (3001, 1000)
    x = (rng.standard_normal((n, c)) * 5).astype(dtype)
    x[::3] *= 100
    y = rng.integers(0, c, n)
    launches = (dict(threads=1, blocks=1), dict(threads=8, blocks=3),
                dict(threads=33 if SIM else 256, blocks=2 if SIM else None))
    ref = None
    for launch in launches:
        with config.launch(**launch):
            v, g = _block(x, y)
        if ref is None:
            ref = (v, g)
        else:
            np.testing.assert_array_equal(v, ref[0])
            np.testing.assert_array_equal(g, ref[1])
    # the mean (its divisor and the loss sum) at two configurations
    means = []
    for launch in launches[1:]:
        with config.launch(**launch):
            means.append(_block(x, y, reduction="mean"))
    assert means[0][0] == means[1][0]
    np.testing.assert_array_equal(means[0][1], means[1][1])
    ref = (*ref, *means[0])
    vc, gc = fl.value_and_grad("cross_entropy", x, y, reduction="none")
    mc, gmc = fl.value_and_grad("cross_entropy", x, y)
    assert ulps(ref[0], vc, dtype).max() <= 4
    assert ulps(ref[1], gc, dtype).max() <= 4
    assert ulps(ref[3], gmc, dtype).max() <= 4
    float32_rows_close(ref[2], mc)
    # the thread-per-row kernel: the same partition of the loss sum
    with config.launch(rows="thread"):
        mt, _ = fl.value_and_grad("cross_entropy", dev(x), dev(y))
    float32_rows_close(ref[2], mt)


def test_ignored_rows_weights_and_in_place():
    """ignore_index rows: value 0, gradient row 0, left out of the mean's
    denominator; float32 class weights; ``out=`` the input itself gives the
    bits of a separate buffer."""
    rng = np.random.default_rng(6)
    n, c = 9, 40
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    y = rng.integers(0, c, n)
    y[::4] = 7
    w = rng.uniform(0.1, 2.0, c).astype(np.float32)
    kw = dict(ignore_index=7, weight=w)
    v, g = _block(x, y, **kw)
    assert np.all(v[y == 7] == 0) and np.all(g[y == 7] == 0)
    vc, gc = fl.value_and_grad("cross_entropy", x, y, reduction="none", **kw)
    assert ulps(v, vc, np.float32).max() <= 4 and ulps(g, gc, np.float32).max() <= 4
    m, gm = _block(x, y, reduction="mean", **kw)
    mc, gmc = fl.value_and_grad("cross_entropy", x, y, **kw)
    float32_lanes_close(m, mc)  # the CPU's rows of 40 classes: float32 lanes
    assert ulps(gm, gmc, np.float32).max() <= 4
    xd = dev(x)
    with config.launch(rows="block"):
        mi, gi = fl.value_and_grad("cross_entropy", xd, dev(y), out=xd, **kw)
    assert gi is xd and mi == m
    np.testing.assert_array_equal(host(xd), gm)


def test_which_calls_take_the_block_kernel(monkeypatch):
    """By default float32 rows of >= MIN_C classes without smoothing or
    z-loss; everything else (float64: the double-double gradient) the
    thread-per-row kernel, and rows="thread" forces that."""
    calls = []
    real = rowblock.block_row_pass
    monkeypatch.setattr(rowblock, "block_row_pass", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(7)

    def took(c, dtype=np.float32, **kw):
        calls.clear()
        x = rng.standard_normal((2, c)).astype(dtype)
        y = rng.integers(0, c, 2)
        fl.cross_entropy(dev(x), dev(y), **kw)
        return bool(calls)

    c = rowblock.MIN_C
    w = np.ones(c, np.float32)
    assert took(c) and not took(c - 1)
    assert took(c, weight=w) and took(c, ignore_index=1)
    assert not took(c, np.float64)
    with config.launch(rows="block"):
        assert not took(c, np.float64) and took(8)
    assert not took(c, label_smoothing=0.1) and not took(c, z_loss=1e-3)
    with config.launch(rows="thread"):
        assert not took(c)
    with pytest.raises(ValueError, match="rows"):
        with config.launch(rows="grid"):
            pass


_PTX_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    from fastloss.cuda import rowblock
    from fastloss.cuda.config import SIMULATOR
    assert not SIMULATOR
    f64, i64, b1 = numba.float64, numba.int64, numba.boolean
    for dt in (numba.float32, numba.float64):
        a2, a1 = dt[:, ::1], dt[::1]
        for lab in (i64[::1], numba.int32[::1]):
            sig = (a2, lab, a1, b1, i64, b1, f64, b1, a2, b1, f64[::1])
            ptx = ptx_of(rowblock._ce_rows, sig)
            assert ".target sm_90" in ptx and not BARE.findall(ptx), BARE.findall(ptx)[:5]
        sig = (f64[::1], a1, b1, i64, f64[::1], f64[::1])
        for kern in (rowblock._sum_rows, rowblock._sum_rows_atomic):
            ptx = ptx_of(kern, sig)
            # atom.global.add.f64 (the atomic option) is no contractible add
            ops = "\\n".join(x for x in ptx.splitlines() if "atom." not in x)
            assert ".target sm_90" in ptx and not BARE.findall(ops), BARE.findall(ops)[:5]
    print("OK")
""")


def test_kernels_compile_to_ptx_for_sm90():
    """The block kernel and its row sums compile for sm_90 (float32 and
    float64 data, int64 and int32 labels) with no multiply or add left for
    contraction; skipped without libNVVM."""
    assert run_ptx_script(_PTX_SCRIPT).strip().endswith("OK")
