"""Multiclass (row-wise) losses: mpmath oracle, gradients, determinism,
in-place gradients, validation, known failures elsewhere, PyTorch semantics."""

import math
import sys
import warnings
import zlib

import numpy as np
import pytest

import fastloss as fl
from fastloss.audit.ulp import round_to_dtype
from fastloss.reference.multiclass import row_condition, row_value_and_grad

DTYPES = (np.float32, np.float64)
RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _rng_per_test(request, monkeypatch):
    """Each test draws from its own generator (``RNG``), seeded from its
    name and parameters: its inputs do not depend on which tests ran before
    it in the same worker (test order, ``-n``, ``-k``)."""
    seed = zlib.crc32(request.node.name.encode())
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(seed))


def ulps(computed, exact, dtype):
    """Exact ULP distances (integer arithmetic on the ordered bit patterns)."""
    dt = np.dtype(dtype)
    it = np.int32 if dt == np.float32 else np.int64
    top = 1 << (8 * dt.itemsize - 1)
    c = np.asarray(computed, dtype=dt).ravel()
    e = np.asarray(exact, dtype=dt).ravel()
    out = []
    for a, b, ia, ib in zip(c, e, c.view(it), e.view(it)):
        if np.isnan(a) or np.isnan(b):
            out.append(0.0 if np.isnan(a) and np.isnan(b) else math.inf)
            continue
        oa = -top - int(ia) if ia < 0 else int(ia)
        ob = -top - int(ib) if ib < 0 else int(ib)
        out.append(float(abs(oa - ob)))
    return np.array(out)


def oracle_ulps(name, x, target, dtype, **params):
    """Worst ULP error over rows of (value, gradient) against mpmath."""
    v, g = fl.value_and_grad(name, x, target, reduction="none", **params)
    ref_params = {k: (list(p) if isinstance(p, np.ndarray) else p) for k, p in params.items()}
    worst_v = worst_g = 0.0
    for r in range(x.shape[0]):
        tr = int(target[r]) if target.ndim == 1 else target[r]
        ev, eg = row_value_and_grad(name, x[r], tr, **ref_params)
        worst_v = max(worst_v, ulps([v[r]], [round_to_dtype(ev, dtype)], dtype).max())
        worst_g = max(worst_g, ulps(g[r], [round_to_dtype(e, dtype) for e in eg], dtype).max())
    return worst_v, worst_g


def err_ulps(computed, exact, dtype):
    """|computed - exact| / ulp(exact) (exact an mpf, ulp of its rounding to
    dtype): the error measure near a zero, where counting the floats between
    two results of opposite signs would be meaningless."""
    import mpmath as mp

    c = float(computed)
    if not mp.isfinite(exact) or not math.isfinite(c):
        same = c == float(exact) or (math.isnan(c) and mp.isnan(exact))
        return 0.0 if same else math.inf
    e = abs(float(round_to_dtype(exact, dtype)))
    unit = float(np.spacing(np.array(e, dtype=dtype)))
    return float(abs(mp.mpf(c) - exact) / unit)


def oracle_cond_ulps(name, x, target, dtype, **params):
    """(worst value ULP, worst gradient error / condition number, worst
    gradient error) over the rows; gradient errors as ``err_ulps``, the
    condition numbers from the oracle (``row_condition``)."""
    v, g = fl.value_and_grad(name, x, target, reduction="none", **params)
    ref_params = {k: (list(p) if isinstance(p, np.ndarray) else p) for k, p in params.items()}
    worst_v = worst_r = worst_g = 0.0
    for r in range(x.shape[0]):
        tr = int(target[r]) if target.ndim == 1 else target[r]
        ev, eg = row_value_and_grad(name, x[r], tr, **ref_params)
        _, cg = row_condition(name, x[r], tr, **ref_params)
        worst_v = max(worst_v, ulps([v[r]], [round_to_dtype(ev, dtype)], dtype).max())
        for j, e in enumerate(eg):
            gu = err_ulps(g[r, j], e, dtype)
            worst_g = max(worst_g, gu)
            worst_r = max(worst_r, gu / cg[j])
    return worst_v, worst_r, worst_g


def extreme_logits(n, c, dtype, rng=None):
    """Rows spanning the dtype's range: tiny, huge, mixed-sign, -inf entries,
    near-ties, one dominant logit (drawn from ``rng``, the module's RNG by
    default)."""
    rng = RNG if rng is None else rng
    big = float(np.finfo(dtype).max) / 4
    rows = [
        rng.standard_normal(c),
        rng.standard_normal(c) * 30,
        rng.standard_normal(c) * 1e3,
        rng.standard_normal(c) * 1e-30,
        np.r_[50.0, rng.standard_normal(c - 1)],      # p_y next to 1
        np.r_[rng.standard_normal(c - 1) * 1e-3, 0.0],
        np.r_[big, -big, rng.standard_normal(c - 2)],
        np.r_[-np.inf, rng.standard_normal(c - 1)],
        np.r_[1e4, 1e4 - 1e-3, rng.standard_normal(c - 2) + 1e4],  # large shift, near tie
    ]
    x = np.array(rows[:n], dtype=dtype)
    return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_oracle_extreme(dtype):
    x = extreme_logits(9, 12, dtype)
    y = np.array([0, 3, 5, 7, 0, 11, 0, 4, 1])
    vu, gu = oracle_ulps("cross_entropy", x, y, dtype)
    assert vu <= 2 and gu <= 2, (vu, gu)


def test_float64_plain_gradient_within_2_ulp():
    """float64 cross_entropy without options: p_j = e_j / (1 + others) in
    plain float64 was 3 ULP from mpmath on these rows (N(0, 30^2) logits,
    C = 300; ~2% of such rows); the gradient is now formed from pairs
    (``ce_grad_dd``) for all float64 data."""
    xs, ys = [], []
    for seed in (18, 20):
        rng = np.random.default_rng(seed)
        xs.append(rng.standard_normal((4, 300)) * 30)
        ys.append(rng.integers(0, 300, 4))
    vu, gu = oracle_ulps("cross_entropy", np.concatenate(xs), np.concatenate(ys), np.float64)
    assert vu <= 2 and gu <= 2, (vu, gu)


# (loss, builder of (x, target) for n rows, params, value bound, gradient bound)
# "cond": the gradient within 2 ULP times the oracle's condition number
# (``row_condition``: the cancellation ratio of A p_j - B_j with smoothing,
# z-loss or soft targets; 1 elsewhere).
def _labels(n, c):
    return RNG.integers(0, c, n)


def _probs(n, c, dtype):
    return RNG.dirichlet(np.full(c, 0.5), n).astype(dtype)


CASES = [
    ("cross_entropy", "labels", {}, 2, 2),
    ("cross_entropy", "labels", {"label_smoothing": 0.1, "z_loss": 1e-3, "weight": "W"}, 2, "cond"),
    ("cross_entropy", "labels", {"weight": "W"}, 2, 2),
    ("cross_entropy", "probs", {}, 2, "cond"),
    ("cross_entropy", "probs", {"label_smoothing": 0.2, "z_loss": 1e-2, "weight": "W"}, 2, "cond"),
    ("nll", "labels", {"weight": "W"}, 2, 2),
    ("categorical_cross_entropy", "cce", {}, 2, 2),
    ("kl_div", "kl", {}, 2, 2),
    ("kl_div", "kl", {"log_target": True}, None, 2),
    ("softmax_focal", "labels", {}, 2, 4),
    ("softmax_focal", "labels", {"gamma": 0.5, "alpha": "W"}, 2, 4),
    ("multi_margin", "labels", {}, 2, 2),
    ("multi_margin", "labels", {"p": 2, "margin": 0.5, "weight": "W"}, 2, 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{'-'.join(c[2])}")
def test_oracle(case, dtype):
    name, kind, params, vb, gb = case
    n, c = 6, 9
    x = np.concatenate([RNG.standard_normal((3, c)), RNG.standard_normal((3, c)) * 40])
    params = {k: (RNG.uniform(0.1, 2.0, c).astype(dtype) if v == "W" else v)
              for k, v in params.items()}
    if kind == "labels":
        t = _labels(n, c)
    elif kind == "probs":
        t = _probs(n, c, dtype)
    elif kind == "cce":
        x, t = _probs(n, c, np.float64), _probs(n, c, dtype)
    else:
        x, t = np.log(_probs(n, c, np.float64)), _probs(n, c, dtype)
        if params.get("log_target"):
            t = np.log(t).astype(dtype)
    x = x.astype(dtype)
    vu, gr, gu = oracle_cond_ulps(name, x, t, dtype, **params)
    if dtype == np.float32 and name == "cross_entropy" and kind == "labels":
        # float32 lanes (fastloss.cpu.rowtiles, rowlanes): the terms in
        # float32, within 0.69 ULP; the gradient within 2 ULP, with
        # smoothing or z-loss 2 ULP x the condition number (A p_j - b_j
        # formed in float64 from the float32 terms)
        assert vu <= 1 and (gu <= 2 if gb == 2 else gr <= 2), (vu, gu, gr)
    elif dtype == np.float32 and name == "cross_entropy":
        # probability targets on float32 lanes (rowtiles.lane_probs, C = 9):
        # A p_j - b_j formed in float64 from the float32 terms, within 2 ULP
        # x the condition number
        assert vu <= 1 and gr <= 2, (vu, gu, gr)
    elif dtype == np.float32:  # float64 evaluation, rounded once
        assert vu <= 1 and gu <= 1, (vu, gu)
    else:
        assert vb is None or vu <= vb, vu
        if gb == "cond":
            assert gr <= 2, (gr, gu)
        else:
            assert gb is None or gu <= gb, gu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, params", [("kl_div", {}), ("kl_div", {"log_target": True}),
                                          ("categorical_cross_entropy", {})],
                         ids=["kl", "kl-log_target", "cce"])
def test_sum_of_terms_over_several_blocks(name, params, dtype):
    """kl_div and categorical_cross_entropy sum their terms block by block
    (``multiclass._term_sum``): rows of 1100 classes (two full blocks and a
    ragged one) against the oracle, zero targets included; the value-only
    call (no gradient loop) gives the same values."""
    c = 1100
    x = _probs(2, c, np.float64)
    t = _probs(2, c, np.float64)
    t[:, ::97] = 0.0
    t /= t.sum(axis=1, keepdims=True)
    if name == "kl_div":
        x = np.log(x)
        if params.get("log_target"):
            with np.errstate(divide="ignore"):
                t = np.log(t)
    x, t = x.astype(dtype), t.astype(dtype)
    vu, _, gu = oracle_cond_ulps(name, x, t, dtype, **params)
    assert vu <= 2 and gu <= 1, (vu, gu)
    v, _ = fl.value_and_grad(name, x, t, reduction="none", **params)
    assert np.array_equal(getattr(fl, name)(x, t, reduction="none", **params), v)


