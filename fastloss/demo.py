"""``fastloss demo``: every loss on a small input, checked against mpmath.

For each loss and dtype, evaluates value and gradient with
``reduction="none"`` on a few ordinary and extreme points and prints the worst
distance, in ULPs, to the mpmath oracle rounded to the dtype.
"""

from __future__ import annotations

import numpy as np

import fastloss as fl
from fastloss import catalog

#: (input, target) points per family for the demonstration
_POINTS = {
    "regression": ([-3.0, -0.5, 0.0, 1e-8, 0.75, 2.5, 100.0], [0.5, -0.5, 1.0, 0.0, 0.7, -1.0, -100.0]),
    "binary": ([-100.0, -3.0, -1e-6, 0.0, 0.5, 4.0, 1000.0], [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]),
}
_PROB_X = [1e-30, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0 - 2.0**-24]
_SIGNED = {"hinge", "squared_hinge", "soft_margin"}
_POSITIVE_X = {"msle", "poisson_nll"}


def points(spec):
    """The demonstration inputs of one elementwise loss."""
    x, y = _POINTS[spec.family]
    if spec.name == "binary_cross_entropy":
        x = _PROB_X
    if spec.name in _SIGNED:
        y = [1.0 if v > 0 else -1.0 for v in y]
    if spec.name in _POSITIVE_X:
        x, y = [abs(v) for v in x], [abs(v) for v in y]
    return np.array(x), np.array(y)


def add_arguments(parser) -> None:
    parser.add_argument("--loss", action="append", help="only these losses (repeatable)")


def run(args) -> int:
    from fastloss import reference
    from fastloss.audit.ulp import round_to_dtype, ulp_distance

    names = args.loss or [s.name for s in catalog.SPECS if s.family in _POINTS]
    worst_all = 0.0
    print(f"{'loss':34s} {'dtype':8s} {'mean loss':>14s} {'max ULP value':>14s} {'max ULP grad':>13s}")
    for name in names:
        spec = catalog.get(name)
        x64, y64 = points(spec)
        for dtype in (np.float32, np.float64):
            x, y = x64.astype(dtype), y64.astype(dtype)
            if spec.name == "rmse":
                mean = fl.rmse(x, y)
                ev, eg = reference.rmse([float(v) for v in x], [float(v) for v in y])
                _, g = fl.value_and_grad(name, x, y)
                dv = ulp_distance(np.array([mean], dtype), np.array([round_to_dtype(ev, dtype)]), dtype)
                dg = ulp_distance(g, np.array([round_to_dtype(e, dtype) for e in eg]), dtype)
            else:
                v, g = fl.value_and_grad(name, x, y, reduction="none")
                mean = fl.value_and_grad(name, x, y)[0]
                exact = [reference.value_and_grad(name, float(a), float(b)) for a, b in zip(x, y, strict=True)]
                ev = np.array([round_to_dtype(e[0], dtype) for e in exact])
                eg = np.array([round_to_dtype(e[1], dtype) for e in exact])
                dv, dg = ulp_distance(v, ev, dtype), ulp_distance(g, eg, dtype)
            worst_all = max(worst_all, dv.max(), dg.max())
            print(f"{name:34s} {np.dtype(dtype).name:8s} {mean:14.6g} {dv.max():14.0f} {dg.max():13.0f}")
    print(f"\nworst distance to the mpmath oracle over all losses: {worst_all:.0f} ULP")
    return 0
