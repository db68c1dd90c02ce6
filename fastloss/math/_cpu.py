"""Branch-free float64 implementations of the elementary functions for the CPU.

Numba 0.68 has no SVML: ``math.exp`` and friends compile to scalar libm calls,
which stop LLVM from vectorizing a loop. The functions here use only
arithmetic, ``fma``, bit casts and selects (Python conditional expressions on
values that are both computed), so a loop calling them vectorizes (AVX2: 4
float64 lanes).

Accuracy: each is within 1 ULP of the exact result over its whole domain
(measured in ``tests/test_math_accuracy.py``), with exact special values
(+-0, subnormals, +-inf, NaN, overflow and underflow thresholds). Algorithms:
- exp: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, r split in two
  parts; e^r = 1 + r + r^2/2 + r^3 q(r) (Taylor to degree 13) carried as a
  double-double (hi + lo, ~2^-57 relative error) and scaled by 2^k in two
  steps (so subnormal results are rounded once).
- expm1: the same reduction; for |x| < ln2/2 the series itself, else the
  double-double e^x minus 1 with an exact TwoSum.
- log, log1p: fdlibm's e_log.c / s_log1p.c (Sun Microsystems, 1993:
  f = m - 1, s = f/(2+f), a degree-14 polynomial in s), with log1p's
  rounding correction c/u, written without branches.
- sigmoid, softplus, tanh, sinh: from the double-double exp/expm1.
- hypot: power-of-two scaling and an fma correction of the square root.
- pow (x >= 0): exp(y log x) with log x a double-double to ~2^-65 (a
  47-entry table of log(64/j) pairs, then log1p of the exact remainder).
- logistic32_wide (float32 data on the CPU): the same in plain float64
  lanes to 2^-34 (exp32, one division, a log polynomial of degree 3 in
  s^2), which the rounding to float32 does not see.
- logistic32 (float32 data on the GPU): on float32 lanes (twice the lanes
  per vector), with the error-prone steps carried as float32 pairs, so each
  output still rounds to float32 within 1 ULP. On the CPU it was slower
  than logistic32_wide (its pairs cost more than the halved lane count
  saved), but a GPU's float64 units are few.

Every function here is marked ``forceinline`` (LLVM ``alwaysinline``), so
that it dissolves into the loop that calls it.
"""

import math

import numpy as np
from numba import njit

from fastloss._config import JIT
from fastloss.math._intrin import (
    bits_f32,
    bits_f64,
    f32_bits,
    f64_bits,
    fma,
    fma32,
    pow2_24_minus_k32,
    pow2_k_plus_64_32,
)

#: LLVM ``alwaysinline``: left to LLVM's inliner, the larger compositions
#: (softplus, tanh) stayed calls inside the loops, which blocks vectorization.
CPU_JIT = {**JIT, "forceinline": True}

INF = math.inf
NAN = math.nan
INVLN2 = 1.4426950408889634074
LN2HI = 6.93147180369123816490e-01  # 32 significant bits: k*LN2HI is exact
LN2LO = 1.90821492927058770002e-10
LN2 = 0.6931471805599453  # ln 2 rounded to float64
SHIFT = 6755399441055744.0  # 1.5 * 2^52: x + SHIFT - SHIFT rounds x to an integer
HALF_LN2 = 0.34657359027997264
EXP_OVF = 709.782712893384  # exp(x) = inf above (largest x with finite exp)
#: exp_dd's lower clamp. The unscaled e^x rounds to 0 below -745.2 anyway;
#: a result scaled by 2^64 (``scalar.multiclass.exp_gap_dd``) stays nonzero
#: down to -789 (e^-790 2^64 < 2^-1075 rounds to 0), which a gradient
#: A p_j with A > 1 needs. k + kadj stays within ``_scale``'s range.
EXP_DD_LO = -790.0
MANT = (1 << 52) - 1
ONE_BITS = 0x3FF0000000000000
HALF_BITS = 0x3FE0000000000000
TINY_NORMAL = 2.2250738585072014e-308

# 1/n! for n = 3..13: e^r = 1 + r + r^2/2 + r^3 (E3 + r E4 + ...)
E3 = 1.0 / 6.0
E4 = 1.0 / 24.0
E5 = 1.0 / 120.0
E6 = 1.0 / 720.0
E7 = 1.0 / 5040.0
E8 = 1.0 / 40320.0
E9 = 1.0 / 362880.0
E10 = 1.0 / 3628800.0
E11 = 1.0 / 39916800.0
E12 = 1.0 / 479001600.0
E13 = 1.0 / 6227020800.0

# fdlibm log/log1p polynomial
LG1 = 6.666666666666735130e-01
LG2 = 3.999999999940941908e-01
LG3 = 2.857142874366239149e-01
LG4 = 2.222219843214978396e-01
LG5 = 1.818357216161805012e-01
LG6 = 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01


@njit(**CPU_JIT)
def _pow2(k):
    """2^k for an integer-valued float64 k in [-1022, 1023]."""
    return bits_f64((int(k) + 1023) << 52)


@njit(**CPU_JIT)
def _two_sum(a, b):
    s = a + b
    bp = s - a
    return s, (a - (s - bp)) + (b - bp)


@njit(**CPU_JIT)
def _reduce(x, lo_clamp, hi_clamp, small_zero):
    """x = k ln2 + r + rl, |r| <~ ln2/2; returns (k, r, rl, h, hl, p3) with
    r^2/2 = h + hl exactly and p3 = r^3 (1/3! + r/4! + ...): e^r - 1 - r =
    h + hl + p3. If small_zero, k = 0 for |x| < ln2/2 (then r = x, rl = 0)."""
    xc = x if x > lo_clamp else lo_clamp
    xc = xc if xc < hi_clamp else hi_clamp
    xc = xc if xc == xc else 0.0
    k = (xc * INVLN2 + SHIFT) - SHIFT
    if small_zero:
        k = 0.0 if abs(xc) < HALF_LN2 else k
    hi = xc - k * LN2HI  # exact
    lo = k * LN2LO
    r = hi - lo
    rl = (hi - r) - lo
    hr = 0.5 * r
    h = hr * r
    hl = fma(hr, r, -h)
    # q = E3 + E4 r + ... + E13 r^10 by Estrin's scheme: a dependency chain
    # of 4 multiply-adds instead of Horner's 10 (the vector loops calling
    # this are latency-bound); q's rounding errors are scaled by r^3 <= 0.042
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q = fma(r8, fma(r2, E13, fma(r, E12, E11)),
            fma(r4, fma(r2, fma(r, E10, E9), fma(r, E8, E7)),
                fma(r2, fma(r, E6, E5), fma(r, E4, E3))))
    p3 = r2 * (r * q)
    return k, r, rl, h, hl, p3


@njit(**CPU_JIT)
def _scale(k):
    """(s1, s2) with s1 * s2 = 2^k, both normal, for integer k in [-2044, 2046]."""
    ki = int(k)
    k1 = ki >> 1
    return bits_f64((k1 + 1023) << 52), bits_f64((ki - k1 + 1023) << 52)


