"""Warp-per-row CUDA kernel for ``cross_entropy`` with integer labels (rows of few classes).

``fastloss.cuda.rowblock`` gives a row to a whole block: for rows of fewer
than ``rowblock.MIN_C`` (2048) classes a block idles or waits on its lane tree, and the
thread-per-row kernel of ``fastloss.cuda.rowwise`` reads a row serially in
one thread (nothing coalesces across a warp). This kernel gives a row to one
warp, several rows per block, for the calls ``rowblock`` takes
(``eligible``: cross_entropy with labels on float32 data, no label smoothing
or z-loss, optional ``ignore_index`` and class weights). Like ``rowblock`` it
is assembled from the per-element pieces of ``fastloss.scalar.multiclass``
(``lse_step``, ``lse_merge``, ``ce_softmax_grad``) and ``rowblock``'s
``ce_row_result`` (``ce_row_scalars``, ``ce_value``, ``ce_grad_factor``,
``ce_label_grad``, the pieces the CPU formula is made of): no formula is
written here.

Layout: blockDim.x is a multiple of 32 (``warp_threads``); warp w of block b
takes rows b * W + w, b * W + w + gridDim * W, ... (W warps per block;
every warp of a block runs the same number of rounds, the last one possibly
without a row, so block barriers, where the merge path uses them, are
reached by all threads). Per row:

1. **Reduce.** The row is cut into ``WARP_LANES`` = 32 lanes, one per thread
   of the warp: lane l takes the elements l, l + 32, ... in order, through
   the online max-and-sum ``lse_step`` (Milakov & Gimelshein 2018); the
   loads of a warp are coalesced. The 32 lane states (m, s, c, k) are
   combined by a fixed pairwise tree of ``lse_merge``: offsets 16, 8, 4, 2,
   1; at offset d lane l < d merges lane l + d into its own state (its own
   first, as ``rowblock``'s tree). Lane l is thread l of the warp whatever
   the launch, so a row's log-sum-exp, value and gradient are bitwise the
   same for every launch configuration (threads per block, blocks).
2. **Row scalars.** Lane 0 computes the value and gradient factors from the
   merged state (``ce_row_result``, exactly as ``rowblock``'s thread 0) and
   broadcasts m and the factor to the warp.
3. **Gradient.** Each lane writes its strided share of the row,
   e^(x_j - m) A / ((1 + others) gdiv) (``ce_softmax_grad``); after a warp
   barrier lane 0 writes the label's entry, A expm1(-nll) / gdiv
   (``ce_label_grad``). Every element of x is read (step 1, and x_y by lane
   0 in step 2, before the broadcast) before any lane writes the row, and in
   step 3 a lane rewrites only the elements it reads itself, so the gradient
   may overwrite x (``out=`` the input). An ignored row has value 0 and a
   zero gradient row.

**Two merge paths, one pairing.** On a GPU the tree runs in registers with
warp shuffles (``cuda.shfl_down_sync`` of the four float64 state components
per level, ``shfl_sync`` for the broadcast, ``syncwarp`` before the label's
entry): no shared memory, no block barrier. Numba's CUDA simulator has no
shuffles and no ``syncwarp``; there the states go through shared memory (one
slot per lane per warp, ``MAX_WARPS`` x 32) with block barriers. Both apply
``lse_merge`` to the same pairs in the same order, so they give the same
bits; the choice is the module constant ``SHUFFLE``, fixed at import from
``numba.config.ENABLE_CUDASIM`` (what ``numba.cuda`` itself uses to decide
whether it is the simulator), and only the chosen path is ever compiled
(``_tree``, ``_bcast``, ``_sync`` are bound to it at import). The PTX test
(tests/test_cuda_rowwarp.py) compiles the shuffle path; the simulator tests
run the shared-memory one.

The row values (float64) go to a scratch vector summed by
``rowblock.sum_row_values`` (``reduce.chunk_sums`` in the CPU's partition of
``rows_per_chunk(C)`` rows per chunk), so the loss is deterministic and the
same partition as the other row kernels. Against the CPU kernel and against
``rowblock`` a row's value and gradient differ in the last bits only: the
sum of exponentials is added in another (equally compensated) order (32
lanes here, 256 there).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda, float64

from fastloss.cuda import config, jit, rowblock
from fastloss.cuda.arrays import scratch
from fastloss.cuda.rowblock import ce_row_result, grad_lane, lse_lane, sum_row_values
from fastloss.scalar.multiclass import lse_merge

#: lanes of a row: one per thread of a warp (fixed: part of the order of the
#: row's sum, like ``rowblock.ROW_LANES``)
WARP_LANES = 32

#: warps a block may have (1024 threads); the size of the simulator path's
#: shared slots
MAX_WARPS = 32

#: True: the lanes merge by warp shuffles (a GPU); False: through shared
#: memory with block barriers (the simulator, which has no shuffles). The
#: same pairing either way (see the module doc).
SHUFFLE = not numba.config.ENABLE_CUDASIM

#: cross_entropy calls this kernel can run: ``rowblock``'s
eligible = rowblock.eligible

_FULL = 0xFFFFFFFF
_NINF = -math.inf


# --- the shuffle path (a GPU) ---------------------------------------------------------


@cuda.jit(device=True)
def _tree_shfl(m, s, c, k, lane, warp, exact):
    """The warp's 32 states merged into lane 0's (offsets 16, 8, 4, 2, 1;
    lane l < d merges lane l + d). All 32 lanes must call it."""
    d = WARP_LANES >> 1
    while d > 0:
        m2 = cuda.shfl_down_sync(_FULL, m, d)
        s2 = cuda.shfl_down_sync(_FULL, s, d)
        c2 = cuda.shfl_down_sync(_FULL, c, d)
        k2 = cuda.shfl_down_sync(_FULL, k, d)
        if lane < d:
            m, s, c, k = lse_merge(m, s, c, k, m2, s2, c2, k2, exact)
        d >>= 1
    return m, s, c, k


@cuda.jit(device=True)
def _bcast_shfl(a, b, lane, warp):
    """Lane 0's a and b, in every lane of the warp."""
    return cuda.shfl_sync(_FULL, a, 0), cuda.shfl_sync(_FULL, b, 0)


