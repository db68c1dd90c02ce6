"""Box losses on the GPU: the CUDA path of ``fastloss.boxes.evaluate``.

``make_box_kernel(formula)`` returns a CUDA kernel (``jit.kernel``: no fma
contraction; memoised per formula) that calls ``formula(px1, py1, px2, py2,
tx1, ty1, tx2, ty2, data) -> (value, g0, g1, g2, g3)`` (``data`` an element
of x, whose dtype chooses the formula's float64 or double-double
evaluation), the @njit function of ``fastloss.scalar.boxes.BOX_FORMULAS``
itself, compiled by numba-cuda as a device function: nothing of the formula
is written here (as ``fastloss.cuda.elementwise`` for the elementwise
losses).

Reduction: the CPU box driver's partition into chunks of ``BOX_CHUNK`` box
pairs, summed on the device as in ``fastloss.cuda.elementwise`` (per-lane
Neumaier sums in float64, the fixed TwoSum tree ``reduce.tree_sum``, chunk
partials combined in order by ``reduce.combine``): bitwise the same loss for
every launch configuration and run after run.

Validation runs on the device: the first row with x2 < x1 or y2 < y1 is
found by a kernel (``atomic.min`` of the row index, order-free), and only
that row is copied to the host for the error message, which is the CPU's
(``fastloss.boxes.box_error``).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from fastloss import validate
from fastloss.boxes import FIDS, box_error
from fastloss.cpu.boxes import BOX_CHUNK
from fastloss.cuda import arrays, config, jit
from fastloss.cuda.arrays import scratch
from fastloss.cuda.reduce import chunk_sums, combine, partials
from fastloss.scalar.boxes import BOX_FORMULAS, box_scale


@functools.cache
def make_box_kernel(formula, chunk: int = BOX_CHUNK, atomic: bool = False):
    """The fused kernel of one box formula.

    kernel[blocks, threads, stream](x, y, gdiv, grad, vals, hi, lo, store_grad, store_vals)

    x, y: (N, 4) C-contiguous float32/float64 boxes; grad[i, k] = d l_i /
    d x[i, k] / gdiv and vals[i] = l_i when stored; hi/lo: one partial per
    chunk (or, atomic, hi[0] accumulates the total). ``chunk`` is a test hook
    (a smaller partition for tiny simulator inputs)."""

    @jit.device
    def item(i, args):
        x, y, gdiv, grad, vals, store_grad, store_vals = args
        # scale-invariant losses: evaluated at a power-of-two scale
        # (scalar.boxes.box_scale), as on the CPU
        a0, a1, a2, a3 = np.float64(x[i, 0]), np.float64(x[i, 1]), np.float64(x[i, 2]), np.float64(x[i, 3])
        b0, b1, b2, b3 = np.float64(y[i, 0]), np.float64(y[i, 1]), np.float64(y[i, 2]), np.float64(y[i, 3])
        sc = box_scale(a0, a1, a2, a3, b0, b1, b2, b3)
        v, g0, g1, g2, g3 = formula(a0 * sc, a1 * sc, a2 * sc, a3 * sc,
                                    b0 * sc, b1 * sc, b2 * sc, b3 * sc, x[i, 0])
        if store_grad:
            grad[i, 0] = (g0 * sc) / gdiv
            grad[i, 1] = (g1 * sc) / gdiv
            grad[i, 2] = (g2 * sc) / gdiv
            grad[i, 3] = (g3 * sc) / gdiv
        if store_vals:
            vals[i] = v
        return v

    run = chunk_sums(item, atomic)

    @jit.kernel
    def kernel(x, y, gdiv, grad, vals, hi, lo, store_grad, store_vals):
        run(x.shape[0], chunk, (x, y, gdiv, grad, vals, store_grad, store_vals), hi, lo)

    return kernel


@jit.kernel
def _first_bad_box(a, res):
    """res[0] = min(res[0], first row i with a[i, 2] < a[i, 0] or a[i, 3] < a[i, 1])."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.shape[0]:
        if a[i, 2] < a[i, 0] or a[i, 3] < a[i, 1]:
            cuda.atomic.min(res, 0, i)
        i += stride


def check_boxes(name: str, a, stream) -> None:
    """``fastloss.boxes.check_boxes`` on the device: ValueError naming the
    first row of ``a`` that is not a box; only that row leaves the GPU."""
    n = a.shape[0]
    if n == 0:
        return
    res = cuda.to_device(np.array([n], dtype=np.int64), stream=stream)
    t = config.threads_per_block()
    _first_bad_box[max(1, min(-(-n // t), 1024)), t, stream](a, res)
    i = int(res.copy_to_host(stream=stream)[0])
    if i < n:
        raise box_error(name, i, a[i].copy_to_host(stream=stream))


def evaluate(spec, input, target, reduction, params, want_grad, out=None):
    """(value, grad or None) of a box loss on GPU arrays: the rules and
    results of ``fastloss.boxes.evaluate``, returned as in
    ``fastloss.cuda.api`` (floats for "mean"/"sum", device arrays of the
    input's kind otherwise)."""
    from fastloss.api import _mean
    from fastloss.cuda.api import _check_out, _device_float, _host_float

    reduction = validate.check_reduction(spec, reduction)
    validate.check_params(spec, params)
    xd = _device_float("input", input)
    yd = _device_float("target", target, xd)
    for name, d in (("input", xd), ("target", yd)):
        if d.ndim != 2 or d.shape[1] != 4:
            raise ValueError(f"{name}: must have shape (N, 4), one box (x1, y1, x2, y2) per "
                             f"row; got {d.shape}")
    if yd.shape != xd.shape:
        raise ValueError(f"target: shape {yd.shape} must equal input's shape {xd.shape} (one "
                         "target box per predicted box)")
    stream, dtype, n = xd.stream, xd.dtype, xd.shape[0]
    x, y = xd.arr, yd.arr
    check_boxes("input", x, stream)
    check_boxes("target", y, stream)
    grad_obj = gview = None
    if want_grad:
        if out is not None:
            od = _check_out(out, xd, [yd])
            grad_obj, gview = out, od.arr
        else:
            grad_obj, gview = arrays.empty_like_kind(xd, xd.shape, dtype)
    vals_obj = vview = None
    if reduction == "none":
        vals_obj, vview = arrays.empty_like_kind(xd, (n,), dtype)
    if n == 0:
        total = 0.0
    else:
        launch = config.current()
        nchunks = -(-n // BOX_CHUNK)
        kern = make_box_kernel(BOX_FORMULAS[FIDS[spec.name]], BOX_CHUNK, launch.atomic)
        hi, lo = partials(nchunks, launch.atomic, stream)
        dummy2 = scratch((1, 4), dtype, stream)
        dummy1 = scratch(1, dtype, stream)
        gdiv = float(n) if reduction == "mean" else 1.0
        kern[config.blocks_for(nchunks), config.threads_per_block(), stream](
            x, y, gdiv, dummy2 if gview is None else gview, dummy1 if vview is None else vview,
            hi, lo, gview is not None, vview is not None)
        total = _host_float(hi if launch.atomic else combine(hi, lo, stream), stream)
    if reduction == "none":
        value = vals_obj
    elif reduction == "sum":
        value = total
    else:
        value = _mean(total, n)
    return value, grad_obj
