"""Test configuration, applied before numba is imported.

- Kernels are cached where the library puts them (``fastloss._config``: a
  directory keyed by a hash of fastloss' sources and the vector width), so an
  edited formula can never be served from a stale on-disk cache.
- Without FASTLOSS_TEST_GPU=1 the CUDA tests run under Numba's CUDA simulator.
"""

import os

if os.environ.get("FASTLOSS_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
