"""Box regression losses: value and gradient of one (predicted, target) box pair.

Every formula has the signature
``f(px1, py1, px2, py2, tx1, ty1, tx2, ty2, data) -> (value, g0, g1, g2, g3)``
on float64 coordinates, where ``g`` is the gradient of the value with respect
to the predicted ``(px1, py1, px2, py2)`` and ``data`` is an element of the
input array: its type chooses the evaluation at compile time (``exact_for``).
Boxes are ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2`` (checked by
``fastloss.boxes``).

Two evaluations of one set of stable forms (below):
- plain float64 arithmetic (``_iou_plain`` ... ``_ciou_plain``; CIoU's
  arctangent is the double-double ``_atan2`` rounded once, not libm's), a
  few ulp of float64: pairs with a non-finite coordinate;
- finite pairs, float32 and float64 data (float32 until this stop took the
  plain path; its branches kept the CPU loop scalar on overlapping boxes):
  the same forms in compensated double-double arithmetic
  (``_iou_dd`` ... ``_angle_dd``; section "float64 data" below): the exact
  coordinate differences (TwoSum), products with their fma errors, sums with
  their TwoSum errors, quotients with their residuals, each result rounded
  once, so values and gradients are within 1/2 ulp + ~2^-90 relative of the
  exact ones (times the condition number for a gradient component whose
  quotient-rule parts cancel). The plain float64 chain of 10 to 20 roundings
  reached 7 ulp. Non-finite coordinates take the plain path.

Notation (x axis; the y axis is the same with heights):
  pw = px2 - px1, tw = tx2 - tx1                widths
  ox = min(px2, tx2) - max(px1, tx1), iw = max(ox, 0)  intersection width
  cw = max(px2, tx2) - min(px1, tx1)            enclosing width
  dxp = max(px2 - tx2, 0) + max(tx1 - px1, 0)   = cw - tw (= pw - iw where ox >= 0)
  dxt = max(tx2 - px2, 0) + max(px1 - tx1, 0)   = cw - pw (= tw - iw where ox >= 0)
  I = iw ih, Ap = pw ph, At = tw th, U = Ap + At - I, C = cw ch.

Stable forms. The differences that cancel in the textbook formulas are
written as sums of non-negative terms built from coordinate differences
(each rounded once), so nothing cancels:
  U - I = dxp ph + iw dyp + dxt th + iw dyt                (boxes overlap)
  C - U = dxt dyp + dxp dyt                                (boxes overlap)
  C - U = pw dyt + tw dyp + gx ch, gx = -ox >= 0           (no overlap in x)
  ph - th = fl(ph) - fl(th) + both roundings (TwoSum)      (not dyp - dyt)
  2 rho_x = (px1 - tx1) + (px2 - tx2)                      (centre distance)
  atan(wt/ht) - atan(w/h) = atan2(wt h - w ht, ht h + wt w)
  (the numerator with the rounding errors of w, h, wt, ht and of both
  products added back where it cancels: _angle_numerator)
so every value is accurate relative to itself, and the gradient of 1 - IoU,
e.g. d/dpx1 = ih (At + dxp ph) / U^2 where px1 is the intersection's left
edge, has no cancellation either. (The float64-data path forms the same
quantities from exact pairs, so it needs neither the TwoSum corrections nor
_angle_numerator: ph - th and wt h - w ht are exact to O(u^2) there.)

Degenerate geometry (LOSSES.md "Boxes"): where the union U is 0 (both boxes
have zero area), IoU is 1 if the boxes are identical and 0 otherwise, and the
gradient of the IoU term is 0; (C - U)/C is 0 where C = 0; rho^2/c^2 is 0
where c = 0 (identical point boxes); the angle of a box with w = h = 0 is
atan2(0, 0) = 0, and its angle gradient is 0. No case gives inf or NaN for
finite input; NaN in any coordinate gives NaN value and gradient.

Non-differentiable points (min/max switches, touching boxes): each gradient
component k is the right derivative lim_{t -> 0+} (L(p + t e_k) - L(p)) / t,
i.e. the derivative seen when that coordinate moves up. For example, with
px1 == tx1 the predicted left edge counts as the intersection's left edge and
not as the enclosing box's; with px2 == tx2 it counts as the enclosing box's
right edge and not the intersection's; boxes that touch (ox == 0) give the
gradient of the side where px2 grows into the target.

Range: float32 input is safe everywhere; float64 coordinates and their
differences within about 1e+-75 (degree-4 intermediates stay finite). The
drivers scale every pair so that its largest coordinate is in [1, 2)
(``box_scale``); the double-double accuracy of float64 data then holds while
the pair's sides are above ~1e-68 of it (the error terms of degree-4
intermediates stay normal), and degrades gracefully to plain float64 below.

No libm call and no branch that LLVM cannot turn into selects: the CPU
driver (``fastloss.cpu.boxes``) inlines the formulas (``INLINE``: the
float64-data evaluations of finite pairs, ``BOX_EXACT``, and the plain ones,
``BOX_PLAIN``) into a loop that it vectorizes; ``box_scale`` takes the
exponent from the bits.

References: Rezatofighi et al., "Generalized Intersection over Union", CVPR
2019 (IoU and GIoU losses); Zheng et al., "Distance-IoU Loss: Faster and
Better Learning for Bounding Box Regression", AAAI 2020 (DIoU and CIoU).
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastloss._config import JIT
from fastloss.math._intrin import bits_f64, f64_bits, fma
from fastloss.reduce import two_sum as _two_sum

#: options of the helpers that the CPU box driver needs inlined into its
#: loop (LLVM's alwaysinline; its inliner's size limit would otherwise keep
#: them as calls, and a loop with a call does not vectorize)
INLINE = {**JIT, "forceinline": True}

_NAN5 = (math.nan, math.nan, math.nan, math.nan, math.nan)
_FOUR_PI2 = 4.0 / (math.pi * math.pi)


@njit(**JIT)
def _pos(a):
    """max(a, 0) for non-NaN a."""
    return a if a > 0.0 else 0.0


@njit(**JIT)
def _has_nan(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    return (px1 != px1 or py1 != py1 or px2 != px2 or py2 != py2
            or tx1 != tx1 or ty1 != ty1 or tx2 != tx2 or ty2 != ty2)


@njit(**JIT)
def _iou_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """(1 - IoU, its gradient g0..g3, U, I, C - U, C, cw, ch) of one box pair
    (see the module doc for the stable forms and conventions)."""
    pw = px2 - px1
    ph = py2 - py1
    tw = tx2 - tx1
    th = ty2 - ty1
    ox = min(px2, tx2) - max(px1, tx1)
    oy = min(py2, ty2) - max(py1, ty1)
    iw = _pos(ox)
    ih = _pos(oy)
    cw = max(px2, tx2) - min(px1, tx1)
    ch = max(py2, ty2) - min(py1, ty1)
    dxp = _pos(px2 - tx2) + _pos(tx1 - px1)
    dxt = _pos(tx2 - px2) + _pos(px1 - tx1)
    dyp = _pos(py2 - ty2) + _pos(ty1 - py1)
    dyt = _pos(ty2 - py2) + _pos(py1 - ty1)
    ap = pw * ph
    at = tw * th
    inter = iw * ih
    if ox > 0.0 and oy > 0.0:
        u_minus_i = (dxp * ph + iw * dyp) + (dxt * th + iw * dyt)
        c_minus_u = dxt * dyp + dxp * dyt
    else:
        u_minus_i = ap + at
        if ox <= 0.0:
            c_minus_u = pw * dyt + tw * dyp + (-ox) * ch
        else:
            c_minus_u = ph * dxt + th * dxp + (-oy) * cw
    union = inter + u_minus_i
    c = cw * ch
    if union == 0.0:
        same = px1 == tx1 and py1 == ty1 and px2 == tx2 and py2 == ty2
        return (0.0 if same else 1.0), 0.0, 0.0, 0.0, 0.0, union, inter, c_minus_u, c, cw, ch
    loss = u_minus_i / union
    # d(1 - I/U) = (I dAp - dI (U + I)) / U^2, with U + I - iw ph = At + dxp ph
    kx = ih * (at + dxp * ph)
    ky = iw * (at + dyp * pw)
    g0 = kx if (ox > 0.0 and px1 >= tx1) else -inter * ph
    g2 = -kx if (ox >= 0.0 and px2 < tx2) else inter * ph
    g1 = ky if (oy > 0.0 and py1 >= ty1) else -inter * pw
    g3 = -ky if (oy >= 0.0 and py2 < ty2) else inter * pw
    g0 = g0 / union / union
    g1 = g1 / union / union
    g2 = g2 / union / union
    g3 = g3 / union / union
    return loss, g0, g1, g2, g3, union, inter, c_minus_u, c, cw, ch


@njit(**INLINE)
def _iou_plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """IoU loss, plain float64 evaluation (pairs with a non-finite coordinate: see the
    module doc)."""
    if _has_nan(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _NAN5
    loss, g0, g1, g2, g3, _, _, _, _, _, _ = _iou_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    return loss, g0, g1, g2, g3


@njit(**JIT)
def _two_diff_err(a, b, s):
    """The rounding error of s = fl(a - b): a - b = s + err exactly (Knuth's TwoSum)."""
    bb = s - a
    return (a - (s - bb)) - (b + bb)


@njit(**INLINE)
def _giou_plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """GIoU loss, plain float64 evaluation (pairs with a non-finite coordinate: see the
    module doc)."""
    if _has_nan(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _NAN5
    loss, g0, g1, g2, g3, union, _, c_minus_u, c, cw, ch = _iou_part(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    if c == 0.0:
        return loss, g0, g1, g2, g3
    ph = py2 - py1
    pw = px2 - px1
    oy = min(py2, ty2) - max(py1, ty1)
    ox = min(px2, tx2) - max(px1, tx1)
    # pred height / width outside the intersection (ph - ih, pw - iw)
    ph_out = _pos(py2 - ty2) + _pos(ty1 - py1) if oy > 0.0 else ph
    pw_out = _pos(px2 - tx2) + _pos(tx1 - px1) if ox > 0.0 else pw
    # d/dpx1 = (U/C) dC/C - dU/C, dC = -ch [px1 < tx1], dU = -ph + ih [px1 is the
    # intersection's left edge]; where px1 < tx1 this is ch K / C^2 with
    # K = ph cw - U, written as
    #   dxt dyp - tw dyt (overlap), tw (ph - th) + ph gx (gap gx = -ox >= 0 in x),
    #   dxt (ph - th) - iw th (gap in y only)
    dxt = _pos(tx2 - px2) + _pos(px1 - tx1)
    dyt = _pos(ty2 - py2) + _pos(py1 - ty1)
    dxp = _pos(px2 - tx2) + _pos(tx1 - px1)
    dyp = _pos(py2 - ty2) + _pos(ty1 - py1)
    tw = tx2 - tx1
    th = ty2 - ty1
    if ox > 0.0 and oy > 0.0:
        kx = dxt * dyp - tw * dyt
        ky = dyt * dxp - th * dxt
    else:
        # ph - th (= dyp - dyt) from the heights and their rounding errors:
        # dyp and dyt grow with the gap between the boxes, and dyp - dyt
        # lost that many bits (d/dpx1 of boxes 1e6 apart in y, heights 1.2
        # and 1.2000001, was off by 3e5 ulp at condition 7)
        dh = (ph - th) + (_two_diff_err(py2, py1, ph) - _two_diff_err(ty2, ty1, th))
        dw = (pw - tw) + (_two_diff_err(px2, px1, pw) - _two_diff_err(tx2, tx1, tw))
        if ox <= 0.0:
            kx = tw * dh + ph * (-ox)
        else:
            kx = dxt * dh - ox * th
        if oy <= 0.0:
            ky = th * dw + pw * (-oy)
        else:
            ky = dyt * dw - oy * tw
    if px1 < tx1:
        h0 = kx / cw / c
    else:
        h0 = (ph_out if ox > 0.0 else ph) / c
    if px2 >= tx2:
        h2 = -kx / cw / c if cw > 0.0 else 0.0
    else:
        h2 = -(ph_out if ox >= 0.0 else ph) / c
    if py1 < ty1:
        h1 = ky / ch / c
    else:
        h1 = (pw_out if oy > 0.0 else pw) / c
    if py2 >= ty2:
        h3 = -ky / ch / c if ch > 0.0 else 0.0
    else:
        h3 = -(pw_out if oy >= 0.0 else pw) / c
    pen = 1.0 if union == 0.0 else c_minus_u / c
    return loss + pen, g0 + h0, g1 + h1, g2 + h2, g3 + h3


#: Veltkamp's splitting constant 2^27 + 1 (Dekker's exact product)
_SPLIT = 134217729.0
#: relative size |wt h - w ht| / (wt h + w ht) under which CIoU's angle
#: numerator is evaluated with compensation (_angle_numerator)
_ANGLE_CANCEL = 2.0**-10


@njit(**JIT)
def _two_prod_err(a, b, p):
    """The rounding error of p = fl(a b): a b = p + err exactly (Dekker's
    product, Veltkamp splitting; no fma, so the same on every target). Exact
    for |a|, |b| << 2^996 and a b far from underflow (the drivers' box_scale
    brings coordinates into [1, 2))."""
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(**JIT)
def _angle_numerator(px1, py1, px2, py2, tx1, ty1, tx2, ty2, w, h, wt, ht):
    """wt h - w ht, the numerator of CIoU's angle difference, for widths and
    heights w = fl(px2 - px1), ... that are themselves rounded.

    Plain wt h - w ht has an absolute error of a few u (wt h + w ht) (the
    rounding of the four differences and of the two products), which is all
    of it where the aspect ratios agree to within that: e.g. the target
    [1000, 1000, 3.02e23, 3.02e23] and the prediction [3.02e23, 1000,
    6.04e23, 3.02e23] (S = 3.02e23 = 2^78; both heights S - 1000 round to
    S) gave 0 for the exact -1000 (S - 1000), and so a zero CIoU gradient
    component (d/dpy1) for an exact 2.46e-87. Where the products nearly cancel
    (|wt h - w ht| <= _ANGLE_CANCEL (wt h + w ht)) the numerator is formed
    from the exact differences (hi + lo, TwoSum) and exact products (hi + lo,
    Dekker): relative error ~u, until it is ~u^2 (wt h + w ht). Elsewhere the
    plain form is within ~3 / _ANGLE_CANCEL ulp, i.e. within about 3 ulp
    times the condition number (wt h + w ht) / |wt h - w ht| of the
    difference with respect to the coordinates."""
    a = wt * h
    b = w * ht
    n = a - b
    if not (abs(n) <= _ANGLE_CANCEL * (a + b)):
        return n
    w0 = _two_diff_err(px2, px1, w)
    h0 = _two_diff_err(py2, py1, h)
    wt0 = _two_diff_err(tx2, tx1, wt)
    ht0 = _two_diff_err(ty2, ty1, ht)
    # n = a - b is exact here (Sterbenz: a and b within a factor of 2)
    e = _two_prod_err(wt, h, a) - _two_prod_err(w, ht, b)
    cross = (wt * h0 + wt0 * h) - (w * ht0 + w0 * ht)
    return n + (e + (cross + (wt0 * h0 - w0 * ht0)))


@njit(**JIT)
def _distance_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2, cw, ch):
    """(rho^2/c^2, its gradient): rho the distance of the box centres, c the
    diagonal of the enclosing box; 0 where c = 0."""
    # 2 rho_x = (px1 - tx1) + (px2 - tx2), with the rounding errors of both
    # differences added back (TwoSum), so concentric boxes give exactly 0
    a = px1 - tx1
    a_err = _two_diff_err(px1, tx1, a)
    b = px2 - tx2
    b_err = _two_diff_err(px2, tx2, b)
    rx = 0.5 * ((a + b) + (a_err + b_err))
    a = py1 - ty1
    a_err = _two_diff_err(py1, ty1, a)
    b = py2 - ty2
    b_err = _two_diff_err(py2, ty2, b)
    ry = 0.5 * ((a + b) + (a_err + b_err))
    c2 = cw * cw + ch * ch
    if c2 == 0.0:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    r = (rx * rx + ry * ry) / c2
    # d(rho^2) = rho_x d(px1 + px2) ..., d(c^2) = 2 cw dcw + 2 ch dch
    k = 2.0 * r
    d0 = (rx + k * cw * (1.0 if px1 < tx1 else 0.0)) / c2
    d2 = (rx - k * cw * (1.0 if px2 >= tx2 else 0.0)) / c2
    d1 = (ry + k * ch * (1.0 if py1 < ty1 else 0.0)) / c2
    d3 = (ry - k * ch * (1.0 if py2 >= ty2 else 0.0)) / c2
    return r, d0, d1, d2, d3


@njit(**INLINE)
def _diou_plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """DIoU loss, plain float64 evaluation (pairs with a non-finite coordinate: see the
    module doc)."""
    if _has_nan(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _NAN5
    loss, g0, g1, g2, g3, _, _, _, _, cw, ch = _iou_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    r, d0, d1, d2, d3 = _distance_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2, cw, ch)
    return loss + r, g0 + d0, g1 + d1, g2 + d2, g3 + d3


@njit(**INLINE)
def _ciou_plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """CIoU loss, plain float64 evaluation (pairs with a non-finite coordinate: see the
    module doc)."""
    if _has_nan(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _NAN5
    loss, g0, g1, g2, g3, _, _, _, _, cw, ch = _iou_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    r, d0, d1, d2, d3 = _distance_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2, cw, ch)
    w = px2 - px1
    h = py2 - py1
    wt = tx2 - tx1
    ht = ty2 - ty1
    # atan2(wt, ht) - atan2(w, h) where a box has w = h = 0 (its atan2 is 0);
    # one arctangent, of selected arguments: _atan2's double-double one,
    # rounded (no libm call, so the CPU driver's loop vectorizes)
    pdeg = w == 0.0 and h == 0.0
    tdeg = wt == 0.0 and ht == 0.0
    num = _angle_numerator(px1, py1, px2, py2, tx1, ty1, tx2, ty2, w, h, wt, ht)
    y = wt if pdeg else (w if tdeg else num)
    x = ht if pdeg else (h if tdeg else ht * h + wt * w)
    th = _atan2((y, 0.0), (x, 0.0))[0]
    delta = -th if (tdeg and not pdeg) else th
    v = _FOUR_PI2 * delta * delta
    den = loss + v
    alpha = v / den if den > 0.0 else 0.0
    q = w * w + h * h
    if q > 0.0 and alpha != 0.0:
        # alpha dv/dpx1 = alpha (8/pi^2) Delta h / q, ...
        s = alpha * (2.0 * _FOUR_PI2) * delta
        sh = s * (h / q)
        sw = s * (w / q)
    else:
        sh = 0.0
        sw = 0.0
    return (loss + r + alpha * v, g0 + d0 + sh, g1 + d1 - sw, g2 + d2 - sh, g3 + d3 + sw)


# --------------------------------------------------------------------------
# float64 data: compensated (double-double) evaluation
#
# A pair (h, l) stands for the number h + l: h the value computed in plain
# float64, l the first-order sum of the rounding errors made on the way,
# each captured exactly by an error-free transformation (TwoSum for sums,
# fma for products, the fma residual for quotients) and added up in float64
# (Ogita, Rump & Oishi, "Accurate sum and dot product", SIAM J. Sci. Comput.
# 26, 2005; Graillat, Langlois & Louvet, "Algorithms for accurate, validated
# and fast polynomial evaluation", Japan J. Indust. Appl. Math. 26, 2009).
# Pairs are not renormalized after every operation (|l| may grow to a few u
# |h|, u = 2^-53): what each operation neglects is second order, O(u^2)
# relative to its operands, and the few places that use h alone as an
# approximation renormalize first (``_renorm``).
#
# The four coordinate differences of every side are exact pairs, and the
# chain that follows (areas, union, enclosing box, their reciprocals and
# squares, the quotient-rule terms, their sums) is carried in pairs. Every
# operand of the chain is a sum or product of non-negative terms, except the
# differences that the oracle counts in the condition number (the
# quotient-rule parts of the gradients, the numerator of CIoU's angle),
# where TwoSum keeps the cancellation exact and only the O(u^2) terms of the
# operands remain. So the value and every gradient component reach the final
# rounding with a relative error of O(100 u^2) (times the condition number
# for the components) and are rounded once (h + l): within 1/2 ulp + about
# 2^-90 relative of the exact value, i.e. correctly rounded but for ties
# that close. CIoU's angle difference is computed the same way
# (``_atan2``: a table and a short series, no libm). fma is LLVM's
# llvm.fma: an FMA instruction on x86-64 with FMA3 and on every CUDA GPU.


def exact_for(data):  # pragma: no cover - replaced by the overload
    """True (a compile-time constant) when ``data``, an element of the input
    array, is float32 or float64: the formulas then take the double-double
    path for finite pairs. float32 results are its float64 result rounded
    once more (within 0.5 ULP + 2^-29 relative of exact). The path is
    branch-free, so the CPU driver vectorizes it; the plain float64 formula
    that float32 data used before has branches that did not vectorize on
    overlapping boxes (float32 ciou took twice float64's time on 2^20 pairs)."""
    raise NotImplementedError


#: the data types whose finite pairs take the double-double path
#: (``exact_for``; the CPU driver's ``box_fast`` follows the same rule)
EXACT_TYPES = (types.float32, types.float64)


@overload(exact_for, jit_options=JIT)
def _exact_for(data):
    if data in EXACT_TYPES:
        return lambda data: True
    return lambda data: False


_Z = (0.0, 0.0)
#: 4/pi^2 as a pair (hi = fl(4/pi^2) = _FOUR_PI2)
_K = (0.4052847345693511, -1.5865159517757766e-17)


@njit(**JIT)
def _d(a, b):
    """a - b as an exact pair."""
    return _two_sum(a, -b)


@njit(**JIT)
def _dpos(a, b):
    """max(a - b, 0) as an exact pair."""
    return _two_sum(a, -b) if a > b else _Z


@njit(**JIT)
def _neg(a):
    return -a[0], -a[1]


@njit(**JIT)
def _renorm(a):
    """The same number with h = fl(h + l) (for the places that use h alone:
    after a cancellation l may exceed h)."""
    return _two_sum(a[0], a[1])


@njit(**JIT)
def _add(a, b):
    """a + b: the heads' TwoSum, the tails added; error u |la + lb| =
    O(u^2) (|a| + |b|), also where a and b cancel."""
    s, e = _two_sum(a[0], b[0])
    return s, e + (a[1] + b[1])


@njit(**JIT)
def _sub(a, b):
    return _add(a, _neg(b))


@njit(**JIT)
def _mul(a, b):
    """a b: the heads' product and its exact error (fma) plus the cross
    terms; error O(u^2) |a b| (la lb and the roundings of the tail terms)."""
    p = a[0] * b[0]
    return p, fma(a[0], b[0], -p) + fma(a[0], b[1], a[1] * b[0])


@njit(**JIT)
def _scale(a, x):
    """a x for a double x; error O(u^2) |a x|."""
    p = a[0] * x
    return p, fma(a[0], x, -p) + a[1] * x


@njit(**JIT)
def _recip(b):
    """1 / b for b != 0 with |lb| << |hb| (a sum of non-negative terms):
    r = fl(1/hb) plus r (1 - r hb - r lb), the residual exact by fma;
    error O(u^2) / |b|."""
    r = 1.0 / b[0]
    return r, (fma(-r, b[0], 1.0) - r * b[1]) * r


@njit(**JIT)
def _div(a, b):
    """a / b for b != 0 with |lb| << |hb|: q = ha r, r = fl(1/hb) (within
    2 ulp of ha/hb), plus r (ha - q hb + la - q lb), the residual ha - q hb
    by fma (a few ulp of ha, so its rounding is O(u^2) |ha|); linear in a,
    so a numerator whose heads cancelled is fine; error O(u^2) |a/b|. One
    division, not two: the chains of CIoU's angle term are latency-bound."""
    r = 1.0 / b[0]
    q = a[0] * r
    return q, (fma(-q, b[0], a[0]) + (a[1] - q * b[1])) * r


#: atan(k/64), k = 0..64, as pairs (hi, lo): the table of ``_atan_ratio``
#: (arrays: compiled code reads them as constant data; a tuple indexed at
#: run time would be copied to the stack on every call)
_ATAN_HI = np.array((
    0.0, 0.015623728620476831, 0.031239833430268277, 0.046840712915969654, 0.06241880999595735,
    0.0779666338315423, 0.09347678115858947, 0.10894195698986579, 0.12435499454676144,
    0.13970887428916365, 0.15499674192394097, 0.1702119252854744, 0.18534794999569476,
    0.2003985538258785, 0.21535769969773805, 0.23021958727684372, 0.24497866312686414,
    0.2596296294082575, 0.2741674511196588, 0.2885873618940774, 0.3028848683749714,
    0.31705575320914703, 0.3310960767041321, 0.34500217720710513, 0.35877067027057225,
    0.3723984466767542, 0.38588266939807375, 0.39922076957525254, 0.4124104415973873,
    0.42544963737004227, 0.43833655985795783, 0.4510696559885235, 0.4636476090008061,
    0.4760693303227612, 0.48833395105640554, 0.5004408131472942, 0.5123894603107377,
    0.5241796287829132, 0.5358112379604637, 0.5472843809874369, 0.5585993153435624,
    0.5697564534829784, 0.5807563535676704, 0.5915997103351114, 0.6022873461349642,
    0.6128202021652414, 0.6231993299340659, 0.6334258829691446, 0.6435011087932844,
    0.6534263411807619, 0.6632029927060933, 0.6728325475937632, 0.6823165548747481,
    0.6916566218531999, 0.7008544078844502, 0.7099116184635249, 0.7188299996216245,
    0.7276113326265107, 0.7362574289814281, 0.7447701257160751, 0.7531512809621944,
    0.7614027698055784, 0.7695264804056583, 0.7775243103733478, 0.7853981633974483,
))
_ATAN_LO = np.array((
    0.0, -4.913600136566304e-19, -1.188442711587748e-18, -1.655677442254952e-19,
    -1.5490756308295046e-18, 5.804551873143357e-18, -6.2844725995420954e-18,
    6.8267122072409585e-18, -3.1253241424539383e-18, -2.9579864247315813e-18,
    9.585415594114324e-18, -3.541164079802125e-18, 4.180692268843079e-18,
    3.1399542871844493e-18, 4.738160130078733e-19, 1.2313404529142703e-17,
    1.0698755618734451e-17, 1.9238754924615304e-17, 8.261353575163773e-18,
    -1.428369957377257e-17, -1.1010827903001369e-17, -1.893928924292642e-17,
    -7.952610375793799e-18, -2.2938804755578304e-17, -2.4623815582638635e-17,
    1.9612311504845653e-17, 2.378822732491941e-17, 2.246598105617042e-17,
    -1.587652227770689e-17, 2.3315530741892885e-17, -2.494277030626541e-17,
    -2.2703795229420475e-17, 2.2698777452961687e-17, 1.4654487332256713e-17,
    -1.1373236189329585e-17, -4.7181675085518756e-17, -2.5462781472855804e-17,
    5.520094119641666e-18, -4.0637956834825575e-18, 4.923709671396255e-17,
    -5.4556305485916264e-18, 1.2255062085054184e-17, -1.441464378193067e-17,
    4.920495453686772e-17, 2.950430737228402e-17, -3.1552061848586226e-17,
    2.672403885140095e-17, -2.7290767436015276e-17, 1.5834785051444286e-17,
    3.5800634857340095e-17, -3.076054864429649e-17, -1.899315009714705e-17,
    6.943223671560008e-18, -8.117151192285796e-18, -1.987626234335816e-17,
    -4.597166450584887e-17, -2.1478388444456983e-17, 2.569325697391839e-18,
    3.473937648299457e-17, 3.708315849135547e-17, -2.4256934659182068e-17,
    9.850030332752822e-18, -3.704991905602721e-17, -2.6676490951944502e-17,
    3.061616997868383e-17,
))
_HALF_PI = (1.5707963267948966, 6.123233995736766e-17)


@njit(**INLINE)
def _atan_ratio(a, b):
    """atan(a/b) of pairs with 0 <= a <= b (a a little above b is fine), b > 0,
    as a pair: atan(c) from the table at the nearest c = k/64 to a/b, plus
    atan(r), r = (a - c b)/(b + c a) (|r| <= 1/128; the numerator's
    cancellation is exact but for O(u^2) terms, ``_add``), whose series
    r (1 - r^2/3 + r^4/5 - r^6/7 + r^8/9) is exact to r^11/11 < 2^-77 |r|;
    the bracket's tail (< 2^-15) is needed to double precision only. Relative
    error O(u^2), with no libm call: the same on every target."""
    q = a[0] / b[0] * 64.0 + 0.5
    # the table index; where this is evaluated for a lane that discards it
    # (a vectorized caller's 0/0, inf or NaN) it is kept in range
    k = int(q if (q >= 0.0 and q < 65.0) else 0.0)
    c = k / 64.0
    r = _renorm(_div(_sub(a, _scale(b, c)), _add(b, _scale(a, c))))
    r2 = r[0] * r[0]
    tail = r2 * (-1.0 / 3.0 + r2 * (1.0 / 5.0 + r2 * (-1.0 / 7.0 + r2 * (1.0 / 9.0))))
    return _add((_ATAN_HI[k], _ATAN_LO[k]), _add(r, (r[0] * tail, 0.0)))


@njit(**INLINE)
def _atan2(y, x):
    """atan2(y, x) of pairs with x >= 0 (all CIoU needs: its denominators
    ht h + wt w and heights are >= 0), as a pair to O(u^2) relative:
    sign(y) atan(|y|/x) where |y| <= x, sign(y) (pi/2 - atan(x/|y|))
    elsewhere (``_atan_ratio``); 0 at y = x = 0."""
    y = _renorm(y)
    a = y if y[0] >= 0.0 else _neg(y)
    # one _atan_ratio, of selected arguments (straight-line code that LLVM
    # inlines and vectorizes: the CPU box driver)
    swap = a[0] > x[0]
    th = _atan_ratio(x if swap else a, a if swap else x)
    th = _renorm(_sub(_HALF_PI, th) if swap else th)
    th = th if y[0] >= 0.0 else _neg(th)
    return _Z if (a[0] == 0.0 and x[0] == 0.0) else th


@njit(**JIT)
def box_finite(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """All eight coordinates finite (False for NaN)."""
    m = max(max(max(abs(px1), abs(py1)), max(abs(px2), abs(py2))),
            max(max(abs(tx1), abs(ty1)), max(abs(tx2), abs(ty2))))
    return m < math.inf


@njit(**JIT)
def _sides_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """The exact pairs of the module doc's notation: (pw, ph, tw, th, iw, ih,
    cw, ch, dxp, dyp, dxt, dyt) (iw, ih are 0 where the boxes do not
    overlap; dxp = max(px2 - tx2, 0) + max(tx1 - px1, 0), a sum of two
    non-negative exact pairs, is accurate to O(u^2), likewise dyp, dxt,
    dyt)."""
    pw = _d(px2, px1)
    ph = _d(py2, py1)
    tw = _d(tx2, tx1)
    th = _d(ty2, ty1)
    iw = _dpos(min(px2, tx2), max(px1, tx1))
    ih = _dpos(min(py2, ty2), max(py1, ty1))
    cw = _d(max(px2, tx2), min(px1, tx1))
    ch = _d(max(py2, ty2), min(py1, ty1))
    dxp = _add(_dpos(px2, tx2), _dpos(tx1, px1))
    dyp = _add(_dpos(py2, ty2), _dpos(ty1, py1))
    dxt = _add(_dpos(tx2, px2), _dpos(px1, tx1))
    dyt = _add(_dpos(ty2, py2), _dpos(py1, ty1))
    return pw, ph, tw, th, iw, ih, cw, ch, dxp, dyp, dxt, dyt


@njit(**JIT)
def _iou_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides):
    """(1 - IoU, g0, g1, g2, g3, U) as pairs, given ``sides`` (``_sides_dd``):
    ``_iou_part`` in double-double (the same stable forms and conventions)."""
    pw, ph, tw, th, iw, ih, cw, ch, dxp, dyp, dxt, dyt = sides
    ox = min(px2, tx2) - max(px1, tx1)  # its sign is that of the exact difference
    oy = min(py2, ty2) - max(py1, ty1)
    at = _mul(tw, th)
    inter = _mul(iw, ih)
    if ox > 0.0 and oy > 0.0:
        u_minus_i = _add(_add(_mul(dxp, ph), _mul(iw, dyp)), _add(_mul(dxt, th), _mul(iw, dyt)))
    else:
        u_minus_i = _add(_mul(pw, ph), at)
    union = _add(inter, u_minus_i)
    if union[0] == 0.0:
        same = px1 == tx1 and py1 == ty1 and px2 == tx2 and py2 == ty2
        return (0.0 if same else 1.0, 0.0), _Z, _Z, _Z, _Z, union
    inv = _recip(union)
    loss = _mul(u_minus_i, inv)
    inv2 = _mul(inv, inv)
    kx = _mul(ih, _add(at, _mul(dxp, ph)))
    ky = _mul(iw, _add(at, _mul(dyp, pw)))
    iph = _mul(inter, ph)
    ipw = _mul(inter, pw)
    g0 = kx if (ox > 0.0 and px1 >= tx1) else _neg(iph)
    g2 = _neg(kx) if (ox >= 0.0 and px2 < tx2) else iph
    g1 = ky if (oy > 0.0 and py1 >= ty1) else _neg(ipw)
    g3 = _neg(ky) if (oy >= 0.0 and py2 < ty2) else ipw
    return loss, _mul(g0, inv2), _mul(g1, inv2), _mul(g2, inv2), _mul(g3, inv2), union


@njit(**JIT)
def _giou_penalty_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides, union):
    """((C - U)/C and its gradient h0..h3) as pairs, given ``sides`` and U:
    the stable forms of ``_giou_plain`` in double-double (C - U a sum of
    non-negative areas; d/dpx1 = ch K / C^2 = K / (cw C) where px1 < tx1,
    ...); all zero where C = 0."""
    pw, ph, tw, th, iw, ih, cw, ch, dxp, dyp, dxt, dyt = sides
    ox = min(px2, tx2) - max(px1, tx1)
    oy = min(py2, ty2) - max(py1, ty1)
    c = _mul(cw, ch)
    if c[0] == 0.0:
        return _Z, _Z, _Z, _Z, _Z
    inv = _recip(c)
    if ox > 0.0 and oy > 0.0:
        c_minus_u = _add(_mul(dxt, dyp), _mul(dxp, dyt))
        kx = _sub(_mul(dxt, dyp), _mul(tw, dyt))
        ky = _sub(_mul(dyt, dxp), _mul(th, dxt))
    else:
        gx = _neg(_d(min(px2, tx2), max(px1, tx1)))  # -ox: the gap in x where ox <= 0
        gy = _neg(_d(min(py2, ty2), max(py1, ty1)))
        if ox <= 0.0:
            c_minus_u = _add(_add(_mul(pw, dyt), _mul(tw, dyp)), _mul(gx, ch))
        else:
            c_minus_u = _add(_add(_mul(ph, dxt), _mul(th, dxp)), _mul(gy, cw))
        dh = _sub(ph, th)  # exact pairs: ph - th to O(u^2), however far apart the boxes
        dw = _sub(pw, tw)
        if ox <= 0.0:
            kx = _add(_mul(tw, dh), _mul(ph, gx))
        else:
            kx = _sub(_mul(dxt, dh), _mul(_neg(gx), th))
        if oy <= 0.0:
            ky = _add(_mul(th, dw), _mul(pw, gy))
        else:
            ky = _sub(_mul(dyt, dw), _mul(_neg(gy), tw))
    pen = (1.0, 0.0) if union[0] == 0.0 else _mul(c_minus_u, inv)
    # K / (cw C) = K ch / C^2 (C > 0 here, so cw, ch > 0)
    inv2 = _mul(inv, inv)
    ph_side = dyp if (oy > 0.0 and ox > 0.0) else ph  # pred height outside I (d/dpx1)
    ph_side2 = dyp if (oy > 0.0 and ox >= 0.0) else ph
    pw_side = dxp if (ox > 0.0 and oy > 0.0) else pw
    pw_side2 = dxp if (ox > 0.0 and oy >= 0.0) else pw
    h0 = _mul(_mul(kx, ch), inv2) if px1 < tx1 else _mul(ph_side, inv)
    h2 = _neg(_mul(_mul(kx, ch), inv2)) if px2 >= tx2 else _neg(_mul(ph_side2, inv))
    h1 = _mul(_mul(ky, cw), inv2) if py1 < ty1 else _mul(pw_side, inv)
    h3 = _neg(_mul(_mul(ky, cw), inv2)) if py2 >= ty2 else _neg(_mul(pw_side2, inv))
    return pen, h0, h1, h2, h3


@njit(**JIT)
def _distance_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides):
    """(rho^2/c^2, d0..d3) as pairs, given ``sides``: ``_distance_part`` in
    double-double; rho_x = ((px1 - tx1) + (px2 - tx2))/2 from the two exact
    differences (O(u^2) relative to |px1 - tx1| + |px2 - tx2|)."""
    cw = sides[6]
    ch = sides[7]
    rx = _scale(_add(_d(px1, tx1), _d(px2, tx2)), 0.5)
    ry = _scale(_add(_d(py1, ty1), _d(py2, ty2)), 0.5)
    c2 = _add(_mul(cw, cw), _mul(ch, ch))
    if c2[0] == 0.0:
        return _Z, _Z, _Z, _Z, _Z
    inv = _recip(c2)
    r = _mul(_add(_mul(rx, rx), _mul(ry, ry)), inv)
    kw = _scale(_mul(r, cw), 2.0)
    kh = _scale(_mul(r, ch), 2.0)
    d0 = _mul(_add(rx, kw) if px1 < tx1 else rx, inv)
    d2 = _mul(_sub(rx, kw) if px2 >= tx2 else rx, inv)
    d1 = _mul(_add(ry, kh) if py1 < ty1 else ry, inv)
    d3 = _mul(_sub(ry, kh) if py2 >= ty2 else ry, inv)
    return r, d0, d1, d2, d3


