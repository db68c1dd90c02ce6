"""Domain checks on data, compiled: one pass, no temporaries, NaN passes."""

from numba import njit

from fastloss._config import JIT


@njit(**JIT)
def first_outside(a, lo, hi, lo_open, hi_open):
    """Index of the first element outside the interval, or -1."""
    for i in range(a.size):
        v = a[i]
        if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            return i
    return -1


@njit(**JIT)
def first_not_in(a, values):
    """Index of the first element (not NaN) that is none of ``values``, or -1."""
    for i in range(a.size):
        v = a[i]
        if v != v:
            continue
        ok = False
        for u in values:
            if v == u:
                ok = True
        if not ok:
            return i
    return -1
