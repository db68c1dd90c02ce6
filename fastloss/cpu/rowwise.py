"""The CPU driver for row-wise (softmax) losses: one fused, parallel pass.

``kernel`` (``fused`` behind ``fastloss.cpu.dispatch.LiteralDispatch``) runs
a row formula of ``fastloss.scalar.multiclass`` on every row of an (N, C)
array, writes the gradient rows (which may be the input rows
themselves) and sums the per-row values in float64 per fixed-size chunk of
rows (``fastloss.reduce``). The chunk is ``max(1, CHUNK // C)`` rows, a size
that depends on the data's shape only, so the reduction is bitwise the same
on any number of threads. The formula is chosen by ``fid``, an index into
``ROW_FORMULAS`` that Numba treats as a compile-time literal (one cached
kernel per loss and dtype).

A formula whose gradient is zero but at the label (``ROW_ENTRIES``: nll)
takes a kernel of its own, ``entry_kernel``: its values from the label
entries alone, then the gradient's zeros and entries, by streaming stores
when the gradient is large (``_config.ENTRY_STREAM_BYTES``).
"""

import numba
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

from fastloss._config import (
    CHUNK,
    ENTRY_STREAM_BYTES,
    JIT,
    KERNEL_JIT,
    PARALLEL_JIT,
    SOFTWARE_PREFETCH,
)
from fastloss.cpu.dispatch import LiteralDispatch
from fastloss.cpu.rowlanes import ce_probs_row32, ce_row32
from fastloss.cpu.rowtiles import tile_pass
from fastloss.cpu.stream import to_line
from fastloss.math._intrin import (
    LINE_BYTES,
    borrow,
    f32_bits,
    f64_bits,
    keep_alive,
    prefetch,
    store_fence,
    stream_line,
    stream_line_one,
    wide_vectors,
)
from fastloss.reduce import keep_and_add, neumaier_add
from fastloss.scalar.multiclass import (
    ROW_FORMULAS,
    cross_entropy,
    cross_entropy_probs,
    nll,
    nll_entry,
    row_dead,
)

#: formulas that read one entry of a row, x[y], and whose gradient is zero
#: but at that entry: the formula of that entry (value, gradient entry)
ROW_ENTRIES = {nll: nll_entry}


def row_apply(fid, x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf):  # pragma: no cover
    """ROW_FORMULAS[fid](...) inside compiled code."""
    raise NotImplementedError


@overload(row_apply, jit_options=JIT)
def _row_apply(fid, x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf):
    if not isinstance(fid, types.IntegerLiteral):
        raise numba.errors.TypingError("row_apply: the formula id must be a compile-time literal")
    formula = ROW_FORMULAS[fid.literal_value]
    if getattr(x, "dtype", None) == types.float32:
        # its softmax terms on float32 lanes (``rowlanes``; it takes the
        # float64 formula itself for the rows and options outside its scope)
        formula = {cross_entropy: ce_row32,
                   cross_entropy_probs: ce_probs_row32}.get(formula, formula)

    def impl(fid, x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf):
        return formula(x, y, t, w, p0, p1, p2, p3, gdiv, g, sg, buf)

    return impl


def entry_pass(fid, x, lab, w, ignore, use_ignore, gdiv, g, vals, hi, lo, rpc, store_grad,
               store_vals):  # pragma: no cover - replaced by the overload
    """True after ``entry_kernel`` computed the whole call when the formula
    is one of ``ROW_ENTRIES``, else False having done nothing (a constant
    for the other formulas)."""
    raise NotImplementedError


@overload(entry_pass, jit_options=JIT, prefer_literal=True)
def _entry_pass(fid, x, lab, w, ignore, use_ignore, gdiv, g, vals, hi, lo, rpc, store_grad,
                store_vals):
    if ROW_FORMULAS[fid.literal_value] not in ROW_ENTRIES:
        return lambda fid, x, lab, w, ignore, use_ignore, gdiv, g, vals, hi, lo, rpc, \
            store_grad, store_vals: False
    kernel = ENTRY_KERNELS[ROW_FORMULAS[fid.literal_value]]

    def run(fid, x, lab, w, ignore, use_ignore, gdiv, g, vals, hi, lo, rpc, store_grad,
            store_vals):
        kernel(x, lab, w, ignore, use_ignore, gdiv, g, vals, hi, lo, rpc, store_grad, store_vals)
        return True
    return run


