"""Batch scoring of a pandas DataFrame with a fitted pipeline."""

from __future__ import annotations

import pandas as pd

from diabetes.schema import FEATURES, PREDICTION, validate_frame


def score_frame(model, frame: pd.DataFrame, source: str = "input frame") -> pd.DataFrame:
    """Validate `frame` for scoring; return it typed, every column kept, plus `prediction`."""
    scored = validate_frame(frame, source, "scoring")
    scored[PREDICTION] = model.predict(scored[list(FEATURES)]).astype("float64")
    return scored
