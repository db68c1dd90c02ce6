"""The CPU elementwise kernels vectorize (issue 3, item 3).

Numba 0.68 has no SVML: a libm call (exp, log1p, ...) inside the hot loop keeps
it scalar. The kernels use the polynomial primitives of ``fastloss.math`` and
a branch-free loop, so LLVM emits packed AVX2 code. This test compiles the
driver afresh (cached code cannot be inspected) and looks in the machine code
for packed arithmetic on ymm (or zmm) registers, and for the
absence of calls to libm's transcendental functions.
"""

import re

import numba
import numpy as np
import pytest
from llvmlite import binding as llvm

import fastloss as fl
from fastloss import catalog
from fastloss._config import CHUNK, JIT, PARALLEL_JIT
from fastloss.cpu import elementwise

_HAS_AVX2 = "avx2" in llvm.get_host_cpu_features().flatten()
_PACKED = re.compile(r"^\s*(v(?:add|sub|mul|div|fmadd\w*|fnmadd\w*|fmsub\w*|max|min|blendv)p[ds])\s[^\n]*%[yz]mm",
                     re.M)
_LIBM_NAMES = r"(?:exp|expm1|log|log1p|tanh|sinh|cosh|hypot|pow|atan|atan2)f?"
#: a libm call, direct (``callq pow@PLT``) or through a register loaded with
#: the function's address (``movabsq $pow, %rax`` then ``callq *%rax``, as
#: LLVM emits them here)
_LIBM = re.compile(rf"(?:\bcall\w*\s+{_LIBM_NAMES}\b|\bmovabsq\s+\${_LIBM_NAMES},)")


@pytest.fixture(scope="module")
def fresh_kernel():
    return numba.njit(**{**PARALLEL_JIT, "cache": False})(elementwise.fused.py_func)


def _asm(kern, name, dtype, fid=None):
    spec = catalog.get(name)
    fid = catalog.formula_id(spec) if fid is None else fid
    n = 2 * CHUNK
    x = np.linspace(-3.0, 3.0, n).astype(dtype)
    y = np.full(n, 0.5 if spec.family == "binary" else 0.25, dtype=dtype)
    one = np.ones(1, dtype=dtype)
    grad = np.empty_like(x)
    hi = np.empty(2)
    lo = np.empty(2)
    kern(fid, x, y, one, 1, one, 1, 0.0, 0.0, 0.0, 1.0, grad, grad, hi, lo, True, False,
         np.array([-np.inf, np.inf] * 2, dtype=dtype), np.zeros(hi.size, np.uint8))
    sig = [s for s in kern.signatures if s[0].literal_value == fid and s[1].dtype == numba.from_dtype(dtype)]
    return kern.inspect_asm(sig[0])


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
@pytest.mark.parametrize("name,dtype", [
    ("mse", np.float32), ("mse", np.float64),
    ("binary_cross_entropy_with_logits", np.float32),
    ("binary_cross_entropy_with_logits", np.float64),
    # a libm-free tanh family and a branch, in one dtype each (each case
    # compiles the driver afresh, ~10 s)
    ("log_cosh", np.float32), ("huber", np.float64),
    # libm's pow (through a register) kept this loop scalar at 33 ns/elem
    ("sigmoid_focal", np.float32),
], ids=lambda v: getattr(v, "__name__", v))
def test_hot_loop_is_packed_avx(fresh_kernel, name, dtype):
    asm = _asm(fresh_kernel, name, dtype)
    packed = _PACKED.findall(asm)
    assert len(packed) >= 8, f"{name}/{dtype.__name__}: no packed ymm arithmetic"
    calls = [line.strip() for line in asm.splitlines() if _LIBM.search(line)]
    assert not calls, f"{name}/{dtype.__name__}: libm calls in the kernel: {calls[:3]}"
    if name == "binary_cross_entropy_with_logits":
        # the exp/log1p polynomials themselves are packed: fma and division on
        # float64 ymm/zmm lanes, for float32 data too (math._cpu.logistic32_wide)
        assert any(op.startswith("vfmadd") and op.endswith("pd") for op in packed)
        assert "vdivpd" in packed


