"""The drift distances from bin counts (diabetes.drift_metrics) against scipy on the raw values:
exact where the metric is one of the binned distributions, within the stated bound where it
approximates the metric of the raw values (Kolmogorov-Smirnov, Wasserstein)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from diabetes import drift_metrics as dm
from diabetes.drift import NumericProfile, quantile_edges


def binned(edges, values) -> tuple[int, ...]:
    """Counts per bin as every engine counts them: bin i holds edges[i-1] < x <= edges[i]."""
    return NumericProfile.from_cumulative(
        edges, [int(np.count_nonzero(values <= e)) for e in edges], len(values), 0
    ).counts


CASES = {
    "same distribution": (lambda r: r.normal(50, 10, 5000), lambda r: r.normal(50, 10, 3000)),
    "shifted": (lambda r: r.normal(50, 10, 5000), lambda r: r.normal(56, 10, 3000)),
    "wider": (lambda r: r.normal(50, 10, 5000), lambda r: r.normal(50, 16, 3000)),
    "coarse values": (
        lambda r: r.integers(19, 80, 4000).astype(float),
        lambda r: r.integers(25, 80, 2500).astype(float),
    ),
}


@pytest.fixture(params=list(CASES))
def samples(request):
    rng = np.random.default_rng(11)
    make_reference, make_batch = CASES[request.param]
    reference, batch = make_reference(rng), make_batch(rng)
    edges = quantile_edges(pd.Series(reference))
    return edges, reference, batch, binned(edges, reference), binned(edges, batch)


def test_binned_distances_equal_scipy_on_the_binned_values(samples):
    _, _, _, r, b = samples
    p, q = np.asarray(r) / sum(r), np.asarray(b) / sum(b)
    assert dm.js_distance(r, b) == pytest.approx(distance.jensenshannon(p, q, base=2), abs=1e-12)
    assert dm.tv_distance(r, b) == pytest.approx(0.5 * np.abs(p - q).sum(), abs=1e-15)
    assert dm.l_infinity(r, b) == pytest.approx(np.abs(p - q).max(), abs=1e-15)


def test_ks_lies_between_its_bounds_around_scipys_on_raw_values(samples):
    _, reference, batch, r, b = samples
    raw = stats.ks_2samp(reference, batch).statistic
    low, high = dm.ks_statistic(r, b), dm.ks_upper_bound(r, b)
    assert low - 1e-12 <= raw <= high + 1e-12
    widest = max(max(r) / sum(r), max(b) / sum(b))
    assert high - low <= widest + 1e-12  # the bound the bins give


def test_wasserstein_is_within_its_error_bound_of_scipys_on_raw_values(samples):
    edges, reference, batch, r, b = samples
    spread = edges[-1] - edges[0]
    raw = stats.wasserstein_distance(reference, batch) / spread
    valid = (min(reference.min(), batch.min()), max(reference.max(), batch.max()))
    approx = dm.wasserstein(edges, r, b)
    bound = dm.wasserstein_error_bound(edges, r, b, valid)
    assert abs(approx - raw) <= bound + 1e-12
    # Without a valid range, tails are unbounded (the prediction has none).
    assert dm.wasserstein_error_bound(edges, r, b) == math.inf


def test_chi_squared_equals_scipys_contingency_test():
    reference, batch = [2100, 1900, 0], [980, 1110, 14]
    statistic, p_value = dm.chi_squared(reference, batch)
    expected = stats.chi2_contingency(np.array([reference, batch]), correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_every_distance_is_exactly_zero_for_a_batch_equal_to_the_reference():
    counts = (3, 0, 17, 40, 22, 9, 0, 1)
    edges = tuple(float(e) for e in range(len(counts) - 1))
    twice = tuple(2 * c for c in counts)  # same shares, twice the rows
    for batch in (counts, twice):
        assert dm.js_distance(counts, batch) == 0.0
        assert dm.tv_distance(counts, batch) == 0.0
        assert dm.l_infinity(counts, batch) == 0.0
        assert dm.ks_statistic(counts, batch) == 0.0
        assert dm.wasserstein(edges, counts, batch) == 0.0
        assert dm.chi_squared(counts, batch) == (0.0, 1.0)


def test_no_present_value_on_a_side_gives_nan():
    for metric in (dm.js_distance, dm.tv_distance, dm.l_infinity, dm.ks_statistic):
        assert math.isnan(metric((0, 0, 0), (1, 2, 3)))
    assert math.isnan(dm.wasserstein((1.0, 2.0), (1, 2, 3), (0, 0, 0)))
    assert all(math.isnan(v) for v in dm.chi_squared((0, 0), (4, 5)))


def test_different_bins_are_refused():
    with pytest.raises(ValueError, match="same bins"):
        dm.tv_distance((1, 2), (1, 2, 3))
