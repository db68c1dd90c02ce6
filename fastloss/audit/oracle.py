"""The exact values: the mpmath oracle on a grid, rounded to the dtype,
computed in parallel (local processes or a Dask cluster) and cached on disk.

The oracle is a module (``fastloss.reference`` by default) providing
``value_and_grad(name, x, y, q=1.0, **params) -> (value, grad)`` per element
(and ``condition(...)``, the condition numbers, where it has them); for rows,
``multiclass.row_value_and_grad(name, x_row, target, **params) -> (value,
[grad_c])`` (and ``multiclass.row_condition``); for box pairs,
``boxes.value_and_grad(name, pred4, target4) -> (value, [grad_k])`` (and
``boxes.condition``); as
mpmath numbers. The work is cut into chunks
(``Task``); ``evaluate_chunk`` is a pure top-level function of its task, so a
chunk gives the same numbers wherever it runs: in this process, in a local
worker process, or on a Dask worker (``--scheduler``).

Cache: one ``.npz`` file per (loss, dtype, grid) under ``$FASTLOSS_CACHE``
(default ``~/.cache/fastloss/oracle``), named by a hash of the oracle's
version (a hash of its source files), the grid's hash (inputs, parameters,
grid version) and the dtype.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fastloss.audit.grids import Block, grid_hash
from fastloss.audit.ulp import round_to_dtype

DEFAULT_ORACLE = "fastloss.reference"
CHUNK = 128  # elements (or rows) per task


def cache_dir() -> pathlib.Path:
    d = os.environ.get("FASTLOSS_CACHE")
    if d:
        return pathlib.Path(d).expanduser() / "oracle"
    return pathlib.Path("~/.cache/fastloss/oracle").expanduser()


def oracle_version(module: str = DEFAULT_ORACLE) -> str:
    """A hash of the oracle's source files (a changed oracle invalidates the cache)."""
    mod = importlib.import_module(module)
    h = hashlib.sha256(module.encode())
    h.update(str(getattr(mod, "__version__", "")).encode())
    files = [pathlib.Path(mod.__file__)]
    if pathlib.Path(mod.__file__).name == "__init__.py":
        files = sorted(pathlib.Path(mod.__file__).parent.rglob("*.py"))
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _module_has(module: str, attr: str) -> bool:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return False
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            try:
                obj = importlib.import_module(f"{obj.__name__}.{part}")
                continue
            except (ImportError, AttributeError):
                return False
        obj = getattr(obj, part)
    return True


