"""Turns user input into checked, contiguous arrays, or a clear error.

Rules (README, "Input rules"):
- input and target are NumPy arrays of float32 or float64 with at least one
  dimension; anything else is a TypeError (bool, integer, complex, float16,
  lists, Python scalars) or a ValueError (0-d arrays);
- every float array of one call (input, target, weight, pos_weight) has one
  dtype: mixing float32 and float64 is a TypeError, never a silent cast;
- target has the input's shape exactly (no broadcasting); weight-like
  parameters broadcast to the input;
- non-contiguous and Fortran-ordered arrays are accepted (copied to C order);
- data outside a loss's domain (probabilities outside [0, 1], MSLE values
  <= -1, hinge targets outside {-1, 0, 1}, ...) is a ValueError that names the
  argument, the first offending index and value; NaN is never an error;
- unknown parameters, unknown reductions and parameters outside their domain
  are ValueErrors; parameters of the wrong type are TypeErrors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from fastloss import catalog
from fastloss.catalog import Interval, LossSpec, ValueSet

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Prepared:
    """Checked inputs of an elementwise loss, ready for a kernel."""

    x: np.ndarray  # 1-D, C-contiguous
    y: np.ndarray  # 1-D, C-contiguous, same dtype
    shape: tuple[int, ...]
    q: np.ndarray  # per-element formula auxiliary, read as q[i mod qper]
    qper: int
    w: np.ndarray  # per-element weight, read as w[i mod wper]
    wper: int
    p: tuple[float, float, float]
    reduction: str
    #: the input's and target's interval domains as [x lo, x hi, y lo, y hi]
    #: in the data's dtype, for the kernel to test (``prepare(defer=True)``;
    #: ``interval_bounds``); None where prepare checked them itself
    bounds: np.ndarray | None = None

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def size(self) -> int:
        return self.x.size


def check_reduction(spec: LossSpec, reduction) -> str:
    if not isinstance(reduction, str) or reduction not in spec.reductions:
        allowed = ", ".join(repr(r) for r in spec.reductions)
        raise ValueError(f"reduction: {spec.name} takes {allowed}; got {reduction!r}")
    return reduction


_DEFAULTS: dict = {}


def check_params(spec: LossSpec, params: dict) -> dict:
    """The call's parameters, checked, with the spec's defaults filled in (a
    new dict). A call that passes none takes a copy of the spec's checked
    defaults, computed once (0.7-1.6 us a call otherwise)."""
    if not params:
        hit = _DEFAULTS.get(spec.name)
        if hit is None or hit[0] is not spec:
            hit = _DEFAULTS[spec.name] = (spec, _check_params(spec, {}))
        return dict(hit[1])
    return _check_params(spec, params)


def _check_params(spec: LossSpec, params: dict) -> dict:
    unknown = sorted(set(params) - set(spec.param_names))
    if unknown:
        known = ", ".join(spec.param_names) or "none"
        raise ValueError(
            f"{', '.join(unknown)}: unknown parameter(s) of {spec.name}; its parameters: {known}"
        )
    out = {}
    for p in spec.params:
        v = params.get(p.name, p.default)
        if p.kind == "array":
            out[p.name] = v  # checked against the input's shape later
            continue
        if p.kind == "bool":
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{p.name}: must be True or False; got {v!r}")
            out[p.name] = bool(v)
            continue
        if v is None and p.kind == "float_or_none":
            out[p.name] = None
            continue
        if p.kind == "int":
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{p.name}: must be an integer; got {type(v).__name__} {v!r}")
            v = int(v)
            if p.check is not None:
                why = p.check(v)
                if why:
                    raise ValueError(f"{p.name}: {why}; got {v!r}")
            out[p.name] = v
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, Real):
            raise TypeError(f"{p.name}: must be a real number; got {type(v).__name__} {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"{p.name}: must be finite; got {v!r}")
        if p.check is not None:
            why = p.check(v)
            if why:
                raise ValueError(f"{p.name}: {why}; got {v!r}")
        out[p.name] = v
    return out


def as_float_array(name: str, a, dtype=None) -> np.ndarray:
    """A NumPy float32/float64 array with >= 1 dimension, or a clear error."""
    if not isinstance(a, np.ndarray):
        if hasattr(a, "__cuda_array_interface__") or hasattr(a, "__dlpack_device__"):
            raise TypeError(
                f"{name}: GPU arrays are not supported by this build's CPU path; "
                f"got {type(a).__name__}"
            )
        raise TypeError(f"{name}: must be a NumPy array of float32 or float64; got {type(a).__name__}")
    check_float_meta(name, a.dtype, a.ndim, dtype)
    return a


def check_float_meta(name: str, dtype, ndim: int, like=None) -> None:
    """The dtype and rank rules of a float array argument, shared by the CPU
    path and the CUDA path (which must not look at the data itself): float32
    or float64, at least one dimension, and ``like``'s dtype when given."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: dtype must be float32 or float64; got {dtype}")
    if ndim == 0:
        raise ValueError(f"{name}: must have at least one dimension; got a 0-d array "
                         "(use np.atleast_1d)")
    if like is not None and dtype != like:
        raise TypeError(
            f"{name}: dtype {dtype} differs from input's {like}; fastloss does not mix "
            "float32 and float64 in one call (cast one explicitly)"
        )


