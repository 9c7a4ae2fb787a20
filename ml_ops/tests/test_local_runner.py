"""The job specs run end to end through the local runner: the same notebooks Databricks runs."""

import json
import os
import shutil
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from diabetes_mlops.cli import main
from diabetes_mlops.local.runner import LocalRunner, resolve_references
from diabetes_mlops.runtime.errors import ParameterError

# Spark jobs through the local runner: make test-all runs them again through Spark Connect.
pytestmark = pytest.mark.spark

DATA = "Volumes/main/diabetes/data"
OUTPUT = f"{DATA}/predictions/diabetes"


@pytest.fixture
def local_root(tmp_path, repo):
    root = tmp_path / "local"
    (root / DATA).mkdir(parents=True)
    for name in ("data_raw.csv", "data_batch_input.csv"):
        shutil.copy(repo / "ml_data" / name, root / DATA / name)
    return root


def test_train_then_score_then_a_worse_model_is_not_promoted(repo, local_root, tmp_path):
    uri = f"sqlite:///{tmp_path}/e2e.db"
    lines = []
    runner = LocalRunner(local_root, tracking_uri=uri, report=lines.append)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    job = runner.run(repo / "job_specs" / "diabetes_model_training.json")
    assert job.succeeded, lines
    assert [t.key for t in job.tasks] == [
        "train",
        "validate",
        "approval",
        "promote",
        "deploy_serving",
    ]
    assert job.task("train").outputs["model_version"] == "1"
    assert job.task("promote").outputs == {"promoted": "true", "champion_version": "1"}
    assert job.task("deploy_serving").outputs["serving"] == "none"  # no endpoint locally
    assert str(client.get_model_version_by_alias("diabetes", "champion").version) == "1"
    assert not runner.spark.started  # nothing touched spark, so no session was created
    artifacts = list((local_root / "mlartifacts").rglob("MLmodel"))
    assert len(artifacts) == 1  # artifacts land under the local root, not ./mlruns

    scoring = runner.run(repo / "job_specs" / "diabetes_batch_scoring.json")
    assert scoring.succeeded, lines
    scored = pd.read_parquet(local_root / OUTPUT)
    batch = pd.read_csv(local_root / DATA / "data_batch_input.csv")
    assert len(scored) == len(batch) and np.isfinite(scored["prediction"]).all()
    assert (scored["model_version"] == 1).all()

    worse = runner.run(repo / "job_specs" / "diabetes_model_training.json", {"alphas": "1000000"})
    assert worse.succeeded  # a rejected model is an outcome, not a failure
    assert worse.task("validate").outputs == {"validation_passed": "false"}
    assert worse.task("promote").outputs["promoted"] == "false"
    assert str(client.get_model_version_by_alias("diabetes", "champion").version) == "1"
    assert client.get_model_version("diabetes", "2").tags["validation_status"] == "failed"
    # The caller's MLflow settings are back (the steps point the registry at the job's store).
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() != uri
    assert os.environ.get("MLFLOW_REGISTRY_URI") != uri


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def run_local(repo, spec, local_root, **params) -> int:
    """`diabetes-mlops run-local` in-process, as `make run-local-*` calls it."""
    args = ["run-local", str(repo / "job_specs" / spec), "--local-root", str(local_root)]
    for name, value in params.items():
        args += ["--param", f"{name}={value}"]
    return main(args)


def one_error_line(err: str, source: str) -> str:
    lines = [line for line in err.splitlines() if source in line]
    assert len(lines) == 1, err
    return lines[0]


