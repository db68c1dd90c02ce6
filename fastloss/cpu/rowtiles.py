"""Rows of few classes several at a time: float32 ``cross_entropy`` with labels.

The row formulas of ``fastloss.scalar.multiclass`` take one row at a time.
For a row of C = 10 classes that costs 250-320 ns (measured, float32, one
thread), almost all of it per-row fixed work: the row's loops each run one
vector iteration and a scalar remainder behind their set-up and alias checks,
and the row scalars (a log1p, an expm1, three divisions) run once per row in
scalar code. This module runs ``TILE_ROWS`` rows side by side instead, with
the vector lanes across rows: the tile is transposed into a column-major
float64 buffer (X[j, r] = x[r0 + r, j]), and every step of the row formula
is a loop over the tile's rows for one column at a time, which LLVM
vectorizes (8 float64 lanes), the row scalars included (``fastloss.math``'s
primitives are branch-free polynomials).

**The same bits as the row formula.** Each step is the one ``cross_entropy``
(``multiclass.row_lse_state``, ``ce_row_scalars``, ``softmax_kept``,
``ce_label_grad``, ``ce_value``) takes for a row of one block
(C <= ``multiclass.LSE_BLOCK``), in the same order: the block maximum from
the order keys, the count of maxima, the terms e^(x_j - m) (``exp_gap``),
their sum by the same radix-8 pairwise tree over ``block_width(C)`` terms
(zero-padded), the compensated state, the row scalars, the gradient e_j r
and the label's entry. The row values and gradients are therefore bitwise
those of the one-row path (tests/test_multiclass.py checks it), and the loss
is summed per row in row order as before: nothing about determinism changes.

Scope (``tile_pass``): float32 data, integer labels, no label smoothing,
no z-loss, C <= ``TILE_C``; class weights and ``ignore_index`` allowed;
every other call takes the row formula. In that scope the gradient factor
A = w_y is finite (class weights are validated finite), so the row
formula's non-kept gradient loop for A = inf is not needed here.

Measured (float32, 1 thread, gradient into ``out=``, alternating processes
against the row formula, noisy machine): C = 4: 227-239 -> 47-48 ns a row;
C = 10: 259 -> 97-144; C = 16: 242-261 -> 111-123; C = 32: 282 -> 174-196.
What remains is mostly the two transposes (LLVM vectorizes them as gathers
and scatters) and the row scalars.

**Rows of GROUP_C to ROW32_MIN - 1 classes** (``group_rows``, the same
scope otherwise) are ``rowlanes.ce_row32``'s algorithm with its per-row
fixed cost spread over groups of TILE_ROWS rows: the maximum, the float32
terms and their float64 sum per row, the row scalars of the group's rows
side by side (vector lanes across rows, as the tiles' step 4), then the
gradient per row. Its sum (``_short_sum``: 32 lanes, then a fixed tree) is
another order than ``ce_row32``'s, so these rows have their own bits,
independent of the rows beside them (tests/test_multiclass.py); the
accuracy is ``ce_row32``'s (values and gradients within 2 ULP of mpmath).
Measured against the float64 row formula these rows took before (public
call, float32, (8192, C), alternating processes, ms, 1 thread / 2
threads): C = 64 2.04-2.06 -> 1.20-1.21 / 1.08-1.11 -> 0.64-0.76; C = 100
2.67-2.70 -> 1.81-1.82 / 1.39-1.40 -> 0.94; C = 200 3.80-3.82 -> 2.50-2.58
/ 1.93-1.94 -> 1.25-1.31; C = 255 4.24-4.27 -> 2.64-2.70 / 2.14 -> 1.28-1.30.
PyTorch's forward + backward at 2 threads took 0.36-0.53, 0.63-0.74,
1.2-1.6 and 1.6-1.8 ms in the same sessions: below C ~ 200 this is still
slower than PyTorch. In L1 a row of 100 splits as maximum 11 ns, terms 47,
sum 51, gradient 15. In the kernel the sum costs more: 67-68 ns (the
kernel alone, 213 ns a row against 145-146 without the sum). Its lanes on a
64-byte line took the whole row from 238-268 to 204-205 ns.
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
    _terms,
    lanes_max,
    scale_terms,
)
from fastloss.math._cpu import f32_pair
from fastloss.math._intrin import wide_vectors
from fastloss.reduce import neumaier_add
from fastloss.scalar.multiclass import (
    _key_float,
    _order_key,
    block_width,
    ce_grad_factor,
    ce_label_grad,
    ce_row_scalars,
    ce_value,
    cross_entropy,
    exp_gap,
    scratch_size,
    two_sum_add,
)


def _inlined(f):
    """The row piece f compiled with LLVM ``alwaysinline`` (``INLINE_COPY``):
    a call left in a loop over the tile's rows keeps that loop scalar (the
    row scalars' log1p and expm1 are large enough for LLVM's inliner to leave
    them calls). The same Python function, so the same formula and bits."""
    return njit(**INLINE_COPY)(f.py_func)


_two_sum_add = _inlined(two_sum_add)
_ce_row_scalars = _inlined(ce_row_scalars)
_ce_value = _inlined(ce_value)
_ce_grad_factor = _inlined(ce_grad_factor)
_ce_label_grad = _inlined(ce_label_grad)
_f32_pair = _inlined(f32_pair)

#: rows per tile: the vector lanes (two 8-lane float64 vectors per column)
TILE_ROWS = 16
#: rows of at most this many classes take the tiles (at 48 and 64 classes
#: they measured no clear gain over the row formula)
TILE_C = 32

#: float64 elements between the tile's buffers beyond their length
SKEW = 24

_INF = np.inf


#: rows of GROUP_C to ``rowlanes.ROW32_MIN`` - 1 classes take ``group_rows``
#: (its loops need a row of at least ``rowlanes._MAIN``)
GROUP_C = _MAIN
#: ``group_rows``' per-row vectors (float64 each, TILE_ROWS long) and lanes
_GROUP_VECTORS = 10
_LANES = 32


def _group_scratch(c: int) -> int:
    """``group_rows``' float64 scratch after the row formula's: the per-row
    vectors, the sum's lanes and a float32 row of terms."""
    return _GROUP_VECTORS * TILE_ROWS + 2 * _LANES + 8 + (c + 1) // 2 + 1


