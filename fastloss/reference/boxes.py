"""mpmath oracle for the box losses: value and gradient of one box pair.

Written independently of ``fastloss.scalar.boxes``: the textbook formulas
(I = iw ih, U = Ap + At - I, C = cw ch, ...) evaluated in mpmath at
increasing precision until two evaluations agree, exact zeros confirmed at a
high precision (``fastloss.reference.elementwise._stable``), and the gradient
by forward-mode automatic differentiation with dual numbers. A fixed
precision is not enough: float64 coordinates span 2^-1074 .. 2^1024, and a
sum of two of them, e.g. the centre (1000 + 1.19e139)/2, needs ~460 bits to
be exact; at the former fixed 400 bits the DIoU gradient of the point box
5.95e138 against [1000, 1000, 1.19e139, 1.19e139] came out 0 instead of
-1.7628851326804976e-276. ``max``/``min`` of two duals
compare (value, derivative) lexicographically, which gives the *right*
derivative lim_{t -> 0+} (L(p + t e_k) - L(p))/t at the points where they
switch: the convention the kernels document.

``condition(name, pred4, target4)`` gives the condition numbers of the value
and of each gradient component (the cancellation ratio of their defining
terms; docs/ACCURACY.md, "Box losses"), which the audit divides errors by.

Conventions (LOSSES.md "Boxes"): IoU = 1 for identical boxes and 0 for other
boxes where U = 0 (gradient 0 there); (C - U)/C = 0 where C = 0;
rho^2/c^2 = 0 where c = 0; atan2(0, 0) = 0 with derivative 0; CIoU's alpha =
v/(1 - IoU + v) is a constant in the gradient (0 where 1 - IoU + v = 0).
"""

from __future__ import annotations

import math

import mpmath

NAMES = ("iou_loss", "giou_loss", "diou_loss", "ciou_loss")


class _D:
    """A dual number v + d eps (one direction)."""

    __slots__ = ("v", "d")

    def __init__(self, v, d=0):
        self.v = mpmath.mpf(v)
        self.d = mpmath.mpf(d)

    def __add__(self, o):
        o = _lift(o)
        return _D(self.v + o.v, self.d + o.d)

    __radd__ = __add__

    def __sub__(self, o):
        o = _lift(o)
        return _D(self.v - o.v, self.d - o.d)

    def __rsub__(self, o):
        return _lift(o) - self

    def __mul__(self, o):
        o = _lift(o)
        return _D(self.v * o.v, self.d * o.v + self.v * o.d)

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = _lift(o)
        q = self.v / o.v
        return _D(q, (self.d - q * o.d) / o.v)


def _lift(x):
    return x if isinstance(x, _D) else _D(x)


def _max(a, b):
    return a if (a.v, a.d) >= (b.v, b.d) else b


def _min(a, b):
    return a if (a.v, a.d) <= (b.v, b.d) else b


def _atan2(y, x):
    r2 = y.v * y.v + x.v * x.v
    if r2 == 0:
        return _D(0)
    return _D(mpmath.atan2(y.v, x.v), (x.v * y.d - y.v * x.d) / r2)


