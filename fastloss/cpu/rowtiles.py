"""Rows of few classes several at a time: float32 ``cross_entropy`` with labels.

The row formulas of ``fastloss.scalar.multiclass`` take one row at a time.
For a row of C = 10 classes that costs 250-320 ns (measured, float32, one
thread), almost all of it per-row fixed work: the row's loops each run one
vector iteration and a scalar remainder behind their set-up and alias checks,
and the row scalars (a log1p, an expm1, three divisions) run once per row in
scalar code. The float32 lanes of ``rowlanes.ce_row32`` need rows of at
least a vector loop's 64 elements. This module spreads that per-row cost
over several rows.

**Rows of 1 to GROUP_C - 1 classes** (``lane_rows``) are ``ce_row32``'s
algorithm with one row per vector lane: a tile of LANE_ROWS rows is
transposed into a class-major float32 buffer (element j R + r is row r's
class j, R = LANE_ROWS), and every step is a loop over the whole tile:

1. the transpose, by 8 x 8 blocks of vector shuffles (``_intrin.transpose8``,
   C >= 8 and whole tiles; scalar else: LLVM makes no shuffles of an
   element-wise transpose, ~1 cycle an element);
2. each lane's maximum, class by class in four vector accumulators
   (``_intrin.lane_max``; a NaN anywhere makes it NaN, and the row leaves
   the lanes' scope);
3. the terms E_j = e^(x_j - m) 2^64 (``exp_gap32``, 16 lanes a vector),
   m spread over the classes;
4. per lane, the float64 sum of the terms below 2^64 and the count of those
   equal to it, running class by class in a vector accumulator
   (``_intrin.lane_sums_skip``; an order fixed by C);
5. the row scalars of the tile's rows side by side (``multiclass``'s
   ``ce_row_scalars``, ``ce_value``, ``ce_grad_factor``, ``ce_label_grad``,
   inlined: vector lanes across rows);
6. the gradient fma(E_j, fh, E_j fl), transposed back into g (as step 1),
   then the label's entries; a large gradient (``TILE_STREAM_BYTES``)
   into a row-major tile buffer instead, copied out by streaming stores.

The accuracy is ``ce_row32``'s (its module doc): values and gradients
within 2 ULP of mpmath (tests/test_multiclass.py), a row's bits
independent of the rows beside it. Rows outside the lanes' scope
(``rowlanes.row_scope``) take the float64 row formula.

The steps' loops are written for what LLVM vectorizes. The tile's buffers
are separate arrays: as views of one scratch buffer LLVM saw one base
pointer at unknown offsets and vectorized none of the loops. The per-lane
scalars are one array indexed at constant offsets (``_LANE_VECTORS``), so
that the row scalars' loop vectorizes (tests/test_vectorize.py); as the
rows of a (10, 16) view, ten arrays at offsets LLVM did not know, it ran
scalar, 41 against 6.6 ns a row. A value
spread over a tile's classes is copied by doubling (0.3 against 1 cycle an
element). The transposes, running maxima and running sums are LLVM
vector code of their own (``fastloss.math._intrin``): written in Python,
the transposes compile to scalar loads and stores, and the running loops
(a[k] = a[k - R] op v[k]) stay scalar, the index k - R hiding the
dependence distance from LLVM; trees of vectorized loops instead (a level
a loop, from one array into another) cost more on tiles this small (C =
32, tile in cache, 1 thread: 113 against 99 ns, with the row scalars
still scalar), their loops' set-up and checks dominating.

Public call, float32, (65536, C), ``out=``, 1 thread, ms, two runs
alternating processes, with PyTorch's forward + backward in the same
processes:

    C    float64 tiles / row formula   lane_rows     PyTorch
    10   6.99                          2.53-2.56     15.3-16.1
    16   9.01                          3.05-3.31     1.98-2.17
    32   13.81                         6.50-6.65     3.67-4.09
    50   17.35                         11.02-11.18   6.74-7.35
    63   18.76                         13.88-14.30   7.16-8.07

(the first column from the session before; lane_rows with the row scalars
still scalar measured 4.81-4.88, 5.44-5.64, 8.97-9.56, 13.99-14.09 and
16.63-19.59 alternating with these). At 2 threads: C = 10 1.30-1.54 ms,
16 1.59-2.13, 32 3.14-4.24, 50 5.87-7.24, 63 8.64-9.44, PyTorch 8.15-8.52,
1.20-1.76, 2.16-2.97, 4.37-5.81, 4.85-6.15. From C = 16 this is still
slower than PyTorch. At C = 32, 1 thread, a row costs 67 ns with the
tile in cache, 80-96 from memory (a software prefetch of the tile two
ahead, of x or of x and g, measured no better) and 97-109 in the public
call (``rowwise.first_dead_row``'s pass over the rows before the kernel
~7). In cache, without a step, a row cost: the gradient (spreads, fma,
transpose back) 15 ns less, the sums 8, the row scalars 8, the maxima 3.
With the transposes by 8 x 8 blocks (step 1) a row took, in cache, 1
thread, against the transposes class by class: C = 10 34 -> 31 ns, 16 43
-> 36, 32 66 -> 55, 63 114 -> 90; the public call (65536, C), 1 thread,
two runs alternating: C = 16 3.08-3.10 -> 2.80-2.83 ms, 32 6.32-6.78 ->
5.21-5.88, 50 11.27-11.42 -> 8.80-9.13, 63 14.27-14.34 -> 10.91-10.99
(PyTorch 2.04-2.46, 3.62-4.02, 6.94-7.61, 7.64-7.93). With the maxima
and sums in vector accumulators as well (steps 2 and 4), in cache: C = 10
31 -> 28 ns, 32 55 -> 44, 63 90 -> 73-76; the public call against the
code before this session's changes (two runs alternating): C = 10
2.40-2.41 -> 2.00-2.03 ms, 16 3.03-3.16 -> 2.35-2.43, 32 6.40-6.94 ->
4.83-5.18, 50 11.24-11.30 -> 7.29-8.40, 63 14.25-14.49 -> 9.77-11.65
(PyTorch 15.3-15.4, 2.04-2.20, 3.55-3.96, 6.5-9.7, 7.47-8.16): still
slower than PyTorch from C = 16.

**Rows of GROUP_C to GROUP_MAX - 1 classes** (``group_rows``, the same
scope otherwise) are ``rowlanes.ce_row32``'s algorithm with its per-row
fixed cost spread over groups of TILE_ROWS rows: the maximum, the float32
terms and their float64 sum per row, the row scalars of the group's rows
side by side (vector lanes across rows, as ``lane_rows``' step 5), then the
gradient per row. Below ROW32_MIN classes its sum (``_short_sum``: 32
lanes, then a fixed tree) is another order than ``ce_row32``'s, so these
rows have their own bits, independent of the rows beside them
(tests/test_multiclass.py); from ROW32_MIN on it is ``ce_row32``'s sum, and
the rows have ``ce_row32``'s bits (``GROUP_MAX``); the
accuracy is ``ce_row32``'s (values and gradients within 2 ULP of mpmath).
Measured against the float64 row formula these rows took before (public
call, float32, (8192, C), alternating processes, ms, 1 thread / 2
threads): C = 64 2.04-2.06 -> 1.20-1.21 / 1.08-1.11 -> 0.64-0.76; C = 100
2.67-2.70 -> 1.81-1.82 / 1.39-1.40 -> 0.94; C = 200 3.80-3.82 -> 2.50-2.58
/ 1.93-1.94 -> 1.25-1.31; C = 255 4.24-4.27 -> 2.64-2.70 / 2.14 -> 1.28-1.30.
PyTorch's forward + backward at 2 threads took 0.36-0.53, 0.63-0.74,
1.2-1.6 and 1.6-1.8 ms in the same sessions. With the row scalars
vectorized (``_LANE_VECTORS``), 1 thread, two runs alternating with the
code before: C = 64 1.26-1.30 -> 0.90-0.91 ms; 100 1.84-1.92 -> 1.44-1.55;
200 2.53-2.69 -> 2.19-2.33; 255 2.73-2.83 -> 2.29-2.39, PyTorch 0.68-0.77,
1.14-1.31, 2.27-2.60 and 3.02-3.09: below C ~ 200 this is still slower
than PyTorch. In L1 a row of 100 split (before that change) as maximum 11
ns, terms 47, sum 51, gradient 15. In the kernel the sum costs more:
67-68 ns (the kernel alone, 213 ns a row against 145-146 without the sum).
Its lanes on a 64-byte line took the whole row from 238-268 to 204-205 ns.
With the sum in vector registers (``_intrin.row_sum_skip``), in cache, 1
thread, a row took: C = 64 109 -> 79-82 ns, 100 148 -> 120-121, 200 220 ->
193, 255 238 -> 205.

**Label smoothing and z-loss** (both kinds of tile): ``ce_row32``'s
options (``rowlanes`` module doc): the smoothing sum sum_j w_j (m - x_j)
per row (``lane_rows``: per lane, from a float64 tile of the terms, by
``_intrin.lane_sums_skip``; ``group_rows``: ``rowlanes._target_sums``),
the row scalars by ``_lane_options`` and the gradient E_j F - (eps/C) w_j
/ gdiv in float64, rounded once; values within 1 ULP, gradients within 2
ULP x the condition number (docs/ACCURACY.md). These rows took the float64
row formula before: public call, float32, ``out=``, 1 thread, label
smoothing 0.1, alternating processes, ms: (65536, 10) 16.9-17.0 ->
2.27-2.52 (PyTorch 16.2-16.9), (65536, 32) 18.9-21.7 -> 5.79-5.82
(4.9-5.2), (8192, 100) 3.73-3.91 -> 1.24 (1.44-1.54).

**Probability targets, rows of GROUP_C to GROUP_MAX - 1 classes**
(``group_probs``, with a gradient) are ``ce_probs_row32``'s passes per row
with its row scalars (``probs_scalars``: log1p and the factor's division,
scalar code, ~60 ns a row) side by side across groups of TILE_ROWS rows,
as ``group_rows`` for labels; each row keeps ``ce_probs_row32``'s bits.
Public call, float32, (2^18 / C, C), ``out=``, 1 thread, three rounds
alternating processes, ns a row (PyTorch's forward + backward in the same
processes): C = 64 233-239 -> 133-154 (101-116), 100 265-270 -> 173-176
(167-194), 200 398-409 -> 311-342 (304-346), 256 443-452 -> 352-373
(378-413); (8192, 1000), plain call, 1 thread, 11.06-11.16 -> 10.36-10.66
ms. With class weights or label smoothing 0.1 (the targets b_j formed
twice a row, ``rowlanes.row_targets``), rounds 2-4 of four: C = 64
220-318 -> 167-176 (116-172), 100 275-374 -> 229-253 (200-285), 256
470-614 -> 430-442 (427-582), 1000 1407-1761 -> 1494-1803 (1710-2356):
no gain left at C = 1000.

**Probability targets, rows of 1 to GROUP_C - 1 classes** (``lane_probs``)
are ``rowlanes.ce_probs_row32``'s algorithm with one row per vector lane,
by ``lane_rows``' tiles: x and t transposed, each lane's maximum and
largest target (the scope), the terms and their sum (``_tile_terms``), T =
sum_j b_j and S = sum_j b_j (m - x_j) as float64 running sums class by
class, the row scalars by lane (``rowlanes.probs_scalars``), the gradient
E_j F - b_j / gdiv in float64, rounded once. Accuracy as
``ce_probs_row32``'s: values within 1 ULP, gradients within 2 ULP x the
condition number (the float64 formula these rows took before kept a
cancelling entry within ~0.5 ULP x condition; docs/ACCURACY.md). Public
call, float32, (2^21 / C, C), ``out=``, two runs alternating processes
with the float64 row formula they took before, ns a row (PyTorch's
forward + backward in the same processes): 1 thread, C = 2 169-170 -> 18
(39), 5 198-199 -> 26 (112-113), 10 234 -> 31-33 (234-237), 16 241-245
-> 44-45 (41-46), 32 272-276 -> 97-106 (70-88), 63 378-383 -> 200-202
(144-170); with class weights and label smoothing 0.1: C = 2 168 -> 18
(44-46), 10 239-240 -> 34 (249-283), 32 274-275 -> 108-136 (103-124), 63
386-391 -> 219-230 (212-226); 2 threads: C = 2 85 -> 9-12 (20-25), 10
118-119 -> 16-23 (120-122), 32 135-138 -> 42-47 (39-45), 63 190-195 ->
99-103 (72-90) (measured before the shared tile helpers of b01cc1b,
after which ``lane_rows`` measured ~10% slower at C = 2 and 10: README,
Stop 41). From C ~ 16 still not faster than PyTorch: in cache a
row of 32 classes costs ~55-65 ns, ~8 more than ``lane_rows``' with
labels (the targets' transpose, maximum and two sums, the float64
gradient).
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastloss._config import INLINE_COPY, JIT
from fastloss.cpu.rowlanes import (
    _MAIN,
    _RANGE32,
    _TOP,
    _UNSCALE,
    ROW32_MIN,
    _maxes,
    _probs_grad,
    _row_sum,
    _target_sums,
    _terms,
    grad_less,
    probs_scalars,
    probs_scope,
    row_scope,
    row_targets,
    scale_main,
    scale_tail,
)
from fastloss.cpu.stream import stream_copy
from fastloss.math._cpu import exp_gap32, f32_pair
from fastloss.math._intrin import (
    BLOCK8,
    fma32,
    lane_max,
    lane_sums_skip,
    row_sum_skip,
    store_fence,
    transpose8,
    wide_vectors,
)
from fastloss.reduce import keep_and_add
from fastloss.scalar.multiclass import (
    _block_max,
    _target_plain,
    ce_grad_factor,
    ce_label_grad,
    ce_row_scalars,
    ce_value,
    cross_entropy,
    cross_entropy_probs,
    exp,
    scratch_size,
)


def _inlined(f):
    """The row piece f compiled with LLVM ``alwaysinline`` (``INLINE_COPY``):
    a call left in a loop over the tile's rows keeps that loop scalar (the
    row scalars' log1p and expm1 are large enough for LLVM's inliner to leave
    them calls). The same Python function, so the same formula and bits."""
    return njit(**INLINE_COPY)(f.py_func)


_ce_row_scalars = _inlined(ce_row_scalars)
_ce_value = _inlined(ce_value)
_ce_grad_factor = _inlined(ce_grad_factor)
_ce_label_grad = _inlined(ce_label_grad)
_f32_pair = _inlined(f32_pair)
_probs_scalars = _inlined(probs_scalars)


@njit(**INLINE_COPY)
def _lane_scalars(m, s, k, xy, wy, wsum, n, gdiv):
    """``ce_row32``'s row scalars (eps = z = 0) of a row of n classes from
    its maximum m, the sum s of its terms below 2^64 (scaled by 2^64) and
    their count k equal to it, its label's logit xy and weight wy: (value,
    the gradient factor's float32 pair as float64, the label's gradient
    entry). Inlined (``_inlined``), so that the callers' loops over their
    rows' lanes vectorize; ``ce_row32`` makes the same calls for one row."""
    nll, l1, lse, a1, a2, a, denom, ec = _ce_row_scalars(m, s * _UNSCALE, 0.0, k, xy, wy, 0.0,
                                                        0.0, wsum, n)
    v = _ce_value(a1, nll, 0.0, ec, 0.0, 0.0, 1.0, wsum, l1, 0.0, lse, m)
    h, lo = _f32_pair(_ce_grad_factor(a, denom, gdiv) * _UNSCALE)
    return v, np.float64(h), np.float64(lo), _ce_label_grad(a1, a2, 0.0, ec, wy, nll, gdiv)


