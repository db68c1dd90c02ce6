"""The CPU driver for box losses: one fused, parallel pass over box pairs.

``kernel`` (``fused`` behind ``fastloss.cpu.dispatch.LiteralDispatch``)
reads one predicted and one target box per row of two (N, 4) arrays,
evaluates the loss's scalar formula (``fastloss.scalar.boxes``) in float64
(in double-double for float64 data: the formula's last argument, an element
of the data, chooses at compile time), writes the gradient row (and, for ``reduction="none"``, the value)
and sums the values per fixed-size chunk of ``BOX_CHUNK`` rows
(``fastloss.reduce``): the chunking depends on N only, so the reduction is
bitwise the same on any number of threads. The formula is chosen by ``fid``,
an index into ``BOX_FORMULAS`` that Numba treats as a compile-time literal
(one cached kernel per loss and dtype).
"""

import numba
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

from fastloss._config import CHUNK, JIT, PARALLEL_JIT
from fastloss.cpu.dispatch import LiteralDispatch
from fastloss.math._intrin import wide_vectors
from fastloss.reduce import neumaier_add
from fastloss.scalar.boxes import BOX_FORMULAS, box_scale

#: box pairs per reduction chunk (fixed; independent of the thread count)
BOX_CHUNK = CHUNK // 4


def box_apply(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):  # pragma: no cover
    """BOX_FORMULAS[fid](...) inside compiled code."""
    raise NotImplementedError


@overload(box_apply, jit_options=JIT)
def _box_apply(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
    if not isinstance(fid, types.IntegerLiteral):
        raise numba.errors.TypingError("box_apply: the formula id must be a compile-time literal")
    formula = BOX_FORMULAS[fid.literal_value]

    def impl(fid, px1, py1, px2, py2, tx1, ty1, tx2, ty2, data):
        # scale-invariant losses: evaluated at a power-of-two scale (box_scale)
        s = box_scale(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
        v, g0, g1, g2, g3 = formula(px1 * s, py1 * s, px2 * s, py2 * s,
                                    tx1 * s, ty1 * s, tx2 * s, ty2 * s, data)
        return v, g0 * s, g1 * s, g2 * s, g3 * s

    return impl


@njit(**PARALLEL_JIT)
def fused(fid, x, y, gdiv, grad, vals, hi, lo, store_grad, store_vals):
    """Fused pass over box pairs x[i], y[i] ((N, 4), C-contiguous).

    grad[i, k] = d l_i / d x[i, k] / gdiv   (if store_grad)
    vals[i] = l_i                           (if store_vals)
    hi[c] + lo[c] = sum of l_i over chunk c (compensated, float64)
    """
    numba.literally(fid)
    n = x.shape[0]
    for c in prange(hi.size):
        wide_vectors()  # the attribute of the outlined parallel body
        start = c * BOX_CHUNK
        stop = min(start + BOX_CHUNK, n)
        s = 0.0
        comp = 0.0
        for i in range(start, stop):
            v, g0, g1, g2, g3 = box_apply(
                fid,
                np.float64(x[i, 0]), np.float64(x[i, 1]), np.float64(x[i, 2]), np.float64(x[i, 3]),
                np.float64(y[i, 0]), np.float64(y[i, 1]), np.float64(y[i, 2]), np.float64(y[i, 3]),
                x[i, 0],
            )
            if store_grad:
                grad[i, 0] = g0 / gdiv
                grad[i, 1] = g1 / gdiv
                grad[i, 2] = g2 / gdiv
                grad[i, 3] = g3 / gdiv
            if store_vals:
                vals[i] = v
            s, comp = neumaier_add(s, comp, v)
        hi[c] = s
        lo[c] = comp if np.isfinite(s) else 0.0


#: the parallel box driver (see ``fused``); ``LiteralDispatch`` avoids Numba's
#: per-call re-typing of literal-dispatched kernels, and runs inputs of a few
#: chunks on the calling thread
kernel = LiteralDispatch(fused, nchunks_arg=5)


@njit(**JIT)
def first_bad_box(a):
    """Index of the first row of a (N, 4) with x2 < x1 or y2 < y1, else -1
    (NaN passes)."""
    for i in range(a.shape[0]):
        if a[i, 2] < a[i, 0] or a[i, 3] < a[i, 1]:
            return i
    return -1
