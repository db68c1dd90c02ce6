"""Row-wise (multiclass) losses on the CPU: validation, driver, reductions.

``evaluate(spec, input, target, reduction, params, want_grad, out=None)`` is
the family runner ``fastloss.api`` calls for specs whose family is
"multiclass". Input is an (N, C) array of scores; target is (N,) integer
labels (int32 or int64) or an (N, C) array of the input's dtype, depending on
the loss (``cross_entropy`` takes both).

Semantics (PyTorch where PyTorch has the loss, LOSSES.md "Multiclass"):
- ``reduction="none"`` gives one value per row; ``value_and_grad`` then gives
  the gradient of their sum.
- ``cross_entropy`` with labels and ``nll``: "mean" is
  sum_i w_{y_i} l_i / sum_i w_{y_i} over rows whose label is not
  ``ignore_index`` (the count of those rows without ``weight``); ignored rows
  have value 0 and gradient 0, also in the label-smoothing term. The
  ``z_loss`` term z lse^2 is not weighted and is part of each row's value.
- ``cross_entropy`` with probability targets, ``categorical_cross_entropy``,
  ``softmax_focal``, ``multi_margin``: "mean" divides by N.
- ``kl_div``: "mean" divides by N*C (PyTorch's element mean, pytorch#2259),
  "batchmean" by N (the true KL mean).
- A row of logits that are all -inf has no softmax (0/0): for
  ``cross_entropy`` and ``softmax_focal`` such a row (unless its label is
  ignored) is a ValueError. A -inf logit elsewhere is fine: its class has
  probability 0 and contributes 0 unless its target is positive.
- ``multi_margin``: the hinge margin - x_y + x_j is +inf when x_y = -inf and
  x_j is not (the loss is +inf), and -inf (no term) when x_j = -inf and x_y
  is finite; a row whose label's logit x_y is infinite and equal to another
  logit x_j (inf - inf, e.g. a row of all -inf) is a ValueError.
- Every check runs before any kernel reads or writes data, so ``out`` (which
  may be the input itself) is untouched when a call fails; except that
  without ``out`` (or without a gradient), the targets of cross_entropy with
  probability targets are checked by the kernel itself, row by row while in
  cache (``rowwise.fused``'s ``tcheck``), and a call that fails that check
  raises the same error afterwards. The separate pass over 32 MiB of targets
  cost (8192, 1000) float32, 2 threads, 0.8-1.0 of 7.7-7.9 ms; the check in
  the kernel 0.15-0.3 ms.
"""

from __future__ import annotations

import functools
import math
import warnings
from types import SimpleNamespace

import numpy as np

from fastloss import buffers, validate
from fastloss.catalog import Interval
from fastloss.validate import FLOAT_DTYPES, as_float_array, check_domain

#: loss -> (row formula index for integer labels, for (N, C) targets)
FIDS = {
    "cross_entropy": (0, 1),
    "nll": (2, None),
    "categorical_cross_entropy": (None, 3),
    "kl_div": (None, 4),
    "softmax_focal": (5, None),
    "multi_margin": (6, None),
}
#: formulas that need a softmax of the row (all -inf rows are errors)
_SOFTMAX = (0, 1, 5)
_INT_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_NONNEG_FINITE = Interval(0.0, math.inf, hi_open=True)
#: class weights (and the other per-class vectors): >= 0 and finite. An
#: infinite weight has no meaningful loss: it made every row NaN (the mean's
#: denominator and the smoothing coefficient (eps/C) sum(w) take inf, and
#: 0 inf even without smoothing)
CLASS_WEIGHTS = _NONNEG_FINITE
_BELOW_INF = Interval(-math.inf, math.inf, hi_open=True)
_EMPTY_LAB = np.zeros(0, dtype=np.int64)


def check_scores_shape(shape: tuple[int, ...]) -> None:
    """The input's shape rule (CPU and GPU): 2-D (N, C) with C >= 1."""
    if len(shape) != 2:
        raise ValueError(f"input: must be 2-D (N, C) scores, one row per sample; got shape {shape}")
    if shape[1] < 1:
        raise ValueError(f"input: needs at least one class (C >= 1); got shape {shape}")


def _input(x) -> np.ndarray:
    x = as_float_array("input", x)
    check_scores_shape(x.shape)
    return np.ascontiguousarray(x)