@njit(**INLINE_COPY)
def _lane_options(m, s, k, xy, wy, wsum, n, gdiv, eps, z, sm):
    """``ce_row32``'s row scalars with label smoothing eps or a z-loss z
    (``_lane_scalars``' inputs and the smoothing sum sm = sum_j w_j (m -
    x_j)): (value, the gradient factor F 2^-64 in float64, 0, the label's
    gradient entry), the gradient off the label formed in float64 from F
    (``rowlanes._probs_grad``). The same calls as ``ce_row32``'s."""
    nll, l1, lse, a1, a2, a, denom, ec = _ce_row_scalars(m, s * _UNSCALE, 0.0, k, xy, wy, eps,
                                                        z, wsum, n)
    v = _ce_value(a1, nll, eps, ec, sm, 0.0, 1.0, wsum, l1, z, lse, m)
    f = _ce_grad_factor(a, denom, gdiv) * _UNSCALE
    return v, f, 0.0, _ce_label_grad(a1, a2, exp(-nll), ec, wy, nll, gdiv)

#: rows per group of ``group_rows``
TILE_ROWS = 16
#: rows of GROUP_C to GROUP_MAX - 1 classes take ``group_rows``; from
#: ``rowlanes.ROW32_MIN`` classes on, with ``ce_row32``'s sum
#: (``_group_sum``), so that those rows keep ``ce_row32``'s bits. It took
#: them from ``ce_row32`` up to 2047 classes: (2^23 / C, C) float32,
#: ``out=``, ns a row, 1 / 2 threads, two runs alternating processes,
#: ce_row32 -> group_rows: C = 256 309-322 -> 245-255 / 159-163 -> 119-122;
#: 300 374-385 -> 328-337 (1 thread); 512 478-495 -> 408-422 / 245-287 ->
#: 206-208; 1000 851-878 -> 803-833 / 445-446 -> 410-417; 1536 1278-1309
#: -> 1216-1227 / 655-660 -> 618-623; 2047 1556-1602 -> 1558-1601 /
#: 804-813 -> 784-814; 3000 2522-2537 -> 2387-2411 / 1235-1270 ->
#: 1213-1504; 8192 5899-5985 -> 6239-6246 (1 thread): the row scalars of
#: 16 rows side by side save ~60 ns a row, until the group's terms (16
#: rows) outgrow the caches between the terms and the gradient passes.
GROUP_MAX = 2048
#: ``lane_rows`` writes a gradient of at least TILE_STREAM_BYTES, with rows
#: of at least TILE_STREAM_C classes, tile by tile through a row-major
#: buffer and out by streaming stores (``cpu.stream``: no read of each line
#: before it is written). Public call, float32, 1 / 2 threads, ms, three
#: runs alternating processes, ordinary -> streaming stores: (65536, 32)
#: 4.48-5.16 -> 3.80-4.21 / 1.91-2.06 -> 1.83-2.11; (262144, 32) 21.0-21.7
#: -> 18.4-18.6 / 10.4-10.6 -> 9.1-9.2; (131072, 50) 15.9-16.1 -> 13.9-14.2
#: / 7.8-8.1 -> 6.8-6.9; (32768, 63) 4.2-4.9 -> 3.3-3.9 / 1.7-2.2 -> 1.6;
#: (16384, 32), a 2 MiB gradient, 0.82-0.85 either way. Slower for short
#: tiles, whose partial lines at both ends take ordinary stores:
#: (262144, 10) 8.7-8.8 -> 9.5-10.0 / 4.1-4.3 -> 4.4-4.8, (262144, 16)
#: 10.8-11.3 -> 10.5-12.7 / 5.3-5.8 -> 5.9-6.4. The row kernels of more
#: classes write their gradient in place of their terms, which they read
#: back: there, a separate buffer cost no more than the logits in place
#: ((8192, 1000), ``group_rows``: 6.60-6.61 against 6.56-6.60 ms, 1 thread;
#: 3.23 against 3.17, 2 threads).
TILE_STREAM_BYTES = 4 << 20
TILE_STREAM_C = 32
#: rows of fewer classes than GROUP_C take ``lane_rows`` (its loops need no
#: minimum row length); rows of GROUP_C to GROUP_MAX - 1
#: classes take ``group_rows`` (its loops need a row of at least
#: ``rowlanes._MAIN``)
GROUP_C = _MAIN
#: rows per tile of ``lane_rows``: one per lane of a 512-bit float32
#: vector (16, 32 and 64 rows: 144, 136 and 139 ns a row at C = 32, 1
#: thread, from memory, within this machine's noise)
LANE_ROWS = 16
#: the per-lane (``lane_rows``) or per-row (``group_rows``) scalars of a
#: tile or group, float64 vectors of LANE_ROWS (= TILE_ROWS) elements in
#: one array, vector k from k LANE_ROWS: the label's logit and weight, the
#: maximum, the terms' sum and count (``rowlanes``, pass 3), the value, the
#: gradient factor's float32 pair (with smoothing or z-loss: the factor
#: and 0), the label's gradient entry, the mode (0 lanes, 1 the row
#: formula, 2 ignored or past stop), and the smoothing sum. Indexed from one
#: pointer at constant offsets, LLVM vectorizes the row scalars' loop over
#: them (``_lane_scalars``); as rows of a (10, 16) view (ten arrays, offsets
#: unknown to LLVM) that loop stayed scalar: 41 against 6.6 ns a row alone,
#: lane_rows at C = 32 99 against 67 ns a row (1 thread, in cache)
_LANE_VECTORS = 11
_XY, _WY, _MX, _SM, _KC, _RV, _FH, _FL, _GY, _MD, _SS = range(0, _LANE_VECTORS * LANE_ROWS,
                                                              LANE_ROWS)