@njit(**CPU_JIT)
def exp_dd(x, kadj):
    """e^x * 2^kadj as (hi, lo) before the final scaling: returns
    (yh, yl, s1, s2) with e^x 2^kadj = (yh + yl) s1 s2 and yh + yl in [0.7, 1.42],
    for x in [EXP_DD_LO, 711] (clamped outside that) and |kadj| <= 64."""
    k, r, rl, h, hl, p3 = _reduce(x, EXP_DD_LO, 711.0, False)
    # e^(r + rl) = 1 + r + h + hl + p3 + rl (1 + r)
    s = 1.0 + r
    t = (1.0 - s) + r  # exact: |1| >= |r|
    t += h + (hl + p3 + fma(rl, r, rl))
    yh = s + t
    yl = (s - yh) + t
    s1, s2 = _scale(k + kadj)
    return yh, yl, s1, s2


@njit(**CPU_JIT)
def exp(x):
    yh, yl, s1, s2 = exp_dd(x, 0.0)
    y = (yh * s1) * s2
    y = INF if x > EXP_OVF else y
    return y if x == x else x


@njit(**CPU_JIT)
def exp_pair(x):
    """e^x as a double-double (hi, lo): hi = exp(x) (<= 1 ULP), hi + lo with a
    relative error ~2^-56 (measured: 2^-56.3 at worst over 7000 points in
    [-700, 700]; the polynomial's rounding, scaled by r^3, is the limit);
    (inf, 0) above EXP_OVF, (0, 0) at -inf, NaN for
    NaN. For differences e^x - y that cancel (poisson_nll)."""
    yh, yl, s1, s2 = exp_dd(x, 0.0)
    hi = (yh * s1) * s2
    lo = (yl * s1) * s2  # (below 2^-1022 the pair is only as exact as hi)
    big = x > EXP_OVF
    hi = INF if big else hi
    lo = 0.0 if big else lo
    nan = x != x
    return (x if nan else hi), (x if nan else lo)


SHIFT_BITS = 0x4338000000000000  # the bits of SHIFT: bits(SHIFT + k) - SHIFT_BITS = k


# The float32-grade polynomials (``fastloss.math.fit``: near-minimax fits of
# the relative error, mpmath at 50 digits), each the shortest whose error is
# invisible after rounding to float32 (2^-34: at most 0.5 + 2^-10 ULP).
# exp32: e^r ~ 1 + r + r^2 (X2 + X3 r + ... + X7 r^5) on |r| <= ln2/2,
# relative error 2^-34.2 (the degree 8 it replaced: 2^-37.8, one more fma)
X2 = 0.5000000067643817
X3 = 0.16666665869409492
X4 = 0.04166629508923631
X5 = 0.0083334970085367
X6 = 0.0013944648902064246
X7 = 0.00019790352994499035
# logistic32_wide's log1p: log(1 + f) = 2s + s w (W1 + W2 w + W3 w^2 + W4 w^3),
# s = f/(2 + f), w = s^2, |s| <= 0.1716: relative error 2^-37.6 (fdlibm's
# LG1..LG7, used by the float64 functions, reach 2^-58 with three more fma)
W1 = 0.6666666564544869
W2 = 0.40000335192681785
W3 = 0.2853730842357159
W4 = 0.235821536358041


@njit(**CPU_JIT)
def exp32(x):
    """e^x for x <= 0 (or NaN) to the accuracy float32 data needs, for the
    row kernels' hot loops (``multiclass.exp_gap``: every argument is a
    difference v - m <= 0 below the running maximum): relative error below
    2^-34 (measured 2^-34.17; tests/test_math_accuracy.py), invisible after
    rounding to float32 (2^-24). Degree 7 by Estrin's scheme, one scaling
    (degree 8, 2^-37.8, cost one fma more: BCE with logits float32, N =
    2^20, 1 thread, together with ``logistic32_wide``'s shorter log
    polynomial, 2.70-2.73 -> 2.47-2.49 ns/elem); 0 for x < -708.7
    (results below 2^-1022.5 are flushed), NaN propagates (through the
    arithmetic: the clamp keeps NaN). No overflow handling: for x > 0 it is
    correct up to ~709 only.

    About 15 vector operations per lane group (Taylor's degree 11 with the
    overflow selects took ~26). The reduction r = x - k ln2 uses one
    constant, ln2 rounded to float64 (its error times |k| <= 1076 is below
    2^-45, far inside the bound), and the flush is an integer max on the
    bits of 2^k (k <= -1023 gives bits <= 0, i.e. +0) instead of a compare
    and a select."""
    xc = -746.0 if x < -746.0 else x
    kf = fma(xc, INVLN2, SHIFT)  # SHIFT + k, k = round(x / ln2)
    k = kf - SHIFT
    r = fma(-k, LN2, xc)
    r2 = r * r
    r4 = r2 * r2
    p = fma(r4, fma(r2, fma(r, X7, X6), fma(r, X5, X4)),
            fma(r2, fma(r, X3, X2), r + 1.0))
    # 2^k, normal for k in [-1022, 1023]; below, bits <= 0 flush to +0
    b = (f64_bits(kf) - (SHIFT_BITS - 1023)) << 52
    return p * bits_f64(b if b > 0 else 0)


@njit(**CPU_JIT)
def exp_pair32(x):
    """``exp_pair`` to float32 grade, for float32 data's formulas
    (``F32_VARIANTS``: poisson_nll's e^x - y, which cancels at x = log y):
    (hi, lo), e^x = 2^k (1 + q) with ``exp32``'s reduction and polynomial
    without its 1 (q = e^r - 1 = r + r^2 P(r), accurate relative to q
    itself: r exact at k = 0, the fit's error scaled by r^2), then 1 + q
    as a pair by Fast2Sum (|q| < 1/2), scaled by 2^(k - 1) and 2. hi + lo
    is e^x within a relative 2^-34 (the polynomial's fit) and, at k = 0,
    1 + q with q's own relative error: e^x - 1 at tiny x is x
    (tests/test_oracle.py, ``test_poisson_gradient_near_its_zero_is_accurate``).
    +inf (lo 0) above EXP_OVF, 0 below -708 (results below 2^-1021.5), NaN
    for NaN. Against ``exp_pair``'s double-double: poisson_nll float32,
    2^18 elements, 1 thread, alternating processes, 2.665-2.668 ->
    1.734-1.735 ns/elem.

    Its reduction and polynomial repeat ``exp32``'s lines (with r for r + 1
    as the innermost term). Shared through inlined helpers, with the same
    bits, they cost BCE with logits' per-element pos_weight loop, which
    ``exp32`` reaches through ``logistic32_wide``, 11%: float32, (256,
    1024), 1 thread, 2.47-2.50 -> 2.74-2.80 ns/elem (that loop is short of
    registers; LLVM allocated it differently)."""
    big = x > EXP_OVF
    xc = 0.0 if big else (-746.0 if x < -746.0 else x)  # NaN stays NaN
    kf = fma(xc, INVLN2, SHIFT)  # SHIFT + k, k = round(x / ln2)
    k = kf - SHIFT
    r = fma(-k, LN2, xc)
    r2 = r * r
    r4 = r2 * r2
    q = fma(r4, fma(r2, fma(r, X7, X6), fma(r, X5, X4)), fma(r2, fma(r, X3, X2), r))
    h = 1.0 + q
    lo1 = q - (h - 1.0)  # exact (Fast2Sum: |q| < 1)
    # 2^(k - 1), then 2: k reaches 1024 below EXP_OVF (2^k itself would be
    # inf there); k - 1 <= -1023 flushes to +0 (results below 2^-1021.5,
    # invisible in float32)
    b = (f64_bits(kf) - (SHIFT_BITS - 1022)) << 52
    s = bits_f64(b if b > 0 else 0)
    return (INF if big else (h * s) * 2.0), (0.0 if big else (lo1 * s) * 2.0)


