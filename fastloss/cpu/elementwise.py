"""The CPU driver for elementwise losses: one fused, parallel pass.

``kernel`` reads x[i] and y[i] once, evaluates the loss's scalar formula in
float64, writes the gradient (and, for ``reduction="none"``, the value), and
sums the values per fixed-size chunk (``fastloss.reduce``). The formula is
chosen by ``fid``, an index into ``catalog.FORMULAS`` that Numba treats as a
compile-time literal: each (loss, dtype) pair gets its own specialised machine
code, compiled on first use and cached on disk. For a loss whose formula
branches on a parameter (``LossSpec.fixed``: poisson_nll's log_input,
sigmoid_focal's gamma = 2, BCE with logits' defaults) ``fid`` may also fix
parameters to constants (``catalog.kernel_id``, ``catalog.FIXED``), so that
the vectorized loop evaluates one side of the branch, not both as selects.

The hot loops work on blocks of ``BLOCK`` elements (windows, see below). The
first vectorizes the (branch-free) formula (AVX2: 4 float64 lanes): it stores
the gradient straight into ``grad`` and the values into a block buffer of the
data's dtype, so that every load and store of the loop has one width (a
float64 value buffer in a float32 loop made LLVM split its vectors: measured
12 against 7 ns per element for BCE with logits, one thread). The second
adds each value into one of ``BLOCK`` running accumulators, one per position
in the block (``_lane_add``): for float64 data each a TwoSum-compensated
float64 sum (``S[j] + E[j]``), for float32 data a plain float64 sum, as the
numerics policy asks (float32 data accumulated in float64, float64 data
compensated). The accumulators are independent, so neither loop has a
reduction that LLVM would have to reassociate (it may not without
fastmath), and the formula loop carries none. At the end of a chunk the
``BLOCK`` accumulators are added pairwise with TwoSum (``reduce.block_sum``).
float64 data: every addition's rounding error is kept, so the chunk sum is
compensated (error about one rounding of the sum plus n u^2 sum|v_i|).
float32 data: a lane adds CHUNK / BLOCK = 64 float32 values in float64, an
error of at most 63 * 2^-53 sum|v_i| (~2^-47 relative for terms of one
sign), far below the 2^-24 rounding of each float32 value summed; the
TwoSum lane accumulation it replaced cost ~0.2 ns per element (float32
mse, N = 2^24, 1 thread, AMD EPYC). What is summed is the
per-element values as ``reduction="none"`` returns them, i.e. rounded to the
data's dtype. The order of additions depends on the data's length only.

The blocks are windows that start x's loads on a 64-byte cache line
(``_window``): each chunk begins with a short window of the elements before
x's first line boundary (``_peel``: up to 15 float32 or 7 float64), then
BLOCK elements each, whose values go to the lanes of their offsets in the
chunk (a rotation: the window's first element to lane ``peel``). Each lane
thus adds the same elements in the same order as blocks aligned on the
chunk would, and the sums do not depend on the data's address. NumPy's
large arrays start 16 bytes past a line, where every 64-byte vector load
spans two lines: measured (1 thread, N = 2^24, x, y and the gradient at 16
bytes past a line, alternating A/B, ns/elem) mse float32 0.55-0.57 ->
0.51, float64 1.19-1.21 -> 0.92-0.94; huber float32 0.77 -> 0.69, float64
1.52-1.58 -> 1.10-1.13; BCE with logits float64 6.6-6.8 -> 5.7 (float32,
compute-bound, 2.19 either way); the same data on a line boundary runs as
fast as before.

The gradient of "mean" is g/n without a division per element (``_div``; for
float32 gradients a multiply by 1/n, ``_scaled``), and
the unweighted case has its own loop (no weight products). For the losses
bound by memory (``LossSpec.streams``: mse, mae, huber, ...) a gradient of
``_config.STREAM_BYTES`` or more goes through the block buffer and out by
streaming stores (``cpu.stream``), which skip the read of each line that
an ordinary store makes (float32, N = 2^24, out=, 2 threads, the machine
in its slow bandwidth state, alternating processes: mse 85-100% -> 94-106%
of the triad timed beside it, mae 88-101% -> 101-112%, huber 87-99% -> 88-95%;
in the fast state mse 76-78% -> 72-79%, huber 65-68% -> 62-68%,
mae 82-87% -> 82-90%).

The losses bound by their arithmetic (not ``LossSpec.streams``) write
their gradient directly at every size, and in the plain case (unit
weights) evaluate their formula ahead of the windows, by spans of ``SPAN``
elements in a function of its own (``_span_formula``): inlined into this
driver's window loop, the formula's loop reloaded its constants on every
iteration (see ``SPAN``).

The parallel loop runs over groups of ``GROUP`` chunks, whose scratch buffers
are allocated once per group (``numba.get_num_threads()`` inside the kernel
would make it uncacheable: a dynamic global). The partition does not change any chunk's partial sum, so results are bitwise
identical on 1 or N threads. The per-element ``q``/``w`` arrays (pos_weight,
weight), read periodically, are first copied into block buffers by contiguous
segments, so no index wraps inside the computing loop. The buffers hold the
data's dtype (q and w are in it: ``validate.periodic``), so a float32 loop's
loads keep one width. A periodic q with unit weights (BCE with logits' last-
axis pos_weight, ``qplain``) takes the plain loop, and the spans, with q read
from a buffer (``_q_at``): the same formula, q and scaling as a scalar q,
so each element's value and gradient have the bits of that loss with its q
as a scalar. Measured (float32, ns/elem, ``out=``, alternating processes):
(256, 1024) in cache, 1 thread, a last-axis pos_weight 3.21-3.23 -> 2.47-2.49
(a scalar one: 2.33-2.35), a last-axis weight 2.72-2.73 -> 2.29-2.34 (the
float32 buffers alone); (16384, 1024), 2 threads, three rounds, pos_weight
1.73-1.78 -> 1.39-1.49, weight 1.46-1.54 -> 1.25-1.27; float64 in cache,
pos_weight 6.65-6.76 -> 6.12-6.22. The same bits as before: the weighted
loop still divides by gdiv (``_scaled`` there measured 1-2% and would
change rare roundings). Indices in the hot
loop are unsigned (no negative-index wraparound, contiguous vector loads and
stores) and arrays are not sliced per block (a slice costs an atomic
reference-count update on the shared array, contended between threads).

Measured causes of the previous version's slowness (value/gradient written to
block buffers, copied, then summed by a pairwise TwoSum per block, five
allocations and four slices per chunk): ~4x more work per element in the
block machinery than in the formula (mse), and above all the call wrapper's
``numba.typeof`` of 17 arguments (~0.1 ms per call); with several threads
every call also pays the thread pool's wake-up, which single-chunk inputs now
skip (``_LiteralDispatch``).
"""

