"""The CUDA path of ``fastloss.api.evaluate``: validate on the device, run the
fused kernel on the caller's stream, return results of the caller's kind.

The rules are the CPU path's (``fastloss.validate``): the same parameter and
reduction checks, the same dtype/rank rules (``validate.check_float_meta``),
the same domain messages (``validate.domain_error``); only the data checks run
as kernels (``fastloss.cuda.checks``), so the data is never copied to the
host. What comes back (``fastloss.cuda.arrays``): Python floats for "mean" and
"sum"; for "none" and for gradients, a device array of the input's kind
(numba device array, ``cupy.ndarray``, ``torch.Tensor``), shaped like the
input, in its dtype.

Every array of one call must live on the GPU (a NumPy target with a device
input is a TypeError, never a silent transfer); array *parameters* (weight,
pos_weight) may be NumPy arrays or device arrays.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from fastloss import catalog, validate
from fastloss.cuda import arrays
from fastloss.cuda.arrays import DevArray, adapt, contiguous, flat, is_device_array

ELEMENTWISE_FAMILIES = ("regression", "binary")


def _device_float(name: str, a, like: DevArray | None = None) -> DevArray:
    if not is_device_array(a):
        where = "a NumPy array" if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(
            f"{name}: must be a GPU array like the input (fastloss does not move data "
            f"between host and device); got {where}"
        )
    d = adapt(name, a)
    validate.check_float_meta(name, d.dtype, d.ndim, None if like is None else like.dtype)
    d = contiguous(name, d)
    if like is not None:
        d.stream = like.stream
    return d


def _periodic(name: str, a, shape: tuple[int, ...], like: DevArray):
    """An array parameter as (device values, period): element i of the flat
    input uses values[i mod period] (``validate.periodic``'s rule)."""
    dtype = like.dtype
    if a is None or (isinstance(a, Real) and not isinstance(a, (bool, np.bool_))) \
            or isinstance(a, np.ndarray):
        host, per = validate.periodic(name, a, shape, dtype)
        return (arrays.constant(host) if per == 1 else arrays.to_device_like(host, like)), per
    d = adapt(name, a) if is_device_array(a) else None
    if d is None:
        raise TypeError(f"{name}: must be a float, a NumPy array or a GPU array; got "
                        f"{type(a).__name__}")
    if d.ndim == 0:
        validate.check_float_meta(name, d.dtype, 1, dtype)
        return d.arr.reshape(1), 1
    validate.check_float_meta(name, d.dtype, d.ndim, dtype)
    d = contiguous(name, d)
    per = arrays.broadcast_period(name, d.shape, shape)
    if per is not None:
        return flat(d.arr), per
    # an interior broadcast (e.g. (N, 1, W) over (N, H, W)): materialised
    # through the host, a parameter-sized copy (the data never moves)
    host = np.broadcast_to(d.arr.copy_to_host(stream=like.stream), shape)
    return arrays.to_device_like(host.reshape(-1), like), max(math.prod(shape), 1)


def _check_domain(name: str, a, domain, shape, stream) -> None:
    from fastloss.cuda import checks

    i = checks.first_bad(a, domain, stream)
    if i >= 0:
        raise validate.domain_error(name, domain, i, checks.element(a, i, stream), shape)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _check_out(out, xd: DevArray, others: list[DevArray]) -> DevArray:
    """``validate.check_out``'s rules for a device gradient buffer."""
    if not is_device_array(out):
        raise TypeError(f"out: must be a GPU array like the input; got {type(out).__name__}")
    od = adapt("out", out)
    if od.dtype != xd.dtype:
        raise TypeError(f"out: dtype must be the input's {xd.dtype}; got {od.dtype}")
    if od.shape != xd.shape:
        raise ValueError(f"out: shape must be the input's {xd.shape}; got {od.shape}")
    if not od.c_contiguous():
        raise ValueError("out: must be C-contiguous")
    ospan, xspan = od.span(), xd.span()
    same = ospan == xspan and od.arr.strides == xd.arr.strides
    if not same and _overlaps(ospan, xspan):
        raise ValueError("out: overlaps the input without being the input itself; pass the "
                         "input (in place) or a separate array")
    for o in others:
        if o is not None and _overlaps(ospan, o.span()) and o.span() != xspan:
            raise ValueError("out: overlaps the target or a parameter array")
    od.stream = xd.stream
    return od


def _host_float(dev1, stream) -> float:
    return float(dev1.copy_to_host(stream=stream)[0])


def evaluate(spec, input, target, reduction, params, want_grad, out=None):
    """(value, grad or None) of loss ``spec`` on GPU arrays; see the module doc."""
    if spec.family not in ELEMENTWISE_FAMILIES:
        return _other_family(spec, input, target, reduction, params, want_grad, out)
    from fastloss.api import _mean
    from fastloss.cuda.elementwise import fill, max_abs_diff, scaled, sum_pass

    reduction = validate.check_reduction(spec, reduction)
    p = validate.check_params(spec, params)
    xd = _device_float("input", input)
    yd = _device_float("target", target, xd)
    if yd.shape != xd.shape:
        raise ValueError(
            f"target: shape {yd.shape} must equal input's shape {xd.shape} (no broadcasting)"
        )
    shape, dtype, n, stream = xd.shape, xd.dtype, xd.size, xd.stream
    x, y = flat(xd.arr), flat(yd.arr)
    _check_domain("input", x, spec.input_domain, shape, stream)
    _check_domain("target", y, spec.target_domain, shape, stream)
    if spec.param_domains is not None:
        for arg, dom in spec.param_domains(p):
            _check_domain(arg, x if arg == "input" else y, dom, shape, stream)
    q, qper = _periodic(spec.q_param, p.get(spec.q_param), shape, xd) if spec.q_param \
        else _periodic("q", None, shape, xd)
    w, wper = _periodic(spec.weight_param, p.get(spec.weight_param), shape, xd) \
        if spec.weight_param else _periodic("w", None, shape, xd)
    fid = catalog.formula_id(spec)
    pk = spec.pack(p)

    od = None
    if out is not None and want_grad:
        param_devs = [adapt(k, v) for k, v in p.items() if is_device_array(v)]
        od = _check_out(out, xd, [yd, *param_devs])
    grad_obj = gflat = None
    if want_grad:
        if od is not None:
            grad_obj, gflat = out, flat(od.arr)
        else:
            grad_obj, gview = arrays.empty_like_kind(xd, shape, dtype)
            gflat = flat(gview)

    if spec.name == "rmse":
        # the sum of squares on float64 data, as on the CPU (fastloss.api._rmse):
        # the kernels sum values rounded to the data's dtype
        x64, y64 = (x, y) if dtype == np.float64 else \
            (scaled(x, 1.0, stream, np.float64), scaled(y, 1.0, stream, np.float64))
        total = _host_float(sum_pass(fid, x64, y64, q, qper, w, wper, pk, 1.0, None, None,
                                     stream), stream)
        scale = 1.0
        if n and (total == math.inf or 0.0 < total < 2.0**-900):
            m = max_abs_diff(x64, y64, stream)
            if math.isfinite(m) and m > 0.0:
                scale = 2.0 ** -math.frexp(m)[1]
                total = _host_float(sum_pass(fid, scaled(x64, scale, stream),
                                             scaled(y64, scale, stream), q, qper, w, wper, pk,
                                             1.0, None, None, stream), stream)
        value = math.sqrt(_mean(total, n)) / scale if n else math.nan
        if n == 0:
            _mean(total, n)
        if want_grad:
            if value == 0.0:
                fill(gflat, 0.0, stream)
            else:
                sum_pass(fid, x, y, q, qper, w, wper, pk, 2.0 * n * value, gflat, None, stream)
        return value, grad_obj

    vals_obj = vflat = None
    if reduction == "none":
        vals_obj, vview = arrays.empty_like_kind(xd, shape, dtype)
        vflat = flat(vview)
    gdiv = n if reduction == "mean" and n else 1
    total_dev = sum_pass(fid, x, y, q, qper, w, wper, pk, gdiv, gflat, vflat, stream)
    if reduction == "none":
        value = vals_obj
    else:
        total = _host_float(total_dev, stream)
        value = total if reduction == "sum" else _mean(total, n)
    return value, grad_obj


def _other_family(spec, input, target, reduction, params, want_grad, out):
    """Box losses (``fastloss.cuda.boxes``) and row-wise losses
    (``fastloss.cuda.rowwise``, when this build has it)."""
    import importlib

    modname = {"multiclass": "fastloss.cuda.rowwise", "box": "fastloss.cuda.boxes"}.get(spec.family)
    try:
        mod = importlib.import_module(modname) if modname else None
    except ImportError:
        mod = None
    if mod is None:
        raise TypeError(
            f"input: {spec.name} ({spec.family}) has no CUDA kernel in this build yet; "
            "pass NumPy arrays"
        )
    return mod.evaluate(spec, input, target, reduction, params, want_grad, out=out)