@njit(**CPU_JIT)
def expm1_dd(x):
    """e^x - 1 as a double-double (hi, lo), for x <= EXP_OVF (not NaN)."""
    k, r, rl, h, hl, p3 = _reduce(x, -60.0, 711.0, True)
    # small |x| (k = 0, r = x): r + h + hl + p3
    sh, sl = _two_sum(r, h)
    sl += hl + p3
    # otherwise: (1 + r + h + hl + p3 + rl(1 + r)) 2^k - 1
    s = 1.0 + r
    t = (1.0 - s) + r
    t += h + (hl + p3 + fma(rl, r, rl))
    yh = s + t
    yl = (s - yh) + t
    s1, s2 = _scale(k)
    yh = (yh * s1) * s2
    yl = (yl * s1) * s2
    bh, bl = _two_sum(yh, -1.0)
    bl += yl
    small = k == 0.0
    hi = sh if small else bh
    lo = sl if small else bl
    y = hi + lo
    return y, (hi - y) + lo


@njit(**CPU_JIT)
def expm1(x):
    y, _ = expm1_dd(x)
    y = INF if x > EXP_OVF else y
    y = x if x == 0.0 else y  # -0
    return y if x == x else x


@njit(**CPU_JIT)
def _exp_mant(x):
    """(k, m) with x = 2^k m, m in [sqrt2/2, sqrt2), for a finite x > 0
    (subnormals included): so that x near 1 has k = 0 (fdlibm e_log.c)."""
    sub = x < TINY_NORMAL
    xs = x * 18014398509481984.0 if sub else x  # 2^54
    hx = f64_bits(xs)
    k = (hx >> 52) - 1023 - (54 if sub else 0)
    mb = hx & MANT
    i = (mb + (0x95F64 << 32)) & (1 << 52)  # mantissa >= sqrt(2): use [sqrt2/2, 1)
    return k + (i >> 52), bits_f64(mb | (i ^ ONE_BITS))


@njit(**CPU_JIT)
def _lg_r(z):
    """fdlibm's R(z) = Lg1 z + Lg2 z^2 + ... + Lg7 z^7 (z = s^2, s = f/(2 + f);
    log(1 + f) = 2s + s R, 2^-58.45 for |s| <= 0.1716), its odd and even
    powers summed apart as in e_log.c."""
    w = z * z
    t1 = w * (LG2 + w * (LG4 + w * LG6))
    t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
    return t1 + t2


@njit(**CPU_JIT)
def _log_parts(x):
    """log of a finite x > 0 (subnormals included) as (dk, f, T) with
    log x = dk ln2 + f - T, f exact, |T| small (fdlibm e_log.c)."""
    k, m = _exp_mant(x)
    f = m - 1.0
    s = f / (2.0 + f)
    hfsq = 0.5 * f * f
    dk = float(k)
    return dk, f, hfsq - (s * (hfsq + _lg_r(s * s)) + dk * LN2LO)


@njit(**CPU_JIT)
def log(x):
    dk, f, t = _log_parts(x)
    y = dk * LN2HI - (t - f)
    y = y if x < INF else INF
    y = -INF if x == 0.0 else y
    y = NAN if x < 0.0 else y
    return y if x == x else x


@njit(**CPU_JIT)
def log1p_c(a, al):
    """log1p(a + al) for a >= -1 (al a small correction), fdlibm s_log1p.c
    without branches. Special values are the caller's."""
    dk, f, t = log1p_parts(a, al)
    return dk * LN2HI - (t - f)


@njit(**CPU_JIT)
def log1p_parts(a, al):
    """log1p(a + al) = dk ln2_hi + f - t (f exact, t small)."""
    u = 1.0 + a
    hu = f64_bits(u)
    k = (hu >> 52) - 1023
    c = (1.0 - (u - a)) if k > 0 else (a - (u - 1.0))
    m = hu & MANT
    big = m >= (0x6A09E << 32)
    un = bits_f64(m | (HALF_BITS if big else ONE_BITS))
    k += 1 if big else 0
    f = un - 1.0
    small = (a < 0.41421356237309503) & (a > -0.2928932188134524)
    f = a if small else f
    c = (0.0 if small else c) + al
    c = c / u
    dk = 0.0 if small else float(k)
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    return dk, f, hfsq - (s * (hfsq + _lg_r(s * s)) + (dk * LN2LO + c))


@njit(**CPU_JIT)
def log1p(x):
    y = log1p_c(x, 0.0)
    y = y if x < INF else INF
    y = x if x == 0.0 else y
    y = -INF if x == -1.0 else y
    y = NAN if x < -1.0 else y
    return y if x == x else x


@njit(**CPU_JIT)
def softplus(z):
    """log(1 + e^z) = max(z, 0) + log1p(e^-|z|): ``logistic``'s first output
    (LLVM drops the unused ones)."""
    return logistic(z)[0]


@njit(**CPU_JIT)
def logistic(z):
    """(softplus(z), softplus(-z), sigmoid(z), sigmoid(-z)), each within
    1 ULP, from one e = e^-|z| (double-double), one log1p and one reciprocal:
    the logit losses need all four, and computing them separately costs four
    exponentials and two logarithms (LLVM does not merge them).

    softplus(-|z|) = log1p(e), softplus(|z|) = |z| + log1p(e) (rounded once),
    sigmoid(|z|) = 1/(1 + e), sigmoid(-|z|) = e/(1 + e)."""
    a = abs(z)
    yh, yl, s1, s2 = exp_dd(-a, 0.0)
    eh = (yh * s1) * s2
    el = (yl * s1) * s2
    dk, f, t = log1p_parts(eh, el)
    small = dk * LN2HI - (t - f)
    b1, e1 = _two_sum(a, dk * LN2HI)
    b2, e2 = _two_sum(b1, f)
    big = b2 + ((e1 + e2) - t)
    big = a if a == INF else big
    dh = 1.0 + eh  # eh <= 1: exact error below
    dl = ((1.0 - dh) + eh) + el
    r = 1.0 / dh
    rc = fma(-r, dh, 1.0)  # 1 - r dh, exact
    pos = r + r * (rc - r * dl)  # 1/(dh + dl)
    q = eh * r
    res = fma(-q, dh, eh) + (el - q * dl)  # (eh + el) - q (dh + dl)
    neg = q + res * r
    up = z >= 0.0
    nan = z != z
    big = z if nan else big
    small = z if nan else small
    pos = z if nan else pos
    neg = z if nan else neg
    return (big if up else small), (small if up else big), (pos if up else neg), (neg if up else pos)


