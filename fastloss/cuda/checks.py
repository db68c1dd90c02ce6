"""Data-domain checks as kernels: the data never goes to the host.

Each kernel writes the smallest offending flat index into ``res[0]`` (started
at n) with ``atomic.min``: the minimum does not depend on the order of the
atomics, so the answer (the *first* bad element, as on the CPU) is
deterministic. NaN always passes. Only the 8-byte index, and then the one
offending element for the error message, are copied to the host.
"""

import numpy as np
from numba import cuda

from fastloss.catalog import Interval, ValueSet
from fastloss.cuda import config


@cuda.jit
def _first_outside(a, lo, hi, lo_open, hi_open, res):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        v = a[i]
        if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            cuda.atomic.min(res, 0, i)
        i += stride


@cuda.jit
def _first_not_in(a, values, res):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        v = a[i]
        if v == v:
            ok = False
            for u in values:
                if v == u:
                    ok = True
            if not ok:
                cuda.atomic.min(res, 0, i)
        i += stride


def first_bad(a, domain, stream) -> int:
    """Index of the first element of the 1-D device array ``a`` outside
    ``domain`` (an Interval or ValueSet), or -1."""
    n = a.size
    if domain is None or n == 0:
        return -1
    res = cuda.to_device(np.array([n], dtype=np.int64), stream=stream)
    t = config.threads_per_block()
    blocks = min(-(-n // t), config.blocks_for(-(-n // t)) * 4)
    if isinstance(domain, Interval):
        _first_outside[blocks, t, stream](a, float(domain.lo), float(domain.hi),
                                          bool(domain.lo_open), bool(domain.hi_open), res)
    elif isinstance(domain, ValueSet):
        vals = cuda.to_device(np.asarray(domain.values, dtype=np.float64), stream=stream)
        _first_not_in[blocks, t, stream](a, vals, res)
    else:  # pragma: no cover - catalogue error
        raise AssertionError(domain)
    i = int(res.copy_to_host(stream=stream)[0])
    return -1 if i >= n else i


def element(a, i: int, stream) -> float:
    """One element of a device array, on the host (for an error message)."""
    return float(a[i:i + 1].copy_to_host(stream=stream)[0])