def scratch(c: int) -> int:
    """float64 scratch per chunk for rows of c classes: the row formulas'
    (``scratch_size``), or the tile's three buffers and eight per-row
    vectors if that is more; rows for ``group_rows`` have its own after
    the row formula's (which it calls for rows outside its scope)."""
    tile = 3 * (TILE_ROWS * block_width(c) + SKEW) + 8 * TILE_ROWS if c <= TILE_C else 0
    group = _group_scratch(c) if GROUP_C <= c < ROW32_MIN else 0
    return max(scratch_size(c) + group, tile)


def tile_pass(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
              stop, vals, store_vals, s, comp):  # pragma: no cover - replaced by the overload
    """(True, s, comp) after ``tile_rows`` when it computes this chunk (see
    the module doc), else (False, s, comp) having done nothing: for every
    formula but cross_entropy on float32 data a constant, so the row driver
    compiles the tiles for that one kernel only."""
    raise NotImplementedError


@overload(tile_pass, jit_options=JIT, prefer_literal=True)
def _tile_pass(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
               stop, vals, store_vals, s, comp):
    # fid 0 is cross_entropy (multiclass.ROW_FORMULAS); float32 data only
    if not (isinstance(fid, types.IntegerLiteral) and fid.literal_value == 0
            and getattr(x, "dtype", None) == types.float32):
        def none(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
                 stop, vals, store_vals, s, comp):
            return False, s, comp
        return none

    def impl(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start,
             stop, vals, store_vals, s, comp):
        c = x.shape[1]
        if not (t.shape[1] == 0 and p0 == 0.0 and p1 == 0.0):
            return False, s, comp
        if 1 <= c <= TILE_C:
            s, comp = tile_rows(x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg,
                                buf, start, stop, vals, store_vals, s, comp)
            return True, s, comp
        if GROUP_C <= c < ROW32_MIN:
            s, comp = group_rows(x, lab, t, w, p2, p3, ignore, use_ignore, gdiv, g, sg, buf,
                                 start, stop, vals, store_vals, s, comp)
            return True, s, comp
        return False, s, comp
    return impl


@njit(**{**JIT, "forceinline": True})
def _row_vectors(buf, o, k):
    """k per-row vectors (TILE_ROWS float64 each) of a tile's or group's
    scratch from offset o, as the rows of a (k, TILE_ROWS) view (the caller
    unpacks them)."""
    return buf[o:o + k * TILE_ROWS].reshape(k, TILE_ROWS)


