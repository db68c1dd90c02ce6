"""Scalar building blocks shared by every loss formula.

Each primitive has one meaning (documented below) and one name, with
per-target implementations:
- the CPU (``@njit``) gets branch-free polynomial versions
  (``fastloss.math._cpu``) that LLVM vectorizes; Numba 0.68 has no SVML, so
  ``math.exp`` & co. would be scalar libm calls that stop vectorization;
- any other Numba target (CUDA) gets the same ``_cpu`` functions through a
  ``target="generic"`` overload (not libdevice: see "the implementations
  each target compiles" below), except ``logistic32``;
- plain Python (the CUDA simulator, or a direct call) runs the function body
  itself, a plain ``math`` implementation with the same special values.

The loss formulas in ``fastloss.scalar`` call only these primitives (never
``math.exp``/``math.log``...), so the same formula compiles for every target.

Accuracy: every primitive is within 1 ULP of the exact value over its whole
domain, in float64 and (evaluated in float64, rounded once) float32; the
measured maxima are in ``tests/test_math_accuracy.py``.

Conventions:
- ``xmul(a, b)`` is ``a*b`` with ``0*inf = 0`` (the ``0*log 0 = 0`` convention of
  cross entropies); NaN in either operand still gives NaN.
- Every primitive propagates NaN.
"""

import math
import types as _pytypes

from numba import njit
from numba.extending import overload

from fastloss._config import JIT
from fastloss.math import _cpu

LN2_HI = 6.93147180369123816490e-01  # ln 2 = LN2_HI + LN2_LO (fdlibm split)
LN2_LO = 1.90821492927058770002e-10

__all__ = [
    "CPU_GENERIC", "F64_DATA", "FIXED_KERNEL", "LN2_HI", "LN2_LO", "exp", "exp_pair", "exp32", "expm1", "log", "log1p", "softplus", "log_sigmoid",
    "sigmoid", "logistic", "logistic32", "logistic32_wide", "tanh", "sinh", "hypot", "pow_pos", "logaddexp", "xmul", "relu", "sign",
]


def _forward(impl, nargs):
    """An overload function (typing signature of one or two floats) whose
    implementation calls ``impl``."""
    if nargs == 1:
        def ovl(x):
            return lambda x: impl(x)
    else:
        def ovl(x, y):
            return lambda x, y: impl(x, y)
    return ovl


def _targets(py_func, cpu_impl, gpu_impl=None):
    """Register the implementations of the primitive ``py_func`` (one or two
    float arguments): ``cpu_impl`` for the CPU target and, through a
    ``target="generic"`` overload, ``gpu_impl`` (by default the same
    function) for every other Numba target, i.e. CUDA."""
    for target, impl in (("cpu", cpu_impl), ("generic", gpu_impl or cpu_impl)):
        overload(py_func, target=target, jit_options=_cpu.CPU_JIT if target == "cpu" else JIT)(
            _forward(impl, py_func.__code__.co_argcount))
    return py_func


def _overflow_safe(f, big):
    try:
        return f()
    except OverflowError:
        return big


# --- plain-Python bodies (also the reference semantics) ----------------------


def exp(x):
    """e^x; +inf above 709.78 (float64), 0 below -745.13, NaN propagates."""
    return _overflow_safe(lambda: math.exp(x), math.inf)


def exp_pair(x):
    """e^x as (hi, lo), hi = exp(x) and hi + lo accurate far beyond one
    rounding (CPU: ~2^-56 relative). Here and on CUDA lo comes from expm1,
    e^x = 1 + expm1(x): exact for e^x near 1 (the cancelling differences
    e^x - 1 are then right), ~1 ULP of hi elsewhere."""
    if x != x:
        return x, x
    hi = exp(x)
    if hi == math.inf or hi == 0.0:
        return hi, 0.0
    return hi, (expm1(x) - (hi - 1.0)) if 0.5 <= hi <= 2.0 else 0.0


def exp_pair32(x):
    """``exp_pair`` to float32 grade, float32 data's ``exp_pair``
    (``F32_VARIANTS``): CPU and CUDA ``_cpu.exp_pair32`` (hi + lo within a
    relative 2^-34 of e^x, and e^x - 1 as (hi - 1) + lo within one of
    expm1); this plain-Python body (the CUDA simulator) is ``exp_pair``'s,
    which holds both."""
    return exp_pair(x)


def exp32(x):
    """e^x for x <= 0 with a relative error below 2^-34 (enough for float32
    data evaluated in float64: invisible after rounding to float32); 0 for
    x < -708.74 (results below 2^-1022.5 are flushed; measured: nonzero at
    -708.73, 0 at -708.75). Cheaper than ``exp`` on the CPU
    (the row kernels' exponential of x_j - m)."""
    return _overflow_safe(lambda: math.exp(x), math.inf)


def expm1(x):
    """e^x - 1 with relative accuracy near 0; -1 as x -> -inf."""
    return _overflow_safe(lambda: math.expm1(x), math.inf)


