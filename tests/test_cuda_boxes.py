"""The CUDA box kernels (``fastloss.cuda.boxes``) against the CPU box kernels:
values and gradients within 2 ULP (the same formulas; under the simulator
the same compiled code), 4 ULP for float64 on a real GPU: a margin set when
NVVM still fused multiply-adds into fma where the CPU rounds twice (fastloss
kernels now compile without contraction, ``fastloss.cuda.jit``; not yet
re-measured on a GPU), and the float32 path's atan2 is libdevice's.
(Float64 data's double-double evaluation uses no libm
function and rounds each result once from an O(u^2) pair, so the devices
can differ by more than 1 ULP only at components of condition ~1e15 and
above, which the grid has: tiny CIoU angle terms of disjoint copies.)
Bitwise-identical sums across launch configurations, the CPU's validation
errors found on the device, ``out=`` in place.

Under the simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1) the
inputs are a few hundred boxes; with FASTLOSS_TEST_GPU=1 the same tests run on
a real device with larger ones.
"""

import os
import textwrap

import numpy as np
import pytest

import fastloss as fl
from tests.test_boxes import box_grid
from tests.test_cuda import (
    CONFIGS,
    PTX_PRELUDE,
    assert_ulp,
    dev,
    host,
    run_ptx_script,
    scalar_close,
)

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
cuda = pytest.importorskip("numba.cuda")

from fastloss.cuda import config  # noqa: E402
from fastloss.cuda.arrays import is_device_array  # noqa: E402

NAMES = ["iou_loss", "giou_loss", "diou_loss", "ciou_loss"]
DTYPES = [np.float32, np.float64]
#: random boxes added to the degenerate/extreme grid of tests/test_boxes.py
N_RANDOM = 40 if SIM else 200_000


def _boxes(dtype, seed=0):
    p, t = box_grid(seed)
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, (N_RANDOM, 2))
    wh = np.exp(rng.uniform(-2, 1, (N_RANDOM, 2)))
    q = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    r = q + rng.normal(0, 0.2, q.shape)
    r[:, 2:] = np.maximum(r[:, 2:], r[:, :2])
    return (np.concatenate([p, q]).astype(dtype), np.concatenate([t, r]).astype(dtype))


def _bound(dtype):
    return 2 if SIM or dtype == np.float32 else 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_cpu(name, dtype):
    p, t = _boxes(dtype, seed=1)
    pd, td = dev(p), dev(t)
    v, g = fl.value_and_grad(name, pd, td, reduction="none")
    vc, gc = fl.value_and_grad(name, p, t, reduction="none")
    assert is_device_array(v) and is_device_array(g)
    assert v.shape == (p.shape[0],) and g.shape == p.shape and g.dtype == p.dtype
    assert_ulp(host(v), vc, dtype, bound=_bound(dtype), what=f"{name} values")
    assert_ulp(host(g), gc, dtype, bound=_bound(dtype), what=f"{name} grad")
    m, gm = fl.value_and_grad(name, pd, td)
    mc, gmc = fl.value_and_grad(name, p, t)
    scalar_close(m, mc)
    assert_ulp(host(gm), gmc, dtype, bound=_bound(dtype), what=f"{name} mean grad")
    scalar_close(getattr(fl, name)(pd, td, reduction="sum"), getattr(fl, name)(p, t, reduction="sum"))