def _inter_union(p, t):
    """(I, U) of two boxes of duals: I = iw ih, U = Ap + At - I."""
    px1, py1, px2, py2 = p
    tx1, ty1, tx2, ty2 = t
    zero = _D(0)
    iw = _max(_min(px2, tx2) - _max(px1, tx1), zero)
    ih = _max(_min(py2, ty2) - _max(py1, ty1), zero)
    inter = iw * ih
    return inter, (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter


def _loss(name, p, t):
    px1, py1, px2, py2 = p
    tx1, ty1, tx2, ty2 = t
    inter, union = _inter_union(p, t)
    if union.v == 0:
        same = all(a.v == b.v for a, b in zip(p, t))
        iou = _D(1 if same else 0)
    else:
        iou = inter / union
    loss = 1 - iou
    if name == "iou_loss":
        return loss
    cw = _max(px2, tx2) - _min(px1, tx1)
    ch = _max(py2, ty2) - _min(py1, ty1)
    if name == "giou_loss":
        c = cw * ch
        return loss if c.v == 0 else loss + (c - union) / c
    c2 = cw * cw + ch * ch
    rx = (px1 + px2) / 2 - (tx1 + tx2) / 2
    ry = (py1 + py2) / 2 - (ty1 + ty2) / 2
    diou = loss if c2.v == 0 else loss + (rx * rx + ry * ry) / c2
    if name == "diou_loss":
        return diou
    if name != "ciou_loss":
        raise ValueError(f"unknown box loss {name!r}")
    ang = _atan2(tx2 - tx1, ty2 - ty1) - _atan2(px2 - px1, py2 - py1)
    v = 4 / mpmath.pi**2 * ang * ang
    den = loss.v + v.v
    alpha = v.v / den if den > 0 else mpmath.mpf(0)
    return diou + alpha * v


def value_and_grad(name, pred4, target4):
    """(value, [d value / d pred_k, k = 0..3]) of box loss ``name`` for one
    pair of boxes (x1, y1, x2, y2), as mpf numbers (right derivatives), at
    increasing precision until two evaluations agree to 30 digits (and exact
    zeros are confirmed at 1200 digits): ``elementwise._stable``."""
    from fastloss.reference.elementwise import _stable

    target = [float(c) for c in target4]
    pred = [float(c) for c in pred4]

    def at_current_precision():
        t = [_D(c) for c in target]
        grads = []
        value = None
        for k in range(4):
            p = [_D(c, 1 if j == k else 0) for j, c in enumerate(pred)]
            out = _loss(name, p, t)
            value = out.v
            grads.append(out.d)
        return (value, *grads)

    r = _stable(at_current_precision)
    return r[0], list(r[1:])


def _terms(name, p, t):
    """The defining terms of box loss ``name`` at the duals ``p`` (one
    direction) and ``t``: ``(value_terms, grad_terms)``, lists of
    ``(term, factor)`` whose terms sum to the value and to the derivative
    along that direction, ``factor`` (>= 1) the term's own relative condition
    with respect to the quantities it is made of (1 for all but CIoU's).

    - 1 - IoU, and its derivative: one term each. 1 - IoU = (U - I)/U and
      its derivative, ih (At + dxp ph) / U^2 or -I ph / U^2 (and likewise
      for the other corners), are products and quotients of sums of
      non-negative coordinate differences: nothing that cancels once the
      differences are formed.
    - (C - U)/C = 1 - U/C (GIoU): a value term >= 0; its derivative's two
      quotient-rule parts -dU/C and U dC/C^2 have opposite signs (dU and dC
      each have one sign along a direction: dU/dpx1 = -(ph - ih [px1 the
      intersection's edge])), so the component crosses zero where
      (U/C) dC = dU.
    - rho^2/c^2 (DIoU, CIoU): a value term >= 0; derivative parts
      d(rho^2)/c^2 and -(rho^2/c^2) d(c^2)/c^2.
    - alpha v (CIoU): a value term >= 0 and one derivative term alpha dv
      (alpha held constant), both powers of the angle difference
      Delta = atan(wt/ht) - atan(w/h) (alpha v ~ Delta^4, alpha dv ~
      Delta^3) times factors without cancellation. Delta is a difference
      that cancels where the aspect ratios agree; its relative condition
      with respect to the four sides w, h, wt, ht is
      kD = (2 w h/(w^2 + h^2) + 2 wt ht/(wt^2 + ht^2)) / |Delta|
      (about 2 (wt h + w ht)/|wt h - w ht|, the cancellation ratio of the
      numerator of Delta = atan2(wt h - w ht, ht h + wt w), for small
      Delta), and the term's factor is max(1, kD d ln(term)/d ln Delta),
      d ln/d ln Delta = 1 + 2 (1 - IoU)/(1 - IoU + v) for alpha dv and
      4 - 2 v/(1 - IoU + v) for alpha v (alpha = v/(1 - IoU + v) moves
      with Delta too). The sides, not atan(wt/ht) and atan(w/h), are the
      parts: the two angles are near pi/2 for tall boxes (or 0 for wide
      ones) and their own ratio would depend on that choice.
    """
    px1, py1, px2, py2 = p
    tx1, ty1, tx2, ty2 = t
    inter, union = _inter_union(p, t)
    if union.v == 0:
        loss = _D(0 if all(a.v == b.v for a, b in zip(p, t)) else 1)
    else:
        loss = 1 - inter / union
    vals = [(loss.v, 1)]
    grads = [(loss.d, 1)]
    if name == "iou_loss":
        return vals, grads
    cw = _max(px2, tx2) - _min(px1, tx1)
    ch = _max(py2, ty2) - _min(py1, ty1)
    if name == "giou_loss":
        c = cw * ch
        if c.v != 0:
            vals.append(((c.v - union.v) / c.v, 1))
            grads += [(-union.d / c.v, 1), (union.v * c.d / (c.v * c.v), 1)]
        return vals, grads
    c2 = cw * cw + ch * ch
    rx = (px1 + px2) / 2 - (tx1 + tx2) / 2
    ry = (py1 + py2) / 2 - (ty1 + ty2) / 2
    rho2 = rx * rx + ry * ry
    if c2.v != 0:
        vals.append((rho2.v / c2.v, 1))
        grads += [(rho2.d / c2.v, 1), (-rho2.v * c2.d / (c2.v * c2.v), 1)]
    if name == "diou_loss":
        return vals, grads
    if name != "ciou_loss":
        raise ValueError(f"unknown box loss {name!r}")
    w, h, wt, ht = px2 - px1, py2 - py1, tx2 - tx1, ty2 - ty1
    ang = _atan2(wt, ht) - _atan2(w, h)
    v = 4 / mpmath.pi**2 * ang * ang
    den = loss.v + v.v
    alpha = v.v / den if den > 0 else mpmath.mpf(0)
    if ang.v == 0 or alpha == 0:
        return vals + [(0, 1)], grads + [(alpha * v.d, 1)]

    def side_part(a, b):
        q = a.v * a.v + b.v * b.v
        return 0 if q == 0 else 2 * a.v * b.v / q

    k_delta = (side_part(w, h) + side_part(wt, ht)) / abs(ang.v)
    f_val = max(1, k_delta * (4 - 2 * v.v / den))
    f_grad = max(1, k_delta * (1 + 2 * loss.v / den))
    return vals + [(alpha * v.v, f_val)], grads + [(alpha * v.d, f_grad)]


#: bits of precision beyond the span of the coordinates' exponents, at which
#: the terms are evaluated (sums of coordinates are then exact)
_COND_BITS = 160
_COND_MAX_BITS = 40000
#: a sum that is 0 to within the precision at this many bits beyond the
#: first is taken as an exact 0 (condition inf)
_COND_ZERO_BITS = 2000


def _ratio(terms, bits):
    """(sum factor |term|, sum term, whether the sum is 0 to ``bits``)."""
    a = mpmath.fsum(f * abs(x) for x, f in terms)
    s = mpmath.fsum(x for x, _ in terms)
    return a, s, abs(s) <= a * mpmath.mpf(2) ** (16 - bits)


def condition(name, pred4, target4):
    """Condition numbers (floats >= 1) of the value and of each gradient
    component of box loss ``name`` at one pair of boxes:
    ``(cond_value, [cond_grad_k, k = 0..3])``.

    Each is the ratio sum f_i |term_i| / |sum term_i| over the defining
    terms of the value or the component (``_terms``): the cancellation
    ratio of the terms, where each term counts with its own condition
    f_i >= 1 (1 but for CIoU's angle term, a power of a difference of
    angles). The value is a sum of non-negative terms: 1 for IoU, GIoU and
    DIoU, for CIoU 1 unless alpha v is a fair part of it at nearly equal
    aspect ratios. A gradient component's terms are the gradient of
    1 - IoU and the penalties' quotient-rule parts, which have opposite
    signs: GIoU -dU/C and U dC/C^2, DIoU/CIoU d(rho^2)/c^2 and
    -(rho^2/c^2) d(c^2)/c^2; CIoU's alpha dv. The condition is 1 where no
    two terms have opposite signs (and no angle difference cancels), and
    inf where the terms cancel to an exact 0.

    This is what a kernel whose terms are each accurate to a few ulp can
    promise; cancellations of coordinate differences (the centre distance
    rho, ph - ih, ...) are not counted: a kernel forms those exactly or
    from the coordinates' differences directly. Non-finite coordinates
    give 1.

    The terms are evaluated at a precision that makes every sum of
    coordinates exact, doubled until the sums agree at two precisions."""
    target = [float(c) for c in target4]
    pred = [float(c) for c in pred4]
    ones = [1.0] * 4
    if not all(math.isfinite(c) for c in pred + target):
        return 1.0, ones
    exps = [math.frexp(c)[1] for c in pred + target if c != 0]
    prec = (max(exps) - min(exps) if exps else 0) + 53 + _COND_BITS

    def ratios(bits):
        """[(sum f |terms|, sum terms, zero to the precision)]: value, then grads"""
        with mpmath.workprec(bits):
            t = [_D(c) for c in target]
            out = []
            for k in range(4):
                p = [_D(c, 1 if j == k else 0) for j, c in enumerate(pred)]
                vals, grads = _terms(name, p, t)
                if k == 0:
                    out.append(_ratio(vals, bits))
                out.append(_ratio(grads, bits))
            return out

    def agree(x, y):
        return x[2] == y[2] and (x[2] or abs(y[1] - x[1]) <= abs(y[1]) * mpmath.mpf(2) ** -30)

    prec0 = prec
    prev = ratios(prec)
    while True:
        prec *= 2
        cur = ratios(prec)
        if all(agree(x, y) and (not y[2] or prec >= prec0 + _COND_ZERO_BITS)
               for x, y in zip(prev, cur)) or prec >= _COND_MAX_BITS:
            break
        prev = cur
    conds = []
    for a, s, zero in cur:
        if a == 0:
            conds.append(1.0)
        elif zero:
            conds.append(math.inf)
        else:
            conds.append(max(1.0, float(a / abs(s))))
    return conds[0], conds[1:]


__all__ = ["NAMES", "condition", "value_and_grad"]
