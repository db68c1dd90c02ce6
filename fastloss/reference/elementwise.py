"""mpmath oracle for the elementwise losses: value and derivative of one element.

    value_and_grad(name, x, y, q=1.0, **params) -> (mpf value, mpf d value/dx)
    condition(name, x, y, q=1.0, **params) -> (cond_value, cond_grad)
    rmse(xs, ys) -> (mpf value, [mpf grads])

Written from the mathematical definitions of LOSSES.md, sharing nothing with
the kernels (no import from ``fastloss.scalar``, ``fastloss.math`` or
``fastloss.cpu``). ``x``, ``y`` and ``q`` are Python floats, taken as the
exact binary numbers they are; parameters are as in the catalogue
(``q`` is the per-element ``pos_weight`` of
``binary_cross_entropy_with_logits``; elementwise ``weight`` arrays are not
the oracle's business).

Precision. Each definition is evaluated at ``DPS`` digits and again at
``DPS + 40``; when the two disagree beyond 1e-30 (relative), the precision is
doubled until they agree (``_stable``). Differences of input values are formed
exactly (``mpmath.fsub(..., exact=True)``), so a result is never lost to the
rounding of ``x - y``. Where the literal definition would need an absurd
precision (e.g. ``log(1 + e^x) - x`` at ``x = -1e308``), a mathematically
identical expression without the cancellation is evaluated instead; each such
identity is stated where it is used.

Limits. ``+-inf`` inputs give the mathematical limits of value and
derivative (``mpf('inf')`` where the loss diverges); a limit that does not
exist (``inf - inf``) is NaN; NaN in gives NaN out. ``0 log 0 = 0``
(``0`` times an infinite logarithm is ``0``).
"""

from __future__ import annotations

import math

import mpmath as mp

DPS = 60
_AGREE = mp.mpf(10) ** -30
_MAX_DPS = 4000
#: digits at which an exact-zero result is confirmed (see _stable)
_ZERO_DPS = 1200

INF = mp.inf
NAN = mp.nan


# --- helpers -------------------------------------------------------------------


def _mpf(v):
    return mp.mpf(float(v))


def _isnan(*vs):
    return any(mp.isnan(v) for v in vs)


def _sub(a, b):
    """a - b exactly (NaN for inf - inf)."""
    if mp.isinf(a) or mp.isinf(b) or mp.isnan(a) or mp.isnan(b):
        return a - b
    return mp.fsub(a, b, exact=True)


def _add(a, b):
    if mp.isinf(a) or mp.isinf(b) or mp.isnan(a) or mp.isnan(b):
        return a + b
    return mp.fadd(a, b, exact=True)


def _mul(a, b):
    """a * b exactly, with 0 * inf = 0 (the 0 log 0 = 0 convention)."""
    if mp.isnan(a) or mp.isnan(b):
        return NAN
    if a == 0 or b == 0:
        return mp.mpf(0)
    if mp.isinf(a) or mp.isinf(b):
        return a * b
    return mp.fmul(a, b, exact=True)


def _sign(d):
    if mp.isnan(d):
        return NAN
    return mp.mpf(1) if d > 0 else (mp.mpf(-1) if d < 0 else mp.mpf(0))


def _softplus(z):
    """log(1 + e^z); for z > 0 the identity z + log(1 + e^-z) (exact in
    mathematics) avoids evaluating e^z for z up to 1.8e308."""
    if mp.isinf(z):
        return z if z > 0 else mp.mpf(0)
    if z > 0:
        return z + mp.log1p(mp.exp(-z))
    return mp.log1p(mp.exp(z))


def _sigmoid(z):
    """1/(1 + e^-z) (mpmath's exponent range is unbounded: no overflow)."""
    if mp.isinf(z):
        return mp.mpf(1) if z > 0 else mp.mpf(0)
    return 1 / (1 + mp.exp(-z))


def _close(a, b):
    if _isnan(a) or _isnan(b):
        return _isnan(a) and _isnan(b)
    if mp.isinf(a) or mp.isinf(b):
        return a == b
    if a == b:
        return True
    return abs(a - b) <= _AGREE * max(abs(a), abs(b))


