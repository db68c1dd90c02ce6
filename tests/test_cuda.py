"""The CUDA backend against the CPU kernels: values and gradients within 2 ULP,
bitwise-deterministic reductions across launch configurations and runs, the
same validation errors, results of the caller's kind.

Without a GPU (the default: tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1)
these run under Numba's CUDA simulator with tiny inputs (it runs ~3*10^4
elements/s); with FASTLOSS_TEST_GPU=1 the same tests run on the real device
with larger shapes.
"""

import math
import os
import textwrap

import numpy as np
import pytest

import fastloss as fl
from fastloss import catalog
from fastloss._config import CHUNK
from fastloss.audit.ulp import ulp_distance
from tests.test_contract import sample

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

cuda = pytest.importorskip("numba.cuda")
if not SIM and not cuda.is_available():  # pragma: no cover - real-GPU runs only
    pytest.skip("FASTLOSS_TEST_GPU=1 but no CUDA device", allow_module_level=True)

from fastloss.cuda import config  # noqa: E402
from fastloss.cuda.arrays import broadcast_period, is_device_array  # noqa: E402

ELEMENTWISE = [s.name for s in catalog.SPECS if s.family in ("regression", "binary")]
DTYPES = [np.float32, np.float64]
#: elements per agreement test: one chunk (ragged) in the simulator
N = 97 if SIM else 3 * CHUNK + 1001


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def extreme_sample(name, n, dtype, seed=0):
    """``sample`` plus extreme values in the loss's domain (large logits and
    residuals, exact 0 and 1 probabilities, +-inf where allowed)."""
    x, y = sample(name, (n,), dtype, seed=seed)
    big = np.array([1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 1e-30, 0.0], dtype=dtype)
    if name in ("binary_cross_entropy_with_logits", "sigmoid_focal", "hinge", "squared_hinge",
                "soft_margin"):
        x[: big.size] = big
        x[big.size: big.size + 2] = [np.inf, -np.inf]
    elif name == "binary_cross_entropy":
        x[:6] = [0.0, 1.0, 0.0, 1.0, 1e-30, 1 - 2**-20]
        y[:6] = [0.0, 1.0, 1.0, 0.0, 0.5, 1.0]
    elif name in ("mse", "mae", "huber", "smooth_l1", "pseudo_huber", "log_cosh", "quantile"):
        x[: big.size] = big
    elif name == "msle":
        x[:3] = [-0.999, 1e6, 0.0]
    elif name == "poisson_nll":
        x[:4] = [30.0, -30.0, 0.0, 1e-30]
    return x, y


