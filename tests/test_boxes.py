"""Box losses (iou_loss, giou_loss, diou_loss, ciou_loss): mpmath oracle,
finite differences, determinism, degenerate geometry, bad input, torchvision.

Accuracy against ``fastloss.reference.boxes`` (the truth rounded to the
dtype; ULP = units in the last place of the dtype; "/ cond" = divided by the
oracle's condition number of that component,
``fastloss.reference.boxes.condition``, the error then counted as
|got - exact| / ulp(exact) as the audit does; "row" = in ULPs of the row's
largest component), measured:

| pairs                                  | loss      | dtype   | value | gradient, per component      | gradient / cond | row |
|----------------------------------------|-----------|---------|-------|------------------------------|-----------------|-----|
| ``box_grid`` (147)                     | all four  | float32 | 0     | 0                            | 0               | 0   |
| ``box_grid`` (147)                     | iou_loss  | float64 | 0     | 0 (cond 1)                   | 0               | 0   |
| ``box_grid`` (147)                     | giou_loss | float64 | 0     | 1 (at cond 7.9e16), else 0   | < 1e-16         | 0   |
| ``box_grid`` (147)                     | diou_loss | float64 | 0     | 0                            | 0               | 0   |
| ``box_grid`` (147)                     | ciou_loss | float64 | 0     | 0                            | 0               | 0   |
| ``random_pairs(0, 10500)``             | all four  | float64 | 0     | 0                            | 0               | 0   |
| ``box_grid(2, 8)`` x 1e+-150 (118)     | all four  | float64 | 0     | 0 (*)                        | 0               | 0   |

(*) but where the exact component is 0 because its quotient-rule parts
cancel exactly (condition inf; DIoU/CIoU at point and line boxes): there
it is O(u^2) of those parts (1e-32 of the row) instead of 0; and GIoU 2 ULP
at one component of condition 5.4e16.

Float64 data is evaluated in compensated double-double arithmetic
(``fastloss.scalar.boxes``, "float64 data"): every result is rounded once
from a pair accurate to O(u^2), so it is the correctly rounded value unless
its condition number is near 1/u. The plain float64 evaluation it replaced
(a chain of 10 to 20 roundings) measured up to 3 ULP in values and 7 ULP x
condition in gradients on the same 10500 random pairs (2 and 3.5 on
``box_grid``), then bounded here by 4 ULP x condition. Float32 data keeps the
plain float64 evaluation, rounded once to float32: correctly rounded on the
grid. The bounds asserted are the policy's: 2 ULP for values, 2 ULP x
condition for gradient components, 2 ULP of the row.

Condition numbers (docs/ACCURACY.md, "Box losses"): a gradient component
is the sum of the gradient of 1 - IoU (no cancellation) and the penalty's
quotient-rule parts (GIoU -dU/C and U dC/C^2; DIoU/CIoU d(rho^2)/c^2 and
-(rho^2/c^2) d(c^2)/c^2; CIoU's alpha dv, whose angle difference cancels
for similar aspect ratios); the condition is their cancellation ratio.
"""

import math

import numba
import numpy as np
import pytest

import fastloss as fl
from fastloss.audit.ulp import round_to_dtype, ulp_distance
from fastloss.cpu.boxes import BOX_CHUNK
from fastloss.reference import boxes as ref

NAMES = ["iou_loss", "giou_loss", "diou_loss", "ciou_loss"]
DTYPES = [np.float32, np.float64]

#: dtype -> gradient ULP of the row's largest component
ROW_BOUND = {np.float32: 2, np.float64: 2}
#: per-component gradient bound where it holds (see the module table; IoU's
#: components have condition 1)
COMPONENT_BOUND = {(np.float32, n): 2 for n in NAMES} | {(np.float64, "iou_loss"): 2}
#: dtype -> gradient error per unit of the component's condition number
#: (the policy's 2 ULP x condition)
COND_BOUND = {np.float32: 2, np.float64: 2}


