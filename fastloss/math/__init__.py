"""Scalar building blocks shared by every loss formula.

Each primitive has one meaning (documented below) and is written as a Numba
``@njit`` function on float64 arguments. The loss formulas in
``fastloss.scalar`` call only these primitives and ``math`` functions, so the
same formula compiles for the CPU (``@njit``) and for CUDA (numba-cuda
compiles ``@njit`` functions called from ``@cuda.jit`` kernels, mapping
``math.*`` to libdevice).

Float32 data is evaluated in float64 and rounded once at the store, so float32
results are within about half an ULP of the exact value; float64 results rely
on the stable forms below (see ``docs/ACCURACY.md`` for the measured bounds).

Conventions:
- ``xmul(a, b)`` is ``a*b`` with ``0*inf = 0`` (the ``0*log 0 = 0`` convention of
  cross entropies); NaN in either operand still gives NaN.
- Every primitive propagates NaN.
"""

import math

from numba import njit

from fastloss._config import JIT

LN2_HI = 6.93147180369123816490e-01  # ln 2 = LN2_HI + LN2_LO (fdlibm split)
LN2_LO = 1.90821492927058770002e-10


@njit(**JIT)
def xmul(a, b):
    """a*b, except that 0 times +-inf is 0 (not NaN); NaN still propagates."""
    if a == 0.0 and not math.isnan(b):
        return 0.0
    return a * b


@njit(**JIT)
def relu(m):
    """max(0, m) that propagates NaN (Python's max(0, nan) returns 0)."""
    if m <= 0.0:
        return 0.0
    return m


@njit(**JIT)
def sign(d):
    """sign(d): -1, 0 or 1; NaN for NaN."""
    if d > 0.0:
        return 1.0
    if d < 0.0:
        return -1.0
    return d * 0.0  # 0 for +-0, NaN for NaN


@njit(**JIT)
def softplus(z):
    """log(1 + e^z) = max(z, 0) + log1p(e^-|z|), no overflow, relative accuracy
    in both tails (softplus(z) ~ e^z for z -> -inf)."""
    if z > 0.0:
        return z + math.log1p(math.exp(-z))
    return math.log1p(math.exp(z))


@njit(**JIT)
def log_sigmoid(z):
    """log(sigma(z)) = -softplus(-z)."""
    return -softplus(-z)


@njit(**JIT)
def sigmoid(z):
    """1/(1 + e^-z), evaluated on the side where e^-|z| cannot overflow, so
    both tails keep relative accuracy: sigma(z) - 1 is computed as -sigma(-z)
    by callers, never as a difference."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(**JIT)
def logaddexp(a, b):
    """log(e^a + e^b) without overflow; logaddexp(-inf, -inf) = -inf."""
    if math.isnan(a) or math.isnan(b):
        return a + b
    hi = max(a, b)
    if hi == -math.inf or hi == math.inf:
        return hi
    lo = min(a, b)
    return hi + math.log1p(math.exp(lo - hi))
