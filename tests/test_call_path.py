"""The public call's per-call bookkeeping: the memos and shortcuts that keep a
small call's overhead low (``catalog.kernel_id``'s memo, the checked default
parameters, the serial path's thread switch) must not change what a call
computes or leave state behind."""

import math

import numba
import numpy as np
import pytest

import fastloss as fl
from fastloss import catalog, validate


@pytest.fixture
def threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_small_calls_leave_the_thread_count_as_it_was(nthreads, threads):
    """Inputs of a few chunks run on the calling thread (``LiteralDispatch``
    sets the count to 1 and back, by the threading layer's C functions)."""
    if nthreads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 Numba threads")
    numba.set_num_threads(nthreads)
    rng = np.random.default_rng(0)
    x = rng.normal(size=64).astype(np.float32)
    y = rng.normal(size=64).astype(np.float32)
    logits = rng.normal(size=(8, 10))
    labels = rng.integers(0, 10, 8)
    for _ in range(2):  # the first call compiles or loads; the second takes the entry
        fl.value_and_grad("mse", x, y)
        assert numba.get_num_threads() == nthreads
        fl.value_and_grad("cross_entropy", logits, labels)
        assert numba.get_num_threads() == nthreads


def _huber_grad(x, y, delta):
    """clip(x - y, -delta, delta) / n from float64 differences (exact for
    float32 data of moderate range), rounded once to float32."""
    d = x.astype(np.float64) - y.astype(np.float64)
    return (np.clip(d, -delta, delta) / x.size).astype(np.float32)


def test_kernel_follows_the_parameters_call_after_call():
    """huber's float32 lanes kernel serves delta in [1, 2^64] (a float32
    number), the general one other deltas: alternating deltas must switch
    kernels every call, whatever the memo holds."""
    rng = np.random.default_rng(1)
    x = (rng.normal(size=4096) * 3).astype(np.float32)
    y = (rng.normal(size=4096) * 3).astype(np.float32)
    spec = catalog.get("huber")
    ids = set()
    for delta in (1.0, 0.3, 1.0, 2.0 ** 70, 0.3, 1.0 + 1e-9, 1.5):
        _, g = fl.value_and_grad("huber", x, y, delta=delta)
        np.testing.assert_array_equal(g, _huber_grad(x, y, delta))
        p = spec.pack(validate.check_params(spec, {"delta": delta}))
        kid = catalog.kernel_id(spec, p)
        assert kid == catalog._kernel_id(spec, p, None)
        ids.add(kid)
    assert len(ids) == 2  # both kernels were taken


def test_kernel_id_memo_stays_bounded():
    """Parameters that differ every call (NaN is not equal to itself) do not
    grow the memo without bound."""
    spec = catalog.get("huber")
    for i in range(3000):
        catalog.kernel_id(spec, (float(i) + 0.5, 0.0, 0.0))
        catalog.kernel_id(spec, (math.nan, 0.0, 0.0))
    assert len(catalog._KERNEL_IDS) <= 1024


def test_default_parameters_are_a_new_dict_each_call():
    spec = catalog.get("huber")
    p = validate.check_params(spec, {})
    p["delta"] = 7.0
    assert validate.check_params(spec, {})["delta"] == 1.0
    assert validate.check_params(spec, {}) is not validate.check_params(spec, {})
    # a call with parameters is checked as before
    with pytest.raises(ValueError, match="unknown parameter"):
        validate.check_params(spec, {"beta": 1.0})
