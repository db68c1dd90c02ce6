"""examples/train_digits.py runs, learns and writes its PNG (a few epochs)."""

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


def _load():
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_trains_a_few_epochs_and_saves_the_curves(tmp_path, capsys):
    mod = _load()
    out = tmp_path / "curves.png"
    hist = mod.main(["--epochs", "4", "--out", str(out), "--log-every", "1"])
    assert len(hist["train"]) == len(hist["val"]) == 4
    assert hist["train"][-1] < hist["train"][0]  # it learns
    assert all(np.isfinite(hist["val"]))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "epoch    4" in capsys.readouterr().out


def test_example_gradient_is_the_loss_gradient():
    """The back-propagated gradient of one weight matches a finite difference
    of fastloss' loss (the example's use of value_and_grad is right)."""
    mod = _load()
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(20, 6)), rng.integers(0, 10, 20)
    m = mod.MLP(6, 5, 10, rng)
    _, grads = m.loss_and_grads(X, y)
    h = 1e-6
    for p, g in zip(m.params(), grads, strict=True):
        idx = (0,) * p.ndim
        p[idx] += h
        up = m.loss(X, y)
        p[idx] -= 2 * h
        down = m.loss(X, y)
        p[idx] += h
        assert abs((up - down) / (2 * h) - g[idx]) < 1e-7


def test_early_stopping_detects_over_fitting():
    """Fed a run whose validation loss rises while training loss falls, the
    example stops after --patience epochs and keeps the best epoch."""
    mod = _load()
    args = mod.parse(["--epochs", "400", "--patience", "3", "--train-size", "60",
                      "--hidden", "64", "--lr", "0.2", "--log-every", "1000"])
    _, hist = mod.train(args, log=lambda *_: None)
    assert hist["stopped_at"] is not None and hist["stopped_at"] < 400
    be = hist["best_epoch"]
    assert hist["stopped_at"] - be >= 3
    assert min(hist["val"]) == hist["val"][be - 1]
    assert hist["train"][-1] < hist["train"][be - 1]
