"""Float32 ``cross_entropy`` on float32 lanes: the CPU row formulas for
labels (``ce_row32``) and for probability targets (``ce_probs_row32``).

``multiclass.cross_entropy`` computes in float64 whatever the data's dtype,
so a float32 row's exponentials run 8 to a 512-bit vector (``exp32``, ~15
vector operations per 8 lanes, plus the conversions). On the CPU this
bounded float32 cross entropy: (8192, 1000), 1 thread, ~1.5 ns/elem in L1
and from DRAM alike, slower than PyTorch's forward + backward.
``ce_row32`` is the same formula with its one per-element step, the softmax
term e^(x_j - m), on float32 lanes (16 per vector): ``fastloss.math._cpu.
exp_gap32``. Everything per row (the row scalars, the value, the label's
gradient entry) is ``multiclass``'s own code (``ce_row_scalars``,
``ce_value``, ``ce_grad_factor``, ``ce_label_grad``), unchanged.

A row (of n >= ROW32_MIN classes) in four passes, the row read twice
(from memory once: a row of up to ROW32_MAX float32 and its gradient stay
in L2 between the passes):

1. The row maximum m (``_block_max``, integer order keys).
2. The terms E_j = e^(x_j - m) 2^64 (``exp_gap32``, within 0.69 ULP,
   never subnormal), written into the gradient row (``_terms``; g may be
   x: x_j is read before g_j is written, and x_y before the pass).
3. Their sum in float64 (``_row_sum``): the terms equal to 2^64 (e^0, the
   maxima, and any term that rounds to 1 in float32 as theirs does) are
   counted, k, and summed as 0, so others = sum 2^-64 + (k - 1), the
   "sum of the other terms" of ``multiclass.row_lse_state``: a term
   counted is the same float64 number 1 as it would be summed, and none of
   the others' low bits is lost beside it. Sum and count in one pass in
   vector registers (``_intrin.row_sum_skip``).
4. The gradient g_j = E_j F (F = A / ((1 + others) gdiv), the float64
   factor, scaled by 2^-64 and split into a float32 pair fh + fl: g_j =
   fma(E_j, fh, E_j fl), one rounding), then the label's entry.

Every loop is a whole number of LLVM's vector iterations where that
mattered: its scalar epilogue costs ~25 cycles an element of the exp loop
(~0.2 ns/elem at C = 1000), so the last n % 64 terms are the last 64
computed again; the terms' sum and the target sums take the row's last
64 with the indices already summed masked out (in vector registers, not a
pad: one written by scalar stores and read by vector loads stalled on the
store forwarding).

Accuracy: the value carries the relative error of others (the terms'
0.69 ULP and the float64 sum's few 2^-53) and its final rounding; each
gradient entry the term's error and one rounding, also where it is
subnormal (E_j is normal, F's pair exact to 2^-48). In ULPs of the
gradient the term's 0.69 may count twice (E_j low in its binade, E_j F
high in its own): at most 2 x 0.69 + 0.5 = 1.88. Measured against mpmath
(tests/test_multiclass.py, rows of 256 to 4099 classes with ties, -inf,
gaps of 80-150, shifts of 1e6, logits of 1e4 and of 1e-20 beside a
maximum of 7): values within 1 ULP, gradients within 1 ULP without class
weights and 2 with them. The float64 formula it replaces is within 1 ULP
for both; the difference is the price of the float32 terms (ROW32_MIN's
comment has the gain).

Scope: float32 data (the driver's routing, ``rowwise._row_apply``); per
row: ROW32_MIN to ROW32_MAX classes, a
maximum |m| < 2^24 (``exp_gap32`` needs m - 128 < m; this also excludes
+inf and a NaN maximum), and w_y / gdiv within [2^-38 C, 2^20] or 0, so
that the factor F = w_y / ((1 + others) gdiv), 1 + others in [1, C], lies
in [2^-38, 2^20] or is 0: its float32 pair is then exact to 2^-48, and
every product E_j F with E_j below 2^-185 2^64 (the terms taken below
m - 128) is < 2^-165 and rounds to 0 as the exact one does. A row outside
that scope, found before anything is written, takes
``multiclass.cross_entropy``.

Label smoothing and z-loss (``ce_row32``'s options): the gradient A p_j -
b_j, b_j = (eps/C) w_j off the label, is formed in float64 from E_j and
rounded once, as for probability targets (below, and their accuracy
trade); the label's entry by ``ce_label_grad`` (p_y - 1 as expm1); the
value by ``ce_value`` with the smoothing sum sum_j w_j (m - x_j) taken in
vector registers (``_target_sums``). Scope: ``row_scope`` (no lower
bound on the factor; an upper one). Before, these rows took the float64
formula: (8192, 1000), 1 thread, ``out=``, label smoothing 0.1 19.7 ->
9.2 ms (PyTorch 15.5-15.8), z-loss 1e-4 13.3 -> 8.0 ms.

Probability targets (``ce_probs_row32``, in place of
``multiclass.cross_entropy_probs``, with or without class weights,
smoothing and z-loss) take the same terms and sum, and two more float64
sums before them, T = sum_j b_j and S = sum_j b_j (m - x_j), b_j = w_j
t'_j the per-class targets, in vector registers (``_target_sums``);
the value is S + T log1p(others) + z lse^2, the gradient (A p_j - b_j) /
gdiv, A = T + 2 z lse, from E_j in float64, rounded once. Where A p_j and
b_j cancel, the term's 0.69 ULP is an error in ULPs of A p_j, not of the
difference: within 2 ULP times the
condition number (the numerics policy's bound for a cancelling
difference; 1.19 at most measured), where the float64 formula's terms
(relative error < 2^-34) stay within 1 ULP at moderate conditions (rows of
1100 random targets: 1 ULP before, 373 ULP at one entry now,
tests/test_multiclass.py::test_probability_targets_over_several_blocks).
Its scope and costs are in its docstring.
"""

