"""The data contract: which columns the model needs, their types, and one validation function.

Every file or frame that enters training or scoring goes through `validate_frame`, so a bad input
fails early with one line naming the source, the column and the problem, before any model work.
"""

from __future__ import annotations

import logging
from os import PathLike
from typing import Literal

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

NUMERIC_FEATURES: tuple[str, ...] = (
    "AGE",
    "BMI",
    "BP",
    "S1",
    "S2",
    "S3",
    "S4",
    "S5",
    "S6",
)
CATEGORICAL_FEATURE = "SEX"
SEX_VALUES: tuple[str, ...] = ("Female", "Male")
FEATURES: tuple[str, ...] = ("AGE", CATEGORICAL_FEATURE) + NUMERIC_FEATURES[1:]
TARGET = "Y"

PREDICTION = "prediction"
MODEL_VERSION = "model_version"
SCORED_AT = "scored_at"
# Columns the scoring output adds; an input that already has one would be silently overwritten.
OUTPUT_COLUMNS: tuple[str, ...] = (PREDICTION, MODEL_VERSION, SCORED_AT)

Purpose = Literal["training", "scoring"]


class DataValidationError(ValueError):
    """Bad input data; the message names the source, the column (if any) and the problem."""

    def __init__(self, source: str, column: str | None, problem: str) -> None:
        self.source = source
        self.column = column
        self.problem = problem
        where = f"{source}: column '{column}'" if column else str(source)
        super().__init__(f"{where}: {problem}")


def read_dataset(path: str | PathLike[str], purpose: Purpose) -> pd.DataFrame:
    """Read a CSV file and validate it for `purpose`."""
    return validate_frame(read_table(path), str(path), purpose)


def read_table(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a CSV file as text, so type problems are reported later with the offending value."""
    source = str(path)
    try:
        raw = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataValidationError(source, None, "file is empty (no header, no rows)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DataValidationError(source, None, f"cannot read file: {reason}") from None
    except pd.errors.ParserError as exc:
        raise DataValidationError(source, None, f"not a valid CSV file: {exc}") from None
    return raw


def validate_frame(frame: pd.DataFrame, source: str, purpose: Purpose) -> pd.DataFrame:
    """Check `frame` against the schema and return a typed copy.

    Extra columns are allowed: the model ignores them and scoring passes them through to its output
    (an ID column, say). Missing values in feature columns are allowed (the model imputes them) as
    long as a column is not empty throughout.
    """
    if purpose not in ("training", "scoring"):
        raise ValueError(f"purpose must be 'training' or 'scoring', not {purpose!r}")
    if len(frame.columns) == 0:
        raise DataValidationError(source, None, "file is empty (no header, no rows)")
    if len(frame) == 0:
        raise DataValidationError(source, None, "has a header but no data rows")

    required = check_columns(list(frame.columns), source, purpose)

    out = frame.copy()
    numeric = NUMERIC_FEATURES + ((TARGET,) if purpose == "training" else ())
    for column in numeric:
        out[column] = _to_float(frame[column], source, column)
    out[CATEGORICAL_FEATURE] = _to_category(frame[CATEGORICAL_FEATURE], source, purpose)

    for column in FEATURES:
        if out[column].isna().all():
            raise DataValidationError(
                source, column, f"has no values: all {len(out)} rows are missing"
            )
    if purpose == "training":
        absent = out[TARGET].isna()
        if absent.any():
            raise DataValidationError(
                source,
                TARGET,
                f"target missing in {int(absent.sum())} rows (first: data row "
                f"{_first_row(absent)})",
            )
    extra = [c for c in frame.columns if c not in required]
    if extra:
        log.info("%s: extra columns %s are not model features", source, extra)
    return out


def check_columns(columns: list[str], source: str, purpose: Purpose) -> tuple[str, ...]:
    """Required columns present, output names not taken; returns the required columns.

    Shared by every engine that checks input (pandas here, Spark in diabetes_mlops)."""
    required = FEATURES + ((TARGET,) if purpose == "training" else ())
    missing = [c for c in required if c not in columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        noun = "column" if len(missing) == 1 else "columns"
        problem = f"required {noun} {names} missing"
        if missing == [TARGET]:
            problem = f"target column '{TARGET}' missing (training data needs it)"
        raise DataValidationError(source, None, problem)
    if purpose == "scoring":
        taken = [c for c in OUTPUT_COLUMNS if c in columns]
        if taken:
            raise DataValidationError(
                source, taken[0], "name is reserved for the scoring output; rename it"
            )
    return required


def _to_float(values: pd.Series, source: str, column: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        raise DataValidationError(source, column, "expected numbers, found booleans")
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
    else:
        text = values.astype("object").where(values.notna(), None)
        text = text.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", None)
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = text.notna() & numbers.isna()
        if bad.any():
            raise DataValidationError(
                source,
                column,
                f"non-numeric value {text[bad].iloc[0]!r} in data row {_first_row(bad)}"
                f" ({int(bad.sum())} such rows)",
            )
    infinite = np.isinf(numbers)
    if infinite.any():
        raise DataValidationError(
            source, column, f"non-finite value in data row {_first_row(infinite)}"
        )
    return numbers


def _to_category(values: pd.Series, source: str, purpose: Purpose) -> pd.Series:
    text = values.astype("object").where(values.notna(), np.nan)
    text = text.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", np.nan)
    unknown = text.notna() & ~text.isin(SEX_VALUES)
    if unknown.any():
        example = text[unknown].iloc[0]
        allowed = ", ".join(SEX_VALUES)
        if purpose == "training":
            raise DataValidationError(
                source,
                CATEGORICAL_FEATURE,
                f"unknown value {example!r} in data row {_first_row(unknown)}"
                f" (allowed: {allowed})",
            )
        log.warning(
            "%s: column '%s' has %d rows with unknown values such as %r; the model encodes"
            " them as none of %s",
            source,
            CATEGORICAL_FEATURE,
            int(unknown.sum()),
            example,
            allowed,
        )
    return text


def _first_row(mask: pd.Series) -> int:
    """1-based position of the first flagged row (data row 1 is line 2 of a CSV file)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1
