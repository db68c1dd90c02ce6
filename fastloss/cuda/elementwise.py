"""The CUDA driver for elementwise losses: one fused pass, as the CPU's
``fastloss.cpu.elementwise.kernel``, generated from the same formula.

``make_elementwise_kernel(formula)`` returns a CUDA kernel (``jit.kernel``:
no fma contraction; memoised per formula) that calls ``formula(x, y, q, p0,
p1, p2) -> (value, grad)`` -- the @njit function of ``catalog.FORMULAS``
itself: numba-cuda compiles it as a device function, and the math
primitives it calls (``fastloss.math``) resolve to the CPU's own
implementations (``fastloss.math._cpu``, through their generic overloads):
the CPU's operations, except for formulas with a float32-lane variant
(``math.logistic32``). The CUDA tests on an H200 found them within 2 ULP of
the CPU's, but for float32 ``sigmoid_focal`` with gamma 0.5 and a weight
(gradients up to 2109 ULP apart, cause not found: README). Nothing of the
formula is written here.

Reduction (shared DESIGN.md, numerics policy; the kernel skeleton is
``reduce.chunk_sums``, shared with the box and row kernels, around the
per-element function ``item``): the data is cut into chunks of
``CHUNK`` elements (``fastloss._config``). Within chunk c, lane l
(0 <= l < ``LANES``) sums the weighted values of elements c*CHUNK + l,
c*CHUNK + l + LANES, ... in that order with Neumaier's compensation, in
float64 whatever the data's dtype, each value rounded to the data's dtype
first as on the CPU (``reduce.round_as``); the LANES lane sums are combined by the
fixed TwoSum tree ``reduce.tree_sum``; the chunk's (hi, lo) partial is
stored; a second kernel (``reduce.combine_kernel``) combines the partials in
a fixed order. Which block runs a chunk (grid-stride loop) and which thread
runs a lane (thread t owns lanes t, t + blockDim, ...) change nothing: the
loss is bitwise the same for every launch configuration and run after run.
With ``Launch(atomic=True)`` the chunks are instead added with float64
atomics into one accumulator (not deterministic; opt-in only).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda, float64, njit

from fastloss._config import CHUNK, JIT
from fastloss.catalog import FORMULAS
from fastloss.cuda import config, jit
from fastloss.cuda.arrays import constant, scratch
from fastloss.cuda.config import LANES
from fastloss.cuda.reduce import chunk_sums, combine, partials
from fastloss.math import with_f32_variants, xmul
from fastloss.reduce import round_as


@functools.cache
def make_elementwise_kernel(formula, chunk: int = CHUNK, atomic: bool = False):
    """The fused kernel of one formula (see the module doc).

    kernel[blocks, threads, stream](x, y, q, qper, w, wper, p0, p1, p2, gdiv,
                                    grad, vals, hi, lo, store_grad, store_vals)

    x, y: 1-D C-contiguous float32/float64; q, w: per-element auxiliary and
    weight read as q[i mod qper], w[i mod wper]; grad[i] = w_i f'(x_i, y_i) /
    gdiv and vals[i] = w_i f(x_i, y_i) (input dtype) when stored; hi/lo: one
    partial per chunk (or, atomic, hi[0] accumulates the total).

    ``chunk`` is a test hook only (a smaller partition for tiny simulator
    inputs); the library always uses ``CHUNK``.
    """
    if chunk % LANES:
        raise ValueError(f"chunk must be a multiple of {LANES}; got {chunk}")

    @jit.device
    def load(i, args):
        x, y = args[0], args[1]
        return x[i], y[i]

    @jit.device
    def item(i, xy, args):
        x, y, q, qper, w, wper, p0, p1, p2, gdiv, grad, vals, store_grad, store_vals = args
        qv = np.float64(q[0]) if qper == 1 else np.float64(q[i % qper])
        wv = np.float64(w[0]) if wper == 1 else np.float64(w[i % wper])
        # np.float64, not float(): numba-cuda types float() of a float32 as
        # float32 (the formula then ran in float32 on the GPU)
        v, g = formula(np.float64(xy[0]), np.float64(xy[1]), qv, p0, p1, p2)
        v = xmul(wv, v)
        if store_grad:
            grad[i] = xmul(wv, g) / gdiv
        if store_vals:
            vals[i] = v
        return round_as(x, v)

    run = chunk_sums(item, atomic, load)

    @jit.kernel
    def kernel(x, y, q, qper, w, wper, p0, p1, p2, gdiv, grad, vals, hi, lo,
               store_grad, store_vals):
        run(x.size, chunk, (x, y, q, qper, w, wper, p0, p1, p2, gdiv, grad, vals, store_grad,
                            store_vals), hi, lo)

    return kernel


@functools.cache
def formula_for(fid: int, f32: bool):
    """``FORMULAS[fid]``, for float32 data with ``fastloss.math.F32_VARIANTS``
    rebound (``math.with_f32_variants``), as the CPU driver compiles it. The
    rebound primitives have one float32-grade meaning and a version per
    target (``math.logistic32``: float32 lanes here, float64 lanes on the
    CPU), each output within 1 ULP of float32, so a GPU result agrees with
    the CPU's within the policy's ULPs, not bitwise."""
    formula = FORMULAS[fid]
    py = with_f32_variants(formula.py_func) if f32 else formula.py_func
    return formula if py is formula.py_func else njit(**{**JIT, "cache": False})(py)


def sum_pass(fid: int, x, y, q, qper, w, wper, p, gdiv, grad, vals, stream, *,
             chunk: int = CHUNK):
    """Run the fused kernel of formula ``fid`` once (numba device arrays, 1-D);
    returns the loss sum as a 1-element float64 device array (0 for empty
    input). ``grad``/``vals``: device arrays to fill, or None."""
    n = x.size
    launch = config.current()
    nchunks = -(-n // chunk)
    if n == 0:
        out = cuda.to_device(np.zeros(1), stream=stream)
        return out
    kern = make_elementwise_kernel(formula_for(fid, x.dtype == np.float32), chunk, launch.atomic)
    dummy = constant(np.zeros(1, x.dtype))  # never written: store_grad/store_vals off
    hi, lo = partials(nchunks, launch.atomic, stream)
    p0, p1, p2 = (float(v) for v in p)
    kern[config.blocks_for(nchunks), config.threads_per_block(), stream](
        x, y, q, qper, w, wper, p0, p1, p2, float(gdiv),
        dummy if grad is None else grad, dummy if vals is None else vals,
        hi, lo, grad is not None, vals is not None,
    )
    if launch.atomic:
        return hi
    return combine(hi, lo, stream)


@jit.kernel
def _scale_kernel(a, s, out):
    i = cuda.grid(1)
    if i < a.size:
        out[i] = a[i] * s


@jit.kernel
def _fill_kernel(a, v):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = v


def scaled(a, s: float, stream, dtype=None):
    """a * s (s a power of two: exact), a new device array (of ``dtype``, by
    default a's)."""
    out = scratch(a.size, a.dtype if dtype is None else dtype, stream)
    if a.size:
        t = config.threads_per_block()
        _scale_kernel[-(-a.size // t), t, stream](a, s, out)
    return out


def fill(a, v: float, stream):
    if a.size:
        t = config.threads_per_block()
        _fill_kernel[-(-a.size // t), t, stream](a, v)


@jit.kernel
def _max_abs_diff_kernel(x, y, part):
    """part[c] = max |x_i - y_i| over chunk c (NaN if any is NaN); max is
    exact and order-free, so this is deterministic too."""
    sh = cuda.shared.array(LANES, float64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n = x.size
    nchunks = part.size
    for c in range(cuda.blockIdx.x, nchunks, cuda.gridDim.x):
        base = c * CHUNK
        stop = min(base + CHUNK, n)
        for lane in range(tid, LANES, nt):
            m = 0.0
            for i in range(base + lane, stop, LANES):
                d = abs(np.float64(x[i]) - np.float64(y[i]))
                if d > m or d != d:
                    m = d
            sh[lane] = m
        cuda.syncthreads()
        if tid == 0:
            m = 0.0
            for j in range(LANES):
                d = sh[j]
                if d > m or d != d:
                    m = d
            part[c] = m
        cuda.syncthreads()


def max_abs_diff(x, y, stream) -> float:
    """max |x_i - y_i| (rmse's rescaling, a rare path): per-chunk maxima on
    the device, the n / CHUNK maxima on the host."""
    nchunks = -(-x.size // CHUNK)
    if nchunks == 0:
        return 0.0
    part = scratch(nchunks, "float64", stream)
    _max_abs_diff_kernel[config.blocks_for(nchunks), config.threads_per_block(), stream](
        x, y, part)
    host = part.copy_to_host(stream=stream)
    stream.synchronize()
    return float(np.nan if np.isnan(host).any() else host.max())
