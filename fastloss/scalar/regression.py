"""Regression losses: value and derivative of one element.

Every formula has the signature ``f(x, y, q, p0, p1, p2) -> (value, d value/dx)``
on float64 scalars: ``x`` the prediction, ``y`` the target, ``q`` a per-element
auxiliary value (unused here) and ``p0..p2`` the loss's parameters in the order
of its spec in ``fastloss.catalog``. The CPU and CUDA drivers call these; they
are the only place each formula is written.
"""

import math

import numpy as np
from numba import njit

from fastloss._config import JIT
from fastloss.math import (
    F64_DATA,
    FIXED_KERNEL,
    LN2_HI,
    LN2_LO,
    exp32,
    exp_pair,
    log,
    log1p,
    sign,
    xmul,
)
from fastloss.math._cpu import exp_dd, log1p_dd
from fastloss.math._intrin import fma, fma32
from fastloss.scalar.binary import _two_diff
from fastloss.scalar.multiclass import dd_add, dd_mul, dd_quot, dd_round


@njit(**JIT)
def mse(x, y, q, p0, p1, p2):
    """Squared error d^2, d = x - y; derivative 2d.

    fl(x - y) has relative error <= u, so d^2 is within ~1.5 ULP even when
    x ~ y (the subtraction is the only rounding that matters)."""
    d = x - y
    return d * d, 2.0 * d


@njit(**JIT)
def mae(x, y, q, p0, p1, p2):
    """Absolute error |d|; derivative sign(d), 0 at d = 0.

    float32 data (``F64_DATA`` False) in float32 lanes, 16 to an AVX-512
    vector: fl(x - y) is the correctly rounded difference, so |fl(x - y)|
    is the correctly rounded value and its sign the exact derivative's;
    nothing is lost against the float64 evaluation, and its four
    conversions per element go. Measured (float32, out=): 1 thread, N =
    2^16, 0.55 -> 0.31 ns/elem; 2 threads, N = 2^24, in the machine's fast
    bandwidth state (a 2-thread triad of ~56 GB/s) 68-72% -> 82-87% of that
    triad."""
    if not F64_DATA:
        d32 = np.float32(x) - np.float32(y)
        return np.float64(abs(d32)), np.float32(sign(d32))
    d = x - y
    return abs(d), sign(d)


@njit(**JIT)
def msle(x, y, q, p0, p1, p2):
    """Squared log error (log1p(x) - log1p(y))^2; derivative 2 r / (1 + x).

    The difference of logs cancels when x ~ y; r is the log of the ratio
    R = (1 + x)/(1 + y), from one log1p whose argument is >= -1/2 (condition
    number <= 1.45): r = log1p((x - y)/(1 + y)) where R >= 1/2, and
    r = -log1p((y - x)/(1 + x)) (the log of 1/R > 2) where R < 1/2. The
    ratio itself is never formed: it underflows at x = -1 + 2^-53,
    y = 1e308 (float64), where r = -745.9. float64 data (finite x != y):
    the same from pairs, rounded once (``_msle_dd``).
    Domain x, y > -1 (checked by validation)."""
    if x == math.inf and y != math.inf:
        return math.inf, 0.0  # r -> inf, 2r/(1+x) -> 0
    ax = 1.0 + x
    ay = 1.0 + y
    up = ax >= 0.5 * ay
    num = x - y if up else y - x
    den = ay if up else ax
    if F64_DATA and x != y and abs(y) < math.inf:
        return _msle_dd(x, y, up)
    # float32 data (its quotient cannot overflow: |num| < 2^129, den >=
    # 2^-24), and float64's x = y, y = inf and NaN
    r = log1p(num / den)
    r = r if up else -r
    return r * r, 2.0 * r / ax


