"""LLVM-level helpers for the CPU polynomial primitives (``fastloss.math._cpu``).

These are single LLVM instructions, so they vectorize with the loops that call
them: a fused multiply-add (``llvm.fma``, exactly rounded, not a fast-math
contraction) and bit casts between float64 and int64.
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def fma(typingctx, a, b, c):
    """a*b + c with one rounding (IEEE fusedMultiplyAdd)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        args = [context.cast(builder, v, t, types.float64) for v, t in zip(args, signature.args)]
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def f64_bits(typingctx, x):
    """The IEEE bit pattern of float64 x as an int64."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], signature.args[0], types.float64)
        return builder.bitcast(v, ir.IntType(64))

    return sig, codegen


@intrinsic
def bits_f64(typingctx, i):
    """The float64 whose IEEE bit pattern is the int64 i."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], signature.args[0], types.int64)
        return builder.bitcast(v, ir.DoubleType())

    return sig, codegen
