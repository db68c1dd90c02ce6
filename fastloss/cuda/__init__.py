"""CUDA backend: the same scalar formulas as @cuda.jit kernels."""
