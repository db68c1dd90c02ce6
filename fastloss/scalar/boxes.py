"""Box regression losses: value and gradient of one (predicted, target) box pair.

Every formula has the signature
``f(px1, py1, px2, py2, tx1, ty1, tx2, ty2) -> (value, g0, g1, g2, g3)`` on
float64 scalars, where ``g`` is the gradient of the value with respect to the
predicted ``(px1, py1, px2, py2)``. Boxes are ``(x1, y1, x2, y2)`` with
``x1 <= x2`` and ``y1 <= y2`` (checked by ``fastloss.boxes``).

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
so every value is accurate to a few ULP relative to itself, and the gradient
of 1 - IoU, e.g. d/dpx1 = ih (At + dxp ph) / U^2 where px1 is the
intersection's left edge, has no cancellation either.

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
differences within about 1e+-75 (degree-4 intermediates stay finite).

References: Rezatofighi et al., "Generalized Intersection over Union", CVPR
2019 (IoU and GIoU losses); Zheng et al., "Distance-IoU Loss: Faster and
Better Learning for Bounding Box Regression", AAAI 2020 (DIoU and CIoU).
"""

import math

from numba import njit

from fastloss._config import JIT

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


@njit(**JIT)
def iou_loss(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """IoU loss 1 - IoU = (U - I) / U, IoU = |P n T| / |P u T|.

    Gradient with respect to the predicted corners:
    d(1 - I/U) = (I dAp - (U + I) dI) / U^2, written without cancellation as
    ih (At + dxp ph) / U^2 (d/dpx1 where px1 is the intersection's left edge),
    -I ph / U^2 (where it is not), and likewise for the other corners.
    IoU = 1 for identical boxes (also zero-area ones), 0 for other boxes with
    a zero union. Reference: Yu et al., "UnitBox", ACM MM 2016; Rezatofighi
    et al., CVPR 2019."""
    if _has_nan(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _NAN5
    loss, g0, g1, g2, g3, _, _, _, _, _, _ = _iou_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    return loss, g0, g1, g2, g3


@njit(**JIT)
def _two_diff_err(a, b, s):
    """The rounding error of s = fl(a - b): a - b = s + err exactly (Knuth's TwoSum)."""
    bb = s - a
    return (a - (s - bb)) - (b + bb)


@njit(**JIT)
def giou_loss(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """GIoU loss 1 - IoU + (C - U)/C, C the area of the smallest enclosing box
    (Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019).

    (C - U) is a sum of non-negative areas (module doc); the penalty's
    gradient is (U/C) dC/C - dU/C with dU = dAp - dI. (C - U)/C = 0 where
    C = 0, so GIoU of a zero-area box with itself is 0 (torchvision#7746)."""
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


@njit(**JIT)
def diou_loss(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """DIoU loss 1 - IoU + rho^2/c^2, rho the distance between the box centres
    and c the diagonal of the smallest enclosing box (Zheng et al.,
    "Distance-IoU Loss", AAAI 2020).

    Gradient of the penalty: (d rho^2 - (rho^2/c^2) d c^2) / c^2, with
    d rho^2/dpx1 = d rho^2/dpx2 = rho_x and d c^2 = 2 cw dcw + 2 ch dch."""
    if _has_nan(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _NAN5
    loss, g0, g1, g2, g3, _, _, _, _, cw, ch = _iou_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    r, d0, d1, d2, d3 = _distance_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2, cw, ch)
    return loss + r, g0 + d0, g1 + d1, g2 + d2, g3 + d3


@njit(**JIT)
def ciou_loss(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """CIoU loss 1 - IoU + rho^2/c^2 + alpha v, with
    v = (4/pi^2) (atan(wt/ht) - atan(w/h))^2 and alpha = v / (1 - IoU + v)
    (Zheng et al., "Distance-IoU Loss", AAAI 2020).

    alpha is held constant in the gradient, as in the CIoU paper and in
    torchvision's complete_box_iou_loss (alpha is computed under no_grad):
    the gradient is that of DIoU plus alpha dv, with
    dv = -(8/pi^2) Delta d atan(w/h), d atan(w/h) = (h dw - w dh)/(w^2 + h^2).
    The angle difference Delta is atan2(wt h - w ht, ht h + wt w), which does
    not cancel for similar aspect ratios (its numerator is compensated where
    the two products nearly cancel: _angle_numerator); atan(w/0) = pi/2, a box with
    w = h = 0 has angle 0 and no angle gradient; alpha = 0 where 1 - IoU + v
    = 0 (identical boxes)."""
    if _has_nan(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return _NAN5
    loss, g0, g1, g2, g3, _, _, _, _, cw, ch = _iou_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    r, d0, d1, d2, d3 = _distance_part(px1, py1, px2, py2, tx1, ty1, tx2, ty2, cw, ch)
    w = px2 - px1
    h = py2 - py1
    wt = tx2 - tx1
    ht = ty2 - ty1
    if (w == 0.0 and h == 0.0) or (wt == 0.0 and ht == 0.0):
        delta = math.atan2(wt, ht) - math.atan2(w, h)
    else:
        num = _angle_numerator(px1, py1, px2, py2, tx1, ty1, tx2, ty2, w, h, wt, ht)
        delta = math.atan2(num, ht * h + wt * w)
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
    if not (m > 0.0 and m < math.inf):
        return 1.0
    e = math.frexp(m)[1]  # m = f 2^e, f in [0.5, 1)
    return math.ldexp(1.0, min(1 - e, 1000))


#: box formulas in a fixed order: the CPU and CUDA drivers compile a kernel
#: for an index into this tuple (a compile-time literal)
BOX_FORMULAS = (iou_loss, giou_loss, diou_loss, ciou_loss)