def _max_in_last_block(c):
    """Four rows of c (> 1050) logits whose maximum lies in the last block of
    512, the earlier blocks 5, 600, 690 and 800 below it (block factors
    e^(m_b - m) from ~e^-5 to below 2^-958)."""
    rows = []
    for gap_ in (5.0, 600.0, 690.0, 800.0):
        r = RNG.standard_normal(c)
        r[:1024] -= gap_
        r[1050] = 3.0 + r[1024:].max()
        rows.append(r)
    return np.array(rows)


@pytest.mark.parametrize("params", [{}, {"weight": "W", "label_smoothing": 0.1}],
                         ids=["plain", "weighted-smoothed"])
def test_float64_gradient_from_kept_pairs(params):
    """float64 cross_entropy reuses pass 1's pairs e^(x_j - m_b) 2^64 times
    each block's factor e^(m_b - m) (``ce_grad_dd`` with keep), and computes
    the exponential again where that factor is below 2^-958. Rows of 1100
    classes (three blocks) whose maximum lies in the last block, the earlier
    blocks 5, 600 (factor ~2^-866, kept), 690 (~2^-995, recomputed) and 800
    below it, against the oracle: values within 2 ULP, gradients within
    2 ULP (times the condition number with smoothing)."""
    c = 1100
    x = _max_in_last_block(c)
    y = np.array([3, 1050, 700, 1099])
    p = {k: (RNG.uniform(0.1, 2.0, c) if v == "W" else v) for k, v in params.items()}
    vu, gr, gu = oracle_cond_ulps("cross_entropy", x, y, np.float64, **p)
    assert vu <= 2, vu
    assert (gr if params else gu) <= 2, (gr, gu)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", [{}, {"weight": "W", "label_smoothing": 0.1, "z_loss": 1e-3}],
                         ids=["plain", "options"])
def test_probability_targets_over_several_blocks(params, dtype):
    """cross_entropy with probability targets takes its gradient from pass
    1's kept terms times one factor per block (float64: pairs, recomputed
    where the factor is below 2^-958), and sums its terms per block (float32:
    plain pairwise float64). Rows of 1100 classes, maximum in the last block,
    earlier blocks 5 to 800 below it, against the oracle (float32 within
    1 ULP; float64 value within 2 ULP, gradient within 2 ULP times the
    condition number); in place gives the same bits. float32 takes the
    float32 lanes (``ce_probs_row32``), whose gradient is bounded by the
    condition number instead (373 ULP at one entry here without options,
    ratio <= 2)."""
    c = 1100
    x = _max_in_last_block(c).astype(dtype)
    t = _probs(4, c, dtype)
    p = {k: (RNG.uniform(0.1, 2.0, c).astype(dtype) if v == "W" else v) for k, v in params.items()}
    vu, gr, gu = oracle_cond_ulps("cross_entropy", x, t, dtype, **p)
    if dtype == np.float32:
        assert vu <= 1 and gr <= 2, (vu, gr, gu)
    else:
        assert vu <= 2 and gr <= 2, (vu, gr, gu)
    v1, g1 = fl.value_and_grad("cross_entropy", x, t, **p)
    xin = x.copy()
    v2, g2 = fl.value_and_grad("cross_entropy", xin, t, out=xin, **p)
    it = np.int32 if dtype == np.float32 else np.int64
    assert v1 == v2 and np.array_equal(g1.view(it), g2.view(it))


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_c_and_long_rows(dtype):
    """C = 2^15 with a spread of logits: value within 2 ULP (compensated row
    sums), gradient spot-checked against mpmath."""
    c = 1 << 15
    x = (RNG.standard_normal((1, c)) * 8).astype(dtype)
    x[0, 5] = -np.inf
    y = np.array([17])
    v, g = fl.value_and_grad("cross_entropy", x, y, reduction="none")
    ev, eg = row_value_and_grad("cross_entropy", x[0], 17)
    assert ulps([v[0]], [round_to_dtype(ev, dtype)], dtype).max() <= 2
    for j in (0, 5, 17, 1000, c - 1):
        assert ulps([g[0, j]], [round_to_dtype(eg[j], dtype)], dtype).max() <= 2


def test_finite_differences():
    x = RNG.standard_normal((3, 5))
    y = RNG.integers(0, 5, 3)
    w = RNG.uniform(0.5, 2.0, 5)
    for name, t, params in [
        ("cross_entropy", y, {"weight": w, "label_smoothing": 0.2, "z_loss": 0.01}),
        ("cross_entropy", _probs(3, 5, np.float64), {"label_smoothing": 0.1}),
        ("softmax_focal", y, {"gamma": 1.5, "alpha": w}),
        ("multi_margin", y, {"p": 2, "weight": w}),
    ]:
        for red in ("mean",):
            _, g = fl.value_and_grad(name, x, t, reduction=red, **params)
            h = 1e-6
            fd = np.empty_like(x)
            for idx in np.ndindex(*x.shape):
                xp, xm = x.copy(), x.copy()
                xp[idx] += h
                xm[idx] -= h
                fd[idx] = (fl.value_and_grad(name, xp, t, reduction=red, **params)[0]
                           - fl.value_and_grad(name, xm, t, reduction=red, **params)[0]) / (2 * h)
            np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8, err_msg=f"{name} {red}")


def test_deterministic_across_threads():
    import numba

    x = (RNG.standard_normal((300, 257)) * 5).astype(np.float32)
    y = RNG.integers(0, 257, 300)
    y[::7] = -100
    w = RNG.uniform(0.1, 2, 257).astype(np.float32)
    old = numba.get_num_threads()
    try:
        res = []
        for nt in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(nt)
            res.append(fl.value_and_grad("cross_entropy", x, y, weight=w, label_smoothing=0.1))
    finally:
        numba.set_num_threads(old)
    (v1, g1), (v2, g2) = res
    assert v1 == v2 and np.array_equal(g1.view(np.int32), g2.view(np.int32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["cross_entropy", "softmax_focal", "multi_margin", "nll"])
def test_in_place_same_bits(name, dtype):
    x = (RNG.standard_normal((33, 70)) * 4).astype(dtype)
    y = RNG.integers(0, 70, 33)
    v1, g1 = fl.value_and_grad(name, x, y)
    buf = np.empty_like(x)
    v2, g2 = fl.value_and_grad(name, x, y, out=buf)
    assert g2 is buf
    xin = x.copy()
    v3, g3 = fl.value_and_grad(name, xin, y, out=xin)
    assert g3 is xin
    assert v1 == v2 == v3
    it = np.int32 if dtype == np.float32 else np.int64
    assert np.array_equal(g1.view(it), g2.view(it)) and np.array_equal(g1.view(it), g3.view(it))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["labels-options", "probs-options", "margin-p2"])
def test_in_place_same_bits_options(case, dtype):
    """The double-double gradient paths read x_j (and x_y first) before
    writing g_j: in place gives the same bits, for "mean" too."""
    rng = np.random.default_rng(46)
    x = (rng.standard_normal((17, 70)) * 4).astype(dtype)
    w = rng.uniform(0.1, 2.0, 70).astype(dtype)
    if case == "labels-options":
        name, t, kw = "cross_entropy", rng.integers(0, 70, 17), dict(
            weight=w, label_smoothing=0.1, z_loss=1e-3)
    elif case == "probs-options":
        name, t, kw = "cross_entropy", _probs(17, 70, dtype), dict(
            weight=w, label_smoothing=0.1, z_loss=1e-3)
    else:
        name, t, kw = "multi_margin", rng.integers(0, 70, 17), dict(p=2, weight=w, margin=0.3)
    v1, g1 = fl.value_and_grad(name, x, t, **kw)
    xin = x.copy()
    v2, g2 = fl.value_and_grad(name, xin, t, out=xin, **kw)
    assert g2 is xin and v1 == v2
    it = np.int32 if dtype == np.float32 else np.int64
    assert np.array_equal(g1.view(it), g2.view(it))


