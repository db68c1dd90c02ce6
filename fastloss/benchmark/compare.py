"""The regression gate: ``fastloss bench --compare BASELINE.json --fail-over 10%``.

Each fastloss benchmark's throughput is divided by the bandwidth limit
measured in the same run (``derive``: ``normalized_throughput``, G elem/s per
GB/s of STREAM triad at the same thread count and size class). A benchmark
regresses when its normalised throughput falls more than ``fail_over`` below
the baseline's. A machine that is uniformly slower, with proportionally lower
bandwidth, passes; a kernel that got slower while the triad did not, fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastloss.benchmark.derive import annotate


def parse_fraction(s: str | float) -> float:
    """"10%" -> 0.10, "0.1" -> 0.1."""
    if isinstance(s, (int, float)):
        return float(s)
    t = str(s).strip()
    v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    if not 0 <= v < 1:
        raise ValueError(f"--fail-over: must be a fraction in [0, 1) or a percentage; got {s!r}")
    return v


@dataclass
class Change:
    key: str
    baseline: float  # normalised throughput
    current: float

    @property
    def ratio(self) -> float:
        return self.current / self.baseline

    def line(self) -> str:
        return (f"{self.key}: {100 * (self.ratio - 1):+.1f}% "
                f"(normalised throughput {self.baseline:.4g} -> {self.current:.4g} "
                "G elem/s per GB/s of triad)")


@dataclass
class Result:
    fail_over: float
    regressions: list[Change] = field(default_factory=list)
    unchanged: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the baseline, not in this run
    new: list[str] = field(default_factory=list)  # in this run, not in the baseline
    unnormalised: list[str] = field(default_factory=list)  # no bandwidth measured

    @property
    def ok(self) -> bool:
        return not self.regressions

    def text(self) -> str:
        n = len(self.regressions) + len(self.unchanged) + len(self.improvements)
        out = [f"regression gate: {n} benchmarks compared, threshold -{100 * self.fail_over:g}% "
               "of throughput normalised by the same run's bandwidth"]
        if self.regressions:
            out.append(f"REGRESSED ({len(self.regressions)}):")
            out += ["  " + c.line() for c in sorted(self.regressions, key=lambda c: c.ratio)]
        if self.improvements:
            out.append(f"improved by more than {100 * self.fail_over:g}% ({len(self.improvements)}):")
            out += ["  " + c.line() for c in sorted(self.improvements, key=lambda c: -c.ratio)]
        if self.missing:
            out.append(f"in the baseline but not measured now ({len(self.missing)}): "
                       + ", ".join(self.missing[:8]) + (" ..." if len(self.missing) > 8 else ""))
        if self.unnormalised:
            out.append("not compared (no bandwidth measurement in one of the runs): "
                       + ", ".join(self.unnormalised[:8]))
        out.append("PASS" if self.ok else "FAIL: " + ", ".join(c.key for c in self.regressions))
        return "\n".join(out)


def _by_key(doc: dict, impls) -> dict:
    out = {}
    for b in doc.get("benchmarks", []):
        e = b.get("extra_info", {})
        if e.get("impl") in impls and "key" in e:
            out[e["key"]] = e
    return out


def compare(baseline: dict, current: dict, fail_over: float = 0.10,
            impls=("fastloss",)) -> Result:
    """Compare two pytest-benchmark JSON documents (see the module doc)."""
    base = _by_key(annotate(baseline), impls)
    cur = _by_key(annotate(current), impls)
    res = Result(fail_over)
    for key in sorted(base):
        if key not in cur:
            res.missing.append(key)
            continue
        b, c = base[key].get("normalized_throughput"), cur[key].get("normalized_throughput")
        if not b or not c:
            res.unnormalised.append(key)
            continue
        ch = Change(key, b, c)
        if ch.ratio < 1 - fail_over:
            res.regressions.append(ch)
        elif ch.ratio > 1 + fail_over:
            res.improvements.append(ch)
        else:
            res.unchanged.append(ch)
    res.new = sorted(set(cur) - set(base))
    return res
