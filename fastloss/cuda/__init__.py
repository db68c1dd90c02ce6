"""CUDA backend: the scalar formulas of ``fastloss.scalar`` as @cuda.jit kernels.

Public entry: ``fastloss.api`` routes any input that lives on a GPU (a numba
device array, or an object exposing ``__cuda_array_interface__`` or CUDA
DLPack: CuPy arrays, PyTorch CUDA tensors) to ``fastloss.cuda.api.evaluate``.

Modules:
- ``config``: launch configuration (injectable, ``launch(...)``) and the
  fixed sizes of the deterministic reduction;
- ``arrays``: adapting caller arrays (CAI / DLPack, zero copy), streams, and
  allocating results of the caller's kind;
- ``reduce``: the fixed-order in-block tree and the partial-combining kernel;
- ``elementwise``: the fused value/gradient/partial-sum kernel generated from
  a formula of ``catalog.FORMULAS``;
- ``checks``: data-domain checks that run as kernels (no host copy of data);
- ``api``: validation and the driver behind ``fastloss.value_and_grad`` & co.

Nothing here imports numba.cuda, CuPy or PyTorch at import time of
``fastloss``: ``fastloss.cuda.arrays.is_device_array`` is duck-typed, and the
rest is imported only when a device array arrives.
"""
