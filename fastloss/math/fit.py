"""Where the float32-grade polynomials of ``fastloss.math._cpu`` come from.

Not imported by the kernels: run ``python -m fastloss.math.fit`` to print the
coefficients again (tests/test_math_accuracy.py refits and compares).

Both polynomials serve float32 data evaluated in float64 lanes, where a
relative error of 2^-34 before the final rounding is invisible (at most
0.5 + 2^-10 ULP of float32), so each is the shortest that reaches it:

- ``exp32``: e^r = 1 + r + r^2 Q(r) on |r| <= ln2/2, Q of degree 5 (the
  exponential's degree 7); relative error 2^-34.2 (degree 8 gave 2^-37.8,
  degree 6 gives 2^-28.3).
- ``logistic32_wide``'s log1p: log(1 + f) = 2s + s w R(w), s = f/(2 + f),
  w = s^2, |s| <= (sqrt2 - 1)/(1 + sqrt2) = 0.1716; R of degree 3 in w;
  relative error 2^-37.6 (fdlibm's degree 6 gives 2^-58, degree 2 2^-30.2).

Each is a near-minimax fit of the relative error by Lawson's algorithm
(iteratively reweighted least squares) on Chebyshev-distributed nodes, the
function values from mpmath at 50 digits.
"""

import math

import mpmath
import numpy as np

#: |r| <= ln2/2 (with a margin for the rounding of k)
EXP_R = math.log(2.0) / 2 * (1 + 2.0**-30)
#: |s| <= (sqrt2 - 1)/(1 + sqrt2)
LOG_S = (math.sqrt(2.0) - 1.0) / (1.0 + math.sqrt(2.0)) * (1 + 1e-9)


def lawson(g, weight, nodes, n, iters=200):
    """Coefficients c_0..c_{n-1} (increasing powers) of the polynomial p that
    nearly minimizes max |weight(t) (p(t) - g(t))| over ``nodes``."""
    nodes = np.asarray(nodes, dtype=np.float64)
    scale = float(np.max(np.abs(nodes)))
    gv = np.array([float(g(mpmath.mpf(float(t)))) for t in nodes])
    wv = np.array([float(weight(mpmath.mpf(float(t)))) for t in nodes])
    v = np.vander(nodes / scale, n, increasing=True)
    w = np.full(nodes.size, 1.0 / nodes.size)
    for _ in range(iters):
        sw = np.sqrt(w) * wv
        c, *_ = np.linalg.lstsq(v * sw[:, None], gv * sw, rcond=None)
        err = np.abs(v @ c - gv) * wv
        w = w * err
        w /= w.sum()
    return [float(x) for x in c / scale ** np.arange(n)]


def _q(r):
    # (e^r - 1 - r) / r^2, by its series near 0
    return (mpmath.exp(r) - 1 - r) / r**2 if abs(r) > 1e-12 else mpmath.mpf(0.5) + r / 6


def _r(w):
    # (2 atanh(s) - 2 s) / (s w), s = sqrt(w)
    if w <= 1e-20:
        return mpmath.mpf(2) / 3
    s = mpmath.sqrt(w)
    return (2 * mpmath.atanh(s) - 2 * s) / (s * w)


def exp32_coefficients(degree=7, nodes=3001):
    """Q's coefficients (X2.. in ``_cpu``) for e^r of the given degree."""
    with mpmath.workdps(50):
        t = np.cos(np.linspace(0.0, np.pi, nodes)) * EXP_R
        # relative error of 1 + r + r^2 Q: weight r^2 e^-r
        return lawson(_q, lambda r: r * r * mpmath.exp(-r), t, degree - 1)


def log_r_coefficients(terms=4, nodes=3001, bound=LOG_S):
    """R's coefficients (W1.. in ``_cpu``) on |s| <= bound: relative error of
    2s + s w R is about w (R - R_exact) / 2, so the weight is w."""
    with mpmath.workdps(50):
        t = (np.cos(np.linspace(0.0, np.pi, nodes)) + 1.0) / 2.0 * bound**2
        return lawson(_r, lambda w: w, t, terms)


#: |s| <= 1/5 in ``logistic_loss32`` (f = e or (e - 1)/2, split at e = 1/2)
LOG_S32 = 0.2 * (1 + 1e-9)


def logistic_loss32_coefficients():
    """``_cpu.logistic_loss32``'s polynomials, rounded to float32: P2..P6
    (e^r of degree 6) and R1..R3 (R of degree 2 on |s| <= 1/5)."""
    p = exp32_coefficients(6)
    r = log_r_coefficients(3, bound=LOG_S32)
    return [float(np.float32(c)) for c in p], [float(np.float32(c)) for c in r]


def _horner(c, x):
    """c[0] + c[1] x + c[2] x^2 + ... in the working precision (mpmath's
    polyval warns about its coefficient order from mpmath 1.4 on, and its
    ``asc`` argument does not exist in 1.3)."""
    acc = mpmath.mpf(0)
    for ck in reversed(c):
        acc = acc * x + ck
    return acc


def exp32_error(c, points=20001):
    """max |(1 + r + r^2 Q(r)) / e^r - 1| on a grid of |r| <= ln2/2, Q with
    coefficients c, evaluated in mpmath (the polynomial's own error)."""
    with mpmath.workdps(50):
        worst = mpmath.mpf(0)
        for r in np.linspace(-EXP_R, EXP_R, points):
            r = mpmath.mpf(float(r))
            q = _horner(c, r)
            worst = max(worst, abs((1 + r + r * r * q) / mpmath.exp(r) - 1))
        return float(worst)


def log_r_error(c, points=20001, bound=LOG_S):
    """max |(2s + s w R(w)) / (2 atanh s) - 1| on a grid of 0 < s <= bound."""
    with mpmath.workdps(50):
        worst = mpmath.mpf(0)
        for s in np.linspace(1e-6, bound, points):
            s = mpmath.mpf(float(s))
            w = s * s
            approx = 2 * s + s * w * _horner(c, w)
            worst = max(worst, abs(approx / (2 * mpmath.atanh(s)) - 1))
        return float(worst)


if __name__ == "__main__":  # pragma: no cover
    for name, c, err in (("X2..X7", exp32_coefficients(), exp32_error),
                         ("W1..W4", log_r_coefficients(), log_r_error)):
        print(name, [repr(x) for x in c], f"relative error 2^{math.log2(err(c)):.2f}")
    p32, r32 = logistic_loss32_coefficients()
    print("P2..P6 (float32)", p32, f"relative error 2^{math.log2(exp32_error(p32)):.2f}")
    print("R1..R3 (float32)", r32,
          f"relative error 2^{math.log2(log_r_error(r32, bound=LOG_S32)):.2f}")
