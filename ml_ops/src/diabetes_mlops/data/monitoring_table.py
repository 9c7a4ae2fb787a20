"""The drift monitoring table: one row per (batch, feature, metric), so drift can be
followed batch after batch and alerted on, long after the monitor step's MLflow run.

It follows the rules of every folder this project writes (data/ownership.py, shared with
batch-scoring outputs), because a monitoring table sits next to data that is not ours:
it is written only where nothing is, into an empty folder, or over a monitoring table this
project wrote in the same format, recognised by its marker `_diabetes_mlops_monitoring.json`
(format and schema version; Spark, pandas and pyarrow skip `_`/`.` files when they read a
folder). Anything else there is refused with one ParameterError line before any work. The
location rules (no `/`, no other stores, on Databricks /Volumes or dbfs:/ only, apart from the
scored output and the input) are data/locations.py's, so the two cannot drift apart.

    table = MonitoringTable.prepare(path, "parquet", others={"output_path": ..., "input_path": ...})
    table.write_batch(batch_id, rows)   # atomic, idempotent: a re-run replaces that batch's rows
    table.history()                     # every row so far, as a DataFrame with SCHEMA's dtypes

Parquet: one file per batch, named from a hash of its id, so writing a batch touches no other
batch's rows and re-running it replaces exactly its own file. A file is written under a hidden
temporary name in the same folder, flushed and fsynced, then os.replace'd onto its name: at any
instant, even after a crash, a reader finds the batch's old file or its new one, never half. A
crashed writer's temporary file is hidden from readers and removed by a later write once it is
old enough that no live writer can still own it.

Delta: one transaction per batch (replaceWhere on batch_id), which is atomic and idempotent by
Delta's own log; the marker is written before the first commit, as output.py does for Delta.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from diabetes_mlops.data import output
from diabetes_mlops.data.locations import Location, locate_apart
from diabetes_mlops.data.ownership import (
    DELTA_LOG,
    inspect_claim,
    new_claim,
    read_claim,
    remove_stale_temp_files,
    write_atomically,
    write_claim,
)
from diabetes_mlops.runtime.errors import ParameterError, first_line
from diabetes_mlops.runtime.parameters import require_choice

log = logging.getLogger(__name__)

MARKER = "_diabetes_mlops_monitoring.json"
SCHEMA_VERSION = 1
FORMATS = ("parquet", "delta")
PARQUET, DELTA = FORMATS

SCHEMA = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("batch_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("monitored_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.int64()),
        pa.field("feature", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("threshold", pa.float64()),
        pa.field("drifted", pa.bool_(), nullable=False),
        pa.field("batch_drifted", pa.bool_(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
# What history() returns, whichever format and whether or not there are rows: nullable
# model_version stays an integer (Int64) instead of turning float when a value is missing.
PANDAS_DTYPES: dict[str, Any] = {
    "batch_id": object,
    "batch_time": "datetime64[us, UTC]",
    "monitored_at": "datetime64[us, UTC]",
    "model_name": object,
    "model_version": "Int64",
    "feature": object,
    "metric": object,
    "value": "float64",
    "threshold": "float64",
    "drifted": bool,
    "batch_drifted": bool,
    "rows": "int64",
    "run_id": object,
}
_TIMESTAMPS = tuple(f.name for f in SCHEMA if pa.types.is_timestamp(f.type))
_BATCH_FILE = re.compile(r"batch-[0-9a-f]{20}\.parquet")


def batch_file_name(batch_id: str) -> str:
    """A batch's Parquet file: named by a hash, so any batch id (slashes, quotes) is a safe name
    and the same batch always lands on the same file."""
    return f"batch-{hashlib.sha256(batch_id.encode()).hexdigest()[:20]}.parquet"


@dataclass
class MonitoringTable:
    """The monitoring table at one location, checked by `prepare` before any work."""

    location: Location
    fmt: str
    parameter: str = "monitoring_path"
    spark: Any = field(default=None, repr=False)

    @classmethod
    def prepare(
        cls,
        location: str,
        fmt: str,
        *,
        spark: Any = None,
        parameter: str = "monitoring_path",
        others: Mapping[str, str | None] | None = None,
    ) -> MonitoringTable:
        """Check, before any work and touching nothing, that `location` may hold a `fmt`
        monitoring table: a supported format; the location rules (data/locations.py); apart
        from `others` (the scored output and the input: neither be, be inside, nor contain them);
        and nothing there but an empty folder or a monitoring table this project wrote in that
        format. Anything else raises one ParameterError line naming `parameter`, the location
        and what is there. Delta needs a Spark session with Delta Lake."""
        format_parameter = _format_parameter(parameter)
        require_choice(format_parameter, fmt, FORMATS)
        target = locate_apart(location, parameter, others)
        if fmt == DELTA:
            _require_delta(spark, format_parameter)
        table = cls(target, fmt, parameter, spark)
        table._inspect()
        return table

    def history(self) -> pd.DataFrame:
        """Every row so far, ordered by batch_time then batch_id, with PANDAS_DTYPES; an empty
        frame with the columns when there is none. A damaged batch file is one ParameterError
        line naming it, not a pyarrow traceback."""
        if self.fmt == DELTA:
            return self._delta_history()
        folder = self.location.path
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        tables = [self._read_batch_file(folder / n) for n in names if _BATCH_FILE.fullmatch(n)]
        table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        return _sorted(_with_dtypes(table.to_pandas()))

    def write_batch(self, batch_id: str, rows: pd.DataFrame) -> int:
        """Make the table hold exactly `rows` for `batch_id`, atomically: a re-run of a batch
        replaces its rows, never duplicates them, and a crash leaves its old rows or its new
        ones. Every row must carry `batch_id` and the columns must be COLUMNS (ValueError
        otherwise, before anything is written). Returns the number of rows written."""
        table = _to_table(batch_id, rows)
        self._inspect()  # still empty or ours? something may have appeared since prepare
        if self.fmt == DELTA:
            return self._write_delta(batch_id, table)
        folder = self.location.path
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(folder, _ours)
        if read_marker(folder) is None:  # claim the folder before the first batch file
            self._write_marker()
        write_atomically(folder / batch_file_name(batch_id), lambda f: pq.write_table(table, f))
        log.info("monitoring: %d rows of batch %r into %s", len(table), batch_id, folder)
        return table.num_rows

    # -- checks -----------------------------------------------------------------------------

    def _inspect(self) -> dict[str, Any] | None:
        """The marker of our monitoring table at the location, None when nothing (or an empty
        folder) is there; anything else raises ParameterError saying what is there."""
        marker = inspect_claim(
            self.location,
            self.parameter,
            claim_file=MARKER,
            noun="monitoring table",
            kind="a monitoring table of this project",
            fmt=self.fmt,
            owned=None if self.fmt == DELTA else lambda _, name: _ours(name),
            others={output.MANIFEST: "a batch-scoring output"},
        )
        if marker is not None and marker.get("schema_version") != SCHEMA_VERSION:
            raise ParameterError(
                f"parameter '{self.parameter}': {self.location.given} holds a monitoring table of"
                f" schema version {marker.get('schema_version')}, this project writes version"
                f" {SCHEMA_VERSION}; nothing was changed: choose another folder"
            )
        return marker

    # -- Parquet ----------------------------------------------------------------------------

    def _read_batch_file(self, file: Path) -> pa.Table:
        try:
            table = pq.read_table(file).replace_schema_metadata(None)
        except (OSError, pa.ArrowException) as error:
            raise self._damaged(file, f"cannot be read: {first_line(error)}") from None
        if not table.schema.equals(SCHEMA):
            raise self._damaged(file, "does not have the monitoring table's columns")
        ids = pc.unique(table["batch_id"]).to_pylist()
        if any(batch_file_name(i) != file.name for i in ids):
            # A copied or renamed file would hold a batch twice and break re-run replacement.
            raise self._damaged(file, f"holds batch {ids[0]!r}, which is not the batch it names")
        return table

    def _damaged(self, file: Path, problem: str) -> ParameterError:
        return ParameterError(
            f"parameter '{self.parameter}': {self.location.given}: batch file {file.name}"
            f" {problem}; move it away and run that batch's monitor again"
        )

    def _write_marker(self) -> None:
        marker = new_claim(
            self.fmt,
            table="drift monitoring",
            schema_version=SCHEMA_VERSION,
            columns={f.name: str(f.type) for f in SCHEMA},
        )
        write_claim(self.location.path, MARKER, marker)

    # -- Delta (needs Delta Lake: exercised here only against a fake Spark) -------------------

    def _write_delta(self, batch_id: str, table: pa.Table) -> int:
        records = [tuple(row[c] for c in COLUMNS) for row in table.to_pylist()]
        frame = self.spark.createDataFrame(records, schema=_spark_schema())
        path = self.location.path
        if (path / DELTA_LOG).is_dir():
            # With mode("overwrite") and option("replaceWhere", predicate), Delta atomically
            # replaces the records matching the predicate with the written data (validating that
            # every written row matches it) and leaves every other record alone, in one commit:
            # https://docs.databricks.com/delta/selective-overwrite.html
            writer = frame.write.format(DELTA).mode("overwrite")
            writer = writer.option("replaceWhere", replace_where(batch_id))
        else:  # the first batch creates the table; the marker claims the folder before it
            path.mkdir(parents=True, exist_ok=True)
            if read_marker(path) is None:
                self._write_marker()
            writer = frame.write.format(DELTA).mode("append")
        writer.save(self.location.spark)
        log.info("monitoring: %d rows of batch %r into %s", len(table), batch_id, path)
        return table.num_rows

    def _delta_history(self) -> pd.DataFrame:
        if not (self.location.path / DELTA_LOG).is_dir():
            return _sorted(_with_dtypes(SCHEMA.empty_table().to_pandas()))
        # Timestamps travel as microseconds since the epoch: toPandas would otherwise turn
        # them into naive times in the session's time zone.
        columns = [f"unix_micros({c}) AS {c}" if c in _TIMESTAMPS else c for c in COLUMNS]
        frame = self.spark.read.format(DELTA).load(self.location.spark)
        frame = frame.selectExpr(*columns).toPandas()
        for column in _TIMESTAMPS:
            frame[column] = pd.to_datetime(frame[column], unit="us", utc=True)
        return _sorted(_with_dtypes(frame))


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker in `folder` if this project wrote it, else None."""
    return read_claim(folder, MARKER)


