"""Bitwise determinism of the reductions: 1 thread vs 2 threads, run after run
(numerics policy: fixed chunks, fixed combination order)."""

import numba
import numpy as np
import pytest

import fastloss as fl
from fastloss import catalog
from fastloss._config import CHUNK
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
    """"sum" is the (compensated) float64 sum of exactly the values that
    reduction="none" returns, rounded to the data's dtype (reduce.round_as):
    math.fsum of those values (correctly rounded) within 1 ULP of float64;
    weighted and unweighted paths alike."""
    import math

    x, y = sample(name, (3 * CHUNK + 5,), dtype, seed=11)
    x[::5] *= 10.0 if name == "poisson_nll" else 1e3  # terms of very different magnitudes
    for params in ({}, {"pos_weight": 3.0} if name == "binary_cross_entropy_with_logits" else {}):
        vals = getattr(fl, name)(x, y, reduction="none", **params)
        assert vals.dtype == dtype
        s = getattr(fl, name)(x, y, reduction="sum", **params)
        want = math.fsum(vals.astype(np.float64))
        assert math.isfinite(want)
        assert abs(s - want) <= np.spacing(abs(want)), (s, want)