@njit(**JIT)
def tile_rows(x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf, start, stop,
              vals, store_vals, s, comp):
    """Rows start..stop-1 of x (float32, C <= TILE_C) by tiles of
    TILE_ROWS: gradients into g (when sg), values into vals (when
    store_vals), and the values added to the compensated sum (s, comp) in
    row order; returns (s, comp). p0..p3 as for ``cross_entropy`` (eps = 0,
    z = 0 here); buf: float64 scratch of ``scratch(C)`` elements."""
    wide_vectors()
    R = TILE_ROWS
    c = x.shape[1]
    wd = block_width(c)
    n = np.float64(c)
    # three tile buffers, each SKEW float64 past a multiple of R wd: a load
    # from one and a store to another exactly 4 KiB apart would alias in the
    # CPU's store-to-load forwarding (a precaution, not measured on its own).
    # buf has ``scratch(C)`` float64
    tw = R * wd + SKEW
    xb = buf[:R * wd]  # X[j, r] at j R + r
    kb = buf[tw:tw + R * wd]  # the kept terms e^(x_j - m) (1 at m)
    eb = buf[2 * tw:2 * tw + R * wd]  # the summed terms (0 at m, and past C)
    o = 3 * tw
    # per row: maximum, count, value, gradient factor, label's entry, x_y,
    # w_y, and kn: 1 where the maxima are counted (0: a NaN maximum)
    mk, kc, rv, rf, gy, xy, wy, kn = _row_vectors(buf, o, 8)
    for r0 in range(start, stop, R):
        nr = min(R, stop - r0)
        # the tile, transposed; rows past nr are zeros (computed, dropped)
        for r in range(R):
            if r < nr:
                xr = x[r0 + r]
                for j in range(c):
                    xb[j * R + r] = np.float64(xr[j])
            else:
                for j in range(c):
                    xb[j * R + r] = 0.0
        # the label's logit and weight (label 0 for ignored rows)
        for r in range(R):
            y = lab[r0 + r] if r < nr else 0
            if use_ignore and y == ignore:
                y = 0
            xy[r] = xb[y * R + r]
            wy[r] = np.float64(w[y])
        # 1. the block maximum (order keys, as ``_block_max``); m stays -inf
        #    when it is not above -inf (a NaN maximum), as ``row_lse_state``
        #    (the float32 values' keys, held in float64: exact, |key| < 2^31)
        for r in range(R):
            mk[r] = np.float64(_order_key(np.float32(xb[r])))
        for j in range(1, c):
            for r in range(R):
                kj = np.float64(_order_key(np.float32(xb[j * R + r])))
                mk[r] = kj if kj > mk[r] else mk[r]
        for r in range(R):
            bm = _key_float(np.int64(mk[r]), x)
            m = bm if bm > -_INF else -_INF
            mk[r] = m
            kc[r] = 0.0
            kn[r] = 1.0 if bm == m else 0.0
        # 2. the count of maxima, the kept terms and the summed terms
        for j in range(c):
            for r in range(R):
                v = xb[j * R + r]
                m = mk[r]
                kc[r] += 1.0 if v == m else 0.0
                e = exp_gap(v, m, False)
                kb[j * R + r] = e
                eb[j * R + r] = 0.0 if v == m else e
        for j in range(c * R, wd * R):
            eb[j] = 0.0
        # 3. the pairwise tree of ``_pair_sum`` over wd terms, per row
        h = wd
        while h >= 8:
            h >>= 3
            for jj in range(h):
                for r in range(R):
                    a0 = eb[jj * R + r] + eb[(h + jj) * R + r]
                    a1 = eb[(2 * h + jj) * R + r] + eb[(3 * h + jj) * R + r]
                    a2 = eb[(4 * h + jj) * R + r] + eb[(5 * h + jj) * R + r]
                    a3 = eb[(6 * h + jj) * R + r] + eb[(7 * h + jj) * R + r]
                    eb[jj * R + r] = (a0 + a1) + (a2 + a3)
        while h > 1:
            h >>= 1
            for jj in range(h):
                for r in range(R):
                    eb[jj * R + r] = eb[jj * R + r] + eb[(h + jj) * R + r]
        # 4. the row scalars (``cross_entropy`` with eps = z = 0)
        for r in range(R):
            s0, c0 = _two_sum_add(0.0, 0.0, eb[r])
            k0 = kc[r] if kn[r] != 0.0 else 0.0
            nll, l1, lse, a1, a2, a, denom, ec = _ce_row_scalars(mk[r], s0, c0, k0, xy[r], wy[r],
                                                                p0, p1, p3, n)
            rv[r] = _ce_value(a1, nll, p0, ec, 0.0, 0.0, 1.0, p3, l1, p1, lse, mk[r])
            rf[r] = _ce_grad_factor(a, denom, gdiv)
            # p_y enters with a2 = (eps/C) sum(w) + 2 z lse only, 0 here
            # (eps = z = 0, finite weights): the formula's p_y is 0 too
            gy[r] = _ce_label_grad(a1, a2, 0.0, ec, wy[r], nll, gdiv)
        # 5. gradients (x is fully read: g may be x), values in row order
        for r in range(nr):
            y = lab[r0 + r]
            ignored = use_ignore and y == ignore
            v = 0.0 if ignored else rv[r]
            if sg:
                gr = g[r0 + r]
                if ignored:
                    for j in range(c):
                        gr[j] = 0.0
                else:
                    f = rf[r]
                    for j in range(c):
                        gr[j] = kb[j * R + r] * f
                    gr[y] = gy[r]
            if store_vals:
                vals[r0 + r] = v
            s, comp = neumaier_add(s, comp, v)
    return s, comp


