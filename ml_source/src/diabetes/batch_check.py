"""The data contract on a batch with pandas: every file or frame that enters training or pandas
scoring goes through `check_frame` (or its fail-fast form `validate_frame`), so a bad input fails
early with one line naming the source, the column, the value and the row, before any model work.
Spark applies the same contract in diabetes_mlops.spark.inputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from diabetes.contract import (
    BAD_ROW_POLICIES,
    CATEGORICAL_FEATURE,
    DEFAULT_MAX_UNKNOWN_SHARE,
    FAIL,
    FEATURES,
    MISSING_TEXTS,
    NUMBER_PATTERN,
    NUMERIC_FEATURES,
    QUARANTINE,
    QUARANTINE_REASON,
    RANGES,
    RAW_RECORD,
    SEX_VALUES,
    TARGET,
    TRIMMED,
    DataValidationError,
    Malformed,
    Purpose,
    check_columns,
    count_phrase,
    malformed_error,
    sex_problem,
    too_many_unknown,
    unknown_share_problem,
    value_problem,
)

log = logging.getLogger(__name__)


@dataclass
class CheckedFrame:
    """The outcome of the contract: typed valid rows and (policy quarantine) the rest."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame = field(default_factory=pd.DataFrame)
    rows_in: int = 0


def validate_frame(frame: pd.DataFrame, source: str, purpose: Purpose) -> pd.DataFrame:
    """Check `frame` against the contract and return a typed copy; any broken rule is an error.

    Extra columns are allowed: the model ignores them and scoring passes them through to its output
    (an ID column, say). Missing values in feature columns are allowed (the model imputes them) as
    long as a column is not empty throughout.
    """
    return check_frame(frame, source, purpose).valid