@njit(**CPU_JIT)
def logistic32_wide(z):
    """``logistic`` for float32 data on the CPU, in plain float64 lanes: each
    output within 2^-34 (relative) of the exact value (measured 2^-34.1
    over 2.2e7 float32 z), so it rounds to float32 within 0.5 + 2^-10 ULP
    (measured 0.5007; tests/test_math_accuracy.py). None of the
    double-double work of ``logistic`` (float64 data) nor of the float32
    pairs of ``logistic32`` (the GPU's float32 version): float64 lanes carry
    10 bits more than the float32 result needs.

    e = e^-|z| by ``exp32`` (2^-34; +0 below e^-708, where every output
    rounds to its limit in float32). 1 + e = 2^k (1 + f), k = 0 and f = e
    up to sqrt(2) - 1, k = 1 and f = (e - 1)/2 above, so |s| <= 0.1716 for
    s = f/(2 + f) = num/t (num = e - k, t = 2 + e + k), and log1p(e) =
    k ln2 + 2s + s w R(w), w = s^2, R of degree 3 (W1..W4: 2^-37.6 on that
    range; fdlibm's degree 6 of e_log.c, 2^-58, cost three more dependent
    fma). One division serves s and the sigmoids:
    D = 1/(t u), u = 1 + e, s = num u D, 1/(1 + e) = t D, e/(1 + e) = e t D.

    Special values as ``logistic``: +-inf give (inf, 0, 1, 0) and mirrored,
    +-0 (log 2, log 2, 1/2, 1/2), NaN propagates (the clamp keeps it).

    Measured against ``logistic32`` on float32 lanes (whose pairs: Fast2Sum,
    a Newton step, the exact products, cost more than the halved lane count
    saved), float32, N = 2^24, out=, three alternating process pairs, min
    ns/elem: BCE with logits 3.59-3.63 -> 3.06-3.14 at 1 thread, 1.84-1.86
    -> 1.54-1.61 at 2; soft_margin 3.41-3.44 -> 2.69-2.70 and 1.83-1.86 ->
    1.46-1.47. What remains is compute: 76 zmm instructions per 8 float64
    lanes (the formula's share included), ~3.1 G per second per core at
    3.05 ns/elem, against 3.6 G fma/s measured for a plain fma chain."""
    a = abs(z)
    e = exp32(-a)
    big_e = e > 0.41421356237309503  # sqrt(2) - 1
    dk = 1.0 if big_e else 0.0
    num = e - dk  # exact for e >= 1/2 (Sterbenz), |error| <= 2^-54 below
    t = (e + 2.0) + dk
    u = 1.0 + e
    d = 1.0 / (t * u)
    s = (num * u) * d
    pos = t * d
    neg = e * pos
    # R(s^2) by Horner with fma, not ``_lg_r``'s even/odd split, which the
    # float64 functions keep for their bits: measured (BCE with logits,
    # float32, N = 2^24, out=, alternating processes) 3.05-3.08 against
    # 3.19-3.22 ns/elem at 1 thread, 1.58 against 1.62-1.65 at 2
    w = s * s
    big_r = w * fma(w, fma(w, fma(w, W4, W3), W2), W1)
    small = fma(dk, LN2, fma(s, big_r, s + s))
    big = a + small
    up = z >= 0.0
    return (big if up else small), (small if up else big), (pos if up else neg), (neg if up else pos)


# --- float32 lanes (the GPU's float32 logistic) ---------------------------------
# float32 data needs no float64 arithmetic for its transcendental part: the
# same work on float32 lanes halves the float64 work, which a GPU has few
# units for. To round the results to within 1 ULP of float32 after all, the
# few error-prone steps carry their rounding errors (float32 pairs, Fast2Sum,
# a Newton step). The CPU's vector units do float64 at half the float32 lane
# count, and there these pairs cost more than that (``logistic32_wide``).

_F = np.float32
_F0 = _F(0.0)
_F1 = _F(1.0)
_F2 = _F(2.0)
_FH = _F(0.5)
_INVLN2F = _F(INVLN2)
_SHIFTF = _F(12582912.0)  # 1.5 * 2^23
_SHIFTF_BITS = 0x4B400000
_LN2HIF = _F(0.693145751953125)  # 16 significant bits: k * _LN2HIF is exact for |k| <= 255
_LN2LOF = _F(1.428606765330187e-06)
_E7F = tuple(_F(1.0 / math.factorial(n)) for n in range(2, 8))  # 1/2!, ..., 1/7!
# fdlibm's e_logf.c: log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f/(2 + f),
# R(t) = LG1F t + LG2F t^2 + LG3F t^3 + LG4F t^4 on |s| <= 0.1716
_LG1F = _F(0.66666662693)
_LG2F = _F(0.40000972152)
_LG3F = _F(0.28498786688)
_LG4F = _F(0.24279078841)
_SQRT2M1F = _F(0.41421357)  # float32(sqrt(2) - 1)
_TINY32 = _F(2.0 ** -60)
_SMALL32 = _F(2.0 ** -28)


@njit(**CPU_JIT)
def _expneg32(x):
    """e^x = hi + lo for a float32 x <= 0 (or NaN), in float32 lanes.

    x = k ln2 + r + rl (Cody-Waite with fma, r + rl to ~2^-48 absolute);
    e^(r + rl) = 1 + r + (r^2 q(r) + rl (1 + r)), q the Taylor polynomial to
    r^7/7! (truncation 2^-27.5 relative on |r| <= ln2/2), summed as a float32
    pair p + pl (Fast2Sum); hi = p 2^k rounded once, also into the
    subnormal range (2^k is built as a subnormal power of two there, exact
    down to 2^-149), so hi is within ~0.52 ULP and hi + lo within ~2^-30
    relative. lo is 0 where pl 2^k would be subnormal (each operation on a
    subnormal costs a microcode assist of ~100 cycles on x86; it is below
    2^-126 <= 2^-28 hi wherever hi >= 2^-98, and for hi < 2^-98 its part
    is lost, hi alone is then rounded once). x < -104 gives (0, 0)."""
    xc = _F(-104.0) if x < _F(-104.0) else x
    kf = fma32(xc, _INVLN2F, _SHIFTF)  # 1.5 * 2^23 + k, k = round(x / ln2)
    k = kf - _SHIFTF
    r1 = fma32(-k, _LN2HIF, xc)  # exact
    r = fma32(-k, _LN2LOF, r1)
    rl = fma32(-k, _LN2LOF, r1 - r)  # r1 - r exact (Sterbenz)
    r2 = r * r
    r4 = r2 * r2
    c2, c3, c4, c5, c6, c7 = _E7F
    q = fma32(r4, fma32(r, c7, c6), fma32(r2, fma32(r, c5, c4), fma32(r, c3, c2)))
    s = _F1 + r
    sl = r - (s - _F1)  # exact: |r| < 1
    t = fma32(r2, q, fma32(r, rl, rl) + sl)
    p = s + t
    pl = t - (p - s)  # exact: |s| >= |t|
    ki = f32_bits(kf) - _SHIFTF_BITS  # k as an int32
    normal = bits_f32((ki + 127) << 23)
    sub = bits_f32(np.int32(1) << min(max(ki + 149, 0), 30))  # 2^k below 2^-126
    sc = normal if ki >= -126 else sub
    sc = sc if ki >= -149 else _F0
    # lo = pl 2^k only where that is a normal float32: |pl| >= 2^(-126 - k)
    thr = bits_f32((1 - min(ki, 0)) << 23)
    pl = pl if abs(pl) >= thr else _F0
    return p * sc, pl * sc


