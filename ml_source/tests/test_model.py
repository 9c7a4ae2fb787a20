import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from diabetes.batch_check import validate_frame
from diabetes.contract import FEATURES, NUMERIC_FEATURES, TARGET, DataValidationError
from diabetes.evaluation import (
    evaluate,
    feature_statistics,
    feature_statistics_html,
    mean_baseline,
    predicted_vs_actual_plot,
    regression_metrics,
    residuals_plot,
)
from diabetes.scoring import score_frame
from diabetes.training import (
    DEFAULT_ALPHAS,
    TrainingConfig,
    row_fingerprints,
    split_holdout,
    train_model,
)


def test_holdout_r2_on_the_shipped_data_is_at_least_040(trained):
    assert trained.metrics["r2"] >= 0.40
    assert set(trained.metrics) == {"rmse", "mae", "r2"}


def test_every_cv_candidate_is_returned_and_the_best_is_chosen(trained):
    cv = trained.cv_results
    assert cv["alpha"].tolist() == list(DEFAULT_ALPHAS)
    assert trained.alpha == cv.loc[cv["cv_rmse_mean"].idxmin(), "alpha"]
    assert (cv["cv_rmse_std"] > 0).all()


def test_split_and_training_are_deterministic(raw_frame, trained):
    again = train_model(raw_frame)
    assert again.metrics == trained.metrics
    pd.testing.assert_frame_equal(again.holdout, trained.holdout)
    train, holdout = split_holdout(raw_frame, 0.2, 42)
    assert len(train) + len(holdout) == len(raw_frame) and len(holdout) == 89


def test_imputation_means_are_learned_at_training_time(trained):
    imputer = trained.model.named_steps["features"].named_transformers_["numeric"]["impute"]
    np.testing.assert_allclose(
        imputer.statistics_, trained.train[list(NUMERIC_FEATURES)].mean().to_numpy()
    )
    # A one-row batch with a missing BMI is scored with the training mean, not its own.
    row = trained.holdout[list(FEATURES)].head(1).copy()
    missing, filled = row.copy(), row.copy()
    missing["BMI"] = np.nan
    filled["BMI"] = trained.train["BMI"].mean()
    assert trained.model.predict(missing)[0] == pytest.approx(trained.model.predict(filled)[0])


def test_unknown_sex_at_scoring_is_encoded_as_neither(trained):
    row = trained.holdout[list(FEATURES)].head(1).copy()
    row["SEX"] = "Unknown"
    prediction = trained.model.predict(row)[0]
    assert np.isfinite(prediction)
    onehot = trained.model.named_steps["features"].transform(row)[0, -2:]
    assert onehot.tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alphas": ()}, "alphas"),
        ({"alphas": (1.0, -1.0)}, "alphas"),
        ({"alphas": (1.0, float("inf"))}, "alphas must be positive finite"),
        ({"test_size": 1.5}, "test_size"),
        ({"cv_folds": 1}, "cv_folds"),
    ],
)
def test_bad_training_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**kwargs)


def test_too_few_rows_for_the_folds(raw_frame):
    with pytest.raises(DataValidationError, match="data.csv: 6 rows are too few: 5-fold CV"):
        train_model(raw_frame.head(6), TrainingConfig(cv_folds=5), source="data.csv")


def test_row_fingerprints_survive_a_csv_round_trip(trained):
    text = trained.holdout.to_csv(index=False)
    again = validate_frame(pd.read_csv(io.StringIO(text)), "holdout", "training")
    np.testing.assert_array_equal(row_fingerprints(again), row_fingerprints(trained.holdout))
    seen = np.isin(row_fingerprints(trained.holdout), row_fingerprints(trained.train))
    assert not seen.any()  # the split shares no rows


def test_regression_metrics_on_known_values():
    metrics = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert metrics["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert metrics["mae"] == pytest.approx(2 / 3)
    assert metrics["r2"] == pytest.approx(1 - 4 / 2)


def test_mean_baseline_has_zero_r2_and_the_model_beats_it(trained):
    baseline = mean_baseline(trained.holdout)
    assert baseline["r2"] == pytest.approx(0.0)
    assert evaluate(trained.model, trained.holdout)["rmse"] < baseline["rmse"]


def test_plots_render_to_png(trained, tmp_path):
    y = trained.holdout[TARGET]
    predicted = trained.model.predict(trained.holdout[list(FEATURES)])
    for index, figure in enumerate(
        [predicted_vs_actual_plot(y, predicted), residuals_plot(y, predicted)]
    ):
        assert isinstance(figure, Figure)
        path = tmp_path / f"{index}.png"
        figure.savefig(path)
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_feature_statistics_count_missing_values(raw_frame):
    stats = feature_statistics(raw_frame).set_index("column")
    assert stats.loc["BMI", "missing"] == raw_frame["BMI"].isna().sum() > 0
    assert stats.loc["Y", "mean"] == pytest.approx(raw_frame["Y"].mean())
    assert "Female:" in stats.loc["SEX", "values"]
    html = feature_statistics_html(raw_frame, "Training <data>")
    assert html.startswith("<!DOCTYPE html>") and "Training &lt;data&gt;" in html
    assert "<table" in html and "BMI" in html


def test_score_frame_keeps_every_column_and_adds_prediction(trained):
    batch = trained.holdout.drop(columns=[TARGET]).assign(PATIENT_ID=lambda f: f.index.astype(str))
    scored = score_frame(trained.model, batch)
    assert list(scored.columns) == [*batch.columns, "prediction"]
    assert len(scored) == len(batch) and np.isfinite(scored["prediction"]).all()
    np.testing.assert_allclose(scored["prediction"], trained.model.predict(batch[list(FEATURES)]))


def test_score_frame_validates_its_input(trained):
    with pytest.raises(DataValidationError, match="'AGE'"):
        score_frame(trained.model, trained.holdout.drop(columns=["AGE"]), source="batch")