assert TILE_ROWS == LANE_ROWS
#: ``group_rows``' sum lanes (``_short_sum``)
_LANES = 32


def _lane_scratch() -> int:
    """``lane_rows``' float64 scratch after the row formula's: its per-lane
    vectors (its tile buffers are its own arrays)."""
    return _LANE_VECTORS * LANE_ROWS


def _group_scratch(c: int) -> int:
    """``group_rows``' float64 scratch after the row formula's: the per-row
    vectors and a float32 row of terms."""
    return _LANE_VECTORS * TILE_ROWS + (c + 1) // 2 + 1


def scratch(c: int) -> int:
    """float64 scratch per chunk for rows of c classes: the row formulas'
    (``scratch_size``), and after it ``lane_rows``' or ``group_rows``' own
    for the rows they take (they call the row formula for rows outside
    their scope)."""
    if 1 <= c < GROUP_C:
        return scratch_size(c) + _lane_scratch()
    if GROUP_C <= c < GROUP_MAX:
        return scratch_size(c) + _group_scratch(c)
    return scratch_size(c)


def tile_pass(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
              stop, vals, store_vals, s, comp):  # pragma: no cover - replaced by the overload
    """(True, s, comp) after ``lane_rows``, ``group_rows`` or ``lane_probs``
    when one of them computes this chunk (see the module doc), else (False,
    s, comp) having done nothing: for every formula but cross_entropy on
    float32 data a constant, so the row driver compiles them for that one
    kernel only (and the probability targets' kernel ``lane_probs`` only)."""
    raise NotImplementedError