@njit(**JIT)
def _msle_dd(x, y, up):
    """``msle`` for float64 data, finite x != y: the quotient (num/den, each
    an exact pair from TwoSum), r = log1p of it (``log1p_dd``), r^2 and
    2 r / (1 + x) as pairs, each rounded once. Where the quotient may
    overflow (|num| > 2^900 den) the numerator is scaled by 2^-600 and
    600 ln 2 added back: the quotient is then above 2^247, so log1p of it
    is its log to far below an ULP. The plain float64 form
    rounds num, den, the quotient and r, and r^2 doubles r's error: 4.75
    ULP measured at ordinary inputs (x = 1.1e-20, y = 5.5e-16)."""
    if up:
        nh, nl = _two_diff(x, y)
        bh, bl = _two_diff(1.0, -y)
    else:
        nh, nl = _two_diff(y, x)
        bh, bl = _two_diff(1.0, -x)
    s = 2.0**-600 if abs(nh) > 2.0**900 * bh else 1.0
    th, tl = dd_quot(nh * s, nl * s, bh, bl)
    rh, rl = log1p_dd(th, tl)
    if s != 1.0:
        rh, rl = dd_add(rh, rl, 600.0 * LN2_HI, 600.0 * LN2_LO)
    if not up:
        rh, rl = -rh, -rl
    vh, vl = dd_mul(rh, rl, rh, rl)
    gh, gl = dd_quot(2.0 * rh, 2.0 * rl, *_two_diff(1.0, -x))
    return dd_round(vh, vl), dd_round(gh, gl)


@njit(**JIT)
def huber(x, y, q, delta, p1, p2):
    """Huber: d^2/2 for |d| <= delta, else delta (|d| - delta/2); derivative
    clip(d, -delta, delta). Huber, "Robust estimation of a location parameter",
    Ann. Math. Statist. 1964.

    Where x - y overflows between finite x and y (float64 data only:
    ``F64_DATA``), the linear branch is 2 delta (|x/2 - y/2| - delta/4),
    which does not. The linear branch's derivative is copysign(delta, d):
    there d is neither 0 nor NaN, so it equals delta sign(d) bit for bit,
    without sign's compares and selects in the vectorized loop (float32,
    N = 2^24, out=, 1 thread: 1.00 -> 0.83 ns/elem; float64 1.84 -> 1.53).

    The CPU kernel for float32 data with delta a float32 number in [1, 2^64]
    (``LossSpec.fixed``, ``FIXED_KERNEL``) computes in float32 lanes
    instead: ``_huber32``."""
    if FIXED_KERNEL and not F64_DATA:
        # compile-time flags: Numba prunes the branch, and the gradient
        # keeps its type, a float32 pair (``cpu.elementwise._scaled``)
        v32, g32 = _huber32(np.float32(x), np.float32(y), np.float32(delta))
        return np.float64(v32), g32
    d = x - y
    a = abs(d)
    if a <= delta:
        return 0.5 * d * d, d
    if a > delta:
        if F64_DATA and a == math.inf and abs(x) != math.inf and abs(y) != math.inf:
            h = abs(0.5 * x - 0.5 * y)
            return 2.0 * (delta * (h - 0.25 * delta)), math.copysign(delta, d)
        return delta * (a - 0.5 * delta), math.copysign(delta, d)
    return d, d  # NaN