import numba
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

from fastloss._config import (
    CHUNK,
    INLINE_COPY,
    JIT,
    PARALLEL_JIT,
    SOFTWARE_PREFETCH,
    STREAM_BYTES,
)
from fastloss.catalog import FIXED, FORMULAS, Float32In, Q
from fastloss.cpu.dispatch import LiteralDispatch as _LiteralDispatch
from fastloss.cpu.stream import stream_copy, to_line
from fastloss.math import with_f32_variants, with_kernel_flags, xmul
from fastloss.math._cpu import f32_pair
from fastloss.math._intrin import fma, fma32, prefetch, store_fence, wide_vectors
from fastloss.reduce import block_sum

#: elements per vectorized block = number of running accumulators per chunk
#: (a power of two dividing CHUNK). 128 rather than 512: measured at 1 and 2
#: threads, float32, N = 2^24, same process A/B, quiet machine: mse 1.13-1.23
#: against 1.38-1.45 ns/elem at 1 thread and 0.62-0.66 against 0.76-0.87 at
#: 2 threads; BCE with logits and huber 3% faster. The block's value buffer
#: and accumulators (2.5 KiB) stay in L1 beside the streams. Changes the
#: order of the chunk sums, not their accuracy.
BLOCK = 128
assert CHUNK % BLOCK == 0 and BLOCK & (BLOCK - 1) == 0

#: chunks per work item of the parallel loop (its scratch buffers are
#: allocated once per item). Inputs of at most this many chunks are one item
#: and run on the calling thread only (``_LiteralDispatch``): no thread pool
#: wake-up. Results do not depend on it.
GROUP = 4

#: elements per call of ``_span_formula``: the formula loop of the losses
#: bound by their arithmetic (not ``LossSpec.streams``) runs in a function
#: of its own over spans of SPAN elements (whole windows), its values into
#: a span buffer (4 KiB in float32, 8 in float64) that the windows sum. Inside
#: ``fused``'s window loop LLVM kept the formula's constants out of the
#: registers and reloaded them in the loop (BCE with logits, float32: 17
#: ``movabsq`` and 10 broadcasts in the 16-lane loop, against none in a
#: loop of its own, with 22 of the 32 zmm registers in use); a call per
#: window cost more than that (float32, 1 thread, in cache, 1.80 -> 2.0
#: ns/elem), and a whole chunk a call (8192: a 32 KiB span buffer) lost
#: at 2^24 elements, 2 threads (0.88-0.89 -> 0.89-0.91 ns/elem, five rounds).
#: With 1024, float32, public call, ns/elem, alternating processes: in
#: cache (2^16 -> 2^18), 1 thread, two rounds, BCE with logits 1.64 ->
#: 1.47-1.60, log_cosh 2.48-2.50 -> 2.43-2.44, soft_margin 2.24-2.27 ->
#: 2.11-2.12, poisson_nll 2.42-2.43 -> 2.32-2.36; N = 2^24, 2 threads, four
#: rounds, BCE with logits 1.09-1.18 -> 0.90-1.13, log_cosh 1.88-2.02 ->
#: 1.81-1.86. Results are the same bits: the same values are summed in the
#: same lanes and order.
SPAN = 8 * BLOCK
assert CHUNK % SPAN == 0