@overload(tile_pass, jit_options=JIT, prefer_literal=True)
def _tile_pass(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
               stop, vals, store_vals, s, comp):
    # fids 0 and 1 are cross_entropy with labels and with probability
    # targets (multiclass.ROW_FORMULAS); float32 data only
    fid_value = fid.literal_value if isinstance(fid, types.IntegerLiteral) else None
    if fid_value not in (0, 1) or getattr(x, "dtype", None) != types.float32:
        def none(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
                 stop, vals, store_vals, s, comp):
            return False, s, comp
        return none

    if fid_value == 1:
        def probs(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
                  stop, vals, store_vals, s, comp):
            c = x.shape[1]
            if 1 <= c < GROUP_C:
                s, comp = lane_probs(x, t, w, p0, p1, p2, p3, gdiv, g, sg, buf, start, stop, vals,
                                     store_vals, s, comp)
                return True, s, comp
            if GROUP_C <= c < GROUP_MAX and sg:
                s, comp = group_probs(x, t, w, p0, p1, p2, p3, gdiv, g, buf, start, stop, vals,
                                      store_vals, s, comp)
                return True, s, comp
            return False, s, comp
        return probs

    def impl(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
             stop, vals, store_vals, s, comp):
        c = x.shape[1]
        if t.shape[1] != 0:
            return False, s, comp
        if 1 <= c < GROUP_C:
            s, comp = lane_rows(x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg,
                                buf, start, stop, vals, store_vals, s, comp)
            return True, s, comp
        if GROUP_C <= c < GROUP_MAX:
            s, comp = group_rows(x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg,
                                 buf, start, stop, vals, store_vals, s, comp)
            return True, s, comp
        return False, s, comp
    return impl


# --- rows of 1 to GROUP_C - 1 classes ------------------------------------------

#: ``multiclass.scratch_size`` in compiled code
_scratch_size = njit(**JIT)(scratch_size)


@njit(**{**JIT, "forceinline": True})
def _spread(a, c):
    """a[j LANE_ROWS + r] = a[r] for the c classes of a tile buffer: its
    first class copied by doubling (each copy from one part of a into
    another, which LLVM vectorizes; an element at a time from a lane vector
    ran scalar, 1 cycle an element)."""
    wide_vectors()
    cr = c * LANE_ROWS
    w = LANE_ROWS
    while w < cr:
        k = min(w, cr - w)
        src = a[:k]
        dst = a[w:w + k]
        for i in range(k):
            dst[i] = src[i]
        w += k


@njit(**{**JIT, "forceinline": True})
def _tile_transpose(t, rows, c, nr, into_tile):
    """The tile's transpose between its nr rows of c classes, contiguous in
    rows, and the class-major tile t: into t (``into_tile``; the lanes past
    nr take the last row again) or from t back into rows (the first nr
    lanes). A whole tile of c >= BLOCK8 classes goes by 8 x 8 blocks
    (``_intrin.transpose8``), the last block at class c - 8, overlapping
    the one before it when 8 does not divide c (its classes copied twice,
    the same values); else class by class, element by element (~1 cycle
    an element: LLVM makes no shuffles of it)."""
    R = LANE_ROWS
    if nr == R and c >= BLOCK8:
        for jb in range(0, c, BLOCK8):
            j0 = min(jb, c - BLOCK8)
            for i0 in range(0, R, BLOCK8):
                if into_tile:
                    transpose8(t, j0 * R + i0, R, rows, i0 * c + j0, c)
                else:
                    transpose8(rows, i0 * c + j0, c, t, j0 * R + i0, R)
    elif into_tile:
        for j in range(c):
            tj = t[j * R:(j + 1) * R]
            for r in range(R):
                tj[r] = rows[min(r, nr - 1) * c + j]
    else:
        for j in range(c):
            tj = t[j * R:(j + 1) * R]
            for r in range(nr):
                rows[r * c + j] = tj[r]


@njit(**{**JIT, "forceinline": True})
def _tile_buffers(buf, c):
    """``lane_rows``' and ``lane_probs``' buffers for tiles of rows of c
    classes: the row formula's scratch (buf's first ``scratch_size(c)``),
    the per-lane vectors _XY ... _SS (``_LANE_VECTORS``, in buf after it),
    then new arrays: the tile's logits and terms (then gradient), and a
    float32 spread over its classes, class-major (element j LANE_ROWS + r
    is row r's class j); per lane the maximum, a float64 sum and a float32
    count; a row for the row formula. The tile's buffers are separate
    arrays: as views of buf, LLVM saw one base pointer at unknown offsets
    and vectorized none of the loops over them."""
    R = LANE_ROWS
    cr = c * R
    o = _scratch_size(c)
    return (buf[:o], buf[o:o + _LANE_VECTORS * R], np.empty(cr, np.float32),
            np.empty(cr, np.float32), np.empty(cr, np.float32), np.empty(R, np.float32),
            np.empty(R, np.float64), np.empty(R, np.float32), np.empty(c, np.float32))


