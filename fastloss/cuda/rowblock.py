"""Block-per-row CUDA kernel for ``cross_entropy`` with integer labels.

The thread-per-row kernels of ``fastloss.cuda.rowwise`` run any row formula
but read a row serially in one thread. This kernel gives a row to a whole
block, for the case that matters most for speed (issue 5's targets):
``cross_entropy`` with labels on float32 data, no label smoothing and no
z-loss, optional ``ignore_index`` and class weights. It is assembled from the
per-element pieces of ``fastloss.scalar.multiclass`` (``lse_step``,
``lse_merge``) and the pieces the CPU formula ``cross_entropy`` itself is
made of (``ce_row_scalars``, ``ce_value``, ``ce_grad_factor``,
``ce_softmax_grad``, ``ce_label_grad``): no formula is written here.

One row per block (grid-stride over rows), any number of threads:

1. **Reduce.** The row is cut into ``ROW_LANES`` lanes: lane l takes the
   elements l, l + ROW_LANES, ... in order, through the online max-and-sum
   ``lse_step`` (Milakov & Gimelshein 2018). Thread t runs lanes t, t +
   blockDim, ... The lane states go to shared memory and are combined by a
   fixed pairwise tree of ``lse_merge`` over the ROW_LANES lanes. Which
   thread runs a lane changes nothing: a row's log-sum-exp, value and
   gradient are bitwise the same for every launch configuration.
2. **Row scalars.** Thread 0 computes others = sum_{j != argmax} e^(x_j - m),
   the value (m - x_y) + log1p(others) (Blanchard, Higham & Higham 2021) and
   the gradient factors (``ce_row_result``: ``ce_row_scalars`` & co.), into
   shared memory.
3. **Gradient.** Every thread writes its strided share of the row,
   e^(x_j - m) A / ((1 + others) gdiv) (``ce_softmax_grad``), then thread 0
   the label's entry, A expm1(-nll) / gdiv (``ce_label_grad``: no
   cancellation). Every element of x a thread reads is read before any thread
   of the block writes the row (barriers), so the gradient may overwrite x
   (``out=`` the input).

The row values (float64) go to a scratch vector; their sum is the thread-
per-row kernels' (``reduce.chunk_sums`` over the rows, in the CPU's
partition into chunks of ``rows_per_chunk(C)`` rows), so the loss is
deterministic too. Against the CPU kernel a row's values differ in the last
bits only: its sum of exponentials is added in another (equally compensated)
order, and float32 data uses ``exp_gap`` per element where the CPU keeps its
first pass's block terms.

Under the simulator the per-element pieces are the CPU-compiled functions
called from the simulated threads (the simulator's threads are Python
threads; shared memory and barriers are simulated).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from fastloss.cuda import config, jit
from fastloss.cuda.arrays import scratch
from fastloss.cuda.reduce import UNROLL, chunk_sums, combine, partials
from fastloss.scalar.multiclass import (
    ce_grad_factor,
    ce_label_grad,
    ce_row_scalars,
    ce_softmax_grad,
    ce_value,
    lse_merge,
    lse_step,
)

#: lanes of a row (fixed: part of the order of the row's sum, like
#: ``config.LANES`` for the chunks; a power of two)
ROW_LANES = 256

#: rows shorter than this take the warp-per-row kernel (``rowwarp``): a
#: block would mostly idle, or spend its time in the lane tree. On an H200
#: (float32, ``out=``, whole calls): (65536, 1000) 2.75 ms by warps, 3.89 ms
#: by blocks; (16384, 8192) 4.27 ms by warps, 3.30 ms by blocks. The
#: crossover between 1000 and 8192 was not measured: 2048 is a guess.
MIN_C = 2048

_NINF = -math.inf


def eligible(fid: int, dtype, w_given: bool, p) -> bool:
    """True when ``block_row_pass`` computes this call: cross_entropy with
    labels (fid 0) on float32 data, label smoothing and z-loss 0. float64
    data needs the double-double gradient of the CPU formula
    (``ce_grad_dd``: plain float64 p_j = e_j / (1 + others) is up to 3 ULP
    off), which the thread-per-row kernel runs."""
    eps, z = p[0], p[1]
    return fid == 0 and eps == 0.0 and z == 0.0 and np.dtype(dtype) == np.float32


@jit.device
def ce_row_result(m, s, c, k, xy, wy, gdiv, n):
    """(value, gradient factor, label's gradient entry) of a cross_entropy
    row without smoothing or z-loss (``eligible``: eps = z = 0), from its
    merged online state (m, s, c, k), its label's logit xy and weight wy,
    the gradient divisor gdiv and the row length n: ``ce_row_scalars``,
    ``ce_value``, ``ce_grad_factor`` and ``ce_label_grad``, wired once for
    the block- and warp-per-row kernels (``rowwarp``). The gradient factor r
    gives the entries j != y as ``ce_softmax_grad(x_j, m, r)``."""
    nll, l1, lse, a1, a2, a, denom, ec = ce_row_scalars(m, s, c, k, xy, wy, 0.0, 0.0, 0.0, n)
    return (ce_value(a1, nll, 0.0, ec, 0.0, 0.0, 1.0, 0.0, l1, 0.0, lse, m),
            ce_grad_factor(a, denom, gdiv), ce_label_grad(a1, a2, 0.0, ec, wy, nll, gdiv))


@cuda.jit(device=True)
def lse_lane(x, r, j, c, stride, m, s, cc, k, exact):
    """The online state (m, s, cc, k) of row r after ``lse_step`` over
    columns j, j + stride, ... < c, in that order (a lane of the block and
    warp kernels), the loads of four columns issued before their steps: a
    lane's loop-carried state otherwise serializes its loads (the block
    kernel read (16384, 131072) at 0.69 TB/s on an H200; 37 -> 22.6 ms with
    four in flight)."""
    while j + (UNROLL - 1) * stride < c:
        x0 = x[r, j]
        x1 = x[r, j + stride]
        x2 = x[r, j + 2 * stride]
        x3 = x[r, j + 3 * stride]
        m, s, cc, k = lse_step(m, s, cc, k, float64(x0), exact)
        m, s, cc, k = lse_step(m, s, cc, k, float64(x1), exact)
        m, s, cc, k = lse_step(m, s, cc, k, float64(x2), exact)
        m, s, cc, k = lse_step(m, s, cc, k, float64(x3), exact)
        j += UNROLL * stride
    while j < c:
        m, s, cc, k = lse_step(m, s, cc, k, float64(x[r, j]), exact)
        j += stride
    return m, s, cc, k


@cuda.jit(device=True)
def grad_lane(x, grad, r, j, c, stride, m, rf):
    """grad[r, j'] = ``ce_softmax_grad`` of x[r, j'] for j' = j, j + stride,
    ... < c, four loads before their stores (in place, grad over x, each
    entry is read before it is written)."""
    while j + (UNROLL - 1) * stride < c:
        x0 = x[r, j]
        x1 = x[r, j + stride]
        x2 = x[r, j + 2 * stride]
        x3 = x[r, j + 3 * stride]
        grad[r, j] = ce_softmax_grad(float64(x0), m, rf)
        grad[r, j + stride] = ce_softmax_grad(float64(x1), m, rf)
        grad[r, j + 2 * stride] = ce_softmax_grad(float64(x2), m, rf)
        grad[r, j + 3 * stride] = ce_softmax_grad(float64(x3), m, rf)
        j += UNROLL * stride
    while j < c:
        grad[r, j] = ce_softmax_grad(float64(x[r, j]), m, rf)
        j += stride


@jit.kernel
def _ce_rows(x, lab, w, use_w, ignore, use_ignore, gdiv, exact, grad, store_grad, rv):
    """rv[r] = the loss of row r (float64), grad[r] its gradient / gdiv (if
    store_grad), one block per row (see the module doc)."""
    sm = cuda.shared.array(ROW_LANES, float64)
    ss = cuda.shared.array(ROW_LANES, float64)
    sc = cuda.shared.array(ROW_LANES, float64)
    sk = cuda.shared.array(ROW_LANES, float64)
    rs = cuda.shared.array(3, float64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n, c = x.shape
    for r in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        y = lab[r]
        skip = use_ignore and y == ignore
        # 1. lane states, then the fixed tree
        for lane in range(tid, ROW_LANES, nt):
            m = _NINF
            s = 0.0
            cc = 0.0
            k = 0.0
            if not skip:
                m, s, cc, k = lse_lane(x, r, lane, c, ROW_LANES, m, s, cc, k, exact)
            sm[lane] = m
            ss[lane] = s
            sc[lane] = cc
            sk[lane] = k
        cuda.syncthreads()
        step = ROW_LANES >> 1
        while step > 0:
            j = tid
            while j < step:
                m, s, cc, k = lse_merge(sm[j], ss[j], sc[j], sk[j], sm[j + step],
                                        ss[j + step], sc[j + step], sk[j + step], exact)
                sm[j] = m
                ss[j] = s
                sc[j] = cc
                sk[j] = k
                j += nt
            cuda.syncthreads()
            step >>= 1
        # 2. row scalars
        if tid == 0:
            if skip:
                rv[r] = 0.0
            else:
                wy = float64(w[y]) if use_w else 1.0
                v, rf, gy = ce_row_result(sm[0], ss[0], sc[0], sk[0], float64(x[r, y]), wy,
                                          gdiv, c)
                rv[r] = v
                rs[0] = sm[0]
                rs[1] = rf
                rs[2] = gy
        cuda.syncthreads()
        # 3. gradient
        if store_grad:
            if skip:
                for j in range(tid, c, nt):
                    grad[r, j] = 0.0
            else:
                grad_lane(x, grad, r, tid, c, nt, rs[0], rs[1])
                cuda.syncthreads()
                if tid == 0:
                    grad[r, y] = rs[2]
        cuda.syncthreads()  # shared memory is reused by the next row


@jit.device
def _row_value(i, args):
    rv, vals, store_vals = args
    v = rv[i]
    if store_vals:
        vals[i] = v
    return v


_row_sums = chunk_sums(_row_value)
_row_sums_atomic = chunk_sums(_row_value, True)


@jit.kernel
def _sum_rows(rv, vals, store_vals, rpc, hi, lo):
    _row_sums(rv.size, rpc, (rv, vals, store_vals), hi, lo)


@jit.kernel
def _sum_rows_atomic(rv, vals, store_vals, rpc, hi, lo):
    _row_sums_atomic(rv.size, rpc, (rv, vals, store_vals), hi, lo)


def sum_row_values(rv, vals, dtype, rpc: int, stream):
    """The loss sum (1-element float64 device array) of the row values rv
    (float64 device vector, one per row), copying them to vals (x's dtype)
    when given: ``reduce.chunk_sums`` over the rows in chunks of ``rpc`` rows
    (the thread-per-row kernels' partition, ``rowwise.rows_per_chunk``), then
    ``combine`` (or the atomic option). Shared by the block- and
    warp-per-row kernels."""
    launch = config.current()
    nchunks = -(-rv.size // rpc)
    hi, lo = partials(nchunks, launch.atomic, stream)
    summer = _sum_rows_atomic if launch.atomic else _sum_rows
    summer[config.blocks_for(nchunks), config.threads_per_block(), stream](
        rv, scratch(1, dtype, stream) if vals is None else vals, vals is not None, rpc, hi, lo)
    if launch.atomic:
        return hi
    return combine(hi, lo, stream)


def block_row_pass(x, lab, w, use_w: bool, ignore: int, use_ignore: bool, gdiv: float, grad,
                   vals, stream, *, rpc: int):
    """The loss sum (1-element float64 device array) of cross_entropy over the
    (N, C) device array x with labels ``lab``, writing grad (N, C) and vals
    (N,) when given (device arrays, or None); as ``rowwise.row_pass``."""
    n, c = x.shape
    if n == 0:
        return cuda.to_device(np.zeros(1), stream=stream)
    rv = scratch(n, "float64", stream)
    exact = x.dtype == np.float64  # False (``eligible``); the pieces take it
    _ce_rows[config.blocks_for(n), config.threads_per_block(), stream](
        x, lab, w, bool(use_w), int(ignore), bool(use_ignore), float(gdiv), exact,
        scratch((n, 0), x.dtype, stream) if grad is None else grad, grad is not None, rv)
    return sum_row_values(rv, vals, x.dtype, rpc, stream)