@njit(**{**JIT, "forceinline": True})
def _huber32(x, y, delta):
    """``huber`` of float32 x and y in float32 lanes, 16 to an AVX-512
    vector instead of 8 float64: (value, (gh, gl)), the gradient as a pair
    whose sum is exact, which the kernel scales by 1/n and rounds once
    (``cpu.elementwise._scaled``). delta a float32 number in [1, 2^64]
    (the kernel's ``catalog.Float32In`` condition): delta/2 is exact;
    where x - y overflows float32 between finite x and y, the value
    delta (|x - y| - delta/2) >= |x - y| - 1/2 overflows too; and the
    quadratic branch's |x - y| <= 2^64 keeps its products finite.

    - x - y = d + e exactly (TwoSum; d = fl(x - y) is the correctly
      rounded difference).
    - |x - y| <= delta decides the branch: a = |d| > delta, or a = delta
      and e carries |x - y| above it.
    - Quadratic: (d + e)^2/2 = (d/2) d + d e + e^2/2 by one fma of the
      first two (d e is within 2^-24 of the sum, e^2/2 within 2^-48):
      rounded once but where (d/2) d + d e falls on a rounding tie that
      e^2/2 would break, 1 ULP (the audit's x = -2^25, y = 1, delta =
      2^40: (d/2) d + d e = 2^49 + 2^25, exactly half an ULP above 2^49).
      d/2 is exact wherever the value is not below float32's subnormals.
    - Linear: delta (|x - y| - delta/2) = delta (s + c), s = fl(a -
      delta/2) and c its exact error (Fast2Sum: a > delta/2) plus e's
      share of |x - y|; one fma: delta s + delta c, rounded about once.
      Where delta s overflows (a = inf among them: an infinite input, or
      an overflowed d) the value is inf: c, then up to delta/2, may
      overflow the other way in delta c.
    - Gradient: (d, e) in the quadratic branch; (copysign(delta, d), 0)
      in the linear one.
    NaN: d is NaN, the quadratic branch returns it.

    Measured against the float64-lane kernel it replaces (the kernel
    called directly, delta = 1 against 1 + 1e-7, 1 thread, alternating,
    ns/elem): N = 2^16 0.70-0.76 -> 0.57-0.58, N = 2^24 0.77-0.78 ->
    0.66-0.67."""
    d = x - y
    bv = d - x
    e = (x - (d - bv)) + (-y - bv)
    a = abs(d)
    se = e if d > 0 else -e  # e's share of |x - y|
    lin = (a > delta) | ((a == delta) & (se > 0))
    h = np.float32(0.5) * d
    vq = fma32(h, d, d * e)
    half = np.float32(0.5) * delta
    s = a - half
    c = ((a - s) - half) + se
    vl = fma32(delta, s, delta * c)
    vl = vl if delta * s < np.float32(math.inf) else np.float32(math.inf)
    if lin:
        return vl, (np.float32(math.copysign(delta, d)), np.float32(0.0))
    return vq, (d, e)


@njit(**JIT)
def smooth_l1(x, y, q, beta, p1, p2):
    """Smooth L1 (Girshick, Fast R-CNN 2015): d^2/(2 beta) for |d| < beta, else
    |d| - beta/2; derivative d/beta or sign(d). beta = 0 is exactly mae.

    One quotient q = d/beta serves both: the value d (q/2) is the same
    float64 number as d ((d/2)/beta) wherever q/2 is normal. For float32
    data (``F64_DATA`` False) q is d times 1/beta (hoisted out of the loop;
    a vector division costs more than the rest of the formula): within
    2^-52 of d/beta, which the rounding to float32 does not see beyond
    2^-28 ULP. 1/beta is capped at 2^1000: below beta = 2^-1000 only d = 0
    is in the quadratic branch (float32 data), and 0 times the cap is 0.

    At beta = 1 (the default) smooth L1 is huber at delta = 1, value and
    gradient (at |d| = 1 both branches give 1/2 and +-1): the CPU kernel of
    that beta for float32 data (``LossSpec.fixed``, ``FIXED_KERNEL``) is
    huber's float32-lane ``_huber32``."""
    if FIXED_KERNEL and not F64_DATA:
        # compile-time flags, as in ``huber``
        v32, g32 = _huber32(np.float32(x), np.float32(y), np.float32(1.0))
        return np.float64(v32), g32
    d = x - y
    a = abs(d)
    if F64_DATA:
        q = d / beta
    else:
        q = d * min(1.0 / beta, 2.0 ** 1000)
    if a < beta:
        return d * (0.5 * q), q
    return a - 0.5 * beta, sign(d)


