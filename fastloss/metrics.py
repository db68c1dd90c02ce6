"""Classification metrics (no gradient): ``zero_one`` and ``accuracy``.

``evaluate(spec, input, target, reduction, params, want_grad)`` is the family
runner ``fastloss.api`` calls for specs whose family is "metric" (api refuses
``value_and_grad``/``grad`` on them with "has no gradient").

Inputs (LOSSES.md "Metrics"):
- (N, C) float scores with (N,) int32/int64 labels in [0, C): the prediction
  is the row's argmax (the first maximum on ties, as NumPy and PyTorch);
- (N,) float logits with (N,) 0/1 labels (float of the input's dtype, or
  int32/int64): the prediction is 1 where the logit is > 0.

``zero_one`` counts wrong predictions, ``accuracy`` right ones: "mean" gives
the fraction (a Python float), "sum" the count (a Python float), "none" one
0/1 per row (the input's dtype). A row containing NaN (scores, logit or float
label) gives NaN. Labels outside [0, C) or not in {0, 1} are ValueErrors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from fastloss import validate
from fastloss.validate import FLOAT_DTYPES, as_float_array

_INT_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask)) if mask.any() else -1


def wrong(input, target) -> np.ndarray:
    """Per-row 1.0 (wrong), 0.0 (right) or NaN, in the input's dtype; validates."""
    x = as_float_array("input", input)
    if not isinstance(target, np.ndarray):
        raise TypeError(f"target: must be a NumPy array of labels; got {type(target).__name__}")
    if x.ndim == 2:
        n, c = x.shape
        if c < 1:
            raise ValueError(f"input: needs at least one class (C >= 1); got shape {x.shape}")
        if target.dtype not in _INT_DTYPES:
            raise TypeError(
                f"target: class labels for (N, C) scores must be int32 or int64; got {target.dtype}"
            )
        if target.shape != (n,):
            raise ValueError(f"target: labels must have shape ({n},) (one per row); got {target.shape}")
        bad = _first((target < 0) | (target >= c))
        if bad >= 0:
            raise ValueError(f"target: label {int(target[bad])} at row {bad} is outside [0, {c})")
        if n == 0:
            return np.zeros(0, dtype=x.dtype)
        pred = np.argmax(x, axis=1)
        out = (pred != target).astype(x.dtype)
        out[np.isnan(x).any(axis=1)] = np.nan
        return out
    if x.ndim != 1:
        raise ValueError(
            f"input: must be (N, C) scores or (N,) binary logits; got shape {x.shape}"
        )
    n = x.shape[0]
    if target.dtype in FLOAT_DTYPES:
        t = as_float_array("target", target, x.dtype)
    elif target.dtype in _INT_DTYPES:
        t = target
    else:
        raise TypeError(
            f"target: binary labels must be 0/1 as int32, int64 or the input's float dtype; "
            f"got {target.dtype}"
        )
    if t.shape != (n,):
        raise ValueError(f"target: must have the input's shape ({n},); got {t.shape}")
    bad = _first(~((t == 0) | (t == 1) | (t != t)))
    if bad >= 0:
        raise ValueError(f"target: binary labels must be 0 or 1; element {bad} is {t[bad]!r}")
    pred = x > 0
    out = (pred != (t == 1)).astype(x.dtype)
    out[np.isnan(x) | (t != t)] = np.nan
    return out


def evaluate(spec, input, target, reduction, params, want_grad):
    """(value, None) of metric ``spec``; see the module doc."""
    if want_grad:  # api refuses first; kept for direct callers
        raise ValueError(f"name: {spec.name} is a metric and has no gradient; use fastloss.{spec.name}")
    reduction = validate.check_reduction(spec, reduction)
    validate.check_params(spec, params)
    per_row = wrong(input, target)
    if spec.name == "accuracy":
        per_row = (1 - per_row).astype(per_row.dtype)
    if reduction == "none":
        return per_row, None
    total = float(np.sum(per_row, dtype=np.float64))
    if reduction == "sum":
        return total, None
    if per_row.size == 0:
        warnings.warn("fastloss: mean of an empty input is NaN", RuntimeWarning, stacklevel=4)
        return math.nan, None
    return total / per_row.size, None
