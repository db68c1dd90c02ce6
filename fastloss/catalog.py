"""The catalogue: one ``LossSpec`` per loss (shared LOSSES.md).

A spec says everything generic code needs to know about a loss: its family,
its scalar formula, its parameters (defaults, domains, how they reach the
kernel), the domains of its input and target, and the reductions it allows.
Adding an elementwise loss means adding a formula in ``fastloss.scalar``, a
spec here and a reference in ``fastloss.reference``; validation, kernels,
reductions, the public functions and the tests follow from the spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from fastloss.scalar import binary as B
from fastloss.scalar import regression as R

REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class Interval:
    """A closed or open interval of allowed data values; NaN always passes."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __str__(self) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


@dataclass(frozen=True)
class ValueSet:
    """A finite set of allowed data values (hinge targets); NaN always passes."""

    values: tuple[float, ...]

    def __str__(self) -> str:
        return "{" + ", ".join(f"{v:g}" for v in self.values) + "}"


def _positive(v):
    return None if v > 0 else "must be > 0"


def _nonnegative(v):
    return None if v >= 0 else "must be >= 0"


def _unit_open(v):
    return None if 0 < v < 1 else "must be in (0, 1)"


def _unit_closed(v):
    return None if 0 <= v <= 1 else "must be in [0, 1]"


@dataclass(frozen=True)
class Param:
    """A keyword parameter of a loss.

    kind: "float" (a finite real number), "bool", "float_or_none", or
    "array" (an optional float array broadcastable to the input; None = absent).
    check: returns None when the value is allowed, else what is wrong.
    """

    name: str
    default: object
    kind: str = "float"
    check: Callable[[float], str | None] | None = None
    doc: str = ""


@dataclass(frozen=True)
class LossSpec:
    name: str
    family: str  # "regression" | "binary" (elementwise); later "multiclass", "box", "metric"
    formula: Callable
    summary: str
    params: tuple[Param, ...] = ()
    input_domain: Interval | ValueSet | None = None
    target_domain: Interval | ValueSet | None = None
    #: extra data-domain checks that depend on the parameters: params -> [(arg, domain)]
    param_domains: Callable[[dict], list] | None = None
    #: maps the checked parameters to the formula's (p0, p1, p2)
    pack: Callable[[dict], tuple[float, float, float]] = field(default=lambda p: (0.0, 0.0, 0.0))
    #: name of the array parameter fed to the formula as its per-element q (default 1)
    q_param: str | None = None
    #: name of the array parameter that multiplies value and gradient elementwise
    weight_param: str | None = None
    reductions: tuple[str, ...] = REDUCTIONS
    has_grad: bool = True
    reference: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


def _pack1(name):
    return lambda p: (float(p[name]), 0.0, 0.0)


_PROB = Interval(0.0, 1.0)
_HINGE = ValueSet((-1.0, 0.0, 1.0))
_LOG1P_DOMAIN = Interval(-1.0, math.inf, lo_open=True)

