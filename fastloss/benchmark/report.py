"""Reports of a benchmark run: ``throughput-<machine>.md``, ``.json`` and
PNG plots (matplotlib, optional: without it the plots are skipped with a
line saying so).

Every number written comes from the annotated pytest-benchmark JSON of the
run (``derive.annotate``); nothing is estimated.
"""

from __future__ import annotations

import json
import pathlib

from fastloss.benchmark.derive import annotate
from fastloss.benchmark.peers import TORCHVISION_ELEMENTWISE

#: the targets of issues 3 and 4, checked at the highest thread count measured
TARGETS_TEXT = """\
Targets (issue 3 at 2 threads, N = 2^24; issue 4): binary_cross_entropy_with_logits f32
>= 3x PyTorch fwd+bwd and >= 1.0 G elem/s; every elementwise loss PyTorch has >= 2x
PyTorch; mse, mae, huber >= 70% of triad bandwidth; cross_entropy f32 with int labels
>= 4x F.cross_entropy fwd+bwd on (8192, 1000), (2048, 32768), (256, 131072); the other
row-wise losses PyTorch has (cross_entropy with probability targets, nll, kl_div,
multi_margin, any dtype) >= 2x PyTorch."""


def _entries(doc):
    return [b["extra_info"] for b in doc.get("benchmarks", []) if "g_elem_s" in b.get("extra_info", {})]


def _fmt(v, spec=".3g", none="—"):
    return none if v is None else format(v, spec)


def _x(v):
    return "—" if v is None else f"{v:.2f}×"


def _pct(v):
    return "—" if v is None else f"{100 * v:.0f}%"


def _shape(e):
    s = e["shape"]
    if len(s) == 1:
        n = s[0]
        return f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)
    return "×".join(map(str, s))


def _nm(e):
    """The loss as the case names it (``Case.name``: ``cross_entropy(probs)``
    for probability targets); the loss in JSON from before names existed."""
    return e.get("name", e["loss"])


def _index(entries):
    return {(e["backend"], e["family"], _nm(e), e["dtype"], tuple(e["shape"]), e["threads"],
             e["impl"]): e for e in entries}


