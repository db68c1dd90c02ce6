"""The public contract of DESIGN.md, checked through analytic identities
between reductions, parameters and memory layouts (no expected value here is
copied from the code under test)."""

import math

import numpy as np
import pytest

import fastloss as fl
from fastloss import catalog
from fastloss.audit.ulp import ulp_distance

ELEMENTWISE = [s.name for s in catalog.SPECS if s.family in ("regression", "binary")]
EXPECTED_ELEMENTWISE = {
    "mse", "mae", "rmse", "msle", "huber", "smooth_l1", "pseudo_huber", "log_cosh", "quantile",
    "poisson_nll", "binary_cross_entropy", "binary_cross_entropy_with_logits", "sigmoid_focal",
    "hinge", "squared_hinge", "soft_margin",
}
DTYPES = [np.float32, np.float64]


def sample(name, shape, dtype, seed=0):
    """Valid (input, target) for a loss, drawn from its domain."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 2
    y = rng.normal(size=shape) * 2
    if name == "binary_cross_entropy":
        x = rng.uniform(0.001, 0.999, size=shape)
    if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits", "sigmoid_focal"):
        y = rng.uniform(0, 1, size=shape)
        y[..., ::3] = np.round(y[..., ::3])
    if name in ("hinge", "squared_hinge", "soft_margin"):
        y = rng.choice([-1.0, 0.0, 1.0], size=shape)
    if name in ("msle", "poisson_nll"):
        x, y = np.abs(x), np.abs(y)
    return x.astype(dtype), y.astype(dtype)


def test_names_lists_the_elementwise_losses():
    names = fl.names()
    assert names == sorted(names)
    assert EXPECTED_ELEMENTWISE <= set(names)
    for n in names:
        assert callable(getattr(fl, n)), n


@pytest.mark.parametrize("n", [100_003, 1 << 16])
def test_float32_lane_gradient_of_the_mean(n):
    """BCE with logits on float32 data at its defaults: the kernel's gradient
    is a float32 g, and "mean" scales it in float32 lanes (g times 1/n as a
    pair of float32, ``cpu.elementwise._scaled``). The identity: the result
    is g/n rounded once, i.e. the float64 product g * fl64(1/n) rounded to
    float32, except within 2^-40 (relative) of a float32 midpoint, and within
    1 ULP below 2^-102 (where g fl32(1/n)'s rounding error is subnormal); g
    is the "sum" gradient (1/n = 1 for it)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(n) * 30).astype(np.float32)  # e^-|x| down to subnormals
    x[:4] = [0.0, -0.0, 110.0, -110.0]
    y = (rng.random(n) < 0.5).astype(np.float32)
    y[::5] = rng.random(y[::5].size)  # soft targets too
    _, gs = fl.value_and_grad("binary_cross_entropy_with_logits", x, y, reduction="sum")
    _, gm = fl.value_and_grad("binary_cross_entropy_with_logits", x, y, reduction="mean")
    prod = gs.astype(np.float64) * (1.0 / n)
    want = prod.astype(np.float32)
    normal = np.abs(want) >= 2.0**-102
    # distance of the float64 product to the nearest float32 midpoint, relative
    lo = np.nextafter(want, np.float32(-np.inf)).astype(np.float64)
    hi = np.nextafter(want, np.float32(np.inf)).astype(np.float64)
    w64 = want.astype(np.float64)
    mid = np.minimum(np.abs(prod - (w64 + lo) / 2), np.abs(prod - (w64 + hi) / 2))
    near = mid <= 2.0**-40 * np.abs(prod)
    d = ulp_distance(gm, want, np.float32)
    assert np.all(d[normal & ~near] == 0), (gm[normal & ~near & (d > 0)][:5], want[normal & ~near & (d > 0)][:5])
    assert np.all(d <= 1)
    assert np.count_nonzero(np.abs(want) < np.finfo(np.float32).tiny) > 0  # subnormals reached


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_reductions_agree(name, dtype):
    x, y = sample(name, (37, 5), dtype)
    if name == "rmse":
        v, g = fl.value_and_grad(name, x, y)
        assert isinstance(v, float)
        d = x.astype(np.float64).ravel() - y.astype(np.float64).ravel()
        exact = math.sqrt(math.fsum(d * d) / d.size)  # d * d: exact for float32 data
        assert v == pytest.approx(exact, rel=1e-12 if dtype == np.float32 else 1e-15)
        # mse sums its values rounded to the data's dtype (reduce.round_as)
        mse = fl.mse(x, y)
        assert v == pytest.approx(math.sqrt(mse), rel=float(np.finfo(dtype).eps))
        np.testing.assert_allclose(g, fl.grad("mse", x, y) / (2 * v), rtol=4 * np.finfo(dtype).eps)
        with pytest.raises(ValueError, match="reduction"):
            fl.rmse(x, y, reduction="sum")
        return
    vn, gn = fl.value_and_grad(name, x, y, reduction="none")
    vs, gs = fl.value_and_grad(name, x, y, reduction="sum")
    vm, gm = fl.value_and_grad(name, x, y, reduction="mean")
    assert vn.shape == x.shape and vn.dtype == x.dtype
    for g in (gn, gs, gm):
        assert g.shape == x.shape and g.dtype == x.dtype
    assert isinstance(vs, float) and isinstance(vm, float)
    # "none" returns the gradient of the sum
    np.testing.assert_array_equal(gn, gs)
    # mean = sum / n; the sum is accurate to about one rounding of float64
    exact_sum = math.fsum(vn.astype(np.float64).ravel())
    assert vs == pytest.approx(exact_sum, rel=float(x.size * np.finfo(dtype).eps), abs=1e-300)
    assert vm == pytest.approx(vs / x.size, rel=1e-15)
    # d(mean)/dx = d(sum)/dx / n: one rounding apart
    np.testing.assert_allclose(gm, gs / x.size, rtol=2 * np.finfo(dtype).eps, atol=0)
    # the per-loss function and grad() are the same computation
    assert getattr(fl, name)(x, y) == vm
    np.testing.assert_array_equal(fl.grad(name, x, y), gm)
    np.testing.assert_array_equal(getattr(fl, name)(x, y, reduction="none"), vn)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_layouts_give_the_same_bits(name):
    x, y = sample(name, (8, 6), np.float64)
    v, g = fl.value_and_grad(name, x, y, reduction="sum" if name != "rmse" else "mean")
    xf, yf = np.asfortranarray(x), np.asfortranarray(y)
    vf, gf = fl.value_and_grad(name, xf, yf, reduction="sum" if name != "rmse" else "mean")
    assert vf == v
    np.testing.assert_array_equal(gf, g)
    big_x = np.zeros((16, 12))
    big_y = np.zeros((16, 12))
    big_x[::2, ::2], big_y[::2, ::2] = x, y
    xs, ys = big_x[::2, ::2], big_y[::2, ::2]
    assert not xs.flags.c_contiguous
    _, gs = fl.value_and_grad(name, xs, ys, reduction="sum" if name != "rmse" else "mean")
    np.testing.assert_array_equal(gs, g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_scales_values_and_gradients(dtype):
    x, y = sample("binary_cross_entropy_with_logits", (4, 3), dtype)
    w = np.linspace(0, 2, 12).reshape(4, 3).astype(dtype)
    for name in ("binary_cross_entropy_with_logits", "sigmoid_focal"):
        v, g = fl.value_and_grad(name, x, y, reduction="none")
        vw, gw = fl.value_and_grad(name, x, y, reduction="none", weight=w)
        np.testing.assert_allclose(vw, v * w, rtol=2 * np.finfo(dtype).eps)
        np.testing.assert_allclose(gw, g * w, rtol=2 * np.finfo(dtype).eps)
        # a scalar weight and a last-axis weight broadcast
        v2 = fl.value_and_grad(name, x, y, reduction="none", weight=np.asarray(2.0, dtype))[0]
        np.testing.assert_allclose(v2, 2 * v, rtol=2 * np.finfo(dtype).eps)
        wl = np.array([0.5, 1.0, 3.0], dtype)
        vl = fl.value_and_grad(name, x, y, reduction="none", weight=wl)[0]
        np.testing.assert_allclose(vl, v * wl, rtol=2 * np.finfo(dtype).eps)
        # (N, 1) broadcast (materialised path)
        wc = np.array([[1.0], [2.0], [0.0], [4.0]], dtype)
        vc = fl.value_and_grad(name, x, y, reduction="none", weight=wc)[0]
        np.testing.assert_allclose(vc, v * wc, rtol=2 * np.finfo(dtype).eps)


def test_pos_weight_broadcasts_over_last_axis():
    x, y = sample("binary_cross_entropy_with_logits", (5, 4), np.float64)
    pw = np.array([0.5, 1.0, 2.0, 10.0])
    v1, g1 = fl.value_and_grad("binary_cross_entropy_with_logits", x, y, reduction="none",
                               pos_weight=pw)
    v2, g2 = fl.value_and_grad("binary_cross_entropy_with_logits", x, y, reduction="none",
                               pos_weight=np.broadcast_to(pw, x.shape).copy())
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(g1, g2)
    # pos_weight = 1 is the unweighted loss
    v3 = fl.value_and_grad("binary_cross_entropy_with_logits", x, y, reduction="none",
                           pos_weight=np.ones(4))[0]
    np.testing.assert_array_equal(v3, fl.binary_cross_entropy_with_logits(x, y, reduction="none"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_pos_weight_vector_is_each_column_with_its_scalar(dtype, reduction):
    """A last-axis pos_weight (read per element from a buffer, by spans of
    the formula without weights: ``cpu.elementwise``'s ``qplain``) gives,
    column by column, the bits of the same loss with that column's
    pos_weight as a scalar (the plain kernel): the same formula and q on
    the same elements. Rows long enough for several chunks and spans; the
    gradient in place too."""
    rng = np.random.default_rng(11)
    n, c = 5000, 7
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    y = rng.random((n, c)).astype(dtype)
    y[::3] = np.round(y[::3])
    # (not 1: a scalar 1 takes the kernel of the defaults, float32 lanes)
    pw = np.array([0.25, 1.5, 3.0, 1e-3, 17.5, 0.0, 2.0], dtype)
    name = "binary_cross_entropy_with_logits"
    v, g = fl.value_and_grad(name, x, y, reduction="none" if reduction == "none" else "sum",
                             pos_weight=pw)
    for j in range(c):
        xj, yj = np.ascontiguousarray(x[:, j]), np.ascontiguousarray(y[:, j])
        vj, gj = fl.value_and_grad(name, xj, yj, reduction="none", pos_weight=float(pw[j]))
        np.testing.assert_array_equal(g[:, j], gj)
        if reduction == "none":
            np.testing.assert_array_equal(v[:, j], vj)
    # "mean": the gradient divided by n c as the plain kernel divides it;
    # in place (out=x) the same bits
    gm = fl.value_and_grad(name, x, y, reduction=reduction, pos_weight=pw)[1]
    xi = x.copy()
    gi = fl.value_and_grad(name, xi, y, reduction=reduction, pos_weight=pw, out=xi)[1]
    np.testing.assert_array_equal(gi, gm)
    if reduction == "mean":
        for j in range(c):
            gj = fl.value_and_grad(name, x, y, reduction="mean", pos_weight=float(pw[j]))[1]
            np.testing.assert_array_equal(gm[:, j], gj[:, j])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smooth_l1_at_beta_1_is_huber_at_delta_1(dtype):
    """smooth_l1(beta=1) and huber(delta=1) are the same function, value and
    gradient (float32: both kernels huber's float32 lanes, ``LossSpec.fixed``;
    float64: both formulas' products in the same order): the same bits,
    every reduction, |x - y| at 1 exactly included."""
    rng = np.random.default_rng(12)
    n = 20000
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 3, n)).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    x[:100] = y[:100] + dtype(1.0)
    x[100:200] = y[100:200] - dtype(1.0)
    for red in ("none", "mean", "sum"):
        vs, gs = fl.value_and_grad("smooth_l1", x, y, reduction=red)
        vh, gh = fl.value_and_grad("huber", x, y, reduction=red)
        np.testing.assert_array_equal(vs, vh)
        np.testing.assert_array_equal(gs, gh)


def test_identities_between_losses():
    x, y = sample("mse", (50,), np.float64)
    # smooth_l1 with beta = 0 is mae; huber(delta) = delta * smooth_l1(beta=delta)
    np.testing.assert_array_equal(fl.smooth_l1(x, y, beta=0.0, reduction="none"),
                                  fl.mae(x, y, reduction="none"))
    np.testing.assert_allclose(fl.huber(x, y, delta=0.7, reduction="none"),
                               0.7 * fl.smooth_l1(x, y, beta=0.7, reduction="none"), rtol=4e-16)
    # soft_margin(x, y) = BCE with logits at y' = (y + 1) / 2 for y in {-1, 1}
    s = np.where(x > 0, 1.0, -1.0)
    np.testing.assert_allclose(fl.soft_margin(x, s, reduction="none"),
                               fl.binary_cross_entropy_with_logits(x, (s + 1) / 2, reduction="none"),
                               rtol=4e-16)
    # focal with gamma = 0 and no alpha is exactly BCE with logits, value and gradient
    yb, = sample("sigmoid_focal", (50,), np.float64)[1:]
    vf, gf = fl.value_and_grad("sigmoid_focal", x, yb, reduction="none", gamma=0.0, alpha=None)
    vb, gb = fl.value_and_grad("binary_cross_entropy_with_logits", x, yb, reduction="none")
    np.testing.assert_array_equal(vf, vb)
    np.testing.assert_allclose(gf, gb, rtol=4e-16, atol=0)


def test_empty_input():
    e = np.zeros((0,), np.float32)
    with pytest.warns(RuntimeWarning, match="empty"):
        v, g = fl.value_and_grad("mse", e, e)
    assert math.isnan(v) and g.shape == (0,) and g.dtype == np.float32
    assert fl.mse(e, e, reduction="sum") == 0.0
    assert fl.mse(e, e, reduction="none").shape == (0,)
    with pytest.warns(RuntimeWarning, match="empty"):
        assert math.isnan(fl.rmse(e, e))


def test_nan_propagates_and_is_not_an_error():
    x = np.array([0.5, np.nan, 0.25])
    y = np.array([1.0, 0.0, np.nan])
    for name in ELEMENTWISE:
        if name == "rmse":
            v, g = fl.value_and_grad(name, x, y)
            assert math.isnan(v)
            continue
        v, g = fl.value_and_grad(name, x, y, reduction="none")
        assert np.isnan(v[1:]).all() and np.isnan(g[1:]).all(), name
        assert np.isfinite(v[0]) and np.isfinite(g[0]), name
        assert math.isnan(fl.value_and_grad(name, x, y)[0])