def test_mean_gradient_rounded_once():
    """With "mean" the divisor is folded into the double-double factors:
    the gradient is (exact row gradient) / N within 1 ULP (float64)."""
    rng = np.random.default_rng(47)
    x = rng.standard_normal((7, 9)) * 3
    y = rng.integers(0, 9, 7)
    w = rng.uniform(0.1, 2.0, 9)
    for name, kw in [("cross_entropy", dict(label_smoothing=0.2, z_loss=1e-2)),
                     ("multi_margin", dict(p=2, weight=w))]:
        _, g = fl.value_and_grad(name, x, y, **kw)
        rk = {k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        for r in range(7):
            _, eg = row_value_and_grad(name, x[r], int(y[r]), **rk)
            assert max(err_ulps(g[r, j], eg[j] / 7, np.float64) for j in range(9)) <= 1


def test_out_checks_and_elementwise_out():
    x = RNG.standard_normal((4, 5))
    y = RNG.integers(0, 5, 4)
    with pytest.raises(TypeError, match="out"):
        fl.value_and_grad("cross_entropy", x, y, out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="out"):
        fl.value_and_grad("cross_entropy", x, y, out=np.empty((5, 4)))
    with pytest.raises(ValueError, match="out"):
        fl.value_and_grad("cross_entropy", x, y, out=np.empty((5, 4)).T)
    big = np.empty((5, 5))
    with pytest.raises(ValueError, match="out"):
        fl.value_and_grad("cross_entropy", big[:4], y, out=big[1:])
    # elementwise losses take out= too, in place included
    a, b = RNG.standard_normal(10), RNG.standard_normal(10)
    _, g = fl.value_and_grad("mse", a, b)
    a2 = a.copy()
    _, g2 = fl.value_and_grad("mse", a2, b, out=a2)
    assert g2 is a2 and np.array_equal(g, a2)


def test_bad_input_untouched_out():
    x = RNG.standard_normal((3, 4))
    keep = x.copy()
    with pytest.raises(ValueError, match="label 4 at row 1"):
        fl.value_and_grad("cross_entropy", x, np.array([0, 4, 1]), out=x)
    assert np.array_equal(x, keep)


@pytest.mark.parametrize("call,err,match", [
    (lambda x, y: fl.cross_entropy(x, np.array([0, -1, 2])), ValueError, "label -1 at row 1"),
    (lambda x, y: fl.nll(x, np.array([0, 9, 2])), ValueError, "outside"),
    (lambda x, y: fl.multi_margin(x, np.array([0, -100, 2])), ValueError, "outside"),
    (lambda x, y: fl.cross_entropy(x, y.astype(np.float64)), TypeError, "labels"),
    (lambda x, y: fl.cross_entropy(x, y, weight=np.ones(3)), ValueError, "weight.*shape"),
    (lambda x, y: fl.cross_entropy(x, y, weight=-np.ones(4)), ValueError, "weight"),
    (lambda x, y: fl.cross_entropy(x, y, weight=np.r_[1.0, np.inf, 1.0, 1.0]), ValueError,
     "weight"),
    (lambda x, y: fl.nll(x, y, weight=np.r_[1.0, 1.0, -np.inf, 1.0]), ValueError, "weight"),
    (lambda x, y: fl.cross_entropy(x, y, label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda x, y: fl.cross_entropy(x, y, ignore_index=1.5), TypeError, "ignore_index"),
    (lambda x, y: fl.cross_entropy(x, -np.ones((3, 4))), ValueError, "target"),
    (lambda x, y: fl.kl_div(x, -np.ones((3, 4))), ValueError, "target"),
    (lambda x, y: fl.kl_div(x, np.full((3, 4), np.inf)), ValueError, "target"),
    (lambda x, y: fl.categorical_cross_entropy(x + 5, np.ones((3, 4))), ValueError, "input"),
    (lambda x, y: fl.multi_margin(x, y, p=3), ValueError, "p"),
    (lambda x, y: fl.kl_div(x, np.ones((3, 4)), reduction="avg"), ValueError, "reduction"),
    (lambda x, y: fl.cross_entropy(x, y, reduction="batchmean"), ValueError, "reduction"),
    (lambda x, y: fl.cross_entropy(x[0], y), ValueError, "2-D"),
    (lambda x, y: fl.cross_entropy(np.full((3, 4), -np.inf), y), ValueError, "all logits -inf"),
])
def test_bad_input(call, err, match):
    x = RNG.standard_normal((3, 4))
    y = np.array([0, 1, 3])
    with pytest.raises(err, match=match):
        call(x, y)


def test_all_neg_inf_row_allowed_when_ignored():
    x = RNG.standard_normal((3, 4))
    x[1] = -np.inf
    v, g = fl.value_and_grad("cross_entropy", x, np.array([0, -100, 2]))
    assert math.isfinite(v) and np.all(g[1] == 0)


def test_dead_rows_and_bad_labels_found_first_in_any_block():
    """``cpu.rowwise.first_dead_row`` screens rows by their first logit in
    parallel blocks and ``check_labels`` counts before it searches: the
    error still names the first offending row, past block boundaries, with
    rows whose first logit alone is -inf and ignored dead rows before it."""
    from fastloss.cpu.rowwise import _DEAD_ROWS

    n = 2 * _DEAD_ROWS + 10
    x = RNG.standard_normal((n, 3))
    y = RNG.integers(0, 3, n)
    x[5, 0] = x[_DEAD_ROWS + 3, 0] = -np.inf  # alive: a finite logit after
    y[5] = y[_DEAD_ROWS + 3] = 1
    x[_DEAD_ROWS + 1] = -np.inf  # dead, but ignored
    y[_DEAD_ROWS + 1] = -100
    x[_DEAD_ROWS + 7] = x[2 * _DEAD_ROWS + 2] = -np.inf
    with pytest.raises(ValueError, match=f"row {_DEAD_ROWS + 7} has all logits -inf"):
        fl.cross_entropy(x, y)
    y[_DEAD_ROWS + 7] = y[2 * _DEAD_ROWS + 2] = -100
    v, g = fl.value_and_grad("cross_entropy", x, y, reduction="sum")
    assert math.isfinite(v) and np.all(g[[_DEAD_ROWS + 1, _DEAD_ROWS + 7]] == 0)
    # the mean divides by the rows not ignored (counted exactly)
    kept = np.count_nonzero(y != -100)
    assert fl.cross_entropy(x, y) == v / kept
    # labels: the first bad one is named, ignored ones are not bad
    y[_DEAD_ROWS + 9] = 3
    y[2 * _DEAD_ROWS] = -7
    x[[_DEAD_ROWS + 7, 2 * _DEAD_ROWS + 2]] = 0.0
    with pytest.raises(ValueError, match=f"label 3 at row {_DEAD_ROWS + 9} is outside"):
        fl.cross_entropy(x, y)
    with pytest.raises(ValueError, match=f"label -7 at row {2 * _DEAD_ROWS} is outside"):
        fl.cross_entropy(x, np.where(y == -100, 3, y), ignore_index=3)
    # with weights the denominator is sum(w[y]) over the rows kept
    y[_DEAD_ROWS + 9] = 0
    y[2 * _DEAD_ROWS] = 1
    w = np.array([0.5, 2.0, 1.25])
    vs = fl.cross_entropy(x, y, weight=w, reduction="sum")
    assert fl.cross_entropy(x, y, weight=w) == vs / math.fsum(w[y[y != -100]])


# --- gradients near their zeros (cancellation) ------------------------------

def near_cancel_labels(rng, n, c, eps, w, z):
    """Rows x and labels y with one gradient component j != y of cross
    entropy near its zero: x_j solved (in float64, a few fixed-point steps)
    for p_j = (eps/C) w_j / A. Only the inputs come from here; the expected
    values come from the oracle."""
    xs, ys = [], []
    for i in range(n):
        x = rng.standard_normal(c) * (1 if i % 2 else 6)
        y = int(rng.integers(0, c))
        j = (y + 1 + int(rng.integers(0, c - 1))) % c
        for _ in range(4):
            m = x.max()
            lse = m + np.log(np.exp(x - m).sum())
            a = (1 - eps) * w[y] + eps / c * w.sum() + 2 * z * lse
            r = eps / c * w[j] / a
            if not 0 < r < 1:
                break
            others = np.exp(x - m)[np.arange(c) != j].sum()
            x[j] = m + np.log(r * others / (1 - r))
        xs.append(x)
        ys.append(y)
    return np.array(xs), np.array(ys)


def near_softmax_targets(rng, n, c):
    """Rows x and probability targets t near softmax(x) (every component of
    the gradient p - t near 0), some exactly the float64 softmax."""
    xs, ts = [], []
    for i in range(n):
        x = rng.standard_normal(c) * (1 if i % 2 else 6)
        p = np.exp(x - x.max())
        p /= p.sum()
        t = np.abs(p * (1 + 1e-6 * rng.standard_normal(c))) if i % 3 else p.copy()
        xs.append(x)
        ts.append(t / t.sum())
    return np.array(xs), np.array(ts)


LABEL_OPTIONS = [
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.3, "weight": "W"},
    {"z_loss": 1e-2},
    {"label_smoothing": 0.1, "z_loss": 1e-3, "weight": "W"},
    {"weight": "W"},
]


def _check_cond_bound(dtype, vu, gr, gu):
    """float64: value <= 2 ULP, gradient <= 2 ULP x condition; float32
    (float64 evaluation, rounded once): the same bound, and the value
    correctly rounded."""
    assert vu <= (1 if dtype == np.float32 else 2), vu
    assert gr <= 2, (gr, gu)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_probs_plain_path_same_bits(dtype):
    """Probability targets without smoothing or weights take a path of their
    own (w_j t'_j = t_j exactly, ``cross_entropy_probs``' plain case): the
    same bits as the general path given unit weights, rows of one to three
    blocks, with and without z-loss, reductions none and mean (float32
    rows of 64 or more classes in the float32 lanes, ``ce_probs_row32``,
    whose weighted form reads w_j t'_j = t_j as well)."""
    rng = np.random.default_rng(46)
    for c in (9, 1000, 1100):
        x = (rng.standard_normal((5, c)) * 5).astype(dtype)
        x[0, 1] = -np.inf
        t = rng.dirichlet(np.full(c, 0.5), 5).astype(dtype)
        t[0, 1] = 0.0
        for kw in ({}, {"z_loss": 1e-2}):
            for red in ("none", "mean"):
                v1, g1 = fl.value_and_grad("cross_entropy", x, t, reduction=red, **kw)
                v2, g2 = fl.value_and_grad("cross_entropy", x, t, reduction=red,
                                           weight=np.ones(c, dtype), **kw)
                assert np.array_equal(v1, v2) and np.array_equal(g1, g2), (c, kw, red)


@pytest.mark.parametrize("target", ["labels", "probs"])
@pytest.mark.parametrize("opts", LABEL_OPTIONS, ids=lambda o: "-".join(o))
def test_cross_entropy_value_options_within_1_ulp(opts, target):
    """float64 values with smoothing, weights and z-loss at ordinary logits
    (scales 1e-3 to 1e3): <= 1 ULP against mpmath, the sum rounded once
    from pairs (``ce_value_dd``). The plain float64 sum was 2 ULP in 1-3%
    of these rows and 3 ULP in some (a4d14c5)."""
    rng = np.random.default_rng(1000)
    c, n = 9, 96
    params = {k: (rng.uniform(0.1, 2.0, c) if v == "W" else v) for k, v in opts.items()}
    x = rng.standard_normal((n, c)) * np.repeat([1e-3, 1.0, 5.0, 30.0, 1e3, 1.0], n // 6)[:, None]
    t = rng.integers(0, c, n) if target == "labels" else rng.dirichlet(np.full(c, 0.5), n)
    vu, _ = oracle_ulps("cross_entropy", x, t, np.float64, **params)
    assert vu <= 1, vu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", LABEL_OPTIONS, ids=lambda o: "-".join(o))
def test_cross_entropy_gradient_near_zero(opts, dtype):
    """Smoothing, weights, z-loss: components A p_j - B_j near 0 (condition
    numbers up to ~1e17) and the extreme rows; <= 2 ULP x condition against
    mpmath (was up to ~5e3 ULP at condition ~1 to 100 before the gradient
    was formed from double-double pieces)."""
    rng = np.random.default_rng(42)
    c = 9
    params = {k: (rng.uniform(0.1, 2.0, c).astype(dtype) if v == "W" else v)
              for k, v in opts.items()}
    w = params["weight"].astype(np.float64) if "weight" in params else np.ones(c)
    x1, y1 = near_cancel_labels(rng, 24, c, params.get("label_smoothing", 0.0), w,
                                params.get("z_loss", 0.0))
    x2 = extreme_logits(9, c, dtype, rng).astype(np.float64)
    x = np.concatenate([x1, x2]).astype(dtype)
    y = np.concatenate([y1, rng.integers(0, c, 9)])
    _check_cond_bound(dtype, *oracle_cond_ulps("cross_entropy", x, y, dtype, **params))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1, "z_loss": 1e-3, "weight": "W"}],
                         ids=["plain", "options"])
def test_cross_entropy_probs_gradient_near_zero(opts, dtype):
    """Probability targets at or next to softmax(x): p_j - t_j near 0 (was
    up to ~900 ULP at condition ~5e3)."""
    rng = np.random.default_rng(43)
    c = 9
    params = {k: (rng.uniform(0.1, 2.0, c).astype(dtype) if v == "W" else v)
              for k, v in opts.items()}
    x, t = near_softmax_targets(rng, 24, c)
    x = np.concatenate([x, extreme_logits(9, c, dtype, rng).astype(np.float64)]).astype(dtype)
    t = np.concatenate([t, rng.dirichlet(np.full(c, 0.5), 9)]).astype(dtype)
    _check_cond_bound(dtype, *oracle_cond_ulps("cross_entropy", x, t, dtype, **params))