def test_huber_float32_kernel_choice():
    """huber's float32-lane kernel (``regression._huber32``) is chosen for
    delta a float32 number in [1, 2^64] (``catalog.Float32In``), and only
    then."""
    spec = catalog.get("huber")
    fid = catalog.formula_id(spec)
    for delta in (1.0, 1.5, 3.0, 2.0**20 + 1, 2.0**64):
        assert catalog.kernel_id(spec, (delta, 0.0, 0.0)) > fid
    for delta in (0.5, 0.1, 1.0 + 2.0**-30, 2.0**65, 2.0**64 + 2.0**20, 1e300, np.inf, np.nan):
        assert catalog.kernel_id(spec, (delta, 0.0, 0.0)) == fid


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
def test_huber_float32_kernel_is_float32_lanes(fresh_kernel):
    """The kernel of delta = 1 does huber's arithmetic in packed float32
    (TwoSum's subtractions and the fma: vsubps, vfmadd...ps); the kernel
    that reads an arbitrary delta does it in float64 lanes (no packed
    float32 arithmetic at all: only conversions)."""
    spec = catalog.get("huber")
    lanes = _PACKED.findall(_asm(fresh_kernel, "huber", np.float32,
                                 catalog.kernel_id(spec, (1.0, 0.0, 0.0))))
    wide = _PACKED.findall(_asm(fresh_kernel, "huber", np.float32))
    assert "vsubps" in lanes and any(op.startswith("vfmadd") and op.endswith("ps") for op in lanes)
    assert not [op for op in wide if op.endswith("ps") and not op.startswith("vblendv")], wide


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_sigmoid_focal_float64_is_packed(fresh_kernel, gamma):
    """float64 sigmoid_focal's kernels of gamma = 2 (the default,
    ``binary._focal2_dd``: the factor D^2 as a double-double product) and
    of other gamma (``_focal_gdd``: its double-double exponential and
    logarithm, alone in that kernel: ``math.CPU_GENERIC``) are packed
    float64 fma arithmetic without libm calls (libm's pow kept the latter
    scalar, ~50 ns/elem)."""
    spec = catalog.get("sigmoid_focal")
    fid = catalog.kernel_id(spec, spec.pack({"alpha": 0.25, "gamma": gamma}))
    assert (fid != catalog.formula_id(spec)) == (gamma == 2.0)
    asm = _asm(fresh_kernel, "sigmoid_focal", np.float64, fid)
    packed = _PACKED.findall(asm)
    assert sum(op.startswith(("vfmadd", "vfmsub", "vfnmadd")) and op.endswith("pd")
               for op in packed) >= 8, packed[:20]
    calls = [line.strip() for line in asm.splitlines() if _LIBM.search(line)]
    assert not calls, calls[:3]


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
def test_mae_float32_is_float32_lanes(fresh_kernel):
    """mae's float32 kernel subtracts in packed float32 (``regression.mae``:
    |fl(x - y)| is already the correctly rounded value)."""
    assert "vsubps" in _PACKED.findall(_asm(fresh_kernel, "mae", np.float32))


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
def test_large_gradients_have_streaming_stores(fresh_kernel):
    """The driver holds the streaming stores of ``stream.stream_copy`` (VMOVNTPS,
    VMOVNTPD or VMOVNTDQ: the same 64 bytes, in whichever domain LLVM picks),
    taken at run time for large gradients
    (tests/test_determinism.py::test_streaming_stores_same_bits)."""
    assert re.search(r"vmovnt(p[sd]|dq)\s[^\n]*%[yz]mm", _asm(fresh_kernel, "mse", np.float32))


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
def test_span_formula_is_packed():
    """An arithmetic-bound loss's plain formula loop runs in a function of
    its own (``elementwise._span_formula``, compiled here afresh): for BCE
    with logits' defaults kernel in float32 it holds packed float32 fma and
    division, and no libm call."""
    spec = catalog.get("binary_cross_entropy_with_logits")
    fid = catalog.kernel_id(spec, (0.0, 0.0, 0.0), np.ones(1))
    span = numba.njit(**{**JIT, "cache": False})(elementwise._span_formula.py_func)
    n = 256
    x = np.linspace(-3.0, 3.0, n).astype(np.float32)
    y = np.full(n, 0.5, np.float32)
    vs = np.empty_like(x)
    ga = np.empty_like(x)
    dom = np.array([-np.inf, np.inf, 0.0, 1.0], np.float32)
    u0 = np.uint64(0)
    span(fid, x, y, u0, np.uint64(n), vs, ga, u0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, dom)
    asm = span.inspect_asm(span.signatures[0])
    packed = _PACKED.findall(asm)
    assert any(op.startswith("vfmadd") and op.endswith("ps") for op in packed)
    assert "vdivps" in packed
    assert not _LIBM.search(asm)
    # the span's gradient is the public call's ("sum": g / 1)
    _, g = fl.value_and_grad(spec.name, x, y, reduction="sum")
    np.testing.assert_array_equal(ga.view(np.uint32), g.view(np.uint32))


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
@pytest.mark.parametrize("log_target", [0.0, 1.0], ids=["t", "log_t"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda v: v.__name__)
def test_kl_div_term_loop_is_packed(dtype, log_target):
    """kl_div's term loop (log t, or e^t with log targets) vectorizes: packed
    float64 multiply-adds on ymm/zmm, and no libm call. Its running TwoSum
    sum and a per-element log_target test once kept it scalar (0.7-1.1x
    PyTorch in float32)."""
    from fastloss._config import JIT
    from fastloss.scalar import multiclass

    kern = numba.njit(**{**JIT, "cache": False})(multiclass.kl_div.py_func)
    c = 1100
    x = np.log(np.full(c, 1.0 / c)).astype(dtype)
    t = np.full(c, 1.0 / c if not log_target else np.log(1.0 / c)).astype(dtype)
    g = np.empty_like(x)
    buf = np.empty(multiclass.scratch_size(c))
    kern(x, 0, t, np.ones(c, dtype), log_target, 0.0, 0.0, 0.0, 1.0, g, True, buf)
    asm = kern.inspect_asm(kern.signatures[0])
    fmas = [op for op in _PACKED.findall(asm) if op.startswith("vfmadd") and op.endswith("pd")]
    assert len(fmas) >= 8, f"kl_div/{dtype.__name__}: {len(fmas)} packed float64 fma"
    calls = [line.strip() for line in asm.splitlines() if _LIBM.search(line)]
    assert not calls, calls[:3]


def _fixed_case(case, dtype):
    """(loss name, packed parameters, x, y) for ``test_fixed_kernel_is_the_formula``:
    special values, then random data."""
    rng = np.random.default_rng(3)
    if case.startswith("poisson"):
        log_input = case.endswith("log_input")
        special = [0.0, -0.0, 1e-300, 5e-324, 1.0, 2.0, 88.0, 89.0, 709.0, 710.0, 1e30, np.inf,
                   -1.0, -745.0, -np.inf, np.nan]
        x = np.concatenate([special, rng.normal(0.0, 5.0, 3 * CHUNK)])
        if not log_input:
            x = np.abs(x)
        y = np.concatenate([[0.0, 1.0, 3.0, np.inf] * 4, np.abs(rng.normal(0.0, 3.0, 3 * CHUNK))])
        p = (1.0 if log_input else 0.0, 0.0, 0.0)
        return "poisson_nll", p, x.astype(dtype), y.astype(dtype)
    if case.startswith("bce"):
        # BCE with logits' defaults (no smoothing, pos_weight 1): hard and
        # soft targets (also -0), logits of every size, infinities, NaN
        special = [0.0, -0.0, 1e-30, 1.0, -1.0, 17.0, -17.0, 88.0, -104.0, 745.0, -746.0,
                   1e30, -1e38, np.inf, -np.inf, np.nan]
        xs = np.array(special * 5)
        ys = np.repeat([0.0, -0.0, 1.0, 0.3, 1e-30], len(special))
        x = np.concatenate([xs, rng.normal(0.0, 8.0, 3 * CHUNK)])
        hard = (rng.random(3 * CHUNK) < 0.5).astype(np.float64)
        y = np.concatenate([ys, np.where(rng.random(3 * CHUNK) < 0.5, hard, rng.random(3 * CHUNK))])
        return "binary_cross_entropy_with_logits", (0.0, 0.0, 0.0), x.astype(dtype), y.astype(dtype)
    # sigmoid_focal, gamma = 2 (alpha = 0.25) or 0 (no alpha): hard and soft targets, logits
    # of every size, the infinities (where D^2 meets 0 * inf) and NaN
    special = [0.0, -0.0, 1e-30, 1.0, -1.0, 17.0, -17.0, 88.0, -104.0, 372.0, -373.0, 745.0,
               -746.0, 1e30, -1e38, np.inf, -np.inf, np.nan]
    xs = np.array(special * 4)
    ys = np.repeat([0.0, 1.0, 0.3, 1e-30], len(special))
    x = np.concatenate([xs, rng.normal(0.0, 8.0, 3 * CHUNK)])
    hard = (rng.random(3 * CHUNK) < 0.5).astype(np.float64)
    y = np.concatenate([ys, np.where(rng.random(3 * CHUNK) < 0.5, hard, rng.random(3 * CHUNK))])
    p = (0.0, 0.0, 0.0) if case == "focal_gamma0" else (0.25, 2.0, 1.0)  # (no alpha)
    return "sigmoid_focal", p, x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda v: v.__name__)