def cond_errors(got, exact, cond, dtype):
    """Errors divided by the condition numbers: in ULPs (the count of floats
    between got and exact), or where the condition exceeds 1 in ulps of the
    exact value (|got - exact| / ulp(exact)) when that is fewer, as
    ``fastloss.audit.core.error_stats`` counts them; 0 where the condition
    is infinite (terms that cancel to an exact 0)."""
    u = ulp_distance(got, exact, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(got.astype(np.float64) - exact) / np.spacing(
            np.abs(exact).astype(dtype)).astype(np.float64)
        err = np.where(cond > 1, np.minimum(u, rel), u)
        return np.where(np.isinf(cond), 0.0, err / cond)


def box_grid(seed=0, n=24):
    """(pred, target) float64 (M, 4) arrays: general, near-identical, nested,
    disjoint, touching, concentric, equal-aspect, zero-width/height/area boxes,
    and copies at scales 1e30 and 1e-30 and at offsets 1e30 and 1."""
    rng = np.random.default_rng(seed)
    pred, targ = [], []

    def add(p, t):
        pred.append(np.asarray(p, float))
        targ.append(np.asarray(t, float))

    def rbox():
        c = rng.uniform(-1, 1, 2)
        wh = np.exp(rng.uniform(-3, 1, 2))
        return np.array([c[0] - wh[0] / 2, c[1] - wh[1] / 2, c[0] + wh[0] / 2, c[1] + wh[1] / 2])

    for _ in range(n):
        add(rbox(), rbox())
    for rel in (1e-12, 1e-6, 1e-2):
        for _ in range(n // 4):
            p = rbox()
            t = p + rng.uniform(-rel, rel, 4) * (p[2] - p[0] + p[3] - p[1])
            add(p, [min(t[0], t[2]), min(t[1], t[3]), max(t[0], t[2]), max(t[1], t[3])])
    for _ in range(n // 4):
        p = rbox()
        s = rng.uniform(0.1, 0.9, 4)
        w, h = p[2] - p[0], p[3] - p[1]
        t = np.array([p[0] + s[0] * w / 2, p[1] + s[1] * h / 2, p[2] - s[2] * w / 2,
                      p[3] - s[3] * h / 2])
        add(p, t)
        add(t, p)
        add(p, p + [w + 1, 0, w + 1, 0])
        add(p, p + [w, 0.3 * h, w, 0.3 * h])
        add(p, p + [0.2 * w, h, 0.2 * w, h])
        add(p, p + [0.5 * w, 0.5 * h, 0.5 * w, 0.5 * h])
        c = (p[:2] + p[2:]) / 2
        add(p, [c[0] - 0.3 * w, c[1] - 0.7 * h, c[0] + 0.3 * w, c[1] + 0.7 * h])
    for p, t in DEGENERATE:
        add(p, t)
    base, baset = np.array(pred[:n // 2]), np.array(targ[:n // 2])
    for p, t in zip(base, baset):
        add(p * 1e30, t * 1e30)
        add(p * 1e-30, t * 1e-30)
        add(p + 1e30, t + 1e30)
        add(p * 1e-30 + 1.0, t * 1e-30 + 1.0)
    return np.array(pred), np.array(targ)


DEGENERATE = [
    ([0, 0, 0, 0], [0, 0, 0, 0]),        # torchvision#7746
    ([1, 1, 1, 1], [1, 1, 1, 1]),
    ([0, 0, 0, 0], [1, 1, 1, 1]),
    ([0, 0, 0, 2], [0, 0, 0, 2]),        # identical zero-width
    ([0, 0, 0, 2], [0, 1, 0, 3]),
    ([0, 0, 2, 0], [0, 0, 2, 1]),        # zero-height vs box on its edge
    ([0, 0, 1, 1], [0.5, 0, 0.5, 1]),    # zero-width inside a box
    ([0, 0, 0, 1], [1, 0, 2, 1]),
    ([0, 0, 1, 0], [0, 0, 0, 1]),
    ([0, 0, 1, 1], [0, 0, 1, 1]),        # identical
    ([0, 0, 1, 1], [1, 1, 2, 2]),        # corner touching
    ([0, 0, 1, 1], [1, 0, 2, 1]),        # edge touching
    ([0.25, 0.25, 0.25, 0.25], [0, 0, 1, 1]),  # point inside (mmdetection#3394)
    ([0, 0, 1, 1], [0.25, 0.25, 0.25, 0.25]),
    ([2, 3, 2, 3], [0, 0, 1, 1]),        # point outside
]


@pytest.fixture(scope="module")
def grid():
    return box_grid()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_against_mpmath(name, dtype, grid):
    p, t = (a.astype(dtype) for a in grid)
    v, g = fl.value_and_grad(name, p, t, reduction="none")
    assert v.dtype == dtype and g.dtype == dtype and g.shape == p.shape
    ev = np.empty(len(p))
    eg = np.empty((len(p), 4))
    cg = np.empty((len(p), 4))
    for i in range(len(p)):
        rv, rg = ref.value_and_grad(name, p[i], t[i])
        ev[i] = round_to_dtype(rv, dtype)
        eg[i] = [round_to_dtype(x, dtype) for x in rg]
        cg[i] = ref.condition(name, p[i], t[i])[1]
    dv = ulp_distance(v, ev, dtype)
    assert dv.max() <= 2, (name, int(np.argmax(dv)), dv.max())
    bound = COMPONENT_BOUND.get((dtype, name))
    if bound is not None:
        dg = ulp_distance(g, eg, dtype)
        assert dg.max() <= bound, (name, np.unravel_index(np.argmax(dg), dg.shape), dg.max())
    dc = cond_errors(g, eg, cg, dtype)
    worst = np.unravel_index(np.argmax(dc), dc.shape)
    assert dc.max() <= COND_BOUND[dtype], (name, worst, dc.max(), cg[worst], p[worst[0]], t[worst[0]])
    scale = np.abs(eg).max(axis=1, keepdims=True)
    unit = np.spacing(scale.astype(dtype)).astype(np.float64)
    err = np.abs(g.astype(np.float64) - eg)
    rows = np.where(scale > 0, err / np.where(unit > 0, unit, 1.0), err)
    assert rows.max() <= ROW_BOUND[dtype], (name, int(np.argmax(rows.max(axis=1))), rows.max())


def _random_boxes(rng, n, scale=1.0):
    c = rng.uniform(-1, 1, (n, 2)) * scale
    wh = np.exp(rng.uniform(-2, 1, (n, 2))) * scale
    return np.concatenate([c - wh / 2, c + wh / 2], axis=1)


def random_pairs(seed=0, n=2800):
    """(pred, target) float64 (n, 4) arrays: seeded random pairs of seven kinds
    in equal shares: independent boxes (mostly disjoint), overlapping, nested
    (either way round), disjoint along one or both axes, similar aspect ratios
    (the target a scaled, shifted copy with its height perturbed by a relative
    1e-12..1e-2), near-identical (corners moved by 1e-12..1e-2 of the size),
    and overlapping pairs at scales 1e-3..1e3, half of them offset by 1e3."""
    rng = np.random.default_rng(seed)
    m = -(-n // 7)

    def boxes():
        c = rng.uniform(-1, 1, (m, 2))
        wh = np.exp(rng.uniform(-2, 1, (m, 2)))
        return np.concatenate([c - wh / 2, c + wh / 2], axis=1)

    def ordered(t):
        return np.concatenate([np.minimum(t[:, :2], t[:, 2:]), np.maximum(t[:, :2], t[:, 2:])],
                              axis=1)

    def size(p):
        return np.concatenate([p[:, 2:] - p[:, :2]] * 2, axis=1)

    ps, ts = [], []

    def add(p, t):
        ps.append(p)
        ts.append(t)

    add(boxes(), boxes())                                                  # independent
    p = boxes()
    add(p, ordered(p + rng.normal(0, 0.3, (m, 4)) * size(p)))              # overlapping
    p = boxes()                                                            # nested
    f = rng.uniform(0.02, 0.98, (m, 4)) / 2
    w = size(p)
    t = np.concatenate([p[:, :2] + f[:, :2] * w[:, :2], p[:, 2:] - f[:, 2:] * w[:, 2:]], axis=1)
    swap = rng.random(m) < 0.5
    add(np.where(swap[:, None], t, p), np.where(swap[:, None], p, t))
    p = boxes()                                                            # disjoint
    w = size(p)[:, :2]
    gap = rng.uniform(0.01, 3, (m, 2)) * w
    sgn = np.where(rng.random((m, 2)) < 0.5, -1.0, 1.0)
    both = rng.random(m) < 0.5
    one = np.stack([sgn[:, 0] * (w[:, 0] + gap[:, 0]), rng.normal(0, 0.3, m) * w[:, 1]], axis=1)
    shift = np.where(both[:, None], sgn * (w + gap), one)
    t = p + np.concatenate([shift, shift], axis=1)
    add(p, ordered(t + rng.normal(0, 0.1, (m, 4)) * size(p) * 0.1))
    p = boxes()                                                            # similar aspect
    k = np.exp(rng.uniform(-1, 1, m))[:, None]
    c = (p[:, :2] + p[:, 2:]) / 2 + rng.normal(0, 0.3, (m, 2)) * size(p)[:, :2]
    half = size(p)[:, :2] / 2 * k
    half[:, 1] *= 1 + 10.0 ** rng.uniform(-12, -2, m) * np.where(rng.random(m) < 0.5, -1, 1)
    add(p, np.concatenate([c - half, c + half], axis=1))
    p = boxes()                                                            # near-identical
    rel = 10.0 ** rng.uniform(-12, -2, (m, 1))
    add(p, ordered(p + rng.uniform(-1, 1, (m, 4)) * rel * size(p)))
    p = boxes()                                                            # scaled, offset
    t = ordered(p + rng.normal(0, 0.3, (m, 4)) * size(p))
    s = 10.0 ** rng.uniform(-3, 3, (m, 1))
    off = np.where(rng.random((m, 1)) < 0.5, 1e3, 0.0)
    add(p * s + off, t * s + off)
    return np.concatenate(ps)[:n], np.concatenate(ts)[:n]


#: pairs of ``test_random_pairs_against_mpmath`` (400 of each kind)
N_RANDOM_PAIRS = 2800


@pytest.mark.parametrize("name", NAMES)
def test_random_pairs_against_mpmath(name):
    """float64 data, N_RANDOM_PAIRS seeded random pairs of seven kinds
    (``random_pairs``) against the oracle: values within 2 ULP, every
    gradient component within 2 ULP x its condition number (the condition,
    which costs as much as the oracle, is computed only where the plain ULP
    error exceeds 2: cond >= 1). The double-double evaluation gave 0 ULP on
    10500 such pairs (module table); the plain float64 one up to 7 ULP at
    condition 1."""
    p, t = random_pairs(seed=11, n=N_RANDOM_PAIRS)
    v, g = fl.value_and_grad(name, p, t, reduction="none")
    ev = np.empty(len(p))
    eg = np.empty((len(p), 4))
    for i in range(len(p)):
        rv, rg = ref.value_and_grad(name, p[i], t[i])
        ev[i] = round_to_dtype(rv, np.float64)
        eg[i] = [round_to_dtype(x, np.float64) for x in rg]
    dv = ulp_distance(v, ev, np.float64)
    assert dv.max() <= 2, (name, int(np.argmax(dv)), dv.max())
    dg = ulp_distance(g, eg, np.float64)
    for i in np.flatnonzero((dg > 2).any(axis=1)):
        cg = np.array(ref.condition(name, p[i], t[i])[1])
        dc = cond_errors(g[i], eg[i], cg, np.float64)
        assert dc.max() <= COND_BOUND[np.float64], (name, i, p[i], t[i], g[i], eg[i], cg)


@pytest.mark.parametrize("name", NAMES)
def test_finite_differences(name):
    rng = np.random.default_rng(1)
    p = _random_boxes(rng, 32)
    t = _random_boxes(rng, 32)
    t[:8] = p[:8] + rng.uniform(-0.1, 0.1, (8, 4))  # overlapping
    t[:8, 2:] = np.maximum(t[:8, 2:], t[:8, :2])
    _, g = fl.value_and_grad(name, p, t, reduction="sum")
    h = 1e-6
    for k in range(4):
        e = np.zeros_like(p)
        e[:, k] = h
        up = fl.value_and_grad(name, p + e, t, reduction="none")[0]
        dn = fl.value_and_grad(name, p - e, t, reduction="none")[0]
        fd = (up - dn) / (2 * h)
        if name == "ciou_loss":
            # alpha is a constant in the gradient: subtract the d(alpha) v part
            fd = fd - _ciou_dalpha_v(p, t, k, h)
        np.testing.assert_allclose(g[:, k], fd, rtol=1e-6, atol=1e-7, err_msg=f"{name} coord {k}")


def _ciou_dalpha_v(p, t, k, h):
    """Central difference of alpha along coordinate k, times v: the part
    v d(alpha) of d(alpha v) that the held-constant-alpha gradient leaves out."""
    def alpha_v(q):
        w, hh = q[:, 2] - q[:, 0], q[:, 3] - q[:, 1]
        wt, ht = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
        v = 4 / math.pi**2 * (np.arctan2(wt, ht) - np.arctan2(w, hh)) ** 2
        return v / (fl.iou_loss(q, t, reduction="none") + v), v
    e = np.zeros_like(p)
    e[:, k] = h
    a_up, _ = alpha_v(p + e)
    a_dn, _ = alpha_v(p - e)
    return (a_up - a_dn) / (2 * h) * alpha_v(p)[1]


@pytest.fixture
def threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_across_threads(dtype, threads):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    rng = np.random.default_rng(5)
    n = 3 * BOX_CHUNK + 11
    p = _random_boxes(rng, n).astype(dtype)
    t = _random_boxes(rng, n).astype(dtype)
    for name in NAMES:
        seen = {}
        for nt in (1, 2, 1, 2):
            numba.set_num_threads(nt)
            for r in ("mean", "sum"):
                v, g = fl.value_and_grad(name, p, t, reduction=r)
                if r in seen:
                    assert v == seen[r][0], (name, r, nt)
                    np.testing.assert_array_equal(g, seen[r][1])
                seen[r] = (v, g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_agree(dtype):
    rng = np.random.default_rng(2)
    p = _random_boxes(rng, 50).astype(dtype)
    t = _random_boxes(rng, 50).astype(dtype)
    for name in NAMES:
        vn, gn = fl.value_and_grad(name, p, t, reduction="none")
        vs, gs = fl.value_and_grad(name, p, t, reduction="sum")
        vm, gm = fl.value_and_grad(name, p, t)
        assert isinstance(vs, float) and isinstance(vm, float)
        assert vs == pytest.approx(float(np.sum(vn, dtype=np.float64)), rel=1e-6)
        assert vm == pytest.approx(vs / 50, rel=1e-12)
        np.testing.assert_array_equal(gn, gs)
        np.testing.assert_allclose(gm, (gs.astype(np.float64) / 50).astype(dtype), rtol=2e-7)
        assert getattr(fl, name)(p, t) == vm
        np.testing.assert_array_equal(fl.grad(name, p, t), gm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_degenerate_geometry_is_exact(name, dtype):
    p = np.array([d[0] for d in DEGENERATE], dtype=dtype)
    t = np.array([d[1] for d in DEGENERATE], dtype=dtype)
    v, g = fl.value_and_grad(name, p, t, reduction="none")
    assert np.isfinite(v).all() and np.isfinite(g).all()
    # identical boxes, zero-area ones included: IoU = 1, every loss 0
    same = (p == t).all(axis=1)
    assert (v[same] == 0).all()
    # torchvision#7746: GIoU loss of [0, 0, 0, 0] with itself is 0, not 1
    assert v[0] == 0.0
    # disjoint and touching: IoU = 0
    iou = 1 - fl.iou_loss(p, t, reduction="none")
    assert iou[10] == 0 and iou[11] == 0 and iou[2] == 0
    assert iou[9] == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmdetection_3394_zero_area_box_no_nan(dtype):
    # a zero-area predicted box (and zero-width / zero-height ones) inside,
    # beside and equal to a target: finite values and gradients everywhere
    p = np.array([[5, 5, 5, 5], [5, 5, 5, 8], [5, 5, 8, 5], [0, 0, 0, 0], [3, 3, 4, 4]], dtype=dtype)
    t = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [9, 9, 9, 9], [0, 0, 0, 0], [3, 3, 3, 3]],
                 dtype=dtype)
    for name in NAMES:
        v, g = fl.value_and_grad(name, p, t, reduction="none")
        assert np.isfinite(v).all() and np.isfinite(g).all(), name
        assert fl.value_and_grad(name, p, t)[0] == pytest.approx(float(np.mean(v, dtype=np.float64)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_coordinates_are_finite(dtype):
    rng = np.random.default_rng(9)
    for scale in (1e30, 1e-30):
        p = (_random_boxes(rng, 16) * scale).astype(dtype)
        t = (_random_boxes(rng, 16) * scale).astype(dtype)
        for name in NAMES:
            v, g = fl.value_and_grad(name, p, t, reduction="none")
            assert np.isfinite(v).all() and np.isfinite(g).all(), (name, scale)
            v1 = fl.value_and_grad(name, (p.astype(np.float64) / scale),
                                   (t.astype(np.float64) / scale), reduction="none")[0]
            np.testing.assert_allclose(v, v1, rtol=1e-5 if dtype == np.float32 else 1e-13)


def test_gradient_conventions_at_ties():
    # identical boxes: right derivatives (each coordinate moved up):
    # px1 up shrinks both I and U's pred part -> d(1 - IoU)/dpx1 = 1/w;
    # px2 up grows U only -> 1/w as well; likewise for y (h)
    p = np.array([[0.0, 0.0, 2.0, 4.0]])
    _, g = fl.value_and_grad("iou_loss", p, p.copy(), reduction="sum")
    np.testing.assert_allclose(g, [[0.5, 0.25, 0.5, 0.25]])
    for name in NAMES:
        rv, rg = ref.value_and_grad(name, p[0], p[0])
        np.testing.assert_allclose(fl.grad(name, p, p.copy(), reduction="sum")[0],
                                   [float(x) for x in rg], rtol=1e-15, atol=1e-300)


def test_nan_propagates_per_pair():
    p = np.array([[0, 0, 1, 1], [np.nan, 0, 1, 1]], dtype=np.float64)
    t = np.array([[0, 0, 2, 2], [0, 0, 2, 2]], dtype=np.float64)
    for name in NAMES:
        v, g = fl.value_and_grad(name, p, t, reduction="none")
        assert np.isfinite(v[0]) and np.isfinite(g[0]).all()
        assert np.isnan(v[1]) and np.isnan(g[1]).all()
        assert math.isnan(getattr(fl, name)(p, t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_lanes_match_single_pairs(dtype):
    """The CPU driver evaluates a chunk's pairs in a vectorized loop and
    redoes the float64 pairs with a non-finite coordinate sequentially
    (``fastloss.cpu.boxes``): each pair of a mixed batch (ordinary,
    degenerate, tiny, huge, NaN and inf coordinates) gets bitwise the value
    and gradient row it gets alone (one pair runs the loop's scalar
    remainder, the code before vectorization), also with the gradient
    written in place over the input (``out=``; the redo reads the input
    again)."""
    rng = np.random.default_rng(21)
    p = _random_boxes(rng, 40)
    t = _random_boxes(rng, 40)
    p = np.concatenate([p, [d[0] for d in DEGENERATE], p[:6] * 1e-300, p[6:12] * 1e300])
    t = np.concatenate([t, [d[1] for d in DEGENERATE], t[:6] * 1e-300, t[6:12] * 1e300])
    p[12:24:3, 2] = np.inf       # x2 = inf: still a box
    t[13:24:3, 0] = -np.inf
    p[14:24:3, 1] = np.nan
    order = rng.permutation(len(p))
    with np.errstate(over="ignore"):
        p, t = p[order].astype(dtype), t[order].astype(dtype)
    for name in NAMES:
        v, g = fl.value_and_grad(name, p, t, reduction="none")
        for i in range(len(p)):
            v1, g1 = fl.value_and_grad(name, p[i:i + 1], t[i:i + 1], reduction="none")
            np.testing.assert_array_equal(v[i:i + 1], v1, err_msg=f"{name} pair {i}")
            np.testing.assert_array_equal(g[i:i + 1], g1, err_msg=f"{name} pair {i}")
        xin = p.copy()
        v2, g2 = fl.value_and_grad(name, xin, t, reduction="none", out=xin)
        assert g2 is xin
        np.testing.assert_array_equal(v2, v)
        np.testing.assert_array_equal(g2, g)


def test_bad_input():
    good = np.array([[0.0, 0.0, 1.0, 1.0]] * 3)
    with pytest.raises(ValueError, match=r"input: .*\(N, 4\)"):
        fl.giou_loss(good[:, :3], good[:, :3])
    with pytest.raises(ValueError, match=r"input: .*\(N, 4\)"):
        fl.giou_loss(good.reshape(-1), good.reshape(-1))
    with pytest.raises(ValueError, match="target: shape"):
        fl.giou_loss(good, good[:2])
    with pytest.raises(TypeError, match="target: dtype float32 differs"):
        fl.iou_loss(good, good.astype(np.float32))
    with pytest.raises(TypeError, match="input: dtype"):
        fl.iou_loss(good.astype(np.int64), good)
    with pytest.raises(TypeError, match="input: must be a NumPy array"):
        fl.iou_loss(good.tolist(), good)
    bad = good.copy()
    bad[2] = [0.0, 0.0, -1.0, 1.0]
    with pytest.raises(ValueError, match=r"input: row 2 .*x2 < x1"):
        fl.ciou_loss(bad, good)
    bad = good.copy()
    bad[1] = [0.0, 1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match=r"target: row 1 .*y2 < y1"):
        fl.value_and_grad("diou_loss", good, bad)
    with pytest.raises(ValueError, match="reduction"):
        fl.iou_loss(good, good, reduction="batchmean")
    with pytest.raises(ValueError, match="unknown parameter"):
        fl.iou_loss(good, good, eps=1e-7)


def test_empty_input():
    e = np.zeros((0, 4))
    assert fl.giou_loss(e, e, reduction="sum") == 0.0
    assert fl.giou_loss(e, e, reduction="none").shape == (0,)
    with pytest.warns(RuntimeWarning):
        assert math.isnan(fl.giou_loss(e, e))


TV = {"giou_loss": "generalized_box_iou_loss", "diou_loss": "distance_box_iou_loss",
      "ciou_loss": "complete_box_iou_loss"}


@pytest.mark.parametrize("name", sorted(TV))
def test_agrees_with_torchvision(name):
    """torchvision's box losses (``fastloss.audit.peers.torchvision_losses``:
    ``torchvision.ops``, or its pure-Python box-loss files where the wheel
    cannot be imported), in float64, eps=0, autograd gradients, on 64 random
    pairs (16 of them overlapping), at scale 1 and 2^20 (exact; every box
    loss is scale-invariant). torchvision's complete_box_iou_loss ignores
    its eps for the IoU and the diagonal (it calls _diou_iou_loss(boxes1,
    boxes2), whose default eps=1e-7: 7e-7 relative on these pairs), so CIoU is
    compared at scale 2^20 only, where 1e-7 is below float64 resolution.

    Same loss and conventions: values within 1e-13 relative, gradients
    within 1e-13 of the row's largest component. Where the two differ,
    the difference is torchvision's rounding error (its textbook float64
    formulas: up to ~10 ULP in values and ~250 ULP in gradient components
    whose terms cancel), not fastloss': each result of fastloss is within
    2 ULP of the mpmath oracle and the disagreement is at most torchvision's
    own distance to the oracle plus 2 ULP."""
    from fastloss.audit.peers import torchvision_losses

    torch = pytest.importorskip("torch")
    tv = torchvision_losses()
    if tv is None:
        pytest.skip("torchvision is not installed")
    rng = np.random.default_rng(4)
    p0 = _random_boxes(rng, 64)
    t0 = _random_boxes(rng, 64)
    t0[:16] = p0[:16] + 0.05
    for scale in ([2.0**20] if name == "ciou_loss" else [1.0, 2.0**20]):
        p, t = p0 * scale, t0 * scale
        pt = torch.tensor(p, requires_grad=True)
        vt = getattr(tv, TV[name])(pt, torch.tensor(t), reduction="none", eps=0.0)
        vt.sum().backward()
        vt, gt = vt.detach().numpy(), pt.grad.numpy()
        v, g = fl.value_and_grad(name, p, t, reduction="none")
        np.testing.assert_allclose(v, vt, rtol=1e-13, atol=0, err_msg=f"{name} values")
        row = np.abs(gt).max(axis=1, keepdims=True)
        assert (np.abs(g - gt) <= 1e-13 * row).all(), (name, scale, np.abs(g - gt).max())
        ev = np.empty(len(p))
        eg = np.empty((len(p), 4))
        for i in range(len(p)):
            rv, rg = ref.value_and_grad(name, p[i], t[i])
            ev[i] = round_to_dtype(rv, np.float64)
            eg[i] = [round_to_dtype(x, np.float64) for x in rg]
        assert ulp_distance(v, ev, np.float64).max() <= 2
        assert ulp_distance(g, eg, np.float64).max() <= 2
        unit = np.spacing(np.abs(eg))
        assert (np.abs(v - vt) <= np.abs(vt - ev) + 2 * np.spacing(np.abs(ev))).all()
        assert (np.abs(g - gt) <= np.abs(gt - eg) + 2 * unit).all()


@pytest.fixture
def fresh_torchvision_loader():
    """``torchvision_losses`` with its cache and private package cleared
    before and after the test."""
    import sys

    from fastloss.audit import peers

    def clear():
        peers._TV_CACHE.clear()
        for k in [k for k in sys.modules if k == peers._TV_SHIM or k.startswith(peers._TV_SHIM + ".")]:
            del sys.modules[k]

    clear()
    yield peers
    clear()


def test_torchvision_loader_falls_back_to_source_files(tmp_path, monkeypatch,
                                                       fresh_torchvision_loader):
    """A torchvision whose ``__init__`` raises (as a wheel built for another
    torch does: "operator torchvision::nms does not exist"): the loader
    reads ops/{_utils, diou_loss, giou_loss, ciou_loss, focal_loss}.py (here stand-ins
    with torchvision's imports) into its private package, never running
    ``__init__``, and the audit's adapter reports itself available."""
    pytest.importorskip("torch")
    peers = fresh_torchvision_loader
    ops = tmp_path / "torchvision" / "ops"
    ops.mkdir(parents=True)
    (tmp_path / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    (tmp_path / "torchvision" / "utils.py").write_text('raise RuntimeError("not to be imported")\n')
    (ops / "__init__.py").write_text('raise RuntimeError("not to be imported")\n')
    (ops / "_utils.py").write_text(
        "def _loss_inter_union(a, b):\n    return 'I', 'U'\n")
    for name, fn, extra in (("diou_loss", "distance_box_iou_loss", ""),
                            ("giou_loss", "generalized_box_iou_loss", ""),
                            ("ciou_loss", "complete_box_iou_loss",
                             "from .diou_loss import distance_box_iou_loss\n"),
                            ("focal_loss", "sigmoid_focal_loss", "")):
        (ops / f"{name}.py").write_text(
            "from ..utils import _log_api_usage_once\n"
            "from ._utils import _loss_inter_union\n" + extra +
            f"def {fn}(a, b, reduction='none', eps=1e-7):\n"
            f"    _log_api_usage_once({fn})\n"
            f"    return '{name}'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tv = peers.torchvision_losses()
    assert tv.generalized_box_iou_loss(0, 0) == "giou_loss"
    assert tv.distance_box_iou_loss(0, 0) == "diou_loss"
    assert tv.complete_box_iou_loss(0, 0) == "ciou_loss"
    assert tv.sigmoid_focal_loss(0, 0) == "focal_loss"
    assert tv.loss_inter_union(0, 0) == ("I", "U")
    assert "operator torchvision::nms does not exist" in tv.source
    assert peers.Torchvision().unavailable() is None


@pytest.mark.parametrize("scale", [1e-150, 1e150])
@pytest.mark.parametrize("name", NAMES)
def test_far_scales_match_mpmath(name, scale):
    """float64 boxes far outside 1e+-30 (the grid of test_against_mpmath
    scaled): the drivers evaluate at a power-of-two scale
    (scalar.boxes.box_scale), so areas and squared areas neither underflow
    nor overflow; the audit had found the gradient of 1e-150 boxes infinite."""
    p, t = (a * scale for a in box_grid(seed=2, n=8))
    keep = np.isfinite(p).all(axis=1) & np.isfinite(t).all(axis=1)
    p, t = p[keep], t[keep]
    v, g = fl.value_and_grad(name, p, t, reduction="none")
    assert np.isfinite(v).all() and np.isfinite(g).all()
    for i in range(len(p)):
        rv, rg = ref.value_and_grad(name, p[i], t[i])
        ev = round_to_dtype(rv, np.float64)
        eg = np.array([round_to_dtype(x, np.float64) for x in rg])
        assert ulp_distance(np.array([v[i]]), np.array([ev]), np.float64)[0] <= 2, (i, v[i], ev)
        unit = np.spacing(np.abs(eg).max())
        if unit > 0:
            assert np.abs(g[i] - eg).max() / unit <= ROW_BOUND[np.float64], (i, g[i], eg)


def _far_offset_pairs():
    """Box pairs at an offset c (1, 1000, 2^256) small against their size
    S = 2^e (S + c rounds to S), as in the audit's box grid: a point box at
    the target's centre (DIoU) and a prediction touching the target on its
    right, whose height S - c rounds to S (CIoU)."""
    out = []
    for c in (1.0, 1000.0, 2.0**256):
        for e in (78, 142, 205, 333, 461):
            s = 2.0**e
            if s <= c * 2.0**60:
                continue
            out.append((c, s))
    return out


def test_diou_gradient_at_far_offsets_is_exact():
    """A point box p = (S/2, S/2, S/2, S/2) inside t = (c, c, S, S), S + c
    rounding to S: IoU = 0 with zero gradient (the point stays a point), the
    enclosing box is t, so every component of the gradient is
    rho_x / c^2 = -(c/2) / (2 (S - c)^2) (rho_x = S/2 - (c + S)/2 = -c/2),
    computed here in exact rational arithmetic. The kernel had it right
    (-1.7628851326804976e-276 at c = 1000, S = 1.19e139); the oracle at its
    former fixed 400 bits lost c in c + S and gave 0."""
    from fractions import Fraction
    for c, s in _far_offset_pairs():
        p = np.array([[s / 2] * 4])
        t = np.array([[c, c, s, s]])
        want = -(Fraction(c) / 2) / (2 * (Fraction(s) - Fraction(c)) ** 2)
        want = float(want)
        rv, rg = ref.value_and_grad("diou_loss", p[0], t[0])
        assert all(ulp_distance(np.array([float(x)]), np.array([want]), np.float64)[0] <= 1
                   for x in rg), (c, s, [float(x) for x in rg], want)
        _, g = fl.value_and_grad("diou_loss", p, t, reduction="none")
        assert np.max(ulp_distance(g[0], np.full(4, want), np.float64)) <= 2, (c, s, g[0], want)


def test_ciou_angle_gradient_at_far_offsets():
    """p = (S, c, 2S, S) touches t = (c, c, S, S) on its right; both heights
    S - c round to S. The IoU term (I = 0 whichever way py1 moves) and the
    distance term (rho_y = 0, enclosing height unchanged) have zero
    d/dpy1, so that component is CIoU's angle term alone:
    alpha dv/dpy1 = -alpha (8/pi^2) Delta w / (w^2 + h^2), w = S, h = S - c,
    Delta = atan(1) - atan(w/h) ~ -c/(2S), alpha = v/(1 + v) (1 - IoU = 1):
    2.46e-87 at c = 1000, S = 3.02e23 (evaluated below at 300 digits). The
    kernel gave 0 (wt h - w ht cancelled to 0 with the rounded heights);
    every component and the value are held to 2 ULP of the oracle."""
    import mpmath
    seen = 0
    for c, s in _far_offset_pairs():
        p = np.array([[s, c, 2 * s, s]])
        t = np.array([[c, c, s, s]])
        with mpmath.workdps(300):
            w, h = mpmath.mpf(s), mpmath.mpf(s) - c
            delta = mpmath.pi / 4 - mpmath.atan(w / h)
            v = 4 / mpmath.pi**2 * delta**2
            alpha = v / (1 + v)
            g1 = -alpha * 8 / mpmath.pi**2 * delta * w / (w * w + h * h)
        rv, rg = ref.value_and_grad("ciou_loss", p[0], t[0])
        assert abs(rg[1] - g1) <= 1e-30 * abs(g1), (c, s, rg[1], g1)
        want = np.array([round_to_dtype(x, np.float64) for x in rg])
        v_, g = fl.value_and_grad("ciou_loss", p, t, reduction="none")
        if want[1] != 0:  # ~(c/S)^3 / S: below the float64 range for S >> c 2^110
            assert g[0, 1] > 0, (c, s, g[0], want)
            seen += 1
        assert np.max(ulp_distance(g[0], want, np.float64)) <= 2, (c, s, g[0], want)
        assert ulp_distance(v_, np.array([round_to_dtype(rv, np.float64)]), np.float64)[0] <= 2
    assert seen >= 6


def test_condition_numbers_analytic():
    """The oracle's condition numbers at points where the terms are known in
    closed form.

    DIoU, p = (200, 200, 300, 300), t = (0, 0, 100, 100) (disjoint: the IoU
    term is 0): rho = (200, 200), c = (300, 300); d/dpx2 = rho_x/c^2 -
    (rho^2/c^2) 2 cw/c^2 = 1/900 - 4/2700 = -1/2700, ratio (1/900 + 4/2700)
    / (1/2700) = 7; d/dpx1 = rho_x/c^2 alone (px1 is not the enclosing
    box's edge): 1. GIoU, p = (2, 2, 3, 3), t = (0, 0, 1, 1): U = 2, C = 9;
    d/dpx2 = -dU/C + U dC/C^2 = -1/9 + 6/81 = -1/27, ratio 5. Identical
    unit boxes, GIoU d/dpx2: 1 - IoU gives 1, the penalty -1 + 1: ratio 3."""
    cv, cg = ref.condition("diou_loss", [200, 200, 300, 300], [0, 0, 100, 100])
    assert cv == 1.0
    np.testing.assert_allclose(cg, [1, 1, 7, 7], rtol=1e-14)
    _, cg = ref.condition("giou_loss", [2, 2, 3, 3], [0, 0, 1, 1])
    np.testing.assert_allclose(cg, [1, 1, 5, 5], rtol=1e-14)
    _, cg = ref.condition("giou_loss", [0, 0, 1, 1], [0, 0, 1, 1])
    np.testing.assert_allclose(cg, [1, 1, 3, 3], rtol=1e-14)
    # no penalty: IoU is a single term; NaN / inf coordinates: 1
    assert ref.condition("iou_loss", [2, 2, 3, 3], [0, 0, 1, 1]) == (1.0, [1.0] * 4)
    assert ref.condition("ciou_loss", [0, 0, math.inf, 1], [0, 0, 1, 1]) == (1.0, [1.0] * 4)


def test_ciou_angle_condition():
    """CIoU's angle term alpha dv ~ Delta^3, Delta = atan(wt/ht) - atan(w/h):
    its factor is the relative condition of Delta with respect to the four
    sides, (2 w h/(w^2 + h^2) + 2 wt ht/(wt^2 + ht^2))/|Delta|, times
    d ln(alpha Delta)/d ln Delta = 1 + 2 (1 - IoU)/(1 - IoU + v). At the
    pair of test_ciou_angle_gradient_at_far_offsets (touching boxes, equal
    centre heights, equal bottoms) the IoU and distance terms of d/dpy1 are
    0, so the component is alpha dv alone and its condition that factor,
    here ~1e10 (the aspect ratios differ by c/S)."""
    import mpmath
    s, c = 2.0**40, 1000.0
    p, t = [s, c, 2 * s, s], [c, c, s, s]
    with mpmath.workdps(200):
        w, h = mpmath.mpf(s), mpmath.mpf(s) - c
        wt, ht = mpmath.mpf(s) - c, mpmath.mpf(s) - c
        delta = mpmath.atan(wt / ht) - mpmath.atan(w / h)
        v = 4 / mpmath.pi**2 * delta**2
        k = (2 * w * h / (w * w + h * h) + 2 * wt * ht / (wt * wt + ht * ht)) / abs(delta)
        want = float(k * (1 + 2 / (1 + v)))
    _, cg = ref.condition("ciou_loss", p, t)
    assert want > 1e9
    assert cg[1] == pytest.approx(want, rel=1e-12)


def test_audit_picks_up_box_conditions():
    """fastloss.audit.oracle.evaluate_chunk returns the box oracle's
    condition numbers (it returned 1 for every box pair before)."""
    from fastloss.audit.oracle import Task, evaluate_chunk
    task = Task("fastloss.reference", "diou_loss", "boxes", (), ((200.0, 200.0, 300.0, 300.0),),
                ((0.0, 0.0, 100.0, 100.0),), None, "float64")
    vals, grads, ok, err, cv, cg = evaluate_chunk(task)
    assert ok.all() and not err
    np.testing.assert_allclose(grads[0], [1 / 900, 1 / 900, -1 / 2700, -1 / 2700], rtol=1e-15)
    assert cv[0] == 1.0
    np.testing.assert_allclose(cg[0], [1, 1, 7, 7], rtol=1e-14)


@pytest.mark.parametrize("gap", [1e3, 1e6, 1e9, 2.0**70])
def test_giou_gradient_of_boxes_far_apart(gap):
    """Boxes far apart along one axis and overlapping along the other, with
    nearly equal extents along the gap's axis: d/dpx1 (px1 < tx1) is
    ch (ph cw - U) / C^2, formed from ph - th. The kernel formed ph - th as
    dyp - dyt, two sums that grow with the gap: at gap 1e6 it was off by
    3e5 ULP at condition 7 (and ~2e8 ULP on random such pairs); held here to
    the grid's COND_BOUND x condition against mpmath, both axes."""
    base = [([0, 0.1, 1, 1.3], [0.5, 0.2, 1.5, 1.4000001]),
            ([0, 0.1, 1, 1.3], [2.5, 0.2, 3.5, 1.4000001]),  # gap in x too
            ([0, -0.7, 1, 0.3], [0.25, 0.1, 1.75, 1.1 + 1e-12])]
    p, t = [], []
    for bp, bt in base:
        bp = np.array(bp, dtype=float)
        bp[[1, 3]] += gap
        p += [bp, bp[[1, 0, 3, 2]]]
        bt = np.array(bt, dtype=float)
        t += [bt, bt[[1, 0, 3, 2]]]
    p, t = np.array(p), np.array(t)
    _, g = fl.value_and_grad("giou_loss", p, t, reduction="none")
    for i in range(len(p)):
        _, rg = ref.value_and_grad("giou_loss", p[i], t[i])
        _, cg = ref.condition("giou_loss", p[i], t[i])
        eg = np.array([round_to_dtype(x, np.float64) for x in rg])
        dc = cond_errors(g[i], eg, np.array(cg), np.float64)
        assert dc.max() <= COND_BOUND[np.float64], (gap, i, g[i], eg, cg)
