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
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastloss._config import INLINE_COPY, JIT
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

#: rows per tile: the vector lanes (two 8-lane float64 vectors per column)
TILE_ROWS = 16
#: rows of at most this many classes take the tiles (at 48 and 64 classes
#: they measured no clear gain over the row formula)
TILE_C = 32

#: float64 elements between the tile's buffers beyond their length
SKEW = 24

_INF = np.inf


def scratch(c: int) -> int:
    """float64 scratch per chunk for rows of c classes: the row formulas'
    (``scratch_size``), or the tile's three buffers and eight per-row
    vectors if that is more."""
    tile = 3 * (TILE_ROWS * block_width(c) + SKEW) + 8 * TILE_ROWS if c <= TILE_C else 0
    return max(scratch_size(c), tile)


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
        if not (t.shape[1] == 0 and p0 == 0.0 and p1 == 0.0 and 1 <= x.shape[1] <= TILE_C):
            return False, s, comp
        s, comp = tile_rows(x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, g, sg, buf,
                            start, stop, vals, store_vals, s, comp)
        return True, s, comp
    return impl


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
    mk = buf[o:o + R]  # per row: maximum, count, sum, ...
    kc = buf[o + R:o + 2 * R]
    rv = buf[o + 2 * R:o + 3 * R]
    rf = buf[o + 3 * R:o + 4 * R]
    gy = buf[o + 4 * R:o + 5 * R]
    xy = buf[o + 5 * R:o + 6 * R]
    wy = buf[o + 6 * R:o + 7 * R]
    kn = buf[o + 7 * R:o + 8 * R]  # 1: the maxima are counted (0: a NaN maximum)
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
