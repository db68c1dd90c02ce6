"""The CPU driver for box losses: one fused, parallel pass over box pairs.

``kernel`` (``fused`` behind ``fastloss.cpu.dispatch.LiteralDispatch``)
reads one predicted and one target box per row of two (N, 4) arrays,
evaluates the loss's scalar formula (``fastloss.scalar.boxes``) in float64
(in double-double for finite pairs: the formula's last argument, an element
of the data, chooses at compile time), writes the gradient row (and, for
``reduction="none"``, the value) and sums the values per fixed-size chunk of
``BOX_CHUNK`` rows (``fastloss.reduce``): the chunking depends on N only, so
the reduction is bitwise the same on any number of threads. The formula is
chosen by ``fid``, an index into ``BOX_FORMULAS`` that Numba treats as a
compile-time literal (one cached kernel per loss and dtype).

Vectorization. Each chunk is two loops. The first evaluates every pair with
the formula inlined (``INLINE``) and without branches LLVM cannot turn into
selects or masks, so it vectorizes (8 float64 lanes with AVX-512): flat
views of the rows (constant offsets, indices from 0: no negative-index
wraparound), the power-of-two scaling from exponent bits (``box_scale``: no
libm frexp/ldexp), and the double-double evaluation of
finite pairs alone (``BOX_EXACT``: no plain-path fallback, whose CIoU calls
libm's atan2). Its results go to fresh chunk buffers only, which LLVM knows
do not alias the constant tables CIoU's arctangent reads (with the caller's
gradient array as a store target it gave up: "cannot identify array
bounds"). The second loop is sequential: it evaluates again the
pairs with a non-finite coordinate (``BOX_PLAIN``, what ``BOX_FORMULAS``
does for them), sums the values in order and stores them; then the chunk's
gradient rows are copied out. The results are bitwise those of the formula
applied pair by pair (``tests/test_boxes.py``).
"""

import numba
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

from fastloss._config import CHUNK, JIT, KERNEL_JIT, PARALLEL_JIT
from fastloss.cpu.dispatch import LiteralDispatch
from fastloss.math._intrin import wide_vectors
from fastloss.reduce import keep_and_add
from fastloss.scalar.boxes import (
    BOX_EXACT,
    BOX_FORMULAS,
    BOX_PLAIN,
    EXACT_TYPES,
    INLINE,
    box_finite,
    box_scale,
    exact_for,
)

#: box pairs per reduction chunk (fixed; independent of the thread count)
BOX_CHUNK = CHUNK // 4


def box_fast(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):  # pragma: no cover
    """Inside compiled code: BOX_EXACT[fid](...) for data of ``EXACT_TYPES``
    (right for finite pairs only, as ``exact_for``), BOX_FORMULAS[fid](...)
    otherwise."""
    raise NotImplementedError