@pytest.mark.parametrize("case", ["poisson_log_input", "poisson_rate", "focal_gamma2", "focal_gamma0",
                                  "bce_defaults"])
def test_fixed_kernel_is_the_formula(dtype, case):
    """Kernels compiled with parameters as compile-time constants
    (``LossSpec.fixed``, ``catalog.kernel_id``; in a vectorized loop a runtime
    branch evaluates both sides: poisson_nll 4.3 -> 2.7 ns/elem in float32,
    sigmoid_focal at gamma = 2 8.8 -> 4.0; BCE with logits' defaults, float32,
    2.6 -> 2.3) give the bits of the kernel that
    reads the parameter at run time, on special values and on random data,
    values, gradients and chunk partials; except BCE with logits' float32
    defaults, which take float32 lanes (``FIXED_KERNEL``)."""
    from fastloss.cpu.elementwise import kernel

    name, p, x, y = _fixed_case(case, dtype)
    spec = catalog.get(name)
    one = np.ones(1, dtype=dtype)
    fid, kid = catalog.formula_id(spec), catalog.kernel_id(spec, p, one)
    assert kid >= len(catalog.FORMULAS)
    index, pairs = catalog.FIXED[kid - len(catalog.FORMULAS)]
    assert index == fid
    assert all((1.0 if slot == catalog.Q else p[slot]) == value for slot, value in pairs)
    for slot, _ in pairs:  # any fixed value changed: the runtime kernel
        if slot == catalog.Q:
            assert catalog.kernel_id(spec, p, one + 1) != kid
            assert catalog.kernel_id(spec, p, np.ones(2, dtype)) != kid  # per column
            assert catalog.kernel_id(spec, p) != kid  # q unknown
        else:
            other = tuple(v + 0.5 if k == slot else v for k, v in enumerate(p))
            assert catalog.kernel_id(spec, other, one) != kid
    assert catalog.kernel_id(catalog.get("mse"), (1.0, 2.0, 0.0)) == catalog.formula_id(catalog.get("mse"))
    out = []
    for k in (fid, kid):
        grad, vals = np.empty_like(x), np.empty_like(x)
        hi, lo = np.empty(4), np.empty(4)  # 3 CHUNK + 72 elements
        kernel(k, x, y, one, 1, one, 1, *p, 1.0, grad, vals, hi, lo, True, True,
               np.array([-np.inf, np.inf] * 2, dtype=dtype), np.zeros(4, np.uint8))
        out.append((vals, grad, hi + lo))
    if case == "bce_defaults" and dtype == np.float32:
        # the defaults' float32 kernel runs another algorithm (float32
        # lanes, ``_cpu.logistic_loss32``; tests/test_math_accuracy.py):
        # its bits are that function's, and within 2 ULP of the runtime
        # kernel's (each within 1.5 ULP of the exact value)
        from fastloss.math import _cpu

        want = np.array([_cpu.logistic_loss32(a, b) for a, b in zip(x, y, strict=True)])
        (rv, rg, rs), (fv, fg, fs) = out
        np.testing.assert_array_equal(fv.view(np.uint8), want[:, 0].astype(dtype).view(np.uint8))
        np.testing.assert_array_equal(fg.view(np.uint8), want[:, 1].astype(dtype).view(np.uint8))
        fin = np.isfinite(rv)
        np.testing.assert_array_equal(fv[~fin], rv[~fin])
        np.testing.assert_array_max_ulp(fv[fin], rv[fin], maxulp=2)
        # the gradient sigmoid(x) - y: where its terms cancel, either kernel
        # is exact only to an ULP of the terms (the condition), not of g
        scale = np.maximum(np.abs(rg), np.abs(y)).astype(np.float64)
        close = np.abs(fg.astype(np.float64) - rg) <= 3 * np.spacing(scale.astype(dtype))
        assert np.all(np.where(np.isnan(rg), np.isnan(fg), close))
        np.testing.assert_allclose(fs, rs, rtol=1e-6)
        return
    if case.startswith("focal") and dtype == np.float64:
        # the float64 kernel that reads gamma holds ``_focal_gdd`` alone
        # (``math.CPU_GENERIC``: gamma = 0 and 2 have kernels of their own),
        # another algorithm than the fixed kernels' (``_focal2_dd``,
        # ``_focal_plain``); each is within 1 ULP of the exact value (x
        # condition for the gradient, tests/test_oracle.py)
        (rv, rg, rs), (fv, fg, fs) = out
        fin = np.isfinite(rv)
        np.testing.assert_array_equal(fv[~fin], rv[~fin])
        np.testing.assert_array_max_ulp(fv[fin], rv[fin], maxulp=2)
        scale = np.maximum(np.abs(rg), np.abs(y))
        close = np.abs(fg - rg) <= 3 * np.spacing(scale)
        assert np.all(np.where(np.isnan(rg), np.isnan(fg), close))
        np.testing.assert_allclose(fs, rs, rtol=1e-14)
        return
    for a, b in zip(out[0], out[1], strict=True):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
