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
primitives of ``fastloss.math`` (branch-free polynomials, so the CPU's row
loops vectorize; CUDA compiles the same ones); float32 data uses ``exp32``
(x - m <= 0 only, relative error < 2^-34, invisible after rounding to
float32), float64 data
``exp`` with the rounding of x_j - m corrected (``exp_gap``): a compile-time
switch (``is_f64``). On the CPU, float32 ``cross_entropy`` with labels in
the scope of ``fastloss.cpu.rowlanes`` (256 to 2^17 classes, no smoothing,
no z-loss) computes its softmax terms on float32 lanes instead
(``ce_row32``, ``math._cpu.exp_gap32``), with the row scalars, value and
label entry from this module's code; so does float32 ``cross_entropy``
with probability targets in that scope, with or without class weights,
smoothing and z-loss (``ce_probs_row32``).

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
- ``dd_*``, ``exp_gap_dd``: double-double pairs (fma products, TwoSum sums)
  for the gradients that are differences of terms that may cancel: cross
  entropy with smoothing, z-loss or weights and with probability targets
  (float64 data: ``ce_grad_dd``, ``cross_entropy_probs``), and the
  multi-margin hinge (``margin_elem``, both dtypes). Each such component
  is rounded once (docs/ACCURACY.md, "Accuracy of the multiclass losses").

The CPU row driver (``fastloss.cpu.rowwise``) runs pass 1 (``row_lse``) in
blocks of ``LSE_BLOCK`` elements: the block's maximum, the running state
rescaled at most once per block, the block's terms into an L1 buffer summed
pairwise (float64 data: with TwoSum), every loop branch-free and vectorized,
the order of additions fixed by the row length. Pass 2 (the gradient) is one
vectorized loop; cross entropy with labels reuses pass 1's terms instead of
a second exponential per element (float32: ``softmax_kept``, one
multiplication per element; float64: pairs, ``ce_grad_dd``). A row is read
at most twice.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastloss import math as fmath
from fastloss._config import JIT
from fastloss.math import xmul
from fastloss.math._cpu import CPU_JIT, EXP_DD_LO, exp_dd, log1p_dd, log_dd
from fastloss.math._intrin import bits_f32, bits_f64, f32_bits, f64_bits, fma, wide_vectors
from fastloss.reduce import block_sum

# Scalar functions of the row loops: the primitives of fastloss.math
# (branch-free polynomials that vectorize on the CPU; the same ones on CUDA).
exp = fmath.exp
exp32 = fmath.exp32  # e^x, x <= 0, to 2^-34: float32 data only
expm1 = fmath.expm1
log = fmath.log
log1p = fmath.log1p

#: elements per block of the CPU row passes (a power of two): block max, then
#: the block's terms into an L1-resident buffer, summed pairwise
LSE_BLOCK = 512
#: float64 scratch elements every row formula may use (``buf``): 4 block
#: buffers; ``scratch_size(C)`` adds room to keep a row's terms
SCRATCH = 4 * LSE_BLOCK

_INF = math.inf


# --------------------------------------------------------------------------
# per-element pieces (shared with a CUDA block-per-row kernel)


@njit(**JIT)
def row_dead(x, r):
    """Whether row r of the 2-D x has every logit -inf: its softmax, and a
    softmax loss, are undefined there (the public call raises). The CPU's
    ``cpu.rowwise.first_dead_row`` and the GPU's ``cuda.checks`` (through
    its ``py_func``) test a row with it; it stops at the first logit that is
    not -inf."""
    for j in range(x.shape[1]):
        if x[r, j] != -math.inf:
            return False
    return True


@njit(**JIT)
def two_sum_add(s, c, v):
    """Add v to the compensated sum s + c (TwoSum, branch-free); returns (s, c).
    Once s is inf or NaN, c is meaningless and ``s`` alone is the sum."""
    t = s + v
    z = t - s
    c += (s - (t - z)) + (v - z)
    return t, c


# double-double pieces (float64 data, where a gradient is a difference of
# terms that may cancel). A pair (h, l) stands for h + l; ``dd_fix`` keeps a
# pair meaningful when h is inf or NaN (then l, which may be NaN from inf -
# inf, is dropped), so the special values behave as in plain arithmetic.


@njit(**JIT)
def fold_block(vb, vc, nb, wd, s, c):
    """(s, c) plus the sum of a block's terms vb[:nb] (with their error terms
    vc[:nb]): the tails vb[nb:wd], vc[nb:wd] zeroed, the block summed
    pairwise with TwoSum (``reduce.block_sum``, width wd a power of two) and
    added to the running pair with TwoSum."""
    for j in range(nb, wd):
        vb[j] = 0.0
        vc[j] = 0.0
    bs, bc = block_sum(vb, vc, wd)
    s, c = two_sum_add(s, c, bs)
    return s, c + bc


@njit(**CPU_JIT)
def dd_fix(h, l):
    """Renormalize h + l (|l| <= ulp(h) after it); (h, 0) if the sum is not
    finite."""
    s = h + l
    e = l - (s - h)
    ok = abs(s) < _INF
    return (s if ok else h), (e if ok else 0.0)


@njit(**CPU_JIT)
def dd_mul(ah, al, bh, bl):
    """(ah + al)(bh + bl) to ~2^-104 relative (fma for the exact product of
    the heads)."""
    p = ah * bh
    return dd_fix(p, fma(ah, bh, -p) + (ah * bl + al * bh))


@njit(**CPU_JIT)
def dd_add(ah, al, bh, bl):
    """(ah + al) + (bh + bl) (TwoSum of the heads)."""
    t = ah + bh
    z = t - ah
    return dd_fix(t, ((ah - (t - z)) + (bh - z)) + (al + bl))


@njit(**CPU_JIT)
def dd_recip(bh, bl):
    """1 / (bh + bl) as a pair."""
    r = 1.0 / bh
    return dd_fix(r, (fma(-r, bh, 1.0) - r * bl) * r)


@njit(**CPU_JIT)
def dd_div(ah, b):
    """ah / b as a pair (ah, b doubles)."""
    q = ah / b
    return dd_fix(q, fma(-q, b, ah) / b)


@njit(**CPU_JIT)
def dd_quot(ah, al, bh, bl):
    """(ah + al) / (bh + bl) as a pair, for a normal bh: q = ah r, r = 1/bh,
    corrected by its residual (exact by fma) times r; one division. Where r
    is subnormal (|bh| > 2^1022) it has >= 50 bits, q and the correction
    each lose <= 2 of them, and the pair is still good to ~2^-100 (a
    reciprocal pair, ``dd_recip``, would not be: its low part would be
    below the subnormal spacing)."""
    r = 1.0 / bh
    q = ah * r
    return dd_fix(q, ((fma(-q, bh, ah) + al) - q * bl) * r)


@njit(**CPU_JIT)
def dd_round(h, l):
    """h + l rounded once (h when l is not finite)."""
    r = h + l
    return r if abs(r) < _INF else h


#: ``exp_gap_dd`` returns e^(v - m) times 2^SCALE_BITS, so that no term
#: whose unscaled value is nonzero is subnormal (e^-745 2^64 > 2^-1012): a
#: subnormal e_j would carry its absolute rounding into a product F e_j with
#: F > 1. Below that (gaps 753 to 790) the scaled term is subnormal, its
#: rounding 2^-1139 unscaled, for products A p_j with A > 1
SCALE_BITS = 64.0
E_SCALE = 2.0 ** 64
E_UNSCALE = 2.0 ** -64


@njit(**CPU_JIT)
def unscale_ok(h):
    """True when h 2^-64 is exact (h normal and >= 2^-958, 0, inf or NaN):
    then a row factor takes the 2^-64 of the scaled terms, else the terms
    do (a tiny factor times a subnormal term underflows anyway)."""
    a = abs(h)
    return a >= 2.0 ** -958 or a == 0.0 or a != a


