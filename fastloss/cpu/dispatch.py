"""Calling a kernel whose first argument is a ``numba.literally`` formula id.

The CPU drivers (elementwise, row-wise, boxes) compile one specialisation of
their parallel kernel per formula: ``numba.literally(fid)`` makes ``fid`` a
compile-time literal. Numba's own path for that first re-types the whole
kernel with ``fid`` as a plain int64 on *every* call; the attempt fails (by
design) and is not memoised, which costs ~0.3-0.7 s per call however small
the data. ``LiteralDispatch`` goes through the dispatcher only once per
argument signature (compile, or load from the disk cache), then looks the
specialisation up by its literal signature and calls its entry point
directly. The per-call key uses Numba's C type fingerprints
(``compute_fingerprint``), not ``numba.typeof`` (~0.1 ms for 17 arguments).

Small inputs (at most ``serial_chunks`` reduction chunks, read from the
argument ``nchunks_arg``) run on the calling thread only: waking the thread
pool costs more than the work. Results do not depend on it (every chunk's
partial sum is the same on any number of threads).
"""

import numba
from numba._dispatcher import compute_fingerprint
from numba.core import types
from numba.np.ufunc import parallel as _parallel


def _thread_count_functions():
    """(get, set) of the calling thread's thread count: the threading
    layer's own C functions (0.1-0.2 us a call), which Numba binds when it
    launches the threads (before: None, and the public functions are
    returned). ``numba.get_num_threads`` and ``set_num_threads`` wrap them
    in Python with a lock each (0.7 and 1.0 us measured), which a small
    input's switch to one thread and back paid on every call."""
    get = getattr(_parallel, "_get_num_threads", None)
    put = getattr(_parallel, "_set_num_threads", None)
    if get is None or put is None:
        return numba.get_num_threads, numba.set_num_threads
    return get, put


def _fingerprint(a):
    try:
        return compute_fingerprint(a)
    except (TypeError, ValueError, NotImplementedError):  # pragma: no cover
        return numba.typeof(a)


class LiteralDispatch:
    """``kernel(fid, ...)``: calls ``dispatcher`` with ``fid`` as a literal.

    nchunks_arg: index (in the arguments after ``fid``) of the array with one
    entry per reduction chunk, or None; serial_chunks: inputs of at most this
    many chunks run with one thread. Attributes (py_func, signatures,
    overloads, inspect_asm, ...) are the dispatcher's."""

    def __init__(self, dispatcher, nchunks_arg=None, serial_chunks=4):
        self._disp = dispatcher
        self._entries = {}
        self._nchunks_arg = nchunks_arg
        self._serial_chunks = serial_chunks

    def __getattr__(self, name):
        return getattr(self._disp, name)

    def __call__(self, fid, *args):
        try:
            key = (fid, *map(compute_fingerprint, args))
        except (TypeError, ValueError, NotImplementedError):  # pragma: no cover
            key = (fid, *map(_fingerprint, args))
        entry = self._entries.get(key)
        if entry is None:
            result = self._disp(fid, *args)
            sig = (types.literal(fid),) + tuple(numba.typeof(a) for a in args)
            cres = self._disp.overloads.get(sig)
            if cres is not None:
                self._entries[key] = cres.entry_point
            return result
        k = self._nchunks_arg
        if k is not None and args[k].size <= self._serial_chunks:
            # an entry exists: its first call ran the parallel kernel, which
            # launched the threads
            get, put = _thread_count_functions()
            nthreads = get()
            if nthreads > 1:
                put(1)
                try:
                    return entry(fid, *args)
                finally:
                    put(nthreads)
        return entry(fid, *args)
