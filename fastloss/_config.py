"""Compiler options and fixed sizes, in one place (as stumpy's config.py).

``fastmath`` is never enabled: it drops NaN/inf handling and reassociates the
compensated sums (shared DESIGN.md, numerics policy).
"""

#: options for scalar helpers and formulas (compiled into the kernels that call them)
#: error_model="numpy" gives IEEE division (x/0 = inf) instead of Python's
#: ZeroDivisionError.
JIT = {"cache": True, "nogil": True, "error_model": "numpy"}

#: options for the parallel CPU kernels
PARALLEL_JIT = {**JIT, "parallel": True}

#: elements per reduction chunk. The loss is summed per chunk, then the chunk
#: partials are combined in index order; the chunk size does not depend on the
#: thread count or the GPU launch, which makes every reduction bitwise
#: deterministic across 1..N threads and across runs.
CHUNK = 1 << 13
