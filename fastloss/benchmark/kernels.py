"""The bandwidth limit of the machine, measured in the same run as the losses.

CPU: the STREAM triad ``a[i] = b[i] + s * c[i]`` (McCalpin, "Memory
Bandwidth and Machine Balance in Current High Performance Computers", IEEE
TCCA Newsletter, 1995), ``@njit(parallel=True)``, counted as STREAM counts it:
3 x 8 bytes per element (read b, read c, write a; the write-allocate read is
not counted, as it is not counted for the losses either). Ordinary stores,
as STREAM compiled without streaming stores: the memory-bound elementwise
losses (``LossSpec.streams``) write large gradients by streaming stores
(``fastloss.cpu.stream``), which skip that read, and can exceed 100% of
this figure. Arrays that must not fit in
cache are at least 4 x the last-level cache each (STREAM's rule).

GPU: a device-to-device copy (``cudaMemcpy``), 2 x bytes per copy, timed with
CUDA events.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

from fastloss.benchmark import machine

BYTES_PER_TRIAD_ELEMENT = 3 * 8


@njit(parallel=True, cache=True, nogil=True)
def triad(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


@njit(parallel=True, cache=True, nogil=True)
def _fill(a, v):
    for i in prange(a.size):
        a[i] = v


def triad_elements(size_class: str) -> int:
    """Elements per triad array: >= 4 x LLC each ("dram"), or a few hundred KiB ("cache")."""
    if size_class == "cache":
        return 1 << 15
    need = 4 * machine.llc_bytes() // 8
    return 1 << max(20, int(need - 1).bit_length())


def triad_arrays(n: int):
    """(a, b, c), float64, first touched by the threads that will use them."""
    a, b, c = (np.empty(n, dtype=np.float64) for _ in range(3))
    _fill(a, 0.0)
    _fill(b, 1.0)
    _fill(c, 2.0)
    return a, b, c


def triad_gb_s(n: int, rounds: int = 5, arrays=None) -> float:
    """Best-of-``rounds`` triad bandwidth in GB/s (a standalone measurement;
    the benchmark suite times ``triad`` itself under pytest-benchmark).
    ``arrays``: ``triad_arrays(n)`` to reuse (the runner's triad beside each
    kernel), else new ones."""
    a, b, c = triad_arrays(n) if arrays is None else arrays
    triad(a, b, c, 3.0)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        triad(a, b, c, 3.0)
        best = min(best, time.perf_counter() - t0)
    return BYTES_PER_TRIAD_ELEMENT * n / best / 1e9


def d2d_copy_elements() -> int:
    """float64 elements per device copy: 2 GiB per array, more than the
    issue's 2^28-element float32 arrays (1 GiB). On an H200 a copy of 512 MiB
    arrays measured 2.84 TB/s, of 2 GiB arrays 3.85 TB/s."""
    return 1 << 28


def cuda_event_timer():
    """A function ``time(fn) -> seconds`` that times ``fn()`` on the GPU with CUDA events."""
    from numba import cuda

    start, stop = cuda.event(), cuda.event()

    def timed(fn):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return cuda.event_elapsed_time(start, stop) / 1e3

    return timed
