"""Test configuration, applied before numba is imported.

- Kernels are cached where the library puts them (``fastloss._config``: a
  directory keyed by a hash of fastloss' sources and the vector width), so an
  edited formula can never be served from a stale on-disk cache.
- Without FASTLOSS_TEST_GPU=1 the CUDA tests run under Numba's CUDA simulator.
"""

import os

if os.environ.get("FASTLOSS_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    import sys
    import threading

    # The simulator runs each GPU thread as a Python thread, and its block
    # manager busy-polls them (``simulator.kernel.BlockManager.run``): with
    # CPython's default 5 ms switch interval every hand-over of the GIL from
    # the polling loop to a simulated thread waits up to 5 ms. At 0.5 ms the
    # CUDA tests ran 5-10x faster here (test_cuda_rowwise's launch tests:
    # 111 s -> 11 s).
    sys.setswitchinterval(5e-4)

    def _lock_shared_arrays():
        """``cuda.shared.array`` under the simulator looks its array up by
        call site and creates it if absent, without a lock
        (``FakeCUDAShared.array``): two threads of a block that reach the
        call at the same time may each create their own "shared" array.
        Rare at the default switch interval, it showed at 50 us (a loss sum
        missing lanes, 1 run in 3). The same lookup, under a lock (static
        shapes only, which is all fastloss uses; dynamic shared memory is
        left to the original)."""
        import numpy as np
        from numba.core import types
        from numba.cuda.simulator import kernelapi
        from numba.np import numpy_support

        shared = kernelapi.FakeCUDAShared
        if getattr(shared.array, "_fastloss_locked", False):
            return
        unlocked = shared.array
        lock = threading.Lock()

        def array(self, shape, dtype, alignment=None):
            if shape == 0 or alignment is not None:
                return unlocked(self, shape, dtype, alignment)
            if isinstance(dtype, types.Type):
                dtype = numpy_support.as_dtype(dtype)
            f = sys._getframe(1)
            caller = (f.f_code.co_filename, f.f_lineno)
            with lock:
                res = self._allocations.get(caller)
                if res is None:
                    res = self._allocations[caller] = np.empty(shape, dtype)
            return res

        array._fastloss_locked = True
        shared.array = array

    _lock_shared_arrays()
