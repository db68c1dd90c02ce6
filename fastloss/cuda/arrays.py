"""Caller arrays on the GPU: recognise, adapt without copies, pick the stream,
and allocate results of the caller's kind.

Accepted (zero copy):
- numba device arrays (``numba.cuda.device_array``, ``to_device``; under the
  simulator, its ``FakeCUDAArray``);
- any object with ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA
  tensors, ...), viewed as a numba device array with
  ``numba.cuda.from_cuda_array_interface(..., sync=False)``;
- objects that only speak DLPack (``__dlpack__`` with a CUDA
  ``__dlpack_device__``), imported with ``cupy.from_dlpack`` (else
  ``torch.from_dlpack``) and then handled as above.

Stream: kernels run on the stream the input carries: a numba array's
``.stream``; the ``"stream"`` entry of a CUDA array interface (v3: 1 = legacy
default stream, 2 = per-thread default stream, other = a ``cudaStream_t``);
for a PyTorch tensor (whose interface has no stream) PyTorch's current stream
on the tensor's device. Every array of one call is used on the input's stream.

Results (gradient, ``reduction="none"`` values) are allocated by the caller's
library, so they come back as the same kind: numba device arrays for numba
input (and for foreign CAI objects of other libraries), ``cupy.ndarray`` for
CuPy, ``torch.Tensor`` on the same device for PyTorch. Scalar losses come back
as Python floats (the kernel's 8-byte result is copied to the host, which
waits for the stream).

This module imports neither numba.cuda nor CuPy nor PyTorch until a device
array actually arrives.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

_KDLCUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged (kDLCUDAHost = 3 is host memory)


def _is_numba_device_array(a) -> bool:
    mod = type(a).__module__ or ""
    return mod.startswith(("numba.cuda", "numba_cuda")) and type(a).__name__ in (
        "DeviceNDArray", "FakeCUDAArray", "MappedNDArray", "ManagedNDArray",
        "DeviceRecord",
    )


def is_device_array(a) -> bool:
    """True for an array that lives on a GPU (no import of numba.cuda)."""
    if isinstance(a, np.ndarray):
        return False
    if _is_numba_device_array(a) or hasattr(a, "__cuda_array_interface__"):
        return True
    dev = getattr(a, "__dlpack_device__", None)
    if dev is None:
        return False
    try:
        return int(dev()[0]) in _KDLCUDA
    except Exception:  # noqa: BLE001 - a foreign object's failure means "not ours"
        return False


def _kind(obj) -> str:
    mod = (type(obj).__module__ or "").split(".")[0]
    if _is_numba_device_array(obj):
        return "numba"
    if mod == "cupy":
        return "cupy"
    if mod == "torch":
        return "torch"
    return "cai"


@dataclass
class DevArray:
    """A caller's GPU array as the kernels see it."""

    obj: object  # what the caller passed (or its DLPack import)
    arr: object  # numba device array view of the same memory
    kind: str  # "numba" | "cupy" | "torch" | "cai"
    stream: object  # numba stream object (the kernels' stream)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.arr.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.arr.dtype)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def c_contiguous(self) -> bool:
        return bool(self.arr.is_c_contiguous())

    def span(self) -> tuple[int, int]:
        """(first byte address, one past the last) of the memory it covers."""
        return memory_span(self.arr)


def memory_span(arr) -> tuple[int, int]:
    """Byte range covered by a numba device array (or simulator array)."""
    if hasattr(arr, "__cuda_array_interface__"):
        ptr = int(arr.__cuda_array_interface__["data"][0])
    else:  # simulator: the backing NumPy array
        ptr = int(arr._ary.__array_interface__["data"][0]) if hasattr(arr, "_ary") else id(arr)
    shape, strides = arr.shape, arr.strides
    if any(s == 0 for s in shape):
        return ptr, ptr
    lo = ptr + sum(min(0, (n - 1) * st) for n, st in zip(shape, strides, strict=True))
    hi = ptr + sum(max(0, (n - 1) * st) for n, st in zip(shape, strides, strict=True)) + arr.dtype.itemsize
    return lo, hi


def _cuda():
    from numba import cuda

    return cuda


def _stream_from_cai(desc: dict, obj):
    cuda = _cuda()
    from fastloss.cuda.config import SIMULATOR

    if SIMULATOR:
        return cuda.default_stream()
    s = desc.get("stream")
    if s is None and _kind(obj) == "torch":
        torch = sys.modules["torch"]
        s = torch.cuda.current_stream(obj.device).cuda_stream or None
    if s is None or s == 0:
        return cuda.default_stream()
    if s == 1:
        return cuda.legacy_default_stream()
    if s == 2:
        return cuda.per_thread_default_stream()
    return cuda.external_stream(int(s))


def _from_dlpack(name: str, a):
    for lib in ("cupy", "torch"):
        try:
            mod = __import__(lib)
        except ImportError:
            continue
        return mod.from_dlpack(a)
    raise TypeError(
        f"{name}: {type(a).__name__} is a GPU array known only through DLPack; importing it "
        "needs CuPy or PyTorch, and neither is installed (pass an object with "
        "__cuda_array_interface__, e.g. a numba device array)"
    )


