"""One regression test per "Known failures elsewhere" case of LOSSES.md that
concerns the elementwise losses. Expected values come from the mpmath oracle
(``fastloss.reference``) or from analytic identities, never from the code
under test. Each is checked in float32 and float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl
from fastloss import reference as ref
from fastloss.audit.ulp import round_to_dtype, ulp_distance

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def _check(loss, x, y, dtype, ulps=2.0, q=None, **params):
    """Per-element value and gradient within ``ulps`` of the oracle; never NaN."""
    x = np.asarray(x, dtype)
    y = np.asarray(y, dtype)
    kw = dict(params)
    if q is not None:
        kw["pos_weight"] = np.asarray(q, dtype)
    v, g = fl.value_and_grad(loss, x, y, reduction="none", **kw)
    ev, eg = [], []
    for i in range(x.size):
        qi = 1.0 if q is None else float(np.asarray(q, dtype).ravel()[i % np.size(q)])
        a, b = ref.value_and_grad(loss, float(x[i]), float(y[i]), qi, **params)
        ev.append(round_to_dtype(a, dtype))
        eg.append(round_to_dtype(b, dtype))
    ev, eg = np.array(ev, dtype), np.array(eg, dtype)
    assert not np.any(np.isnan(v)) and not np.any(np.isnan(g)), (v, g)
    assert np.all(ulp_distance(v, ev, dtype) <= ulps), (v, ev)
    assert np.all(ulp_distance(g, eg, dtype) <= ulps), (g, eg)
    return v, g


# --- regression ---------------------------------------------------------------


@DTYPES
def test_log_cosh_at_residual_100_keras_8524_torchmetrics_3488(dtype):
    """log(cosh(d)) was inf/NaN at d = +-100 (cosh overflows in float32)."""
    v, g = _check("log_cosh", [100.0, -100.0, 0.0, 1e4], [0.0, 0.0, -100.0, -1e4], dtype)
    # identity: log cosh 100 = 100 - log 2 + log1p(e^-200)
    assert v[0] == pytest.approx(100 - math.log(2), rel=1e-7)
    assert g[0] == 1.0 and g[1] == -1.0


@DTYPES
def test_msle_domain_is_x_above_minus_one_sklearn_29678_9963(dtype):
    """MSLE is defined for x, y > -1 (not only >= 0) and bad values are a
    ValueError, not NaN."""
    _check("msle", [-0.5, -0.9, 3.0], [0.5, -0.25, -0.75], dtype)
    for x, y in [([-1.0], [0.0]), ([-2.0], [0.0]), ([0.0], [-1.5])]:
        with pytest.raises(ValueError, match="input|target"):
            fl.msle(np.array(x, dtype), np.array(y, dtype))


# --- binary ---------------------------------------------------------------------


@DTYPES
def test_bce_with_logits_at_infinite_logits_pytorch_102894_49844_135359(dtype):
    """+-inf logits give the exact limits, never NaN."""
    x = [np.inf, -np.inf, np.inf, -np.inf, np.inf]
    y = [1.0, 0.0, 0.0, 1.0, 0.5]
    v, g = _check("binary_cross_entropy_with_logits", x, y, dtype)
    assert list(v) == [0.0, 0.0, np.inf, np.inf, np.inf]
    assert list(g) == [0.0, 0.0, 1.0, -1.0, 0.5]


@DTYPES
def test_bce_with_logits_pos_weight_1_at_logit_minus_120_pytorch_13773(dtype):
    """pos_weight = 1 at logit -120 gave NaN; exact: softplus(120) ~ 120 for
    y = 1, softplus(-120) = e^-120 for y = 0."""
    v, g = _check("binary_cross_entropy_with_logits", [-120.0, -120.0], [1.0, 0.0], dtype,
                  q=[1.0, 1.0])
    assert v[0] == pytest.approx(120.0, rel=1e-7)
    assert v[1] == pytest.approx(math.exp(-120), rel=1e-6)


@DTYPES
def test_bce_has_no_log_clamp_pytorch_103316(dtype):
    """PyTorch clamps log at -100: BCE(p=1e-50, y=1) is -log(1e-50) = 115.13,
    not 100, and BCE(p=0, y=1) is +inf."""
    tiny = float(np.finfo(dtype).smallest_subnormal)
    p = 1e-50 if dtype == np.float64 else 1e-40
    v, g = _check("binary_cross_entropy", [p, 0.0, 1.0, tiny], [1.0, 1.0, 0.0, 1.0], dtype)
    assert v[0] == pytest.approx(-math.log(float(np.asarray(p, dtype))), rel=1e-6)
    assert v[3] > 100  # -log of the smallest subnormal: 103.3 (float32), 744.4 (float64)
    assert v[1] == np.inf and g[1] == -np.inf
    assert v[2] == np.inf and g[2] == np.inf
    assert v[3] == pytest.approx(-math.log(tiny), rel=1e-6)
    # gradient -1/p, not clamped (-1e40 overflows float32: -inf, checked by _check)
    if dtype == np.float64:
        assert g[0] == pytest.approx(-1.0 / p, rel=1e-6)


@DTYPES
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_at_large_logits_optax_1267_kornia_918_2115(dtype, gamma):
    """Focal loss was NaN at logit 1000 or +-100 with gamma = 0 or 0.5."""
    x = [1000.0, -1000.0, 100.0, -100.0, 1000.0, -100.0]
    y = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    v, g = _check("sigmoid_focal", x, y, dtype, ulps=8.0, gamma=gamma)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    # wrong side at |x| = 1000: (1 - p_t)^gamma -> 1, value alpha_t |x|
    assert v[0] == pytest.approx(0.75 * 1000, rel=1e-6)
    assert v[1] == pytest.approx(0.25 * 1000, rel=1e-6)


@DTYPES
def test_focal_gamma_0_equals_bce_with_logits(dtype):
    """gamma = 0 (no alpha) is exactly BCE with logits (an identity)."""
    x = np.array([-1000, -100, -3, 0, 2.5, 100, 1000], dtype)
    y = np.array([1, 0, 0.3, 1, 0, 1, 0], dtype)
    a = fl.value_and_grad("sigmoid_focal", x, y, reduction="none", gamma=0.0, alpha=None)
    b = fl.value_and_grad("binary_cross_entropy_with_logits", x, y, reduction="none")
    assert np.all(ulp_distance(a[0], b[0]) <= 2) and np.all(ulp_distance(a[1], b[1]) <= 2)


@DTYPES
def test_bce_epsilon_is_not_applied_twice_tensorflow_51675(dtype):
    """TensorFlow applied its epsilon twice; here there is no epsilon at all:
    BCE(p, y) = -(y log p + (1 - y) log(1 - p)) exactly, e.g. at p = 1/2
    the value is log 2 for any y."""
    v, g = _check("binary_cross_entropy", [0.5, 0.5, 0.5, 0.25], [0.0, 1.0, 0.3, 1.0], dtype)
    assert np.all(v[:3] == np.asarray(math.log(2), dtype))
    assert v[3] == np.asarray(math.log(4), dtype)
