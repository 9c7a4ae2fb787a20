"""Scoring input on Spark: read strictly, then check the data contract in one aggregation pass.

The contract itself (ranges, what "missing" means, the number grammar, SEX codes, the header's
rules, the wording of problems) lives in diabetes.contract; this module turns it into Spark column
expressions so the pandas and Spark engines give the same verdict on the same file.

CSV is never read leniently: Spark's default PERMISSIVE reader pads a short row with nulls and
drops an extra field (an unquoted decimal comma, `32,1`), silently. Here the header is read first,
the schema is declared from it, each file's header must match it, and rows with the wrong number
of fields land in a `_malformed_row` column that the check counts.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any

from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from diabetes.contract import (
    CATEGORICAL_FEATURE,
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
    TRIMMED,
    DataValidationError,
    check_columns,
    check_header,
    count_phrase,
    garbled_problem,
    header_fields,
    malformed_problem,
    sex_problem,
    sniff_text_file,
    too_many_unknown,
    unknown_share_problem,
    value_problem,
)
from diabetes.reading import read_head
from diabetes_mlops.data.locations import driver_path, is_remote
from diabetes_mlops.runtime.errors import first_line
from diabetes_mlops.runtime.parameters import require_choice
from diabetes_mlops.spark.conf import wide_codegen
from diabetes_mlops.spark.sql_text import double_sql, quote_identifier, text_literal

try:  # classic PySpark reports some JVM errors (a file's bad header) as Py4J errors
    from py4j.protocol import Py4JJavaError

    SPARK_ERRORS: tuple[type[Exception], ...] = (PySparkException, Py4JJavaError)
except ImportError:  # pragma: no cover - Spark Connect clients have no Py4J
    SPARK_ERRORS = (PySparkException,)

log = logging.getLogger(__name__)

INPUT_FORMATS = ("csv", "parquet", "delta", "table")
# Spark's corrupt-record column: the raw line of a row that does not parse.
MALFORMED = "_malformed_row"
_NUMBER_REGEX = f"^(?:{NUMBER_PATTERN})\\z"
_REPLACEMENT = "\ufffd"  # what Spark decodes bytes that are not UTF-8 into
_NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
                  T.DecimalType)  # fmt: skip


def read_input(spark: SparkSession, location: str, fmt: str) -> DataFrame:
    """The input as a DataFrame; CSV values stay text (check_input reports a bad one with it)."""
    require_choice("input_format", fmt, INPUT_FORMATS)
    try:
        if fmt == "table":
            frame = spark.table(location)
        else:
            _sniff(location, fmt)
            frame = (
                _read_csv(spark, location)
                if fmt == "csv"
                else spark.read.format(fmt).load(location)
            )
        columns = frame.columns  # Spark Connect reads lazily: a missing path fails here
    except SPARK_ERRORS as exc:
        raise read_error(location, fmt, exc) from None
    check_header([c for c in columns if c != MALFORMED], location)
    return frame


def _read_csv(spark: SparkSession, location: str) -> DataFrame:
    # The first line that is not blank by Java's trim() (what Spark's CSV reader skips).
    lines = spark.read.text(location).where(F.col("value").rlike("[^\\x00-\\x20]"))
    lines = lines.limit(1).collect()
    if not lines:
        raise DataValidationError(location, None, "file is empty (no header, no rows)")
    header = lines[0]["value"]
    if _REPLACEMENT in header or "\x00" in header:
        raise DataValidationError(location, None, "is not UTF-8 CSV text (compressed? UTF-16?)")
    raw = header_fields(header)
    names = [name.strip(TRIMMED) for name in raw]
    check_header(names, location)
    schema = T.StructType(
        [T.StructField(name, T.StringType()) for name in raw]
        + [T.StructField(MALFORMED, T.StringType())]
    )
    frame = (
        spark.read.schema(schema)
        .option("header", True)
        .option("enforceSchema", False)  # every file's header must match the first one's
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", MALFORMED)
        .option("escape", '"')  # RFC 4180 quoting, as pandas and pyarrow read it
        .csv(location)
    )
    return frame.toDF(*names, MALFORMED)


def read_error(location: str, fmt: str, exc: Exception) -> DataValidationError:
    """A Spark error while reading, as one line naming the location and the cause."""
    text = str(exc)
    if "DATA_SOURCE_NOT_FOUND" in text or "Failed to find the data source" in text:
        problem = f"cannot read it as {fmt}: Delta Lake is not available in this Spark session"
    elif "PATH_NOT_FOUND" in text or "Path does not exist" in text:
        problem = "cannot read file: no such file or directory"
    elif "does not conform to the schema" in text:
        problem = "its CSV files do not all have the same header"
    elif "maxColumns" in text or "MaxColumns" in text:
        problem = "a row has more fields than Spark's CSV reader takes (maxColumns): not valid CSV"
    elif "FAILED_READ_FILE" in text or "is not a Parquet file" in text:
        problem = _unreadable_file(text)
    else:
        problem = f"cannot read it ({fmt}): {first_line(exc, limit=300)}"
    return DataValidationError(location, None, problem)


def _unreadable_file(text: str) -> str:
    """Which file of the input Spark could not read, and why: a Parquet file cut short or
    corrupt (it starts as one, but its footer, which Spark reads first, is not there or not
    whole), another kind of file, or the cause Spark gives."""
    found = re.search(r"reading file (\S+?)\.?\s", text) or re.search(
        r"(\S+) is not a Parquet", text
    )
    name = found.group(1) if found else None
    path = driver_path(name) if name and not is_remote(name) else None
    try:
        head = read_head(path, path)[:4] if path else b""
    except DataValidationError:  # gone or unreadable here: Spark's words must do
        head = b""
    shown = path or name or "a file"
    if head == b"PAR1":
        return f"file {shown} is a Parquet file cut short or corrupt (no whole footer): replace it"
    if "is not a Parquet file" in text:
        return f"file {shown} is not a Parquet file (set input_format to what it is)"
    cause = re.search(r"Caused by: [\w.$]+: (.+)", text)
    return f"file {shown} cannot be read: {cause.group(1).strip()[:200] if cause else 'corrupt'}"


def _sniff(location: str, fmt: str) -> None:
    """Check the first bytes of the (first) file where this process can read them: a gzip,
    UTF-16 or Parquet file read as CSV, or text read as Parquet, is named as such up front."""
    path = _driver_path(location)
    if path is None:
        return
    if fmt == "delta":
        if os.path.isdir(path) and not os.path.isdir(os.path.join(path, "_delta_log")):
            raise DataValidationError(location, None, "is not a Delta table (no _delta_log folder)")
        return
    first = _first_data_file(path)
    if first is None:
        return
    try:
        head = read_head(first, first)
    except DataValidationError:
        return  # Spark reports what it cannot read
    if fmt == "parquet":
        if not head.startswith(b"PAR1"):
            kind = "CSV text?" if sniff_text_file(head) is None else "not Parquet either"
            shown = head[:40].decode("utf-8", errors="replace")
            raise DataValidationError(
                first, None, f"is not a Parquet file: it starts with {shown!r} ({kind})"
            )
        return
    problem = sniff_text_file(head)
    if problem:
        raise DataValidationError(first, None, problem)


def _driver_path(location: str) -> str | None:
    """The location as a path this process can open, or None (a table, a cloud URI)."""
    if is_remote(location):
        return None
    path = driver_path(location)
    return path if os.path.exists(path) else None


def _first_data_file(path: str) -> str | None:
    if os.path.isfile(path):
        return path
    for root, folders, files in os.walk(path):
        folders[:] = sorted(f for f in folders if not f.startswith((".", "_")))
        for name in sorted(files):
            if not name.startswith((".", "_")):
                return os.path.join(root, name)
    return None


@dataclass(frozen=True)
class InputCheck:
    rows: int  # rows read, malformed ones included
    valid: DataFrame  # rows that meet the contract (all of them, under policy fail)
    quarantined: DataFrame | None = None  # policy quarantine: bad rows, as read, with a reason
    quarantined_rows: int = 0
    riders: dict[str, Any] = field(default_factory=dict)  # the riders' values, by alias


@dataclass(frozen=True)
class _Rule:
    """A row rule on one column: when the row breaks it, and why (built only when needed: each
    Column is a round trip to the JVM, and a reason takes a dozen)."""

    column: str
    broken: Column
    reason: Callable[[], Column]
    example: Column  # the value shown in the error


def check_input(
    frame: DataFrame,
    source: str,
    bad_rows: str = FAIL,
    max_unknown_share: float = 0.01,
    riders: Sequence[str] = (),
) -> InputCheck:
    """Schema first (free), then one aggregation pass over the data; the contract of
    diabetes.contract, checked in the order the pandas engine checks it.

    Policy fail: the first broken rule raises DataValidationError naming the column, the value and
    the row. Policy quarantine: rows that break a row rule come back separately, with a reason.
    `riders`: more aggregates (aliased SQL over every row) computed in the same pass, so that
    what the caller needs of the whole input costs no second read (policy fail only: under
    quarantine the rows kept are not known until the pass is over).
    """
    require_choice("bad_rows", bad_rows, (FAIL, QUARANTINE))
    if riders and bad_rows != FAIL:
        raise ValueError("riders count every row: policy fail only")
    columns = [c for c in frame.columns if c != MALFORMED]
    if not columns or columns == ["_c0"]:
        raise DataValidationError(source, None, "file is empty (no header, no rows)")
    check_columns(columns, source, "scoring")
    _check_types(frame, source)
    malformed = F.col(MALFORMED).isNotNull() if MALFORMED in frame.columns else F.lit(False)
    raw = F.col(MALFORMED) if MALFORMED in frame.columns else F.lit(None).cast("string")
    rules = [_numeric_rule(frame, column) for column in NUMERIC_FEATURES]
    sex = F.trim(F.col(CATEGORICAL_FEATURE))
    known = sex.isin(*SEX_VALUES)
    sex_missing = F.col(CATEGORICAL_FEATURE).isNull() | (
        ~known & _missing_text(CATEGORICAL_FEATURE)
    )
    unknown = ~sex_missing & ~known
    status = _sex_status(F.col(CATEGORICAL_FEATURE), sex)
    quarantine = bad_rows == QUARANTINE
    if quarantine:
        rules.append(  # unknown codes: out
            _Rule(CATEGORICAL_FEATURE, unknown, lambda: _sex_reason(sex), sex)
        )
    # Counts only: an aggregate of text (first()) would turn Spark's code-generated hash
    # aggregation into a sort aggregation, 2-3x slower; examples are fetched when a count says so.
    if quarantine:  # never null: a null condition would drop a row from both sides of the split
        rules = [replace(r, broken=F.coalesce(r.broken, F.lit(False))) for r in rules]
    broken_row = reduce(lambda a, b: a | b, [r.broken for r in rules], malformed)
    kept = ~broken_row if quarantine else None  # None: every row is kept
    aggregates = [
        F.count(F.lit(1)).alias("rows"),
        count_if(malformed).alias("malformed"),
        count_if(status == _UNKNOWN).alias("sex:unknown"),
        count_if(
            (status != _NULL) & (status != _MISSING_TEXT) if kept is None else ~sex_missing & kept
        ).alias(f"{CATEGORICAL_FEATURE}:n"),
    ]
    if quarantine:
        aggregates.append(count_if(~kept).alias("quarantined"))
    if MALFORMED in frame.columns:  # text read from CSV: bytes that were not UTF-8
        # This also makes the pass read every column, which Spark's CSV reader needs to tell a
        # malformed row (with fewer columns it prunes the parse and pads silently).
        garbled = reduce(lambda a, b: a | b, [F.col(c).contains(_REPLACEMENT) for c in columns])
        aggregates.append(count_if(garbled).alias("garbled"))
    for rule in rules[: len(NUMERIC_FEATURES)]:
        aggregates += [
            count_if(rule.broken).alias(f"{rule.column}:broken"),
            _count_given(frame, rule.column, kept).alias(f"{rule.column}:n"),
        ]
    aggregates += [F.expr(rider) for rider in riders]
    try:
        with wide_codegen(frame.sparkSession, len(aggregates)):
            stats = frame.agg(*aggregates).first().asDict()
    except SPARK_ERRORS as exc:
        raise read_error(source, "input", exc) from None
    rows = stats["rows"]
    if rows == 0:
        raise DataValidationError(source, None, "has a header but no data rows")
    if stats.get("garbled"):
        raise DataValidationError(source, None, garbled_problem(stats["garbled"]))
    if not quarantine:
        _fail_on_first_broken_rule(frame, source, stats, rules, unknown, sex, max_unknown_share)
    else:
        reason = F.coalesce(
            F.when(malformed, F.lit(malformed_problem(len(columns), None))),
            *[F.when(r.broken, F.concat(F.lit(f"{r.column}: "), r.reason())) for r in rules],
        )
    if quarantine and stats["quarantined"] == rows:
        first = frame.where(reason.isNotNull()).select(reason).first()[0]
        raise DataValidationError(
            source, None, f"all {rows} rows break the data contract (first: {first})"
        )
    for column in FEATURES:
        if not stats[f"{column}:n"]:
            raise DataValidationError(source, column, f"has no values: all {rows} rows are missing")
    valid = frame.where(kept) if quarantine else frame
    valid = valid.drop(MALFORMED) if MALFORMED in frame.columns else valid
    if not quarantine:
        return InputCheck(rows, valid, riders=stats)
    bad = frame.where(~kept).select(
        *[F.col(c).cast("string").alias(c) for c in columns],
        reason.alias(QUARANTINE_REASON),
        raw.alias(RAW_RECORD),
    )
    log.warning("%s: %d of %d rows quarantined", source, stats["quarantined"], rows)
    return InputCheck(rows, valid, bad, stats["quarantined"])


def _fail_on_first_broken_rule(frame, source, stats, rules, unknown, sex, limit) -> None:
    columns = [c for c in frame.columns if c != MALFORMED]
    if stats["malformed"]:
        # Every column: Spark's CSV reader only tells a malformed row when it parses all of them
        # (and refuses a query of the corrupt-record column alone).
        bad = frame.where(F.col(MALFORMED).isNotNull()).select(MALFORMED, *columns)
        example = bad.first()[0]
        problem = malformed_problem(len(columns), None)
        raise DataValidationError(
            source, None, f"{problem} ({count_phrase(stats['malformed'])}): {example[:120]!r}"
        )
    for rule in rules:
        broken = stats[f"{rule.column}:broken"]
        if broken:
            row_json = F.to_json(F.struct(*[F.col(c) for c in columns]))
            value, row = frame.where(rule.broken).select(rule.example, row_json).first()
            problem = value_problem(rule.column, value)
            raise DataValidationError(
                source, rule.column, f"{problem} in row {row[:200]} ({count_phrase(broken)})"
            )
    unknowns = stats["sex:unknown"]
    if too_many_unknown(unknowns, stats["rows"], limit):
        seen = (
            frame.where(unknown)
            .groupBy(sex.alias("value"))
            .count()
            .orderBy(F.desc("count"), "value")
            .limit(5)
            .collect()
        )
        raise DataValidationError(
            source,
            CATEGORICAL_FEATURE,
            unknown_share_problem(unknowns, stats["rows"], [r["value"] for r in seen], limit),
        )
    if unknowns:
        log.warning(
            "%s: column '%s' has %d rows with unknown values; scored as none of %s",
            source,
            CATEGORICAL_FEATURE,
            unknowns,
            ", ".join(SEX_VALUES),
        )


def _check_types(frame: DataFrame, source: str) -> None:
    """Text or numbers where the contract wants them. A file with no rows carries whatever
    types its writer guessed (pandas types an empty column as double or null), so it is named
    as having no rows, not as having the wrong types."""
    kinds = {f.name: f.dataType for f in frame.schema.fields}
    wrong = [
        c for c in NUMERIC_FEATURES if not isinstance(kinds[c], (*_NUMERIC_TYPES, T.StringType))
    ]
    if (wrong or not isinstance(kinds[CATEGORICAL_FEATURE], T.StringType)) and frame.isEmpty():
        raise DataValidationError(source, None, "has no data rows")
    for column in NUMERIC_FEATURES:
        if not isinstance(kinds[column], (*_NUMERIC_TYPES, T.StringType)):
            raise DataValidationError(
                source, column, f"type {kinds[column].simpleString()}, expected numbers"
            )
    sex_type = kinds[CATEGORICAL_FEATURE]
    if not isinstance(sex_type, T.StringType):
        raise DataValidationError(
            source, CATEGORICAL_FEATURE, f"type {sex_type.simpleString()}, expected text"
        )


def _is_text(frame: DataFrame, column: str) -> bool:
    return isinstance(frame.schema[column].dataType, T.StringType)


def _missing_text(column: str) -> Column:
    """The column's value, trimmed, is one of contract.MISSING_TEXTS in any case."""
    return F.expr(missing_text_sql(f"trim({quote_identifier(column)})"))


