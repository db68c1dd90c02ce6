"""Binary and multi-label losses: value and derivative of one element.

Signature as in ``fastloss.scalar.regression``: ``f(x, y, q, p0, p1, p2)`` on
float64 scalars, returning ``(value, d value/dx)``. ``q`` is the per-element
``pos_weight`` of ``binary_cross_entropy_with_logits`` (1 elsewhere).

The logit losses are written in the two-sided form
``(1 - y) softplus(x) + w y softplus(-x)``: both terms are >= 0, so nothing
cancels, +-inf logits give the exact limits, and the gradient
``(1 - y) sigma(x) - w y sigma(-x)`` keeps relative accuracy in both tails
(sigma(x) - 1 is never formed).
"""

import math

from numba import njit

from fastloss._config import JIT
from fastloss.math import exp, log, log1p, logaddexp, logistic, relu, xmul

_TINY = 2.0**-960  # below this, pow(D, gamma) may lose D to underflow


@njit(**JIT)
def binary_cross_entropy(x, y, q, p0, p1, p2):
    """-(y log x + (1 - y) log1p(-x)) on probabilities x in [0, 1], with
    0 log 0 = 0; derivative (x - y) / (x (1 - x)).

    No clamping: x = 0 with y > 0 gives +inf (PyTorch clamps the log at -100,
    pytorch#103316). The derivative's 0/0 at x = 0 or 1 is replaced by its
    limit (1 at x = y = 0, -1 at x = y = 1)."""
    v = -(xmul(y, log(x)) + xmul(1.0 - y, log1p(-x)))
    if x > 0.0 and x < 1.0:
        g = (x - y) / (x * (1.0 - x))
    elif x == 0.0:
        g = (-math.inf if y > 0.0 else 1.0) + 0.0 * y
    elif x == 1.0:
        g = (math.inf if y < 1.0 else -1.0) + 0.0 * y
    else:
        g = x  # NaN
    return v, g


@njit(**JIT)
def binary_cross_entropy_with_logits(x, y, w, eps, p1, p2):
    """(1 - y) softplus(x) + w y softplus(-x) (w = pos_weight, per element);
    derivative (1 - y) sigma(x) - w y sigma(-x).

    This equals PyTorch's (1 - y) x + (1 + (w - 1) y) softplus(-x) since
    softplus(x) = x + softplus(-x), without its cancellation at x << 0.
    Label smoothing (eps = p0) replaces y by y' = y (1 - eps) + eps/2; 1 - y'
    is formed as (1 - y)(1 - eps) + eps/2 (a sum of two positive terms), not
    as 1 - y', which cancels when y' ~ 1."""
    omy = 1.0 - y
    if eps != 0.0:
        omy = omy * (1.0 - eps) + 0.5 * eps
        y = y * (1.0 - eps) + 0.5 * eps
    wy = w * y
    sp, sn, gp, gn = logistic(x)
    v = xmul(omy, sp) + xmul(wy, sn)
    g = xmul(omy, gp) - xmul(wy, gn)
    return v, g


@njit(**JIT)
def sigmoid_focal(x, y, q, alpha, gamma, use_alpha):
    """Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV
    2017): alpha_t (1 - p_t)^gamma BCE(x, y), with 1 - p_t = y sigma(-x) +
    (1 - y) sigma(x) (torchvision's definition, soft targets included).

    The modulating factor is exp(gamma L) with L = log(1 - p_t) computed in log
    space (log_sigmoid for hard targets, logaddexp of the two log terms for
    soft ones), so it never overflows and is finite at +-inf logits
    (optax#1267, kornia#918, kornia#2115). gamma = 0 gives a factor of exactly
    1 and BCE's value and gradient.

    Derivative: alpha_t m (gamma (dL/dx) BCE + dBCE/dx), where
    dL/dx = (1 - 2y) sigma(x) sigma(-x) / (1 - p_t)."""
    spp, spn, sp, sn = logistic(x)
    lp = -spn  # log sigma(x)
    ln = -spp  # log sigma(-x)
    ce = -(xmul(1.0 - y, ln) + xmul(y, lp))
    dce = xmul(1.0 - y, sp) - xmul(y, sn)
    # D = 1 - p_t, L = log D, dl = dL/dx
    if y == 1.0:
        big_d, big_l, dl = sn, ln, -sp
    elif y == 0.0:
        big_d, big_l, dl = sp, lp, sn
    else:
        big_d = y * sn + (1.0 - y) * sp
        big_l = logaddexp(log(y) + ln, log1p(-y) + lp)
        dl = (1.0 - 2.0 * y) * sp * (sn / big_d)
    if gamma == 0.0:
        m = 1.0
        g = dce
    else:
        # pow of the accurately computed D is accurate; exp(gamma L) only
        # where D underflows (gamma L is then ill-conditioned, cond ~ |gamma L|)
        m = math.pow(big_d, gamma) if big_d > _TINY else exp(gamma * big_l)
        g = m * (xmul(gamma * dl, ce) + dce)
    v = m * ce
    if use_alpha != 0.0:
        at = alpha * y + (1.0 - alpha) * (1.0 - y)
        v = at * v
        g = at * g
    return v, g


@njit(**JIT)
def _pm1(y):
    """Hinge targets: y in {-1, 0, 1}, 0 read as -1; NaN stays NaN."""
    return y if y != 0.0 else -1.0


@njit(**JIT)
def hinge(x, y, q, p0, p1, p2):
    """max(0, 1 - y x); derivative -y where y x < 1, else 0."""
    s = _pm1(y)
    m = 1.0 - s * x
    if m > 0.0:
        return m, -s
    if m <= 0.0:
        return 0.0, 0.0
    return m, m  # NaN


@njit(**JIT)
def squared_hinge(x, y, q, p0, p1, p2):
    """max(0, 1 - y x)^2; derivative -2 y max(0, 1 - y x)."""
    s = _pm1(y)
    r = relu(1.0 - s * x)
    return r * r, -2.0 * s * r


@njit(**JIT)
def soft_margin(x, y, q, p0, p1, p2):
    """Logistic loss softplus(-y x); derivative -y sigma(-y x)."""
    s = _pm1(y)
    z = -s * x
    sp, _, gp, _ = logistic(z)
    return sp, -s * gp
