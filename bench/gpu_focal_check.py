"""Where float32 ``sigmoid_focal`` (gamma 0.5, a per-feature weight) differs
between the GPU and the CPU: the one CUDA test that failed on the H200 in
stop 39 (``tests/test_cuda.py::test_array_parameters[float32]``, gradients
up to 2109 ULP apart; the CPU's are within 1 ULP of mpmath on the same
inputs). Run on a machine with a GPU, from the repository root:

    PYTHONPATH=$PWD python3 bench/gpu_focal_check.py

It prints the gradient's worst ULP distance for a few gamma/weight
combinations, the worst elements, and, for those elements, which
intermediate of the float32 formula (``scalar.binary._focal_plain``'s
steps, compiled here for both targets from one Python function) first
differs between the GPU and the CPU; then the primitives alone
(``logistic32_wide``, ``exp32``, ``log``) over all the inputs. Under the
CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, ``ROWS=20``) it runs, but the
simulator evaluates the primitives' plain-Python bodies, so its
differences mean nothing.
"""

import os

import numpy as np
from numba import cuda, njit

import fastloss as fl
from fastloss.audit.ulp import ulp_distance
from fastloss.cuda import jit
from fastloss.math import exp32, log, logistic32_wide, xmul
from tests.test_contract import sample

NAMES = "spp spn sp sn ce dce D L dl m g v".split()


def parts(x, y, gamma, out):
    """``_focal_plain``'s float32-data steps for soft targets, each stored."""
    spp, spn, sp, sn = logistic32_wide(x)
    ce = -(xmul(1.0 - y, -spp) + xmul(y, -spn))
    dce = xmul(1.0 - y, sp) - xmul(y, sn)
    big_d = y * sn + (1.0 - y) * sp
    big_l = log(big_d)
    dl = (1.0 - 2.0 * y) * sp * (sn / big_d)
    m = exp32(gamma * big_l)
    g = m * (xmul(gamma * dl, ce) + dce)
    vals = (spp, spn, sp, sn, ce, dce, big_d, big_l, dl, m, g, m * ce)
    for k in range(12):
        out[k] = vals[k]


def primitives(x, i, out):
    a, b, c, d = logistic32_wide(x[i])
    out[i, 0] = a
    out[i, 1] = b
    out[i, 2] = c
    out[i, 3] = d
    out[i, 4] = exp32(-abs(x[i]))
    out[i, 5] = log(abs(x[i]))


def main():
    shape = (int(os.environ.get("ROWS", 1001)), 37)
    x, y = sample("binary_cross_entropy_with_logits", shape, np.float32, seed=2)
    w = np.random.default_rng(0).uniform(0, 2, size=shape).astype(np.float32)

    def compare(tag, **kw):
        vc, gc = fl.value_and_grad("sigmoid_focal", x, y, alpha=None, **kw)
        kwd = {k: (cuda.to_device(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        v, g = fl.value_and_grad("sigmoid_focal", cuda.to_device(x), cuda.to_device(y),
                                 alpha=None, **kwd)
        g = g.copy_to_host()
        d = ulp_distance(g, gc)
        print(f"{tag}: value {v!r} / {vc!r}; gradient max {d.max()} ULP, {int((d > 2).sum())} > 2")
        return d, g, gc

    for kw in (dict(gamma=0.5, weight=w[0]), dict(gamma=0.5), dict(gamma=1.5), dict(gamma=2.0)):
        compare(", ".join(f"{k}={'w' if k == 'weight' else v}" for k, v in kw.items()), **kw)
    d, g, gc = compare("gamma=0.5", gamma=0.5)
    worst = np.argsort(d.ravel())[::-1][:12]
    xf, yf = x.ravel(), y.ravel()
    for i in worst:
        print(f"  i={i} x={xf[i]!r} y={yf[i]!r} {d.ravel()[i]} ULP: "
              f"GPU {g.ravel()[i]!r} CPU {gc.ravel()[i]!r}")

    parts_cpu = njit(parts)

    @jit.kernel
    def parts_gpu(xs, ys, gamma, out):
        i = cuda.grid(1)
        if i < xs.size:
            parts(np.float64(xs[i]), np.float64(ys[i]), gamma, out[i])

    xs, ys = xf[worst].copy(), yf[worst].copy()
    oc = np.zeros((xs.size, 12))
    for j in range(xs.size):
        parts_cpu(np.float64(xs[j]), np.float64(ys[j]), 0.5, oc[j])
    og = cuda.to_device(np.zeros((xs.size, 12)))
    parts_gpu[1, 32](cuda.to_device(xs), cuda.to_device(ys), 0.5, og)
    og = og.copy_to_host()
    for j in range(xs.size):
        diff = [f"{NAMES[k]} {og[j, k]!r} / {oc[j, k]!r}" for k in range(12) if og[j, k] != oc[j, k]]
        print(f"  x={xs[j]!r} y={ys[j]!r} first differing (GPU / CPU): {diff[:3] or 'none'}")

    xa = xf.astype(np.float64)
    prim_cpu = njit(primitives)

    @njit
    def all_cpu(x, out):
        for i in range(x.size):
            prim_cpu(x, i, out)

    @jit.kernel
    def all_gpu(x, out):
        i = cuda.grid(1)
        if i < x.size:
            primitives(x, i, out)

    oc = np.zeros((xa.size, 6))
    all_cpu(xa, oc)
    og = cuda.to_device(np.zeros((xa.size, 6)))
    all_gpu[(xa.size + 255) // 256, 256](cuda.to_device(xa), og)
    og = og.copy_to_host()
    for k, name in enumerate("spp spn sp sn exp32 log".split()):
        bad = np.nonzero(og[:, k] != oc[:, k])[0]
        print(f"primitive {name}: {bad.size} of {xa.size} differ",
              [(xa[b], og[b, k], oc[b, k]) for b in bad[:3]])


if __name__ == "__main__":
    main()