def _row_table(entries, family):
    fl = [e for e in entries if e["family"] == family and e["impl"] == "fastloss"]
    if not fl:
        return []
    idx = _index(entries)
    lines = ["| backend | size | loss | dtype | threads | G elem/s | GB/s | of triad | "
             "of triad, out= | PyTorch G elem/s | × PyTorch | NumPy G elem/s | × NumPy |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = {"cache": 0, "dram": 1}
    fl.sort(key=lambda e: (e["backend"], order.get(e["size_class"], 2), tuple(e["shape"]),
                           e["dtype"], _nm(e), e["threads"]))
    for e in fl:
        k = (e["backend"], e["family"], _nm(e), e["dtype"], tuple(e["shape"]))
        t = idx.get(k + (e["threads"], "torch"))
        n = idx.get(k + (1, "numpy"))
        o = idx.get(k + (e["threads"], "fastloss_out"))
        sp = e.get("speedup", {})
        threads = e["threads"] if e["backend"] == "cpu" else "GPU"
        lines.append(
            f"| {e['backend']} | {e['size_class']} {_shape(e)} | {_nm(e)} | {e['dtype']} | "
            f"{threads} | {_fmt(e['g_elem_s'])} | {_fmt(e['gb_s'])} | "
            f"{_pct(e.get('fraction_of_bandwidth'))} | "
            f"{_pct(o.get('fraction_of_bandwidth') if o else None)} | {_fmt(t and t['g_elem_s'])} | "
            f"{_x(sp.get('torch'))} | {_fmt(n and n['g_elem_s'])} | {_x(sp.get('numpy'))} |")
    return lines


def _bandwidth_table(entries):
    bw = sorted((e for e in entries if e["family"] == "bandwidth"),
                key=lambda e: (e["backend"], e["size_class"], e["threads"]))
    if not bw:
        return []
    lines = ["| backend | kernel | size class | array elements | threads | GB/s |",
             "|---|---|---|---:|---:|---:|"]
    for e in bw:
        lines.append(f"| {e['backend']} | {e['impl']} | {e['size_class']} | {e['shape'][0]} | "
                     f"{e['threads'] or 'GPU'} | {e['gb_s']:.2f} |")
    return lines


def targets(entries) -> list[tuple[str, str, str]]:
    """[(target, measured, verdict)] for the issue-3/4 targets present in the run."""
    out = []
    cpu = [e for e in entries if e["backend"] == "cpu" and e["impl"] == "fastloss"
           and e["size_class"] == "dram"]
    if not cpu:
        return out
    tmax = max(e["threads"] for e in cpu)
    at = [e for e in cpu if e["threads"] == tmax]
    outs = {(e["loss"], e["dtype"]): e for e in entries
            if e["impl"] == "fastloss_out" and e["backend"] == "cpu"
            and e["size_class"] == "dram" and e["threads"] == tmax}

    def verdict(ok):
        return "met" if ok else "NOT met"

    for e in at:
        if e["family"] != "elementwise" or e.get("variant"):  # (options: no target)
            continue
        sp = e.get("speedup", {}).get("torch")
        if e["loss"] == "binary_cross_entropy_with_logits" and e["dtype"] == "float32":
            out.append((f"bce_with_logits f32 ≥ 1.0 G elem/s ({tmax} thr)",
                        f"{e['g_elem_s']:.3g} G elem/s", verdict(e["g_elem_s"] >= 1.0)))
            if sp is not None:
                out.append((f"bce_with_logits f32 ≥ 3× PyTorch ({tmax} thr)", f"{sp:.2f}×",
                            verdict(sp >= 3)))
        if sp is not None and e["loss"] not in TORCHVISION_ELEMENTWISE:  # "PyTorch has"
            out.append((f"{e['loss']} {e['dtype']} ≥ 2× PyTorch ({tmax} thr)", f"{sp:.2f}×",
                        verdict(sp >= 2)))
        if e["loss"] in ("mse", "mae", "huber") and e.get("fraction_of_bandwidth") is not None:
            f = e["fraction_of_bandwidth"]
            out.append((f"{e['loss']} {e['dtype']} ≥ 70% of triad ({tmax} thr)", f"{100 * f:.0f}%",
                        verdict(f >= 0.7)))
            o = outs.get((e["loss"], e["dtype"]), {}).get("fraction_of_bandwidth")
            if o is not None:
                out.append((f"{e['loss']} {e['dtype']} ≥ 70% of triad, out= a reused buffer "
                            f"({tmax} thr)", f"{100 * o:.0f}%", verdict(o >= 0.7)))
            b = e.get("fraction_of_beside_triad")
            if b is not None:
                out.append((f"{e['loss']} {e['dtype']} ≥ 70% of the triad measured beside it "
                            f"({tmax} thr)", f"{100 * b:.0f}%", verdict(b >= 0.7)))
    for e in at:
        sp = e.get("speedup", {}).get("torch")
        if e["family"] != "multiclass" or sp is None:
            continue
        if e["loss"] == "cross_entropy" and e["dtype"] == "float32" and \
                e.get("target") == "labels":
            out.append((f"cross_entropy f32 {_shape(e)} ≥ 4× F.cross_entropy ({tmax} thr)",
                        f"{sp:.2f}×", verdict(sp >= 4)))
        else:  # issue 4: "kl_div and the others: >= 2x PyTorch where PyTorch has them"
            out.append((f"{_nm(e)} {e['dtype']} {_shape(e)} ≥ 2× PyTorch ({tmax} thr)",
                        f"{sp:.2f}×", verdict(sp >= 2)))
    return out


def _others(doc):
    """Benchmarks of suites that do not use fastloss.benchmark (listed as they are)."""
    rows = []
    for b in doc.get("benchmarks", []):
        e = b.get("extra_info", {})
        if "g_elem_s" in e or "elements" in e:
            continue
        extra = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in e.items() if k not in ("n",))
        rows.append(f"| {b['name']} | {b['stats']['min'] * 1e3:.3f} | {extra} |")
    if not rows:
        return []
    return ["| benchmark | min ms | extra_info |", "|---|---:|---|", *rows]


