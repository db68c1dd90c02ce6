"""Argument grids for the accuracy tests (in the style of SciPy's
``special/_mptestutils.py``): log-spaced magnitudes with random mantissas
from a fixed seed, both signs, plus the special points of each domain.

Every array is built in the dtype under test, so the oracle sees exactly the
numbers the kernels see.
"""

from __future__ import annotations

import numpy as np

SEED = 20240611


def finfo(dtype):
    return np.finfo(np.dtype(dtype))


def tiny_sub(dtype):
    """Smallest positive subnormal."""
    return np.nextafter(np.dtype(dtype).type(0), np.dtype(dtype).type(1))


def magnitudes(dtype, n, seed=0, lo=None, hi=None):
    """n positive numbers, log-uniform from ``lo`` (default: the smallest
    subnormal) to ``hi`` (default: the largest finite number), random mantissas,
    sorted, plus the end points."""
    fi = finfo(dtype)
    t = np.dtype(dtype).type
    lo = tiny_sub(dtype) if lo is None else t(lo)
    hi = fi.max if hi is None else t(hi)
    rng = np.random.default_rng(SEED + seed)
    e = rng.uniform(np.log2(float(lo)), np.log2(float(hi)), n)
    m = np.exp2(e - np.floor(e)) * np.exp2(np.floor(e))  # mantissa in [1, 2)
    with np.errstate(over="ignore"):
        v = np.clip(m, float(lo), float(hi)).astype(dtype)
    ends = np.array([lo, hi, fi.tiny, fi.eps, 1.0], dtype=dtype)
    return np.unique(np.concatenate([v, ends]))


def signed(dtype, n, seed=0, lo=None, hi=None, special=True):
    """Both signs of ``magnitudes``; with ``special``: 0, -0, +-inf, NaN."""
    m = magnitudes(dtype, n, seed, lo, hi)
    parts = [m, -m]
    if special:
        parts.append(np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype=dtype))
    return np.concatenate(parts).astype(dtype)


def ordinary(dtype, n, scale=3.0, seed=1):
    """Ordinary inputs: normal(0, scale)."""
    rng = np.random.default_rng(SEED + 1000 + seed)
    return (rng.standard_normal(n) * scale).astype(dtype)


def probabilities(dtype, n, seed=0):
    """Probabilities from the smallest subnormal to 1 - eps/2: log-spaced
    near 0, and 1 - (log-spaced) near 1, plus 0, 1/2 and 1."""
    fi = finfo(dtype)
    t = np.dtype(dtype).type
    small = magnitudes(dtype, n // 2, seed, hi=0.5)
    rng = np.random.default_rng(SEED + 77 + seed)
    e = rng.uniform(np.log2(float(fi.epsneg)), -1.0, n - n // 2)
    near1 = (t(1) - np.exp2(e).astype(dtype)).astype(dtype)
    top = [t(1) - fi.epsneg, t(1) - 2 * fi.epsneg, t(1) - fi.eps]
    return np.unique(np.concatenate([small, near1, np.array(top + [0.0, 0.5, 1.0], dtype=dtype)]))


def adjacent(v, k=3):
    """v and its k neighbours on each side (same dtype)."""
    v = np.asarray(v)
    out = [v]
    up, dn = v.copy(), v.copy()
    for _ in range(k):
        up = np.nextafter(up, np.inf).astype(v.dtype)
        dn = np.nextafter(dn, -np.inf).astype(v.dtype)
        out += [up, dn]
    return np.concatenate(out)


def cross(xs, ys, dtype):
    """All pairs (x, y)."""
    X, Y = np.meshgrid(np.asarray(xs, dtype), np.asarray(ys, dtype), indexing="ij")
    return X.ravel().astype(dtype), Y.ravel().astype(dtype)


def cat(*pairs):
    xs = np.concatenate([p[0] for p in pairs])
    ys = np.concatenate([p[1] for p in pairs])
    return xs, ys
