"""The monitor step against a real sqlite MLflow store and a local Spark session: the reference
profile logged at training, drift of scored batches, the monitoring table, the N-of-M rule."""

import logging
import os
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from trained_models import FAST, new_champion

from diabetes.drift import ProfileError
from diabetes.sample_data import write_drifted_batches
from diabetes_mlops.data.monitoring_table import MonitoringTable
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.steps import batch_score, monitor
from diabetes_mlops.tracking import reference_profiles

EXPERIMENT = "/Shared/diabetes-monitor-tests"


@pytest.fixture
def own_champion(model_name):
    """A champion of this test's own, for a test that changes the version's tags."""
    return new_champion(model_name, EXPERIMENT, **FAST)


@pytest.fixture(scope="module")
def batches(repo, tmp_path_factory):
    """The sample batch and three drifted ones, as CSV files."""
    folder = tmp_path_factory.mktemp("batches")
    drifted = write_drifted_batches(folder, count=3)
    return {
        "sample": repo / "ml_data" / "data_batch_input.csv",
        **{f"drifted_{i}": path for i, path in enumerate(drifted, start=1)},
    }


class Loop:
    """Score a batch into one output, then monitor it into one table, as the job chains them."""

    def __init__(self, spark, model_name, tmp_path, **settings):
        self.spark = spark
        self.model_name = model_name
        self.output = str(tmp_path / "predictions")
        self.table = str(tmp_path / "monitoring")
        self.settings = settings

    def run(self, input_path, model_version="champion", **settings):
        self.score(input_path, model_version)
        return monitor(
            self.spark, self.output, self.table, EXPERIMENT, **{**self.settings, **settings}
        )

    def score(self, input_path, model_version="champion"):
        batch_score(
            None,
            str(input_path),
            self.output,
            self.model_name,
            EXPERIMENT,
            model_version=model_version,
            engine="pandas",
        )

    def history(self):
        return MonitoringTable.prepare(self.table, "parquet").history()


def last_run():
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT], filter_string="tags.step = 'monitor'", max_results=1
    )
    return MlflowClient().get_run(runs.iloc[0]["run_id"])


def test_training_logs_a_reference_profile_with_the_version(champion):
    name, version = champion.name, champion.version
    found = MlflowClient().get_model_version(name, version)
    assert found.tags[reference_profiles.TAG] == reference_profiles.ARTIFACT
    profile = reference_profiles.load(found)
    assert profile.rows == 442
    assert len(profile.numeric["BMI"].edges) == 9  # ten bins of the training data
    assert profile.numeric["prediction"].missing == 0
    assert set(profile.categorical["SEX"].counts) == {"Female", "Male"}


def test_the_sample_batch_never_triggers(spark, champion, batches, tmp_path):
    loop = Loop(spark, champion.name, tmp_path, drift_batches=1, drift_window=1)
    out = loop.run(batches["sample"])
    assert (out["drift"], out["retrain"], out["drift_status"]) == ("false", "false", "stable")
    history = loop.history()
    psi = history[history["metric"] == "psi"].set_index("feature")["value"]
    assert set(psi.index) == {
        "AGE",
        "BMI",
        "BP",
        "S1",
        "S2",
        "S3",
        "S4",
        "S5",
        "S6",
        "SEX",
        "prediction",
    }
    assert psi.max() < 0.05  # the same patients as the training data
    assert not history["drifted"].any()
    run = last_run()
    assert run.data.metrics["retrain"] == 0 and run.data.metrics["psi_BMI"] == psi["BMI"]
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"drift_report.html", "drift"} <= artifacts


def test_a_shifted_batch_triggers_only_after_n_of_m(spark, champion, batches, tmp_path):
    loop = Loop(spark, champion.name, tmp_path)  # 2 of 3, the job's default
    first = loop.run(batches["drifted_1"])
    assert (first["drift"], first["retrain"]) == ("true", "false")  # one noisy batch
    second = loop.run(batches["drifted_2"])
    assert (second["drift"], second["retrain"]) == ("true", "true")
    history = loop.history()
    drifted = set(history[history["drifted"]]["feature"])
    assert {"BMI", "S5", "prediction"} <= drifted
    assert not drifted & {"AGE", "BP", "S1", "S2", "S3", "S6", "SEX"}
    assert "monitoring_history" not in last_run().data.tags  # a first table starts nothing


def test_a_deleted_monitoring_table_is_said_to_restart_its_history(
    spark, champion, batches, tmp_path, caplog
):
    loop = Loop(spark, champion.name, tmp_path)
    assert loop.run(batches["drifted_1"])["drift"] == "true"
    shutil.rmtree(loop.table)  # deleted between two runs
    again = loop.run(batches["drifted_2"])
    assert (again["drift"], again["retrain"]) == ("true", "false")  # 1 of 1 now, not 2 of 2
    tag = last_run().data.tags["monitoring_history"]
    assert tag.startswith("restarted: table empty after run ")
    assert "its drift history restarts with this batch" in caplog.text


@pytest.mark.slow  # five batches; make test keeps the 2-of-3 case above
def test_n_of_m_counts_only_the_window_and_a_normal_batch_never_retrains(
    spark, champion, batches, tmp_path
):
    loop = Loop(spark, champion.name, tmp_path, drift_batches=2, drift_window=2)
    assert loop.run(batches["drifted_1"])["retrain"] == "false"
    back_to_normal = loop.run(batches["sample"])  # 1 of the last 2 and itself stable
    assert (back_to_normal["drift"], back_to_normal["retrain"]) == ("false", "false")
    third = loop.run(batches["drifted_2"])  # drifted_1 fell out of the window of 2
    assert third["retrain"] == "false"
    assert loop.run(batches["drifted_3"])["retrain"] == "true"