@pytest.mark.parametrize("target", ["labels", "probs"])
@pytest.mark.parametrize("scale, gaps", [(400, (700, 744)), (4000, (700, 760))],
                         ids=["normal-terms", "flushed-terms"])
def test_cross_entropy_gradient_subnormal_softmax(scale, gaps, target):
    """p_j subnormal times a factor A > 1 (z-loss with large logits): the
    product is rounded once (was up to 13 ULP). "flushed-terms": gaps
    x_max - x_j beyond 745, where e^(x_j - m) itself rounds to 0 but A p_j
    (A ~ 100) does not: 23 ULP before exp_dd's clamp went from -746 to -790."""
    rng = np.random.default_rng(45)
    x = rng.standard_normal((24, 9)) * scale
    x[:, 3] = x.max(1) - rng.uniform(*gaps, 24)
    if target == "labels":
        t = rng.integers(0, 9, 24)
    else:
        t = rng.dirichlet(np.ones(9), 24)
        t[:, 3] = 0.0
        t /= t.sum(1, keepdims=True)
    vu, gr, gu = oracle_cond_ulps("cross_entropy", x, t, np.float64, z_loss=1e-2)
    assert vu <= 2 and gu <= 2, (vu, gu)


@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1}, {"z_loss": 1e-2}])
def test_cross_entropy_tiny_weight(opts):
    """A weight of 1e-300 on the label (the gradient's row factor A is then
    too small to take the 2^-64 unscaling of the terms: the terms take it)."""
    rng = np.random.default_rng(48)
    w = np.array([0.5, 0.0, 2.0, 1e-300])
    x = np.concatenate([np.zeros((1, 4)), rng.standard_normal((5, 4)) * 3])
    y = np.array([3, 3, 3, 0, 1, 2])
    _check_cond_bound(np.float64, *oracle_cond_ulps("cross_entropy", x, y, np.float64,
                                                    weight=w, **opts))


def test_cross_entropy_smoothing_sum_no_overflow():
    """sum_c w_c (m - x_c) overflows for logits +-max/4 while the smoothed
    loss is finite: the sum is rescaled, not inf."""
    big = float(np.finfo(np.float64).max) / 4
    x = np.array([[big, -big, 0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 3.0]])
    for dtype in DTYPES:
        xd = x.astype(dtype) if dtype == np.float64 else np.array([[1e38, -1e38, 0, 1, 2, 3, 4, 5, 6]],
                                                                     dtype)
        v = fl.cross_entropy(xd, np.array([1]), reduction="none", label_smoothing=0.1)
        ev, _ = row_value_and_grad("cross_entropy", xd[0], 1, label_smoothing=0.1)
        assert np.isfinite(v[0])
        assert ulps(v, [round_to_dtype(ev, dtype)], dtype).max() <= 2


def near_zero_hinge(rng, n, c, margin):
    """Rows with hinges margin - x_y + x_j within ~1e-12 relative of 0."""
    xs, ys = [], []
    for i in range(n):
        x = rng.standard_normal(c) * (1 if i % 2 else 1e3)
        y = int(rng.integers(0, c))
        for j in range(c):
            if j != y and rng.random() < 0.5:
                x[j] = x[y] - margin + rng.standard_normal() * 1e-12 * (1 + abs(x[y]))
        xs.append(x)
        ys.append(y)
    return np.array(xs), np.array(ys)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", [{}, {"p": 2, "margin": 0.5, "weight": "W"}, {"p": 2}],
                         ids=["p1", "p2-w", "p2"])
def test_multi_margin_hinge_near_zero(params, dtype):
    """h = margin - x_y + x_j near its kink: formed exactly (TwoSum), so
    value and gradient stay within 2 ULP (p = 2 was up to ~1e13 ULP)."""
    rng = np.random.default_rng(45)
    c = 9
    params = {k: (rng.uniform(0.1, 2.0, c).astype(dtype) if v == "W" else v)
              for k, v in params.items()}
    x, y = near_zero_hinge(rng, 24, c, params.get("margin", 1.0))
    x = x.astype(dtype)
    vu, gu = oracle_ulps("multi_margin", x, y, dtype, **params)
    bound = 1 if dtype == np.float32 else 2
    assert vu <= bound and gu <= bound, (vu, gu)


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_infinite_logits(p):
    """x_y = -inf with finite others: every hinge is +inf (loss +inf); a
    -inf x_j with finite x_y contributes nothing; as the oracle says."""
    x = np.array([[-np.inf, 0.0, 1.0, -2.0],
                  [0.5, -np.inf, 1.0, -np.inf],
                  [np.inf, 0.0, -np.inf, 3.0]])
    y = np.array([0, 2, 0])
    v, g = fl.value_and_grad("multi_margin", x, y, reduction="none", p=p)
    for r in range(3):
        ev, eg = row_value_and_grad("multi_margin", x[r], int(y[r]), p=p)
        assert v[r] == float(ev)
        assert [float(e) for e in eg] == g[r].tolist()
    assert v[0] == np.inf and v[1] == 0.5 ** p / 4 and v[2] == 0.0
    assert np.all(np.isfinite(g[0])) == (p == 1)


@pytest.mark.parametrize("row", [[-np.inf, 0.0, -np.inf, 0.0], [-np.inf] * 4,
                                 [np.inf, 0.0, np.inf, 1.0]])
def test_multi_margin_undefined_row(row):
    """x_y and another x_j infinite with the same sign: margin - x_y + x_j
    is inf - inf; a ValueError names the row (as cross_entropy's rows of
    all -inf), and ``out`` is untouched."""
    x = np.array([[0.0, 1.0, 2.0, 3.0], row])
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match="row 1 .*undefined"):
        fl.value_and_grad("multi_margin", x, np.array([1, 0]), out=out)
    assert np.all(out == 7.0)
    # with a finite label logit the same row is fine (loss +inf or finite)
    if np.isfinite(row[1]):
        v = fl.multi_margin(x, np.array([1, 1]), reduction="none")
        assert not np.isnan(v).any()


# --- known failures elsewhere (LOSSES.md) ----------------------------------

def _ce_reference_mean(x, y, w, eps, ignore):
    """PyTorch's documented semantics, in float64 NumPy."""
    c = x.shape[1]
    lp = x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) - x.max(1, keepdims=True)
    keep = y != ignore
    yk = y[keep]
    lpk = lp[keep]
    nll = -(w[yk] * lpk[np.arange(len(yk)), yk]).sum()
    smooth = -(lpk * w).sum()
    return ((1 - eps) * nll + eps / c * smooth) / w[yk].sum()


def test_pytorch_73205_69339_smoothing_with_ignore_and_weight():
    x = RNG.standard_normal((8, 5))
    y = np.array([0, -100, 2, 3, -100, 4, 1, 1])
    w = RNG.uniform(0.2, 3.0, 5)
    v = fl.cross_entropy(x, y, weight=w, label_smoothing=0.3)
    assert v == pytest.approx(_ce_reference_mean(x, y, w, 0.3, -100), rel=1e-13)


def test_pytorch_2259_kl_mean_vs_batchmean():
    t = _probs(4, 6, np.float64)
    x = np.log(_probs(4, 6, np.float64))
    s = fl.kl_div(x, t, reduction="sum")
    assert fl.kl_div(x, t, reduction="batchmean") == pytest.approx(s / 4, rel=1e-15)
    assert fl.kl_div(x, t, reduction="mean") == pytest.approx(s / 24, rel=1e-15)


def test_pytorch_89558_kl_gradient_finite_at_zero_target():
    t = np.array([[0.0, 0.5, 0.5]])
    x = np.array([[-np.inf, np.log(0.5), np.log(0.5)]])
    v, g = fl.value_and_grad("kl_div", x, t, reduction="sum")
    assert v == 0.0 and np.all(np.isfinite(g))


def test_optax_896_neg_inf_logits_no_nan():
    x = np.array([[-np.inf, 0.0, 1.0, -np.inf]], dtype=np.float32)
    v, g = fl.value_and_grad("cross_entropy", x, np.array([2]))
    assert np.isfinite(v) and np.all(np.isfinite(g)) and g[0, 0] == 0 and g[0, 3] == 0
    v, g = fl.value_and_grad("cross_entropy", x, np.array([[0.0, 0.5, 0.5, 0.0]], np.float32))
    assert np.isfinite(v) and np.all(np.isfinite(g))
    v, g = fl.value_and_grad("softmax_focal", x, np.array([2]))
    assert np.isfinite(v) and np.all(np.isfinite(g))


def test_optax_1786_large_logits_exact():
    """Cross entropy of huge, nearly tied logits: no overflow, log1p keeps
    the tiny loss of a dominant class (lse - x_y would round to 0)."""
    x = np.array([[1e30, 1e30, 0.0], [700.0, 0.0, -700.0]])  # a tie: log 2
    v = fl.cross_entropy(x, np.array([0, 0]), reduction="none")
    assert v[0] == pytest.approx(math.log(2.0), rel=1e-15)
    assert v[1] == pytest.approx(math.exp(-700.0), rel=1e-14)


def test_keras_13747_kl_nonnegative_normalised():
    t = _probs(5, 8, np.float64)
    x = np.log(_probs(5, 8, np.float64))
    assert np.all(fl.kl_div(x, t, reduction="none") >= 0)


def test_reductions_and_empty():
    x = RNG.standard_normal((5, 3))
    y = RNG.integers(0, 3, 5)
    none = fl.cross_entropy(x, y, reduction="none")
    assert fl.cross_entropy(x, y, reduction="sum") == pytest.approx(none.sum())
    assert fl.cross_entropy(x, y) == pytest.approx(none.mean())
    v = fl.cross_entropy(x, np.full(5, -100))
    assert math.isnan(v)
    with pytest.warns(RuntimeWarning):
        assert math.isnan(fl.cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64)))