def _flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1)


_ONES = {np.dtype(dt): np.ones(1, dtype=dt) for dt in FLOAT_DTYPES}


def _one(dtype) -> np.ndarray:
    """[1] in ``dtype``: the absent parameter array (period 1), one array per
    dtype, shared by every call (``np.ones`` costs ~0.8 us, twice a call);
    the kernels read it only. Writeable: a read-only array is another Numba
    type, i.e. a second compilation of every kernel."""
    return _ONES[np.dtype(dtype)]


def periodic(name: str, a, shape: tuple[int, ...], dtype) -> tuple[np.ndarray, int]:
    """An array parameter broadcast to ``shape``, as (values, period): element
    i of the flattened input uses values[i mod period]. A scalar has period 1,
    a last-axis vector period shape[-1]; other broadcasts are materialised."""
    n = math.prod(shape)
    if a is None:
        return _one(dtype), 1
    if isinstance(a, Real) and not isinstance(a, (bool, np.bool_)):
        return np.full(1, a, dtype=dtype), 1
    if isinstance(a, np.ndarray) and a.ndim == 0:
        a = a.reshape(1)
    a = as_float_array(name, a, dtype)
    try:
        full = np.broadcast_shapes(a.shape, shape)
    except ValueError:
        full = None
    if full != tuple(shape):
        raise ValueError(f"{name}: shape {a.shape} does not broadcast to the input's shape {shape}")
    if a.size == 1:
        return _flat(a), 1
    if a.shape[-1] == shape[-1] and a.size == shape[-1]:
        return _flat(a), shape[-1]
    return _flat(np.broadcast_to(a, shape)), max(n, 1)


def _describe(domain) -> str:
    return f"in {domain}"


def check_domain(name: str, a: np.ndarray, domain, shape=None) -> None:
    """ValueError naming the first element of the flat array ``a`` outside
    ``domain`` (NaN passes), indexed in ``shape`` (the caller's array shape)."""
    if domain is None or a.size == 0:
        return
    from fastloss.cpu import checks

    if isinstance(domain, Interval):
        i = checks.first_outside(a, domain.lo, domain.hi, domain.lo_open, domain.hi_open)
    elif isinstance(domain, ValueSet):
        i = checks.first_not_in(a, np.asarray(domain.values, dtype=np.float64))
    else:  # pragma: no cover - catalogue error
        raise AssertionError(domain)
    if i >= 0:
        raise domain_error(name, domain, i, float(a[i]), shape or a.shape)


def domain_error(name: str, domain, i: int, value: float, shape) -> ValueError:
    """The error for flat element ``i`` (= ``value``) of argument ``name``
    (shape ``shape``) outside ``domain``; shared with the CUDA checks."""
    where = i if len(shape) == 1 else tuple(int(k) for k in np.unravel_index(i, shape))
    return ValueError(f"{name}: values must be {_describe(domain)}; element {where} is {value!r}")


def _closed_bound(v: float, is_open: bool, up: bool, dtype) -> float:
    """The representable value of ``dtype`` nearest to v on the allowed
    side (up: the least value >= v, or > v where open; else the greatest
    value <= v, or < v): an element of that dtype lies outside the interval
    exactly where it lies beyond this bound."""
    c = dtype.type(v)
    inf = dtype.type(math.inf if up else -math.inf)
    cv = float(c)  # compared in float64: NumPy would round v to c's dtype
    beyond = (cv < v or (is_open and cv == v)) if up else (cv > v or (is_open and cv == v))
    return float(np.nextafter(c, inf) if beyond else c)


_BOUNDS: dict = {}


def interval_bounds(spec: LossSpec, dtype) -> np.ndarray:
    """[x lo, x hi, y lo, y hi] in ``dtype`` (``Prepared.bounds``): the input's
    and the target's interval domains as closed bounds of that dtype, +-inf
    where a side has no domain. Cached per domains and dtype (2 us a call
    to compute, against ~25 us for a whole call on a small array); the
    array is shared: not to be written."""
    dtype = np.dtype(dtype)
    key = (spec.input_domain, spec.target_domain, dtype.str)
    b = _BOUNDS.get(key)
    if b is None:
        out = []
        for dom in (spec.input_domain, spec.target_domain):
            if dom is None:
                out += [-math.inf, math.inf]
            else:
                out += [_closed_bound(dom.lo, dom.lo_open, True, dtype),
                        _closed_bound(dom.hi, dom.hi_open, False, dtype)]
        # writeable: a read-only array is another Numba type, i.e. a second
        # compilation of every kernel
        b = np.array(out, dtype=dtype)
        _BOUNDS[key] = b
    return b


