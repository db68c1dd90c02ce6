"""LLVM-level helpers for the CPU polynomial primitives (``fastloss.math._cpu``)
and the CPU drivers.

The arithmetic ones are single LLVM instructions, so they vectorize with the
loops that call them: a fused multiply-add (``llvm.fma``, exactly rounded,
not a fast-math contraction; float64 and float32) and bit casts between
float64 and int64 and between float32 and int32. Besides: ``wide_vectors``,
a hint to LLVM's loop vectorizer; ``prefetch``; ``stream_line`` and
``store_fence``, non-temporal stores of whole cache lines; and ``borrow`` /
``keep_alive``, views without reference counting for the parallel drivers'
hot loops (the row driver, the domain checks).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.cpu import CPUContext
from numba.extending import intrinsic

_IR = {types.float32: ir.FloatType(), types.float64: ir.DoubleType(),
       types.int32: ir.IntType(32), types.int64: ir.IntType(64)}


def _named(impl, name, doc):
    impl.__name__ = impl.__qualname__ = name
    impl.__doc__ = doc
    return intrinsic(impl)


def _fma_intrinsic(ty, name, doc):
    """``llvm.fma`` on the floating type ``ty`` (arguments cast to it)."""

    def impl(typingctx, a, b, c):
        sig = ty(ty, ty, ty)

        def codegen(context, builder, signature, args):
            args = [context.cast(builder, v, t, ty) for v, t in zip(args, signature.args)]
            f = _IR[ty]
            fn = builder.module.declare_intrinsic("llvm.fma", [f], ir.FunctionType(f, [f, f, f]))
            return builder.call(fn, args)

        return sig, codegen

    return _named(impl, name, doc)


def _bitcast_intrinsic(src, dst, name, doc):
    """The bits of a ``src`` value reinterpreted as ``dst`` (same width)."""

    def impl(typingctx, x):
        sig = dst(src)

        def codegen(context, builder, signature, args):
            v = context.cast(builder, args[0], signature.args[0], src)
            return builder.bitcast(v, _IR[dst])

        return sig, codegen

    return _named(impl, name, doc)


fma = _fma_intrinsic(types.float64, "fma", "a*b + c with one rounding (IEEE fusedMultiplyAdd).")
fma32 = _fma_intrinsic(types.float32, "fma32",
                       "float32 a*b + c with one rounding: the float32-lane primitives "
                       "(``fastloss.math._cpu.logistic32``, the GPU's float32 logistic).")
f64_bits = _bitcast_intrinsic(types.float64, types.int64, "f64_bits",
                              "The IEEE bit pattern of float64 x as an int64.")
bits_f64 = _bitcast_intrinsic(types.int64, types.float64, "bits_f64",
                              "The float64 whose IEEE bit pattern is the int64 i.")
f32_bits = _bitcast_intrinsic(types.float32, types.int32, "f32_bits",
                              "The IEEE bit pattern of float32 x as an int32.")
bits_f32 = _bitcast_intrinsic(types.int32, types.float32, "bits_f32",
                              "The float32 whose IEEE bit pattern is the int32 i.")


def _pow2_intrinsic(name, sign, bias, doc):
    """An intrinsic f(kf) -> 2^(sign k + bias) as a float32, for the float32
    kf = 1.5 * 2^23 + k holding an integer k: two 32-bit integer
    operations on kf's bits, (sign (bits - bits(1.5 * 2^23)) + 127 + bias)
    << 23. An intrinsic because Numba types int32 arithmetic as int64,
    which doubles the vector instructions of a float32 loop (and converts):
    measured 15% of ``logistic_loss32``'s time with the powers built in
    Python. The caller keeps sign k + bias within [-126, 127]."""
    base = 0x4B400000

    def impl(typingctx, kf):
        if kf != types.float32:
            return None
        sig = types.float32(types.float32)

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            b = builder.bitcast(args[0], i32)
            if sign > 0:
                e = builder.sub(b, i32(base - 127 - bias))
            else:
                e = builder.sub(i32(base + 127 + bias), b)
            return builder.bitcast(builder.shl(e, i32(23)), ir.FloatType())

        return sig, codegen

    return _named(impl, name, doc)


pow2_24_minus_k32 = _pow2_intrinsic(
    "pow2_24_minus_k32", -1, 24,
    "2^(24 - k) as a float32 for k in [0, 150] (normal for all of them: 2^24 down to "
    "2^-126): multiplying by it and then by 2^-24 scales by 2^-k with one rounding, also "
    "where the result is subnormal (``_cpu.logistic_loss32``).")
pow2_k_plus_64_32 = _pow2_intrinsic(
    "pow2_k_plus_64_32", 1, 64,
    "2^(k + 64) as a float32 for k in [-190, 63]: the scale of ``_cpu.exp_gap32``'s "
    "results.")


@intrinsic
def wide_vectors(typingctx):
    """Asks LLVM to vectorize the enclosing compiled function with vectors of
    ``fastloss._config.VECTOR_WIDTH`` bits: sets its function attribute
    "prefer-vector-width" (the attribute clang's -mprefer-vector-width sets).
    Called at the top of every CPU kernel body and row helper that holds a
    hot loop: the attribute belongs to the LLVM function in which the loop
    vectorizer runs, which for a prange body is the outlined parallel
    function. No code is generated; off the CPU target, or with
    VECTOR_WIDTH 0, it does nothing."""
    from fastloss._config import VECTOR_WIDTH

    sig = types.none()

    def codegen(context, builder, signature, args):
        if VECTOR_WIDTH and isinstance(context, CPUContext):
            # llvmlite's FunctionAttributes checks names against a list of
            # keyword attributes; a string attribute is written out as given
            attrs = builder.function.attributes
            set.add(attrs, f'"prefer-vector-width"="{VECTOR_WIDTH}"')
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def prefetch(typingctx, arr, i, write):
    """Hint (``llvm.prefetch``, PREFETCHT0 / PREFETCHW on x86) that element
    i of the 1-D array arr is needed soon, for reading or, with the
    compile-time ``write`` flag, for writing. No fault on any address; no
    effect on results. Used where the hardware prefetcher cannot see the
    next access coming: the row driver computes on one row in L1 for
    thousands of cycles, then reads the next row in a burst."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(i, types.Integer)
            and isinstance(write, types.BooleanLiteral)):
        return None
    rw = 1 if write.literal_value else 0
    sig = types.none(arr, i, write)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, value=args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(rw), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def borrow(typingctx, arr):
    """arr without its owner: the same data, shape and strides, with a null
    NRT meminfo and parent.

    Every view of a Numba array (``x[r]``, ``buf[:w]``) increments and
    decrements its owner's reference count, an atomic instruction (~20
    cycles) plus a call; the row formulas take some 20 to 50 views per row,
    which cost ~200-400 ns a row, more than the arithmetic of a row of a
    few hundred elements. Views of a borrowed array have no owner to count
    (NRT skips a null meminfo). The caller must keep the owner alive while
    the borrowed array is in use (``keep_alive``)."""
    if not isinstance(arr, types.Array):
        return None
    sig = arr(arr)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, value=args[0])
        dst = context.make_array(signature.return_type)(context, builder)
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        dst.parent = cgutils.get_null_value(dst.parent.type)
        for field in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(dst, field, getattr(src, field))
        return dst._getvalue()

    return sig, codegen