def missing_text_sql(trimmed: str) -> str:
    """SQL: `trimmed` is one of contract.MISSING_TEXTS in any case; lower() (a copy of each
    value) runs only for values that are not already one of them as usually written."""
    exact = sorted({*MISSING_TEXTS, *(t.upper() for t in MISSING_TEXTS), "NaN", "N/A", "None"})
    written = ", ".join(text_literal(t) for t in exact)
    lowered = ", ".join(text_literal(t) for t in sorted(MISSING_TEXTS))
    return (
        f"(CASE WHEN {trimmed} IN ({written}) THEN true ELSE lower({trimmed}) IN ({lowered}) END)"
    )


def _count_given(frame: DataFrame, column: str, kept: Column | None) -> Column:
    """How many rows hold a value in `column` (among the kept ones)."""
    return count_if(_given(frame, column) if kept is None else _given(frame, column) & kept)


def _given(frame: DataFrame, column: str) -> Column:
    """The column holds a value (not null, NaN or one of the missing texts)."""
    if _is_text(frame, column):
        text = F.trim(F.col(column))
        is_number = text.rlike(_NUMBER_REGEX)
        return F.col(column).isNotNull() & (is_number | ~_missing_text(column))
    number = F.col(column).cast("double")
    return number.isNotNull() & ~F.isnan(number)