@njit(**JIT)
def _angle_dd(sides, loss):
    """(alpha v, s_h, s_w) as pairs, given 1 - IoU (``loss``): CIoU's
    angle term and its gradient alpha dv/dpx1 = s_h = alpha (8/pi^2) Delta
    h / (w^2 + h^2), alpha dv/dpy1 = -s_w (w for h). Delta =
    atan2(wt h - w ht, ht h + wt w), the numerator from exact sides (products
    and difference to O(u^2): no cancellation is left but the one the
    oracle's condition counts), and a double-double arctangent."""
    w, h, wt, ht = sides[0], sides[1], sides[2], sides[3]
    # atan2(wt, ht) - atan2(w, h) where a box has w = h = 0 (its atan2 is 0):
    # one _atan2 call, of selected arguments
    pdeg = w[0] == 0.0 and h[0] == 0.0
    tdeg = wt[0] == 0.0 and ht[0] == 0.0
    num = _sub(_mul(wt, h), _mul(w, ht))
    den = _add(_mul(ht, h), _mul(wt, w))
    th = _atan2(wt if pdeg else (w if tdeg else num), ht if pdeg else (h if tdeg else den))
    delta = _neg(th) if (tdeg and not pdeg) else th
    v = _mul(_K, _mul(delta, delta))
    den = _add(loss, v)
    alpha = _div(v, den) if den[0] > 0.0 else _Z
    q = _add(_mul(w, w), _mul(h, h))
    if q[0] > 0.0 and alpha[0] != 0.0:
        s = _mul(_scale(_mul(alpha, _K), 2.0), _mul(delta, _recip(q)))
        return _mul(alpha, v), _mul(s, h), _mul(s, w)
    return _mul(alpha, v), _Z, _Z


