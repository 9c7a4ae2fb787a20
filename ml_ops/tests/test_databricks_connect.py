"""The local runner with Spark from a deploy target's compute, through Databricks Connect.

No workspace here: the target's cluster is found in the fake workspace by the real databricks-sdk,
and a Spark Connect server in this test process stands in for the cluster (SPARK_REMOTE, as
Databricks Connect documents for a Spark Connect server). The end-to-end test runs the training
job in .venv-dbconnect (`make dbconnect-env`), where databricks-connect replaces pyspark.
"""

import os
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from diabetes_mlops.cli import main
from diabetes_mlops.local.databricks_connect import RemoteCompute, remote_session
from diabetes_mlops.local.runner import LocalRunner
from diabetes_mlops.local.spark import REMOTE_ENV
from diabetes_mlops.runtime.errors import ParameterError

REPO = Path(__file__).resolve().parents[2]
DBCONNECT_PYTHON = REPO / ".venv-dbconnect" / "bin" / "python"
CLUSTER = "0101-000000-abcdefgh"  # the fake workspace's cluster named diabetes-mlops


def run_local(*args):
    return main(["run-local", *args])


def test_a_target_of_no_compute_or_no_cluster_is_one_line(fake_workspace, repo, capsys):
    spec = str(repo / "job_specs" / "diabetes_model_training.json")
    assert run_local(spec, "--spark-target", "local") == 2  # a deploy.yml mistake
    assert "--spark-target local: the local target has no compute" in capsys.readouterr().err
    fake_workspace.clusters = []
    assert run_local(spec, "--spark-target", "staging") == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: --spark-target staging: no cluster named 'diabetes-mlops' in {fake_workspace.url}"
        " (`make databricks-init TARGET=staging` creates it)"
    )


def test_without_databricks_connect_installed_it_says_how_to_get_it(fake_workspace, repo, capsys):
    spec = str(repo / "job_specs" / "diabetes_model_training.json")
    assert run_local(spec, "--spark-target", "staging") == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "needs Databricks Connect, which this Python environment lacks" in line
    assert "`make dbconnect-env`" in line
    assert fake_workspace.calls("GET", "/clusters/list")  # the cluster was found first


def test_a_job_that_writes_an_output_folder_is_refused_before_anything_runs(repo, tmp_path):
    """Outputs are written through Spark and through this machine's files (manifest, swap):
    a remote compute's storage is not a folder here."""
    compute = RemoteCompute("staging", config=None, cluster_name="c", cluster_id="1")
    runner = LocalRunner(tmp_path / "root", compute=compute, report=lambda line: None)
    with pytest.raises(ParameterError) as refused:
        runner.run(repo / "job_specs" / "diabetes_batch_scoring.json")
    lines = str(refused.value).splitlines()
    assert lines == [
        f"job 'diabetes-batch-scoring' task '{task}' writes {outputs} through Spark and through"
        " this machine's files at once, which the cluster 'c' (id 1) of target 'staging' does"
        " not share: run this job on Databricks (make run-<job> TARGET=...), or locally without"
        " SPARK_TARGET"
        for task, outputs in (
            ("batch_score", "output_path, quarantine_path"),
            ("monitor", "output_path, monitoring_path"),
        )
    ]
    assert not (tmp_path / "root").exists() and not runner.spark.started


class _Builder:
    """Records what remote_session asks databricks-connect's builder for."""

    asked: list = []

    def remote(self, url):
        self.asked.append(("remote", url))
        return self

    def sdkConfig(self, config):
        self.asked.append(("sdkConfig", config))
        return self

    def getOrCreate(self):
        return "session"


@pytest.fixture
def builder(monkeypatch):
    module = types.ModuleType("databricks.connect")
    module.DatabricksSession = types.SimpleNamespace(builder=_Builder())
    monkeypatch.setitem(sys.modules, "databricks.connect", module)
    monkeypatch.delenv(REMOTE_ENV, raising=False)
    _Builder.asked = []
    return _Builder


def test_the_session_is_asked_for_the_cluster_or_serverless_with_the_targets_credentials(
    builder, monkeypatch, fake_workspace
):
    from databricks.sdk.config import Config

    config = Config(host=fake_workspace.url, token="t", auth_type="pat")  # loopback only
    assert remote_session(RemoteCompute("prod", config, "c", "0101-1")) == "session"
    assert remote_session(RemoteCompute("prod", config)) == "session"
    (kind, on_cluster), (_, serverless) = builder.asked
    assert kind == "sdkConfig" and on_cluster.cluster_id == "0101-1"
    assert on_cluster.host == config.host and on_cluster.token == "t"
    assert serverless.serverless_compute_id == "auto" and serverless.cluster_id is None
    assert config.cluster_id is None  # the target's own config is left as it was
    monkeypatch.setenv(REMOTE_ENV, "yarn")
    with pytest.raises(Exception, match="SPARK_REMOTE='yarn': with a target's compute, give sc://"):
        remote_session(RemoteCompute("prod", config))


@pytest.mark.slow
@pytest.mark.network  # .venv-dbconnect is made from the package index (make dbconnect-env)
def test_the_training_job_runs_with_spark_from_the_targets_compute(
    fake_workspace, repo, tmp_path, connect_url
):
    """In .venv-dbconnect: the staging target's cluster is found in the fake workspace, and the
    training job's Spark read (Parquet) runs on the Spark Connect server standing in for it."""
    if not DBCONNECT_PYTHON.exists():
        pytest.fail(f"{DBCONNECT_PYTHON} is missing: run `make dbconnect-env` (make test-all does)")
    data = tmp_path / "training.parquet"
    pd.read_csv(repo / "ml_data" / "data_raw.csv").to_parquet(data)
    environ = {
        **os.environ,
        "DATABRICKS_HOST": fake_workspace.url,
        "DATABRICKS_TOKEN": fake_workspace.token,
        "DATABRICKS_AUTH_TYPE": "pat",
        REMOTE_ENV: connect_url,
        "MLFLOW_TRACKING_URI": "",
    }
    environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    command = [
        str(DBCONNECT_PYTHON.parent / "diabetes-mlops"), "run-local",
        str(repo / "job_specs" / "diabetes_model_training.json"),
        "--local-root", str(tmp_path / "root"), "--spark-target", "staging",
        "--config", str(repo / "deploy.yml"),
        "--param", f"data_path={data}", "--param", "data_format=parquet",
    ]  # fmt: skip
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (
        f"Spark: Databricks Connect to the cluster 'diabetes-mlops' (id {CLUSTER}) of target"
        f" 'staging' ({REMOTE_ENV}={connect_url} stands in for it)" in done.stdout
    )
    assert "job 'diabetes-model-training' SUCCEEDED" in done.stdout
    assert "train succeeded" in done.stdout and "promote succeeded" in done.stdout
    probe = "import pyspark, databricks.connect; print(pyspark.__version__)"
    version = subprocess.run(
        [str(DBCONNECT_PYTHON), "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert not version.startswith("4.")  # databricks-connect's own pyspark, not requirements.txt's
