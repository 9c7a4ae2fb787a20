"""Batch scoring never deletes what this project did not write: every refused output location is
one ParameterError line before any work (no MLflow run, no model lookup), and leaves every byte
where it was; our own output is replaced whole, by either engine."""

import shutil
import uuid

import mlflow
import pandas as pd
import pytest
from pyspark.sql import functions as F

from diabetes_mlops.cli import main
from diabetes_mlops.data.output import MANIFEST, prepare_output, read_manifest
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.steps import batch_score
from diabetes_mlops.tracking.runs import run_is_over

EXPERIMENT = "/Shared/diabetes-output-safety"
DATA = "Volumes/main/diabetes/data"

RUN_RECORDS = "runs"


def snapshot(folder):
    """Every file and folder, but the local runner's records of failed runs (local/runs/: what
    a repair needs, as Databricks keeps a failed run), which are no data."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
        if RUN_RECORDS not in p.relative_to(folder).parts
    }


def runs() -> int:
    return len(mlflow.search_runs(experiment_names=[EXPERIMENT]))


@pytest.fixture
def model(champion) -> str:
    """The session's champion: these tests only score with it."""
    return champion.name


def refused(tmp_path, message, *args, **kwargs):
    """batch_score refuses before any work: one line, no run, nothing changed. The model does
    not exist, so getting as far as the registry would be a different error."""
    before, runs_before = snapshot(tmp_path), runs()
    with pytest.raises(ParameterError) as info:
        batch_score(*args[:3], "no_such_model", EXPERIMENT, **kwargs)
    text = str(info.value)
    assert "\n" not in text and message in text, text
    assert snapshot(tmp_path) == before
    assert runs() == runs_before
    return text


@pytest.fixture
def data(tmp_path, repo):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("data_raw.csv", "data_batch_input.csv"):
        shutil.copy(repo / "ml_data" / name, folder / name)
    return folder


@pytest.mark.parametrize("engine", ["pandas", "spark"])
def test_locations_holding_data_are_refused(tmp_path, data, engine, request):
    spark = request.getfixturevalue("spark") if engine == "spark" else None
    source = str(data / "data_batch_input.csv")
    kwargs = {"engine": engine}
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("keep me")
    refused(tmp_path, "holds 1 entries this project did not write (notes.txt)", spark, source,
            str(docs), **kwargs)  # fmt: skip
    refused(tmp_path, "contains input_path", spark, source, str(data), **kwargs)
    refused(tmp_path, "is input_path itself", spark, source, source, **kwargs)
    refused(tmp_path, "is inside input_path", spark, source, source + "/out", **kwargs)
    refused(tmp_path, f"is under {docs / 'notes.txt'}, which is a file", spark, source,
            str(docs / "notes.txt" / "out"), **kwargs)  # fmt: skip
    refused(tmp_path, "is a file, not an output folder", spark, source, str(data / "data_raw.csv"),
            **kwargs)  # fmt: skip


def test_foreign_tables_and_parquet_folders_are_refused(tmp_path, data, spark):
    source = str(data / "data_batch_input.csv")
    theirs = tmp_path / "theirs"
    spark.range(5).write.parquet(str(theirs))
    refused(tmp_path, "this project did not write (._SUCCESS.crc", spark, source, str(theirs))
    refused(tmp_path, "this project did not write", None, source, str(theirs), engine="pandas")
    table = tmp_path / "table"
    (table / "_delta_log").mkdir(parents=True)
    (table / "_delta_log" / "00000000000000000000.json").write_text("{}")
    refused(tmp_path, "holds a Delta table this project did not write", spark, source, str(table))


def test_delta_without_delta_lake_is_one_line_before_any_work(tmp_path, data, spark):
    source = str(data / "data_batch_input.csv")
    refused(tmp_path, "'output_format': delta needs Delta Lake", spark, source,
            str(tmp_path / "out"), output_format="delta")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_other_stores_are_not_supported_for_output(tmp_path, data, spark):
    source = str(data / "data_batch_input.csv")
    refused(tmp_path, "uses abfss:, which is not supported for output", spark, source,
            "abfss://c@account.dfs.core.windows.net/out")  # fmt: skip


def test_each_engine_replaces_our_own_output_whole(tmp_path, data, spark, model):
    source = str(data / "data_batch_input.csv")
    out = tmp_path / "scores"
    batch_score(None, source, str(out), model, EXPERIMENT, engine="pandas")
    assert read_manifest(out)["engine"] == "pandas"
    result = batch_score(spark, source, str(out), model, EXPERIMENT)
    manifest = read_manifest(out)
    assert manifest["engine"] == "spark" and manifest["rows"] == 442 == int(result["rows"])
    assert manifest["model_name"] == model and manifest["input_path"] == source
    assert manifest["mlflow_run_id"] == mlflow.last_active_run().info.run_id
    assert spark.read.parquet(str(out)).count() == len(pd.read_parquet(out)) == 442
    assert set(manifest["files"]) | {MANIFEST} == {p.name for p in out.iterdir()}
    batch_score(None, source, str(out), model, EXPERIMENT, engine="pandas")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "part-00000.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "scores"]


def test_a_failure_mid_spark_write_leaves_the_previous_output(spark, tmp_path):
    target = tmp_path / "out"

    def write(frame):
        output = prepare_output(str(target), "parquet", engine="spark", spark=spark)
        output.begin(uuid.uuid4().hex, run_is_over)
        output.write_spark(frame)
        output.commit({})

    write(spark.range(100).withColumn("value", F.col("id") * 2))
    before = snapshot(target)
    failing = spark.range(100, numPartitions=4).withColumn(
        "value", F.when(F.col("id") > 80, F.raise_error(F.lit("boom"))).otherwise(F.col("id"))
    )
    with pytest.raises(Exception, match="boom"):
        write(failing)
    assert snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left
    write(spark.range(5))
    assert spark.read.parquet(str(target)).count() == 5 == read_manifest(target)["rows"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize(
    "output_path, message",
    [
        (f"/{DATA}", "contains input_path"),
        (f"/{DATA}/data_batch_input.csv", "is input_path itself"),
        ("/Volumes/../../escaped", "climbs out of /Volumes/"),
    ],
)
def test_the_local_job_refuses_with_one_line_and_changes_nothing(
    repo, tmp_path, output_path, message, capsys
):
    root = tmp_path / "local"
    (root / DATA).mkdir(parents=True)
    shutil.copy(repo / "ml_data" / "data_batch_input.csv", root / DATA)
    before = snapshot(tmp_path)
    code = main(
        [
            "run-local",
            str(repo / "job_specs" / "diabetes_batch_scoring.json"),
            "--local-root",
            str(root),
            "--param",
            f"output_path={output_path}",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    lines = [line for line in err.splitlines() if message in line]
    assert len(lines) == 1 and "ParameterError" in lines[0], out + err
    assert snapshot(tmp_path) == before
