"""One benchmark: prepare, warm up (compilation outside the timed region),
time with pytest-benchmark, check the result.

``run(benchmark, case, budget)`` is what every suite in ``bench/`` calls.
Timing: a first untimed call at full size gives the time t of one call; the
case then gets ``rounds = clamp(budget / t, min_rounds, max_rounds)`` timed
rounds, each of enough iterations to last about a millisecond. The reported
time is per call; throughput uses the minimum (the run least disturbed by
other processes), the median is recorded too.

On a GPU every timed call ends with a device synchronisation, so the wall
clock covers the kernels it launched (synchronised timing).

Checks (also under ``--benchmark-disable``, where each benchmark runs once):
fastloss against the float64 NumPy formula on a prefix of the data; every
peer against fastloss on the whole data; the bandwidth kernels' output.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from fastloss.benchmark import peers
from fastloss.benchmark.cases import Case, make_data, variant_kwargs

#: fastloss's result for the current (backend, loss, dtype, shape), to check peers against
_REF: dict = {}


@dataclass
class Budget:
    seconds: float = 0.5  # timed seconds per benchmark
    min_rounds: int = 2
    max_rounds: int = 200
    round_seconds: float = 1e-3  # a round lasts at least this long (iterations per round)


def set_threads(n: int) -> None:
    import numba

    numba.set_num_threads(n)


def _tol(dtype) -> float:
    return 2e-3 if np.dtype(dtype) == np.float32 else 1e-8


def check_close(what: str, value, grad, ref_value, ref_grad, dtype) -> None:
    """AssertionError when (value, grad) is not (ref_value, ref_grad) within a
    tolerance fit for comparing different (correct) algorithms."""
    rtol = _tol(dtype)
    value, ref_value = float(value), float(ref_value)
    assert math.isfinite(value), f"{what}: value is {value}"
    assert abs(value - ref_value) <= rtol * max(abs(ref_value), 1e-30) + 1e-30, \
        f"{what}: value {value!r} differs from {ref_value!r}"
    grad = np.asarray(grad)
    ref_grad = np.asarray(ref_grad)
    assert grad.shape == ref_grad.shape, f"{what}: gradient shape {grad.shape} != {ref_grad.shape}"
    scale = float(np.max(np.abs(ref_grad))) if ref_grad.size else 0.0
    err = float(np.max(np.abs(grad.astype(np.float64) - ref_grad))) if grad.size else 0.0
    assert err <= rtol * scale + 1e-30, \
        f"{what}: gradient differs by {err:.3g} (largest |gradient| {scale:.3g})"


# --------------------------------------------------------------------------
# the callables


def _fastloss_cpu(case: Case, x, y):
    import fastloss as fl

    kw = variant_kwargs(case)
    if case.impl == "fastloss_out":  # a gradient buffer allocated once (cases.py)
        out = np.zeros_like(x)  # touched now, outside the timed region

        def fn():
            return fl.value_and_grad(case.loss, x, y, out=out, **kw)

        return fn

    def fn():
        return fl.value_and_grad(case.loss, x, y, **kw)

    return fn


def _prefix(case: Case, x, y):
    """A few thousand elements of the data: the leading elements, or rows."""
    k = min(4096, x.shape[0]) if x.ndim == 1 else min(8, x.shape[0])
    return x[:k], y[:k]


def _warm_fastloss(case: Case, x, y) -> None:
    """Compile (or load) the kernel on a prefix of the data and check it
    against the NumPy formula evaluated in float64."""
    import fastloss as fl

    xs, ys = _prefix(case, x, y)
    v, g = fl.value_and_grad(case.loss, xs, ys, **variant_kwargs(case))
    assert g.shape == xs.shape and g.dtype == xs.dtype, "fastloss: gradient shape or dtype"
    if peers.numpy_supports(case):
        x64 = xs.astype(np.float64)
        y64 = ys if ys.dtype.kind == "i" else ys.astype(np.float64)
        with np.errstate(all="ignore"):
            rv, rg = peers.numpy_loss(case)(x64, y64)
        check_close(f"fastloss {case.loss} vs float64 formula", v, g, rv, rg, case.dtype)


def _torch_cpu(case: Case, x, y):
    import torch

    torch.set_num_threads(case.threads)
    f = peers.torch_loss(case, {k: torch.from_numpy(v) for k, v in variant_kwargs(case).items()})
    xt = torch.from_numpy(np.array(x)).requires_grad_(True)
    yt = torch.from_numpy(np.array(y))
    xs, ys = _prefix(case, xt.detach(), yt)
    xs = xs.clone().requires_grad_(True)
    f(xs, ys).backward()  # warm-up outside the timed region

    def fn():
        xt.grad = None
        loss = f(xt, yt)
        loss.backward()
        return loss.item(), xt.grad

    def result(r):
        return r[0], r[1].numpy()

    return fn, result


def _numpy_cpu(case: Case, x, y):
    f = peers.numpy_loss(case)

    def fn():
        with np.errstate(all="ignore"):
            return f(x, y)

    return fn


def _triad(case: Case):
    from fastloss.benchmark.kernels import triad, triad_arrays

    a, b, c = triad_arrays(case.shape[0])
    triad(a, b, c, 3.0)  # compile outside the timed region

    def fn():
        triad(a, b, c, 3.0)
        return a

    def check(r):
        assert r[0] == 7.0 and r[-1] == 7.0, "triad: wrong result"

    return fn, check


# --------------------------------------------------------------------------
# CUDA


def _sync():
    from numba import cuda

    cuda.synchronize()


def _fastloss_cuda(case: Case, x, y):
    from numba import cuda

    import fastloss as fl

    dx, dy = cuda.to_device(x), cuda.to_device(y)
    xs, ys = _prefix(case, x, y)
    fl.value_and_grad(case.loss, cuda.to_device(xs), cuda.to_device(ys))  # compile
    _sync()

    def fn():
        r = fl.value_and_grad(case.loss, dx, dy)
        _sync()
        return r

    def result(r):
        g = r[1]
        return float(r[0]), g.copy_to_host() if hasattr(g, "copy_to_host") else np.asarray(g)

    return fn, result


def _torch_cuda(case: Case, x, y):
    import torch

    if not torch.cuda.is_available():
        import pytest

        pytest.skip("this PyTorch build has no CUDA")
    f = peers.torch_loss(case)
    xt = torch.from_numpy(np.array(x)).cuda().requires_grad_(True)
    yt = torch.from_numpy(np.array(y)).cuda()
    f(xt, yt).backward()
    torch.cuda.synchronize()

    def fn():
        xt.grad = None
        loss = f(xt, yt)
        loss.backward()
        torch.cuda.synchronize()
        return loss.item(), xt.grad

    def result(r):
        return r[0], r[1].cpu().numpy()

    return fn, result


def _d2d_copy(case: Case):
    from numba import cuda

    n = case.shape[0]
    src = cuda.to_device(np.full(n, 7.0))
    dst = cuda.device_array(n, dtype=np.float64)
    dst.copy_to_device(src)
    _sync()

    def fn():
        dst.copy_to_device(src)
        _sync()
        return dst

    def check(r):
        assert float(r[0:1].copy_to_host()[0]) == 7.0, "device copy: wrong result"

    return fn, check


# --------------------------------------------------------------------------


#: the arrays of the triad measured beside a kernel (``_beside_triad``),
#: allocated once per run and size
_TRIAD_ARRAYS: dict = {}


def _beside_triad(case: Case, rounds: int = 3) -> float:
    """The STREAM triad's GB/s at the case's thread count (set by the
    caller), best of ``rounds``, measured right before or after the case's
    own timing: this shared machine's bandwidth moves between states
    (2-thread triad ~36-40 or ~60 GB/s) within a run, so the run's one
    triad case may have met another state than a kernel timed minutes
    later."""
    from fastloss.benchmark.kernels import triad_arrays, triad_elements, triad_gb_s

    n = triad_elements(case.size_class)
    if n not in _TRIAD_ARRAYS:
        _TRIAD_ARRAYS.clear()
        _TRIAD_ARRAYS[n] = triad_arrays(n)
    return triad_gb_s(n, rounds, _TRIAD_ARRAYS[n])


def _wants_beside_triad(case: Case) -> bool:
    """The cases of issue 3's bandwidth target (mse, mae, huber; fastloss
    on the CPU, arrays in DRAM) get a triad measured beside them."""
    return (case.backend == "cpu" and case.family == "elementwise"
            and case.loss in ("mse", "mae", "huber") and case.size_class == "dram"
            and case.impl in ("fastloss", "fastloss_out"))


def _time_rounds(fn, budget: Budget) -> tuple[int, int]:
    t0 = time.perf_counter()
    fn()
    t = max(time.perf_counter() - t0, 1e-9)
    iterations = max(1, math.ceil(budget.round_seconds / t))
    rounds = int(min(budget.max_rounds,
                     max(budget.min_rounds, budget.seconds // (t * iterations))))
    return rounds, iterations


def run(benchmark, case: Case, budget: Budget | None = None):
    """Benchmark ``case`` with pytest-benchmark's fixture; returns the
    fixture's result (the value of the last call)."""
    budget = budget or Budget()
    benchmark.extra_info.update(case.info())
    benchmark.group = f"{case.family} {case.backend}"
    if case.backend == "cpu":
        set_threads(max(case.threads, 1))

    to_numpy = None
    check = None
    if case.family == "bandwidth":
        fn, check = _triad(case) if case.impl == "triad" else _d2d_copy(case)
    else:
        x, y = make_data(case)
        if case.impl in ("fastloss", "fastloss_out"):
            if case.backend == "cpu":
                _warm_fastloss(case, x, y)
                fn = _fastloss_cpu(case, x, y)
            else:
                fn, to_numpy = _fastloss_cuda(case, x, y)
        elif case.impl == "torch":
            why = peers.torch_missing()
            if why:
                import pytest

                pytest.skip(why)
            fn, to_numpy = (_torch_cpu if case.backend == "cpu" else _torch_cuda)(case, x, y)
        elif case.impl == "numpy":
            fn = _numpy_cpu(case, x, y)
        else:  # pragma: no cover
            raise ValueError(case.impl)

    if benchmark.enabled:
        rounds, iterations = _time_rounds(fn, budget)
        beside = _wants_beside_triad(case)
        before = _beside_triad(case) if beside else None
        result = benchmark.pedantic(fn, rounds=rounds, iterations=iterations)
        if beside:
            benchmark.extra_info["triad_beside_gb_s"] = [round(before, 2),
                                                         round(_beside_triad(case), 2)]
    else:
        result = benchmark.pedantic(fn)  # --benchmark-disable: once

    # checks, outside the timed region
    if check is not None:
        check(result)
        return result
    value, grad = to_numpy(result) if to_numpy else result
    ref_key = (case.backend, case.name, case.dtype, case.shape, case.target)
    if case.impl == "fastloss":
        grad = np.asarray(grad)
        assert grad.shape == case.shape, f"gradient shape {grad.shape} != {case.shape}"
        assert math.isfinite(float(value)), f"value is {value}"
        _REF.clear()
        _REF[ref_key] = (float(value), grad)
    else:
        ref = _REF.get(ref_key)
        if ref is None:  # fastloss not selected in this run: compute it once
            import fastloss as fl

            x, y = make_data(case)
            rv, rg = fl.value_and_grad(case.loss, x, y, **variant_kwargs(case))
            ref = (float(rv), rg)
        if case.impl == "fastloss_out":  # the same kernel: the same bits
            assert float(value) == ref[0] and np.array_equal(np.asarray(grad), ref[1]), \
                "fastloss out= differs from the new-array call"
        check_close(f"{case.impl} {case.loss} vs fastloss", value, grad, ref[0], ref[1],
                    case.dtype)
    return result