#: elements ahead of the block being computed whose cache lines are
#: prefetched (x and y to read, the gradient to write); 0 (none) where
#: ``fastloss._config.SOFTWARE_PREFETCH`` is off. On an Intel Xeon the
#: hardware prefetcher alone left the streams short of the bandwidth once the
#: block had work to do (mse 1.03-1.18 against 1.31-1.36 ns/elem at 1 thread
#: with 512; 256 and 768 no better); on an AMD EPYC (Zen 4) the software
#: prefetches cost time instead (see there).
PREFETCH = 512 if SOFTWARE_PREFETCH else 0

_U0 = np.uint64(0)


_INLINED = {}


def _inlined(fid, f32, fixed):
    """FORMULAS[fid] recompiled with LLVM ``alwaysinline``: a formula left to
    LLVM's inliner may stay a call inside the loop (BCE with logits does),
    and a call blocks vectorization. Not cached on its own (its machine code
    is cached inside each kernel), so the flag cannot be lost to a cached
    copy compiled without it.

    For float32 data (``f32``) the same code object is compiled against
    globals in which the primitives of ``fastloss.math.F32_VARIANTS`` are
    rebound to their float32-grade versions: one formula text, two
    precisions. For a kernel with parameters fixed (``fixed``), the
    formula's ``FIXED_KERNEL`` flag is True, for the others its
    ``CPU_GENERIC`` flag (``fastloss.math.with_kernel_flags``)."""
    key = (fid, f32, fixed)
    if key not in _INLINED:
        py = FORMULAS[fid].py_func
        if f32:
            py = with_f32_variants(py)
        py = with_kernel_flags(py, fixed)
        _INLINED[key] = njit(**INLINE_COPY)(py)
    return _INLINED[key]


def apply(fid, x, y, q, p0, p1, p2):  # pragma: no cover - replaced by the overload
    """formula[fid](x, y, q, p0, p1, p2) inside compiled code, x and y the
    data's elements (float32 or float64), evaluated in float64."""
    raise NotImplementedError


@overload(apply, jit_options={**JIT, "forceinline": True})
def _apply(fid, x, y, q, p0, p1, p2):
    if not isinstance(fid, types.IntegerLiteral):
        raise numba.errors.TypingError("apply: the formula id must be a compile-time literal")
    # ``catalog.kernel_id``: the formula's index, or an entry of FIXED (the
    # formula with parameters fixed: which and their values are constants of
    # the compiled code, so LLVM folds the selects below and then the
    # formula's branches on them)
    # (a ``Float32In`` condition fixes no value: the kernel reads it)
    index, fix, fixed = fid.literal_value, {}, False
    if index >= len(FORMULAS):
        index, pairs = FIXED[index - len(FORMULAS)]
        fix = {k: v for k, v in pairs if not isinstance(v, Float32In)}
        fixed = True
    formula = _inlined(index, x == types.float32, fixed)
    fq, f0, f1, f2 = (k in fix for k in (Q, 0, 1, 2))
    cq, c0, c1, c2 = (fix.get(k, 0.0) for k in (Q, 0, 1, 2))

    def impl(fid, x, y, q, p0, p1, p2):
        return formula(np.float64(x), np.float64(y), cq if fq else q, c0 if f0 else p0,
                       c1 if f1 else p1, c2 if f2 else p2)

    return impl


def _domain_checked(fid):  # pragma: no cover - replaced by the overload
    """True (a compile-time constant) when the formula of kernel ``fid``
    belongs to a loss whose input or target domain is an interval: its
    kernel also tests each x and y against bounds (``fused``)."""
    raise NotImplementedError


def _interval_formulas():
    from fastloss import catalog

    return {catalog.formula_id(s) for s in catalog.SPECS
            if s.family in ("regression", "binary")
            and (isinstance(s.input_domain, catalog.Interval)
                 or isinstance(s.target_domain, catalog.Interval))}


def _formula_index(fid, what):
    """The index into ``FORMULAS`` of kernel ``fid`` (a literal type: the
    formula's own index, or an entry of ``FIXED``)."""
    if not isinstance(fid, types.IntegerLiteral):
        raise numba.errors.TypingError(f"{what}: the formula id must be a literal")
    index = fid.literal_value
    return FIXED[index - len(FORMULAS)][0] if index >= len(FORMULAS) else index


