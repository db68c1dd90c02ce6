"""Data-domain checks as kernels: the data never goes to the host.

Each kernel writes the smallest offending flat index into ``res[0]`` (started
at n) with ``atomic.min``: the minimum does not depend on the order of the
atomics, so the answer (the *first* bad element, as on the CPU) is
deterministic. NaN always passes. Only the 8-byte index, and then the one
offending element for the error message, are copied to the host.

The row-wise checks (labels in range, rows of all -inf logits, undefined
multi-margin hinges) follow the same rule, one thread per label or row.
"""

import math

import numpy as np
from numba import cuda

from fastloss.catalog import Interval, ValueSet
from fastloss.cuda import config, jit
from fastloss.scalar.multiclass import row_dead


@jit.kernel
def _first_outside(a, lo, hi, lo_open, hi_open, res):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.size:
        v = a[i]
        if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            cuda.atomic.min(res, 0, i)
        i += stride


@jit.kernel
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


def int_element(a, i: int, stream) -> int:
    """One element of an integer device array, on the host (exact, unlike
    ``element``'s float)."""
    return int(a[i:i + 1].copy_to_host(stream=stream)[0])


def _grid(n: int) -> tuple[int, int]:
    t = config.threads_per_block()
    return min(-(-n // t), config.blocks_for(-(-n // t)) * 4), t


# --- row-wise (multiclass) checks: ``fastloss.cpu.rowwise``'s, on the device --


@jit.kernel
def _first_bad_label(lab, c, ignore, use_ignore, res):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < lab.size:
        y = lab[i]
        if not (use_ignore and y == ignore) and (y < 0 or y >= c):
            cuda.atomic.min(res, 0, i)
        i += stride


def first_bad_label(lab, c: int, ignore: int, use_ignore: bool, stream) -> int:
    """Index of the first label outside [0, c) that is not ``ignore`` (when
    ``use_ignore``), or -1 (``cpu.rowwise.check_labels``' index)."""
    n = lab.size
    if n == 0:
        return -1
    res = cuda.to_device(np.array([n], dtype=np.int64), stream=stream)
    blocks, t = _grid(n)
    _first_bad_label[blocks, t, stream](lab, c, ignore, use_ignore, res)
    i = int(res.copy_to_host(stream=stream)[0])
    return -1 if i >= n else i


_row_dead = jit.device(row_dead.py_func)


@jit.kernel
def _first_dead_row(x, lab, has_lab, ignore, use_ignore, res):
    r = cuda.grid(1)
    stride = cuda.gridsize(1)
    n = x.shape[0]
    while r < n:
        if not (has_lab and use_ignore and lab[r] == ignore) and _row_dead(x, r):
            cuda.atomic.min(res, 0, r)
        r += stride


def first_dead_row(x, lab, has_lab: bool, ignore: int, use_ignore: bool, stream) -> int:
    """Index of the first row (not ignored) of the (N, C) device array ``x``
    whose logits are all -inf, or -1 (``cpu.rowwise.first_dead_row``). A
    thread stops at its row's first element that is not -inf."""
    n = x.shape[0]
    if n == 0:
        return -1
    res = cuda.to_device(np.array([n], dtype=np.int64), stream=stream)
    blocks, t = _grid(n)
    _first_dead_row[blocks, t, stream](x, lab, has_lab, ignore, use_ignore, res)
    i = int(res.copy_to_host(stream=stream)[0])
    return -1 if i >= n else i


@jit.kernel
def _first_undefined_hinge(x, lab, res):
    r = cuda.grid(1)
    stride = cuda.gridsize(1)
    n, c = x.shape
    while r < n:
        y = lab[r]
        v = x[r, y]
        if math.isinf(v):
            for j in range(c):
                if j != y and x[r, j] == v:
                    cuda.atomic.min(res, 0, r)
                    break
        r += stride


def first_undefined_hinge(x, lab, stream) -> int:
    """Index of the first row whose label's logit is infinite and equal to
    another logit of the row (the hinge is inf - inf), or -1
    (``cpu.rowwise.first_undefined_hinge``). Labels must be in range."""
    n = x.shape[0]
    if n == 0:
        return -1
    res = cuda.to_device(np.array([n], dtype=np.int64), stream=stream)
    blocks, t = _grid(n)
    _first_undefined_hinge[blocks, t, stream](x, lab, res)
    i = int(res.copy_to_host(stream=stream)[0])
    return -1 if i >= n else i