@njit(**{**JIT, "forceinline": True})
def _lane_gap_sums(b, xt, fa, dt, sl, cl, lv, c):
    """Per lane of the class-major tile xt, with its maximum m spread in fa:
    sum_j b_j (m - x_j) in float64 (a term 0 where b_j = 0, also at x_j =
    -inf), class by class (``_intrin.lane_sums_skip``), into lv[_SS + r];
    dt: float64 scratch of the tile's size. ``lane_rows``' smoothing sums
    (b = w) and ``lane_probs``' S (b the per-class targets)."""
    R = LANE_ROWS
    for k in range(c * R):
        bk = np.float64(b[k])
        dt[k] = 0.0 if bk == 0.0 else bk * (np.float64(fa[k]) - np.float64(xt[k]))
    lane_sums_skip(dt, c, np.nan, sl, cl, R)
    for r in range(R):
        lv[_SS + r] = sl[r]


@njit(**{**JIT, "forceinline": True})
def _lane_grad_less(et, fd, b, ginv, lv, c):
    """The gradient E_j F - b_j ginv of the tile's terms et, in place, each
    formed in float64 and rounded once (``rowlanes.grad_less``), with each
    lane's factor F (lv[_FH + r]) spread over its classes in fd (float64
    scratch of the tile's size)."""
    R = LANE_ROWS
    for r in range(R):
        fd[r] = lv[_FH + r]
    _spread(fd, c)
    for k in range(c * R):
        et[k] = grad_less(et[k], fd[k], b[k], ginv)


@njit(**{**JIT, "forceinline": True})
def _tile_stream(g, c, sg):
    """Whether ``lane_rows`` or ``lane_probs`` writes the gradient g (rows
    of c classes) through a row-major tile buffer and streaming stores
    (``TILE_STREAM_BYTES``), and that buffer (empty if not)."""
    on = sg and c >= TILE_STREAM_C and g.nbytes >= TILE_STREAM_BYTES and g.ctypes.data % 4 == 0
    return on, np.empty(c * LANE_ROWS if on else 0, np.float32)


@njit(**{**JIT, "forceinline": True})
def _tile_terms(xt, et, fa, sl, cl, lv, c):
    """Steps 3 and 4 of ``lane_rows`` (module doc) for the class-major tile
    xt, from each lane's maximum lv[_MX + r]: the terms E_j = e^(x_j - m)
    2^64 into et (``rowlanes``, pass 2), m spread over the classes in fa;
    then per lane the sum of the terms below 2^64 (float64) and the count
    of those equal to it (``rowlanes``, pass 3), into lv[_SM + r] and
    lv[_KC + r]: running sums, class by class, in vector registers
    (``_intrin.lane_sums_skip``; sl and cl their lanes)."""
    R = LANE_ROWS
    for r in range(R):
        fa[r] = np.float32(lv[_MX + r])
    _spread(fa, c)
    for k in range(c * R):
        m32 = fa[k]
        et[k] = exp_gap32(xt[k], m32, -m32, m32 - _RANGE32)
    lane_sums_skip(et, c, _TOP, sl, cl, R)
    for r in range(R):
        lv[_SM + r] = sl[r]
        lv[_KC + r] = np.float64(cl[r])


@njit(**JIT)
def lane_rows(x, lab, t, w, eps, z, wsum_lo, wsum, ignore, use_ignore, gdiv, g, sg, buf, start,
              stop, vals, store_vals, s, comp):
    """Rows start..stop-1 of x (float32, 1 <= C < GROUP_C, integer labels)
    by tiles of LANE_ROWS rows, one row per vector lane (module doc):
    gradients into g (when sg), values into vals (when store_vals), and the
    values added to the compensated sum (s, comp) in row order; returns (s,
    comp). buf: float64 scratch of ``scratch(C)``.

    With label smoothing eps or a z-loss z, ``ce_row32``'s options: the
    smoothing sums sum_j w_j (m - x_j) per lane, class by class in a vector
    accumulator (``_intrin.lane_sums_skip`` on float64 terms), the row
    scalars by ``_lane_options`` and the gradient E_j F - (eps/C) w_j /
    gdiv in float64, rounded once (``rowlanes.grad_less``).

    A row outside the float32 lanes' scope (``rowlanes.row_scope``: w_y /
    gdiv out of range, |max| >= 2^24, +-inf or a NaN anywhere) takes
    ``multiclass.cross_entropy`` from its transposed copy, after the tile's
    gradient is written (g may be x). Ignored rows: value 0, zero
    gradient. A short last tile repeats its last row in the lanes past it
    (computed, dropped)."""
    wide_vectors()
    R = LANE_ROWS
    c = x.shape[1]
    n = np.float64(c)
    cr = c * R
    # fa: m, then fh, in every class
    rb, lv, xt, et, fa, ml, sl, cl, xrow = _tile_buffers(buf, c)
    fb = np.empty(cr, np.float32)  # fl in every class
    options = eps != 0.0 or z != 0.0
    # with options: w in every lane of its class, the factor F in every
    # class (float64), the smoothing terms w_j (m - x_j) (float64)
    co = cr if options else 0
    wt = np.empty(co, np.float32)
    for j in range(c if options else 0):
        wt[j * R:(j + 1) * R] = w[j]
    fd = np.empty(co, np.float64)
    dt = np.empty(co if eps != 0.0 else 0, np.float64)
    ecg = eps / n / gdiv
    xf = x.reshape(-1)
    gf = g.reshape(-1)
    # a large gradient: each tile's rows written whole into gt (row-major),
    # then out by streaming stores (``cpu.stream``)
    g_stream, gt = _tile_stream(g, c, sg)
    for r0 in range(start, stop, R):
        nr = min(R, stop - r0)
        xs = xf[r0 * c:(r0 + nr) * c]
        # 1. the tile, transposed (whole tiles by blocks: C = 32, in cache,
        #    1 thread, 9.0 against 2.6 ns a row class by class)
        _tile_transpose(xt, xs, c, nr, True)
        for r in range(R):
            y = lab[r0 + r] if r < nr else 0
            mode = 0.0 if r < nr else 2.0
            if use_ignore and y == ignore:
                y = 0
                mode = 2.0
            lv[_XY + r] = np.float64(xt[y * R + r])
            lv[_WY + r] = np.float64(w[y])
            lv[_MD + r] = mode
            lv[_SS + r] = 0.0
        # 2. each lane's maximum (vector accumulators: ``_intrin.lane_max``;
        #    of -0 and +0 either, the same bits after; a NaN row leaves the
        #    lanes), and its scope
        lane_max(xt, c, ml, R)
        for r in range(R):
            m = np.float64(ml[r])
            if lv[_MD + r] == 0.0 and not row_scope(m, lv[_WY + r], eps, z, wsum, gdiv, n):
                lv[_MD + r] = 1.0
            lv[_MX + r] = m if lv[_MD + r] == 0.0 else 0.0
        # 3., 4. the terms and their sums
        _tile_terms(xt, et, fa, sl, cl, lv, c)
        if eps != 0.0:
            # the smoothing sums sum_j w_j (m - x_j) (a term 0 where w_j =
            # 0, also at x_j = -inf), per lane class by class
            _lane_gap_sums(wt, xt, fa, dt, sl, cl, lv, c)
        # 5. the row scalars, the lanes side by side (``ce_row32``'s)
        if options:
            for r in range(R):
                lv[_RV + r], lv[_FH + r], lv[_FL + r], lv[_GY + r] = _lane_options(
                    lv[_MX + r], lv[_SM + r], lv[_KC + r], lv[_XY + r], lv[_WY + r], wsum, n,
                    gdiv, eps, z, lv[_SS + r])
        else:
            for r in range(R):
                lv[_RV + r], lv[_FH + r], lv[_FL + r], lv[_GY + r] = _lane_scalars(
                    lv[_MX + r], lv[_SM + r], lv[_KC + r], lv[_XY + r], lv[_WY + r], wsum, n,
                    gdiv)
        # 6. the gradient g_j = fma(E_j, fh, E_j fl) (``rowlanes``, pass 4),
        #    or with options E_j F - (eps/C) w_j / gdiv in float64, transposed
        #    back into g (x is fully read: g may be x), or into gt, which
        #    step 7 completes and streaming stores copy out (TILE_STREAM_BYTES)
        if sg:
            if options:
                _lane_grad_less(et, fd, wt, ecg, lv, c)
            else:
                for r in range(R):
                    fa[r] = np.float32(lv[_FH + r])
                    fb[r] = np.float32(lv[_FL + r])
                _spread(fa, c)
                _spread(fb, c)
                for k in range(cr):
                    e = et[k]
                    et[k] = fma32(e, fa[k], e * fb[k])
            _tile_transpose(et, gt if g_stream else gf[r0 * c:(r0 + nr) * c], c, nr, False)
        # 7. per row: the label's entry, ignored rows, the rows outside the
        #    scope; values in row order
        for r in range(nr):
            mode = lv[_MD + r]
            if mode == 1.0:
                for j in range(c):
                    xrow[j] = xt[j * R + r]
                grow = gt[r * c:(r + 1) * c] if g_stream else g[r0 + r]
                lv[_RV + r] = cross_entropy(xrow, lab[r0 + r], t[r0 + r], w, eps, z, wsum_lo,
                                            wsum, gdiv, grow, sg, rb)
            elif sg:
                gb = r * c if g_stream else 0
                gr = gt if g_stream else g[r0 + r]
                if mode == 2.0:
                    for j in range(c):
                        gr[gb + j] = 0.0
                else:
                    gr[gb + lab[r0 + r]] = lv[_GY + r]
            v = 0.0 if mode == 2.0 else lv[_RV + r]
            s, comp = keep_and_add(vals, r0 + r, store_vals, s, comp, v)
        if g_stream:
            stream_copy(gf, r0 * c, gt, nr * c)
    if g_stream:
        store_fence()  # the streamed lines before the caller's join
    return s, comp


