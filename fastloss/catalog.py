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
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from fastloss.scalar import binary as B
from fastloss.scalar import multiclass as M
from fastloss.scalar import regression as R

REDUCTIONS = ("mean", "sum", "none")

#: the slot of ``LossSpec.fixed`` that names the per-element q (slots 0-2:
#: the packed parameters)
Q = 3


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
class Float32In:
    """A ``LossSpec.fixed`` condition that fixes no value: the parameter is
    a float32 number in [lo, hi]. The kernel reads it at run time, as the
    formula's own kernel does; what differs is its formula's
    ``FIXED_KERNEL`` flag (``fastloss.math``), which lets float32 data take
    a float32-lane path that holds only for such parameters (huber)."""

    lo: float
    hi: float

    def holds(self, v: float) -> bool:
        # float32 rounding by the struct module: the catalogue imports no NumPy
        return self.lo <= v <= self.hi and struct.unpack("f", struct.pack("f", v))[0] == v


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
    family: str  # "regression" | "binary" (elementwise) | "multiclass" (row-wise); later "box", "metric"
    formula: Callable | None  # None for metrics (no scalar formula, no gradient)
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
    #: parameter values for which the CPU kernel is compiled with them as
    #: compile-time constants (``kernel_id``): each entry a tuple of (slot,
    #: value) pairs that must all hold, slot 0-2 a packed parameter, ``Q``
    #: the per-element q when it is one scalar. A vectorized loop evaluates
    #: both sides of a runtime branch as selects; with the constant LLVM
    #: folds the branch and drops the dead side. poisson_nll: either
    #: log_input; sigmoid_focal: gamma = 2, and gamma = 0 without alpha
    #: (BCE itself; its float64 kernel of the other parameters then holds
    #: one path: ``math.CPU_GENERIC``);
    #: BCE with logits: no label
    #: smoothing and no pos_weight (the defaults). A value may also be a
    #: ``Float32In`` condition, which fixes nothing (huber: delta a float32
    #: number in [1, 2^64])
    fixed: tuple[tuple[tuple[int, float | Float32In], ...], ...] = ()
    #: elementwise losses whose CPU kernel is bound by memory, not by its
    #: formula: a gradient of ``_config.STREAM_BYTES`` or more is written by
    #: streaming stores (``cpu.elementwise``), which skip each line's read.
    #: Elsewhere the kernel is bound by its arithmetic, and the stores'
    #: round trip through a block buffer costs more than the saved reads
    #: give back (float32, N = 2^24, 2 threads, plain call, ns/elem, four
    #: rounds alternating processes, streamed / ordinary: log_cosh
    #: 1.41-1.86 / 1.33-1.39, poisson_nll 1.35-1.92 / 1.30-1.40,
    #: binary_cross_entropy 2.33-2.73 / 2.29-2.32, msle 1.54-1.78 /
    #: 1.48-1.71, soft_margin 1.24-1.29 / 1.22-1.25; BCE with logits in
    #: float64 2.94-3.00 / 2.92-2.98, and in float32 0.89-1.02 / 0.88-1.03;
    #: another six rounds, G elem/s: four 1.06-1.08 / 1.13-1.14, two
    #: disturbed 0.81 / 0.81 and 0.77 / 1.14)
    streams: bool = False

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
    LossSpec("mse", "regression", R.mse, "squared error (x - y)^2", streams=True),
    LossSpec("mae", "regression", R.mae, "absolute error |x - y|", streams=True),
    LossSpec(
        "rmse", "regression", R.mse, "root mean squared error sqrt(mean (x - y)^2)",
        reductions=("mean",), streams=True,
    ),
    LossSpec(
        "msle", "regression", R.msle, "squared log error (log1p(x) - log1p(y))^2",
        input_domain=_LOG1P_DOMAIN, target_domain=_LOG1P_DOMAIN,
    ),
    LossSpec(
        "huber", "regression", R.huber, "Huber loss (quadratic within delta, linear outside)",
        params=(Param("delta", 1.0, check=_positive),), pack=_pack1("delta"),
        reference="Huber, Ann. Math. Statist. 35 (1964)",
        fixed=(((0, Float32In(1.0, 2.0**64)),),), streams=True,
    ),
    LossSpec(
        "smooth_l1", "regression", R.smooth_l1, "smooth L1 (Huber / beta); beta = 0 is mae",
        params=(Param("beta", 1.0, check=_nonnegative),), pack=_pack1("beta"),
        reference="Girshick, Fast R-CNN, ICCV 2015", streams=True,
        fixed=(((0, 1.0),),),
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
        reference="Koenker & Bassett, Econometrica 46 (1978)", streams=True,
    ),
    LossSpec(
        "poisson_nll", "regression", R.poisson_nll,
        "Poisson NLL: e^x - y x (log_input) or x - y log x",
        params=(Param("log_input", True, kind="bool"),),
        target_domain=Interval(0.0),
        param_domains=lambda p: [] if p["log_input"] else [("input", Interval(0.0))],
        pack=lambda p: (1.0 if p["log_input"] else 0.0, 0.0, 0.0),
        fixed=(((0, 0.0),), ((0, 1.0),)),
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
        fixed=(((0, 0.0), (Q, 1.0)),),
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
        fixed=(((1, 2.0),), ((1, 0.0), (2, 0.0))),
        reference="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    LossSpec("hinge", "binary", B.hinge, "hinge max(0, 1 - y x)", target_domain=_HINGE,
             streams=True),
    LossSpec(
        "squared_hinge", "binary", B.squared_hinge, "squared hinge max(0, 1 - y x)^2",
        target_domain=_HINGE, streams=True,
    ),
    LossSpec(
        "soft_margin", "binary", B.soft_margin, "logistic loss softplus(-y x)", target_domain=_HINGE,
    ),
    # --- multiclass (row-wise: fastloss.rows) -----------------------------
    LossSpec(
        "cross_entropy", "multiclass", M.cross_entropy,
        "softmax cross entropy of logits with class labels or probability targets",
        params=(
            Param("weight", None, kind="array", doc="(C,) class weights"),
            Param("ignore_index", -100, kind="int", doc="label whose rows are skipped"),
            Param("label_smoothing", 0.0, check=_unit_closed),
            Param("z_loss", 0.0, check=_nonnegative, doc="adds z_loss * lse(x)^2 per row"),
        ),
        pack=lambda p: (float(p["label_smoothing"]), float(p["z_loss"]), 0.0),
        weight_param="weight",
        reference="PyTorch F.cross_entropy; Blanchard, Higham & Higham, IMA J. Numer. Anal. 41 "
                  "(2021); z-loss: Chowdhery et al., PaLM (2022)",
    ),
    LossSpec(
        "nll", "multiclass", M.nll, "negative log-likelihood -x_y of log-probabilities",
        params=(
            Param("weight", None, kind="array", doc="(C,) class weights"),
            Param("ignore_index", -100, kind="int", doc="label whose rows are skipped"),
        ),
        weight_param="weight",
        reference="PyTorch F.nll_loss",
    ),
    LossSpec(
        "categorical_cross_entropy", "multiclass", M.categorical_cross_entropy,
        "cross entropy -sum t log x of probabilities x with probability targets t",
        input_domain=_PROB, target_domain=Interval(0.0),
        reference="Keras categorical_crossentropy (from_logits=False, without renormalising)",
    ),
    LossSpec(
        "kl_div", "multiclass", M.kl_div,
        "Kullback-Leibler divergence sum t (log t - x) of log-probabilities x",
        params=(Param("log_target", False, kind="bool"),),
        target_domain=Interval(0.0),
        pack=lambda p: (1.0 if p["log_target"] else 0.0, 0.0, 0.0),
        reductions=("mean", "sum", "none", "batchmean"),
        reference="PyTorch F.kl_div",
    ),
    LossSpec(
        "softmax_focal", "multiclass", M.softmax_focal,
        "softmax focal loss -alpha_y (1 - p_y)^gamma log p_y",
        params=(
            Param("gamma", 2.0, check=_nonnegative),
            Param("alpha", None, kind="array", doc="(C,) class weights alpha"),
        ),
        pack=_pack1("gamma"),
        weight_param="alpha",
        reference="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    LossSpec(
        "multi_margin", "multiclass", M.multi_margin,
        "multi-class hinge sum_{j != y} w_y max(0, margin - x_y + x_j)^p / C",
        params=(
            Param("p", 1, kind="int", check=lambda v: None if v in (1, 2) else "must be 1 or 2"),
            Param("margin", 1.0),
            Param("weight", None, kind="array", doc="(C,) class weights"),
        ),
        pack=lambda p: (float(p["margin"]), float(p["p"]), 0.0),
        weight_param="weight",
        reference="PyTorch F.multi_margin_loss; Weston & Watkins, ESANN 1999",
    ),
)