def _labels(target, n: int) -> np.ndarray:
    if not isinstance(target, np.ndarray):
        raise TypeError(
            f"target: must be a NumPy array of int32/int64 labels; got {type(target).__name__}"
        )
    if target.dtype not in _INT_DTYPES:
        raise TypeError(f"target: class labels must be int32 or int64; got {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"target: labels must have shape ({n},) (one per row); got {target.shape}")
    return np.ascontiguousarray(target, dtype=np.int64)


def _class_vector(name: str, a, c: int, dtype) -> np.ndarray:
    a = as_float_array(name, a, dtype)
    if a.shape != (c,):
        raise ValueError(f"{name}: must have shape ({c},), one value per class; got {a.shape}")
    a = np.ascontiguousarray(a)
    check_domain(name, a, CLASS_WEIGHTS)
    return a


def _gdiv_and_denominator(name, reduction, n, c, wsum_rows, use_weighted):
    """(gradient divisor, mean denominator)."""
    if reduction in ("sum", "none"):
        return 1.0, None
    if reduction == "batchmean":
        return float(n), float(n)
    if name == "kl_div":
        return float(n * c), float(n * c)
    if use_weighted:
        return wsum_rows, wsum_rows
    return float(n), float(n)


def target_fid(name: str, n: int, t_dtype, t_shape) -> int:
    """The row formula (``FIDS``) of loss ``name`` for a target of dtype
    ``t_dtype`` (None when it is no array) and shape ``t_shape``: a float
    target is probabilities (or kl_div's targets), anything else labels.
    TypeError when the loss takes no such target. CPU and GPU paths alike."""
    fid_lab, fid_prob = FIDS[name]
    is_float = t_dtype in FLOAT_DTYPES
    if fid_lab is not None and is_float and len(t_shape) == 1:
        raise TypeError(
            f"target: {name} takes int32/int64 class labels of shape ({n},) or an (N, C) array "
            f"of probabilities; got {t_dtype} of shape {tuple(t_shape)}"
        )
    if fid_prob is not None and (fid_lab is None or is_float):
        return fid_prob
    if is_float:
        raise TypeError(f"target: {name} takes int32/int64 class labels of shape ({n},); got {t_dtype}")
    return fid_lab


def check_target_shape(name: str, t_shape, x_shape) -> None:
    """An (N, C) target must have the input's shape."""
    if tuple(t_shape) != tuple(x_shape):
        raise ValueError(
            f"target: must have the input's shape {tuple(x_shape)} (one row of "
            f"{'probabilities' if name != 'kl_div' else 'targets'} per sample); got {tuple(t_shape)}"
        )


def label_error(label: int, row: int, c: int, ignore: int, use_ignore: bool) -> ValueError:
    """The error for a label outside [0, C) (that is not ignore_index)."""
    extra = f" and is not ignore_index ({ignore})" if use_ignore else ""
    return ValueError(f"target: label {label} at row {row} is outside [0, {c}){extra}")


def formula_params(spec, fid, p, c, w_given, host_weights):
    """The row formula's scalars (p0, p1, p2, p3): ``spec.pack``'s three,
    then for cross_entropy with labels sum(w) as a pair (p3 + p2), and with
    probability targets p3 = 1 when no class weight was given (w is all
    ones: ``cross_entropy_probs``' plain case) and p2 = max(w), once per
    call (the float32 lanes' scope bound, ``cpu.rowlanes.ce_probs_row32``;
    the float64 formula ignores it). ``host_weights()`` returns the weights
    as a NumPy array (called only when they are summed or their maximum
    taken)."""
    p0, p1, p2 = spec.pack(p)
    p3 = 0.0
    if fid == 0:
        p3, p2 = (_cpu().sum_dd(host_weights()) if w_given else (float(c), 0.0))
    elif fid == 1:
        p3 = 0.0 if w_given else 1.0
        p2 = float(np.max(host_weights())) if w_given and c > 0 else 1.0
    return p0, p1, p2, p3


@functools.cache
def _cpu() -> SimpleNamespace:
    """The CPU row driver's functions, imported on first use (importing
    fastloss loads no kernel module; a function-level import costs ~0.6 us
    a statement, every call)."""
    from fastloss.cpu import rowwise
    from fastloss.cpu.rowtiles import scratch
    from fastloss.reduce import combine

    return SimpleNamespace(
        check_labels=rowwise.check_labels, first_dead_row=rowwise.first_dead_row,
        first_undefined_hinge=rowwise.first_undefined_hinge, kernel=rowwise.kernel,
        rows_per_chunk=rowwise.rows_per_chunk, sum_dd=rowwise.sum_dd, tile_scratch=scratch,
        combine=combine)


def evaluate(spec, input, target, reduction, params, want_grad, out=None):
    """(value, grad or None) of a row-wise loss; see the module doc."""
    cpu = _cpu()
    name = spec.name
    reduction = validate.check_reduction(spec, reduction)
    p = validate.check_params(spec, params)
    x = _input(input)
    n, c = x.shape
    dtype = x.dtype
    fid_lab, fid_prob = FIDS[name]

    # target: labels or a (N, C) array
    fid = target_fid(name, n, target.dtype if isinstance(target, np.ndarray) else None,
                     np.shape(target))
    if fid == fid_prob:
        t = as_float_array("target", target, dtype)
        check_target_shape(name, t.shape, x.shape)
        t = np.ascontiguousarray(t)
        lab = np.zeros(n, dtype=np.int64)
    else:
        lab = _labels(target, n)
        t = np.empty((n, 0), dtype=dtype)

    use_ignore = fid in (0, 2)  # cross_entropy with labels, nll
    ignore = int(p.get("ignore_index", -100))

    wname = spec.weight_param
    w_given = wname is not None and p.get(wname) is not None
    w = _class_vector(wname, p[wname], c, dtype) if w_given else np.ones(c, dtype=dtype)

    # labels before anything reads the data by them
    d_rows = float(n)
    if fid in (0, 2, 5, 6):
        bad, d_rows = cpu.check_labels(lab, c, ignore, use_ignore, w, w_given)
        if bad >= 0:
            raise label_error(int(lab[bad]), bad, c, ignore, use_ignore)

    # data domains (probability targets: in the kernel where no caller's
    # buffer is written, module doc)
    defer_t = fid == 1 and (out is None or not want_grad)
    if name == "categorical_cross_entropy":
        check_domain("input", x.reshape(-1), Interval(0.0, 1.0), x.shape)
        check_domain("target", t.reshape(-1), _NONNEG_FINITE, x.shape)
    elif name == "kl_div":
        dom = _BELOW_INF if p["log_target"] else _NONNEG_FINITE
        check_domain("target", t.reshape(-1), dom, x.shape)
    elif fid == 1 and not defer_t:
        check_domain("target", t.reshape(-1), _NONNEG_FINITE, x.shape)
    if fid in _SOFTMAX and c > 0:
        dead = cpu.first_dead_row(x, lab, ignore, use_ignore)
        if dead >= 0:
            raise ValueError(
                f"input: row {dead} has all logits -inf; its softmax (and the loss) is "
                "undefined (mask the row with ignore_index, or give it a finite logit)"
            )

    if fid == 6 and c > 1:
        bad = cpu.first_undefined_hinge(x, lab)
        if bad >= 0:
            xy = float(x[bad, lab[bad]])
            raise ValueError(
                f"input: row {bad} has its label's logit x[{bad}, {int(lab[bad])}] = {xy} and "
                "another logit equal to it; the hinge margin - x_y + x_j is inf - inf, "
                "undefined (give the label's logit a finite value)"
            )

    if out is not None:
        validate.check_out(out, x, input, target, *(p[k] for k in spec.param_names
                                                     if isinstance(p.get(k), np.ndarray)))

    gdiv, denom = _gdiv_and_denominator(name, reduction, n, c, d_rows, fid in (0, 2))
    if gdiv == 0.0:
        gdiv_k = math.nan  # every row ignored or weighted 0: mean is 0/0
    else:
        gdiv_k = gdiv

    p0, p1, p2, p3 = formula_params(spec, fid, p, c, w_given, lambda: w)

    if want_grad:
        grad = out if out is not None else buffers.empty(x.size, dtype).reshape(x.shape)
    else:
        grad = np.empty((n, 0), dtype=dtype)
    # per-row values in the data's dtype: the kernel rounds each once as it
    # stores it (a float32 value beyond float32's range becomes inf, as the
    # elementwise kernels' stores do)
    vals = np.empty(n if reduction == "none" else 0, dtype=dtype)
    rpc = cpu.rows_per_chunk(c)
    nch = -(-n // rpc)
    hi = np.empty(nch, dtype=np.float64)
    lo = np.empty(nch, dtype=np.float64)
    tbad = np.zeros(nch if defer_t else 0, dtype=np.int8)
    cpu.kernel(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv_k, grad, vals,
               hi, lo, rpc, want_grad, reduction == "none", cpu.tile_scratch(c), defer_t, tbad)
    if defer_t and np.count_nonzero(tbad):  # 0.2 us, any() 1.0
        check_domain("target", t.reshape(-1), _NONNEG_FINITE, x.shape)
        raise AssertionError(f"{name}: the kernel flagged targets the domain check passes")
    total = cpu.combine(hi, lo)

    if reduction == "none":
        value = vals
    elif reduction == "sum":
        value = float(total)
    else:
        if n == 0:
            warnings.warn("fastloss: mean of an empty input is NaN", RuntimeWarning, stacklevel=4)
            value = math.nan
        elif denom == 0.0:
            value = math.nan
        else:
            value = float(total) / denom
    return value, (grad if want_grad else None)
