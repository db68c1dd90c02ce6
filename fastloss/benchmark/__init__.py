"""Throughput benchmarks: ``fastloss bench``.

The pytest-benchmark suites live in the repository's ``bench/`` directory
(they are not part of the installed package); everything they share lives
here, so that the suites stay a few lines of pytest glue:

- ``machine``: the machine's description (CPU model, cores, last-level cache,
  library versions, threading layer, GPU name and memory bandwidth);
- ``kernels``: the bandwidth limit of the same run: a STREAM triad
  ``a = b + s c`` (``@njit(parallel=True)``) on the CPU, a device-to-device
  copy on a GPU;
- ``cases``: what to measure, generated from the catalogue (one case per loss
  family, dtype, size, thread count, backend and implementation);
- ``peers``: the other implementations measured beside fastloss: PyTorch
  forward + backward of the same loss and the NumPy textbook formula;
- ``runner``: one benchmark (warm-up and compilation outside the timed
  region, then timing, then a check of the result);
- ``derive``: throughput, bytes, fraction of the bandwidth limit and speed-up
  against each peer, written into each benchmark's ``extra_info``;
- ``report``: Markdown, JSON and PNG reports; ``compare``: the regression gate;
- ``cli``: the ``fastloss bench`` command.
"""