def assert_ulp(got, want, dtype, bound=2, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    d = ulp_distance(got, want, dtype)
    assert np.all(d <= bound), (what, float(np.max(d)), got[d > bound][:5], want[d > bound][:5])


def scalar_close(got, want, bound=2):
    """Two float64 sums within ``bound`` ULP (different but compensated
    orders: the CPU sums blocks pairwise, the GPU by lanes)."""
    assert isinstance(got, float)
    if math.isnan(want):
        assert math.isnan(got)
        return
    assert ulp_distance(np.float64(got), np.float64(want), np.float64) <= bound, (got, want)


def float32_rows_close(got, want):
    """Two float32 cross_entropy losses (float64 sums of float64 row values)
    from the GPU's warp- or block-per-row kernel and the CPU's: each row's
    sum of exponentials uses ``exp32`` (relative error < 2^-34 per term,
    documented), applied on each side to differently rescaled arguments
    (online lanes there, blocks here), so the two agree to ~2^-36 relative,
    not to float64's last bits: far inside the float32 results' 2^-24."""
    assert isinstance(got, float)
    assert abs(got - want) <= 2.0**-36 * abs(want), (got, want)


def float32_lanes_close(got, want):
    """Two float32 cross_entropy losses (float64 sums of float64 row values)
    where the CPU computed the rows' terms on float32 lanes (float32 data,
    with labels or probability targets: ``fastloss.cpu.rowtiles`` and
    ``rowlanes``; each term within 0.69 ULP of float32): each row value is
    within 2 float32 ULP of the exact one on either side, so the losses
    agree to a few 2^-24 relative (2^-22 allowed); an infinite loss (label
    smoothing on a -inf logit) on both sides."""
    assert isinstance(got, float)
    assert got == want or abs(got - want) <= 2.0**-22 * abs(want), (got, want)


def f32_lanes(name, dtype):
    """BCE with logits on float32 data at its defaults: the CPU's fixed
    kernel computes in float32 lanes (``logistic_loss32``), the GPU with
    float64 results (``logistic32``): different algorithms, each within its
    own bound of the exact value, so the two agree to the sum of the bounds
    (below), not to 2 ULP of each other."""
    return name == "binary_cross_entropy_with_logits" and dtype == np.float32


def f32_sums_close(got, want, values, ulps=1):
    """Two float64 sums of float32 values that may differ by ``ulps`` ULP
    each (BCE: the GPU's terms are float64, the CPU's float32 values within
    1 ULP of the exact, 0.81 measured, tests/test_math_accuracy.py): the
    sums differ by at most ulps * sum(ulp(v_i)) plus the float64 summation
    error."""
    assert isinstance(got, float)
    if not math.isfinite(want):
        assert got == want or (math.isnan(got) and math.isnan(want)), (got, want)
        return
    values = np.abs(np.asarray(values, np.float32))
    bound = ulps * float(np.sum(np.spacing(values).astype(np.float64))) \
        + 4 * np.spacing(abs(want))
    assert abs(got - want) <= bound, (got, want, bound)


def f32_lanes_grad_close(got, want, target):
    """Gradients sigmoid(z) - t of float32 BCE: the CPU's float32-lane kernel
    is within 1.5 ULP of the larger term max(sigmoid(z), t) (measured 1.48,
    tests/test_math_accuracy.py; with soft targets the difference cancels,
    and its condition number is that term over |g|), the GPU's within 0.5
    ULP of g: at most 2 ULP of the larger term apart."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype == np.float32
    term = np.maximum(np.abs(want), np.abs(target)).astype(np.float32)
    d = np.abs(got.astype(np.float64) - want.astype(np.float64))
    ok = (d <= 2 * np.spacing(term).astype(np.float64)) | (got == want)
    assert np.all(ok), (got[~ok][:5], want[~ok][:5])


# --- agreement with the CPU kernels -------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_agrees_with_cpu(name, dtype):
    x, y = extreme_sample(name, N, dtype, seed=1)
    xd, yd = dev(x), dev(y)
    if name == "rmse":
        v, g = fl.value_and_grad(name, xd, yd)
        vc, gc = fl.value_and_grad(name, x, y)
        scalar_close(v, vc)
        assert_ulp(host(g), gc, dtype, what="rmse grad")
        return
    # "none": per-element values and the gradient of the sum
    v, g = fl.value_and_grad(name, xd, yd, reduction="none")
    vc, gc = fl.value_and_grad(name, x, y, reduction="none")
    assert is_device_array(v) and is_device_array(g)
    assert v.shape == x.shape and g.shape == x.shape and g.dtype == x.dtype
    assert_ulp(host(v), vc, dtype, what=f"{name} values")
    # "mean": the fused reduction and the divided gradient
    m, gm = fl.value_and_grad(name, xd, yd)
    mc, gmc = fl.value_and_grad(name, x, y)
    if f32_lanes(name, dtype):
        f32_lanes_grad_close(host(g), gc, y)
        f32_sums_close(m, mc, vc / x.size)
        f32_lanes_grad_close(host(gm), gmc, y / np.float32(x.size))
        return
    assert_ulp(host(g), gc, dtype, what=f"{name} grad")
    if dtype == np.float32:
        # values 2 ULP apart (above) make sums ~2 sum(ulp) apart, far more
        # than 2 ULP of a float64 sum (poisson_nll on an H200: 4)
        f32_sums_close(m, mc, vc / np.float32(x.size), ulps=2)
    else:
        scalar_close(m, mc)
    assert_ulp(host(gm), gmc, dtype, what=f"{name} mean grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_parameters(dtype):
    """pos_weight as a last-axis vector, weight as a full device array and as a
    NumPy array, label smoothing: all through the same kernel."""
    name = "binary_cross_entropy_with_logits"
    shape = (7, 5) if SIM else (1001, 37)
    x, y = sample(name, shape, dtype, seed=2)
    rng = np.random.default_rng(0)
    pw = rng.uniform(0.5, 3, size=shape[-1]).astype(dtype)
    w = rng.uniform(0, 2, size=shape).astype(dtype)
    kw_cpu = dict(pos_weight=pw, weight=w, label_smoothing=0.1)
    vc, gc = fl.value_and_grad(name, x, y, reduction="sum", **kw_cpu)
    vals = fl.value_and_grad(name, x, y, reduction="none", **kw_cpu)[0]
    for kw in ({**kw_cpu, "pos_weight": dev(pw), "weight": dev(w)}, kw_cpu):
        v, g = fl.value_and_grad(name, dev(x), dev(y), reduction="sum", **kw)
        if dtype == np.float32:
            # the GPU's logistic32 (float32 lanes) against the CPU's float64
            # one: values within 2 ULP, not the same bits
            f32_sums_close(v, vc, vals, ulps=2)
        else:
            scalar_close(v, vc)
        assert_ulp(host(g), gc, dtype)
    vc, gc = fl.value_and_grad("sigmoid_focal", x, y, alpha=None, gamma=0.5, weight=w[0])
    v, g = fl.value_and_grad("sigmoid_focal", dev(x), dev(y), alpha=None, gamma=0.5,
                             weight=dev(w[0]))
    scalar_close(v, vc)
    assert_ulp(host(g), gc, dtype)


def test_rmse_rescaled_sum():
    """float64 residuals whose squares overflow: rmse rescales, as on the CPU."""
    x = np.array([1e200, -3e200, 2e200, 0.0])
    y = np.zeros(4)
    v, g = fl.value_and_grad("rmse", dev(x), dev(y))
    vc, gc = fl.value_and_grad("rmse", x, y)
    assert math.isfinite(v)
    scalar_close(v, vc)
    assert_ulp(host(g), gc, np.float64)


def test_empty_input():
    x = np.zeros(0)
    assert fl.mse(dev(x), dev(x), reduction="sum") == 0.0
    with pytest.warns(RuntimeWarning, match="empty"):
        assert math.isnan(fl.mse(dev(x), dev(x)))
    v = fl.mse(dev(x), dev(x), reduction="none")
    assert v.shape == (0,)


def test_out_in_place_and_separate():
    x, y = sample("huber", (6, 5) if SIM else (513, 77), np.float32, seed=4)
    gc = fl.grad("huber", x, y, delta=0.5)
    xd, yd = dev(x), dev(y)
    buf = cuda.device_array(x.shape, np.float32)
    assert fl.grad("huber", xd, yd, delta=0.5, out=buf) is buf
    np.testing.assert_array_equal(host(buf), gc)
    assert fl.grad("huber", xd, yd, delta=0.5, out=xd) is xd  # in place over the input
    np.testing.assert_array_equal(host(xd), gc)
    with pytest.raises(TypeError, match="out: dtype"):
        fl.grad("huber", dev(x), yd, out=cuda.device_array(x.shape, np.float64))
    with pytest.raises(ValueError, match="out: shape"):
        fl.grad("huber", dev(x), yd, out=cuda.device_array((1,), np.float32))
    with pytest.raises(ValueError, match="overlaps the target"):
        fl.grad("huber", dev(x), yd, out=yd)


# --- determinism ------------------------------------------------------------------

CONFIGS = [dict(threads=1, blocks=1), dict(threads=8, blocks=2), dict(threads=96, blocks=7)]
if not SIM:
    CONFIGS += [dict(threads=256, blocks=None), dict(threads=1024, blocks=13),
                dict(threads=128, blocks=1000)]


def _sum_pass_bits(name, x, y, chunk, **launch):
    """(loss sum, gradient) from the elementwise driver with a given chunk
    size (test hook) and launch configuration."""
    from fastloss.cuda.elementwise import sum_pass

    spec = catalog.get(name)
    xd, yd = dev(x), dev(y)
    one = dev(np.ones(1, dtype=x.dtype))
    g = cuda.device_array(x.size, x.dtype)
    stream = cuda.default_stream()
    with config.launch(**launch):
        tot = sum_pass(catalog.formula_id(spec), xd, yd, one, 1, one, 1,
                       spec.pack({p.name: p.default for p in spec.params}), 1.0, g, None,
                       stream, chunk=chunk)
    return float(tot.copy_to_host()[0]), host(g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["log_cosh", "binary_cross_entropy_with_logits"])
def test_bitwise_across_launch_configurations(name, dtype):
    """Many chunks (a small chunk size through the test hook) and a ragged
    tail: every launch configuration, run after run, gives the same bits."""
    chunk = 512 if SIM else CHUNK
    n = 5 * chunk + 77 if SIM else 40 * CHUNK + 77
    x, y = sample(name, (n,), dtype, seed=5)
    x[::7] *= 1e3  # terms of very different magnitudes
    ref = None
    for cfg in CONFIGS + CONFIGS[:1]:
        tot, g = _sum_pass_bits(name, x, y, chunk, **cfg)
        if ref is None:
            ref = (tot, g)
            vc = fl.value_and_grad(name, x, y, reduction="sum")[0]
            if f32_lanes(name, dtype):
                f32_sums_close(tot, vc, fl.value_and_grad(name, x, y, reduction="none")[0])
            else:
                scalar_close(tot, vc)
        else:
            assert tot == ref[0], cfg
            np.testing.assert_array_equal(g, ref[1])


def test_public_path_bitwise_with_library_chunk():
    """The library's own CHUNK, several chunks: two launch configurations and
    a repeat give the same loss bits through fl.value_and_grad."""
    n = 2 * CHUNK + 5 if SIM else 50 * CHUNK + 5
    x, y = sample("mse", (n,), np.float32, seed=6)
    xd, yd = dev(x), dev(y)
    seen = set()
    t = 8 if SIM else 256
    for cfg in (dict(threads=t, blocks=1), dict(threads=64, blocks=3), dict(threads=t, blocks=1)):
        with config.launch(**cfg):
            seen.add(fl.mse(xd, yd, reduction="sum"))
    assert len(seen) == 1
    scalar_close(seen.pop(), fl.mse(x, y, reduction="sum"))


def test_atomic_option_is_explicit_and_close():
    x, y = sample("mse", (700,), np.float64, seed=7)
    with config.launch(atomic=True, threads=32, blocks=2):
        v = fl.mse(dev(x), dev(y), reduction="sum")
    assert config.current().atomic is False
    assert v == pytest.approx(fl.mse(x, y, reduction="sum"), rel=1e-14)


def test_launch_config_rejects_bad_values():
    with pytest.raises(ValueError, match="threads"):
        with config.launch(threads=0):
            pass


# --- validation on the device -----------------------------------------------------


def test_domain_errors_match_cpu():
    x = np.full((3, 4), 0.5)
    x[1, 2] = 1.5
    x[2, 0] = -1.0  # a later offender: the first one is reported
    y = np.full((3, 4), 0.5)
    with pytest.raises(ValueError) as cpu:
        fl.binary_cross_entropy(x, y)
    with pytest.raises(ValueError) as gpu:
        fl.binary_cross_entropy(dev(x), dev(y))
    assert str(gpu.value) == str(cpu.value)
    assert "element (1, 2) is 1.5" in str(gpu.value)
    t = np.array([1.0, -1.0, np.nan, 0.5, 2.0])  # NaN passes; 0.5 is the first offender
    with pytest.raises(ValueError, match=r"target: values must be in \{-1, 0, 1\}; element 3 is 0.5"):
        fl.hinge(dev(np.zeros(5)), dev(t))
    with pytest.raises(ValueError, match="input: values must be in"):
        fl.poisson_nll(dev(-np.ones(3)), dev(np.ones(3)), log_input=False)
    fl.poisson_nll(dev(-np.ones(3)), dev(np.ones(3)))  # log_input: any real input


def test_argument_errors():
    x32, x64 = dev(np.zeros(3, np.float32)), dev(np.zeros(3))
    with pytest.raises(TypeError, match="differs from input's"):
        fl.mse(x32, x64)
    with pytest.raises(TypeError, match="target: must be a GPU array"):
        fl.mse(x64, np.zeros(3))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fl.mse(dev(np.zeros(3, np.int32)), dev(np.zeros(3, np.int32)))
    with pytest.raises(ValueError, match="must equal input's shape"):
        fl.mse(x64, dev(np.zeros(4)))
    with pytest.raises(ValueError, match="reduction"):
        fl.mse(x64, x64, reduction="max")
    with pytest.raises(ValueError, match="unknown parameter"):
        fl.mse(x64, x64, delta=1.0)
    with pytest.raises(ValueError, match="delta"):
        fl.huber(x64, x64, delta=-1.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        fl.binary_cross_entropy_with_logits(x64, x64, weight=dev(np.ones(2)))


def test_not_yet_on_gpu_family_is_a_clear_error():
    spec = [s for s in catalog.SPECS if s.family == "multiclass"]
    if not spec:
        pytest.skip("no row-wise losses in this build")
    import importlib.util

    if importlib.util.find_spec("fastloss.cuda.rowwise") is not None:
        pytest.skip("row-wise CUDA kernels present")
    with pytest.raises(TypeError, match="no CUDA kernel"):
        fl.value_and_grad(spec[0].name, dev(np.zeros((2, 3))), dev(np.zeros(2, np.int64)))


# --- arrays ---------------------------------------------------------------------------


def test_is_device_array_is_duck_typed():
    class CAI:
        __cuda_array_interface__ = {"shape": (1,), "typestr": "<f8", "data": (0, False),
                                    "version": 3}

    class CPUDLPack:
        def __dlpack_device__(self):
            return (1, 0)

    class GPUDLPack:
        def __dlpack_device__(self):
            return (2, 0)

    assert is_device_array(CAI()) and is_device_array(GPUDLPack())
    assert is_device_array(dev(np.zeros(1)))
    assert not is_device_array(np.zeros(1)) and not is_device_array(CPUDLPack())
    assert not is_device_array([1.0])


def test_broadcast_period():
    assert broadcast_period("w", (1,), (4, 5)) == 1
    assert broadcast_period("w", (5,), (4, 5)) == 5
    assert broadcast_period("w", (1, 5), (4, 5)) == 5
    assert broadcast_period("w", (4, 5), (4, 5)) == 20
    assert broadcast_period("w", (3, 1, 5), (3, 4, 5)) is None
    with pytest.raises(ValueError, match="does not broadcast"):
        broadcast_period("w", (4,), (4, 5))


def test_importable_without_gpu_libraries():
    """fastloss.cuda.arrays imports no GPU library (checked in a fresh process)."""
    import subprocess
    import sys

    code = ("import sys, fastloss, fastloss.cuda.arrays;"
            "bad = [m for m in ('cupy', 'torch', 'numba.cuda') if m in sys.modules];"
            "assert not bad, bad")
    env = {**os.environ}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --- code generation: no fma contraction (no GPU needed, libNVVM needed) -----------

#: run before anything imports fastloss.cuda, in a process without the
#: simulator: exits 77 without libNVVM; without a GPU, lets kernels compile for
#: sm_90 through numba-cuda's real dispatcher path (the compute capability is
#: patched in, and binding the cubin to a device is skipped)
PTX_PRELUDE = textwrap.dedent("""
    import re
    import sys
    import numba
    from numba import cuda
    try:
        from numba.cuda.cudadrv.nvvm import NVVM
        NVVM()

        def _probe(a):
            a[0] = 1.0

        cuda.compile_ptx(_probe, (numba.float64[::1],), cc=(9, 0))
    except Exception as e:  # no libNVVM / NVRTC
        print("NO NVVM:", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        sys.exit(77)
    if not cuda.is_available():
        import numba.cuda.dispatcher as _d
        from numba.cuda import codegen as _cg

        class _Sm90:
            compute_capability = (9, 0)

        _d.get_current_device = lambda: _Sm90()
        _cg.CUDACodeLibrary._ensure_cc = lambda self, cc: (9, 0, "a") if cc is None else cc
        _d._Kernel.bind = lambda self: None

    def ptx_of(dispatcher, sig):
        \"\"\"The PTX of a kernel as its dispatcher compiles it for launch.\"\"\"
        return dispatcher.compile(sig).inspect_asm((9, 0))

    #: a multiply or add that ptxas may still contract (no rounding modifier)
    BARE = re.compile(r"\\b(?:mul|add|sub)\\.f(?:32|64)\\b")
""")

_NO_FMA_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    from numba.cuda.dispatcher import CUDADispatcher

    from fastloss.cuda import boxes, checks, elementwise, jit, reduce, rowwise
    from fastloss.catalog import FORMULAS
    from fastloss.math._intrin import fma
    from fastloss.scalar.boxes import BOX_FORMULAS

    f64 = numba.float64
    sig = (f64[::1], f64, f64, f64)

    @cuda.jit(device=True)
    def muladd(x, y, z):
        return x * y + z

    def k_expr(a, x, y, z):
        a[0] = x * y + z

    def k_fma(a, x, y, z):
        a[0] = fma(x, y, z)

    def k_dev(a, x, y, z):
        a[0] = muladd(x, y, z)

    def ops(ptx):
        return tuple(len(re.findall(r"\\b%s\\.rn\\.f64" % op, ptx)) for op in ("fma", "mul", "add"))

    got = {}
    # fastloss' kernels first (muladd is compiled inside fastloss' scope),
    # then the user's plain cuda.jit kernels in the same process
    for who, deco in (("fastloss", jit.kernel), ("user", cuda.jit)):
        for k in (k_expr, k_fma, k_dev):
            d = deco(k)
            assert isinstance(d, jit.FastlossDispatcher) == (who == "fastloss")
            got[who, k.__name__] = ops(ptx_of(d, sig))
    print(got)
    want = {("fastloss", "k_expr"): (0, 1, 1), ("fastloss", "k_fma"): (1, 0, 0),
            ("fastloss", "k_dev"): (0, 1, 1), ("user", "k_expr"): (1, 0, 0),
            ("user", "k_fma"): (1, 0, 0), ("user", "k_dev"): (1, 0, 0)}
    assert got == want, got

    # every kernel of fastloss.cuda is made by jit.kernel
    kernels = [v for m in (boxes, checks, elementwise, reduce, rowwise) for v in vars(m).values()
               if isinstance(v, CUDADispatcher) and not v.targetoptions.get("device")]
    kernels += [elementwise.make_elementwise_kernel(f) for f in FORMULAS]
    kernels += [boxes.make_box_kernel(f) for f in BOX_FORMULAS]
    kernels += [rowwise.make_row_kernel(fid) for fid in range(7)]
    plain = [k.py_func.__name__ for k in kernels if not isinstance(k, jit.FastlossDispatcher)]
    assert len(kernels) > 30 and not plain, plain

    # and a real one compiles with every add rounded as written
    ptx = ptx_of(reduce.combine_kernel, (f64[::1], f64[::1], f64[::1]))
    assert not BARE.findall(ptx) and "add.rn.f64" in ptx, BARE.findall(ptx)
    print("OK")
""")


def run_ptx_script(script: str, timeout: int = 1800):
    """Run a PTX_PRELUDE script in a fresh process without the simulator;
    skip without libNVVM."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode == 77:
        pytest.skip("libNVVM not found (set CUDA_HOME to a CUDA toolkit): " + r.stdout.strip())
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-4000:])
    return r.stdout


def test_no_fma_contraction_in_ptx():
    """fastloss kernels (``fastloss.cuda.jit``) compile with NVVM's -fma=0:
    ``x*y + z`` is a ``mul.rn`` and an ``add.rn``, also inside a device
    function; an explicit ``fastloss.math`` fma stays one ``fma.rn``; a
    kernel the user compiles with plain ``cuda.jit`` in the same process, after
    fastloss', is still contracted (numba-cuda's default, untouched); every
    fastloss kernel is made that way, and a real one has no bare mul/add."""
    out = run_ptx_script(_NO_FMA_SCRIPT, timeout=600)
    assert out.strip().endswith("OK")


_QUIET_LAUNCH_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    import warnings

    from numba.cuda.core import config

    from fastloss.cuda import jit

    def f(a):
        a[0] = 1.0

    ours, theirs = jit.kernel(f), cuda.jit(f)
    for grid in (1, (3, 2), 127):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            launch = ours[grid, 32]
            assert launch.griddim[0] in (1, 3, 127) and launch.blockdim == (32, 1, 1)
            assert not rec, [str(r.message) for r in rec]
            theirs[grid, 32]
            assert len(rec) == 1 and "low occupancy" in str(rec[0].message), rec
    assert config.CUDA_LOW_OCCUPANCY_WARNINGS  # restored
    print("OK")
""")


