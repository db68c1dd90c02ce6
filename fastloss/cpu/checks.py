"""Domain checks on data, compiled: one pass, no temporaries, NaN passes.

Each check flags the offending elements of a block of ``CHECK_BLOCK``
elements in a branch-free loop (it vectorizes, where a loop that returns at
the first offender is scalar, ~3 ns an element: a third of the time of a
float32 BCE-with-logits call), and scans a block for the first offender only
when its flag is set.

``first_outside`` (interval domains, the common case) also: compares float32
data in float32 when the interval's ends are float32 values (16 lanes per
512-bit vector instead of 8, no conversion); keeps an "any offender" flag
per block; and flags the blocks
of arrays of at least ``PARALLEL_MIN`` elements on every thread. Measured on
2^24 float32 targets (BCE with logits' check of y in [0, 1]): 12-14 ms
before, a serial third of a 2-thread BCE-with-logits call of ~65 ms.

An elementwise call that writes into no buffer of the caller's (no
``out=``) tests its interval domains inside the kernel instead
(``cpu.elementwise.fused``, ``validate.prepare(defer=True)``) and calls
these only to name the first offender of a flagged call.
"""

import numpy as np
from numba import njit, prange

from fastloss._config import JIT, KERNEL_JIT, PARALLEL_JIT
from fastloss.math._intrin import borrow, keep_alive, wide_vectors

#: elements per flagged block (a few KB: stays in L1 for the rescan)
CHECK_BLOCK = 2048
#: arrays of at least this many elements are flagged block by block in
#: parallel (below, waking the thread pool costs more than the pass)
PARALLEL_MIN = 1 << 18


@njit(**{**JIT, "forceinline": True})
def _block_outside(a, b0, b1, lo, hi, lo_open, hi_open, lo32, hi32, f32):
    """True when a[b0:b1] holds an element outside the interval (NaN
    passes). f32: a is float32 and lo32, hi32 equal lo, hi exactly, so the
    comparisons are made in float32, with the same results. (The loop runs
    over a slice with ``range(blk.size)``: indices from b0 are signed, and
    their wraparound checks kept LLVM from vectorizing it, 1.1 against 0.18
    ns an element in L1.)"""
    wide_vectors()
    blk = a[b0:b1]
    bad = 0
    if f32:
        for i in range(blk.size):
            v = blk[i]
            o = (v < lo32) | (v > hi32) | ((v == lo32) & lo_open) | ((v == hi32) & hi_open)
            bad += np.int32(o)
    else:
        for i in range(blk.size):
            v = np.float64(blk[i])
            o = (v < lo) | (v > hi) | ((v == lo) & lo_open) | ((v == hi) & hi_open)
            bad += np.int32(o)
    return bad != 0


@njit(**PARALLEL_JIT)
def _flag_blocks(a, lo, hi, lo_open, hi_open, lo32, hi32, f32, flags):
    n = a.size
    # the blocks' views of a borrowed array: no reference counting, which
    # the threads would contend for on a's one counter (2^24 float32 at 2
    # threads: 2.5 ms, as at 1 thread, before)
    ba = borrow(a)
    for b in prange(flags.size):
        b0 = b * CHECK_BLOCK
        flags[b] = _block_outside(ba, b0, min(b0 + CHECK_BLOCK, n), lo, hi, lo_open, hi_open,
                                  lo32, hi32, f32)
    keep_alive(a)


@njit(**KERNEL_JIT)
def first_outside(a, lo, hi, lo_open, hi_open):
    """Index of the first element outside the interval, or -1."""
    n = a.size
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    f32 = a.itemsize == 4 and np.float64(lo32) == lo and np.float64(hi32) == hi
    nb = (n + CHECK_BLOCK - 1) // CHECK_BLOCK
    par = n >= PARALLEL_MIN
    flags = np.zeros(nb if par else 0, dtype=np.bool_)
    if par:
        _flag_blocks(a, lo, hi, lo_open, hi_open, lo32, hi32, f32, flags)
    for b in range(nb):
        b0 = b * CHECK_BLOCK
        b1 = min(b0 + CHECK_BLOCK, n)
        if flags[b] if par else _block_outside(a, b0, b1, lo, hi, lo_open, hi_open, lo32, hi32,
                                               f32):
            for i in range(b0, b1):
                v = a[i]
                if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
                    return i
    return -1


@njit(**{**JIT, "forceinline": True})
def _block_not_in(a, b0, b1, u0, u1, u2, u3):
    """True when a[b0:b1] holds an element (not NaN) that is none of u0..u3."""
    wide_vectors()
    blk = a[b0:b1]
    bad = 0
    for i in range(blk.size):
        v = blk[i]
        hit = (v != v) | (v == u0) | (v == u1) | (v == u2) | (v == u3)
        bad += 0 if hit else 1
    return bad != 0


@njit(**PARALLEL_JIT)
def _flag_blocks_not_in(a, u0, u1, u2, u3, flags):
    n = a.size
    ba = borrow(a)  # as in _flag_blocks
    for b in prange(flags.size):
        b0 = b * CHECK_BLOCK
        flags[b] = _block_not_in(ba, b0, min(b0 + CHECK_BLOCK, n), u0, u1, u2, u3)
    keep_alive(a)


@njit(**KERNEL_JIT)
def first_not_in(a, values):
    """Index of the first element (not NaN) that is none of ``values``, or -1.
    Sets of up to 4 values (every set in the catalogue) are compared
    unrolled, which vectorizes (blocks flagged on every thread for arrays of
    at least ``PARALLEL_MIN`` elements, as ``first_outside``: 2^24 float32
    hinge targets, 3.2-3.3 ms at 1 and 2 threads before); larger ones element
    by element."""
    n = a.size
    m = values.size
    if m == 0:
        for i in range(n):
            if a[i] == a[i]:
                return i
        return -1
    # up to 4 values, padded with the first one
    u0 = values[0]
    u1 = values[min(1, m - 1)]
    u2 = values[min(2, m - 1)]
    u3 = values[min(3, m - 1)]
    nb = (n + CHECK_BLOCK - 1) // CHECK_BLOCK
    par = m <= 4 and n >= PARALLEL_MIN
    flags = np.zeros(nb if par else 0, dtype=np.bool_)
    if par:
        _flag_blocks_not_in(a, u0, u1, u2, u3, flags)
    for b in range(nb):
        b0 = b * CHECK_BLOCK
        b1 = min(b0 + CHECK_BLOCK, n)
        if par:
            bad = flags[b]
        elif m <= 4:
            bad = _block_not_in(a, b0, b1, u0, u1, u2, u3)
        else:
            bad = True
        if bad:
            for i in range(b0, b1):
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
