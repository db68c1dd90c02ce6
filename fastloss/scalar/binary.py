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

import numpy as np
from numba import njit

from fastloss._config import JIT
from fastloss.math import (
    CPU_GENERIC,
    F64_DATA,
    FIXED_KERNEL,
    LN2_HI,
    LN2_LO,
    exp32,
    log,
    log1p,
    logistic,
    logistic32_wide,
    relu,
    xmul,
)
from fastloss.math._cpu import CPU_JIT, exp_dd, log_dd, logistic_dd, logistic_loss32
from fastloss.math._intrin import fma
from fastloss.scalar.multiclass import dd_round


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
    as 1 - y', which cancels when y' ~ 1.

    The CPU kernel of the defaults for float32 data (``FIXED_KERNEL``)
    computes the same in float32 lanes (``math._cpu.logistic_loss32``);
    the rest below is the form every other kernel (the GPU's included)
    evaluates.

    Written for the vectorized loops:
    - float64 data applies the smoothing unconditionally: with eps = 0 both
      lines are exact (y * 1 + 0 = y; only -0 becomes +0, and that cannot
      change v or g), and LLVM did not hoist an `eps != 0` test out of the
      loop (float32, N = 2^24, 1 thread, out=, same-session A/B: 4.03-4.08
      -> 3.77-3.79 ns/elem, before float32 data took its own path below);
    - float32 data tests eps = 0, and takes 1 - y' + w y' as exactly 1 when
      also w = 1: the defaults have a kernel of their own (``LossSpec.fixed``
      with eps = 0 and pos_weight 1 as constants), in which both tests fold
      away with the smoothing's and the weight's operations. Measured
      (float32, N = 2^22, 1 thread, out=, alternating processes, ns/elem):
      defaults 2.58-2.62 -> 2.26-2.36; the runtime kernel, label_smoothing
      0.1 2.52-2.53 -> 2.53-2.54, pos_weight of 8 columns 3.46-3.47 ->
      3.52-3.53;
    - the gradient's sigmoids lie in [0, 1], so its products need no `xmul`
      (0 * inf cannot occur); only the value's softplus terms can be inf.

    float32 data (``F64_DATA`` False) takes the value as
    c x + (1 - y' + w y') softplus(-|x|), c = 1 - y' for x >= 0 and -w y'
    below (softplus(|x|) = |x| + softplus(-|x|)): every term >= 0 (targets
    in [0, 1], pos_weight >= 0), nothing cancels, and the one product that
    can be 0 inf (c x at infinite x) is the one guarded. That drops one of
    the two ``xmul`` guards and the selects that sort logistic's softplus
    outputs by sign. Measured
    (float32, N = 2^24, out=, alternating processes): 3.03-3.13 -> 2.89-2.90
    ns/elem at 1 thread, 1.56-1.62 -> 1.50-1.53 at 2; on 2^22 random logits
    (hard and soft targets) the bits are those of the two-``xmul`` form
    except 64 of 2^22 with pos_weight = 3, each closer to mpmath. float64
    data keeps the form above (its softplus values are double-double
    accurate, and the audit's bits stay as they were)."""
    if FIXED_KERNEL and not F64_DATA:
        # the kernel of the defaults (catalog: label_smoothing 0, pos_weight
        # 1 fixed); both flags are compile-time globals, so Numba prunes the
        # branch and the gradient keeps its float32 type (``_scaled``)
        v32, g32 = logistic_loss32(np.float32(x), np.float32(y))
        return np.float64(v32), g32
    if eps == 0.0 and not F64_DATA:
        omy = 1.0 - y
    else:
        omy = (1.0 - y) * (1.0 - eps) + 0.5 * eps
        y = y * (1.0 - eps) + 0.5 * eps
    wy = w * y
    sp, sn, gp, gn = logistic(x)
    if F64_DATA:
        v = xmul(omy, sp) + xmul(wy, sn)
    else:
        up = x >= 0.0
        small = sn if up else sp  # softplus(-|x|)
        coef = omy if up else -wy
        # 1 - y' + w y' is exactly 1 without smoothing or pos_weight
        big_w = 1.0 if eps == 0.0 and w == 1.0 else omy + wy
        v = (0.0 if coef == 0.0 else coef * x) + big_w * small
    g = omy * gp - wy * gn
    return v, g


@njit(**JIT)
def _focal_plain(x, y, alpha, gamma, use_alpha, f64):
    """Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV
    2017): alpha_t (1 - p_t)^gamma BCE(x, y), with 1 - p_t = y sigma(-x) +
    (1 - y) sigma(x) (torchvision's definition, soft targets included).

    The modulating factor is exp(gamma L) with L = log(1 - p_t) computed in log
    space (log_sigmoid for hard targets, log D for soft ones, D >= min(y,
    1 - y)/2 >= 2^-150 for float32 data), so it never overflows and is
    finite at +-inf logits (optax#1267, kornia#918, kornia#2115). gamma = 0
    gives a factor of exactly 1 and BCE's value and gradient. float64 data
    comes here at gamma = 0 without alpha only (``sigmoid_focal``).

    Derivative: alpha_t m (gamma (dL/dx) BCE + dBCE/dx), where
    dL/dx = (1 - 2y) sigma(x) sigma(-x) / (1 - p_t).

    ``f64`` is the caller's ``F64_DATA`` (a compile-time constant there:
    ``F32_VARIANTS`` rebinds the formula's own globals, not this helper's);
    for float32 data the factor is exp(gamma log D), without libm's pow,
    and the logistic values are ``logistic32_wide``'s (the CPU's float64
    lanes without pairs; 11 -> 8.8 ns/elem, 2^22, 1 thread)."""
    spp, spn, sp, sn = logistic(x) if f64 else logistic32_wide(x)
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
        big_l = log(big_d)
        dl = (1.0 - 2.0 * y) * sp * (sn / big_d)
    if gamma == 0.0:
        m = 1.0
        g = dce
    elif not f64 and gamma == 2.0:
        # float32 data, gamma = 2 (the default, a CPU kernel of its own:
        # ``LossSpec.fixed``): m = D^2 and gamma m dL/dx = 2 D D', D' =
        # (1 - 2y) sigma(x) sigma(-x), without log, exp or division. D is
        # within 2^-34 (relative) of the exact value, as L is (absolutely):
        # m within 2^-33 either way, invisible after rounding to float32.
        # D^2 underflows float64 only for |x| > 372, where every output
        # rounds to 0 in float32 (or is 0 * inf at x = +-inf: xmul)
        m = big_d * big_d
        g = big_d * (xmul(2.0 * ((1.0 - 2.0 * y) * sp * sn), ce) + big_d * dce)
    else:
        # float32 data (float64 data comes here with gamma = 0 only:
        # ``sigmoid_focal``): exp(gamma L) (L's rounding, 2^-53 |gamma L|,
        # matters only where m < 2^-150), which vectorizes where libm's pow
        # does not, by ``exp32`` (gamma L <= 0; 2^-34, and flushed below
        # 2^-1022, where m ce and m (...) round to 0 in float32: |ce| <
        # 2^129): 8.8 -> 7.0-7.6 ns/elem against the full-range ``exp`` (N =
        # 2^22, 1 thread, gamma = 2.5)
        m = exp32(gamma * big_l)
        g = m * (xmul(gamma * dl, ce) + dce)
    v = m * ce
    if use_alpha != 0.0:
        at = alpha * y + (1.0 - alpha) * (1.0 - y)
        v = at * v
        g = at * g
    return v, g


@njit(**JIT)
def _two_diff(a, b):
    """a - b as an exact pair (TwoSum)."""
    s = a - b
    z = s - a
    return s, (a - (s - z)) - (b + z)


#: ``_focal2_dd`` scales D and D' by 2^300 where D < 2^-250, and the
#: results by 2^-600, so that D^2 stays normal where the value D^2 BCE does
#: not underflow: a soft target y below 2^-511 with x below -2^500 (D ~ y,
#: BCE ~ y |x|, value ~ y^3 |x|; y = 2^-600, x = -1e300: D^2 = 2^-1200
#: but the value ~2^-803). For hard targets BCE, BCE' and D' are ~D where D
#: is small, every product stays normal down to the last one (value and
#: gradient ~D^3), and the scaling changes nothing. BCE and BCE' are not
#: scaled: with a soft target below 2^-250 BCE may be as large as y |x|
_F2_SMALL = 2.0**-250
_F2_UP = 2.0**300
_F2_DOWN = 2.0**-600
#: the float64 focal paths evaluate infinite logits at +-_F2_CLAMP
#: (``_focal_pairs``: ``logistic_dd`` takes finite z; e^-1000 is 0 in
#: float64, so every pair there equals its limit but softplus(|x|), whose
#: infinity a select restores in the value, ``_focal_end``)
_F2_CLAMP = 1000.0


# unnormalized double-double pieces for the float64 focal paths, whose
# operands and products are finite: multiclass's ``dd_mul``/``dd_add`` less their
# ``dd_fix`` (a renormalization and an infinity select per operation). A
# pair (h, l) here has |l| within a few ulp(h); the error of each operation
# stays ~2^-104 relative, and the result is rounded once (``dd_round``)


@njit(**CPU_JIT)
def _pmul(ah, al, bh, bl):
    """(ah + al)(bh + bl) as a pair (fma for the heads' exact product)."""
    p = ah * bh
    return p, fma(ah, bh, -p) + (ah * bl + al * bh)


@njit(**CPU_JIT)
def _pmul1(a, bh, bl):
    """a (bh + bl) as a pair, for a double a."""
    p = a * bh
    return p, fma(a, bh, -p) + a * bl


@njit(**CPU_JIT)
def _padd(ah, al, bh, bl):
    """(ah + al) + (bh + bl) as a pair (TwoSum of the heads)."""
    t = ah + bh
    z = t - ah
    return t, ((ah - (t - z)) + (bh - z)) + (al + bl)


@njit(**CPU_JIT)
def _focal_pairs(x, y):
    """The pairs both double-double focal paths start from, at x (+-inf
    taken at +-_F2_CLAMP): 1 - y (exact), BCE = (1 - y) softplus(x) + y
    softplus(-x), D = 1 - p_t = y sigma(-x) + (1 - y) sigma(x), BCE' = (1 -
    y) sigma(x) - y sigma(-x), and ``logistic_dd``'s softplus(+-x),
    sigma(+-x)."""
    xc = math.copysign(_F2_CLAMP, x) if abs(x) == math.inf else x
    pph, ppl, pnh, pnl, sph, spl, snh, snl = logistic_dd(xc)
    oh, ol = _two_diff(1.0, y)
    ah, al = _pmul(oh, ol, pph, ppl)
    ch, cl = _pmul1(y, pnh, pnl)
    ceh, cel = _padd(ah, al, ch, cl)
    ah, al = _pmul1(y, snh, snl)
    ch, cl = _pmul(oh, ol, sph, spl)
    dh, dl = _padd(ah, al, ch, cl)
    bh, bl = _padd(ch, cl, -ah, -al)
    return oh, ol, ceh, cel, dh, dl, bh, bl, pph, ppl, pnh, pnl, sph, spl, snh, snl


@njit(**CPU_JIT)
def _focal_end(x, y, oh, ol, vh, vl, gh, gl, alpha, use_alpha, s1, s2, s3):
    """alpha_t times the pairs v and g (use_alpha), each rounded once, then
    scaled by s1, s2 and s3 in turn. At x = +-inf BCE = (1 - y) inf or y
    inf: the value is +inf where that coefficient and alpha_t are positive
    (the pairs, taken at +-_F2_CLAMP, hold a finite value, or 0 where
    D^gamma BCE underflowed there: y = 1e-300)."""
    pos = True
    if use_alpha != 0.0:
        qh, ql = _two_diff(1.0, alpha)
        ah, al = _pmul(qh, ql, oh, ol)
        ch, cl = _pmul1(alpha, y, 0.0)
        ah, al = _padd(ah, al, ch, cl)  # alpha_t
        vh, vl = _pmul(ah, al, vh, vl)
        gh, gl = _pmul(ah, al, gh, gl)
        pos = ah > 0.0
    v = ((dd_round(vh, vl) * s1) * s2) * s3
    g = ((dd_round(gh, gl) * s1) * s2) * s3
    c = oh if x > 0.0 else y
    return (math.inf if abs(x) == math.inf and c > 0.0 and pos else v), g


@njit(**JIT)
def _focal2_dd(x, y, alpha, use_alpha):
    """sigmoid_focal at gamma = 2 for float64 data: the factor (1 - p_t)^2 =
    D^2 as a product, without the exponential and logarithm of
    ``_focal_gdd`` (whose e^(gamma L) holds for any gamma), from D and its
    derivative D' = (1 - 2y) sigma(x) sigma(-x) (``_focal_pairs``):

        v = alpha_t D^2 BCE,    g = alpha_t D (2 D' BCE + D BCE').

    Every intermediate is a double-double pair (``logistic_dd``, fma
    products, TwoSum sums), each result rounded once (and once more where
    it is subnormal); hard and soft targets alike, branch-free, so that the
    kernel's loop vectorizes. Where D < 2^-250 D and D' are scaled by 2^300
    and the results by 2^-600 (``_F2_UP``: D^2 then stays normal where the
    value does not underflow). NaN propagates."""
    oh, ol, ceh, cel, dh, dl, bh, bl, pph, ppl, pnh, pnl, sph, spl, snh, snl = _focal_pairs(x, y)
    uh, ul = _two_diff(1.0, 2.0 * y)
    th, tl = _pmul(sph, spl, snh, snl)
    th, tl = _pmul(uh, ul, th, tl)  # D'
    small = abs(dh) < _F2_SMALL
    s = _F2_UP if small else 1.0
    dh, dl = dh * s, dl * s
    th, tl = (2.0 * s) * th, (2.0 * s) * tl  # 2 D'
    mh, ml = _pmul(dh, dl, dh, dl)
    vh, vl = _pmul(mh, ml, ceh, cel)
    th, tl = _pmul(th, tl, ceh, cel)
    ph, pl = _pmul(dh, dl, bh, bl)
    th, tl = _padd(th, tl, ph, pl)
    gh, gl = _pmul(dh, dl, th, tl)
    return _focal_end(x, y, oh, ol, vh, vl, gh, gl, alpha, use_alpha,
                      _F2_DOWN if small else 1.0, 1.0, 1.0)


#: ``_focal_gdd`` takes log D of a soft target's D below 2^-900 as log(D
#: 2^600) - 600 ln 2 (a subnormal D, y below 2^-1022, is not in
#: ``log_dd``'s domain), and D'/D as (D' 2^600) / (D 2^600)
_G_SMALL = 2.0**-900
_G_UP = 2.0**600
_G_K = 600.0
#: ``_focal_gdd``'s factor e^(gamma L) below e^-700 is taken times
#: 2^_G_FAR (exp_dd's range ends at -790) and the results times _G_DOWN
#: last; below e^(_G_ZERO + _G_FAR ln 2) it is 0 (results < 2^-1126)
_G_FAR = 1024.0
_G_DOWN = 2.0**-1024
_G_ZERO = -790.0


@njit(**JIT)
def _focal_gdd(x, y, alpha, gamma, use_alpha):
    """sigmoid_focal for float64 data, any gamma (``sigmoid_focal`` sends it
    all but gamma = 2 and gamma = 0 without alpha): the factor e^(gamma L),
    L = log D, as the double-double exponential of the pair
    gamma L (its rounding would be amplified by |gamma L|, and pow(D,
    gamma)'s by gamma), and

        v = alpha_t e^(gamma L) BCE,    g = alpha_t e^(gamma L) (gamma L' BCE + BCE'),

    L' = D'/D = (1 - 2y) sigma(x) sigma(-x) / D. Hard targets: L =
    -softplus(x) (y = 1) or -softplus(-x) (y = 0), L' = -sigma(x) or
    sigma(-x), from ``logistic_dd`` (D may underflow where L does not);
    soft targets: L = log D + dl/D (``log_dd`` of the pair's head, D scaled
    into the normal range below 2^-900) and L' by the pair reciprocal of D.
    Both are computed and one is selected, branch-free, so that the
    kernel's loop vectorizes (``_focal2_dd``'s pairs and rounding). The
    2^k of e^(gamma L) is applied last (products below 2^-1022 are not
    rounded early; ``_G_FAR``). NaN propagates."""
    oh, ol, ceh, cel, dh, dl, bh, bl, pph, ppl, pnh, pnl, sph, spl, snh, snl = _focal_pairs(x, y)
    # soft targets
    sub = dh < _G_SMALL
    sc = _G_UP if sub else 1.0
    ds = dh * sc
    lh, ll = log_dd(ds if ds > 0.0 else 1.0)  # (a hard target's D may be 0)
    k = _G_K if sub else 0.0
    lh, ll = _padd(lh, ll, -(k * LN2_HI), -(k * LN2_LO))
    lh, ll = _padd(lh, ll, dl / dh, 0.0)  # L = log(dh + dl)
    uh, ul = _two_diff(1.0, 2.0 * y)
    th, tl = _pmul(sph, spl, snh, snl)
    th, tl = _pmul(uh, ul, sc * th, sc * tl)  # D' sc
    rh = 1.0 / ds
    rl = (fma(-rh, ds, 1.0) - rh * (dl * sc)) * rh  # 1 / (D sc)
    th, tl = _pmul(th, tl, rh, rl)  # L'
    # hard targets
    if y == 1.0:
        lh, ll, th, tl = -pph, -ppl, -sph, -spl
    elif y == 0.0:
        lh, ll, th, tl = -pnh, -pnl, snh, snl
    ph, pl = _pmul1(gamma, lh, ll)
    # below -700, e^(gamma L) 2^1024 (gamma L + 1024 ln 2 in exp_dd's
    # range), times 2^-1024 last: BCE may be as large as 2^1024
    far = ph < -700.0
    k = _G_FAR if far else 0.0
    ph, pl = _padd(ph, pl, k * LN2_HI, k * LN2_LO)
    # renormalized (Fast2Sum: ``dd_fix`` without its infinity select, which
    # cost ~1% here): e^pl is taken as 1 + pl (pl ~ 2^-44 here)
    h = ph + pl
    ph, pl = h, pl - (h - ph)
    yh, yl, s1, s2 = exp_dd(ph, 0.0)
    mh, ml = _pmul(yh, yl, 1.0, pl)  # e^(ph + pl) / 2^k
    vh, vl = _pmul(mh, ml, ceh, cel)
    th, tl = _pmul1(gamma, th, tl)
    th, tl = _pmul(th, tl, ceh, cel)  # gamma L' BCE
    th, tl = _padd(th, tl, bh, bl)
    gh, gl = _pmul(mh, ml, th, tl)
    # gamma L < -1499.8 (-790 after the shift): value and gradient < 2^-1126
    s1 = 0.0 if ph < _G_ZERO else s1
    return _focal_end(x, y, oh, ol, vh, vl, gh, gl, alpha, use_alpha, s1, s2,
                      _G_DOWN if far else 1.0)


@njit(**JIT)
def sigmoid_focal(x, y, q, alpha, gamma, use_alpha):
    """Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV
    2017): alpha_t (1 - p_t)^gamma BCE(x, y), with 1 - p_t = y sigma(-x) +
    (1 - y) sigma(x) (torchvision's definition, soft targets included).

    float64 data: at gamma = 2 (the default) ``_focal2_dd``, at gamma = 0
    without alpha ``_focal_plain`` (BCE with logits itself, the same bits),
    else ``_focal_gdd`` (double-double intermediates, each result rounded
    about once; with alpha at gamma = 0 too: alpha_t times BCE, each
    rounded, was up to 3 ULP off); float32 data: ``_focal_plain``. The CPU
    compiles those two cases as kernels of their own (``LossSpec.fixed``),
    so its kernel of the other parameters holds ``_focal_gdd`` alone
    (``CPU_GENERIC``): with the three paths as selects its loop would
    evaluate all of them."""
    if F64_DATA and (CPU_GENERIC or gamma != 2.0 and (gamma != 0.0 or use_alpha != 0.0)):
        return _focal_gdd(x, y, alpha, gamma, use_alpha)
    if F64_DATA and gamma == 2.0:
        return _focal2_dd(x, y, alpha, use_alpha)
    return _focal_plain(x, y, alpha, gamma, use_alpha, F64_DATA)


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