def elementwise_names(module: str = DEFAULT_ORACLE) -> set[str]:
    """Losses the oracle has an elementwise reference for."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return set()
    return set(getattr(mod, "ELEMENTWISE", ()) or ())


#: probe rows for oracles that do not list their row-wise losses: (target, params)
_ROW_PROBES = {
    "cross_entropy": (0, {}), "nll": (0, {}), "softmax_focal": (0, {"gamma": 2.0}),
    "multi_margin": (0, {"p": 1}), "kl_div": ((0.5, 0.5), {"log_target": False}),
    "categorical_cross_entropy": ((0.5, 0.5), {}),
}


def row_names(module: str = DEFAULT_ORACLE) -> set[str]:
    """Losses the oracle has a row (multiclass) reference for: its ``NAMES``
    (or ``ROWWISE`` / ``MULTICLASS``) list, else the known row-wise losses
    that ``row_value_and_grad`` evaluates on a probe row without raising."""
    try:
        mc = importlib.import_module(module + ".multiclass")
    except ImportError:
        return set()
    names = getattr(mc, "NAMES", None) or getattr(mc, "ROWWISE", None) or getattr(mc, "MULTICLASS", None)
    if names is not None:
        return set(names)
    f = getattr(mc, "row_value_and_grad", None)
    if f is None:
        return set()
    out = set()
    for name, (target, params) in _ROW_PROBES.items():
        x = [0.25, 0.5] if name == "categorical_cross_entropy" else [0.0, 1.0]
        try:
            f(name, x, target, **params)
        except Exception:  # noqa: BLE001 - not covered by this oracle
            continue
        out.add(name)
    return out


def box_names(module: str = DEFAULT_ORACLE) -> set[str]:
    """Box losses the oracle has a reference for (``<module>.boxes.NAMES``)."""
    try:
        bx = importlib.import_module(module + ".boxes")
    except ImportError:
        return set()
    if not hasattr(bx, "value_and_grad"):
        return set()
    return set(getattr(bx, "NAMES", ()) or ())


@dataclass(frozen=True)
class Task:
    """A chunk of one block: plain Python data, picklable, hashable."""

    module: str
    loss: str
    kind: str  # "elementwise" | "rows" | "boxes"
    params: tuple  # sorted (name, value) pairs
    x: tuple  # floats, or tuples of floats for rows
    y: tuple  # floats, ints (labels) or tuples (probability rows)
    q: tuple | None
    dtype: str


def evaluate_chunk(task: Task):
    """Exact value and gradient of each element of the chunk, rounded to the
    dtype, and their condition numbers: ``(values, grads, ok, first_error,
    cond_values, cond_grads)``. An element whose oracle raises has ok = False
    (and is left out of the statistics). The condition numbers come from the
    oracle's ``condition(name, x, y, q, **params)`` where it has one (1
    elsewhere): the accuracy policy allows condition x a few ULP."""
    mod = importlib.import_module(task.module)
    params = dict(task.params)
    n = len(task.x)
    ok = np.ones(n, dtype=bool)
    err = ""
    if task.kind == "rows":
        from importlib import import_module

        mc = import_module(task.module + ".multiclass")
        row = mc.row_value_and_grad
        rcond = getattr(mc, "row_condition", None)
        C = len(task.x[0]) if n else 0
        vals = np.full(n, np.nan)
        grads = np.full((n, C), np.nan)
        cv = np.ones(n)
        cg = np.ones((n, C))
        for i in range(n):
            try:
                v, g = row(task.loss, list(task.x[i]), task.y[i], **params)
                vals[i] = round_to_dtype(v, task.dtype)
                grads[i] = [round_to_dtype(t, task.dtype) for t in g]
            except Exception as e:  # noqa: BLE001 - reported, never hidden
                ok[i] = False
                err = err or f"{type(e).__name__}: {e}"
                continue
            if rcond is not None:
                try:
                    c0, cs = rcond(task.loss, list(task.x[i]), task.y[i], **params)
                    cv[i] = float(c0)
                    cg[i] = [float(c) for c in cs]
                except Exception:  # noqa: BLE001 - no allowance where it cannot be computed
                    pass
        return vals, grads, ok, err, cv, cg
    if task.kind == "boxes":
        bx = importlib.import_module(task.module + ".boxes")
        box = bx.value_and_grad
        bcond = getattr(bx, "condition", None)
        vals = np.full(n, np.nan)
        grads = np.full((n, 4), np.nan)
        cv = np.ones(n)
        cg = np.ones((n, 4))
        for i in range(n):
            try:
                v, g = box(task.loss, list(task.x[i]), list(task.y[i]), **params)
                vals[i] = round_to_dtype(v, task.dtype)
                grads[i] = [round_to_dtype(t, task.dtype) for t in g]
            except Exception as e:  # noqa: BLE001 - reported, never hidden
                ok[i] = False
                err = err or f"{type(e).__name__}: {e}"
                continue
            if bcond is not None:
                try:
                    c0, cs = bcond(task.loss, list(task.x[i]), list(task.y[i]), **params)
                    cv[i] = float(c0)
                    cg[i] = [float(c) for c in cs]
                except Exception:  # noqa: BLE001 - no allowance where it cannot be computed
                    pass
        return vals, grads, ok, err, cv, cg
    vals = np.full(n, np.nan)
    grads = np.full(n, np.nan)
    cv = np.ones(n)
    cg = np.ones(n)
    f = mod.value_and_grad
    cond = getattr(mod, "condition", None)
    for i in range(n):
        try:
            if task.q is None:
                v, g = f(task.loss, task.x[i], task.y[i], **params)
            else:
                v, g = f(task.loss, task.x[i], task.y[i], q=task.q[i], **params)
            vals[i] = round_to_dtype(v, task.dtype)
            grads[i] = round_to_dtype(g, task.dtype)
        except Exception as e:  # noqa: BLE001
            ok[i] = False
            err = err or f"{type(e).__name__}: {e}"
            continue
        if cond is not None:
            try:
                q = 1.0 if task.q is None else task.q[i]
                cv[i], cg[i] = (float(c) for c in cond(task.loss, task.x[i], task.y[i], q=q,
                                                       **params))
            except Exception:  # noqa: BLE001 - no allowance where it cannot be computed
                pass
    return vals, grads, ok, err, cv, cg


def _tasks_of(module: str, b: Block, dtype: str) -> list[Task]:
    params = tuple(sorted(b.params.items()))
    out = []
    for s in range(0, len(b), CHUNK):
        sl = slice(s, s + CHUNK)
        if b.kind == "boxes":
            x = tuple(tuple(float(v) for v in r) for r in b.x[sl])
            y = tuple(tuple(float(v) for v in r) for r in b.y[sl])
            q = None
        elif b.kind == "rows":
            x = tuple(tuple(float(v) for v in r) for r in b.x[sl])
            y = tuple(int(v) if b.y.ndim == 1 else tuple(float(t) for t in v) for v in b.y[sl])
            q = None
        else:
            x = tuple(float(v) for v in b.x[sl])
            y = tuple(float(v) for v in b.y[sl])
            q = None if b.q is None else tuple(float(v) for v in b.q[sl])
        out.append(Task(module, b.loss, b.kind, params, x, y, q, dtype))
    return out


@dataclass
class Exact:
    """The oracle's values on one block, rounded to the dtype."""

    value: np.ndarray
    grad: np.ndarray
    ok: np.ndarray
    error: str = ""
    cond_value: np.ndarray | None = None  # condition numbers (>= 1), like value
    cond_grad: np.ndarray | None = None  # like grad