@njit(**{**JIT, "forceinline": True})
def _lane_targets_grad(bt, xt, et, fa, fd, sl, cl, lv, c, z, gdiv, ginv, sg):
    """``lane_probs`` from the per-class targets b_j of the tile (bt,
    float32 t_j in the plain case, else float64): per lane T = sum_j b_j
    (into lv[_XY + r]) and S = sum_j b_j (m - x_j) (0 where b_j = 0, into
    lv[_SS + r]) class by class, the row scalars (lv[_RV + r], lv[_FH + r]),
    and with a gradient (sg) E_j F - b_j / gdiv into et, each rounded once
    from float64 (fd: scratch of the tile's size)."""
    R = LANE_ROWS
    lane_sums_skip(bt, c, np.nan, sl, cl, R)
    for r in range(R):
        lv[_XY + r] = sl[r]
    _lane_gap_sums(bt, xt, fa, fd, sl, cl, lv, c)
    for r in range(R):
        lv[_RV + r], lv[_FH + r] = _probs_scalars(lv[_MX + r], lv[_SM + r], lv[_KC + r],
                                                  lv[_XY + r], lv[_SS + r], z, gdiv)
    if sg:
        _lane_grad_less(et, fd, bt, ginv, lv, c)


@njit(**JIT)
def lane_probs(x, t, w, eps, z, p2, p3, gdiv, g, sg, buf, start, stop, vals, store_vals, s,
               comp):
    """Rows start..stop-1 of x (float32, 1 <= C < GROUP_C) with probability
    targets t (float32, x's shape; class weights w, label smoothing eps,
    z-loss z, p2 = max(w) and p3 = 1 without weights, as
    ``multiclass.cross_entropy_probs``): ``rowlanes.ce_probs_row32``'s
    algorithm with one row per vector lane, by ``lane_rows``' tiles;
    ``lane_rows``' outputs and return.

    Per tile: x and t transposed (class-major, ``_tile_transpose``); each
    lane's maximum and largest target (``_intrin.lane_max``) and its scope
    (``rowlanes.probs_scope``); the terms and their sum (``_tile_terms``);
    the per-class targets b_j = w_j t'_j in float64 (t_j itself in the
    plain case, ``multiclass._target_plain``), and per lane T = sum_j b_j
    and S = sum_j b_j (m - x_j) (0 where b_j = 0), float64 running sums
    class by class (``_intrin.lane_sums_skip``); the row scalars by lane
    (``rowlanes.probs_scalars``); the gradient E_j F - b_j / gdiv in
    float64, rounded once (``rowlanes.grad_less``), transposed back (or by
    streaming stores, as ``lane_rows``). Sums of C < 64 terms class by
    class: the value's and the gradient's accuracy is ``ce_probs_row32``'s
    (its docstring). A row outside the scope (|max| >= 2^24, a NaN or
    +-inf logit, a NaN target, a factor bound exceeded) takes
    ``cross_entropy_probs`` from its transposed copies, after the tile's
    gradient is written (g may be x, and t may be x)."""
    wide_vectors()
    c = x.shape[1]
    # per lane (lv): _XY holds T, _SS S, _MX the maximum, _SM and _KC the
    # terms' sum and count, _RV the value, _FH the factor, _MD the mode; fa:
    # m in every class
    rb, lv, xt, et, fa, ml, sl, cl, xrow = _tile_buffers(buf, c)
    R = LANE_ROWS
    cr = c * R
    n = np.float64(c)
    tt = np.empty(cr, np.float32)  # the targets
    fd = np.empty(cr, np.float64)  # b_j (m - x_j), then F in every class
    tl = np.empty(R, np.float32)  # per lane: the largest target
    trow = np.empty(c, np.float32)  # a row of targets for the row formula
    plain = eps == 0.0 and p3 == 1.0
    bt = np.empty(0 if plain else cr, np.float64)  # b_j (t_j itself if plain)
    om = 1.0 - eps
    ec = eps / n
    ginv = 1.0 / gdiv
    # w in every lane of its class (float64)
    wt = np.empty(0 if plain else cr, np.float64)
    for j in range(0 if plain else c):
        wt[j * R:(j + 1) * R] = w[j]
    xf = x.reshape(-1)
    tf = t.reshape(-1)
    gf = g.reshape(-1)
    g_stream, gt = _tile_stream(g, c, sg)
    for r0 in range(start, stop, R):
        nr = min(R, stop - r0)
        _tile_transpose(xt, xf[r0 * c:(r0 + nr) * c], c, nr, True)
        _tile_transpose(tt, tf[r0 * c:(r0 + nr) * c], c, nr, True)
        lane_max(xt, c, ml, R)
        lane_max(tt, c, tl, R)
        for r in range(R):
            m = np.float64(ml[r])
            ok = r < nr and probs_scope(m, np.float64(tl[r]), eps, p2, plain, z, gdiv, n)
            lv[_MD + r] = 0.0 if ok else (1.0 if r < nr else 2.0)
            lv[_MX + r] = m if ok else 0.0
        _tile_terms(xt, et, fa, sl, cl, lv, c)
        if plain:
            # b_j = t_j: the float32 tile itself
            _lane_targets_grad(tt, xt, et, fa, fd, sl, cl, lv, c, z, gdiv, ginv, sg)
        else:
            for k in range(cr):
                bt[k] = _target_plain(tt[k], wt[k], om, ec, False)
            _lane_targets_grad(bt, xt, et, fa, fd, sl, cl, lv, c, z, gdiv, ginv, sg)
        if sg:
            _tile_transpose(et, gt if g_stream else gf[r0 * c:(r0 + nr) * c], c, nr, False)
        for r in range(nr):
            if lv[_MD + r] == 1.0:
                for j in range(c):
                    xrow[j] = xt[j * R + r]
                    trow[j] = tt[j * R + r]
                grow = gt[r * c:(r + 1) * c] if g_stream else g[r0 + r]
                lv[_RV + r] = cross_entropy_probs(xrow, 0, trow, w, eps, z, p2, p3, gdiv, grow,
                                                  sg, rb)
            v = lv[_RV + r]
            s, comp = keep_and_add(vals, r0 + r, store_vals, s, comp, v)
        if g_stream:
            stream_copy(gf, r0 * c, gt, nr * c)
    if g_stream:
        store_fence()
    return s, comp


