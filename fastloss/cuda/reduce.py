"""Deterministic reductions on the GPU (the GPU half of ``fastloss.reduce``).

- ``tree_sum``: all threads of a block sum ``width`` (hi, lo) pairs held in
  shared memory by a fixed pairwise tree in which every addition is Knuth's
  TwoSum (``reduce.two_sum``), the same scheme as the CPU's
  ``reduce.block_sum``. The pairing depends on ``width`` only, never on
  ``blockDim``: any number of threads gives the same bits. It uses only
  shared memory and ``syncthreads`` (no warp shuffles), so it also runs
  under the CUDA simulator.
- ``chunk_sums``: the skeleton the fused kernels share (chunks, lanes,
  per-lane Neumaier sums, ``store_chunk``), around a per-item device
  function that each kernel family supplies.
- ``combine_kernel``: the second pass. One block sums the per-chunk
  partials in ``COMBINE_THREADS`` lanes (a fixed number: it is part of the
  summation order): lane l takes chunks l, l + COMBINE_THREADS, ... in order
  (Neumaier), then ``tree_sum``; the block may have any number of threads. The result is one float64 on the
  device; only those 8 bytes go to the host.
"""

import math

import numpy as np
from numba import cuda, float64

from fastloss.cuda import jit
from fastloss.cuda.arrays import scratch
from fastloss.cuda.config import COMBINE_THREADS, LANES
from fastloss.reduce import finish, neumaier_add, two_sum


@cuda.jit(device=True)
def tree_sum(sh, se, width, tid, nthreads):
    """sh[0] + se[0] = sum of sh[0:width] + se[0:width] (width a power of two),
    in place; every thread of the block must call it. Ends with a barrier."""
    step = width >> 1
    while step > 0:
        j = tid
        while j < step:
            s, e = two_sum(sh[j], sh[j + step])
            se[j] = (se[j] + se[j + step]) + e
            sh[j] = s
            j += nthreads
        cuda.syncthreads()
        step >>= 1


@cuda.jit(device=True)
def store_chunk(sh, se, tid, nthreads, c, hi, lo, atomic):
    """The end of one chunk of a fused kernel: the block's lane sums
    sh[0:LANES] + se[0:LANES] are added by ``tree_sum``; thread 0 stores the
    chunk's partial (hi[c], lo[c]), or with ``atomic`` adds it to hi[0].
    Every thread of the block must call it. Ends with a barrier."""
    cuda.syncthreads()
    tree_sum(sh, se, LANES, tid, nthreads)
    if tid == 0:
        if atomic:
            cuda.atomic.add(hi, 0, finish(sh[0], se[0]))
        else:
            hi[c] = sh[0]
            lo[c] = se[0] if math.isfinite(sh[0]) else 0.0
    cuda.syncthreads()


#: iterations of a lane's loop whose loads are issued together (``chunk_sums``
#: with a ``load``, ``rowblock.lse_lane`` and ``grad_lane``); the loops are
#: written out for 4
UNROLL = 4