def log(x):
    """Natural log; -inf at 0 (either sign), NaN below 0, +inf at +inf."""
    if x == 0.0:
        return -math.inf
    if x < 0.0:
        return math.nan
    return math.log(x) if x == x else x


def log1p(x):
    """log(1 + x) with relative accuracy near 0; -inf at -1, NaN below."""
    if x == -1.0:
        return -math.inf
    if x < -1.0:
        return math.nan
    return math.log1p(x) if x == x else x


def softplus(z):
    """log(1 + e^z) = max(z, 0) + log1p(e^-|z|), no overflow, relative accuracy
    in both tails (softplus(z) ~ e^z for z -> -inf)."""
    if z > 0.0:
        return z + math.log1p(math.exp(-z))
    return math.log1p(math.exp(z)) if z == z else z


def log_sigmoid(z):
    """log(sigma(z)) = -softplus(-z)."""
    return -softplus(-z)


def sigmoid(z):
    """1/(1 + e^-z), evaluated on the side where e^-|z| cannot overflow, so
    both tails keep relative accuracy: sigma(z) - 1 is computed as -sigma(-z)
    by callers, never as a difference."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e) if z == z else z


def logistic(z):
    """(softplus(z), softplus(-z), sigmoid(z), sigmoid(-z)) in one call: what
    the logit losses need, from one exponential and one logarithm on the CPU.
    float32 data gets a float32-grade version (``F32_VARIANTS``)."""
    return softplus(z), softplus(-z), sigmoid(z), sigmoid(-z)


def logistic32(z):
    """``logistic`` to float32 grade: each output rounds to float32 within
    1 ULP; the formulas' ``logistic`` for float32 data (``F32_VARIANTS``).
    CPU: float64 lanes without double-double work (``_cpu.logistic32_wide``);
    other targets (CUDA), and this plain-Python body (the CUDA simulator):
    float32 lanes with float32 pairs (``_cpu.logistic32``), which halve a
    GPU's float64 work."""
    return _cpu.logistic32(z)


def logistic32_wide(z):
    """``logistic`` to float32 grade, never on float32 lanes: for formulas
    that combine its outputs before rounding (sigmoid_focal's float32
    data), where the float32-lane ``logistic32`` of a GPU costs accuracy
    (2 ULP in the value and 95 in the gradient of focal at ordinary points,
    against 0). CPU: ``_cpu.logistic32_wide`` (2^-34.1 relative); other
    targets and this plain-Python body: ``logistic`` itself."""
    return logistic(z)


def tanh(x):
    """Hyperbolic tangent."""
    return math.tanh(x)


def sinh(x):
    """Hyperbolic sine; +-inf on overflow (|x| > 710.47)."""
    return _overflow_safe(lambda: math.sinh(x), math.copysign(math.inf, x))


def hypot(x, y):
    """sqrt(x^2 + y^2) without intermediate overflow; inf if either is inf."""
    return math.hypot(x, y)


def pow_pos(x, y):
    """x^y for x >= 0 (x^0 = 1, 0^y = 0 for y > 0); +inf on overflow."""
    return _overflow_safe(lambda: math.pow(x, y), math.inf)


# --- the implementations each target compiles --------------------------------
#
# The GPU compiles the CPU's own implementations (``_cpu``: arithmetic, fma,
# bit casts and selects, all of which NVPTX has), not libdevice's: the same
# operations rounded the same way (fastloss kernels are compiled without fma
# contraction, ``fastloss.cuda.jit``), so an elementwise or row formula runs
# the CPU's operations on the GPU, with the CPU's accuracy, double-double
# pairs included (``exp_pair``'s low part: libdevice has no such function,
# and the ``math.*`` version it had here set lo = 0 away from e^x ~ 1).
# Measured on an H200 with libdevice: float64 poisson_nll values 1004 ULP
# from the CPU's (it cancels e^x against y x), binary_cross_entropy_with_logits
# values and soft_margin gradients 3 ULP, beyond the 2 ULP the CUDA tests
# allow; with these primitives those tests passed. The one exception is ``logistic32``, which the
# GPU evaluates on float32 lanes (``_cpu.logistic32``; float64 units are
# few on most GPUs), within 1 ULP of float32 like the CPU's float64-lane
# ``logistic32_wide``, not bitwise the same.


@njit(**_cpu.CPU_JIT)
def _cpu_log_sigmoid(z):
    return -_cpu.softplus(-z)


_targets(exp, _cpu.exp)
_targets(exp32, _cpu.exp32)
_targets(exp_pair, _cpu.exp_pair)
_targets(exp_pair32, _cpu.exp_pair32)
_targets(expm1, _cpu.expm1)
_targets(log, _cpu.log)
_targets(log1p, _cpu.log1p)
_targets(softplus, _cpu.softplus)
_targets(log_sigmoid, _cpu_log_sigmoid)
_targets(sigmoid, _cpu.sigmoid)
_targets(logistic, _cpu.logistic)
_targets(logistic32, _cpu.logistic32_wide, _cpu.logistic32)
_targets(logistic32_wide, _cpu.logistic32_wide)
_targets(tanh, _cpu.tanh)
_targets(sinh, _cpu.sinh)
_targets(hypot, _cpu.hypot)
_targets(pow_pos, _cpu.pow_pos)


