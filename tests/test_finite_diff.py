"""Gradients of the elementwise losses against central finite differences of
their own values, in float64: a check independent of the mpmath oracle.

For each point the step is h = 2^-18 max(|x|, 1) (about the cube root of the
float64 epsilon times the scale, the optimum for a central difference),
snapped to a power of two so that x +- h are exact. The central difference
then has truncation error O(h^2 f''') and rounding error O(eps |f| / h);
the tolerance is 1e-7 relative to max(|g|, |f| / max(|x|, 1), 1e-3).
Points within 4h of a kink (mae, huber, smooth_l1, quantile, hinge) are left
out: the derivative is one-sided there.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl

RNG = np.random.default_rng(31)
N = 64


def _ordinary(lo=-4.0, hi=4.0):
    return RNG.uniform(lo, hi, N)


#: (loss, params, x, y, kinks(x, y) -> distance to the nearest kink)
CASES = [
    ("mse", {}, _ordinary(), _ordinary(), None),
    ("mae", {}, _ordinary(), _ordinary(), lambda x, y: np.abs(x - y)),
    ("msle", {}, _ordinary(-0.9, 5.0), _ordinary(-0.9, 5.0), None),
    ("huber", {"delta": 1.0}, _ordinary(), _ordinary(),
     lambda x, y: np.abs(np.abs(x - y) - 1.0)),
    ("smooth_l1", {"beta": 0.5}, _ordinary(), _ordinary(),
     lambda x, y: np.abs(np.abs(x - y) - 0.5)),
    ("pseudo_huber", {"delta": 0.7}, _ordinary(), _ordinary(), None),
    ("log_cosh", {}, _ordinary(-30, 30), _ordinary(), None),
    ("quantile", {"tau": 0.3}, _ordinary(), _ordinary(), lambda x, y: np.abs(x - y)),
    ("poisson_nll", {}, _ordinary(), RNG.uniform(0, 5, N), None),
    ("poisson_nll", {"log_input": False}, RNG.uniform(0.1, 5, N), RNG.uniform(0, 5, N), None),
    ("binary_cross_entropy", {}, RNG.uniform(0.01, 0.99, N), RNG.uniform(0, 1, N), None),
    ("binary_cross_entropy_with_logits", {}, _ordinary(-20, 20), RNG.uniform(0, 1, N), None),
    ("binary_cross_entropy_with_logits", {"label_smoothing": 0.1,
                                          "pos_weight": RNG.uniform(0.2, 3, N)},
     _ordinary(-20, 20), RNG.uniform(0, 1, N), None),
    ("sigmoid_focal", {}, _ordinary(-20, 20), RNG.uniform(0, 1, N), None),
    ("sigmoid_focal", {"gamma": 0.5, "alpha": None}, _ordinary(-20, 20),
     RNG.choice([0.0, 1.0], N), None),
    ("hinge", {}, _ordinary(), RNG.choice([-1.0, 1.0], N), lambda x, y: np.abs(1 - x * y)),
    ("squared_hinge", {}, _ordinary(), RNG.choice([-1.0, 1.0], N), None),
    ("soft_margin", {}, _ordinary(-20, 20), RNG.choice([-1.0, 1.0], N), None),
]


def _value(loss, x, y, params):
    return fl.value_and_grad(loss, x, y, reduction="none", **params)[0]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_gradient_matches_central_difference(case):
    loss, params, x, y, kink = case
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    h = np.exp2(np.floor(np.log2(np.maximum(np.abs(x), 1.0))) - 18)
    if kink is not None:
        keep = kink(x, y) > 4 * h * np.maximum(np.abs(y), 1.0)
        x, y, h = x[keep], y[keep], h[keep]
        params = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in params.items()}
    if loss == "binary_cross_entropy":
        h = np.minimum(h, np.exp2(-24))
    if loss == "poisson_nll" and not params.get("log_input", True):
        h = np.minimum(h, np.exp2(-24))
    f, g = fl.value_and_grad(loss, x, y, reduction="none", **params)
    fd = (_value(loss, x + h, y, params) - _value(loss, x - h, y, params)) / (2 * h)
    scale = np.maximum.reduce([np.abs(g), np.abs(f) / np.maximum(np.abs(x), 1.0),
                               np.full_like(g, 1e-3)])
    err = np.abs(fd - g) / scale
    worst = int(np.argmax(err))
    assert err[worst] <= 1e-7, (loss, x[worst], y[worst], g[worst], fd[worst], err[worst])