def test_cuda_pieces_online_matches_blocked():
    """lse_step / lse_merge (the GPU's per-thread and tree steps) agree with the
    CPU's blocked pass 1."""
    from numba import njit

    from fastloss.scalar import multiclass as M

    @njit
    def online(x, split):
        a = (-np.inf, 0.0, 0.0, 0.0)
        b = (-np.inf, 0.0, 0.0, 0.0)
        for j in range(split):
            a = M.lse_step(a[0], a[1], a[2], a[3], x[j], True)
        for j in range(split, x.size):
            b = M.lse_step(b[0], b[1], b[2], b[3], x[j], True)
        m, s, c, k = M.lse_merge(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], True)
        return m, M.lse_others(s, c, k)

    x = RNG.standard_normal(1000) * 20
    m1, o1 = M.row_lse(x, np.empty(M.SCRATCH), False)
    m2, o2 = online(x, 337)
    assert m1 == m2 and o2 == pytest.approx(o1, rel=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_lse_block_max_and_ties_across_blocks(dtype):
    """Pass 1's block maximum (integer order keys: negatives, -0 and +0,
    -inf) and its count of maxima (counted only in the blocks holding the
    running maximum), on a row of three blocks whose maximum is repeated in
    the first and last and absent from the middle one."""
    from fastloss.scalar import multiclass as M

    n = 2 * M.LSE_BLOCK + 100
    x = np.full(n, -3.0, dtype=dtype)
    x[5] = x[n - 1] = 2.5
    x[M.LSE_BLOCK + 7] = -np.inf
    m, s, c, k = M.row_lse_state(x, np.empty(M.scratch_size(n)), False)
    assert m == 2.5 and k == 2.0
    # float32 data: exp32's documented 2^-34 per term (the sum's own rounding far below)
    assert s + c == pytest.approx((n - 3) * math.exp(-5.5), rel=1e-12 if dtype == np.float64 else 2.0**-34)
    for row, top in (([-0.0, -1.0, 0.0, -np.inf], 0.0), ([-2.0, -0.5, -7.0], -0.5)):
        m, s, c, k = M.row_lse_state(np.array(row, dtype=dtype), np.empty(M.scratch_size(4)), False)
        assert m == top and k == (2.0 if top == 0.0 else 1.0)


# --- PyTorch semantics --------------------------------------------------------

try:  # not a hard dependency
    import torch  # noqa: F811
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def _torch_vg(fn, x, *args, **kw):
    xt = torch.tensor(np.array(x), requires_grad=True)
    v = fn(xt, *args, **kw)
    v.backward()
    return float(v), xt.grad.numpy()


@needs_torch
@pytest.mark.parametrize("red", ["mean", "sum"])
def test_torch_agreement(red):
    F = torch.nn.functional
    x = RNG.standard_normal((16, 6))
    y = RNG.integers(0, 6, 16)
    y[3] = y[9] = -100
    w = RNG.uniform(0.2, 2, 6)
    yt, wt = torch.tensor(y), torch.tensor(w)
    t = _probs(16, 6, np.float64)
    checks = [
        (("cross_entropy", x, y), dict(weight=w, label_smoothing=0.2),
         (F.cross_entropy, x, yt), dict(weight=wt, label_smoothing=0.2)),
        (("cross_entropy", x, t), dict(weight=w, label_smoothing=0.1),
         (F.cross_entropy, x, torch.tensor(t)), dict(weight=wt, label_smoothing=0.1)),
        (("nll", x, y), dict(weight=w), (F.nll_loss, x, yt), dict(weight=wt)),
        (("multi_margin", x, np.where(y < 0, 0, y)), dict(p=2, margin=0.7, weight=w),
         (F.multi_margin_loss, x, torch.tensor(np.where(y < 0, 0, y))), dict(p=2, margin=0.7, weight=wt)),
        (("kl_div", np.log(t[::-1].copy()), t), dict(),
         (F.kl_div, np.log(t[::-1].copy()), torch.tensor(t)), dict()),
    ]
    for (name, a, b), kw, (fn, ta, tb), tkw in checks:
        v, g = fl.value_and_grad(name, a, b, reduction=red, **kw)
        tv, tg = _torch_vg(fn, ta, tb, reduction=red, **tkw)
        assert v == pytest.approx(tv, rel=1e-12), name
        np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-15, err_msg=name)
    v, g = fl.value_and_grad("kl_div", np.log(t[::-1].copy()), t, reduction="batchmean")
    tv, tg = _torch_vg(F.kl_div, np.log(t[::-1].copy()), torch.tensor(t), reduction="batchmean")
    assert v == pytest.approx(tv, rel=1e-12)
    np.testing.assert_allclose(g, tg, rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_hinge_lost_to_the_big_logits(p, dtype):
    """margin - x_y + x_j with x_y = x_j large: the hinge's high part cancels
    to 0 and the margin survives only in the low part (the audit found value
    0 for exact 0.25, rows [1.5e16, 1.5e16, -1.5e16, 0]): against the oracle."""
    big = 2.0 ** 53 if dtype == np.float64 else 2.0 ** 26
    x = np.array([[big, big, -big, 0.0], [3 * big, 3 * big, 0.0, 1.0], [big, big - 1, -1, 0]],
                 dtype=dtype)
    y = np.array([0, 1, 0])
    vu, gu = oracle_ulps("multi_margin", x, y, dtype, p=p)
    assert vu <= 2 and gu <= 2, (vu, gu)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_z_loss_at_a_plus_inf_logit_has_the_limit_gradient(dtype, eps):
    """z-loss z lse^2 at a +inf logit: the loss is +inf, and its gradient
    2 z lse p_j is +inf at the +inf logits and tends to 0 elsewhere (p_j =
    e^(x_j - x_k) -> 0 faster than lse = x_k grows). Analytic limits, per
    row: the cross-entropy part (1 - eps) (p_j - [j = y]) - (eps / C) is
    -(1 - eps) - eps/C at a finite label and -eps/C elsewhere. Was NaN
    (A p_j = inf * 0)."""
    x = np.array([[np.inf, 0, -1], [np.inf, 0, -1], [np.inf, np.inf, 0], [-np.inf, np.inf, 3]],
                 dtype=dtype)
    y = np.array([1, 0, 2, 0])
    v, g = fl.value_and_grad("cross_entropy", x, y, z_loss=1e-2, label_smoothing=eps,
                             reduction="none")
    assert np.all(v == np.inf)
    e = eps / 3
    inf = np.inf
    want = np.array([[inf, -(1 - eps) - e, -e], [inf, -e, -e], [inf, inf, -(1 - eps) - e],
                     [-(1 - eps) - e, inf, -e]])
    np.testing.assert_array_equal(g, want.astype(dtype))


#: rows where the float64 softmax_focal was 3-5 ULP off (q^gamma multiplied
#: the ~1 ulp of pass 1's sum and of pow by gamma)
_FOCAL_ROWS = [
    ([0.0, 8.0, -8.0, 4.0], 1), ([0.0, -np.inf, 1.0, -np.inf], 2), ([50.0, 0.1, -0.3], 0),
    ([1.0, 2.0, 3.0], 0), ([3.0, 3.0, 1.0], 0), ([0.0, 0.0, 0.0], 1), ([-1e3, 1e3, 0.0], 0),
]


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_softmax_focal_float64_within_two_ulp(gamma):
    """float64 softmax_focal value and every gradient component within 2 ULP
    of the oracle (``_focal_dd``: double-double row scalars), on the rows
    above, the extreme rows and random rows, with and without alpha."""
    for r, y in _FOCAL_ROWS:
        vu, gu = oracle_ulps("softmax_focal", np.array([r]), np.array([y]), np.float64, gamma=gamma)
        assert vu <= 2 and gu <= 2, (r, y, vu, gu)
    x = extreme_logits(9, 12, np.float64)
    y = np.array([0, 3, 5, 7, 0, 11, 0, 4, 1])
    vu, gu = oracle_ulps("softmax_focal", x, y, np.float64, gamma=gamma)
    assert vu <= 2 and gu <= 2, (vu, gu)
    x = np.concatenate([RNG.standard_normal((4, 7)), RNG.standard_normal((4, 7)) * 12])
    y = RNG.integers(0, 7, 8)
    a = RNG.uniform(0.1, 2.0, 7)
    vu, gu = oracle_ulps("softmax_focal", x, y, np.float64, gamma=gamma, alpha=a)
    assert vu <= 2 and gu <= 2, (vu, gu)


# --- rows of few classes (fastloss.cpu.rowtiles) ------------------------------


def test_tiles_routing():
    """The row driver's ``tile_pass`` takes float32 cross_entropy with labels
    (with or without smoothing and z-loss), C < GROUP_MAX (``lane_rows``
    below GROUP_C, ``group_rows`` from it), float32 cross_entropy with
    probability targets below GROUP_MAX (``lane_probs`` below GROUP_C,
    ``group_probs`` from it, with a gradient), and nothing else (the literal
    formula id must reach its overload: it once resolved for a plain int and
    silently never ran the tiles)."""
    import numba
    from numba import njit

    from fastloss.cpu.rowtiles import scratch, tile_pass

    @njit
    def taken(fid, x, t, p0, p1, buf):
        numba.literally(fid)
        n, c = x.shape
        ok, _, _ = tile_pass(fid, x, np.zeros(n, np.int64), t, np.ones(c, x.dtype), p0, p1, 0.0,
                             float(c), -100, False, 1.0, np.empty_like(x), True, buf, 0, n,
                             np.empty(0), False, 0.0, 0.0)
        return ok

    def case(c, dtype=np.float32, fid=0, probs=False, p0=0.0, p1=0.0):
        x = np.zeros((5, c), dtype)
        t = np.full((5, c), 1.0 / c, dtype) if probs else np.zeros((5, 0), dtype)
        return taken(fid, x, t, p0, p1, np.empty(scratch(c)))

    from fastloss.cpu.rowlanes import ROW32_MIN
    from fastloss.cpu.rowtiles import GROUP_C, GROUP_MAX

    assert case(1) and case(10) and case(GROUP_C - 1)
    assert case(GROUP_C) and case(ROW32_MIN - 1) and case(ROW32_MIN) and case(GROUP_MAX - 1)
    assert not case(GROUP_MAX)
    assert case(100, p0=0.1) and case(100, p1=1e-4) and case(10, p0=0.1) and case(10, p1=1e-4)
    assert not case(100, np.float64) and not case(100, probs=True)
    assert not case(10, np.float64)
    assert not case(10, probs=True)
    assert not case(10, fid=2)  # nll
    # probability targets (fid 1)
    assert case(1, fid=1, probs=True) and case(GROUP_C - 1, fid=1, probs=True)
    assert case(10, fid=1, probs=True, p0=0.1) and case(10, fid=1, probs=True, p1=1e-4)
    assert case(GROUP_C, fid=1, probs=True) and case(GROUP_MAX - 1, fid=1, probs=True)
    assert case(100, fid=1, probs=True, p0=0.1) and case(100, fid=1, probs=True, p1=1e-4)
    assert not case(GROUP_MAX, fid=1, probs=True) and not case(10, np.float64, fid=1, probs=True)
    assert not case(100, np.float64, fid=1, probs=True)


@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1, "z_loss": 1e-3}],
                         ids=["plain", "options"])
