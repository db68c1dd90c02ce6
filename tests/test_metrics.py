"""zero_one and accuracy (LOSSES.md "Metrics"): against the plain-Python
reference, reductions, NaN rows, no gradient, bad input."""

import math

import numpy as np
import pytest

import fastloss as fl
from fastloss.reference import metrics as ref

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["zero_one", "accuracy"])
def test_scores_with_labels_against_reference(name, dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(101, 5)).astype(dtype)
    x[3] = [1, 2, 2, 0, 0]  # tie: argmax is the first maximum (class 1)
    y = rng.integers(0, 5, 101)
    y[3] = 1
    for lab in (y.astype(np.int64), y.astype(np.int32)):
        rows = getattr(fl, name)(x, lab, reduction="none")
        assert rows.dtype == dtype and rows.shape == (101,)
        assert rows.tolist() == ref.per_row(name, x.tolist(), lab.tolist())
        assert rows[3] == (0.0 if name == "zero_one" else 1.0)
        s = getattr(fl, name)(x, lab, reduction="sum")
        m = getattr(fl, name)(x, lab)
        assert isinstance(s, float) and isinstance(m, float)
        assert s == float(ref.value(name, x.tolist(), lab.tolist(), "sum"))
        assert m == float(ref.value(name, x.tolist(), lab.tolist(), "mean"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_logits(dtype):
    x = np.array([2.0, -1.0, 0.0, 3.0, -0.5], dtype=dtype)
    for y in (np.array([1, 0, 1, 0, 0]), np.array([1, 0, 1, 0, 0], dtype=np.int32),
              np.array([1, 0, 1, 0, 0], dtype=dtype)):
        # predictions 1, 0, 0 (x = 0 is not > 0), 1, 0: wrong at rows 2 and 3
        assert fl.zero_one(x, y, reduction="none").tolist() == [0, 0, 1, 1, 0]
        assert fl.zero_one(x, y, reduction="sum") == 2.0
        assert fl.zero_one(x, y) == 0.4
        assert fl.accuracy(x, y) == 0.6
        assert fl.accuracy(x, y, reduction="sum") == 3.0
        assert fl.zero_one(x, y, reduction="none").tolist() == ref.per_row(
            "zero_one", x.tolist(), y.tolist())


def test_nan_rows_give_nan():
    x = np.array([[1.0, np.nan], [2.0, 1.0]])
    rows = fl.zero_one(x, np.array([0, 0]), reduction="none")
    assert math.isnan(rows[0]) and rows[1] == 0.0
    assert math.isnan(fl.accuracy(x, np.array([0, 0])))
    assert math.isnan(fl.zero_one(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), reduction="none")[0])
    assert math.isnan(fl.zero_one(np.array([1.0, 1.0]), np.array([np.nan, 1.0]), reduction="none")[0])


def test_no_gradient():
    x = np.zeros((2, 3))
    y = np.array([0, 1])
    for name in ("zero_one", "accuracy"):
        with pytest.raises(ValueError, match="has no gradient"):
            fl.value_and_grad(name, x, y)
        with pytest.raises(ValueError, match="has no gradient"):
            fl.grad(name, x, y)


def test_bad_input():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"target: label 4 at row 1 is outside \[0, 4\)"):
        fl.zero_one(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target: label -1 at row 2"):
        fl.accuracy(x, np.array([0, 1, -1]))
    with pytest.raises(TypeError, match="int32 or int64"):
        fl.zero_one(x, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        fl.zero_one(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="0 or 1; element 1"):
        fl.zero_one(np.zeros(3), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="0 or 1"):
        fl.zero_one(np.zeros(3), np.array([0.0, 0.5, 1.0]))
    with pytest.raises(TypeError, match="differs"):
        fl.zero_one(np.zeros(3), np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, C\) scores or \(N,\) binary logits"):
        fl.zero_one(np.zeros((2, 2, 2)), np.array([0, 1]))
    with pytest.raises(TypeError, match="input"):
        fl.zero_one(np.zeros((3, 2), dtype=np.int64), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="reduction"):
        fl.zero_one(x, np.array([0, 1, 1]), reduction="batchmean")
    with pytest.raises(ValueError, match="unknown parameter"):
        fl.accuracy(x, np.array([0, 1, 1]), top_k=2)


def test_empty():
    x = np.zeros((0, 3))
    y = np.zeros(0, dtype=np.int64)
    assert fl.zero_one(x, y, reduction="sum") == 0.0
    with pytest.warns(RuntimeWarning):
        assert math.isnan(fl.accuracy(x, y))
