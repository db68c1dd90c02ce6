"""CPU backend: drivers that turn the scalar formulas into @njit(parallel) kernels."""