def test_fastloss_launches_do_not_warn_of_low_occupancy():
    """fastloss sizes its grids to the data; numba-cuda's low-occupancy
    warning (grids under 128 blocks) is not raised for its launches, and
    still is for a user's kernel in the same process (``jit.FastlossDispatcher.configure``)."""
    out = run_ptx_script(_QUIET_LAUNCH_SCRIPT, timeout=600)
    assert out.strip().endswith("OK")


_F32_VARIANT_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    from fastloss import catalog
    from fastloss.cuda.elementwise import formula_for, make_elementwise_kernel

    arr = numba.float32[::1]
    f64 = numba.float64
    sig = (arr, arr, arr, numba.int64, arr, numba.int64, f64, f64, f64, f64, arr, arr,
           f64[::1], f64[::1], numba.boolean, numba.boolean)
    for name in ("binary_cross_entropy_with_logits", "soft_margin", "sigmoid_focal"):
        fid = catalog.formula_id(catalog.get(name))
        assert formula_for(fid, True) is not formula_for(fid, False), name
        ptx = ptx_of(make_elementwise_kernel(formula_for(fid, True)), sig)
        if name != "sigmoid_focal":
            # float32 lanes (logistic32): single-precision fma and reciprocal
            assert "fma.rn.f32" in ptx and "rcp.rn.f32" in ptx, name
        else:
            # focal combines the logistic values before rounding: float64
            # there (math.logistic32_wide), float32 lanes cost it 2 ULP
            assert "rcp.rn.f32" not in ptx and "div.rn.f32" not in ptx, name
        assert not BARE.findall(ptx), (name, BARE.findall(ptx)[:5])
    print("OK")
