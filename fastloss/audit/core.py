"""The audit: grids -> exact values -> every implementation -> ULP statistics.

``audit(...)`` returns a JSON-ready dict (``reports/stability.json``) and,
in memory, the per-element errors used by the plots. Every number in the
reports comes from here.

Statistics, per (loss, implementation, dtype, value|grad), over the grid's
elements whose exact value the oracle gave (``ulp_distance`` of
``fastloss.audit.ulp``: NaN against a number is an infinite distance, the
step from the largest finite number to infinity is one ULP):

- ``max_ulp`` and the input that produced it (``worst``), ``p99_ulp``,
  ``median_ulp`` (order statistics, no interpolation);
- ``nan``: results that are NaN where the exact value is not;
- ``wrong_inf``: infinite results where the exact value is finite or the
  other infinity;
- ``finite_for_inf``: finite results where the exact value is infinite;
- ``max_ulp_cond``: the largest error divided by the problem's condition
  number (the oracle's ``condition``; 1 where the problem is well
  conditioned or the oracle has none), the quantity the accuracy policy
  bounds ("condition number times a few ULP") and ``--fail-over`` checks.
  Where the condition number exceeds 1 the error may be as large as the
  result itself; it is then counted in units of the spacing at the exact
  value, |computed - exact| / ulp(exact), when that is smaller than the
  number of representable values in between (which counts every binade down
  to 0: a kernel's 0 for kl_div's exact -4.6e-17, condition 6e16, is 4.4e18
  such steps but 7.5e15 ulps of the exact value), as tests/test_oracle.py
  does. A NaN or infinity error is never excused by the condition number.
"""

from __future__ import annotations

import math
import platform
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from fastloss import catalog
from fastloss.audit import grids as G
from fastloss.audit import oracle as O
from fastloss.audit import peers as P
from fastloss.audit.ulp import ulp_distance

DTYPES = ("float32", "float64")
KINDS = ("value", "grad")


# ---------------------------------------------------------------------------
# progress


class _NoBar:
    def advance(self, n=1):
        pass

    def close(self):
        pass