def chunk_sums(item, atomic: bool = False, load=None):
    """The skeleton of every fused kernel, once: a device function

        run(n, chunk, args, hi, lo)

    that cuts items 0..n-1 into chunks of ``chunk`` (grid-stride over the
    chunks: block b takes chunks b, b + gridDim, ...); in a chunk, lane l
    (0 <= l < ``LANES``; thread t runs lanes t, t + blockDim, ...) adds
    ``item(i, args)`` for i = base + l, base + l + LANES, ... in that order
    to its Neumaier sum (float64), and ``store_chunk`` adds the lanes and
    stores the chunk's partial (or, ``atomic``, adds it to hi[0]).

    ``item(i, args) -> float64`` is a device function (``jit.device``): the
    value of item i,
    writing whatever the item writes (gradients, per-item values); ``args``
    is a tuple of the kernel's arguments it needs. Every thread of the block
    must call ``run``. The order of the additions depends on n, chunk and
    LANES only, never on the launch configuration.

    With ``load(i, args)`` (a device function reading item i's inputs) the
    item is ``item(i, load(i, args), args)``, and a lane issues the loads of
    ``UNROLL`` consecutive items (i, i + LANES, ...) before it computes the
    first: a thread then has 2 x UNROLL loads in flight instead of 2. The
    loop-carried sum serialized the loads otherwise, and the fused
    elementwise kernel moved 1.9 TB/s on an H200, half its copy bandwidth
    (2^28 float32 mse, 63 registers, 32 warps per multiprocessor). The
    additions keep their order: the same bits. Loading item j before
    writing item i < j's gradient is safe in place (gradient over the
    input): each item reads only its own element before writing it."""
    if load is None:
        @cuda.jit(device=True)
        def lane_sum(start, stop, args):
            s = 0.0
            comp = 0.0
            for i in range(start, stop, LANES):
                s, comp = neumaier_add(s, comp, item(i, args))
            return s, comp
    else:
        @cuda.jit(device=True)
        def lane_sum(start, stop, args):
            s = 0.0
            comp = 0.0
            i = start
            while i + (UNROLL - 1) * LANES < stop:
                v0 = load(i, args)
                v1 = load(i + LANES, args)
                v2 = load(i + 2 * LANES, args)
                v3 = load(i + 3 * LANES, args)
                s, comp = neumaier_add(s, comp, item(i, v0, args))
                s, comp = neumaier_add(s, comp, item(i + LANES, v1, args))
                s, comp = neumaier_add(s, comp, item(i + 2 * LANES, v2, args))
                s, comp = neumaier_add(s, comp, item(i + 3 * LANES, v3, args))
                i += UNROLL * LANES
            while i < stop:
                s, comp = neumaier_add(s, comp, item(i, load(i, args), args))
                i += LANES
            return s, comp

    @cuda.jit(device=True)
    def run(n, chunk, args, hi, lo):
        sh = cuda.shared.array(LANES, float64)
        se = cuda.shared.array(LANES, float64)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        nchunks = (n + chunk - 1) // chunk
        for c in range(cuda.blockIdx.x, nchunks, cuda.gridDim.x):
            base = c * chunk
            stop = min(base + chunk, n)
            for lane in range(tid, LANES, nt):
                s, comp = lane_sum(base + lane, stop, args)
                sh[lane] = s
                se[lane] = comp
            store_chunk(sh, se, tid, nt, c, hi, lo, atomic)

    return run


@jit.kernel
def combine_kernel(hi, lo, out):
    """out[0] = the compensated sum of the partials hi[k] + lo[k], in a fixed
    order; launch as [1, any number of threads]: lane l (of COMBINE_THREADS)
    sums chunks l, l + COMBINE_THREADS, ..., and thread t runs lanes t,
    t + blockDim, ..., so the bits do not depend on the thread count."""
    sh = cuda.shared.array(COMBINE_THREADS, float64)
    se = cuda.shared.array(COMBINE_THREADS, float64)
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for lane in range(t, COMBINE_THREADS, nt):
        s = 0.0
        c = 0.0
        for k in range(lane, hi.size, COMBINE_THREADS):
            s, c = neumaier_add(s, c, hi[k])
            c += lo[k]
        sh[lane] = s
        se[lane] = c if math.isfinite(s) else 0.0
    cuda.syncthreads()
    tree_sum(sh, se, COMBINE_THREADS, t, nt)
    if t == 0:
        out[0] = finish(sh[0], se[0])


def partials(nchunks: int, atomic: bool, stream):
    """(hi, lo) for a chunked kernel (``chunk_sums``): one float64 partial
    per chunk, or, ``atomic``, one zeroed accumulator shared by both."""
    if atomic:
        hi = cuda.to_device(np.zeros(1), stream=stream)
        return hi, hi
    return scratch(nchunks, "float64", stream), scratch(nchunks, "float64", stream)


def combine(hi, lo, stream):
    """The sum of the partials, as a 1-element float64 device array."""
    from fastloss.cuda.arrays import scratch
    from fastloss.cuda.config import threads_per_block

    out = scratch(1, "float64", stream)
    combine_kernel[1, min(threads_per_block(), COMBINE_THREADS), stream](hi, lo, out)
    return out