@njit(**CPU_JIT)
def logistic32(z):
    """``logistic`` for float32 data, in float32 lanes: the four outputs
    (float64 values) each round to float32 within 1 ULP (measured 0.57, 0.74
    at the subnormal edge |z| ~ 87.3; tests/test_math_accuracy.py), at about
    half the cost of the double-double ``logistic`` on the CPU (but slower
    there than ``logistic32_wide``); the GPU's version of
    ``fastloss.math.logistic32``. z must be a float32 value.

    e + el = e^-|z| (``_expneg32``). 1 + e + el = 2^k (1 + f + c) with k = 0,
    f = e, c = el below sqrt(2) - 1 (f exact: no rounding of 1 + e, so no
    cancellation for small e), and k = 1, f = (e - 1)/2, c = (el + the exact
    error of e - 1)/2 above.
    - log1p(e + el) = k ln2 + log1p(f) + c/(1 + f), log1p(f) by fdlibm's
      e_logf.c: f - f^2/2 + s (f^2/2 + R(s^2)), s = f/(2 + f); f^2/2 exact as
      a pair, k ln2hi + (f - f^2/2) by Fast2Sum, the sum kept as a float32 pair
      and added in float64: softplus(-|z|) within ~0.5 ULP, and softplus(|z|) =
      |z| + that pair in float64, rounded once at the store.
    - one division D = 1/((2 + f) u), u = fl(1 + f): s = f u D and
      r = (2 + f) D ~ 1/u to a few ULP; one Newton step with the exact
      residual 1 - u r (fma) and the tail 1 + f - u + c gives 1/(1 + f + c) =
      r + rl to ~2^-44. sigmoid(|z|) = 2^-k (r + rl), sigmoid(-|z|) =
      2^-k (e + el)(r + rl), each rounded once.
    No subnormal intermediate for |z| < 87.3 (where e^-|z| is normal): f is
    cut to 0 below 2^-28 in the polynomial terms (f^2/2 < 2^-29 f there),
    and for e < 2^-60 the Newton correction (< e) is dropped."""
    zf = _F(z)
    a = abs(zf)
    e, el = _expneg32(-a)
    big_e = e > _SQRT2M1F
    em1 = e - _F1
    em1l = e - (em1 + _F1)  # exact (Fast2Sum: 1 >= e)
    f = _FH * em1 if big_e else e
    c = _FH * (el + em1l) if big_e else el
    dk = _F1 if big_e else _F0
    u = _F1 + f
    uc = (f - (u - _F1)) + c  # 1 + f + c = u + uc
    tf = _F2 + f
    d = _F1 / (tf * u)
    r = tf * d
    rho = fma32(-u, r, _F1)  # exact residual
    rl = r * fma32(-uc, r, rho)
    rl = _F0 if e < _TINY32 else rl
    fp = f if abs(f) > _SMALL32 else _F0
    s = (fp * u) * d
    s2 = s * s
    s4 = s2 * s2
    big_r = fma32(s4, fma32(s4, _LG4F, _LG2F), s2 * fma32(s4, _LG3F, _LG1F))
    hf = _FH * fp * fp
    hl = fma32(_FH * fp, fp, -hf)  # exact: hf + hl = fp^2/2
    dh = f - hf
    dl = (f - dh) - hf  # exact: |f| >= |hf|
    tail = fma32(s, hf + big_r, fma32(c, r, fma32(dk, _LN2LOF, dl - hl)))
    kh = dk * _LN2HIF
    sh = kh + dh
    tail = tail + (dh - (sh - kh))  # exact error of kh + dh (|kh| >= |dh| or kh = 0)
    small = sh + tail
    small_lo = tail - (small - sh)
    small64 = np.float64(small) + np.float64(small_lo)
    big = np.float64(a) + small64
    half = _FH if big_e else _F1
    pos = np.float64(half * (r + rl))
    neg = np.float64(half * fma32(e, r, fma32(e, rl, el * r)))
    up = zf >= _F0
    return (big if up else small64), (small64 if up else big), (pos if up else neg), (neg if up else pos)


# --- float32 lanes on the CPU: the logistic loss of float32 data ---------------
# BCE with logits at its defaults is compute-bound on the CPU: float32 lanes
# hold twice the float64 lanes. ``logistic_loss32``'s polynomials
# (``fastloss.math.fit``, near-minimax fits of the relative error, then
# rounded to float32): e^r = 1 + r + r^2 P(r), P of degree 4 on |r| <= ln2/2
# (2^-28.0 with the rounded coefficients); log1p(f) = 2s + s w R(w),
# s = f/(2 + f), w = s^2, R of degree 2 on |s| <= 1/5 (2^-28.3)
_P2F = _F(0.4999999403953552)
_P3F = _F(0.1666652113199234)
_P4F = _F(0.04166838899254799)
_P5F = _F(0.008368710055947304)
_P6F = _F(0.001381461275741458)
_R1F = _F(0.666669487953186)
_R2F = _F(0.3995782434940338)
_R3F = _F(0.30360567569732666)
_LN2F = _F(LN2)
_LN2LF = _F(LN2 - float(_F(LN2)))  # ln2 = _LN2F + _LN2LF to ~2^-50
_CLAMPF = _F(104.0)  # e^-104 rounds to +0 in float32
_F1_5 = _F(1.5)
#: the float32 below ln 2: for a up to it e^-a > 1/2 + 2.8e-8, so eh >= 1/2
#: (and eh - 1 is exact); the next float32, fl(ln 2), exceeds ln 2: e < 1/2
_LN2F_BELOW = _F(0.69314712285995483)
#: R's coefficients scaled by powers of two (exact) for the polynomial in s2^2
_R1F_8, _R2F_32, _R3F_128 = _R1F / _F(8), _R2F / _F(32), _R3F / _F(128)
_TWOM24F = _F(2.0 ** -24)


