"""mpmath oracle for the multiclass losses: value and gradient of one row.

    row_value_and_grad(name, x_row, target, **params) -> (mpf value, [mpf grads])
    row_condition(name, x_row, target, **params) -> (cond_value, [cond_grads])

x_row: the row's scores (floats, +-inf allowed); target: an int label, or a
sequence of floats (probability targets, or KL targets). The value is the
row's loss as ``reduction="none"`` reports it (weighted, undivided); the
gradient is its derivative with respect to each score. Parameters as in the
catalogue (weight, ignore_index, label_smoothing, z_loss, log_target, gamma,
alpha, margin, p).

Written from the mathematical definitions (LOSSES.md), at ``DPS`` digits,
sharing nothing with the kernels: the softmax is exp(x_j) / sum exp(x_k)
evaluated directly in mpmath (whose exponent range is unbounded), with the
conventions 0 log 0 = 0 and exp(-inf) = 0 applied explicitly.
"""

from __future__ import annotations

import numbers

import mpmath as mp

DPS = 60


def _mpf(v):
    return mp.mpf(float(v))


def _softmax_parts(x):
    """(lse, [p_j], [log p_j], [1 - p_j]) of a row, each to full relative
    precision: with M the largest logit and o = sum of e^(x_k - M) over all
    entries but one maximum, log p_j = (x_j - M) - log1p(o), and for the
    maximum 1 - p = o / (1 + o), so p next to 1 loses nothing. -inf
    entries have p = 0; +inf entries share all the mass equally."""
    c = len(x)
    pinf = [j for j, v in enumerate(x) if v == mp.inf]
    if pinf:
        p = [mp.mpf(1) / len(pinf) if v == mp.inf else mp.mpf(0) for v in x]
        logp = [mp.log(v) if v else -mp.inf for v in p]
        return mp.inf, p, logp, [1 - v for v in p]
    fin = [j for j, v in enumerate(x) if v != -mp.inf]
    if not fin:
        raise ValueError("row of all -inf logits")
    jm = max(fin, key=lambda j: x[j])
    xm = x[jm]
    e = [mp.mpf(0)] * c
    for j in fin:
        e[j] = mp.exp(x[j] - xm)
    other = mp.fsum(e[j] for j in fin if j != jm)  # sum of all but one maximum
    l1 = mp.log1p(other)
    p = [v / (1 + other) for v in e]
    logp = [(x[j] - xm) - l1 if x[j] != -mp.inf else -mp.inf for j in range(c)]
    logp[jm] = -l1
    q = [1 - v for v in p]
    q[jm] = other / (1 + other)
    return xm + l1, p, logp, q


def _xlog(t, u):
    """t * log(u) with 0 log 0 = 0 (and 0 * log of anything = 0)."""
    if t == 0:
        return mp.mpf(0)
    return t * mp.log(u)


def _ce_label(x, y, w, eps, z):
    c = len(x)
    lse, p, logp, q = _softmax_parts(x)
    wy = w[y]
    a1 = (1 - eps) * wy
    val = a1 * (-logp[y]) if a1 != 0 else mp.mpf(0)
    if eps != 0:
        val += eps / c * mp.fsum(-w[j] * logp[j] if w[j] != 0 else 0 for j in range(c))
    if z != 0:
        val += z * lse * lse
    wsum = mp.fsum(w)
    a2 = eps / c * wsum + 2 * z * lse
    g = [(a1 + a2) * p[j] - eps / c * w[j] for j in range(c)]
    g[y] = -a1 * q[y] + a2 * p[y] - eps / c * wy
    return val, g


def _ce_probs(x, t, w, eps, z):
    c = len(x)
    lse, p, logp, _ = _softmax_parts(x)
    tp = [ti * (1 - eps) + eps / c for ti in t]
    wt = [w[j] * tp[j] for j in range(c)]
    val = mp.fsum(0 if wt[j] == 0 else wt[j] * (-logp[j]) for j in range(c))
    if z != 0:
        val += z * lse * lse
    tt = mp.fsum(wt)
    g = [(tt + 2 * z * lse) * p[j] - wt[j] for j in range(c)]
    return val, g