@overload(box_fast, jit_options=INLINE)
def _box_fast(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
    if not isinstance(fid, types.IntegerLiteral):
        raise numba.errors.TypingError("box_fast: the formula id must be a compile-time literal")
    if data in EXACT_TYPES:
        exact = BOX_EXACT[fid.literal_value]

        def impl(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
            return exact(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
        return impl
    formula = BOX_FORMULAS[fid.literal_value]

    def impl(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
        return formula(px1, py1, px2, py2, tx1, ty1, tx2, ty2, data)
    return impl


def box_plain(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2):  # pragma: no cover
    """BOX_PLAIN[fid](...) inside compiled code."""
    raise NotImplementedError


@overload(box_plain, jit_options=JIT)
def _box_plain(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    if not isinstance(fid, types.IntegerLiteral):
        raise numba.errors.TypingError("box_plain: the formula id must be a compile-time literal")
    plain = BOX_PLAIN[fid.literal_value]

    def impl(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        return plain(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    return impl


@njit(**INLINE)
def _pair(xc, yc, j):
    """The pair of boxes at flat offset j as float64, and its power-of-two
    scale (``box_scale``: the losses are scale-invariant)."""
    a0 = np.float64(xc[j])
    a1 = np.float64(xc[j + 1])
    a2 = np.float64(xc[j + 2])
    a3 = np.float64(xc[j + 3])
    b0 = np.float64(yc[j])
    b1 = np.float64(yc[j + 1])
    b2 = np.float64(yc[j + 2])
    b3 = np.float64(yc[j + 3])
    return a0, a1, a2, a3, b0, b1, b2, b3, box_scale(a0, a1, a2, a3, b0, b1, b2, b3)


@njit(**INLINE)
def _put_grad(gc, j, g0, g1, g2, g3, sc, gdiv):
    """The gradient row at flat offset j: each component times the scale,
    over gdiv."""
    gc[j] = (g0 * sc) / gdiv
    gc[j + 1] = (g1 * sc) / gdiv
    gc[j + 2] = (g2 * sc) / gdiv
    gc[j + 3] = (g3 * sc) / gdiv


@njit(**PARALLEL_JIT)
def fused(fid, x, y, gdiv, grad, vals, hi, lo, store_grad, store_vals):
    """Fused pass over box pairs x[i], y[i] ((N, 4), C-contiguous).

    grad[i, k] = d l_i / d x[i, k] / gdiv   (if store_grad)
    vals[i] = l_i                           (if store_vals)
    hi[c] + lo[c] = sum of l_i over chunk c (compensated, float64)

    Per chunk, a vectorized loop over the pairs and a sequential one that
    redoes the non-finite pairs and sums (module doc). Every pair is
    evaluated at a power-of-two scale (``box_scale``: the losses are
    scale-invariant), its gradient multiplied back by the scale.
    """
    numba.literally(fid)
    n = x.shape[0]
    # flat views: the loads and stores of a row are at constant offsets, and
    # the chunk's slices are indexed from 0 (no negative-index wraparound)
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    for c in prange(hi.size):
        wide_vectors()  # the attribute of the outlined parallel body
        start = c * BOX_CHUNK
        stop = min(start + BOX_CHUNK, n)
        m = stop - start
        xc = xf[4 * start:4 * stop]
        yc = yf[4 * start:4 * stop]
        # the first loop writes only to these fresh buffers: LLVM then knows
        # that its stores do not alias the tables it reads (CIoU's arctangent)
        gc = np.empty(4 * m, dtype=grad.dtype)
        vbuf = np.empty(m, dtype=np.float64)
        redo = np.empty(m, dtype=np.bool_)
        for i in range(m):
            j = 4 * i
            a0, a1, a2, a3, b0, b1, b2, b3, sc = _pair(xc, yc, j)
            v, g0, g1, g2, g3 = box_fast(fid, a0 * sc, a1 * sc, a2 * sc, a3 * sc,
                                         b0 * sc, b1 * sc, b2 * sc, b3 * sc, xc[j])
            vbuf[i] = v
            redo[i] = exact_for(xc[j]) and not box_finite(a0, a1, a2, a3, b0, b1, b2, b3)
            _put_grad(gc, j, g0, g1, g2, g3, sc, gdiv)
        s = 0.0
        comp = 0.0
        for i in range(m):
            v = vbuf[i]
            if redo[i]:
                j = 4 * i
                a0, a1, a2, a3, b0, b1, b2, b3, sc = _pair(xc, yc, j)
                v, g0, g1, g2, g3 = box_plain(fid, a0 * sc, a1 * sc, a2 * sc, a3 * sc,
                                              b0 * sc, b1 * sc, b2 * sc, b3 * sc)
                _put_grad(gc, j, g0, g1, g2, g3, sc, gdiv)
            s, comp = keep_and_add(vals, start + i, store_vals, s, comp, v)
        if store_grad:
            grad.reshape(grad.size)[4 * start:4 * stop] = gc
        hi[c] = s
        lo[c] = comp if np.isfinite(s) else 0.0


#: the parallel box driver (see ``fused``); ``LiteralDispatch`` avoids Numba's
#: per-call re-typing of literal-dispatched kernels, and runs inputs of a few
#: chunks on the calling thread
kernel = LiteralDispatch(fused, nchunks_arg=5)


@njit(**KERNEL_JIT)
def first_bad_box(a):
    """Index of the first row of a (N, 4) C-contiguous array with x2 < x1 or
    y2 < y1, else -1 (NaN passes). Blocks of rows are tested without an
    early exit (a vectorized or-reduction), and only a block with a bad row
    is searched row by row."""
    wide_vectors()
    n = a.shape[0]
    f = a.reshape(a.size)
    for s in range(0, n, 512):
        e = min(s + 512, n)
        blk = f[4 * s:4 * e]
        bad = False
        for i in range(e - s):
            j = 4 * i
            bad |= (blk[j + 2] < blk[j]) | (blk[j + 3] < blk[j + 1])
        if bad:
            for i in range(s, e):
                if a[i, 2] < a[i, 0] or a[i, 3] < a[i, 1]:
                    return i
    return -1