def _stable(f):
    """Evaluate f() (a tuple of mpf) with increasing precision until two
    evaluations agree to 30 digits; return the more precise one."""
    dps = DPS
    with mp.workdps(dps):
        prev = f()
    while True:
        dps2 = dps + 40 if dps == DPS else 2 * dps
        with mp.workdps(dps2):
            cur = f()
        if all(_close(a, b) for a, b in zip(prev, cur)):
            if any(v == 0 for v in cur) and dps2 < _ZERO_DPS:
                # an exact 0 at both precisions may be a cancellation whose
                # scale gap exceeds both (e^x - 1 at x = -3e-102): confirm
                with mp.workdps(_ZERO_DPS):
                    return f()
            return cur
        if dps2 >= _MAX_DPS:
            raise ArithmeticError(f"oracle did not converge at {dps2} digits")
        prev, dps = cur, dps2


# --- regression -------------------------------------------------------------


def _mse(x, y):
    d = _sub(x, y)
    return d * d, 2 * d


def _mae(x, y):
    d = _sub(x, y)
    return abs(d), _sign(d)


def _msle(x, y):
    # r = log(1 + x) - log(1 + y) = log((1 + x)/(1 + y)) = log1p((x - y)/(1 + y)),
    # with 1 + x and 1 + y exact
    ax, ay = _add(1, x), _add(1, y)
    if ax <= 0 or ay <= 0:
        return NAN, NAN  # outside the domain x, y > -1
    if mp.isinf(x) and mp.isinf(y):
        return NAN, NAN
    if mp.isinf(x):
        return INF, mp.mpf(0)  # r -> inf, 2 r/(1 + x) ~ 2 log(x)/x -> 0
    if mp.isinf(y):
        return INF, -INF
    if ax < ay / 2:
        # log of the exact ratio: the quotient (x - y)/(1 + y) would be
        # -1 + 2^-53/1e308 at x = -1 + 2^-53, y = 1e308, below any working
        # precision's reach of -1 (log1p would give -inf)
        r = mp.log(ax) - mp.log(ay)
    else:
        r = mp.log1p(_sub(x, y) / ay)
    return r * r, 2 * r / ax


def _huber(x, y, delta):
    d = _sub(x, y)
    a = abs(d)
    if _isnan(d):
        return NAN, NAN
    if a <= delta:
        return d * d / 2, d
    return delta * (a - delta / 2), delta * _sign(d)


def _smooth_l1(x, y, beta):
    d = _sub(x, y)
    a = abs(d)
    if _isnan(d):
        return NAN, NAN
    if beta == 0:
        return a, _sign(d)
    if a < beta:
        return d * d / (2 * beta), d / beta
    return a - beta / 2, _sign(d)


def _pseudo_huber(x, y, delta):
    d = _sub(x, y)
    if _isnan(d):
        return NAN, NAN
    if mp.isinf(d):
        return INF, delta * _sign(d)
    u = d / delta
    h = mp.sqrt(1 + u * u)
    # sqrt(1 + u^2) - 1 = u^2/(sqrt(1 + u^2) + 1)
    return delta * delta * (u * u / (h + 1)), d / h


def _log_cosh(x, y):
    d = _sub(x, y)
    if _isnan(d):
        return NAN, NAN
    if mp.isinf(d):
        return INF, _sign(d)
    a = abs(d)
    if a > 1:
        # log cosh a = a - log 2 + log(1 + e^{-2a})  (no e^a for a ~ 1e308)
        v = a - mp.log(2) + mp.log1p(mp.exp(-2 * a))
    else:
        # log cosh d = log(1 + (cosh d - 1)) = log1p(2 sinh^2(d/2)): cosh d
        # rounds to 1 at any fixed precision once d^2 is below it
        v = mp.log1p(2 * mp.sinh(d / 2) ** 2)
    return v, mp.tanh(d)


def _quantile(x, y, tau):
    r = _sub(y, x)
    if _isnan(r):
        return NAN, NAN
    v = max(tau * r, (tau - 1) * r)
    g = -tau if r > 0 else 1 - tau
    return v, mp.mpf(g)


def _poisson_nll(x, y, log_input):
    if _isnan(x, y):
        return NAN, NAN
    if log_input:
        # e^x - y x ; d/dx = e^x - y
        if x == INF:  # e^x - y x, e^x - y: no limit when y -> inf too
            return (NAN, NAN) if y == INF else (INF, INF)
        if x == -INF:
            return (INF if y > 0 else mp.mpf(0)), -y
        e = mp.exp(x)
        return e - _mul(y, x), e - y
    # x - y log x ; d/dx = 1 - y/x
    if x < 0:
        return NAN, NAN
    if x == INF:
        return (NAN, NAN) if y == INF else (INF, mp.mpf(1))
    if x == 0:
        return (INF if y > 0 else mp.mpf(0)), (-INF if y > 0 else mp.mpf(1))
    return x - _mul(y, mp.log(x)), 1 - y / x


