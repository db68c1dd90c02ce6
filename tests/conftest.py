"""Test configuration, applied before numba is imported.

- NUMBA_CACHE_DIR points at a directory keyed by a hash of fastloss' sources,
  so an edited formula can never be served from a stale on-disk cache (Numba
  only checks the timestamp of the kernel's own file).
- Without FASTLOSS_TEST_GPU=1 the CUDA tests run under Numba's CUDA simulator.
"""

import hashlib
import os
import pathlib
import tempfile

_ROOT = pathlib.Path(__file__).resolve().parents[1] / "fastloss"
_h = hashlib.sha256()
for _p in sorted(_ROOT.rglob("*.py")):
    _h.update(_p.read_bytes())
os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    str(pathlib.Path(tempfile.gettempdir()) / f"fastloss-test-cache-{_h.hexdigest()[:16]}"),
)
if os.environ.get("FASTLOSS_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