@overload(_domain_checked, jit_options={**JIT, "forceinline": True})
def _domain_checked_impl(fid):
    if _formula_index(fid, "_domain_checked") in _interval_formulas():
        return lambda fid: True
    return lambda fid: False


def _streams(fid):  # pragma: no cover - replaced by the overload
    """True (a compile-time constant) when kernel ``fid``'s formula is that
    of a loss marked ``LossSpec.streams`` (bound by memory): only its
    kernel writes a large gradient by streaming stores (``fused``)."""
    raise NotImplementedError


def _spec_flag(index, attr):
    """Whether formula ``index`` is that of a loss whose ``LossSpec`` field
    ``attr`` is set: "streams" (bound by memory), "q_param" (a per-element
    q: BCE with logits' pos_weight)."""
    from fastloss import catalog

    return any(getattr(s, attr) for s in catalog.SPECS
               if s.family in ("regression", "binary") and catalog.formula_id(s) == index)


def _streamed(index):
    """Whether formula ``index`` is that of a loss marked ``LossSpec.streams``."""
    return _spec_flag(index, "streams")


@overload(_streams, jit_options={**JIT, "forceinline": True})
def _streams_impl(fid):
    flag = _streamed(_formula_index(fid, "_streams"))
    return lambda fid: flag


@njit(**{**JIT, "forceinline": True})
def _outside(xv, yv, dom):
    """x or y outside [dom[0], dom[1]] x [dom[2], dom[3]] (bounds in the
    data's dtype, open ends already moved to the next representable value;
    NaN passes): four compares, no branch."""
    return (xv < dom[0]) | (xv > dom[1]) | (yv < dom[2]) | (yv > dom[3])


@njit(**JIT)
def _fill(buf, m, a, per, k):
    """buf[j] = a[(k + j) mod per] for j < m, by contiguous segments."""
    if per == 1:
        v = np.float64(a[0])
        for j in range(m):
            buf[j] = v
        return
    j = 0
    while j < m:
        seg = min(m - j, per - k)
        dst = buf[j:j + seg]
        src = a[k:k + seg]
        for t in range(seg):
            dst[t] = src[t]
        j += seg
        k = 0


@njit(**JIT)
def _peel(a):
    """Elements of ``a`` before its first cache-line boundary: the length of
    the first, short window of every chunk (``_window``); 0 where a's
    address is not a multiple of its itemsize."""
    addr = a.ctypes.data
    if addr % a.itemsize != 0:
        return 0
    return to_line(addr, a.itemsize)


@njit(**{**JIT, "forceinline": True})
def _window(b0, start, stop, peel):
    """(m, lane0): the length of the window of elements that starts at b0
    in the chunk [start, stop), and the lane (accumulator) of its first
    element, (b0 - start) mod BLOCK. The windows are [start, start + peel),
    then BLOCK elements each: with ``peel = _peel(x)`` every later window
    starts x's loads on a cache line. Element i is summed into lane
    (i - start) mod BLOCK, after the elements i - BLOCK, i - 2 BLOCK, ...
    of its chunk, whatever the peel: the same additions in the same order
    as blocks aligned on the chunk, so the sums do not depend on where the
    data lies in memory (tests/test_determinism.py)."""
    if b0 == start and peel > 0:
        return min(peel, stop - b0), 0
    return min(BLOCK, stop - b0), (b0 - start) % BLOCK


@njit(**JIT)
def _overlap(a, b):
    """True if the memory of arrays a and b overlaps."""
    pa = a.ctypes.data
    pb = b.ctypes.data
    return pa < pb + b.nbytes and pb < pa + a.nbytes and a.size > 0 and b.size > 0


@njit(**{**JIT, "forceinline": True})
def _acc(S, E, j, v):
    """(S[j], E[j]) += v: TwoSum, the rounding error added to E[j]; branch-free."""
    a = S[j]
    t = a + v
    bp = t - a
    E[j] += (a - (t - bp)) + (v - bp)
    S[j] = t


def _lane_add(S, E, j, v, like):  # pragma: no cover - replaced by the overload
    """Adds the float64 value v into the running sum of lane j: for float32
    data (``like``, the input array) a plain float64 addition, S[j] += v;
    for float64 data ``_acc`` (TwoSum, the error into E[j])."""
    raise NotImplementedError


@overload(_lane_add, jit_options={**JIT, "forceinline": True})
def _lane_add_impl(S, E, j, v, like):
    if isinstance(like, types.Array) and like.dtype == types.float32:
        def impl(S, E, j, v, like):
            S[j] += v
        return impl
    return lambda S, E, j, v, like: _acc(S, E, j, v)