@intrinsic
def keep_alive(typingctx, arr):
    """A use of arr that generates no code: its owner is not released before
    this point (the end of a ``borrow``)."""
    sig = types.none(arr)

    def codegen(context, builder, signature, args):
        return context.get_dummy_value()

    return sig, codegen


#: bytes a ``stream_line`` stores: a cache line
LINE_BYTES = 64


def _store_line(context, builder, aty, ary, ity, i, v):
    """The vector v (one cache line) stored at element i of the 1-D array
    ary with a non-temporal store: ``stream_line``'s and
    ``stream_line_one``'s store."""
    a = context.make_array(aty)(context, builder, value=ary)
    i_ = context.cast(builder, i, ity, types.intp)
    p = cgutils.get_item_pointer(context, builder, aty, a, [i_], wraparound=False)
    st = builder.store(v, builder.bitcast(p, v.type.as_pointer()), align=LINE_BYTES)
    st.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))


@intrinsic
def stream_line(typingctx, dst, di, src, si):
    """Copy the 64 bytes (one cache line) at element si of the 1-D array
    src to element di of dst (same dtype) with a non-temporal store (x86:
    VMOVNTPS/VMOVNTPD): the line is written to memory without being read
    into the cache first (no read-for-ownership) and without displacing
    cached data. dst at di must lie on a 64-byte boundary (the store faults
    otherwise); src is loaded unaligned. Streaming stores are weakly
    ordered: a thread that wrote with them issues ``store_fence`` before
    others may read the data."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.ndim == src.ndim == 1 and dst.dtype == src.dtype
            and dst.dtype in (types.float32, types.float64)
            and isinstance(di, types.Integer) and isinstance(si, types.Integer)):
        return None
    sig = types.none(dst, di, src, si)
    lanes = LINE_BYTES // (4 if dst.dtype == types.float32 else 8)

    def codegen(context, builder, signature, args):
        dty, dity, sty, sity = signature.args
        sa = context.make_array(sty)(context, builder, value=args[2])
        si_ = context.cast(builder, args[3], sity, types.intp)
        sp = cgutils.get_item_pointer(context, builder, sty, sa, [si_], wraparound=False)
        vt = ir.VectorType(_IR[dty.dtype], lanes).as_pointer()
        v = builder.load(builder.bitcast(sp, vt), align=dty.dtype.bitwidth // 8)
        _store_line(context, builder, dty, args[0], dity, args[1], v)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def stream_line_one(typingctx, dst, di, k, v):
    """Store a cache line of zeros but element k, which is v (converted to
    dst's dtype), at element di of the 1-D array dst with a non-temporal
    store, as ``stream_line`` (di on a 64-byte boundary, 0 <= k < the
    line's elements). The line is formed in a vector register (a compare
    with k and a select): a line filled in memory by a scalar store and
    read back by ``stream_line`` waited on the store (no forwarding of a
    4-byte store into a 64-byte load)."""
    if not (isinstance(dst, types.Array) and dst.ndim == 1
            and dst.dtype in (types.float32, types.float64)
            and isinstance(di, types.Integer) and isinstance(k, types.Integer)
            and isinstance(v, (types.Float, types.Integer))):
        return None
    sig = types.none(dst, di, k, v)
    lanes = LINE_BYTES // (4 if dst.dtype == types.float32 else 8)

    def codegen(context, builder, signature, args):
        dty, dity, kty, vty = signature.args
        k32 = context.cast(builder, args[2], kty, types.int32)
        val = context.cast(builder, args[3], vty, dty.dtype)
        vt = ir.VectorType(_IR[dty.dtype], lanes)
        it = ir.VectorType(ir.IntType(32), lanes)
        at_k = builder.icmp_unsigned("==", ir.Constant(it, list(range(lanes))),
                                     _splat(builder, k32, it))
        line = builder.select(at_k, _splat(builder, val, vt), ir.Constant(vt, None))
        _store_line(context, builder, dty, args[0], dity, args[1], line)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store_fence(typingctx):
    """A sequentially consistent fence (x86: MFENCE), which also orders the
    weakly ordered ``stream_line`` stores before the thread's later ones."""
    sig = types.none()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


#: the side of ``transpose8``'s block
BLOCK8 = 8
# shufflevector masks of the 8 x 8 float32 transpose (x86 AVX: vunpcklps /
# vunpckhps, vshufps, vperm2f128 in 128-bit lanes)
_UNPACK_LO = (0, 8, 1, 9, 4, 12, 5, 13)
_UNPACK_HI = (2, 10, 3, 11, 6, 14, 7, 15)
_PAIRS_LO = (0, 1, 8, 9, 4, 5, 12, 13)
_PAIRS_HI = (2, 3, 10, 11, 6, 7, 14, 15)
_HALF_LO = (0, 1, 2, 3, 8, 9, 10, 11)
_HALF_HI = (4, 5, 6, 7, 12, 13, 14, 15)


@intrinsic
def transpose8(typingctx, dst, di, dstride, src, si, sstride):
    """An 8 x 8 block of float32 transposed from src into dst (1-D
    contiguous arrays, not overlapping): dst[di + k dstride + i] =
    src[si + i sstride + k] for i, k in 0..7. Eight unaligned vector loads,
    24 shuffles and eight vector stores, against 64 scalar loads and stores
    (an element's transpose written in Python compiles to those: LLVM makes
    no shuffles of it): measured 0.3 against 1 cycle an element
    (``fastloss.cpu.rowtiles``). No bounds checks: the caller keeps both
    blocks inside their arrays."""
    ok = all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
             and a.dtype == types.float32 for a in (dst, src))
    if not (ok and all(isinstance(i, types.Integer) for i in (di, dstride, si, sstride))):
        return None
    sig = types.none(dst, di, dstride, src, si, sstride)

    def codegen(context, builder, signature, args):
        dty, _, _, sty, _, _ = signature.args
        da = context.make_array(dty)(context, builder, value=args[0])
        sa = context.make_array(sty)(context, builder, value=args[3])
        di_, ds_, si_, ss_ = (context.cast(builder, args[k], signature.args[k], types.intp)
                              for k in (1, 2, 4, 5))
        vp = ir.VectorType(ir.FloatType(), BLOCK8).as_pointer()
        mask_t = ir.VectorType(ir.IntType(32), BLOCK8)

        def at(aty, ary, base, stride, k):
            i = builder.add(base, builder.mul(stride, context.get_constant(types.intp, k)))
            ptr = cgutils.get_item_pointer(context, builder, aty, ary, [i], wraparound=False)
            return builder.bitcast(ptr, vp)

        def shuffle(a, b, mask):
            return builder.shuffle_vector(a, b, ir.Constant(mask_t, list(mask)))

        rows = [builder.load(at(sty, sa, si_, ss_, i), align=4) for i in range(BLOCK8)]
        # pairs of rows interleaved, then pairs of pairs, then the halves
        t = []
        for i in range(0, BLOCK8, 2):
            t += [shuffle(rows[i], rows[i + 1], _UNPACK_LO),
                  shuffle(rows[i], rows[i + 1], _UNPACK_HI)]
        s = []
        for h in (0, 4):
            s += [shuffle(t[h], t[h + 2], _PAIRS_LO), shuffle(t[h], t[h + 2], _PAIRS_HI),
                  shuffle(t[h + 1], t[h + 3], _PAIRS_LO), shuffle(t[h + 1], t[h + 3], _PAIRS_HI)]
        for k in range(4):
            builder.store(shuffle(s[k], s[k + 4], _HALF_LO), at(dty, da, di_, ds_, k), align=4)
            builder.store(shuffle(s[k], s[k + 4], _HALF_HI), at(dty, da, di_, ds_, k + 4),
                          align=4)
        return context.get_dummy_value()

    return sig, codegen


