"""The float32 lanes' row sums against exact sums (``math.fsum``).

``cpu.rowlanes._row_sum`` and ``cpu.rowlanes._target_sums`` (rows of at
least 256) and ``cpu.rowtiles._short_sum`` (rows of 32 or more) take
whole groups of 64 or 32 in lanes and then the row's last 64 or 32 with
the indices already summed taken as 0. These tests reach every remainder
kind, with terms equal to 2^64 (counted, not summed), zeros and -inf
logits, and compare with the exact sums: a term taken twice or not at all
is off by far more than the bounds in the functions' docstrings.
"""

import math

import numpy as np
import pytest

from fastloss.cpu import rowlanes, rowtiles

RNG = np.random.default_rng(20261125)
TOP = float(rowlanes._TOP)


def _terms(n):
    """float32 terms as ``exp_gap32`` makes them: in (0, 2^64], a few equal
    to 2^64 (maxima), some tiny, spread over many binades."""
    e = np.ldexp(RNG.random(n), RNG.integers(-120, 64, n)).astype(np.float32)
    e[RNG.integers(0, n, max(1, n // 50))] = TOP
    return e


def _exact(e):
    below = [float(v) for v in e if v != TOP]
    return math.fsum(below), int(np.count_nonzero(e == TOP))


def _close(got, want, rel):
    assert abs(got - want) <= rel * abs(want) + 1e-300, (got, want, (got - want) / want)


#: (sum, its lanes, the bound's constant, row lengths): ``_row_sum`` (rows
#: of ce_row32) and ``_short_sum`` (group_rows)
_LANE_SUMS = [(rowlanes._row_sum, rowlanes._SUM_LANES, 7, n)
              for n in (256, 257, 300, 319, 320, 511, 512, 777, 1000, 1024, 4099)] + \
             [(rowtiles._short_sum, rowtiles._LANES, 6, n)
              for n in (32, 33, 63, 64, 65, 100, 127, 200, 255)]


@pytest.mark.parametrize("row_sum,lanes,extra,n", _LANE_SUMS)
def test_lane_row_sums_exact(row_sum, lanes, extra, n):
    """A row's sum and count by lanes, a masked tail and a tree: within
    (n / lanes + extra) 2^-53 of the exact sum, the count exact."""
    e = _terms(n)
    s, k = row_sum(e)
    want, count = _exact(e)
    assert k == count
    _close(s, want, (n / lanes + extra) * 2.0 ** -53)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [256, 257, 300, 319, 320, 1000, 1024, 1500, 4099])
def test_target_sums_exact(n, dtype):
    """(T, S) = (sum t_j, sum t_j (m - x_j)) with zero targets, -inf logits
    under zero targets (0 log 0 = 0; a NaN if the zero were multiplied),
    and every remainder kind of the lanes' tail, for float32 targets and
    the float64 ones of weights or smoothing: within (n / 64 + 7) 2^-53 of
    the exact sums."""
    x = (3 * RNG.standard_normal(n)).astype(np.float32)
    t = RNG.random(n).astype(dtype)
    t[RNG.integers(0, n, n // 5)] = 0.0
    zeros = np.flatnonzero(t == 0.0)
    x[zeros[:3]] = -np.inf
    x[zeros[-1]] = -np.inf      # in the row's last 64 (the tail) for most n
    m = float(x.max())
    tt, sv = rowlanes._target_sums(x, t, m)
    want_t = math.fsum(float(v) for v in t)
    want_s = math.fsum(float(tv) * (m - float(xv)) for tv, xv in zip(t, x) if tv != 0.0)
    rel = (n / rowlanes._SUM_LANES + 7) * 2.0 ** -53
    _close(tt, want_t, rel)
    _close(sv, want_s, rel)


@pytest.mark.parametrize("n", [1, 2, 3, 9, 32, 63])
def test_lane_sums_skip_float64_nothing_skipped(n):
    """``_intrin.lane_sums_skip`` on float64 terms with skip NaN (nothing
    equals it; ``rowtiles.lane_rows``' smoothing sums): lane by lane the
    sum left to right, bitwise that of Python floats, +inf terms summed
    (a -inf logit under a smoothing weight), no count."""
    from numba import njit

    from fastloss.math._intrin import lane_sums_skip

    w = rowtiles.LANE_ROWS

    @njit(cache=False)
    def sums(e, n, s, k):
        lane_sums_skip(e, n, np.nan, s, k, w)

    e = RNG.standard_normal(n * w) * np.ldexp(1.0, RNG.integers(-60, 60, n * w))
    e[5] = np.inf
    s, k = np.empty(w), np.empty(w, np.float32)
    sums(e, n, s, k)
    for lane in range(w):
        want = float(e[lane])
        for v in e[lane + w::w]:
            want += float(v)
        assert s[lane] == want, lane
        assert k[lane] == 0.0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 9, 10, 32, 63])
def test_lane_sums_skip_in_order(n):
    """``_intrin.lane_sums_skip`` (``lane_rows``' per-lane sums): lane by
    lane, the float64 sum of the elements below 2^64 left to right, bitwise
    that of Python floats, and the count of those equal to 2^64; also
    with NaN terms (a NaN lane sum)."""
    from numba import njit

    from fastloss.math._intrin import lane_sums_skip

    w = rowtiles.LANE_ROWS

    @njit(cache=False)
    def sums(e, n, top, s, k):
        lane_sums_skip(e, n, top, s, k, w)

    e = _terms(n * w)
    e[3] = np.nan
    s, k = np.empty(w), np.empty(w, np.float32)
    sums(e, n, rowlanes._TOP, s, k)
    for lane in range(w):
        col = e[lane::w]
        want = 0.0 if col[0] == TOP else float(col[0])
        for v in col[1:]:
            want += 0.0 if v == TOP else float(v)
        if lane == 3:
            assert np.isnan(s[lane])
        else:
            assert s[lane] == want
        assert k[lane] == np.count_nonzero(col == TOP)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 8, 9, 10, 32, 63])
def test_lane_max(n):
    """``_intrin.lane_max`` (``lane_rows``' per-lane maxima, four vector
    accumulators): each lane's maximum as NumPy's, a NaN anywhere in the
    lane giving NaN, at every place of the maximum and of the NaN."""
    from numba import njit

    from fastloss.math._intrin import lane_max

    w = rowtiles.LANE_ROWS

    @njit(cache=False)
    def maxes(x, n, m):
        lane_max(x, n, m, w)

    for trial in range(4):
        x = RNG.standard_normal(n * w).astype(np.float32)
        x[RNG.integers(0, n * w, 2)] = -np.inf
        x[(trial * 7) % (n * w)] = np.nan
        m = np.empty(w, np.float32)
        maxes(x, n, m)
        want = x.reshape(n, w).max(axis=0)
        np.testing.assert_array_equal(m, want)
