"""Distances between a batch's and the reference's distributions, computed from bin counts only.

Every engine counts a batch over the reference's bins (diabetes.drift), so every metric here is a
function of two count vectors over the same bins; none needs the data again. For a numeric column
the bins are the reference's decile cuts (the first open below, the last open above); for SEX
they are the reference's levels plus one bin for every other code. Missing values are left out
(the missing-rate change reports them). When either side has no present value, every metric is
NaN, never drift.

Exact on the binned distributions (the same numbers scipy gives on the counts):
- Jensen-Shannon distance, base 2 (0 to 1): sqrt of the mean KL divergence of each side from
  their average. Empty bins need no smoothing (the average is positive wherever a side is).
- total variation distance: half the sum of |p_i - q_i| (0 to 1).
- L-infinity distance: the largest |p_i - q_i| (0 to 1).
- chi-squared (SEX): Pearson's statistic of the 2 x k table (reference counts, batch counts) over
  the bins either side uses, and its p-value with k - 1 degrees of freedom
  (scipy.stats.chi2_contingency without continuity correction gives the same).

Approximations of the same metric on the raw values, with the bound the bins give:
- Kolmogorov-Smirnov statistic: both cumulative distributions are known exactly at every edge
  (the counts are "at or below each edge"), not between. The value reported is the largest gap at
  an edge, a lower bound of the statistic on the raw values; the statistic is at most
  ks_upper_bound, which exceeds it by at most the largest share of any one bin on either side
  (about 0.1 with decile bins).
- Wasserstein-1 distance: the integral of the gap between the two cumulative distributions,
  with the values spread evenly within each bin between two edges (exact where they are) and the
  open outer bins held at the outermost edges. It is divided by the reference's inter-decile
  range (last edge - first edge), so one threshold fits every feature. The error on the raw
  values is at most wasserstein_error_bound: the sum over bins of width x (p_i + q_i), plus, when
  the column's valid range is known (the data contract's), the outer bins' share times their
  distance to the range's end (unbounded otherwise, e.g. the prediction: only the reference's
  range between its first and last deciles is measured then).

Every distance is exactly 0 for a batch whose shares equal the reference's (PSI too: (a - e) is
0 in every bin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

JS_DISTANCE, TV_DISTANCE, L_INFINITY = "js_distance", "tv_distance", "l_infinity"
KS, WASSERSTEIN, CHI2, CHI2_PVALUE = "ks", "wasserstein", "chi2", "chi2_pvalue"


def shares(counts: Sequence[int]) -> np.ndarray:
    """Each bin's share of the total; NaN shares when the total is 0."""
    values = np.asarray(counts, dtype="float64")
    total = values.sum()
    return values / total if total else np.full(values.shape, math.nan)


def _pair(expected: Sequence[int], actual: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    if len(expected) != len(actual):
        raise ValueError(f"the same bins are needed: {len(expected)} vs {len(actual)} counts")
    return shares(expected), shares(actual)


def js_distance(expected: Sequence[int], actual: Sequence[int]) -> float:
    p, q = _pair(expected, actual)
    if np.isnan(p).any() or np.isnan(q).any():
        return math.nan
    m = (p + q) / 2
    divergence = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    return math.sqrt(max(divergence, 0.0))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    used = p > 0
    return float(np.sum(p[used] * np.log2(p[used] / m[used])))


def tv_distance(expected: Sequence[int], actual: Sequence[int]) -> float:
    p, q = _pair(expected, actual)
    return float(0.5 * np.abs(p - q).sum())


def l_infinity(expected: Sequence[int], actual: Sequence[int]) -> float:
    p, q = _pair(expected, actual)
    return float(np.abs(p - q).max())


def chi_squared(expected: Sequence[int], actual: Sequence[int]) -> tuple[float, float]:
    """(statistic, p-value) of the homogeneity test of the two count vectors; NaN when either
    side has no count or fewer than two bins are used."""
    table = np.asarray([expected, actual], dtype="float64")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return math.nan, math.nan
    expect = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expect) ** 2 / expect).sum())
    return statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1))


def _cumulative(counts: Sequence[int]) -> np.ndarray:
    """The cumulative share at each edge (len(counts) - 1 of them)."""
    return np.cumsum(shares(counts))[:-1]


def ks_statistic(expected: Sequence[int], actual: Sequence[int]) -> float:
    """The largest gap between the two cumulative distributions at an edge (a lower bound of the
    statistic on the raw values)."""
    p, q = _pair(expected, actual)
    if np.isnan(p).any() or np.isnan(q).any():
        return math.nan
    if len(p) == 1:
        return 0.0
    return float(np.abs(_cumulative(expected) - _cumulative(actual)).max())


def ks_upper_bound(expected: Sequence[int], actual: Sequence[int]) -> float:
    """The most the statistic on the raw values can be: within a bin each cumulative
    distribution lies between its values at the bin's two edges."""
    p, q = _pair(expected, actual)
    if np.isnan(p).any() or np.isnan(q).any():
        return math.nan
    f = np.concatenate([[0.0], np.cumsum(p)[:-1], [1.0]])
    g = np.concatenate([[0.0], np.cumsum(q)[:-1], [1.0]])
    return float(np.maximum(f[1:] - g[:-1], g[1:] - f[:-1]).max())


def wasserstein(edges: Sequence[float], expected: Sequence[int], actual: Sequence[int]) -> float:
    """Wasserstein-1 over the reference's edges (even spread within each bin, the outer bins at
    the outermost edges), divided by the reference's inter-decile range."""
    p, q = _pair(expected, actual)
    if np.isnan(p).any() or np.isnan(q).any() or len(edges) < 2:
        return math.nan
    gaps = _cumulative(expected) - _cumulative(actual)  # at each edge
    widths = np.diff(np.asarray(edges, dtype="float64"))
    area = sum(_area(w, a, b) for w, a, b in zip(widths, gaps[:-1], gaps[1:], strict=True))
    return float(area / (edges[-1] - edges[0]))


def _area(width: float, start: float, end: float) -> float:
    """The integral of |a line from `start` to `end`| over `width`."""
    if start * end >= 0:
        return width * (abs(start) + abs(end)) / 2
    return width * (start * start + end * end) / (2 * (abs(start) + abs(end)))


def wasserstein_error_bound(
    edges: Sequence[float],
    expected: Sequence[int],
    actual: Sequence[int],
    valid_range: tuple[float, float] | None = None,
) -> float:
    """The most `wasserstein` can differ from the same normalised distance on the raw values:
    within a bin the gap can be anything its edges allow (at most p_i + q_i), and the outer bins
    reach as far as the valid range (infinitely without one)."""
    p, q = _pair(expected, actual)
    if np.isnan(p).any() or np.isnan(q).any() or len(edges) < 2:
        return math.nan
    cuts = np.asarray(edges, dtype="float64")
    inner = float(np.sum(np.diff(cuts) * (p[1:-1] + q[1:-1])))
    if valid_range is None:
        outer = math.inf if (p[0] or q[0] or p[-1] or q[-1]) else 0.0
    else:
        low, high = valid_range
        outer = max(cuts[0] - low, 0.0) * max(p[0], q[0])
        outer += max(high - cuts[-1], 0.0) * max(p[-1], q[-1])
    return (inner + outer) / float(cuts[-1] - cuts[0])