def test_probs_row32_passes_are_packed():
    """``cpu.rowlanes.ce_probs_row32``'s own passes vectorize: the target
    sums (packed float64 adds, and no gathers: in the radix-8 loops they
    replaced, indices LLVM could not prove >= 0 once made them gathers,
    0.42 ns/elem in L1), the gradient (packed
    float64 fused multiply-subtract) and the maxima of x and t (packed
    integer max)."""
    from fastloss._config import JIT
    from fastloss.cpu import rowlanes

    def fresh(f):
        return numba.njit(**{**JIT, "cache": False})(f.py_func)

    c = 1000
    x = np.linspace(-3.0, 3.0, c).astype(np.float32)
    t = np.full(c, 1.0 / c, np.float32)
    sums = fresh(rowlanes._target_sums)
    sums(x, t, 3.0)
    asm = sums.inspect_asm(sums.signatures[0])
    adds = [op for op in _PACKED.findall(asm) if op == "vaddpd"]
    assert len(adds) >= 8 and "vgather" not in asm, len(adds)
    grad = fresh(rowlanes._probs_grad)
    grad(x.copy(), t, 1e-3, 0.5)
    asm = grad.inspect_asm(grad.signatures[0])
    assert any(op.startswith(("vfmadd", "vfmsub", "vfnmadd")) and op.endswith("pd")
               for op in _PACKED.findall(asm))
    maxes = fresh(rowlanes._maxes)
    maxes(x, t)
    assert re.search(r"vpmaxsd\s[^\n]*%[yz]mm", maxes.inspect_asm(maxes.signatures[0]))


