"""Multiclass (softmax) losses: value and gradient of one row of scores.

Every row formula has one signature,

    f(x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf) -> value (float64)

x: the row of scores (1-D, length C, float32 or float64); y: the integer label
(0 when the loss has none); t: the target row (length C, or length 0 when the
loss takes labels); w: the per-class weight vector (length C; ones when the
caller gave none); p0..p3: the loss's parameters as float64 (see
``catalog``); gdiv: the gradient divisor (1 for "sum"/"none", the mean's
denominator otherwise); g: the gradient row to write (same length as x, may be
x itself: every formula reads x[j] before it writes g[j], and reads x[y]
before the loop); sg: write g or not; buf: float64 scratch of
``scratch_size(C)`` elements (the CPU driver's block buffers, one per chunk
of rows). The value returned is the row's loss (what ``reduction="none"``
reports), undivided.

All arithmetic is float64 whatever the data's dtype; float32 results are
rounded once at the store. The exponentials, logs and their kin are the
primitives of ``fastloss.math`` (branch-free polynomials on the CPU, so the
row loops vectorize; libdevice on CUDA); float32 data uses ``exp32``
(relative error < 2^-46, invisible after rounding to float32), float64 data
``exp`` with the rounding of x_j - m corrected (``exp_gap``): a compile-time
switch (``is_f64``).

The formulas are assembled from per-element pieces that a block-per-row GPU
kernel reuses unchanged (fastloss/cuda):

- ``lse_step`` / ``lse_merge`` / ``lse_others``: the online max-and-sum
  (Milakov & Gimelshein, "Online normalizer calculation for softmax", 2018),
  in a state ``(m, s, c, k)``: m the running maximum, ``s + c`` the
  compensated sum of e^(x_j - m) over the elements *below* m, k the number of
  elements equal to m. Keeping the maximal terms (each exactly 1) out of the
  sum gives Blanchard, Higham & Higham's "sum of the other terms", so that
  log-sum-exp is ``m + log1p(s + c + k - 1)`` (Algorithm 4.1 of "Accurately
  computing the log-sum-exp and softmax functions", IMA J. Numer. Anal. 41,
  2021) and ``nll = (m - x_y) + log1p(others)``: both terms >= 0, nothing
  cancels. A thread runs ``lse_step`` over its elements, threads combine with
  ``lse_merge``.
- ``exp_gap(v, m, exact)`` / ``softmax_elem(v, m, denom, exact)``:
  e^(x_j - m) (the maxima and +inf give exactly 1; float64 data corrects the
  rounding of x_j - m) and p_j = e^(x_j - m) / (1 + others).
- ``ce_grad_elem``, ``focal_grad_elem``, ``margin_elem``, ``cce_elem``,
  ``kl_elem``: the per-element gradient (and value term) of each loss, given
  the row scalars computed once per row.
- ``two_sum_add``: branch-free compensated addition (Knuth's TwoSum), used for
  every per-row sum, so float64 rows of 10^5 classes keep full accuracy.

The CPU row driver (``fastloss.cpu.rowwise``) runs pass 1 (``row_lse``) in
blocks of ``LSE_BLOCK`` elements: the block's maximum, the running state
rescaled at most once per block, the block's terms into an L1 buffer summed
pairwise (float64 data: with TwoSum), every loop branch-free and vectorized,
the order of additions fixed by the row length. Pass 2 (the gradient) is one
vectorized loop; for float32 cross entropy with labels it reuses pass 1's
terms (``softmax_kept``: one multiplication per element, no second
exponential). A row is read at most twice.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastloss import math as fmath
from fastloss._config import JIT
from fastloss.math import xmul
from fastloss.math._cpu import CPU_JIT
from fastloss.reduce import block_sum

# Scalar functions of the row loops: the primitives of fastloss.math
# (branch-free polynomials that vectorize on the CPU, libdevice on CUDA).
exp = fmath.exp
exp32 = fmath.exp32  # e^x to 2^-46: float32 data only
expm1 = fmath.expm1
log = fmath.log
log1p = fmath.log1p

#: elements per block of the CPU row passes (a power of two): block max, then
#: the block's terms into an L1-resident buffer, summed pairwise
LSE_BLOCK = 512
#: float64 scratch elements every row formula may use (``buf``): 3 block
#: buffers; ``scratch_size(C)`` adds room to keep a row's terms
SCRATCH = 3 * LSE_BLOCK

_INF = math.inf


# --------------------------------------------------------------------------
# per-element pieces (shared with a CUDA block-per-row kernel)


@njit(**JIT)
def two_sum_add(s, c, v):
    """Add v to the compensated sum s + c (TwoSum, branch-free); returns (s, c).
    Once s is inf or NaN, c is meaningless and ``s`` alone is the sum."""
    t = s + v
    z = t - s
    c += (s - (t - z)) + (v - z)
    return t, c


@njit(**JIT)
def lse_step(m, s, c, k, v, exact):
    """One online log-sum-exp update with element v (see the module doc);
    ``exact`` as in ``exp_gap``."""
    if v > m:
        f = exp_gap(m, v, exact)  # m = -inf: 0
        s, c = two_sum_add(s, c, k)
        s *= f
        c *= f
        m = v
        k = 1.0
    elif v == m:
        k += 1.0
    else:  # v < m, or NaN (which then reaches s)
        s, c = two_sum_add(s, c, exp_gap(v, m, exact))
    return m, s, c, k


@njit(**JIT)
def lse_merge(m1, s1, c1, k1, m2, s2, c2, k2, exact):
    """Combine two online states (for a tree reduction over threads)."""
    if m2 > m1:
        m1, s1, c1, k1, m2, s2, c2, k2 = m2, s2, c2, k2, m1, s1, c1, k1
    if m1 > m2:
        f = exp_gap(m2, m1, exact)
        t, tc = two_sum_add(s2, c2, k2)
        s1, c1 = two_sum_add(s1, c1, t * f)
        c1 += tc * f
        return m1, s1, c1, k1
    s1, c1 = two_sum_add(s1, c1, s2)
    return m1, s1, c1 + c2, k1 + k2


@njit(**JIT)
def lse_others(s, c, k):
    """sum_{j != argmax} e^(x_j - m) from an online state."""
    if math.isfinite(s):
        s = s + c
    return s + (k - 1.0)


def is_f64(x):  # pragma: no cover - replaced by the overload
    """True (a compile-time constant) when the array x holds float64."""
    raise NotImplementedError


@overload(is_f64, jit_options=JIT)
def _is_f64(x):
    if getattr(x, "dtype", None) == types.float64:
        return lambda x: True
    return lambda x: False


@njit(**CPU_JIT)
def exp_gap(v, m, exact):
    """e^(v - m) for v <= m: exactly 1 at v == m (also v = m = +inf), 0 at
    v = -inf. With ``exact`` (float64 data) the rounding error of v - m is
    recovered by TwoSum and applied to first order, e^d (1 + err); otherwise
    the float64 difference of float32 data is already (nearly) exact. Without
    it the relative error of e^(v - m) would grow like |v - m| ulps, and
    float32 data gets the cheaper ``exp32`` (relative error < 2^-46, which
    the final rounding to float32 does not see). Branch-free (selects), so a
    loop calling it vectorizes."""
    d = v - m
    if not exact:  # a compile-time constant in the kernels (``is_f64``)
        e = exp32(d)
    else:
        e = exp(d)
        bv = d - v
        err = (v - (d - bv)) + (-m - bv)
        ec = e + e * err
        e = ec if e != 0.0 else e  # err is NaN at d = -inf
    return 1.0 if v == m else e


@njit(**CPU_JIT)
def softmax_elem(v, m, denom, exact):
    """p_j = e^(v - m) / denom (``exp_gap``)."""
    return exp_gap(v, m, exact) / denom


@njit(**JIT)
def gap(v, m):
    """m - v >= 0, the distance below the row maximum (0 for v == m, also at
    m = v = +inf; +inf for v = -inf)."""
    return 0.0 if v == m else m - v


@njit(**JIT)
def ce_grad_elem(p, wj, a, b):
    """Cross entropy gradient away from the label: a p_j - b w_j."""
    return a * p - xmul(b, wj)


@njit(**JIT)
def focal_grad_elem(p, k):
    """Softmax focal gradient away from the label: K p_j."""
    return k * p


@njit(**JIT)
def margin_elem(h, wy, pw, c):
    """Multi-margin term of one j != y: (value w/o weight, gradient) for the
    hinge h = margin - x_y + x_j, power pw (1 or 2), C classes."""
    if h > 0.0:
        if pw == 1.0:
            return h, wy / c
        return h * h, 2.0 * wy * h / c
    if h <= 0.0:
        return 0.0, 0.0
    return h, h  # NaN


@njit(**JIT)
def cce_elem(v, t):
    """Categorical cross entropy of one class: (-t log x, -t / x), 0 log 0 = 0."""
    if t == 0.0 and not math.isnan(v):
        return 0.0, 0.0
    return -t * log(v), -t / v


@njit(**JIT)
def kl_elem(v, t, log_target):
    """KL term of one class: (t (log t - x), -t), or with log targets
    (e^t (t - x), -e^t); 0 log 0 = 0 and a zero target contributes 0 even
    against x = -inf."""
    if log_target:
        et = exp(t)
        if et == 0.0 and not math.isnan(v):
            return 0.0, -0.0
        return et * (t - v), -et
    if t == 0.0 and not math.isnan(v):
        return 0.0, -0.0
    return t * (log(t) - v), -t


# --------------------------------------------------------------------------
# row pieces used by the CPU driver


@njit(**JIT)
def block_width(n):
    """Width of the CPU row blocks for rows of n elements: LSE_BLOCK, or the
    smallest power of two >= n for shorter rows."""
    w = 1
    while w < n and w < LSE_BLOCK:
        w *= 2
    return w


def scratch_size(c):
    """float64 scratch (``buf``) a row formula needs for rows of c elements:
    the block buffers, then the row's terms and its blocks' maxima
    (``row_lse(..., keep=True)``)."""
    return SCRATCH + c + c // LSE_BLOCK + 1


@njit(**JIT)
def _block_max(xb, mb, width):
    """max of xb[0:width] (width a power of two; NaN may or may not win),
    by pairwise passes into mb: each pass is a vectorizable elementwise
    loop (a running max is a loop-carried dependence LLVM does not
    vectorize without fast-math)."""
    if width == 1:
        return xb[0]
    h = width >> 1
    lo = xb[:h]
    hi = xb[h:width]
    ml = mb[:h]
    for j in range(h):
        u = lo[j]
        z = hi[j]
        ml[j] = z if z > u else u
    h >>= 1
    while h > 0:
        lo = mb[:h]
        hi = mb[h:2 * h]
        for j in range(h):
            u = lo[j]
            z = hi[j]
            lo[j] = z if z > u else u
        h >>= 1
    return mb[0]


@njit(**JIT)
def _pair_sum(v, width):
    """Pairwise sum of v[0:width] (a power of two), in place, in a fixed
    order; each pass vectorizes. Used for float32 data, whose terms are
    summed in float64 without compensation (see ``row_lse``)."""
    h = width >> 1
    while h > 0:
        lo = v[:h]
        hi = v[h:2 * h]
        for j in range(h):
            lo[j] = lo[j] + hi[j]
        h >>= 1
    return v[0]


@njit(**JIT)
def row_lse(x, buf, keep):
    """Pass 1 over a row: (m, others) with lse = m + log1p(others).

    Blocked form of the online algorithm: per block of ``block_width``
    elements (the block is in L1 cache, so the row is still read once from
    memory) the block's maximum (pairwise), the running state rescaled if
    that maximum is new, then the block's terms e^(x_j - m) (0 for the
    elements equal to m, which are counted in k) into a buffer that is
    summed pairwise. Every loop over the block is branch-free and vectorizes;
    the order of every addition depends on the row length only.

    float64 data: e^(x_j - m) corrected for the rounding of x_j - m
    (``exp_gap``), the buffer summed with TwoSum (``reduce.block_sum``) and
    the blocks added with TwoSum: the sum is accurate to a few ulps whatever
    the row length. float32 data: plain float64 additions within a block
    (the blocks are still added with TwoSum). The terms are positive, so the
    relative error of the sum is at most about (log2(LSE_BLOCK) + 2) * 2^-53
    plus ``exp32``'s 2^-46 per term, ~2^-45 whatever n: invisible after the
    final rounding to float32 (2^-24), so float32 results keep their
    <= 1 ulp.

    With ``keep`` the terms e^(x_j - m_b) (1 at m_b), m_b the running
    maximum after x_j's block, are also stored in buf[SCRATCH:SCRATCH + n]
    and the m_b in buf[SCRATCH + n:] (one per block), so that a gradient
    pass gets e^(x_j - m) = e^(x_j - m_b) e^(m_b - m) without a second
    exponential per element (``softmax_kept``).

    ``buf``: float64 scratch of ``SCRATCH`` elements, ``scratch_size(n)``
    with ``keep``."""
    n = x.size
    ex = is_f64(x)
    wd = block_width(n)
    xb = buf[:wd]
    eb = buf[wd:2 * wd]
    cb = buf[2 * wd:3 * wd]
    m = -_INF
    s = 0.0
    c = 0.0
    k = 0.0
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        xs = x[b0:b0 + nb]
        for j in range(nb):
            xb[j] = np.float64(xs[j])
        for j in range(nb, wd):
            xb[j] = -_INF
        bm = _block_max(xb, eb, wd)
        if bm > m:
            f = exp_gap(m, bm, ex)  # m = -inf: 0
            s, c = two_sum_add(s, c, k)
            s *= f
            c *= f
            m = bm
            k = 0.0
        kc = 0
        if keep:
            ks = buf[SCRATCH + b0:SCRATCH + b0 + nb]
            buf[SCRATCH + n + b0 // wd] = m
            for j in range(nb):
                v = xb[j]
                tie = v == m
                kc += 1 if tie else 0
                e = exp_gap(v, m, ex)
                ks[j] = e
                eb[j] = 0.0 if tie else e
        else:
            for j in range(nb):
                v = xb[j]
                tie = v == m
                kc += 1 if tie else 0
                e = exp_gap(v, m, ex)
                eb[j] = 0.0 if tie else e
        for j in range(nb, wd):
            eb[j] = 0.0
        k += np.float64(kc)
        if ex:
            for j in range(wd):
                cb[j] = 0.0
            bs, bc = block_sum(eb, cb, wd)
            s, c = two_sum_add(s, c, bs)
            c += bc
        else:
            s, c = two_sum_add(s, c, _pair_sum(eb, wd))
    return m, lse_others(s, c, k)


@njit(**JIT)
def _nll_parts(x, y, buf, keep):
    """(m, others, L1 = log1p(others), nll = (m - x_y) + L1) of a row."""
    m, o = row_lse(x, buf, keep)
    l1 = log1p(o)
    xy = np.float64(x[y])
    return m, o, l1, gap(xy, m) + l1


@njit(**JIT)
def softmax_kept(x, buf, g, m, denom, a, gdiv):
    """g[j] = a e^(x_j - m) / denom / gdiv from the terms kept by
    ``row_lse(x, buf, True)`` (float32 data): per block one factor
    e^(m_b - m) a / (denom gdiv), then one multiplication per element, a
    vectorized loop that does not read x (so g may be x). Relative error a
    few 2^-53 plus ``exp32``'s 2^-46: invisible after rounding to float32."""
    n = x.size
    wd = block_width(n)
    r = a / (denom * gdiv)
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        f = exp_gap(buf[SCRATCH + n + b0 // wd], m, False) * r
        ks = buf[SCRATCH + b0:SCRATCH + b0 + nb]
        gs = g[b0:b0 + nb]
        for j in range(nb):
            gs[j] = ks[j] * f


@njit(**JIT)
def softmax_scaled(x, g, m, denom, a, gdiv, lo, hi):
    """g[j] = a e^(x_j - m) / denom / gdiv for lo <= j < hi: the softmax
    part of a gradient, one vectorizable loop. float64 data: the divisions
    as written (each correctly rounded); float32 data: one multiplication by
    a / (denom gdiv) (relative error a few 2^-53, invisible after rounding
    to float32)."""
    ex = is_f64(x)
    xs = x[lo:hi]
    gs = g[lo:hi]
    if ex:
        for j in range(hi - lo):
            gs[j] = (a * (exp_gap(np.float64(xs[j]), m, ex) / denom)) / gdiv
    else:
        r = a / (denom * gdiv)
        for j in range(hi - lo):
            gs[j] = exp_gap(np.float64(xs[j]), m, ex) * r


# --------------------------------------------------------------------------
# row formulas


@njit(**JIT)
def cross_entropy(x, y, t, w, eps, z, p2, wsum, gdiv, g, sg, buf):
    """Cross entropy of logits x with an integer label y (PyTorch semantics):

        (1 - eps) w_y (lse(x) - x_y) + (eps / C) sum_c w_c (lse(x) - x_c)
            + z lse(x)^2

    (label smoothing eps, class weights w, z-loss z as in PaLM); gradient
    A p_j - B_j with p = softmax(x), A = (1 - eps) w_y + (eps/C) sum(w)
    + 2 z lse, B_j = (eps/C) w_j + (1 - eps) w_y [j = y].

    Stable form: lse = m + log1p(others) (Blanchard, Higham & Higham 2021,
    Alg. 4.1), lse - x_c = (m - x_c) + log1p(others) (two terms >= 0), and at
    the label p_y - 1 = expm1(-nll), never a difference. A -inf logit gives
    p = 0 and contributes 0 unless smoothing puts weight on it (then the loss
    is +inf, as it should be). ``wsum`` (p3) is sum(w), computed by the
    caller."""
    n = x.size
    ex = is_f64(x)
    ec = eps / n
    # float32 data, plain gradient: keep pass 1's terms (no second exp)
    keep = sg and ec == 0.0 and not ex
    m, o, l1, nll = _nll_parts(x, y, buf, keep)
    lse = m + l1
    wy = np.float64(w[y])
    a1 = wy * (1.0 - eps)
    a2 = ec * wsum
    if z != 0.0:
        a2 += 2.0 * z * lse
    a = a1 + a2
    denom = 1.0 + o
    sm = 0.0
    smc = 0.0
    if eps != 0.0:
        # smoothing term sum_c w_c (m - x_c), compensated, block by block
        # (before the gradient: g may be x itself)
        wd = block_width(n)
        eb = buf[:wd]
        cb = buf[wd:2 * wd]
        for b0 in range(0, n, wd):
            nb = min(wd, n - b0)
            xs = x[b0:b0 + nb]
            ws = w[b0:b0 + nb]
            for j in range(nb):
                eb[j] = xmul(np.float64(ws[j]), gap(np.float64(xs[j]), m))
                cb[j] = 0.0
            for j in range(nb, wd):
                eb[j] = 0.0
                cb[j] = 0.0
            bs, bc = block_sum(eb, cb, wd)
            sm, smc = two_sum_add(sm, smc, bs)
            smc += bc
    if sg:
        # gradient A p_j - (eps/C) w_j: one vectorizable loop; the label's
        # entry is overwritten below
        if keep:
            softmax_kept(x, buf, g, m, denom, a, gdiv)
        elif ec == 0.0:
            softmax_scaled(x, g, m, denom, a, gdiv, 0, n)
        else:
            for j in range(n):
                p = exp_gap(np.float64(x[j]), m, ex) / denom
                g[j] = (a * p - ec * np.float64(w[j])) / gdiv
    if sg:
        py = exp(-nll)
        g[y] = (xmul(a1, expm1(-nll)) + a2 * py - ec * wy) / gdiv
    val = xmul(a1, nll)
    if eps != 0.0:
        if math.isfinite(sm):
            sm += smc
        val += ec * (sm + xmul(wsum, l1))
    if z != 0.0:
        val += z * lse * lse
    return val


@njit(**JIT)
def cross_entropy_probs(x, y, t, w, eps, z, p2, p3, gdiv, g, sg, buf):
    """Cross entropy of logits x with a probability target row t:

        sum_c w_c t'_c (lse(x) - x_c) + z lse(x)^2,  t' = (1 - eps) t + eps/C

    gradient (T + 2 z lse) p_j - w_j t'_j with T = sum_c w_c t'_c.

    Stable form: sum_c w_c t'_c (m - x_c) + T log1p(others), all terms >= 0;
    a class with t' = 0 and x = -inf contributes 0 (0 log 0 = 0)."""
    n = x.size
    m, o = row_lse(x, buf, False)
    l1 = log1p(o)
    lse = m + l1
    ec = eps / n
    tt = 0.0
    ttc = 0.0
    for j in range(n):
        tj = np.float64(t[j]) * (1.0 - eps) + ec
        tt, ttc = two_sum_add(tt, ttc, np.float64(w[j]) * tj)
    if math.isfinite(tt):
        tt += ttc
    a = tt
    if z != 0.0:
        a += 2.0 * z * lse
    denom = 1.0 + o
    sv = 0.0
    svc = 0.0
    for j in range(n):
        v = np.float64(x[j])
        wt = np.float64(w[j]) * (np.float64(t[j]) * (1.0 - eps) + ec)
        sv, svc = two_sum_add(sv, svc, xmul(wt, gap(v, m)))
        if sg:
            p = softmax_elem(v, m, denom, is_f64(x))
            g[j] = (a * p - wt) / gdiv
    if math.isfinite(sv):
        sv += svc
    val = sv + xmul(tt, l1)
    if z != 0.0:
        val += z * lse * lse
    return val


@njit(**JIT)
def nll(x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf):
    """Negative log-likelihood of log-probabilities x: -w_y x_y; gradient
    -w_y at the label, 0 elsewhere (PyTorch's nll_loss)."""
    wy = np.float64(w[y])
    val = -xmul(wy, np.float64(x[y]))
    if sg:
        for j in range(x.size):
            g[j] = 0.0
        g[y] = -wy / gdiv
    return val


@njit(**JIT)
def categorical_cross_entropy(x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf):
    """Cross entropy of probabilities x (rows summing to 1) with target
    probabilities t: -sum_c t_c log x_c; gradient -t_c / x_c, with
    0 log 0 = 0 and a zero gradient where t_c = 0 (also at x_c = 0). No
    clamping: x_c = 0 with t_c > 0 gives +inf and a -inf gradient."""
    sv = 0.0
    svc = 0.0
    for j in range(x.size):
        vj, gj = cce_elem(np.float64(x[j]), np.float64(t[j]))
        sv, svc = two_sum_add(sv, svc, vj)
        if sg:
            g[j] = gj / gdiv
    if math.isfinite(sv):
        sv += svc
    return sv


@njit(**JIT)
def kl_div(x, y, t, w, log_target, p1, p2, p3, gdiv, g, sg, buf):
    """Kullback-Leibler divergence of log-probabilities x from targets t:
    sum_c t_c (log t_c - x_c) (0 log 0 = 0), gradient -t_c; with
    ``log_target`` (p0 = 1) the targets are log-probabilities:
    sum_c e^(t_c) (t_c - x_c), gradient -e^(t_c) (PyTorch's kl_div).

    The term t (log t - x) is ill-conditioned where log t ~ x (the exact
    difference cancels); its error is cond * eps (LOSSES.md, KL). The
    gradient at t = 0 is exactly 0 (pytorch#89558)."""
    lt = log_target != 0.0
    sv = 0.0
    svc = 0.0
    for j in range(x.size):
        vj, gj = kl_elem(np.float64(x[j]), np.float64(t[j]), lt)
        sv, svc = two_sum_add(sv, svc, vj)
        if sg:
            g[j] = gj / gdiv
    if math.isfinite(sv):
        sv += svc
    return sv


@njit(**JIT)
def softmax_focal(x, y, t, alpha, gamma, p1, p2, p3, gdiv, g, sg, buf):
    """Softmax focal loss (Lin et al., ICCV 2017): -alpha_y (1 - p_y)^gamma
    log p_y with p = softmax(x); gradient K (p_j - [j = y]) with
    K = alpha_y q^gamma (1 + gamma p_y nll / q), q = 1 - p_y, nll = -log p_y.

    Stable form: nll from the log-sum-exp above, q = -expm1(-nll) (no
    1 - p_y cancellation), nll / q -> 1 as q -> 0 (so gamma < 1 gives no
    0 * inf), and p_y nll / q = 0 when p_y = 0 (x_y = -inf: loss +inf,
    gradient finite)."""
    n = x.size
    m, o, l1, nl = _nll_parts(x, y, buf, False)
    ay = np.float64(alpha[y])
    q = -expm1(-nl)
    py = exp(-nl)
    mod = math.pow(q, gamma)
    r = nl / q if q > 0.0 else 1.0
    kk = xmul(ay, mod) * (1.0 + gamma * xmul(py, r))
    if sg:
        denom = 1.0 + o
        for j in range(n):
            p = softmax_elem(np.float64(x[j]), m, denom, is_f64(x))
            g[j] = focal_grad_elem(p, kk) / gdiv
        g[y] = -(kk * q) / gdiv
    return xmul(xmul(ay, mod), nl)


@njit(**JIT)
def multi_margin(x, y, t, w, margin, pw, p2, p3, gdiv, g, sg, buf):
    """Multi-class hinge (PyTorch's multi_margin_loss):
    sum_{j != y} w_y max(0, margin - x_y + x_j)^p / C, p in {1, 2};
    gradient w_y p h_j^(p-1) / C at j != y where h_j > 0, minus their sum at
    y."""
    n = x.size
    xy = np.float64(x[y])
    wy = np.float64(w[y])
    cn = np.float64(n)
    base = margin - xy
    sv = 0.0
    svc = 0.0
    sg_ = 0.0
    sgc = 0.0
    for j in range(n):
        if j == y:
            continue
        vj, gj = margin_elem(base + np.float64(x[j]), wy, pw, cn)
        sv, svc = two_sum_add(sv, svc, vj)
        if sg:
            sg_, sgc = two_sum_add(sg_, sgc, gj)
            g[j] = gj / gdiv
    if sg:
        if math.isfinite(sg_):
            sg_ += sgc
        g[y] = -sg_ / gdiv
    if math.isfinite(sv):
        sv += svc
    return xmul(wy, sv) / cn


#: row formulas in a fixed order; the CPU driver compiles one kernel per
#: (index, dtype), the index being a compile-time literal
ROW_FORMULAS = (
    cross_entropy,
    cross_entropy_probs,
    nll,
    categorical_cross_entropy,
    kl_div,
    softmax_focal,
    multi_margin,
)