@pytest.mark.parametrize("name", ["giou_loss", "ciou_loss"])
def test_bitwise_across_launch_configurations(name):
    """Several chunks (a small chunk through the kernel's test hook) and a
    ragged tail: every launch configuration gives the same bits."""
    from fastloss.boxes import FIDS
    from fastloss.cuda.boxes import make_box_kernel
    from fastloss.cuda.reduce import combine
    from fastloss.scalar.boxes import BOX_FORMULAS

    chunk = 64 if SIM else 2048
    p, t = _boxes(np.float64, seed=3)
    n = 5 * chunk + 7
    reps = -(-n // p.shape[0])
    p = np.tile(p, (reps, 1))[:n]
    t = np.tile(t, (reps, 1))[:n]
    p[::7] *= 1e3  # terms of very different magnitudes
    t[::7] *= 1e3
    nchunks = -(-n // chunk)
    kern = make_box_kernel(BOX_FORMULAS[FIDS[name]], chunk)
    seen = set()
    grads = []
    for cfg in CONFIGS + CONFIGS[:1]:
        g = cuda.device_array(p.shape, p.dtype)
        vals = cuda.device_array(1, p.dtype)
        hi = cuda.device_array(nchunks)
        lo = cuda.device_array(nchunks)
        kern[cfg["blocks"] or 4, cfg["threads"]](dev(p), dev(t), 1.0, g, vals, hi, lo, True, False)
        seen.add(float(combine(hi, lo, cuda.default_stream()).copy_to_host()[0]))
        grads.append(host(g))
    assert len(seen) == 1
    for g in grads[1:]:
        np.testing.assert_array_equal(g, grads[0])
    scalar_close(seen.pop(), getattr(fl, name)(p, t, reduction="sum"))


def test_public_path_bitwise_across_launches():
    p, t = _boxes(np.float32, seed=4)
    pd, td = dev(p), dev(t)
    seen = set()
    for cfg in (dict(threads=8, blocks=1), dict(threads=64, blocks=3), dict(threads=8, blocks=1)):
        with config.launch(**cfg):
            seen.add(fl.ciou_loss(pd, td, reduction="sum"))
    assert len(seen) == 1


def test_bad_box_row_is_named_from_the_device():
    p, t = _boxes(np.float64, seed=5)
    p[7] = [0.0, 0.0, -1.0, 1.0]
    with pytest.raises(ValueError, match=r"input: row 7 is not a box .*x2 < x1") as gpu_err:
        fl.giou_loss(dev(p), dev(t))
    with pytest.raises(ValueError) as cpu_err:
        fl.giou_loss(p, t)
    assert str(gpu_err.value) == str(cpu_err.value)
    t[3] = [0.0, 2.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"target: row 3 .*y2 < y1"):
        fl.iou_loss(dev(t * 0 + np.array([0, 0, 1, 1.0])), dev(t))


def test_shapes_and_kinds_are_checked():
    p, t = _boxes(np.float64)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        fl.iou_loss(dev(p[:, :3].copy()), dev(t[:, :3].copy()))
    with pytest.raises(ValueError, match="must equal input's shape"):
        fl.iou_loss(dev(p), dev(t[:-1]))
    with pytest.raises(TypeError, match="GPU array"):
        fl.iou_loss(dev(p), t)


def test_out_in_place_and_empty():
    p, t = _boxes(np.float64, seed=6)
    _, gc = fl.value_and_grad("diou_loss", p, t)
    pd = dev(p)
    v, g = fl.value_and_grad("diou_loss", pd, dev(t), out=pd)
    assert g is pd
    assert_ulp(host(pd), gc, np.float64, bound=_bound(np.float64), what="in place")
    e = np.zeros((0, 4))
    assert fl.iou_loss(dev(e), dev(e), reduction="sum") == 0.0
    with pytest.warns(RuntimeWarning):
        assert np.isnan(fl.iou_loss(dev(e), dev(e)))


_PTX_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    from fastloss.cuda.boxes import make_box_kernel
    from fastloss.scalar.boxes import BOX_FORMULAS
    f64, b1 = numba.float64, numba.boolean
    for dt in (numba.float32, numba.float64):
        a2, a1 = dt[:, ::1], dt[::1]
        for f in BOX_FORMULAS:
            ptx = ptx_of(make_box_kernel(f), (a2, a2, f64, a2, a1, f64[::1], f64[::1], b1, b1))
            assert ".target sm_90" in ptx and not BARE.findall(ptx), (f.__name__, str(dt))
    print("OK")
""")


def test_kernels_compile_to_ptx_for_sm90():
    """The four box kernels (float32 and float64 data: the plain and the
    double-double formulas, the bit-level ``box_scale``, the table
    arctangent) compile for sm_90 with no multiply or add left for
    contraction; skipped without libNVVM."""
    assert run_ptx_script(_PTX_SCRIPT).strip().endswith("OK")