# --- rows of GROUP_C to ROW32_MIN - 1 classes ----------------------------------

#: ``multiclass.scratch_size`` in compiled code
_scratch_size = njit(**JIT)(scratch_size)


@njit(**JIT)
def _short_sum(ts, acc):
    """(sum, count) over a row's terms ts (n >= _LANES of them), as
    ``rowlanes._row_sum``: the terms below 2^64 summed in float64, those
    equal to it counted. _LANES running sums and counts: lane l takes terms
    l, l + _LANES, ... of the row's whole groups of _LANES, then term l of
    the row's last _LANES unless a group took it; then the lanes by a fixed
    tree. An order fixed by n; relative error ~(n / _LANES + 6) 2^-53.
    acc: float64 scratch of 2 _LANES. Slices index every loop from 0: an
    index Numba cannot prove >= 0 gets a wraparound test, which kept such
    loops scalar."""
    wide_vectors()
    n = ts.size
    for lane in range(2 * _LANES):
        acc[lane] = 0.0
    for b in range(n // _LANES):
        blk = ts[b * _LANES:(b + 1) * _LANES]
        for lane in range(_LANES):
            e = blk[lane]
            top = e == _TOP
            acc[lane] += 0.0 if top else np.float64(e)
            acc[_LANES + lane] += 1.0 if top else 0.0
    tail = ts[n - _LANES:]
    b0 = n % _LANES
    b0 = _LANES - b0 if b0 else _LANES  # the tail's first index not yet taken
    for lane in range(_LANES):
        e = tail[lane]
        top = e == _TOP
        new = lane >= b0
        acc[lane] += np.float64(e) if (new and not top) else 0.0
        acc[_LANES + lane] += 1.0 if (new and top) else 0.0
    h = _LANES
    while h > 1:
        h >>= 1
        for lane in range(h):
            acc[lane] = acc[lane] + acc[lane + h]
            acc[_LANES + lane] = acc[_LANES + lane] + acc[_LANES + lane + h]
    return acc[0], acc[_LANES]


@njit(**JIT)
def group_rows(x, lab, t, w, wsum_lo, wsum, ignore, use_ignore, gdiv, g, sg, buf, start, stop,
               vals, store_vals, s, comp):
    """Rows start..stop-1 of x (float32, GROUP_C <= C < ROW32_MIN, integer
    labels, no smoothing, no z-loss) as ``rowlanes.ce_row32`` computes a
    longer row, by groups of TILE_ROWS rows: per row the maximum, the terms
    (into the gradient row, or a scratch row without a gradient) and their
    sum (``_short_sum``); then the row scalars of the group's rows side by
    side (the inlined row pieces: vector lanes across rows, as the tiles'
    step 4); then per row the gradient and the label's entry. With a
    gradient the sums run after all the group's terms (the terms of 16 rows
    of up to 255 float32 stay in L1). Returns the
    compensated sum (s, comp) with the rows' values added in row order.

    A row outside ``ce_row32``'s scope (w_y / gdiv out of range, |max| >=
    2^24 or NaN), found before its gradient row is written, takes
    ``multiclass.cross_entropy`` in step 1, with the row formula's scratch
    (buf's first ``scratch_size(C)``). Ignored rows: value 0, zero
    gradient."""
    wide_vectors()
    R = TILE_ROWS
    c = x.shape[1]
    n = np.float64(c)
    o = _scratch_size(c)
    rb = buf[:o]
    # per row: maximum, sum, count, x_y, w_y, value, the gradient factor's
    # float32 pair, the label's entry, and md: 0 lanes, 1 the row formula,
    # 2 ignored or past stop
    mk, sm, kc, xy, wy, rv, fh, fl, gy, md = _row_vectors(buf, o, _GROUP_VECTORS)
    o += _GROUP_VECTORS * R
    # the lanes on a 64-byte line (their vector loads and stores)
    o += (-(buf.ctypes.data // 8 + o)) % 8
    acc = buf[o:o + 2 * _LANES]
    o += 2 * _LANES
    tsb = buf[o:o + (c + 1) // 2].view(np.float32)[:c]
    for r0 in range(start, stop, R):
        nr = min(R, stop - r0)
        # 1. per row: the maximum, the terms and their sum
        for r in range(R):
            # neutral scalars for the rows step 2 computes and drops
            mk[r] = 0.0
            sm[r] = 0.0
            kc[r] = 1.0
            xy[r] = 0.0
            wy[r] = 0.0
            md[r] = 2.0
            if r >= nr:
                continue
            y = lab[r0 + r]
            if use_ignore and y == ignore:
                continue
            xr = x[r0 + r]
            wv = np.float64(w[y])
            m = lanes_max(xr, wv, gdiv)
            if np.isnan(m):
                md[r] = 1.0
                rv[r] = cross_entropy(xr, y, t[r0 + r], w, 0.0, 0.0, wsum_lo, wsum, gdiv,
                                      g[r0 + r], sg, rb)
                continue
            md[r] = 0.0
            mk[r] = m
            xy[r] = np.float64(xr[y])  # (read before the gradient: g may be x)
            wy[r] = wv
            m32 = np.float32(m)
            ts = g[r0 + r] if sg else tsb
            _terms(xr, ts, m32, -m32, m32 - _RANGE32, sg and xr.ctypes.data == ts.ctypes.data)
            if not sg:
                sm[r], kc[r] = _short_sum(ts, acc)
        # their sums, a row's after the others' terms: its sum's tail loads
        # straddle its terms' last stores, which then stalled the loads in
        # the store buffer (C = 100: 110 against 50 ns a row)
        if sg:
            for r in range(nr):
                if md[r] == 0.0:
                    sm[r], kc[r] = _short_sum(g[r0 + r], acc)
        # 2. the row scalars, the rows side by side (``ce_row32``'s, eps = z = 0)
        for r in range(R):
            nll, l1, lse, a1, a2, a, denom, ec = _ce_row_scalars(
                mk[r], sm[r] * _UNSCALE, 0.0, kc[r], xy[r], wy[r], 0.0, 0.0, wsum, n)
            v = _ce_value(a1, nll, 0.0, ec, 0.0, 0.0, 1.0, wsum, l1, 0.0, lse, mk[r])
            h, lo = _f32_pair(_ce_grad_factor(a, denom, gdiv) * _UNSCALE)
            fh[r] = np.float64(h)
            fl[r] = np.float64(lo)
            gy[r] = _ce_label_grad(a1, a2, 0.0, ec, wy[r], nll, gdiv)
            rv[r] = v if md[r] == 0.0 else rv[r]
        # 3. per row: the gradient, the label's entry; values in row order
        for r in range(nr):
            mode = md[r]
            v = 0.0 if mode == 2.0 else rv[r]
            if sg and mode != 1.0:
                gr = g[r0 + r]
                if mode == 2.0:
                    for j in range(c):
                        gr[j] = 0.0
                else:
                    scale_terms(gr, np.float32(fh[r]), np.float32(fl[r]))
                    gr[lab[r0 + r]] = gy[r]
            if store_vals:
                vals[r0 + r] = v
            s, comp = neumaier_add(s, comp, v)
    return s, comp