@cuda.jit(device=True)
def _sync_shfl():
    """The lanes' writes to the row are done and visible to the warp."""
    cuda.syncwarp(_FULL)


# --- the shared-memory path (the simulator) ------------------------------------------


@cuda.jit(device=True)
def _tree_shared(m, s, c, k, lane, warp, exact):
    """As ``_tree_shfl``, through shared slots (warp, lane) with block
    barriers: the same pairs, merged in the same order. Every thread of the
    block must call it."""
    sm = cuda.shared.array((MAX_WARPS, WARP_LANES), float64)
    ss = cuda.shared.array((MAX_WARPS, WARP_LANES), float64)
    sc = cuda.shared.array((MAX_WARPS, WARP_LANES), float64)
    sk = cuda.shared.array((MAX_WARPS, WARP_LANES), float64)
    sm[warp, lane] = m
    ss[warp, lane] = s
    sc[warp, lane] = c
    sk[warp, lane] = k
    cuda.syncthreads()
    d = WARP_LANES >> 1
    while d > 0:
        if lane < d:
            m, s, c, k = lse_merge(m, s, c, k, sm[warp, lane + d], ss[warp, lane + d],
                                   sc[warp, lane + d], sk[warp, lane + d], exact)
            sm[warp, lane] = m
            ss[warp, lane] = s
            sc[warp, lane] = c
            sk[warp, lane] = k
        cuda.syncthreads()
        d >>= 1
    return m, s, c, k


@cuda.jit(device=True)
def _bcast_shared(a, b, lane, warp):
    """As ``_bcast_shfl``, through a shared slot per warp (lane 0 writes
    before the barrier; the slot is rewritten only after later barriers)."""
    sb = cuda.shared.array((MAX_WARPS, 2), float64)
    if lane == 0:
        sb[warp, 0] = a
        sb[warp, 1] = b
    cuda.syncthreads()
    return sb[warp, 0], sb[warp, 1]


