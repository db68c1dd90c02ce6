"""Bitwise determinism of the reductions: 1 thread vs 2 threads, run after run
(numerics policy: fixed chunks, fixed combination order)."""

import numba
import numpy as np
import pytest

import fastloss as fl
from fastloss import catalog
from fastloss._config import CHUNK
from fastloss.cpu.elementwise import BLOCK
from tests.test_contract import sample

ELEMENTWISE = [s.name for s in catalog.SPECS if s.family in ("regression", "binary")]


@pytest.fixture
def threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_bitwise_across_threads_and_runs(name, dtype, threads):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    n = 5 * CHUNK + 123  # several chunks and a ragged tail
    x, y = sample(name, (n,), dtype, seed=3)
    reductions = ("mean",) if name == "rmse" else ("mean", "sum")
    results = {}
    for t in (1, 2, 1, 2):
        numba.set_num_threads(t)
        for r in reductions:
            v, g = fl.value_and_grad(name, x, y, reduction=r)
            key = (r, t)
            if key in results:
                v0, g0 = results[key]
                assert v == v0
                np.testing.assert_array_equal(g, g0)
            results[key] = (v, g)
    for r in reductions:
        assert results[(r, 1)][0] == results[(r, 2)][0], (name, r)
        np.testing.assert_array_equal(results[(r, 1)][1], results[(r, 2)][1])


def test_float64_sum_is_compensated():
    # 1 + many tiny terms: a plain float64 running sum loses every tiny term
    x = np.full(3 * CHUNK, 1e-9)
    x[0] = 1e4
    y = np.zeros_like(x)
    total = fl.mae(x, y, reduction="sum")
    assert total == 1e4 + (x.size - 1) * 1e-9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy_with_logits", "huber", "poisson_nll"])
