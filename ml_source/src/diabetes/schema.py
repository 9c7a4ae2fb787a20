"""Reading and checking data with pandas: the data contract (diabetes.contract) on a file or frame.

Every file or frame that enters training or pandas scoring goes through `check_frame` (or its
fail-fast form `validate_frame`), so a bad input fails early with one line naming the source, the
column, the value and the row, before any model work. Spark applies the same contract in
diabetes_mlops.spark_input.
"""

from __future__ import annotations

import csv
import gzip
import logging
import math
from dataclasses import dataclass, field
from os import PathLike

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from diabetes.contract import (  # noqa: F401  (the column names are part of this module's API)
    BAD_ROW_POLICIES,
    CATEGORICAL_FEATURE,
    DEFAULT_MAX_UNKNOWN_SHARE,
    FAIL,
    FEATURES,
    LINE_BREAK,
    MISSING_TEXTS,
    MODEL_VERSION,
    NUMBER_PATTERN,
    NUMERIC_FEATURES,
    OUTPUT_COLUMNS,
    PREDICTION,
    QUARANTINE,
    QUARANTINE_REASON,
    RANGES,
    RAW_RECORD,
    SCORED_AT,
    SEX_VALUES,
    TARGET,
    TRIMMED,
    DataValidationError,
    Purpose,
    check_columns,
    check_header,
    count_phrase,
    garbled_problem,
    is_blank_line,
    malformed_problem,
    sex_problem,
    sniff_text_file,
    too_many_unknown,
    unknown_share_problem,
    value_problem,
)

log = logging.getLogger(__name__)

_HEAD_BYTES = 64 * 1024
_BLOCK = 64 << 20  # pyarrow parses in blocks; a row must fit in one


@dataclass(frozen=True)
class Malformed:
    """A line that does not parse as a row of the header's fields."""

    row: int  # 1-based data row, as in "data row N" (blank lines are not rows)
    text: str
    problem: str


@dataclass
class CheckedFrame:
    """The outcome of the contract: typed valid rows and (policy quarantine) the rest."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame = field(default_factory=pd.DataFrame)
    rows_in: int = 0


def read_dataset(path: str | PathLike[str], purpose: Purpose) -> pd.DataFrame:
    """Read a CSV file and validate it for `purpose`; any broken rule is an error."""
    frame, malformed = read_csv_rows(path)
    return check_frame(frame, str(path), purpose, malformed=malformed).valid


def read_table(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a CSV file strictly, every value as text; a row that does not parse is an error."""
    frame, malformed = read_csv_rows(path)
    if malformed:
        raise _malformed_error(str(path), malformed)
    return frame


def read_csv_rows(path: str | PathLike[str]) -> tuple[pd.DataFrame, list[Malformed]]:
    """Every row of a CSV file that parses, as text, and the lines that do not.

    Strict where pandas' own reader is lenient: a row with more or fewer fields than the header,
    or a quoted value that spans lines (Spark reads lines), is reported, never shifted or padded.
    Nothing is treated as missing here: the contract decides that (contract.MISSING_TEXTS).
    """
    source = str(path)
    head = read_head(path, source)
    problem = sniff_text_file(head)
    if problem:
        raise DataValidationError(source, None, problem)
    lines = LINE_BREAK.split(head.decode("utf-8", errors="replace").removeprefix("\ufeff"))
    index = next((i for i, line in enumerate(lines) if not is_blank_line(line)), None)
    if index is None:
        raise DataValidationError(source, None, "file is empty (no header, no rows)")
    names = [name.strip(TRIMMED) for name in next(csv.reader([lines[index]]))]
    check_header(names, source)
    malformed: list[Malformed] = []

    def invalid(row) -> str:
        if is_blank_line(row.text):  # spaces, a tab, a form feed or Ctrl-Z alone: no row
            return "skip"
        number = (row.number or 0) - 1
        problem = malformed_problem(row.expected_columns, row.actual_columns)
        malformed.append(Malformed(number, row.text, problem))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=index + 1, use_threads=False, block_size=_BLOCK
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        reason = str(exc).splitlines()[0]
        if "UTF8" in reason:
            raise DataValidationError(source, None, garbled_problem(1)) from None
        if "straddl" in reason:
            problem = f"a row is longer than {_BLOCK >> 20} MB: not a valid CSV file"
            raise DataValidationError(source, None, problem) from None
        raise DataValidationError(source, None, f"not a valid CSV file: {reason}") from None
    garbled = _rows_holding(table, "\ufffd")
    if garbled.any():
        raise DataValidationError(source, None, garbled_problem(int(garbled.sum())))
    spans = _rows_holding(table, r"[\r\n]")
    if spans.any():
        rows = np.flatnonzero(spans)
        malformed += [
            Malformed(int(r) + 1, "", "a quoted value spans lines (one row per line)") for r in rows
        ]
        table = table.filter(pa.array(~spans))
    malformed.sort(key=lambda m: m.row)
    return table.to_pandas(), malformed