def test_bad_training_data_fails_the_job_and_registers_nothing(
    bad_training, bad_input, repo, local_root, model_name, capsys
):
    bad_input(bad_training, local_root / DATA / "data_raw.csv", local_root / DATA / "bad.csv")
    code = run_local(
        repo,
        "diabetes_model_training.json",
        local_root,
        data_path=f"/{DATA}/bad.csv",
        model_name=model_name,
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert "job 'diabetes-model-training' FAILED" in out
    assert "validate skipped" in out and "promote skipped" in out
    line = one_error_line(err, "bad.csv")
    assert line.startswith("task train (") and bad_training[1] in line
    assert "Traceback" not in out + err
    assert MlflowClient().search_model_versions(f"name='{model_name}'") == []
    runs = mlflow.search_runs(
        experiment_names=["/Shared/diabetes"],
        filter_string=f"params.model_name = '{model_name}' and tags.step = 'train'",
    )
    assert runs["status"].tolist() == ["FAILED"]


@pytest.fixture(scope="module")
def scored_root(tmp_path_factory, repo, champion):
    """A local root with one good scoring output of the session's champion, shared by the
    bad-input cases."""
    root = tmp_path_factory.mktemp("scored")
    (root / DATA).mkdir(parents=True)
    for name in ("data_raw.csv", "data_batch_input.csv"):
        shutil.copy(repo / "ml_data" / name, root / DATA / name)
    assert run_local(repo, "diabetes_batch_scoring.json", root, model_name=champion.name) == 0
    return root, champion.name


@pytest.mark.everyday_sample("non-numeric value")  # a Spark job per case
def test_bad_scoring_data_fails_the_job_and_keeps_the_previous_output(
    bad_scoring, bad_input, repo, scored_root, capsys
):
    root, name = scored_root
    output = root / OUTPUT
    before = snapshot(output)
    bad_input(bad_scoring, root / DATA / "data_batch_input.csv", root / DATA / "bad.csv")
    capsys.readouterr()
    code = run_local(
        repo, "diabetes_batch_scoring.json", root, model_name=name, input_path=f"/{DATA}/bad.csv"
    )
    assert code == 1
    assert bad_scoring[1] in one_error_line(capsys.readouterr().err, "bad.csv")
    assert snapshot(output) == before
    assert [p.name for p in output.parent.iterdir()] == [output.name]


@pytest.mark.slow  # a job in a process of its own, for its console; the message is tested fast
def test_a_corrupt_input_file_is_one_line_and_spark_traces_go_to_its_log(repo, scored_root):
    root, name = scored_root
    folder = root / DATA / "parquet_input"
    folder.mkdir()
    frame = pd.read_csv(root / DATA / "data_batch_input.csv")
    frame.to_parquet(folder / "part-0.parquet")
    frame.to_parquet(folder / "part-1.parquet")
    whole = (folder / "part-1.parquet").read_bytes()
    (folder / "part-1.parquet").write_bytes(whole[: len(whole) // 2])
    done = subprocess.run(
        [sys.executable, "-m", "diabetes_mlops.cli", "run-local",
         str(repo / "job_specs" / "diabetes_batch_scoring.json"), "--local-root", str(root),
         "--param", f"model_name={name}", "--param", f"input_path=/{DATA}/parquet_input",
         "--param", "input_format=parquet"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    console = done.stdout + done.stderr
    assert done.returncode == 1, console
    assert "part-1.parquet is a Parquet file cut short or corrupt (no whole footer)" in done.stderr
    assert "\tat " not in console and "ERROR" not in console, console  # no JVM traces here
    if os.environ.get("DIABETES_MLOPS_TEST_SPARK") == "connect":
        return  # the Spark Connect server is the test process's: its log is not this root's
    assert f"Spark's own log, with its stack traces: {root / 'spark.log'}" in done.stdout
    assert "\tat org.apache" in (root / "spark.log").read_text()


def test_scoring_with_no_champion_fails_and_writes_nothing(repo, local_root, model_name, capsys):
    assert run_local(repo, "diabetes_batch_scoring.json", local_root, model_name=model_name) == 1
    err = capsys.readouterr().err
    assert f"registered model '{model_name}' has no version with alias 'champion'" in err
    assert not (local_root / OUTPUT).exists()


def test_command_line_mistakes_exit_2(repo, local_root, capsys):
    spec = str(repo / "job_specs" / "diabetes_batch_scoring.json")
    assert main(["run-local", spec, "--local-root", str(local_root), "--param", "nonsense"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["run-local", spec, "--local-root", str(local_root), "--param", "colour=red"]) == 2
    assert "declares parameter(s) colour" in capsys.readouterr().err
    assert main(["run-local", str(local_root / "missing.json")]) == 2


def write_job(tmp_path, cells, extra_tasks=()):
    """A one-notebook job in its own folder, for runner behaviours the shipped jobs don't show."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir(parents=True)
    source = "# Databricks notebook source\n" + "\n# COMMAND ----------\n".join(cells)
    (notebooks / "probe.py").write_text(source)
    task = {
        "existing_cluster_id": "${cluster_id}",
        "notebook_task": {"notebook_path": "${notebooks_dir}/probe"},
        "libraries": [{"whl": "${wheel.diabetes}"}, {"whl": "${wheel.diabetes_mlops}"}],
    }
    tasks = [{"task_key": "first", **task}] + [
        {"task_key": key, "depends_on": [{"task_key": "first"}], **task} for key in extra_tasks
    ]
    spec = tmp_path / "probe.json"
    spec.write_text(json.dumps({"name": "probe", "tasks": tasks}))
    return spec, notebooks


def test_a_tracking_uri_from_the_shell_is_said_before_anything_runs(tmp_path):
    """MLFLOW_TRACKING_URI wins over the local root's store, as MLflow's own tools let it; the
    runner says so first, with any password hidden, so models do not land elsewhere silently."""
    said: list[str] = []
    environ = {"MLFLOW_TRACKING_URI": "postgresql://ml:s3cret@db:5432/mlflow"}
    runner = LocalRunner(tmp_path / "root", environ=environ, report=said.append)
    assert runner.tracking_uri == environ["MLFLOW_TRACKING_URI"]
    assert said == [
        "MLflow store: postgresql://ml:***@db:5432/mlflow, from MLFLOW_TRACKING_URI, not"
        f" {tmp_path / 'root' / 'mlflow.db'}: runs and models go there (unset"
        " MLFLOW_TRACKING_URI to keep them under the local root)"
    ]
    quiet: list[str] = []
    LocalRunner(tmp_path / "root", environ={}, report=quiet.append)
    assert quiet == []


def test_a_notebook_that_touches_spark_gets_a_local_session(tmp_path):
    spec, notebooks = write_job(
        tmp_path,
        [
            "dbutils.widgets.text('n', '5')",
            "count = spark.range(int(dbutils.widgets.get('n'))).count()\n"
            "dbutils.jobs.taskValues.set('count', count)",
        ],
    )
    runner = LocalRunner(tmp_path / "local", report=lambda line: None)
    job = runner.run(spec, {"n": "7"}, notebooks_dir=notebooks)
    assert job.succeeded and job.task("first").outputs == {"count": 7}
    assert runner.spark.started


def test_unexpected_errors_print_a_traceback_with_the_notebook_line(tmp_path):
    spec, notebooks = write_job(tmp_path, ["x = 1", "\n\n1 / 0"], extra_tasks=["second"])
    lines = []
    job = LocalRunner(tmp_path / "local", report=lines.append).run(spec, notebooks_dir=notebooks)
    assert not job.succeeded
    assert job.task("first").error_line == "ZeroDivisionError: division by zero"
    assert job.task("second").status == "SKIPPED"
    assert any('probe.py", line 6' in line for line in lines)


def test_exit_ends_a_notebook_early_and_magic_cells_are_refused(tmp_path):
    spec, notebooks = write_job(tmp_path, ["dbutils.notebook.exit('early')", "1 / 0"])
    assert LocalRunner(tmp_path / "l1", report=print).run(spec, notebooks_dir=notebooks).succeeded
    spec, notebooks = write_job(tmp_path / "b", ["# MAGIC %md title", "# MAGIC %sh ls"])
    job = LocalRunner(tmp_path / "l2", report=print).run(spec, notebooks_dir=notebooks)
    assert "does not run %sh cells" in job.task("first").error_line


def test_references_resolve_to_task_values_and_run_ids():
    values = {"train": {"model_version": "4"}}
    assert resolve_references("v{{tasks.train.values.model_version}}", values, "t", "r1") == "v4"
    assert resolve_references("{{ job.run_id }}/{{task.name}}", values, "t", "r1") == "r1/t"
    with pytest.raises(ParameterError, match="did not set value 'x'"):
        resolve_references("{{tasks.train.values.x}}", values, "t", "r1")
    with pytest.raises(ParameterError, match="unsupported reference"):
        resolve_references("{{job.trigger}}", values, "t", "r1")


@pytest.mark.slow  # Parquet input is read and checked in make test by test_spark_scoring
def test_the_batch_scoring_job_on_parquet_input(repo, local_root, champion):
    runner = LocalRunner(local_root, report=lambda line: None)  # on the session's store
    batch = pd.read_csv(local_root / DATA / "data_batch_input.csv")
    batch.to_parquet(local_root / DATA / "batch.parquet")
    overrides = {
        "input_path": f"/{DATA}/batch.parquet",
        "input_format": "parquet",
        "model_name": champion.name,
        "experiment_name": "/Shared/diabetes-parquet-job",
    }
    job = runner.run(repo / "job_specs" / "diabetes_batch_scoring.json", overrides)
    assert job.succeeded, job.task("batch_score").error_line
    scored = pd.read_parquet(local_root / OUTPUT)
    assert len(scored) == len(batch) and np.isfinite(scored["prediction"]).all()
    assert list(scored.columns) == [*batch.columns, "prediction", "model_version", "scored_at"]
    runs = mlflow.search_runs(
        experiment_names=[overrides["experiment_name"]], filter_string="tags.step = 'batch_score'"
    )
    assert runs["params.scoring_path"].tolist() == ["native"]
