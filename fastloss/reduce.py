"""Deterministic, accurate sums shared by the drivers.

Every reduction in fastloss is done the same way:
1. the data is cut into chunks of ``CHUNK`` elements (``fastloss._config``),
   a size that depends on nothing but the data's length;
2. each chunk is summed in float64 with Neumaier's compensated summation
   (float32 data is therefore accumulated in float64, float64 data with a
   running compensation term), giving a (hi, lo) partial per chunk;
3. the partials are combined in chunk order by ``combine``.

Which thread or GPU block sums which chunk does not change any bit of the
result, so the loss is identical on 1 or N threads and run after run.

Neumaier, "Rundungsfehleranalyse einiger Verfahren zur Summation endlicher
Summen", ZAMM 54 (1974).
"""

import math

from numba import njit

from fastloss._config import JIT


@njit(**JIT)
def neumaier_add(s, c, v):
    """Add v to the compensated sum (s, c); returns the new (s, c)."""
    t = s + v
    if abs(s) >= abs(v):
        c += (s - t) + v
    else:
        c += (v - t) + s
    return t, c


@njit(**JIT)
def finish(s, c):
    """The value of a compensated sum. Once s is inf or NaN the compensation is
    meaningless (inf - inf), so s alone is returned."""
    if math.isfinite(s):
        return s + c
    return s


@njit(**JIT)
def combine(hi, lo):
    """Sum chunk partials (hi[k], lo[k]) in index order, compensated."""
    s = 0.0
    c = 0.0
    for k in range(hi.size):
        s, c = neumaier_add(s, c, hi[k])
        c += lo[k]
    return finish(s, c)