""")


_F64_ELEMENTWISE_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    from fastloss import catalog
    from fastloss.cuda.elementwise import formula_for, make_elementwise_kernel

    arr = numba.float64[::1]
    f64 = numba.float64
    sig = (arr, arr, arr, numba.int64, arr, numba.int64, f64, f64, f64, f64, arr, arr,
           f64[::1], f64[::1], numba.boolean, numba.boolean)
    names = [s.name for s in catalog.SPECS if s.family in ("regression", "binary")]
    for name in names:
        fid = catalog.formula_id(catalog.get(name))
        ptx = ptx_of(make_elementwise_kernel(formula_for(fid, False)), sig)
        assert not BARE.findall(ptx), (name, BARE.findall(ptx)[:5])
    print(len(names), "OK")
""")


def test_float64_elementwise_kernels_compile_to_ptx():
    """Every elementwise formula's float64 kernel (the double-double paths
    of pseudo_huber, log_cosh, sigmoid_focal, ... included) compiles for
    sm_90 through its dispatcher, with no multiply or add left for
    contraction."""
    out = run_ptx_script(_F64_ELEMENTWISE_SCRIPT, timeout=900)
    assert out.strip().endswith("OK")


def test_float32_variant_kernels_compile_to_ptx():
    """The float32-data formulas (``F32_VARIANTS`` rebound: ``logistic32`` on
    float32 lanes, as on the CPU) compile for sm_90 without contraction."""
    out = run_ptx_script(_F32_VARIANT_SCRIPT, timeout=600)
    assert out.strip().endswith("OK")


