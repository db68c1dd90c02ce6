"""The warp-per-row cross_entropy kernel (``fastloss.cuda.rowwarp``): values
and gradients against the mpmath oracle (<= 2 ULP), bitwise the same for
every launch configuration, agreement with the CPU kernel, ignored rows,
float32 class weights, ``out=`` in place, and which calls take it; its
shuffle path compiles for sm_90.

Under the simulator (tests/conftest.py) the kernel runs its shared-memory
merge path (the simulator has no warp shuffles) and the shapes are tiny;
with FASTLOSS_TEST_GPU=1 the same tests run the shuffle path on a device.
Rows of fewer than ``rowblock.MIN_C`` classes take the kernel by default;
``rows="warp"`` forces it for longer rows.
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

from fastloss.cuda import config, rowblock, rowwarp  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]


def _warp(x, y, reduction="none", **kw):
    with config.launch(rows="warp"):
        v, g = fl.value_and_grad("cross_entropy", dev(x), dev(y), reduction=reduction, **kw)
    return (host(v) if reduction == "none" else v), host(g)


def _check_oracle(x, y, v, g, dtype, **kw):
    params = {k: (list(map(float, p)) if isinstance(p, np.ndarray) else p) for k, p in kw.items()}
    for r in range(x.shape[0]):
        ev, eg = row_value_and_grad("cross_entropy", x[r], int(y[r]), **params)
        assert ulps([v[r]], [round_to_dtype(ev, dtype)], dtype).max() <= 2, r
        gu = ulps(g[r], [round_to_dtype(e, dtype) for e in eg], dtype)
        assert gu.max() <= 2, (r, int(np.argmax(gu)), gu.max())


def test_against_the_oracle(monkeypatch):
    """The extreme rows of test_multiclass (huge, tiny, -inf, near-ties, one
    dominant logit; its generator reseeded, so the rows do not depend on
    which tests ran before) at C = 12 (fewer classes than lanes) and C = 40
    (lanes 0-7 take two elements), the latter with float32 class weights and
    an ignored row: values and gradients within 2 ULP of mpmath."""
    import tests.test_multiclass as tm

    monkeypatch.setattr(tm, "RNG", np.random.default_rng(12))
    dtype = np.float32
    x = extreme_logits(9, 12, dtype)
    y = np.array([0, 3, 5, 7, 0, 11, 0, 4, 1])
    v, g = _warp(x, y)
    _check_oracle(x, y, v, g, dtype)

    x = extreme_logits(9, 40, dtype)
    y = np.array([0, 33, 5, 39, 0, 39, 0, 35, 1])
    y[2] = 7  # ignored
    w = np.random.default_rng(13).uniform(0.1, 2.0, 40).astype(dtype)
    kw = dict(weight=w, ignore_index=7)
    v, g = _warp(x, y, **kw)
    assert v[2] == 0 and not g[2].any()
    _check_oracle(x, y, v, g, dtype, **kw)


def test_bitwise_across_launches_and_close_to_the_cpu():
    """Launch configurations of one, two and four warps per block over one
    and three blocks (rows left over in the last round, a thread count that
    is no multiple of 32): the same values, gradient and loss bits. Against
    the CPU kernel: values and gradients within 4 ULP (each is within 2 ULP
    of the oracle; the exponentials are summed in other orders), the loss
    sums to ~1e-15, as the thread-per-row kernel's (the same partition)."""
    rng = np.random.default_rng(5)
    dtype = np.float32
    n, c = (13, 40) if SIM else (3001, 40)
    x = (rng.standard_normal((n, c)) * 5).astype(dtype)
    x[::3] *= 100
    y = rng.integers(0, c, n)
    launches = (dict(threads=32, blocks=1), dict(threads=64, blocks=3),
                dict(threads=128, blocks=1), dict(threads=100, blocks=3))
    ref = None
    for launch in launches:
        with config.launch(**launch):
            v, g = _warp(x, y)
        if ref is None:
            ref = (v, g)
        else:
            np.testing.assert_array_equal(v, ref[0], err_msg=str(launch))
            np.testing.assert_array_equal(g, ref[1], err_msg=str(launch))
    # the mean (its divisor and the loss sum) at two configurations
    means = []
    for launch in launches[:2]:
        with config.launch(**launch):
            means.append(_warp(x, y, reduction="mean"))
    assert means[0][0] == means[1][0]
    np.testing.assert_array_equal(means[0][1], means[1][1])
    vc, gc = fl.value_and_grad("cross_entropy", x, y, reduction="none")
    mc, gmc = fl.value_and_grad("cross_entropy", x, y)
    assert ulps(ref[0], vc, dtype).max() <= 4
    assert ulps(ref[1], gc, dtype).max() <= 4
    assert ulps(means[0][1], gmc, dtype).max() <= 4
    float32_rows_close(means[0][0], mc)
    with config.launch(rows="thread"):
        mt, _ = fl.value_and_grad("cross_entropy", dev(x), dev(y))
    float32_rows_close(means[0][0], mt)