def _numeric_rule(frame: DataFrame, column: str) -> _Rule:
    """Broken when a given value is not a number, not finite, or out of its range."""
    limits = RANGES[column]
    number = as_double(frame, column)
    bounds = f" is outside the valid range {limits}"
    if not _is_text(frame, column):

        def reason() -> Column:
            return F.when(F.abs(number) == float("inf"), F.lit("non-finite value")).otherwise(
                F.concat(F.lit("value "), number.cast("string"), F.lit(bounds))
            )

        # NaN (missing) counts as in range: Spark orders NaN above every number.
        filled = F.nanvl(number, F.lit(limits.low))
        outside = (filled < F.lit(limits.low)) | (filled > F.lit(limits.high))
        return _Rule(column, outside, reason, number)
    text = F.trim(F.col(column))
    is_number = text.rlike(_NUMBER_REGEX)
    in_range = number.between(F.lit(limits.low), F.lit(limits.high))  # false for inf and NaN

    def reason() -> Column:
        return (
            F.when(~is_number, F.concat(F.lit("non-numeric value '"), text, F.lit("'")))
            .when(
                F.abs(number) == float("inf"),
                F.concat(F.lit("non-finite value '"), text, F.lit("'")),
            )
            .otherwise(F.concat(F.lit("value "), text, F.lit(bounds)))
        )

    return _Rule(column, _given(frame, column) & ~(is_number & in_range), reason, F.col(column))