def _deferrable(spec: LossSpec, p) -> bool:
    """True when every data check of the call is an interval on the input
    or the target (no value set, no parameter-dependent check): the kernel
    can test them, and the full checks, run only on failure, raise the same
    first error."""
    doms = [d for d in (spec.input_domain, spec.target_domain) if d is not None]
    return (bool(doms) and all(isinstance(d, Interval) for d in doms)
            and (spec.param_domains is None or not spec.param_domains(p)))


def prepare(spec: LossSpec, input, target, reduction, params: dict, defer: bool = False) -> Prepared:
    """Validate one elementwise call and flatten its arrays for a kernel.

    ``defer``: where the data's checks are intervals on the input and the
    target only (``_deferrable``), leave them to the kernel (``bounds``);
    the caller must then call ``raise_deferred`` if the kernel flags a chunk,
    and must not have let the kernel write into a caller's buffer."""
    reduction = check_reduction(spec, reduction)
    p = check_params(spec, params)
    x = as_float_array("input", input)
    y = as_float_array("target", target, x.dtype)
    if y.shape != x.shape:
        raise ValueError(
            f"target: shape {y.shape} must equal input's shape {x.shape} (no broadcasting)"
        )
    shape = x.shape
    xf, yf = _flat(x), _flat(y)
    bounds = interval_bounds(spec, x.dtype) if defer and _deferrable(spec, p) else None
    if bounds is None:
        check_data(spec, p, xf, yf, shape)
    q, qper = periodic(spec.q_param, p.get(spec.q_param), shape, x.dtype) if spec.q_param \
        else (_one(x.dtype), 1)
    w, wper = periodic(spec.weight_param, p.get(spec.weight_param), shape, x.dtype) \
        if spec.weight_param else (_one(x.dtype), 1)
    return Prepared(xf, yf, shape, q, qper, w, wper, spec.pack(p), reduction, bounds)


def raise_deferred(spec: LossSpec, prep: Prepared) -> None:
    """The error of a call whose kernel flagged data outside the deferred
    interval domains (``prepare(defer=True)``): the full checks, which name
    the first offending element."""
    check_domain("input", prep.x, spec.input_domain, prep.shape)
    check_domain("target", prep.y, spec.target_domain, prep.shape)
    raise AssertionError(f"{spec.name}: the kernel flagged data its domain checks pass")


def check_data(spec: LossSpec, p: dict, xf: np.ndarray, yf: np.ndarray, shape) -> None:
    """The data's domain checks, in order: input, target, the parameters'."""
    check_domain("input", xf, spec.input_domain, shape)
    check_domain("target", yf, spec.target_domain, shape)
    if spec.param_domains is not None:
        for arg, dom in spec.param_domains(p):
            check_domain(arg, xf if arg == "input" else yf, dom, shape)


def check_out(out, like: np.ndarray, *others) -> np.ndarray:
    """Check a caller's gradient buffer ``out`` for an input ``like`` (the
    checked, C-contiguous input): a writeable, C-contiguous NumPy array of
    like's shape and dtype. It may be the input itself (in place: kernels
    read each element before writing it), but must not otherwise overlap the
    input or any of ``others`` (the caller's target and array parameters)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: must be a NumPy array; got {type(out).__name__}")
    if out.dtype != like.dtype:
        raise TypeError(f"out: dtype must be the input's {like.dtype}; got {out.dtype}")
    if out.shape != like.shape:
        raise ValueError(f"out: shape must be the input's {like.shape}; got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError("out: must be C-contiguous (np.ascontiguousarray or np.empty_like)")
    if not out.flags.writeable:
        raise ValueError("out: must be writeable")
    # the bounds test first: ``__array_interface__`` builds a dict (~1 us)
    if out is not like and np.may_share_memory(out, like) and not (
            out.__array_interface__["data"][0] == like.__array_interface__["data"][0]
            and out.strides == like.strides):
        raise ValueError("out: overlaps the input without being the input itself; pass the "
                         "input (in place) or a separate array")
    for o in others:
        if isinstance(o, np.ndarray) and o is not like and np.may_share_memory(out, o) and not (
                o.__array_interface__["data"][0] == like.__array_interface__["data"][0]
                and o.shape == like.shape and o.strides == like.strides):
            raise ValueError("out: overlaps the target or a parameter array")
    return out


def get_spec(name) -> LossSpec:
    return catalog.get(name)


__all__ = ["Prepared", "prepare", "raise_deferred", "check_params", "check_reduction",
           "check_out", "get_spec"]
