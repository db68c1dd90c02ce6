"""What ``fastloss bench`` measures, generated from the catalogue.

A ``Case`` is one benchmark: a loss (or the bandwidth kernel), a dtype, a
shape, a thread count, a backend and an implementation (``fastloss``,
``torch``, ``numpy``, ``triad``, ``d2d_copy``). ``plan`` builds the cases of
one family from ``catalog.SPECS`` (every spec whose ``family`` belongs to it),
so a new loss is benchmarked as soon as it is in the catalogue.

The cases are ordered so that the implementations of one (loss, dtype, size,
threads) run one after another: on a shared, noisy machine their ratio is
then measured under the same conditions.

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

#: multiclass shapes (issue 4's targets) and an in-cache one
MULTICLASS_DRAM = ((8192, 1000), (2048, 32768), (256, 131072))
MULTICLASS_CACHE = ((64, 1000),)
#: losses run by default (the rest with --full)
DEFAULT_MULTICLASS = ("cross_entropy",)


@dataclass(frozen=True)
class Options:
    """The selection: what to run and how long to spend on it."""

    losses: tuple[str, ...] | None = None  # None: every loss (of the default set)
    dtypes: tuple[str, ...] = DTYPES
    threads: tuple[int, ...] | None = None  # None: default_threads()
    backends: tuple[str, ...] | None = None  # None: cpu, and cuda when a GPU is present
    sizes: tuple[str, ...] = SIZE_CLASSES
    peers: tuple[str, ...] = ("torch", "numpy")
    full: bool = False
    smoke: bool = False  # tiny sizes, for --benchmark-disable runs


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
    impl: str  # "fastloss" | "torch" | "numpy" | "triad" | "d2d_copy"
    size_class: str  # "cache" | "dram"
    target: str = ""  # multiclass: "labels" | "probs"
    params: dict = field(default_factory=dict, compare=False, hash=False)

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
            return 2 * n * self.itemsize + tb
        return 3 * n * self.itemsize

    @property
    def shape_str(self) -> str:
        return "x".join(str(s) for s in self.shape)

    @property
    def id(self) -> str:
        t = f"t{self.threads}" if self.backend == "cpu" else "gpu"
        return f"{self.backend}-{self.loss}-{self.dtype}-{self.shape_str}-{t}-{self.impl}"

    @property
    def key(self) -> str:
        """Stable identity of the benchmark across runs (the gate matches on it)."""
        t = f"t{self.threads}" if self.backend == "cpu" else "gpu"
        return "/".join((self.backend, self.family, self.loss, self.dtype, self.shape_str, t,
                         self.impl))

    def info(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d.update(key=self.key, elements=self.elements, compulsory_bytes=self.compulsory_bytes)
        return d


# --------------------------------------------------------------------------
# sizes


def elementwise_n(size_class: str, smoke: bool = False) -> int:
    if smoke:
        return 1 << 10 if size_class == "cache" else 1 << 14
    if size_class == "cache":
        return 1 << 16
    need = 4 * machine.llc_bytes() // (3 * 4)  # 4 x LLC of float32 traffic
    return 1 << max(24, int(need - 1).bit_length())


def multiclass_shapes(size_class: str, smoke: bool = False) -> tuple[tuple[int, int], ...]:
    if smoke:
        return ((16, 10),) if size_class == "cache" else ((64, 100),)
    return MULTICLASS_CACHE if size_class == "cache" else MULTICLASS_DRAM


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
    elif default is not None and not opts.full:
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


def _expand(bases_by_threads, opts: Options) -> list[Case]:
    out = []
    for i, base in enumerate(bases_by_threads):
        out.append(base)
        out.extend(_peer_cases(base, opts, first_thread=(i == 0)))
    return out


def _defaults(spec) -> dict:
    return {p.name: p.default for p in spec.params}


def plan_elementwise(opts: Options) -> list[Case]:
    cases = []
    for backend in _backends(opts):
        threads = _threads(opts) if backend == "cpu" else (0,)
        for size in opts.sizes:
            n = elementwise_n(size, opts.smoke)
            for dtype in opts.dtypes:
                for spec in _specs(ELEMENTWISE_FAMILIES, opts):
                    bases = [Case("elementwise", spec.name, dtype, (n,), t, backend, "fastloss",
                                  size, params=_defaults(spec)) for t in threads]
                    cases += _expand(bases, opts)
    return cases


def multiclass_target(spec) -> str:
    """"labels" when the loss takes integer class labels, else "probs"."""
    try:
        from fastloss.rows import FIDS

        lab, _ = FIDS.get(spec.name, (0, None))
        return "labels" if lab is not None else "probs"
    except ImportError:  # pragma: no cover - the row-wise runner is not in this build
        return "labels"


def plan_multiclass(opts: Options) -> list[Case]:
    """By default (no --loss, no --full): cross_entropy with labels, float32,
    no NumPy peer (issue 4's targets, within the default's time budget)."""
    cases = []
    specs = _specs(("multiclass",), opts, default=DEFAULT_MULTICLASS)
    if opts.losses is None and not opts.full and not opts.smoke:
        opts = _replace_opts(opts, dtypes=tuple(d for d in opts.dtypes if d == "float32"),
                             peers=tuple(p for p in opts.peers if p != "numpy"))
    for backend in _backends(opts):
        threads = _threads(opts) if backend == "cpu" else (0,)
        for size in opts.sizes:
            for shape in multiclass_shapes(size, opts.smoke):
                for dtype in opts.dtypes:
                    for spec in specs:
                        bases = [Case("multiclass", spec.name, dtype, shape, t, backend,
                                      "fastloss", size, target=multiclass_target(spec),
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
        n = shape[0]
        x = _sample(rng, spec.input_domain, n, dt)
        y = _sample(rng, spec.target_domain, n, dt, hard_unit=spec.family == "binary")
        return x, y
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