# --- boxes (fastloss.boxes) and metrics (fastloss.metrics) -----------------
from fastloss.scalar import boxes as _BX  # noqa: E402

_BOX_REF = ("Rezatofighi et al., Generalized Intersection over Union, CVPR 2019; "
            "Zheng et al., Distance-IoU Loss, AAAI 2020")

SPECS = SPECS + (
    LossSpec("iou_loss", "box", _BX.iou_loss, "IoU loss 1 - IoU of (N, 4) boxes (x1, y1, x2, y2)",
             reference="Yu et al., UnitBox, ACM MM 2016; " + _BOX_REF),
    LossSpec("giou_loss", "box", _BX.giou_loss,
             "generalized IoU loss 1 - IoU + (C - U)/C, C the enclosing box's area",
             reference=_BOX_REF),
    LossSpec("diou_loss", "box", _BX.diou_loss,
             "distance IoU loss 1 - IoU + rho^2/c^2 (centre distance over enclosing diagonal)",
             reference=_BOX_REF),
    LossSpec("ciou_loss", "box", _BX.ciou_loss,
             "complete IoU loss DIoU + alpha v (aspect ratio term; alpha constant in the gradient)",
             reference=_BOX_REF),
    LossSpec("zero_one", "metric", None,
             "zero-one loss: fraction (sum: count) of wrong predictions (argmax of (N, C) "
             "scores, or logit > 0 for (N,) binary logits)", has_grad=False),
    LossSpec("accuracy", "metric", None,
             "accuracy: fraction (sum: count) of right predictions, 1 - zero_one", has_grad=False),
)