@njit(**CPU_JIT)
def logistic_loss32(z, t):
    """(v, g) = ((1 - t) softplus(z) + t softplus(-z), sigmoid(z) - t) for
    float32 z and t (t in [0, 1]), in float32 lanes: BCE with logits at its
    defaults for float32 data on the CPU.

    Measured (tests/test_math_accuracy.py, 6.3e6 float32 logits against
    long double): the value within 0.81 ULP (hard and soft targets); the
    gradient within 0.81 ULP for t = 0 and 1.48 ULP for t = 1 (at z ~ 16,
    where sigmoid(z) - 1 is formed from the pair of sigmoid(z)), and for soft
    targets within 1.1 ULP of its larger term, also where the two cancel.
    ``logistic32_wide`` (float64 lanes, 0.5007 ULP) costs about 60 vector
    instructions per 8 elements, this about 110 per 16: measured (BCE with
    logits, N = 2^24, out=, alternating processes, ns/elem) 2.61-2.63 ->
    2.20-2.24 at 1 thread, 1.38 -> 1.16-1.17 at 2.

    The loop is bound by this function's dependency chain, not by its
    instruction count: a 16-lane iteration takes ~110 cycles in L1 with ~65
    cycles of work for the FP pipes, and removing 10 instructions off the
    chain changed nothing measurable. So the steps are ordered for a short
    chain: e >= 1/2 tested on a, not on eh; 2 + f formed from eh by one
    fma; the polynomial of the log's tail in s2^2 (one multiply less); the
    exp's polynomial added to its low part by fma; the division's residual
    as two independent fmas, applied by an fma; the value's small terms
    summed before the tail, which comes last; Fast2Sum for the value's pair.
    Measured (in-cache loop, 1 thread) 1.68 -> 1.53 ns/elem; BCE with
    logits (N = 2^24, out=, alternating processes) 1.06-1.07 -> 0.955-0.965
    at 2 threads.

    The few steps whose rounding the result would show carry it (float32
    pairs, each error term exact by Fast2Sum or fma):
    - e^-a = 2^-k e^r, a = |z|, r = k ln2 - a (Cody-Waite, the low part rl
      of r kept); e^r = 1 + r + r^2 P(r) summed as a pair ph + pl, scaled by
      2^(24 - k), then by 2^-24: one rounding also into the subnormal range;
      e = eh + el to ~2^-28 relative (+0 for a >= 104, NaN kept).
    - 1 + e = 2^dk (1 + f) (dk = 1 above e = 1/2, where f = (e - 1)/2 is
      exact), u = 1 + e and 2 + f as pairs; two divisions du = 1/uh, dt =
      1/th, each refined by its residual: sigmoid(a) = du (1 + rho),
      sigmoid(-a) = e sigmoid(a) = nh + nl; 2s = 2f/(2 + f) as s2 plus
      its residual times dt, log1p(e) = dk ln2 + 2s + s w R(w) summed as
      smh + tail.
    - g = sigmoid(z) - t as (high part - t) + low part: where the two
      cancel, the difference of the high parts is exact (Sterbenz).
    - v = c z + log1p(e), c = 1 - t for z >= 0 and -t below (every term
      >= 0, nothing cancels; c z = 0 for c = 0 also at infinite z), with the
      rounding errors of 1 - t and of c z added to the small part.
    """
    a = abs(z)
    xc = _CLAMPF if a > _CLAMPF else a  # NaN stays NaN
    kf = fma32(xc, _INVLN2F, _SHIFTF)  # 1.5 * 2^23 + k, k = round(a / ln2) in [0, 150]
    k = kf - _SHIFTF
    r1 = fma32(k, _LN2HIF, -xc)  # exact
    r = fma32(k, _LN2LOF, r1)
    rl = fma32(k, _LN2LOF, r1 - r)  # r1 - r exact
    r2 = r * r
    q = fma32(r2, fma32(r2, _P6F, fma32(r, _P5F, _P4F)), fma32(r, _P3F, _P2F))
    p = _F1 + r
    lo = fma32(r2, q, (r - (p - _F1)) + rl)  # r - (p - 1): the exact error of 1 + r
    ph = p + lo
    pl = lo - (ph - p)  # exact: |p| >= |lo|
    sc = pow2_24_minus_k32(kf)
    eh = (ph * sc) * _TWOM24F
    el = (pl * sc) * _TWOM24F
    big = a <= _LN2F_BELOW  # e >= 1/2 (early: a test on eh lengthened the chain)
    dk = _F1 if big else _F0
    hf = _FH if big else _F1
    fh = (eh - dk) * hf  # exact (Sterbenz)
    fl = el * hf
    uh = _F1 + eh
    ul = ((_F1 - uh) + eh) + el  # 1 + e = uh + ul
    th = fma32(eh, hf, _F1_5 if big else _F2)  # fl(2 + fh) in one step from eh
    tl = ((_F2 - th) + fh) + fl  # 2 + f = th + tl
    du = _F1 / uh
    dt = _F1 / th
    rho = fma32(-ul, du, fma32(-uh, du, _F1))  # 1 - (uh + ul) du
    nh = eh * du  # sigmoid(-a) = e sigmoid(a) = nh + nl
    nl = fma32(eh, du, -nh) + fma32(eh, du * rho, el * du)
    # 2s as (2f) dt, not 2 (f dt): exact where f is subnormal (dt = 1/2)
    s2 = (fh + fh) * dt
    res = fma32(-s2, th, fh + fh) + fma32(-s2, tl, fl + fl)  # 2f - s2 (th + tl)
    # s w R(w), s = s2/2, w = s^2, as s2 W R'(W), W = s2^2 (R' = R/8 at W/4)
    w4 = s2 * s2
    kh = dk * _LN2F
    smh = kh + s2
    lo2 = fma32(res, dt, ((kh - smh) + s2) + dk * _LN2LF)  # (kh - smh) + s2: exact
    tail = fma32(s2 * w4, fma32(w4, fma32(w4, _R3F_128, _R2F_32), _R1F_8), lo2)
    # z >= 0 by the sign bit (-0 goes below, with the same v and g): as a
    # float compare, LLVM made it one on float64 (the driver's widening of
    # x folded into it), two conversions and a mask merge per 16 lanes
    up = f32_bits(z) >= 0
    omy = _F1 - t
    omyl = (_F1 - omy) - t  # exact: 1 - t = omy + omyl
    coef = omy if up else -t
    coefl = omyl if up else _F0
    cz = _F0 if coef == _F0 else coef * z
    ce = fma32(coefl, z, fma32(coef, z, -cz))
    ce = ce if ce == ce else _F0  # NaN at infinite z
    # cz + smh = vh + ve by Fast2Sum on the larger and the smaller (both >=
    # 0): three steps on the chain where TwoSum took five
    czbig = cz >= smh
    hi = cz if czbig else smh
    lw = smh if czbig else cz  # a NaN cz goes here, and into vh
    vh = hi + lw
    ve = lw - (vh - hi)
    ve = ve if ve == ve else _F0  # NaN at infinite z
    v = vh + ((ve + ce) + tail)
    # sigmoid(z) - t from the pairs: where the two cancel, the difference of
    # the high parts is exact (Sterbenz) and the low part is added once
    g = fma32(du, rho, du - t) if up else (nh - t) + nl
    return v, g


@njit(**CPU_JIT)
def f32_pair(v):
    """A float64 v as two float32, hi = fl(v) and lo = fl(v - hi): hi + lo is
    v to ~2^-48 relative where both are normal. The loop-invariant factor of
    a float32-lane product that should round once (``cpu.elementwise.
    _scaled``'s 1/d, ``cpu.rowlanes.ce_row32``'s gradient factor)."""
    hi = np.float32(v)
    return hi, np.float32(v - np.float64(hi))


#: ``exp_gap32``'s results are e^(v - m) times 2^E32_SCALE_BITS
E32_SCALE_BITS = 64
#: how far below the row maximum ``exp_gap32`` computes (its ``lo``)
E32_RANGE = 128.0


