"""Batch-score step: load the champion (or a given version), score the input, write it atomically.

engine=spark (the default) reads CSV, Parquet, Delta or a table with Spark, checks it in one pass,
scores with a native Spark expression (spark_udf for models that do not translate) and writes
Parquet or Delta. engine=pandas scores a small CSV file in this process, without Spark.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from diabetes.schema import MODEL_VERSION, SCORED_AT, read_table
from diabetes.scoring import score_frame
from diabetes_mlops import output, spark_scoring
from diabetes_mlops.context import SparkPath, fuse_path
from diabetes_mlops.errors import require_choice
from diabetes_mlops.registry import CHAMPION, get_version, load_version
from diabetes_mlops.tracking import use_experiment, use_registry

log = logging.getLogger(__name__)

ENGINES = ("spark", "pandas")


def batch_score(
    spark: SparkSession,
    input_path: SparkPath,
    output_path: SparkPath,
    model_name: str,
    experiment_name: str,
    registry: str = "workspace",
    model_version: str = CHAMPION,
    input_format: str = "csv",
    output_format: str = "parquet",
    engine: str = "spark",
) -> dict[str, str]:
    """Score `input_path` into `output_path`: the input columns plus prediction, model_version and
    scored_at. `model_version` is a number or an alias."""
    _check_choices(engine, input_format, output_format, output_path)
    use_registry(registry, model_name)
    use_experiment(experiment_name)
    with mlflow.start_run(run_name="batch_score"):
        mlflow.set_tags({"step": "batch_score", "input_path": input_path, "engine": engine})
        mlflow.log_params({"model_name": model_name, "model_ref": model_version})
        score = _score_pandas if engine == "pandas" else _score_spark
        rows_in, rows_out, version, path = score(
            spark, input_path, output_path, model_name, model_version, input_format, output_format
        )
        mlflow.log_params(
            {"model_version": version, "output_path": output_path, "scoring_path": path}
        )
        mlflow.log_metrics({"rows_in": rows_in, "rows_out": rows_out})
        log.info(
            "scored %d rows with %s version %s (%s) into %s",
            rows_out,
            model_name,
            version,
            path,
            output_path,
        )
    return {"output_path": output_path, "rows": str(rows_out), "model_version": version}


def _check_choices(engine: str, input_format: str, output_format: str, output_path: str) -> None:
    """Bad parameters fail before any work."""
    require_choice("engine", engine, ENGINES)
    if engine == "pandas":
        require_choice("input_format", input_format, ("csv",))
        output.output_format(output_path)
    else:
        require_choice("input_format", input_format, spark_scoring.INPUT_FORMATS)
        require_choice("output_format", output_format, spark_scoring.OUTPUT_FORMATS)


def _score_spark(spark, input_path, output_path, model_name, model_ref, input_format, fmt):
    frame = spark_scoring.read_input(spark, input_path, input_format)
    check = spark_scoring.check_input(frame, input_path)
    version = get_version(MlflowClient(), model_name, model_ref)
    uri = f"models:/{version.name}/{version.version}"
    typed = spark_scoring.typed_features(frame, clean_text=check.sex_needs_cleaning)
    scored, path = spark_scoring.predict(typed, load_version(version), uri)
    scored = scored.withColumn(MODEL_VERSION, F.lit(int(version.version))).withColumn(
        SCORED_AT, F.lit(datetime.now(UTC))
    )
    with spark_scoring.rows_into_python_udfs(spark):
        spark_scoring.write_atomically(scored, output_path, fmt)
    rows_out = spark.read.format(fmt).load(output_path).count()
    return check.rows, rows_out, str(version.version), path


def _score_pandas(spark, input_path, output_path, model_name, model_ref, input_format, fmt):
    source = fuse_path(input_path)
    raw = read_table(source)
    version = get_version(MlflowClient(), model_name, model_ref)
    scored = score_frame(load_version(version), raw, source=source)
    scored[MODEL_VERSION] = int(version.version)
    scored[SCORED_AT] = pd.Timestamp.now(tz="UTC")
    output.write_atomically(scored, fuse_path(output_path))
    return len(raw), len(scored), str(version.version), "pandas"
