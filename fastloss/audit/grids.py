"""The audit's grids of inputs: deterministic, documented, per loss and dtype.

A grid is a list of ``Block``s. A block fixes the loss's scalar parameters
and holds arrays of inputs ``x``, targets ``y`` and, where the loss has one,
the per-element auxiliary ``q`` (``pos_weight`` of
``binary_cross_entropy_with_logits``). Every value is representable in the
audited dtype (the arrays *are* of that dtype), so the oracle sees exactly
the numbers the implementations see.

What the grids contain (``size="full"``; ``"quick"`` takes fewer magnitudes,
targets and parameter values of the same kinds):

- **magnitudes** ``m``: powers of two times a fixed set of mantissas, from
  the smallest subnormal to the largest finite number of the dtype, with the
  boundaries themselves (smallest subnormal, smallest normal, eps, 1, max);
- **regression** (``x = y + s*m`` for signs ``s = +-1``): residuals of every
  magnitude around targets 0, 1, -2.5, 1e3 and a large target, residuals of
  a few ULPs (x adjacent to y), ``+-inf`` and ``+-max`` inputs and targets;
  ``msle`` uses ``x = -1 + m`` (its domain x > -1) and ``poisson_nll`` its
  own domains for both settings of ``log_input``;
- **probabilities** (``binary_cross_entropy``): 0, the subnormals, 2^-k,
  1 - 2^-k up to 1 - eps/2, 1, against hard (0, 1) and soft targets, with
  ``x`` adjacent to ``y``;
- **logits** (``..._with_logits``, ``sigmoid_focal``, hinge family):
  ``+-m`` for every magnitude, 0, ``+-inf``, against hard and soft targets
  (``{-1, 0, 1}`` for the hinge family, with x near the kink at +-1);
- **parameters at their edges**: ``delta``/``beta`` tiny, 1 and large,
  ``beta = 0``; ``tau`` near 0 and 1; ``label_smoothing`` 0 and 0.1;
  ``pos_weight`` 1, small, large; focal ``gamma`` 0, 0.5, 2, 5 with and
  without ``alpha``;
- **known failures** of LOSSES.md (a block tagged ``known-failures``):
  log-cosh at residual +-100, BCE with logits at +-inf and at -120 with
  pos_weight=1, BCE on probabilities at p = 0 / 1 (PyTorch's -100 clamp),
  focal at logits 1000 and +-100 with gamma 0 and 0.5, msle near x = -1.

``mag`` is the abscissa of the plots: ``|x - y|`` for regression, ``|x|``
for logits and the distance ``min(x, 1 - x)`` to {0, 1} for probabilities.

Multiclass grids (rows) are in ``multiclass_grid``; they are used when the
multiclass oracle is installed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

GRID_VERSION = 1
SIZES = ("quick", "full")


@dataclass
class Block:
    """Inputs sharing one setting of the loss's scalar parameters."""

    loss: str
    params: dict
    x: np.ndarray
    y: np.ndarray
    q: np.ndarray | None = None
    mag: np.ndarray | None = None
    tag: str = ""
    #: "elementwise" (x, y 1-D) or "rows" (x (n, C), y (n,) labels or (n, C) probabilities)
    kind: str = "elementwise"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def update_hash(self, h) -> None:
        h.update(repr((self.loss, sorted(self.params.items()), self.tag, self.kind)).encode())
        for a in (self.x, self.y, self.q):
            if a is None:
                h.update(b"-")
            else:
                h.update(str(a.dtype).encode() + str(a.shape).encode())
                h.update(np.ascontiguousarray(a).tobytes())

    def element(self, i: int) -> dict:
        """The i-th input as plain Python values (for reports)."""
        out = {"x": _plain(self.x[i]), "y": _plain(self.y[i])}
        if self.q is not None:
            out["pos_weight"] = _plain(self.q[i])
        out.update({k: v for k, v in self.params.items()})
        return out