@njit(**JIT)
def pseudo_huber(x, y, q, delta, p1, p2):
    """Pseudo-Huber delta^2 (sqrt(1 + u^2) - 1), u = d/delta; derivative
    d / sqrt(1 + u^2).

    With a = |d|, the ratio rho = min(a, delta) / max(a, delta) <= 1 and
    S = sqrt(1 + rho^2) (no overflow, no cancellation), the value is
    A a / (S + B) and the derivative sign(d) A / S, where (A, B) = (a, 1)
    for a <= delta and (delta, rho) otherwise: sqrt(1 + u^2) - 1 = u^2 /
    (h + 1), h = S or |u| S. The product A (a / (S + B)) rounds once into
    the subnormal range, and no intermediate overflows before the result
    does (u itself is never formed: it overflows for tiny delta). float64
    data: the same from double-double pairs, rounded once
    (``_pseudo_huber_dd``)."""
    if F64_DATA:
        return _pseudo_huber_dd(x, y, delta)
    d = x - y
    a = abs(d)
    small = a <= delta
    r = a / delta if small else delta / a
    sq = math.sqrt(1.0 + r * r)
    big_a = a if small else delta
    # a = inf (delta is finite): rho = 0, the value inf, the derivative
    # +-delta
    v = big_a * (a / (sq + (1.0 if small else r)))
    return v, math.copysign(big_a / sq, d)


@njit(**JIT)
def _dd_sqrt(ah, al):
    """sqrt(ah + al) as a pair, ah > 0 (one Newton correction)."""
    r = math.sqrt(ah)
    return dd_add(r, 0.0, (fma(-r, r, ah) + al) / (2.0 * r), 0.0)


@njit(**JIT)
def _pseudo_huber_dd(x, y, delta):
    """``pseudo_huber`` for float64 data, from pairs rounded once: d = x - y
    exact (TwoSum), rho, rho^2, S (one Newton step), a / (S + B), the value
    and the derivative as pairs. Where d overflows between finite x and y,
    d/2 = x/2 - y/2 (exact halves) and delta/2 stand in (rho and the
    derivative are unchanged, the value is doubled at the end). Where
    max(a, delta) < 2^-900 the ratio's terms are scaled by 2^600, so that
    ``dd_quot``'s reciprocal does not overflow. The plain float64 forms
    round d, u, h, h + 1 and each product: 3 ULP measured at ordinary inputs
    (tests/test_oracle.py::test_pseudo_huber_log_cosh_float64_random)."""
    d = x - y
    ovf = abs(d) == math.inf and abs(x) < math.inf and abs(y) < math.inf
    s = 0.5 if ovf else 1.0
    dh, dl = _two_diff(s * x, s * y)
    ah, al = (dh, dl) if dh >= 0.0 else (-dh, -dl)
    ds = s * delta  # inexact only for a subnormal delta, where rho ~ 0
    small = ah <= ds
    nh, nl, bh, bl = (ah, al, ds, 0.0) if small else (ds, 0.0, ah, al)
    k = 2.0**600 if bh < 2.0**-900 else 1.0
    rh, rl = dd_quot(nh * k, nl * k, bh * k, bl * k)
    qh, ql = dd_mul(rh, rl, rh, rl)
    sh, sl = _dd_sqrt(*dd_add(1.0, 0.0, qh, ql))
    ch, cl = (1.0, 0.0) if small else (rh, rl)
    th, tl = dd_quot(ah, al, *dd_add(sh, sl, ch, cl))
    big_h, big_l = (ah, al) if small else (delta, 0.0)
    vh, vl = dd_mul(big_h, big_l, th, tl)
    gh, gl = dd_quot(big_h, big_l, sh, sl)
    v = dd_round(vh, vl) * (2.0 if ovf else 1.0)
    g = math.copysign(dd_round(gh, gl), dh)
    if abs(d) == math.inf and not ovf:  # an infinite input
        v, g = math.inf, math.copysign(delta, d)
    return v, g


