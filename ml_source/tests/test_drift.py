"""Label-free drift: profiles, PSI, compare, the retrain rule, the report, the drifted samples."""

import base64
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from diabetes.contract import FEATURES, NUMERIC_FEATURES, PREDICTION, RANGES, SEX_VALUES, TARGET
from diabetes.drift import (
    BINS,
    CHI2,
    CHI2_PVALUE,
    JS_DISTANCE,
    KS,
    L_INFINITY,
    MISSING_RATE_CHANGE,
    PROFILED_CATEGORICAL,
    PROFILED_NUMERIC,
    PSI,
    PSI_EPSILON,
    TV_DISTANCE,
    UNKNOWN_SHARE,
    WASSERSTEIN,
    CategoryProfile,
    NumericProfile,
    Profile,
    ProfileError,
    Thresholds,
    category_profile,
    compare,
    drifted,
    profile_like,
    psi,
    quantile_edges,
    reference_profile,
    should_retrain,
)
from diabetes.drift_report import (
    DRIFT_COLOR,
    bin_labels,
    drift_figure,
    drift_report_html,
    short_numbers,
)
from diabetes.pipeline import build_pipeline
from diabetes.reading import read_dataset
from diabetes.sample_data import (
    DRIFTED_FILE,
    drifted_batch,
    main,
    sample_frames,
    write_drifted_batches,
)

PROFILED = (*PROFILED_NUMERIC, *PROFILED_CATEGORICAL)
SHIFTED = {"BMI", "S5", PREDICTION}  # what drifted_batch moves: two inputs and the prediction


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(raw_frame):
    """A fitted pipeline (one Ridge fit, no CV: its predictions only need to be deterministic)."""
    return build_pipeline().fit(raw_frame[list(FEATURES)], raw_frame[TARGET])


@pytest.fixture(scope="module")
def predict(model):
    return lambda frame: model.predict(frame[list(FEATURES)])


@pytest.fixture(scope="module")
def reference(raw_frame, predict) -> Profile:
    return reference_profile(raw_frame, predict(raw_frame))


@pytest.fixture(scope="module")
def scoring(ml_data) -> pd.DataFrame:
    """The shipped scoring batch, validated as scoring reads it."""
    return read_dataset(ml_data / "data_batch_input.csv", "scoring")


@pytest.fixture(scope="module")
def profile_of(reference, predict):
    return lambda frame: profile_like(reference, frame, predict(frame))


@pytest.fixture(scope="module")
def drifted_profile(scoring, profile_of) -> Profile:
    return profile_of(drifted_batch(scoring, seed=1))


@pytest.fixture(scope="module")
def drifted_metrics(reference, drifted_profile):
    return compare(reference, drifted_profile)


def flagged(metrics) -> set[tuple[str, str]]:
    """The deciding metrics over their threshold."""
    return {(m.feature, m.metric) for m in metrics if m.decides_drift}


def metric(metrics, feature: str, name: str):
    (found,) = [m for m in metrics if m.feature == feature and m.metric == name]
    return found


# --- PSI -----------------------------------------------------------------------------------------


def test_psi_of_two_bins_computed_by_hand():
    # (0.25 - 0.5) * ln(0.25 / 0.5) + (0.75 - 0.5) * ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))


def test_psi_of_three_bins_computed_by_hand_and_symmetric():
    # (0.3 - 0.2) ln(0.3 / 0.2) + 0 + (0.4 - 0.5) ln(0.4 / 0.5) = 0.1 ln 1.5 + 0.1 ln 1.25
    expected = 0.1 * math.log(1.5) + 0.1 * math.log(1.25)
    assert psi([0.2, 0.3, 0.5], [0.3, 0.3, 0.4]) == pytest.approx(expected)
    assert psi([0.3, 0.3, 0.4], [0.2, 0.3, 0.5]) == pytest.approx(expected)


