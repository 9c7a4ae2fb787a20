"""The drift monitoring table keeps output.py's promises: it writes only where nothing is, into an
empty folder, or over its own table; every refusal is one ParameterError line that changes
nothing; a batch's rows are replaced whole, never duplicated, and a writer killed mid-write
leaves the batch's old rows readable. No Spark here: Parquet needs none, and Delta (which needs
Delta Lake, absent here) is exercised only against a fake Spark that records what it is asked."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest.mock import MagicMock

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from diabetes_mlops.data import monitoring_table as mt
from diabetes_mlops.data.monitoring_table import (
    COLUMNS,
    MARKER,
    SCHEMA,
    MonitoringTable,
    batch_file_name,
    replace_where,
)
from diabetes_mlops.data.output import MANIFEST, prepare_output
from diabetes_mlops.data.ownership import TEMP_STALE_SECONDS
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.tracking.runs import run_is_over

T0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")
DTYPES = {
    "batch_id": "object",
    "batch_time": "datetime64[us, UTC]",
    "monitored_at": "datetime64[us, UTC]",
    "model_name": "object",
    "model_version": "Int64",
    "feature": "object",
    "metric": "object",
    "value": "float64",
    "threshold": "float64",
    "drifted": "bool",
    "batch_drifted": "bool",
    "rows": "int64",
    "run_id": "object",
}


def batch(batch_id, *, features=("age", "bmi"), drifted=(), rows=100, version=3, when=T0):
    """One batch's rows: two metrics per feature; `drifted` lists the (feature, metric) pairs
    over their threshold. The row count tells re-runs of a batch apart."""
    records = [
        {
            "batch_id": batch_id,
            "batch_time": when,
            "monitored_at": when + pd.Timedelta(minutes=5),
            "model_name": "diabetes",
            "model_version": version,
            "feature": feature,
            "metric": metric,
            "value": 0.4 if (feature, metric) in drifted else 0.01,
            "threshold": 0.25 if metric == "psi" else None,
            "drifted": (feature, metric) in drifted,
            "batch_drifted": bool(drifted),
            "rows": rows,
            "run_id": "a" * 32,
        }
        for feature in features
        for metric in ("psi", "missing_rate_change")
    ]
    return pd.DataFrame(records, columns=list(COLUMNS))


def snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def rows_of(table, batch_id):
    history = table.history()
    return history[history["batch_id"] == batch_id].reset_index(drop=True)


@pytest.fixture
def table(tmp_path):
    return MonitoringTable.prepare(str(tmp_path / "monitoring"), "parquet")


def test_one_row_per_batch_feature_and_metric_with_these_columns():
    assert COLUMNS == (
        "batch_id", "batch_time", "monitored_at", "model_name", "model_version", "feature",
        "metric", "value", "threshold", "drifted", "batch_drifted", "rows", "run_id",
    )  # fmt: skip
    assert SCHEMA.field("batch_time").type == pa.timestamp("us", tz="UTC")
    assert SCHEMA.field("model_version").nullable and SCHEMA.field("value").nullable
    assert not SCHEMA.field("batch_id").nullable
    assert mt.FORMATS == ("parquet", "delta")


def test_rows_come_back_as_written_with_the_schema_dtypes(table):
    empty = table.history()
    assert list(empty.columns) == list(COLUMNS) and empty.empty
    assert empty.dtypes.astype(str).to_dict() == DTYPES
    rows = batch("2024-05-01", drifted={("bmi", "psi")}, version=None)
    assert table.write_batch("2024-05-01", rows) == 4

    history = table.history()
    assert history.dtypes.astype(str).to_dict() == DTYPES
    assert history["model_version"].isna().all() and history["threshold"].isna().sum() == 2
    pd.testing.assert_frame_equal(history, rows.astype(DTYPES))
    folder = table.location.path
    assert sorted(os.listdir(folder)) == sorted([MARKER, batch_file_name("2024-05-01")])
    marker = json.loads((folder / MARKER).read_text())
    assert marker["format"] == "parquet" and marker["schema_version"] == mt.SCHEMA_VERSION
    # Other readers of the folder skip the marker and see the same rows.
    assert len(pd.read_parquet(folder)) == 4
    assert ds.dataset(folder).schema.remove_metadata().equals(SCHEMA)


def test_times_are_kept_in_utc_to_the_microsecond(table):
    rows = batch("b", when=pd.Timestamp("2024-05-01 14:00:00.123456789", tz="Europe/Paris"))
    table.write_batch("b", rows)
    assert table.history()["batch_time"].iloc[0] == pd.Timestamp(
        "2024-05-01 12:00:00.123456", tz="UTC"
    )


def test_a_rerun_replaces_its_batch_and_leaves_the_others(table):
    table.write_batch("b1", batch("b1", rows=100))
    table.write_batch("b2", batch("b2", rows=200, when=T0 + pd.Timedelta(days=1)))
    table.write_batch("b3", batch("b3", rows=300, features=("age",), when=T0 - pd.Timedelta(1)))
    b1_file = table.location.path / batch_file_name("b1")
    b1_bytes = b1_file.read_bytes()

    table.write_batch("b2", batch("b2", rows=222, features=("age", "bmi", "bp")))
    history = table.history()
    assert history.groupby("batch_id").size().to_dict() == {"b1": 4, "b2": 6, "b3": 2}
    assert set(rows_of(table, "b2")["rows"]) == {222}  # replaced, not added to
    assert list(history["batch_id"].drop_duplicates()) == ["b3", "b1", "b2"]  # by batch_time
    assert b1_file.read_bytes() == b1_bytes
    assert len(os.listdir(table.location.path)) == 4  # the marker and one file per batch

    assert table.write_batch("b2", batch("b2").iloc[:0]) == 0  # a batch may come back empty
    assert table.history().groupby("batch_id").size().to_dict() == {"b1": 4, "b3": 2}


@pytest.mark.parametrize("failing", ["writer", "rename"])
def test_a_write_that_fails_leaves_the_old_rows_and_no_temporary_file(table, monkeypatch, failing):
    table.write_batch("b1", batch("b1", rows=100))
    before = snapshot(table.location.path)
    if failing == "writer":
        write_table = pq.write_table

        def half_then_fail(data, where, **kwargs):
            write_table(data.slice(0, 1), where, **kwargs)
            raise OSError("disk full")

        monkeypatch.setattr(mt.pq, "write_table", half_then_fail)
    else:
        monkeypatch.setattr(mt.os, "replace", MagicMock(side_effect=OSError("I/O error")))
    with pytest.raises(OSError):
        table.write_batch("b1", batch("b1", rows=999))
    assert snapshot(table.location.path) == before
    monkeypatch.undo()
    assert set(rows_of(table, "b1")["rows"]) == {100}


CHILD = """
import os, pickle, signal, sys
import pyarrow.parquet as pq
from diabetes_mlops.data.monitoring_table import MonitoringTable

