"""CUDA throughput of the elementwise kernels -- NOT YET RUN on a real GPU.

Written without a GPU (the session that wrote fastloss/cuda had none); run it
on one before trusting any number, and move it under pytest-benchmark with the
CPU suites once it has been checked:

    python bench/cuda_bench.py [--n 100000000] [--dtype float32] [--repeat 20]

For each elementwise loss it times ``fl.value_and_grad`` on device arrays
(CUDA events around the call; the call itself synchronises once to fetch the
scalar loss) and reports GB/s against the bytes a fused pass must move
(read x and y, write the gradient), beside a device-to-device copy of the same
bytes as the bandwidth ceiling, and PyTorch's forward + backward when PyTorch
with CUDA is installed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 26)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--losses", nargs="*")
    a = ap.parse_args(argv)

    from numba import cuda

    import fastloss as fl
    from fastloss import catalog
    from tests.test_contract import sample

    dtype = np.dtype(a.dtype)
    names = a.losses or [s.name for s in catalog.SPECS if s.family in ("regression", "binary")]
    nbytes = 3 * a.n * dtype.itemsize

    def timed(fn):
        fn()  # compile / warm up
        cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.repeat):
            fn()
        cuda.synchronize()
        return (time.perf_counter() - t0) / a.repeat

    src = cuda.device_array(2 * a.n, dtype)
    dst = cuda.device_array(2 * a.n, dtype)
    t_copy = timed(lambda: dst.copy_to_device(src))
    print(f"device copy of {nbytes / 1e9:.2f} GB-equivalent: {2 * a.n * dtype.itemsize * 2 / t_copy / 1e9:.0f} GB/s")
    try:
        import torch

        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    print(f"{'loss':36s} {'ms':>8s} {'GB/s':>8s} {'torch ms':>9s}")
    for name in names:
        x, y = sample(name, (a.n,), dtype, seed=0)
        xd, yd = cuda.to_device(x), cuda.to_device(y)
        t = timed(lambda name=name, xd=xd, yd=yd: fl.value_and_grad(name, xd, yd))
        tt = ""
        if has_torch and name in ("mse", "mae", "huber", "smooth_l1",
                                  "binary_cross_entropy_with_logits", "soft_margin"):
            import torch.nn.functional as F

            fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss,
                  "smooth_l1": F.smooth_l1_loss,
                  "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
                  "soft_margin": F.soft_margin_loss}[name]
            xt = torch.as_tensor(x, device="cuda").requires_grad_()
            yt = torch.as_tensor(y, device="cuda")

            def run(xt=xt, yt=yt, fn=fn):
                xt.grad = None
                fn(xt, yt).backward()
                return float(xt.grad[0])

            tt = f"{timed(run) * 1e3:9.3f}"
        print(f"{name:36s} {t * 1e3:8.3f} {nbytes / t / 1e9:8.0f} {tt}")


if __name__ == "__main__":
    main()