@njit(**CPU_JIT)
def exp_gap32(v, m, negm, lo):
    """e^(v - m) 2^64 for float32 v <= m, in float32 lanes: the terms of
    float32 cross entropy's softmax on the CPU (``fastloss.cpu.rowlanes``).

    m is the row maximum (float32, |m| < 2^24), negm = -m and lo =
    fl(m - E32_RANGE), so lo < m. v below lo (also -inf) is taken as lo:
    e^(lo - m) 2^64 < 2^-120, where the true term is smaller still; the
    callers' sums and gradients do not see the difference (module doc of
    ``rowlanes``). NaN stays NaN. The scale 2^64 keeps every result normal
    (2^(k + 64) with k >= -185), so a term is rounded once, never into the
    subnormal range, and a product of it with a small factor rounds once.

    The difference d = v - m is not exact in float32 (v far smaller in
    magnitude than m): its rounding error dl is recovered by TwoSum and
    carried into the reduction, d + dl = k ln2 + r + rl (Cody-Waite with
    a 16-bit ln2 head, so r1 = d - k ln2_hi is exact), then e^r = 1 + r +
    r^2 P(r) (``logistic_loss32``'s P, 2^-28 relative) summed with the
    rounding error of 1 + r and rl in the small part, rounded once. Error:
    the final rounding plus about 0.2 ULP (the polynomial, rl r, the
    rounding of r): 0.69 ULP measured (tests/test_math_accuracy.py).
    v == m gives exactly 2^64. About 29 floating-point vector operations per
    16 lanes (36 instructions in the loop of ``rowlanes._terms``)."""
    xc = lo if v < lo else v  # NaN stays NaN
    dh = xc - m
    bb = dh - xc
    dl = (xc - (dh - bb)) + (negm - bb)  # d = dh + dl exactly (TwoSum)
    kf = fma32(dh, _INVLN2F, _SHIFTF)  # 1.5 * 2^23 + k, k = round(d / ln2) in [-185, 0]
    k = kf - _SHIFTF
    r1 = fma32(-k, _LN2HIF, dh)  # exact
    tl = fma32(-k, _LN2LOF, dl)
    r = r1 + tl
    rl = (r1 - r) + tl
    r2 = r * r
    q = fma32(r2, fma32(r2, _P6F, fma32(r, _P5F, _P4F)), fma32(r, _P3F, _P2F))
    p = _F1 + r
    lo2 = fma32(r2, q, (r - (p - _F1)) + rl)  # r - (p - 1): the exact error of 1 + r
    return (p + lo2) * pow2_k_plus_64_32(kf)


@njit(**CPU_JIT)
def log_sigmoid(z):
    return -softplus(-z)


@njit(**CPU_JIT)
def sigmoid(z):
    """1/(1 + e^-z) with relative accuracy in both tails: ``logistic``'s
    third output (LLVM drops the unused ones)."""
    return logistic(z)[2]


@njit(**CPU_JIT)
def tanh(x):
    """tanh(|x|) = -t/(2 + t), t = e^(-2|x|) - 1 as a double-double."""
    a = abs(x)
    th, tl = expm1_dd(-2.0 * a)
    dh, dl = _two_sum(2.0, th)
    dl += tl
    r = 1.0 / dh
    q = -th * r
    res = fma(q, dh, th) + (tl + q * dl)  # -(th + tl) - q (dh + dl), negated
    y = q - res * r
    y = 1.0 if a > 22.0 else y
    y = -y if x < 0.0 else y
    y = x if a < 2.0**-28 else y  # tanh(x) = x - x^3/3: rounds to x (+-0, subnormals)
    return y if x == x else x


_S3, _S5, _S7, _S9, _S11, _S13, _S15, _S17, _S19 = (
    1.0 / math.factorial(k) for k in (3, 5, 7, 9, 11, 13, 15, 17, 19))


@njit(**CPU_JIT)
def sinh(x):
    """sinh(|x|): its Taylor series for |x| < 1; (t + t/(1 + t))/2, t =
    e^|x| - 1, for |x| < 22; e^|x|/2 above."""
    a = abs(x)
    th, tl = expm1_dd(a if a < 22.0 else 0.0)
    dh, dl = _two_sum(1.0, th)
    dl += tl
    r = 1.0 / dh
    q = th * r
    res = fma(-q, dh, th) + (tl - q * dl)
    q += res * r
    small = 0.5 * (th + (q + tl))
    yh, yl, s1, s2 = exp_dd(a, -1.0)
    big = (yh * s1) * s2
    y = small if a < 22.0 else big
    # |x| < 1: the Taylor series a + a (z q(z)), z = a^2, to 1/19!: the
    # correction is below a/6, so the result is within ~0.6 ULP (the
    # t/(1+t) form above reached 1.03 ULP near 0.35)
    z = a * a
    q = fma(z, _S19, _S17)
    q = fma(q, z, _S15)
    q = fma(q, z, _S13)
    q = fma(q, z, _S11)
    q = fma(q, z, _S9)
    q = fma(q, z, _S7)
    q = fma(q, z, _S5)
    q = fma(q, z, _S3)
    y = (a + a * (z * q)) if a < 1.0 else y
    y = -y if x < 0.0 else y
    y = x if a < 2.0**-28 else y
    return y if x == x else x


@njit(**CPU_JIT)
def hypot(x, y):
    """sqrt(x^2 + y^2) without overflow or underflow; inf if either is inf."""
    a = abs(x)
    b = abs(y)
    hi = a if a > b else b
    lo = b if a > b else a
    # scale hi into [1, 2): multiply by 2^-e (two steps: e may be -1074..1023)
    hb = f64_bits(hi if hi > TINY_NORMAL else TINY_NORMAL)
    e = (hb >> 52) - 1023
    e1 = e >> 1
    sa = bits_f64((1023 - e1) << 52)
    sb = bits_f64((1023 - (e - e1)) << 52)
    ha = (hi * sa) * sb
    la = (lo * sa) * sb
    # s = ha^2 + la^2 as a double-double, h = sqrt(s) with one Newton correction
    p = ha * ha
    pl = fma(ha, ha, -p)
    q = la * la
    ql = fma(la, la, -q)
    s, sl = _two_sum(p, q)
    sl += pl + ql
    h = math.sqrt(s)
    rem = fma(-h, h, s) + sl
    h = h + rem / (2.0 * h)
    # undo the scaling: 2^e = 2^e1 2^(e - e1)
    r = (h * bits_f64((e1 + 1023) << 52)) * bits_f64((e - e1 + 1023) << 52)
    r = r if hi > 0.0 else 0.0
    r = r if x == x and y == y else NAN
    return INF if a == INF or b == INF else r


#: ``_log_pair``'s reduction points: j = round(64 m) for m in [sqrt2/2, sqrt2),
#: r_j = fl(64/j), and -log r_j as pairs LOG_CH[j - LOG_J0] + LOG_CL[...]
#: (mpmath at 120 bits; tests/test_math_accuracy.py recomputes them)
LOG_J0 = 45
LOG_J1 = 91
LOG_R = tuple(64.0 / j for j in range(LOG_J0, LOG_J1 + 1))
LOG_CH = (
    -0.35222059358935215, -0.3302416868705768, -0.30873548164961323, -0.28768207245178085,
    -0.26706278524904514, -0.2468600779315258, -0.22705745063534608, -0.20763936477824455,
    -0.18859116980754997, -0.16989903679539742, -0.15154989812720088, -0.13353139262452257,
    -0.11583181552512165, -0.09844007281325251, -0.0813456394539524, -0.06453852113757116,
    -0.04800921918636066, -0.03174869831458027, -0.015748356968139112, 0.0,
    0.015504186535965199, 0.03077165866675366, 0.04580953603129422, 0.060624621816434854,
    0.07522342123758752, 0.08961215868968717, 0.10379679368164355, 0.11778303565638351,
    0.13157635778871932, 0.14518200984449783, 0.15860503017663852, 0.17185025692665928,
    0.18492233849401193, 0.19782574332991992, 0.21056476910734964, 0.2231435513142097,
    0.23556607131276697, 0.2478361639045812, 0.259957524436926, 0.2719337154836418,
    0.2837681731306446, 0.2954642128938359, 0.3070250352949119, 0.3184537311185346,
    0.32975328637246804, 0.3409265869705932, 0.3519764231571781,
)
LOG_CL = (
    1.1623903064849822e-17, -1.6927253978145054e-17, -1.5025836482434425e-17,
    -2.6071606164425637e-17, -2.3896107240262357e-17, -6.678539813576451e-18,
    4.326372045075968e-18, -1.2053243216686127e-17, -9.915070540571144e-18,
    4.868008764439086e-19, -1.2105853272368787e-17, 3.664457663660086e-18,
    -4.3384843698080944e-18, 4.439009633675136e-18, -1.6076294039775555e-18,
    6.470486661692933e-18, 2.030356617224395e-18, -3.0382263084680854e-18,
    -1.0021578630528958e-18, 0.0, -3.2783210228924137e-19, 1.0431732029005972e-18,
    1.6823639049745016e-19, 2.6424025938726934e-18, -4.195880720316434e-18,
    -1.9573659817110993e-18, -3.195893222617445e-18, -1.1971685747593662e-18,
    1.112300087972959e-17, 8.242418783022477e-18, 2.583386492298558e-18, -6.022453821011369e-18,
    -7.384679440503435e-18, -7.995487338741543e-18, 1.136310596906137e-17,
    -9.091270597324798e-18, -2.394337149518734e-18, 8.384472133019162e-18,
    2.4167516341742964e-17, 7.833196376974436e-19, -6.448868003452105e-18,
    -7.768320796245443e-18, 1.5578716077124932e-18, -6.407962483026777e-19,
    -2.5633554999431966e-17, -2.069678002794501e-17, 2.0005853013367377e-17,
)