@pytest.mark.parametrize("c", [32, 45])
def test_lane_rows_streamed_gradient(c, opts, kind):
    """``lane_rows`` (labels) and ``lane_probs`` (probability targets) write
    a gradient of TILE_STREAM_BYTES or more through a row-major tile buffer
    and streaming stores: every row has the bits it has in a small call
    (ordinary stores; a row's bits do not depend on the rows beside it),
    ignored rows, rows outside the lanes' scope (the float64 row formula,
    into the tile buffer) and a short last tile included, out of place and
    in place."""
    from fastloss.cpu.rowtiles import TILE_STREAM_BYTES, TILE_STREAM_C

    assert c >= TILE_STREAM_C
    n = TILE_STREAM_BYTES // (4 * c) + 16 + 7  # a short last tile
    rng = np.random.default_rng(c)
    x = rng.normal(size=(n, c)).astype(np.float32) * 3
    x[5, 3] = np.inf  # outside the lanes' scope
    x[n - 2, 1] = 3e25
    if kind == "labels":
        y = rng.integers(0, c, n)
        y[::97] = -100
        x[n - 1] = -np.inf
        x[n - 1, y[n - 1]] = 0.0
    else:
        y = rng.dirichlet(np.full(c, 0.5), n).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # z lse^2 of row n - 2 rounds to inf: no warning
        v, g = fl.value_and_grad("cross_entropy", x, y, reduction="none", **opts)
    assert g.nbytes >= TILE_STREAM_BYTES
    rows = np.r_[0:40, 90:110, 5, n - 40:n]
    vs, gs = fl.value_and_grad("cross_entropy", x[rows], y[rows], reduction="none", **opts)
    assert gs.nbytes < TILE_STREAM_BYTES
    np.testing.assert_array_equal(g[rows], gs)
    np.testing.assert_array_equal(v[rows], vs)
    if kind == "labels":
        assert np.all(g[::97] == 0)
    xi = x.copy()
    v2, g2 = fl.value_and_grad("cross_entropy", xi, y, reduction="none", out=xi, **opts)
    assert g2 is xi or np.shares_memory(g2, xi)
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_array_equal(v2, v)


@pytest.mark.parametrize("dtype, c", [(np.float32, 1), (np.float32, 3), (np.float32, 1000),
                                      (np.float64, 17)])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
