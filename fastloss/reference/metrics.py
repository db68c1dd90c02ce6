"""Reference for the metrics: plain Python over rows (exact counts, mpmath
fractions), independent of ``fastloss.metrics``.

``value(name, scores_or_logits, labels, reduction)``: scores are a list of
rows (argmax, first maximum on ties) or a list of logits (prediction x > 0);
a row with NaN counts as NaN.
"""

from __future__ import annotations

import math

import mpmath

NAMES = ("zero_one", "accuracy")


def _row_wrong(x, y):
    if isinstance(x, (list, tuple)):
        if any(math.isnan(v) for v in x):
            return math.nan
        best = 0
        for k, v in enumerate(x):
            if v > x[best]:
                best = k
        return 0.0 if best == int(y) else 1.0
    if math.isnan(x) or math.isnan(float(y)):
        return math.nan
    return 0.0 if (x > 0) == (float(y) == 1.0) else 1.0


def per_row(name, inputs, labels):
    out = [_row_wrong(x, y) for x, y in zip(inputs, labels)]
    if name == "accuracy":
        out = [1.0 - w for w in out]
    return out


def value(name, inputs, labels, reduction="mean"):
    rows = per_row(name, inputs, labels)
    if reduction == "none":
        return rows
    total = mpmath.fsum(rows)
    if reduction == "sum":
        return total
    return total / len(rows) if rows else mpmath.nan


__all__ = ["NAMES", "per_row", "value"]
