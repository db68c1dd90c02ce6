"""Fused value + gradient of every elementwise loss (regression and binary
families of the catalogue), beside PyTorch forward + backward and the NumPy
formula of the same loss."""

from fastloss.benchmark import runner

FAMILY = "elementwise"


def test_elementwise(benchmark, case, budget, progress):
    runner.run(benchmark, case, budget)