@njit(**{**JIT, "forceinline": True})
def _div(g, d, dinv):
    """g/d for 2^-1000 <= |d| <= 2^1000, dinv = fl(1/d), without a division:
    q = g dinv, the exact remainder r = g - q d (fma), then q + r dinv, which
    is the correctly rounded quotient (Markstein, IBM J. Res. Dev. 34(1),
    1990; Muller et al., Handbook of Floating-Point Arithmetic, Thm. 4.10)
    outside the subnormal range. A division costs the vectorized loops more
    than the three multiply-adds. g = +-inf or NaN: r is NaN and q is the
    answer."""
    q = g * dinv
    r = fma(-q, d, g)
    res = fma(r, dinv, q)
    return res if r == r else q


def _wide(g):  # pragma: no cover - replaced by the overload
    """A formula's gradient as one float64 number: g itself, or gh + gl for
    a float32 pair (``_scaled``), for the loops that weight it."""
    raise NotImplementedError


@overload(_wide, jit_options={**JIT, "forceinline": True})
def _wide_impl(g):
    if isinstance(g, types.UniTuple):
        return lambda g: np.float64(g[0]) + np.float64(g[1])
    return lambda g: g


def _scaled(g, d, dinv, out):  # pragma: no cover - replaced by the overload
    """g/d as stored into the array ``out``."""
    raise NotImplementedError


@overload(_scaled, jit_options={**JIT, "forceinline": True})
def _scaled_impl(g, d, dinv, out):
    """float64 ``out``: the correctly rounded g/d (``_div``). float32 ``out``:
    g * fl(1/d) in float64, within 2^-52 of g/d, which the store rounds to
    float32: the result is the correctly rounded quotient except where g/d
    lies within 2^-52 (relative) of a float32 rounding boundary, an error of
    at most 0.5 + 2^-28 ULP. One multiply instead of three operations.

    A float32 ``g`` (a formula computed in float32 lanes: BCE with logits'
    defaults kernel) stays in float32 lanes: fl(1/d) = sh + sl as two
    float32 values (loop invariants), g sh = p + e exactly (fma), and the
    result p + (e + g sl), whose correction term is off by at most 2^-47 of
    the result: the same 0.5 + 2^-28 ULP bound for results of at least
    2^-102. Below, e (about 2^-24 p) falls under 2^-126 and is rounded to
    the subnormal grid, 2^-150 at most: within 1 ULP of g/d (0.5 + 2^-150 /
    ulp(g/d)). The float64 round trip it replaces (two conversions each
    way, two multiplies per 16 lanes) cost ~9% of that kernel's time
    (in-cache loop, 1 thread, 1.84 -> 1.67 ns/elem against 1.66 without
    any scaling).

    A float32 pair ``g = (gh, gl)``, gh + gl exactly the gradient (huber's
    float32 kernel: x - y by TwoSum), is scaled as one number: gl sh joins
    the correction term, so the quotient is rounded once (the same bound),
    not first to gh and then again."""
    if isinstance(out, types.Array) and out.dtype == types.float32:
        if isinstance(g, types.UniTuple) and g.dtype == types.float32:
            def impl_pair(g, d, dinv, out):
                sh, sl = f32_pair(dinv)
                gh, gl = g
                p = gh * sh
                return p + fma32(gl, sh, fma32(gh, sl, fma32(gh, sh, -p)))
            return impl_pair
        if g == types.float32:
            def impl32(g, d, dinv, out):
                sh, sl = f32_pair(dinv)
                p = g * sh
                return p + fma32(g, sl, fma32(g, sh, -p))
            return impl32
        return lambda g, d, dinv, out: g * dinv
    return lambda g, d, dinv, out: _div(_wide(g), d, dinv)


def _q_at(qv, j):  # pragma: no cover - replaced by the overload
    """The formula's q for element j of a window: qv itself (a scalar, the
    same for every element) or qv[j] (a block buffer of per-element q)."""
    raise NotImplementedError


@overload(_q_at, jit_options={**JIT, "forceinline": True})
def _q_at_impl(qv, j):
    if isinstance(qv, types.Array):
        return lambda qv, j: np.float64(qv[j])
    return lambda qv, j: qv


@njit(**{**JIT, "forceinline": True})
def _plain_loop(fid, x, y, off, mu, vs, ga, goff, qv, p0, p1, p2, gdiv, ginv, dom):
    """The formula loop of ``fused``'s plain case (unit weights, g/gdiv by
    ``_scaled``): vs[j] = f(x[off + j], y[off + j]) and ga[goff + j] =
    f'(...) / gdiv for j < mu, q = qv (a scalar) or qv[j] (``_q_at``).
    Returns whether an x or y lies outside the loss's domain (``_outside``)."""
    numba.literally(fid)
    dchk = _domain_checked(fid)
    out_of_domain = False
    for j in range(mu):
        xv, yv = x[off + j], y[off + j]
        v, g = apply(fid, xv, yv, _q_at(qv, j), p0, p1, p2)
        vs[j] = v
        ga[goff + j] = _scaled(g, gdiv, ginv, ga)
        if dchk:
            out_of_domain |= _outside(xv, yv, dom)
    return out_of_domain