class _RichBars:
    """One rich display for all the bars of a run (the oracle's and the
    implementations' bars advance at the same time, from two threads)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(TextColumn("{task.description:<20}"), BarColumn(),
                           MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                           console=Console(stderr=True))
        self._open = 0
        self._started = False

    def __call__(self, desc, total):
        if not self._started:
            self._p.start()
            self._started = True
        self._open += 1
        return _RichTask(self, self._p.add_task(desc, total=total))

    def _closed(self):
        self._open -= 1
        if self._open == 0 and self._started:
            self._p.stop()
            self._started = False


class _RichTask:
    def __init__(self, bars, task):
        self._bars, self._t = bars, task

    def advance(self, n=1):
        self._bars._p.advance(self._t, n)

    def close(self):
        if self._bars is not None:
            self._bars._closed()
            self._bars = None


class _TqdmBar:
    def __init__(self, desc, total):
        from tqdm import tqdm

        self._b = tqdm(total=total, desc=desc, file=sys.stderr)

    def advance(self, n=1):
        self._b.update(n)

    def close(self):
        self._b.close()


def progress_factory(enabled: bool):
    """A function (desc, total) -> bar, using rich, else tqdm, else None."""
    if not enabled:
        return None
    for make, mod in ((_RichBars, "rich"), (lambda: _TqdmBar, "tqdm")):
        try:
            __import__(mod)
        except ImportError:
            continue
        return make()
    return None


# ---------------------------------------------------------------------------
# statistics


def _f(v):
    """A float for JSON: finite as is, else 'inf' / '-inf' / 'nan'."""
    v = float(v)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def error_stats(computed, exact, dtype, cond=None) -> tuple[dict, np.ndarray]:
    """ULP statistics of ``computed`` against ``exact`` (arrays of one dtype),
    ``cond`` the condition numbers (default 1); returns (stats, per-element
    ULP distances)."""
    dtype = np.dtype(dtype)
    c = np.asarray(computed).astype(dtype).ravel()
    e = np.asarray(exact).astype(dtype).ravel()
    u = ulp_distance(c, e, dtype)
    n = u.size
    s = {"n": int(n)}
    if n == 0:
        s.update(max_ulp=None, max_ulp_cond=None, p99_ulp=None, median_ulp=None, nan=0,
                 wrong_inf=0, finite_for_inf=0, index=None)
        return s, u
    i = int(np.argmax(u))
    s["max_ulp"] = _f(u[i])
    k = np.ones(n) if cond is None else np.asarray(cond, dtype=np.float64).ravel()
    k = np.where(np.isnan(k), 1.0, np.maximum(k, 1.0))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # ill-conditioned: in ulps of the exact value where that is fewer steps
        rel = np.abs(c.astype(np.float64) - e.astype(np.float64)) / np.spacing(np.abs(e)).astype(np.float64)
        rel = np.where(np.isfinite(rel), rel, np.inf)
        scaled = np.where(np.isinf(u), np.inf, np.where(k > 1.0, np.minimum(u, rel), u) / k)
    j = int(np.argmax(scaled))
    s["max_ulp_cond"] = _f(scaled[j])
    s["index_cond"] = j
    s["cond_at_max"] = _f(k[i])
    s["index"] = i
    s["p99_ulp"] = _f(np.quantile(u, 0.99, method="higher"))
    s["median_ulp"] = _f(np.quantile(u, 0.5, method="higher"))
    en, cn = np.isnan(e), np.isnan(c)
    s["nan"] = int(np.sum(cn & ~en))
    s["wrong_inf"] = int(np.sum(np.isinf(c) & ~cn & (c != e)))
    s["finite_for_inf"] = int(np.sum(np.isfinite(c) & np.isinf(e)))
    s["computed"] = _f(c[i])
    s["exact"] = _f(e[i])
    return s, u


@dataclass
class Measured:
    """Per-element errors of one (loss, impl, dtype, kind), for the plots."""

    ulp: np.ndarray
    mag: np.ndarray


@dataclass
class AuditResult:
    report: dict
    errors: dict = field(default_factory=dict)  # (loss, impl, dtype, kind) -> Measured

    def fastloss_violations(self, bound: float) -> list[tuple]:
        out = []
        for loss, L in self.report["losses"].items():
            for impl, R in L["results"].items():
                if not R.get("fastloss"):
                    continue
                for dtype, D in R["dtypes"].items():
                    for kind in KINDS:
                        st = D.get(kind)
                        if not st or st.get("max_ulp") is None:
                            continue
                        m = st["max_ulp_cond"]
                        m = math.inf if m in ("inf", "nan") else float(m)
                        if m > bound:
                            out.append((loss, impl, dtype, kind, st["max_ulp_cond"]))
        return out


# ---------------------------------------------------------------------------
# the audit


def auditable(module: str = O.DEFAULT_ORACLE) -> dict[str, str]:
    """Losses the audit can measure: {name: grid kind}, from the oracle's coverage."""
    out = {}
    ew = O.elementwise_names(module)
    rows = O.row_names(module)
    boxes = O.box_names(module)
    for spec in catalog.SPECS:
        if spec.name in ew and G.elementwise_grid(spec.name, np.float64, "quick"):
            out[spec.name] = "elementwise"
        elif spec.name in rows and G.multiclass_grid(spec.name, np.float64, "quick"):
            out[spec.name] = "rows"
        elif spec.name in boxes and G.box_grid(spec.name, np.float64, "quick"):
            out[spec.name] = "boxes"
    return out


def _blocks(name: str, kind: str, dtype: str, size: str) -> list[G.Block]:
    if kind == "rows":
        return G.multiclass_grid(name, dtype, size)
    if kind == "boxes":
        return G.box_grid(name, dtype, size)
    return G.elementwise_grid(name, dtype, size)