# --- binary -------------------------------------------------------------------


def _bce(x, y):
    """-(y log x + (1 - y) log(1 - x)), 0 log 0 = 0; d/dx (x - y)/(x (1 - x))."""
    if _isnan(x, y) or x < 0 or x > 1:
        return NAN, NAN
    omx, omy = _sub(1, x), _sub(1, y)
    lx = mp.log(x) if x > 0 else -INF
    l1 = mp.log(omx) if omx > 0 else -INF
    v = -(_mul(y, lx) + _mul(omy, l1))
    if 0 < x < 1:
        g = _sub(x, y) / (x * omx)
    elif x == 0:  # (x - y)/(x (1 - x)) -> -inf if y > 0, else 1/(1 - x) -> 1
        g = -INF if y > 0 else mp.mpf(1)
    else:  # x == 1
        g = INF if y < 1 else mp.mpf(-1)
    return v, g


def _smoothed(y, eps):
    """(y', 1 - y') for y' = y (1 - eps) + eps/2, both exact."""
    if eps == 0:
        return y, _sub(1, y)
    eps = _mpf(eps)
    a = _add(_mul(y, _sub(1, eps)), eps / 2)
    b = _add(_mul(_sub(1, y), _sub(1, eps)), eps / 2)
    return a, b


def _bce_logits(x, y, w, eps):
    """(1 - y') x + (1 + (w - 1) y') softplus(-x), evaluated as the identical
    (1 - y') softplus(x) + w y' softplus(-x) (softplus(x) = x + softplus(-x)),
    which has no cancellation at x << 0; d/dx (1 - y') sigma(x) - w y' sigma(-x)."""
    if _isnan(x, y, w):
        return NAN, NAN
    yp, omy = _smoothed(y, eps)
    wy = _mul(w, yp)
    v = _mul(omy, _softplus(x)) + _mul(wy, _softplus(-x))
    g = _mul(omy, _sigmoid(x)) - _mul(wy, _sigmoid(-x))
    return v, g


def _focal(x, y, alpha, gamma):
    """alpha_t (1 - p_t)^gamma BCE(x, y), 1 - p_t = y sigma(-x) + (1 - y) sigma(x),
    alpha_t = alpha y + (1 - alpha)(1 - y) (1 without alpha).

    d/dx = alpha_t [gamma D^(gamma-1) D' BCE + D^gamma BCE'],
    D' = (1 - 2y) sigma(x) sigma(-x), BCE' = (1 - y) sigma(x) - y sigma(-x).
    gamma D^(gamma-1) D' BCE is written gamma D^gamma (D'/D) BCE (D > 0 for
    finite x)."""
    if _isnan(x, y):
        return NAN, NAN
    gamma = _mpf(gamma)
    omy = _sub(1, y)
    sp, sn = _sigmoid(x), _sigmoid(-x)
    bce = _mul(omy, _softplus(x)) + _mul(y, _softplus(-x))
    dbce = _mul(omy, sp) - _mul(y, sn)
    if mp.isinf(x):
        # D -> 0 (hard target on the right side) or a positive constant;
        # D^gamma BCE and its derivative have limits computed below.
        pass
    D = _mul(y, sn) + _mul(omy, sp)
    if gamma == 0:
        m, g = mp.mpf(1), dbce
    elif D == 0:
        # only at x = +-inf: BCE -> 0 (D = 0 means the prediction is right),
        # so value -> 0 and the derivative -> 0.
        m, g = mp.mpf(0), mp.mpf(0)
    else:
        m = D ** gamma
        dD = (1 - 2 * y) * sp * sn
        if mp.isinf(bce):
            # x = +-inf with the wrong side: D -> const > 0 and D' -> 0 like
            # e^-|x| while BCE ~ |x|: the product -> 0
            g = m * dbce
        else:
            g = m * (gamma * (dD / D) * bce + dbce)
    v = _mul(m, bce)
    if alpha is not None:
        a = _mpf(alpha)
        at = _mul(a, y) + _mul(1 - a, omy)
        v, g = _mul(at, v), _mul(at, g)
    return v, g


def _pm1(y):
    return mp.mpf(-1) if y == 0 else y


def _hinge(x, y):
    if _isnan(x, y):
        return NAN, NAN
    s = _pm1(y)
    m = _sub(1, _mul(s, x))
    return (m, -s) if m > 0 else (mp.mpf(0), mp.mpf(0))