_KNOWN, _NULL, _TRIM, _MISSING_TEXT, _UNKNOWN = range(5)


def _sex_status(raw: Column, trimmed: Column) -> Column:
    """One code per SEX value for the counts: a known code as written first, so the common case
    costs one comparison (no trim, no lower) in the pass over every row."""
    return (
        F.when(raw.isin(*SEX_VALUES), _KNOWN)
        .when(raw.isNull(), _NULL)
        .when(trimmed.isin(*SEX_VALUES), _TRIM)
        .when(_missing_text(CATEGORICAL_FEATURE), _MISSING_TEXT)
        .otherwise(_UNKNOWN)
    )


def _sex_reason(sex: Column) -> Column:
    before, after = sex_problem("VALUE").split("'VALUE'")
    return F.concat(F.lit(before + "'"), sex, F.lit("'" + after))


def count_if(condition: Column) -> Column:
    return F.count(F.when(condition, 1))


def as_double(frame: DataFrame, column: str) -> Column:
    """Numbers as doubles; see double_sql."""
    return F.expr(double_sql(column, frame.schema[column].dataType))


def typed_sql(frame: DataFrame) -> dict[str, str]:
    """Each feature as scoring outputs it, in SQL over `frame`'s columns: numbers as doubles, SEX
    as text without surrounding spaces (a missing text is null). The scored output is written
    from these, and the drift profile computed during the input check counts these, so the two
    describe the same values."""
    return {
        **{
            column: double_sql(column, frame.schema[column].dataType) for column in NUMERIC_FEATURES
        },
        CATEGORICAL_FEATURE: clean_text_sql(quote_identifier(CATEGORICAL_FEATURE)),
    }


def clean_text_sql(value: str) -> str:
    """`value` trimmed, a missing text as null. A known code as written is kept as it is first,
    so the common case costs one comparison (no trim, no lower) per row."""
    known = ", ".join(text_literal(v) for v in SEX_VALUES)
    trimmed = f"trim({value})"
    missing = missing_text_sql(trimmed)
    return (
        f"CASE WHEN {value} IN ({known}) THEN {value} WHEN {missing} THEN NULL ELSE {trimmed} END"
    )


def typed_features(frame: DataFrame) -> DataFrame:
    """Feature columns as the pandas path outputs them (typed_sql), other columns as they are."""
    typed = typed_sql(frame)
    return frame.select(
        *[
            F.expr(typed[c]).alias(c) if c in typed else F.col(quote_identifier(c))
            for c in frame.columns
        ]
    )