def test_sum_is_the_sum_of_the_returned_values(name, dtype):
    """"sum" is the float64 sum of exactly the values that reduction="none"
    returns, rounded to the data's dtype (reduce.round_as), against math.fsum
    of those values (correctly rounded); weighted and unweighted paths
    alike. float64 data is summed with compensation: within 1 ULP of
    float64. float32 data is accumulated in plain float64 lanes of
    CHUNK / BLOCK values each (the numerics policy: float64 accumulation),
    then compensated: within 1 ULP plus (CHUNK / BLOCK - 1) 2^-53 sum |v_i|."""
    import math

    x, y = sample(name, (3 * CHUNK + 5,), dtype, seed=11)
    x[::5] *= 10.0 if name == "poisson_nll" else 1e3  # terms of very different magnitudes
    for params in ({}, {"pos_weight": 3.0} if name == "binary_cross_entropy_with_logits" else {}):
        vals = getattr(fl, name)(x, y, reduction="none", **params)
        assert vals.dtype == dtype
        s = getattr(fl, name)(x, y, reduction="sum", **params)
        want = math.fsum(vals.astype(np.float64))
        assert math.isfinite(want)
        bound = np.spacing(abs(want))
        if dtype == np.float32:
            bound += (CHUNK // BLOCK - 1) * 2.0**-53 * math.fsum(np.abs(vals.astype(np.float64)))
        assert abs(s - want) <= bound, (s, want)


def _at_offset(a, k):
    """A copy of ``a`` whose first element lies k elements past a 64-byte boundary."""
    raw = np.empty(a.size + 64, dtype=a.dtype)
    o = (-raw.ctypes.data % 64) // a.itemsize + k
    out = raw[o:o + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 64 == k * a.itemsize
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["mse", "rmse", "huber", "bce_pos_weight", "bce_weight"])
def test_bitwise_at_every_alignment(case, dtype):
    """The elementwise driver starts its vector loops on a cache line of x
    (a short first window per chunk, ``cpu.elementwise._window``) but sums
    each element into the lane and after the elements of its offset in the
    chunk: the loss, the gradient and the per-element values have the same
    bits wherever in memory the data lies (x and y at every offset in a
    cache line, alike and apart). A window that skipped or repeated an
    element would change the sums. The inputs are scaled by 2^-100..2^100
    (2^-10..2^10 for float32, 2^0..2^8 for the logits); float32 data's lanes
    are plain float64 sums, whose bits then depend on the order (checked
    below), so a lane assignment other than the chunk's fails the float32
    mse case (tried: values into lane j instead of lane0 + j). float64
    lanes are compensated and would hide it."""
    name = {"bce": "binary_cross_entropy_with_logits"}.get(case[:3], case)
    rng = np.random.default_rng(17)
    shape = (3 * CHUNK + 77) // 7, 7  # ragged last chunk; 7 (pos_)weight columns
    x, y = sample(name, shape, dtype, seed=5)
    top = 10 if dtype == np.float32 else 100
    if name == "binary_cross_entropy_with_logits":
        x = (x * np.exp2(rng.integers(0, 8, size=shape))).astype(dtype)
    else:
        x = (x * np.exp2(rng.integers(-top, top, size=shape))).astype(dtype)
    params = {}
    if case.startswith("bce_"):
        params[case[4:]] = rng.uniform(0.5, 4.0, shape[1]).astype(dtype)
    reductions = ("mean",) if name == "rmse" else ("mean", "sum", "none")
    want = {}
    for k in range(64 // x.itemsize):
        xk, yk = _at_offset(x, k), _at_offset(y, (k * 5) % (64 // x.itemsize) if k % 2 else k)
        for r in reductions:
            v, g = fl.value_and_grad(name, xk, yk, reduction=r, **params)
            v = np.asarray(v)
            if r not in want:
                want[r] = (v, g)
                assert np.all(np.isfinite(v)), (name, r)
            else:
                np.testing.assert_array_equal(v, want[r][0], err_msg=f"{case} {r} offset {k}")
                np.testing.assert_array_equal(g, want[r][1], err_msg=f"{case} {r} offset {k}")
    # float32: the order of plain float64 additions shows in the bits
    if name == "mse" and dtype == np.float32:
        vals = want["none"][0].astype(np.float64).ravel()
        assert np.cumsum(vals)[-1] != np.cumsum(vals[::-1])[-1], case  # sequential sums


_WIDTH_PROBE = """
import hashlib, numpy as np, fastloss as fl
rng = np.random.default_rng(5)
h = hashlib.sha256()
x = (rng.standard_normal(3000) * 30).astype(np.float32)
y = rng.random(3000).astype(np.float32)
for name in ("binary_cross_entropy_with_logits",):
    v, g = fl.value_and_grad(name, x, y, reduction="none")
    h.update(v.tobytes()); h.update(g.tobytes())
z = (rng.standard_normal((40, 700)) * 20).astype(np.float32)
v, g = fl.value_and_grad("cross_entropy", z, rng.integers(0, 700, 40), reduction="none")
h.update(v.tobytes()); h.update(g.tobytes())
print(h.hexdigest())
"""


@pytest.mark.parametrize("setting", ["vector-width", "prefetch"])
def test_compile_settings_do_not_change_results(tmp_path, setting):
    """FASTLOSS_VECTOR_WIDTH only changes how LLVM packs the loops, and
    FASTLOSS_PREFETCH only whether the drivers issue prefetch hints: kernels
    compiled with the other choice (256-bit vectors instead of the 512-bit
    hint; prefetches off where they are on and on where they are off), in a
    fresh process and cache, give the same bits as this process' kernels.
    The probe's elementwise input is long enough for prefetches (3000 >
    PREFETCH + BLOCK) and its rows have a next row to prefetch."""
    import os
    import subprocess
    import sys

    from fastloss._config import SOFTWARE_PREFETCH

    here = subprocess.run([sys.executable, "-c", _WIDTH_PROBE], capture_output=True, text=True,
                          check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    if setting == "vector-width":
        env["FASTLOSS_VECTOR_WIDTH"] = "256"
    else:
        env["FASTLOSS_PREFETCH"] = "0" if SOFTWARE_PREFETCH else "1"
    other = subprocess.run([sys.executable, "-c", _WIDTH_PROBE], capture_output=True, text=True,
                           check=True, env=env).stdout.strip()
    assert len(here) == 64 and here == other
    assert any((tmp_path / "fastloss" / "numba").iterdir())  # compiled afresh there


@pytest.mark.parametrize("name, params", [("mse", {}), ("huber", {}), ("mae", {}),
                                          ("quantile", {"tau": 0.3}),
                                          ("binary_cross_entropy_with_logits", {})])
def test_streaming_stores_same_bits(name, params):
    """A gradient of at least ``_config.STREAM_BYTES`` of a memory-bound
    loss (``LossSpec.streams``; BCE with logits is not one, and keeps its
    ordinary stores at every size) leaves the kernel by
    streaming stores (``cpu.stream.stream_copy``): whole cache lines of
    the gradient, the partial ones at either end of each window by
    ordinary stores. Into a buffer one element off x's cache-line offset
    (every window then has partial lines) and into a fresh one, its bits
    are those computed piece by piece below the threshold."""
    from fastloss._config import STREAM_BYTES

    n = STREAM_BYTES // 4 + 37
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 3.0, n).astype(np.float32)
    y = (rng.random(n) if name.startswith("binary") else rng.normal(0.0, 3.0, n)).astype(np.float32)
    piece = 1 << 20
    assert piece * 4 < STREAM_BYTES
    want = np.concatenate([fl.value_and_grad(name, x[i:i + piece], y[i:i + piece], reduction="sum",
                                             **params)[1] for i in range(0, n, piece)])
    _, fresh = fl.value_and_grad(name, x, y, reduction="sum", **params)
    np.testing.assert_array_equal(fresh.view(np.uint32), want.view(np.uint32))
    store = np.zeros(n + 1, np.float32)
    off = store[1:]
    fl.value_and_grad(name, x, y, reduction="sum", out=off, **params)
    np.testing.assert_array_equal(off.view(np.uint32), want.view(np.uint32))
    assert store[0] == 0.0
