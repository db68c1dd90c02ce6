"""Rounding exact values to a float format, and distances in ULPs.

The truth is the exact value (an mpmath number at high precision) rounded to
nearest-even in the output dtype, subnormals and overflow included; the error
of a result is its distance to that truth counted in representable numbers
(``ulp_distance``), so 0 means correctly rounded, and the step from the
largest finite number to infinity counts as one ULP.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

#: (precision in bits, minimum normal exponent, maximum exponent)
_FORMATS = {
    np.dtype(np.float32): (24, -126, 127),
    np.dtype(np.float64): (53, -1022, 1023),
}


def round_to_dtype(x, dtype) -> float:
    """The mpmath number ``x`` rounded to nearest (ties to even) in ``dtype``,
    returned as a Python float (exactly representable in ``dtype``)."""
    p, emin, emax = _FORMATS[np.dtype(dtype)]
    x = mpmath.mpf(x)
    if mpmath.isnan(x):
        return math.nan
    if mpmath.isinf(x):
        return math.inf if x > 0 else -math.inf
    if x == 0:
        return 0.0
    e = int(mpmath.frexp(x)[1]) - 1  # 2^e <= |x| < 2^(e+1)
    if e > emax + 1:  # far beyond the range (mpmath's exponents are unbounded)
        return math.inf if x > 0 else -math.inf
    if e < emin - p - 2:  # below half the smallest subnormal
        return 0.0 if x > 0 else -0.0
    q = max(e, emin) - (p - 1)  # exponent of the quantum (ULP) at x
    with mpmath.workprec(max(mpmath.mp.prec, 64) + abs(q) + 64):
        m = mpmath.nint(mpmath.ldexp(x, -q))  # ties to even
        r = mpmath.ldexp(m, q)
    if abs(r) >= mpmath.ldexp(1, emax + 1):
        return math.inf if x > 0 else -math.inf
    return float(r)  # exact: r has at most p significant bits


def _ordered(a: np.ndarray) -> np.ndarray:
    """Map floats to integers whose order is the floats' order (+0 == -0)."""
    a = np.asarray(a)
    if a.dtype == np.float32:
        i = a.view(np.int32).astype(np.int64)
        return np.where(i < 0, np.int64(-(2**31)) - i, i)
    i = a.astype(np.float64).view(np.int64)
    big = np.int64(-(2**63))
    return np.where(i < 0, big - i, i)


def ulp_distance(computed, exact, dtype=None) -> np.ndarray:
    """Distance in ULPs of ``dtype`` between arrays of representable numbers.

    NaN against NaN is 0, NaN against a number (or a number against NaN) is
    inf; +0 and -0 are equal; inf against the largest finite number is 1."""
    dtype = np.dtype(dtype or np.asarray(computed).dtype)
    c = np.asarray(computed, dtype=np.float64).astype(dtype)
    e = np.asarray(exact, dtype=np.float64).astype(dtype)
    oc, oe = _ordered(c), _ordered(e)
    # exact integer difference: hi - lo in wrapping uint64 arithmetic is exact
    # (the ordered values span less than 2^64), then one rounding to float64.
    # (Subtracting the int64s as float64 would lose the low bits: adjacent
    # float64 numbers near 1 map to integers near 2^62, 512 apart in float64.)
    hi = np.maximum(oc, oe).view(np.uint64)
    lo = np.minimum(oc, oe).view(np.uint64)
    d = (hi - lo).astype(np.float64)
    cn, en = np.isnan(c), np.isnan(e)
    d = np.where(cn & en, 0.0, d)
    d = np.where(cn ^ en, np.inf, d)
    return d