import numpy as np
from numba import njit

from fastloss._config import JIT
from fastloss.math import xmul
from fastloss.math._cpu import E32_RANGE, E32_SCALE_BITS, exp_gap32, f32_pair
from fastloss.math._intrin import (
    bits_f32,
    f32_bits,
    fma,
    fma32,
    row_sum_skip,
    row_target_sums,
    wide_vectors,
)
from fastloss.scalar.multiclass import (
    _block_max,
    _key_float,
    _order_key,
    _target_plain,
    ce_grad_factor,
    ce_label_grad,
    ce_row_scalars,
    ce_value,
    cross_entropy,
    cross_entropy_probs,
    exp,
    log1p,
    lse_others,
)

#: |m| below this: m - E32_RANGE < m in float32
_M_LIMIT = 2.0 ** 24
#: the gradient factor's range (or 0), module doc
_F_MIN = 2.0 ** -38
_F_MAX = 2.0 ** 20
_UNSCALE = 2.0 ** -E32_SCALE_BITS
_RANGE32 = np.float32(E32_RANGE)
#: the term of a maximum, e^0 2^64
_TOP = np.float32(2.0 ** E32_SCALE_BITS)
#: rows of ROW32_MIN to ROW32_MAX classes take ``ce_row32`` (with integer
#: labels, those of fewer than ``rowtiles.GROUP_MAX`` take its algorithm
#: by groups of 16 rows, ``rowtiles.group_rows``, with its bits) (ROW32_MIN >=
#: _SUM_LANES >= _MAIN, which its passes assume): below, its fixed cost per
#: row (~0.35 us) outweighs its faster terms (float32, 1 thread, in L1:
#: C = 100 3.9 against the float64 formula's 2.9 ns/elem, C = 200 2.05
#: against 2.03, C = 1000 0.85 against 1.21). Up to 2^17 a row and its
#: gradient (1 MiB) stay about in L2 (Zen 4: 1 MiB a core) between the
#: passes: 2 threads, the float64 formula -> this, (2048, 32768) 48.6 ->
#: 25.1 ms, (256, 131072) 20.1 -> 11.4 ms; longer rows keep the float64
#: formula's blocks of 512, each in L1 between its passes
ROW32_MIN = 256
#: rows of PROBS32_MIN to ROW32_MAX classes with probability targets take
#: ``ce_probs_row32`` (PROBS32_MIN = _MAIN = _SUM_LANES, the least its
#: passes take). With targets, the float64 formula costs more per row than
#: with labels, and the float32 lanes win from the passes' minimum on:
#: (2^21 / C, C) float32, ``out=``, 1 thread, ns a row, float64 formula ->
#: ce_probs_row32, two runs alternating processes, without / with weights
#: and smoothing: C = 64 320-330 -> 243-246 / 332-334 -> 239-240; 100
#: 444-448 -> 283-285 / 466-467 -> 293-294; 150 637-639 -> 357-358 /
#: 677-684 -> 367-369; 200 661-664 -> 423-434 / 723-770 -> 424-429; 255
#: 764-791 -> 451-458 / 845-877 -> 471-477 (PyTorch's forward and backward
#: took 135 ns a row at C = 64, 210 at 100 and 532 at 255). Rows of fewer
#: classes take this algorithm by lanes across rows (``rowtiles.lane_probs``).
PROBS32_MIN = 64
ROW32_MAX = 1 << 17
#: the main loops' length is a multiple of this (``_terms``)
_MAIN = 64


