"""The CPU driver for elementwise losses: one fused, parallel pass.

``kernel`` reads x[i] and y[i] once, evaluates the loss's scalar formula in
float64, writes the gradient (and, for ``reduction="none"``, the value), and
sums the values per fixed-size chunk (``fastloss.reduce``). The formula is
chosen by ``fid``, an index into ``catalog.FORMULAS`` that Numba treats as a
compile-time literal: each (loss, dtype) pair gets its own specialised machine
code, compiled on first use and cached on disk.
"""

import numba
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

from fastloss._config import CHUNK, JIT, PARALLEL_JIT
from fastloss.catalog import FORMULAS
from fastloss.math import xmul
from fastloss.reduce import neumaier_add


def apply(fid, x, y, q, p0, p1, p2):  # pragma: no cover - replaced by the overload
    """formula[fid](x, y, q, p0, p1, p2) inside compiled code."""
    raise NotImplementedError


@overload(apply, jit_options=JIT)
def _apply(fid, x, y, q, p0, p1, p2):
    if not isinstance(fid, types.IntegerLiteral):
        raise numba.errors.TypingError("apply: the formula id must be a compile-time literal")
    formula = FORMULAS[fid.literal_value]

    def impl(fid, x, y, q, p0, p1, p2):
        return formula(x, y, q, p0, p1, p2)

    return impl


@njit(**PARALLEL_JIT)
def kernel(fid, x, y, q, qper, w, wper, p0, p1, p2, gdiv, grad, vals, hi, lo,
           store_grad, store_vals):
    """Fused value/gradient/partial-sum pass over x and y (1-D, contiguous).

    grad[i] = w_i f'(x_i, y_i) / gdiv  (if store_grad)
    vals[i] = w_i f(x_i, y_i)          (if store_vals)
    hi[c] + lo[c] = sum of w_i f(x_i, y_i) over chunk c (compensated, float64)
    """
    numba.literally(fid)
    n = x.size
    for c in prange(hi.size):
        start = c * CHUNK
        stop = min(start + CHUNK, n)
        kq = start % qper
        kw = start % wper
        s = 0.0
        comp = 0.0
        for i in range(start, stop):
            v, g = apply(fid, np.float64(x[i]), np.float64(y[i]), np.float64(q[kq]), p0, p1, p2)
            wi = np.float64(w[kw])
            v = xmul(wi, v)
            if store_grad:
                grad[i] = xmul(wi, g) / gdiv
            if store_vals:
                vals[i] = v
            s, comp = neumaier_add(s, comp, v)
            kq += 1
            if kq == qper:
                kq = 0
            kw += 1
            if kw == wper:
                kw = 0
        hi[c] = s
        lo[c] = comp if np.isfinite(s) else 0.0


@njit(**JIT)
def max_abs_diff(x, y):
    """max |x_i - y_i| (NaN if any difference is NaN); used to rescale rmse."""
    m = 0.0
    for i in range(x.size):
        d = abs(np.float64(x[i]) - np.float64(y[i]))
        if d > m or d != d:
            m = d
    return m
