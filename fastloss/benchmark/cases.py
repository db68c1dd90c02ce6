"""What ``fastloss bench`` measures, generated from the catalogue.

A ``Case`` is one benchmark: a loss (or the bandwidth kernel), a dtype, a
shape, a thread count, a backend and an implementation (``fastloss``,
``fastloss_out``, ``torch``, ``numpy``, ``triad``, ``d2d_copy``).
``fastloss`` is the public call as a user writes it (a new gradient array
per call); ``fastloss_out`` (the losses of ``BANDWIDTH_LOSSES``, CPU) passes
``out=`` a gradient buffer allocated once, as a training loop would: the
STREAM triad it is compared with also writes into an array allocated once,
so this is the kernel's fraction of the bandwidth. A fresh array of that
size would also pay the operating system's first-touch faults (for 2^24
float32 elements, 64 MiB, about as much time as the kernel itself); the
new-array call gets its array from ``fastloss.buffers``, which hands out the
previous call's again once the caller (here the benchmark loop) dropped it. ``plan`` builds the cases of
one family from ``catalog.SPECS`` (every spec whose ``family`` belongs to it),
so a new loss is benchmarked as soon as it is in the catalogue.

The cases are ordered so that the implementations of one (loss, dtype, size,
threads) run one after another: on a shared, noisy machine their ratio is
then measured under the same conditions.

The default selection (``Options.default_selection``: no ``--full``, no
``--loss``) is a representative subset: ``DEFAULT_ELEMENTWISE``,
``DEFAULT_MULTICLASS`` and ``DEFAULT_BOXES`` in float32, the first of the
multiclass DRAM shapes; ``--full`` runs every loss, dtype, shape and thread
count 1..cores.

Sizes (``sizes``): "cache" fits in the caches; "dram" is at least 2^24
elements and at least 4 x the last-level cache of compulsory traffic, so it
runs at memory speed. Compulsory bytes of an elementwise loss: read x and y,
write the gradient (3 x itemsize per element); of a row-wise loss: read x,
write the gradient, read the targets (itemsize per element) or the labels
(8 bytes per row).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from fastloss import catalog
from fastloss.benchmark import machine

ELEMENTWISE_FAMILIES = ("regression", "binary")
DTYPES = ("float32", "float64")
SIZE_CLASSES = ("cache", "dram")

#: multiclass shapes (issue 4's targets) and in-cache ones: a few rows of
#: 1000 classes, and a training batch of few classes (float32
#: cross_entropy's ``cpu.rowtiles.lane_rows``, where PyTorch is faster)
MULTICLASS_DRAM = ((8192, 1000), (2048, 32768), (256, 131072))
MULTICLASS_CACHE = ((64, 1000), (4096, 32))
#: issue 5's GPU targets: cross_entropy (65536, 1000) and (16384, 131072),
#: elementwise losses on 2^28 elements
MULTICLASS_CUDA = ((65536, 1000), (16384, 131072))
CUDA_ELEMENTWISE_N = 1 << 28

# The default selection (no --full, no --loss): a representative subset that
# runs in a few minutes on a 2-core machine, cold Numba cache included. Every
# loss, both dtypes, every thread count and every shape run with --full.
#: elementwise losses run by default: plain arithmetic (mse), a branch
#: (huber), logarithms of probabilities (binary_cross_entropy) and the
#: exp/log1p of logits (binary_cross_entropy_with_logits, issue 3's target)
DEFAULT_ELEMENTWISE = ("mse", "huber", "binary_cross_entropy", "binary_cross_entropy_with_logits")
#: the elementwise losses with a bandwidth target (issue 3: >= 70% of triad),
#: also measured with ``out=`` a reused gradient buffer (impl "fastloss_out")
BANDWIDTH_LOSSES = ("mse", "mae", "huber")
#: row-wise losses run by default
DEFAULT_MULTICLASS = ("cross_entropy",)
#: box losses run by default (the simplest and the most complex)
DEFAULT_BOXES = ("iou_loss", "ciou_loss")
#: dtypes of the default selection
DEFAULT_DTYPES = ("float32",)
#: multiclass DRAM shapes of the default selection
DEFAULT_MULTICLASS_DRAM = MULTICLASS_DRAM[:1]
#: elementwise losses also measured with an option off their defaults (not in
#: the default selection: with --full, or the loss selected by name): a
#: last-axis pos_weight or weight of VARIANT_C values on rows of VARIANT_C
#: (a multi-label batch), the data otherwise the loss's own. The kernel of a
#: loss's defaults may be another (BCE with logits': float32 lanes) than
#: the one its options take. Each is its own case (``Case.variant``,
#: ``loss[variant]`` in ids, keys and reports) beside PyTorch with the same
#: option; not counted in the issue targets.
ELEMENTWISE_VARIANTS = {"binary_cross_entropy_with_logits": ("pos_weight", "weight")}
VARIANT_C = 1024


@dataclass(frozen=True)
class Options:
    """The selection: what to run and how long to spend on it."""

    losses: tuple[str, ...] | None = None  # None: every loss (of the default set)
    dtypes: tuple[str, ...] | None = None  # None: float32 by default, both with full/losses/smoke
    threads: tuple[int, ...] | None = None  # None: default_threads()
    backends: tuple[str, ...] | None = None  # None: cpu, and cuda when a GPU is present
    sizes: tuple[str, ...] = SIZE_CLASSES
    peers: tuple[str, ...] = ("torch", "numpy")
    full: bool = False
    smoke: bool = False  # tiny sizes, for --benchmark-disable runs

    @property
    def default_selection(self) -> bool:
        """True for the default run: no --full, no --loss, not the smoke run."""
        return not self.full and not self.smoke and self.losses is None


def selected_dtypes(opts: Options) -> tuple[str, ...]:
    """The dtypes to measure: as given ("both" = float32 and float64), else
    float32 for the default run and both otherwise."""
    if not opts.dtypes:
        return DEFAULT_DTYPES if opts.default_selection else DTYPES
    out = tuple(dict.fromkeys(x for d in opts.dtypes for x in (DTYPES if d == "both" else (d,))))
    bad = [d for d in out if d not in DTYPES]
    if bad:
        raise ValueError(f"--dtype: unknown {', '.join(bad)} (float32, float64 or both)")
    return out


def _csv(s):
    return tuple(v.strip() for v in s.split(",") if v.strip()) if s else None


def options_from_config(config) -> Options:
    """The selection from the ``--fl-*`` options of a pytest run (bench/conftest.py)."""
    threads = _csv(config.getoption("--fl-threads"))
    peers = _csv(config.getoption("--fl-peers")) or ()
    return Options(
        losses=_csv(config.getoption("--fl-loss")),
        dtypes=_csv(config.getoption("--fl-dtype")),
        threads=tuple(int(t) for t in threads) if threads else None,
        backends=_csv(config.getoption("--fl-backend")),
        sizes=_csv(config.getoption("--fl-size")) or SIZE_CLASSES,
        peers=tuple(p for p in peers if p != "none"),
        full=config.getoption("--fl-full"),
        smoke=config.getoption("--fl-smoke"),
    )


def box_selection(opts: Options) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """(losses, dtypes, CPU thread counts) of the box suite (bench/test_boxes.py)."""
    names = tuple(s.name for s in _specs(("box",), opts, default=DEFAULT_BOXES))
    return names, selected_dtypes(opts), _threads(opts)


def default_threads(full: bool = False) -> tuple[int, ...]:
    """1, 2, 4, ... up to the cores, and the cores (all of 1..cores with ``full``)."""
    top = max(1, min(machine.cores(), machine.max_threads()))
    if full:
        return tuple(range(1, top + 1))
    out, t = [], 1
    while t < top:
        out.append(t)
        t *= 2
    return tuple(out + [top])


def default_backends() -> tuple[str, ...]:
    return ("cpu", "cuda") if machine.gpu_present() else ("cpu",)


@dataclass(frozen=True)
class Case:
    family: str  # "bandwidth" | "elementwise" | "multiclass"
    loss: str  # a loss name, or "triad" / "d2d_copy"
    dtype: str
    shape: tuple[int, ...]
    threads: int  # CPU threads (Numba and PyTorch); 0 on a GPU
    backend: str  # "cpu" | "cuda"
    impl: str  # "fastloss" | "fastloss_out" | "torch" | "numpy" | "triad" | "d2d_copy"
    size_class: str  # "cache" | "dram"
    target: str = ""  # multiclass: "labels" | "probs"
    params: dict = field(default_factory=dict, compare=False, hash=False)
    variant: str = ""  # an option off the defaults (ELEMENTWISE_VARIANTS)

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape))

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def compulsory_bytes(self) -> int:
        n = self.elements
        if self.impl == "triad":
            return 3 * 8 * n
        if self.impl == "d2d_copy":
            return 2 * 8 * n
        if self.family == "multiclass":
            rows = self.shape[0]
            tb = n * self.itemsize if self.target == "probs" else 8 * rows
            # nll reads the label's entry of a row only
            xb = rows * self.itemsize if self.loss == "nll" else n * self.itemsize
            return xb + n * self.itemsize + tb
        return 3 * n * self.itemsize

    @property
    def shape_str(self) -> str:
        return "x".join(str(s) for s in self.shape)

    @property
    def name(self) -> str:
        """The loss as ids, keys and reports name it: the loss, or
        ``loss(target)`` for a row-wise loss measured with the other kind of
        target than its first (cross_entropy with probability targets is
        ``cross_entropy(probs)``), so that the two never share a key."""
        if self.family == "multiclass" and self.target and \
                self.target != multiclass_target(catalog.get(self.loss)):
            return f"{self.loss}({self.target})"
        if self.variant:
            return f"{self.loss}[{self.variant}]"
        return self.loss

    @property
    def id(self) -> str:
        t = f"t{self.threads}" if self.backend == "cpu" else "gpu"
        return f"{self.backend}-{self.name}-{self.dtype}-{self.shape_str}-{t}-{self.impl}"

    @property
    def key(self) -> str:
        """Stable identity of the benchmark across runs (the gate matches on it)."""
        t = f"t{self.threads}" if self.backend == "cpu" else "gpu"
        return "/".join((self.backend, self.family, self.name, self.dtype, self.shape_str, t,
                         self.impl))

    def info(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d.update(key=self.key, name=self.name, elements=self.elements,
                 compulsory_bytes=self.compulsory_bytes)
        return d


# --------------------------------------------------------------------------
# sizes


def elementwise_n(size_class: str, smoke: bool = False, backend: str = "cpu") -> int:
    if smoke:
        return 1 << 10 if size_class == "cache" else 1 << 14
    if size_class == "cache":
        return 1 << 16
    if backend == "cuda":
        return CUDA_ELEMENTWISE_N
    need = 4 * machine.llc_bytes() // (3 * 4)  # 4 x LLC of float32 traffic
    return 1 << max(24, int(need - 1).bit_length())


def multiclass_shapes(size_class: str, smoke: bool = False,
                      backend: str = "cpu") -> tuple[tuple[int, int], ...]:
    if smoke:
        return ((16, 10),) if size_class == "cache" else ((64, 100),)
    if size_class == "cache":
        return MULTICLASS_CACHE
    return MULTICLASS_CUDA if backend == "cuda" else MULTICLASS_DRAM


def triad_n(size_class: str, smoke: bool = False) -> int:
    from fastloss.benchmark.kernels import triad_elements

    if smoke:
        return 1 << 10 if size_class == "cache" else 1 << 14
    return triad_elements(size_class)


# --------------------------------------------------------------------------
# plans


def _specs(families, opts: Options, default=None):
    specs = [s for s in catalog.SPECS if s.family in families and s.has_grad]
    if opts.losses is not None:
        specs = [s for s in specs if s.name in opts.losses]
    elif default is not None and opts.default_selection:
        specs = [s for s in specs if s.name in default]
    return specs


def _threads(opts: Options) -> tuple[int, ...]:
    return tuple(opts.threads) if opts.threads else default_threads(opts.full)


def _backends(opts: Options) -> tuple[str, ...]:
    return tuple(opts.backends) if opts.backends else default_backends()


def _peer_cases(base: Case, opts: Options, first_thread: bool) -> list[Case]:
    from fastloss.benchmark import peers

    out = []
    if "torch" in opts.peers and peers.torch_supports(base):
        out.append(_replace(base, impl="torch"))
    # NumPy runs one thread whatever Numba's setting: measured once, at threads=1
    if "numpy" in opts.peers and base.backend == "cpu" and first_thread \
            and peers.numpy_supports(base):
        out.append(_replace(base, impl="numpy", threads=1))
    return out


def _replace_opts(opts: Options, **kw) -> Options:
    d = dict(vars(opts))
    d.update(kw)
    return Options(**d)


def _replace(case: Case, **kw) -> Case:
    d = {k: getattr(case, k) for k in Case.__dataclass_fields__}
    d.update(kw)
    return Case(**d)


def _expand(bases_by_threads, opts: Options, with_out: bool = False) -> list[Case]:
    out = []
    for i, base in enumerate(bases_by_threads):
        out.append(base)
        if with_out:
            out.append(_replace(base, impl="fastloss_out"))
        out.extend(_peer_cases(base, opts, first_thread=(i == 0)))
    return out


def _defaults(spec) -> dict:
    return {p.name: p.default for p in spec.params}


def plan_elementwise(opts: Options) -> list[Case]:
    cases = []
    for backend in _backends(opts):
        threads = _threads(opts) if backend == "cpu" else (0,)
        for size in opts.sizes:
            n = elementwise_n(size, opts.smoke, backend)
            for dtype in selected_dtypes(opts):
                for spec in _specs(ELEMENTWISE_FAMILIES, opts, default=DEFAULT_ELEMENTWISE):
                    bases = [Case("elementwise", spec.name, dtype, (n,), t, backend, "fastloss",
                                  size, params=_defaults(spec)) for t in threads]
                    # the bandwidth losses also into a reused gradient buffer
                    # (out=): the kernel's traffic without the fresh array's
                    # first-touch page faults
                    cases += _expand(bases, opts,
                                     with_out=backend == "cpu" and spec.name in BANDWIDTH_LOSSES)
                    if backend != "cpu" or opts.default_selection:
                        continue
                    for variant in ELEMENTWISE_VARIANTS.get(spec.name, ()):
                        shape = (max(n // VARIANT_C, 1), VARIANT_C)
                        cases += _expand([Case("elementwise", spec.name, dtype, shape, t, backend,
                                               "fastloss", size, params=_defaults(spec),
                                               variant=variant) for t in threads], opts)
    return cases


def multiclass_targets(spec) -> tuple[str, ...]:
    """The kinds of target a row-wise loss takes, its first kind first:
    ("labels",), ("probs",) or, for cross_entropy, ("labels", "probs")."""
    from fastloss.rows import FIDS

    lab, probs = FIDS.get(spec.name, (0, None))
    return tuple(k for k, f in (("labels", lab), ("probs", probs)) if f is not None)


def multiclass_target(spec) -> str:
    """"labels" when the loss takes integer class labels, else "probs"."""
    return multiclass_targets(spec)[0]


def plan_multiclass(opts: Options) -> list[Case]:
    """By default (no --loss, no --full): cross_entropy with labels, float32,
    the first of issue 4's shapes and the in-cache ones, no NumPy peer (within
    the default's time budget); --full: every shape of issue 4. Otherwise a
    loss that takes both kinds of target (cross_entropy) is measured with
    each (``Case.name`` ``cross_entropy(probs)`` for the second)."""
    cases = []
    specs = _specs(("multiclass",), opts, default=DEFAULT_MULTICLASS)
    default = opts.default_selection
    if default:
        opts = _replace_opts(opts, peers=tuple(p for p in opts.peers if p != "numpy"))
    for backend in _backends(opts):
        threads = _threads(opts) if backend == "cpu" else (0,)
        for size in opts.sizes:
            shapes = multiclass_shapes(size, opts.smoke, backend)
            if default and size == "dram" and backend == "cpu":
                shapes = DEFAULT_MULTICLASS_DRAM
            for shape in shapes:
                for dtype in selected_dtypes(opts):
                    for spec in specs:
                        kinds = multiclass_targets(spec)
                        for kind in kinds[:1] if default else kinds:
                            bases = [Case("multiclass", spec.name, dtype, shape, t, backend,
                                          "fastloss", size, target=kind,
                                          params=_defaults(spec)) for t in threads]
                            cases += _expand(bases, opts)
    return cases


def plan_bandwidth(opts: Options) -> list[Case]:
    cases = []
    for backend in _backends(opts):
        if backend == "cpu":
            for size in opts.sizes:
                n = triad_n(size, opts.smoke)
                cases += [Case("bandwidth", "triad", "float64", (n,), t, "cpu", "triad", size)
                          for t in _threads(opts)]
        else:
            n = (1 << 14) if opts.smoke else None
            from fastloss.benchmark.kernels import d2d_copy_elements

            cases.append(Case("bandwidth", "d2d_copy", "float64", (n or d2d_copy_elements(),),
                              0, "cuda", "d2d_copy", "dram"))
    return cases


PLANS = {"bandwidth": plan_bandwidth, "elementwise": plan_elementwise,
         "multiclass": plan_multiclass}


def plan(family: str, opts: Options) -> list[Case]:
    return PLANS[family](opts)


# --------------------------------------------------------------------------
# data


def _interval_sample(rng, dom, n, dtype, hard_unit=False):
    lo, hi = dom.lo, dom.hi
    if np.isfinite(lo) and np.isfinite(hi):
        if hard_unit and (lo, hi) == (0.0, 1.0):
            return (rng.random(n) < 0.5).astype(dtype)
        span = hi - lo
        return (lo + span * (0.01 + 0.98 * rng.random(n))).astype(dtype)
    if np.isfinite(lo):
        return (lo + 0.5 + 4.0 * rng.random(n)).astype(dtype)
    if np.isfinite(hi):
        return (hi - 0.5 - 4.0 * rng.random(n)).astype(dtype)
    return rng.standard_normal(n, dtype=np.float64).astype(dtype) * 2


def _sample(rng, dom, n, dtype, hard_unit=False):
    if dom is None:
        return (2.0 * rng.standard_normal(n)).astype(dtype)
    if isinstance(dom, catalog.ValueSet):
        vals = [v for v in dom.values if v != 0] or list(dom.values)
        return rng.choice(np.asarray(vals, dtype=dtype), size=n)
    return _interval_sample(rng, dom, n, dtype, hard_unit)


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=1)
def _data(family: str, loss: str, dtype: str, shape: tuple[int, ...], target: str):
    spec = catalog.get(loss)
    rng = np.random.default_rng(20240607)
    dt = np.dtype(dtype)
    if family == "elementwise":
        n = int(np.prod(shape))
        x = _sample(rng, spec.input_domain, n, dt)
        y = _sample(rng, spec.target_domain, n, dt, hard_unit=spec.family == "binary")
        return x.reshape(shape), y.reshape(shape)
    rows, c = shape
    z = rng.standard_normal((rows, c)).astype(dt)
    x = _softmax(z).astype(dt) if spec.input_domain is not None else z
    if target == "labels":
        y = rng.integers(0, c, size=rows, dtype=np.int64)
    else:
        y = _softmax(rng.standard_normal((rows, c))).astype(dt)
    return x, y


def make_data(case: Case):
    """(x, y) of a case, inside the loss's domains, fixed seed. Consecutive
    cases of one (loss, dtype, shape) share them: nothing may write to them."""
    return _data(case.family, case.loss, case.dtype, case.shape, case.target)


@functools.lru_cache(maxsize=4)
def _variant_arrays(variant: str, dtype: str, c: int) -> dict:
    rng = np.random.default_rng(20240608)
    lo, hi = {"pos_weight": (0.5, 4.0), "weight": (0.5, 1.5)}[variant]
    return {variant: (lo + (hi - lo) * rng.random(c)).astype(np.dtype(dtype))}


def variant_kwargs(case: Case) -> dict:
    """The keyword arguments of the case's option (``Case.variant``): a
    last-axis array of the data's dtype, fixed seed; {} for the defaults."""
    if not case.variant:
        return {}
    return _variant_arrays(case.variant, case.dtype, case.shape[-1])
