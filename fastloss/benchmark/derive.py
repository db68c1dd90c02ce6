"""Derived figures of a pytest-benchmark JSON document, into each
benchmark's ``extra_info``:

- ``time_s`` (minimum per call), ``time_median_s``;
- ``g_elem_s`` and ``gb_s``: elements and compulsory bytes per second (from
  the minimum; ``*_median`` from the median);
- ``bandwidth_gb_s``: the bandwidth limit measured in the same run for the
  same backend, size class and thread count (STREAM triad on the CPU,
  device-to-device copy on a GPU); ``fraction_of_bandwidth`` = gb_s / that;
  ``fraction_of_peak_bandwidth`` = gb_s / the best limit over thread counts;
  ``fraction_of_beside_triad`` = gb_s / the higher of the two triads
  measured right before and after the case (``triad_beside_gb_s``, the
  runner: mse, mae, huber in DRAM);
- ``normalized_throughput`` = g_elem_s / bandwidth_gb_s: what the regression
  gate compares (a machine that is uniformly slower, with proportionally
  lower bandwidth, gives the same figure);
- ``speedup``: {peer: peer's time / this time} for each peer measured on the
  same (backend, loss, dtype, shape, threads); NumPy is single-threaded and
  measured once, so it is matched whatever the thread count.

``annotate`` is idempotent and needs only the ``stats`` and the case fields
the runner writes (``family, loss, dtype, shape, threads, backend, impl,
size_class, elements, compulsory_bytes``).
"""

from __future__ import annotations

PEER_IMPLS = ("torch", "numpy")


def _bw_key(e: dict):
    size = e.get("size_class", "dram")
    return (e["backend"], "cache" if size == "cache" else "dram",
            e["threads"] if e["backend"] == "cpu" else 0)


def _case_key(e: dict, threads=True):
    k = (e["backend"], e["family"], e.get("name", e["loss"]), e["dtype"], tuple(e["shape"]))
    return k + ((e["threads"],) if threads else ())


def annotate(doc: dict) -> dict:
    benches = doc.get("benchmarks", [])
    for b in benches:
        e = b.setdefault("extra_info", {})
        st = b.get("stats") or {}
        tmin, tmed = st.get("min"), st.get("median")
        if not tmin or "elements" not in e:
            continue
        e["time_s"], e["time_median_s"] = tmin, tmed
        e["g_elem_s"] = e["elements"] / tmin / 1e9
        e["gb_s"] = e["compulsory_bytes"] / tmin / 1e9
        if tmed:
            e["g_elem_s_median"] = e["elements"] / tmed / 1e9
            e["gb_s_median"] = e["compulsory_bytes"] / tmed / 1e9

    limits, peaks = {}, {}
    for b in benches:
        e = b["extra_info"]
        if e.get("family") == "bandwidth" and "gb_s" in e:
            k = _bw_key(e)
            limits[k] = max(limits.get(k, 0.0), e["gb_s"])
            pk = k[:2]
            peaks[pk] = max(peaks.get(pk, 0.0), e["gb_s"])

    times = {}
    for b in benches:
        e = b["extra_info"]
        if "time_s" in e and e.get("family") != "bandwidth":
            times[(e["impl"],) + _case_key(e)] = e["time_s"]
            if e["impl"] == "numpy":
                times[("numpy",) + _case_key(e, threads=False)] = e["time_s"]

    for b in benches:
        e = b["extra_info"]
        if "gb_s" not in e:
            continue
        k = _bw_key(e)
        if k in limits:
            e["bandwidth_gb_s"] = limits[k]
            e["fraction_of_bandwidth"] = e["gb_s"] / limits[k]
            e["normalized_throughput"] = e["g_elem_s"] / limits[k]
        if k[:2] in peaks:
            e["fraction_of_peak_bandwidth"] = e["gb_s"] / peaks[k[:2]]
        if e.get("triad_beside_gb_s"):
            # the higher of the triads before and after: the lower fraction
            e["fraction_of_beside_triad"] = e["gb_s"] / max(e["triad_beside_gb_s"])
        if e.get("family") == "bandwidth":
            continue
        sp = {}
        for peer in PEER_IMPLS:
            if peer == e["impl"]:
                continue
            t = times.get((peer,) + _case_key(e))
            if t is None and peer == "numpy":
                t = times.get(("numpy",) + _case_key(e, threads=False))
            if t is not None:
                sp[peer] = t / e["time_s"]
        if e["impl"] != "fastloss":
            t = times.get(("fastloss",) + _case_key(e))
            if t is not None:
                sp["fastloss"] = t / e["time_s"]
        e["speedup"] = sp
    return doc


def fastloss_benchmarks(doc: dict):
    """The annotated extra_info of every fastloss benchmark of ``doc``."""
    return [b["extra_info"] for b in doc.get("benchmarks", [])
            if b.get("extra_info", {}).get("impl") == "fastloss"]
