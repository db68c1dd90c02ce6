"""Fit a 2-layer MLP to scikit-learn's handwritten digits with gradient
descent, using fastloss for the loss and its gradient; stop early when the
model starts to over-fit, and save the loss curves as a PNG.

    python examples/train_digits.py                      # writes reports/train_digits.png
    python examples/train_digits.py --epochs 5 --out /tmp/curves.png

Needs NumPy, scikit-learn (the data set ships with it), matplotlib and
fastloss (``pip install 'fastloss[examples]'``); no deep-learning framework.

The loss is softmax cross entropy: ``fastloss.value_and_grad("cross_entropy",
logits, labels)`` gives the mean loss over the batch and d(loss)/d(logits)
in one fused pass; the rest of back-propagation is two matrix products.

Over-fitting is the validation loss rising while the training loss still
falls. Training keeps the weights of the epoch with the lowest validation
loss and stops once, for ``--patience`` epochs in a row, the validation loss
has stayed more than ``--tol`` (relative) above that best while the training
loss kept falling below its value at that epoch; the best weights are then
restored.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

import fastloss as fl

LOSS = "cross_entropy"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(seed: int, train_size: int):
    """Digits (8x8 images, 10 classes) scaled to [0, 1], split into a small
    training set (which makes over-fitting quick to see) and a validation set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float64)
    Xtr, Xva, ytr, yva = train_test_split(X, y.astype(np.int64), train_size=train_size,
                                          random_state=seed, stratify=y)
    return Xtr, ytr, Xva, yva


class MLP:
    """x -> tanh(x W1 + b1) W2 + b2 (the logits)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, rng: np.random.Generator):
        self.W1 = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_hidden))
        self.b1 = np.zeros(n_hidden)
        self.W2 = rng.normal(0, 1 / np.sqrt(n_hidden), (n_hidden, n_out))
        self.b2 = np.zeros(n_out)

    def params(self):
        return [self.W1, self.b1, self.W2, self.b2]

    def forward(self, X):
        h = np.tanh(X @ self.W1 + self.b1)
        return h, h @ self.W2 + self.b2

    def loss(self, X, y) -> float:
        return fl.cross_entropy(self.forward(X)[1], y)

    def loss_and_grads(self, X, y):
        h, logits = self.forward(X)
        loss, dlogits = fl.value_and_grad(LOSS, logits, y)  # mean loss, d loss / d logits
        dh = (dlogits @ self.W2.T) * (1 - h * h)
        return loss, [X.T @ dh, dh.sum(0), h.T @ dlogits, dlogits.sum(0)]


def accuracy(model, X, y) -> float:
    if "accuracy" in fl.names():
        return fl.accuracy(model.forward(X)[1], y)
    return float(np.mean(np.argmax(model.forward(X)[1], 1) == y))


def train(args, log=print):
    rng = np.random.default_rng(args.seed)
    Xtr, ytr, Xva, yva = load(args.seed, args.train_size)
    model = MLP(Xtr.shape[1], args.hidden, 10, rng)
    velocity = [np.zeros_like(p) for p in model.params()]
    hist = {"train": [], "val": [], "best_epoch": 0, "stopped_at": None}
    best = (np.inf, None, 0)  # (val loss, weights, epoch)
    rising = 0
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(Xtr))
        for i in range(0, len(order), args.batch):
            b = order[i:i + args.batch]
            _, grads = model.loss_and_grads(Xtr[b], ytr[b])
            for p, v, g in zip(model.params(), velocity, grads, strict=True):
                v *= args.momentum
                v -= args.lr * g
                p += v
        tr, va = model.loss(Xtr, ytr), model.loss(Xva, yva)
        hist["train"].append(tr)
        hist["val"].append(va)
        if va < best[0]:
            best = (va, [p.copy() for p in model.params()], epoch)
            rising = 0
        elif va > best[0] * (1 + args.tol) and tr < hist["train"][best[2] - 1]:
            rising += 1  # validation clearly above its best while training still improves
        else:
            rising = 0
        if epoch == 1 or epoch % args.log_every == 0:
            log(f"epoch {epoch:4d}  train {tr:.4f}  val {va:.4f}  "
                f"val acc {accuracy(model, Xva, yva):.3f}")
        if rising >= args.patience:
            hist["stopped_at"] = epoch
            log(f"over-fitting: validation loss rose for {args.patience} epochs while the "
                f"training loss fell; stopping at epoch {epoch}, keeping epoch {best[2]}")
            break
    if best[1] is not None:
        for p, b in zip(model.params(), best[1], strict=True):
            p[...] = b
    hist["best_epoch"] = best[2]
    hist["val_accuracy"] = accuracy(model, Xva, yva)
    hist["train_size"], hist["val_size"] = len(Xtr), len(Xva)
    return model, hist


def plot(hist, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(hist["train"]) + 1)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(epochs, hist["train"], label=f"training loss ({hist['train_size']} images)")
    ax.plot(epochs, hist["val"], label=f"validation loss ({hist['val_size']} images)")
    be = hist["best_epoch"]
    if be:
        ax.axvline(be, color="grey", ls="--", lw=1)
        ax.annotate(f"best validation loss\nepoch {be}", (be, hist["val"][be - 1]),
                    xytext=(10, 25), textcoords="offset points", fontsize=8,
                    arrowprops={"arrowstyle": "->", "lw": 0.8})
    if hist["stopped_at"]:
        ax.axvline(hist["stopped_at"], color="tab:red", ls=":", lw=1,
                   label=f"early stop (epoch {hist['stopped_at']})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross entropy (fastloss)")
    ax.set_title(f"2-layer MLP on sklearn digits; validation accuracy "
                 f"{hist['val_accuracy']:.3f} at the best epoch", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1000, help="most epochs (default 1000)")
    p.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    p.add_argument("--momentum", type=float, default=0.9, help="momentum (default 0.9)")
    p.add_argument("--batch", type=int, default=50, help="mini-batch size (default 50)")
    p.add_argument("--train-size", type=int, default=200,
                   help="training images (default 200; the rest validate)")
    p.add_argument("--patience", type=int, default=10,
                   help="epochs of over-fitting before stopping (default 10)")
    p.add_argument("--tol", type=float, default=0.02,
                   help="relative rise of the validation loss over its best that counts "
                        "(default 0.02)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "reports" / "train_digits.png",
                   help="PNG of the loss curves (default reports/train_digits.png)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    t0 = time.perf_counter()
    _, hist = train(args)
    plot(hist, args.out)
    print(f"best epoch {hist['best_epoch']}, validation loss {hist['val'][hist['best_epoch'] - 1]:.4f}, "
          f"accuracy {hist['val_accuracy']:.3f}; {len(hist['train'])} epochs in "
          f"{time.perf_counter() - t0:.1f} s; curves: {args.out}")
    return hist


if __name__ == "__main__":
    main()
    sys.exit(0)