@njit(**JIT)
def _span_formula(fid, x, y, off, mu, vs, ga, goff, qv, p0, p1, p2, gdiv, ginv, dom):
    """``_plain_loop`` over a span (``SPAN``), in a function of its own."""
    numba.literally(fid)
    wide_vectors()
    return _plain_loop(fid, x, y, off, mu, vs, ga, goff, qv, p0, p1, p2, gdiv, ginv, dom)


def _span(fid, x, y, off, mu, vs, ga, goff, qv, p0, p1, p2, gdiv, ginv, dom):  # pragma: no cover
    """``_span_formula``, q a scalar or a span buffer of per-element q; a
    no-op where the kernel never takes the spans (``_path``)."""
    raise NotImplementedError


def _q_window(fid, x, y, off, mu, vs, ga, goff, qb, p0, p1, p2, gdiv, ginv, dom):  # pragma: no cover
    """``_plain_loop`` with the per-element q of a block buffer qb; a no-op
    for a loss without a q (``_path``)."""
    raise NotImplementedError


def _path(stub, loop, spans):
    """The overload of ``_span`` (``spans``) or ``_q_window``: ``loop``, or a
    no-op returning False where the kernel never takes that path, so that
    it does not compile another copy of the formula's loop: the spans of a
    loss marked ``LossSpec.streams``, and a q buffer (an array qv) for a
    loss without a per-element q (``LossSpec.q_param``: its q is never
    periodic)."""
    def typer(fid, x, y, off, mu, vs, ga, goff, qv, p0, p1, p2, gdiv, ginv, dom):
        index = _formula_index(fid, stub.__name__)
        if (spans and _streamed(index)) or \
                (isinstance(qv, types.Array) and not _spec_flag(index, "q_param")):
            return lambda fid, x, y, off, mu, vs, ga, goff, qv, p0, p1, p2, gdiv, ginv, dom: False
        return lambda fid, x, y, off, mu, vs, ga, goff, qv, p0, p1, p2, gdiv, ginv, dom: loop(
            fid, x, y, off, mu, vs, ga, goff, qv, p0, p1, p2, gdiv, ginv, dom)
    overload(stub, jit_options={**JIT, "forceinline": True})(typer)


_path(_span, _span_formula, True)
_path(_q_window, _plain_loop, False)