# --- rows of GROUP_C to GROUP_MAX - 1 classes ----------------------------------


@njit(**{**JIT, "forceinline": True})
def _group_buffers(buf, c):
    """A group's views of the chunk's scratch: the row formula's (buf's
    first ``scratch_size(c)``, for the rows out of scope) and after it the
    per-row vectors _XY ... _SS of one array (``_LANE_VECTORS``)."""
    o = _scratch_size(c)
    return buf[:o], buf[o:o + _LANE_VECTORS * TILE_ROWS]


@njit(**{**JIT, "forceinline": True})
def _neutral_scalars(lv, r):
    """Row r's scalars in a group's vectors lv (``_LANE_VECTORS``) set to
    neutral values, mode 2: the side-by-side step computes them and drops
    the result (a row past stop, ignored, or not yet known to be in scope)."""
    lv[_MX + r] = 0.0
    lv[_SM + r] = 0.0
    lv[_KC + r] = 1.0
    lv[_XY + r] = 0.0
    lv[_WY + r] = 0.0
    lv[_MD + r] = 2.0
    lv[_SS + r] = 0.0


@njit(**{**JIT, "forceinline": True})
def _short_sum(ts):
    """(sum, count) over a row's terms ts (n >= _LANES of them), as
    ``rowlanes._row_sum``: the terms below 2^64 summed in float64, those
    equal to it counted. _LANES running sums and counts: lane l takes terms
    l, l + _LANES, ... of the row's whole groups of _LANES, then term l of
    the row's last _LANES unless a group took it; then the lanes by a fixed
    tree. An order fixed by n; relative error ~(n / _LANES + 6) 2^-53. In
    vector registers throughout (``_intrin.row_sum_skip``): written in
    Python, with the lanes in a scratch array, the groups' loop vectorized
    but the tail and the tree ran scalar, reading the lanes back from
    memory: one row in L1, n = 64, 100, 200: 7.6, 10.5, 17.8 ns against
    63, 45, 60 with the groups in Python too."""
    return row_sum_skip(ts, _TOP, _LANES)


@njit(**{**JIT, "forceinline": True})
def _group_sum(ts, c):
    """A row's (sum, count) of its terms: ``_short_sum`` below ROW32_MIN
    classes, ``rowlanes._row_sum`` (``ce_row32``'s) from it."""
    if c < ROW32_MIN:
        return _short_sum(ts)
    return _row_sum(ts)