@njit(**JIT)
def log_cosh(x, y, q, p0, p1, p2):
    """log(cosh(d)); derivative tanh(d).

    With a = |d|, one log1p, one exponential and one division:
    - a <= 1: log1p(c) and sinh a / (1 + c), with c = cosh a - 1 and sinh a
      from their Taylor series (``_cosh_sinh_tails32`` here,
      ``_cosh_sinh_tails`` in ``_log_cosh_dd``): relative accuracy as
      a -> 0, where the forms through e^-a cancel;
    - a > 1: a - ln 2 + log1p(e) and (1 - e) / (1 + e), e = e^-2a, with
      ln 2 split in two parts (no overflow of cosh, no cancellation: the
      result is >= 0.43).
    The two share log1p's argument and the quotient's denominator 1 + c or
    1 + e, so the vectorized loop evaluates each function once. float32
    data: in plain float64 to float32 grade, e from ``exp32`` (2^-34),
    log1p on [0, 0.55) by a series (2^-35) and the cosh and sinh tails to
    2^-35 and 2^-40 (``_cosh_sinh_tails32``), invisible after rounding to
    float32: measured at most 0.5005 ULP (value) and 0.5001 (gradient) over
    2e6 float32 pairs against long double. The series were 2^-39 and 2^-56
    before: 3.21-3.29 against 2.76-2.84 ns/elem now (N = 2^24, 1 thread,
    out=, alternating processes). float64 data: the same from double-double
    pairs, each result rounded once (``_log_cosh_dd``)."""
    if F64_DATA:
        return _log_cosh_dd(x, y)
    d = x - y
    a = abs(d)
    e = exp32(-2.0 * a)
    z = a * a
    ct, st = _cosh_sinh_tails32(z)
    if a > 1.0:
        h, c, n = (a - LN2_HI) - LN2_LO, e, 1.0 - e
    else:
        h, c, n = 0.0, 0.5 * z + 0.5 * z * ct, a + a * st
    # c in [0, 0.55): log1p(c) = 2 atanh(s), s = c / (2 + c) <= 0.22, by its
    # series to s^13 (the rest < 2^-35 relative), and s and the quotient
    # n / (1 + c) from one reciprocal
    r = 1.0 / ((1.0 + c) * (2.0 + c))
    s = c * (1.0 + c) * r
    q = s * s
    lg = 2.0 * s + 2.0 * s * q * (_A1 + q * (_A2 + q * (_A3 + q * (_A4 + q * (_A5 + q * _A6)))))
    return h + lg, math.copysign(n * (2.0 + c) * r, d)


#: atanh(s) / s = 1 + sum_k s^(2k) / (2k + 1)
_A1, _A2, _A3, _A4, _A5, _A6 = (1.0 / (2 * k + 1) for k in range(1, 7))


#: (cosh a - 1) / (a^2 / 2) = 1 + sum_k C_k a^(2k), C_k = 2 / (2k + 2)!, and
#: sinh a / a = 1 + sum_k S_k a^(2k), S_k = 1 / (2k + 1)!; to k = 8 the
#: omitted terms are below 1e-17 for a <= 1
_COSH_C = tuple(2.0 / math.factorial(2 * k + 2) for k in range(1, 9))
_C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8 = _COSH_C
_SINH_C = tuple(1.0 / math.factorial(2 * k + 1) for k in range(1, 9))
_S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8 = _SINH_C


@njit(**JIT)
def _cosh_sinh_tails(z):
    """The series tails (cosh a - 1)/(a^2/2) - 1 and sinh a / a - 1 at
    z = a^2 <= 1 (each < 0.18, Horner)."""
    ct = z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * (_C6 + z * (_C7 + z * _C8)))))))
    st = z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * (_S6 + z * (_S7 + z * _S8)))))))
    return ct, st


@njit(**JIT)
def _cosh_sinh_tails32(z):
    """``_cosh_sinh_tails`` to float32 grade (z <= 1): cosh's tail to a^10
    (the rest < 2 / 14! < 2^-35 relative to 1 + C) and sinh's to a^12 (the
    rest < 1 / 15! < 2^-40), for ``log_cosh``'s float32 data."""
    ct = z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * _C5))))
    st = z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    return ct, st