def test_psi_of_identical_shares_is_zero():
    shares = [0.1, 0.2, 0.3, 0.4]
    assert psi(shares, shares) == 0.0


def test_an_empty_bin_counts_as_epsilon_so_psi_stays_finite():
    # The empty bin's share is raised to PSI_EPSILON:
    # (1 - 0.5) ln(1 / 0.5) + (eps - 0.5) ln(eps / 0.5)
    expected = 0.5 * math.log(2) + (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5)
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)
    assert math.isfinite(psi([0.0, 1.0], [1.0, 0.0]))


def test_psi_needs_the_same_number_of_bins():
    with pytest.raises(ValueError, match="same bins: 2 vs 3"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


# --- numeric profiles ----------------------------------------------------------------------------


def test_from_cumulative_turns_counts_at_or_below_each_edge_into_bin_counts():
    # 3 values <= 1, 5 <= 2, 9 present: bins (-inf, 1], (1, 2], (2, inf) hold 3, 2, 4
    profile = NumericProfile.from_cumulative([1, 2], [3, 5], present=9, missing=1)
    assert profile == NumericProfile((1.0, 2.0), (3, 2, 4), 1)
    assert (profile.present, profile.rows) == (9, 10)
    assert profile.missing_rate == pytest.approx(0.1)
    assert profile.shares == pytest.approx((3 / 9, 2 / 9, 4 / 9))


def test_from_cumulative_rejects_counts_that_decrease():
    with pytest.raises(ProfileError, match="negative"):
        NumericProfile.from_cumulative([1, 2], [5, 3], present=9, missing=0)


@pytest.mark.parametrize(
    ("edges", "counts", "missing", "problem"),
    [
        ((1.0,), (1, 2, 3), 0, "1 edges need 2 bin counts"),
        ((2.0, 1.0), (1, 1, 1), 0, "strictly increasing"),
        ((1.0, 1.0), (1, 1, 1), 0, "strictly increasing"),
        ((math.nan,), (1, 1), 0, "finite"),
        ((1.0,), (1, 1), -1, "negative"),
    ],
)
def test_numeric_profile_rejects_counts_no_engine_produces(edges, counts, missing, problem):
    with pytest.raises(ProfileError, match=problem):
        NumericProfile(edges, counts, missing)


def test_a_profile_with_nothing_present_has_zero_shares_and_rates():
    empty = NumericProfile((1.0,), (0, 0), 0)
    assert empty.shares == (0.0, 0.0)
    assert empty.missing_rate == 0.0
    assert CategoryProfile({"Female": 0, "Male": 0}, 0, 0).unknown_share == 0.0


def test_a_value_equal_to_an_edge_lands_in_the_lower_bin(reference, raw_frame, predict):
    edges = reference.numeric["BMI"].edges
    batch = raw_frame.head(3).copy()
    batch["BMI"] = [edges[0], np.nextafter(edges[0], np.inf), edges[-1]]
    counts = profile_like(reference, batch, predict(batch)).numeric["BMI"].counts
    expected = [0] * (len(edges) + 1)
    expected[0] = 1  # == first edge: the first bin, not the second
    expected[1] = 1  # just above it: the second
    expected[-2] = 1  # == last edge: the last but one, not the open top bin
    assert list(counts) == expected


def test_quantile_edges_are_the_interior_quantiles_of_the_present_values():
    # 0..100: the 1/4, 2/4, 3/4 quantiles are 25, 50, 75; a missing value changes nothing
    values = pd.Series([np.nan, *range(101)])
    assert quantile_edges(values, bins=4) == (25.0, 50.0, 75.0)


def test_quantile_edges_collapse_ties(reference):
    assert quantile_edges(pd.Series([7.0] * 20)) == (7.0,)
    # S4 takes few distinct values in the sample data: fewer edges than BINS - 1, still increasing
    s4 = reference.numeric["S4"].edges
    assert 0 < len(s4) < BINS - 1
    assert list(s4) == sorted(set(s4))


def test_an_all_missing_column_has_no_edges_and_counts_only_missing(raw_frame, predict):
    frame = raw_frame.assign(BMI=np.nan)
    assert quantile_edges(frame["BMI"]) == ()
    profile = reference_profile(frame, predict(frame)).numeric["BMI"]
    assert profile == NumericProfile((), (0,), len(frame))
    assert profile.missing_rate == 1.0


def test_the_reference_counts_every_row_of_every_profiled_column(reference, raw_frame):
    assert reference.rows == len(raw_frame)
    assert list(reference.numeric) == list(PROFILED_NUMERIC)
    assert list(reference.categorical) == list(PROFILED_CATEGORICAL)
    for name in NUMERIC_FEATURES:
        column = reference.numeric[name]
        assert column.missing == raw_frame[name].isna().sum()
        assert column.rows == len(raw_frame)
    sex = reference.categorical["SEX"]
    assert sex.counts == raw_frame["SEX"].value_counts().reindex(list(SEX_VALUES)).to_dict()


def test_category_profile_counts_levels_missing_and_unknown_codes():
    profile = category_profile(pd.Series(["Male", "Female", "M", None, "male", "Male"]))
    assert profile == CategoryProfile({"Female": 1, "Male": 2}, missing=1, unknown=2)
    assert profile.unknown_share == pytest.approx(2 / 6)
    assert profile.missing_rate == pytest.approx(1 / 6)
    assert profile.shares == pytest.approx((1 / 3, 2 / 3))


# --- stored profiles -----------------------------------------------------------------------------


def test_a_profile_survives_a_json_round_trip(reference):
    text = reference.to_json()
    assert Profile.from_json(text) == reference
    assert json.loads(text)["format"] == 1


def stored(reference, change) -> str:
    """The reference as JSON, with one change applied to its dict."""
    data = reference.to_dict()
    change(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(format=2), "format 2"),
        (lambda d: d.pop("format"), "format None"),
        (lambda d: d.pop("rows"), "KeyError"),
        (lambda d: d["numeric"]["BMI"].pop("edges"), "KeyError"),
        (lambda d: d.update(numeric=[]), "AttributeError"),
        (lambda d: d["numeric"]["BMI"]["counts"].pop(), "edges need"),
        (lambda d: d["numeric"]["BMI"]["edges"].reverse(), "strictly increasing"),
        (lambda d: d["numeric"]["BMI"].update(missing=-1), "negative"),
        (lambda d: d["numeric"]["BMI"].update(missing=2.5), "not a whole number"),
        (lambda d: d["numeric"]["BMI"].update(missing="two"), "ValueError"),
        (lambda d: d["categorical"]["SEX"].update(unknown=-3), "negative"),
        (lambda d: d.update(rows=d["rows"] + 1), "inconsistent counts: 'AGE'"),
        (lambda d: d["categorical"]["SEX"].update(unknown=4), "inconsistent counts: 'SEX'"),
    ],
)
def test_a_stored_profile_that_is_not_one_is_a_profile_error(reference, change, problem):
    with pytest.raises(ProfileError, match=problem):
        Profile.from_json(stored(reference, change))


