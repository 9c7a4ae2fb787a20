"""The drift-over-time chart (diabetes.drift_history): the last batches of the monitoring table
by batch time, one panel per feature, thresholds and version changes marked."""

import pandas as pd
import pytest

from diabetes.drift_history import batches_shown, history_figure, history_html, last_batches


def table(batches: int, features=("AGE", "BMI", "SEX"), version_from: int | None = None):
    rows = []
    for i in range(batches):
        for feature in features:
            for metric, value in (("psi", 0.05 * i), ("js_distance", 0.01 * i)):
                rows.append({
                    "batch_id": f"b{i}",
                    "batch_time": pd.Timestamp("2026-12-01", tz="UTC") + pd.Timedelta(days=i),
                    "model_version": 2 if version_from is not None and i >= version_from else 1,
                    "feature": feature, "metric": metric, "value": value,
                    "threshold": 0.2 if metric == "psi" else 0.1,
                    "drifted": metric == "psi" and value > 0.2,
                })  # fmt: skip
    return pd.DataFrame(rows).sample(frac=1, random_state=3)  # stored in no particular order


def test_keeps_the_last_batches_oldest_first():
    rows = last_batches(table(7), last=3)
    assert list(dict.fromkeys(rows["batch_id"])) == ["b4", "b5", "b6"]


def test_one_panel_per_feature_with_its_line_and_threshold():
    fig = history_figure(table(6, version_from=4), "psi", ["AGE", "BMI", "S5", "SEX"], last=30)
    drawn = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert [ax.get_title(loc="left") for ax in drawn] == ["AGE", "BMI", "SEX"]  # S5: no rows
    values, threshold = drawn[0].lines[0], drawn[0].lines[2]
    assert list(values.get_ydata()) == pytest.approx([0.05 * i for i in range(6)])
    assert set(threshold.get_ydata()) == {0.2}
    over = drawn[0].lines[1]
    assert list(over.get_xdata()) == [5]  # 0.25 > 0.2: the one batch over it, in red
    assert any(t.get_text() == "v2" for t in drawn[0].texts)  # where version 2 took over


def test_no_rows_of_the_metric_gives_no_figure_and_says_so():
    assert history_figure(table(2), "ks", ["AGE"]) is None
    assert "No batch" in history_html(None, "ks", 0)
    page = history_html(history_figure(table(3), "psi", ["AGE"]), "psi", batches_shown(table(3)))
    assert "psi in the last 3 batch(es)" in page
    assert page.count("data:image/png;base64,") == 1


def test_rows_without_the_needed_columns_are_named():
    with pytest.raises(ValueError, match="model_version"):
        last_batches(table(1).drop(columns=["model_version"]))


def test_batches_in_the_same_minute_get_seconds_in_their_labels():
    rows = table(3)
    rows["batch_time"] = rows["batch_id"].map(
        {f"b{i}": pd.Timestamp("2026-12-01 10:00", tz="UTC") + pd.Timedelta(seconds=5 * i)
         for i in range(3)}
    )  # fmt: skip
    ax = next(a for a in history_figure(rows, "psi", ["AGE"]).axes if a.axison)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "12-01 10:00:00", "12-01 10:00:05", "12-01 10:00:10"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "values", "threshold", "past"),
    [
        ("chi2_pvalue", [0.5, 0.001, 0.2], 0.01, [1]),  # a p-value is past it when below
        ("missing_rate_change", [0.0, -0.3, 0.05], 0.1, [1]),  # either way
        ("psi", [0.1, 0.3, 0.2], 0.2, [1]),
    ],
)
def test_the_red_points_are_those_past_the_threshold_in_the_metrics_own_sense(
    metric, values, threshold, past
):
    rows = pd.DataFrame(
        [{"batch_id": f"b{i}", "batch_time": pd.Timestamp("2026-12-01", tz="UTC")
          + pd.Timedelta(days=i), "model_version": 1, "feature": "SEX", "metric": metric,
          "value": v, "threshold": threshold} for i, v in enumerate(values)]
    )  # fmt: skip
    ax = next(a for a in history_figure(rows, metric, ["SEX"]).axes if a.axison)
    assert list(ax.lines[1].get_xdata()) == past
