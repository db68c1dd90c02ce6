"""Start-up: importing compiles nothing; kernels compile on first use and are
cached on disk, so a second process does not compile again."""

import json
import os
import subprocess
import sys

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import fastloss as fl
t_import = time.perf_counter() - t0
from numba.core.registry import CPUDispatcher
import fastloss.cpu.elementwise as ew
compiled_at_import = [
    name for m in list(sys.modules.values()) if getattr(m, "__name__", "").startswith("fastloss")
    for name, obj in vars(m).items() if isinstance(obj, CPUDispatcher) and obj.signatures
]
import numpy as np
x = np.linspace(-1, 1, 1000).astype(np.float32)
t0 = time.perf_counter()
fl.value_and_grad("binary_cross_entropy_with_logits", x, (x > 0).astype(np.float32))
t_first = time.perf_counter() - t0
literal = lambda c: sum(v for k, v in c.items() if "Literal" in str(k[0]))
print(json.dumps({
    "import_s": t_import, "first_call_s": t_first, "compiled_at_import": compiled_at_import,
    "hits": literal(ew.kernel.stats.cache_hits), "misses": literal(ew.kernel.stats.cache_misses),
}))
"""


def probe(cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_compiles_nothing_and_cache_is_reused(tmp_path):
    """Also: under a user-set NUMBA_CACHE_DIR the kernels go to its
    ``fastloss/<hash of the sources>`` (``fastloss._config``: a kernel's
    inlined formulas live in other files, which Numba's own index does not
    check), and nothing of fastloss to Numba's usual place there."""
    cold = probe(tmp_path)
    from fastloss import _config

    keyed = tmp_path / "fastloss" / os.path.basename(_config.CACHE_DIR)
    assert any(keyed.rglob("elementwise.fused-*.nbi"))
    assert [p.name for p in tmp_path.iterdir()] == ["fastloss"]
    assert cold["compiled_at_import"] == []
    assert cold["misses"] >= 1 and cold["hits"] == 0  # compiled in the first process
    warm = probe(tmp_path)
    assert warm["compiled_at_import"] == []
    assert warm["misses"] == 0 and warm["hits"] >= 1  # loaded from disk in the second


def test_cache_files_are_locked_between_processes(tmp_path):
    """Numba's cache save (read the index, pick a free data-file number,
    write both) is serialised under fastloss' cache root by an exclusive
    flock on ``_config.CACHE_LOCK``, and loads take it shared
    (``_config._lock_cache_files``): while another holder has the lock
    exclusively, a save there waits; a save in a directory outside the root
    does not."""
    import fcntl
    import shutil
    import tempfile
    import threading

    from numba.core import caching

    from fastloss import _config

    base = os.path.dirname(_config.CACHE_DIR)
    os.makedirs(base, exist_ok=True)
    inside = tempfile.mkdtemp(dir=base)
    try:
        for d, locked in ((inside, True), (str(tmp_path), False)):
            f = caching.IndexDataCacheFile(d, "probe", ("stamp", 1))
            fd = os.open(os.path.join(d, _config.CACHE_LOCK), os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)  # another process' save, as it were
            done = threading.Event()

            def save(f=f, done=done):
                f.save("key", b"data")
                done.set()

            t = threading.Thread(target=save)
            t.start()
            try:
                assert done.wait(0.5) is not locked
            finally:
                os.close(fd)  # releases the lock
            assert done.wait(30)
            t.join()
            assert f.load("key") == b"data"
    finally:
        shutil.rmtree(inside)


def test_helpers_are_not_cached(tmp_path):
    """Numba caches a function as object code, and a kernel compiled in a
    process that loaded one of its helpers from the cache links that helper
    as a call, which LLVM neither inlines nor vectorizes through: float64
    pseudo_huber ran 7.6x slower (72 against 9.5 ns/elem) once its helper
    had been compiled on its own in an earlier process (a direct call; the
    CUDA simulator's device functions do the same). So the formulas and
    helpers of ``fastloss.scalar`` and ``fastloss.math`` are never cached
    (``_config.JIT``): after a process calls one directly and then runs a
    kernel, the cache holds the kernel (``KERNEL_JIT``) and nothing of
    theirs."""
    code = ("from fastloss.scalar import regression as r; r._pseudo_huber_dd(1.0, 2.5, 1.0); "
            "import numpy as np, fastloss as fl; x = np.linspace(-3.0, 3.0, 500); "
            "fl.value_and_grad('pseudo_huber', x, x[::-1].copy())")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    from fastloss import _config

    keyed = tmp_path / "fastloss" / os.path.basename(_config.CACHE_DIR)
    files = [p.relative_to(keyed) for p in keyed.rglob("*.nbi")]
    assert any(p.name.startswith("elementwise.fused") for p in files), files
    assert not [p for p in files if p.parts[0].startswith(("scalar_", "math_"))], files
