"""Streaming (non-temporal) stores for the elementwise driver's large
gradients.

A gradient of ``fastloss._config.STREAM_BYTES`` or more of a memory-bound
loss (``LossSpec.streams``) is written with stores that send whole 64-byte
cache lines to memory: an ordinary store
first reads the line it writes into the cache (read-for-ownership), a
third more traffic for a kernel that reads two arrays and writes one, and
the output displaces cached data although it will not be read from the
cache anyway. Whole lines only: the partial lines at either end of a span
take ordinary stores. The caller issues ``store_fence`` after its last
streaming store, before another thread may read the data.

The row driver streams nll's gradient (zeros but at the labels) its own
way, the label entries inside the streamed lines (``cpu.rowwise``'s
``_entry_span``): streamed row by row, each label entry stored by an
ordinary store right after its line, it took 1.6 ms instead of 0.65 at
float32 (8192, 1000), 2 threads.
"""

from numba import njit

from fastloss._config import JIT
from fastloss.math._intrin import LINE_BYTES, stream_line


@njit(**{**JIT, "forceinline": True})
def to_line(addr, itemsize):
    """Elements of ``itemsize`` bytes from address ``addr`` before the next
    64-byte (cache line) boundary."""
    return ((LINE_BYTES - addr % LINE_BYTES) % LINE_BYTES) // itemsize


@njit(**{**JIT, "forceinline": True})
def stream_copy(dst, start, src, m):
    """dst[start:start + m] = src[:m]. The elementwise driver's windows
    start on x's cache lines, so their lines of dst are whole where dst
    lies at x's offset from a line (as NumPy places arrays of one size)."""
    lanes = LINE_BYTES // dst.itemsize
    h = min(m, to_line(dst.ctypes.data + start * dst.itemsize, dst.itemsize))
    for j in range(h):
        dst[start + j] = src[j]
    j = h
    while j + lanes <= m:
        stream_line(dst, start + j, src, j)
        j += lanes
    for t in range(j, m):
        dst[start + t] = src[t]