@pytest.mark.skipif(not _HAS_AVX2, reason="needs a CPU with AVX2")
@pytest.mark.parametrize("name,c", [("lane_rows", 32), ("group_rows", 100)])
def test_row_tiles_scalars_are_packed(name, c):
    """``cpu.rowtiles``' loop over a tile's 16 rows computing their row
    scalars (``_lane_scalars``: log1p, expm1, the gradient factor's and the
    label entry's divisions) vectorizes: two float64 divisions per row, 16
    rows, are at least 4 packed ``vdivpd`` on 8 lanes (8 on 4). With the
    scalars in rows of a (10, 16) view that loop stayed scalar (41 against
    6.6 ns a row), and each kernel held 2 packed divisions in all."""
    from fastloss._config import JIT
    from fastloss.cpu import rowtiles
    from fastloss.cpu.rowwise import sum_dd

    kern = numba.njit(**{**JIT, "cache": False})(getattr(rowtiles, name).py_func)
    n = 2 * rowtiles.LANE_ROWS
    x = np.zeros((n, c), np.float32)
    w = np.ones(c, np.float32)
    wsum, wlo = sum_dd(w)
    kern(x, np.zeros(n, np.int64), np.zeros((n, 0), np.float32), w, 0.0, 0.0, wlo, wsum, -100,
         True, 1.0, np.empty_like(x), True, np.empty(rowtiles.scratch(c)), 0, n, np.empty(n),
         False, 0.0, 0.0)
    divs = re.findall(r"^\s*vdivpd\s[^\n]*%[yz]mm", kern.inspect_asm(kern.signatures[0]), re.M)
    assert len(divs) >= 6, len(divs)


