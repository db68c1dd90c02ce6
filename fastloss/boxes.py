"""Box losses on the CPU: validation, driver call, reductions.

``evaluate(spec, input, target, reduction, params, want_grad, out=None)`` is
the family runner ``fastloss.api`` calls for specs whose family is "box".
Input and target are (N, 4) arrays of boxes (x1, y1, x2, y2) of one float
dtype (float32 or float64, the rules of ``fastloss.validate``). A box with
x2 < x1 or y2 < y1 is a ValueError naming the argument and the row; NaN
passes and gives NaN for its pair. ``reduction="none"`` gives one value per
pair; "mean" divides by N. The gradient is with respect to the predicted
boxes (input), (N, 4) of the input's dtype.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from fastloss import buffers, validate
from fastloss.validate import as_float_array

#: loss -> index into fastloss.scalar.boxes.BOX_FORMULAS
FIDS = {"iou_loss": 0, "giou_loss": 1, "diou_loss": 2, "ciou_loss": 3}


def _boxes(name: str, a, dtype=None) -> np.ndarray:
    a = as_float_array(name, a, dtype)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(
            f"{name}: must have shape (N, 4), one box (x1, y1, x2, y2) per row; got {a.shape}"
        )
    return np.ascontiguousarray(a)


def check_boxes(name: str, a: np.ndarray) -> None:
    """ValueError naming the first row of ``a`` with x2 < x1 or y2 < y1."""
    from fastloss.cpu.boxes import first_bad_box

    i = first_bad_box(a) if a.shape[0] else -1
    if i >= 0:
        raise box_error(name, i, a[i])


def box_error(name: str, i: int, row) -> ValueError:
    """The error for row ``i`` (values ``row``) of argument ``name``, not a box
    (shared with the CUDA path, ``fastloss.cuda.boxes``)."""
    x1, y1, x2, y2 = (float(v) for v in row)
    which = "x2 < x1" if x2 < x1 else "y2 < y1"
    return ValueError(
        f"{name}: row {i} is not a box (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2: "
        f"{which} in {[x1, y1, x2, y2]}"
    )


def evaluate(spec, input, target, reduction, params, want_grad, out=None):
    """(value, grad or None) of a box loss; see the module doc."""
    from fastloss.cpu.boxes import BOX_CHUNK, kernel
    from fastloss.reduce import combine

    reduction = validate.check_reduction(spec, reduction)
    validate.check_params(spec, params)
    x = _boxes("input", input)
    y = _boxes("target", target, x.dtype)
    if y.shape != x.shape:
        raise ValueError(
            f"target: shape {y.shape} must equal input's shape {x.shape} (one target box per "
            "predicted box)"
        )
    check_boxes("input", x)
    check_boxes("target", y)
    if out is not None:
        validate.check_out(out, x, input, target)
    n = x.shape[0]
    dtype = x.dtype
    gdiv = float(n) if reduction == "mean" and n else 1.0
    if want_grad:
        grad = out if out is not None else buffers.empty(x.size, dtype).reshape(x.shape)
    else:
        grad = np.empty((1, 4), dtype=dtype)
    vals = np.empty(n if reduction == "none" else 1, dtype=dtype)
    nch = -(-n // BOX_CHUNK)
    hi = np.empty(nch, dtype=np.float64)
    lo = np.empty(nch, dtype=np.float64)
    kernel(FIDS[spec.name], x, y, gdiv, grad, vals, hi, lo, want_grad, reduction == "none")
    total = combine(hi, lo)
    if reduction == "none":
        value = vals
    elif reduction == "sum":
        value = float(total)
    elif n == 0:
        warnings.warn("fastloss: mean of an empty input is NaN", RuntimeWarning, stacklevel=4)
        value = math.nan
    else:
        value = float(total) / n
    return value, (grad if want_grad else None)
