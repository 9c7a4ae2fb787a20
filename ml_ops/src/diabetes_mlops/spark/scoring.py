"""Batch scoring on Spark: score natively (or with spark_udf); reading and checking the input is
diabetes_mlops.spark.inputs.

The fast path turns the model's linear form (diabetes.linear_form) into one Spark column
expression, so scoring runs in the JVM with no Python workers. A model of any other shape is
scored with mlflow.pyfunc.spark_udf instead, and a log line says which path was taken.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from diabetes.contract import CATEGORICAL_FEATURE, FEATURES, PREDICTION, SEX_VALUES
from diabetes.linear_form import LinearForm, NotLinear, linear_form
from diabetes_mlops.spark.conf import temporary_conf
from diabetes_mlops.spark.sql_text import double_literal, quote_identifier, text_literal

log = logging.getLogger(__name__)

NATIVE, SPARK_UDF = "native", "spark_udf"
UDF_COLUMNAR_INPUT = "spark.sql.execution.arrow.pythonUDF.columnarInput.enabled"


def prediction_column(form: LinearForm) -> Column:
    """The model as one Spark column over the typed features (inputs.typed_features)."""
    return F.expr(prediction_sql(form))


def prediction_sql(form: LinearForm, columns: Mapping[str, str] | None = None) -> str:
    """The model as one SQL expression: LinearForm.predict's folded form, one multiply per
    column and no division (a few % faster than term for term; equal to the model within 1e-12).

    `columns` gives each feature's SQL (default: the column of that name). Category values are
    compared as they are: give them as inputs.typed_sql cleans them.
    """
    columns = columns or {}
    total = double_literal(0.0)
    for t in form.numeric:
        x = f"CAST({columns.get(t.column, quote_identifier(t.column))} AS DOUBLE)"
        fill = double_literal(t.fill)
        total = f"({total} + (coalesce(nanvl({x}, {fill}), {fill}) * {double_literal(t.weight)}))"
    for t in form.categorical:
        value = columns.get(t.column, quote_identifier(t.column))
        term = double_literal(0.0)  # missing or unknown: no term
        for level, coef in t.coefs.items():
            match = f"{value} = {text_literal(level)}"
            term = f"CASE WHEN {match} THEN {double_literal(coef)} ELSE {term} END"
        total = f"({total} + ({term}))"
    return f"({total} + {double_literal(form.offset)})"


def predict(frame: DataFrame, model, model_uri: str) -> tuple[DataFrame, str]:
    """(frame + prediction, path used): native when the model translates, spark_udf otherwise."""
    try:
        form = linear_form(model)
    except NotLinear as reason:
        import mlflow.pyfunc

        log.info("scoring path: %s (the model does not translate: %s)", SPARK_UDF, reason)
        udf = mlflow.pyfunc.spark_udf(frame.sparkSession, model_uri, result_type="double")
        # The model's pyfunc flavor refuses unknown SEX codes (diabetes_mlops.serving.served_model);
        # the batch tolerated them, and the model scores an unknown code as a missing one.
        sex = F.col(CATEGORICAL_FEATURE)
        inputs = [
            (
                F.when(sex.isin(*SEX_VALUES), sex).alias(c)
                if c == CATEGORICAL_FEATURE
                else F.col(c).cast("double").alias(c)
            )
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
    with temporary_conf(spark, UDF_COLUMNAR_INPUT, "false"):
        yield