#: elements of g per work item of ``entry_kernel``'s streaming pass
_ENTRY_BLOCK = 1 << 18


@njit(**{**JIT, "forceinline": True})
def _next_entry(lab, ignore, use_ignore, c, r, rend):
    """(r', f): the first row r' >= r below rend that is not ignored, and
    the flat index f = r' c + y_r' of its label entry (rend and the largest
    int64 when there is none)."""
    while r < rend and use_ignore and lab[r] == ignore:
        r += 1
    if r >= rend:
        return rend, np.iinfo(np.int64).max
    return r, r * c + lab[r]


@njit(**JIT)
def _entry_span(gf, b0, b2, b1, lab, ignore, use_ignore, gy, c, lanes):
    """gf[b0:b1] (gf: the gradient flattened, rows of c; b0 and b2 on line
    boundaries, b1 - b2 less than a line) written: zeros but the label
    entries gy[r] at r c + y_r; the whole lines of [b0, b2) by streaming
    stores (a line with one label entry formed in a register,
    ``stream_line_one``; with several, filled in a small buffer first),
    [b2, b1) by ordinary stores."""
    zeros = np.zeros(2 * lanes, dtype=gf.dtype)  # zeros, and a line to fill
    ln = zeros[lanes:]
    rend = min(gy.size, -(-b1 // c))  # rows after rend - 1 start at or after b1
    r, f = _next_entry(lab, ignore, use_ignore, c, b0 // c, rend)
    while f < b0:
        r, f = _next_entry(lab, ignore, use_ignore, c, r + 1, rend)
    i = b0
    while i < b2:
        # zeros up to the line of the next label entry (a tight loop: a
        # line's streaming store takes ~0.7 ns), then that line
        # (lanes a power of 2: a mask, not a division by a variable)
        at = f - ((f - b0) & (lanes - 1)) if f < b2 else b2
        for k in range(i, at, lanes):
            stream_line(gf, k, zeros, 0)
        i = at
        if i < b2:
            k, v = f - i, gy[r]
            r, f = _next_entry(lab, ignore, use_ignore, c, r + 1, rend)
            if f >= i + lanes:  # the line's one entry: formed in a register
                stream_line_one(gf, i, k, v)
            else:  # entries of several rows: the line filled in memory
                ln[k] = v
                while f < i + lanes:
                    ln[f - i] = gy[r]
                    r, f = _next_entry(lab, ignore, use_ignore, c, r + 1, rend)
                stream_line(gf, i, zeros, lanes)
                for j in range(lanes):
                    ln[j] = 0.0
            i += lanes
    for i in range(b2, b1):  # (at most a line)
        gf[i] = 0.0
    while f < b1:
        gf[f] = gy[r]
        r, f = _next_entry(lab, ignore, use_ignore, c, r + 1, rend)


def _entry_kernel(entry):
    """``entry_kernel`` for the ``ROW_ENTRIES`` function entry (a global of
    the compiled function: a function passed as an argument would make the
    row driver uncacheable)."""

    @njit(**PARALLEL_JIT)
    def entry_kernel(x, lab, w, ignore, use_ignore, gdiv, g, vals, hi, lo, rpc, store_grad,
                     store_vals):
        """The row driver's call (``fused``) for a ``ROW_ENTRIES`` formula
        (nll), whose gradient rows are zero but at the label, in three
        parallel passes (the last two when store_grad):

        1. by chunks of rpc rows, as ``fused``: each row's value (the sum
           of a chunk into hi/lo; into vals when store_vals) and its label
           entry, into a float64 array, reading x[r, y_r] only;
        2. g filled with zeros in blocks of ``_ENTRY_BLOCK`` elements by
           ordinary stores, then 3. the label entries stored into it; or,
           for a gradient of ``ENTRY_STREAM_BYTES`` or more, 2 and 3 in
           one: its whole cache lines by streaming stores with the entries
           inside them, the partial lines at its ends by ordinary stores
           (``_entry_span``).

        Ordinary stores read each line of g into the cache before they
        write it (read-for-ownership). A label entry stored by an ordinary
        store right after its line was streamed waits for that line to
        reach memory and come back (a row-by-row version took 1.6 ms
        against 0.65 with ordinary stores at (8192, 1000) float32, 2
        threads): the entries go out inside the streamed lines. Every x
        entry is read in pass 1, before g is written: g may be x. The
        values' chunks are ``fused``'s: the same sums.

        Pass 1 calls the entry inlined: ``fused``'s row loop called the
        whole formula with a dozen arguments (five arrays) per row, ~40 ns a
        row, 0.33 ms at (8192, 16) float32, 1 thread, without a gradient."""
        n, c = x.shape
        gy = np.empty(n if store_grad else 0, dtype=np.float64)
        for ch in prange(hi.size):
            start = ch * rpc
            stop = min(start + rpc, n)
            s = 0.0
            comp = 0.0
            for r in range(start, stop):
                if r + LABEL_AHEAD < n:
                    # x[r, y_r]: a cache miss that no hardware prefetcher
                    # can predict. The label clamped into the row: an
                    # ignored row's may be any integer
                    ra = r + LABEL_AHEAD
                    prefetch(x[ra], min(max(lab[ra], 0), c - 1), False)
                y = lab[r]
                v = 0.0
                e = 0.0
                if not (use_ignore and y == ignore):
                    v, e = entry(x[r], y, w, gdiv)
                if store_grad:
                    gy[r] = e
                s, comp = keep_and_add(vals, r, store_vals, s, comp, v)
            hi[ch] = s
            lo[ch] = comp if np.isfinite(s) else 0.0
        if not store_grad:
            return
        gf = g.reshape(g.size)
        if gf.size == 0:
            return
        if g.nbytes < ENTRY_STREAM_BYTES or gf.ctypes.data % gf.itemsize != 0:
            for b in prange(-(-gf.size // _ENTRY_BLOCK)):
                blk = gf[b * _ENTRY_BLOCK:min((b + 1) * _ENTRY_BLOCK, gf.size)]
                # (indexed from 0: vectorized; from the block's start
                # Numba's wraparound test kept the loop scalar, 3.2-3.9 ms
                # at (8192, 1000) float32)
                for i in range(blk.size):
                    blk[i] = 0.0
            for r in prange(n):
                y = lab[r]
                if not (use_ignore and y == ignore):
                    gf[r * c + y] = gy[r]
            return
        lanes = LINE_BYTES // gf.itemsize
        h = min(gf.size, to_line(gf.ctypes.data, gf.itemsize))
        _entry_span(gf, 0, 0, h, lab, ignore, use_ignore, gy, c, lanes)
        for b in prange(-(-(gf.size - h) // _ENTRY_BLOCK)):
            b0 = h + b * _ENTRY_BLOCK  # on a line boundary
            b1 = min(b0 + _ENTRY_BLOCK, gf.size)
            _entry_span(gf, b0, b0 + (b1 - b0) // lanes * lanes, b1, lab, ignore, use_ignore, gy,
                        c, lanes)
            store_fence()  # the streamed lines before the join

    return entry_kernel


#: ``entry_kernel`` of each ``ROW_ENTRIES`` formula
ENTRY_KERNELS = {f: _entry_kernel(e) for f, e in ROW_ENTRIES.items()}


def rows_per_chunk(c: int) -> int:
    """Rows per reduction chunk: depends on the row length only."""
    return max(1, CHUNK // max(c, 1))


def reads_row(fid):  # pragma: no cover - replaced by the overload
    """Whether ROW_FORMULAS[fid] reads its whole row of x (a compile-time
    constant): every formula but those of ``ROW_ENTRIES`` (nll), which read
    x[y] only."""
    raise NotImplementedError


@overload(reads_row, jit_options=JIT)
def _reads_row(fid):
    if not isinstance(fid, types.IntegerLiteral):
        raise numba.errors.TypingError("reads_row: the formula id must be a compile-time literal")
    reads = ROW_FORMULAS[fid.literal_value] not in ROW_ENTRIES
    return lambda fid: reads


@njit(**PARALLEL_JIT)
def fused(fid, x, lab, t, w, p0, p1, p2, p3, ignore, use_ignore, gdiv, grad, vals,
           hi, lo, rpc, store_grad, store_vals, nscratch, tcheck, tbad):
    """Fused pass over the rows of x (N, C), C-contiguous.

    lab (N,) int64 labels (zeros when the loss has none); t (N, C) targets or
    (N, 0); w (C,) class weights; grad (N, C) or (N, 0); vals (N,) or (0,),
    the data's dtype (each row's float64 value rounded once as it is
    stored); hi/lo: one compensated partial per chunk of ``rpc`` rows;
    nscratch: ``rowtiles.scratch(C)``, the float64 scratch per chunk. A row
    whose label equals ``ignore`` (when ``use_ignore``) has value 0 and a zero
    gradient. With ``tcheck``, tbad[chunk] (int8, one per chunk) is set to 1
    where a target of the chunk's rows is negative or +inf (the caller's
    deferred check, ``fastloss.rows``), 0 elsewhere; the chunk's rows of t
    are read again for it while they are in cache. A ``ROW_ENTRIES``
    formula's call is ``entry_kernel``'s (``entry_pass``).
    """
    numba.literally(fid)
    n = x.shape[0]
    # the caller holds x, lab, t, w and grad for the whole call
    bx = borrow(x)
    bt = borrow(t)
    bw = borrow(w)
    bg = borrow(grad)
    if entry_pass(fid, bx, lab, bw, ignore, use_ignore, gdiv, bg, vals, hi, lo, rpc, store_grad,
                  store_vals):
        return
    for ch in prange(hi.size):
        wide_vectors()  # the attribute of the outlined parallel body
        start = ch * rpc
        stop = min(start + rpc, n)
        # the formulas' block buffers and kept terms (contents never outlive
        # a row). Per chunk: numba.get_thread_id() would make the kernel
        # uncacheable (a dynamic global)
        owner = np.empty(nscratch, dtype=np.float64)
        buf = borrow(owner)
        s = 0.0
        comp = 0.0
        # rows of few classes several at a time (float32 cross_entropy
        # only, on float32 lanes: ``rowtiles``)
        tiled, s, comp = tile_pass(fid, bx, lab, bt, bw, p0, p1, p2, p3, ignore, use_ignore, gdiv,
                                   bg, store_grad, buf, start, stop, vals, store_vals, s, comp)
        for r in range(start, stop if not tiled else start):
            if PREFETCH_BYTES > 0 and r + 1 < stop:
                _prefetch_row(bx, bg, r + 1, store_grad, reads_row(fid))
            y = lab[r]
            if use_ignore and y == ignore:
                v = 0.0
                if store_grad:
                    gr = bg[r]
                    for j in range(gr.size):
                        gr[j] = 0.0
            else:
                v = row_apply(fid, bx[r], y, bt[r], bw, p0, p1, p2, p3, gdiv, bg[r], store_grad,
                              buf)
            s, comp = keep_and_add(vals, r, store_vals, s, comp, v)
        if tcheck:
            bad = 0
            for r in range(start, stop):
                bad |= _outside_nonneg(bt[r])
            tbad[ch] = bad
        keep_alive(owner)
        hi[ch] = s
        lo[ch] = comp if np.isfinite(s) else 0.0


def _bits(v):  # pragma: no cover - replaced by the overload
    """The IEEE bits of the float v as a signed integer of its width."""
    raise NotImplementedError


def _inf_bits(a):  # pragma: no cover - replaced by the overload
    """``_bits`` of +inf in the float type of the array a's elements."""
    raise NotImplementedError


@overload(_bits, jit_options=JIT)
def _bits_ovl(v):
    if v == types.float32:
        return lambda v: f32_bits(v)
    if v == types.float64:
        return lambda v: f64_bits(v)
    return None


@overload(_inf_bits, jit_options=JIT)
def _inf_bits_ovl(a):
    dt = getattr(a, "dtype", None)
    if dt == types.float32:
        return lambda a: np.int32(0x7F800000)
    if dt == types.float64:
        return lambda a: np.int64(0x7FF0000000000000)
    return None


@njit(**{**JIT, "forceinline": True})
def _outside_nonneg(tr):
    """1 if an element of tr is below 0 or +inf (NaN passes), else 0. The
    minimum and maximum of the elements' bits as signed integers (one
    vectorized pass) clear a row within [+0, +inf): bits >= 0 and below
    +inf's. Any other row (a bad element, or a -0 or NaN, which pass) is
    tested element by element. Measured in L1, 1 thread, float32: 0.04-0.07
    ns/elem (flags or a count of them did not vectorize well: 0.18, 0.10)."""
    wide_vectors()
    lo = _inf_bits(tr)
    hi = lo - lo
    for j in range(tr.size):
        k = _bits(tr[j])
        lo = k if k < lo else lo
        hi = k if k > hi else hi
    if lo >= 0 and hi < _inf_bits(tr):
        return 0
    for j in range(tr.size):
        v = tr[j]
        if v < 0.0 or v == np.inf:
            return 1
    return 0


#: bytes of the next row prefetched while a row is computed (rows longer than
#: this are read block by block, a stream the hardware prefetcher follows);
#: 0 where ``fastloss._config.SOFTWARE_PREFETCH`` is off (on an AMD EPYC the
#: prefetches cost: cross_entropy (8192, 1000) float32, 1 thread, 1.98
#: against 1.59 ns/elem without)
PREFETCH_BYTES = (1 << 14) if SOFTWARE_PREFETCH else 0


@njit(**{**JIT, "forceinline": True})
def _prefetch_row(x, g, r, store_grad, read_x):
    """Prefetch the start of row r of x (to read, when the formula reads its
    rows: not nll's, ``reads_row``) and of g (to write).

    A row of a few thousand elements is read in one burst and then computed
    on in L1 for thousands of cycles, during which no memory access gives
    the hardware prefetcher anything to follow: without this, every row
    starts with a burst of cache misses (and, for the gradient, of
    read-for-ownership misses), which do not overlap the arithmetic."""
    xr = x[r]
    step = max(1, 64 // xr.itemsize)
    lim = min(xr.size, PREFETCH_BYTES // xr.itemsize)
    if read_x:
        for j in range(0, lim, step):
            prefetch(xr, j, False)
    if store_grad and g.shape[1] > 0:
        gr = g[r]
        for j in range(0, min(gr.size, lim), step):
            prefetch(gr, j, True)


#: rows ahead of the one computed whose label entry x[r, y_r] is prefetched
#: (formulas that read that entry only: nll). Without it each row waited
#: for its own cache miss: nll float32 (65536, 128), out=, 2 threads, AMD
#: EPYC, 5.2-5.4 ms against 1.53-1.62 with it (alternating processes;
#: 4, 16 and 32 rows ahead measured the same as 8); at (8192, 1000), where
#: writing the zero gradient dominates, within the noise.
LABEL_AHEAD = 8


#: the parallel row driver (see ``fused``); ``LiteralDispatch`` avoids Numba's
#: per-call re-typing of literal-dispatched kernels, and runs inputs of a few
#: chunks on the calling thread
kernel = LiteralDispatch(fused, nchunks_arg=13)


@njit(**KERNEL_JIT)
def _bad_labels(lab, c, ignore, use_ignore):
    """The number of labels outside [0, c) that are not ignored, and the
    number of labels not ignored: one branch-free pass of integer sums,
    which LLVM vectorizes (an early exit would keep the loop scalar)."""
    cu = np.uint64(c)
    nbad = 0
    kept = 0
    for i in range(lab.size):
        y = lab[i]
        keep = not (use_ignore and y == ignore)
        # one unsigned compare for y < 0 or y >= c
        nbad += keep and np.uint64(y) >= cu
        kept += keep
    return nbad, kept


@njit(**KERNEL_JIT)
def check_labels(lab, c, ignore, use_ignore, w, use_w):
    """(index of the first label outside [0, c) that is not ignored, or -1;
    compensated sum of w[label] (or count) over the rows not ignored).

    The labels are checked, and without weights counted, by ``_bad_labels``;
    the first bad index is searched for only when there is one, and only a
    weighted sum needs the sequential compensated loop (its order feeds the
    weighted mean's denominator). The count is exact (< 2^53), as the
    compensated sum of ones it replaced. Measured (65536 labels, AMD EPYC,
    1 thread, no weights): 0.080 ms for the one sequential loop it
    replaced, 0.008 ms now."""
    nbad, kept = _bad_labels(lab, c, ignore, use_ignore)
    if nbad:
        for i in range(lab.size):
            y = lab[i]
            if not (use_ignore and y == ignore) and (y < 0 or y >= c):
                return i, 0.0
    if not use_w:
        return -1, np.float64(kept)
    s = 0.0
    comp = 0.0
    for i in range(lab.size):
        y = lab[i]
        if use_ignore and y == ignore:
            continue
        s, comp = neumaier_add(s, comp, np.float64(w[y]))
    if np.isfinite(s):
        s += comp
    return -1, s


#: rows per work item of ``first_dead_row``'s parallel loop; inputs of at
#: most this many rows run on the calling thread
_DEAD_ROWS = 4096


@njit(**{**JIT, "forceinline": True})
def _dead_in(x, lab, ignore, use_ignore, r0, r1):
    """The first row of r0..r1-1 (not ignored) whose logits are all -inf, or
    -1: a branch-free count of the rows whose first logit is -inf (only
    those can be dead), then, if there is one, the rows in order, each
    until its first logit that is not -inf (``multiclass.row_dead``)."""
    k = 0
    for r in range(r0, r1):
        k += x[r, 0] == -np.inf
    if k:
        for r in range(r0, r1):
            if not (use_ignore and lab[r] == ignore) and row_dead(x, r):
                return r
    return -1


@njit(**KERNEL_JIT)
def _first_dead_row_serial(x, lab, ignore, use_ignore):
    return _dead_in(x, lab, ignore, use_ignore, 0, x.shape[0])


@njit(**PARALLEL_JIT)
def _first_dead_row_blocks(x, lab, ignore, use_ignore):
    n = x.shape[0]
    nblk = -(-n // _DEAD_ROWS)
    found = np.empty(nblk, dtype=np.int64)
    for b in prange(nblk):
        found[b] = _dead_in(x, lab, ignore, use_ignore, b * _DEAD_ROWS,
                            min((b + 1) * _DEAD_ROWS, n))
    for b in range(nblk):
        if found[b] >= 0:
            return found[b]
    return -1


def first_dead_row(x, lab, ignore, use_ignore) -> int:
    """Index of the first row (not ignored) of x (N, C) whose logits are all
    -inf, or -1. Ordinary data costs one load per row (``_dead_in``); above
    ``_DEAD_ROWS`` rows the blocks of that many rows run in parallel, below
    on the calling thread (a parallel region costs ~2.5 us to start: (32,
    10) 0.47 against 3.0 us). The sequential loop this replaced, which
    stopped at each row's first finite logit, took 0.082 ms at (65536, 32)
    float32 (AMD EPYC, 1 thread; 0.038 ms in blocks at 2 threads). Rows of
    no logits: every row not ignored is dead (vacuously), the first of them
    returned."""
    n, c = x.shape
    if c == 0:
        keep = np.nonzero(~(use_ignore & (lab == ignore)))[0]
        return int(keep[0]) if keep.size else -1
    if n <= _DEAD_ROWS:
        return _first_dead_row_serial(x, lab, ignore, use_ignore)
    return _first_dead_row_blocks(x, lab, ignore, use_ignore)
    nblk = -(-n // _DEAD_ROWS)
    cand = np.zeros(nblk, dtype=np.int64)
    for b in prange(nblk):
        r0 = b * _DEAD_ROWS
        r1 = min(r0 + _DEAD_ROWS, n)
        k = 0
        for r in range(r0, r1):
            k += x[r, 0] == -np.inf
        cand[b] = k
    for b in range(nblk):
        if cand[b] == 0:
            continue
        for r in range(b * _DEAD_ROWS, min((b + 1) * _DEAD_ROWS, n)):
            if not (use_ignore and lab[r] == ignore) and row_dead(x, r):
                return r
    return -1


@njit(**KERNEL_JIT)
def sum_dd(w):
    """sum(w) as a pair (hi, lo), hi + lo = the sum to ~n 2^-106 relative
    (TwoSum of every addition); w >= 0."""
    s = 0.0
    c = 0.0
    for i in range(w.size):
        v = np.float64(w[i])
        t = s + v
        z = t - s
        c += (s - (t - z)) + (v - z)
        s = t
    h = s + c
    if not np.isfinite(h):
        return s, 0.0
    return h, c - (h - s)


@njit(**KERNEL_JIT)
def first_undefined_hinge(x, lab):
    """Index of the first row whose label's logit x_y is infinite and equal
    to another logit of the row (the multi-margin hinge margin - x_y + x_j
    is then inf - inf), or -1. Reads a row only when its x_y is infinite."""
    n, c = x.shape
    for r in range(n):
        y = lab[r]
        v = x[r, y]
        if not np.isinf(v):
            continue
        for j in range(c):
            if j != y and x[r, j] == v:
                return r
    return -1
