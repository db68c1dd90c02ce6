"""One training step (forward + loss + backward + SGD update) of a softmax
regression in PyTorch, with fastloss' CrossEntropyLoss (``fastloss.torch``)
against torch.nn.CrossEntropyLoss, measured in the same run.

    python -m pytest bench/test_train_step.py --benchmark-columns=min,median
    python -m pytest bench/test_train_step.py --benchmark-disable --fl-smoke -q

Both sides run with the same thread count (the first ``--fl-threads`` value,
default 1) for PyTorch and Numba. The torch run's ``extra_info`` carries
``fastloss_over_torch``: fastloss' minimum time over torch's (below 1 means
fastloss' step is faster).
"""

import pytest

torch = pytest.importorskip("torch")

#: (batch N, features D, classes C): an ImageNet-sized head and a small one
SHAPES = [(1024, 256, 1000), (4096, 64, 10)]
SMOKE = [(32, 8, 5)]
_MIN = {}


def _threads(config) -> int:
    t = config.getoption("--fl-threads", default=None)
    return int(t.split(",")[0]) if t else 1


def _shapes(config):
    return SMOKE if config.getoption("--fl-smoke", default=False) else SHAPES


def pytest_generate_tests(metafunc):
    if "shape" in metafunc.fixturenames:
        shapes = _shapes(metafunc.config)
        metafunc.parametrize("shape", shapes, ids=[f"N{n}-D{d}-C{c}" for n, d, c in shapes])


@pytest.mark.parametrize("impl", ["fastloss", "torch"])
def test_train_step(benchmark, impl, shape, pytestconfig):
    import numba

    import fastloss as fl
    import fastloss.torch as flt

    if "cross_entropy" not in fl.names():
        pytest.skip("cross_entropy not in this build")
    n, d, c = shape
    threads = _threads(pytestconfig)
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    model = torch.nn.Linear(d, c)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = flt.CrossEntropyLoss() if impl == "fastloss" else torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = crit(model(X), y)
        loss.backward()
        opt.step()
        return loss

    step()  # compile / warm up
    benchmark.group = f"train_step N{n} D{d} C{c}"
    benchmark.extra_info.update({"family": "train_step", "impl": impl, "n": n, "d": d, "c": c,
                                 "threads": threads, "dtype": "float32"})
    loss = benchmark(step)
    assert torch.isfinite(loss)
    st = getattr(benchmark, "stats", None)
    if st is not None:
        _MIN[(impl, shape)] = st.stats.min
        if impl == "torch" and ("fastloss", shape) in _MIN:
            ratio = _MIN[("fastloss", shape)] / _MIN[("torch", shape)]
            benchmark.extra_info["fastloss_over_torch"] = ratio
            print(f"\ntrain step N{n} D{d} C{c}: fastloss/torch time ratio {ratio:.3f}")