#: ``_row_sum``'s lanes of running sums
_SUM_LANES = 64
assert PROBS32_MIN >= max(_MAIN, _SUM_LANES)


@njit(**{**JIT, "forceinline": True})
def _row_sum(ts):
    """(sum, count) over the row's terms ts (n >= _SUM_LANES of them): the
    sum in float64 of the terms below 2^64 and the count of the terms equal
    to 2^64 (module doc, pass 3), in one pass in vector registers
    (``_intrin.row_sum_skip``): _SUM_LANES running sums, lane l taking
    terms l, l + _SUM_LANES, ... of the whole groups, then term l of the
    row's last _SUM_LANES unless a group took it, then the lanes by a fixed
    tree: an order fixed by n. Every term is >= 0: relative error ~(n /
    _SUM_LANES + 7) 2^-53. It replaced a radix-8 tree over blocks of 256
    (partials in a scratch array, summed pairwise) and a separate count
    pass: C = 1000, one row in L1, 0.19 against 0.08 ns/elem."""
    return row_sum_skip(ts, _TOP, _SUM_LANES)


@njit(**JIT)
def _terms(x, ts, m32, negm, lo, inplace):
    """ts[j] = ``exp_gap32``(x[j], ...) for the row (n >= _MAIN), x and ts
    of one size, ts either x itself (``inplace``) or another array. The
    main loop covers a multiple of _MAIN elements (module doc: no scalar
    epilogue), the rest is the row's last _MAIN again: the same terms for
    those already done, which in place are kept by a select (x_j there is
    already E_j). With x = ts one array is read and written: two would fail
    LLVM's runtime overlap check and run the scalar loop."""
    wide_vectors()
    n = x.size
    nm = n - n % _MAIN
    if inplace:
        for j in range(nm):
            ts[j] = exp_gap32(ts[j], m32, negm, lo)
    else:
        for j in range(nm):
            ts[j] = exp_gap32(x[j], m32, negm, lo)
    if nm < n:
        # the last _MAIN as slices: indices from 0 (the row's n - _MAIN + i
        # may be negative to LLVM, and Numba's wraparound test kept that
        # loop scalar: C = 100, 115 against 47 ns a row)
        tt = ts[n - _MAIN:]
        b = nm - (n - _MAIN)
        if inplace:
            for i in range(_MAIN):
                v = tt[i]
                e = exp_gap32(v, m32, negm, lo)
                tt[i] = e if i >= b else v
        else:
            xt = x[n - _MAIN:]
            for i in range(_MAIN):
                tt[i] = exp_gap32(xt[i], m32, negm, lo)