def read_head(path: str | PathLike[str], source: str) -> bytes:
    """The first bytes of a file (decompressed when it is named .gz), enough to sniff what it
    is; DataValidationError when it cannot be read."""
    try:
        if source.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                return stream.read(_HEAD_BYTES)
        with open(path, "rb") as stream:
            return stream.read(_HEAD_BYTES)
    except gzip.BadGzipFile:
        raise DataValidationError(source, None, "is named .gz but is not gzip-compressed") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DataValidationError(source, None, f"cannot read file: {reason}") from None


def _rows_holding(table: pa.Table, pattern: str) -> np.ndarray:
    found = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        match = pc.match_substring_regex(column, pattern)
        found |= np.asarray(match.to_numpy(zero_copy_only=False), dtype=bool)
    return found


def _malformed_error(source: str, malformed: list[Malformed]) -> DataValidationError:
    first = malformed[0]
    text = f": {first.text[:120]!r}" if first.text else ""
    return DataValidationError(
        source,
        None,
        f"data row {first.row}: {first.problem} ({count_phrase(len(malformed))}){text}",
    )


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
        raise _malformed_error(source, malformed)

    out = frame.copy()
    reasons = pd.Series(None, index=frame.index, dtype=object)
    numeric = NUMERIC_FEATURES + ((TARGET,) if purpose == "training" else ())
    for column in numeric:
        numbers, problems = _numbers(frame[column], source, column)
        if problems.notna().any():
            if not quarantine:
                raise _first_problem(source, column, problems)
            reasons = reasons.fillna(f"{column}: " + problems)
        out[column] = numbers
    sex, unknown = _sex(frame[CATEGORICAL_FEATURE])
    out[CATEGORICAL_FEATURE] = sex
    if unknown.any():
        problems = pd.Series(None, index=frame.index, dtype=object)
        problems[unknown] = sex[unknown].map(sex_problem)
        if purpose == "training":
            raise _first_problem(source, CATEGORICAL_FEATURE, problems)
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
            raise _first_problem(source, column, problems)
        columns = dict(zip(NUMERIC_FEATURES, values.T, strict=True))
    else:
        columns = {}
        for column in NUMERIC_FEATURES:
            numbers, problems = _numbers(frame[column].reset_index(drop=True), source, column)
            if problems.notna().any():
                raise _first_problem(source, column, problems)
            columns[column] = numbers.to_numpy()
    sex = [_request_sex(v) for v in frame[CATEGORICAL_FEATURE].tolist()]
    unknown = [i for i, v in enumerate(sex) if v is not None and v not in SEX_VALUES]
    if unknown:
        problems = pd.Series(None, index=range(len(sex)), dtype=object)
        problems[unknown] = [sex_problem(sex[i]) for i in unknown]
        raise _first_problem(source, CATEGORICAL_FEATURE, problems)
    columns[CATEGORICAL_FEATURE] = np.array(sex, dtype=object)
    return pd.DataFrame({c: columns[c] for c in FEATURES})


def _request_sex(value: object) -> object:
    """A SEX value as `_sex` reads it, one at a time (requests are short): trimmed text, None for
    missing; anything else is returned as is, to be reported."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip(TRIMMED)
        return None if text.lower() in MISSING_TEXTS else text
    return value


_LOW = np.array([RANGES[c].low for c in NUMERIC_FEATURES])
_HIGH = np.array([RANGES[c].high for c in NUMERIC_FEATURES])


def _numbers(values: pd.Series, source: str, column: str) -> tuple[pd.Series, pd.Series]:
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
        given = ~trimmed.str.lower().isin(MISSING_TEXTS)
        trimmed = trimmed[given]
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
    missing = text.isna() | text.map(lambda v: isinstance(v, str) and v.lower() in MISSING_TEXTS)
    text = text.where(~missing, np.nan)
    return text, text.notna() & ~text.isin(SEX_VALUES)


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


def _first_problem(source: str, column: str, problems: pd.Series) -> DataValidationError:
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