def _cache_file(module, loss, dtype, blocks, version) -> pathlib.Path:
    key = hashlib.sha256(f"v2|{module}|{version}|{loss}|{dtype}|{grid_hash(blocks)}".encode())
    return cache_dir() / f"{loss}-{dtype}-{key.hexdigest()[:24]}.npz"


def _load(path: pathlib.Path, blocks) -> list[Exact] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            out = []
            for i, b in enumerate(blocks):
                e = Exact(z[f"v{i}"], z[f"g{i}"], z[f"ok{i}"], str(z[f"err{i}"]),
                          z[f"cv{i}"], z[f"cg{i}"])
                if len(e.value) != len(b):
                    return None
                out.append(e)
            return out
    except (OSError, KeyError, ValueError):
        return None


def _save(path: pathlib.Path, exact: list[Exact]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, e in enumerate(exact):
        arrays.update({f"v{i}": e.value, f"g{i}": e.grad, f"ok{i}": e.ok, f"err{i}": np.array(e.error),
                       f"cv{i}": e.cond_value, f"cg{i}": e.cond_grad})
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


#: elements per local worker process: a process costs about a second to start
#: (importing NumPy, Numba and mpmath), the quick grids take a few seconds in
#: all, so a small job gets one worker process (which leaves the audit's own
#: process free to run the implementations meanwhile) and only large ones more
ELEMENTS_PER_PROCESS = 20000


def _run_local(tasks: list[Task], workers: int, tick: Callable[[int], None]) -> list:
    results: list = [None] * len(tasks)
    total = sum(len(t.x) for t in tasks)
    if workers <= 1 or total <= 2 * CHUNK:
        for i, t in enumerate(tasks):
            results[i] = evaluate_chunk(t)
            tick(len(t.x))
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    procs = max(1, min(workers, total // ELEMENTS_PER_PROCESS))
    with ProcessPoolExecutor(max_workers=procs, mp_context=mp.get_context("spawn")) as ex:
        futs = {ex.submit(evaluate_chunk, t): i for i, t in enumerate(tasks)}
        for f in as_completed(futs):
            i = futs[f]
            results[i] = f.result()
            tick(len(tasks[i].x))
    return results


def _run_dask(tasks: list[Task], scheduler, tick: Callable[[int], None]) -> list:
    try:
        from distributed import Client, as_completed
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "--scheduler needs dask.distributed: pip install 'fastloss[audit]'"
        ) from e
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futs = client.map(evaluate_chunk, tasks, pure=False)
        index = {f.key: i for i, f in enumerate(futs)}
        results: list = [None] * len(tasks)
        for f in as_completed(futs):
            i = index[f.key]
            results[i] = f.result()
            tick(len(tasks[i].x))
        return results
    finally:
        if client is not scheduler:
            client.close()


def exact_values(
    jobs: list[tuple[str, str, list[Block]]],
    *,
    module: str = DEFAULT_ORACLE,
    workers: int | None = None,
    scheduler=None,
    use_cache: bool = True,
    progress=None,
) -> tuple[dict[tuple[str, str], list[Exact]], dict]:
    """Exact values for every (loss, dtype, blocks) job, from the cache or
    computed (locally, or on the Dask cluster at ``scheduler``: an address or
    a ``distributed.Client``). Returns ({(loss, dtype): [Exact per block]},
    info) where info counts cached and computed elements."""
    version = oracle_version(module)
    out: dict[tuple[str, str], list[Exact]] = {}
    todo = []
    info = {"cached_elements": 0, "computed_elements": 0, "oracle_version": version}
    for loss, dtype, blocks in jobs:
        path = _cache_file(module, loss, dtype, blocks, version)
        got = _load(path, blocks) if use_cache else None
        if got is not None:
            out[(loss, dtype)] = got
            info["cached_elements"] += sum(len(b) for b in blocks)
        else:
            todo.append((loss, dtype, blocks, path))
    tasks, owners = [], []
    for j, (_loss, dtype, blocks, _) in enumerate(todo):
        for k, b in enumerate(blocks):
            for t in _tasks_of(module, b, dtype):
                tasks.append(t)
                owners.append((j, k))
    total = sum(len(t.x) for t in tasks)
    info["computed_elements"] = total
    if not tasks:
        return out, info
    bar = progress("oracle (mpmath)", total) if progress else None
    tick = bar.advance if bar else (lambda n: None)
    try:
        if scheduler is not None:
            results = _run_dask(tasks, scheduler, tick)
        else:
            results = _run_local(tasks, workers or os.cpu_count() or 1, tick)
    finally:
        if bar:
            bar.close()
    parts: dict[tuple[int, int], list] = {}
    for (j, k), r in zip(owners, results, strict=True):
        parts.setdefault((j, k), []).append(r)
    for j, (loss, dtype, blocks, path) in enumerate(todo):
        exact = []
        for k in range(len(blocks)):
            rs = parts.get((j, k), [])
            if rs:
                v = np.concatenate([r[0] for r in rs])
                g = np.concatenate([r[1] for r in rs])
                ok = np.concatenate([r[2] for r in rs])
                err = next((r[3] for r in rs if r[3]), "")
                cv = np.concatenate([r[4] for r in rs])
                cg = np.concatenate([r[5] for r in rs])
            else:
                v = g = cv = cg = np.zeros(0)
                ok = np.zeros(0, bool)
                err = ""
            exact.append(Exact(v, g, ok, err, cv, cg))
        out[(loss, dtype)] = exact
        if use_cache:
            _save(path, exact)
    return out, info