def test_nll_gradient_zeros_and_label_entries(dtype, c, weighted):
    """nll's gradient is zero but at the label, -w_y / gdiv (exactly -w_y
    with reduction "sum"), and its value -w_y x_y: checked element for
    element against that identity on a gradient of ENTRY_STREAM_BYTES or
    more (zeros by streaming stores, the label entries after: rows of 1 and
    3 classes put several labels in one line, 17 and 1000 start rows off
    the lines) and on a small one (ordinary stores), into a buffer of NaNs
    that starts off a cache line, out of place and in place; ignored rows
    (ignore_index) have zero gradients and values."""
    from fastloss._config import ENTRY_STREAM_BYTES

    item = np.dtype(dtype).itemsize
    rng = np.random.default_rng(c)
    for n in (ENTRY_STREAM_BYTES // (item * c) + 37, 300):
        x = rng.normal(size=(n, c)).astype(dtype)
        y = rng.integers(0, c, n)
        y[::7] = -100
        y[1::13] = 0
        y[2::11] = c - 1
        w = rng.uniform(0.5, 2.0, c).astype(dtype) if weighted else np.ones(c, dtype)
        kw = {"weight": w} if weighted else {}
        keep = np.nonzero(y != -100)[0]
        eg = np.zeros((n, c), dtype)
        eg[keep, y[keep]] = -w[y[keep]]
        ev = np.zeros(n)  # float64: the products of float32 data exact
        ev[keep] = -(w[y[keep]].astype(np.float64) * x[keep, y[keep]])
        raw = np.full(n * c + 1, np.nan, dtype)
        out = raw[1:].reshape(n, c)  # off the cache lines of raw
        v, g = fl.value_and_grad("nll", x, y, reduction="none", out=out, **kw)
        assert g is out or np.shares_memory(g, out)
        np.testing.assert_array_equal(g, eg)
        np.testing.assert_array_equal(v, ev.astype(dtype))
        s, _ = fl.value_and_grad("nll", x, y, reduction="sum", **kw)
        assert s == pytest.approx(math.fsum(ev), rel=4e-16, abs=0)
        xi = x.copy()
        vi, gi = fl.value_and_grad("nll", xi, y, reduction="sum", out=xi, **kw)
        np.testing.assert_array_equal(gi, eg)
        assert vi == s


def test_z_loss_value_at_large_logits():
    """z lse^2 from the pair lse = m + log1p(others): from the rounded lse
    the value was 3 ULP off in float64 for this row (logits near 1e4, found
    by the near-cancellation test under another random state)."""
    x = np.array([[10000.0, 9999.999, 9999.362104756783, 9999.908719679777, 10001.233938342157,
                   10000.458459070778, 10000.560968369939, 9999.45742353386, 10000.149616997674]])
    for z in (1e-2, 1e-4, 0.7):
        v = fl.cross_entropy(x, np.array([1]), z_loss=z, reduction="none")
        ev, _ = row_value_and_grad("cross_entropy", x[0], 1, z_loss=z)
        assert ulps([v[0]], [round_to_dtype(ev, np.float64)], np.float64).max() <= 2, z


# --- float32 rows on float32 lanes (fastloss.cpu.rowlanes) -------------------


def _lanes_rows(c, rng):
    """float32 rows of c classes for the float32 lanes (``ce_row32``,
    ``rowtiles``): ordinary and wide logits, ties at the maximum, logits
    just below it (terms that round to 1), -inf entries, terms clamped far
    below the maximum, subnormal gradient entries (gaps 88-104), a large
    shift, tiny logits next to a larger maximum (x_j - m inexact in
    float32). Rows of fewer than 3 classes keep their first c."""
    k = max(c, 3)
    rows = [
        rng.standard_normal(k),
        rng.standard_normal(k) * 30,
        rng.standard_normal(k) * 1e4,
        np.r_[np.full(3, 2.5), rng.standard_normal(k - 3)],  # three maxima
        np.r_[1.0, np.nextafter(np.float32(1.0), np.float32(0.0)), rng.standard_normal(k - 2)],
        np.r_[rng.standard_normal(k - 2), -np.inf, -np.inf],
        np.r_[0.0, rng.uniform(-150.0, -80.0, k - 1)],  # clamped and subnormal terms
        np.r_[1e6, 1e6 - rng.uniform(0.0, 30.0, k - 1)],
        np.r_[7.0, rng.standard_normal(k - 1) * 1e-20],
        np.full(k, -3.25),  # all maxima
    ]
    return np.array([r[:c] for r in rows], dtype=np.float32)


@pytest.mark.parametrize("c", [1, 2, 3, 10, 16, 17, 33, 63, 64, 100, 255, 256, 1000, 1037])
def test_lanes_cross_entropy_oracle(c):
    """float32 cross_entropy with labels on float32 lanes (``ce_row32``,
    ROW32_MIN <= C <= ROW32_MAX, ``rowtiles.group_rows`` for GROUP_C <= C <
    ROW32_MIN and ``rowtiles.lane_rows`` below): per-row values and
    gradients within 2 ULP of mpmath,
    with and without class weights, also on the rows' extremes
    (``_lanes_rows``), and the gradient of the weighted mean (its factor
    1/sum(w_y) inside the one rounding) within 2 ULP as well."""
    from fastloss.cpu.rowlanes import ROW32_MAX

    assert c <= ROW32_MAX
    x = _lanes_rows(c, RNG)
    n = x.shape[0]
    y = RNG.integers(0, c, n)
    y[4] = min(1, c - 1)  # the label just below the maximum
    y[6] = 0
    vu, gu = oracle_ulps("cross_entropy", x, y, np.float32)
    assert vu <= 2 and gu <= 2, (vu, gu)
    w = RNG.uniform(0.1, 3.0, c).astype(np.float32)
    vu, gu = oracle_ulps("cross_entropy", x, y, np.float32, weight=w)
    assert vu <= 2 and gu <= 2, (vu, gu)
    # the weighted mean's gradient, row by row against the oracle / sum(w_y)
    import mpmath as mp

    _, g = fl.value_and_grad("cross_entropy", x, y, weight=w)
    den = mp.fsum(mp.mpf(float(w[v])) for v in y)
    worst = 0.0
    for r in range(n):
        _, eg = row_value_and_grad("cross_entropy", x[r], int(y[r]), weight=list(w))
        worst = max(worst, ulps(g[r], [round_to_dtype(e / den, np.float32) for e in eg],
                                np.float32).max())
    assert worst <= 2, worst


@pytest.mark.parametrize("c", [1, 3, 10, 17, 33, 63, 64, 100, 255, 256, 1000, 1037])
def test_lanes_cross_entropy_options_oracle(c):
    """float32 cross_entropy with labels and label smoothing or a z-loss on
    float32 lanes (``ce_row32``'s options, and ``rowtiles``' below
    ROW32_MIN: the gradient A p_j - b_j formed in float64 from the float32
    terms): per-row values within 1 ULP of
    mpmath and gradient entries within 2 ULP x their condition number (A
    p_j against (eps/C) w_j), with and without class weights, on the rows'
    extremes (``_lanes_rows``: -inf logits under smoothing give +inf), and
    for the mean's gradient (1/N inside the one rounding)."""
    import mpmath as mp

    x = _lanes_rows(c, RNG)
    n = x.shape[0]
    y = RNG.integers(0, c, n)
    y[4] = min(1, c - 1)  # the label just below the maximum
    y[6] = 0
    w = RNG.uniform(0.1, 3.0, c).astype(np.float32)
    for kw in ({"label_smoothing": 0.1}, {"label_smoothing": 1.0}, {"z_loss": 1e-2},
               {"weight": w, "label_smoothing": 0.2},
               {"weight": w, "label_smoothing": 0.05, "z_loss": 1e-3}):
        vu, gr, gu = oracle_cond_ulps("cross_entropy", x, y, np.float32, **kw)
        assert vu <= 1 and gr <= 2, (list(kw), vu, gr, gu)
    _, g = fl.value_and_grad("cross_entropy", x, y, label_smoothing=0.1)
    worst = 0.0
    for r in range(n):
        _, eg = row_value_and_grad("cross_entropy", x[r], int(y[r]), label_smoothing=0.1)
        _, cg = row_condition("cross_entropy", x[r], int(y[r]), label_smoothing=0.1)
        for j, e in enumerate(eg):
            worst = max(worst, err_ulps(g[r, j], e / mp.mpf(n), np.float32) / cg[j])
    assert worst <= 2, worst


def _assert_public_bits(x, target, kw, want_v, want_g):
    """float32 cross_entropy of (x, target) with options kw, reduction
    "none": the values and the gradient bitwise want_v (float64, rounded
    here) and want_g, also in place (out=x) and the value without a
    gradient."""
    v, g = fl.value_and_grad("cross_entropy", x, target, reduction="none", **kw)
    np.testing.assert_array_equal(v.view(np.int32), want_v.astype(np.float32).view(np.int32))
    np.testing.assert_array_equal(g.view(np.int32), want_g.view(np.int32))
    xi = x.copy()
    fl.value_and_grad("cross_entropy", xi, target, reduction="none", out=xi, **kw)
    np.testing.assert_array_equal(xi.view(np.int32), want_g.view(np.int32))
    v_only = fl.cross_entropy(x, target, reduction="none", **kw)
    np.testing.assert_array_equal(v_only.view(np.int32), v.view(np.int32))


def test_lanes_cross_entropy_same_bits_and_routing():
    """The row driver runs ``ce_row32`` for float32 cross_entropy with labels
    in its scope (below ``rowtiles.GROUP_MAX`` classes its algorithm by
    groups of rows, ``group_rows``; C = 700 here): the public results are
    bitwise those of ``ce_row32`` called row by row; in place (out=x) gives
    the same bits; the value
    without a gradient is the value with one; rows outside its scope (a
    maximum of 2^24 or more, +inf, NaN) get the bits of the float64 row
    formula; with label smoothing or a z-loss, also a row whose (1 - eps)
    w_y + (eps/C) sum(w) + 2 z (|m| + 12) exceeds 2^20 gdiv (m = 1e7 with
    z = 0.1, in the plain scope)."""
    from numba import njit

    from fastloss.cpu.rowlanes import ce_row32
    from fastloss.cpu.rowwise import sum_dd
    from fastloss.scalar.multiclass import cross_entropy, scratch_size

    def one_by_one(f):
        @njit
        def run(x, y, t, w, eps, z, wlo, wsum, g, buf):
            v = np.zeros(x.shape[0])
            for r in range(x.shape[0]):
                v[r] = f(x[r], y[r], t[r], w, eps, z, wlo, wsum, 1.0, g[r], True, buf)
            return v
        return run

    c = 700
    x = _lanes_rows(c, RNG)
    out_of_scope = np.array([np.r_[3e7, RNG.standard_normal(c - 1)],
                             np.r_[np.inf, RNG.standard_normal(c - 1)],
                             np.r_[np.nan, RNG.standard_normal(c - 1)]], dtype=np.float32)
    options_out = np.array([np.r_[1e7, 1e7 - RNG.uniform(0.0, 30.0, c - 1)]], dtype=np.float32)
    x = np.concatenate([x, out_of_scope, options_out])
    n = x.shape[0]
    y = RNG.integers(0, c, n)
    w = RNG.uniform(0.1, 3.0, c).astype(np.float32)
    wsum, wlo = sum_dd(w)
    t = np.zeros((n, 0), np.float32)
    buf = np.empty(scratch_size(c))
    m = n - 4  # the rows in every scope
    for eps, z, out in ((0.0, 0.0, slice(m, m + 3)), (0.1, 0.0, slice(m, m + 3)),
                        (0.0, 0.1, slice(m, n)), (0.1, 1e-3, slice(m, m + 3))):
        want_g = np.empty_like(x)
        want_v = one_by_one(ce_row32)(x, y, t, w, eps, z, wlo, wsum, want_g, buf)
        kw = {"weight": w, "label_smoothing": eps, "z_loss": z}
        _assert_public_bits(x, y, kw, want_v, want_g)
        # the rows out of scope: the float64 formula's bits; those in scope
        # take the float32 lanes: their gradients are not the float64
        # formula's bits throughout (another algorithm, each within its own
        # bound of mpmath: test_lanes_cross_entropy_oracle,
        # test_lanes_cross_entropy_options_oracle)
        f64_g = np.empty_like(x)
        f64_v = one_by_one(cross_entropy)(x, y, t, w, eps, z, wlo, wsum, f64_g, buf)
        np.testing.assert_array_equal(want_g[out].view(np.int32), f64_g[out].view(np.int32))
        np.testing.assert_array_equal(want_v[out], f64_v[out])
        assert np.count_nonzero(want_g[:m].view(np.int32) != f64_g[:m].view(np.int32)) > 0


def _lanes_targets(x, rng):
    """Probability targets for ``_lanes_rows``' logits x: Dirichlet rows,
    with a row at its float64 softmax (every gradient entry near 0), a
    one-hot row, a row summing to 3.5, an all-zero row (the row of equal
    logits), and the -inf logits' targets 0 except one (a value of +inf)."""
    n, c = x.shape
    t = rng.dirichlet(np.full(c, 0.5), n)
    x64 = x.astype(np.float64)
    p = np.exp(x64[0] - x64[0].max())
    t[0] = p / p.sum()
    t[2] = 0.0
    t[2, rng.integers(0, c)] = 1.0
    t[3] *= 3.5
    t[5, 0] = 0.0  # x = -inf, t = 0: contributes 0; t[5, 1] > 0 at x = -inf: inf
    t[n - 1] = 0.0
    return t.astype(np.float32)


@pytest.mark.parametrize("c", [1, 2, 3, 10, 16, 33, 63, 64, 100, 255, 256, 1000, 1037])
def test_lanes_probs_oracle(c):
    """float32 cross_entropy with probability targets on float32 lanes
    (``ce_probs_row32``, and ``rowtiles.lane_probs`` below GROUP_C
    classes): per-row values within 1 ULP of mpmath and gradient
    entries within 2 ULP x their condition number (the cancellation of
    A p_j against w_j t'_j), also on the rows' extremes (``_lanes_rows``,
    ``_lanes_targets``), with class weights, smoothing and z-loss, and for
    the mean's gradient (1/N inside the one rounding)."""
    import mpmath as mp

    x = _lanes_rows(c, RNG)
    t = _lanes_targets(x, RNG)
    w = RNG.uniform(0.1, 3.0, c).astype(np.float32)
    for kw in ({}, {"weight": w}, {"label_smoothing": 0.2}, {"z_loss": 1e-2},
               {"weight": w, "label_smoothing": 0.1, "z_loss": 1e-3}):
        vu, gr, gu = oracle_cond_ulps("cross_entropy", x, t, np.float32, **kw)
        assert vu <= 1 and gr <= 2, (list(kw), vu, gr, gu)
    _, g = fl.value_and_grad("cross_entropy", x, t)
    n = x.shape[0]
    worst = 0.0
    for r in range(n):
        _, eg = row_value_and_grad("cross_entropy", x[r], t[r])
        _, cg = row_condition("cross_entropy", x[r], t[r])
        for j, e in enumerate(eg):
            worst = max(worst, err_ulps(g[r, j], e / mp.mpf(n), np.float32) / cg[j])
    assert worst <= 2, worst


@pytest.mark.parametrize("c", [64, 100, 700])
def test_lanes_probs_same_bits_and_routing(c):
    """The row driver runs ``ce_probs_row32`` for float32 cross_entropy with
    probability targets (PROBS32_MIN classes or more; by groups of rows,
    ``rowtiles.group_probs``: 42 rows here, groups of 16, 16 and 10, rows
    out of scope among them), with and without class weights, smoothing and
    z-loss: bitwise its results called row by row, in place (out=x) too, and
    the value without a gradient is the value with one; rows outside its
    scope (a maximum of 2^24 or more, +inf, NaN, C max t_j > 2^20 gdiv)
    get the bits of the float64 formula; the rows in scope do not (another
    algorithm, each within its bound: test_lanes_probs_oracle)."""
    from numba import njit

    from fastloss.cpu.rowlanes import ce_probs_row32
    from fastloss.scalar.multiclass import cross_entropy_probs, scratch_size

    def one_by_one(f):
        @njit
        def run(x, t, w, eps, z, p3, g, buf):
            v = np.zeros(x.shape[0])
            p2 = np.float64(w.max())  # as ``rows.formula_params`` passes
            for r in range(x.shape[0]):
                v[r] = f(x[r], 0, t[r], w, eps, z, p2, p3, 1.0, g[r], True, buf)
            return v
        return run

    x = _lanes_rows(c, RNG)
    t = _lanes_targets(x, RNG)
    scope = x.shape[0]
    x = np.concatenate([x, np.array([np.r_[3e7, RNG.standard_normal(c - 1)],
                                     np.r_[np.inf, RNG.standard_normal(c - 1)],
                                     np.r_[np.nan, RNG.standard_normal(c - 1)],
                                     RNG.standard_normal(c)], dtype=np.float32)])
    big = np.full((1, c), 1e-3)
    big[0, 3] = 2.0 ** 20 / c * 1.01  # C max t_j just over 2^20
    t = np.concatenate([t, RNG.dirichlet(np.full(c, 0.5), 3), big]).astype(np.float32)
    w1 = np.ones(c, np.float32)
    w = RNG.uniform(0.1, 3.0, c).astype(np.float32)
    buf = np.empty(scratch_size(c))
    x3, t3 = np.tile(x, (3, 1)), np.tile(t, (3, 1))
    for kw, wk, p3 in (({}, w1, 1.0), ({"weight": w}, w, 0.0),
                       ({"label_smoothing": 0.1}, w1, 1.0), ({"z_loss": 1e-3}, w1, 1.0),
                       ({"weight": w, "label_smoothing": 0.1, "z_loss": 1e-3}, w, 0.0)):
        want_g = np.empty_like(x3)
        want_v = one_by_one(ce_probs_row32)(x3, t3, wk, kw.get("label_smoothing", 0.0),
                                            kw.get("z_loss", 0.0), p3, want_g, buf)
        _assert_public_bits(x3, t3, kw, want_v, want_g)
    # out of scope: the float64 formula's bits; in scope: not throughout
    f64_g = np.empty_like(x)
    f64_v = one_by_one(cross_entropy_probs)(x, t, w1, 0.0, 0.0, 1.0, f64_g, buf)
    v, g = fl.value_and_grad("cross_entropy", x, t, reduction="none")
    np.testing.assert_array_equal(g[scope:].view(np.int32), f64_g[scope:].view(np.int32))
    np.testing.assert_array_equal(v[scope:].view(np.int32),
                                  f64_v[scope:].astype(np.float32).view(np.int32))
    assert np.count_nonzero(g[:scope].view(np.int32) != f64_g[:scope].view(np.int32)) > 0


@pytest.mark.parametrize("c", [1, 2, 3, 10, 16, 33, 63])
def test_lane_probs_same_bits_and_routing(c):
    """float32 cross_entropy with probability targets and C < GROUP_C runs
    ``rowtiles.lane_probs``, with or without class weights, label smoothing
    and z-loss: a row's bits do not depend on the rows beside it in its
    tile (all rows at once, on ragged tiles, against one row per call); the
    public call gives those bits, in place too, and its value without a
    gradient; rows outside the lanes' scope (a maximum of 2^24 or more,
    +inf, NaN, C max_j w_j t'_j > 2^20 gdiv, a NaN target), mixed into the tiles,
    get the float64 row formula's bits; the rows in scope do take the lanes
    (their gradients are not all the float64 formula's bits)."""
    from numba import njit

    from fastloss.cpu.rowtiles import GROUP_C, TILE_ROWS, lane_probs, scratch
    from fastloss.scalar.multiclass import cross_entropy_probs, scratch_size

    assert c < GROUP_C
    rows = _lanes_rows(c, RNG)
    k = max(c, 2)
    out_of_scope = np.array([np.r_[3e7, RNG.standard_normal(k - 1)][:c],
                             np.r_[np.inf, RNG.standard_normal(k - 1)][:c],
                             np.r_[np.nan, RNG.standard_normal(k - 1)][:c],
                             RNG.standard_normal(c), RNG.standard_normal(c)], dtype=np.float32)
    x = np.concatenate([rows, out_of_scope, rows[::-1], RNG.standard_normal((TILE_ROWS + 3, c))
                        .astype(np.float32)])
    nr = len(rows)
    t = np.concatenate([_lanes_targets(rows, RNG), RNG.dirichlet(np.full(c, 0.5), 5),
                        _lanes_targets(rows[::-1], RNG),
                        RNG.dirichlet(np.full(c, 0.5), TILE_ROWS + 3)]).astype(np.float32)
    t[nr + 3] = 0.0
    t[nr + 3, 0] = 2.0 ** 20 / c * 20.0  # C max_j w_j t'_j > 2^20 for max(w) >= 0.1
    t[nr + 4, 0] = np.nan
    spread = [11, 12, 13, 14, 15]  # spread into other tiles
    x[spread] = x[nr:nr + 5]
    t[spread] = t[nr:nr + 5]
    n = x.shape[0]
    ones, wr = np.ones(c, np.float32), RNG.uniform(0.1, 3.0, c).astype(np.float32)

    @njit
    def formula(x, t, w, eps, z, p2, p3, g, buf):
        v = np.zeros(x.shape[0])
        for r in range(x.shape[0]):
            v[r] = cross_entropy_probs(x[r], 0, t[r], w, eps, z, p2, p3, 1.0, g[r], True, buf)
        return v

    for w, eps, z in ((ones, 0.0, 0.0), (wr, 0.0, 0.0), (ones, 0.1, 0.0), (ones, 0.0, 1e-2),
                      (wr, 0.1, 1e-3)):
        p3 = 1.0 if w is ones else 0.0
        p2 = float(w.max())  # as ``rows.formula_params`` passes
        g_all = np.empty_like(x)
        v_all = np.empty(n)
        lane_probs(x, t, w, eps, z, p2, p3, 1.0, g_all, True, np.empty(scratch(c)), 0, n,
                   v_all, True, 0.0, 0.0)
        g_one = np.empty_like(x)
        v_one = np.empty(n)
        for r in range(n):
            lane_probs(x, t, w, eps, z, p2, p3, 1.0, g_one, True, np.empty(scratch(c)), r,
                       r + 1, v_one, True, 0.0, 0.0)
        np.testing.assert_array_equal(g_all.view(np.int32), g_one.view(np.int32))
        np.testing.assert_array_equal(v_all.view(np.int64), v_one.view(np.int64))
        kw = {"label_smoothing": eps, "z_loss": z}
        if w is wr:
            kw["weight"] = w
        with np.errstate(invalid="ignore"):
            _assert_public_bits(x, t, kw, v_all, g_all)
        f64_g = np.empty_like(x)
        f64_v = formula(x, t, w, eps, z, p2, p3, f64_g, np.empty(scratch_size(c)))
        for r in spread:
            np.testing.assert_array_equal(g_all[r].view(np.int32), f64_g[r].view(np.int32))
            assert f64_v[r] == v_all[r] or (np.isnan(f64_v[r]) and np.isnan(v_all[r]))
        if c > 1:
            assert np.count_nonzero(g_all.view(np.int32) != f64_g.view(np.int32)) > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [9, 700])