def check_frame(
    frame: pd.DataFrame,
    source: str,
    purpose: Purpose,
    bad_rows: str = FAIL,
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE,
    malformed: list[Malformed] | None = None,
) -> CheckedFrame:
    """Apply the data contract to a frame (text as read, or typed values).

    Policy `fail` raises at the first broken rule, in the order malformed rows, numeric columns in
    order, SEX, empty columns, missing target (Spark checks in the same order). Policy
    `quarantine` (scoring only) returns the rows that break a row rule separately, each with its
    reason; batch-level problems (missing columns, an empty column, no valid row) still fail.
    """
    if purpose not in ("training", "scoring"):
        raise ValueError(f"purpose must be 'training' or 'scoring', not {purpose!r}")
    if bad_rows not in BAD_ROW_POLICIES or (purpose == "training" and bad_rows != FAIL):
        raise ValueError(f"bad_rows must be one of {BAD_ROW_POLICIES} (fail for training)")
    malformed = malformed or []
    check_columns([str(c) for c in frame.columns], source, purpose)
    rows_in = len(frame) + len(malformed)
    if rows_in == 0:
        raise DataValidationError(source, None, "has a header but no data rows")
    quarantine = bad_rows == QUARANTINE
    if malformed and not quarantine:
        raise malformed_error(source, malformed)

    out = frame.copy()
    reasons = pd.Series(None, index=frame.index, dtype=object)
    numeric = NUMERIC_FEATURES + ((TARGET,) if purpose == "training" else ())
    for column in numeric:
        numbers, problems = parse_numbers(frame[column], source, column)
        if problems.notna().any():
            if not quarantine:
                raise first_problem(source, column, problems)
            reasons = reasons.fillna(f"{column}: " + problems)
        out[column] = numbers
    sex, unknown = _sex(frame[CATEGORICAL_FEATURE])
    out[CATEGORICAL_FEATURE] = sex
    if unknown.any():
        problems = pd.Series(None, index=frame.index, dtype=object)
        problems[unknown] = sex[unknown].map(sex_problem)
        if purpose == "training":
            raise first_problem(source, CATEGORICAL_FEATURE, problems)
        if quarantine:
            reasons = reasons.fillna(f"{CATEGORICAL_FEATURE}: " + problems)
        else:
            _check_unknown_share(sex[unknown], rows_in, max_unknown_share, source)

    bad = reasons.notna()
    valid = out.loc[~bad]
    if valid.empty:
        first = reasons[bad].iloc[0] if bad.any() else malformed[0].problem
        raise DataValidationError(
            source, None, f"all {rows_in} rows break the data contract (first: {first})"
        )
    for column in FEATURES:
        if valid[column].isna().all():
            raise DataValidationError(
                source, column, f"has no values: all {len(valid)} rows are missing"
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
    extra = [c for c in frame.columns if c not in FEATURES and c != TARGET]
    if extra:
        log.info("%s: extra columns %s are not model features", source, extra)
    quarantined = _quarantined(frame, reasons, malformed) if quarantine else pd.DataFrame()
    if len(quarantined):
        log.warning("%s: %d of %d rows quarantined", source, len(quarantined), rows_in)
    return CheckedFrame(valid.reset_index(drop=True), quarantined, rows_in)


def parse_numbers(values: pd.Series, source: str, column: str) -> tuple[pd.Series, pd.Series]:
    """(values as float64 with NaN for missing, per-row problem text or None)."""
    if pd.api.types.is_bool_dtype(values):
        raise DataValidationError(source, column, "expected numbers, found booleans")
    problems = pd.Series(None, index=values.index, dtype=object)
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
        shown = numbers
    else:
        text = values.astype("object")
        present = text.notna()
        shown = text.where(present, None)
        trimmed = shown[present].astype(str).str.strip(TRIMMED)
        trimmed = trimmed[~missing_texts(trimmed)]
        is_number = trimmed.str.fullmatch(NUMBER_PATTERN)
        numbers = pd.Series(np.nan, index=values.index, dtype="float64")
        numbers[trimmed.index[is_number]] = trimmed[is_number].astype("float64")
        not_numbers = trimmed.index[~is_number]
        problems[not_numbers] = shown[not_numbers].map(lambda v: value_problem(column, v))
    limits = RANGES[column]
    outside = numbers.notna() & ~numbers.between(limits.low, limits.high)
    if outside.any():
        problems[outside] = shown[outside].map(lambda v: value_problem(column, v))
    return numbers, problems


def _sex(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(SEX trimmed, missing texts as NaN; mask of values that are not a known category)."""
    text = values.astype("object").where(values.notna(), np.nan)
    text = text.map(lambda v: v.strip(TRIMMED) if isinstance(v, str) else v)
    is_text = text.map(lambda v: isinstance(v, str)).astype(bool)
    missing = text.isna() | (is_text & missing_texts(text.where(is_text, "")))
    text = text.where(~missing, np.nan)
    return text, text.notna() & ~text.isin(SEX_VALUES)


def missing_texts(texts: pd.Series) -> pd.Series:
    """contract.is_missing_text over a column of text, in one vectorised pass."""
    return texts.astype(str).str.strip(TRIMMED).str.lower().isin(MISSING_TEXTS)


def _check_unknown_share(unknown: pd.Series, rows: int, limit: float, source: str) -> None:
    if too_many_unknown(len(unknown), rows, limit):
        examples = unknown.astype(str).value_counts().index[:5].tolist()
        raise DataValidationError(
            source,
            CATEGORICAL_FEATURE,
            unknown_share_problem(len(unknown), rows, examples, limit),
        )
    log.warning(
        "%s: column '%s' has %d rows with unknown values such as %r; scored as none of %s",
        source,
        CATEGORICAL_FEATURE,
        len(unknown),
        unknown.iloc[0],
        ", ".join(SEX_VALUES),
    )


def first_problem(source: str, column: str, problems: pd.Series) -> DataValidationError:
    flagged = problems.notna()
    first = problems[flagged].iloc[0]
    where = f"data row {_first_row(flagged)}"
    return DataValidationError(
        source, column, f"{first} in {where} ({count_phrase(int(flagged.sum()))})"
    )


def _quarantined(
    frame: pd.DataFrame, reasons: pd.Series, malformed: list[Malformed]
) -> pd.DataFrame:
    """Bad rows as read (text) with their reason; lines that did not parse keep their raw text."""
    text = frame.astype("object").where(frame.notna(), None).astype(str).where(frame.notna(), None)
    rows = text.loc[reasons.notna()].assign(
        **{QUARANTINE_REASON: reasons[reasons.notna()], RAW_RECORD: None}
    )
    lines = pd.DataFrame(
        {
            **{c: [None] * len(malformed) for c in frame.columns},
            QUARANTINE_REASON: [m.problem for m in malformed],
            RAW_RECORD: [m.text or None for m in malformed],
        }
    )
    parts = [part for part in (rows, lines) if len(part)]
    if not parts:
        return rows.reset_index(drop=True)
    return pd.concat(parts, ignore_index=True).astype("object")


def _first_row(mask: pd.Series) -> int:
    """1-based position of the first flagged row (data row 1 is line 2 of a CSV file)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1