def markdown(doc: dict, machine_name: str, plots: list[str], notes: list[str]) -> str:
    annotate(doc)
    entries = _entries(doc)
    mi = doc.get("machine_info", {}).get("fastloss", {})
    v = mi.get("versions", {})
    run = doc.get("fastloss_run", {})
    L = [f"# fastloss throughput — {machine_name}", ""]
    L += [f"Measured {doc.get('datetime', '')[:19].replace('T', ' ')} UTC by `{run.get('command', 'fastloss bench')}`"
          + (f" in {run['wall_s']:.0f} s" if run.get("wall_s") else "") + ".", ""]
    L += ["## Machine", "",
          f"- CPU: {mi.get('cpu_model', '?')}, {mi.get('cores', '?')} cores available, "
          f"last-level cache {mi.get('llc_bytes', 0) / 2**20:.0f} MiB; Numba threads "
          f"{mi.get('numba_threads', '?')}, threading layer `{mi.get('threading_layer', '?')}`",
          f"- numba {v.get('numba')}, llvmlite {v.get('llvmlite')}, numba-cuda {v.get('numba-cuda')}, "
          f"NumPy {v.get('numpy')}, PyTorch {v.get('torch') or 'not installed'}, "
          f"pytest-benchmark {v.get('pytest-benchmark')}"]
    gpu = mi.get("gpu")
    if gpu:
        bw = gpu.get("theoretical_bandwidth_gb_s")
        L.append(f"- GPU: {gpu['name']} (cc {gpu.get('compute_capability')}), "
                 f"{gpu.get('memory_bytes', 0) / 2**30:.0f} GiB"
                 + (f", theoretical memory bandwidth {bw:.0f} GB/s" if bw else ""))
    else:
        L.append("- GPU: none (CUDA benchmarks not run)")
    if run.get("loadavg_before") is not None:
        L.append(f"- load average (1 min) before / after the run: {run['loadavg_before']:.2f} / "
                 f"{run.get('loadavg_after', float('nan')):.2f}")
    L.append("")
    if notes:
        L += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    pool_bytes = mi.get("pool_bytes")
    if pool_bytes is None:  # runs before the pool: every call paid a fresh array's page faults
        pool = ("; a fresh CPU array pays the operating system's first-touch page faults, "
                "which the out= figures below do not")
    elif pool_bytes:
        pool = ("; on the CPU one of 32 MiB or more is the previous call's, recycled once the "
                "benchmark has dropped it, as a training loop would (`fastloss/buffers.py`, "
                f"pool limit {pool_bytes / 2**20:.0f} MiB)")
    else:
        pool = ("; the CPU pool was off (FASTLOSS_POOL_BYTES=0): a large array paid the "
                "operating system's first-touch page faults on every call")
    L += ["## Method", "",
          "Each figure is a ratio or a throughput from the same run. fastloss is "
          "`value_and_grad(loss, x, y)` (the public call: validation, fused value + gradient, "
          f"`reduction=\"mean\"`, a new gradient array each call{pool}); PyTorch is the same loss's "
          "`torch.nn.functional` forward + `backward()` with `torch.set_num_threads` equal to the "
          "thread count (for sigmoid_focal, which PyTorch lacks, torchvision's `sigmoid_focal_loss`; "
          "not counted in the targets); NumPy is the textbook formula (single-threaded, measured once, at 1 thread). "
          "Kernels are compiled and warmed up before timing. Times are the minimum over the timed "
          "rounds (the JSON also has the median). G elem/s counts input elements; GB/s counts "
          "compulsory traffic (elementwise: read x, y, write the gradient = 3 × itemsize per element; "
          "row-wise: read x, write the gradient, read the labels or targets; nll reads one entry of x a row). "
          "\"of triad\" is GB/s over the STREAM triad (`a = b + s·c`, `@njit(parallel=True)`, 24 "
          "bytes per element) measured at the same thread count on arrays of the same size class "
          "(\"dram\": each array ≥ 4× the last-level cache; \"cache\": 3 × 256 KiB). "
          "\"of triad, out=\" is the same for `value_and_grad(loss, x, y, out=buf)` with a "
          "gradient buffer allocated once (mse, mae, huber): the triad also writes into an array "
          "allocated once, so this is the kernel's fraction of the bandwidth. "
          "The triad writes with ordinary stores, each of which first reads its cache line "
          "(32 bytes of traffic per 24 counted); fastloss writes the gradients of the "
          "memory-bound elementwise losses (mse, mae, huber, ...: `LossSpec.streams`) of 32 MiB "
          "or more with streaming stores, which do not (`fastloss/cpu/stream.py`), so such a "
          "loss may exceed 100% of the triad. "
          "\"The triad measured beside it\" (targets, mse, mae, huber in DRAM): the same triad "
          "timed right before and right after the kernel's own rounds (best of 3 each; the JSON's "
          "`triad_beside_gb_s`), the fraction taken of the higher of the two: this shared "
          "machine's bandwidth moves between states within a run (2-thread triad ~36-40 or ~60 "
          "GB/s), and the run's one triad case may meet another state than a kernel timed "
          "minutes later." + _variants_text(entries), ""]
    bt = _bandwidth_table(entries)
    if bt:
        L += ["## Bandwidth limit (measured in this run)", "", *bt, ""]
    tg = targets(entries)
    if tg:
        L += ["## Targets", "", TARGETS_TEXT, "", "| target | measured | |", "|---|---:|---|",
              *[f"| {a} | {b} | {c} |" for a, b, c in tg], ""]
    for fam, title in (("elementwise", "Elementwise losses"), ("multiclass", "Multiclass losses")):
        t = _row_table(entries, fam)
        if t:
            L += [f"## {title}", "", *t, ""]
    ot = _others(doc)
    if ot:
        L += ["## Other suites in bench/", "", *ot, ""]
    if plots:
        L += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(L)


