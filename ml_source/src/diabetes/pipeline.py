"""The model: one scikit-learn Pipeline that turns raw rows into a prediction.

Imputation means, scaling and the encoding are learned at fit time and stored in the model, so a
scoring batch is never imputed with its own statistics (no train/serve skew). Only scikit-learn
classes are used, so the logged model needs no code from this package to load.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from diabetes.contract import CATEGORICAL_FEATURE, NUMERIC_FEATURES, SEX_VALUES


def build_pipeline(alpha: float = 1.0) -> Pipeline:
    """Mean-impute and scale the numbers, one-hot SEX, then Ridge.

    A missing or unknown SEX encodes as all zeros (no SEX term): None and NaN alike, which an
    imputer in front of the encoder would not treat alike.
    """
    numeric = Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())])
    categorical = OneHotEncoder(
        categories=[list(SEX_VALUES)], handle_unknown="ignore", sparse_output=False
    )
    features = ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_FEATURES)),
            ("categorical", categorical, [CATEGORICAL_FEATURE]),
        ],
        remainder="drop",
    )
    return Pipeline([("features", features), ("ridge", Ridge(alpha=alpha))])