def _lane_vector(context, builder, aty, ary, j, vt):
    """A pointer to vector j (elements j lanes ..) of the 1-D array ary as
    the LLVM vector type vt of ``lanes`` elements."""
    i = builder.mul(j, context.get_constant(types.intp, vt.count))
    ptr = cgutils.get_item_pointer(context, builder, aty, ary, [i], wraparound=False)
    return builder.bitcast(ptr, vt.as_pointer())


def _splat(builder, scalar, vt):
    """A vector of type vt with every lane the scalar."""
    undef = ir.Constant(vt, ir.Undefined)
    v = builder.insert_element(undef, scalar, ir.IntType(32)(0))
    return builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), vt.count),
                                                        [0] * vt.count))


def _skip_split(builder, v, top, take):
    """(v as float64 (widened from float32) where v != top and take, else 0;
    the i1 vector of v == top and take): a vector's share of a sum of the
    terms other than top, and the lanes to count (``lane_sums_skip``,
    ``row_sum_skip``)."""
    eq = builder.fcmp_ordered("==", v, top)
    f64 = ir.VectorType(ir.DoubleType(), v.type.count)
    wide = v if v.type == f64 else builder.fpext(v, f64)
    wide = builder.select(builder.and_(take, builder.not_(eq)), wide, ir.Constant(f64, None))
    return wide, builder.and_(take, eq)