@pytest.mark.parametrize(
    ("text", "problem"), [("{", "invalid JSON"), ("[1, 2]", "expected a JSON object")]
)
def test_text_that_is_not_a_json_object_is_a_profile_error(text, problem):
    with pytest.raises(ProfileError, match=problem):
        Profile.from_json(text)


# --- compare -------------------------------------------------------------------------------------


def test_the_sample_scoring_batch_has_not_drifted(reference, scoring, profile_of):
    metrics = compare(reference, profile_of(scoring))
    assert flagged(metrics) == set()
    assert not drifted(metrics)
    numeric = (PSI, JS_DISTANCE, TV_DISTANCE, L_INFINITY, KS, WASSERSTEIN, MISSING_RATE_CHANGE)
    categorical = (PSI, JS_DISTANCE, TV_DISTANCE, L_INFINITY, CHI2, CHI2_PVALUE,
                   MISSING_RATE_CHANGE, UNKNOWN_SHARE)  # fmt: skip
    expected_order = [(n, m) for n in PROFILED_NUMERIC for m in numeric]
    expected_order += [(n, m) for n in PROFILED_CATEGORICAL for m in categorical]
    assert [(m.feature, m.metric) for m in metrics] == expected_order


def test_the_reference_compared_with_itself_shows_no_change(reference):
    """Every distance exactly 0 (no smoothing makes identical inputs read as drift), the
    chi-squared p-value 1, and the same for a batch with the same shares and twice the rows."""
    doubled = Profile(
        2 * reference.rows,
        {n: NumericProfile(p.edges, tuple(2 * c for c in p.counts), 2 * p.missing)
         for n, p in reference.numeric.items()},
        {n: CategoryProfile({k: 2 * v for k, v in p.counts.items()}, 2 * p.missing,
                            2 * p.unknown) for n, p in reference.categorical.items()},
    )  # fmt: skip
    for batch in (reference, doubled):
        metrics = compare(reference, batch)
        assert {m.value for m in metrics if m.metric != CHI2_PVALUE} == {0.0}
        assert {m.value for m in metrics if m.metric == CHI2_PVALUE} == {1.0}
        assert not any(m.drifted for m in metrics)


