"""The mpmath oracle: exact value and gradient of every loss.

Written from the mathematical definitions in LOSSES.md and sharing no code
with the kernels it checks (nothing here imports ``fastloss.scalar``,
``fastloss.math`` or ``fastloss.cpu``).

Elementwise losses (``fastloss.reference.elementwise``):

- ``ELEMENTWISE``: ``{name: callable(x, y, q=1.0, **params)}``
- ``value_and_grad(name, x, y, q=1.0, **params) -> (mpf, mpf)``
- ``condition(name, x, y, q=1.0, **params) -> (cond_value, cond_grad)``
- ``rmse(xs, ys) -> (mpf, [mpf])``

Row-wise losses: ``fastloss.reference.multiclass.row_value_and_grad``.
"""

from fastloss.reference.elementwise import DPS, ELEMENTWISE, condition, rmse, value_and_grad

__all__ = ["DPS", "ELEMENTWISE", "condition", "rmse", "value_and_grad"]