def adapt(name: str, a) -> DevArray:
    """The caller's GPU array ``a`` as a ``DevArray`` (no copy, no sync)."""
    cuda = _cuda()
    if _is_numba_device_array(a):
        stream = getattr(a, "stream", 0)
        return DevArray(a, a, "numba", stream if stream else cuda.default_stream())
    if not hasattr(a, "__cuda_array_interface__"):
        a = _from_dlpack(name, a)
        if not hasattr(a, "__cuda_array_interface__"):  # pragma: no cover
            raise TypeError(f"{name}: cannot view {type(a).__name__} as a CUDA array")
    desc = a.__cuda_array_interface__
    from fastloss.cuda.config import SIMULATOR

    if SIMULATOR:
        raise TypeError(
            f"{name}: the CUDA simulator (NUMBA_ENABLE_CUDASIM=1) only runs numba device "
            f"arrays (numba.cuda.to_device); got {type(a).__name__}"
        )
    arr = cuda.from_cuda_array_interface(desc, owner=a, sync=False)
    return DevArray(a, arr, _kind(a), _stream_from_cai(desc, a))


def to_device_like(a: np.ndarray, like: DevArray):
    """Copy a small host array (parameters, never the data) to the device,
    on ``like``'s stream; returns a numba device array."""
    return _cuda().to_device(np.ascontiguousarray(a), stream=like.stream)


#: small read-only device arrays (``constant``), per CUDA context
_CONSTANTS: dict = {}


def constant(a: np.ndarray):
    """A device copy of the small host array ``a`` (at most 16 elements) that
    kernels only read: scalar parameters, the default weight of 1, the dummy
    output of a pass that stores nothing. Cached per context and value, so a
    call does not pay an allocation and a host-to-device copy for each (on
    an H200 a float32 mse call of 2^16 elements took 1.0 ms, its kernels
    25 us). The copy is made synchronously, so any stream may read it."""
    from fastloss.cuda.config import SIMULATOR

    cuda = _cuda()
    a = np.ascontiguousarray(a)
    if a.size > 16 or SIMULATOR:
        return cuda.to_device(a)
    key = (id(cuda.current_context()), a.dtype.str, a.shape, a.tobytes())
    d = _CONSTANTS.get(key)
    if d is None:
        if len(_CONSTANTS) >= 1024:
            _CONSTANTS.clear()
        d = _CONSTANTS[key] = cuda.to_device(a)
    return d


def empty_like_kind(like: DevArray, shape: tuple[int, ...], dtype) -> tuple[object, object]:
    """A new C-contiguous device array of ``like``'s kind: (caller-facing
    object, numba view)."""
    cuda = _cuda()
    dtype = np.dtype(dtype)
    if like.kind == "cupy":
        cupy = sys.modules["cupy"]
        with cupy.cuda.Device(like.obj.device.id):
            obj = cupy.empty(shape, dtype=dtype)
    elif like.kind == "torch":
        torch = sys.modules["torch"]
        tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dtype]
        obj = torch.empty(shape, dtype=tdt, device=like.obj.device)
    else:
        obj = cuda.device_array(shape, dtype=dtype, stream=like.stream)
        return obj, obj
    return obj, cuda.from_cuda_array_interface(obj.__cuda_array_interface__, owner=obj,
                                               sync=False)


def scratch(shape, dtype, stream):
    """Internal device scratch (partials, flags): a numba device array."""
    return _cuda().device_array(shape, dtype=np.dtype(dtype), stream=stream)


def contiguous(name: str, d: DevArray) -> DevArray:
    """``d`` itself when C-contiguous; else a C-ordered device copy made by the
    caller's library (CuPy, PyTorch). Numba device arrays must be contiguous."""
    if d.c_contiguous():
        return d
    if d.kind == "cupy":
        obj = sys.modules["cupy"].ascontiguousarray(d.obj)
    elif d.kind == "torch":
        obj = d.obj.contiguous()
    else:
        raise ValueError(
            f"{name}: a non-contiguous numba device array is not supported; pass a "
            "C-contiguous array (e.g. numba.cuda.to_device(np.ascontiguousarray(...)))"
        )
    out = adapt(name, obj)
    out.stream = d.stream
    return out


def flat(arr):
    """1-D view of a C-contiguous numba device array."""
    return arr.reshape(-1) if len(arr.shape) != 1 else arr


def broadcast_period(name: str, ashape: tuple[int, ...], shape: tuple[int, ...]) -> int | None:
    """How an array parameter of shape ``ashape`` broadcasts to ``shape``, as a
    period over the flattened input (element i uses a[i mod period]): 1 for a
    single value, prod(suffix) when ``ashape`` without leading ones is a
    suffix of ``shape``; None when it broadcasts otherwise (it must then be
    materialised). ValueError when it does not broadcast."""
    try:
        full = np.broadcast_shapes(tuple(ashape), tuple(shape))
    except ValueError:
        full = None
    if full != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(ashape)} does not broadcast to the input's "
                         f"shape {tuple(shape)}")
    if math.prod(ashape) == 1:
        return 1
    core = list(ashape)
    while core and core[0] == 1:
        core.pop(0)
    if tuple(shape[len(shape) - len(core):]) == tuple(core):
        return max(math.prod(core), 1)
    return None
