"""Batch scoring of a pandas DataFrame with a fitted pipeline."""

from __future__ import annotations

import pandas as pd

from diabetes.batch_check import validate_frame
from diabetes.contract import FEATURES, PREDICTION

# Two engines computing one model (scikit-learn, the linear form in numpy or Spark, a scoring
# server) agree to this absolute difference: float64 sums in another order differ by ~1e-13.
PREDICTION_TOLERANCE = 1e-9


def same_prediction(got: float, expected: float) -> bool:
    """Whether `got` is the prediction `expected` (a NaN is never the same)."""
    return abs(got - expected) <= PREDICTION_TOLERANCE


def score_frame(model, frame: pd.DataFrame, source: str = "input frame") -> pd.DataFrame:
    """Validate `frame` for scoring; return it typed, every column kept, plus `prediction`."""
    return add_predictions(model, validate_frame(frame, source, "scoring"))


def add_predictions(model, valid: pd.DataFrame) -> pd.DataFrame:
    """A validated frame (diabetes.batch_check.check_frame) with its `prediction` column added."""
    scored = valid.copy()
    scored[PREDICTION] = model.predict(scored[list(FEATURES)]).astype("float64")
    return scored