def _squared_hinge(x, y):
    if _isnan(x, y):
        return NAN, NAN
    s = _pm1(y)
    m = _sub(1, _mul(s, x))
    r = m if m > 0 else mp.mpf(0)
    return r * r, -2 * s * r


def _soft_margin(x, y):
    if _isnan(x, y):
        return NAN, NAN
    s = _pm1(y)
    z = -_mul(s, x)
    return _softplus(z), -s * _sigmoid(z)


# --- the table ------------------------------------------------------------------

def _p(params, name, default):
    v = params.pop(name, default)
    return default if v is None and default is not None else v


def _dispatch(name, x, y, q, params):
    """Return a thunk evaluating (value, grad) at the current precision."""
    params = dict(params)
    params.pop("weight", None)
    if name == "mse":
        f = lambda: _mse(x, y)  # noqa: E731
    elif name == "mae":
        f = lambda: _mae(x, y)  # noqa: E731
    elif name == "msle":
        f = lambda: _msle(x, y)  # noqa: E731
    elif name == "huber":
        d = _mpf(_p(params, "delta", 1.0))
        f = lambda: _huber(x, y, d)  # noqa: E731
    elif name == "smooth_l1":
        b = _mpf(_p(params, "beta", 1.0))
        f = lambda: _smooth_l1(x, y, b)  # noqa: E731
    elif name == "pseudo_huber":
        d = _mpf(_p(params, "delta", 1.0))
        f = lambda: _pseudo_huber(x, y, d)  # noqa: E731
    elif name == "log_cosh":
        f = lambda: _log_cosh(x, y)  # noqa: E731
    elif name == "quantile":
        t = _mpf(_p(params, "tau", 0.5))
        f = lambda: _quantile(x, y, t)  # noqa: E731
    elif name == "poisson_nll":
        li = bool(_p(params, "log_input", True))
        f = lambda: _poisson_nll(x, y, li)  # noqa: E731
    elif name == "binary_cross_entropy":
        f = lambda: _bce(x, y)  # noqa: E731
    elif name == "binary_cross_entropy_with_logits":
        params.pop("pos_weight", None)  # per element: q
        eps = float(_p(params, "label_smoothing", 0.0))
        f = lambda: _bce_logits(x, y, q, eps)  # noqa: E731
    elif name == "sigmoid_focal":
        a = params.pop("alpha", 0.25)
        gm = float(_p(params, "gamma", 2.0))
        f = lambda: _focal(x, y, a, gm)  # noqa: E731
    elif name == "hinge":
        f = lambda: _hinge(x, y)  # noqa: E731
    elif name == "squared_hinge":
        f = lambda: _squared_hinge(x, y)  # noqa: E731
    elif name == "soft_margin":
        f = lambda: _soft_margin(x, y)  # noqa: E731
    else:
        raise KeyError(f"no elementwise reference for {name!r}")
    if params:
        raise TypeError(f"{name}: unexpected parameters {sorted(params)}")
    return f


def value_and_grad(name, x, y, q=1.0, **params):
    """Exact value and d/dx of one element of loss ``name`` (mpf, at >= 60
    digits, stable to 30 digits at least)."""
    x, y, q = _mpf(x), _mpf(y), _mpf(q)
    f = _dispatch(name, x, y, q, params)
    v, g = _stable(f)
    return mp.mpf(v), mp.mpf(g)


ELEMENTWISE = {
    n: (lambda n: (lambda x, y, q=1.0, **p: value_and_grad(n, x, y, q, **p)))(n)  # noqa: B023
    for n in (
        "mse", "mae", "msle", "huber", "smooth_l1", "pseudo_huber", "log_cosh", "quantile",
        "poisson_nll", "binary_cross_entropy", "binary_cross_entropy_with_logits",
        "sigmoid_focal", "hinge", "squared_hinge", "soft_margin",
    )
}


# --- rmse (scalar only) -------------------------------------------------------------


def rmse(xs, ys):
    """sqrt(mean (x - y)^2) and its gradient (x_i - y_i)/(n rmse) (0 where
    rmse = 0)."""
    xs = [_mpf(v) for v in xs]
    ys = [_mpf(v) for v in ys]
    n = len(xs)

    def f():
        ds = [_sub(a, b) for a, b in zip(xs, ys)]
        r = mp.sqrt(mp.fsum(d * d for d in ds) / n)
        if r == 0:
            return (r, *[mp.mpf(0)] * n)
        return (r, *[d / (n * r) for d in ds])

    out = _stable(f)
    return out[0], list(out[1:])