def replace_where(batch_id: str) -> str:
    """The Delta predicate selecting one batch, its id as a Spark SQL string literal (where a
    backslash escapes the next character)."""
    escaped = batch_id.replace("\\", "\\\\").replace("'", "\\'")
    return f"batch_id = '{escaped}'"


def _ours(name: str) -> bool:
    """A file of a monitoring table, by name: its marker or a batch file."""
    return name == MARKER or bool(_BATCH_FILE.fullmatch(name))


def _format_parameter(parameter: str) -> str:
    """monitoring_path -> monitoring_format: the parameter to name when the format is wrong."""
    return parameter.removesuffix("_path") + "_format"


def _require_delta(spark: Any, format_parameter: str) -> None:
    if spark is None:
        raise ParameterError(
            f"parameter '{format_parameter}': delta is written with Spark, and no Spark session"
            " was given (use parquet without Spark)"
        )
    output.require_delta(spark, format_parameter)


def _to_table(batch_id: str, rows: pd.DataFrame) -> pa.Table:
    """`rows` checked and converted to SCHEMA; ValueError says what does not fit."""
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise ValueError(f"batch_id must be a non-empty string, got {batch_id!r}")
    if not isinstance(rows, pd.DataFrame):
        raise TypeError(f"rows must be a pandas DataFrame, got {type(rows).__name__}")
    what = f"monitoring rows of batch {batch_id!r}"
    names = list(rows.columns)
    missing = [c for c in COLUMNS if c not in names]
    unexpected = [str(c) for c in names if c not in COLUMNS]
    if missing or unexpected or len(set(names)) != len(names):
        raise ValueError(
            f"{what}: the columns must be {', '.join(COLUMNS)};"
            f" missing: {', '.join(missing) or '-'}; unexpected: {', '.join(unexpected) or '-'}"
            + ("; some are repeated" if len(set(names)) != len(names) else "")
        )
    frame = rows.loc[:, list(COLUMNS)].reset_index(drop=True)
    others = frame.loc[frame["batch_id"] != batch_id, "batch_id"]
    if len(others):
        raise ValueError(
            f"{what}: {len(others)} rows carry another batch_id (e.g. {others.iloc[0]!r});"
            " every row must carry the batch being written"
        )
    for column in _TIMESTAMPS:
        values = frame[column]
        if len(values) and not isinstance(values.dtype, pd.DatetimeTZDtype):
            raise ValueError(
                f"{what}: column {column} must hold time-zone-aware times (e.g."
                f" datetime64[us, UTC]), got {values.dtype}: a naive time is ambiguous"
            )
        if len(values):  # the table keeps microseconds
            frame[column] = values.dt.tz_convert("UTC").dt.floor("us")
    try:
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as error:
        raise ValueError(f"{what} do not fit the schema: {first_line(error)}") from None
    table = table.replace_schema_metadata(None)
    if len(table):
        any_drifted = pc.any(table["drifted"]).as_py()
        if not pc.all(pc.equal(table["batch_drifted"], any_drifted)).as_py():
            raise ValueError(
                f"{what}: batch_drifted must be {any_drifted} on every row (whether any metric"
                " of the batch drifted)"
            )
    return table


def _with_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[:, list(COLUMNS)].astype(PANDAS_DTYPES)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["batch_time", "batch_id"], kind="stable", ignore_index=True)


def _spark_schema() -> Any:
    """SCHEMA for Spark; pyspark is imported only here (Databricks ships it; pandas runs may
    not have it)."""
    from pyspark.sql import types as T

    kinds = {
        pa.string(): T.StringType(),
        pa.timestamp("us", tz="UTC"): T.TimestampType(),
        pa.int64(): T.LongType(),
        pa.float64(): T.DoubleType(),
        pa.bool_(): T.BooleanType(),
    }
    return T.StructType([T.StructField(f.name, kinds[f.type], f.nullable) for f in SCHEMA])