def test_transpose8_blocks():
    """``_intrin.transpose8`` (``rowtiles.lane_rows``' tile transposes): an
    8 x 8 float32 block at any offsets and strides, against NumPy's
    transpose, writing nothing outside the block; in the machine code its
    stores are 8 vector stores, no scalar element stores (x86-64 with AVX:
    ``vmovss`` of an xmm; the wrapper's own stores to the stack aside)."""
    from fastloss.math._intrin import transpose8

    @numba.njit(cache=False)
    def block(dst, di, ds, src, si, ss):
        transpose8(dst, di, ds, src, si, ss)

    rng = np.random.default_rng(8)
    for di, ds, si, ss in ((0, 8, 0, 8), (3, 16, 5, 10), (17, 9, 1, 63), (0, 31, 12, 8)):
        src = rng.standard_normal(si + 7 * ss + 8 + 5).astype(np.float32)
        dst = np.full(di + 7 * ds + 8 + 5, np.nan, np.float32)
        want = dst.copy()
        rows = np.stack([src[si + i * ss:si + i * ss + 8] for i in range(8)])
        for k in range(8):
            want[di + k * ds:di + k * ds + 8] = rows[:, k]
        block(dst, di, ds, src, si, ss)
        np.testing.assert_array_equal(dst.view(np.int32), want.view(np.int32))
    if _HAS_AVX2:
        asm = block.inspect_asm(block.signatures[0])
        stores = re.findall(r"^\s*vmov\w+\s+%ymm\d+, [^\n]*\((?!%rsp)", asm, re.M)
        assert len(stores) == 8 and not re.search(r"^\s*vmovss\s+%xmm\d+, [^\n]*\(", asm, re.M), asm
