"""The fitted pipeline read out as numbers: equal to the model; refused when it is not linear."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeRegressor

from diabetes.contract import CATEGORICAL_FEATURE, FEATURES, NUMERIC_FEATURES
from diabetes.linear_form import NotLinear, linear_form
from diabetes.pipeline import build_pipeline


def test_the_folded_form_predicts_what_the_model_predicts(trained):
    rng = np.random.default_rng(7)
    batch = trained.holdout[list(FEATURES)].sample(400, replace=True, random_state=7)
    batch = batch.reset_index(drop=True)
    for column in NUMERIC_FEATURES:  # gaps, as NaN, in every numeric column
        batch.loc[rng.random(len(batch)) < 0.1, column] = np.nan
    sex = rng.random(len(batch))
    batch.loc[sex < 0.1, CATEGORICAL_FEATURE] = None
    batch.loc[(sex >= 0.1) & (sex < 0.2), CATEGORICAL_FEATURE] = "Other"
    form = linear_form(trained.model)
    assert [t.column for t in form.numeric] == list(NUMERIC_FEATURES)
    assert np.abs(form.predict(batch) - trained.model.predict(batch)).max() <= 1e-9


def test_the_offset_folds_the_means_into_the_intercept(trained):
    form = linear_form(trained.model)
    at_the_means = {t.column: [t.mean] for t in form.numeric} | {CATEGORICAL_FEATURE: [None]}
    assert form.predict(pd.DataFrame(at_the_means))[0] == pytest.approx(form.intercept, abs=1e-9)
    assert form.offset == pytest.approx(
        form.intercept - sum(t.mean * t.coef / t.scale for t in form.numeric)
    )


def fitted(model, raw_frame):
    return model.fit(raw_frame[list(FEATURES)], raw_frame["Y"])


def replaced(step: str, transformer):
    """The project's pipeline with one column transformer swapped."""
    pipeline = build_pipeline()
    features: ColumnTransformer = pipeline.named_steps["features"]
    features.transformers = [
        (name, transformer if name == step else t, cols) for name, t, cols in features.transformers
    ]
    return pipeline


@pytest.mark.parametrize(
    "make, reason",
    [
        (
            lambda: Pipeline([*build_pipeline().steps[:1], ("tree", DecisionTreeRegressor())]),
            "Ridge",
        ),
        (lambda: Pipeline([("noop", "passthrough"), *build_pipeline().steps]), "2-step Pipeline"),
        (lambda: Pipeline([*build_pipeline().steps[:1], ("lasso", Lasso())]), "Ridge"),
        (
            lambda: build_pipeline().set_params(features__numeric__impute__strategy="median"),
            "by the mean",
        ),
        (
            lambda: build_pipeline().set_params(features__categorical__handle_unknown="error"),
            "ignore unknown",
        ),
        (lambda: replaced("numeric", SimpleImputer()), "not imputer\\+scaler"),
    ],
    ids=["tree", "three-steps", "lasso", "median-imputation", "strict-one-hot", "no-scaler"],
)
def test_a_pipeline_of_another_shape_is_refused(raw_frame, make, reason):
    with pytest.raises(NotLinear, match=reason):
        linear_form(fitted(make(), raw_frame))


def test_a_ridge_pipeline_refit_with_other_numbers_still_translates(raw_frame):
    model = fitted(build_pipeline(alpha=100.0), raw_frame)
    form = linear_form(model)
    frame = raw_frame[list(FEATURES)]
    assert np.abs(form.predict(frame) - model.predict(frame)).max() <= 1e-9