def _variants_text(entries) -> str:
    """The method's sentence on the option rows (``cases.ELEMENTWISE_VARIANTS``),
    when the run has them."""
    from fastloss.benchmark.cases import VARIANT_C

    names = sorted({e["variant"] for e in entries if e.get("variant")})
    if not names:
        return ""
    return (f" A row `loss[option]` ({', '.join(names)}) is the same call with that option: an "
            f"array of {VARIANT_C} values in the data's dtype along the last axis of rows of "
            f"{VARIANT_C} (pos_weight in [0.5, 4), weight in [0.5, 1.5)), PyTorch with the same "
            "tensor; not counted in the targets.")


def plot(doc: dict, out_dir: pathlib.Path, stem: str) -> tuple[list[str], str | None]:
    """PNG plots; returns (file names, None) or ([], why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed: plots skipped (pip install -e '.[bench]')"
    annotate(doc)
    files = _plot_cuda(doc, out_dir, stem, plt)
    entries = [e for e in _entries(doc) if e["backend"] == "cpu"]
    fl = [e for e in entries if e["impl"] == "fastloss" and e["size_class"] == "dram"]
    if not fl:
        return files, None if files else "no fastloss benchmark at the dram size: no plots"

    # 1. throughput against threads, per loss: elementwise (beside the triad
    # limit), then row-wise (one line per loss and shape)
    for family, title in (("elementwise", "elementwise losses"), ("multiclass", "row-wise losses")):
        fam = [e for e in fl if e["family"] == family]
        if not fam:
            continue
        dts = sorted({e["dtype"] for e in fam})
        fig, axes = plt.subplots(1, len(dts), figsize=(7 * len(dts), 5), squeeze=False)
        for ax, dt in zip(axes[0], dts, strict=True):
            series = sorted({(_nm(e), tuple(e["shape"])) for e in fam if e["dtype"] == dt})
            for name, shape in series:
                pts = sorted((e["threads"], e["g_elem_s"]) for e in fam if e["dtype"] == dt
                             and _nm(e) == name and tuple(e["shape"]) == shape)
                lab = name if family == "elementwise" else f"{name} {'×'.join(map(str, shape))}"
                ax.plot(*zip(*pts, strict=True), marker="o", label=lab)
            if family == "elementwise":
                tri = sorted((e["threads"], e["gb_s"] / (3 * (4 if dt == "float32" else 8)))
                             for e in entries
                             if e["family"] == "bandwidth" and e["size_class"] == "dram")
                if tri:
                    ax.plot(*zip(*tri, strict=True), "k--", lw=2, label="triad bandwidth limit")
                ax.set_title(f"{title}, {dt}, N = {fam[0]['shape'][0]:,}")
            else:
                ax.set_title(f"{title}, {dt} (N, C)")
            ax.set_xticks(sorted({e["threads"] for e in fam}))
            ax.set_xlabel("threads")
            ax.set_ylabel("G elem/s (fused value + gradient)")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
        fig.tight_layout()
        name = f"{stem}-threads.png" if family == "elementwise" else f"{stem}-rows-threads.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        files.append(name)

    # 2. speed-up against PyTorch, per loss
    withsp = [e for e in fl if "torch" in e.get("speedup", {})]
    if withsp:
        labels = sorted({_nm(e) + (f" {_shape(e)}" if e["family"] == "multiclass" else "")
                         for e in withsp})
        series = sorted({(e["dtype"], e["threads"]) for e in withsp})
        fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(labels) * len(series) / 2), 5))
        w = 0.8 / len(series)
        for i, (dt, t) in enumerate(series):
            ys = []
            for lab in labels:
                m = [e["speedup"]["torch"] for e in withsp if e["dtype"] == dt and e["threads"] == t
                     and _nm(e) + (f" {_shape(e)}" if e["family"] == "multiclass" else "") == lab]
                ys.append(m[0] if m else 0)
            ax.bar([j + i * w for j in range(len(labels))], ys, w, label=f"{dt}, {t} thr")
        ax.axhline(1, color="k", lw=1)
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(labels))])
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("speed-up: PyTorch fwd+bwd time / fastloss time")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        name = f"{stem}-vs-torch.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        files.append(name)

    # 3. fraction of bandwidth
    fb = [e for e in fl if e.get("fraction_of_bandwidth") is not None and e["family"] == "elementwise"]
    if fb:
        losses = sorted({e["loss"] for e in fb})
        series = sorted({(e["dtype"], e["threads"]) for e in fb})
        fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(losses) * len(series) / 2), 5))
        w = 0.8 / len(series)
        for i, (dt, t) in enumerate(series):
            ys = [next((e["fraction_of_bandwidth"] for e in fb if e["loss"] == loss and
                        e["dtype"] == dt and e["threads"] == t), 0) for loss in losses]
            ax.bar([j + i * w for j in range(len(losses))], ys, w, label=f"{dt}, {t} thr")
        ax.axhline(0.7, color="r", lw=1, ls="--", label="70% target (mse, mae, huber)")
        ax.axhline(1.0, color="k", lw=1)
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(losses))])
        ax.set_xticklabels(losses, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("fraction of STREAM-triad bandwidth (same threads)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        name = f"{stem}-bandwidth.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        files.append(name)
    return files, None


#: issue 5's targets on a GPU, per family: (fraction of the device-to-device
#: copy's bandwidth, speed-up over PyTorch eager forward + backward)
CUDA_TARGETS = {"elementwise": (0.8, 2.0), "multiclass": (0.7, 2.0)}


def _plot_cuda(doc: dict, out_dir: pathlib.Path, stem: str, plt) -> list[str]:
    """The GPU's fastloss cases at the dram size, beside the targets: the
    speed-up over PyTorch and the fraction of the copy bandwidth."""
    fl = [e for e in _entries(doc) if e["backend"] == "cuda" and e["impl"] == "fastloss"
          and e["size_class"] == "dram"]
    if not fl:
        return []
    fl.sort(key=lambda e: (e["family"], _nm(e), tuple(e["shape"])))
    labels = [f"{_nm(e)} {_shape(e)}" for e in fl]
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 1.4 * len(fl)), 5))
    panels = (("speed-up: PyTorch fwd+bwd time / fastloss time", "speedup", 1),
              ("fraction of the device-to-device copy's GB/s", "fraction_of_bandwidth", 0))
    for ax, (ylabel, field, idx) in zip(axes, panels, strict=True):
        ys = [(e.get("speedup", {}).get("torch") if field == "speedup" else e.get(field)) or 0
              for e in fl]
        ax.bar(range(len(fl)), ys, color=["C0" if e["family"] == "elementwise" else "C1"
                                          for e in fl])
        for fam, (frac, speed) in CUDA_TARGETS.items():
            xs = [i for i, e in enumerate(fl) if e["family"] == fam]
            if xs:
                ax.hlines(speed if idx else frac, min(xs) - 0.4, max(xs) + 0.4, colors="r",
                          linestyles="--", label=f"{fam} target")
        if idx:
            ax.axhline(1, color="k", lw=1)
        ax.set_xticks(range(len(fl)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    gpu = doc.get("machine_info", {}).get("fastloss", {}).get("gpu") or {}
    fig.suptitle(f"fastloss on the GPU: {gpu.get('name', 'unknown')}", fontsize=10)
    fig.tight_layout()
    name = f"{stem}-cuda.png"
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
    return [name]


def write(doc: dict, out_dir, machine_name: str, notes=(), plots=True) -> list[pathlib.Path]:
    """Write throughput-<machine>.json/.md (and PNGs); returns the paths written."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"throughput-{machine_name}"
    annotate(doc)
    notes = list(notes)
    files = []
    if plots:
        files, why = plot(doc, out_dir, stem)
        if why:
            notes.append(why)
    jpath = out_dir / f"{stem}.json"
    jpath.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    mpath = out_dir / f"{stem}.md"
    mpath.write_text(markdown(doc, machine_name, files, notes) + "\n")
    return [mpath, jpath, *(out_dir / f for f in files)]