@cuda.jit(device=True)
def _sync_shared():
    """As ``_sync_shfl``, for the whole block."""
    cuda.syncthreads()


_tree, _bcast, _sync = ((_tree_shfl, _bcast_shfl, _sync_shfl) if SHUFFLE
                        else (_tree_shared, _bcast_shared, _sync_shared))


@jit.kernel
def _ce_rows(x, lab, w, use_w, ignore, use_ignore, gdiv, exact, grad, store_grad, rv):
    """rv[r] = the loss of row r (float64), grad[r] its gradient / gdiv (if
    store_grad), one warp per row (see the module doc). blockDim.x must be a
    multiple of 32, at most 32 * MAX_WARPS."""
    tid = cuda.threadIdx.x
    lane = tid % WARP_LANES
    warp = tid // WARP_LANES
    wpb = cuda.blockDim.x // WARP_LANES
    n, c = x.shape
    # rounds, the same number for every warp of the block (barriers)
    for base in range(cuda.blockIdx.x * wpb, n, cuda.gridDim.x * wpb):
        r = base + warp
        live = r < n
        y = lab[r] if live else lab[0]
        skip = not live or (use_ignore and y == ignore)
        # 1. lane states, then the fixed tree
        m = _NINF
        s = 0.0
        cc = 0.0
        k = 0.0
        if not skip:
            m, s, cc, k = lse_lane(x, r, lane, c, WARP_LANES, m, s, cc, k, exact)
        m, s, cc, k = _tree(m, s, cc, k, lane, warp, exact)
        # 2. row scalars (lane 0), broadcast to the warp
        rf = 0.0
        gy = 0.0
        if lane == 0 and live:
            if skip:
                rv[r] = 0.0
            else:
                wy = float64(w[y]) if use_w else 1.0
                v, rf, gy = ce_row_result(m, s, cc, k, float64(x[r, y]), wy, gdiv, c)
                rv[r] = v
        m, rf = _bcast(m, rf, lane, warp)
        # 3. gradient: the lanes' strided shares, then lane 0 the label's entry
        if store_grad and live:
            if skip:
                for j in range(lane, c, WARP_LANES):
                    grad[r, j] = 0.0
            else:
                grad_lane(x, grad, r, lane, c, WARP_LANES, m, rf)
        _sync()
        if store_grad and not skip and lane == 0:
            grad[r, y] = gy


def warp_threads() -> int:
    """Threads per block of the warp kernel: the launch's
    (``config.threads_per_block``) rounded down to a multiple of 32, at
    least 32 and at most 32 * MAX_WARPS (the launch decides speed only)."""
    t = config.threads_per_block() // WARP_LANES * WARP_LANES
    return min(max(t, WARP_LANES), WARP_LANES * MAX_WARPS)


def warp_row_pass(x, lab, w, use_w: bool, ignore: int, use_ignore: bool, gdiv: float, grad,
                  vals, stream, *, rpc: int):
    """The loss sum (1-element float64 device array) of cross_entropy over the
    (N, C) device array x with labels ``lab``, writing grad (N, C) and vals
    (N,) when given (device arrays, or None); as ``rowblock.block_row_pass``."""
    n, c = x.shape
    if n == 0:
        return cuda.to_device(np.zeros(1), stream=stream)
    threads = warp_threads()
    wpb = threads // WARP_LANES
    rv = scratch(n, "float64", stream)
    exact = x.dtype == np.float64  # False (``eligible``); the pieces take it
    _ce_rows[config.blocks_for(-(-n // wpb)), threads, stream](
        x, lab, w, bool(use_w), int(ignore), bool(use_ignore), float(gdiv), exact,
        scratch((n, 0), x.dtype, stream) if grad is None else grad, grad is not None, rv)
    return sum_row_values(rv, vals, x.dtype, rpc, stream)