def _all_lanes(n):
    return ir.Constant(ir.VectorType(ir.IntType(1), n), [1] * n)


def _lanes_ok(width, *arrays):
    return isinstance(width, types.IntegerLiteral) and all(
        isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays)


#: ``lane_max``'s accumulators: its dependence chain (compare, or, blend:
#: ~7 cycles a vector) split four ways
MAX_CHAINS = 4


@intrinsic
def lane_max(typingctx, src, n, dst, width):
    """dst[l] = the maximum over j < n of src[j width + l], l < width, for
    the n >= 1 float32 vectors of ``width`` lanes of the 1-D contiguous
    array src, with a NaN anywhere giving a NaN (an x86 MAXPS would drop
    it). MAX_CHAINS vector accumulators (vector j into accumulator (j - 1)
    mod MAX_CHAINS, whole rounds, the rest into the first; then combined in
    order), so which NaN, and which of -0 and +0, is left unspecified.
    Written in Python with the running maxima in memory (a[k] = max(a[k -
    width], v[k])), the loop stays scalar: LLVM cannot see the dependence
    distance. No bounds checks: the caller keeps n width elements in src
    and width in dst."""
    if not (_lanes_ok(width, src, dst) and src.dtype == dst.dtype == types.float32
            and isinstance(n, types.Integer)):
        return None
    sig = types.none(src, n, dst, width)
    vt = ir.VectorType(ir.FloatType(), width.literal_value)

    def codegen(context, builder, signature, args):
        sty, nty, dty = signature.args[:3]
        sa = context.make_array(sty)(context, builder, value=args[0])
        da = context.make_array(dty)(context, builder, value=args[2])
        nv = context.cast(builder, args[1], nty, types.intp)
        const = lambda k: context.get_constant(types.intp, k)  # noqa: E731

        def load(j):
            return builder.load(_lane_vector(context, builder, sty, sa, j, vt), align=4)

        def fold(a, v):
            take = builder.or_(builder.fcmp_ordered(">", v, a),
                               builder.fcmp_unordered("uno", v, v))
            return builder.select(take, v, a)

        accs = [cgutils.alloca_once(builder, vt) for _ in range(MAX_CHAINS)]
        v0 = load(const(0))
        for a in accs:
            builder.store(v0, a)
        rounds = builder.sdiv(builder.sub(nv, const(1)), const(MAX_CHAINS))
        with cgutils.for_range(builder, rounds) as loop:
            base = builder.add(builder.mul(loop.index, const(MAX_CHAINS)), const(1))
            for k, a in enumerate(accs):
                builder.store(fold(builder.load(a), load(builder.add(base, const(k)))), a)
        rest = builder.add(builder.mul(rounds, const(MAX_CHAINS)), const(1))
        with cgutils.for_range(builder, builder.sub(nv, rest)) as loop:
            v = load(builder.add(rest, loop.index))
            builder.store(fold(builder.load(accs[0]), v), accs[0])
        r = builder.load(accs[0])
        for a in accs[1:]:
            r = fold(r, builder.load(a))
        builder.store(r, _lane_vector(context, builder, dty, da, const(0), vt), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def lane_sums_skip(typingctx, src, n, skip, sums, counts, width):
    """Lane by lane over the n >= 1 vectors of ``width`` lanes of the 1-D
    contiguous array src (float32 or float64; vector j at j width): sums[l]
    the float64 sum of the elements other than skip, counts[l] (float32)
    the count of those equal to it, both in order from vector 0 (its value,
    not 0 plus it), each a running sum in one vector accumulator: the bits
    of sums[l] = w_0 + w_1 + ... left to right, w = 0 for a skipped
    element, else the element (widened). The float32 lanes' split of their
    terms below and equal to 2^64 (``cpu.rowlanes``, pass 3), and with skip
    NaN (nothing skipped) the smoothing sums of ``cpu.rowtiles.lane_rows``;
    written in Python with the running sums in memory the loop stays
    scalar (``lane_max``). No bounds checks."""
    if not (_lanes_ok(width, src, sums, counts)
            and src.dtype in (types.float32, types.float64) and counts.dtype == types.float32
            and sums.dtype == types.float64 and isinstance(n, types.Integer)
            and isinstance(skip, types.Float)):
        return None
    sig = types.none(src, n, skip, sums, counts, width)
    lanes = width.literal_value
    f32, f64 = ir.VectorType(ir.FloatType(), lanes), ir.VectorType(ir.DoubleType(), lanes)
    svec = ir.VectorType(_IR[src.dtype], lanes)

    def codegen(context, builder, signature, args):
        sty, nty, kty, uty, cty = signature.args[:5]
        sa, ua, ca = (context.make_array(t)(context, builder, value=args[k])
                      for k, t in ((0, sty), (3, uty), (4, cty)))
        nv = context.cast(builder, args[1], nty, types.intp)
        top = _splat(builder, context.cast(builder, args[2], kty, sty.dtype), svec)
        const = lambda k: context.get_constant(types.intp, k)  # noqa: E731

        def split(j):
            v = builder.load(_lane_vector(context, builder, sty, sa, j, svec),
                             align=sty.dtype.bitwidth // 8)
            wide, eq = _skip_split(builder, v, top, _all_lanes(lanes))
            return wide, builder.select(eq, ir.Constant(f32, [1.0] * lanes),
                                        ir.Constant(f32, None))

        acc_s, acc_c = cgutils.alloca_once(builder, f64), cgutils.alloca_once(builder, f32)
        w0, c0 = split(const(0))
        builder.store(w0, acc_s)
        builder.store(c0, acc_c)
        with cgutils.for_range(builder, builder.sub(nv, const(1))) as loop:
            wj, cj = split(builder.add(loop.index, const(1)))
            builder.store(builder.fadd(builder.load(acc_s), wj), acc_s)
            builder.store(builder.fadd(builder.load(acc_c), cj), acc_c)
        builder.store(builder.load(acc_s), _lane_vector(context, builder, uty, ua, const(0), f64),
                      align=8)
        builder.store(builder.load(acc_c), _lane_vector(context, builder, cty, ca, const(0), f32),
                      align=4)
        return context.get_dummy_value()

    return sig, codegen


def _lane_fold(context, builder, n, lanes, terms, k):
    """The k float64 sums of a row of n >= lanes elements in vector
    registers: ``lanes`` running sums from 0 each, lane l taking terms(i,
    every) (k float64 vectors, element i + l's shares) for i = 0, lanes, ...
    over the whole groups, then terms(n - lanes, take) with lane l taken
    when no group took element n - lanes + l (the caller zeroes the lanes
    not taken), then the lanes by a fixed tree (lanes l and l + h for h =
    lanes / 2, ..., 1): an order fixed by n. Returns the k sums as float64
    scalars (``row_sum_skip``, ``row_target_sums``)."""
    i32 = ir.IntType(32)
    f64 = ir.VectorType(ir.DoubleType(), lanes)
    const = lambda v: context.get_constant(types.intp, v)  # noqa: E731
    accs = [cgutils.alloca_once_value(builder, ir.Constant(f64, None)) for _ in range(k)]
    with cgutils.for_range(builder, builder.sdiv(n, const(lanes))) as loop:
        for a, w in zip(accs, terms(builder.mul(loop.index, const(lanes)), _all_lanes(lanes))):
            builder.store(builder.fadd(builder.load(a), w), a)
    # the last `lanes` elements: lane l when l >= b0, the first index not
    # yet taken (lanes - n % lanes, or lanes when it divides n)
    rem = builder.srem(n, const(lanes))
    b0 = builder.select(builder.icmp_signed("==", rem, const(0)), const(lanes),
                        builder.sub(const(lanes), rem))
    b0v = _splat(builder, builder.trunc(b0, i32), ir.VectorType(i32, lanes))
    new = builder.icmp_signed(">=", ir.Constant(ir.VectorType(i32, lanes), list(range(lanes))),
                              b0v)
    sums = [builder.fadd(builder.load(a), w)
            for a, w in zip(accs, terms(builder.sub(n, const(lanes)), new))]
    h = lanes
    while h > 1:
        h //= 2
        lo = ir.Constant(ir.VectorType(i32, h), list(range(h)))
        hi = ir.Constant(ir.VectorType(i32, h), list(range(h, 2 * h)))
        sums = [builder.fadd(builder.shuffle_vector(s, s, lo), builder.shuffle_vector(s, s, hi))
                for s in sums]
    return [builder.extract_element(s, i32(0)) for s in sums]


def _load_lanes(context, builder, aty, ary, i, vt):
    """The vector of type vt at element i of the 1-D array ary."""
    ptr = cgutils.get_item_pointer(context, builder, aty, ary, [i], wraparound=False)
    return builder.load(builder.bitcast(ptr, vt.as_pointer()), align=aty.dtype.bitwidth // 8)


@intrinsic
def row_sum_skip(typingctx, ts, skip, width):
    """(sum, count) over the n >= ``width`` float32 elements of the 1-D
    contiguous array ts: the float64 sum of those other than skip and the
    count of those equal to it, in this order, all in vector registers
    (``_lane_fold``: ``width`` lanes of running sums, a masked tail, a fixed
    tree; an order fixed by n). The float32 lanes' row sums of their terms
    below and equal to 2^64 (``cpu.rowtiles._short_sum``,
    ``cpu.rowlanes._row_sum``); in Python, the tail and the tree read back
    the accumulators' vector stores element by element and cost more than
    the groups. No bounds checks."""
    if not (_lanes_ok(width, ts) and ts.dtype == types.float32 and isinstance(skip, types.Float)
            and width.literal_value & (width.literal_value - 1) == 0):
        return None
    sig = types.UniTuple(types.float64, 2)(ts, skip, width)
    lanes = width.literal_value
    f32, f64 = ir.VectorType(ir.FloatType(), lanes), ir.VectorType(ir.DoubleType(), lanes)

    def codegen(context, builder, signature, args):
        tty, kty = signature.args[:2]
        ta = context.make_array(tty)(context, builder, value=args[0])
        top = _splat(builder, context.cast(builder, args[1], kty, types.float32), f32)
        zero, one = ir.Constant(f64, None), ir.Constant(f64, [1.0] * lanes)

        def terms(i, take):
            wide, eq = _skip_split(builder, _load_lanes(context, builder, tty, ta, i, f32), top,
                                   take)
            return wide, builder.select(eq, one, zero)

        n = builder.extract_value(ta.shape, 0)
        return context.make_tuple(builder, signature.return_type,
                                  _lane_fold(context, builder, n, lanes, terms, 2))

    return sig, codegen


@intrinsic
def row_target_sums(typingctx, x, t, m, width):
    """(T, S) = (sum_j t_j, sum_j t_j (m - x_j)) in float64 over the n >=
    ``width`` elements of the 1-D contiguous arrays x (float32) and t
    (float32 or float64, n of them too), a term t_j (m - x_j) taken as 0
    where t_j = 0 (so 0 log 0 = 0 at x_j = -inf), by ``_lane_fold``:
    ``width`` lanes of running sums, a masked tail, a fixed tree, all in
    vector registers, in an order fixed by n. The probability targets' two
    sums (``cpu.rowlanes._target_sums``); for t_j >= 0 and x_j <= m every
    term is >= 0. No bounds checks (the caller keeps t as long as x)."""
    if not (_lanes_ok(width, x, t) and x.dtype == types.float32
            and t.dtype in (types.float32, types.float64) and isinstance(m, types.Float)
            and width.literal_value & (width.literal_value - 1) == 0):
        return None
    sig = types.UniTuple(types.float64, 2)(x, t, m, width)
    lanes = width.literal_value
    f32, f64 = ir.VectorType(ir.FloatType(), lanes), ir.VectorType(ir.DoubleType(), lanes)
    tvec = ir.VectorType(_IR[t.dtype], lanes)

    def codegen(context, builder, signature, args):
        xty, tty, mty = signature.args[:3]
        xa, ta = (context.make_array(a)(context, builder, value=v)
                  for a, v in ((xty, args[0]), (tty, args[1])))
        mv = _splat(builder, context.cast(builder, args[2], mty, types.float64), f64)
        zero = ir.Constant(f64, None)

        def terms(i, take):
            tv = _load_lanes(context, builder, tty, ta, i, tvec)
            tj = builder.fpext(tv, f64) if tty.dtype == types.float32 else tv
            xj = builder.fpext(_load_lanes(context, builder, xty, xa, i, f32), f64)
            s = builder.fmul(tj, builder.fsub(mv, xj))
            live = builder.and_(take, builder.fcmp_unordered("!=", tj, zero))
            return builder.select(take, tj, zero), builder.select(live, s, zero)

        n = builder.extract_value(xa.shape, 0)
        return context.make_tuple(builder, signature.return_type,
                                  _lane_fold(context, builder, n, lanes, terms, 2))

    return sig, codegen