def _focal(x, y, alpha, gamma):
    lse, p, logp, qs = _softmax_parts(x)
    py = p[y]
    nll = -logp[y]
    q = qs[y]
    ay = alpha[y]
    mod = q ** gamma if not (q == 0 and gamma == 0) else mp.mpf(1)
    val = ay * mod * nll if ay * mod != 0 else mp.mpf(0)
    # d/dx_j [-a q^g log p_y] = a (p_j - [j=y]) (q^g + g p_y q^(g-1) nll)
    if q == 0:  # lim nll / q = 1
        k = ay * mod * (1 + gamma * py)
    elif py == 0:
        k = ay * mod
    else:
        k = ay * (mod + gamma * py * q ** (gamma - 1) * nll)
    g = [k * p[j] for j in range(len(x))]
    g[y] = -k * q
    return val, g


def _margin(x, y, w, margin, pw):
    c = len(x)
    wy = w[y]
    val = mp.mpf(0)
    g = [mp.mpf(0)] * c
    for j in range(c):
        if j == y:
            continue
        h = margin - x[y] + x[j]
        if h > 0:
            val += wy * h ** pw / c
            g[j] = wy * (pw * h ** (pw - 1) if pw != 1 else 1) / c  # (+inf)^0 = 1
    g[y] = -mp.fsum(g)
    return val, g


def row_value_and_grad(name, x_row, target, **params):
    """(value, [d value / d x_j]) of one row of loss ``name``, in mpmath, at
    increasing precision until two evaluations agree (and exact zeros are
    confirmed at a high precision): ``fastloss.reference.elementwise._stable``.
    A fixed precision is not enough: margin - x_y + x_j with x_y = x_j = 1e62
    needs 63 digits."""
    from fastloss.reference.elementwise import _stable

    def at_current_precision():
        v, g = _row_at(name, x_row, target, mp.mp.dps, **params)
        return (v, *g)

    r = _stable(at_current_precision)
    return r[0], list(r[1:])


def _row_at(name, x_row, target, dps, **params):
    with mp.workdps(dps):
        x = [_mpf(v) for v in x_row]
        c = len(x)
        w = params.get("weight")
        w = [mp.mpf(1)] * c if w is None else [_mpf(v) for v in w]
        if isinstance(target, numbers.Integral):  # a class label
            y = int(target)
            if name in ("cross_entropy", "nll") and y == params.get("ignore_index", -100):
                return mp.mpf(0), [mp.mpf(0)] * c
        else:
            t = [_mpf(v) for v in target]
        if name == "cross_entropy":
            eps = _mpf(params.get("label_smoothing", 0.0))
            z = _mpf(params.get("z_loss", 0.0))
            if "t" in locals():
                return _ce_probs(x, t, w, eps, z)
            return _ce_label(x, y, w, eps, z)
        if name == "nll":
            g = [mp.mpf(0)] * c
            g[y] = -w[y]
            return (-w[y] * x[y] if w[y] != 0 else mp.mpf(0)), g
        if name == "categorical_cross_entropy":
            val = -mp.fsum(_xlog(t[j], x[j]) for j in range(c))
            g = [mp.mpf(0) if t[j] == 0 else -t[j] / x[j] if x[j] != 0 else -mp.inf
                 for j in range(c)]
            return val, g
        if name == "kl_div":
            if params.get("log_target", False):
                et = [mp.exp(v) if v != -mp.inf else mp.mpf(0) for v in t]
                val = mp.fsum(0 if et[j] == 0 else et[j] * (t[j] - x[j]) for j in range(c))
                return val, [-e for e in et]
            val = mp.fsum(0 if t[j] == 0 else t[j] * (mp.log(t[j]) - x[j]) for j in range(c))
            return val, [-v for v in t]
        if name == "softmax_focal":
            a = params.get("alpha")
            a = [mp.mpf(1)] * c if a is None else [_mpf(v) for v in a]
            return _focal(x, y, a, _mpf(params.get("gamma", 2.0)))
        if name == "multi_margin":
            return _margin(x, y, w, _mpf(params.get("margin", 1.0)), int(params.get("p", 1)))
        raise ValueError(f"no multiclass reference for {name!r}")


def _ratio(terms, total):
    """Cancellation ratio sum |terms| / |total| (>= 1): 1 when every term is
    0, inf when the terms cancel exactly to a zero total."""
    s = mp.fsum(abs(v) for v in terms)
    if s == 0:
        return 1.0
    if total == 0:
        return mp.inf
    return max(1.0, float(s / abs(total)))