@njit(**{**JIT, "forceinline": True})
def lanes_scope(m, wy, gdiv, n):
    """Whether a row of n classes, maximum m (float64) and label weight wy
    is in the float32 lanes' scope (module doc): w_y / gdiv within [2^-38 n,
    2^20] or w_y = 0, and |m| < 2^24 (not NaN)."""
    fmax = wy / gdiv
    fmin = fmax / n
    return (wy == 0.0 or (fmax <= _F_MAX and fmin >= _F_MIN)) and abs(m) < _M_LIMIT


@njit(**JIT)
def scale_terms(g, fh, fl):
    """g[j] = fma(g[j], fh, g[j] fl), the terms E_j times the factor's
    float32 pair rounded once, for a row of n >= _MAIN: ``scale_tail``,
    then ``scale_main``."""
    scale_tail(g, fh, fl)
    scale_main(g, fh, fl)


@njit(**JIT)
def scale_tail(g, fh, fl):
    """``scale_terms``' entries from the last multiple of _MAIN on: the
    row's last _MAIN (a slice, indexed from 0) with the entries before it
    kept by a select (no scalar epilogue: ``_terms``). It runs before
    ``scale_main``: after it, the tail's loads straddled the main loop's
    last stores (n % 16 != 0) and waited for them (store forwarding)."""
    wide_vectors()
    n = g.size
    nm = n - n % _MAIN
    if nm < n:
        gt = g[n - _MAIN:]
        b = nm - (n - _MAIN)
        for i in range(_MAIN):
            e = gt[i]
            v = fma32(e, fh, e * fl)
            gt[i] = v if i >= b else e


@njit(**JIT)
def scale_main(g, fh, fl):
    """``scale_terms``' entries below the last multiple of _MAIN."""
    wide_vectors()
    nm = g.size - g.size % _MAIN
    for j in range(nm):
        e = g[j]
        g[j] = fma32(e, fh, e * fl)


@njit(**{**JIT, "forceinline": True})
def grad_less(e, f, b, ginv):
    """A gradient entry E f - b ginv from a float32 term E (float32 b or
    float64): in float64 (the product and the difference rounded once, by
    fma, b ginv once more), then rounded to float32 (``_probs_grad``,
    ``rowtiles.lane_rows``)."""
    return np.float32(fma(np.float64(e), f, -(np.float64(b) * ginv)))


@njit(**{**JIT, "forceinline": True})
def _options_scope(m, t_sum, z, gdiv):
    """Whether a row of maximum m (float64) is in the float32 lanes' scope
    for a gradient A p_j - b_j formed in float64 (``_probs_grad``): |m| <
    2^24 (not NaN) and |F| <= 2^20, F = A / ((1 + others) gdiv), A = T + 2
    z lse, from an upper bound on T = sum_j b_j (``t_sum``) and lse <= m +
    ln C (ln 2^17 < 12): then a term clamped far below the maximum
    (``exp_gap32``: E_j < 2^-184 2^64) adds < 2^-164 to E_j F, where the
    exact one adds less. (The float64 gradient needs no lower bound on F.)"""
    return abs(m) < _M_LIMIT and t_sum + 2.0 * z * (abs(m) + 12.0) <= _F_MAX * gdiv


@njit(**{**JIT, "forceinline": True})
def row_scope(m, wy, eps, z, wsum, gdiv, n):
    """Whether a row of n classes (float64), maximum m and label weight wy
    is in the float32 lanes' scope for cross_entropy with labels: without
    smoothing and z-loss ``lanes_scope`` (the gradient by the factor's
    float32 pair), with them ``_options_scope`` with T = (1 - eps) w_y +
    (eps/C) sum(w) (the gradient formed in float64): ``ce_row32``,
    ``rowtiles.lane_rows``, ``rowtiles.group_rows``."""
    if eps != 0.0 or z != 0.0:
        return _options_scope(m, wy * (1.0 - eps) + eps / n * wsum, z, gdiv)
    return lanes_scope(m, wy, gdiv, n)


