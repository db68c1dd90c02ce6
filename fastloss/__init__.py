"""fastloss: machine-learning losses and their gradients, fused, compiled with
Numba, audited against mpmath.

    import fastloss as fl
    fl.names()
    fl.mse(input, target, reduction="mean")
    fl.value_and_grad("binary_cross_entropy_with_logits", logits, labels)
    fl.grad("huber", input, target, delta=0.5)

Importing compiles nothing; each kernel compiles on first use for the dtype
used and is cached on disk.
"""

from fastloss.api import LOSS_FUNCTIONS as _LOSS_FUNCTIONS
from fastloss.api import grad, names, value_and_grad

globals().update(_LOSS_FUNCTIONS)

__all__ = ["names", "value_and_grad", "grad", *sorted(_LOSS_FUNCTIONS)]
__version__ = "0.1.0"
