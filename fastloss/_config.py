"""Compiler options and fixed sizes, in one place (as stumpy's config.py).

It also chooses where Numba caches fastloss' compiled kernels (``cache=True``):
a directory keyed on a hash of every fastloss source file,
``$XDG_CACHE_HOME/fastloss/numba/<hash>`` (default ``~/.cache``), or
``$NUMBA_CACHE_DIR/fastloss/<hash>`` when the user set ``NUMBA_CACHE_DIR``.
Numba's own cache index only checks the timestamp of the file that defines
a kernel, while the kernels inline formulas from other files
(``fastloss/scalar/``, ``fastloss/math/``): an edit or update of a formula
alone would otherwise be served its stale machine code (it was, under a
user-set ``NUMBA_CACHE_DIR``, before the key applied there too). The choice
is a Numba cache locator for fastloss' own source files only
(``_FastlossCacheLocator``): the user's own cached functions stay where
Numba puts them.

``fastmath`` is never enabled: it drops NaN/inf handling and reassociates the
compensated sums (shared DESIGN.md, numerics policy).
"""

import os as _os

#: options for scalar helpers and formulas (compiled into the kernels that
#: call them). error_model="numpy" gives IEEE division (x/0 = inf) instead of
#: Python's ZeroDivisionError. Not cached on their own: Numba caches a
#: function as object code, and a kernel compiled in a process that loaded
#: one of its helpers from the cache links that helper as a call, which LLVM
#: can neither inline nor vectorize through. A helper compiled on its own
#: (called from Python: the CUDA simulator's device functions, a test) and
#: cached then slowed every kernel compiled after it: float64 pseudo_huber
#: and log_cosh, N = 2^24, 1 thread, 1.2 s against 0.16 s (72 against 9.5
#: ns/elem), after the test suite had run on the same sources. Kernels
#: (``KERNEL_JIT``) are cached, with their helpers compiled into them.
JIT = {"cache": False, "nogil": True, "error_model": "numpy"}

#: options for the kernels called from Python (the drivers): cached on disk
KERNEL_JIT = {**JIT, "cache": True}

#: options for the parallel CPU kernels
PARALLEL_JIT = {**KERNEL_JIT, "parallel": True}

#: options for a copy of a helper's Python function compiled with LLVM
#: ``alwaysinline`` inside a hot loop (a call left in a loop keeps it scalar):
#: not cached on its own (its machine code is cached inside each kernel, so
#: the flag cannot be lost to a copy compiled without it)
INLINE_COPY = {**JIT, "cache": False, "forceinline": True}

#: vector width (bits) the CPU kernels ask LLVM's vectorizer for, as the
#: function attribute "prefer-vector-width" (``fastloss.math._intrin.
#: wide_vectors``). LLVM's default for AVX-512 CPUs (Skylake-SP, Ice Lake,
#: Zen 4) is 256: it avoids the 512-bit frequency drop of the first AVX-512
#: chips. The kernels here are long runs of dependent floating-point work
#: (polynomials, double-double steps), where 512-bit vectors measured 1.5-2x
#: the throughput on this project's Ice Lake server; on CPUs without AVX-512
#: the hint changes nothing. Results are bitwise the same at any width (each
#: lane does the same IEEE operations; no fast-math reassociation).
#: ``FASTLOSS_VECTOR_WIDTH=256`` (or 128) restores a narrower choice; 0 leaves
#: LLVM's default.
VECTOR_WIDTH = int(_os.environ.get("FASTLOSS_VECTOR_WIDTH", "512") or 0)


