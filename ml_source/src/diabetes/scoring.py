"""Batch scoring of a pandas DataFrame with a fitted pipeline."""

from __future__ import annotations

import pandas as pd

from diabetes.contract import FEATURES, PREDICTION
from diabetes.schema import validate_frame


def score_frame(model, frame: pd.DataFrame, source: str = "input frame") -> pd.DataFrame:
    """Validate `frame` for scoring; return it typed, every column kept, plus `prediction`."""
    return add_predictions(model, validate_frame(frame, source, "scoring"))


def add_predictions(model, valid: pd.DataFrame) -> pd.DataFrame:
    """A validated frame (diabetes.schema.check_frame) with its `prediction` column added."""
    scored = valid.copy()
    scored[PREDICTION] = model.predict(scored[list(FEATURES)]).astype("float64")
    return scored