#: float32-grade variants: a formula compiled for float32 data has these
#: names rebound in its globals (``fastloss.cpu.elementwise``,
#: ``fastloss.cuda.elementwise``); each function
#: is tested to round to within 1 ULP of float32 (tests/test_math_accuracy.py)
#: and keeps the float64 version's special values. The formula's text is the
#: same for both dtypes. ``logistic32``'s GPU version rounds its argument to
#: float32: the formulas pass it a data element or its negation (exact),
#: never a product.
#: ``F64_DATA`` is a compile-time flag, True in the formulas' own globals and
#: False for float32 data. It guards the branches only float64 data can
#: reach, such as a difference x - y that overflows between finite x and y
#: (float32 values, evaluated in float64, never overflow there). Without it
#: the vectorized loop evaluates such a branch's selects for every element:
#: huber's float32 loop was ~100 instructions per 16 elements, most of them
#: for its overflow guard.
F64_DATA = True
F32_VARIANTS = {"logistic": logistic32, "exp_pair": exp_pair32, "F64_DATA": False}

#: ``FIXED_KERNEL`` is a compile-time flag too: False in the formulas' own
#: globals, True in the copy that a CPU kernel with parameters fixed
#: (``LossSpec.fixed``) compiles (``with_fixed_kernel``). It guards a path
#: that only such a kernel takes: BCE with logits at its defaults for
#: float32 data, in float32 lanes (``_cpu.logistic_loss32``). Tested at
#: run time instead, the path's selects would be evaluated for every element
#: by the other kernels of the formula too.
FIXED_KERNEL = False

#: ``CPU_GENERIC``: False in the formulas' own globals (which the CUDA
#: kernels compile), True in the copy that a CPU kernel compiles with no
#: parameter fixed (``with_kernel_flags``). Such a kernel never meets the
#: parameter values that ``LossSpec.fixed`` lists (``catalog.kernel_id``
#: gives them kernels of their own), so a formula may leave their paths out
#: of it: float64 ``sigmoid_focal``'s kernel for gamma other than 0 and 2
#: holds its double-double path alone, whose loop vectorizes; with the
#: paths of gamma = 0 and 2 beside it as selects, every element would
#: evaluate all three.
CPU_GENERIC = False


def with_f32_variants(py):
    """The Python function ``py`` (a formula's ``py_func``) with the names of
    ``F32_VARIANTS`` it uses rebound in its globals: the formula for float32
    data, on the CPU (``cpu.elementwise``) and the GPU (``cuda.elementwise``)
    alike; ``py`` itself when it uses none. Compile the result without
    ``cache=True``: it shares ``py``'s code object, hence its cache key."""
    names = set(py.__code__.co_names) & set(F32_VARIANTS)
    if not names:
        return py
    env = {**py.__globals__, **{k: F32_VARIANTS[k] for k in names}}
    return _pytypes.FunctionType(py.__code__, env, py.__name__, py.__defaults__, py.__closure__)


def with_kernel_flags(py, fixed: bool):
    """``py`` with the CPU kernels' flags rebound in its globals:
    ``FIXED_KERNEL`` to ``fixed`` (a kernel with parameters fixed,
    ``cpu.elementwise``) and ``CPU_GENERIC`` to ``not fixed``; ``py``
    itself when it uses neither. Compile without ``cache=True``, as
    ``with_f32_variants``."""
    flags = {"FIXED_KERNEL": fixed, "CPU_GENERIC": not fixed}
    names = set(py.__code__.co_names) & set(flags)
    if not names:
        return py
    env = {**py.__globals__, **{k: flags[k] for k in names}}
    return _pytypes.FunctionType(py.__code__, env, py.__name__, py.__defaults__, py.__closure__)


# --- helpers without transcendental functions ---------------------------------


@njit(**_cpu.CPU_JIT)
def xmul(a, b):
    """a*b, except that 0 times +-inf is 0 (not NaN); NaN still propagates."""
    return 0.0 if a == 0.0 and b == b else a * b


@njit(**_cpu.CPU_JIT)
def relu(m):
    """max(0, m) that propagates NaN (Python's max(0, nan) returns 0)."""
    return 0.0 if m <= 0.0 else m


@njit(**_cpu.CPU_JIT)
def sign(d):
    """sign(d): -1, 0 or 1; NaN for NaN."""
    return 1.0 if d > 0.0 else (-1.0 if d < 0.0 else d * 0.0)  # 0 for +-0, NaN for NaN


@njit(**_cpu.CPU_JIT)
def logaddexp(a, b):
    """log(e^a + e^b) without overflow; logaddexp(-inf, -inf) = -inf."""
    hi = a if a > b else b
    lo = b if a > b else a
    r = hi + log1p(exp(lo - hi))
    r = hi if hi == -math.inf or hi == math.inf else r
    return r if a == a and b == b else a + b
