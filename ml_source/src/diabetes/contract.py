"""The data contract: what every row must satisfy, at training and at scoring, in every engine.

Declared once here and evaluated with pandas (diabetes.batch_check, diabetes.request_check) and
with Spark (diabetes_mlops.spark.inputs), which also word their errors with the helpers below, so
the two engines give the same verdict on the same file:

- **Numbers** are written as decimal numbers (`NUMBER_PATTERN`: digits, an optional fraction and
  exponent, a sign; `inf`/`infinity` are recognised only to be reported as non-finite). Anything
  else (`32,1` quoted, `1.5d`, `0x10`, `12 kg`) is not a number. Surrounding spaces are ignored.
- **Missing** is an empty field or one of `MISSING_TEXTS` (any case): `NA`, `N/A`, `NaN`, `NULL`,
  `None`. The model imputes a missing feature with its training mean.
- **Ranges**: each numeric feature (and the target) lies within physical bounds (`RANGES`). A value
  outside them (a negative age, `S1=1e308`) is a broken feed, not a patient.
- **SEX** is `Female` or `Male`, exactly. Unknown codes (`M`, `1`, `male`) are an error at
  training; at scoring they are scored as "no SEX term" while they stay a small share of the batch
  (`max_unknown_share`, default 1 %), above it the batch fails and names the codes it saw.
- **Bad rows** at scoring: policy `fail` (default) stops at the first rule broken, nothing written;
  `quarantine` writes rows that break a rule (unknown SEX included) to a side output with a
  `quarantine_reason`, scores the rest, and logs the counts.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from typing import Literal

from diabetes.errors import UserError

NUMERIC_FEATURES: tuple[str, ...] = ("AGE", "BMI", "BP", "S1", "S2", "S3", "S4", "S5", "S6")
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


class DataValidationError(UserError, ValueError):
    """Bad input data; the message names the source, the column (if any) and the problem."""

    def __init__(self, source: str, column: str | None, problem: str) -> None:
        self.source = source
        self.column = column
        self.problem = problem
        where = f"{source}: column '{column}'" if column else str(source)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Range:
    """Inclusive physical bounds of a numeric column."""

    low: float
    high: float
    unit: str

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}] ({self.unit})"


# Generous physical bounds (sample data: AGE 19-79, BMI 18-42, BP 62-133, S1 97-301, S2 42-242,
# S3 22-99, S4 2-9.1, S5 3.3-6.1, S6 58-124, Y 25-346): they catch impossible values, not
# unusual patients.
RANGES: dict[str, Range] = {
    "AGE": Range(0, 120, "years"),
    "BMI": Range(5, 150, "body mass index, kg/m2"),
    "BP": Range(20, 300, "mean blood pressure, mmHg"),
    "S1": Range(20, 2000, "total serum cholesterol, mg/dL"),
    "S2": Range(0, 2000, "low-density lipoproteins, mg/dL"),
    "S3": Range(1, 500, "high-density lipoproteins, mg/dL"),
    "S4": Range(0.1, 100, "total / HDL cholesterol ratio"),
    "S5": Range(0, 12, "log of serum triglycerides"),
    "S6": Range(10, 2000, "blood sugar, mg/dL"),
    TARGET: Range(0, 1000, "disease progression after one year"),
}
assert set(RANGES) == {*NUMERIC_FEATURES, TARGET}

# Texts that mean "no value", compared after trimming spaces, in any case.
MISSING_TEXTS: frozenset[str] = frozenset({"", "na", "n/a", "nan", "null", "none"})
# A decimal number, or an infinity (reported as non-finite). ASCII digits only; Python's
# re.fullmatch and Java's regex (Spark's rlike, anchored by the caller) read it alike.
NUMBER_PATTERN = (
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
)
_NUMBER = re.compile(NUMBER_PATTERN)
# Only spaces are trimmed (Spark's trim() does the same); a tab is part of the value.
TRIMMED = " "

FAIL, QUARANTINE = "fail", "quarantine"
BAD_ROW_POLICIES: tuple[str, ...] = (FAIL, QUARANTINE)
DEFAULT_MAX_UNKNOWN_SHARE = 0.01
QUARANTINE_REASON = "quarantine_reason"
RAW_RECORD = "raw_record"  # the raw line of a row that does not parse, in the quarantine output
QUARANTINE_COLUMNS: tuple[str, ...] = (QUARANTINE_REASON, RAW_RECORD)


# A line of nothing but control characters and spaces (Java's trim(), which Spark's CSV reader uses
# to skip empty lines) holds no row; every engine skips it.
_BLANK = "".join(chr(c) for c in range(0x21))
# Lines end at \n, \r\n or \r only (str.splitlines also breaks at a form feed, U+2028, ...).
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def is_blank_line(text: str) -> bool:
    return not text.strip(_BLANK)


def garbled_problem(rows: int) -> str:
    """Text that was not UTF-8: bytes that do not decode, or U+FFFD, the character a decoder puts
    where they were (Spark reads the file so; a U+FFFD in data means a wrong decoding upstream)."""
    return f"is not valid UTF-8 text ({count_phrase(rows)} with bytes that do not decode or U+FFFD)"


def is_missing_text(text: str) -> bool:
    return text.strip(TRIMMED).lower() in MISSING_TEXTS


def is_number_text(text: str) -> bool:
    return _NUMBER.fullmatch(text.strip(TRIMMED)) is not None


# --- problems, worded once for every engine ------------------------------------------------------


def value_problem(column: str, value: object) -> str | None:
    """Why a single value of a numeric column breaks the contract, or None when it does not.

    `value` is the text as read, or a number from a typed source; missing values are fine."""
    if value is None:
        return None
    if type(value).__name__ in ("bool", "bool_"):  # Python's, and numpy's (no subclass of it)
        return f"expected a number, found boolean {value!r}"
    if isinstance(value, str):
        if is_missing_text(value):
            return None
        if not is_number_text(value):
            return f"non-numeric value {value.strip(TRIMMED)!r}"
        number = float(value.strip(TRIMMED))
    else:
        number = float(value)  # type: ignore[arg-type]
        if math.isnan(number):
            return None
    if math.isinf(number):
        return f"non-finite value {value!r}" if isinstance(value, str) else "non-finite value"
    if number not in RANGES[column]:
        shown = value.strip(TRIMMED) if isinstance(value, str) else f"{number:g}"
        return f"value {shown} is outside the valid range {RANGES[column]}"
    return None


def sex_problem(value: str) -> str:
    return f"unknown value {value!r} (allowed: {', '.join(SEX_VALUES)})"


def malformed_problem(expected: int, found: int | None) -> str:
    fields = f"{found} fields" if found is not None else "a different number of fields"
    return f"row does not parse: {fields} where the header has {expected}"


def unknown_share_problem(unknown: int, rows: int, examples: list[str], limit: float) -> str:
    shown = ", ".join(repr(v) for v in examples)
    return (
        f"{unknown} of {rows} rows ({unknown / rows:.1%}) have unknown values such as {shown}"
        f" (allowed: {', '.join(SEX_VALUES)}; parameter max_unknown_share tolerates"
        f" {limit:.1%})"
    )


def too_many_unknown(unknown: int, rows: int, limit: float) -> bool:
    return rows > 0 and unknown / rows > limit


def count_phrase(count: int) -> str:
    return "1 such row" if count == 1 else f"{count} such rows"


# --- the header ----------------------------------------------------------------------------------


def header_fields(line: str) -> list[str]:
    """The fields of a CSV header line as every engine reads them: a byte-order mark dropped,
    RFC 4180 quoting; names are these fields trimmed of TRIMMED."""
    return next(csv.reader([line.removeprefix("\ufeff")]))


def check_header(columns: list[str], source: str) -> None:
    """Every column named, no name twice, and no two names that differ only in case.

    Names are case-sensitive, yet Spark resolves them ignoring case: `AGE` beside `age` is an
    error rather than a guess."""
    if not columns:
        raise DataValidationError(source, None, "file is empty (no header, no rows)")
    for position, name in enumerate(columns, start=1):
        if not name.strip(TRIMMED):
            raise DataValidationError(source, None, f"column {position} of the header has no name")
    seen: dict[str, int] = {}
    for position, name in enumerate(columns, start=1):
        key = name.lower()
        if key in seen:
            first = columns[seen[key] - 1]
            problem = (
                f"appears twice (columns {seen[key]} and {position})"
                if first == name
                else f"differs only in case from '{name}' (columns {seen[key]} and {position});"
                " rename one (Spark cannot tell them apart)"
            )
            raise DataValidationError(source, first, problem)
        seen[key] = position


def check_columns(columns: list[str], source: str, purpose: Purpose) -> tuple[str, ...]:
    """The header's rules, for every engine; returns the required columns.

    Required columns must be present (a near miss in case is pointed out); the output's own names
    must not be taken."""
    check_header(columns, source)
    required = FEATURES + ((TARGET,) if purpose == "training" else ())
    missing = [c for c in required if c not in columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        noun = "column" if len(missing) == 1 else "columns"
        problem = f"required {noun} {names} missing"
        if missing == [TARGET]:
            problem = f"target column '{TARGET}' missing (training data needs it)"
        near = [c for c in columns if c.lower() in {m.lower() for m in missing}]
        if near:
            problem += f" (found {', '.join(repr(c) for c in near)}: names are case-sensitive)"
        raise DataValidationError(source, None, problem)
    if purpose == "scoring":
        taken = [c for c in OUTPUT_COLUMNS + QUARANTINE_COLUMNS if c in columns]
        if taken:
            raise DataValidationError(
                source, taken[0], "name is reserved for the scoring output; rename it"
            )
    return required


# --- raw bytes -----------------------------------------------------------------------------------

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed (name it .csv.gz, or decompress it)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PAR1", "a Parquet file (set input_format=parquet)"),
    (b"\xff\xfe\x00\x00", "UTF-32 text; save it as UTF-8"),
    (b"\xff\xfe", "UTF-16 text; save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text; save it as UTF-8"),
)


def sniff_text_file(head: bytes) -> str | None:
    """Why the first bytes of a CSV file are not UTF-8 text, or None when they look fine.

    Catches what would otherwise surface as "missing columns": a gzip, zip or Parquet file under a
    .csv name, UTF-16/32 text (with or without a byte-order mark), binary data."""
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return f"is {what}, not UTF-8 CSV text"
    if b"\x00" in head:
        return "is not UTF-8 CSV text (it holds NUL bytes: UTF-16 without a byte-order mark?)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return f"is not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start})"
    return None


@dataclass(frozen=True)
class Malformed:
    """A line that does not parse as a row of the header's fields."""

    row: int  # 1-based data row, as in "data row N" (blank lines are not rows)
    text: str
    problem: str


def malformed_error(source: str, malformed: list[Malformed]) -> DataValidationError:
    """The error for lines that do not parse: the first, and how many."""
    first = malformed[0]
    text = f": {first.text[:120]!r}" if first.text else ""
    return DataValidationError(
        source,
        None,
        f"data row {first.row}: {first.problem} ({count_phrase(len(malformed))}){text}",
    )
