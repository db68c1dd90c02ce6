"""Row-wise (softmax) losses of the catalogue on (N, C) scores with integer
labels or probability targets, beside PyTorch forward + backward
(F.cross_entropy, ...) and the NumPy formula."""

from fastloss.benchmark import runner

FAMILY = "multiclass"


def test_multiclass(benchmark, case, budget, progress):
    runner.run(benchmark, case, budget)