@njit(**JIT)
def _log_cosh_dd(x, y):
    """``log_cosh`` for float64 data: value and gradient from pairs, each
    rounded once. d = x - y exact (TwoSum), a = |d| = ah + al;
    - a <= 1: c = cosh a - 1 = (a^2/2)(1 + C) and sinh a = a (1 + S), the
      series tails C, S < 0.18 in plain float64 (their rounding reaches
      the results scaled by <= 0.18);
    - a > 1: e = e^-2a (``exp_dd``), al's first-order term -2 al e folded
      into its low part; the value a - ln 2 + log1p(e).
    One ``log1p_dd`` of c or e, and one pair quotient, sinh a / (1 + c) or
    (1 - e)/(1 + e): tanh. The plain float64 forms round a, sinh, its
    square, the log1p argument and the sums (3 ULP measured at ordinary
    inputs). a = inf (x - y overflows, or an infinite input): inf and +-1."""
    dh, dl = _two_diff(x, y)
    ah, al = (dh, dl) if dh >= 0.0 else (-dh, -dl)
    ct, st = _cosh_sinh_tails(ah * ah)
    qh, ql = dd_mul(ah, al, ah, al)
    ch, cl = dd_mul(0.5 * qh, 0.5 * ql, *dd_add(1.0, 0.0, ct, 0.0))
    sh, sl = dd_mul(ah, al, *dd_add(1.0, 0.0, st, 0.0))
    yh, yl, s1, s2 = exp_dd(-2.0 * ah, 0.0)
    eh = (yh * s1) * s2
    el = (yl * s1) * s2 - 2.0 * al * eh
    big = ah > 1.0
    if big:
        ch, cl = eh, el
        sh, sl = dd_add(1.0, 0.0, -eh, -el)
    # log1p(c) = c below 1e-150 (c^2/2 is under 2^-400 of it)
    lh, ll = log1p_dd(ch, cl) if ch >= 1e-150 else (ch, cl)
    if big:
        vh, vl = dd_add(ah, al, -LN2_HI, -LN2_LO)
        lh, ll = dd_add(vh, vl, lh, ll)
    gh, gl = dd_quot(sh, sl, *dd_add(1.0, 0.0, ch, cl))
    v = dd_round(lh, ll)
    g = dd_round(gh, gl)
    if ah == math.inf:
        v, g = math.inf, 1.0
    return v, math.copysign(g, dh)


@njit(**JIT)
def quantile(x, y, q, tau, p1, p2):
    """Pinball loss max(tau r, (tau - 1) r), r = y - x; derivative -tau where
    y > x, else 1 - tau. Koenker & Bassett, Econometrica 1978.

    Where y - x overflows between finite x and y (float64 data only:
    ``F64_DATA``), r/2 = y/2 - x/2 is used (the value is then 2 (tau r/2),
    finite when tau < 1/2 or so)."""
    r = y - x
    s = 1.0
    if F64_DATA and abs(r) == math.inf and abs(x) != math.inf and abs(y) != math.inf:
        r = 0.5 * y - 0.5 * x
        s = 2.0
    if r > 0.0:
        return s * (tau * r), -tau
    if r <= 0.0:
        return s * ((tau - 1.0) * r), 1.0 - tau
    return r, r  # NaN


@njit(**JIT)
def poisson_nll(x, y, q, log_input, p1, p2):
    """Poisson negative log-likelihood without the log(y!) term.

    log_input (p0 = 1): e^x - y x, derivative e^x - y.
    otherwise:          x - y log x, derivative 1 - y/x, with 0 log 0 = 0.
    Exact: no epsilon is added to x (PyTorch adds 1e-8).

    The derivative 1 - y/x is computed as (x - y)/x: x - y is exact where x
    and y are close (Sterbenz), so it does not cancel at x ~ y (1 - y/x was
    2x off at x = 1 - 2^-53, y = 1), and y/x does not overflow where 1/x does
    (subnormal x and y). x = y = 0 gives the limit 1 (y log x is 0 at y = 0),
    x = 0 < y gives -inf, x = inf gives 1 (NaN if y = inf too), as before."""
    if log_input != 0.0:
        # e^x as a pair: e^x - y cancels near x = log y (the gradient's zero)
        e, el = exp_pair(x)
        if e == math.inf:  # x > 709.78: e^x dominates y x (no limit if y = inf)
            return (math.inf if y != math.inf else math.nan) + 0.0 * y, math.inf - y
        return (e - xmul(y, x)) + el, (e - y) + el
    if x == math.inf:
        return math.inf, 1.0 - xmul(y, 0.0)
    # 0/0 at x = y = 0: the limit 1 (1 - 0/x = 1 for every x > 0)
    g = (x - y) / x if (x != 0.0 or y != 0.0) else 1.0
    return x - xmul(y, log(x)), g