def _cpu_vendor() -> str:
    """The CPU's vendor string (``vendor_id`` of /proc/cpuinfo: GenuineIntel,
    AuthenticAMD, ...), or "" where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


#: whether the CPU drivers issue software prefetches: the elementwise
#: driver a few blocks ahead of the one it computes
#: (``fastloss.cpu.elementwise.PREFETCH``), the row driver the start of the
#: next row (``fastloss.cpu.rowwise.PREFETCH_BYTES``). Machine-dependent, as
#: measured on the two machines this project has run on (1 thread, same
#: session A/B): on an Intel Xeon (Ice Lake server) they paid (float32 mse,
#: N = 2^24, 1.03-1.18 against 1.31-1.36 ns/elem without); on an AMD EPYC
#: (Zen 4) they cost instead (float32 mse 0.87-0.89 against 0.65-0.69
#: ns/elem without; cross_entropy (8192, 1000) float32 1.98 against 1.59):
#: its hardware prefetcher follows the streams and the rows alone. Default:
#: off on AMD CPUs, on elsewhere; ``FASTLOSS_PREFETCH=1`` or ``0`` overrides
#: it. Results never depend on it.
SOFTWARE_PREFETCH = (_os.environ.get("FASTLOSS_PREFETCH") or
                     ("0" if _cpu_vendor() == "AuthenticAMD" else "1")) != "0"

#: bytes of gradient from which the elementwise driver writes it with
#: streaming (non-temporal) stores, whole cache lines that skip the
#: read-for-ownership of an ordinary store and do not displace cached data
#: (``fastloss.cpu.stream``): a gradient this large does not
#: stay in the last-level cache for its reader anyway. Measured (AMD EPYC,
#: 2 threads, N = 2^24 float32, g = (x - y) s written, alternating):
#: 35-38 GB/s of compulsory traffic with ordinary stores against 47-51
#: with streaming stores while the STREAM triad ran at 37; 48-56 (once 34)
#: against 63-86 while it ran at 56. ``FASTLOSS_STREAM_BYTES`` overrides it (0:
#: always; a huge number: never). Results never depend on it.
STREAM_BYTES = int(_os.environ.get("FASTLOSS_STREAM_BYTES") or 32 << 20)

#: bytes of gradient from which the row driver writes the zeros of a
#: gradient that is zero but at the labels (nll) by streaming stores
#: (``cpu.rowwise``'s ``entry_kernel``). Below it, repeated calls into one
#: buffer find it in the last-level cache (32 MiB on the AMD EPYC) and
#: ordinary stores win. Measured there, float32 (N, 1000), ``out=``, 2
#: threads, streamed / ordinary, ms, two runs alternating processes: N =
#: 2048 (7.8 MiB) 0.12-0.17 / 0.09; 4096 0.23-0.27 / 0.15-0.20; 5120
#: 0.35-0.37 / 0.25-0.37; 6144 (23.4 MiB) 0.38-0.39 / 0.36-0.43; 7168
#: 0.40-0.41 / 0.68-0.96; 8192 0.48 / 0.91-1.17. Three quarters of that
#: cache, as glibc's memset takes streaming stores from.
#: ``FASTLOSS_ENTRY_STREAM_BYTES`` overrides it. Results never depend on it.
ENTRY_STREAM_BYTES = int(_os.environ.get("FASTLOSS_ENTRY_STREAM_BYTES") or 24 << 20)

#: elements per reduction chunk. The loss is summed per chunk, then the chunk
#: partials are combined in index order; the chunk size does not depend on the
#: thread count or the GPU launch, which makes every reduction bitwise
#: deterministic across 1..N threads and across runs.
CHUNK = 1 << 13


def _source_keyed_cache_dir() -> None:
    import hashlib
    import os
    import pathlib

    from numba.core import caching

    root = pathlib.Path(__file__).resolve().parent
    h = hashlib.sha256()
    h.update(f"vector-width={VECTOR_WIDTH}".encode())  # in the generated code
    h.update(f"prefetch={SOFTWARE_PREFETCH}".encode())
    h.update(f"stream={STREAM_BYTES}".encode())
    h.update(f"entry-stream={ENTRY_STREAM_BYTES}".encode())
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user:
        base = pathlib.Path(user) / "fastloss"
    else:
        base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / \
            "fastloss" / "numba"
    cache_dir = str(base / h.hexdigest()[:16])
    prefix = str(root) + os.sep

    class _FastlossCacheLocator(caching.UserProvidedCacheLocator):
        """Numba cache locator of the functions defined in fastloss' own
        files: the source-keyed directory, whatever ``NUMBA_CACHE_DIR`` is."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(cache_dir, self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.abspath(py_file).startswith(prefix):
                return None
            # the source-file checks of the base classes, without
            # UserProvidedCacheLocator's "NUMBA_CACHE_DIR is set" condition
            return super(caching.UserProvidedCacheLocator, cls).from_function(py_func, py_file)

    global CACHE_DIR
    CACHE_DIR = cache_dir
    if not any(getattr(c, "__name__", "") == "_FastlossCacheLocator"
               for c in caching.CacheImpl._locator_classes):
        caching.CacheImpl._locator_classes.insert(0, _FastlossCacheLocator)
    _lock_cache_files(caching, str(base) + os.sep)


#: the lock file in each cache directory of fastloss (``_lock_cache_files``)
CACHE_LOCK = ".fastloss-cache.lock"


def _lock_cache_files(caching, root: str) -> None:
    """Serialise Numba's cache reads and writes under ``root`` between
    processes (an ``flock`` on ``CACHE_LOCK`` in the cache directory: shared
    to load, exclusive to save).

    Numba's ``IndexDataCacheFile.save`` reads the index, picks the first
    free data-file number, writes the index, then the data file, with no
    lock. Two processes that compile different kernels of one function at
    the same time (pytest-xdist workers, a multiprocessing pool, on a cold
    cache) can pick the same number: the index then maps one signature to
    the other's machine code, and the next process that loads it crashes.
    Seen here: after a source change, two test workers compiling
    ``elementwise.fused`` left an index that made BCE with logits
    (``reduction="none"``) die with SIGSEGV in every later process until
    the directory was removed. Other Numba caches are left as they are;
    without ``fcntl`` (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return

    cls = caching.IndexDataCacheFile
    if getattr(cls.save, "_fastloss_locked", False):
        return
    save, load = cls.save, cls.load

    def locked(method, mode):
        def run(self, *args):
            if not self._cache_path.startswith(root):
                return method(self, *args)
            fd = _os.open(_os.path.join(self._cache_path, CACHE_LOCK), _os.O_RDWR | _os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, mode)
                return method(self, *args)
            finally:
                _os.close(fd)  # releases the lock

        run._fastloss_locked = True
        run.__name__, run.__doc__ = method.__name__, method.__doc__
        return run

    cls.save = locked(save, fcntl.LOCK_EX)
    cls.load = locked(load, fcntl.LOCK_SH)


#: where fastloss' kernels are cached (set by ``_source_keyed_cache_dir``)
CACHE_DIR = ""

_source_keyed_cache_dir()