@njit(**JIT)
def ce_row32(x, y, t, w, eps, z, wsum_lo, wsum, gdiv, g, sg, buf):
    """``multiclass.cross_entropy`` for a float32 row, its softmax terms on
    float32 lanes (module doc); the same signature and result.

    With label smoothing or a z-loss (``options``) the gradient is A p_j -
    b_j, b_j = (eps/C) w_j + (1 - eps) w_y [j = y], A = (1 - eps) w_y +
    (eps/C) sum(w) + 2 z lse: off the label E_j F - (eps/C) w_j / gdiv in
    float64, rounded once (``_probs_grad``, as for probability targets), at
    the label ``ce_label_grad`` (p_y - 1 as expm1, never a difference); the
    value needs sum_j w_j (m - x_j) (``_target_sums`` over x and w, before
    the terms: g may be x), every term >= 0. Where A p_j and (eps/C) w_j
    cancel, the term's 0.69 ULP is an error in ULPs of A p_j (the float64
    formula it replaces keeps float64 terms): ``ce_probs_row32``'s
    accuracy. The scope: ``row_scope``."""
    wide_vectors()
    n = x.size
    wy = np.float64(w[y])
    options = eps != 0.0 or z != 0.0
    m = np.nan
    if ROW32_MIN <= n <= ROW32_MAX:
        m = _block_max(x)
    if not row_scope(m, wy, eps, z, wsum, gdiv, np.float64(n)):
        return cross_entropy(x, y, t, w, eps, z, wsum_lo, wsum, gdiv, g, sg, buf)
    m32 = np.float32(m)
    negm = -m32
    lo = m32 - _RANGE32
    xy = np.float64(x[y])  # (read before the gradient: g may be x)
    sm = 0.0
    if eps != 0.0:
        sm = _target_sums(x, w, m)[1]
    # scratch (float64 buf, ``multiclass.scratch_size(n)`` >= what this
    # takes): the terms when there is no gradient
    ts = g if sg else buf[:(n + 1) // 2].view(np.float32)[:n]
    _terms(x, ts, m32, negm, lo, sg and x.ctypes.data == g.ctypes.data)
    s, k = _row_sum(ts)
    nll, l1, lse, a1, a2, a, denom, ec = ce_row_scalars(m, s * _UNSCALE, 0.0,
                                                        np.float64(k), xy, wy, eps, z, wsum, n)
    if sg:
        f = ce_grad_factor(a, denom, gdiv) * _UNSCALE
        if options:
            _probs_grad(g, w, f, ec / gdiv)
            g[y] = ce_label_grad(a1, a2, exp(-nll), ec, wy, nll, gdiv)
        else:
            fh, fl = f32_pair(f)
            scale_terms(g, fh, fl)
            # (a2 = 0: no smoothing, no z-loss)
            g[y] = ce_label_grad(a1, a2, 0.0, ec, wy, nll, gdiv)
    return ce_value(a1, nll, eps, ec, sm, 0.0, 1.0, wsum, l1, z, lse, m)


# --- probability targets ------------------------------------------------------

@njit(**{**JIT, "forceinline": True})
def _target_sums(x, t, m):
    """(T, S) = (sum_j t_j, sum_j t_j (m - x_j)) over the row (n >=
    _SUM_LANES elements, maximum m) in float64, t_j (m - x_j) taken as 0
    where t_j = 0 (0 log 0 = 0 at x_j = -inf), in one pass in vector
    registers (``_intrin.row_target_sums``, the lanes, tail and tree of
    ``_row_sum``): an order fixed by n. Every term is >= 0: relative error
    ~(n / _SUM_LANES + 7) 2^-53. It replaced radix-8 levels over blocks of
    256 (partials in scratch, summed pairwise): C = 1000, one row in L1,
    1 thread, 0.34-0.35 against 0.184-0.186 ns/elem, where the loop's 56
    zmm instructions per 64 elements (16 conversions to float64, 8
    subtractions, 8 masked products, 16 sums, 4 compares, 4 mask shifts)
    issue at about one a cycle."""
    return row_target_sums(x, t, m, _SUM_LANES)


@njit(**JIT)
def _maxes(x, t):
    """(the maximum of x as ``_block_max``'s, the largest t_j) in one
    vectorized pass over both rows: t >= 0 or NaN (checked by the caller),
    whose bits as int32 order as the values, a NaN above +inf. Reading t
    here, as one stream beside x's, also saved its 8 strided streams in
    ``_target_sums`` from memory: (8192, 1000), 1 thread, 1.72 -> 1.63
    ns/elem (a software prefetch of the row instead: 1.85 -> 1.72)."""
    wide_vectors()
    mk = _order_key(x[0])
    tk = np.int32(0)
    for j in range(x.size):
        kj = _order_key(x[j])
        mk = kj if kj > mk else mk
        bj = f32_bits(t[j])
        tk = bj if bj > tk else tk
    return _key_float(mk, x), np.float64(bits_f32(tk))


@njit(**JIT)
def _probs_grad(g, t, f, ginv):
    """g_j = ``grad_less``(E_j, f, t_j, ginv) for the terms E_j = g_j."""
    wide_vectors()
    for j in range(g.size):
        g[j] = grad_less(g[j], f, t[j], ginv)


@njit(**{**JIT, "forceinline": True})
def _probs_core(x, b, z, gdiv, g, sg, buf, m):
    """``ce_probs_row32`` in its scope, b the row of per-class targets b_j
    (float32 t itself without weights or smoothing, else float64)."""
    n = x.size
    m32 = np.float32(m)
    tt, sv = _target_sums(x, b, m)
    # scratch as ce_row32's
    ts = g if sg else buf[:(n + 1) // 2].view(np.float32)[:n]
    _terms(x, ts, m32, -m32, m32 - _RANGE32, sg and x.ctypes.data == g.ctypes.data)
    s, k = _row_sum(ts)
    val, f = probs_scalars(m, s, k, tt, sv, z, gdiv)
    if sg:
        _probs_grad(g, b, f, 1.0 / gdiv)
    return val


@njit(**{**JIT, "forceinline": True})
def probs_scalars(m, s, k, tt, sv, z, gdiv):
    """The row scalars of probability targets: (value, F 2^-64) from the
    row's maximum m, the sum s of its terms below 2^64 (scaled by 2^64),
    their count k equal to it, T = tt and S = sv (``_target_sums``); the
    value S + T log1p(others) + z lse^2 and the gradient factor F = A /
    ((1 + others) gdiv), A = T + 2 z lse (the gradient E_j F 2^-64 - b_j /
    gdiv, ``grad_less``). ``ce_probs_row32``'s, and by lane across rows
    ``rowtiles.lane_probs``'."""
    o = lse_others(s * _UNSCALE, 0.0, np.float64(k))
    l1 = log1p(o)
    lse = m + l1
    a = tt + 2.0 * z * lse if z != 0.0 else tt
    val = sv + xmul(tt, l1)
    if z != 0.0:
        val += z * lse * lse
    return val, ce_grad_factor(a, 1.0 + o, gdiv) * _UNSCALE


@njit(**{**JIT, "forceinline": True})
def probs_scope(m, tmax, eps, p2, plain, z, gdiv, n):
    """Whether a row of n classes with probability targets, maximum m
    (float64) and largest target tmax, is in ``ce_probs_row32``'s scope
    (its docstring): ``_options_scope`` with T bounded by n max_j b_j, from
    p2 = max(w) (taken once per call by ``rows.formula_params``). A NaN
    maximum or target fails."""
    bmax = tmax if plain else p2 * (tmax * (1.0 - eps) + eps / n)
    return _options_scope(m, n * bmax, z, gdiv)


@njit(**JIT)
def row_targets(t, w, eps, buf):
    """b_j = w_j t'_j, t'_j = (1 - eps) t_j + eps/C, for the row t
    (``multiclass._target_plain``) into float64 scratch: buf[o:o + C], o
    = (C + 1) / 2 (after ``_probs_core``'s float32 terms); returns that
    view."""
    n = t.size
    o = (n + 1) // 2
    b = buf[o:o + n]
    om = 1.0 - eps
    ec = eps / n
    for j in range(n):
        b[j] = _target_plain(t[j], w[j], om, ec, False)
    return b


@njit(**JIT)
def ce_probs_row32(x, y, t, w, eps, z, p2, p3, gdiv, g, sg, buf):
    """``multiclass.cross_entropy_probs`` for a float32 row, its softmax terms
    on float32 lanes as ``ce_row32``'s; the same signature and result.

    Scope: PROBS32_MIN to ROW32_MAX classes, |m| < 2^24, and a bound on the
    gradient factor F = A / ((1 + others) gdiv), A = T + 2 z lse, T =
    sum_j b_j, b_j = w_j t'_j, t'_j = (1 - eps) t_j + eps/C (t_j itself
    without class weights and smoothing: p3 = 1, ``fastloss.rows``; p2 =
    max(w)): C max b + 2 z (|m| + 12) <= 2^20 gdiv, so |F| <= 2^20 (lse <= m + ln C,
    ln 2^17 < 12), and a term clamped far below the maximum (``exp_gap32``:
    E_j < 2^-184 2^64) adds < 2^-164 to E_j F, where the exact one adds
    less (the float64 gradient needs no lower bound on F). Other rows,
    found before anything is written, take ``cross_entropy_probs``.

    Passes: the maxima of x and t (``_maxes``); T and S = sum_j b_j (m -
    x_j) (``_target_sums``, before the terms: g may be x); the terms E_j
    (``_terms``) and their sum (``_row_sum``), ``ce_row32``'s; then the
    value S + T log1p(others) + z lse^2 and the gradient (A p_j - b_j) /
    gdiv = E_j F - b_j / gdiv (``_probs_grad``), each rounded once from
    float64; b_j as the float64 formula's (``multiclass._target_plain``),
    with weights or smoothing computed once into float64 scratch.

    Cost without weights or smoothing, (8192, 1000), ``out=``, alternating
    processes: 1 thread 11.3-11.7 ms (PyTorch 17.3-18.7), 2 threads
    5.9-6.2 ms (PyTorch 12.2-12.5); before the vector target sums 12.9-13.2
    and 6.8-6.9. In L1 the passes take (ns/elem): the target sums 0.185,
    the terms 0.34, their sum 0.08, the gradient 0.17, the maxima
    0.08-0.09; the rest of the public call is the wait for each row from
    memory (a software prefetch of the next row, and the gradient by
    streaming stores from scratch, measured slower: 1.7-2.1 and 1.8-2.2
    ns/elem for the kernel against 1.6, before the vector sums). In L1, C
    = 1000, before the vector sums: with weights, smoothing or both
    1.47-1.51 against the float64 formula's 2.17-2.21; with z-loss alone
    1.36-1.37 against 1.98-2.04.

    Accuracy: the value as ``ce_row32``'s (the terms' 0.69 ULP reach it
    through log1p(others) <= others: at most 0.69 ULP of T log1p(others)).
    A gradient entry carries the term's 0.69 ULP of E_j F and its final
    rounding: where A p_j and b_j cancel, an error in ULPs of the product,
    not of the difference, which the gradient's condition number counts
    (tests/test_multiclass.py, ``test_lanes_probs_oracle``); the float64
    formula's terms are good to ~2^-34 there."""
    wide_vectors()
    n = x.size
    if PROBS32_MIN <= n <= ROW32_MAX:
        m, tmax = _maxes(x, t)
        plain = eps == 0.0 and p3 == 1.0
        if probs_scope(m, tmax, eps, p2, plain, z, gdiv, n):
            if plain:
                return _probs_core(x, t, z, gdiv, g, sg, buf, m)
            # b_j = w_j t'_j once into scratch (after ``_probs_core``'s), as
            # float64 (reading w and t in the radix-8 loops took 8 more
            # streams, and LLVM's overlap checks kept them scalar)
            return _probs_core(x, row_targets(t, w, eps, buf), z, gdiv, g, sg, buf, m)
    return cross_entropy_probs(x, y, t, w, eps, z, p2, p3, gdiv, g, sg, buf)