def _versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("numpy", "numba", "mpmath", "torch", "jax", "optax", "dask", "distributed"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    return out


def audit(
    *,
    losses=None,
    dtypes=DTYPES,
    impls=None,
    size: str = "full",
    workers: int | None = None,
    scheduler=None,
    oracle: str = O.DEFAULT_ORACLE,
    use_cache: bool = True,
    progress: bool = False,
    cuda_sample: int = 48,
    log=print,
) -> AuditResult:
    t0 = time.perf_counter()
    available = auditable(oracle)
    if losses is None:
        names = list(available)
    else:
        names = []
        for n in losses:
            catalog.get(n)  # ValueError for an unknown name
            if n not in available:
                log(f"skip {n}: no oracle or grid for it in this build")
            else:
                names.append(n)
    dtypes = [str(np.dtype(d)) for d in dtypes]
    instances = []
    skipped = {}
    notes = []
    for impl in P.make(impls):
        if isinstance(impl, P.FastlossCUDA):
            impl = P.FastlossCUDA(sample=cuda_sample)
        why = impl.unavailable()
        if why:
            skipped[impl.key] = why
            log(f"skip {impl.key}: {why}")
        else:
            instances.append(impl)
            missing = impl.missing_kinds() if hasattr(impl, "missing_kinds") else []
            if missing:
                what = " and ".join({"rows": "row-wise (multiclass)", "boxes": "box"}[k]
                                    for k in missing)
                notes.append(f"{impl.key}: this build has no CUDA kernels for the {what} "
                             "losses; they are not audited on CUDA")
                log(f"note: {notes[-1]}")
    bar = progress_factory(progress)

    jobs = []
    grids_info = {}
    for n in names:
        for dt in dtypes:
            blocks = _blocks(n, available[n], dt, size)
            jobs.append((n, dt, blocks))
            grids_info.setdefault(n, {})[dt] = {
                "elements": sum(len(b) for b in blocks),
                "hash": G.grid_hash(blocks),
                "blocks": [{"tag": b.tag, "params": {k: _f(v) if isinstance(v, float) else v
                                                      for k, v in b.params.items()},
                            "elements": len(b)} for b in blocks],
            }
    t1 = time.perf_counter()
    log(f"audit: {len(names)} losses x {len(dtypes)} dtypes, "
        f"{sum(len(b) for _, _, bl in jobs for b in bl)} inputs ({size} grids); "
        f"implementations: {', '.join(i.key for i in instances) or 'none'}")

    # Everything that does not need the exact values runs while the oracle
    # computes them: the CUDA simulator (a subprocess) is started first, the
    # oracle's workers in a thread of this process, and the in-process
    # implementations evaluated meanwhile.
    todo = {}
    pending = {}
    for impl in list(instances):
        try:
            todo[impl.key] = [(n, dt, k, b) for n, dt, blocks in jobs
                              for k, b in enumerate(blocks) if impl.supports(b)]
        except Exception as e:  # noqa: BLE001 - a peer's adapter must not stop the audit
            if impl.key.startswith("fastloss"):
                raise
            why = f"its adapter failed on this version: {type(e).__name__}: {e}"
            skipped[impl.key] = why
            log(f"skip {impl.key}: {why}")
            instances.remove(impl)
            continue
        start = getattr(impl, "start_many", None)
        if start is not None and todo[impl.key]:
            pending[impl.key] = start([b for *_, b in todo[impl.key]])
    oracle_out: dict = {}

    def _oracle():
        try:
            oracle_out["result"] = O.exact_values(
                jobs, module=oracle, workers=workers, scheduler=scheduler,
                use_cache=use_cache, progress=bar)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            oracle_out["error"] = e
        oracle_out["t"] = time.perf_counter()
        if "result" in oracle_out:
            info = oracle_out["result"][1]
            log(f"oracle: {info['computed_elements']} inputs computed, "
                f"{info['cached_elements']} from the cache, in {oracle_out['t'] - t1:.1f} s")

    th = threading.Thread(target=_oracle, name="fastloss-oracle", daemon=True)
    th.start()
    nblocks = sum(len(t) for t in todo.values())
    ibar = bar("implementations", nblocks) if bar and nblocks else P_NOBAR
    got_by_impl = {}
    for impl in instances:
        items = todo[impl.key]
        if impl.key in pending or not items:
            continue
        res = []
        for _, _, _, b in items:  # one block at a time, for the progress bar
            res += impl.evaluate_many([b])
            ibar.advance(1)
        got_by_impl[impl.key] = res
    for key, finish in pending.items():
        got_by_impl[key] = finish(ibar.advance)
    ibar.close()
    t_impl = time.perf_counter()
    log(f"implementations: evaluated in {t_impl - t1:.1f} s")
    th.join()
    if "error" in oracle_out:
        raise oracle_out["error"]
    exact, oinfo = oracle_out["result"]
    t2 = oracle_out["t"]

    report = {
        "meta": {
            "size": size, "dtypes": dtypes, "grid_version": G.GRID_VERSION,
            "oracle": oracle, "oracle_version": oinfo["oracle_version"],
            "oracle_cached_elements": oinfo["cached_elements"],
            "oracle_computed_elements": oinfo["computed_elements"],
            "scheduler": None if scheduler is None else str(getattr(scheduler, "scheduler", scheduler)),
            "implementations": {i.key: i.label for i in instances},
            "skipped_implementations": skipped,
            "notes": notes,
            "versions": _versions(),
        },
        "losses": {},
    }
    errors: dict = {}
    for impl in instances:
        got = {(n, dt, k): r for (n, dt, k, _), r in
               zip(todo[impl.key], got_by_impl.get(impl.key, []), strict=True)}
        for n, dt, blocks in jobs:
            L = report["losses"].setdefault(n, {
                "family": catalog.get(n).family, "grid_kind": available[n],
                "grid": grids_info[n], "oracle_failures": {}, "results": {}})
            ex = exact[(n, dt)]
            fails = int(sum(int((~e.ok).sum()) for e in ex))
            if fails:
                L["oracle_failures"][dt] = {"elements": fails,
                                            "first_error": next(e.error for e in ex if e.error)}
            R = L["results"].setdefault(impl.key, {"label": impl.label, "fastloss": impl.is_fastloss,
                                                   "dtypes": {}})
            _measure(impl, n, dt, blocks, ex, got, R, errors)
    t3 = time.perf_counter()
    # the oracle and the implementations overlap: "oracle" and "implementations"
    # are each measured from the start of that phase, "total" is the wall time
    report["meta"]["seconds"] = {"setup": round(t1 - t0, 2), "oracle": round(t2 - t1, 2),
                                 "implementations": round(t_impl - t1, 2),
                                 "statistics": round(t3 - max(t2, t_impl), 2),
                                 "total": round(t3 - t0, 2)}
    report["summary"] = summarize(report)
    return AuditResult(report, errors)


P_NOBAR = _NoBar()


def _measure(impl, loss, dtype, blocks, exact, got, R, errors) -> None:
    """Statistics of one implementation on one (loss, dtype) grid."""
    comp = {k: [] for k in KINDS}
    ref = {k: [] for k in KINDS}
    conds = {k: [] for k in KINDS}
    mags = {k: [] for k in KINDS}
    where = {k: [] for k in KINDS}  # (block index, element index) per element
    problems = []
    covered = 0
    for k, b in enumerate(blocks):
        r = got.get((loss, dtype, k))
        if r is None:
            continue
        if isinstance(r, Exception):
            problems.append(f"{b.tag or 'block'} {b.params}: {type(r).__name__}: {r}"[:300])
            continue
        v, g, idx = r
        e = exact[k]
        idx = np.arange(len(b)) if idx is None else np.asarray(idx, dtype=np.int64)
        keep = e.ok[idx]
        idx = idx[keep]
        v = np.asarray(v)[keep]
        covered += 1
        comp["value"].append(v.ravel())
        ref["value"].append(e.value[idx].ravel())
        conds["value"].append(e.cond_value[idx].ravel())
        mags["value"].append(b.mag[idx] if b.mag is not None else np.full(len(idx), np.nan))
        where["value"].append(np.stack([np.full(len(idx), k), idx], 1))
        if g is None:  # a peer that gives values only (scikit-learn)
            continue
        g = np.asarray(g)[keep]
        gshape_c = g.reshape(len(idx), -1)
        C = gshape_c.shape[1]
        comp["grad"].append(gshape_c.ravel())
        ref["grad"].append(e.grad[idx].reshape(len(idx), -1).ravel())
        conds["grad"].append(e.cond_grad[idx].reshape(len(idx), -1).ravel())
        m = b.mag[idx] if b.mag is not None else np.full(len(idx), np.nan)
        mags["grad"].append(np.repeat(m, C))
        where["grad"].append(np.repeat(np.stack([np.full(len(idx), k), idx], 1), C, axis=0))
    if not covered and not problems:
        return  # the implementation does not have this loss
    D = {}
    if problems:
        D["errors"] = problems
    for kind in KINDS:
        if not comp[kind]:
            continue
        c = np.concatenate(comp[kind])
        e = np.concatenate(ref[kind])
        st, u = error_stats(c, e, dtype, np.concatenate(conds[kind]))
        if st["index"] is not None:
            W = np.concatenate(where[kind])
            bk, ik = W[st["index"]]
            b = blocks[int(bk)]
            st["worst"] = {"block": b.tag, "input": b.element(int(ik))}
            if st["max_ulp_cond"] != st["max_ulp"]:
                bk, ik = W[st["index_cond"]]
                b = blocks[int(bk)]
                st["worst_cond"] = {"block": b.tag, "input": b.element(int(ik))}
        st.pop("index", None)
        st.pop("index_cond", None)
        if impl.sample is not None:
            st["sampled"] = True
        D[kind] = st
        errors[(loss, impl.key, dtype, kind)] = Measured(u, np.concatenate(mags[kind]))
    R["dtypes"][dtype] = D


def _num(v):
    if v is None:
        return None
    return math.inf if v in ("inf", "nan") else float(v)


def summarize(report: dict) -> dict:
    """Worst ULP (raw and divided by the condition number) per implementation
    per loss, over dtypes and value/grad, and overall."""
    per_loss = {}
    overall = {}
    for loss, L in report["losses"].items():
        row = {}
        for impl, R in L["results"].items():
            worst = worst_c = None
            bad = 0
            for D in R["dtypes"].values():
                for kind in KINDS:
                    st = D.get(kind)
                    if not st or st.get("max_ulp") is None:
                        continue
                    m, mc = _num(st["max_ulp"]), _num(st["max_ulp_cond"])
                    worst = m if worst is None else max(worst, m)
                    worst_c = mc if worst_c is None else max(worst_c, mc)
                    bad += st["nan"] + st["wrong_inf"] + st["finite_for_inf"]
            if worst is None:
                continue
            row[impl] = {"max_ulp": _f(worst), "max_ulp_cond": _f(worst_c),
                         "nonfinite_errors": bad}
            o = overall.setdefault(impl, {"max_ulp": 0.0, "max_ulp_cond": 0.0,
                                          "nonfinite_errors": 0, "losses": 0,
                                          "losses_within_2ulp": 0,
                                          "losses_within_2ulp_cond": 0})
            o["max_ulp"] = max(_num(o["max_ulp"]), worst)
            o["max_ulp_cond"] = max(_num(o["max_ulp_cond"]), worst_c)
            o["nonfinite_errors"] += bad
            o["losses"] += 1
            o["losses_within_2ulp"] += int(worst <= 2)
            o["losses_within_2ulp_cond"] += int(worst_c <= 2)
        per_loss[loss] = row
    for o in overall.values():
        o["max_ulp"] = _f(o["max_ulp"])
        o["max_ulp_cond"] = _f(o["max_ulp_cond"])
    return {"per_loss": per_loss, "overall": overall}
