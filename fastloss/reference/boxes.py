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

Conventions (LOSSES.md "Boxes"): IoU = 1 for identical boxes and 0 for other
boxes where U = 0 (gradient 0 there); (C - U)/C = 0 where C = 0;
rho^2/c^2 = 0 where c = 0; atan2(0, 0) = 0 with derivative 0; CIoU's alpha =
v/(1 - IoU + v) is a constant in the gradient (0 where 1 - IoU + v = 0).
"""

from __future__ import annotations

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


def _loss(name, p, t):
    px1, py1, px2, py2 = p
    tx1, ty1, tx2, ty2 = t
    zero = _D(0)
    iw = _max(_min(px2, tx2) - _max(px1, tx1), zero)
    ih = _max(_min(py2, ty2) - _max(py1, ty1), zero)
    inter = iw * ih
    ap = (px2 - px1) * (py2 - py1)
    at = (tx2 - tx1) * (ty2 - ty1)
    union = ap + at - inter
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


__all__ = ["NAMES", "value_and_grad"]