# --- condition numbers ----------------------------------------------------------------


def _rel_cond(terms, total):
    """Cancellation condition sum |t_i| / |sum t_i| of a signed sum."""
    s = mp.fsum(abs(t) for t in terms)
    if s == 0:
        return 1.0
    if total == 0:
        return math.inf
    return max(1.0, float(s / abs(total)))


def _input_cond(fun, args, value):
    """Componentwise relative condition number sum_i |a_i df/da_i| / |f| of
    fun(*args) with respect to its data (numerical derivative at high
    precision)."""
    if value == 0:
        return math.inf
    s = mp.mpf(0)
    for i, a in enumerate(args):
        if a == 0:
            continue

        def fi(t, i=i):
            b = list(args)
            b[i] = t
            return fun(*b)

        s += abs(a * mp.diff(fi, a))
    return max(1.0, float(s / abs(value)))


def _cond(fun, args, terms):
    """min(input condition, cancellation condition): the allowance applies
    only where the exact function is ill-conditioned in its data *and* its
    defining terms cancel."""
    with mp.workdps(80):
        total = fun(*args)
        c = _rel_cond(terms(*args), total)
        if c <= 2.0:
            return c
        return min(c, _input_cond(fun, args, total))


def condition(name, x, y, q=1.0, **params):
    """Relative condition numbers (>= 1) of the value and the derivative of
    one element, for the losses whose exact problem is ill-conditioned in
    places (a difference of large, nearly equal terms); (1, 1) elsewhere.

    Defined as min(componentwise relative condition number with respect to
    the data x, y (and pos_weight), cancellation ratio sum|terms|/|result| of
    the definition): e.g. poisson_nll's e^x - y x near its zero, or the
    gradient (1 - y) sigma(x) - w y sigma(-x) of BCE with logits near its zero
    for soft targets. Infinite or NaN points have condition 1."""
    x, y, q = _mpf(x), _mpf(y), _mpf(q)
    if not all(mp.isfinite(v) for v in (x, y, q)):
        return 1.0, 1.0
    params = {k: v for k, v in params.items() if k not in ("weight", "pos_weight")}
    with mp.workdps(80):
        if name == "poisson_nll" and params.get("log_input", True):
            cv = _cond(lambda a, b: mp.exp(a) - a * b, (x, y), lambda a, b: (mp.exp(a), a * b))
            cg = _cond(lambda a, b: mp.exp(a) - b, (x, y), lambda a, b: (mp.exp(a), b))
            return cv, cg
        if name == "poisson_nll":
            if x <= 0:
                return 1.0, 1.0
            cv = _cond(lambda a, b: a - b * mp.log(a), (x, y), lambda a, b: (a, b * mp.log(a)))
            cg = _cond(lambda a, b: 1 - b / a, (x, y), lambda a, b: (1, b / a))
            return cv, cg
        if name == "binary_cross_entropy_with_logits":
            eps = _mpf(params.get("label_smoothing", 0.0) or 0.0)

            def grad(a, b, w):
                yp = b * (1 - eps) + eps / 2
                return (1 - yp) * _sigmoid(a) - w * yp * _sigmoid(-a)

            def terms(a, b, w):
                yp = b * (1 - eps) + eps / 2
                return (1 - yp) * _sigmoid(a), w * yp * _sigmoid(-a)

            return 1.0, _cond(grad, (x, y, q), terms)
        if name == "sigmoid_focal":
            alpha = params.get("alpha", 0.25)
            gamma = params.get("gamma", 2.0)

            def grad(a, b):
                return _focal(a, b, alpha, gamma)[1]

            def terms(a, b):
                gm = _mpf(gamma)
                omy = 1 - b
                sp, sn = _sigmoid(a), _sigmoid(-a)
                D = b * sn + omy * sp
                bce = omy * _softplus(a) + b * _softplus(-a)
                m = D ** gm if gm != 0 else 1
                at = 1 if alpha is None else (_mpf(alpha) * b + (1 - _mpf(alpha)) * omy)
                t1 = at * m * gm * ((1 - 2 * b) * sp * sn / D) * bce if gm != 0 else 0
                return t1, at * m * omy * sp, at * m * b * sn

            return 1.0, _cond(grad, (x, y), terms)
    return 1.0, 1.0
