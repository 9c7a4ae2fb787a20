"""Training data from a CSV file, Parquet or Delta files, or a table, checked by the one data
contract and fitted in pandas on the driver.

Databricks teams keep training data in Delta tables; the sample data is a CSV file. CSV keeps
its strict pandas reader (diabetes.reading.read_dataset, no Spark). The other formats are read
with Spark (inputs.read_input: the same one-line read errors as batch scoring) and at most
`max_training_rows` + 1 rows are collected, so a table too large for the driver is one clear line
instead of an out-of-memory crash; then they are checked by diabetes.batch_check.check_frame
like the CSV rows, so every format gives the same verdict on the same values.

A Delta source is read at one version, found first and then read AS OF it, so the lineage the
run records (an MLflow dataset input naming the path or table and that version) is exactly the
data the model was fitted on, even when the table is written to meanwhile. Delta time travel:
https://docs.delta.io/latest/delta-batch.html#query-an-older-snapshot-of-a-table-time-travel
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from diabetes.batch_check import check_frame
from diabetes.contract import FEATURES, TARGET, check_columns
from diabetes.reading import read_dataset
from diabetes_mlops.data.locations import driver_path
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.parameters import require_choice
from diabetes_mlops.spark import inputs
from diabetes_mlops.spark.conf import temporary_conf
from diabetes_mlops.spark.sql_text import quote_identifier

DATA_FORMATS = inputs.INPUT_FORMATS  # training data is read as scoring input is
DEFAULT_MAX_TRAINING_ROWS = 5_000_000
ARROW = "spark.sql.execution.arrow.pyspark.enabled"
# A table name: up to three parts (catalog.schema.table), each plain or in backquotes.
_PART = r"(?:`(?:[^`]|``)+`|[^.`\s]+)"
_TABLE_NAME = re.compile(rf"{_PART}(?:\.{_PART}){{0,2}}")


@dataclass(frozen=True)
class TrainingData:
    """The checked rows and where they came from."""

    frame: pd.DataFrame  # the contract's columns, typed (diabetes.batch_check.check_frame's valid)
    location: str  # the path or the table name, as given
    fmt: str
    version: int | None = None  # the Delta version read; None for other sources

    @property
    def lineage(self) -> dict[str, str]:
        """What the run records about the source, as tags."""
        found = {"data_path": self.location, "data_format": self.fmt}
        if self.version is not None:
            found["data_version"] = str(self.version)
        return found


def read_training_data(
    location: str,
    fmt: str,
    max_rows: int,
    spark: Any = None,
) -> TrainingData:
    """The training rows at `location` in format `fmt`, checked by the data contract.

    `spark` is touched only for the formats Spark reads (the local runner's session starts on
    first use, so CSV training starts no Spark). Bad data is one DataValidationError line
    naming the source and the column; more than `max_rows` rows is a ParameterError naming
    max_training_rows (at most max_rows + 1 rows are ever collected)."""
    require_choice("data_format", fmt, DATA_FORMATS)
    if fmt == "table" and not _TABLE_NAME.fullmatch(location.strip()):
        raise ParameterError(
            f"parameter 'data_path': {location!r} is not a table name (catalog.schema.table)"
        )
    if fmt == "csv":
        frame = read_dataset(driver_path(location), "training")
        _check_size(len(frame), max_rows, location, counted=True)
        return TrainingData(frame, location, fmt)
    if spark is None:
        raise ParameterError(f"parameter 'data_format': {fmt} is read with Spark, none was given")
    version = delta_version(spark, location, fmt)
    rows = _read(spark, location, fmt, version)
    check_columns(list(rows.columns), location, "training")
    rows = rows.select(*[quote_identifier(c) for c in (*FEATURES, TARGET)])
    # One scan, bounded: at most max_rows + 1 rows ever reach the driver, and the count checked
    # is the rows fitted (nothing appended between a count and a collect).
    with temporary_conf(spark, ARROW, "true"):  # ~10x faster than row by row
        frame = rows.limit(max_rows + 1).toPandas()
    _check_size(len(frame), max_rows, location, counted=False)
    return TrainingData(check_frame(frame, location, "training").valid, location, fmt, version)


def delta_version(spark: Any, location: str, fmt: str) -> int | None:
    """The latest version of a Delta path (fmt delta) or table (fmt table, when it is a Delta
    table); None for anything else. DESCRIBE HISTORY:
    https://docs.delta.io/latest/delta-utility.html#retrieve-delta-table-history"""
    if fmt == "delta":
        target = f"delta.{quote_identifier(location)}"
    elif fmt == "table":
        target = quote_table_name(location)
    else:
        return None
    try:
        latest = spark.sql(f"DESCRIBE HISTORY {target} LIMIT 1").collect()
    except Exception:  # noqa: BLE001 - not Delta (a Parquet table) or no Delta: read plainly
        return None
    return int(latest[0]["version"]) if latest else None


def _read(spark: Any, location: str, fmt: str, version: int | None) -> Any:
    if version is None:
        return inputs.read_input(spark, location, fmt)
    try:
        if fmt == "delta":
            return spark.read.format("delta").option("versionAsOf", version).load(location)
        return spark.sql(f"SELECT * FROM {quote_table_name(location)} VERSION AS OF {version}")
    except inputs.SPARK_ERRORS as exc:
        raise inputs.read_error(location, fmt, exc) from None


def _check_size(rows: int, max_rows: int, location: str, counted: bool) -> None:
    if rows > max_rows:
        many = f"{rows:,} rows" if counted else f"more than {max_rows:,} rows"
        raise ParameterError(
            f"parameter 'max_training_rows': {location} has {many}, more than the"
            f" {max_rows:,} the driver is allowed to fit on; raise max_training_rows (and the"
            " driver's memory) or train on a sample"
        )


def quote_table_name(name: str) -> str:
    """catalog.schema.table with every part backquoted (parts given in backquotes kept whole)."""
    parts = re.findall(_PART, name.strip())
    return ".".join(p if p.startswith("`") else quote_identifier(p) for p in parts)
