"""A tiny stand-in for the mpmath oracle, used by tests/test_audit.py so the
audit's machinery is tested independently of fastloss.reference.

Same interface as fastloss.reference: ``ELEMENTWISE`` and
``value_and_grad(name, x, y, q=1.0, **params) -> (mpf, mpf)``.
"""

import mpmath as mp

ELEMENTWISE = {
    "mse": None, "binary_cross_entropy": None, "binary_cross_entropy_with_logits": None,
    "soft_margin": None,
}

_DPS = 60


def _softplus(z):
    if mp.isinf(z):
        return z if z > 0 else mp.mpf(0)
    return mp.log1p(mp.exp(z))


def _sigmoid(z):
    if mp.isinf(z):
        return mp.mpf(1) if z > 0 else mp.mpf(0)
    return 1 / (1 + mp.exp(-z))


def _xmul(a, b):
    return mp.mpf(0) if a == 0 else a * b


def value_and_grad(name, x, y, q=1.0, **params):
    with mp.workdps(_DPS):
        x, y, q = mp.mpf(x), mp.mpf(y), mp.mpf(q)
        if mp.isnan(x) or mp.isnan(y):
            return mp.nan, mp.nan
        if name == "mse":
            d = x - y
            if mp.isinf(x) and mp.isinf(y):
                return (mp.nan, mp.nan) if x == y else (mp.inf, 2 * (x - y))
            return d * d, 2 * d
        if name == "binary_cross_entropy_with_logits":
            eps = mp.mpf(params.get("label_smoothing", 0.0))
            y = y * (1 - eps) + eps / 2
            v = _xmul(1 - y, _softplus(x)) + _xmul(q * y, _softplus(-x))
            g = _xmul(1 - y, _sigmoid(x)) - _xmul(q * y, _sigmoid(-x))
            return v, g
        if name == "binary_cross_entropy":
            v = -(_xmul(y, mp.log(x)) if x > 0 else (mp.mpf(0) if y == 0 else -mp.inf))
            v -= _xmul(1 - y, mp.log1p(-x)) if x < 1 else (mp.mpf(0) if y == 1 else -mp.inf)
            if 0 < x < 1:
                g = (x - y) / (x * (1 - x))
            elif x == 0:
                g = -mp.inf if y > 0 else mp.mpf(1)
            else:
                g = mp.inf if y < 1 else mp.mpf(-1)
            return v, g
        if name == "soft_margin":
            s = y if y != 0 else mp.mpf(-1)
            z = -s * x
            return _softplus(z), -s * _sigmoid(z)
        raise KeyError(name)
