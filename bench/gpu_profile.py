"""Where the time of one public CUDA call goes (issue 5), for a session lent
a GPU: ``python bench/gpu_profile.py [--ncu]``.

For each case (float32): the wall time of ``value_and_grad`` on device
arrays (median of repeated calls, synchronized), the same with ``out=``,
and the Python functions that took it (cProfile over 20 calls, by
cumulative time). With ``--ncu`` it makes one call per case between
``cuda.profile_start()`` and ``cuda.profile_stop()`` and nothing else, for
``ncu --profile-from-start off`` to list each kernel a call launches and
its duration.
"""

import cProfile
import functools
import io
import pstats
import sys
import time

import numpy as np
from numba import cuda

import fastloss as fl

CASES = [
    ("mse", (1 << 16,)),
    ("mse", (1 << 28,)),
    ("binary_cross_entropy_with_logits", (1 << 28,)),
    ("cross_entropy", (4096, 32)),
    ("cross_entropy", (65536, 1000)),
    ("cross_entropy", (16384, 131072)),
]


def data(loss, shape, rng):
    x = rng.standard_normal(shape, dtype=np.float32)
    if loss == "cross_entropy":
        y = rng.integers(0, shape[1], shape[0]).astype(np.int64)
    elif loss.startswith("binary"):
        y = rng.random(shape, dtype=np.float32)
    else:
        y = rng.standard_normal(shape, dtype=np.float32)
    return cuda.to_device(x), cuda.to_device(y)


def wall(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def profile_case(loss, shape, rng, ncu):
    """(call ms, out= ms) of one case, its cProfile printed; None with ncu."""
    x, y = data(loss, shape, rng)
    out = cuda.device_array(shape, dtype=np.float32)

    def call():
        return fl.value_and_grad(loss, x, y)

    def call_out():
        return fl.value_and_grad(loss, x, y, out=out)

    call(), call_out()
    cuda.synchronize()
    if ncu:
        cuda.profile_start()
        call()
        call_out()
        cuda.synchronize()
        cuda.profile_stop()
        return None
    reps = 50 if np.prod(shape) < 1 << 24 else 10
    t, to = wall(call, reps), wall(call_out, reps)
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(20):
        call_out()
    cuda.synchronize()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(25)
    print(f"== {loss} {shape}: cProfile of 20 calls with out=, by cumulative time")
    print("\n".join(s.getvalue().splitlines()[:45]))
    return t, to


#: cross_entropy shapes timed with each row kernel forced
#: (``config.launch(rows=...)``): which one the default route should take
ROUTES = [(65536, 1000), (16384, 8192)]


def row_routes(rng):
    from fastloss.cuda import config

    for shape in ROUTES:
        x, y = data("cross_entropy", shape, rng)
        out = cuda.device_array(shape, dtype=np.float32)
        for how in ("warp", "block"):
            with config.launch(rows=how):
                call = functools.partial(fl.value_and_grad, "cross_entropy", x, y, out=out)
                call()
                t = wall(call, 20)
            print(f"cross_entropy {str(shape):16s} rows={how:5s} out= {t * 1e3:9.3f} ms")


def main():
    ncu = "--ncu" in sys.argv
    rng = np.random.default_rng(0)
    rows = []
    for loss, shape in CASES:
        r = profile_case(loss, shape, rng, ncu)
        if r is not None:
            rows.append((loss, shape, *r))
    if not ncu:
        row_routes(rng)
    for loss, shape, t, to in rows:
        print(f"{loss:34s} {str(shape):16s} call {t * 1e3:9.3f} ms   out= {to * 1e3:9.3f} ms")


if __name__ == "__main__":
    main()