def test_a_drifted_batch_shifts_bmi_s5_and_the_prediction_only(drifted_metrics):
    assert flagged(drifted_metrics) == {(name, PSI) for name in SHIFTED}
    assert drifted(drifted_metrics)
    limit = Thresholds().psi
    for name in SHIFTED:
        assert metric(drifted_metrics, name, PSI).value > limit
    for name in set(PROFILED) - SHIFTED:
        assert metric(drifted_metrics, name, PSI).value < limit, name


def test_thresholds_decide_what_counts_as_drift(reference, drifted_profile):
    lenient = compare(reference, drifted_profile, Thresholds(psi=100.0))
    assert not drifted(lenient)
    assert {m.threshold for m in lenient if m.metric == PSI} == {100.0}


def test_a_feature_missing_throughout_the_batch_drifts_by_its_missing_rate(
    reference, scoring, profile_of
):
    metrics = compare(reference, profile_of(scoring.assign(BMI=np.nan)))
    bmi_psi = metric(metrics, "BMI", PSI)
    assert math.isnan(bmi_psi.value) and not bmi_psi.drifted
    change = metric(metrics, "BMI", MISSING_RATE_CHANGE)
    assert change.value == pytest.approx(1 - reference.numeric["BMI"].missing_rate)
    assert change.drifted
    assert ("BMI", MISSING_RATE_CHANGE) in flagged(metrics)


def test_a_feature_missing_throughout_the_reference_has_no_psi(raw_frame, scoring, predict):
    frame = raw_frame.assign(S3=np.nan)
    reference = reference_profile(frame, predict(frame))
    metrics = compare(reference, profile_like(reference, scoring, predict(scoring)))
    assert math.isnan(metric(metrics, "S3", PSI).value)
    assert metric(metrics, "S3", MISSING_RATE_CHANGE).drifted


