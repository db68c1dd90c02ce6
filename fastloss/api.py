"""The public functions: validate, pick the backend, call the kernel.

Nothing here knows a loss formula; everything loss-specific comes from the
spec (``fastloss.catalog``).
"""

from __future__ import annotations

import functools
import importlib
import math
import warnings

import numpy as np

from fastloss import buffers, catalog, validate
from fastloss._config import CHUNK
from fastloss.catalog import LossSpec

_DUMMY = {dt: np.empty(1, dtype=dt) for dt in validate.FLOAT_DTYPES}
_NO_BOUNDS = {dt: np.array([-math.inf, math.inf] * 2, dtype=dt) for dt in validate.FLOAT_DTYPES}


def _partials(n: int):
    """(hi, lo): one compensated float64 partial per chunk of n elements."""
    nchunks = -(-n // CHUNK)
    return np.empty(nchunks, dtype=np.float64), np.empty(nchunks, dtype=np.float64)


@functools.cache
def _elementwise_kernel():
    """(kernel, combine), imported on first use (importing fastloss loads
    no kernel module); a function-level import costs ~0.6 us every call."""
    from fastloss.cpu.elementwise import kernel
    from fastloss.reduce import combine

    return kernel, combine


def _sum_pass(spec: LossSpec, prep: validate.Prepared, *, grad=None, gdiv=1.0, vals=None):
    """Run the fused kernel once; returns the compensated sum of the values."""
    kernel, combine = _elementwise_kernel()
    x, y = prep.x, prep.y
    hi, lo = _partials(x.size)
    dummy = _DUMMY[x.dtype]
    p0, p1, p2 = prep.p
    # the kernel tests the deferred domains (prep.bounds); else bounds that
    # every value meets
    dom = _NO_BOUNDS[x.dtype] if prep.bounds is None else prep.bounds
    bad = np.zeros(hi.size, dtype=np.uint8)
    kernel(
        catalog.kernel_id(spec, prep.p, prep.q), x, y, prep.q, prep.qper, prep.w, prep.wper,
        p0, p1, p2, float(gdiv),
        dummy if grad is None else grad, dummy if vals is None else vals,
        hi, lo, grad is not None, vals is not None, dom, bad,
    )
    # count_nonzero: 0.2 us on a small array, any() 1.0
    if prep.bounds is not None and np.count_nonzero(bad):
        validate.raise_deferred(spec, prep)
    return combine(hi, lo)


def _mean(total: float, n: int) -> float:
    if n == 0:
        warnings.warn("fastloss: mean of an empty input is NaN", RuntimeWarning, stacklevel=4)
        return math.nan
    return total / n


def _squares(spec, prep, x, y):
    """The compensated float64 sum of mse's squares (x_i - y_i)^2, unrounded
    (``cpu.elementwise.value_sum``)."""
    from fastloss.cpu.elementwise import value_sum_kernel
    from fastloss.reduce import combine

    hi, lo = _partials(x.size)
    p0, p1, p2 = prep.p
    value_sum_kernel(catalog.kernel_id(spec, prep.p), x, y, p0, p1, p2, hi, lo)
    return combine(hi, lo)


def _rmse(spec, prep, want_grad, out=None):
    """sqrt(mean d^2), rescaled by a power of two when the float64 sum of
    squares overflows or underflows; gradient d / (n rmse) = mse's 2d / (2 n rmse).

    The squares are summed in float64 as computed, not rounded to the
    data's dtype (they are intermediates, never returned): for float32 data
    d^2 lies within [2^-298, 2^257], so its float64 sum neither overflows
    nor underflows and the rescaling is for float64 data only."""
    from fastloss.cpu.elementwise import max_abs_diff

    n = prep.size
    x, y = prep.x, prep.y
    total = _squares(spec, prep, x, y)
    scale = 1.0
    if n and (total == math.inf or total < 2.0**-900):
        m = max_abs_diff(x, y)
        if math.isfinite(m) and m > 0.0:
            scale = 2.0 ** -math.frexp(m)[1]
            total = _squares(spec, prep, x * scale, y * scale)
    value = math.sqrt(_mean(total, n)) / scale if n else math.nan
    if n == 0:
        _mean(total, n)
    grad = None
    if want_grad:
        grad = buffers.empty(n, prep.dtype) if out is None else out.reshape(-1)
        if value == 0.0:
            grad[:] = 0.0
        else:
            _sum_pass(spec, prep, grad=grad, gdiv=2.0 * n * value)
        grad = grad.reshape(prep.shape)
    return value, grad


#: families evaluated outside this module: family -> "module:function" with
#: the signature of ``evaluate`` after its first argument (spec instead of name)
FAMILY_RUNNERS: dict[str, str] = {
    "multiclass": "fastloss.rows:evaluate",
    "box": "fastloss.boxes:evaluate",
    "metric": "fastloss.metrics:evaluate",
}

ELEMENTWISE_FAMILIES = ("regression", "binary")


def _is_device_array(a) -> bool:
    """True for GPU arrays (CAI, CUDA DLPack, numba/simulator device arrays);
    duck-typed, imports no GPU library."""
    from fastloss.cuda.arrays import is_device_array

    return is_device_array(a)


@functools.cache
def _runner(family: str):
    """The ``FAMILY_RUNNERS`` function of a family, imported on first use."""
    modname, fname = FAMILY_RUNNERS[family].split(":")
    return getattr(importlib.import_module(modname), fname)


def evaluate(name: str, input, target, reduction: str, params: dict, want_grad: bool,
             out=None):
    """(value, grad or None) of loss ``name``; the engine behind every public call.

    ``out``: a buffer for the gradient (see ``value_and_grad``)."""
    kw = {} if out is None else {"out": out}
    spec = catalog.get(name)
    if want_grad and not spec.has_grad:
        raise ValueError(f"name: {name} is a metric and has no gradient; use fastloss.{name}")
    if not isinstance(input, np.ndarray) and _is_device_array(input):
        from fastloss.cuda.api import evaluate as cuda_evaluate

        return cuda_evaluate(spec, input, target, reduction, params, want_grad, **kw)
    if spec.family not in ELEMENTWISE_FAMILIES:
        return _runner(spec.family)(spec, input, target, reduction, params, want_grad, **kw)
    # the data's interval checks ride in the kernel unless it would write
    # into the caller's out= before they fail (a failed call leaves out as it
    # was); rmse's kernel is another
    prep = validate.prepare(spec, input, target, reduction, params,
                            defer=(out is None or not want_grad) and spec.name != "rmse")
    if spec.name == "rmse":
        if out is not None:
            validate.check_out(out, input if isinstance(input, np.ndarray) else prep.x, target,
                               *(v for v in params.values() if isinstance(v, np.ndarray)))
        return _rmse(spec, prep, want_grad, out)
    n = prep.size
    if out is not None and want_grad:
        validate.check_out(out, input, target,
                           *(v for v in params.values() if isinstance(v, np.ndarray)))
        grad = out.reshape(-1)
    else:
        grad = buffers.empty(n, prep.dtype) if want_grad else None
    vals = buffers.empty(n, prep.dtype) if reduction == "none" else None
    total = _sum_pass(spec, prep, grad=grad, gdiv=n if reduction == "mean" and n else 1, vals=vals)
    if reduction == "none":
        value = vals.reshape(prep.shape)
    elif reduction == "sum":
        value = float(total)
    else:
        value = _mean(total, n)
    if grad is not None and out is not None:
        return value, out
    return value, None if grad is None else grad.reshape(prep.shape)


def value_and_grad(name, input, target, *, reduction="mean", out=None, **params):
    """Loss ``name`` and its gradient with respect to ``input``, in one fused pass.

    Returns ``(value, grad)``: ``grad`` has the input's shape and dtype and is
    d(value)/d(input); with ``reduction="none"`` value holds one loss per
    element and grad is the gradient of their sum.

    ``out``: an optional C-contiguous, writeable array of the input's shape and
    dtype that receives the gradient (and is returned as ``grad``) instead of
    a new array. It may be ``input`` itself: the gradient then overwrites the
    input in place, bit for bit what a separate buffer would receive, so a
    large batch of logits needs no second array. Every check runs before the
    kernel writes, so a failing call leaves ``out`` untouched."""
    return evaluate(name, input, target, reduction, params, want_grad=True, out=out)


def grad(name, input, target, *, reduction="mean", out=None, **params):
    """The gradient of loss ``name`` with respect to ``input`` (see value_and_grad,
    also for ``out``)."""
    return evaluate(name, input, target, reduction, params, want_grad=True, out=out)[1]


def names() -> list[str]:
    """Sorted names of the losses this build implements."""
    return sorted(catalog.BY_NAME)


def _loss_function(spec: LossSpec):
    def loss(input, target, *, reduction="mean", **params):
        return evaluate(spec.name, input, target, reduction, params, want_grad=False)[0]

    params = "".join(f", {p.name}={p.default!r}" for p in spec.params)
    formula_doc = (spec.formula.__doc__ or "").strip()
    loss.__name__ = loss.__qualname__ = spec.name
    loss.__doc__ = (
        f"{spec.summary}.\n\n"
        f"fastloss.{spec.name}(input, target, *, reduction={spec.reductions[0]!r}{params})\n\n"
        f"reduction: one of {', '.join(spec.reductions)}.\n\n{formula_doc}\n"
        + (f"\nReference: {spec.reference}\n" if spec.reference else "")
    )
    loss.__module__ = "fastloss"
    return loss


LOSS_FUNCTIONS = {spec.name: _loss_function(spec) for spec in catalog.SPECS}
