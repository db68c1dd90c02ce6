"""Launch configuration of the CUDA kernels, and the fixed sizes of their
deterministic reduction (one place, as ``fastloss._config`` for the CPU).

The *results* never depend on the launch configuration: a chunk of
``CHUNK`` elements is always summed by ``LANES`` lanes in the same order and
combined by the same tree, whichever thread or block runs it. The launch
configuration only decides speed, and tests inject several to check exactly
that (``with launch(threads=32, blocks=3): ...``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, replace

from fastloss._config import CHUNK

#: lanes per chunk: lane l of a chunk sums its elements l, l + LANES, ... in
#: order (compensated), then a fixed pairwise tree combines the LANES lane
#: sums. Fixed, independent of blockDim (a thread may own several lanes).
LANES = 256
assert CHUNK % LANES == 0 and LANES & (LANES - 1) == 0

#: threads of the single block that combines the chunk partials (fixed: it
#: is part of the summation order, not a tuning knob)
COMBINE_THREADS = 128

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

#: the values of ``Launch.rows``
ROWS = (None, "block", "warp", "thread")


@dataclass(frozen=True)
class Launch:
    """How kernels are launched. ``None`` means the default for the device.

    threads: threads per block (any positive number; the default is
        ``LANES`` on a GPU, 8 under the simulator, where each thread is a
        Python thread);
    blocks: blocks of the elementwise grid (grid-stride over chunks; default
        min(chunks, 8 x SMs), 2 under the simulator);
    atomic: sum the chunk partials with float64 ``atomicAdd`` instead of the
        deterministic second pass. Faster by one tiny launch, but the order of
        the additions (hence the last bits of the loss) changes run to run.
        Off unless asked for explicitly.
    rows: which row-wise kernel runs the calls the block and warp kernels
        can run (float32 ``cross_entropy`` with labels, no smoothing or
        z-loss: ``rowblock.eligible``; every other call runs one thread per
        row): "block" (a block per row, ``fastloss.cuda.rowblock``), "warp"
        (a warp per row, ``fastloss.cuda.rowwarp``; its blocks take
        ``threads`` rounded down to a multiple of 32, at least 32), "thread"
        (a thread per row, ``fastloss.cuda.rowwise``) or None (the warp
        kernel for rows of fewer than ``rowblock.MIN_C`` classes, the block
        kernel for longer rows).
    """

    threads: int | None = None
    blocks: int | None = None
    atomic: bool = False
    rows: str | None = None


_DEFAULT = Launch()
_LAUNCH: contextvars.ContextVar[Launch | None] = contextvars.ContextVar("fastloss_cuda_launch",
                                                                       default=None)


def current() -> Launch:
    return _LAUNCH.get() or _DEFAULT


@contextlib.contextmanager
def launch(**kw):
    """Override the launch configuration inside a ``with`` block:
    ``with fastloss.cuda.config.launch(threads=64, blocks=3): ...``."""
    for k, v in kw.items():
        if k in ("threads", "blocks") and v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{k}: must be a positive integer or None; got {v!r}")
        if k == "rows" and v not in ROWS:
            raise ValueError(f"rows: must be 'block', 'warp', 'thread' or None; got {v!r}")
    token = _LAUNCH.set(replace(current(), **kw))
    try:
        yield current()
    finally:
        _LAUNCH.reset(token)


def threads_per_block() -> int:
    t = current().threads
    if t is not None:
        return t
    return 8 if SIMULATOR else LANES


def blocks_for(nchunks: int) -> int:
    """Blocks of a grid-stride launch over ``nchunks`` chunks: the injected
    number as given (idle blocks are allowed), else the device default."""
    b = current().blocks
    if b is not None:
        return b
    if SIMULATOR:
        b = 2
    else:
        from numba import cuda

        b = 8 * cuda.get_current_device().MULTIPROCESSOR_COUNT
    return max(1, min(b, nchunks))