def with_unknown_sex(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    out = frame.copy()
    out.loc[: rows - 1, "SEX"] = "M"
    return out


def test_unknown_sex_codes_above_the_threshold_drift(reference, scoring, profile_of):
    rows = math.ceil(0.02 * len(scoring))  # 2 %, over the 1 % threshold
    metrics = compare(reference, profile_of(with_unknown_sex(scoring, rows)))
    unknown = metric(metrics, "SEX", UNKNOWN_SHARE)
    assert unknown.value == pytest.approx(rows / len(scoring))
    assert flagged(metrics) == {("SEX", UNKNOWN_SHARE)}


def test_a_few_unknown_sex_codes_within_the_threshold_do_not_drift(reference, scoring, profile_of):
    metrics = compare(reference, profile_of(with_unknown_sex(scoring, 2)))
    assert metric(metrics, "SEX", UNKNOWN_SHARE).value == pytest.approx(2 / len(scoring))
    assert not drifted(metrics)


def test_an_empty_batch_has_no_drift_to_measure(reference, scoring):
    empty = profile_like(reference, scoring.head(0), [])  # no rows, no predictions
    assert empty.rows == 0
    with pytest.raises(ValueError, match="empty batch"):
        compare(reference, empty)


def test_a_batch_counted_over_other_bins_or_levels_is_refused(reference, drifted_profile):
    other_bins = Profile(
        drifted_profile.rows,
        {**drifted_profile.numeric, "BMI": NumericProfile((1.0,), (drifted_profile.rows, 0), 0)},
        drifted_profile.categorical,
    )
    with pytest.raises(ValueError, match="'BMI': the batch was not counted over the reference's"):
        compare(reference, other_bins)
    sex = drifted_profile.categorical["SEX"]
    other_levels = Profile(
        drifted_profile.rows,
        drifted_profile.numeric,
        {"SEX": CategoryProfile(dict(reversed(sex.counts.items())), sex.missing, sex.unknown)},
    )
    with pytest.raises(ValueError, match="'SEX': the batch was not counted over the reference's"):
        compare(reference, other_levels)


def test_a_batch_profile_without_a_reference_column_is_refused(reference, drifted_profile):
    numeric = {k: v for k, v in drifted_profile.numeric.items() if k != "S6"}
    partial = Profile(drifted_profile.rows, numeric, drifted_profile.categorical)
    with pytest.raises(ValueError, match="'S6': the batch profile does not count this column"):
        compare(reference, partial)


# --- retraining ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recent", "needed", "window", "retrain"),
    [
        ([False, False, True], 2, 3, False),  # one noisy batch
        ([False, True, True], 2, 3, True),
        ([True, False, True], 2, 3, True),
        ([True, True, False, False, True], 2, 3, False),  # older drift is outside the window
        ([True], 2, 3, False),  # fewer batches than needed
        ([], 1, 1, False),
        ([False, True], 1, 1, True),
        ([True, True, True], 3, 3, True),
    ],
)
def test_retrain_when_enough_of_the_last_batches_drifted(recent, needed, window, retrain):
    assert should_retrain(recent, needed, window) is retrain


@pytest.mark.parametrize(("needed", "window"), [(0, 3), (4, 3), (1, 0), (-1, 2)])
def test_retrain_rule_needs_one_to_window_batches(needed, window):
    with pytest.raises(ValueError, match="1 <= needed <= window"):
        should_retrain([True, True], needed, window)


# --- the report ----------------------------------------------------------------------------------


def test_bin_labels_name_each_range_with_short_numbers():
    assert bin_labels((21.0, 22.64, 32.26)) == ["≤ 21", "21–22.6", "22.6–32.3", "> 32.3"]
    assert bin_labels((3.9703,)) == ["≤ 3.97", "> 3.97"]
    assert bin_labels(()) == ["all"]


def test_short_numbers_keep_neighbours_distinct_and_avoid_exponents():
    assert short_numbers([1.0012, 1.0034]) == ["1.001", "1.003"]
    assert short_numbers([1234.4, 0.0, -0.5, 0.01234]) == ["1234", "0", "-0.5", "0.0123"]


def test_figure_has_one_panel_per_feature_and_marks_drifted_ones(
    reference, drifted_profile, drifted_metrics
):
    fig = drift_figure(reference, drifted_profile, drifted_metrics)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == len(PROFILED) == 11
    titles = [ax.get_title(loc="left") for ax in panels]
    assert [t.split(" ")[0] for t in titles] == list(PROFILED)
    red = to_rgba(DRIFT_COLOR)
    for ax, name in zip(panels, PROFILED, strict=True):
        is_red = to_rgba(ax.spines["left"].get_edgecolor()) == red
        assert is_red is (name in SHIFTED), name
        assert ("(drifted)" in ax.get_title(loc="left")) is (name in SHIFTED)


