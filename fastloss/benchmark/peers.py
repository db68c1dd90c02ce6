"""The implementations measured beside fastloss, each doing the same work:
the loss's value (``reduction="mean"``) and its gradient.

- ``torch``: ``torch.nn.functional``'s loss, forward + backward (autograd),
  with ``torch.set_num_threads`` equal to the case's thread count; for
  ``sigmoid_focal`` torchvision's ``sigmoid_focal_loss`` (PyTorch has no
  focal loss; torchvision's is the one PyTorch users call), loaded as the
  audit loads it (``fastloss.audit.peers.torchvision_losses``);
- ``numpy``: the textbook formula (``fastloss.audit.peers``' per-element
  formulas, then the mean and the gradient divided by n): what a person
  writes without a library.

Only losses the peer really has are mapped (no composite stand-ins), except
``rmse`` (``sqrt`` of PyTorch's ``mse_loss``) which is one call on top of one.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------
# PyTorch (reduction="mean", forward + backward)


def _torch_elementwise(F, torch, p, kw):
    """The losses' PyTorch calls; kw: the case's option as tensors
    (``cases.variant_kwargs``), passed to the loss that takes it."""
    return {
        "mse": lambda x, y: F.mse_loss(x, y),
        "mae": lambda x, y: F.l1_loss(x, y),
        "rmse": lambda x, y: torch.sqrt(F.mse_loss(x, y)),
        "huber": lambda x, y: F.huber_loss(x, y, delta=p.get("delta", 1.0)),
        "smooth_l1": lambda x, y: F.smooth_l1_loss(x, y, beta=p.get("beta", 1.0)),
        "poisson_nll": lambda x, y: F.poisson_nll_loss(
            x, y, log_input=p.get("log_input", True), full=False),
        "binary_cross_entropy": lambda x, y: F.binary_cross_entropy(x, y),
        "binary_cross_entropy_with_logits":
            lambda x, y: F.binary_cross_entropy_with_logits(x, y, **kw),
        "soft_margin": lambda x, y: F.soft_margin_loss(x, y),
    }


def _torch_multiclass(F, torch, p, target):
    if target == "labels":
        return {
            "cross_entropy": lambda x, y: F.cross_entropy(x, y),
            "nll": lambda x, y: F.nll_loss(x, y),
            "multi_margin": lambda x, y: F.multi_margin_loss(
                x, y, p=int(p.get("p", 1)), margin=p.get("margin", 1.0)),
        }
    return {
        "cross_entropy": lambda x, y: F.cross_entropy(x, y),
        "kl_div": lambda x, y: F.kl_div(x, y, reduction="mean",
                                        log_target=p.get("log_target", False)),
    }


TORCH_ELEMENTWISE = ("mse", "mae", "rmse", "huber", "smooth_l1", "poisson_nll",
                     "binary_cross_entropy", "binary_cross_entropy_with_logits", "soft_margin")
TORCH_MULTICLASS = {"labels": ("cross_entropy", "nll", "multi_margin"),
                    "probs": ("cross_entropy", "kl_div")}
#: elementwise losses whose "torch" peer is torchvision's
TORCHVISION_ELEMENTWISE = ("sigmoid_focal",)


def _torchvision():
    """torchvision's losses (``fastloss.audit.peers.torchvision_losses``), or
    None where torchvision is not installed or cannot be loaded."""
    from fastloss.audit.peers import torchvision_losses

    try:
        return torchvision_losses()
    except ImportError:
        return None


def torch_supports(case) -> bool:
    if case.family == "elementwise" and case.variant:
        return case.loss == "binary_cross_entropy_with_logits"  # pos_weight, weight
    if case.family == "elementwise":
        if case.loss in TORCHVISION_ELEMENTWISE:
            return torch_missing() is None and _torchvision() is not None
        return case.loss in TORCH_ELEMENTWISE
    if case.family == "multiclass":
        return case.loss in TORCH_MULTICLASS.get(case.target, ())
    return False


def torch_missing() -> str | None:
    """None when PyTorch is importable, else what to do about it."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return ("PyTorch is not installed: its peer benchmarks are skipped "
                "(pip install torch==2.13.0 for the local CPU build)")
    return None


def torch_loss(case, kw=None):
    """f(x_tensor, y_tensor) -> scalar tensor for the case's loss; kw: its
    option as tensors (``cases.variant_kwargs``)."""
    import torch
    import torch.nn.functional as F

    if case.family == "elementwise" and case.loss == "sigmoid_focal":
        from fastloss.audit.peers import torchvision_focal

        focal = torchvision_focal(case.params.get("alpha", 0.25), case.params.get("gamma", 2.0))
        return lambda x, y: focal(x, y, reduction="mean")
    table = (_torch_elementwise(F, torch, case.params, kw or {}) if case.family == "elementwise"
             else _torch_multiclass(F, torch, case.params, case.target))
    return table[case.loss]


# --------------------------------------------------------------------------
# NumPy textbook formulas


def _np_rmse(x, y, q, p):
    d = x - y
    r = np.sqrt(np.mean(d * d))
    return r, d / (x.size * r)


def _np_cross_entropy_labels(x, y):
    n = x.shape[0]
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    value = np.mean(m[:, 0] + np.log(s[:, 0]) - x[rows, y])
    g = e / s
    g[rows, y] -= 1
    g /= n
    return value, g


def _np_nll_labels(x, y):
    n = x.shape[0]
    g = np.zeros_like(x)
    rows = np.arange(n)
    g[rows, y] = -1.0 / n
    return -np.mean(x[rows, y]), g


_MULTICLASS = {("cross_entropy", "labels"): _np_cross_entropy_labels,
               ("nll", "labels"): _np_nll_labels}


def _elementwise_formulas() -> dict:
    try:
        from fastloss.audit.peers import _np_formulas
    except ImportError:  # the audit is not in this build
        return {}
    return _np_formulas()


def numpy_supports(case) -> bool:
    if case.variant:  # the textbook formulas take the defaults only
        return False
    if case.family == "elementwise":
        return case.loss == "rmse" or case.loss in _elementwise_formulas()
    if case.family == "multiclass":
        return (case.loss, case.target) in _MULTICLASS
    return False


def numpy_loss(case):
    """f(x, y) -> (value, grad) with NumPy, the textbook way, in the data's dtype."""
    if case.family == "multiclass":
        return _MULTICLASS[(case.loss, case.target)]
    if case.loss == "rmse":
        f = _np_rmse
    else:
        f = _elementwise_formulas()[case.loss]
    p = dict(case.params)

    def loss(x, y):
        one = x.dtype.type(1)
        v, g = f(x, y, one, p)
        if case.loss == "rmse":
            return float(v), g
        return float(np.mean(v)), g / x.dtype.type(x.size)

    return loss
