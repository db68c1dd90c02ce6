"""Deterministic, accurate sums shared by the drivers.

Every reduction in fastloss is done the same way:
1. the data is cut into chunks of ``CHUNK`` elements (``fastloss._config``),
   a size that depends on nothing but the data's length;
2. each chunk is summed in float64 with Neumaier's compensated summation
   (float32 data is therefore accumulated in float64, float64 data with a
   running compensation term), giving a (hi, lo) partial per chunk; the
   elementwise losses sum their per-element values as ``reduction="none"``
   returns them, rounded to the data's dtype (``round_as``), on the CPU and
   the GPU alike;
3. the partials are combined in chunk order by ``combine``.

Inside a chunk the CPU elementwise driver (``fastloss.cpu.elementwise``)
keeps ``BLOCK`` running sums, one per position in its vectorized block. For
float64 data each is updated by an error-free TwoSum whose error is
accumulated beside it; for float32 data each is a plain float64 sum of
CHUNK / BLOCK float32 values (the policy's float64 accumulation; error at
most (CHUNK / BLOCK - 1) u sum|v_i|). At the end of the chunk the ``BLOCK``
(sum, error) pairs are added by ``block_sum``: a pairwise (tree) sum in
which every addition is an error-free TwoSum, written as passes of
independent elementwise additions so that LLVM vectorizes them without
reassociating anything. For float64 data every rounding error of the value
additions is thus kept; what remains is the rounding of the error terms' own
sum, so the chunk sum is within about one rounding of its exact value plus
~n u^2 sum|v_i| (u = 2^-53). The order is fixed by the data's length alone.

Which thread or GPU block sums which chunk does not change any bit of the
result, so the loss is identical on 1 or N threads and run after run.

Neumaier, "Rundungsfehleranalyse einiger Verfahren zur Summation endlicher
Summen", ZAMM 54 (1974).
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastloss._config import JIT, KERNEL_JIT
from fastloss.math._intrin import wide_vectors


def round_as(a, v):
    """The float64 v rounded to the dtype of array a (float32 or float64),
    returned as float64. Compiled for every target (CPU, CUDA)."""
    return float(a.dtype.type(v))


@overload(round_as, target="generic", jit_options=JIT)
def _round_as(a, v):
    if a.dtype == types.float32:
        return lambda a, v: np.float64(np.float32(v))
    return lambda a, v: v


@njit(**{**JIT, "forceinline": True})
def neumaier_add(s, c, v):
    """Add v to the compensated sum (s, c); returns the new (s, c)."""
    t = s + v
    if abs(s) >= abs(v):
        c += (s - t) + v
    else:
        c += (v - t) + s
    return t, c


@njit(**{**JIT, "forceinline": True})
def keep_and_add(vals, i, store, s, c, v):
    """A row's (or box's) value v: into vals[i] when ``store`` (rounded once
    to vals' dtype), and added to the compensated sum (s, c); returns the
    new (s, c). The row and box drivers' step for each value, in order.
    Inlined, with ``neumaier_add``: as two calls a row they cost nll's value
    pass (``cpu.rowwise.entry_kernel``) at (65536, 10) float32, 2 threads,
    0.38-0.39 against 0.26 ms for the whole call with the gradient."""
    if store:
        vals[i] = v
    return neumaier_add(s, c, v)


@njit(**JIT)
def two_sum(a, b):
    """Knuth's TwoSum: s + e = a + b exactly, s = fl(a + b); branch-free."""
    s = a + b
    bp = s - a
    return s, (a - (s - bp)) + (b - bp)


@njit(**JIT)
def block_sum(v, e, width):
    """Sum v[0:width] (+ the error terms e[0:width]) in place, pairwise with
    TwoSum; width is a power of two. Returns (s, c), the sum being s + c.

    Each pass adds the upper half onto the lower half: the iterations are
    independent, so the pass vectorizes, and the order of additions is fixed."""
    wide_vectors()
    step = width >> 1
    while step > 0:
        # slices: indices provably >= 0 (contiguous vector access, no wraparound)
        va = v[:step]
        vz = v[step:2 * step]
        ea = e[:step]
        ez = e[step:2 * step]
        for j in range(step):
            a = va[j]
            b = vz[j]
            s = a + b
            bp = s - a
            va[j] = s
            ea[j] = (ea[j] + ez[j]) + ((a - (s - bp)) + (b - bp))
        step >>= 1
    return v[0], e[0]


@njit(**JIT)
def finish(s, c):
    """The value of a compensated sum. Once s is inf or NaN the compensation is
    meaningless (inf - inf), so s alone is returned."""
    if math.isfinite(s):
        return s + c
    return s


@njit(**KERNEL_JIT)
def combine(hi, lo):
    """Sum chunk partials (hi[k], lo[k]) in index order, compensated."""
    s = 0.0
    c = 0.0
    for k in range(hi.size):
        s, c = neumaier_add(s, c, hi[k])
        c += lo[k]
    return finish(s, c)
