"""What the benchmarks ran on: CPU model, cores, caches, versions, GPU."""

from __future__ import annotations

import functools
import os
import platform
import re
from importlib import metadata

from fastloss import buffers


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _size(text: str | None) -> int | None:
    if not text:
        return None
    m = re.fullmatch(r"(\d+)\s*([KMG]?)", text.strip())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


@functools.lru_cache
def llc_bytes() -> int:
    """Size of the last-level cache in bytes (32 MiB if the system does not say)."""
    best_level, best = -1, None
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        entries = []
    for e in entries:
        if not e.startswith("index"):
            continue
        kind = _read(f"{base}/{e}/type")
        level = _read(f"{base}/{e}/level")
        size = _size(_read(f"{base}/{e}/size"))
        if kind == "Instruction" or level is None or size is None:
            continue
        if int(level) > best_level:
            best_level, best = int(level), size
    return best or (32 << 20)


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else (platform.processor() or platform.machine())


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def max_threads() -> int:
    """The most threads Numba can use here (NUMBA_NUM_THREADS, default: cores)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def gpu_present() -> bool:
    """True only for a real CUDA GPU (never under Numba's CUDA simulator)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - no driver, no GPU
        return False


def gpu_info() -> dict | None:
    """Name, memory and theoretical memory bandwidth of the current GPU."""
    if not gpu_present():
        return None
    from numba import cuda

    dev = cuda.get_current_device()
    info = {"name": dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name),
            "compute_capability": ".".join(map(str, dev.compute_capability))}
    try:
        free, total = cuda.current_context().get_memory_info()
        info["memory_bytes"] = int(total)
    except Exception:  # noqa: BLE001
        pass
    try:
        clock_khz = dev.MEMORY_CLOCK_RATE
        bus_bits = dev.GLOBAL_MEMORY_BUS_WIDTH
        info["theoretical_bandwidth_gb_s"] = 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    except Exception:  # noqa: BLE001 - attribute not exposed by this driver binding
        pass
    return info


def threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        from fastloss.benchmark.kernels import triad_gb_s

        triad_gb_s(1 << 12, rounds=1)
        return numba.threading_layer()


def info() -> dict:
    """Everything the reports say about the machine (JSON-serialisable)."""
    d = {
        "cpu_model": cpu_model(),
        "cores": cores(),
        "numba_threads": max_threads(),
        "llc_bytes": llc_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {k: _version(k) for k in
                     ("fastloss", "numba", "numba-cuda", "llvmlite", "numpy", "torch",
                      "pytest-benchmark")},
        "threading_layer": threading_layer(),
        "gpu": gpu_info(),
        # large results recycled across calls (fastloss.buffers): 0 = off
        "pool_bytes": buffers.POOL_BYTES,
    }
    return d


def slug(machine: dict | None = None) -> str:
    """A short file-name-safe name of the machine kind: CPU family, cores, GPU."""
    m = machine or {}
    model = m.get("cpu_model") or cpu_model()
    n = m.get("cores") or cores()
    s = re.sub(r"\((R|TM|tm|r)\)", "", model)
    s = re.sub(r"@.*$", "", s)
    s = re.sub(r"\b(CPU|Processor|[0-9]+-Core)\b", "", s, flags=re.I)
    s = re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")
    name = f"{s or 'cpu'}-{n}c"
    gpu = m.get("gpu") if machine is not None else gpu_info()
    if gpu:
        g = re.sub(r"(nvidia|geforce|tesla)", "", gpu["name"].lower())
        name += "-" + re.sub(r"[^a-z0-9]+", "-", g).strip("-")
    return name