SPECS: tuple[LossSpec, ...] = (
    # --- regression -------------------------------------------------------
    LossSpec("mse", "regression", R.mse, "squared error (x - y)^2"),
    LossSpec("mae", "regression", R.mae, "absolute error |x - y|"),
    LossSpec(
        "rmse", "regression", R.mse, "root mean squared error sqrt(mean (x - y)^2)",
        reductions=("mean",),
    ),
    LossSpec(
        "msle", "regression", R.msle, "squared log error (log1p(x) - log1p(y))^2",
        input_domain=_LOG1P_DOMAIN, target_domain=_LOG1P_DOMAIN,
    ),
    LossSpec(
        "huber", "regression", R.huber, "Huber loss (quadratic within delta, linear outside)",
        params=(Param("delta", 1.0, check=_positive),), pack=_pack1("delta"),
        reference="Huber, Ann. Math. Statist. 35 (1964)",
    ),
    LossSpec(
        "smooth_l1", "regression", R.smooth_l1, "smooth L1 (Huber / beta); beta = 0 is mae",
        params=(Param("beta", 1.0, check=_nonnegative),), pack=_pack1("beta"),
        reference="Girshick, Fast R-CNN, ICCV 2015",
    ),
    LossSpec(
        "pseudo_huber", "regression", R.pseudo_huber, "pseudo-Huber delta^2 (sqrt(1 + (d/delta)^2) - 1)",
        params=(Param("delta", 1.0, check=_positive),), pack=_pack1("delta"),
        reference="Charbonnier et al., ICIP 1994",
    ),
    LossSpec("log_cosh", "regression", R.log_cosh, "log(cosh(x - y))"),
    LossSpec(
        "quantile", "regression", R.quantile, "pinball loss max(tau r, (tau - 1) r), r = y - x",
        params=(Param("tau", 0.5, check=_unit_open),), pack=_pack1("tau"),
        reference="Koenker & Bassett, Econometrica 46 (1978)",
    ),
    LossSpec(
        "poisson_nll", "regression", R.poisson_nll,
        "Poisson NLL: e^x - y x (log_input) or x - y log x",
        params=(Param("log_input", True, kind="bool"),),
        target_domain=Interval(0.0),
        param_domains=lambda p: [] if p["log_input"] else [("input", Interval(0.0))],
        pack=lambda p: (1.0 if p["log_input"] else 0.0, 0.0, 0.0),
    ),
    # --- binary and multi-label -------------------------------------------
    LossSpec(
        "binary_cross_entropy", "binary", B.binary_cross_entropy,
        "cross entropy of probabilities -(y log x + (1 - y) log(1 - x))",
        input_domain=_PROB, target_domain=_PROB,
    ),
    LossSpec(
        "binary_cross_entropy_with_logits", "binary", B.binary_cross_entropy_with_logits,
        "cross entropy of logits (1 - y) softplus(x) + w y softplus(-x)",
        params=(
            Param("pos_weight", None, kind="array", doc="w, broadcast over the last axis"),
            Param("label_smoothing", 0.0, check=_unit_closed),
            Param("weight", None, kind="array", doc="elementwise weight"),
        ),
        target_domain=_PROB, pack=_pack1("label_smoothing"),
        q_param="pos_weight", weight_param="weight",
    ),
    LossSpec(
        "sigmoid_focal", "binary", B.sigmoid_focal,
        "focal loss alpha_t (1 - p_t)^gamma BCE(x, y)",
        params=(
            Param("alpha", 0.25, kind="float_or_none", check=_unit_closed),
            Param("gamma", 2.0, check=_nonnegative),
            Param("weight", None, kind="array", doc="elementwise weight"),
        ),
        target_domain=_PROB,
        pack=lambda p: (
            0.0 if p["alpha"] is None else float(p["alpha"]),
            float(p["gamma"]),
            0.0 if p["alpha"] is None else 1.0,
        ),
        weight_param="weight",
        reference="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    LossSpec("hinge", "binary", B.hinge, "hinge max(0, 1 - y x)", target_domain=_HINGE),
    LossSpec(
        "squared_hinge", "binary", B.squared_hinge, "squared hinge max(0, 1 - y x)^2",
        target_domain=_HINGE,
    ),
    LossSpec(
        "soft_margin", "binary", B.soft_margin, "logistic loss softplus(-y x)", target_domain=_HINGE,
    ),
)

BY_NAME: dict[str, LossSpec] = {s.name: s for s in SPECS}

#: formulas in a fixed order; a loss's kernel is compiled for its index (a
#: compile-time literal), which lets Numba cache each kernel on disk.
FORMULAS: tuple[Callable, ...] = tuple(dict.fromkeys(s.formula for s in SPECS))


def formula_id(spec: LossSpec) -> int:
    return FORMULAS.index(spec.formula)


def get(name: str) -> LossSpec:
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"name: unknown loss {name!r}; known losses: {', '.join(sorted(BY_NAME))}"
        ) from None
