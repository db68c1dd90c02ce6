"""CUDA backend: the scalar formulas of ``fastloss.scalar`` as CUDA kernels (``jit.kernel``).

Public entry: ``fastloss.api`` routes any input that lives on a GPU (a numba
device array, or an object exposing ``__cuda_array_interface__`` or CUDA
DLPack: CuPy arrays, PyTorch CUDA tensors) to ``fastloss.cuda.api.evaluate``.

Modules:
- ``config``: launch configuration (injectable, ``launch(...)``) and the
  fixed sizes of the deterministic reduction;
- ``jit``: ``@jit.kernel``, how every kernel here is compiled: as
  ``@cuda.jit``, but with NVVM's ``-fma=0`` (nvcc's ``--fmad=false``) and
  without LTO, so that each ``*`` and ``+`` of a formula is rounded as
  written (``mul.rn`` / ``add.rn``), as on the CPU, while explicit ``fma``
  calls stay fused. NVVM contracts ``a*b + c`` into an fma by default, even
  without fastmath, which breaks the error-free transformations (TwoSum,
  exact products, double-double) the formulas rely on. The option applies
  only to kernels fastloss creates: a user's own ``@cuda.jit`` kernels in
  the same process compile exactly as numba-cuda would (see ``jit``'s doc
  for the mechanism, and ``tests/test_cuda.py::test_no_fma_contraction_in_ptx``
  for the PTX);
- ``arrays``: adapting caller arrays (CAI / DLPack, zero copy), streams, and
  allocating results of the caller's kind;
- ``reduce``: the fixed-order in-block tree and the partial-combining kernel;
- ``elementwise``: the fused value/gradient/partial-sum kernel generated from
  a formula of ``catalog.FORMULAS``; ``boxes`` and ``rowwise``: the same for
  the box and row-wise (multiclass) formulas;
- ``checks``: data-domain checks that run as kernels (no host copy of data);
- ``api``: validation and the driver behind ``fastloss.value_and_grad`` & co.

Nothing here imports numba.cuda, CuPy or PyTorch at import time of
``fastloss``: ``fastloss.cuda.arrays.is_device_array`` is duck-typed, and the
rest is imported only when a device array arrives.
"""
