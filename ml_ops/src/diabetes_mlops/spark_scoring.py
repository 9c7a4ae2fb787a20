"""Batch scoring on Spark: read, check, score natively (or with spark_udf), write atomically.

The fast path turns the model's linear form (diabetes.linear_form) into one Spark column
expression, so scoring runs in the JVM with no Python workers. A model of any other shape is
scored with mlflow.pyfunc.spark_udf instead, and a log line says which path was taken.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from diabetes.linear_form import LinearForm, NotLinear, linear_form
from diabetes.schema import (
    CATEGORICAL_FEATURE,
    FEATURES,
    NUMERIC_FEATURES,
    PREDICTION,
    SEX_VALUES,
    DataValidationError,
    check_columns,
)
from diabetes_mlops.errors import require_choice

log = logging.getLogger(__name__)

INPUT_FORMATS = ("csv", "parquet", "delta", "table")
OUTPUT_FORMATS = ("parquet", "delta")
NATIVE, SPARK_UDF = "native", "spark_udf"
UDF_COLUMNAR_INPUT = "spark.sql.execution.arrow.pythonUDF.columnarInput.enabled"
_NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
                  T.DecimalType)  # fmt: skip


def read_input(spark: SparkSession, location: str, fmt: str) -> DataFrame:
    """CSV is read as text (types are checked by check_input, with the offending value)."""
    require_choice("input_format", fmt, INPUT_FORMATS)
    try:
        if fmt == "csv":
            return spark.read.option("header", True).option("inferSchema", False).csv(location)
        if fmt == "table":
            return spark.table(location)
        return spark.read.format(fmt).load(location)
    except AnalysisException as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DataValidationError(location, None, f"cannot read file ({fmt}): {reason}") from None


@dataclass(frozen=True)
class InputCheck:
    rows: int
    sex_needs_cleaning: bool  # some SEX values have surrounding spaces or are empty strings


def check_input(frame: DataFrame, source: str) -> InputCheck:
    """Schema first (free), then one aggregation pass for values.

    The same rules as diabetes.schema.validate_frame for scoring, on Spark.
    """
    if not frame.columns or frame.columns == ["_c0"]:
        raise DataValidationError(source, None, "file is empty (no header, no rows)")
    check_columns(frame.columns, source, "scoring")
    kinds = {f.name: f.dataType for f in frame.schema.fields}
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
    checks = [F.count(F.lit(1)).alias("rows")]
    for column in NUMERIC_FEATURES:
        checks += numeric_checks(frame, column)
    sex = F.trim(F.col(CATEGORICAL_FEATURE))
    checks += [
        count_if(sex.isNotNull() & (sex != "")).alias("SEX:n"),
        count_if(sex.isNotNull() & (sex != "") & ~sex.isin(*SEX_VALUES)).alias("SEX:unknown"),
        count_if(sex != F.col(CATEGORICAL_FEATURE)).alias("SEX:untrimmed"),
        count_if(sex == "").alias("SEX:empty"),
    ]
    stats = frame.agg(*checks).first().asDict()
    rows = stats["rows"]
    if rows == 0:
        raise DataValidationError(source, None, "has a header but no data rows")
    for column in NUMERIC_FEATURES:
        if stats[f"{column}:bad"]:
            raise DataValidationError(
                source,
                column,
                f"non-numeric value {stats[f'{column}:example']!r}"
                f" ({stats[f'{column}:bad']} such rows)",
            )
        if stats[f"{column}:inf"]:
            raise DataValidationError(source, column, "non-finite value")
    for column in FEATURES:
        if not stats[f"{column}:n"]:
            raise DataValidationError(source, column, f"has no values: all {rows} rows are missing")
    if stats["SEX:unknown"]:
        log.warning(
            "%s: column '%s' has %d rows with unknown values; the model encodes them as none of %s",
            source,
            CATEGORICAL_FEATURE,
            stats["SEX:unknown"],
            ", ".join(SEX_VALUES),
        )
    return InputCheck(rows, bool(stats["SEX:untrimmed"] or stats["SEX:empty"]))


def count_if(condition: Column) -> Column:
    return F.count(F.when(condition, 1))


def numeric_checks(frame: DataFrame, column: str) -> list[Column]:
    """Aggregates '<column>:n' (values given), ':bad' (not numbers), ':example', ':inf'.

    A column typed as numbers needs no parsing; text is parsed, blank and "NaN" being missing.
    """
    number = as_double(frame, column)
    if not isinstance(frame.schema[column].dataType, T.StringType):
        given, bad, example = number.isNotNull() & ~F.isnan(number), F.lit(False), F.lit(None)
    else:
        text = F.trim(F.col(column))
        blank = F.col(column).isNull() | (text == "") | (F.lower(text) == "nan")
        unusable = number.isNull() | F.isnan(number)
        given, bad = ~blank & ~unusable, ~blank & unusable
        example = F.first(F.when(bad, text), ignorenulls=True)
    return [
        count_if(given).alias(f"{column}:n"),
        count_if(bad).alias(f"{column}:bad"),
        example.alias(f"{column}:example"),
        count_if(F.abs(number) == float("inf")).alias(f"{column}:inf"),
    ]


def prediction_column(form: LinearForm) -> Column:
    """The model as one Spark expression: LinearForm.predict's folded form, one multiply per
    column and no division (a few % faster than term for term; equal to the model within 1e-12).

    Category values are compared as they are: pass text through typed_features first when it
    may carry spaces or empty strings (check_input says whether it does).
    """
    terms = []
    for t in form.numeric:
        x = F.col(t.column).cast("double")
        filled = F.coalesce(F.nanvl(x, F.lit(t.fill)), F.lit(t.fill))
        terms.append(filled * F.lit(t.weight))
    for t in form.categorical:
        value = F.col(t.column)
        term = F.lit(0.0)  # missing or unknown: no term
        for level, coef in t.coefs.items():
            term = F.when(value == F.lit(level), F.lit(coef)).otherwise(term)
        terms.append(term)
    return reduce(lambda a, b: a + b, terms, F.lit(0.0)) + F.lit(form.offset)


def predict(frame: DataFrame, model, model_uri: str) -> tuple[DataFrame, str]:
    """(frame + prediction, path used): native when the model translates, spark_udf otherwise."""
    try:
        form = linear_form(model)
    except NotLinear as reason:
        import mlflow.pyfunc

        log.info("scoring path: %s (the model does not translate: %s)", SPARK_UDF, reason)
        udf = mlflow.pyfunc.spark_udf(frame.sparkSession, model_uri, result_type="double")
        inputs = [
            F.col(c) if c == CATEGORICAL_FEATURE else F.col(c).cast("double").alias(c)
            for c in FEATURES
        ]
        return frame.withColumn(PREDICTION, udf(F.struct(*inputs))), SPARK_UDF
    log.info("scoring path: %s (a Spark column expression, no Python workers)", NATIVE)
    return frame.withColumn(PREDICTION, prediction_column(form)), NATIVE


@contextmanager
def rows_into_python_udfs(spark: SparkSession) -> Iterator[None]:
    """While inside, Python UDFs (the spark_udf fallback) take rows, not the scan's batches.

    Spark 4.3 hands a Parquet scan's column batches straight to Python UDFs, converting them row
    by row and ignoring maxRecordsPerBatch; spark_udf ran ~35 % slower so on Parquet input here
    (`make bench-scoring`). The session's own setting is restored on the way out.
    """
    previous = spark.conf.get(UDF_COLUMNAR_INPUT, None)
    spark.conf.set(UDF_COLUMNAR_INPUT, "false")
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(UDF_COLUMNAR_INPUT)
        else:
            spark.conf.set(UDF_COLUMNAR_INPUT, previous)


def as_double(frame: DataFrame, column: str) -> Column:
    """Numbers as doubles; text parsed leniently (try_cast: a bad value is null, and ANSI mode
    does not fail the job) so check_input can report it with the value."""
    if isinstance(frame.schema[column].dataType, T.StringType):
        return F.expr(f"try_cast(trim(`{column}`) AS DOUBLE)")
    return F.col(column).cast("double")


def typed_features(frame: DataFrame, clean_text: bool = True) -> DataFrame:
    """Feature columns as the pandas path outputs them: doubles, and text without surrounding
    spaces (empty -> missing). Skip the text cleaning, which costs ~20 % of native scoring
    throughput, when check_input found nothing to clean."""
    for column in NUMERIC_FEATURES:
        if not isinstance(frame.schema[column].dataType, T.DoubleType):
            frame = frame.withColumn(column, as_double(frame, column))
    if not clean_text:
        return frame
    value = F.trim(F.col(CATEGORICAL_FEATURE))
    return frame.withColumn(CATEGORICAL_FEATURE, F.when(value != "", value))


def write_atomically(frame: DataFrame, location: str, fmt: str) -> None:
    """Delta overwrites in one transaction. Parquet is written to a hidden sibling folder that
    is swapped in only when complete; on any failure the previous output stays as it was."""
    require_choice("output_format", fmt, OUTPUT_FORMATS)
    if fmt == "delta":
        frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
            location
        )
        return
    spark = frame.sparkSession
    jvm = spark._jvm  # Hadoop's FileSystem: the same code for file:, dbfs:/ and /Volumes/
    target = jvm.org.apache.hadoop.fs.Path(location)
    fs = target.getFileSystem(spark._jsc.hadoopConfiguration())
    suffix = uuid.uuid4().hex[:12]
    temporary = jvm.org.apache.hadoop.fs.Path(target.getParent(), f".{target.getName()}.{suffix}")
    backup = jvm.org.apache.hadoop.fs.Path(target.getParent(), f".{target.getName()}.old.{suffix}")
    try:
        frame.write.mode("errorifexists").parquet(temporary.toString())
        had_previous = fs.exists(target)
        if had_previous and not fs.rename(target, backup):
            raise OSError(f"cannot move the previous output {location} aside")
        if not fs.rename(temporary, target):
            if had_previous:
                fs.rename(backup, target)
            raise OSError(f"cannot move the new output into {location}")
        if had_previous:
            fs.delete(backup, True)
    finally:
        if fs.exists(temporary):
            fs.delete(temporary, True)