def test_monitoring_the_same_batch_again_adds_no_rows(spark, champion, batches, tmp_path):
    loop = Loop(spark, champion.name, tmp_path)
    first = loop.run(batches["drifted_1"])
    rows = loop.history()
    again = monitor(spark, loop.output, loop.table, EXPERIMENT)  # the monitor task re-run
    rescored = loop.run(batches["drifted_1"])  # the whole job re-run on the same input
    assert first["batch_id"] == again["batch_id"] == rescored["batch_id"]
    history = loop.history()
    assert len(history) == len(rows) and history["batch_id"].nunique() == 1
    assert rescored["retrain"] == "false"  # the same batch three times is still one batch


def test_a_version_without_a_reference_is_recorded_and_never_triggers(
    spark, own_champion, batches, tmp_path, caplog
):
    name, version = own_champion.name, own_champion.version
    client = MlflowClient()
    client.delete_model_version_tag(name, version, reference_profiles.TAG)
    try:
        loop = Loop(spark, name, tmp_path, drift_batches=1, drift_window=1)
        with caplog.at_level(logging.WARNING, logger="diabetes_mlops"):
            out = loop.run(batches["drifted_1"])
    finally:
        client.set_model_version_tag(
            name, version, reference_profiles.TAG, reference_profiles.ARTIFACT
        )
    assert (out["retrain"], out["drift_status"]) == ("false", "no_reference")
    assert "no reference" in caplog.text and f"version {version}" in caplog.text
    history = loop.history()
    assert list(history["metric"]) == ["no_reference"] and not history["drifted"].any()
    assert last_run().data.tags["drift_status"] == "no_reference"


@pytest.mark.slow  # make test: the Spark pass measures labels in test_spark_profile
def test_labels_in_the_batch_give_rmse_and_mae(spark, champion, repo, tmp_path):
    loop = Loop(spark, champion.name, tmp_path)
    loop.run(repo / "ml_data" / "data_raw.csv")  # the training file: it carries Y
    scored = pd.read_parquet(loop.output)
    error = scored["prediction"] - pd.to_numeric(scored["Y"])  # passed through as text
    history = loop.history().set_index("metric")
    assert history.loc["rmse", "value"] == pytest.approx(np.sqrt(np.mean(error**2)))
    assert history.loc["mae", "value"] == pytest.approx(np.mean(np.abs(error)))
    assert last_run().data.metrics["rmse"] == pytest.approx(history.loc["rmse", "value"])


def test_bad_parameters_and_outputs_write_nothing(spark, champion, batches, tmp_path):
    loop = Loop(spark, champion.name, tmp_path)
    with pytest.raises(ParameterError, match="no scores written by batch_score"):
        monitor(spark, str(tmp_path), loop.table, EXPERIMENT)
    loop.score(batches["sample"])  # scores to monitor; each call below is refused before work
    with pytest.raises(ParameterError, match="drift_batches"):
        monitor(spark, loop.output, loop.table, EXPERIMENT, drift_batches=4, drift_window=3)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="monitoring_path"):
        monitor(spark, loop.output, str(foreign), EXPERIMENT)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(ParameterError, match="output_format"):
        monitor(spark, loop.output, loop.table, EXPERIMENT, output_format="delta")
    assert not os.path.exists(loop.table)  # no refused call created the monitoring table


def test_a_damaged_reference_fails_the_run_and_writes_no_rows(
    spark, own_champion, batches, tmp_path
):
    name, version = own_champion.name, own_champion.version
    client = MlflowClient()
    client.set_model_version_tag(name, version, reference_profiles.TAG, "monitoring/missing.json")
    try:
        loop = Loop(spark, name, tmp_path)
        with pytest.raises(ProfileError, match="cannot be read"):
            loop.run(batches["sample"])
    finally:
        client.set_model_version_tag(
            name, version, reference_profiles.TAG, reference_profiles.ARTIFACT
        )
    assert last_run().info.status == "FAILED"
    assert loop.history().empty


def test_the_drift_metrics_decide_and_the_report_charts_the_batches(
    spark, champion, batches, tmp_path
):
    """Every metric is recorded; only those named in drift_metrics decide. The report and its
    own artifact chart the first of them across the batches so far."""
    loop = Loop(spark, champion.name, tmp_path, drift_metrics=("ks",), ks_threshold=0.99)
    assert loop.run(batches["sample"])["drift"] == "false"
    assert loop.run(batches["drifted_1"])["drift"] == "false"  # ks decides, and reads < 0.99
    run = last_run()
    assert run.data.params["drift_metrics"] == "ks"
    rows = loop.history()
    assert {"psi", "js_distance", "tv_distance", "l_infinity", "ks", "wasserstein"} <= set(
        rows[rows["feature"] == "BMI"]["metric"]
    )
    assert {"chi2", "chi2_pvalue"} <= set(rows[rows["feature"] == "SEX"]["metric"])
    assert not rows["drifted"].any()  # over a threshold that decides: none
    third = loop.run(batches["drifted_2"], drift_metrics=("psi", "ks"))
    assert third["drift"] == "true"
    run = last_run()
    client = MlflowClient()
    names = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert "drift/over_time.png" in names
    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/drift_report.html")
    assert "Drift over time: psi in the last 3 batch(es)" in page
    assert page.count("<img class='history'") == 1


def test_drift_metrics_are_checked_before_the_run(spark):
    from diabetes_mlops.runtime.parameters import declared_parameters

    declared = declared_parameters(monitor)["drift_metrics"]
    assert declared.parse(" psi, ks ") == ("psi", "ks")
    with pytest.raises(ParameterError, match="parameter 'drift_metrics': each value must be one"):
        declared.parse("psi,entropy")
