"""The steps called directly, as a notebook's run_step would, against a real sqlite MLflow store."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from trained_models import FAST, train_validate_promote

from diabetes.contract import DataValidationError
from diabetes_mlops.runtime.errors import ModelNotFoundError, ParameterError
from diabetes_mlops.serving.served_model import model_requirements
from diabetes_mlops.steps import batch_score, promote, train, validate
from diabetes_mlops.steps.validate import decide
from diabetes_mlops.tracking.registry import CHALLENGER, CHAMPION

EXPERIMENT = "/Shared/diabetes-tests"


def run_training(data_dir, model_name, **kwargs):
    """train -> validate -> promote, as the training job chains them (FAST unless told)."""
    data = data_dir / "data_raw.csv"
    return train_validate_promote(model_name, EXPERIMENT, data, **{**FAST, **kwargs})


def score_pandas(*args, **kwargs):
    """The batch-score step on its small-data path (one CSV in, one output folder out, no Spark)."""
    return batch_score(None, *args, engine="pandas", **kwargs)


def versions(model_name):
    return MlflowClient().search_model_versions(f"name='{model_name}'")


def last_run(step):
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT], filter_string=f"tags.step = '{step}'", max_results=1
    )
    return runs.iloc[0]


def test_train_logs_and_registers_a_challenger(data_dir, model_name):
    out = train(str(data_dir / "data_raw.csv"), model_name, EXPERIMENT)
    client = MlflowClient()
    version = client.get_model_version_by_alias(model_name, CHALLENGER)
    assert out["model_version"] == str(version.version) == "1"
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["holdout_r2"] >= 0.40
    assert {"holdout_rmse", "holdout_mae", "cv_rmse"} <= set(run.data.metrics)
    assert run.data.params["alpha"] == "3.0"
    rmse = run.data.metrics["holdout_rmse"]
    assert run.info.run_name == f"train v1 (alpha 3, holdout rmse {rmse:.1f})"
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"cv_results.csv", "feature_statistics.html", "plots", "holdout"} <= artifacts
    plots = {a.path for a in client.list_artifacts(out["run_id"], "plots")}
    assert plots == {"plots/predicted_vs_actual.png", "plots/residuals.png"}
    cv = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=out["run_id"], artifact_path="cv_results.csv")
    )
    assert len(cv) == 9
    assert float(version.tags["holdout_r2"]) >= 0.40
    model = mlflow.models.get_model_info(f"models:/{model_name}/1")
    assert model.signature.inputs.input_names()[:2] == ["AGE", "SEX"]
    assert all(not spec.required for spec in model.signature.inputs.inputs)


def test_model_requirements_are_explicit_pins():
    requirements = model_requirements()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert all("==" in r for r in requirements)


def test_first_valid_model_becomes_champion(data_dir, model_name):
    trained, verdict, promoted = run_training(data_dir, model_name)
    assert verdict == {"validation_passed": "true"}
    assert promoted == {"promoted": "true", "champion_version": "1"}
    version = MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    assert str(version.version) == trained["model_version"]
    assert version.tags["validation_status"] == "passed"
    assert version.tags["previous_champion_version"] == "none"


def test_a_worse_model_is_validated_failed_and_not_promoted(data_dir, model_name):
    run_training(data_dir, model_name)
    trained, verdict, promoted = run_training(data_dir, model_name, alphas=(1e6,))
    assert trained["model_version"] == "2"
    assert verdict == {"validation_passed": "false"}
    assert promoted["promoted"] == "false" and promoted["champion_version"] == "1"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(model_name, CHAMPION).version) == "1"
    rejected = client.get_model_version(model_name, "2")
    assert rejected.tags["validation_status"] == "failed"
    assert "baseline" in rejected.tags["validation_reason"]
    run = last_run("validate")
    assert run["tags.validation_status"] == "failed"
    assert run["metrics.challenger_rmse"] > run["metrics.champion_rmse"]


def test_an_equal_model_passes_against_the_champion(data_dir, model_name):
    run_training(data_dir, model_name)
    # other settings (one alpha: the same model), so there is something new to register
    _, verdict, promoted = run_training(data_dir, model_name, cv_folds=3)
    assert verdict["validation_passed"] == "true" and promoted["champion_version"] == "2"
    version = MlflowClient().get_model_version(model_name, "2")
    assert version.tags["validation_champion_version"] == "1"
    assert version.tags["previous_champion_version"] == "1"


def test_the_same_data_code_and_settings_register_nothing_new(data_dir, model_name):
    first, _, _ = run_training(data_dir, model_name)
    again, verdict, promoted = run_training(data_dir, model_name)
    assert again["model_version"] == first["model_version"] == "1"  # the champion, as it is
    assert [str(v.version) for v in versions(model_name)] == ["1"]
    assert verdict == {"validation_passed": "false"} and promoted["promoted"] == "false"
    run = MlflowClient().get_run(again["run_id"])
    assert run.info.run_name == "train nothing new to learn (champion v1)"
    version = MlflowClient().get_model_version(model_name, "1")
    assert run.data.tags["training_digest"] == version.tags["training_digest"]
    other, _, _ = run_training(data_dir, model_name, seed=7)  # other settings: learned anew
    assert other["model_version"] == "2"


def test_decide_rules():
    assert decide(50.0, 70.0, None, 0.0).passed
    assert not decide(71.0, 70.0, None, 0.0).passed
    assert not decide(50.5, 70.0, 50.0, 0.0).passed
    assert decide(50.5, 70.0, 50.0, 0.02).passed
    assert "worse than the champion" in decide(52.0, 70.0, 50.0, 0.02).reason


def test_promote_never_promotes_an_unvalidated_version(data_dir, model_name):
    trained = train(str(data_dir / "data_raw.csv"), model_name, EXPERIMENT, **FAST)
    assert promote(model_name, trained["model_version"])["promoted"] == "false"
    with pytest.raises(mlflow.exceptions.MlflowException):
        MlflowClient().get_model_version_by_alias(model_name, CHAMPION)


def test_batch_score_writes_input_columns_prediction_version_and_time(data_dir, champion, tmp_path):
    output = tmp_path / "out" / "scores.parquet"
    out = score_pandas(
        str(data_dir / "data_batch_input.csv"), str(output), champion.name, EXPERIMENT
    )
    scored = pd.read_parquet(output)
    batch = pd.read_csv(data_dir / "data_batch_input.csv")
    assert out == {
        "output_path": str(output), "rows": str(len(batch)), "model_version": champion.version
    }  # fmt: skip
    assert list(scored.columns) == [*batch.columns, "prediction", "model_version", "scored_at"]
    assert len(scored) == len(batch) and np.isfinite(scored["prediction"]).all()
    assert (scored["model_version"] == int(champion.version)).all()
    assert scored["scored_at"].nunique() == 1
    run = last_run("batch_score")
    assert run["metrics.rows_in"] == run["metrics.rows_out"] == len(batch)
    assert run["params.output_path"] == str(output)


def test_batch_score_a_given_version_to_csv(data_dir, champion, tmp_path):
    output = tmp_path / "scores"
    score_pandas(
        str(data_dir / "data_batch_input.csv"),
        str(output),
        champion.name,
        EXPERIMENT,
        model_version=champion.version,
        output_format="csv",
    )
    assert len(pd.read_csv(output / "part-00000.csv")) == 442


def test_batch_score_without_a_champion_is_a_clear_error(data_dir, model_name, tmp_path):
    train(str(data_dir / "data_raw.csv"), model_name, EXPERIMENT, **FAST)
    output = tmp_path / "scores.parquet"
    with pytest.raises(
        ModelNotFoundError, match="has no version with alias 'champion' \\(run the training job"
    ):
        score_pandas(str(data_dir / "data_batch_input.csv"), str(output), model_name, EXPERIMENT)
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        score_pandas(
            str(data_dir / "data_batch_input.csv"),
            str(output),
            model_name,
            EXPERIMENT,
            model_version="7",
        )
    assert not output.exists()
    assert last_run("batch_score")["status"] == "FAILED"


def test_bad_training_data_registers_nothing_and_fails_the_run(
    bad_training, bad_input, data_dir, model_name
):
    path = bad_input(bad_training, data_dir / "data_raw.csv", data_dir / "bad.csv")
    with pytest.raises(DataValidationError) as info:
        train(str(path), model_name, EXPERIMENT)
    assert str(info.value).startswith(str(path)) and bad_training[1] in str(info.value)
    assert versions(model_name) == []
    assert last_run("train")["status"] == "FAILED"


def test_bad_scoring_data_leaves_the_previous_output_intact(
    bad_scoring, bad_input, data_dir, champion, tmp_path
):
    model_name = champion.name
    output = tmp_path / "out" / "scores.parquet"
    good = data_dir / "data_batch_input.csv"
    score_pandas(str(good), str(output), model_name, EXPERIMENT)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    bad = bad_input(bad_scoring, good, data_dir / "bad.csv")
    with pytest.raises(DataValidationError) as info:
        score_pandas(str(bad), str(output), model_name, EXPERIMENT)
    assert str(info.value).startswith(str(bad)) and bad_scoring[1] in str(info.value)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert [p.name for p in output.parent.iterdir()] == ["scores.parquet"]
    assert last_run("batch_score")["status"] == "FAILED"


def test_bad_parameters(data_dir, model_name, tmp_path):
    data = str(data_dir / "data_raw.csv")
    with pytest.raises(ValueError, match="alphas"):  # the library's own check (and a rule's)
        train(data, model_name, EXPERIMENT, alphas=(-1.0,))
    with pytest.raises(ParameterError, match="registry"):
        train(data, model_name, EXPERIMENT, registry="hive")
    with pytest.raises(ParameterError, match="catalog.schema.model"):
        train(data, model_name, EXPERIMENT, registry="unity_catalog")
    with pytest.raises(ParameterError, match="experiment_name"):
        train(data, model_name, "")
    with pytest.raises(ParameterError, match="output_format': engine=pandas writes parquet or csv"):
        score_pandas(
            str(data_dir / "data_batch_input.csv"),
            str(tmp_path / "out"),
            model_name,
            EXPERIMENT,
            output_format="delta",
        )
    assert versions(model_name) == []


def test_validation_records_every_rmse_on_the_version(data_dir, model_name):
    run_training(data_dir, model_name)
    run_training(data_dir, model_name, cv_folds=3)
    tags = MlflowClient().get_model_version(model_name, "2").tags
    assert {"challenger_rmse", "champion_rmse", "baseline_rmse"} <= set(tags)
    assert float(tags["challenger_rmse"]) < float(tags["baseline_rmse"])
    assert tags["validation_comparison_rows"] == "89"  # same seed: the champion never saw them


def test_the_champion_is_compared_only_on_rows_it_was_not_trained_on(data_dir, model_name):
    from diabetes.reading import read_dataset
    from diabetes.training import row_fingerprints, split_holdout

    run_training(data_dir, model_name)  # seed 42
    trained = train(str(data_dir / "data_raw.csv"), model_name, EXPERIMENT, seed=7, **FAST)
    validate(model_name, trained["model_version"], EXPERIMENT, min_comparison_rows=5)
    frame = read_dataset(data_dir / "data_raw.csv", "training")
    champion_train, _ = split_holdout(frame, 0.2, 42)
    _, holdout = split_holdout(frame, 0.2, 7)
    unseen = ~np.isin(row_fingerprints(holdout), row_fingerprints(champion_train))
    tags = MlflowClient().get_model_version(model_name, "2").tags
    assert 0 < unseen.sum() < len(holdout)
    assert tags["validation_comparison_rows"] == str(unseen.sum())


def test_too_few_unseen_rows_is_a_failed_validation(data_dir, model_name):
    run_training(data_dir, model_name)
    trained = train(str(data_dir / "data_raw.csv"), model_name, EXPERIMENT, seed=7, **FAST)
    verdict = validate(model_name, trained["model_version"], EXPERIMENT, min_comparison_rows=80)
    assert verdict == {"validation_passed": "false"}
    reason = MlflowClient().get_model_version(model_name, "2").tags["validation_reason"]
    assert "holdout rows are unseen by champion version 1; 80 needed" in reason


def test_a_verdict_against_an_older_champion_is_not_enough(data_dir, model_name):
    data = str(data_dir / "data_raw.csv")
    run_training(data_dir, model_name, alphas=(300.0,))  # v1: weak, but the first champion
    run_training(data_dir, model_name)  # v2: better, champion now
    assert promote(model_name, "1")["promoted"] == "false"  # v1 passed only against "none"
    assert str(MlflowClient().get_model_version_by_alias(model_name, CHAMPION).version) == "2"
    trained = train(data, model_name, EXPERIMENT, **FAST)
    validate(model_name, trained["model_version"], EXPERIMENT)
    run_training(data_dir, model_name)  # v4 validated and promoted meanwhile
    assert promote(model_name, trained["model_version"])["promoted"] == "false"


def test_workspace_registry_keeps_aliases_as_model_tags(
    data_dir, model_name, monkeypatch, tmp_path
):
    """MLflow's client for the Databricks workspace registry refuses alias calls."""
    from diabetes_mlops.tracking import registry

    monkeypatch.setattr(registry, "native_aliases", lambda: False)
    run_training(data_dir, model_name)
    run_training(data_dir, model_name, alphas=(1e6,))
    output = tmp_path / "scores.parquet"
    score_pandas(str(data_dir / "data_batch_input.csv"), str(output), model_name, EXPERIMENT)
    client = MlflowClient()
    tags = client.get_registered_model(model_name).tags
    assert tags["alias.champion"] == "1" and tags["alias.challenger"] == "2"
    assert client.get_registered_model(model_name).aliases == {}
    assert (pd.read_parquet(output)["model_version"] == 1).all()


def test_native_aliases_everywhere_but_the_databricks_workspace_registry():
    from diabetes_mlops.tracking.registry import native_aliases

    assert not native_aliases("databricks") and not native_aliases("databricks://prod")
    assert native_aliases("databricks-uc") and native_aliases("sqlite:///x.db")


def test_extra_input_columns_pass_through_scoring(data_dir, champion, tmp_path):
    model_name = champion.name
    batch = pd.read_csv(data_dir / "data_batch_input.csv")
    batch.insert(0, "PATIENT_ID", [f"p{i:04d}" for i in range(len(batch))])
    batch.to_csv(data_dir / "with_id.csv", index=False)
    output = tmp_path / "scores"
    score_pandas(
        str(data_dir / "with_id.csv"), str(output), model_name, EXPERIMENT, output_format="csv"
    )
    scored = pd.read_csv(output / "part-00000.csv")
    assert scored["PATIENT_ID"].tolist() == batch["PATIENT_ID"].tolist()
    assert scored.columns[0] == "PATIENT_ID"