@njit(**JIT)
def _round5(v, g0, g1, g2, g3):
    """Five pairs, each rounded once to float64 (h + l)."""
    return v[0] + v[1], g0[0] + g0[1], g1[0] + g1[1], g2[0] + g2[1], g3[0] + g3[1]


# the double-double evaluations of the formulas below (finite coordinates);
# the CPU driver calls them directly (BOX_EXACT), in a vectorized loop


@njit(**INLINE)
def _iou_exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    sides = _sides_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    loss, g0, g1, g2, g3, _ = _iou_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides)
    return _round5(loss, g0, g1, g2, g3)


@njit(**INLINE)
def _giou_exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    sides = _sides_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    loss, g0, g1, g2, g3, union = _iou_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides)
    pen, h0, h1, h2, h3 = _giou_penalty_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides, union)
    return _round5(_add(loss, pen), _add(g0, h0), _add(g1, h1), _add(g2, h2), _add(g3, h3))


@njit(**INLINE)
def _diou_exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    sides = _sides_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    loss, g0, g1, g2, g3, _ = _iou_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides)
    r, d0, d1, d2, d3 = _distance_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides)
    return _round5(_add(loss, r), _add(g0, d0), _add(g1, d1), _add(g2, d2), _add(g3, d3))