def test_figure_panels_show_the_bins_shares_and_rates(reference, drifted_profile, drifted_metrics):
    fig = drift_figure(reference, drifted_profile, drifted_metrics)
    panels = dict(zip(PROFILED, fig.axes, strict=False))  # the grid's spare cell comes last
    bmi = panels["BMI"]
    labels = [t.get_text() for t in bmi.get_xticklabels()]
    assert labels == bin_labels(reference.numeric["BMI"].edges)
    heights = [p.get_height() for p in bmi.patches]
    shares = (*reference.numeric["BMI"].shares, *drifted_profile.numeric["BMI"].shares)
    assert heights == pytest.approx(shares)
    bmi_psi = metric(drifted_metrics, "BMI", PSI).value
    assert f"PSI {bmi_psi:.4f}" in bmi.get_title(loc="left")
    assert "missing " in bmi.get_title(loc="left")
    sex = panels["SEX"]
    assert [t.get_text() for t in sex.get_xticklabels()] == list(SEX_VALUES)
    assert "unknown 0.0% →" in sex.get_title(loc="left")


def test_a_panel_needs_the_feature_in_both_profiles(reference, drifted_profile, drifted_metrics):
    partial = Profile(drifted_profile.rows, {}, drifted_profile.categorical)
    with pytest.raises(ValueError, match="'AGE': the profile does not count this column"):
        drift_figure(reference, partial, drifted_metrics)


@pytest.fixture(scope="module")
def report(reference, drifted_profile, drifted_metrics) -> str:
    details = {"model": "diabetes_model", "version": "3", "batch": "data_batch_drifted_1.csv"}
    return drift_report_html(reference, drifted_profile, drifted_metrics, "Drift check", details)