@njit(**PARALLEL_JIT)
def fused(fid, x, y, q, qper, w, wper, p0, p1, p2, gdiv, grad, vals, hi, lo,
          store_grad, store_vals, dom, bad):
    """Fused value/gradient/partial-sum pass over x and y (1-D, contiguous).

    grad[i] = w_i f'(x_i, y_i) / gdiv  (if store_grad)
    vals[i] = w_i f(x_i, y_i)          (if store_vals)
    hi[c] + lo[c] = sum of w_i f(x_i, y_i) over chunk c (compensated, float64)
    bad[c] = 1 if chunk c holds an x outside [dom[0], dom[1]] or a y outside
             [dom[2], dom[3]] (losses with interval domains only,
             ``_domain_checked``; else bad is not written)

    The domain test rides in the formula loop, where x and y are in
    registers: four compares and an or per vector, beside a formula whose
    loop is bound by its dependency chain (BCE with logits), instead of a
    pass over the data before the kernel (``checks.first_outside``: 0.09-0.11
    ns/elem of BCE with logits' 1.14 at 2 threads, float32, N = 2^24). The
    caller runs it only where a failed call may write (a buffer of its own,
    not the caller's ``out=``) and then raises the error of the full check
    (``api.evaluate``)."""
    numba.literally(fid)
    dchk = _domain_checked(fid)
    n = x.size
    nchunks = hi.size
    ngroups = (nchunks + GROUP - 1) // GROUP
    periodic = qper > 1 or wper > 1
    # the gradient goes straight to grad unless grad overlaps an input
    # (out=input): then through a block buffer (keeps the loop vectorized)
    g_direct = store_grad and not (_overlap(grad, x) or _overlap(grad, y))
    # a large gradient of a memory-bound loss (``LossSpec.streams``):
    # through the block buffer, then out by streaming stores (``cpu.stream``,
    # ``fastloss._config.STREAM_BYTES``)
    g_stream = (_streams(fid) and g_direct and grad.nbytes >= STREAM_BYTES
                and grad.ctypes.data % grad.itemsize == 0)
    g_into = g_direct and not g_stream
    v_direct = store_vals and not (_overlap(vals, x) or _overlap(vals, y))
    # unit weight and a divisor whose reciprocal is safe: the common case, a
    # loop without the weight's products and with g/gdiv as _div (no vdivpd)
    ginv = 1.0 / gdiv
    unit = (wper == 1 and np.float64(w[0]) == 1.0 and abs(gdiv) >= 2.0**-1000
            and abs(gdiv) <= 2.0**1000)
    plain = unit and qper == 1
    # a per-element q (pos_weight) with unit weights: the plain loop, and the
    # spans, with q from a buffer in the data's dtype (``_q_window``,
    # ``_span``)
    qplain = unit and qper > 1
    peel = _peel(x)
    # an arithmetic-bound loss's plain case: the formula by spans (``SPAN``)
    spans = (plain or qplain) and not _streams(fid) and store_grad and not store_vals
    for grp in prange(ngroups):
        wide_vectors()  # the attribute of the outlined parallel body
        c0 = grp * GROUP
        c1 = min(c0 + GROUP, nchunks)
        S = np.empty(BLOCK, dtype=np.float64)
        E = np.empty(BLOCK, dtype=np.float64)
        gb = np.empty(BLOCK, dtype=grad.dtype)
        vb = np.empty(BLOCK, dtype=vals.dtype)
        vs = np.empty(BLOCK, dtype=x.dtype)
        vc = np.empty(SPAN if spans else 1, dtype=x.dtype)
        gc = np.empty(SPAN if spans and not g_into else 1, dtype=grad.dtype)
        qb = np.empty((SPAN if spans else BLOCK) if qplain else BLOCK if periodic else 1,
                      dtype=x.dtype)
        wb = np.empty(BLOCK if periodic and not qplain else 1, dtype=x.dtype)
        ga = grad if g_into else gb
        va = vals if v_direct else vb
        qv = np.float64(q[0])
        wv = np.float64(w[0])
        for c in range(c0, c1):
            start = c * CHUNK
            stop = min(start + CHUNK, n)
            S[:] = 0.0
            E[:] = 0.0
            b0 = start
            s0 = s1 = start  # the span whose values vc holds
            while b0 < stop:
                m, lane0 = _window(b0, start, stop, peel)
                mu = np.uint64(m)
                off = np.uint64(b0)  # unsigned indices: no wraparound selects
                # the window's values go to lanes lane0.. up to BLOCK - 1 (its
                # first k1), then from lane 0
                k1 = np.uint64(min(m, BLOCK - lane0))
                l0 = np.uint64(lane0)
                goff = off if g_into else _U0
                voff = off if v_direct else _U0
                if PREFETCH > 0 and b0 + PREFETCH + BLOCK <= n:
                    # one prefetch per 64-byte line of the block PREFETCH ahead
                    for k in range(0, BLOCK, 64 // x.itemsize):
                        prefetch(x, b0 + PREFETCH + k, False)
                        prefetch(y, b0 + PREFETCH + k, False)
                        if g_direct:
                            prefetch(grad, b0 + PREFETCH + k, True)
                # the formula loop writes the gradient and the block's values
                # (in the data's dtype: all its loads and stores have one
                # width, which keeps LLVM's float32 loops 8 wide); a second
                # loop stores and sums the values: the formula loop carries
                # no accumulators
                out_of_domain = False
                if spans:
                    # a span of whole windows (the chunk's short first window
                    # alone): its formula first, then its windows' sums; x is
                    # read ahead of every store into the gradient, also where
                    # that is x itself (out=x: through gc)
                    if b0 >= s1:
                        s0 = b0
                        s1 = b0 + m if b0 == start and peel > 0 else min(b0 + SPAN, stop)
                        su = np.uint64(s0)
                        if qplain:
                            _fill(qb, s1 - s0, q, qper, s0 % qper)
                            span_bad = _span(fid, x, y, su, np.uint64(s1 - s0), vc,
                                             grad if g_into else gc, su if g_into else _U0, qb,
                                             p0, p1, p2, gdiv, ginv, dom)
                        else:
                            span_bad = _span(fid, x, y, su, np.uint64(s1 - s0), vc,
                                             grad if g_into else gc, su if g_into else _U0, qv,
                                             p0, p1, p2, gdiv, ginv, dom)
                        if span_bad:
                            bad[c] = 1
                    w0 = np.uint64(b0 - s0)
                    for j in range(k1):
                        _lane_add(S, E, l0 + j, np.float64(vc[w0 + j]), x)
                    for j in range(k1, mu):
                        _lane_add(S, E, j - k1, np.float64(vc[w0 + j]), x)
                    if not g_direct:
                        for j in range(mu):
                            grad[off + j] = gc[w0 + j]
                    b0 += m
                    continue
                if qplain:
                    _fill(qb, m, q, qper, b0 % qper)
                    out_of_domain = _q_window(fid, x, y, off, mu, vs, ga, goff, qb, p0, p1, p2,
                                              gdiv, ginv, dom)
                elif periodic:
                    _fill(qb, m, q, qper, b0 % qper)
                    _fill(wb, m, w, wper, b0 % wper)
                    for j in range(mu):
                        xv, yv = x[off + j], y[off + j]
                        v, g = apply(fid, xv, yv, np.float64(qb[j]), p0, p1, p2)
                        wi = np.float64(wb[j])
                        vs[j] = xmul(wi, v)
                        ga[goff + j] = xmul(wi, _wide(g)) / gdiv
                        if dchk:
                            out_of_domain |= _outside(xv, yv, dom)
                elif plain:
                    out_of_domain = _plain_loop(fid, x, y, off, mu, vs, ga, goff, qv, p0, p1,
                                                p2, gdiv, ginv, dom)
                else:
                    for j in range(mu):
                        xv, yv = x[off + j], y[off + j]
                        v, g = apply(fid, xv, yv, qv, p0, p1, p2)
                        vs[j] = xmul(wv, v)
                        ga[goff + j] = xmul(wv, _wide(g)) / gdiv
                        if dchk:
                            out_of_domain |= _outside(xv, yv, dom)
                if out_of_domain:
                    bad[c] = 1
                if store_vals:
                    for j in range(mu):
                        va[voff + j] = vs[j]
                for j in range(k1):
                    _lane_add(S, E, l0 + j, np.float64(vs[j]), x)
                for j in range(k1, mu):
                    _lane_add(S, E, j - k1, np.float64(vs[j]), x)
                if g_stream:
                    stream_copy(grad, b0, gb, m)
                elif store_grad and not g_direct:
                    for j in range(mu):
                        grad[off + j] = gb[j]
                if store_vals and not v_direct:
                    for j in range(mu):
                        vals[off + j] = vb[j]
                b0 += m
            # positions never reached (a short last chunk) hold exact zeros
            s, comp = block_sum(S, E, BLOCK)
            hi[c] = s
            lo[c] = comp if np.isfinite(s) else 0.0
        if g_stream:
            store_fence()  # the streamed lines before the join


#: the parallel elementwise driver (see ``fused``)
kernel = _LiteralDispatch(fused, nchunks_arg=12)


@njit(**JIT)
def max_abs_diff(x, y):
    """max |x_i - y_i| (NaN if any difference is NaN); used to rescale rmse."""
    m = 0.0
    for i in range(x.size):
        d = abs(np.float64(x[i]) - np.float64(y[i]))
        if d > m or d != d:
            m = d
    return m


@njit(**PARALLEL_JIT)
def value_sum(fid, x, y, p0, p1, p2, hi, lo):
    """hi[c] + lo[c] = the compensated float64 sum of f(x_i, y_i) over chunk c,
    the values in float64 *as computed*, not rounded to the data's dtype:
    for a loss whose per-element values are intermediates never returned
    (rmse sums mse's squares). The same chunks, lanes and accumulation as
    ``fused`` (``_lane_add``: float32 data in plain float64, float64 data
    by TwoSum; the TwoSum for float32 data too cost rmse float32, 2^16, 1
    thread, 1.11 against 0.92 ns/elem); x and y 1-D and contiguous, no
    weights. The gradient the formula also returns is unused (LLVM drops
    it)."""
    numba.literally(fid)
    n = x.size
    nchunks = hi.size
    ngroups = (nchunks + GROUP - 1) // GROUP
    peel = _peel(x)
    for grp in prange(ngroups):
        wide_vectors()
        c0 = grp * GROUP
        c1 = min(c0 + GROUP, nchunks)
        S = np.empty(BLOCK, dtype=np.float64)
        E = np.empty(BLOCK, dtype=np.float64)
        for c in range(c0, c1):
            start = c * CHUNK
            stop = min(start + CHUNK, n)
            S[:] = 0.0
            E[:] = 0.0
            b0 = start
            while b0 < stop:
                m, lane0 = _window(b0, start, stop, peel)
                mu = np.uint64(m)
                k1 = np.uint64(min(m, BLOCK - lane0))
                l0 = np.uint64(lane0)
                off = np.uint64(b0)
                for j in range(k1):
                    v, _ = apply(fid, x[off + j], y[off + j], 0.0, p0, p1, p2)
                    _lane_add(S, E, l0 + j, v, x)
                for j in range(k1, mu):
                    v, _ = apply(fid, x[off + j], y[off + j], 0.0, p0, p1, p2)
                    _lane_add(S, E, j - k1, v, x)
                b0 += m
            s, comp = block_sum(S, E, BLOCK)
            hi[c] = s
            lo[c] = comp if np.isfinite(s) else 0.0


#: the parallel driver of ``value_sum``
value_sum_kernel = _LiteralDispatch(value_sum, nchunks_arg=6)