@njit(**JIT)
def group_rows(x, lab, t, w, eps, z, wsum_lo, wsum, ignore, use_ignore, gdiv, g, sg, buf, start,
               stop, vals, store_vals, s, comp):
    """Rows start..stop-1 of x (float32, GROUP_C <= C < GROUP_MAX, integer
    labels) as ``rowlanes.ce_row32`` computes a longer row, with its
    options (label smoothing eps, z-loss z: the smoothing sum per row before
    the terms, ``_lane_options``, the gradient by ``rowlanes._probs_grad``),
    by groups of TILE_ROWS rows: per row the maximum, the terms
    (into the gradient row, or a scratch row without a gradient) and their
    sum (``_short_sum``); then the row scalars of the group's rows side by
    side (``_lane_scalars``: vector lanes across rows, as ``lane_rows``'
    step 5); then per row the gradient and the label's entry. With a
    gradient the sums run after all the group's terms (the terms of 16 rows
    of up to 2047 float32, 128 KiB, stay in L2). Returns the
    compensated sum (s, comp) with the rows' values added in row order.

    A row outside ``ce_row32``'s scope (``rowlanes.row_scope``: w_y / gdiv
    out of range, |max| >= 2^24 or NaN), found before its gradient row is
    written, takes
    ``multiclass.cross_entropy`` in step 1, with the row formula's scratch
    (buf's first ``scratch_size(C)``). Ignored rows: value 0, zero
    gradient."""
    wide_vectors()
    R = TILE_ROWS
    c = x.shape[1]
    n = np.float64(c)
    rb, lv = _group_buffers(buf, c)
    o = _scratch_size(c) + _LANE_VECTORS * R
    tsb = buf[o:o + (c + 1) // 2].view(np.float32)[:c]
    options = eps != 0.0 or z != 0.0
    ecg = eps / n / gdiv
    for r0 in range(start, stop, R):
        nr = min(R, stop - r0)
        # 1. per row: the maximum, the terms and their sum
        for r in range(R):
            _neutral_scalars(lv, r)
            if r >= nr:
                continue
            y = lab[r0 + r]
            if use_ignore and y == ignore:
                continue
            xr = x[r0 + r]
            wv = np.float64(w[y])
            m = _block_max(xr)
            if not row_scope(m, wv, eps, z, wsum, gdiv, n):
                lv[_MD + r] = 1.0
                lv[_RV + r] = cross_entropy(xr, y, t[r0 + r], w, eps, z, wsum_lo, wsum, gdiv,
                                            g[r0 + r], sg, rb)
                continue
            lv[_MD + r] = 0.0
            lv[_MX + r] = m
            lv[_XY + r] = np.float64(xr[y])  # (read before the gradient: g may be x)
            lv[_WY + r] = wv
            if eps != 0.0:
                lv[_SS + r] = _target_sums(xr, w, m)[1]  # (before the terms)
            m32 = np.float32(m)
            ts = g[r0 + r] if sg else tsb
            _terms(xr, ts, m32, -m32, m32 - _RANGE32, sg and xr.ctypes.data == ts.ctypes.data)
            if not sg:
                lv[_SM + r], lv[_KC + r] = _group_sum(ts, c)
        # their sums, a row's after the others' terms: its sum's tail loads
        # straddle its terms' last stores, which then stalled the loads in
        # the store buffer (C = 100: 110 against 50 ns a row)
        if sg:
            for r in range(nr):
                if lv[_MD + r] == 0.0:
                    lv[_SM + r], lv[_KC + r] = _group_sum(g[r0 + r], c)
        # 2. the row scalars, the rows side by side (``ce_row32``'s)
        if options:
            for r in range(R):
                v, lv[_FH + r], lv[_FL + r], lv[_GY + r] = _lane_options(
                    lv[_MX + r], lv[_SM + r], lv[_KC + r], lv[_XY + r], lv[_WY + r], wsum, n,
                    gdiv, eps, z, lv[_SS + r])
                lv[_RV + r] = v if lv[_MD + r] == 0.0 else lv[_RV + r]
        else:
            for r in range(R):
                v, lv[_FH + r], lv[_FL + r], lv[_GY + r] = _lane_scalars(
                    lv[_MX + r], lv[_SM + r], lv[_KC + r], lv[_XY + r], lv[_WY + r], wsum, n,
                    gdiv)
                lv[_RV + r] = v if lv[_MD + r] == 0.0 else lv[_RV + r]
        # 3. per row: the gradient, the label's entry; values in row order.
        # The tails first, each row's well before its main loop (whose
        # loads straddled the tail's stores right after them: C = 100)
        if sg and not options:
            for r in range(nr):
                if lv[_MD + r] == 0.0:
                    scale_tail(g[r0 + r], np.float32(lv[_FH + r]), np.float32(lv[_FL + r]))
        for r in range(nr):
            mode = lv[_MD + r]
            v = 0.0 if mode == 2.0 else lv[_RV + r]
            if sg and mode != 1.0:
                gr = g[r0 + r]
                if mode == 2.0:
                    for j in range(c):
                        gr[j] = 0.0
                elif options:
                    _probs_grad(gr, w, lv[_FH + r], ecg)
                    gr[lab[r0 + r]] = lv[_GY + r]
                else:
                    scale_main(gr, np.float32(lv[_FH + r]), np.float32(lv[_FL + r]))
                    gr[lab[r0 + r]] = lv[_GY + r]
            s, comp = keep_and_add(vals, r0 + r, store_vals, s, comp, v)
    return s, comp


@njit(**JIT)
def group_probs(x, t, w, eps, z, p2, p3, gdiv, g, buf, start, stop, vals, store_vals, s, comp):
    """Rows start..stop-1 of x (float32, GROUP_C <= C < GROUP_MAX,
    probability targets, a gradient stored) as ``rowlanes.ce_probs_row32``
    computes them, its per-row scalars spread over groups of TILE_ROWS
    rows, as ``group_rows`` does for labels: per row the maxima, the scope,
    the target sums and the terms (into the gradient row); then the terms'
    sums, a row's after the group's terms; then the row scalars of the
    group's rows side by side (``rowlanes.probs_scalars``, inlined: vector
    lanes across rows); then per row the gradient. With class weights or
    smoothing (not ``plain``) the per-class targets b_j = w_j t'_j are
    formed into scratch twice, for the sums and for the gradient
    (``rowlanes.row_targets``). The same functions in the same order per
    row as ``ce_probs_row32``'s: each row has its bits. A row outside the
    scope takes ``multiclass.cross_entropy_probs``, with the row formula's
    scratch. Returns the compensated sum (s, comp) with the rows' values
    added in row order."""
    wide_vectors()
    R = TILE_ROWS
    n = np.float64(x.shape[1])
    plain = eps == 0.0 and p3 == 1.0
    # _XY holds T and _WY S (``_target_sums``), _FH the factor
    rb, lv = _group_buffers(buf, x.shape[1])
    ginv = 1.0 / gdiv
    for r0 in range(start, stop, R):
        nr = min(R, stop - r0)
        for r in range(R):
            _neutral_scalars(lv, r)
            if r >= nr:
                continue
            xr = x[r0 + r]
            tr = t[r0 + r]
            gr = g[r0 + r]
            m, tmax = _maxes(xr, tr)
            if not probs_scope(m, tmax, eps, p2, plain, z, gdiv, n):
                lv[_MD + r] = 1.0
                lv[_RV + r] = cross_entropy_probs(xr, 0, tr, w, eps, z, p2, p3, gdiv, gr, True,
                                                  rb)
                continue
            lv[_MD + r] = 0.0
            lv[_MX + r] = m
            # (before the terms: g may be x)
            if plain:
                lv[_XY + r], lv[_WY + r] = _target_sums(xr, tr, m)
            else:
                lv[_XY + r], lv[_WY + r] = _target_sums(xr, row_targets(tr, w, eps, rb), m)
            m32 = np.float32(m)
            _terms(xr, gr, m32, -m32, m32 - _RANGE32, xr.ctypes.data == gr.ctypes.data)
        for r in range(nr):
            if lv[_MD + r] == 0.0:
                lv[_SM + r], lv[_KC + r] = _row_sum(g[r0 + r])
        for r in range(R):
            v, lv[_FH + r] = _probs_scalars(lv[_MX + r], lv[_SM + r], lv[_KC + r], lv[_XY + r],
                                            lv[_WY + r], z, gdiv)
            lv[_RV + r] = v if lv[_MD + r] == 0.0 else lv[_RV + r]
        for r in range(nr):
            if lv[_MD + r] == 0.0:
                if plain:
                    _probs_grad(g[r0 + r], t[r0 + r], lv[_FH + r], ginv)
                else:
                    _probs_grad(g[r0 + r], row_targets(t[r0 + r], w, eps, rb), lv[_FH + r],
                                ginv)
            s, comp = keep_and_add(vals, r0 + r, store_vals, s, comp, lv[_RV + r])
    return s, comp