# 1/n for the tail of log1p(u) = u - u^2/2 + u^3 (1/3 - u/4 + ... - u^8/11)
_L3, _L4, _L5, _L6, _L7, _L8, _L9, _L10, _L11 = (1.0 / n for n in range(3, 12))


@njit(**CPU_JIT)
def _log_pair(x):
    """log x for a finite x > 0 (subnormals included) as a double-double
    (h, l), relative error ~2^-65: for pow_pos, where y log x up to ~745
    turns the log's relative error into the power's (fdlibm's log parts,
    ~2^-60, gave 9 ULP).

    x = 2^k m, m in [sqrt2/2, sqrt2) (so x near 1 has k = 0); c = 1/r with
    r = fl(64/j), j = round(64 m): m r = 1 + u exactly as a pair (an fma
    product; m r - 1 exact by Sterbenz), |u| < 0.0112; log x = k ln2 +
    log c + log1p(u), with ln2 and log c as pairs (``LOG_CH``/``LOG_CL``)
    and log1p(u) = u - u^2/2 (a pair) + u^3 (1/3 - u/4 + ... ) in float64
    (that tail is below u^2/3 relative, so its rounding is below 2^-65).
    At j = 64 (m within 1/128 of 1) r = 1 and log c = 0: relative accuracy
    down to x -> 1. Other cases have |log x| > 0.0045, above the terms'
    errors. The table is a tuple (indexed in registers or on the stack, no
    global array)."""
    k, m = _exp_mant(x)
    dk = float(k)
    j = int(m * 64.0 + 0.5) - LOG_J0
    r = LOG_R[j]
    ph = m * r
    pl = fma(m, r, -ph)
    uh, ul = _two_sum(ph - 1.0, pl)
    # log1p(uh + ul): uh - uh^2/2 (exact pair) + ul (1 - uh) + uh^3 tail
    hu = 0.5 * uh
    sq = hu * uh
    sql = fma(hu, uh, -sq)
    u2 = uh * uh
    tail = uh * u2 * (_L3 - uh * (_L4 - uh * (_L5 - uh * (_L6 - uh * (_L7 - uh * (
        _L8 - uh * (_L9 - uh * (_L10 - uh * _L11))))))))
    a, ae = _two_sum(uh, -sq)
    ae += (ul - uh * ul) - sql + tail
    # + log c + k ln2 (k LN2HI exact: 32-bit constant, |k| < 1100)
    b, be = _two_sum(LOG_CH[j], a)
    c, ce = _two_sum(dk * LN2HI, b)
    lo = ce + (be + (ae + (LOG_CL[j] + dk * LN2LO)))
    h = c + lo
    return h, (c - h) + lo


@njit(**CPU_JIT)
def pow_pos(x, y):
    """x^y for x >= 0 as e^(y log x) with log x a double-double
    (``_log_pair``, ~2^-65 relative), the product y log x as a pair, and
    e^(ph + pl) = e^ph (1 + pl); x^0 = 1."""
    lh, ll = _log_pair(x)
    ph = y * lh
    pl = fma(y, lh, -ph) + y * ll
    eh, el, s1, s2 = exp_dd(ph, 0.0)
    # the small terms first (eh + eh pl, then + el, rounded twice: 1.05 ULP)
    r = ((eh + fma(eh, pl, el)) * s1) * s2
    r = INF if ph > EXP_OVF else r
    r = 0.0 if ph < -746.0 else r
    r = (INF if y > 0.0 else 0.0) if x == INF else r
    r = (0.0 if y > 0.0 else INF) if x == 0.0 else r
    r = 1.0 if y == 0.0 or x == 1.0 else r
    return r if x == x and y == y or y == 0.0 or x == 1.0 else x + y


@njit(**CPU_JIT)
def logistic_dd(z):
    """``logistic``'s four values as double-double pairs, for finite z:
    (softplus(z), softplus(-z), sigmoid(z), sigmoid(-z)) as
    (h0, l0, h1, l1, h2, l2, h3, l3), each h + l to ~2^-55 relative (where
    e^-|z| is normal; below that the sigmoid(-|z|) pair is only as exact as
    its head). For losses that combine several of them before one rounding
    (sigmoid_focal, float64)."""
    a = abs(z)
    yh, yl, s1, s2 = exp_dd(-a, 0.0)
    eh = (yh * s1) * s2
    el = (yl * s1) * s2
    dk, f, t = log1p_parts(eh, el)
    b1, e1 = _two_sum(dk * LN2HI, f)
    sh, sl = _two_sum(b1, -t)
    sl += e1
    bh, bl = _two_sum(a, sh)
    bl += sl
    sh2 = sh + sl
    sl = (sh - sh2) + sl
    bh2 = bh + bl
    bl = (bh - bh2) + bl
    dh = 1.0 + eh
    dl = ((1.0 - dh) + eh) + el
    r = 1.0 / dh
    rc = fma(-r, dh, 1.0)
    pl = r * (rc - r * dl)
    q = eh * r
    res = fma(-q, dh, eh) + (el - q * dl)
    ql = res * r
    if z >= 0.0:
        return bh2, bl, sh2, sl, r, pl, q, ql
    return sh2, sl, bh2, bl, q, ql, r, pl


@njit(**CPU_JIT)
def _parts_dd(dk, f, t):
    """dk ln2_hi + f - t (fdlibm's log parts, f exact, t small) as a
    normalized double-double (hi, lo)."""
    b1, e1 = _two_sum(dk * LN2HI, f)
    h, l = _two_sum(b1, -t)
    l += e1
    s = h + l
    return s, (h - s) + l


@njit(**CPU_JIT)
def log_dd(x):
    """log x as a double-double (hi, lo) for a finite normal x > 0."""
    return _parts_dd(*_log_parts(x))


@njit(**CPU_JIT)
def log1p_dd(a, al):
    """log1p(a + al) as a double-double (hi, lo), for finite a + al > -1
    with |al| <= ulp(a) (``log1p_parts``)."""
    return _parts_dd(*log1p_parts(a, al))