@njit(**INLINE)
def _ciou_exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    sides = _sides_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    loss, g0, g1, g2, g3, _ = _iou_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides)
    r, d0, d1, d2, d3 = _distance_dd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, sides)
    av, sh, sw = _angle_dd(sides, loss)
    return _round5(_add(_add(loss, r), av), _add(_add(g0, d0), sh), _sub(_add(g1, d1), sw),
                   _sub(_add(g2, d2), sh), _add(_add(g3, d3), sw))


# --------------------------------------------------------------------------
# the formulas


@njit(**JIT)
def iou_loss(px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
    """IoU loss 1 - IoU = (U - I) / U, IoU = |P n T| / |P u T|.

    Gradient with respect to the predicted corners:
    d(1 - I/U) = (I dAp - (U + I) dI) / U^2, written without cancellation as
    ih (At + dxp ph) / U^2 (d/dpx1 where px1 is the intersection's left edge),
    -I ph / U^2 (where it is not), and likewise for the other corners.
    IoU = 1 for identical boxes (also zero-area ones), 0 for other boxes with
    a zero union. Reference: Yu et al., "UnitBox", ACM MM 2016; Rezatofighi
    et al., CVPR 2019."""
    if exact_for(data) and box_finite(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _iou_exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    return _iou_plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2)


@njit(**JIT)
def giou_loss(px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
    """GIoU loss 1 - IoU + (C - U)/C, C the area of the smallest enclosing box
    (Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019).

    (C - U) is a sum of non-negative areas (module doc); the penalty's
    gradient is (U/C) dC/C - dU/C with dU = dAp - dI. (C - U)/C = 0 where
    C = 0, so GIoU of a zero-area box with itself is 0 (torchvision#7746)."""
    if exact_for(data) and box_finite(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _giou_exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    return _giou_plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2)


@njit(**JIT)
def diou_loss(px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
    """DIoU loss 1 - IoU + rho^2/c^2, rho the distance between the box centres
    and c the diagonal of the smallest enclosing box (Zheng et al.,
    "Distance-IoU Loss", AAAI 2020).

    Gradient of the penalty: (d rho^2 - (rho^2/c^2) d c^2) / c^2, with
    d rho^2/dpx1 = d rho^2/dpx2 = rho_x and d c^2 = 2 cw dcw + 2 ch dch."""
    if exact_for(data) and box_finite(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _diou_exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    return _diou_plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2)


@njit(**JIT)
def ciou_loss(px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
    """CIoU loss 1 - IoU + rho^2/c^2 + alpha v, with
    v = (4/pi^2) (atan(wt/ht) - atan(w/h))^2 and alpha = v / (1 - IoU + v)
    (Zheng et al., "Distance-IoU Loss", AAAI 2020).

    alpha is held constant in the gradient, as in the CIoU paper and in
    torchvision's complete_box_iou_loss (alpha is computed under no_grad):
    the gradient is that of DIoU plus alpha dv, with
    dv = -(8/pi^2) Delta d atan(w/h), d atan(w/h) = (h dw - w dh)/(w^2 + h^2).
    The angle difference Delta is atan2(wt h - w ht, ht h + wt w), which does
    not cancel for similar aspect ratios (its numerator is compensated where
    the two products nearly cancel: _angle_numerator; for float64 data it is
    a double-double arctangent of exact products, _angle_dd); atan(w/0) = pi/2, a box with
    w = h = 0 has angle 0 and no angle gradient; alpha = 0 where 1 - IoU + v
    = 0 (identical boxes)."""
    if exact_for(data) and box_finite(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _ciou_exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    return _ciou_plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2)


@njit(**JIT)
def box_scale(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """A power of two s that brings the pair's largest |coordinate| into
    [1, 2) (1 if it is 0, inf or NaN; capped at 2^1000 for subnormal pairs).

    Every box loss is invariant under scaling both boxes (IoU, the enclosing
    box's ratio, rho^2/c^2, the aspect ratios), and scaling by a power of two
    is exact, so the drivers evaluate a formula at (s p, s t) and multiply its
    gradient by s: the same bits for ordinary pairs, and no area or squared
    area that underflows or overflows for boxes of size ~1e-150 or 1e150 (the
    audit found the float64 gradient of 1e-150 boxes infinite)."""
    m = max(max(max(abs(px1), abs(py1)), max(abs(px2), abs(py2))),
            max(max(abs(tx1), abs(ty1)), max(abs(tx2), abs(ty2))))
    # from the exponent bits (no libm frexp/ldexp call: the CPU driver's loop
    # vectorizes): m = f 2^e, f in [0.5, 1), e = E - 1022 for the biased
    # exponent E >= 1 of a normal m; s = 2^min(1 - e, 1000) = 2^min(1023 - E,
    # 1000), also for a subnormal m (E = 0); 2^-1023 (E = 2046) is subnormal
    k = min(1023 - (f64_bits(m) >> 52), 1000)
    s = bits_f64((max(k, -1022) + 1023) << 52)
    s = s * 0.5 if k < -1022 else s
    return s if (m > 0.0 and m < math.inf) else 1.0


#: box formulas in a fixed order: the CPU and CUDA drivers compile a kernel
#: for an index into this tuple (a compile-time literal)
BOX_FORMULAS = (iou_loss, giou_loss, diou_loss, ciou_loss)
#: their double-double evaluations of finite pairs (BOX_FORMULAS[fid] is
#: BOX_EXACT[fid] where ``box_finite`` for data of ``EXACT_TYPES``,
#: BOX_PLAIN[fid] elsewhere)
BOX_EXACT = (_iou_exact, _giou_exact, _diou_exact, _ciou_exact)
#: their plain float64 evaluations (pairs with a non-finite coordinate)
BOX_PLAIN = (_iou_plain, _giou_plain, _diou_plain, _ciou_plain)