def _plain(v):
    if isinstance(v, np.ndarray):
        return [_plain(t) for t in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    return float(v)


def grid_hash(blocks: list[Block]) -> str:
    h = hashlib.sha256(f"grid-v{GRID_VERSION}".encode())
    for b in blocks:
        b.update_hash(h)
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------
# building blocks

_MANTISSAS = (1.0, 1.3125, 1.7071067811865475)


def _fmt(dtype):
    fi = np.finfo(dtype)
    return fi, int(fi.minexp), int(fi.maxexp) - 1, int(fi.nmant)


def magnitudes(dtype, size: str) -> np.ndarray:
    """Positive magnitudes from the smallest subnormal to the largest finite
    number of ``dtype``, sorted, unique, all representable."""
    fi, emin, emax, nmant = _fmt(dtype)
    step = {"quick": 64, "full": 16}[size] if dtype == np.float64 else {"quick": 8, "full": 2}[size]
    mants = _MANTISSAS[:1] if size == "quick" else _MANTISSAS[::2]
    exps = list(range(emin - nmant, emax + 1, step)) + [-1, 0, 1, 3, 6]
    vals = [math.ldexp(m, e) for e in exps for m in mants if e + (m > 1) <= emax]
    vals += [
        float(fi.smallest_subnormal), float(fi.smallest_normal), float(fi.eps),
        1.0, 2.0, 0.5, 10.0, 100.0, float(fi.max),
    ]
    a = np.array(vals, dtype=np.float64).astype(dtype)
    a = a[np.isfinite(a) & (a > 0)]
    return np.unique(a)


def _signed(m: np.ndarray) -> np.ndarray:
    return np.concatenate([-m[::-1], np.zeros(1, m.dtype), m])


def _near(v, dtype, k=3) -> list[float]:
    """v and its k neighbours on each side in dtype."""
    v = np.asarray(v, dtype=dtype)
    out = [v]
    up = dn = v
    for _ in range(k):
        up = np.nextafter(up, np.asarray(np.inf, dtype))
        dn = np.nextafter(dn, np.asarray(-np.inf, dtype))
        out += [up, dn]
    return [float(t) for t in out]


def _arr(vals, dtype) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(vals, dtype=np.float64).astype(dtype)


def _cross(xs, ys, dtype):
    xs, ys = _arr(xs, dtype), _arr(ys, dtype)
    return np.repeat(xs, len(ys)), np.tile(ys, len(xs))


# --------------------------------------------------------------------------
# per-kind generators: each returns (x, y) arrays in dtype


def _regression_xy(dtype, size, targets=None):
    fi = np.finfo(dtype)
    big = float(fi.max)
    m = magnitudes(dtype, size)
    if targets is None:
        targets = [0.0, 1.0, -2.5, 1e3, float(np.sqrt(fi.max))] if size == "full" else [0.0, 1.0]
    xs, ys = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for t in targets:
            t = float(np.asarray(t, dtype))
            x = (t + _signed(m).astype(np.float64)).astype(dtype)
            xs.append(x)
            ys.append(np.full(x.shape, t, dtype))
            near = _arr(_near(t, dtype, 3 if size == "full" else 1), dtype)
            xs.append(near)
            ys.append(np.full(near.shape, t, dtype))
    inf = math.inf
    sx = [inf, -inf, big, -big, inf, 0.0, -inf, 1.0, inf, big, -big, math.nan, 0.0]
    sy = [0.0, 0.0, -big, big, inf, inf, -inf, -inf, -inf, big, -big, 0.0, math.nan]
    xs.append(_arr(sx, dtype))
    ys.append(_arr(sy, dtype))
    return np.concatenate(xs), np.concatenate(ys)


def _residual_mag(x, y):
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(x.astype(np.float64) - y.astype(np.float64))


def _msle_xy(dtype, size):
    fi = np.finfo(dtype)
    m = magnitudes(dtype, size)
    targets = [0.0, -0.5, 1.0, 1e6, -1.0 + 2.0**-20] if size == "full" else [0.0, 1.0]
    xs, ys = [], []
    base = (-1.0 + m.astype(np.float64)).astype(dtype)
    base = base[base > -1]
    for t in targets:
        t = float(np.asarray(t, dtype))
        near = _arr(_near(t, dtype, 3 if size == "full" else 1), dtype)
        near = near[near > -1]
        x = np.concatenate([base, near, _arr([math.inf], dtype)])
        xs.append(x)
        ys.append(np.full(x.shape, t, dtype))
    # the target near -1 too, x at ordinary values
    xs.append(_arr([0.0, 1.0, 1e3, float(fi.max)], dtype))
    ys.append(_arr([-1 + float(fi.eps)] * 4, dtype))
    # x near -1, the target huge: the ratio (1 + x)/(1 + y) underflows in
    # float64 (2^-53 / 1e308)
    near = [-1 + float(fi.eps) / 2, -1 + float(fi.eps), -0.5]
    for t in (float(fi.max), math.sqrt(float(fi.max))):
        xs.append(_arr(near, dtype))
        ys.append(_arr([t] * 3, dtype))
    return np.concatenate(xs), np.concatenate(ys)


def _probabilities(dtype, size) -> np.ndarray:
    fi, emin, emax, nmant = _fmt(dtype)
    step = 1 if size == "full" else 8
    lo = [math.ldexp(1.0, e) for e in range(emin - nmant, 0, step if dtype == np.float32 else 4 * step)]
    hi = [1.0 - math.ldexp(1.0, -k) for k in range(1, nmant + 2, step)]
    mid = [0.1, 0.25, 0.3, 0.5, 0.7, 0.9]
    p = np.unique(_arr([0.0, 1.0, float(fi.smallest_subnormal), float(fi.smallest_normal)]
                       + lo + hi + mid, dtype))
    return p[(p >= 0) & (p <= 1)]


def _bce_xy(dtype, size):
    p = _probabilities(dtype, size)
    targets = [0.0, 1.0, 0.5, 0.25, 2.0**-20, 1 - 2.0**-20] if size == "full" else [0.0, 1.0, 0.3]
    x, y = _cross(p, targets, dtype)
    near = []
    for t in targets:
        for v in _near(t, dtype, 2):
            if 0 <= v <= 1:
                near.append((v, t))
    nx, ny = zip(*near, strict=True)
    return np.concatenate([x, _arr(nx, dtype)]), np.concatenate([y, _arr(ny, dtype)])


def _prob_mag(x, y):
    x = x.astype(np.float64)
    return np.minimum(x, 1.0 - x)


def _logits(dtype, size) -> np.ndarray:
    extra = [100.0, 120.0, 1000.0, 30.0, 88.0, 89.0, 709.0, 710.0, 745.0, 17.0, 37.0]
    m = np.unique(np.concatenate([magnitudes(dtype, size), _arr(extra, dtype)]))
    m = m[np.isfinite(m)]
    return np.concatenate([_signed(m), _arr([math.inf, -math.inf], dtype)])


def _logit_xy(dtype, size, targets):
    return _cross(_logits(dtype, size), targets, dtype)


def _abs_mag(x, y):
    return np.abs(x.astype(np.float64))


def _hinge_xy(dtype, size):
    x = np.concatenate([_logits(dtype, size), _arr(_near(1.0, dtype, 2) + _near(-1.0, dtype, 2), dtype)])
    return _cross(x, [-1.0, 1.0, 0.0] if size == "full" else [-1.0, 1.0], dtype)


# --------------------------------------------------------------------------
# the grids of the elementwise losses


def _blocks_regression(name, dtype, size, params_list, xy=None, mag=_residual_mag):
    """The first setting of the parameters on the whole grid; the others (the
    edges) on the residuals around the targets 0 and 1 only."""
    x, y = (xy or (lambda d, s: _regression_xy(d, s)))(dtype, size)
    out = []
    for k, (tag, p) in enumerate(params_list):
        if k == 1 and xy is None:
            x, y = _regression_xy(dtype, size, targets=[0.0, 1.0])
        out.append(Block(name, dict(p), x, y, mag=mag(x, y), tag=tag))
    return out


def _edge(size, full, quick):
    return full if size == "full" else quick


def _regression(name, dtype, size) -> list[Block]:
    tiny = 2.0**-40
    huge = 2.0**40
    if name in ("mse", "mae", "log_cosh"):
        return _blocks_regression(name, dtype, size, [("residuals", {})])
    if name in ("huber", "pseudo_huber"):
        ps = _edge(size, [("delta=1", {"delta": 1.0}), ("delta tiny", {"delta": tiny}),
                          ("delta large", {"delta": huge}), ("delta=0.1", {"delta": 0.1})],
                   [("delta=1", {"delta": 1.0}), ("delta tiny", {"delta": tiny})])
        return _blocks_regression(name, dtype, size, ps)
    if name == "smooth_l1":
        ps = _edge(size, [("beta=1", {"beta": 1.0}), ("beta=0", {"beta": 0.0}),
                          ("beta tiny", {"beta": tiny}), ("beta large", {"beta": huge})],
                   [("beta=1", {"beta": 1.0}), ("beta=0", {"beta": 0.0})])
        return _blocks_regression(name, dtype, size, ps)
    if name == "quantile":
        ps = _edge(size, [("tau=0.5", {"tau": 0.5}), ("tau=0.1", {"tau": 0.1}),
                          ("tau near 0", {"tau": 1e-6}), ("tau near 1", {"tau": 1 - 1e-6})],
                   [("tau=0.5", {"tau": 0.5}), ("tau near 0", {"tau": 1e-6})])
        return _blocks_regression(name, dtype, size, ps)
    if name == "msle":
        return _blocks_regression(name, dtype, size, [("x near -1 .. max", {})], xy=_msle_xy)
    if name == "poisson_nll":
        tg = [0.0, 1.0, 2.5, 1e6] if size == "full" else [0.0, 2.5]
        xl, yl = _logit_xy(dtype, size, tg)
        p = _probabilities(dtype, size)
        xp = np.concatenate([p, magnitudes(dtype, size), _arr([math.inf], dtype)])
        xn, yn = _cross(xp, tg, dtype)
        return [
            Block(name, {"log_input": True}, xl, yl, mag=_abs_mag(xl, yl), tag="log_input"),
            Block(name, {"log_input": False}, xn, yn, mag=_abs_mag(xn, yn), tag="rate input"),
        ]
    return []


def _binary(name, dtype, size) -> list[Block]:
    hard_soft = [0.0, 1.0, 0.5, 0.1, 0.9, 1e-6] if size == "full" else [0.0, 1.0, 0.3]
    if name == "binary_cross_entropy":
        x, y = _bce_xy(dtype, size)
        return [Block(name, {}, x, y, mag=_prob_mag(x, y), tag="probabilities")]
    if name == "binary_cross_entropy_with_logits":
        x, y = _logit_xy(dtype, size, hard_soft)
        out = []
        weights = _edge(size, [1.0, 0.25, 4.0, 1e-3], [1.0, 4.0])
        # every (x, y) pair with pos_weight 1; then fewer targets, cycling through the weights
        out.append(Block(name, {"label_smoothing": 0.0}, x, y, q=np.ones_like(x),
                         mag=_abs_mag(x, y), tag="pos_weight=1"))
        x, y = _logit_xy(dtype, size, hard_soft[:3])
        qs = np.resize(_arr(weights, dtype), len(x))
        out.append(Block(name, {"label_smoothing": 0.0}, x, y, q=qs, mag=_abs_mag(x, y),
                         tag="pos_weight cycling " + ",".join(f"{w:g}" for w in weights)))
        if size == "full":
            out.append(Block(name, {"label_smoothing": 0.1}, x, y, q=np.ones_like(x),
                             mag=_abs_mag(x, y), tag="label_smoothing=0.1"))
        return out
    if name == "sigmoid_focal":
        x, y = _logit_xy(dtype, size, hard_soft)
        x2, y2 = _logit_xy(dtype, size, hard_soft[:3])
        settings = _edge(
            size,
            [{"alpha": 0.25, "gamma": 2.0}, {"alpha": None, "gamma": 0.0},
             {"alpha": 0.25, "gamma": 0.5}, {"alpha": None, "gamma": 5.0}],
            [{"alpha": 0.25, "gamma": 2.0}, {"alpha": None, "gamma": 0.5}],
        )
        return [Block(name, dict(p), *((x, y) if k == 0 else (x2, y2)),
                      mag=_abs_mag(*((x, y) if k == 0 else (x2, y2))),
                      tag=f"alpha={p['alpha']}, gamma={p['gamma']:g}")
                for k, p in enumerate(settings)]
    if name in ("hinge", "squared_hinge", "soft_margin"):
        x, y = _hinge_xy(dtype, size)
        return [Block(name, {}, x, y, mag=_abs_mag(x, y), tag="logits, y in {-1, 0, 1}")]
    return []


def _known_failures(name, dtype) -> list[Block]:
    """LOSSES.md 'Known failures elsewhere', one block per loss that has them."""
    inf = math.inf
    cases: list[tuple[dict, list[float], list[float], list[float] | None]] = []
    if name == "log_cosh":  # Keras PR 8524, torchmetrics 3488
        cases.append(({}, [100.0, -100.0, 0.0, 1e4], [0.0, 0.0, 100.0, 0.0], None))
    elif name == "msle":  # scikit-learn 29678 / 9963: domain x > -1
        e = float(np.finfo(dtype).eps)
        cases.append(({}, [-1 + e, -0.5, -1 + e], [0.0, -1 + e, -1 + e], None))
    elif name == "binary_cross_entropy":  # PyTorch 103316 (log clamped at -100)
        cases.append(({}, [0.0, 1.0, 0.0, 1.0, 1e-30, 1 - 2.0**-24],
                      [1.0, 0.0, 0.0, 1.0, 1.0, 0.0], None))
    elif name == "binary_cross_entropy_with_logits":  # PyTorch 102894, 49844, 135359, 13773
        xs = [inf, -inf, inf, -inf, -120.0, -120.0, 120.0]
        ys = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
        cases.append(({"label_smoothing": 0.0}, xs, ys, [1.0] * len(xs)))
    elif name == "sigmoid_focal":  # optax 1267, kornia 918 / 2115
        xs = [1000.0, -1000.0, 100.0, -100.0, 100.0, -100.0]
        ys = [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
        for g in (0.0, 0.5):
            cases.append(({"alpha": 0.25, "gamma": g}, xs, ys, None))
    elif name == "poisson_nll":  # PyTorch adds eps = 1e-8 to x when log_input=False
        cases.append(({"log_input": False}, [0.0, 1e-9, 1e-30], [0.0, 1.0, 1.0], None))
    out = []
    for params, xs, ys, qs in cases:
        x, y = _arr(xs, dtype), _arr(ys, dtype)
        q = None if qs is None else _arr(qs, dtype)
        mag = _prob_mag(x, y) if name == "binary_cross_entropy" else (
            _residual_mag(x, y) if name in ("log_cosh", "msle") else _abs_mag(x, y))
        out.append(Block(name, params, x, y, q=q, mag=mag, tag="known-failures"))
    return out


def elementwise_grid(name: str, dtype, size: str = "full") -> list[Block]:
    """The grid of an elementwise loss (empty if the loss is not elementwise)."""
    if size not in SIZES:
        raise ValueError(f"size: one of {SIZES}; got {size!r}")
    dtype = np.dtype(dtype)
    blocks = _regression(name, dtype, size) or _binary(name, dtype, size)
    if not blocks:
        return []
    blocks += _known_failures(name, dtype)
    for b in blocks:
        if b.q is None and name == "binary_cross_entropy_with_logits":
            b.q = np.ones_like(b.x)
    return blocks


# --------------------------------------------------------------------------
# multiclass rows


def _row_logits(dtype, size, C=4) -> np.ndarray:
    """Rows of C logits: spreads of every magnitude, shifts near the maximum,
    ties, -inf entries."""
    fi = np.finfo(dtype)
    m = magnitudes(dtype, size)
    m = m[m < float(fi.max) / 4]
    rows = []
    for s in m:
        s = float(s)
        rows.append([0.0, s, -s, 0.5 * s])
        rows.append([s, s, -s, 0.0])
    for shift in ([0.0, 1e4, -1e4] if size == "full" else [0.0, 1e4]):
        rows.append([shift + 1.0, shift, shift - 1.0, shift + 2.0])
    rows += [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, -math.inf, 1.0, -math.inf],
        [-math.inf, 0.0, -math.inf, 0.0],
        [1000.0, -1000.0, 0.0, 1.0],
        [float(fi.max) / 4, 0.0, -float(fi.max) / 4, 1.0],
    ]
    return _arr([r[:C] for r in rows], dtype)


def multiclass_grid(name: str, dtype, size: str = "full") -> list[Block]:
    """Rows for the multiclass losses: integer labels (every class, the
    arg-max and arg-min) and probability targets (hard, soft, with zeros).
    ``mag`` is the spread max - min of the finite logits of the row
    (``categorical_cross_entropy``: the smallest positive probability of the
    row)."""
    dtype = np.dtype(dtype)
    x = _row_logits(dtype, size)
    n, C = x.shape
    with np.errstate(invalid="ignore"):
        fin = np.where(np.isfinite(x), x.astype(np.float64), np.nan)
        mag = np.nanmax(fin, axis=1) - np.nanmin(fin, axis=1)
    finite_label = np.argmax(np.isfinite(x) & (x == np.max(np.where(np.isfinite(x), x, -np.inf), 1, keepdims=True)), 1)
    labels_all = [np.zeros(n, np.int64), finite_label.astype(np.int64)]
    if size == "full":
        labels_all.append(np.full(n, C - 1, np.int64))
    blocks = []
    if name in ("cross_entropy", "softmax_focal", "multi_margin"):
        settings = {
            "cross_entropy": [{}, {"label_smoothing": 0.1}] if size == "full" else [{}],
            "softmax_focal": [{"gamma": 2.0}, {"gamma": 0.0}] if size == "full" else [{"gamma": 2.0}],
            "multi_margin": [{"p": 1}, {"p": 2}] if size == "full" else [{"p": 1}],
        }[name]
        for p in settings:
            for lab in labels_all:
                # a label on a -inf logit has an infinite loss; keep it (the exact value is +inf)
                blocks.append(Block(name, dict(p), x, lab, mag=mag, kind="rows", tag="int labels"))
        if name == "cross_entropy":
            t = _soft_targets(dtype, n, C)
            blocks.append(Block(name, {}, x, t, mag=mag, kind="rows", tag="probability targets"))
            # every WIDE_EVERY-th row (the oracle's time grows with C)
            xw, magw = _wide_rows(x[::WIDE_EVERY], dtype)
            blocks.append(Block(name, {}, xw, finite_label[::WIDE_EVERY].astype(np.int64),
                                mag=magw, kind="rows", tag=f"int labels, C = {xw.shape[1]}"))
            # the probability targets of those rows, each entry spread over
            # its copies (``ce_probs_row32``)
            reps = -(-WIDE_C // C)
            tw = (np.tile(t[::WIDE_EVERY].astype(np.float64), (1, reps))[:, :WIDE_C] / reps)
            blocks.append(Block(name, {}, xw, tw.astype(dtype), mag=magw, kind="rows",
                                tag=f"probability targets, C = {xw.shape[1]}"))
    elif name == "nll":
        lp = x  # log-probabilities need not be normalised for nll
        for lab in labels_all:
            blocks.append(Block(name, {}, lp, lab, mag=mag, kind="rows", tag="int labels"))
    elif name == "kl_div":
        blocks += _kl_blocks(_log_softmax_rows(x), mag, dtype, size)
    elif name == "categorical_cross_entropy":
        blocks += _cce_blocks(dtype, size)
    return blocks


#: classes of ``_wide_rows``: within the CPU's float32-lane cross entropy
#: (``fastloss.cpu.rowlanes``, ROW32_MIN..ROW32_MAX), whose rows of four
#: would not reach it
WIDE_C = 300
#: the rows of ``_row_logits`` widened (every this many)
WIDE_EVERY = 4


def _wide_rows(x, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The rows of x (n, 4) widened to WIDE_C classes: each row's logits
    repeated, every copy but the first moved down by a fixed pseudo-random
    fraction (0 to 1/2) of the row's spread (1 where it is 0), so each row keeps
    its maximum and spread and has ~WIDE_C distinct terms below it (the
    maximum's ties stay ties). Returns (rows, spread)."""
    n, c = x.shape
    reps = -(-WIDE_C // c)
    rng = np.random.default_rng(20261125)
    with np.errstate(invalid="ignore", over="ignore"):
        x64 = x.astype(np.float64)
        fin = np.where(np.isfinite(x64), x64, np.nan)
        spread = np.nan_to_num(np.nanmax(fin, axis=1) - np.nanmin(fin, axis=1), nan=0.0)
        step = np.where(spread > 0.0, spread, 1.0)[:, None]
        w = np.tile(x64, (1, reps))[:, :WIDE_C]
        drop = rng.uniform(0.0, 0.5, (n, WIDE_C))
        drop[:, :c] = 0.0
        w = (w - drop * step).astype(dtype)
        fin = np.where(np.isfinite(w), w.astype(np.float64), np.nan)
        mag = np.nanmax(fin, axis=1) - np.nanmin(fin, axis=1)
    return w, mag


def _target_rows(dtype, C=4) -> list[list[float]]:
    """Probability target rows: hard, uniform, soft, with zeros, with
    subnormal and tiny entries, one entry next to 1."""
    fi = np.finfo(dtype)
    e, tiny, sub = float(fi.eps), float(fi.smallest_normal), float(fi.smallest_subnormal)
    rows = [
        [1.0, 0.0, 0.0, 0.0],
        [0.25, 0.25, 0.25, 0.25],
        [0.7, 0.1, 0.1, 0.1],
        [0.0, 0.5, 0.0, 0.5],
        [1.0 - e, e / 2, e / 4, e / 4],
        [sub, 0.5, 0.5, 0.0],
        [tiny, 1e-3, 0.999, 0.0],
    ]
    return [r[:C] for r in rows]


def _log_softmax_rows(x) -> np.ndarray:
    """log softmax of each row of logits, computed in float64 (log-sum-exp
    about the row's maximum), rounded to the rows' dtype; -inf stays -inf."""
    z = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(np.where(np.isfinite(z), z, -np.inf), axis=1, keepdims=True)
        d = z - m
        lse = np.log(np.sum(np.exp(d), axis=1, keepdims=True))
        out = d - lse
    return out.astype(x.dtype)


def _kl_blocks(x, mag, dtype, size) -> list[Block]:
    """kl_div: log-probability rows x (the log softmax of the logit rows:
    probabilities of every magnitude down to exp(-max) and -inf, for the
    zero-probability entries) against probability targets cycling
    through ``_target_rows``; with ``log_target`` the same targets as
    log-probabilities (log 0 = -inf)."""
    n, C = x.shape
    base = _target_rows(dtype, C)
    t = _arr([base[i % len(base)] for i in range(n)], dtype)
    out = [Block("kl_div", {"log_target": False}, x, t, mag=mag, kind="rows",
                 tag="probability targets")]
    with np.errstate(divide="ignore"):
        lt = np.log(t.astype(np.float64)).astype(dtype)
    # rows with a zero target (log target -inf) in a block of their own: an
    # implementation that refuses them still gets the other rows audited
    z = np.any(np.isneginf(lt), axis=1)
    out.append(Block("kl_div", {"log_target": True}, x[~z], lt[~z], mag=mag[~z], kind="rows",
                     tag="log-probability targets"))
    out.append(Block("kl_div", {"log_target": True}, x[z], lt[z], mag=mag[z], kind="rows",
                     tag="log-probability targets with log 0 = -inf"))
    if size == "full":  # the targets shifted by one row: other (x, t) pairs
        t2 = np.roll(t, 1, axis=0)
        out.append(Block("kl_div", {"log_target": False}, x, t2, mag=mag, kind="rows",
                         tag="probability targets (shifted)"))
    return out


def _prob_rows(dtype, size, C=4) -> np.ndarray:
    """Rows of C probabilities: softmax of the logit rows (computed in float64,
    rounded to the dtype, not renormalised), rows with exact 0 and 1, with
    subnormal and tiny entries, and 1 - eps."""
    z = _row_logits(np.float64, size, C).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        z = z - np.max(np.where(np.isfinite(z), z, -np.inf), axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
    p = p[np.all(np.isfinite(p), axis=1)]
    fi = np.finfo(dtype)
    eps, tiny, sub = float(fi.eps), float(fi.smallest_normal), float(fi.smallest_subnormal)
    extra = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [1.0 - eps, eps / 2, eps / 4, eps / 4],
        [sub, 0.5, 0.5 - sub, 0.0],
        [tiny, tiny, 0.5, 0.5],
        [1e-30, 1e-20, 1e-10, 1.0 - 1e-10],
        [0.25, 0.25, 0.25, 0.25],
    ]
    return np.concatenate([_arr(p, dtype), _arr([r[:C] for r in extra], dtype)])


def _cce_blocks(dtype, size) -> list[Block]:
    """categorical_cross_entropy: probability rows x against probability
    targets cycling through ``_target_rows``, and against one-hot targets
    (on every class, full grid; on the row's smallest entry, quick)."""
    x = _prob_rows(dtype, size)
    n, C = x.shape
    xf = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        mag = np.nanmin(np.where(xf > 0, xf, np.nan), axis=1)
    base = _target_rows(dtype, C)
    t = _arr([base[i % len(base)] for i in range(n)], dtype)
    out = [Block("categorical_cross_entropy", {}, x, t, mag=mag, kind="rows",
                 tag="probability targets")]
    classes = range(C) if size == "full" else [None]
    for c in classes:
        lab = np.argmin(xf, axis=1) if c is None else np.full(n, c)
        oh = np.eye(C, dtype=dtype)[lab]
        out.append(Block("categorical_cross_entropy", {}, x, oh, mag=mag, kind="rows",
                         tag="one-hot targets", meta={"one_hot": True}))
    return out


def _soft_targets(dtype, n, C) -> np.ndarray:
    base = [
        [1.0, 0.0, 0.0, 0.0],
        [0.25, 0.25, 0.25, 0.25],
        [0.7, 0.1, 0.1, 0.1],
        [0.0, 0.5, 0.0, 0.5],
    ]
    return _arr([base[i % len(base)][:C] for i in range(n)], dtype)


# --------------------------------------------------------------------------
# boxes


def box_grid(name: str, dtype, size: str = "full") -> list[Block]:
    """Pairs of boxes (x1, y1, x2, y2): a prediction ``x`` (n, 4) against a
    target ``y`` (n, 4). For box sizes s of every magnitude whose areas are
    normal numbers (s from 4 sqrt(smallest normal) to sqrt(max)/4) and offsets c
    of the boxes' position (0, 1, 1e3 and, full grid, a large one where
    coordinates carry few bits of the size): identical boxes, boxes one ULP
    apart, shifted by a quarter, a half, exactly one (touching) and two
    (disjoint) sizes, nested, scaled, swapped aspect ratio (CIoU's angle
    term), a million sizes apart along one axis (GIoU's gradient formed the
    difference of the heights from two sums of the size of the gap: up to
    5e4 ULP x condition), and degenerate boxes (zero width or height,
    zero-size points).
    ``mag`` is the size s."""
    if name not in ("iou_loss", "giou_loss", "diou_loss", "ciou_loss"):
        return []
    dtype = np.dtype(dtype)
    fi = np.finfo(dtype)
    m = magnitudes(dtype, "quick")  # the box cases multiply: the quick magnitudes in both grids
    m = m[(m >= 4 * math.sqrt(float(fi.smallest_normal))) & (m <= math.sqrt(float(fi.max)) / 4)]
    offsets = [0.0, 1.0, 1e3, float(fi.max) ** 0.25] if size == "full" else [0.0, 1e3]
    rel = [  # prediction relative to a unit target [0, 0, 1, 1]
        (0.0, 0.0, 1.0, 1.0),  # identical
        (0.25, 0.0, 1.25, 1.0),  # shifted by a quarter
        (0.5, 0.5, 1.5, 1.5),  # shifted diagonally by a half
        (1.0, 0.0, 2.0, 1.0),  # touching
        (2.0, 2.0, 3.0, 3.0),  # disjoint
        (0.25, 0.25, 0.75, 0.75),  # nested
        (-0.5, -0.5, 1.5, 1.5),  # enclosing
        (0.0, 0.0, 2.0, 0.5),  # other aspect ratio
        (0.5, 0.5, 0.5, 0.5),  # a point inside
        (0.0, 0.0, 1.0, 0.0),  # zero height
        (0.5, 1e6, 1.5, 1e6 + 1.0),  # far apart in y, overlapping in x: GIoU's ph - th
    ]
    if size == "full":
        rel += [(0.1, 0.2, 1.3, 0.9), (-1.0, 0.25, 0.5, 0.75), (0.0, 0.0, 0.5, 2.0),
                (1.0, 1.0, 1.0, 1.0)]
    xs, ys, mags = [], [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for c in offsets:
            for s in m:
                s = float(s)
                t = np.array([c, c, c + s, c + s])
                for r in rel:
                    xs.append([c + s * r[0], c + s * r[1], c + s * r[2], c + s * r[3]])
                    ys.append(t)
                    mags.append(s)
    x = _arr(xs, dtype)
    y = _arr(ys, dtype)
    ok = np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(y), axis=1)
    x, y, mag = x[ok], y[ok], np.asarray(mags)[ok]
    # a prediction one ULP away from the target in each coordinate
    yn = np.unique(y, axis=0)
    xn = np.nextafter(yn, np.asarray(np.inf, dtype)).astype(dtype)
    x = np.concatenate([x, xn])
    y = np.concatenate([y, yn])
    mag = np.concatenate([mag, (yn[:, 2] - yn[:, 0]).astype(np.float64)])
    return [Block(name, {}, x, y, mag=mag, kind="boxes", tag="box pairs")]
