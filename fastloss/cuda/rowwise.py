"""Row-wise (multiclass) losses on the GPU: the CUDA path of ``fastloss.rows.evaluate``.

``make_row_kernel(fid)`` returns a CUDA kernel (``jit.kernel``: no fma
contraction; memoised per formula) that calls ``ROW_FORMULAS[fid](x, y, t,
w, p0, p1, p2, p3, gdiv, g, sg, buf)``, the @njit row formula of ``fastloss.scalar.multiclass`` itself,
compiled by numba-cuda as a device function (its ``fastloss.math``
primitives resolve to the CPU's own ``_cpu`` implementations, its
double-double pieces are plain arithmetic and ``fma``): nothing of any
formula is written here.

Design: **one thread per row** (correct, deterministic, not fast). A
block works on one chunk of rows at a time; its first A = min(blockDim,
LANES, rows per chunk) threads get rows, and thread t of block b runs its
rows whole, with scratch row ``buf[b * A + t]`` (``scratch_size(C)``
float64, >= 16 KiB; the formula's ``buf``, whose contents never outlive a
row). Slow because a thread reads its row serially (nothing coalesces
across a warp), the scratch lives in global memory, and a block has at most
min(LANES, CHUNK // C) rows in flight: for C > CHUNK / blockDim most of its
threads idle. Scratch is ``blocks * A * scratch_size(C) * 8`` bytes; a
default launch caps the grid to ``SCRATCH_BUDGET``. Under the simulator the
kernel calls the CPU-compiled formula on the NumPy arrays behind its
arrays (``_simulated``: an @njit function cannot unbox simulator arrays).

What the GPU needs for speed is a warp- or block-per-row kernel. Float32
``cross_entropy`` with labels (no smoothing or z-loss) has both:
``rowblock`` (a block per row, rows of >= ``rowblock.MIN_C``
classes) and ``rowwarp`` (a warp per row, shorter rows); ``_row_kernel``
chooses (``config.Launch.rows`` forces). The other formulas need the same:
each thread takes a strided slice of the row and keeps an online (max, sum)
state (``multiclass.lse_step``), the states are combined with
``multiclass.lse_merge`` by a fixed tree, and a second, elementwise phase
writes the gradient from the row scalars (``ce_grad_elem``,
``focal_grad_elem``, ``margin_elem``, ``cce_elem``, ``kl_elem``,
``exp_gap_dd``). That needs each row formula split into a reduce phase (row
scalars from per-element terms) and an elementwise gradient phase; today
the formulas are single functions over a whole row. Their values would
then differ from the CPU's in the last bits (another summation order).

Reduction: the CPU driver's partition into chunks of ``rows_per_chunk(C) =
max(1, CHUNK // C)`` rows (``fastloss.cpu.rowwise``). Within a chunk, lane
l (0 <= l < ``LANES``) sums the values of rows l, l + LANES, ... in order
(Neumaier, float64); the lane sums are added by the fixed TwoSum tree
``reduce.tree_sum`` and the chunk partials combined in order by
``reduce.combine`` (as ``fastloss.cuda.boxes``). Which block runs a chunk
and which thread runs a lane change nothing: the loss is bitwise the same
for every launch configuration and run after run. It is the CPU's
partition with a different (equally compensated) order inside each chunk,
so it agrees with the CPU's sum to about one rounding, not bitwise.

Per-row values and gradients are the formula's own: under the simulator
(which runs the same CPU-compiled formula) they are bitwise the CPU's; on a
GPU the formula runs with the same primitives (``fastloss.math._cpu``) and
every product and sum rounded as written, as on the CPU (``jit.kernel``
turns off NVVM's default contraction of a*b + c into an fma); the CUDA
tests on an H200 checked them within 2 ULP of the CPU's (not bitwise). Where the
CPU computes float32 cross_entropy rows on float32 lanes instead
(``cpu.rowtiles``), the GPU's rows are the float64 formula's, rounded once.

Validation, in the CPU's order and with its messages (``fastloss.rows``):
labels in range, data domains, rows of all -inf logits, undefined hinges
run as kernels (``fastloss.cuda.checks``); only an index and the offending
element come to the host. The class-weight vector (a parameter, C values)
is checked as on the CPU; with ``cross_entropy``'s labels its sum as a
double-double pair is computed on the host (``cpu.rowwise.sum_dd``) from a
copy. The weighted-mean denominator (sum of w[y] over rows not ignored) is
a deterministic chunked sum on the device (``label_weight_sum``). Every
check runs before any kernel writes, so ``out`` (which may be the input)
is untouched when a call fails.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from numba import cuda

from fastloss import validate
from fastloss._config import CHUNK
from fastloss.catalog import Interval
from fastloss.cuda import arrays, checks, config, jit, rowblock, rowwarp
from fastloss.cuda.arrays import adapt, contiguous, flat, is_device_array, scratch
from fastloss.cuda.config import LANES, SIMULATOR
from fastloss.cuda.reduce import chunk_sums, combine, partials
from fastloss.rows import (
    _BELOW_INF,
    _INT_DTYPES,
    _NONNEG_FINITE,
    _SOFTMAX,
    CLASS_WEIGHTS,
    FIDS,
    _class_vector,
    _gdiv_and_denominator,
    check_scores_shape,
    check_target_shape,
    formula_params,
    label_error,
    target_fid,
)
from fastloss.scalar.multiclass import ROW_FORMULAS, scratch_size

#: bytes of per-thread scratch a default launch may allocate (the grid is
#: capped to fit; an injected ``blocks`` is used as given)
SCRATCH_BUDGET = 1 << 30


def rows_per_chunk(c: int) -> int:
    """Rows per reduction chunk, the CPU driver's (``cpu.rowwise``)."""
    return max(1, CHUNK // max(c, 1))


def _host_view(a):
    """Simulator only: the NumPy array behind a simulated device array."""
    a = vars(a).get("_item", a)
    return vars(a).get("_ary", a)


def _simulated(formula):
    """Simulator only: the CPU-compiled formula applied to the NumPy arrays
    behind the simulator's arrays (an @njit function cannot unbox those)."""

    def call(x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf):
        return formula(_host_view(x), y, _host_view(t), _host_view(w), p0, p1, p2, p3, gdiv,
                       _host_view(g), sg, _host_view(buf))

    return call


@functools.cache
def make_row_kernel(fid: int, atomic: bool = False):
    """The thread-per-row kernel of ``ROW_FORMULAS[fid]`` (see the module doc).

    kernel[blocks, threads, stream](x, lab, has_lab, t, w, p0, p1, p2, p3,
        ignore, use_ignore, gdiv, grad, vals, buf, act, rpc, hi, lo,
        store_grad, store_vals)

    x: (N, C) C-contiguous; lab: (N,) int32/int64 labels (has_lab) or a
    1-element zero array; t: (N, C) targets or (N, 0); w: (C,) class
    weights; grad: (N, C) or (N, 0); vals: (N,) of x's dtype when stored;
    buf: (blocks * act, scratch_size(C)) float64, act = min(threads,
    LANES, rpc) (the threads that get rows); rpc: rows per chunk;
    hi/lo: one partial per chunk (or, atomic, hi[0] accumulates the total).
    A row whose label is ``ignore`` (use_ignore) has value 0 and a zero
    gradient row."""
    formula = ROW_FORMULAS[fid]
    call = _simulated(formula) if SIMULATOR else formula

    @jit.device
    def item(r, args):
        (x, lab, has_lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, grad, vals, scr,
         store_grad, store_vals) = args
        y = lab[r] if has_lab else lab[0]
        if use_ignore and y == ignore:
            v = 0.0
            if store_grad:
                for j in range(grad.shape[1]):
                    grad[r, j] = 0.0
        else:
            v = call(x[r], y, t[r], w, p0, p1, p2, p3, gdiv, grad[r], store_grad, scr)
        if store_vals:
            vals[r] = v
        return v

    run = chunk_sums(item, atomic)

    @jit.kernel
    def kernel(x, lab, has_lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, grad, vals,
               buf, act, rpc, hi, lo, store_grad, store_vals):
        # threads tid >= act get no rows (they never touch the scratch)
        scr = buf[cuda.blockIdx.x * act + min(cuda.threadIdx.x, act - 1)]
        run(x.shape[0], rpc, (x, lab, has_lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv,
                              grad, vals, scr, store_grad, store_vals), hi, lo)

    return kernel


def row_pass(fid: int, x, lab, t, w, p, ignore: int, use_ignore: bool, gdiv: float, grad, vals,
             stream, *, rpc: int | None = None):
    """Run the kernel of ``ROW_FORMULAS[fid]`` once over the (N, C) numba
    device array x; returns the sum of the row values as a 1-element float64
    device array. lab: labels or None; t: (N, C) targets or None; w: (C,)
    weights; p: (p0, p1, p2, p3); grad (N, C) / vals (N,): device arrays to
    fill, or None. ``rpc`` is a test hook (a smaller partition for tiny
    simulator inputs); the library uses ``rows_per_chunk(C)``."""
    n, c = x.shape
    dtype = x.dtype
    if n == 0:
        return cuda.to_device(np.zeros(1), stream=stream)
    rpc = rows_per_chunk(c) if rpc is None else rpc
    launch = config.current()
    nchunks = -(-n // rpc)
    threads = config.threads_per_block()
    blocks = config.blocks_for(nchunks)
    nscratch = scratch_size(c)
    act = min(threads, LANES, rpc)
    if launch.blocks is None:
        blocks = max(1, min(blocks, SCRATCH_BUDGET // (act * nscratch * 8)))
    buf = scratch((blocks * act, nscratch), "float64", stream)
    hi, lo = partials(nchunks, launch.atomic, stream)
    has_lab = lab is not None
    if not has_lab:
        lab = cuda.to_device(np.zeros(1, dtype=np.int64), stream=stream)
    if t is None:
        t = scratch((n, 0), dtype, stream)
    p0, p1, p2, p3 = (float(v) for v in p)
    kern = make_row_kernel(fid, launch.atomic)
    kern[blocks, threads, stream](
        x, lab, has_lab, t, w, p0, p1, p2, p3, int(ignore), bool(use_ignore), float(gdiv),
        scratch((n, 0), dtype, stream) if grad is None else grad,
        scratch(1, dtype, stream) if vals is None else vals,
        buf, act, rpc, hi, lo, grad is not None, vals is not None)
    if launch.atomic:
        return hi
    return combine(hi, lo, stream)


@jit.device
def _label_weight(i, args):
    """w[y] (or 1) of label i, or 0.0 if it is ``ignore``. Adding that 0.0
    to a Neumaier sum of weights >= 0 (or NaN) changes no bit of the chunk's
    partial (s + 0.0 = s; the compensation, never -0.0, gains +0.0; once a
    lane's sum is inf the compensation is dropped by ``store_chunk``)."""
    lab, w, use_w, ignore, use_ignore = args
    y = lab[i]
    if use_ignore and y == ignore:
        return 0.0
    return np.float64(w[y]) if use_w else 1.0


_label_weight_sums = chunk_sums(_label_weight)


@jit.kernel
def _label_weight_kernel(lab, w, use_w, ignore, use_ignore, hi, lo):
    """Per chunk of CHUNK labels, the compensated sum of w[y] (or 1) over
    labels y that are not ``ignore``: lanes and tree as ``make_row_kernel``."""
    _label_weight_sums(lab.size, CHUNK, (lab, w, use_w, ignore, use_ignore), hi, lo)


def label_weight_sum(lab, w, use_w: bool, ignore: int, use_ignore: bool, stream) -> float:
    """sum of w[y] (or the count) over the labels not ignored: the weighted
    mean's denominator (``cpu.rowwise.check_labels``' second result; the
    count is exact, a weighted sum agrees to about one rounding). Labels
    must be in range."""
    from fastloss.cuda.api import _host_float

    n = lab.size
    if n == 0:
        return 0.0
    nchunks = -(-n // CHUNK)
    hi = scratch(nchunks, "float64", stream)
    lo = scratch(nchunks, "float64", stream)
    _label_weight_kernel[config.blocks_for(nchunks), config.threads_per_block(), stream](
        lab, w, use_w, int(ignore), bool(use_ignore), hi, lo)
    return _host_float(combine(hi, lo, stream), stream)


def _not_on_device(name: str, a) -> TypeError:
    where = "a NumPy array" if isinstance(a, np.ndarray) else type(a).__name__
    return TypeError(f"{name}: must be a GPU array like the input (fastloss does not move data "
                     f"between host and device); got {where}")


def _class_weights(name: str, a, c: int, xd):
    """(device (C,) weights, host copy or None, DevArray or None) of a class
    weight parameter: a NumPy array gets the CPU's checks (``rows._class_vector``)
    and is copied to the device; a device array gets the same checks on the
    device."""
    stream = xd.stream
    if not is_device_array(a):
        host = _class_vector(name, a, c, xd.dtype)
        return arrays.to_device_like(host, xd), host, None
    d = adapt(name, a)
    validate.check_float_meta(name, d.dtype, d.ndim, xd.dtype)
    if d.shape != (c,):
        raise ValueError(f"{name}: must have shape ({c},), one value per class; got {d.shape}")
    d = contiguous(name, d)
    d.stream = stream
    i = checks.first_bad(d.arr, CLASS_WEIGHTS, stream)
    if i >= 0:
        raise validate.domain_error(name, CLASS_WEIGHTS, i, checks.element(d.arr, i, stream),
                                    (c,))
    return d.arr, None, d


def _row_kernel(fid: int, dtype, w_given: bool, p, c: int) -> str:
    """Which kernel runs this call: "block" (``rowblock``), "warp"
    (``rowwarp``) or "thread" (``make_row_kernel``). ``config.Launch.rows``
    forces one for the calls the block and warp kernels can run
    (``rowblock.eligible``); by default those take the warp kernel for rows
    of fewer than ``rowblock.MIN_C`` classes and the block kernel otherwise."""
    how = config.current().rows
    if how == "thread" or not rowblock.eligible(fid, dtype, w_given, p):
        return "thread"
    if how is not None:
        return how
    return "block" if c >= rowblock.MIN_C else "warp"


def evaluate(spec, input, target, reduction, params, want_grad, out=None):
    """(value, grad or None) of a row-wise loss on GPU arrays: the rules and
    results of ``fastloss.rows.evaluate``, returned as in ``fastloss.cuda.api``
    (floats for "mean"/"sum"/"batchmean", device arrays of the input's kind
    otherwise)."""
    from fastloss.cuda.api import _check_domain, _check_out, _device_float, _host_float

    name = spec.name
    reduction = validate.check_reduction(spec, reduction)
    p = validate.check_params(spec, params)
    xd = _device_float("input", input)
    check_scores_shape(tuple(xd.shape))
    n, c = xd.shape
    dtype, stream, x = xd.dtype, xd.stream, xd.arr
    fid_lab, fid_prob = FIDS[name]

    # target: labels or an (N, C) array
    if not is_device_array(target):
        raise _not_on_device("target", target)
    ta = adapt("target", target)
    fid = target_fid(name, n, ta.dtype, ta.shape)
    lab = t = None
    if fid == fid_prob:
        td = _device_float("target", target, xd)
        check_target_shape(name, td.shape, xd.shape)
        t = td.arr
    else:
        if ta.dtype not in _INT_DTYPES:
            raise TypeError(f"target: class labels must be int32 or int64; got {ta.dtype}")
        if ta.shape != (n,):
            raise ValueError(f"target: labels must have shape ({n},) (one per row); got {ta.shape}")
        td = contiguous("target", ta)
        td.stream = stream
        lab = td.arr

    use_ignore = fid in (0, 2)  # cross_entropy with labels, nll
    ignore = int(p.get("ignore_index", -100))

    wname = spec.weight_param
    w_given = wname is not None and p.get(wname) is not None
    w_dev = None
    if w_given:
        w, w_host, w_dev = _class_weights(wname, p[wname], c, xd)
    else:
        w, w_host = arrays.to_device_like(np.ones(c, dtype=dtype), xd), None

    # labels before anything reads the data by them
    if lab is not None and fid in (0, 2, 5, 6):
        bad = checks.first_bad_label(lab, c, ignore, use_ignore, stream)
        if bad >= 0:
            raise label_error(checks.int_element(lab, bad, stream), bad, c, ignore, use_ignore)

    # data domains
    shape = xd.shape
    if name == "categorical_cross_entropy":
        _check_domain("input", flat(x), Interval(0.0, 1.0), shape, stream)
        _check_domain("target", flat(t), _NONNEG_FINITE, shape, stream)
    elif name == "kl_div":
        dom = _BELOW_INF if p["log_target"] else _NONNEG_FINITE
        _check_domain("target", flat(t), dom, shape, stream)
    elif fid == 1:
        _check_domain("target", flat(t), _NONNEG_FINITE, shape, stream)
    if fid in _SOFTMAX:
        labs = lab if lab is not None else cuda.to_device(np.zeros(1, np.int64), stream=stream)
        dead = checks.first_dead_row(x, labs, lab is not None, ignore, use_ignore, stream)
        if dead >= 0:
            raise ValueError(
                f"input: row {dead} has all logits -inf; its softmax (and the loss) is "
                "undefined (mask the row with ignore_index, or give it a finite logit)"
            )
    if fid == 6 and c > 1:
        bad = checks.first_undefined_hinge(x, lab, stream)
        if bad >= 0:
            yb = checks.int_element(lab, bad, stream)
            xy = checks.element(x[bad], yb, stream)
            raise ValueError(
                f"input: row {bad} has its label's logit x[{bad}, {yb}] = {xy} and "
                "another logit equal to it; the hinge margin - x_y + x_j is inf - inf, "
                "undefined (give the label's logit a finite value)"
            )

    od = None
    if out is not None and want_grad:
        od = _check_out(out, xd, [td, w_dev])

    d_rows = float(n)
    if reduction == "mean" and fid in (0, 2):
        d_rows = label_weight_sum(lab, w, w_given, ignore, use_ignore, stream)
    gdiv, denom = _gdiv_and_denominator(name, reduction, n, c, d_rows, fid in (0, 2))
    gdiv_k = math.nan if gdiv == 0.0 else gdiv  # every row ignored or weighted 0: 0/0

    p0, p1, p2, p3 = formula_params(
        spec, fid, p, c, w_given, lambda: w_host if w_host is not None else w.copy_to_host(stream=stream))

    grad_obj = gview = None
    if want_grad:
        if od is not None:
            grad_obj, gview = out, od.arr
        else:
            grad_obj, gview = arrays.empty_like_kind(xd, shape, dtype)
    vals_obj = vview = None
    if reduction == "none":
        vals_obj, vview = arrays.empty_like_kind(xd, (n,), dtype)
    kind = _row_kernel(fid, dtype, w_given, (p0, p1), c)
    if kind != "thread":
        rows = rowblock.block_row_pass if kind == "block" else rowwarp.warp_row_pass
        total_dev = rows(x, lab, w, w_given, ignore, use_ignore, gdiv_k, gview, vview, stream,
                         rpc=rows_per_chunk(c))
    else:
        total_dev = row_pass(fid, x, lab, t, w, (p0, p1, p2, p3), ignore, use_ignore, gdiv_k,
                             gview, vview, stream)

    if reduction == "none":
        return vals_obj, grad_obj
    total = _host_float(total_dev, stream)
    if reduction == "sum":
        value = total
    elif n == 0:
        warnings.warn("fastloss: mean of an empty input is NaN", RuntimeWarning, stacklevel=6)
        value = math.nan
    elif denom == 0.0:
        value = math.nan
    else:
        value = total / denom
    return value, grad_obj