_SAME_MATH_SCRIPT = PTX_PRELUDE + textwrap.dedent("""
    from fastloss import catalog
    from fastloss.cuda.elementwise import formula_for, make_elementwise_kernel

    f64 = numba.float64
    F32_OPS = re.compile(r"\\b(?:add|sub|mul|div|fma|rcp)\\.[a-z.]*f32\\b")

    def sig(arr):
        return (arr, arr, arr, numba.int64, arr, numba.int64, f64, f64, f64, f64, arr, arr,
                f64[::1], f64[::1], numba.boolean, numba.boolean)

    # the CPU's exp (Taylor coefficient 1/13! = 0x3de6124613a86d09), not libdevice's
    fid = catalog.formula_id(catalog.get("poisson_nll"))
    ptx = ptx_of(make_elementwise_kernel(formula_for(fid, False)), sig(f64[::1]))
    assert "3de6124613a86d09" in ptx.lower()
    # float32 data is evaluated in float64, as on the CPU (numba-cuda types
    # float() of a float32 as float32: on an H200 mse's float32 kernel
    # subtracted and squared in float32)
    for name in ("mse", "huber", "poisson_nll", "msle", "log_cosh", "sigmoid_focal"):
        fid = catalog.formula_id(catalog.get(name))
        ptx = ptx_of(make_elementwise_kernel(formula_for(fid, True)), sig(numba.float32[::1]))
        assert not F32_OPS.findall(ptx), (name, F32_OPS.findall(ptx)[:5])
    print("OK")
""")


def test_gpu_kernels_compute_as_the_cpu():
    """A CUDA kernel computes its formula with the CPU's primitives
    (``fastloss.math._cpu``, not libdevice), and float32 data in float64:
    the PTX of poisson_nll's float64 kernel holds the CPU exp's 1/13!, and
    the float32 kernels of formulas without float32 variants have no float32
    arithmetic at all."""
    out = run_ptx_script(_SAME_MATH_SCRIPT, timeout=900)
    assert out.strip().endswith("OK")