write_table = pq.write_table

def half_then_die(data, where, **kwargs):
    write_table(data.slice(0, 1), where, **kwargs)
    where.flush()
    os.fsync(where.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

pq.write_table = half_then_die
table = MonitoringTable.prepare(sys.argv[1], "parquet")
with open(sys.argv[2], "rb") as file:
    table.write_batch("b1", pickle.load(file))
"""


def test_a_writer_killed_mid_write_leaves_the_old_rows(table, tmp_path):
    """A real process SIGKILLed while writing: no cleanup runs, its temporary file stays, and
    still every reader sees the batch's previous rows; a later write removes the temporary file
    only once it is too old to belong to a live writer."""
    folder = table.location.path
    table.write_batch("b1", batch("b1", rows=100))
    new_rows = tmp_path / "rows.pickle"
    new_rows.write_bytes(pickle.dumps(batch("b1", rows=999)))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(new_rows)], capture_output=True, timeout=300
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    leftover = [n for n in os.listdir(folder) if n.startswith(".")]
    assert len(leftover) == 1 and leftover[0].startswith(f".{batch_file_name('b1')}.")
    assert (folder / leftover[0]).stat().st_size > 0

    again = MonitoringTable.prepare(str(folder), "parquet")  # the leftover is ours: accepted
    assert set(rows_of(again, "b1")["rows"]) == {100} and len(again.history()) == 4
    assert len(pd.read_parquet(folder)) == len(ds.dataset(folder).to_table()) == 4

    again.write_batch("b2", batch("b2"))
    assert leftover[0] in os.listdir(folder)  # young: it could be a live writer's
    old = time.time() - TEMP_STALE_SECONDS - 60
    os.utime(folder / leftover[0], (old, old))
    again.write_batch("b1", batch("b1", rows=300))
    assert not [n for n in os.listdir(folder) if n.startswith(".")]
    assert set(rows_of(again, "b1")["rows"]) == {300}


def test_a_folder_left_with_only_a_half_written_marker_is_still_usable(tmp_path):
    folder = tmp_path / "monitoring"
    folder.mkdir()
    (folder / f".{MARKER}.{'0' * 32}.tmp").write_text('{"written_')
    table = MonitoringTable.prepare(str(folder), "parquet")
    table.write_batch("b1", batch("b1"))
    assert len(table.history()) == 4


def test_a_users_file_named_like_a_temporary_file_is_neither_ours_nor_removed(tmp_path):
    folder = tmp_path / "monitoring"
    table = MonitoringTable.prepare(str(folder), "parquet")
    table.write_batch("b1", batch("b1"))
    theirs = folder / f".notes.{'0' * 32}.tmp"  # the pattern of a temporary file, not of ours
    theirs.write_text("mine, keep")
    old = time.time() - TEMP_STALE_SECONDS - 60
    os.utime(theirs, (old, old))
    refused(tmp_path, "also holds files it did not write (.notes.", folder)
    assert theirs.read_text() == "mine, keep"


def refused(tmp_path, message, location, fmt="parquet", named=None, **kwargs):
    """One ParameterError line naming the parameter (`named`; the location's by default) and
    saying what is wrong; nothing changed."""
    before = snapshot(tmp_path)
    with pytest.raises(ParameterError) as info:
        MonitoringTable.prepare(str(location), fmt, **kwargs)
    text = str(info.value)
    assert "\n" not in text and message in text, text
    assert text.startswith(f"parameter '{named or kwargs.get('parameter', 'monitoring_path')}'")
    assert snapshot(tmp_path) == before
    return text


def test_locations_holding_what_is_not_a_monitoring_table_are_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert str(notes) in refused(tmp_path, "is a file, not a monitoring table", notes)
    refused(tmp_path, f"is under {notes}, which is a file", notes / "monitoring")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "report.parquet").write_bytes(b"theirs")
    refused(tmp_path, "holds 1 entries this project did not write (report.parquet)", docs)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".notes").write_text("theirs")  # hidden, but still not ours
    refused(tmp_path, "holds 1 entries this project did not write (.notes)", hidden)
    delta = tmp_path / "delta"
    (delta / "_delta_log").mkdir(parents=True)
    refused(tmp_path, "holds a Delta table this project did not write", delta)
    link = tmp_path / "link"
    link.symlink_to(docs)
    refused(tmp_path, "is a symbolic link", link)


def test_the_batch_scoring_output_is_refused(tmp_path):
    scores = tmp_path / "scores"
    target = prepare_output(str(scores), "parquet", engine="pandas")
    target.begin("f" * 32, run_is_over)
    target.write_pandas(pd.DataFrame({"prediction": [1.0, 2.0]}))
    target.commit({})
    assert (scores / MANIFEST).is_file()
    refused(tmp_path, "holds a batch-scoring output of this project", scores)


def test_our_own_table_is_refused_in_another_format_or_schema_or_with_foreign_files(tmp_path):
    table = MonitoringTable.prepare(str(tmp_path / "monitoring"), "parquet")
    table.write_batch("b1", batch("b1"))
    folder = table.location.path
    refused(tmp_path, "holds a parquet monitoring table of this project, not delta", folder,
            "delta", spark=FakeSpark())  # fmt: skip
    marker = json.loads((folder / MARKER).read_text())
    (folder / MARKER).write_text(json.dumps({**marker, "schema_version": 2}))
    refused(tmp_path, "schema version 2, this project writes version 1", folder)
    (folder / MARKER).write_text(json.dumps(marker))
    (folder / "mine.csv").write_text("a user's file")
    refused(tmp_path, "also holds files it did not write (mine.csv)", folder)
    with pytest.raises(ParameterError, match="mine.csv"):  # and a prepared table re-checks
        table.write_batch("b2", batch("b2"))
    assert batch_file_name("b2") not in os.listdir(folder)


@pytest.mark.parametrize(
    "location, message",
    [
        ("/", "is not a folder to write"),
        (".", "is not a folder to write"),
        ("s3://bucket/monitoring", "uses s3:, which is not supported"),
    ],
)
def test_locations_that_are_not_a_folder_of_ours_are_refused(tmp_path, location, message):
    refused(tmp_path, message, location)


def test_on_databricks_only_volumes_and_dbfs_are_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    refused(tmp_path, "on Databricks, write under /Volumes/", tmp_path / "monitoring")


def test_the_table_must_be_apart_from_the_scored_output_and_the_input(tmp_path):
    scores, data = tmp_path / "scores", tmp_path / "data"
    others = {"output_path": str(scores), "input_path": str(data / "batch.csv")}
    refused(tmp_path, "is output_path itself", scores, others=others)
    refused(tmp_path, "is inside output_path", scores / "monitoring", others=others)
    refused(tmp_path, "contains input_path", data, others=others)
    refused(tmp_path, "contains output_path", tmp_path, others=others,
            parameter="drift_table_path")  # fmt: skip
    table = MonitoringTable.prepare(
        str(tmp_path / "monitoring"), "parquet", others={**others, "input_table": None}
    )
    assert table.location.path == tmp_path / "monitoring"


def test_an_unsupported_format_names_the_format_parameter(tmp_path):
    refused(tmp_path, "must be one of parquet, delta, got 'csv'", tmp_path / "m", "csv",
            named="drift_format", parameter="drift_path")  # fmt: skip


def odd(frame, **changes):
    return frame.assign(**changes)


@pytest.mark.parametrize(
    "rows, message",
    [
        (odd(batch("b1"), batch_id=["b1", "b1", "b2", "b1"]), "1 rows carry another batch_id"),
        (batch("b2"), "4 rows carry another batch_id (e.g. 'b2')"),
        (batch("b1").drop(columns="run_id"), "missing: run_id; unexpected: -"),
        (odd(batch("b1"), extra=1), "missing: -; unexpected: extra"),
        (odd(batch("b1"), batch_time=T0.tz_localize(None)), "naive time is ambiguous"),
        (odd(batch("b1"), rows=[1, 2, 3, "many"]), "do not fit the schema"),
        (odd(batch("b1"), feature=["age", None, "bmi", "bmi"]), "feature"),
        (odd(batch("b1"), drifted=[True, False, False, False]), "batch_drifted must be True"),
    ],
    ids=["one-row-of-another-batch", "another-batch", "missing", "unexpected", "naive-time",
         "wrong-type", "null-feature", "batch-drifted-contradicts"],  # fmt: skip
)
def test_rows_that_do_not_fit_are_refused_before_anything_is_written(table, rows, message):
    with pytest.raises(ValueError) as info:
        table.write_batch("b1", rows)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert not table.location.path.exists()


def test_a_batch_id_and_rows_of_the_wrong_kind_are_refused(table):
    with pytest.raises(ValueError, match="batch_id must be a non-empty string"):
        table.write_batch(" ", batch(" "))
    with pytest.raises(TypeError, match="rows must be a pandas DataFrame"):
        table.write_batch("b1", batch("b1").to_dict("records"))


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda path: path.write_bytes(b"PAR1 not really"), "cannot be read"),
        (lambda path: pq.write_table(pa.table({"x": [1]}), path), "monitoring table's columns"),
        (lambda path: path.with_name(batch_file_name("b2")).write_bytes(path.read_bytes()),
         "holds batch 'b1', which is not the batch it names"),
    ],
    ids=["garbage", "other-columns", "copied"],
)  # fmt: skip
def test_a_damaged_batch_file_is_one_clear_line(table, spoil, message):
    table.write_batch("b1", batch("b1"))
    spoil(table.location.path / batch_file_name("b1"))
    with pytest.raises(ParameterError) as info:
        table.history()
    text = str(info.value)
    assert "\n" not in text and message in text and "batch file batch-" in text, text
    assert text.startswith("parameter 'monitoring_path'")


# -- Delta: the decisions only; a fake Spark records what it is asked --------------------------


class FakeWriter:
    def __init__(self, spark, frame):
        self.spark, self.frame, self.call = spark, frame, {"options": {}}

    def format(self, name):
        self.call["format"] = name
        return self

    def mode(self, mode):
        self.call["mode"] = mode
        return self

    def option(self, key, value):
        self.call["options"][key] = value
        return self

    def save(self, path):
        self.call.update(path=path, marker_first=(Path(path) / MARKER).is_file())
        self.call.update(records=self.frame.records, schema=self.frame.schema)
        (Path(path) / "_delta_log").mkdir(parents=True, exist_ok=True)
        self.spark.saves.append(self.call)


class FakeFrame:
    def __init__(self, spark, records, schema):
        self.spark, self.records, self.schema = spark, records, schema

    @property
    def write(self):
        return FakeWriter(self.spark, self)


class FakeSpark:
    """No `_jvm`: output.require_delta takes it for Spark Connect, which ships Delta."""

    def __init__(self, stored=None):
        self.saves, self.stored, self.reads = [], stored, []

    def createDataFrame(self, records, schema):  # noqa: N802 - Spark's name
        return FakeFrame(self, records, schema)

    @property
    def read(self):
        reader = MagicMock()
        reader.format.return_value.load.side_effect = lambda path: self._load(path)
        return reader

    def _load(self, path):
        loaded = MagicMock()

        def select(*expressions):
            self.reads.append((path, expressions))
            selected = MagicMock()
            selected.toPandas.return_value = self.stored.copy()
            return selected

        loaded.selectExpr.side_effect = select
        return loaded


def test_delta_needs_a_spark_session_with_delta_lake(tmp_path, spark):
    named = "monitoring_format"
    refused(tmp_path, "delta is written with Spark", tmp_path / "m", "delta", named=named)
    # The test session has no Delta Lake (its jars cannot be fetched here): asked, not assumed.
    refused(tmp_path, "delta needs Delta Lake", tmp_path / "m", "delta", named, spark=spark)


def test_delta_creates_the_table_by_appending_then_replaces_one_batch_per_commit(tmp_path):
    spark = FakeSpark()
    table = MonitoringTable.prepare(str(tmp_path / "monitoring"), "delta", spark=spark)
    assert table.history().empty and not spark.reads  # no table yet: Spark is not asked
    table.write_batch("b1", batch("b1"))
    first = spark.saves[-1]
    assert (first["format"], first["mode"], first["options"]) == ("delta", "append", {})
    assert first["path"] == str(tmp_path / "monitoring") and first["marker_first"]
    assert json.loads((tmp_path / "monitoring" / MARKER).read_text())["format"] == "delta"
    assert first["schema"].fieldNames() == list(COLUMNS)
    assert first["records"][0][1] == T0.to_pydatetime() and len(first["records"]) == 4

    again = MonitoringTable.prepare(str(tmp_path / "monitoring"), "delta", spark=spark)
    assert again.write_batch("it's \\ b2", batch("it's \\ b2")) == 4
    second = spark.saves[-1]
    assert (second["mode"], second["options"]) == (
        "overwrite",
        {"replaceWhere": "batch_id = 'it\\'s \\\\ b2'"},
    )
    refused(tmp_path, "holds a delta monitoring table of this project, not parquet",
            tmp_path / "monitoring")  # fmt: skip


def test_delta_history_turns_spark_microseconds_into_utc_times(tmp_path):
    stored = batch("b1", version=None).astype({"model_version": "float64"})
    for column in ("batch_time", "monitored_at"):
        stored[column] = stored[column].astype("int64") // 1000  # what unix_micros gives
    spark = FakeSpark(stored)
    table = MonitoringTable.prepare(str(tmp_path / "monitoring"), "delta", spark=spark)
    (tmp_path / "monitoring" / "_delta_log").mkdir(parents=True)
    history = table.history()
    pd.testing.assert_frame_equal(history, batch("b1", version=None).astype(DTYPES))
    path, expressions = spark.reads[-1]
    assert path == str(tmp_path / "monitoring")
    assert expressions[1] == "unix_micros(batch_time) AS batch_time"


def test_replace_where_quotes_any_batch_id():
    assert replace_where("2024-05-01") == "batch_id = '2024-05-01'"
    assert replace_where("a'b\\c") == "batch_id = 'a\\'b\\\\c'"