BY_NAME: dict[str, LossSpec] = {s.name: s for s in SPECS}

#: elementwise formulas in a fixed order; a loss's kernel is compiled for its index (a
#: compile-time literal), which lets Numba cache each kernel on disk.
FORMULAS: tuple[Callable, ...] = tuple(
    dict.fromkeys(s.formula for s in SPECS if s.family in ("regression", "binary"))
)


def formula_id(spec: LossSpec) -> int:
    return FORMULAS.index(spec.formula)


def _fixed_value(value):
    return value if isinstance(value, Float32In) else float(value)


def _holds(value, v) -> bool:
    """Whether parameter value v meets a ``LossSpec.fixed`` entry's value."""
    if isinstance(value, Float32In):
        return v is not None and value.holds(v)
    return v == value


#: the kernels with parameters fixed (``LossSpec.fixed``): (formula index,
#: ((slot, value), ...)); kernel id ``len(FORMULAS) + i`` is entry i
FIXED: tuple[tuple[int, tuple[tuple[int, float | Float32In], ...]], ...] = tuple(dict.fromkeys(
    (FORMULAS.index(s.formula), tuple((slot, _fixed_value(value)) for slot, value in pairs))
    for s in SPECS for pairs in s.fixed))


_KERNEL_IDS: dict = {}


def kernel_id(spec: LossSpec, p: tuple[float, float, float], q=None) -> int:
    """The CPU elementwise kernels' compile-time formula id for the packed
    parameters p and the per-element q (an array; None: not a constant):
    ``formula_id``, or ``len(FORMULAS) + i`` where entry i of ``FIXED`` is
    this formula with parameters at values that p and q hold
    (``cpu.elementwise.apply`` passes those values as constants). q matches
    a value only as a single element (``qper`` 1: one scalar for all).

    Memoised per (loss, p, q's value): the search costs up to ~1.3 us a
    call (huber's ``Float32In`` test), a lookup ~0.2. The memo is emptied
    when it reaches 1024 entries (parameters that change every call)."""
    qv = float(q[0]) if q is not None and q.size == 1 else None
    key = (spec.name, p, qv)
    hit = _KERNEL_IDS.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_KERNEL_IDS) >= 1024:
        _KERNEL_IDS.clear()
    kid = _kernel_id(spec, p, qv)
    _KERNEL_IDS[key] = (spec, kid)
    return kid


def _kernel_id(spec: LossSpec, p: tuple[float, float, float], qv) -> int:
    fid = formula_id(spec)
    for pairs in spec.fixed:
        if all(_holds(value, qv if slot == Q else p[slot]) for slot, value in pairs):
            return len(FORMULAS) + FIXED.index((fid, tuple((s, _fixed_value(v)) for s, v in pairs)))
    return fid


def get(name: str) -> LossSpec:
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"name: unknown loss {name!r}; known losses: {', '.join(sorted(BY_NAME))}"
        ) from None
