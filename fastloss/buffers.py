"""Result arrays reused across calls: the first-touch cost of large new arrays.

Every gradient the public calls return without ``out=`` is a new array. A
NumPy array above glibc's mmap threshold (at most 32 MiB) is a fresh mapping
from the operating system, and each of its pages faults on the kernel's first
write to it and is zeroed before that write proceeds: for float32 ``mse``
over 2^24 elements (a 64 MiB gradient) the default benchmark before the
pool measured 67% of the triad bandwidth with a new array per call and 114%
with ``out=`` a reused buffer (``fastloss.benchmark.cases``: the
``fastloss`` case against ``fastloss_out``). Smaller arrays are served from
malloc's heap, whose freed memory is reused without faults.

A training loop drops each step's gradient before it asks for the next one.
``empty`` therefore keeps the large arrays it hands out in a small pool and
gives one back again, instead of a new array, once nothing outside this
module refers to it any more: no reference and no weak reference, as
CPython's reference count tells (a view, ``torch.from_numpy`` or a
``memoryview`` of the result refers to it too). The caller sees a new
result either way; its contents are whatever the kernel then writes, as
with ``np.empty``.

The pool holds at most ``POOL_ARRAYS`` arrays and ``POOL_BYTES`` bytes in
all, so after the last call it keeps up to that much memory alive
(``FASTLOSS_POOL_BYTES`` sets the limit; 0 turns the pool off, and ``clear``
empties it). Arrays below ``MIN_BYTES`` are not pooled. The lock makes the
check-and-take atomic: concurrent calls (the kernels release the GIL) never
receive the same array.
"""

import os
import sys
import threading
import weakref

import numpy as np

#: arrays smaller than this are not pooled (malloc's heap reuses them already)
MIN_BYTES = 32 << 20
#: the pool's total size limit in bytes (0: no pool)
POOL_BYTES = int(os.environ.get("FASTLOSS_POOL_BYTES", str(1 << 30)))
#: arrays in the pool at most (the gradient and the per-element values of a
#: call, and a second call's while the first's are still held)
POOL_ARRAYS = 4

_pool: list = []
_lock = threading.Lock()


def _refs(pool, i):
    """The reference count of pool[i] as seen from here."""
    return sys.getrefcount(pool[i])


#: the count of a pooled array that nothing else refers to (the pool's
#: reference and the temporary of ``_refs``), measured on this interpreter
#: the way ``empty`` measures it
_FREE = _refs([np.empty(1)], 0)


def empty(n: int, dtype) -> np.ndarray:
    """A 1-D array of n elements of dtype, uninitialised: a pooled array that
    nothing refers to any more when there is one of that size and dtype,
    otherwise a new one (pooled when large enough)."""
    dtype = np.dtype(dtype)
    nbytes = n * dtype.itemsize
    if nbytes < MIN_BYTES or nbytes > POOL_BYTES:
        return np.empty(n, dtype=dtype)
    with _lock:
        for i in range(len(_pool)):
            a = _pool[i]
            if a.size == n and a.dtype == dtype and _refs(_pool, i) == _FREE + 1 \
                    and weakref.getweakrefcount(a) == 0:
                # + 1: the local name a
                return a
        a = np.empty(n, dtype=dtype)
        _pool.append(a)
        # the oldest arrays leave the pool (their memory is freed once their
        # holders drop them) until it is within its limits
        while len(_pool) > POOL_ARRAYS or sum(b.nbytes for b in _pool) > POOL_BYTES:
            _pool.pop(0)
        return a


def clear() -> None:
    """Drops the pool's references (arrays still held elsewhere live on)."""
    with _lock:
        _pool.clear()
