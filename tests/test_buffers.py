"""fastloss.buffers: result arrays reused once the caller has dropped them.

The pool's size limits are lowered here so that small arrays take part
(the defaults pool only arrays of 32 MiB and more). What must hold: a result
the caller still refers to, directly, through a view or a weak reference,
is never handed out again; concurrent calls never share an array; the values
are those of a fresh array."""

import gc
import threading
import weakref

import numpy as np
import pytest

import fastloss as fl
from fastloss import buffers

N = 50_000


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setattr(buffers, "MIN_BYTES", 1024)
    monkeypatch.setattr(buffers, "POOL_BYTES", 64 << 20)
    buffers.clear()
    gc.collect()
    yield buffers
    buffers.clear()


def _addr(a):
    return a.__array_interface__["data"][0]


def _data(seed, dtype=np.float32, n=N):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)


def _fresh(name, x, y, **kw):
    """The gradient written into an array nobody else has (out=)."""
    out = np.empty_like(x)
    fl.value_and_grad(name, x, y, out=out, **kw)
    return out


def _drop_first_call_garbage():
    # the first call of a kernel in a process may leave reference cycles
    # (compilation's exceptions hold frames) that keep its result alive
    fl.value_and_grad("mse", *_data(99))
    gc.collect()


def test_a_dropped_result_is_reused_with_the_values_of_a_fresh_array(pool):
    _drop_first_call_garbage()
    x, y = _data(1)
    _, g = fl.value_and_grad("mse", x, y)
    a = _addr(g)
    del g
    x2, y2 = _data(2)
    v2, g2 = fl.value_and_grad("mse", x2, y2)
    assert _addr(g2) == a
    np.testing.assert_array_equal(g2, _fresh("mse", x2, y2))
    assert v2 == fl.mse(x2, y2)


@pytest.mark.parametrize("hold", ["array", "view", "base", "weakref", "memoryview"])
def test_a_result_still_referred_to_is_not_reused(pool, hold):
    _drop_first_call_garbage()
    x, y = _data(3)
    _, g = fl.value_and_grad("mse", x, y)
    expect = g.copy()
    if hold == "array":
        keep = g
    elif hold == "view":
        keep = g[10:20]
    elif hold == "base":
        keep = g.base
    elif hold == "weakref":
        keep = weakref.ref(g.base)
    else:
        keep = memoryview(g)
    a = _addr(g)
    del g
    x2, y2 = _data(4)
    _, g2 = fl.value_and_grad("mse", x2, y2)
    assert _addr(g2) != a
    if hold == "weakref":
        held = keep()
        assert held is not None  # the pool keeps it alive: so it must not change
        np.testing.assert_array_equal(held, expect)
    elif hold == "view":
        np.testing.assert_array_equal(keep, expect[10:20])
    else:
        np.testing.assert_array_equal(np.asarray(keep), expect)


def test_values_and_gradient_of_one_call_are_distinct_arrays(pool):
    _drop_first_call_garbage()
    x, y = _data(5)
    for _ in range(3):
        v, g = fl.value_and_grad("huber", x, y, reduction="none")
        assert _addr(v) != _addr(g)
        np.testing.assert_array_equal(g, _fresh("huber", x, y, reduction="none"))
        np.testing.assert_array_equal(v, fl.huber(x, y, reduction="none"))
        del v, g


def test_row_losses_reuse_their_gradient(pool):
    _drop_first_call_garbage()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((500, 100)).astype(np.float32)
    lab = rng.integers(0, 100, 500)
    fl.value_and_grad("cross_entropy", x, lab)
    gc.collect()
    _, g = fl.value_and_grad("cross_entropy", x, lab)
    a = _addr(g)
    del g
    x2 = rng.standard_normal((500, 100)).astype(np.float32)
    _, g2 = fl.value_and_grad("cross_entropy", x2, lab)
    assert _addr(g2) == a and g2.shape == x2.shape
    out = np.empty_like(x2)
    fl.value_and_grad("cross_entropy", x2, lab, out=out)
    np.testing.assert_array_equal(g2, out)


def test_concurrent_calls_never_share_an_array(pool):
    """The kernels release the GIL: threads calling at once must each get
    their own array (a shared one would mix their gradients)."""
    _drop_first_call_garbage()
    inputs = [_data(10 + k) for k in range(4)]
    expect = [_fresh("mse", x, y) for x, y in inputs]
    bad = []

    def work(k):
        x, y = inputs[k]
        for _ in range(25):
            g = fl.grad("mse", x, y)
            if not np.array_equal(g, expect[k]):
                bad.append(k)
            del g

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_limits(pool, monkeypatch):
    _drop_first_call_garbage()
    held = [fl.grad("mse", *_data(20 + k)) for k in range(buffers.POOL_ARRAYS + 2)]
    assert len(buffers._pool) <= buffers.POOL_ARRAYS
    del held
    monkeypatch.setattr(buffers, "POOL_BYTES", 4 * N - 1)  # below one float32 result
    buffers.clear()
    g = fl.grad("mse", *_data(30))
    del g
    assert not buffers._pool
    fl.grad("mse", *_data(31))
    assert not buffers._pool  # not pooled (malloc itself may give back the same block)
    monkeypatch.setattr(buffers, "POOL_BYTES", 0)
    fl.grad("mse", *_data(32))
    assert not buffers._pool


def test_small_arrays_are_not_pooled(pool, monkeypatch):
    monkeypatch.setattr(buffers, "MIN_BYTES", 32 << 20)
    fl.grad("mse", *_data(40))
    assert not buffers._pool