@njit(**CPU_JIT)
def exp_gap_dd(v, m):
    """e^(v - m) 2^SCALE_BITS, v <= m, as a pair to ~2^-56 relative: the
    double-double exponential of the rounded difference d, times 1 + err
    for its rounding error err (|err| <= 2^-53 |d|, so err^2 < 2^-86).
    Exactly (2^SCALE_BITS, 0) at v == m, (0, 0) for v - m < EXP_DD_LO = -790
    (where e^(v - m) 2^64 < 2^-1075 rounds to 0) and at -inf, NaN for NaN.
    Between -789 and -745 the scaled term is nonzero while e^(v - m) itself
    rounds to 0 (pass 1 sums 0 there): a gradient A p_j with A > 1 can still
    be a subnormal (A < 2^63 is covered; a scaled head below 2^-1022 is
    only as exact as its absolute rounding, 2^-1139 unscaled)."""
    d = v - m
    bv = d - v
    err = (v - (d - bv)) + (-m - bv)
    yh, yl, s1, s2 = exp_dd(d, SCALE_BITS)
    eh = (yh * s1) * s2
    el = (yl * s1) * s2 + eh * err
    # below EXP_DD_LO exp_dd clamps its argument (the result is 0 there)
    eh = eh if d >= EXP_DD_LO else 0.0
    el = el if eh != 0.0 else 0.0  # err is NaN at d = -inf
    tie = v == m
    eh = E_SCALE if tie else eh
    el = 0.0 if tie else el
    eh = eh if d == d or tie else d
    return eh, el


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
    float32 data gets the cheaper ``exp32`` (relative error < 2^-34, which
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


@njit(**CPU_JIT)
def term_dd(bh, bl, v, m):
    """b (m - v) as an unnormalized pair (head, tail) from the pair b = bh +
    bl, to ~2^-104 relative: the gap m - v exact as a pair (TwoSum), the
    product of the heads exact (fma). The head is ``xmul(bh, gap(v, m))``
    (0 for b = 0 at an infinite gap); the tail is 0 where either is not
    finite. The tails are summed apart (``block_sum``'s error terms), so no
    renormalization."""
    d = gap(v, m)
    u = d - m
    e = (m - (d - u)) + (-v - u)  # m - v = d + e exactly (TwoSum)
    p = xmul(bh, d)
    q = fma(bh, d, -p) + (bh * e + bl * d)
    return p, (q if abs(q) < _INF else 0.0)


@njit(**JIT)
def ce_grad_elem(p, wj, a, b):
    """Cross entropy gradient away from the label: a p_j - b w_j."""
    return a * p - xmul(b, wj)


@njit(**JIT)
def focal_grad_elem(p, k):
    """Softmax focal gradient away from the label: K p_j."""
    return k * p


@njit(**CPU_JIT)
def margin_elem(bh, bl, v, two, kh, kl):
    """Multi-margin term of one j != y, from base = margin - x_y as a pair
    (bh, bl), v = x_j and the gradient factor k = w_y p / C / gdiv as a pair:
    (vh, vl, dh, dl, gj) with vh + vl = h^p, dh + dl = d h^p / dh / p (h or
    1) and gj = k (dh + dl) rounded, for the hinge h = base + v (exact as a
    pair), p = 2 if ``two`` else 1; zeros where h <= 0, NaN for NaN.
    Branch-free (selects), so the block loop vectorizes."""
    hh = bh + v
    z = hh - bh
    hl = ((bh - (hh - z)) + (v - z)) + bl
    fin = abs(hh) < _INF
    hl = hl if fin else 0.0  # inf - inf in the TwoSum
    # renormalise (TwoSum): hh may cancel to 0 (or below |bl|) while hl
    # carries the hinge, e.g. margin 1 and x_y = x_j = 1.5e16 (h = 1)
    hs = hh + hl
    z = hs - hh
    hl = (hh - (hs - z)) + (hl - z)
    hh = hs
    hl = hl if fin else 0.0
    sq = hh * hh
    sql = fma(hh, hh, -sq) + 2.0 * hh * hl
    sql = sql if abs(sq) < _INF else 0.0
    vh = sq if two else hh
    vl = sql if two else hl
    dh = hh if two else 1.0
    dl = hl if two else 0.0
    gh = kh * dh
    gl = fma(kh, dh, -gh) + (kh * dl + kl * dh)
    gj = gh + gl
    gj = gj if abs(gj) < _INF else gh
    act = hh > 0.0
    nan = hh != hh
    vh = vh if act else (hh if nan else 0.0)
    vl = vl if act else 0.0
    dh = dh if act else (hh if nan else 0.0)
    dl = dl if act else 0.0
    gj = gj if act else (hh if nan else 0.0)
    return vh, vl, dh, dl, gj


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
    (``row_lse(..., keep=True)``), or the row's terms as pairs
    (softmax_focal's ``_focal_dd``)."""
    return SCRATCH + 2 * c + c // LSE_BLOCK + 1


def _order_key(v):  # pragma: no cover - replaced by the overload
    """An int64 whose signed order is the order of the float v (float32 or
    float64): its IEEE bits, the magnitude bits flipped when the sign bit is
    set (-0 < +0; a NaN with the sign bit clear is above +inf, one with it
    set below -inf). Its own inverse (``_key_float``)."""
    raise NotImplementedError


def _key_float(k, like):  # pragma: no cover - replaced by the overload
    """The float (of ``like``'s dtype, as float64) whose ``_order_key`` is k."""
    raise NotImplementedError


@overload(_order_key, jit_options=JIT)
def _order_key_ovl(v):
    if v == types.float32:
        # int32 keys: 16 lanes per 512-bit vector, not 8
        def impl(v):
            b = f32_bits(v)
            return b ^ ((b >> np.int32(31)) & np.int32(0x7FFFFFFF))
        return impl
    if v == types.float64:
        def impl(v):
            b = f64_bits(v)
            return b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFF)
        return impl
    return None


@overload(_key_float, jit_options=JIT)
def _key_float_ovl(k, like):
    if getattr(like, "dtype", None) == types.float32:
        def impl(k, like):
            b = np.int32(k)
            return np.float64(bits_f32(b ^ ((b >> np.int32(31)) & np.int32(0x7FFFFFFF))))
        return impl

    def impl(k, like):
        return bits_f64(k ^ ((k >> 63) & 0x7FFFFFFFFFFFFFFF))
    return impl


@njit(**JIT)
def _block_max(xs):
    """max of xs (non-empty, float32 or float64) as float64, from the data
    itself in one vectorized pass: a running maximum of the integer order
    keys (``_order_key``; LLVM vectorizes an integer max reduction, not a
    float one without fast-math). NaN may or may not win: a NaN in the row
    reaches the sum through its own term either way."""
    wide_vectors()
    mk = _order_key(xs[0])
    for j in range(xs.size):
        kj = _order_key(xs[j])
        mk = kj if kj > mk else mk
    return _key_float(mk, xs)


@njit(**JIT)
def _pair_sum(v, width):
    """Pairwise sum of v[0:width] (a power of two), in place, in a fixed
    order: radix-8 passes (each level of 8 a fixed pairwise tree, one
    vectorized loop per pass: 512 terms in two passes), then pairwise. The
    same binary tree of depth log2(width) as halving passes, so the same
    error bound, with fewer, longer loops. Used for float32 data, whose
    terms are summed in float64 without compensation (see ``row_lse``)."""
    wide_vectors()
    h = width
    while h >= 8:
        h >>= 3
        v0 = v[:h]
        v1 = v[h:2 * h]
        v2 = v[2 * h:3 * h]
        v3 = v[3 * h:4 * h]
        v4 = v[4 * h:5 * h]
        v5 = v[5 * h:6 * h]
        v6 = v[6 * h:7 * h]
        v7 = v[7 * h:8 * h]
        for j in range(h):
            v0[j] = ((v0[j] + v1[j]) + (v2[j] + v3[j])) + ((v4[j] + v5[j]) + (v6[j] + v7[j]))
    while h > 1:
        h >>= 1
        lo = v[:h]
        hi = v[h:2 * h]
        for j in range(h):
            lo[j] = lo[j] + hi[j]
    return v[0]


@njit(**JIT)
def row_lse(x, buf, keep):
    """Pass 1 over a row: (m, others) with lse = m + log1p(others)
    (``row_lse_state``, with the state's sum collapsed by ``lse_others``)."""
    m, s, c, k = row_lse_state(x, buf, keep)
    return m, lse_others(s, c, k)


@njit(**JIT)
def others_dd(s, c, k):
    """sum_{j != argmax} e^(x_j - m) from an online state, as a pair (the
    compensated sum s + c plus the k - 1 other maxima, without rounding)."""
    oh, ol = dd_add(s, c, k - 1.0, 0.0)
    return (oh, ol) if math.isfinite(s) else (s, 0.0)


@njit(**JIT)
def row_lse_state(x, buf, keep):
    """Pass 1 over a row: the online state (m, s, c, k) of the module doc,
    others = s + c + k - 1, lse = m + log1p(others).

    Blocked form of the online algorithm: per block of ``block_width``
    elements (the block is in L1 cache, so the row is still read once from
    memory) the block's maximum (``_block_max``: one pass over integer order
    keys, read from x itself), the running state rescaled if
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
    plus ``exp32``'s 2^-34 per term, ~2^-34 whatever n: invisible after the
    final rounding to float32 (2^-24), so float32 results keep their
    <= 1 ulp.

    With ``keep`` the terms e^(x_j - m_b) (1 at m_b), m_b the running
    maximum after x_j's block, are also stored in buf[SCRATCH:SCRATCH + n]
    and the m_b in buf[SCRATCH + n:] (one per block), so that a gradient
    pass gets e^(x_j - m) = e^(x_j - m_b) e^(m_b - m) without a second
    exponential per element (``softmax_kept``). float64 data computes its
    terms as pairs e^(x_j - m_b) 2^64 (``exp_gap_dd``; the summed term is
    the pair's rounded sum, unscaled) and keeps with ``keep`` the heads in
    buf[SCRATCH:SCRATCH + n], the tails in buf[SCRATCH + n:SCRATCH + 2n]
    and the m_b after them, for ``ce_grad_dd``.

    ``buf``: float64 scratch of ``SCRATCH`` elements, ``scratch_size(n)``
    with ``keep``."""
    wide_vectors()
    n = x.size
    ex = is_f64(x)
    wd = block_width(n)
    eb = buf[wd:2 * wd]
    cb = buf[2 * wd:3 * wd]
    m = -_INF
    s = 0.0
    c = 0.0
    k = 0.0
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        xs = x[b0:b0 + nb]
        bm = _block_max(xs)
        if bm > m:
            if m != -_INF:  # the first block: nothing to rescale
                f = exp_gap(m, bm, ex)
                s, c = two_sum_add(s, c, k)
                s *= f
                c *= f
            m = bm
            k = 0.0
        # the elements equal to m (counted in k, their terms kept out of
        # the sum): only in a block that holds the maximum, counted in a
        # pass of their own, so that the exponential loop below has no
        # loop-carried reduction (LLVM would interleave it, and the
        # polynomial's constants would no longer fit in registers)
        kc = 0
        if bm == m:
            for j in range(nb):
                kc += 1 if np.float64(xs[j]) == m else 0
        if ex:
            # float64: e^(x_j - m) 2^64 as a pair (``exp_gap_dd``), the
            # summed term its rounded sum unscaled; with ``keep`` the pairs
            # are kept for the gradient (``ce_grad_dd``)
            if keep:
                kh = buf[SCRATCH + b0:SCRATCH + b0 + nb]
                kl = buf[SCRATCH + n + b0:SCRATCH + n + b0 + nb]
                buf[SCRATCH + 2 * n + b0 // wd] = m
                for j in range(nb):
                    v = np.float64(xs[j])
                    eh, el = exp_gap_dd(v, m)
                    kh[j] = eh
                    kl[j] = el
                    eb[j] = 0.0 if v == m else (eh + el) * E_UNSCALE
            else:
                for j in range(nb):
                    v = np.float64(xs[j])
                    eh, el = exp_gap_dd(v, m)
                    eb[j] = 0.0 if v == m else (eh + el) * E_UNSCALE
        elif keep:
            ks = buf[SCRATCH + b0:SCRATCH + b0 + nb]
            buf[SCRATCH + n + b0 // wd] = m
            for j in range(nb):
                v = np.float64(xs[j])
                e = exp_gap(v, m, ex)
                ks[j] = e
                eb[j] = 0.0 if v == m else e
        else:
            for j in range(nb):
                v = np.float64(xs[j])
                eb[j] = 0.0 if v == m else exp_gap(v, m, ex)
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
    return m, s, c, k


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
    few 2^-53 plus ``exp32``'s 2^-34: invisible after rounding to float32."""
    wide_vectors()
    n = x.size
    wd = block_width(n)
    r = ce_grad_factor(a, denom, gdiv)
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        f = _kept_block_factor(buf, n, b0, wd, m, r)
        ks = buf[SCRATCH + b0:SCRATCH + b0 + nb]
        gs = g[b0:b0 + nb]
        for j in range(nb):
            gs[j] = ks[j] * f


@njit(**JIT)
def softmax_kept_less(x, buf, g, w, m, denom, a, b, gdiv):
    """``softmax_kept`` less b w_j / gdiv: g[j] = (a p_j - b w_j) / gdiv
    (cross_entropy's gradient away from the label with label smoothing,
    b = eps/C), from pass 1's terms: e_j r - b w_j ginv, each product within
    a few 2^-53 of its exact value, as in ``cross_entropy_probs``'s float32
    gradient. Does not read x (g may be x). a is finite here (the caller
    takes another path for A = +inf), so e_j r is never 0 inf."""
    wide_vectors()
    n = x.size
    wd = block_width(n)
    r = ce_grad_factor(a, denom, gdiv)
    bg = b / gdiv
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        f = _kept_block_factor(buf, n, b0, wd, m, r)
        ks = buf[SCRATCH + b0:SCRATCH + b0 + nb]
        ws = w[b0:b0 + nb]
        gs = g[b0:b0 + nb]
        for j in range(nb):
            gs[j] = ks[j] * f - bg * np.float64(ws[j])


@njit(**{**JIT, "forceinline": True})
def _kept_block_factor(buf, n, b0, wd, m, r):
    """The factor e^(m_b - m) r of the kept terms of the block at b0 (r
    itself for a block holding the row maximum m)."""
    mb = buf[SCRATCH + n + b0 // wd]
    return r if mb == m else ce_softmax_grad(mb, m, r)


# cross_entropy's row scalars and gradient entries, for a block-per-row
# kernel (``fastloss.cuda.rowblock``) and ``cross_entropy`` below


@njit(**JIT)
def ce_row_scalars(m, s, c, k, xy, wy, eps, z, wsum, n):
    """cross_entropy's row scalars from the row's online state (m, s, c, k)
    (``lse_step``), its label's logit xy and weight wy, smoothing eps, z-loss
    z, sum(w) and the row length n: (nll = (m - x_y) + log1p(others), l1 =
    log1p(others), lse = m + l1, a1 = (1 - eps) w_y, a2 = (eps/n) sum(w) +
    2 z lse, A = a1 + a2, 1 + others, eps/n)."""
    o = lse_others(s, c, k)
    l1 = log1p(o)
    nll = gap(xy, m) + l1
    lse = m + l1
    ec = eps / n
    a1 = wy * (1.0 - eps)
    a2 = ec * wsum
    if z != 0.0:
        a2 += 2.0 * z * lse
    return nll, l1, lse, a1, a2, a1 + a2, 1.0 + o, ec


@njit(**JIT)
def ce_value(a1, nll, eps, ec, sm, smc, up, wsum, l1, z, lse, m):
    """The row's cross_entropy, a1 nll + (eps/C) sum_c w_c (lse - x_c) +
    z lse^2, from the row scalars and the smoothing sum sm + smc (of terms
    scaled by 1/up, ``_smooth_sum``). z lse^2 is formed from the pair
    lse = m + l1 (where finite): from the rounded lse, its square's error
    doubles and z times it adds another rounding (3 ULP in float64 at logits
    near 1e4, z = 0.01)."""
    val = xmul(a1, nll)
    if eps != 0.0:
        if math.isfinite(sm):
            sm += smc
        val += (ec * (sm + xmul(wsum, l1) / up)) * up
    if z != 0.0:
        zq = z * lse * lse
        if math.isfinite(zq) and math.isfinite(val):
            lh, ll = dd_add(m, 0.0, l1, 0.0)
            qh, ql = dd_mul(lh, ll, lh, ll)
            qh, ql = dd_mul(qh, ql, z, 0.0)
            vh, vl = dd_add(val, 0.0, qh, ql)
            val = vh + vl
        else:
            val += zq
    return val


@njit(**JIT)
def ce_value_dd(sh, sl, th, tl, oh, ol, z, m):
    """The row's cross_entropy for float64 data, S + T log1p(others) + z lse^2
    rounded once, from pairs: S = sum_c b_c (m - x_c) (b_c = w_c t'_c, or
    the label's and smoothing's weights), T = sum_c b_c, others (pass 1) and
    lse = m + log1p(others). Its error is the final rounding plus the
    relative error of ``others`` (~2^-53, its terms rounded once in pass 1)
    in the T log1p term: ~1 ulp. The plain float64 form (``ce_value``)
    rounds a1, nll, eps/C, the products and the sums: 3 ulp measured with
    weights and smoothing at ordinary logits (tests/test_multiclass.py::
    test_cross_entropy_value_options_within_1_ulp). For finite rows only
    (the caller keeps ``ce_value`` otherwise)."""
    l1h, l1l = log1p_dd(oh, ol)
    ph, pl = dd_mul(th, tl, l1h, l1l)
    vh, vl = dd_add(sh, sl, ph, pl)
    if z != 0.0:
        lh, ll = dd_add(m, 0.0, l1h, l1l)
        qh, ql = dd_mul(lh, ll, lh, ll)
        qh, ql = dd_mul(qh, ql, z, 0.0)
        vh, vl = dd_add(vh, vl, qh, ql)
    return dd_round(vh, vl)


@njit(**JIT)
def ce_grad_factor(a, denom, gdiv):
    """r = A / ((1 + others) gdiv): the factor of e^(x_j - m) in the float32
    gradient A p_j / gdiv (one multiplication per element; relative error a
    few 2^-53, invisible after rounding to float32)."""
    return a / (denom * gdiv)


@njit(**CPU_JIT)
def ce_softmax_grad(v, m, r):
    """A p_j / gdiv for the logit v (j != y) of float32 data: e^(v - m) r
    (``exp_gap``, ``ce_grad_factor``). Branch-free."""
    return exp_gap(v, m, False) * r


@njit(**JIT)
def ce_label_grad(a1, a2, py, ec, wy, nll, gdiv):
    """The label's entry of the cross_entropy gradient, (1 - eps) w_y (p_y - 1)
    + a2 p_y - (eps/C) w_y over gdiv, with p_y - 1 = expm1(-nll) (never a
    difference)."""
    return (xmul(a1, expm1(-nll)) + xmul(py, a2) - ec * wy) / gdiv


# --------------------------------------------------------------------------
# row formulas


@njit(**JIT)
def _smooth_sum(x, w, m, buf, sc):
    """sum_c w_c (m - x_c) sc of a row (sc a power of two), compensated,
    block by block: (s, c) with the sum s + c. float64 data sums the terms
    as exact pairs (``term_dd``), for ``ce_value_dd``."""
    wide_vectors()
    n = x.size
    ex = is_f64(x)
    wd = block_width(n)
    eb = buf[:wd]
    cb = buf[wd:2 * wd]
    sm = 0.0
    smc = 0.0
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        xs = x[b0:b0 + nb]
        ws = w[b0:b0 + nb]
        if ex:
            for j in range(nb):
                ph, pl = term_dd(np.float64(ws[j]), 0.0, np.float64(xs[j]), m)
                eb[j] = ph * sc
                cb[j] = pl * sc
        else:
            for j in range(nb):
                eb[j] = xmul(np.float64(ws[j]), gap(np.float64(xs[j]), m)) * sc
                cb[j] = 0.0
        sm, smc = fold_block(eb, cb, nb, wd, sm, smc)
    return sm, smc


#: the smoothing sum's rescaling when its terms overflow (sum of terms up to
#: 2 * max each, C of them)
_DOWN = 2.0 ** -64
_UP = 2.0 ** 64


@njit(**CPU_JIT)
def smoothing_pairs(eps, n):
    """The pairs 1 - eps and eps/C (C = n classes) of label smoothing, for
    the double-double forms of cross_entropy (labels and probability
    targets)."""
    omh, oml = dd_add(1.0, 0.0, -eps, 0.0)
    ech, ecl = dd_div(eps, np.float64(n))
    return omh, oml, ech, ecl


@njit(**CPU_JIT)
def _kept_factor(buf, n, b, m, keep):
    """(use the kept pairs, e^(m_b - m) as a pair) for block b of a float64
    row whose pass 1 kept its pairs (``row_lse_state`` with keep): (True, 1,
    0) for a block at the maximum; False (compute the exponentials again)
    without kept pairs or where the factor is below 2^-958 (its 2^-64
    unscaling would not be exact; conservative: the oracle tests pass
    either way)."""
    if not keep:
        return False, 1.0, 0.0
    mb = buf[SCRATCH + 2 * n + b]
    if mb == m:
        return True, 1.0, 0.0
    qh, ql = exp_gap_dd(mb, m)
    fh = qh * E_UNSCALE
    return fh >= 2.0 ** -958, fh, ql * E_UNSCALE


@njit(**CPU_JIT)
def _grad_dd_elem(eh, el, fh, fl, es, bh, bl):
    """A gradient component F e_j - B_j rounded once, from the pairs
    e_j 2^64 = eh + el (es: 2^-64 or 1, whichever of F and the terms takes
    the unscaling), F and B_j: ``ce_grad_dd`` (B_j = G w_j) and
    ``cross_entropy_probs`` (B_j = w_j t'_j / gdiv)."""
    th, tl = dd_mul(fh, fl, eh * es, el * es)
    sh, sl = dd_add(th, tl, -bh, -bl)
    return dd_round(sh, sl)


@njit(**CPU_JIT)
def _b_term(labels, tj, wj, bq, plain):
    """B_j of a float64 cross_entropy gradient as a pair: G w_j for labels
    (bq[:2] = G), w_j t'_j / gdiv for probability targets (bq = the pairs
    1 - eps, eps/C and 1/gdiv: ``_target_over_gdiv``)."""
    if labels:
        return dd_mul(bq[0], bq[1], np.float64(wj), 0.0)
    return _target_over_gdiv(tj, wj, bq[0], bq[1], bq[2], bq[3], bq[4], bq[5], plain)


@njit(**CPU_JIT)
def _grad_dd_block(labels, x, t, w, g, b0, nb, wd, m, buf, keep, fh, fl, es, bq, plain):
    """Block [b0, b0 + nb) of a float64 cross_entropy gradient, g_j = F e_j -
    B_j rounded once (``_grad_dd_elem``, B_j from ``_b_term``), for labels
    (``ce_grad_dd``; t unused) and probability targets (``_probs_rest``).
    e_j 2^64 is pass 1's kept pair times the block's factor e^(m_b - m)
    (``_kept_factor``; labels skip the product for a factor of exactly 1),
    else ``exp_gap_dd`` again. ``labels`` and ``plain`` are constants at
    each call, so each loop holds one form."""
    n = x.size
    gs = g[b0:b0 + nb]
    ts = t[b0:b0 + nb]
    ws = w[b0:b0 + nb]
    kept, f1h, f1l = _kept_factor(buf, n, b0 // wd, m, keep)
    if kept:
        kh = buf[SCRATCH + b0:SCRATCH + b0 + nb]
        kl = buf[SCRATCH + n + b0:SCRATCH + n + b0 + nb]
        if labels and f1h == 1.0 and f1l == 0.0:
            for j in range(nb):
                bh, bl = _b_term(labels, ts[j], ws[j], bq, plain)
                gs[j] = _grad_dd_elem(kh[j], kl[j], fh, fl, es, bh, bl)
        else:
            for j in range(nb):
                eh, el = dd_mul(kh[j], kl[j], f1h, f1l)
                bh, bl = _b_term(labels, ts[j], ws[j], bq, plain)
                gs[j] = _grad_dd_elem(eh, el, fh, fl, es, bh, bl)
    else:
        xs = x[b0:b0 + nb]
        for j in range(nb):
            eh, el = exp_gap_dd(np.float64(xs[j]), m)
            bh, bl = _b_term(labels, ts[j], ws[j], bq, plain)
            gs[j] = _grad_dd_elem(eh, el, fh, fl, es, bh, bl)


@njit(**JIT)
def ce_grad_dd(x, y, w, m, oh, ol, l1, wy, eps, z, wsum, wsum_lo, gdiv, g, buf, keep):
    """The gradient of ``cross_entropy`` (labels) for float64 data with
    weights, smoothing or z-loss, each component rounded once from pairs:

        g_j = F e_j - G w_j  (j != y),   F = A R / gdiv,  G = (eps/C) / gdiv,
        g_y = (a2 R / gdiv) e_y - (a1 R / gdiv) (D - e_y) - G w_y,

    e_j = e^(x_j - m) (``exp_gap_dd``), D = 1 + others, R = 1 / D,
    a1 = (1 - eps) w_y, a2 = (eps/C) sum(w) + 2 z lse, A = a1 + a2, and
    D - e_y = D (1 - p_y) without cancellation (= others when y is the
    maximum). Every factor is a pair, so the error of g_j is its final
    rounding plus the relative error of ``others`` (~1 ulp, from pass 1)
    times the softmax term A p_j (e_j is scaled by 2^64 and F by 2^-64, so
    a subnormal p_j is rounded once, in the final result; a factor too
    small to take the 2^-64 leaves it to the terms, ``unscale_ok``): within 2 ulp times the cancellation ratio
    (A p_j + B_j) / |A p_j - B_j| where the two sides nearly cancel
    (``fastloss.reference.multiclass.row_condition``).

    With ``keep`` (pass 1 ran ``row_lse_state(x, buf, True)``), e_j is
    pass 1's pair e^(x_j - m_b) 2^64 times the block's factor e^(m_b - m)
    as a pair (1 for the blocks at the maximum): one exponential per block,
    not per element (measured 7.1 -> 5.2 ns/elem for C = 1000 rows in L1,
    1 thread). A factor below 2^-958 (whose 2^-64 unscaling would not be
    exact) has its block's exponentials computed again, a conservative
    choice: the oracle test of such rows passes either way."""
    wide_vectors()
    n = x.size
    dh, dl = dd_add(1.0, 0.0, oh, ol)
    rh, rl = dd_recip(dh, dl)
    igh, igl = dd_recip(gdiv, 0.0)
    omh, oml, ech, ecl = smoothing_pairs(eps, n)
    a1h, a1l = dd_mul(wy, 0.0, omh, oml)
    a2h, a2l = dd_mul(ech, ecl, wsum, wsum_lo)
    if z != 0.0:
        lh, ll = dd_add(m, 0.0, l1, 0.0)
        a2h, a2l = dd_add(a2h, a2l, 2.0 * z * lh, 2.0 * z * ll)
    rgh, rgl = dd_mul(rh, rl, igh, igl)
    h1h, h1l = dd_mul(a1h, a1l, rgh, rgl)
    h2h, h2l = dd_mul(a2h, a2l, rgh, rgl)
    fh, fl = dd_add(h1h, h1l, h2h, h2l)
    # e_j comes scaled by 2^64: unscale the row factors, or the terms
    fs = E_UNSCALE if unscale_ok(fh) and unscale_ok(h2h) else 1.0
    es = E_UNSCALE if fs == 1.0 else 1.0
    fh, fl = fh * fs, fl * fs
    gh, gl = dd_mul(ech, ecl, igh, igl)
    # the label's pieces first: g may be x itself
    eyh, eyl = exp_gap_dd(np.float64(x[y]), m)
    wd = block_width(n)
    # pass 1's pairs e^(x_j - m_b) 2^64 (``row_lse_state`` with keep), times
    # the block's factor e^(m_b - m) as a pair: no second exponential per
    # element. A factor below 2^-958 (which would not unscale exactly) or no
    # kept pairs: the exponential again
    bq = (gh, gl, 0.0, 0.0, 0.0, 0.0)
    for b0 in range(0, n, wd):
        _grad_dd_block(True, x, w, w, g, b0, min(wd, n - b0), wd, m, buf, keep, fh, fl, es, bq,
                       False)
    qh, ql = dd_add(dh, dl, -eyh * E_UNSCALE, -eyl * E_UNSCALE)
    uh, ul = dd_mul(h1h, h1l, qh, ql)
    vh, vl = dd_mul(h2h * fs, h2l * fs, eyh * es, eyl * es)
    bh, bl = dd_mul(gh, gl, wy, 0.0)
    sh, sl = dd_add(vh, vl, -uh, -ul)
    sh, sl = dd_add(sh, sl, -bh, -bl)
    g[y] = dd_round(sh, sl)


@njit(**JIT)
def cross_entropy(x, y, t, w, eps, z, wsum_lo, wsum, gdiv, g, sg, buf):
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
    is +inf, as it should be). ``wsum`` (p3) is sum(w) and ``wsum_lo`` (p2)
    its rounding error (sum(w) = wsum + wsum_lo), computed by the caller.

    float64 data: the gradient is formed from pairs (``ce_grad_dd``), each
    component rounded once. With weights, smoothing or z-loss A p_j - B_j
    cancels where p_j ~ B_j / A; without them p_j = e_j / (1 + others) in
    plain float64 carries the errors of e_j (<= 1 ulp), of others and of
    1 + others and the division's: measured 3 ulp against mpmath in ~2% of
    rows of N(0, 30^2) logits, C = 300 (``tests/test_multiclass.py::
    test_float64_plain_gradient_within_2_ulp``). float32 data (whose float64
    evaluation has 29 bits to spare) uses the single-precision forms
    below."""
    wide_vectors()
    n = x.size
    ex = is_f64(x)
    ec = eps / n
    # keep pass 1's terms for the gradient (no second exponential): float32
    # data (``softmax_kept``, ``softmax_kept_less`` with smoothing), float64
    # data as pairs (``ce_grad_dd``)
    keep = sg
    m, s0, c0, k0 = row_lse_state(x, buf, keep)
    wy = np.float64(w[y])
    xy = np.float64(x[y])  # (read before the gradient: g may be x)
    nll, l1, lse, a1, a2, a, denom, ec = ce_row_scalars(m, s0, c0, k0, xy, wy, eps,
                                                        z, wsum, n)
    sm = 0.0
    smc = 0.0
    up = 1.0
    if eps != 0.0:
        # smoothing term sum_c w_c (m - x_c) (before the gradient: g may be
        # x itself); rescaled if its terms (each < 2 max) overflow the sum
        sm, smc = _smooth_sum(x, w, m, buf, 1.0)
        if sm == _INF:
            sm, smc = _smooth_sum(x, w, m, buf, _DOWN)
            up = _UP
    if sg:
        # A = +inf: the z-loss 2 z lse p_j at a +inf logit (lse = +inf). Its
        # limit is +inf where p_j > 0 (the +inf logits) and 0 where p_j = 0
        # (2 z x_k e^(x_j - x_k) -> 0): the products A p_j are taken as 0 at
        # p_j = 0 (xmul) in the plain loop below, not inf * 0 = NaN
        inf_a = abs(a) == _INF
        if ex and not inf_a:
            oh, ol = others_dd(s0, c0, k0)
            ce_grad_dd(x, y, w, m, oh, ol, l1, wy, eps, z, wsum, wsum_lo, gdiv, g, buf, keep)
        else:
            # gradient A p_j - (eps/C) w_j: one vectorizable loop; the
            # label's entry is overwritten below
            # (float64 data reaches this branch only with A = +inf)
            if keep and not inf_a and ec == 0.0:
                softmax_kept(x, buf, g, m, denom, a, gdiv)
            elif keep and not inf_a:
                softmax_kept_less(x, buf, g, w, m, denom, a, ec, gdiv)
            else:
                for j in range(n):
                    p = exp_gap(np.float64(x[j]), m, ex) / denom
                    g[j] = (xmul(p, a) - ec * np.float64(w[j])) / gdiv
            # p_y: needed with smoothing or a z-loss only (a2 = 0 otherwise)
            py = exp(-nll) if a2 != 0.0 else 0.0
            g[y] = ce_label_grad(a1, a2, py, ec, wy, nll, gdiv)
    val = ce_value(a1, nll, eps, ec, sm, smc, up, wsum, l1, z, lse, m)
    if ex and math.isfinite(val) and math.isfinite(m) and up == 1.0:
        # float64: the same sum from pairs, rounded once: S = a1 (m - x_y)
        # + (eps/C) sum_c w_c (m - x_c), T = a1 + (eps/C) sum(w)
        omh, oml, ech, ecl = smoothing_pairs(eps, n)
        a1h, a1l = dd_mul(wy, 0.0, omh, oml)
        sh, sl = term_dd(a1h, a1l, xy, m)
        th, tl = a1h, a1l
        if eps != 0.0:
            qh, ql = dd_mul(ech, ecl, sm, smc)
            sh, sl = dd_add(sh, sl, qh, ql)
            qh, ql = dd_mul(ech, ecl, wsum, wsum_lo)
            th, tl = dd_add(th, tl, qh, ql)
        oh, ol = others_dd(s0, c0, k0)
        val = ce_value_dd(sh, sl, th, tl, oh, ol, z, m)
    return val


@njit(**CPU_JIT)
def _target_pair(tj, wj, omh, oml, ech, ecl, plain):
    """w_j t'_j as a pair: ``target_dd``, or (t_j, 0) exactly when ``plain``
    (no smoothing, no class weights; a constant where it is called, so the
    loop holds one form)."""
    if plain:
        return np.float64(tj), 0.0
    return target_dd(np.float64(tj), np.float64(wj), omh, oml, ech, ecl)


@njit(**CPU_JIT)
def _target_plain(tj, wj, om, ec, plain):
    """w_j t'_j in plain float64 (float32 data): t_j when ``plain``."""
    if plain:
        return np.float64(tj)
    return np.float64(wj) * (np.float64(tj) * om + ec)


@njit(**CPU_JIT)
def _target_over_gdiv(tj, wj, omh, oml, ech, ecl, igh, igl, plain):
    """w_j t'_j / gdiv as a pair (``_target_pair`` times the pair 1/gdiv)."""
    bh, bl = _target_pair(tj, wj, omh, oml, ech, ecl, plain)
    return dd_mul(bh, bl, igh, igl)


@njit(**JIT)
def target_dd(tj, wj, omh, oml, ech, ecl):
    """w_j t'_j = w_j (t_j (1 - eps) + eps/C) as a pair, from the pairs
    1 - eps and eps/C."""
    ph, pl = dd_mul(tj, 0.0, omh, oml)
    ph, pl = dd_add(ph, pl, ech, ecl)
    return dd_mul(ph, pl, wj, 0.0)


@njit(**JIT)
def cross_entropy_probs(x, y, t, w, eps, z, p2, p3, gdiv, g, sg, buf):
    """Cross entropy of logits x with a probability target row t:

        sum_c w_c t'_c (lse(x) - x_c) + z lse(x)^2,  t' = (1 - eps) t + eps/C

    gradient (T + 2 z lse) p_j - w_j t'_j with T = sum_c w_c t'_c.

    Stable form: sum_c w_c t'_c (m - x_c) + T log1p(others), all terms >= 0;
    a class with t' = 0 and x = -inf contributes 0 (0 log 0 = 0).

    The gradient cancels where the target is near the softmax; for float64
    data it is formed from pairs (as ``ce_grad_dd``): T, w_j t'_j,
    e^(x_j - m), 1 / (1 + others) and the products, rounded once, so its
    error is the rounding plus the ~1 ulp relative error of ``others`` times
    the softmax term. Both passes after pass 1 run in blocks (vectorized
    loops into buffers summed pairwise with TwoSum), written once
    (``_probs_rest``) and compiled twice: for the plain case (no smoothing,
    no class weights: ``p3`` is 1 from ``fastloss.rows``), where w_j t'_j is
    t_j exactly, and for the general one."""
    wide_vectors()
    # pass 1's terms kept for the gradient (no second exponential)
    m, s0, c0, k0 = row_lse_state(x, buf, sg)
    if eps == 0.0 and p3 == 1.0:
        return _probs_rest(x, t, w, eps, z, gdiv, g, sg, buf, m, s0, c0, k0, True)
    return _probs_rest(x, t, w, eps, z, gdiv, g, sg, buf, m, s0, c0, k0, False)


@njit(**{**JIT, "forceinline": True})
def _probs_rest(x, t, w, eps, z, gdiv, g, sg, buf, m, s0, c0, k0, plain):
    """``cross_entropy_probs`` after pass 1 (``plain``: a constant at each
    call, see there)."""
    n = x.size
    ex = is_f64(x)
    keep = sg
    o = lse_others(s0, c0, k0)
    l1 = log1p(o)
    lse = m + l1
    ec = eps / n
    om = 1.0 - eps
    omh, oml, ech, ecl = smoothing_pairs(eps, n)
    wd = block_width(n)
    vb = buf[:wd]
    vc = buf[wd:2 * wd]
    sb = buf[2 * wd:3 * wd]
    sc = buf[3 * wd:4 * wd]
    # one pass for T = sum_c w_c t'_c and the value's terms w_c t'_c (m - x_c)
    # (before the gradient: g may be x), each summed into wd lanes across
    # the blocks, then the lanes pairwise once per row: float64 data adds
    # exact pairs (w_c t'_c, ``term_dd``) with TwoSum into (head, tail)
    # lanes, for ``ce_value_dd``; float32 data plain float64 lanes (n / wd
    # terms each, then the pairwise tree: relative error below ~2^-44,
    # invisible after rounding to float32). A TwoSum tree per block cost
    # float64 ~0.7 ns per element per sum (C = 1000 rows in L1).
    for j in range(wd):
        vb[j] = 0.0
        vc[j] = 0.0
        sb[j] = 0.0
        sc[j] = 0.0
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        xs = x[b0:b0 + nb]
        ts = t[b0:b0 + nb]
        ws = w[b0:b0 + nb]
        if ex:
            for j in range(nb):
                bh, bl = _target_pair(ts[j], ws[j], omh, oml, ech, ecl, plain)
                ph, pl = term_dd(bh, bl, np.float64(xs[j]), m)
                vb[j], vc[j] = two_sum_add(vb[j], vc[j] + bl, bh)
                sb[j], sc[j] = two_sum_add(sb[j], sc[j] + pl, ph)
        else:
            for j in range(nb):
                wt = _target_plain(ts[j], ws[j], om, ec, plain)
                vb[j] += wt
                sb[j] += xmul(wt, gap(np.float64(xs[j]), m))
    if ex:
        tt, ttc = block_sum(vb, vc, wd)
        sv, svc = block_sum(sb, sc, wd)
    else:
        tt, ttc = _pair_sum(vb, wd), 0.0
        sv, svc = _pair_sum(sb, wd), 0.0
    tth, ttl = dd_fix(tt, ttc)
    if math.isfinite(tt):
        tt += ttc
    a = tt
    if z != 0.0:
        a += 2.0 * z * lse
    denom = 1.0 + o
    # float64 data: F = (T + 2 z lse) / (1 + others) / gdiv as a pair
    fh = 0.0
    fl = 0.0
    igh = 1.0
    igl = 0.0
    es = 1.0
    if ex and sg:
        oh, ol = others_dd(s0, c0, k0)
        dh, dl = dd_add(1.0, 0.0, oh, ol)
        rh, rl = dd_recip(dh, dl)
        igh, igl = dd_recip(gdiv, 0.0)
        ah, al = tth, ttl
        if z != 0.0:
            lh, ll = dd_add(m, 0.0, l1, 0.0)
            ah, al = dd_add(ah, al, 2.0 * z * lh, 2.0 * z * ll)
        fh, fl = dd_mul(ah, al, rh, rl)
        fh, fl = dd_mul(fh, fl, igh, igl)
        # e_j comes scaled by 2^64: unscale the row factor, or the terms
        fs = E_UNSCALE if unscale_ok(fh) else 1.0
        es = E_UNSCALE if fs == 1.0 else 1.0
        fh, fl = fh * fs, fl * fs
    # float32 data: A p_j / gdiv = e_j r, r = A / ((1 + others) gdiv), and
    # w_j t'_j / gdiv = w_j t'_j ginv (relative errors of a few 2^-53 on
    # each side of the difference, as for the division)
    r = ce_grad_factor(a, denom, gdiv)
    ginv = 1.0 / gdiv
    # the gradient from pass 1's kept terms times one factor e^(m_b - m)
    # per block (float64: pairs, ``_kept_factor``, the exponential again
    # where it declines)
    for b0 in range(0, n if sg else 0, wd):
        nb = min(wd, n - b0)
        if ex:
            _grad_dd_block(False, x, t, w, g, b0, nb, wd, m, buf, keep, fh, fl, es,
                           (omh, oml, ech, ecl, igh, igl), plain)
            continue
        ts = t[b0:b0 + nb]
        ws = w[b0:b0 + nb]
        gs = g[b0:b0 + nb]
        mb = buf[SCRATCH + n + b0 // wd]
        f = r if mb == m else ce_softmax_grad(mb, m, r)
        ks = buf[SCRATCH + b0:SCRATCH + b0 + nb]
        for j in range(nb):
            wt = _target_plain(ts[j], ws[j], om, ec, plain)
            gs[j] = xmul(ks[j], f) - wt * ginv
    svh = sv
    if math.isfinite(sv):
        sv += svc
    val = sv + xmul(tt, l1)
    if z != 0.0:
        val += z * lse * lse
    if ex and math.isfinite(val) and math.isfinite(m):
        oh, ol = others_dd(s0, c0, k0)
        val = ce_value_dd(svh, svc, tth, ttl, oh, ol, z, m)
    return val


@njit(**{**JIT, "forceinline": True})
def nll_entry(x, y, w, gdiv):
    """nll's value -w_y x_y and the one entry of its gradient that is not
    zero, -w_y / gdiv at the label. (The CPU's row driver computes nll from
    it alone, and writes the gradient's zeros apart: ``cpu.rowwise``'s
    ``entry_kernel``.)"""
    wy = np.float64(w[y])
    return -xmul(wy, np.float64(x[y])), -wy / gdiv


@njit(**JIT)
def nll(x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf):
    """Negative log-likelihood of log-probabilities x: -w_y x_y; gradient
    -w_y at the label, 0 elsewhere (PyTorch's nll_loss)."""
    wide_vectors()
    val, gy = nll_entry(x, y, w, gdiv)
    if sg:
        for j in range(x.size):
            g[j] = 0.0
        g[y] = gy
    return val


@njit(**{**JIT, "forceinline": True})
def _term(kind, v, t):
    """The class term and its derivative of a sum-of-terms loss: ``cce_elem``
    (kind 0), ``kl_elem`` (1) or ``kl_elem`` with log targets (2)."""
    if kind == 0:
        return cce_elem(v, t)
    return kl_elem(v, t, kind == 2)


@njit(**{**JIT, "forceinline": True})
def _term_sum(kind, x, t, gdiv, g, sg, buf):
    """sum_j f(x_j, t_j) and g_j = f'(x_j, t_j) / gdiv for a loss that is a
    sum of per-class terms (``_term``), block by block: each block's terms
    into a buffer, summed pairwise with TwoSum (``fold_block``), so that the
    term loop carries no reduction and vectorizes. It is inlined into each
    caller with a constant ``kind``, so the loop holds one term's formula.
    (A running TwoSum in the term loop, and kl_div's ``log_target`` tested
    per element, kept it scalar: kl_div float32 ran at 1.1-1.4 GB/s,
    0.7-1.1x PyTorch.) The sum is compensated either way. float32 data: g_j
    is f' times fl(1/gdiv), within 2^-52 of the quotient (no vector
    division); float64 data divides."""
    wide_vectors()
    n = x.size
    wd = block_width(n)
    vb = buf[:wd]
    vc = buf[wd:2 * wd]
    ex = is_f64(x)
    ginv = 1.0 / gdiv
    sv = 0.0
    svc = 0.0
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        xs = x[b0:b0 + nb]
        ts = t[b0:b0 + nb]
        if sg:
            gs = g[b0:b0 + nb]
            for j in range(nb):
                vj, gj = _term(kind, np.float64(xs[j]), np.float64(ts[j]))
                vb[j] = vj
                gs[j] = gj / gdiv if ex else gj * ginv
        else:
            for j in range(nb):
                vb[j], _ = _term(kind, np.float64(xs[j]), np.float64(ts[j]))
        for j in range(nb):
            vc[j] = 0.0
        sv, svc = fold_block(vb, vc, nb, wd, sv, svc)
    if math.isfinite(sv):
        sv += svc
    return sv


@njit(**JIT)
def categorical_cross_entropy(x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf):
    """Cross entropy of probabilities x (rows summing to 1) with target
    probabilities t: -sum_c t_c log x_c; gradient -t_c / x_c, with
    0 log 0 = 0 and a zero gradient where t_c = 0 (also at x_c = 0). No
    clamping: x_c = 0 with t_c > 0 gives +inf and a -inf gradient."""
    return _term_sum(0, x, t, gdiv, g, sg, buf)


@njit(**JIT)
def kl_div(x, y, t, w, log_target, p1, p2, p3, gdiv, g, sg, buf):
    """Kullback-Leibler divergence of log-probabilities x from targets t:
    sum_c t_c (log t_c - x_c) (0 log 0 = 0), gradient -t_c; with
    ``log_target`` (p0 = 1) the targets are log-probabilities:
    sum_c e^(t_c) (t_c - x_c), gradient -e^(t_c) (PyTorch's kl_div).

    The term t (log t - x) is ill-conditioned where log t ~ x (the exact
    difference cancels); its error is cond * eps (LOSSES.md, KL). The
    gradient at t = 0 is exactly 0 (pytorch#89558)."""
    if log_target != 0.0:
        return _term_sum(2, x, t, gdiv, g, sg, buf)
    return _term_sum(1, x, t, gdiv, g, sg, buf)


@njit(**JIT)
def _focal_dd(x, y, alpha, gamma, gdiv, g, sg, buf):
    """softmax_focal for float64 data with every row scalar a double-double
    pair, so that the value and each gradient component are rounded about
    once: D = 1 + others (others summed again from the pairs e_j), e_y = e^(x_y - m)
    (``exp_gap_dd``), q = (D - e_y) / D with D - e_y = others when x_y is the
    maximum (no cancellation), log q = log(D - e_y) - log1p(others),
    nll = (m - x_y) + log1p(others), q^gamma = e^(gamma log q) (the
    double-double exponential of a pair: pow's rounding of q would be
    multiplied by gamma), K = alpha_y q^gamma (1 + gamma e_y nll / (D - e_y)),
    g_j = K e_j / (D gdiv), g_y = -K q / gdiv (pass 1 gives m and the
    count of maxima; the pairs are a second pass over the row). Returns (value, ok); ok False
    (nothing written) where q = 0, nll or the factors are not finite, or
    q^gamma < 2^-1075: the caller then uses the plain formula."""
    m, s, c, k = row_lse_state(x, buf, False)
    xy = np.float64(x[y])
    if not (abs(m) < _INF and abs(s) < _INF and abs(xy) < _INF):
        return 0.0, False
    # others summed again as pairs: pass 1's sum of rounded terms is only
    # good to ~1 ulp, which q^gamma would multiply by gamma
    # (block by block, branch-free: the block loop vectorizes; pairwise
    # TwoSum sums of the pairs' high parts, their low parts added)
    n = x.size
    wd = block_width(n)
    vb = buf[:wd]
    vc = buf[wd:2 * wd]
    sh, sl = 0.0, 0.0
    # the pairs are kept (buf[SCRATCH:SCRATCH + 2n]) for the gradient
    keh = buf[SCRATCH:SCRATCH + n]
    kel = buf[SCRATCH + n:SCRATCH + 2 * n]
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        xs = x[b0:b0 + nb]
        khs = keh[b0:b0 + nb]
        kls = kel[b0:b0 + nb]
        for j in range(nb):
            v = np.float64(xs[j])
            eh, el = exp_gap_dd(v, m)
            khs[j] = eh
            kls[j] = el
            below = v < m
            vb[j] = eh if below else 0.0
            vc[j] = el if below else 0.0
        sh, sl = fold_block(vb, vc, nb, wd, sh, sl)
    sh, sl = dd_fix(sh, sl)
    oh, ol = dd_add(sh * E_UNSCALE, sl * E_UNSCALE, k - 1.0, 0.0)
    dh, dl = dd_add(1.0, 0.0, oh, ol)
    eyh, eyl = exp_gap_dd(xy, m)
    if xy == m:
        qnh, qnl = oh, ol
    else:
        qnh, qnl = dd_add(dh, dl, -eyh * E_UNSCALE, -eyl * E_UNSCALE)
    if not qnh > 2.0 ** -1000:
        return 0.0, False
    l1h, l1l = log1p_dd(oh, ol)
    gh0 = m - xy
    bv = gh0 - m
    gl0 = (m - (gh0 - bv)) + (-xy - bv)  # m - x_y exactly: gh0 + gl0
    nh, nl = dd_add(gh0, gl0, l1h, l1l)  # nll
    lqh, lql = log_dd(qnh)
    lqh, lql = dd_add(lqh, lql, qnl / qnh, 0.0)
    lqh, lql = dd_add(lqh, lql, -l1h, -l1l)  # log q
    ph, pl = dd_mul(gamma, 0.0, lqh, lql)
    if not ph >= -745.0:
        return 0.0, False
    yh, yl, s1, s2 = exp_dd(ph, 0.0)
    mh, ml = dd_mul(yh, yl, 1.0, pl)  # q^gamma / 2^kk
    mh, ml = dd_mul(mh, ml, np.float64(alpha[y]), 0.0)
    v = (dd_round(*dd_mul(mh, ml, nh, nl)) * s1) * s2
    if sg:
        # K / 2^kk = alpha_y q^gamma (1 + gamma e_y nll / (D - e_y))
        rqh, rql = dd_recip(qnh, qnl)
        th, tl = dd_mul(eyh * E_UNSCALE, eyl * E_UNSCALE, nh, nl)
        th, tl = dd_mul(th, tl, rqh, rql)
        th, tl = dd_mul(gamma, 0.0, th, tl)
        th, tl = dd_add(1.0, 0.0, th, tl)
        kh, kl = dd_mul(mh, ml, th, tl)
        rh, rl = dd_recip(dh, dl)
        igh, igl = dd_recip(gdiv, 0.0)
        kh, kl = dd_mul(kh, kl, igh, igl)
        # g_y = -K q / gdiv, q = (D - e_y) / D
        qh, ql = dd_mul(qnh, qnl, rh, rl)
        uh, ul = dd_mul(kh, kl, qh, ql)
        gy = -((dd_round(uh, ul) * s1) * s2)
        fh, fl = dd_mul(kh, kl, rh, rl)
        fh, fl = (fh * s1) * s2, (fl * s1) * s2
        fs = E_UNSCALE if unscale_ok(fh) else 1.0
        es = E_UNSCALE if fs == 1.0 else 1.0
        fh, fl = fh * fs, fl * fs
        for j in range(n):  # g may be x itself: the kept pairs, not x
            zh, zl = dd_mul(fh, fl, keh[j] * es, kel[j] * es)
            g[j] = dd_round(zh, zl)
        g[y] = gy
    return v, True


@njit(**JIT)
def softmax_focal(x, y, t, alpha, gamma, p1, p2, p3, gdiv, g, sg, buf):
    """Softmax focal loss (Lin et al., ICCV 2017): -alpha_y (1 - p_y)^gamma
    log p_y with p = softmax(x); gradient K (p_j - [j = y]) with
    K = alpha_y q^gamma (1 + gamma p_y nll / q), q = 1 - p_y, nll = -log p_y.

    Stable form: nll from the log-sum-exp above, q = -expm1(-nll) (no
    1 - p_y cancellation), nll / q -> 1 as q -> 0 (so gamma < 1 gives no
    0 * inf), and p_y nll / q = 0 when p_y = 0 (x_y = -inf: loss +inf,
    gradient finite). float64 data: ``_focal_dd`` (double-double row
    scalars, each result rounded about once) wherever it applies."""
    wide_vectors()
    if is_f64(x):
        v, ok = _focal_dd(x, y, alpha, gamma, gdiv, g, sg, buf)
        if ok:
            return v
    n = x.size
    # float32 data keeps pass 1's terms for the gradient (one exponential
    # per element, as cross_entropy: ``softmax_kept``)
    keep = sg and not is_f64(x)
    m, o, l1, nl = _nll_parts(x, y, buf, keep)
    ay = np.float64(alpha[y])
    q = -expm1(-nl)
    py = exp(-nl)
    mod = math.pow(q, gamma)
    r = nl / q if q > 0.0 else 1.0
    kk = xmul(ay, mod) * (1.0 + gamma * xmul(py, r))
    if sg:
        denom = 1.0 + o
        if keep:
            softmax_kept(x, buf, g, m, denom, kk, gdiv)
        else:
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
    y.

    The hinge h_j = margin - x_y + x_j cancels near its kink; it is formed
    exactly as a pair (TwoSum twice), and so are h_j^2, the sums and the
    factor w_y p / C / gdiv: every value and gradient entry is rounded once
    from pairs (``margin_elem``). The row is processed in blocks: the
    terms of a block (a branch-free, vectorized loop) go to buffers summed
    pairwise with TwoSum (``reduce.block_sum``), the blocks' sums added with
    TwoSum. Infinite logits: x_y = -inf with x_j finite (or x_y finite with
    x_j = +inf) gives h_j = +inf (loss +inf; gradient w_y/C for p = 1, +inf
    for p = 2); x_j = -inf with x_y finite gives h_j = -inf, no term; x_y
    and x_j both infinite with the same sign is inf - inf, refused by the
    caller (``fastloss.rows``)."""
    wide_vectors()
    n = x.size
    xy = np.float64(x[y])
    wy = np.float64(w[y])
    cn = np.float64(n)
    t0 = margin - xy
    z0 = t0 - margin
    bl = (margin - (t0 - z0)) + (-xy - z0)
    bh = t0
    bl = bl if abs(bh) < _INF else 0.0
    two = pw != 1.0
    # w_y p / C / gdiv as a pair
    kh, kl = dd_div(wy * pw, cn)
    igh, igl = dd_recip(gdiv, 0.0)
    kh, kl = dd_mul(kh, kl, igh, igl)
    wd = block_width(n)
    vb = buf[:wd]
    vc = buf[wd:2 * wd]
    db = buf[2 * wd:3 * wd]
    dc = buf[3 * wd:4 * wd]
    sv = 0.0
    svc = 0.0
    sd = 0.0
    sdc = 0.0
    for b0 in range(0, n, wd):
        nb = min(wd, n - b0)
        xs = x[b0:b0 + nb]
        gs = g[b0:b0 + nb] if sg else g[0:0]
        for j in range(nb):
            vh, vl, dh, dl, gj = margin_elem(bh, bl, np.float64(xs[j]), two, kh, kl)
            lab = b0 + j == y
            vb[j] = 0.0 if lab else vh
            vc[j] = 0.0 if lab else vl
            db[j] = 0.0 if lab else dh
            dc[j] = 0.0 if lab else dl
            if sg:
                gs[j] = gj  # the label's entry is overwritten below
        sv, svc = fold_block(vb, vc, nb, wd, sv, svc)
        if sg:
            sd, sdc = fold_block(db, dc, nb, wd, sd, sdc)
    if sg:
        gh, gl = dd_mul(kh, kl, sd, sdc if math.isfinite(sd) else 0.0)
        g[y] = -dd_round(gh, gl)
    if not math.isfinite(sv):
        if wy == 0.0 and sv == sv:
            return 0.0  # 0 * inf = 0, as xmul
        svc = 0.0
    vh, vl = dd_mul(sv, svc, wy, 0.0)
    q = vh / cn
    return dd_round(q, (fma(-q, cn, vh) + vl) / cn)


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
