"""The data contract on a real-time request: each row judged on its own, in one vectorised pass
when the numbers come typed (what a server's JSON parser gives). Every server of the logged model
runs it (diabetes_mlops.serving.served_model)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from diabetes.batch_check import first_problem, parse_numbers
from diabetes.contract import (
    CATEGORICAL_FEATURE,
    FEATURES,
    NUMERIC_FEATURES,
    RANGES,
    SEX_VALUES,
    TRIMMED,
    DataValidationError,
    check_columns,
    is_missing_text,
    sex_problem,
    value_problem,
)

_LOW = np.array([RANGES[c].low for c in NUMERIC_FEATURES])
_HIGH = np.array([RANGES[c].high for c in NUMERIC_FEATURES])


def validate_request(frame: pd.DataFrame, source: str = "request") -> pd.DataFrame:
    """Check a real-time request (one or many rows) and return its features, typed.

    Each row is judged on its own by the row rules of scoring: every feature column present,
    numbers within `RANGES`, SEX `Female`, `Male` or missing; missing values are imputed by the
    model. The batch rules do not apply: a request is its own batch, so an unknown SEX code would
    be 100 % of it, and a column missing throughout is one row's missing value. Requests are
    small and latency counts, so numbers already typed (what a server's JSON parser gives) are
    checked in one vectorised pass.
    """
    if len(frame.columns) == 0:  # what a server leaves when no name matched its signature
        names = ", ".join(f"'{c}'" for c in FEATURES)
        raise DataValidationError(
            source, None, f"required columns {names} missing (names are case-sensitive)"
        )
    check_columns([str(c) for c in frame.columns], source, "scoring")
    if frame.empty:
        raise DataValidationError(source, None, "has no rows")
    numeric = [frame[c] for c in NUMERIC_FEATURES]
    if all(series.dtype.kind in "fiu" for series in numeric):
        values = np.column_stack([series.to_numpy(dtype="float64") for series in numeric])
        outside = ~np.isnan(values) & ~((values >= _LOW) & (values <= _HIGH))
        if outside.any():
            index = int(np.flatnonzero(outside.any(axis=0))[0])
            column = NUMERIC_FEATURES[index]
            problems = pd.Series(None, index=range(len(values)), dtype=object)
            flagged = outside[:, index]
            problems[flagged] = [value_problem(column, v) for v in values[flagged, index]]
            raise first_problem(source, column, problems)
        columns = dict(zip(NUMERIC_FEATURES, values.T, strict=True))
    else:
        columns = {}
        for column in NUMERIC_FEATURES:
            numbers, problems = parse_numbers(frame[column].reset_index(drop=True), source, column)
            if problems.notna().any():
                raise first_problem(source, column, problems)
            columns[column] = numbers.to_numpy()
    sex = [_request_sex(v) for v in frame[CATEGORICAL_FEATURE].tolist()]
    unknown = [i for i, v in enumerate(sex) if v is not None and v not in SEX_VALUES]
    if unknown:
        problems = pd.Series(None, index=range(len(sex)), dtype=object)
        problems[unknown] = [sex_problem(sex[i]) for i in unknown]
        raise first_problem(source, CATEGORICAL_FEATURE, problems)
    columns[CATEGORICAL_FEATURE] = np.array(sex, dtype=object)
    return pd.DataFrame({c: columns[c] for c in FEATURES})


def _request_sex(value: object) -> object:
    """A SEX value as `_sex` reads it, one at a time (requests are short): trimmed text, None for
    missing; anything else is returned as is, to be reported."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return None if is_missing_text(value) else value.strip(TRIMMED)
    return value