def _kl_value_condition(xs, target, log_target):
    """kl_div's row value sum_j t_j (log t_j - x_j): the cancellation ratio of
    its terms t_j log t_j and -t_j x_j (large where x_j ~ log t_j); 1 with
    non-finite entries that contribute. Entries with target 0 (t_j = 0, or
    log t_j = -inf with log_target) contribute nothing (0 log 0 = 0, also
    where x_j = -inf) and are skipped: they used to make every row with a
    -inf log-probability look well conditioned (condition 1), e.g.
    x = [-inf, log 0.5, -inf, log 0.5], t = [0, 0.5, 0, 0.5], whose value
    log 0.5 - fl(log 0.5) cancels by a factor of ~6e16. Its gradient -t_j
    has no cancellation."""
    with mp.workdps(DPS):
        terms = []
        for xj, tv in zip(xs, target):
            tj = _mpf(tv)
            if mp.isnan(xj) or mp.isnan(tj):
                return 1.0
            pj = mp.exp(tj) if log_target else tj
            if pj == 0:
                continue
            if not (mp.isfinite(xj) and mp.isfinite(tj)):
                return 1.0
            terms += [pj * (tj if log_target else mp.log(tj)), -pj * xj]
        return _ratio(terms, mp.fsum(terms))


def row_condition(name, x_row, target, **params):
    """Condition numbers (floats >= 1) of a row's value and of each gradient
    component: the cancellation ratio sum |terms| / |result| of the
    gradient's defining terms (LOSSES.md, Multiclass), where they have both
    signs, and 1 elsewhere.

    cross_entropy (labels): g_j = (1 - eps) w_y (p_j - [j = y])
    + (eps/C) sum(w) p_j + 2 z lse p_j - (eps/C) w_j, whose terms are those
    four products (at j = y the first is -(1 - eps) w_y (1 - p_y));
    with probability targets: g_j = T p_j + 2 z lse p_j - w_j t'_j,
    T = sum_c w_c t'_c, t' = (1 - eps) t + eps/C. Only the signed terms can
    cancel: with neither label smoothing, z_loss nor soft targets the ratio
    is 1. kl_div's value is a sum of signed terms t_j log t_j - t_j x_j: its
    ratio is returned as the value's condition. The other values (sums of
    terms >= 0) and every other loss have condition 1 here, and so have rows with +inf or NaN entries (-inf
    logits are fine: p = 0 there).

    This is the condition number of the last subtraction, and so what a
    kernel whose terms are each accurate to ~1 ulp can promise; it is within
    a factor of about 2 of the componentwise relative condition number with
    respect to the logits and the weights/eps (whose relative perturbations
    move the two sides of the difference separately), except for rows of
    logits tiny in magnitude without weights (where only eps perturbs)."""
    c = len(x_row)
    ones = [1.0] * c
    xs = [_mpf(v) for v in x_row]
    if name == "kl_div":
        return _kl_value_condition(xs, target, params.get("log_target", False)), ones
    if (name != "cross_entropy" or any(mp.isnan(v) or v == mp.inf for v in xs)
            or all(v == -mp.inf for v in xs)):
        return 1.0, ones
    with mp.workdps(DPS):
        x = [_mpf(v) for v in x_row]
        w = params.get("weight")
        w = [mp.mpf(1)] * c if w is None else [_mpf(v) for v in w]
        eps = _mpf(params.get("label_smoothing", 0.0))
        z = _mpf(params.get("z_loss", 0.0))
        lse, p, _, q = _softmax_parts(x)
        if isinstance(target, numbers.Integral):
            y = int(target)
            if y == params.get("ignore_index", -100):
                return 1.0, ones
            a1 = (1 - eps) * w[y]
            a2 = eps / c * mp.fsum(w)
            conds = []
            for j in range(c):
                terms = [a1 * (-q[j] if j == y else p[j]), a2 * p[j], 2 * z * lse * p[j],
                         -eps / c * w[j]]
                conds.append(_ratio(terms, mp.fsum(terms)))
            return 1.0, conds
        t = [_mpf(v) for v in target]
        wt = [w[j] * (t[j] * (1 - eps) + eps / c) for j in range(c)]
        tt = mp.fsum(wt)
        conds = []
        for j in range(c):
            terms = [tt * p[j], 2 * z * lse * p[j], -wt[j]]
            conds.append(_ratio(terms, mp.fsum(terms)))
        return 1.0, conds