def test_ignored_rows_weights_and_in_place():
    """By default (C < MIN_C): ignore_index rows have value 0 and a zero
    gradient row and are left out of the mean's denominator; float32 class
    weights; ``out=`` the input itself gives the bits of a separate
    buffer."""
    rng = np.random.default_rng(6)
    n, c = 9, 40
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    y = rng.integers(0, c, n)
    y[::4] = 7
    w = rng.uniform(0.1, 2.0, c).astype(np.float32)
    kw = dict(ignore_index=7, weight=w)
    xd, yd = dev(x), dev(y)
    v, g = fl.value_and_grad("cross_entropy", xd, yd, reduction="none", **kw)
    v, g = host(v), host(g)
    assert np.all(v[y == 7] == 0) and np.all(g[y == 7] == 0)
    vc, gc = fl.value_and_grad("cross_entropy", x, y, reduction="none", **kw)
    assert ulps(v, vc, np.float32).max() <= 4 and ulps(g, gc, np.float32).max() <= 4
    m, gm = fl.value_and_grad("cross_entropy", xd, yd, **kw)
    mc, gmc = fl.value_and_grad("cross_entropy", x, y, **kw)
    float32_lanes_close(m, mc)  # the CPU's rows of 40 classes: float32 lanes
    assert ulps(host(gm), gmc, np.float32).max() <= 4
    mi, gi = fl.value_and_grad("cross_entropy", xd, yd, out=xd, **kw)
    assert gi is xd and mi == m
    np.testing.assert_array_equal(host(xd), host(gm))


def test_which_calls_take_the_warp_kernel(monkeypatch):
    """By default float32 rows of fewer than MIN_C classes without smoothing
    or z-loss (weights and ignore_index allowed); rows="warp" forces it for
    longer rows; float64, smoothing and z-loss always run one thread per row,
    and rows="thread" / "block" force those kernels. Threads per block are
    rounded down to whole warps."""
    calls = []
    real = rowwarp.warp_row_pass
    monkeypatch.setattr(rowwarp, "warp_row_pass", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(7)

    def took(c, dtype=np.float32, **kw):
        calls.clear()
        x = rng.standard_normal((2, c)).astype(dtype)
        y = rng.integers(0, c, 2)
        fl.cross_entropy(dev(x), dev(y), **kw)
        return bool(calls)

    c = rowblock.MIN_C - 1
    assert took(c) and took(1) and not took(c + 1)
    assert took(c, weight=np.ones(c, np.float32)) and took(c, ignore_index=1)
    assert not took(c, np.float64)
    assert not took(c, label_smoothing=0.1) and not took(c, z_loss=1e-3)
    with config.launch(rows="warp"):
        assert took(c + 1) and not took(c, np.float64)
    for how in ("thread", "block"):
        with config.launch(rows=how):
            assert not took(c)
    with pytest.raises(ValueError, match="rows"):
        with config.launch(rows="grid"):
            pass
    for t, want in ((1, 32), (8, 32), (33, 32), (64, 64), (100, 96), (4096, 1024)):
        with config.launch(threads=t):
            assert rowwarp.warp_threads() == want, t


_PTX_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    from fastloss.cuda import rowwarp
    from fastloss.cuda.config import SIMULATOR
    assert not SIMULATOR and rowwarp.SHUFFLE
    assert rowwarp._tree is rowwarp._tree_shfl and rowwarp._sync is rowwarp._sync_shfl
    f64, i64, b1 = numba.float64, numba.int64, numba.boolean
    for dt in (numba.float32, numba.float64):
        a2, a1 = dt[:, ::1], dt[::1]
        for lab in (i64[::1], numba.int32[::1]):
            sig = (a2, lab, a1, b1, i64, b1, f64, b1, a2, b1, f64[::1])
            ptx = ptx_of(rowwarp._ce_rows, sig)
            assert ".target sm_90" in ptx and not BARE.findall(ptx), BARE.findall(ptx)[:5]
            # the shuffle path: lanes merged and broadcast by shuffles, one
            # warp barrier, no shared memory and no block barrier
            assert "shfl.sync.down" in ptx and "shfl.sync.idx" in ptx
            assert "bar.warp.sync" in ptx
            assert ".shared" not in ptx and "bar.sync" not in ptx and "barrier.sync" not in ptx
    print("OK")
""")


def test_kernel_compiles_to_ptx_for_sm90():
    """The warp kernel's shuffle path (the one a GPU runs; the simulator runs
    the shared-memory path) compiles for sm_90 (float32 and float64 data,
    int64 and int32 labels) with no multiply or add left for contraction;
    skipped without libNVVM. Its row sums are rowblock's kernels (PTX-tested
    in test_cuda_rowblock)."""
    assert run_ptx_script(_PTX_SCRIPT).strip().endswith("OK")
