"""The bandwidth limit of this run: STREAM triad (CPU) at every thread count
and size class, device-to-device copy (GPU). Runs first, so the losses that
follow are compared with the machine as it is now."""

from fastloss.benchmark import runner

FAMILY = "bandwidth"


def test_bandwidth(benchmark, case, budget, progress):
    runner.run(benchmark, case, budget)