def test_probability_target_check_deferred_to_the_kernel(c, dtype):
    """Without ``out`` the kernel checks the probability targets itself
    (``rowwise.fused``'s tcheck): a negative or +inf target raises the same
    error, naming the same element, as the check before the kernel that a
    call with ``out`` runs (and whose buffer stays untouched); NaN and -0
    targets pass both ways."""
    rng = np.random.default_rng(c)
    x = rng.standard_normal((37, c)).astype(dtype)
    t0 = rng.dirichlet(np.full(c, 0.5), 37).astype(dtype)
    for bad in (-1e-30, -np.inf, np.inf, -1.0):
        for r, j in ((0, 0), (17, c // 2), (36, c - 1)):
            t = t0.copy()
            t[r, j] = bad
            want = f"element \\({r}, {j}\\) is {float(np.asarray(bad, dtype))!r}"
            with pytest.raises(ValueError, match=want):
                fl.value_and_grad("cross_entropy", x, t)
            with pytest.raises(ValueError, match=want):
                fl.cross_entropy(x, t, reduction="none")
            out = np.full_like(x, 7.0)
            with pytest.raises(ValueError, match=want):
                fl.value_and_grad("cross_entropy", x, t, out=out)
            assert np.all(out == 7.0)
    t = t0.copy()
    t[3, 1] = np.nan
    t[5, 2] = -0.0
    v, g = fl.value_and_grad("cross_entropy", x, t, reduction="none")
    assert np.isnan(v[3]) and not np.isnan(v[5])


@pytest.mark.parametrize("c", [2, 10, 33])
def test_lane_rows_signed_zero_maximum(c):
    """``rowtiles.lane_rows`` leaves open which of -0 and +0 is a lane's
    maximum when both are (``_intrin.lane_max``); the results do not depend
    on it: a row whose maximum is +0 and -0 at two classes and the row with
    the two swapped have the same value and gradient, bitwise (the two
    entries' softmax terms are equal, e^0), wherever the two sit among the
    lanes' accumulators."""
    rows, labels = [], []
    for a in range(min(c, 6)):
        for b in range(min(c, 6)):
            if a == b:
                continue
            x = -np.abs(RNG.standard_normal(c)).astype(np.float32) - np.float32(0.5)
            x[a], x[b] = np.float32(0.0), np.float32(-0.0)
            y = next(j for j in range(c) if j not in (a, b)) if c > 2 else a
            sw = x.copy()
            sw[a], sw[b] = x[b], x[a]
            rows += [x, sw]
            labels += [y, y]
    reps = -(-32 // len(rows))  # whole tiles: lane_rows' block and fold paths
    x = np.tile(np.array(rows), (reps, 1))
    y = np.tile(np.array(labels), reps)
    v, g = fl.value_and_grad("cross_entropy", x, y, reduction="none")
    for r in range(0, x.shape[0], 2):
        assert v[r:r + 1].view(np.int32) == v[r + 1:r + 2].view(np.int32), r
        np.testing.assert_array_equal(g[r].view(np.int32), g[r + 1].view(np.int32))


@pytest.mark.parametrize("c", [2, 3, 10, 16, 33, 63, 64, 100, 255, 256, 1000])
def test_groups_same_bits_and_routing(c):
    """float32 cross_entropy with labels and C < GROUP_MAX runs
    ``rowtiles.lane_rows`` (C < GROUP_C) or ``rowtiles.group_rows``, with
    or without class weights, label smoothing and z-loss: a
    row's bits do not depend on the rows beside it in its tile or group
    (all rows at once, on ragged tiles, against one row per call); the
    public call gives those bits, in place too, and its
    value without a gradient; ignored rows are 0; rows outside the lanes'
    scope (a maximum of 2^24 or more, +inf, NaN), mixed into the groups,
    get the float64 row formula's bits; the rows in scope do take the
    lanes (their gradients are not all the float64 formula's bits)."""
    from numba import njit

    from fastloss.cpu.rowtiles import GROUP_C, TILE_ROWS, group_rows, lane_rows, scratch
    from fastloss.cpu.rowwise import sum_dd
    from fastloss.scalar.multiclass import cross_entropy, scratch_size

    tiles = lane_rows if c < GROUP_C else group_rows
    rows = _lanes_rows(c, RNG)
    out_of_scope = np.array([np.r_[3e7, RNG.standard_normal(c - 1)],
                             np.r_[np.inf, RNG.standard_normal(c - 1)],
                             np.r_[np.nan, RNG.standard_normal(c - 1)]], dtype=np.float32)
    x = np.concatenate([rows, out_of_scope, rows[::-1], RNG.standard_normal((TILE_ROWS + 3, c))
                        .astype(np.float32)])
    x[[11, 12, 13]] = x[[len(rows), len(rows) + 1, len(rows) + 2]]  # spread into other groups
    n = x.shape[0]
    y = RNG.integers(0, c, n)
    y[5] = -100
    y[n - 2] = -100
    t = np.zeros((n, 0), np.float32)
    ones, wr = np.ones(c, np.float32), RNG.uniform(0.1, 3.0, c).astype(np.float32)
    for w, eps, z in ((ones, 0.0, 0.0), (wr, 0.0, 0.0), (wr, 0.1, 0.0), (ones, 0.0, 1e-2),
                      (wr, 0.1, 1e-3)):
        wsum, wlo = sum_dd(w)
        g_all = np.empty_like(x)
        v_all = np.empty(n)
        tiles(x, y, t, w, eps, z, wlo, wsum, -100, True, 1.0, g_all, True, np.empty(scratch(c)),
              0, n, v_all, True, 0.0, 0.0)
        g_one = np.empty_like(x)
        v_one = np.empty(n)
        for r in range(n):
            tiles(x, y, t, w, eps, z, wlo, wsum, -100, True, 1.0, g_one, True,
                  np.empty(scratch(c)), r, r + 1, v_one, True, 0.0, 0.0)
        np.testing.assert_array_equal(g_all.view(np.int32), g_one.view(np.int32))
        np.testing.assert_array_equal(v_all.view(np.int64), v_one.view(np.int64))
        assert v_all[5] == 0.0 and not g_all[5].any()
        _assert_public_bits(x, y, {"weight": w, "label_smoothing": eps, "z_loss": z}, v_all,
                            g_all)

        @njit
        def formula(x, y, t, w, eps, z, wlo, wsum, g, buf):
            v = np.zeros(x.shape[0])
            for r in range(x.shape[0]):
                if y[r] != -100:
                    v[r] = cross_entropy(x[r], y[r], t[r], w, eps, z, wlo, wsum, 1.0, g[r],
                                         True, buf)
            return v

        f64_g = np.zeros_like(x)
        f64_v = formula(x, y, t, w, eps, z, wlo, wsum, f64_g, np.empty(scratch_size(c)))
        for r in (11, 12, 13):
            np.testing.assert_array_equal(g_all[r].view(np.int32), f64_g[r].view(np.int32))
            assert f64_v[r] == v_all[r] or (np.isnan(f64_v[r]) and np.isnan(v_all[r]))
        assert np.count_nonzero(g_all.view(np.int32) != f64_g.view(np.int32)) > 0