def test_report_shows_every_feature_with_one_inline_png(report):
    for name in PROFILED:
        assert re.search(rf"<h3>{name}(:|<)", report), name
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", report)
    assert len(images) == len(PROFILED)
    assert all(base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n") for image in images)


def test_report_is_self_contained(report):
    assert report.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?:|<script|<link|@import|url\(", report)
    assert re.findall(r"\bsrc='([a-z]+):", report) == ["data"] * len(PROFILED)


def test_report_marks_the_drifted_features_and_metrics(report, drifted_metrics):
    cards = re.findall(r"<div class='feature drifted'><h3>([^<]+)</h3>", report)
    assert cards == [f"{name}: drifted (psi)" for name in PROFILED if name in SHIFTED]
    rows = re.findall(r"<tr class='drifted'><td>([^<]+)</td><td>([^<]+)</td>", report)
    assert set(rows) == flagged(drifted_metrics)
    assert "Drift detected in BMI, S5, prediction" in report
    assert report.count("<tr") == len(drifted_metrics) + 1 + 3  # metrics, header, details


def test_report_lists_the_details_and_missing_rates(report, reference, drifted_profile):
    assert "<th>model</th><td>diabetes_model</td>" in report
    assert "<th>batch</th><td>data_batch_drifted_1.csv</td>" in report
    ref, got = reference.numeric["S2"].missing_rate, drifted_profile.numeric["S2"].missing_rate
    assert f"missing {ref:.1%} → {got:.1%}" in report
    assert f"Batch of {drifted_profile.rows} rows" in report


def test_report_shows_nan_as_not_available_and_no_drift_as_such(reference, scoring, profile_of):
    batch = profile_of(scoring.assign(BMI=np.nan, SEX=None))
    metrics = compare(reference, batch)
    page = drift_report_html(reference, batch, metrics, "t")
    assert "<td>BMI</td><td>psi</td><td class='number'>n/a</td>" in page
    text = re.sub(r"base64,[^']*", "", page)  # random base64 may spell anything
    assert "nan" not in text.lower()
    stable = compare(reference, profile_of(scoring))
    assert "No drift" in drift_report_html(reference, profile_of(scoring), stable, "t")


def test_report_escapes_hostile_text(reference, drifted_profile, drifted_metrics):
    hostile = "<script>alert('x')</script>"
    page = drift_report_html(
        reference, drifted_profile, drifted_metrics, hostile, {hostile: f"a & {hostile}"}
    )
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 4
    assert "a &amp; &lt;script" in page


# --- drifted sample batches ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch_frame() -> pd.DataFrame:
    return sample_frames()[1]


def test_drifted_batch_is_deterministic_per_seed(batch_frame):
    pd.testing.assert_frame_equal(drifted_batch(batch_frame, 3), drifted_batch(batch_frame, 3))
    assert not drifted_batch(batch_frame, 3).equals(drifted_batch(batch_frame, 4))


def test_drifted_batch_resamples_rows_and_moves_only_bmi_and_s5(batch_frame):
    moved = drifted_batch(batch_frame, 5, bmi_factor=1.3, s5_shift=0.6)
    same_rows = drifted_batch(batch_frame, 5, bmi_factor=1.0, s5_shift=0.0)
    assert list(moved.columns) == list(batch_frame.columns)
    assert len(moved) == len(batch_frame)
    assert not same_rows.equals(batch_frame)  # rows drawn with replacement
    rest = [c for c in batch_frame.columns if c not in ("BMI", "S5")]
    pd.testing.assert_frame_equal(moved[rest], same_rows[rest])
    for column in ("BMI", "S5"):
        pd.testing.assert_series_equal(moved[column].isna(), same_rows[column].isna())
        assert moved[column].isna().any()  # the sample's missing values are kept
    assert moved["BMI"].mean() == pytest.approx(1.3 * same_rows["BMI"].mean(), rel=1e-3)
    assert moved["S5"].mean() == pytest.approx(same_rows["S5"].mean() + 0.6, abs=1e-4)


def test_drifted_batch_rounds_like_the_sample_data(batch_frame):
    moved = drifted_batch(batch_frame, 6)
    bmi, s5 = moved["BMI"].dropna(), moved["S5"].dropna()
    assert np.allclose(bmi * 10, np.round(bmi * 10))
    assert np.allclose(s5 * 1e4, np.round(s5 * 1e4))


@pytest.mark.parametrize(("bmi_factor", "s5_shift"), [(100.0, 50.0), (0.01, -50.0)])
def test_drifted_batch_stays_within_the_contract_ranges(batch_frame, bmi_factor, s5_shift):
    moved = drifted_batch(batch_frame, 7, bmi_factor=bmi_factor, s5_shift=s5_shift)
    for column in NUMERIC_FEATURES:
        values = moved[column].dropna()
        assert values.between(RANGES[column].low, RANGES[column].high).all(), column
    low = bmi_factor < 1
    assert (moved["BMI"].dropna() == (RANGES["BMI"].low if low else RANGES["BMI"].high)).all()


def test_written_drifted_batches_are_identical_on_every_run_and_score(tmp_path):
    first = write_drifted_batches(tmp_path / "a", count=2)
    second = write_drifted_batches(tmp_path / "b", count=2)
    assert [p.name for p in first] == [DRIFTED_FILE.format(i) for i in (1, 2)]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert first[0].read_bytes() != first[1].read_bytes()
    frame = read_dataset(first[0], "scoring")
    assert TARGET not in frame.columns and len(frame) == len(sample_frames()[1])


def test_drifted_batches_need_a_count_of_at_least_one(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        write_drifted_batches(tmp_path, count=0)


def test_main_writes_drifted_batches_on_request(tmp_path, capsys):
    assert main([str(tmp_path), "--drifted", "1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data_batch_drifted_1.csv",
        "data_batch_input.csv",
        "data_raw.csv",
    ]
    assert capsys.readouterr().out.count("wrote") == 3
